//! Soak: Weir ingests a growing directory of JSON lines (1% of them malformed) for a long
//! time while 20 clients query it and a kill -9 lands at a fixed interval; at the end every
//! view equals the batch oracle, every malformed line is one dead letter, and no log holds a
//! panic. Not run in CI (ignored): 30 minutes by default.
//!
//! ```sh
//! cargo test --release --test integration -- --ignored --nocapture soak::
//! # shorter, for a try: seconds of ingest, seconds between kills
//! WEIR_SOAK_SECS=300 WEIR_SOAK_KILL_SECS=60 cargo test --release --test integration -- --ignored --nocapture soak::
//! ```
//!
//! It prints one summary line (events, dead letters, kills, queries answered and refused,
//! query latency, recovery time after each kill) for `docs/reliability.md`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::oracle::{assert_views_match, oracle_from_batches, security_views};
use crate::common::{rows, security_source_sql, Weir};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use tokio_postgres::NoTls;

const CLIENTS: usize = 20;
/// Events written per second (one file each second).
const EVENTS_PER_FILE: u64 = 5_000;
/// One line in this many is malformed.
const BAD_EVERY: u64 = 100;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A malformed line of one of several kinds (cut JSON, not JSON, a wrong type, bytes).
fn malformed(n: u64, valid: &str) -> Vec<u8> {
    match n % 4 {
        0 => valid.as_bytes()[..valid.len() / 2].to_vec(),
        1 => format!("not json at all #{n}").into_bytes(),
        2 => format!("{{\"event_id\": \"bad{n}\", \"ts\": \"yesterday-ish\"}}").into_bytes(),
        _ => vec![0xff, 0xfe, b'{', 0x00, b'}'],
    }
}

/// Writes events `from..from + EVENTS_PER_FILE` into `dir` as one file (written beside it and
/// renamed in, so the reader never sees half of it), a malformed line after every
/// `BAD_EVERY - 1` valid ones. Returns the batch and the number of malformed lines.
fn write_part(dir: &Path, part: u64, from: u64) -> (RecordBatch, u64) {
    let batch = weir::source::generate(
        weir::source::GeneratorKind::SecurityEvents,
        29,
        from,
        from + EVENTS_PER_FILE,
    );
    let mut json = Vec::new();
    {
        let mut writer = LineDelimitedWriter::new(&mut json);
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
    }
    let mut out = Vec::with_capacity(json.len() + json.len() / 50);
    let mut bad = 0;
    for (i, line) in String::from_utf8(json).unwrap().lines().enumerate() {
        let n = from + i as u64;
        if n.is_multiple_of(BAD_EVERY - 1) {
            out.extend(malformed(n, line));
            out.push(b'\n');
            bad += 1;
        }
        out.extend(line.as_bytes());
        out.push(b'\n');
    }
    let staged = dir.with_extension("staging");
    std::fs::write(&staged, out).unwrap();
    std::fs::rename(&staged, dir.join(format!("part-{part:06}.jsonl"))).unwrap();
    (batch, bad)
}

