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

use super::novelty::stable_hash;

/// Events an entity must have shown before it is scored.
pub const LEARNING: u64 = 100;

/// Distinct IPs, locations and event types kept per entity.
pub const VALUES: usize = 256;

/// Default weights of hour, IP, location, event type and failure.
pub const DEFAULT_WEIGHTS: [f64; 5] = [0.25, 0.30, 0.20, 0.15, 0.10];

/// Default score from which `is_anomalous` is true.
pub const DEFAULT_THRESHOLD: f64 = 0.7;

/// How many of the rarest values [`Counts`] keeps in order, for evictions to come.
const RARE_KEPT: usize = 32;

/// How often each value was seen, for at most [`VALUES`] values, and the largest count
/// (kept, not searched for at each event: that search was ~35% of a scored view's CPU).
///
/// The counts are (hash, count) pairs in hash order, found by binary search. Most entities
/// show a handful of values: a short sorted list costs one allocation, is encoded as it is,
/// and is read back without hashing, where a hash map per value kind cost an allocation each
/// (three per entity) and a sort at every encode, and was most of a scored view's CPU at a
/// million entities (each event there loads, scores and writes back an entity).
///
/// A full list evicts its rarest value, the smallest (count, hash). Scanning for it at each
/// new value was a third of a scored view's CPU once entities reached the cap, so a full list
/// keeps its rarest values in order ([`Rarest`]). That order is not stored: a decoded list
/// rebuilds it at its first eviction and evicts exactly what the original would have.
#[derive(Debug, Clone, Default)]
struct Counts {
    counts: CountList,
    max: u32,
    /// Only once the list is full (most entities never fill it).
    rarest: Option<Box<Rarest>>,
}

/// (hash, count) pairs, the first two inline: the value kinds that most entities show once or
/// twice (a location, an event type) cost no allocation and no pointer to follow (at a
/// million entities, each event's entity is cold in the CPU's caches, and each list behind a
/// pointer was one more miss).
type CountList = smallvec::SmallVec<[(u64, u32); 2]>;

/// `floor`, the smallest count of a list, and `hashes`, up to [`RARE_KEPT`] values at that
/// count with the smallest hashes, largest first: every value at `floor` whose hash is at
/// most `cutoff` is in `hashes`, so its last is the one to evict. Counts only grow, so an
/// entry whose count rose is skipped when it comes up; when none is left it is rebuilt.
#[derive(Debug, Clone, Default)]
struct Rarest {
    floor: u32,
    hashes: Vec<u64>,
    cutoff: u64,
}

impl PartialEq for Counts {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts && self.max == other.max
    }
}

/// Where `hash` is in `counts` (Ok), or where it would go (Err).
fn position(counts: &[(u64, u32)], hash: u64) -> Result<usize, usize> {
    counts.binary_search_by_key(&hash, |(h, _)| *h)
}

impl Counts {
    /// 1 for a value never seen, 0 for the most frequent one; `hash` is the value's
    /// [`stable_hash`].
    fn rarity(&self, hash: u64) -> f64 {
        let max = self.max;
        match position(&self.counts, hash) {
            Ok(i) if max > 0 => 1.0 - f64::from(self.counts[i].1) / f64::from(max),
            _ => 1.0,
        }
    }

    /// Counts `value` once more.
    #[cfg(test)]
    fn learn(&mut self, value: &str) {
        self.learn_hash(stable_hash(value.as_bytes()));
    }

    /// Counts the value of `hash` once more. The largest count never falls: only a rarest
    /// value is evicted, and while others remain none of them is below it.
    fn learn_hash(&mut self, hash: u64) {
        let at = match position(&self.counts, hash) {
            Ok(i) => {
                let count = &mut self.counts[i].1;
                *count = count.saturating_add(1);
                self.max = self.max.max(*count);
                return;
            }
            Err(at) => at,
        };
        if self.counts.len() >= VALUES {
            let rarest = self.rarest.get_or_insert_with(Box::default);
            rarest.evict(&mut self.counts);
            let at = position(&self.counts, hash).unwrap_or_else(|at| at);
            self.counts.insert(at, (hash, 1));
            rarest.add_new(hash);
        } else {
            self.counts.insert(at, (hash, 1));
        }
        self.max = self.max.max(1);
    }

