//! The guard against event times far in the future: one record with an absurd time (say
//! microseconds read as milliseconds) would otherwise push the watermark years ahead and make
//! every later row late. A row more than `max_future` ahead of its split's watermark (and, for
//! a live source, of the wall clock) becomes a dead letter and does not move the watermark.

use std::collections::BTreeMap;

/// `max_future` when the option is not given: live sources (Kafka, followed files).
pub const DEFAULT_MAX_FUTURE_LIVE_MS: i64 = 24 * 3_600_000;
/// `max_future` when the option is not given: files read once (history, where quiet gaps of
/// days are normal and the wall clock says nothing).
pub const DEFAULT_MAX_FUTURE_BOUNDED_MS: i64 = 365 * 24 * 3_600_000;

/// Decides row by row whether an event time is admitted; remembers the largest admitted
/// time per split.
#[derive(Debug, Clone)]
pub struct FutureGuard {
    max_future_ms: i64,
    delay_ms: i64,
    /// Live sources are also bounded by the wall clock.
    live: bool,
    /// Whether each split has its own watermark (Kafka); otherwise every split counts as 0.
    per_split: bool,
    max_event_time: BTreeMap<u32, i64>,
}

fn show(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339())
}

impl FutureGuard {
    /// A guard that starts from the largest event time already seen in each split.
    pub fn new(
        max_future_ms: i64,
        delay_ms: i64,
        live: bool,
        per_split: bool,
        seen: impl IntoIterator<Item = (u32, i64)>,
    ) -> Self {
        Self {
            max_future_ms,
            delay_ms,
            live,
            per_split,
            max_event_time: seen.into_iter().collect(),
        }
    }

    /// Whether every one of `times` (ms, rows of `split` in order) is admitted, decided at
    /// once: they are when none is ahead of the limit that holds before the first of them,
    /// since admitting a row never lowers the limit for the rows after it. Then they count
    /// as admitted; otherwise nothing changes and each row goes through [`Self::admit`].
    pub fn admits_all(&mut self, split: u32, times: &[i64], now_ms: i64) -> bool {
        let split = if self.per_split { split } else { 0 };
        let Some(max) = times.iter().copied().max() else {
            return true;
        };
        let watermark = self
            .max_event_time
            .get(&split)
            .map(|m| m.saturating_sub(self.delay_ms));
        let reference = match watermark {
            Some(w) if self.live => w.max(now_ms),
            Some(w) => w,
            None if self.live => now_ms,
            // The first time of a split sets the limit: row by row.
            None => return false,
        };
        if max > reference.saturating_add(self.max_future_ms) {
            return false;
        }
        let seen = self.max_event_time.entry(split).or_insert(max);
        *seen = (*seen).max(max);
        true
    }

    /// `Err(reason)` when `time` (ms) of a row of `split` is too far ahead; otherwise the row
    /// is admitted and counts for the rows after it. `now_ms` is the wall clock.
    pub fn admit(&mut self, split: u32, time: i64, now_ms: i64) -> Result<(), String> {
        let split = if self.per_split { split } else { 0 };
        let watermark = self
            .max_event_time
            .get(&split)
            .map(|m| m.saturating_sub(self.delay_ms));
        let (reference, what) = match watermark {
            Some(w) if !self.live || w >= now_ms => (w, "the watermark"),
            _ if self.live => (now_ms, "the wall clock"),
            _ => (i64::MIN, ""),
        };
        if reference != i64::MIN && time > reference.saturating_add(self.max_future_ms) {
            return Err(format!(
                "event time {} is more than max_future ({} s) ahead of {what} ({})",
                show(time),
                self.max_future_ms / 1000,
                show(reference)
            ));
        }
        let max = self.max_event_time.entry(split).or_insert(time);
        *max = (*max).max(time);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_time_far_ahead_of_the_watermark_is_refused_and_does_not_count() {
        let mut g = FutureGuard::new(DAY, 5_000, false, false, []);
        assert!(g.admit(0, 10 * DAY, 0).is_ok());
        let err = g.admit(3, 10 * DAY * 1000, 0).unwrap_err();
        assert!(err.contains("ahead of the watermark"), "{err}");
        // The refused row did not move the reference: the next normal row is fine.
        assert!(g.admit(0, 10 * DAY + 1_000, 0).is_ok());
        assert!(g.admit(0, 11 * DAY - 10_000, 0).is_ok());
    }

    #[test]
    fn live_sources_are_bounded_by_the_wall_clock_even_before_any_row() {
        let now = 20_000 * DAY;
        let mut g = FutureGuard::new(DAY, 0, true, true, []);
        assert!(g.admit(1, now + 2 * DAY, now).is_err());
        assert!(g.admit(1, now - 100 * DAY, now).is_ok());
        // A quiet spell longer than max_future does not lock a live split out.
        assert!(g.admit(1, now + DAY / 2, now).is_ok());
        // Each split has its own watermark.
        let mut g = FutureGuard::new(DAY, 0, false, true, [(0, 50 * DAY)]);
        assert!(g.admit(0, 52 * DAY, 0).is_err());
        assert!(g.admit(1, 52 * DAY, 0).is_ok());
    }

    /// A batch admitted at once is admitted row by row too, and leaves the guard as rows
    /// admitted one by one do; a batch it does not admit at once leaves the guard unchanged.
    #[test]
    fn deciding_a_batch_at_once_agrees_with_row_by_row() {
        let mut at = 0x5eed_u64;
        let mut next = move || {
            at += 1;
            (crate::source::generator::mix(at) >> 33) as i64
        };
        let (mut at_once, mut row_by_row) = (0, 0);
        for case in 0..2_000 {
            let (live, per_split) = (case % 2 == 0, case % 3 == 0);
            let seen: Vec<(u32, i64)> = match case % 4 {
                0 => vec![],
                _ => vec![(0, 100 * DAY + next() % DAY)],
            };
            let now = 100 * DAY + next() % (2 * DAY);
            let mut batch_guard = FutureGuard::new(DAY, 5_000, live, per_split, seen.clone());
            let mut row_guard = FutureGuard::new(DAY, 5_000, live, per_split, seen);
            for _ in 0..4 {
                let split = (next() % 2) as u32;
                let times: Vec<i64> = (0..1 + next() % 6)
                    .map(|_| 100 * DAY + next() % (3 * DAY) - DAY / 2)
                    .collect();
                let before = batch_guard.max_event_time.clone();
                let all = batch_guard.admits_all(split, &times, now);
                if !all {
                    assert_eq!(batch_guard.max_event_time, before);
                    for &t in &times {
                        let _ = batch_guard.admit(split, t, now);
                    }
                }
                let admitted: Vec<bool> = times
                    .iter()
                    .map(|&t| row_guard.admit(split, t, now).is_ok())
                    .collect();
                if all {
                    assert!(admitted.iter().all(|a| *a), "{times:?}");
                    at_once += 1;
                } else {
                    row_by_row += 1;
                }
                assert_eq!(batch_guard.max_event_time, row_guard.max_event_time);
            }
        }
        assert!(
            at_once > 1_000 && row_by_row > 1_000,
            "{at_once} {row_by_row}"
        );
    }
}
