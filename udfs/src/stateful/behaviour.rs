//! `anomaly_score(entity, ts, ip, geo, event_type, failed)`: how unlike an entity's past
//! behaviour an event is, in [0, 1], scored before the event is learnt.
//!
//! The baseline of an entity counts the hours of day (UTC) it is active, the IPs, locations and
//! event types it shows, and how often its events fail. An event scores, for each of those,
//! how rare its value is for the entity (1 for a value never seen, 0 for the entity's most
//! frequent one; for failure: 1 - the entity's failure rate when the event failed, else 0),
//! and the score is their weighted sum (default weights hour 0.25, IP 0.30, location 0.20,
//! event type 0.15, failure 0.10). While an entity has fewer than [`LEARNING`] events its
//! score is 0. Each of IPs, locations and event types keeps at most [`VALUES`] values per
//! entity: a new value then replaces the rarest one.

use std::collections::HashMap;

use super::novelty::fnv1a;

/// Events an entity must have shown before it is scored.
pub const LEARNING: u64 = 100;

/// Distinct IPs, locations and event types kept per entity.
pub const VALUES: usize = 256;

/// Default weights of hour, IP, location, event type and failure.
pub const DEFAULT_WEIGHTS: [f64; 5] = [0.25, 0.30, 0.20, 0.15, 0.10];

/// Default score from which `is_anomalous` is true.
pub const DEFAULT_THRESHOLD: f64 = 0.7;

/// How often each value was seen, for at most [`VALUES`] values, and the largest count
/// (kept, not searched for at each event: that search was ~35% of a scored view's CPU).
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts(HashMap<u64, u32>, u32);

impl Counts {
    /// 1 for a value never seen, 0 for the most frequent one.
    fn rarity(&self, value: &str) -> f64 {
        let max = self.1;
        match self.0.get(&fnv1a(value.as_bytes())) {
            Some(count) if max > 0 => 1.0 - f64::from(*count) / f64::from(max),
            _ => 1.0,
        }
    }

    /// Counts `value` once more. The largest count never falls: only a rarest value is
    /// evicted, and while others remain none of them is below it.
    fn learn(&mut self, value: &str) {
        let hash = fnv1a(value.as_bytes());
        if let Some(count) = self.0.get_mut(&hash) {
            *count = count.saturating_add(1);
            self.1 = self.1.max(*count);
            return;
        }
        if self.0.len() >= VALUES {
            if let Some(rarest) = self
                .0
                .iter()
                .min_by_key(|(h, c)| (**c, **h))
                .map(|(h, _)| *h)
            {
                self.0.remove(&rarest);
            }
        }
        self.0.insert(hash, 1);
        self.1 = self.1.max(1);
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut entries: Vec<(&u64, &u32)> = self.0.iter().collect();
        entries.sort();
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (hash, count) in entries {
            out.extend_from_slice(&hash.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(take(bytes)?) as usize;
        let mut map = HashMap::with_capacity(len.min(VALUES));
        for _ in 0..len {
            map.insert(
                u64::from_le_bytes(take(bytes)?),
                u32::from_le_bytes(take(bytes)?),
            );
        }
        let max = map.values().copied().max().unwrap_or(0);
        Some(Self(map, max))
    }
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_at_checked(N)?;
    *bytes = rest;
    head.try_into().ok()
}

/// One event, as `anomaly_score` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Milliseconds since the epoch.
    pub ts_ms: i64,
    pub ip: Option<&'a str>,
    pub geo: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub failed: bool,
}

/// One entity's baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    events: u64,
    failures: u64,
    hours: [u32; 24],
    ips: Counts,
    geos: Counts,
    types: Counts,
}