    /// The number of values, then each value's hash (eight bytes) and count, in hash order.
    fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.counts.len() as u64);
        for (hash, count) in &self.counts {
            out.extend_from_slice(&hash.to_le_bytes());
            put_varint(out, u64::from(*count));
        }
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        let len = usize::try_from(take_varint(bytes)?).ok()?;
        if len > VALUES {
            return None;
        }
        let mut counts = CountList::with_capacity(len);
        for _ in 0..len {
            let hash = u64::from_le_bytes(take(bytes)?);
            let count = u32::try_from(take_varint(bytes)?).ok()?;
            if count == 0 || counts.last().is_some_and(|(last, _)| *last >= hash) {
                return None;
            }
            counts.push((hash, count));
        }
        let max = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
        Some(Self {
            counts,
            max,
            rarest: None,
        })
    }
}

impl Rarest {
    /// Removes the value of `counts` with the smallest (count, hash).
    fn evict(&mut self, counts: &mut CountList) {
        loop {
            while let Some(hash) = self.hashes.pop() {
                if let Ok(i) = position(counts, hash) {
                    if counts[i].1 == self.floor {
                        counts.remove(i);
                        return;
                    }
                }
            }
            if counts.is_empty() {
                return;
            }
            self.rebuild(counts);
        }
    }

    fn rebuild(&mut self, counts: &[(u64, u32)]) {
        self.floor = counts.iter().map(|(_, c)| *c).min().unwrap_or(0);
        let floor = self.floor;
        // In hash order already: the smallest hashes at the floor, largest first.
        let mut hashes: Vec<u64> = counts
            .iter()
            .filter(|(_, c)| *c == floor)
            .map(|(h, _)| *h)
            .take(RARE_KEPT + 1)
            .collect();
        let dropped = hashes.len() > RARE_KEPT;
        hashes.truncate(RARE_KEPT);
        hashes.reverse();
        self.cutoff = match (dropped, hashes.first()) {
            (true, Some(largest)) => *largest,
            _ => u64::MAX,
        };
        self.hashes = hashes;
    }

    /// The full list took `hash` with count 1 (after an eviction, which built `self`).
    fn add_new(&mut self, hash: u64) {
        if self.floor != 1 {
            // Every other value was seen more often.
            self.floor = 1;
            self.hashes.clear();
            self.hashes.push(hash);
            self.cutoff = u64::MAX;
            return;
        }
        if hash > self.cutoff {
            // Left out with the others above the cutoff, until a rebuild.
            return;
        }
        let at = self.hashes.partition_point(|h| *h > hash);
        self.hashes.insert(at, hash);
        if self.hashes.len() > RARE_KEPT {
            self.hashes.remove(0);
            self.cutoff = self.hashes[0];
        }
    }
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_at_checked(N)?;
    *bytes = rest;
    head.try_into().ok()
}

