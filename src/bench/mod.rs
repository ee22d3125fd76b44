//! `weir bench`: streaming throughput next to DataFusion batch on the same generated events.
//!
//! The events are Nexmark bids written once as JSON lines. The streaming figure is the whole
//! pipeline — file read, JSON decode, windows, accumulators, RocksDB epochs — from
//! `CREATE MATERIALIZED VIEW` until the view is finished. The batch figure is DataFusion
//! answering the same question over the same events already decoded in memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::json::{LineDelimitedWriter, ReaderBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

mod cpu;
mod freshness;
mod history;
mod kafka;
mod keys;
mod scaling;
mod wire;

use crate::config::BenchArgs;
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::server::run_script;
use crate::source::{generate, GeneratorKind};

/// A benchmark query: the view's SELECT and the same aggregate as a batch query.
struct BenchQuery {
    name: &'static str,
    view: &'static str,
    batch: &'static str,
}

const QUERIES: [BenchQuery; 3] = [
    BenchQuery {
        name: "tumble",
        view: "SELECT window_start, window_end, auction, count(*) AS bids, sum(price) AS volume \
               FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY window_start, window_end, auction",
        batch: "SELECT auction, (CAST(date_time AS BIGINT) / 10000) * 10000 AS window_start, count(*) AS bids, \
                sum(price) AS volume FROM bids GROUP BY 1, 2",
    },
    BenchQuery {
        name: "hop",
        view: "SELECT window_start, window_end, auction, count(*) AS bids, sum(price) AS volume \
               FROM HOP(bids, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds') GROUP BY window_start, window_end, auction",
        batch: "SELECT auction, ws, count(*) AS bids, sum(price) AS volume FROM \
                (SELECT auction, price, (CAST(date_time AS BIGINT) / 2000) * 2000 - k * 2000 AS ws \
                 FROM bids CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS slots(k)) GROUP BY 1, 2",
    },
    BenchQuery {
        name: "groupby",
        view: "SELECT auction, count(*) AS bids, max(price) AS top FROM bids GROUP BY auction",
        batch: "SELECT auction, count(*) AS bids, max(price) AS top FROM bids GROUP BY auction",
    },
];

