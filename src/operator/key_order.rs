//! The order of a window's groups by their stored keys (`view \0 window_start group_key`),
//! which a window's merge follows from the start: cache lookups, the merge's buffers and the
//! write set then go front to back, RocksDB's memtable inserts keys that arrive in order
//! several times faster, and row blocks need their rows in key order.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};

use super::merge::GroupKeys;

/// The indices of `keys` in ascending key order.
pub fn key_order(keys: &GroupKeys) -> Vec<usize> {
    match keys {
        GroupKeys::Empty(n) => (0..*n).collect(),
        GroupKeys::Rows(_) => order_by_bytes(0..keys.len(), |i| keys.get(i)),
    }
}

/// The order of a window's groups by their one key column, read from the column itself when it
/// is text or a 64-bit integer; None for other types. It is the order of the encoded keys
/// (Arrow's row format compares as the values do, NULL first), without encoding every key of
/// the window first: a million text keys took ~30 MB of encoded rows just to be sorted.
pub fn column_order(column: &ArrayRef) -> Option<Vec<usize>> {
    // The rows with a value, ascending (no list of them is made: a million keys' took 8 MB).
    let all_valid = column.null_count() == 0;
    let valid = (0..column.len()).filter(|i| all_valid || column.is_valid(*i));
    let ordered = match column.data_type() {
        DataType::Utf8 => {
            let text = column.as_string::<i32>();
            order_by_bytes(valid, |i| text.value(i).as_bytes())
        }
        DataType::Int64 => {
            let ints = column.as_primitive::<Int64Type>();
            // Flipping the sign bit orders signed values as unsigned ones; the prefix is the
            // whole key, so equal prefixes are equal keys.
            order_by_prefix(valid, |i| (ints.value(i) as u64) ^ (1 << 63), None)
        }
        _ => return None,
    };
    if column.null_count() == 0 {
        return Some(ordered);
    }
    let nulls = (0..column.len()).filter(|i| column.is_null(*i));
    Some(nulls.chain(ordered).collect())
}

/// `indices` (ascending) in the ascending order of `key(i)`, ties by index. Comparing whole
/// keys is mostly `memcmp` of a shared prefix: sort by the 8 bytes after the common prefix as
/// an integer ([`order_by_prefix`]), then compare whole keys only among those that tie there.
fn order_by_bytes<'a>(
    indices: impl Iterator<Item = usize> + Clone,
    key: impl Fn(usize) -> &'a [u8],
) -> Vec<usize> {
    let mut rest = indices.clone();
    let Some(head) = rest.next() else {
        return Vec::new();
    };
    let first = key(head);
    let common = rest.fold(first.len(), |c, i| {
        first[..c]
            .iter()
            .zip(key(i))
            .take_while(|(a, b)| a == b)
            .count()
    });
    let prefix = |i| {
        let k = key(i);
        let tail = &k[common.min(k.len())..];
        let len = tail.len().min(8);
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&tail[..len]);
        u64::from_be_bytes(b)
    };
    order_by_prefix(indices, prefix, Some(&|a, b| key(a).cmp(key(b))))
}

/// `indices` (ascending) in the ascending order of `prefix(i)`; among equal prefixes in the
/// order `tie` gives (None: equal prefixes are equal keys), then by index.
///
/// When the bits in which the prefixes differ and the largest index fit in 64 bits together,
/// each group is one word, `prefix bits | index`, sorted by a radix sort of 11-bit digits
/// over the prefix bits alone: half the memory of (prefix, index) pairs, and fewer passes (a
/// million decimal keys: four passes over 8 MB instead of six over 16 MB). The order is then
/// made in the words' own buffer.
fn order_by_prefix(
    indices: impl Iterator<Item = usize> + Clone,
    prefix: impl Fn(usize) -> u64,
    tie: Option<&dyn Fn(usize, usize) -> Ordering>,
) -> Vec<usize> {
    // The largest index (the last: they ascend) is noted in the same pass.
    let mut last = None;
    let mut words: Vec<u64> = indices
        .clone()
        .inspect(|i| last = Some(*i))
        .map(&prefix)
        .collect();
    let Some(last) = last else {
        return Vec::new();
    };
    let (all, any) = words
        .iter()
        .fold((u64::MAX, 0u64), |(all, any), p| (all & p, any | p));
    let varying = all ^ any;
    let (low, width) = match varying {
        0 => (0, 0),
        v => (
            v.trailing_zeros(),
            64 - v.leading_zeros() - v.trailing_zeros(),
        ),
    };
    let index_bits = usize::BITS - last.leading_zeros();
    if index_bits >= 64 || width + index_bits > 64 {
        let mut sorted: Vec<(u64, usize)> = words.into_iter().zip(indices).collect();
        sort_by_prefix(&mut sorted);
        if let Some(tie) = tie {
            sort_runs(
                &mut sorted,
                |p| p.0,
                |a, b| tie(a.1, b.1).then(a.1.cmp(&b.1)),
            );
        }
        return sorted.into_iter().map(|(_, i)| i).collect();
    }
    // Bits every prefix shares (above or below the varying ones) order nothing: dropped.
    for (w, i) in words.iter_mut().zip(indices) {
        *w = ((*w >> low) << index_bits) | i as u64;
    }
    sort_by_bits(&mut words, index_bits, index_bits + width);
    let index = |w: u64| (w & ((1u64 << index_bits) - 1)) as usize;
    if let Some(tie) = tie {
        sort_runs(
            &mut words,
            |w| w >> index_bits,
            |a, b| tie(index(*a), index(*b)).then(a.cmp(b)),
        );
    }
    words.into_iter().map(index).collect()
}

