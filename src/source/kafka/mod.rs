//! The Kafka source: a topic's partitions read in parallel, each from the offset stored with
//! the views' state.
//!
//! Weir does not let the consumer group decide where to read: partitions are assigned by hand
//! and seeked to the offsets in the last durable epoch, so after any crash every message is
//! counted exactly once. Consumer-group offsets are committed every few seconds (see
//! `group_commit`) only so that standard lag tools see Weir's progress. Each partition has its
//! own librdkafka queue and each poll round takes a fair share from every partition, one chunk
//! per partition (see `round`), holding back a partition that runs ahead of the others in
//! event time (see `align`); partition metadata is refreshed periodically, so partitions added
//! later are picked up. A broker that answers empty fetches at once is noted in the log (see
//! `eager_broker`).

mod align;
mod config;
mod eager_broker;
mod group_commit;
mod queue;
mod round;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Chunk, Frontier, Reader, Resume, SourceError, SplitStatus};
use crate::plan::IncludeColumn;
use align::{must_wait, slowest_with_backlog, PartitionTime};
pub use config::check_config;
use eager_broker::FetchRate;
use group_commit::{GroupCommits, COMMIT_EVERY};
use queue::Record;
use round::{PartitionRound, WantedMetadata};

type PartitionQueue = queue::BatchQueue<ObservingContext>;

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

/// Messages taken per poll round, about (shared fairly among the partitions).
const ROUND_MESSAGES: usize = 16_384;
/// Messages a partition may give a round even when there are many partitions.
const MIN_SHARE: usize = 256;
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
/// How long rounds may find nothing to read while partitions wait for a slower one before
/// alignment is suspended (the slow partition's fetches may be failing).
const ALIGN_PATIENCE: Duration = Duration::from_millis(500);
/// How long alignment stays suspended after that.
const ALIGN_SUSPENDED: Duration = Duration::from_secs(5);

/// Collects librdkafka's statistics for the reader.
#[derive(Default)]
struct Observer {
    /// High watermark per partition, from the last statistics.
    high_watermarks: Mutex<BTreeMap<i32, i64>>,
    fetch_rate: Mutex<FetchRate>,
    /// Whether some broker was seen answering empty fetches at once (see `eager_broker`).
    answers_at_once: AtomicBool,
}

struct ObservingContext(Arc<Observer>);

