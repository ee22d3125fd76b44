//! A Bloom filter of group keys: which groups a window's open row blocks may hold.
//!
//! A group that is in neither the cache nor a single value is looked for in its window's open
//! blocks, which costs a seek and a block's decoding. A new group (most misses, in a view
//! larger than its cache) is in no block, and the filter says so without reading: ~10 bits a
//! key, ~1% false positives. A key's bits all lie in one cache line (a blocked Bloom filter),
//! so the 1M-group first epoch that writes open blocks pays one cache miss a group for its
//! filter, not seven. It lives in memory only, built when the blocks are written and again
//! from the blocks when the view loads. (A crate would add a dependency for fifty lines and
//! still need the same building.)

/// Bits per key (~1% false positives with blocks of eight probes).
const BITS_PER_KEY: usize = 10;

/// Multipliers that make a key's eight bit positions in its block from one 32-bit hash; odd,
/// otherwise arbitrary.
const SALTS: [u32; 8] = [
    0x52e6_b439,
    0xf2a7_4de5,
    0x269e_0d37,
    0x6513_270f,
    0xa6a3_a451,
    0x0c5c_7fd1,
    0x128b_2f33,
    0xd23f_0825,
];

/// 512 bits, one cache line: every bit a key sets is in one block, so an insert or a lookup
/// costs one cache miss (seven, with the bits anywhere in the filter).
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

pub struct KeyFilter {
    blocks: Vec<Block>,
    hasher: ahash::RandomState,
}

impl KeyFilter {
    /// A filter for about `keys` keys.
    pub fn with_capacity(keys: usize) -> Self {
        let blocks = (keys * BITS_PER_KEY).div_ceil(512).max(1);
        Self {
            blocks: vec![Block::default(); blocks],
            hasher: ahash::RandomState::new(),
        }
    }

    /// The block of `key` and the bit it sets in each of the block's words.
    fn block_and_bits(&self, key: &[u8]) -> (usize, [u64; 8]) {
        let hash = self.hasher.hash_one(key);
        // The high half picks the block (a multiply, not a division), the low half the bits.
        let block = ((hash >> 32) * self.blocks.len() as u64) >> 32;
        let low = hash as u32;
        let bits = SALTS.map(|salt| 1u64 << (low.wrapping_mul(salt) >> 26));
        (block as usize, bits)
    }

    pub fn insert(&mut self, key: &[u8]) {
        let (block, bits) = self.block_and_bits(key);
        let words = &mut self.blocks[block].0;
        for (word, bit) in words.iter_mut().zip(bits) {
            *word |= bit;
        }
    }

    /// False when `key` was never inserted; true when it was (and for ~1% of the others).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let (block, bits) = self.block_and_bits(key);
        let words = &self.blocks[block].0;
        words.iter().zip(bits).all(|(word, bit)| word & bit == bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_held_and_few_others_seem_to_be() {
        let n = 100_000;
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
