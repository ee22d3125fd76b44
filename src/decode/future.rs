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
}
