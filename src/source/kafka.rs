//! The Kafka source: a topic's partitions read in parallel, each from the offset stored with
//! the views' state.
//!
//! Weir does not let the consumer group decide where to read: partitions are assigned by hand
//! and seeked to the offsets in the last durable epoch, so after any crash every message is
//! counted exactly once. Consumer-group offsets are committed after each epoch only so that
//! standard lag tools see Weir's progress. Each poll round becomes one chunk per partition;
//! partition metadata is refreshed periodically, so partitions added later are picked up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Chunk, Frontier, LineChunk, Reader, RejectedRecord, Resume, SourceError, SplitStatus};
use crate::plan::{IncludeColumn, KafkaMeta};

/// Where a source starts reading a partition it has never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
}

/// A validated Kafka source definition.
#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub brokers: String,
    pub topic: String,
    pub start: StartOffset,
    pub group_id: String,
    /// A partition silent this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// A message with a larger value goes to the dead letters instead of being decoded.
    pub max_message_bytes: usize,
    /// `properties.*` options, passed to librdkafka as they are.
    pub properties: BTreeMap<String, String>,
    pub include: Vec<IncludeColumn>,
}

/// The default `max_message_bytes`: Kafka's own default limit on a message (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Bytes of an oversized message kept in its dead letter (as many as the decoder keeps).
const REJECTED_RAW: usize = 4096;

/// Messages taken per poll round, at most.
const ROUND_MESSAGES: usize = 16_384;
/// Bytes taken per poll round, at most.
const ROUND_BYTES: usize = 8 << 20;
/// How long a poll round waits for messages.
const ROUND_TIME: Duration = Duration::from_millis(50);
/// How often partition metadata is refreshed (new partitions, broker reachability).
const METADATA_EVERY: Duration = Duration::from_secs(5);
/// How soon after a consumer error the brokers' reachability is checked.
const RECHECK_AFTER: Duration = Duration::from_millis(500);
/// How often the split report is repeated when nothing changed (for lag display).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Collects librdkafka's statistics for the reader.
#[derive(Default)]
struct Observer {
    /// High watermark per partition, from the last statistics.
    high_watermarks: Mutex<BTreeMap<i32, i64>>,
}

struct ObservingContext(Arc<Observer>);