impl Behaviour {
    /// Scores `event` against the baseline (0 while learning), then learns it.
    pub fn score_then_learn(&mut self, event: Event<'_>, weights: &[f64; 5]) -> f64 {
        let hour = event.ts_ms.div_euclid(3_600_000).rem_euclid(24) as usize;
        let score = if self.events < LEARNING {
            0.0
        } else {
            let busiest = self.hours.iter().copied().max().unwrap_or(0).max(1);
            let parts = [
                1.0 - f64::from(self.hours[hour]) / f64::from(busiest),
                event.ip.map_or(0.0, |v| self.ips.rarity(v)),
                event.geo.map_or(0.0, |v| self.geos.rarity(v)),
                event.event_type.map_or(0.0, |v| self.types.rarity(v)),
                if event.failed {
                    1.0 - self.failures as f64 / self.events as f64
                } else {
                    0.0
                },
            ];
            let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
            if total > 0.0 {
                let sum: f64 = parts.iter().zip(weights).map(|(p, w)| p * w.max(0.0)).sum();
                (sum / total).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        self.events += 1;
        self.failures += u64::from(event.failed);
        self.hours[hour] = self.hours[hour].saturating_add(1);
        for (counts, value) in [
            (&mut self.ips, event.ip),
            (&mut self.geos, event.geo),
            (&mut self.types, event.event_type),
        ] {
            if let Some(value) = value {
                counts.learn(value);
            }
        }
        score
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.events.to_le_bytes());
        out.extend_from_slice(&self.failures.to_le_bytes());
        for h in self.hours {
            out.extend_from_slice(&h.to_le_bytes());
        }
        self.ips.encode(out);
        self.geos.encode(out);
        self.types.encode(out);
    }

    pub fn decode(mut bytes: &[u8]) -> Option<Self> {
        let bytes = &mut bytes;
        let events = u64::from_le_bytes(take(bytes)?);
        let failures = u64::from_le_bytes(take(bytes)?);
        let mut hours = [0u32; 24];
        for h in &mut hours {
            *h = u32::from_le_bytes(take(bytes)?);
        }
        let behaviour = Self {
            events,
            failures,
            hours,
            ips: Counts::decode(bytes)?,
            geos: Counts::decode(bytes)?,
            types: Counts::decode(bytes)?,
        };
        bytes.is_empty().then_some(behaviour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(hour: i64, ip: &str, failed: bool) -> Event<'_> {
        Event {
            ts_ms: hour * 3_600_000,
            ip: Some(ip),
            geo: Some("NL"),
            event_type: Some("LOGIN"),
            failed,
        }
    }

    #[test]
    fn learns_for_a_hundred_events_then_scores_the_unusual_high() {
        let mut b = Behaviour::default();
        for i in 0..LEARNING {
            let score = b.score_then_learn(
                login(9 + (i as i64 % 8), "10.0.0.1", i % 10 == 0),
                &DEFAULT_WEIGHTS,
            );
            assert_eq!(score, 0.0);
        }
        let usual = b
            .clone()
            .score_then_learn(login(10, "10.0.0.1", false), &DEFAULT_WEIGHTS);
        let odd = Event {
            ts_ms: 3 * 3_600_000,
            ip: Some("203.0.113.9"),
            geo: Some("KP"),
            event_type: Some("ADMIN_GRANT"),
            failed: true,
        };
        let unusual = b.score_then_learn(odd, &DEFAULT_WEIGHTS);
        assert!(usual < 0.1, "{usual}");
        assert!(unusual >= DEFAULT_THRESHOLD, "{unusual}");
        assert!(unusual <= 1.0);
    }

    #[test]
    fn value_counts_are_bounded() {
        let mut b = Behaviour::default();
        for i in 0..(VALUES + 50) {
            b.score_then_learn(
                login(1, &format!("10.0.{}.{}", i / 256, i % 256), false),
                &DEFAULT_WEIGHTS,
            );
        }
        assert_eq!(b.ips.0.len(), VALUES);
    }

    #[test]
    fn the_kept_largest_count_is_the_largest_count() {
        let mut counts = Counts::default();
        for i in 0..(VALUES * 3) {
            // Skewed: a few values often, many once, so evictions happen.
            let value = if i % 3 == 0 {
                format!("hot{}", i % 4)
            } else {
                format!("v{i}")
            };
            counts.learn(&value);
            assert_eq!(counts.1, counts.0.values().copied().max().unwrap_or(0));
        }
        let mut bytes = Vec::new();
        counts.encode(&mut bytes);
        assert_eq!(Counts::decode(&mut bytes.as_slice()), Some(counts));
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut b = Behaviour::default();
        b.score_then_learn(login(3, "10.0.0.1", true), &DEFAULT_WEIGHTS);
        b.score_then_learn(login(4, "10.0.0.2", false), &DEFAULT_WEIGHTS);
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        assert_eq!(Behaviour::decode(&bytes), Some(b));
        assert_eq!(Behaviour::decode(&bytes[..bytes.len() - 1]), None);
    }
}