impl ClientContext for ObservingContext {
    fn stats(&self, statistics: Statistics) {
        let fetches = self.observe_fetches(&statistics);
        tracing::debug!(
            rx_messages = statistics.rxmsgs,
            rx_bytes = statistics.rx_bytes,
            fetches,
            "kafka client statistics"
        );
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

impl ObservingContext {
    /// Counts the fetches the brokers answered (returned); notes a broker that answers at
    /// once.
    fn observe_fetches(&self, statistics: &Statistics) -> i64 {
        let (fetches, bytes) = statistics.brokers.values().fold((0, 0), |(f, b), broker| {
            (
                f + broker.req.get("Fetch").copied().unwrap_or(0),
                b + broker.rxbytes as i64,
            )
        });
        let eager = self
            .0
            .fetch_rate
            .lock()
            .answers_at_once(Instant::now(), fetches, bytes);
        if eager && !self.0.answers_at_once.swap(true, Ordering::Relaxed) {
            tracing::info!(
                fetches,
                "the Kafka broker answers empty fetches at once (it does not wait \
                 fetch.wait.max.ms): while the source is caught up, librdkafka fetches in a loop \
                 and the client and the broker each keep a core busy"
            );
        }
        fetches
    }
}

/// Wakes a waiting poll round when a partition queue receives messages.
#[derive(Default)]
struct Wake {
    ready: Mutex<bool>,
    signal: Condvar,
}

impl Wake {
    fn notify(&self) {
        *self.ready.lock() = true;
        self.signal.notify_one();
    }

    /// Waits until notified or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut ready = self.ready.lock();
        if !*ready {
            self.signal.wait_for(&mut ready, timeout);
        }
        *ready = false;
    }
}

/// One partition as the reader tracks it.
struct PartitionState {
    /// Offset of the next message to read.
    next: i64,
    /// When the partition last produced a message (or was assigned).
    last_message: Instant,
    /// Largest event time the decoder found in the partition's messages.
    event_time: Option<i64>,
}

/// Reads a topic's partitions from stored offsets.
pub struct KafkaReader {
    spec: KafkaSpec,
    consumer: Arc<BaseConsumer<ObservingContext>>,
    /// The message metadata `INCLUDE` asks for.
    wants: WantedMetadata,
    /// One queue per assigned partition.
    queues: BTreeMap<i32, PartitionQueue>,
    /// Which partition a round starts with (turns each round).
    rotation: usize,
    wake: Arc<Wake>,
    observer: Arc<Observer>,
    resume: Resume,
    partitions: BTreeMap<i32, PartitionState>,
    last_metadata: Option<Instant>,
    last_report: Option<(Instant, Vec<(u32, bool)>)>,
    pending: VecDeque<Chunk>,
    /// Why the input is unreachable, while it is.
    stalled: Option<String>,
    /// Since when rounds found nothing while partitions waited for a slower one.
    blocked_since: Option<Instant>,
    /// Alignment is off until then.
    unaligned_until: Option<Instant>,
    /// Durable offsets waiting to be committed to the consumer group (see `group_commit`).
    group_commits: GroupCommits,
}

fn kafka_err(context: &str, e: KafkaError) -> SourceError {
    SourceError::Options(format!("kafka {context}: {e}"))
}

impl KafkaReader {
    /// Creates the consumer; partitions are assigned on the first read.
    pub fn open(spec: KafkaSpec, resume: &Resume) -> Result<Self, SourceError> {
        let config = config::consumer_config(&spec);
        let observer = Arc::new(Observer::default());
        let consumer: BaseConsumer<ObservingContext> = config
            .create_with_context(ObservingContext(observer.clone()))
            .map_err(|e| kafka_err("consumer configuration", e))?;
        Ok(Self {
            wants: WantedMetadata::for_columns(&spec.include),
            spec,
            consumer: Arc::new(consumer),
            queues: BTreeMap::new(),
            rotation: 0,
            wake: Arc::default(),
            observer,
            resume: resume.clone(),
            partitions: BTreeMap::new(),
            last_metadata: None,
            last_report: None,
            pending: VecDeque::new(),
            stalled: None,
            blocked_since: None,
            unaligned_until: None,
            group_commits: GroupCommits::new(Instant::now(), COMMIT_EVERY),
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
            // Its own queue, split off before the partition is assigned.
            if let Some(mut queue) = PartitionQueue::split(&self.consumer, &self.spec.topic, p) {
                let wake = self.wake.clone();
                queue.on_messages(move || wake.notify());
                self.queues.insert(p, queue);
            }
            self.partitions.insert(
                p,
                PartitionState {
                    next,
                    last_message: now,
                    event_time: None,
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

    /// The partitions that wait this round for a slower one (see `align`).
    fn waiting_partitions(&self) -> Vec<i32> {
        if self
            .unaligned_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Vec::new();
        }
        let highs = self.observer.high_watermarks.lock();
        let times: Vec<(i32, PartitionTime)> = self
            .partitions
            .iter()
            .map(|(p, s)| {
                let time = PartitionTime {
                    event_time: s.event_time,
                    backlog: highs.get(p).is_some_and(|high| s.next < *high),
                };
                (*p, time)
            })
            .collect();
        let slowest = slowest_with_backlog(times.iter().map(|(_, t)| *t));
        times
            .iter()
            .filter(|(_, at)| must_wait(*at, slowest))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Rounds found nothing while `waiting` partitions waited: after `ALIGN_PATIENCE` of
    /// that, alignment is suspended for a while.
    fn note_blocked(&mut self, waiting: &[i32], took_any: bool) {
        if took_any || waiting.is_empty() {
            self.blocked_since = None;
            return;
        }
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= ALIGN_PATIENCE {
            tracing::debug!(
                ?waiting,
                "partitions waited too long for a slower one: alignment suspended"
            );
            self.unaligned_until = Some(Instant::now() + ALIGN_SUSPENDED);
            self.blocked_since = None;
        }
    }

    /// Polls one round and queues one chunk per partition that had messages. Each partition
    /// has its own queue and the round takes a fair share from each in turn, so partitions
    /// are read at the same pace even when a broker hands over one partition's whole backlog
    /// at once (a partition far ahead would keep many windows open). When nothing is fetched
    /// the round waits up to `ROUND_TIME` for a message.
    fn poll_round(&mut self) {
        self.commit_group_offsets();
        let mut rounds: BTreeMap<i32, PartitionRound> = BTreeMap::new();
        let max_bytes = self.spec.max_message_bytes;
        let mut error = false;
        // The consumer's own queue carries errors and statistics (and messages of any
        // partition without a queue of its own).
        while let Some(polled) = self.consumer.poll(Duration::ZERO) {
            match polled {
                Ok(m) => {
                    rounds.entry(m.partition()).or_default().add(
                        &Record::of_message(&m),
                        max_bytes,
                        &self.wants,
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "kafka consumer error");
                    error = true;
                    break;
                }
            }
        }
        let waiting = self.waiting_partitions();
        let ids: Vec<i32> = self
            .queues
            .keys()
            .copied()
            .filter(|p| !waiting.contains(p))
            .collect();
        let share = (ROUND_MESSAGES / ids.len().max(1)).max(MIN_SHARE);
        for attempt in 0..2 {
            let mut bytes = 0;
            for k in 0..ids.len() {
                let p = ids[(self.rotation + k) % ids.len()];
                let round = rounds.entry(p).or_default();
                self.queues[&p].take(share, |m| match m {
                    Ok(m) => bytes += round.add(&m, max_bytes, &self.wants),
                    Err(e) => {
                        tracing::debug!(error = %e, partition = p, "kafka consumer error");
                        error = true;
                    }
                });
                if round.is_empty() {
                    rounds.remove(&p);
                }
                if bytes >= ROUND_BYTES {
                    break;
                }
            }
            if !rounds.is_empty() || error || attempt == 1 {
                break;
            }
            self.wake.wait(ROUND_TIME);
        }
        self.rotation = self.rotation.wrapping_add(1);
        self.note_blocked(&waiting, !rounds.is_empty());
        if error {
            // Most consumer errors are transient (a leader moved, a request timed out) and
            // librdkafka retries them itself; check soon whether the brokers are reachable,
            // which decides whether the source is stalled.
            self.check_brokers_soon();
        }
        if rounds.is_empty() {
            return;
        }
        if self.stalled.take().is_some() {
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
            let chunk = round.into_chunk(p, &self.spec.include);
            self.pending.push_back(Chunk::Lines(chunk));
        }
    }

    /// Commits the newest durable offsets to the consumer group when a commit is due.
    fn commit_group_offsets(&mut self) {
        let Some(durable) = self.group_commits.due(Instant::now()) else {
            return;
        };
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

    fn event_time(&mut self, split: u32, max: i64) {
        if let Some(state) = self.partitions.get_mut(&(split as i32)) {
            state.event_time = Some(state.event_time.map_or(max, |t| t.max(max)));
        }
    }

    fn durable(&mut self, durable: &Frontier) {
        self.group_commits.durable(durable);
        self.commit_group_offsets();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::EmbeddedKafka;

    fn spec(brokers: String) -> KafkaSpec {
        KafkaSpec {
            brokers,
            topic: "aligned".into(),
            start: StartOffset::Earliest,
            group_id: "weir-test".into(),
            idle_timeout: Duration::from_secs(30),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            properties: BTreeMap::new(),
            include: Vec::new(),
        }
    }

    /// Durable offsets reach the consumer group once a commit is due, with no epoch after
    /// them: the poll rounds send what waits.
    #[test]
    fn durable_offsets_reach_the_consumer_group_when_a_commit_is_due() {
        let kafka = kafka_with_numbers(100);
        let mut reader = KafkaReader::open(spec(kafka.bootstrap()), &Resume::default()).unwrap();
        reader.group_commits = GroupCommits::new(Instant::now(), Duration::from_millis(300));
        assert_eq!(read_rows(&mut reader, 100).values().sum::<usize>(), 100);
        let mut durable = Frontier::default();
        durable.advance(0, 20);
        durable.advance(1, 30);
        reader.durable(&durable);
        let committed = |reader: &KafkaReader| {
            let mut asked = TopicPartitionList::new();
            asked.add_partition("aligned", 0);
            asked.add_partition("aligned", 1);
            let list = reader
                .consumer
                .committed_offsets(asked, Duration::from_secs(2))
                .unwrap();
            list.elements()
                .iter()
                .map(|e| e.offset())
                .collect::<Vec<_>>()
        };
        let started = Instant::now();
        let want = vec![Offset::Offset(20), Offset::Offset(30)];
        while committed(&reader) != want && started.elapsed() < Duration::from_secs(10) {
            reader.next_chunk().unwrap();
        }
        assert_eq!(committed(&reader), want);
    }

    /// The statistics tell a broker that answers empty fetches at once (the mock cluster
    /// does when `fetch.wait.max.ms` is 0, as noida-db always does) from one that waits.
    #[test]
    fn a_broker_answering_empty_fetches_at_once_is_noticed() {
        let kafka = kafka_with_numbers(10);
        let noticed_within = |wait_ms: &str, time: Duration| {
            let mut spec = spec(kafka.bootstrap());
            spec.properties
                .insert("fetch.wait.max.ms".into(), wait_ms.into());
            spec.properties
                .insert("statistics.interval.ms".into(), "100".into());
            let mut reader = KafkaReader::open(spec, &Resume::default()).unwrap();
            assert_eq!(read_rows(&mut reader, 10).values().sum::<usize>(), 10);
            let started = Instant::now();
            while started.elapsed() < time {
                if reader.observer.answers_at_once.load(Ordering::Relaxed) {
                    return true;
                }
                reader.next_chunk().unwrap();
            }
            false
        };
        assert!(noticed_within("0", Duration::from_secs(10)));
        assert!(!noticed_within("500", Duration::from_secs(1)));
    }

    /// A two-partition topic `aligned` holding `{"n": n}` for n below `count`, even n in
    /// partition 0 and odd n in partition 1.
    fn kafka_with_numbers(count: i32) -> EmbeddedKafka {
        let kafka = EmbeddedKafka::start(1, "aligned", 2).unwrap();
        for n in 0..count {
            kafka
                .send(n % 2, None, format!("{{\"n\":{n}}}").as_bytes())
                .unwrap();
        }
        kafka.flush().unwrap();
        kafka
    }

    /// Reads chunks until `rows` rows came, returning the rows read per partition.
    fn read_rows(reader: &mut KafkaReader, rows: usize) -> BTreeMap<u32, usize> {
        let mut read = BTreeMap::new();
        for _ in 0..1_000 {
            if read.values().sum::<usize>() >= rows {
                break;
            }
            if let Chunk::Lines(chunk) = reader.next_chunk().unwrap() {
                let n = chunk.record_ends.as_ref().map_or(0, Vec::len);
                *read.entry(chunk.split).or_default() += n;
            }
        }
        read
    }

    #[test]
    fn a_partition_ahead_in_event_time_waits_for_the_slower_one() {
        let kafka = kafka_with_numbers(40_000);
        let mut reader = KafkaReader::open(spec(kafka.bootstrap()), &Resume::default()).unwrap();
        // Both partitions have a backlog; the decoder says partition 0 is a minute ahead.
        let first = read_rows(&mut reader, 1);
        assert!(!first.is_empty());
        reader.event_time(0, 60_000);
        reader.event_time(1, 0);
        // Chunks already taken from the broker are handed out first.
        for _ in 0..reader.pending.len() {
            reader.next_chunk().unwrap();
        }
        let behind = read_rows(&mut reader, 5_000);
        assert_eq!(behind.get(&0), None, "partition 0 must wait: {behind:?}");
        assert!(behind[&1] >= 5_000, "{behind:?}");
        // Once partition 1 has caught up in event time, both are read.
        reader.event_time(1, 58_000);
        let both = read_rows(&mut reader, 10_000);
        assert!(both.get(&0).is_some_and(|n| *n > 0), "{both:?}");
    }
}