/// Appends `n` in LEB128: seven bits a byte, low first (most counts take one byte).
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let [b] = take::<1>(bytes)?;
        if shift == 63 && b > 1 {
            // Past 64 bits: not a value this form writes.
            return None;
        }
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(n);
        }
    }
    None
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
        // Each value is hashed once, for its rarity and for learning it.
        let hash = |v: Option<&str>| v.map(|v| stable_hash(v.as_bytes()));
        let (ip, geo, event_type) = (hash(event.ip), hash(event.geo), hash(event.event_type));
        let score = if self.events < LEARNING {
            0.0
        } else {
            let busiest = self.hours.iter().copied().max().unwrap_or(0).max(1);
            let parts = [
                1.0 - f64::from(self.hours[hour]) / f64::from(busiest),
                ip.map_or(0.0, |h| self.ips.rarity(h)),
                geo.map_or(0.0, |h| self.geos.rarity(h)),
                event_type.map_or(0.0, |h| self.types.rarity(h)),
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
        self.events = self.events.saturating_add(1);
        self.failures = self.failures.saturating_add(u64::from(event.failed));
        self.hours[hour] = self.hours[hour].saturating_add(1);
        for (counts, hash) in [
            (&mut self.ips, ip),
            (&mut self.geos, geo),
            (&mut self.types, event_type),
        ] {
            if let Some(hash) = hash {
                counts.learn_hash(hash);
            }
        }
        score
    }

    /// The stored form: events and failures, the hours of day as a 24-bit mask of those
    /// seen then each one's count, then the IPs', locations' and event types' counts; every
    /// number but the value hashes as a varint. An entity of a few events takes ~70 bytes
    /// (the fixed-width form before took ~210, written back at every epoch that touched it).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.events);
        put_varint(out, self.failures);
        let mask = self
            .hours
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .fold(0u32, |mask, (h, _)| mask | 1 << h);
        out.extend_from_slice(&mask.to_le_bytes()[..3]);
        for n in self.hours.iter().filter(|n| **n > 0) {
            put_varint(out, u64::from(*n));
        }
        self.ips.encode(out);
        self.geos.encode(out);
        self.types.encode(out);
    }

    pub fn decode(mut bytes: &[u8]) -> Option<Self> {
        let bytes = &mut bytes;
        let events = take_varint(bytes)?;
        let failures = take_varint(bytes)?;
        let [m0, m1, m2] = take::<3>(bytes)?;
        let mask = u32::from_le_bytes([m0, m1, m2, 0]);
        let mut hours = [0u32; 24];
        for (h, n) in hours.iter_mut().enumerate() {
            if mask & 1 << h != 0 {
                *n = u32::try_from(take_varint(bytes)?).ok()?;
            }
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
        assert_eq!(b.ips.counts.len(), VALUES);
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
            assert_eq!(
                counts.max,
                counts.counts.iter().map(|(_, c)| *c).max().unwrap_or(0)
            );
            assert!(counts.counts.windows(2).all(|w| w[0].0 < w[1].0));
        }
        let mut bytes = Vec::new();
        counts.encode(&mut bytes);
        assert_eq!(Counts::decode(&mut bytes.as_slice()), Some(counts));
    }

    /// What the map evicted before it kept its rarest values: a scan for the smallest
    /// (count, hash).
    fn evict_by_scan(counts: &mut std::collections::BTreeMap<u64, u32>, value: &str) {
        let hash = stable_hash(value.as_bytes());
        if let Some(c) = counts.get_mut(&hash) {
            *c += 1;
            return;
        }
        if counts.len() >= VALUES {
            let rarest = counts
                .iter()
                .min_by_key(|(h, c)| (**c, **h))
                .map(|(h, _)| *h);
            counts.remove(&rarest.unwrap());
        }
        counts.insert(hash, 1);
    }

    #[test]
    fn evicts_the_smallest_count_then_hash_like_a_scan_and_after_a_round_trip() {
        let mut counts = Counts::default();
        let mut scanned = std::collections::BTreeMap::new();
        let mut state = 7u64;
        for i in 0..20_000u64 {
            // A few hot values, some warm ones, and a long tail seen once.
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = state >> 33;
            let value = match r % 10 {
                0..=2 => format!("hot{}", r % 5),
                3..=4 => format!("warm{}", r % 300),
                _ => format!("tail{i}"),
            };
            counts.learn(&value);
            evict_by_scan(&mut scanned, &value);
            if i % 997 == 0 {
                // A restart: the decoded map must evict as the original would have.
                let mut bytes = Vec::new();
                counts.encode(&mut bytes);
                counts = Counts::decode(&mut bytes.as_slice()).unwrap();
            }
            let kept: std::collections::BTreeMap<u64, u32> =
                counts.counts.iter().map(|(h, c)| (*h, *c)).collect();
            assert_eq!(kept, scanned, "after value {i}");
        }
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

    #[test]
    fn large_counts_round_trip_and_a_few_events_take_few_bytes() {
        let mut b = Behaviour::default();
        for i in 0..3 {
            b.score_then_learn(login(i, &format!("10.0.0.{i}"), i == 1), &DEFAULT_WEIGHTS);
        }
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        // 3 IPs, 1 location, 1 type: 5 hashes of 8 bytes and a few bytes of counts.
        assert!(bytes.len() <= 64, "{} bytes", bytes.len());
        for i in 0..100_000 {
            b.score_then_learn(login(23, "10.0.0.1", i % 3 == 0), &DEFAULT_WEIGHTS);
        }
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let back = Behaviour::decode(&bytes).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.hours[23], 100_000);
        assert_eq!(back.events, 100_003);
    }

    #[test]
    fn varints_past_64_bits_and_zero_counts_do_not_decode() {
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(take_varint(&mut max.as_slice()), Some(u64::MAX));
        let mut over = max.clone();
        over[9] = 2;
        assert_eq!(take_varint(&mut over.as_slice()), None);
        // One value, hash 7, count 0.
        let mut zero = vec![1];
        zero.extend_from_slice(&7u64.to_le_bytes());
        zero.push(0);
        assert_eq!(Counts::decode(&mut zero.as_slice()), None);
    }

    #[test]
    fn counts_out_of_hash_order_do_not_decode() {
        let mut counts = Counts::default();
        counts.learn("a");
        counts.learn("b");
        let mut bytes = Vec::new();
        counts.encode(&mut bytes);
        // Swap the two (hash, count) entries: 1 length byte, then 9 bytes each.
        let (first, second) = (bytes[1..10].to_vec(), bytes[10..19].to_vec());
        bytes[1..10].copy_from_slice(&second);
        bytes[10..19].copy_from_slice(&first);
        assert_eq!(Counts::decode(&mut bytes.as_slice()), None);
    }
}
