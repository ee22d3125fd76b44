//! The order of a window's groups by their stored keys (`view \0 window_start group_key`),
//! which a window's merge follows from the start: cache lookups, the merge's buffers and the
//! write set then go front to back, RocksDB's memtable inserts keys that arrive in order
//! several times faster, and row blocks need their rows in key order.

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
            // Flipping the sign bit orders signed values as unsigned ones.
            let mut sorted: Vec<(u64, usize)> = valid
                .map(|i| ((ints.value(i) as u64) ^ (1 << 63), i))
                .collect();
            sort_by_prefix(&mut sorted);
            sorted.into_iter().map(|(_, i)| i).collect()
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
/// an integer (a radix sort, [`sort_by_prefix`]), then compare whole keys only among those that
/// tie there. The order is made in the sorted pairs' own buffer.
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
    let mut sorted: Vec<(u64, usize)> = indices
        .map(|i| {
            let k = key(i);
            let tail = &k[common.min(k.len())..];
            let len = tail.len().min(8);
            let mut b = [0u8; 8];
            b[..len].copy_from_slice(&tail[..len]);
            (u64::from_be_bytes(b), i)
        })
        .collect();
    sort_by_prefix(&mut sorted);
    let mut start = 0;
    while start < sorted.len() {
        let tie = sorted[start].0;
        let end = start + sorted[start..].iter().take_while(|s| s.0 == tie).count();
        if end - start > 1 {
            sorted[start..end].sort_unstable_by(|a, b| key(a.1).cmp(key(b.1)).then(a.1.cmp(&b.1)));
        }
        start = end;
    }
    sorted.into_iter().map(|(_, i)| i).collect()
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
