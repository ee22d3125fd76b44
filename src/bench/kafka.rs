//! `weir bench --kafka`: bids produced to a Kafka topic (on an embedded cluster, or on a
//! running broker with `--brokers`), consumed into a view, next to only reading and decoding
//! the same messages (the ceiling for any Kafka consumer of JSON in Weir).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use super::{cpu, print_result, BenchError, BenchQuery, QUERIES, SOURCE_SQL};
use crate::config::BenchArgs;
use crate::decode::JsonDecoder;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::server::run_script;
use crate::source::{
    generate, Chunk, EmbeddedKafka, GeneratorKind, JsonProducer, KafkaReader, KafkaSpec, Reader,
    Resume, StartOffset, DEFAULT_MAX_MESSAGE_BYTES, MOCK_PARTITION_BYTES,
};

/// Bytes of one bid as JSON, rounded up, for sizing partitions.
const BID_BYTES: u64 = 200;
/// Messages a mock partition keeps, with margin.
const MOCK_PARTITION_MESSAGES: u64 = 80_000;
const TOPIC: &str = "bids";
const LIMIT: Duration = Duration::from_secs(600);
/// CPU busy (in cores) below which the machine counts as quiet before a measured phase.
const QUIET_CORES: f64 = 0.3;
/// The longest wait for that.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// One Kafka benchmark result.
#[derive(Debug, serde::Serialize)]
struct KafkaResult {
    query: String,
    events: u64,
    partitions: i32,
    /// `embedded` (mock cluster in the same process) or `external` (`--brokers`).
    broker: &'static str,
    stream_eps: f64,
    decode_eps: f64,
    ratio: f64,
    /// How long each phase waited for its first message: read (decode-only) or applied by the
    /// views (stream). Mostly the broker's first fetch: noida-db builds one response holding a
    /// partition's whole backlog, 0.45–1.1 s for 1M bids.
    stream_first_ms: u64,
    decode_first_ms: u64,
    /// The same rates from each phase's first message on, and their ratio: what the phases
    /// do with the messages, without the broker's varying wait before the first one.
    stream_flow_eps: f64,
    decode_flow_eps: f64,
    flow_ratio: f64,
    produce_eps: f64,
    /// This process's CPU per event by thread role during the stream run (the broker's own
    /// CPU, in its process, is not in it).
    cpu_us_per_event: BTreeMap<String, f64>,
}

/// Partitions needed so the embedded cluster keeps every event.
fn partitions_for(events: u64, asked: i32) -> i32 {
    let by_bytes = (events * BID_BYTES).div_ceil(MOCK_PARTITION_BYTES * 4 / 5);
    let by_count = events.div_ceil(MOCK_PARTITION_MESSAGES);
    (asked as u64).max(by_bytes).max(by_count) as i32
}

/// The topic the bench reads, and what keeps it alive.
struct BenchTopic {
    bootstrap: String,
    topic: String,
    partitions: i32,
    /// `embedded` (mock cluster in this process) or `external` (a running broker).
    kind: &'static str,
    /// librdkafka settings for the consumers.
    properties: BTreeMap<String, String>,
    producer: JsonProducer,
    _embedded: Option<EmbeddedKafka>,
}

impl BenchTopic {
    /// A topic on an embedded cluster, with enough partitions to keep `events` bids.
    fn embedded(events: u64, partitions: i32) -> Result<Self, BenchError> {
        let partitions = partitions_for(events, partitions);
        let kafka = EmbeddedKafka::start(1, TOPIC, partitions)?;
        Ok(Self {
            bootstrap: kafka.bootstrap(),
            topic: TOPIC.into(),
            partitions,
            kind: "embedded",
            properties: BTreeMap::new(),
            producer: JsonProducer::new(&kafka.bootstrap(), TOPIC, partitions)?,
            _embedded: Some(kafka),
        })
    }

