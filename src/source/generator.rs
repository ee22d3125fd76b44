//! The built-in generator: deterministic synthetic events, typed as Arrow rows from the start.
//!
//! Event `n` of a seed is a pure function of `(seed, n)`, so a restarted generator resumes at
//! its event number and produces exactly the events it would have produced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Chunk, Position, Reader, SourceError, TypedChunk};

/// Event time of event 0: 2026-01-01T00:00:00Z.
const EPOCH_MS: i64 = 1_767_225_600_000;
const BATCH_ROWS: u64 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorKind {
    SecurityEvents,
    NexmarkBids,
    /// Users with habits and labelled attacks (`labelled_logins.rs`).
    LabelledLogins,
}

/// Options of a generator source.
#[derive(Debug, Clone)]
pub struct GeneratorSpec {
    pub kind: GeneratorKind,
    /// Events per second; 0 = as fast as possible.
    pub rate: u64,
    /// Total events; `None` = unbounded.
    pub count: Option<u64>,
    pub seed: u64,
}

impl GeneratorKind {
    /// The columns this generator produces.
    pub fn schema(self) -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let fields = match self {
            GeneratorKind::SecurityEvents => vec![
                Field::new("event_id", DataType::Utf8, true),
                Field::new("user_name", DataType::Utf8, true),
                Field::new("ts", ts, true),
                Field::new("type", DataType::Utf8, true),
                Field::new("source_ip", DataType::Utf8, true),
                Field::new("geo", DataType::Utf8, true),
                Field::new("threat_score", DataType::Float64, true),
            ],
            GeneratorKind::LabelledLogins => super::labelled_logins::fields(),
            GeneratorKind::NexmarkBids => vec![
                Field::new("auction", DataType::Int64, true),
                Field::new("bidder", DataType::Int64, true),
                Field::new("price", DataType::Int64, true),
                Field::new("channel", DataType::Utf8, true),
                Field::new("url", DataType::Utf8, true),
                Field::new("date_time", ts, true),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// SplitMix64: a fast, well-mixed hash used as a counter-based random source.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k`-th random word of event `n`.
fn rand(seed: u64, n: u64, k: u64) -> u64 {
    mix(mix(seed ^ mix(n)).wrapping_add(k))
}

/// Event time: 10 ms apart, a fifth of the events up to 3 s late (out of order).
fn event_time(seed: u64, n: u64, step_ms: i64) -> i64 {
    let base = EPOCH_MS + n as i64 * step_ms;
    let r = rand(seed, n, 99);
    if r.is_multiple_of(5) {
        base - (r >> 8) as i64 % 3000
    } else {
        base
    }
}

const GEOS: [&str; 8] = ["US", "DE", "GB", "FR", "JP", "BR", "IN", "CA"];
const RARE_GEOS: [&str; 4] = ["KP", "RU", "NG", "IR"];
const CHANNELS: [&str; 4] = ["apple", "google", "facebook", "baidu"];
const USERS: u64 = 40;

/// Writes security events `from..to` into `cols`.
fn security_events(seed: u64, from: u64, to: u64) -> Vec<ArrayRef> {
    let n_rows = (to - from) as usize;
    let mut id = StringBuilder::with_capacity(n_rows, n_rows * 12);
    let mut user = StringBuilder::with_capacity(n_rows, n_rows * 8);
    let mut ts = TimestampMillisecondBuilder::with_capacity(n_rows);
    let mut ty = StringBuilder::with_capacity(n_rows, n_rows * 12);
    let mut ip = StringBuilder::with_capacity(n_rows, n_rows * 14);
    let mut geo = StringBuilder::with_capacity(n_rows, n_rows * 2);
    let mut score = Float64Builder::with_capacity(n_rows);
    for n in from..to {
        let u = rand(seed, n, 1) % USERS;
        // Every seventh user is compromised: foreign logins, many failures, scattered IPs.
        let anomalous = u % 7 == 3;
        let r = rand(seed, n, 2);
        id.append_value(format!("evt-{n:010}"));
        user.append_value(format!("user_{u:02}"));
        ts.append_value(event_time(seed, n, 10));
        let failed = if anomalous { r % 100 < 45 } else { r % 100 < 4 };
        let kind = if failed {
            "LOGIN_FAILED"
        } else {
            [
                "LOGIN_SUCCESS",
                "LOGIN_SUCCESS",
                "FILE_ACCESS",
                "LOGOUT",
                "PRIVILEGE_CHANGE",
            ][(r >> 8) as usize % 5]
        };
        ty.append_value(kind);
        let host = if anomalous {
            (r >> 16) % 250 + 1
        } else {
            (r >> 16) % 3 + 1
        };
        ip.append_value(format!(
            "10.{}.{}.{}",
            u,
            if anomalous { (r >> 24) % 250 } else { 0 },
            host
        ));
        let g = if anomalous && r.is_multiple_of(3) {
            RARE_GEOS[(r >> 32) as usize % RARE_GEOS.len()]
        } else {
            GEOS[u as usize % GEOS.len()]
        };
        geo.append_value(g);
        let base = if anomalous { 55.0 } else { 5.0 };
        score.append_value(base + ((r >> 40) % 4000) as f64 / 100.0);
    }
    vec![
        Arc::new(id.finish()),
        Arc::new(user.finish()),
        Arc::new(ts.finish()),
        Arc::new(ty.finish()),
        Arc::new(ip.finish()),
        Arc::new(geo.finish()),
        Arc::new(score.finish()),
    ]
}

/// Writes Nexmark bids `from..to` into `cols`.
fn nexmark_bids(seed: u64, from: u64, to: u64) -> Vec<ArrayRef> {
    let n_rows = (to - from) as usize;
    let mut auction = Int64Builder::with_capacity(n_rows);
    let mut bidder = Int64Builder::with_capacity(n_rows);
    let mut price = Int64Builder::with_capacity(n_rows);
    let mut channel = StringBuilder::with_capacity(n_rows, n_rows * 6);
    let mut url = StringBuilder::with_capacity(n_rows, n_rows * 48);
    let mut ts = TimestampMillisecondBuilder::with_capacity(n_rows);
    for n in from..to {
        let r = rand(seed, n, 1);
        // Hot auctions: half the bids go to 100 auctions, the rest spread over 10,000.
        let a = if r.is_multiple_of(2) {
            1000 + (r >> 8) % 100
        } else {
            1000 + (r >> 8) % 10_000
        };
        auction.append_value(a as i64);
        bidder.append_value((2000 + (r >> 24) % 50_000) as i64);
        price.append_value((100 + (r >> 40) % 10_000) as i64);
        let c = CHANNELS[(r >> 4) as usize % CHANNELS.len()];
        channel.append_value(c);
        url.append_value(format!(
            "https://www.nexmark.com/{c}/item.htm?query={}",
            (r >> 12) % 1000
        ));
        ts.append_value(event_time(seed, n, 1));
    }
    vec![
        Arc::new(auction.finish()),
        Arc::new(bidder.finish()),
        Arc::new(price.finish()),
        Arc::new(channel.finish()),
        Arc::new(url.finish()),
        Arc::new(ts.finish()),
    ]
}

/// Generates events `from..to` of `kind` as a batch of the generator's own schema.
pub fn generate(kind: GeneratorKind, seed: u64, from: u64, to: u64) -> RecordBatch {
    let cols = match kind {
        GeneratorKind::SecurityEvents => security_events(seed, from, to),
        GeneratorKind::NexmarkBids => nexmark_bids(seed, from, to),
        GeneratorKind::LabelledLogins => {
            super::labelled_logins::columns(|n, k| rand(seed, n, k), EPOCH_MS, from, to)
        }
    };
    RecordBatch::try_new(kind.schema(), cols).expect("generator columns match their schema")
}

/// Reads a generator from an event number on.
pub struct GeneratorReader {
    spec: GeneratorSpec,
    /// For each declared column: its index in the generator's schema and the declared type.
    projection: Vec<(usize, DataType)>,
    schema: SchemaRef,
    next: u64,
    started: Instant,
    start_event: u64,
}

impl GeneratorReader {
    /// `schema` is the source's declared schema; every declared column must be one the
    /// generator makes. Events before `live_from` were generated before (history): they are
    /// produced at full speed, and the rate applies from `live_from` on, from now.
    pub fn new(
        spec: GeneratorSpec,
        schema: SchemaRef,
        from: Position,
        live_from: u64,
    ) -> Result<Self, SourceError> {
        let own = spec.kind.schema();
        let mut projection = Vec::new();
        for field in schema.fields() {
            let idx = own.index_of(field.name()).map_err(|_| {
                let names: Vec<_> = own.fields().iter().map(|f| f.name().as_str()).collect();
                SourceError::Options(format!(
                    "column '{}' is not produced by this generator; its columns are {}",
                    field.name(),
                    names.join(", ")
                ))
            })?;
            projection.push((idx, field.data_type().clone()));
        }
        Ok(Self {
            spec,
            projection,
            schema,
            next: from.offset,
            started: Instant::now(),
            start_event: from.offset.max(live_from),
        })
    }
}

impl Reader for GeneratorReader {
    fn next_chunk(&mut self) -> Result<Chunk, SourceError> {
        let mut end = self.next + BATCH_ROWS;
        if let Some(count) = self.spec.count {
            if self.next >= count {
                return Ok(Chunk::End);
            }
            end = end.min(count);
        }
        if self.spec.rate > 0 {
            let elapsed = self.started.elapsed().as_secs_f64();
            let allowed = self.start_event + (elapsed * self.spec.rate as f64) as u64;
            if allowed <= self.next {
                std::thread::sleep(Duration::from_millis(20));
                return Ok(Chunk::Idle);
            }
            end = end.min(allowed);
        }
        let own = generate(self.spec.kind, self.spec.seed, self.next, end);
        let cols = self
            .projection
            .iter()
            .map(|(idx, ty)| cast(own.column(*idx), ty))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                SourceError::Options(format!(
                    "generator column cannot take the declared type: {e}"
                ))
            })?;
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| SourceError::Options(e.to_string()))?;
        let row_ends = (self.next + 1..=end).collect();
        self.next = end;
        Ok(Chunk::Typed(TypedChunk {
            batch,
            split: 0,
            row_ends,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_from_any_start() {
        let whole = generate(GeneratorKind::SecurityEvents, 7, 0, 100);
        let tail = generate(GeneratorKind::SecurityEvents, 7, 40, 100);
        assert_eq!(whole.slice(40, 60), tail);
        let other = generate(GeneratorKind::SecurityEvents, 8, 0, 100);
        assert_ne!(whole, other);
    }

    #[test]
    fn history_before_live_from_is_not_paced() {
        let spec = GeneratorSpec {
            kind: GeneratorKind::NexmarkBids,
            rate: 1,
            count: None,
            seed: 1,
        };
        let schema = GeneratorKind::NexmarkBids.schema();
        let mut r = GeneratorReader::new(spec, schema, Position::default(), 20_000).unwrap();
        let mut rows = 0;
        while let Chunk::Typed(c) = r.next_chunk().unwrap() {
            rows += c.batch.num_rows();
        }
        // Everything before `live_from` at once, then one event a second.
        assert_eq!(rows, 20_000);
    }

    #[test]
    fn bounded_generator_ends_after_count() {
        let spec = GeneratorSpec {
            kind: GeneratorKind::NexmarkBids,
            rate: 0,
            count: Some(10_000),
            seed: 1,
        };
        let mut r = GeneratorReader::new(
            spec,
            GeneratorKind::NexmarkBids.schema(),
            Position::default(),
            0,
        )
        .unwrap();
        let mut rows = 0;
        while let Chunk::Typed(c) = r.next_chunk().unwrap() {
            rows += c.batch.num_rows();
        }
        assert_eq!(rows, 10_000);
        assert!(matches!(r.next_chunk().unwrap(), Chunk::End));
    }
}