/// One benchmark result.
#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub query: String,
    pub events: u64,
    pub stream_eps: f64,
    pub batch_eps: f64,
    pub ratio: f64,
    pub decode_eps: f64,
    pub stream_rows: u64,
    pub batch_rows: u64,
    /// CPU microseconds per event of the streaming run, by thread role and `total`.
    pub cpu_us_per_event: BTreeMap<String, f64>,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "unknown query '{0}': use tumble, hop, groupby, all, keys, history, freshness or scaling"
    )]
    UnknownQuery(String),
    #[error("benchmark I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("view {0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("kafka topic: {0}")]
    Topic(String),
    #[error("postgres client: {0}")]
    Client(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("a benchmark task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

const SOURCE_SQL: &str =
    "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, \
    date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '5 seconds') \
    WITH (connector = 'file', path = '{path}', format = 'json')";

/// Decode threads of every engine a benchmark starts (`--decode-threads`).
static DECODE_THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Nice steps of every engine's ingest threads (`--ingest-nice`).
static INGEST_NICE: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// An engine's settings for a benchmark: Weir's defaults, state under `data_dir`, epochs of
/// `epoch`, no LLM.
pub(super) fn engine_config(data_dir: std::path::PathBuf, epoch: Duration) -> EngineConfig {
    EngineConfig {
        data_dir,
        epoch,
        max_epoch: Duration::from_millis(crate::config::DEFAULT_MAX_EPOCH_MS),
        state_cache_bytes: (crate::config::DEFAULT_STATE_CACHE_MB << 20) as usize,
        decode_threads: *DECODE_THREADS.get_or_init(crate::config::default_decode_threads),
        ingest_nice: *INGEST_NICE.get_or_init(|| crate::pipeline::priority::DEFAULT_INGEST_NICE),
        logs: Default::default(),
        llm: None,
    }
}

/// Writes `events` bids as JSON lines.
fn write_events(path: &std::path::Path, events: u64) -> Result<u64, BenchError> {
    let file = std::fs::File::create(path)?;
    let mut writer = LineDelimitedWriter::new(std::io::BufWriter::new(file));
    let mut from = 0;
    while from < events {
        let to = (from + 65_536).min(events);
        writer.write(&generate(GeneratorKind::NexmarkBids, 1, from, to))?;
        from = to;
    }
    writer.finish()?;
    writer.into_inner().flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn decode_all(bytes: &[u8]) -> Result<Vec<RecordBatch>, BenchError> {
    let reader = ReaderBuilder::new(GeneratorKind::NexmarkBids.schema())
        .with_batch_size(8192)
        .build(bytes)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

async fn run_stream(
    q: &BenchQuery,
    data: &std::path::Path,
    events: u64,
) -> Result<(f64, u64, BTreeMap<String, f64>), BenchError> {
    let dir = tempfile::tempdir()?;
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::open(
        engine_config(dir.path().into(), Duration::from_secs(1)),
        metrics,
    )
    .await?;
    run_script(
        &engine,
        &SOURCE_SQL.replace("{path}", &data.display().to_string()),
    )
    .await?;
    let started = Instant::now();
    let (roles_before, cpu_before) = (cpu::by_role(), cpu::process_seconds());
    run_script(
        &engine,
        &format!("CREATE MATERIALIZED VIEW q AS {}", q.view),
    )
    .await?;
    let limit = Duration::from_secs(600);
    // The pipeline's threads end once the view is finished, taking their CPU figures with
    // them: keep the largest reading of each role seen while they ran.
    let mut roles = BTreeMap::new();
    loop {
        for (role, cpu) in cpu::by_role() {
            let seen: &mut f64 = roles.entry(role).or_default();
            *seen = seen.max(cpu);
        }
        let status = engine
            .board()
            .views
            .read()
            .get("q")
            .map(|v| v.status.clone())
            .unwrap_or_default();
        if status == "finished" {
            break;
        }
        if status == "failed" || started.elapsed() > limit {
            return Err(BenchError::Timeout(q.name.into(), limit));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu::per_event_us(
        &roles_before,
        &roles,
        cpu::process_seconds() - cpu_before,
        events,
    );
    let rows = engine.board().views.read().get("q").map_or(0, |v| v.rows);
    engine.shutdown().await;
    Ok((events as f64 / elapsed, rows, cpu))
}

async fn run_batch(
    q: &BenchQuery,
    batches: &[RecordBatch],
    events: u64,
) -> Result<(f64, u64), BenchError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    let table = MemTable::try_new(GeneratorKind::NexmarkBids.schema(), vec![batches.to_vec()])?;
    ctx.register_table("bids", Arc::new(table))?;
    let mut best = f64::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let out = ctx.sql(q.batch).await?.collect().await?;
        best = best.min(started.elapsed().as_secs_f64());
        rows = out.iter().map(|b| b.num_rows() as u64).sum();
    }
    Ok((events as f64 / best, rows))
}

/// Prints `result` as one JSON object, or `line` for people.
fn print_result(json: bool, result: &impl serde::Serialize, line: String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(result).expect("results serialize")
        );
    } else {
        println!("{line}");
    }
}

/// Runs the selected queries and prints the results.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    if let Some(threads) = args.decode_threads {
        let _ = DECODE_THREADS.set(threads.max(1));
    }
    if let Some(nice) = args.ingest_nice {
        // `priority::lower_current_thread` keeps it within 0..=19.
        let _ = INGEST_NICE.set(nice);
    }
    if args.kafka {
        return kafka::run(&args).await;
    }
    if args.query == "keys" {
        return keys::run(&args).await;
    }
    if args.query == "history" {
        return history::run(&args).await;
    }
    if args.query == "freshness" {
        return freshness::run().await;
    }
    if args.query == "scaling" {
        return scaling::run(&args).await;
    }
    let selected: Vec<&BenchQuery> = QUERIES
        .iter()
        .filter(|q| args.query == "all" || args.query == q.name)
        .collect();
    if selected.is_empty() {
        return Err(BenchError::UnknownQuery(args.query));
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("bids.json");
    let bytes = write_events(&data, args.events)?;
    if !args.json {
        println!(
            "{} Nexmark bids, {:.1} MB of JSON lines ({:.0} bytes/event)",
            args.events,
            bytes as f64 / 1e6,
            bytes as f64 / args.events as f64
        );
    }
    let raw = std::fs::read(&data)?;
    let started = Instant::now();
    let batches = decode_all(&raw)?;
    let decode_eps = args.events as f64 / started.elapsed().as_secs_f64();
    drop(raw);
    for q in selected {
        let (stream_eps, stream_rows, cpu_us_per_event) = run_stream(q, &data, args.events).await?;
        let (batch_eps, batch_rows) = run_batch(q, &batches, args.events).await?;
        let result = BenchResult {
            query: q.name.into(),
            events: args.events,
            stream_eps,
            batch_eps,
            ratio: stream_eps / batch_eps,
            decode_eps,
            stream_rows,
            batch_rows,
            cpu_us_per_event,
        };
        let cpu: Vec<String> = result
            .cpu_us_per_event
            .iter()
            .map(|(role, us)| format!("{role} {us:.2}"))
            .collect();
        let line = format!(
            "{:<8} stream {:>10.0} ev/s   batch {:>11.0} ev/s   ratio {:.3}   (decode-only {:.0} ev/s; rows {} vs {})\n         stream CPU µs/event: {}",
            result.query, result.stream_eps, result.batch_eps, result.ratio, result.decode_eps, result.stream_rows, result.batch_rows, cpu.join(", ")
        );
        print_result(args.json, &result, line);
    }
    Ok(())
}