/// Sorts each run of adjacent items with one `run_key` by `cmp` (runs of one item are left).
fn sort_runs<T>(items: &mut [T], run_key: impl Fn(&T) -> u64, cmp: impl Fn(&T, &T) -> Ordering) {
    let mut start = 0;
    while start < items.len() {
        let run = run_key(&items[start]);
        let end = start
            + items[start..]
                .iter()
                .take_while(|s| run_key(s) == run)
                .count();
        if end - start > 1 {
            items[start..end].sort_unstable_by(&cmp);
        }
        start = end;
    }
}

/// Bits per digit of [`sort_by_bits`]: 2,048 counters, which stay in the CPU's first cache.
const DIGIT_BITS: u32 = 11;

/// Sorts `words` by their bits `from..to` (the others are ignored), ties in the order they
/// come: a least-significant-digit-first radix sort.
fn sort_by_bits(words: &mut Vec<u64>, from: u32, to: u32) {
    if to <= from {
        return;
    }
    if words.len() < RADIX_MIN {
        let mask = (u64::MAX >> (64 - (to - from))) << from;
        words.sort_by_key(|w| *w & mask);
        return;
    }
    let mut spare = vec![0u64; words.len()];
    let mut shift = from;
    while shift < to {
        let bits = DIGIT_BITS.min(to - shift);
        let digit = |w: u64| ((w >> shift) & ((1 << bits) - 1)) as usize;
        let mut starts = vec![0usize; 1 << bits];
        for w in words.iter() {
            starts[digit(*w)] += 1;
        }
        let mut at = 0;
        for slot in starts.iter_mut() {
            let count = *slot;
            *slot = at;
            at += count;
        }
        for &w in words.iter() {
            let d = digit(w);
            spare[starts[d]] = w;
            starts[d] += 1;
        }
        std::mem::swap(words, &mut spare);
        shift += bits;
    }
}

/// Below this many items a comparison sort beats a pass over 256 buckets.
const RADIX_MIN: usize = 256;