impl ClientContext for ObservingContext {
    fn stats(&self, statistics: Statistics) {
        let mut highs = self.0.high_watermarks.lock();
        for topic in statistics.topics.values() {
            for (p, stats) in &topic.partitions {
                if *p >= 0 && stats.hi_offset >= 0 {
                    highs.insert(*p, stats.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Whether the source is stalled is decided by the metadata refresh, not by errors.
        tracing::debug!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for ObservingContext {}

/// One partition as the reader tracks it.
struct PartitionState {
    /// Offset of the next message to read.
    next: i64,
    /// When the partition last produced a message (or was assigned).
    last_message: Instant,
}

/// The messages of one partition in a poll round.
#[derive(Default)]
struct PartitionRound {
    data: Vec<u8>,
    record_ends: Vec<u64>,
    first_offset: Option<u64>,
    end: u64,
    skipped: u64,
    rejected: Vec<RejectedRecord>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    key: Vec<Option<String>>,
    timestamp: Vec<Option<i64>>,
}

/// Reads a topic's partitions from stored offsets.
pub struct KafkaReader {
    spec: KafkaSpec,
    consumer: BaseConsumer<ObservingContext>,
    observer: Arc<Observer>,
    resume: Resume,
    partitions: BTreeMap<i32, PartitionState>,
    last_metadata: Option<Instant>,
    last_report: Option<(Instant, Vec<(u32, bool)>)>,
    pending: VecDeque<Chunk>,
    /// Why the input is unreachable, while it is.
    stalled: Option<String>,
}

fn kafka_err(context: &str, e: KafkaError) -> SourceError {
    SourceError::Options(format!("kafka {context}: {e}"))
}

impl KafkaReader {
    /// Creates the consumer; partitions are assigned on the first read.
    pub fn open(spec: KafkaSpec, resume: &Resume) -> Result<Self, SourceError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.brokers)
            .set("group.id", &spec.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set(
                "auto.offset.reset",
                match spec.start {
                    StartOffset::Earliest => "earliest",
                    StartOffset::Latest => "latest",
                },
            );
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let observer = Arc::new(Observer::default());
        let consumer: BaseConsumer<ObservingContext> = config
            .create_with_context(ObservingContext(observer.clone()))
            .map_err(|e| kafka_err("consumer configuration", e))?;
        Ok(Self {
            spec,
            consumer,
            observer,
            resume: resume.clone(),
            partitions: BTreeMap::new(),
            last_metadata: None,
            last_report: None,
            pending: VecDeque::new(),
            stalled: None,
        })
    }

    /// The offset partition `p` starts at when first assigned: its stored position, else
    /// where the source first read it, else the `start_offset` option resolved against the
    /// broker. `'latest'` applies only to the partitions of a source's very first
    /// assignment: a partition found later (added to the topic, perhaps while Weir was down)
    /// is read from its beginning, so none of its messages is missed.
    fn start_offset(&self, p: i32, first_assignment: bool) -> Result<i64, String> {
        // The broker's offsets also seed the partition's high watermark: until it is known a
        // partition cannot count as caught up, hence not as idle.
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.spec.topic, p, Duration::from_secs(2))
            .map_err(|e| format!("cannot read the offsets of partition {p}: {e}"))?;
        self.observer
            .high_watermarks
            .lock()
            .entry(p)
            .or_insert(high);
        if let Some(after) = self.resume.split(p as u32) {
            return Ok(after as i64);
        }
        if self.resume.origin.has(p as u32) {
            return Ok(self.resume.origin.get(p as u32) as i64);
        }
        let fresh_source = self.resume.origin.splits().next().is_none();
        Ok(match self.spec.start {
            StartOffset::Latest if first_assignment && fresh_source => high,
            _ => low,
        })
    }

    /// Refreshes the partition list; assigns new partitions. Returns an error text when the
    /// brokers cannot be reached.
    fn refresh_partitions(&mut self) -> Result<(), String> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.spec.topic), Duration::from_secs(2))
            .map_err(|e| format!("cannot reach brokers {}: {e}", self.spec.brokers))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.spec.topic)
            .ok_or_else(|| format!("topic '{}' not found", self.spec.topic))?;
        if let Some(e) = topic.error() {
            return Err(format!("topic '{}': {:?}", self.spec.topic, e));
        }
        let new: Vec<i32> = topic
            .partitions()
            .iter()
            .map(|p| p.id())
            .filter(|p| !self.partitions.contains_key(p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let first_assignment = self.partitions.is_empty();
        let now = Instant::now();
        for p in new {
            let next = self.start_offset(p, first_assignment)?;
            self.partitions.insert(
                p,
                PartitionState {
                    next,
                    last_message: now,
                },
            );
        }
        let mut list = TopicPartitionList::new();
        for (p, state) in &self.partitions {
            list.add_partition_offset(&self.spec.topic, *p, Offset::Offset(state.next))
                .map_err(|e| e.to_string())?;
        }
        self.consumer
            .assign(&list)
            .map_err(|e| format!("cannot assign partitions: {e}"))?;
        tracing::info!(topic = %self.spec.topic, partitions = self.partitions.len(), "kafka partitions assigned");
        Ok(())
    }

    /// The partitions and whether each is idle, when that changed or a report is due. A
    /// partition is idle when it has been silent for the idle timeout *and* is known to have
    /// nothing left to read (its high watermark is reached): a partition that is behind, or
    /// whose high watermark is unknown, is never idle, so a slow or interrupted fetch cannot
    /// make its rows late.
    fn report(&mut self) -> Option<Chunk> {
        let now = Instant::now();
        let highs = self.observer.high_watermarks.lock().clone();
        let flags: Vec<(u32, bool)> = self
            .partitions
            .iter()
            .map(|(p, s)| {
                let silent = now.duration_since(s.last_message) >= self.spec.idle_timeout;
                let caught_up = highs.get(p).is_some_and(|high| s.next >= *high);
                (*p as u32, silent && caught_up)
            })
            .collect();
        let due = match &self.last_report {
            None => true,
            Some((at, last)) => *last != flags || now.duration_since(*at) >= REPORT_EVERY,
        };
        if !due {
            return None;
        }
        let splits = flags
            .iter()
            .map(|(p, idle)| SplitStatus {
                split: *p,
                read: self.partitions[&(*p as i32)].next.max(0) as u64,
                high_watermark: highs.get(&(*p as i32)).copied(),
                idle: *idle,
            })
            .collect();
        self.last_report = Some((now, flags));
        Some(Chunk::Splits(splits))
    }

    /// Polls one round and queues one chunk per partition that had messages: the first poll
    /// waits up to `ROUND_TIME`, the rest take what is already fetched.
    fn poll_round(&mut self) {
        let mut rounds: BTreeMap<i32, PartitionRound> = BTreeMap::new();
        let (mut messages, mut bytes) = (0, 0);
        let mut wait = ROUND_TIME;
        let mut was_stalled = false;
        while messages < ROUND_MESSAGES && bytes < ROUND_BYTES {
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    // Most consumer errors are transient (a leader moved, a request timed
                    // out) and librdkafka retries them itself; check at once whether the
                    // brokers are reachable, which decides whether the source is stalled.
                    tracing::debug!(error = %e, "kafka consumer error");
                    self.check_brokers_soon();
                    break;
                }
                Some(Ok(m)) => m,
            };
            was_stalled |= self.stalled.take().is_some();
            wait = Duration::ZERO;
            messages += 1;
            let p = message.partition();
            let offset = message.offset();
            let round = rounds.entry(p).or_default();
            round.first_offset.get_or_insert(offset as u64);
            round.end = offset as u64 + 1;
            let payload = message.payload().unwrap_or_default();
            if payload.iter().all(|b| b.is_ascii_whitespace()) {
                round.skipped += 1;
                continue;
            }
            bytes += payload.len();
            if payload.len() > self.spec.max_message_bytes {
                round.rejected.push(RejectedRecord {
                    offset: offset as u64,
                    raw: String::from_utf8_lossy(&payload[..payload.len().min(REJECTED_RAW)])
                        .into_owned(),
                    reason: format!(
                        "message of {} bytes is larger than max_message_bytes ({}); raise the \
                         source option to decode it",
                        payload.len(),
                        self.spec.max_message_bytes
                    ),
                });
                continue;
            }
            // JSON never needs a raw line break, so breaks inside a message become spaces
            // and each message is one line.
            round.data.extend(payload.iter().map(|b| {
                if *b == b'\n' || *b == b'\r' {
                    b' '
                } else {
                    *b
                }
            }));
            round.data.push(b'\n');
            round.record_ends.push(offset as u64 + 1);
            round.partition.push(p);
            round.offset.push(offset);
            round.key.push(
                message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
            );
            round
                .timestamp
                .push(message.timestamp().to_millis().filter(|t| *t >= 0));
        }
        if was_stalled {
            self.recovered();
        }
        let now = Instant::now();
        for (p, round) in &rounds {
            if let Some(state) = self.partitions.get_mut(p) {
                state.next = round.end as i64;
                state.last_message = now;
            }
        }
        // Partitions reported idle that have data again are reported active before any of
        // the round's data, so one partition's events cannot close windows that another's,
        // in the same round, still fall in.
        let woke = self.last_report.as_ref().is_some_and(|(_, flags)| {
            flags
                .iter()
                .any(|(p, idle)| *idle && rounds.contains_key(&(*p as i32)))
        });
        if woke {
            self.last_report = None;
            let report = self.report();
            self.pending.extend(report);
        }
        for (p, round) in rounds {
            let extra = self.metadata_columns(&round);
            self.pending.push_back(Chunk::Lines(LineChunk {
                file_name: p.to_string(),
                split: p as u32,
                start_offset: round.first_offset.unwrap_or(round.end),
                data: round.data,
                record_ends: Some(round.record_ends),
                extra,
                skipped: round.skipped,
                rejected: round.rejected,
                end: round.end,
            }));
        }
    }

