//! A Bloom filter of group keys: which groups a window's open row blocks may hold.
//!
//! A group that is in neither the cache nor a single value is looked for in its window's open
//! blocks, which costs a seek and a block's decoding. A new group (most misses, in a view
//! larger than its cache) is in no block, and the filter says so without reading: ~10 bits a
//! key, ~1% false positives. It lives in memory only, built when the blocks are written and
//! again from the blocks when the view loads. (A crate would add a dependency for forty lines
//! and still need the same building.)

/// Bits per key, and the number of probes that suits it (~1% false positives).
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;

pub struct KeyFilter {
    bits: Vec<u64>,
    hasher: ahash::RandomState,
}

impl KeyFilter {
    /// A filter for about `keys` keys.
    pub fn with_capacity(keys: usize) -> Self {
        let words = (keys * BITS_PER_KEY).div_ceil(64).max(1);
        Self {
            bits: vec![0; words],
            hasher: ahash::RandomState::new(),
        }
    }

    fn hash_and_bits(&self, key: &[u8]) -> (u64, u64) {
        (self.hasher.hash_one(key), (self.bits.len() * 64) as u64)
    }

    pub fn insert(&mut self, key: &[u8]) {
        let (hash, n) = self.hash_and_bits(key);
        for bit in probes(hash, n) {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False when `key` was never inserted; true when it was (and for ~1% of the others).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let (hash, n) = self.hash_and_bits(key);
        probes(hash, n).all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The bit positions of a key of `hash` among `n` bits: double hashing from one hash.
fn probes(hash: u64, n: u64) -> impl Iterator<Item = usize> {
    let (h1, h2) = (hash, hash.rotate_left(32) | 1);
    (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % n) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_held_and_few_others_seem_to_be() {
        let n = 10_000;
        let mut filter = KeyFilter::with_capacity(n);
        for i in 0..n {
            filter.insert(format!("in{i}").as_bytes());
        }
        assert!((0..n).all(|i| filter.may_hold(format!("in{i}").as_bytes())));
        let false_positives = (0..n)
            .filter(|i| filter.may_hold(format!("out{i}").as_bytes()))
            .count();
        assert!(false_positives < n / 50, "{false_positives} of {n}");
        assert!(!KeyFilter::with_capacity(0).may_hold(b"x"));
    }
}
