//! Event-time watermarks: the largest event time seen, minus the declared delay.

use serde::{Deserialize, Serialize};

/// Tracks the watermark of one stream of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkTracker {
    pub max_event_time: Option<i64>,
    pub delay_ms: i64,
    /// Set once the input is finished: every window is then complete.
    pub finished: bool,
}

impl WatermarkTracker {
    pub fn new(delay_ms: i64) -> Self {
        Self {
            max_event_time: None,
            delay_ms,
            finished: false,
        }
    }

    /// Event time up to which windows are complete; `i64::MIN` before any event.
    pub fn watermark(&self) -> i64 {
        if self.finished {
            return i64::MAX;
        }
        self.max_event_time
            .map_or(i64::MIN, |t| t.saturating_sub(self.delay_ms))
    }

    pub fn observe(&mut self, event_time: i64) {
        if self.max_event_time.is_none_or(|m| event_time > m) {
            self.max_event_time = Some(event_time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_max_minus_delay_and_finishes_at_infinity() {
        let mut w = WatermarkTracker::new(5_000);
        assert_eq!(w.watermark(), i64::MIN);
        w.observe(10_000);
        w.observe(7_000);
        assert_eq!(w.watermark(), 5_000);
        w.finished = true;
        assert_eq!(w.watermark(), i64::MAX);
    }
}