    /// A fresh topic on a running broker.
    async fn external(bootstrap: &str, partitions: i32) -> Result<Self, BenchError> {
        let topic = format!(
            "weir-bench-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
        for result in admin.create_topics([&new_topic], &options).await? {
            result.map_err(|(t, e)| BenchError::Topic(format!("cannot create {t}: {e}")))?;
        }
        // Some brokers (noida-db) answer a fetch with all they hold, past the requested
        // maximum; a larger receive limit is harmless for the others.
        let properties = BTreeMap::from([(
            "receive.message.max.bytes".to_string(),
            "1000000000".to_string(),
        )]);
        Ok(Self {
            bootstrap: bootstrap.into(),
            producer: JsonProducer::new(bootstrap, &topic, partitions)?,
            topic,
            partitions,
            kind: "external",
            properties,
            _embedded: None,
        })
    }
}

/// How fast one phase went: over its whole run, and from its first message on.
#[derive(Debug, Clone, Copy)]
struct PhaseRate {
    events: u64,
    elapsed: Duration,
    /// From the phase's start to its first message.
    first: Duration,
}

impl PhaseRate {
    fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn flow_eps(&self) -> f64 {
        let flowing = self.elapsed.saturating_sub(self.first).as_secs_f64();
        self.events as f64 / flowing.max(1e-6)
    }
}

/// Reads and decodes every message once, as the source's reader thread does, without views.
fn decode_only(topic: &BenchTopic, events: u64) -> Result<PhaseRate, BenchError> {
    let spec = KafkaSpec {
        brokers: topic.bootstrap.clone(),
        topic: topic.topic.clone(),
        start: StartOffset::Earliest,
        group_id: "weir-bench-decode".into(),
        idle_timeout: Duration::from_secs(30),
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        properties: topic.properties.clone(),
        include: Vec::new(),
    };
    let mut reader = KafkaReader::open(spec, &Resume::default())?;
    let mut decoder = JsonDecoder::new(GeneratorKind::NexmarkBids.schema(), Some(5));
    let started = Instant::now();
    let (mut seen, mut chunks) = (0u64, 0u64);
    let mut first = None;
    while seen < events {
        if started.elapsed() > LIMIT {
            return Err(BenchError::Timeout("decode-only".into(), LIMIT));
        }
        if let Chunk::Lines(chunk) = reader.next_chunk()? {
            first.get_or_insert_with(|| started.elapsed());
            let decoded = decoder.decode(chunk);
            seen += (decoded.batch.num_rows() + decoded.dead.len()) as u64;
            chunks += 1;
        }
    }
    tracing::info!(
        chunks,
        rows_per_chunk = events / chunks.max(1),
        "decode-only read"
    );
    Ok(PhaseRate {
        events,
        elapsed: started.elapsed(),
        first: first.unwrap_or_default(),
    })
}

/// The whole pipeline: Kafka source, decode, view, epochs; until every event is counted.
async fn stream(
    topic: &BenchTopic,
    q: &BenchQuery,
    events: u64,
) -> Result<(PhaseRate, BTreeMap<String, f64>), BenchError> {
    let dir = tempfile::tempdir()?;
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::open(
        // Progress is visible per epoch: a short one keeps the end time precise.
        super::engine_config(dir.path().into(), Duration::from_millis(100)),
        metrics.clone(),
    )
    .await?;
    // The views have applied messages once the source has counted bytes.
    let source_bytes = metrics.source_bytes.with_label_values(&["bids"]);
    let mut first = None;
    let source = SOURCE_SQL.replace(
        "connector = 'file', path = '{path}'",
        &format!(
            "connector = 'kafka', brokers = '{}', topic = '{}', group_id = 'weir-bench-{}'{}",
            topic.bootstrap,
            topic.topic,
            q.name,
            topic
                .properties
                .iter()
                .map(|(k, v)| format!(", \"properties.{k}\" = '{v}'"))
                .collect::<String>()
        ),
    );
    run_script(&engine, &source).await?;
    let started = Instant::now();
    let (roles_before, cpu_before) = (cpu::by_role(), cpu::process_seconds());
    run_script(
        &engine,
        &format!("CREATE MATERIALIZED VIEW q AS {}", q.view),
    )
    .await?;
    loop {
        let counted = engine
            .board()
            .sources
            .read()
            .get("bids")
            .map_or(0, |s| s.events + s.bad_records);
        if first.is_none() && source_bytes.get() > 0 {
            first = Some(started.elapsed());
        }
        if counted >= events {
            break;
        }
        if started.elapsed() > LIMIT {
            return Err(BenchError::Timeout(q.name.into(), LIMIT));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = PhaseRate {
        events,
        elapsed: started.elapsed(),
        first: first.unwrap_or_default(),
    };
    let cpu = cpu::per_event_us(
        &roles_before,
        &cpu::by_role(),
        cpu::process_seconds() - cpu_before,
        events,
    );
    engine.shutdown().await;
    Ok((rate, cpu))
}

/// Waits (up to `SETTLE_LIMIT`) for the machine to be quiet before a measured phase, so
/// both phases of a query start alike. Only a broker in its own process may go on working
/// after the load (the embedded one does not, and tests run it on a busy machine).
fn settle(topic: &BenchTopic, json: bool) {
    if topic.kind != "external" {
        return;
    }
    let waited = cpu::wait_until_quiet(QUIET_CORES, SETTLE_LIMIT);
    tracing::info!(
        waited_ms = waited.as_millis() as u64,
        "waited for the machine to be quiet"
    );
    if !json && waited >= SETTLE_LIMIT {
        println!("(the machine stayed busy for {SETTLE_LIMIT:?}: measuring anyway)");
    }
}

/// Produces the bids once, then runs the decode-only ceiling and each selected query, each
/// once the machine is quiet when the broker runs in its own process.
pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let selected: Vec<&BenchQuery> = QUERIES
        .iter()
        .filter(|q| args.query == "all" || args.query == q.name)
        .collect();
    if selected.is_empty() {
        return Err(BenchError::UnknownQuery(args.query.clone()));
    }
    let topic = match &args.brokers {
        Some(bootstrap) => BenchTopic::external(bootstrap, args.partitions).await?,
        None => BenchTopic::embedded(args.events, args.partitions)?,
    };
    let started = Instant::now();
    let mut from = 0;
    while from < args.events {
        let to = (from + 50_000).min(args.events);
        topic
            .producer
            .send_rows(&generate(GeneratorKind::NexmarkBids, 42, from, to), "")?;
        from = to;
    }
    topic.producer.flush()?;
    let produce_eps = args.events as f64 / started.elapsed().as_secs_f64();
    if !args.json {
        println!(
            "{} Nexmark bids produced to {} at {} ({} partitions, {produce_eps:.0} msg/s)",
            args.events,
            if topic.kind == "external" {
                "the broker"
            } else {
                "embedded Kafka"
            },
            topic.bootstrap,
            topic.partitions,
        );
    }
    settle(&topic, args.json);
    let decode = decode_only(&topic, args.events)?;
    for q in selected {
        settle(&topic, args.json);
        let (stream, cpu_us_per_event) = stream(&topic, q, args.events).await?;
        let result = KafkaResult {
            query: format!("kafka_{}", q.name),
            events: args.events,
            partitions: topic.partitions,
            broker: topic.kind,
            stream_eps: stream.eps(),
            decode_eps: decode.eps(),
            ratio: stream.eps() / decode.eps(),
            stream_first_ms: stream.first.as_millis() as u64,
            decode_first_ms: decode.first.as_millis() as u64,
            stream_flow_eps: stream.flow_eps(),
            decode_flow_eps: decode.flow_eps(),
            flow_ratio: stream.flow_eps() / decode.flow_eps(),
            produce_eps,
            cpu_us_per_event,
        };
        let line = format!(
            "{:<14} stream {:>10.0} ev/s   read+decode only {:>10.0} ev/s   ratio {:.2}\n\
             {:<14} from the first message ({} ms / {} ms in): {:.0} / {:.0} ev/s, ratio {:.2}\n\
             {:<14} stream CPU µs/event: {}",
            result.query,
            result.stream_eps,
            result.decode_eps,
            result.ratio,
            "",
            result.stream_first_ms,
            result.decode_first_ms,
            result.stream_flow_eps,
            result.decode_flow_eps,
            result.flow_ratio,
            "",
            cpu::describe(&result.cpu_us_per_event)
        );
        print_result(args.json, &result, line);
    }
    Ok(())
}