    /// The `INCLUDE` columns of a round's messages.
    fn metadata_columns(&self, round: &PartitionRound) -> Option<RecordBatch> {
        if self.spec.include.is_empty() {
            return None;
        }
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for column in &self.spec.include {
            fields.push(Field::new(
                &column.name,
                column.meta.data_type_ref().clone(),
                true,
            ));
            columns.push(match column.meta {
                KafkaMeta::Partition => {
                    let mut b = Int32Builder::new();
                    b.append_slice(&round.partition);
                    Arc::new(b.finish())
                }
                KafkaMeta::Offset => {
                    let mut b = Int64Builder::new();
                    b.append_slice(&round.offset);
                    Arc::new(b.finish())
                }
                KafkaMeta::Key => {
                    let mut b = StringBuilder::new();
                    for k in &round.key {
                        b.append_option(k.as_deref());
                    }
                    Arc::new(b.finish())
                }
                KafkaMeta::Timestamp => {
                    let mut b = TimestampMillisecondBuilder::new();
                    for t in &round.timestamp {
                        b.append_option(*t);
                    }
                    Arc::new(b.finish())
                }
            });
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()
    }

    /// Makes the next metadata refresh due within `RECHECK_AFTER`.
    fn check_brokers_soon(&mut self) {
        let soon = Instant::now().checked_sub(METADATA_EVERY - RECHECK_AFTER);
        self.last_metadata = match (self.last_metadata, soon) {
            (Some(at), Some(soon)) => Some(at.min(soon)),
            _ => None,
        };
    }

    /// The brokers are back: silence during the outage does not count towards idleness.
    fn recovered(&mut self) {
        let now = Instant::now();
        for state in self.partitions.values_mut() {
            state.last_message = now;
        }
        self.last_report = None;
    }

    fn stall(&mut self, reason: String) -> Chunk {
        self.stalled = Some(reason.clone());
        // Let the next read retry the brokers soon.
        self.last_metadata = None;
        Chunk::Stalled(reason)
    }
}

impl Reader for KafkaReader {
    fn next_chunk(&mut self) -> Result<Chunk, SourceError> {
        if let Some(chunk) = self.pending.pop_front() {
            return Ok(chunk);
        }
        let refresh_due = self
            .last_metadata
            .is_none_or(|at| at.elapsed() >= METADATA_EVERY);
        if refresh_due || self.partitions.is_empty() {
            self.last_metadata = Some(Instant::now());
            if let Err(reason) = self.refresh_partitions() {
                return Ok(self.stall(reason));
            }
            if self.stalled.take().is_some() {
                self.recovered();
            }
        }
        // While stalled, reports would look like recovery; data or a metadata refresh that
        // succeeds ends the stall.
        if self.stalled.is_none() {
            if let Some(report) = self.report() {
                return Ok(report);
            }
        }
        self.poll_round();
        Ok(self.pending.pop_front().unwrap_or(Chunk::Idle))
    }

    fn durable(&mut self, durable: &Frontier) {
        let mut list = TopicPartitionList::new();
        for (p, offset) in durable.splits() {
            if list
                .add_partition_offset(&self.spec.topic, p as i32, Offset::Offset(offset as i64))
                .is_err()
            {
                return;
            }
        }
        if list.count() > 0 {
            if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
                tracing::debug!(error = %e, "consumer-group offset commit failed (informational only)");
            }
        }
    }
}
