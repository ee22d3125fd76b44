//! Order-preserving keys: `name \0` prefixes and window starts.

/// `name \0` — the prefix of every key that belongs to one view or source.
pub fn window_key_prefix(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// A window start as eight bytes whose byte order is time order.
pub fn window_start_bytes(window_start: i64) -> [u8; 8] {
    ((window_start as u64) ^ (1 << 63)).to_be_bytes()
}

/// `name \0 start` with the window start encoded so byte order equals time order.
pub fn window_key(name: &str, window_start: i64) -> Vec<u8> {
    let mut key = window_key_prefix(name);
    key.extend_from_slice(&window_start_bytes(window_start));
    key
}

/// The window start stored in a key made by [`window_key`].
pub fn window_start_of_key(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some((u64::from_be_bytes(tail) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_sort_in_time_order() {
        let times = [-5_000i64, -1, 0, 1, 60_000, i64::MAX, i64::MIN];
        let mut keys: Vec<_> = times.iter().map(|t| window_key("v", *t)).collect();
        keys.sort();
        let decoded: Vec<i64> = keys
            .iter()
            .map(|k| window_start_of_key(k).unwrap())
            .collect();
        let mut expected = times.to_vec();
        expected.sort();
        assert_eq!(decoded, expected);
    }
}
