//! Brokers that answer a fetch at once even when it finds nothing.
//!
//! A Kafka broker holds a fetch that finds nothing new for up to `fetch.wait.max.ms`, so a
//! consumer that has read everything sends a request or two a second. Some Kafka-protocol
//! brokers answer at once instead (noida-db, the broker process our tests use, does), and
//! librdkafka then fetches again at once: a partition read to its end costs a core in the
//! client and another in the broker. Measured here: ~13,000 empty fetches a second, from the
//! moment a partition's prefetched queue falls below `queued.min.messages` while nothing is
//! left on the broker.
//!
//! The client's statistics tell such a broker apart: many fetches a second that bring almost
//! no bytes ([`FetchRate`]); the source says so once in its log, since it explains a caught-up
//! Weir that keeps two cores busy. Weir does not work around it: pausing caught-up
//! partitions between fetches was tried and left out, because librdkafka then sent the
//! resumed partitions' fetches late (new messages took 0.4–16 s to arrive in a test against
//! the mock cluster), and once the broker's own background work was kept out of the
//! benchmark the loop cost the Kafka HOP run nothing measurable (0.80–0.88 of read+decode
//! with and without).

use std::time::Instant;

/// Fetch responses a second above which a broker may be answering at once...
const EAGER_FETCHES_PER_SECOND: f64 = 200.0;
/// ...when they bring fewer bytes than this each, on average (an empty answer is a few
/// dozen bytes per partition; a fetch that brings messages brings kilobytes).
const EMPTY_FETCH_BYTES: f64 = 1024.0;

/// Tells, from successive statistics, whether the brokers answer empty fetches at once.
#[derive(Debug, Default)]
pub(super) struct FetchRate {
    /// When the previous statistics came, with their fetch count and received bytes.
    last: Option<(Instant, i64, i64)>,
}

impl FetchRate {
    /// Takes one statistics' totals over all brokers: fetch requests answered and bytes
    /// received. True when, since the previous statistics, fetches came fast and nearly empty.
    pub(super) fn answers_at_once(&mut self, now: Instant, fetches: i64, bytes: i64) -> bool {
        let previous = self.last.replace((now, fetches, bytes));
        let Some((at, fetches_then, bytes_then)) = previous else {
            return false;
        };
        let seconds = now.duration_since(at).as_secs_f64();
        let fetched = (fetches - fetches_then) as f64;
        if seconds <= 0.0 || fetched <= 0.0 {
            return false;
        }
        fetched / seconds > EAGER_FETCHES_PER_SECOND
            && ((bytes - bytes_then) as f64) / fetched < EMPTY_FETCH_BYTES
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn many_nearly_empty_fetches_a_second_mean_a_broker_that_answers_at_once() {
        let t0 = Instant::now();
        let second = |s: u64| t0 + Duration::from_secs(s);
        let mut rate = FetchRate::default();
        assert!(
            !rate.answers_at_once(t0, 10, 1_000),
            "nothing to compare with"
        );
        // A waiting broker: two fetches a second.
        assert!(!rate.answers_at_once(second(1), 12, 1_100));
        // Data flowing: many fetches, each bringing a megabyte.
        assert!(!rate.answers_at_once(second(2), 1_012, 1_000_001_100));
        // Thousands of fetches of a hundred bytes.
        assert!(rate.answers_at_once(second(3), 14_012, 1_001_301_100));
        // Nothing fetched at all (no partition assigned).
        assert!(!rate.answers_at_once(second(4), 14_012, 1_001_301_100));
    }
}
