//! Event-time watermarks: the largest event time seen, minus the declared delay.
//!
//! A source with several splits read in parallel (Kafka partitions) keeps one maximum per
//! split; its watermark is the minimum over splits that are not idle, so a slow partition
//! holds windows open instead of making its rows late. Sequential sources (files, the
//! generator) use one split, 0.
//!
//! The watermark never goes back: windows it closed stay closed. When an idle split wakes up
//! with older events, it holds the watermark where it is (no further advance until it
//! catches up), and its rows older than the watermark are late.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Tracks the watermark of one stream of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkTracker {
    /// Largest event time seen in each split.
    pub max_event_time: BTreeMap<u32, i64>,
    /// Splits known to exist that have not produced an event yet (they hold the watermark).
    pub pending: BTreeSet<u32>,
    /// Splits left out of the minimum because they have been silent too long.
    pub idle: BTreeSet<u32>,
    pub delay_ms: i64,
    /// Set once the input is finished: every window is then complete.
    pub finished: bool,
    /// The highest watermark reached so far; the watermark never falls below it.
    #[serde(default = "lowest")]
    pub reached: i64,
}

fn lowest() -> i64 {
    i64::MIN
}

impl WatermarkTracker {
    pub fn new(delay_ms: i64) -> Self {
        Self {
            max_event_time: BTreeMap::new(),
            pending: BTreeSet::new(),
            idle: BTreeSet::new(),
            delay_ms,
            finished: false,
            reached: i64::MIN,
        }
    }

    /// The minimum of the per-split maxima over active splits other than `except`:
    /// `None` when no other split constrains it, `Some(i64::MIN)` when one has no event yet.
    fn min_of_others(&self, except: Option<u32>) -> Option<i64> {
        let pending = self
            .pending
            .iter()
            .filter(|s| Some(**s) != except && !self.idle.contains(s))
            .map(|_| i64::MIN);
        let seen = self
            .max_event_time
            .iter()
            .filter(|(s, _)| Some(**s) != except && !self.idle.contains(s))
            .map(|(_, t)| *t);
        pending.chain(seen).min()
    }

    fn apply_delay(&self, time: i64) -> i64 {
        if time == i64::MIN {
            i64::MIN
        } else {
            time.saturating_sub(self.delay_ms)
        }
    }

    /// Event time up to which windows are complete; `i64::MIN` before any event.
    pub fn watermark(&self) -> i64 {
        if self.finished {
            return i64::MAX;
        }
        self.computed().max(self.reached)
    }

    /// The watermark from the splits as they are now, before the floor of `reached`.
    fn computed(&self) -> i64 {
        match self.min_of_others(None) {
            Some(t) => self.apply_delay(t),
            // Every split idle: nothing holds the watermark back.
            None => self
                .max_event_time
                .values()
                .max()
                .map_or(i64::MIN, |t| self.apply_delay(*t)),
        }
    }

    /// The watermark ignoring `finished`, for display: `None` before any event.
    pub fn current(&self) -> Option<i64> {
        if self.max_event_time.is_empty() {
            return None;
        }
        let finished = Self {
            finished: false,
            ..self.clone()
        };
        Some(finished.watermark()).filter(|w| *w != i64::MIN)
    }

    /// Observes one event of `split`.
    pub fn observe(&mut self, split: u32, event_time: i64) {
        self.split(split).observe(event_time);
    }

    /// A view for observing many events of one split cheaply: the other splits' minimum is
    /// computed once. Dropping it stores the split's new maximum.
    pub fn split(&mut self, split: u32) -> SplitWatermark<'_> {
        self.pending.remove(&split);
        self.idle.remove(&split);
        SplitWatermark {
            others: self.min_of_others(Some(split)),
            own: self.max_event_time.get(&split).copied(),
            split,
            tracker: self,
        }
    }

    /// Declares the splits the source has now and which of them are idle.
    pub fn set_splits(&mut self, known: impl IntoIterator<Item = (u32, bool)>) {
        self.idle.clear();
        for (split, idle) in known {
            if !self.max_event_time.contains_key(&split) {
                self.pending.insert(split);
            }
            if idle {
                self.idle.insert(split);
            }
        }
        self.reached = self.reached.max(self.computed());
    }
}

/// Observes the events of one split; see [`WatermarkTracker::split`].
pub struct SplitWatermark<'a> {
    tracker: &'a mut WatermarkTracker,
    split: u32,
    others: Option<i64>,
    own: Option<i64>,
}

impl SplitWatermark<'_> {
    /// The watermark as it stands now.
    pub fn watermark(&self) -> i64 {
        if self.tracker.finished {
            return i64::MAX;
        }
        let own = self.own.unwrap_or(i64::MIN);
        let t = self.others.map_or(own, |o| o.min(own));
        self.tracker.apply_delay(t).max(self.tracker.reached)
    }

    pub fn observe(&mut self, event_time: i64) {
        if self.own.is_none_or(|m| event_time > m) {
            self.own = Some(event_time);
        }
    }
}

impl Drop for SplitWatermark<'_> {
    fn drop(&mut self) {
        if let Some(own) = self.own {
            self.tracker.max_event_time.insert(self.split, own);
        }
        self.tracker.reached = self.tracker.reached.max(self.tracker.computed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_max_minus_delay_and_finishes_at_infinity() {
        let mut w = WatermarkTracker::new(5_000);
        assert_eq!(w.watermark(), i64::MIN);
        w.observe(0, 10_000);
        w.observe(0, 7_000);
        assert_eq!(w.watermark(), 5_000);
        w.finished = true;
        assert_eq!(w.watermark(), i64::MAX);
        assert_eq!(w.current(), Some(5_000));
    }

    #[test]
    fn slowest_active_split_holds_the_watermark() {
        let mut w = WatermarkTracker::new(1_000);
        w.set_splits([(0, false), (1, false), (2, false)]);
        w.observe(0, 50_000);
        w.observe(1, 20_000);
        // Split 2 has produced nothing yet: no window may close.
        assert_eq!(w.watermark(), i64::MIN);
        w.set_splits([(0, false), (1, false), (2, true)]);
        assert_eq!(w.watermark(), 19_000);
        {
            let mut s = w.split(1);
            assert_eq!(s.watermark(), 19_000);
            s.observe(60_000);
            assert_eq!(s.watermark(), 49_000);
        }
        assert_eq!(w.watermark(), 49_000);
        // Split 2 wakes up with old events: the watermark does not go back (windows it
        // closed stay closed), and split 2 holds it until it catches up.
        w.observe(2, 30_000);
        assert_eq!(w.watermark(), 49_000);
        assert_eq!(w.split(2).watermark(), 49_000);
        w.observe(0, 80_000);
        w.observe(1, 80_000);
        assert_eq!(w.watermark(), 49_000);
        w.observe(2, 70_000);
        assert_eq!(w.watermark(), 69_000);
        w.set_splits([(0, true), (1, true), (2, true)]);
        assert_eq!(w.watermark(), 79_000);
    }
}
