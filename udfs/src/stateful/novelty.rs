//! `is_novel(entity, value)`: true the first time an entity shows a value.
//!
//! Each entity remembers the last [`MEMORY`] distinct values it showed, as 64-bit FNV-1a
//! hashes (8 bytes each, so at most 32 KiB per entity); a value it showed before those is
//! forgotten and counts as novel again. The hash is fixed here, not taken from the standard
//! library, so stored state means the same after a toolchain upgrade.

use std::collections::{HashSet, VecDeque};

/// Distinct values remembered per entity.
pub const MEMORY: usize = 4096;

/// The values one entity has shown, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Novelty {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Novelty {
    /// Whether `value` is new for the entity; remembers it.
    pub fn observe(&mut self, value: &str) -> bool {
        let hash = fnv1a(value.as_bytes());
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
