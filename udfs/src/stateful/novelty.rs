//! `is_novel(entity, value)`: true the first time an entity shows a value.
//!
//! Each entity remembers the last [`MEMORY`] distinct values it showed, as 64-bit hashes
//! ([`stable_hash`], 8 bytes each, so at most 32 KiB per entity); a value it showed before
//! those is forgotten and counts as novel again. The hash is fixed here, not taken from the
//! standard library, so stored state means the same after a toolchain upgrade.

use std::collections::{HashSet, VecDeque};

/// Distinct values remembered per entity.
pub const MEMORY: usize = 4096;

/// The values one entity has shown, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Novelty {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

/// A 64-bit hash of `bytes` that stored state can rely on: fixed here, not the standard
/// library's, so it never changes with the toolchain. It takes eight bytes a step (FNV-1a's
/// byte a step, one multiply each in a chain, was ~4% of a scored view's CPU on URLs), then
/// mixes the result so that every input bit reaches every output bit.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |h: u64, word: u64| (h ^ word).wrapping_mul(K).rotate_left(29);
    let mut h = (bytes.len() as u64).wrapping_mul(K) ^ 0xcbf2_9ce4_8422_2325;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        h = step(h, u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(last));
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Novelty {
    /// Whether `value` is new for the entity; remembers it.
    pub fn observe(&mut self, value: &str) -> bool {
        let hash = stable_hash(value.as_bytes());
        if self.seen.contains(&hash) {
            return false;
        }
        if self.order.len() == MEMORY {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(hash);
        self.seen.insert(hash);
        true
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for hash in &self.order {
            out.extend_from_slice(&hash.to_le_bytes());
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let order: VecDeque<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let seen = order.iter().copied().collect();
        Some(Self { order, seen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored states hold these hashes: if this test fails, the hash changed, and
    /// STATE_FORMAT must go up (stored views are then rebuilt from their sources).
    #[test]
    fn the_stable_hash_is_the_one_stored_states_hold() {
        let golden = [
            (&b""[..], 17_665_956_581_633_026_203u64),
            (b"10.0.0.1", 6_052_423_072_148_674_925),
            (
                b"https://www.nexmark.com/item.htm?query=1",
                4_484_376_732_237_133_284,
            ),
        ];
        for (bytes, hash) in golden {
            assert_eq!(
                stable_hash(bytes),
                hash,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Zero bytes at the end still count, and every value of a short word differs.
        assert_ne!(stable_hash(b"a"), stable_hash(b"a\0"));
        let distinct: HashSet<u64> = (0..=u16::MAX)
            .map(|i| stable_hash(&i.to_le_bytes()))
            .collect();
        assert_eq!(distinct.len(), 1 << 16);
    }

    #[test]
    fn first_sight_is_novel_and_memory_is_bounded() {
        let mut n = Novelty::default();
        assert!(n.observe("10.0.0.1"));
        assert!(!n.observe("10.0.0.1"));
        assert!(n.observe("10.0.0.2"));
        for i in 0..MEMORY {
            n.observe(&format!("other-{i}"));
        }
        assert_eq!(n.order.len(), MEMORY);
        // Both early values were pushed out, so they are novel again.
        assert!(n.observe("10.0.0.1"));
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut n = Novelty::default();
        n.observe("a");
        n.observe("b");
        let mut bytes = Vec::new();
        n.encode(&mut bytes);
        let mut back = Novelty::decode(&bytes).unwrap();
        assert_eq!(back, n);
        assert!(!back.observe("b"));
        assert!(Novelty::decode(&bytes[..5]).is_none());
    }
}