/// What the query clients did.
#[derive(Default)]
struct ClientStats {
    answered: AtomicU64,
    refused: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

/// The queries a client cycles through: dashboards, point lookups, the catalog.
const QUERIES: &[&str] = &[
    "SELECT count(*), sum(n) FROM tumble_user",
    "SELECT user_name, n, ips FROM per_user WHERE user_name = 'user_17'",
    "SELECT window_start, type, n FROM hop_type ORDER BY window_start DESC LIMIT 10",
    "SELECT geo, sum(failures) FROM noisy_minutes GROUP BY geo",
    "SELECT count(*) FROM failed_logins",
    "SELECT name, status, watermark FROM weir_catalog.views",
    "SELECT events, bad_records FROM weir_catalog.sources",
];

/// One client: connects to the port Weir listens on now, queries until told to stop, and
/// reconnects after a kill (a refused or broken query counts as refused).
async fn query_client(
    id: usize,
    port: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
) {
    let mut turn = id;
    while !stop.load(Ordering::Relaxed) {
        let conn = format!(
            "host=127.0.0.1 port={} user=weir dbname=weir connect_timeout=5",
            port.load(Ordering::Relaxed)
        );
        let Ok(Ok((client, connection))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&conn, NoTls),
        )
        .await
        else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tokio::spawn(connection);
        while !stop.load(Ordering::Relaxed) {
            let sql = QUERIES[turn % QUERIES.len()];
            turn += 1;
            let began = Instant::now();
            match tokio::time::timeout(Duration::from_secs(10), client.simple_query(sql)).await {
                Ok(Ok(_)) => {
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                    let us = began.elapsed().as_micros() as u64;
                    stats.latencies_us.lock().unwrap().push(us);
                }
                _ => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn start(data: &Path, pipeline: &Path, logs: &Path, n: usize) -> (Weir, PathBuf) {
    let log = logs.join(format!("weir-{n}.log"));
    let weir = Weir::start_logging_to(data, &["--pipeline", pipeline.to_str().unwrap()], &log);
    (weir, log)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 30-minute soak; run by hand (see the module doc)"]
async fn soak_malformed_input_clients_and_kill9() {
    let ingest_for = env_secs("WEIR_SOAK_SECS", 1800);
    let kill_every = env_secs("WEIR_SOAK_KILL_SECS", 120);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let data = dir.path().join("data");
    let mut sql = security_source_sql(&format!(
        "connector = 'file', path = '{}', mode = 'follow'",
        input.display()
    )) + ";\n";
    for v in security_views() {
        sql += &format!("CREATE MATERIALIZED VIEW {} AS {};\n", v.name, v.view_sql);
    }
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(&pipeline, sql).unwrap();

    let (mut weir, first_log) = start(&data, &pipeline, dir.path(), 0);
    let mut logs = vec![first_log];
    let port = Arc::new(AtomicU16::new(weir.pg_port));
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ClientStats::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(query_client(id, port.clone(), stop.clone(), stats.clone())))
        .collect();

    let began = Instant::now();
    let mut batches = Vec::new();
    let (mut written, mut bad, mut part) = (0u64, 0u64, 0u64);
    let mut next_kill = began + kill_every;
    let mut recoveries = Vec::new();
    while began.elapsed() < ingest_for {
        let (batch, b) = write_part(&input, part, written);
        batches.push(batch);
        written += EVENTS_PER_FILE;
        bad += b;
        part += 1;
        if Instant::now() >= next_kill {
            weir.kill9();
            let killed = Instant::now();
            let (w, log) = start(&data, &pipeline, dir.path(), logs.len());
            weir = w;
            logs.push(log);
            port.store(weir.pg_port, Ordering::Relaxed);
            // Recovered: the restarted server answers and has passed what it had read.
            let client = weir.client().await;
            rows(&client, "SELECT 1").await;
            recoveries.push(killed.elapsed());
            next_kill = Instant::now() + kill_every;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Every line read: the source counts each valid event once and each malformed line once.
    let client = weir.client().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    let counts = loop {
        let r = rows(
            &client,
            "SELECT events, bad_records FROM weir_catalog.sources",
        )
        .await;
        if r[0][0] == written.to_string() || Instant::now() > deadline {
            break r[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        counts,
        vec![written.to_string(), bad.to_string()],
        "events and dead letters, each counted once across {} kills",
        recoveries.len()
    );
    let compared =
        assert_views_match(&client, &oracle_from_batches(batches), &security_views()).await;
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !text.contains("panicked"),
            "{} holds a panic:\n{text}",
            log.display()
        );
    }
    let mut latencies = std::mem::take(&mut *stats.latencies_us.lock().unwrap());
    latencies.sort_unstable();
    let answered = stats.answered.load(Ordering::Relaxed);
    assert!(answered > 0, "no query was answered");
    let slowest_recovery = recoveries.iter().max().copied().unwrap_or_default();
    println!(
        "soak: {:.0} s of ingest, {written} events + {bad} malformed lines in {part} files, \
         {} kill -9, recovery (restart to first answer) max {:.2} s; {CLIENTS} clients: \
         {answered} queries answered, {} refused or cut by a kill, latency p50 {:.1} ms \
         p99 {:.1} ms max {:.1} ms; {compared} view rows equal to the batch oracle",
        began.elapsed().as_secs_f64(),
        recoveries.len(),
        slowest_recovery.as_secs_f64(),
        stats.refused.load(Ordering::Relaxed),
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or_default() as f64 / 1000.0,
    );
}