/// Sorts `(prefix, index)` pairs by prefix, ties in the order they come (indices ascending,
/// as the callers make them): a least-significant-byte-first radix sort that skips the bytes
/// every prefix shares. Group keys of one window differ in a few bytes (an integer key's low
/// bytes; the rest is the common prefix or padding), so this is two or three passes where a
/// comparison sort took a fifth of a HOP view's operator thread.
fn sort_by_prefix(items: &mut Vec<(u64, usize)>) {
    if items.len() < RADIX_MIN {
        items.sort_unstable();
        return;
    }
    let (all, any) = items
        .iter()
        .fold((u64::MAX, 0u64), |(all, any), (p, _)| (all & p, any | p));
    let varying = all ^ any;
    if varying == 0 {
        return; // one prefix: already in index order
    }
    let mut scratch = vec![(0u64, 0usize); items.len()];
    for shift in (0..64).step_by(8) {
        if (varying >> shift) & 0xFF == 0 {
            continue;
        }
        let mut starts = [0usize; 256];
        for (p, _) in items.iter() {
            starts[((p >> shift) & 0xFF) as usize] += 1;
        }
        let mut at = 0;
        for slot in starts.iter_mut() {
            let count = *slot;
            *slot = at;
            at += count;
        }
        for &item in items.iter() {
            let bucket = ((item.0 >> shift) & 0xFF) as usize;
            scratch[starts[bucket]] = item;
            starts[bucket] += 1;
        }
        std::mem::swap(items, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::state::RowCodec;

    /// A stream of pseudo-random numbers from `seed`.
    fn numbers(mut seed: u64) -> impl FnMut() -> usize {
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        }
    }

    /// The fast key order equals a plain sort: short keys, shared prefixes, duplicates.
    #[test]
    fn key_order_is_the_sorted_order() {
        let mut next = numbers(7);
        let codec = RowCodec::new(&[DataType::Utf8], "test").unwrap();
        let texts: StringArray = (0..3000)
            .map(|_| {
                let len = next() % 14;
                let tail: String = (0..len).map(|_| ['a', 'b', '\0'][next() % 3]).collect();
                Some(format!("key{tail}"))
            })
            .collect();
        let keys = GroupKeys::Rows(codec.encode(&[Arc::new(texts)]).unwrap());
        let mut expected: Vec<usize> = (0..keys.len()).collect();
        expected.sort_by(|a, b| keys.get(*a).cmp(keys.get(*b)).then(a.cmp(b)));
        assert_eq!(key_order(&keys), expected);
        assert!(key_order(&GroupKeys::Empty(0)).is_empty());
        // Integer keys (the radix sort's few varying bytes), shuffled, with repeats.
        let ints: Int64Array = (0..5000)
            .map(|i| Some(((i * 7919) % 4001) as i64 - 2000 + if i % 9 == 0 { 1 << 40 } else { 0 }))
            .collect();
        let codec = RowCodec::new(&[DataType::Int64], "test").unwrap();
        let keys = GroupKeys::Rows(codec.encode(&[Arc::new(ints)]).unwrap());
        let mut expected: Vec<usize> = (0..keys.len()).collect();
        expected.sort_by(|a, b| keys.get(*a).cmp(keys.get(*b)).then(a.cmp(b)));
        assert_eq!(key_order(&keys), expected);
        assert_eq!(key_order(&GroupKeys::Empty(3)), vec![0, 1, 2]);
    }

    /// Keys alike in the first eight bytes after their shared prefix but for a bit or two
    /// take the packed sort, and those alike in all eight are then ordered by their whole
    /// keys, NULL first.
    #[test]
    fn keys_tied_in_their_first_bytes_are_ordered_whole() {
        let mut next = numbers(3);
        for n in [100, 3000] {
            let texts: StringArray = (0..n)
                .map(|i| {
                    if i % 97 == 5 {
                        return None;
                    }
                    let tail: String = (0..next() % 6).map(|_| ['a', 'b'][next() % 2]).collect();
                    Some(format!("{}same-long-middle{tail}", ["x", "y"][next() % 2]))
                })
                .collect();
            let mut expected: Vec<usize> = (0..n).collect();
            expected.sort_by_key(|i| (texts.is_valid(*i).then(|| texts.value(*i)), *i));
            let column: ArrayRef = Arc::new(texts);
            assert_eq!(column_order(&column), Some(expected), "{n} keys");
        }
    }

    /// Read from a text or integer column, the order is the encoded keys' order: NULL first,
    /// then the values as Arrow's row format compares them.
    #[test]
    fn a_key_column_orders_as_its_encoded_keys() {
        let mut next = numbers(11);
        let encoded_order = |column: &ArrayRef| {
            let codec = RowCodec::new(&[column.data_type().clone()], "test").unwrap();
            let keys = GroupKeys::Rows(codec.encode(std::slice::from_ref(column)).unwrap());
            key_order(&keys)
        };
        for round in 0..20 {
            let n = [0, 1, 5, 300, 3000][round % 5];
            let with_null = round % 3 == 0;
            let texts: StringArray = (0..n)
                .map(|i| {
                    if with_null && i == n / 2 {
                        return None;
                    }
                    let len = next() % 20;
                    let tail: String = (0..len)
                        .map(|_| ['a', 'b', '\0', 'é', '\u{10FFFF}', 'z'][next() % 6])
                        .collect();
                    Some(format!("{}{tail}", ["user-", "", "user-0000"][round % 3]))
                })
                .collect();
            let ints: Int64Array = (0..n)
                .map(|i| {
                    if with_null && i == n / 3 {
                        return None;
                    }
                    let v = (next() as i64) << (next() % 40);
                    Some(if next().is_multiple_of(2) { -v } else { v })
                })
                .chain([Some(i64::MIN), Some(i64::MAX), Some(0), Some(-1)])
                .collect();
            let columns: [(&str, ArrayRef); 2] =
                [("text", Arc::new(texts)), ("ints", Arc::new(ints))];
            for (what, column) in columns {
                assert_eq!(
                    column_order(&column),
                    Some(encoded_order(&column)),
                    "{what} {round}"
                );
            }
        }
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.0, -1.0]));
        assert_eq!(
            column_order(&floats),
            None,
            "other types take the encoded keys"
        );
    }
}
