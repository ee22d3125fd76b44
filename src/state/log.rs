//! Append-only logs kept for people to inspect — dead letters, late rows — bounded by count
//! and by age.
//!
//! An entry's key is `owner \0 seq` with `seq` big-endian, so the oldest entries come first;
//! the owner's progress remembers the first kept `seq` (the floor). Trimming moves the floor
//! and deletes everything below it with one range delete, in the same write as the epoch.

use std::ops::ControlFlow;

use super::{window_key_prefix, StateError, Store, Table, WriteSet};

/// How much of each log to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Entries kept per source or view.
    pub max_rows: u64,
    /// Entries older than this (by the wall clock when they were written) are dropped.
    pub max_age_ms: i64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            max_age_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// The key of entry `seq` of `owner`'s log.
pub fn log_key(owner: &str, seq: u64) -> Vec<u8> {
    let mut key = window_key_prefix(owner);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// One log to trim: entries `floor..next` of `owner` in `table`.
pub struct Log<'a> {
    pub table: Table,
    pub owner: &'a str,
    pub floor: &'a mut u64,
    pub next: u64,
}

impl Log<'_> {
    /// Drops entries beyond `limits.max_rows` (in steps of a tenth of it, so a trim is one
    /// range delete per many epochs) and, when `now_ms` is given, entries written before
    /// `now_ms - limits.max_age_ms` (`written_at` reads an entry's time). Returns how many
    /// entries were dropped.
    pub fn trim(
        self,
        store: &Store,
        ws: &mut WriteSet,
        limits: LogLimits,
        now_ms: Option<i64>,
        written_at: impl Fn(&[u8]) -> i64,
    ) -> Result<u64, StateError> {
        let mut floor = *self.floor;
        if self.next.saturating_sub(floor) > limits.max_rows + limits.max_rows / 10 {
            floor = self.next - limits.max_rows;
        }
        if let Some(now) = now_ms {
            let cutoff = now.saturating_sub(limits.max_age_ms);
            store.read_view().for_each_in(
                self.table,
                &log_key(self.owner, floor),
                &log_key(self.owner, self.next),
                |_, value| {
                    if written_at(value) < cutoff {
                        floor += 1;
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    }
                },
            )?;
        }
        if floor <= *self.floor {
            return Ok(0);
        }
        ws.delete_range(
            self.table,
            log_key(self.owner, *self.floor),
            log_key(self.owner, floor),
        );
        let dropped = floor - *self.floor;
        *self.floor = floor;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(store: &Store, owner: &str, seqs: std::ops::Range<u64>, at: i64) {
        let mut ws = WriteSet::default();
        for seq in seqs {
            ws.put(Table::DeadLetters, log_key(owner, seq), at.to_be_bytes());
        }
        store.write(&ws).unwrap();
    }

    fn count(store: &Store, owner: &str) -> usize {
        store
            .scan_prefix(Table::DeadLetters, &window_key_prefix(owner))
            .unwrap()
            .len()
    }

    #[test]
    fn logs_are_trimmed_by_count_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = |v: &[u8]| i64::from_be_bytes(v.try_into().unwrap());
        let limits = LogLimits {
            max_rows: 100,
            max_age_ms: 1_000,
        };
        write(&store, "s", 0..105, 5_000);
        write(&store, "t", 0..3, 0);
        let mut floor = 0;
        let trim = |floor: &mut u64, next: u64, now: Option<i64>| {
            let mut ws = WriteSet::default();
            let log = Log {
                table: Table::DeadLetters,
                owner: "s",
                floor,
                next,
            };
            let dropped = log.trim(&store, &mut ws, limits, now, at).unwrap();
            store.write(&ws).unwrap();
            dropped
        };
        // Within a tenth over the limit: nothing yet.
        assert_eq!(trim(&mut floor, 105, None), 0);
        write(&store, "s", 105..120, 5_500);
        assert_eq!(trim(&mut floor, 120, None), 20);
        assert_eq!((floor, count(&store, "s")), (20, 100));
        // By age: entries written at 5,000 are older than 6,200 - 1,000; those at 5,500 stay.
        assert_eq!(trim(&mut floor, 120, Some(6_200)), 85);
        assert_eq!((floor, count(&store, "s")), (105, 15));
        // Other owners are untouched.
        assert_eq!(count(&store, "t"), 3);
    }
}
