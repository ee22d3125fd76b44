//! `weir bench --query keys`: a plain GROUP BY over K distinct keys, for several K.
//!
//! For each K it writes the same number of events (key `key<(i * 7919) mod K>`, a value, a
//! time) into a followed directory, runs `SELECT k, count(*), sum(v) FROM s GROUP BY k`
//! through the whole pipeline and reports events/s, peak RSS during the run, bytes written per
//! epoch and group states read back from RocksDB, with nothing else running. Then, while more
//! events ingest (as many as the bulk's rate reads in the time the query phases take, so the
//! source stays busy throughout), sixteen tasks send point queries (`WHERE k = ...`) planned by
//! DataFusion (the baseline), then sixteen and one send them as the server answers them (the
//! point-query fast path), and it reports their p50/p99 latency and rate; then the same
//! questions travel over TCP from tokio-postgres clients (`bench/wire.rs`): first sixteen at
//! a dashboard's pace (2,000 queries/s in all, with the ingest rate they leave), then in
//! saturating loops prepared, as simple-query text, and prepared but planned by DataFusion
//! at each execution. Once the
//! view holds all K keys, a trickle of 1,000 events/s into 100 other keys runs for a few
//! seconds and the CPU the process spends per second is reported: it should not depend on K.
//! Throughput at each K is also given as a ratio to the smallest K of the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cpu;
use super::wire::{listen, wire_latencies, Latencies, WireMode};
use super::BenchError;
use crate::config::BenchArgs;
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::pg::point_query;
use crate::server::run_script;

/// One K's result.
#[derive(Debug, serde::Serialize)]
pub struct KeysResult {
    pub keys: u64,
    pub events: u64,
    pub eps: f64,
    pub eps_ratio_to_smallest: f64,
    pub peak_rss_mb: f64,
    pub epochs: u64,
    pub bytes_per_epoch: f64,
    pub store_reads: u64,
    pub evictions: u64,
    pub point_p50_ms_1: f64,
    pub point_p99_ms_1: f64,
    pub point_qps_1: f64,
    pub point_p50_ms_16: f64,
    pub point_p99_ms_16: f64,
    pub point_qps_16: f64,
    /// Whether the source was still ingesting when the last query phase ended.
    pub queries_during_ingest: bool,
    /// Events the views applied per second while the query phases ran.
    pub eps_during_queries: f64,
    /// The same 16 connections with every query planned by DataFusion (no fast path).
    pub planned_p50_ms_16: f64,
    pub planned_p99_ms_16: f64,
    pub planned_qps_16: f64,
    /// Over TCP with tokio-postgres, 16 connections: a prepared `WHERE k = $1`.
    pub wire_prepared_p50_ms_16: f64,
    pub wire_prepared_p99_ms_16: f64,
    pub wire_prepared_qps_16: f64,
    /// The same at 125 queries/s per connection (2,000 in all), latency counted from when
    /// each query was sent.
    pub wire_paced_p50_ms_16: f64,
    pub wire_paced_p99_ms_16: f64,
    pub wire_paced_qps_16: f64,
    /// Events the views applied per second during the paced phase.
    pub eps_during_paced: f64,
    /// The same with 64 connections.
    pub wire_prepared_p50_ms_64: f64,
    pub wire_prepared_p99_ms_64: f64,
    pub wire_prepared_qps_64: f64,
    /// The same with one connection.
    pub wire_prepared_p50_ms_1: f64,
    pub wire_prepared_p99_ms_1: f64,
    /// The key inlined, over the simple-query protocol, 16 connections.
    pub wire_simple_p50_ms_16: f64,
    pub wire_simple_p99_ms_16: f64,
    pub wire_simple_qps_16: f64,
    /// A prepared statement DataFusion plans at each execution (`... LIMIT 1`), 16 connections.
    pub wire_planned_p50_ms_16: f64,
    pub wire_planned_p99_ms_16: f64,
    pub wire_planned_qps_16: f64,
    /// CPU cores the whole process used during the trickle.
    pub trickle_cores: f64,
    /// Microseconds of CPU per event during the ingest alone, by thread role (`views`: the
    /// operators, `commit`: the epoch writer, `read`: reading and decoding, `rocksdb`: its
    /// flushes and compactions) and for the whole process (`total`).
    pub cpu_us_per_event: std::collections::BTreeMap<String, f64>,
    /// Bytes of memory each thread role touched for the first time during the ingest alone,
    /// per key (its minor page faults at 4 KiB): what a group costs in fresh memory, which on
    /// a VM costs CPU at a price that swings, so A/B runs compare this rather than ev/s.
    pub first_touch_bytes_per_key: std::collections::BTreeMap<String, f64>,
}

/// Appends 100 events every 100 ms to `path` for `seconds`; returns the CPU cores used.
async fn trickle(path: &std::path::Path, seconds: u64) -> Result<f64, BenchError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let cpu0 = cpu::process_seconds();
    let started = Instant::now();
    for tick in 0..seconds * 10 {
        let mut lines = String::new();
        for j in 0..100u64 {
            lines.push_str(&format!(
                "{{\"k\":\"trickle{}\",\"v\":{},\"ts\":\"2026-01-02T00:00:00.000\"}}\n",
                j,
                tick % 100
            ));
        }
        file.write_all(lines.as_bytes())?;
        file.flush()?;
        let next = Duration::from_millis(100 * (tick + 1));
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
    }
    Ok((cpu::process_seconds() - cpu0) / started.elapsed().as_secs_f64())
}

/// Awaits one query phase, logging how long it took.
async fn timed<T>(phase: &str, work: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    tracing::debug!(
        phase,
        seconds = started.elapsed().as_secs_f64(),
        "query phase done"
    );
    out
}

/// Query phases that run while the second file ingests, each for the same window (the
/// `timed` calls in `run_one`).
const QUERY_PHASES: usize = 9;

/// How often each client of the paced phase sends a query.
const PACE: Duration = Duration::from_millis(8);

/// Seconds the query phases take beyond their windows (connecting, preparing, draining).
const QUERY_SLACK_SECS: f64 = 4.0;

/// At most this many times the bulk's events are written for the query phases.
const MAX_MORE: u64 = 6;

fn key(i: u64, keys: u64) -> String {
    format!("key{}", (i.wrapping_mul(7919)) % keys)
}

/// Writes events number `events.start` up to `events.end` to `path`. Files of one run must not
/// start with the same lines: the file source takes a new file whose first bytes are all it
/// read of another for a copy made by copy-then-truncate rotation, and does not read it.
fn write_events(
    path: &std::path::Path,
    events: std::ops::Range<u64>,
    keys: u64,
) -> Result<(), BenchError> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in events {
        writeln!(
            out,
            r#"{{"k":"{}","v":{},"ts":"2026-01-01T00:{:02}:{:02}.{:03}"}}"#,
            key(i, keys),
            i % 100,
            (i / 60_000) % 60,
            (i / 1_000) % 60,
            i % 1_000
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Peak resident memory since the last reset, in MB (Linux; 0 elsewhere).
pub(super) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak RSS to the current RSS (Linux).
pub(super) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// How the benchmark's queries run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Route {
    /// As the Postgres front end runs them: point queries by the fast path, the rest planned.
    AsServed,
    /// Always planned by DataFusion (the baseline the fast path is compared with).
    Planned,
}

/// Latencies of the queries `sql(i)` sent back to back by `tasks` tasks for `duration`;
/// (p50 ms, p99 ms, qps).
pub(super) async fn query_latencies(
    engine: &Arc<Engine>,
    tasks: usize,
    duration: Duration,
    sql: impl Fn(u64) -> String + Clone + Send + 'static,
    route: Route,
) -> (f64, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let ctx = engine.context();
        let stop = stop.clone();
        let sql = sql.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = t as u64;
            while !stop.load(Ordering::Relaxed) && latencies.len() < 100_000 {
                let text = sql(i);
                let t0 = Instant::now();
                let fast = match route {
                    Route::AsServed => point_query::answer(&ctx, &text).await,
                    Route::Planned => None,
                };
                if fast.is_none() {
                    if let Ok(df) = ctx.sql(&text).await {
                        let _ = df.collect().await;
                    }
                }
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                i += tasks as u64;
                // A fast-path answer never waits, so without this the tasks would hold every
                // worker and the timer that stops them would not run until each had sent its
                // 100,000 queries (a client's own I/O yields the same way).
                tokio::task::yield_now().await;
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap_or_default());
    }
    let l = Latencies::of(all, started.elapsed().as_secs_f64());
    (l.p50_ms, l.p99_ms, l.qps)
}

/// Waits until `source` has committed `events` events; an error when `view` failed or after
/// 30 minutes.
pub(super) async fn wait_for_events(
    engine: &Engine,
    source: &str,
    view: &str,
    events: u64,
) -> Result<(), BenchError> {
    let limit = Duration::from_secs(1800);
    let started = Instant::now();
    loop {
        let board = engine.board();
        if board
            .sources
            .read()
            .get(source)
            .is_some_and(|s| s.events >= events)
        {
            return Ok(());
        }
        let failed = board
            .views
            .read()
            .get(view)
            .is_some_and(|v| v.status == "failed");
        if failed || started.elapsed() > limit {
            return Err(BenchError::Timeout(view.to_string(), limit));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run_one(keys: u64, args: &BenchArgs) -> Result<KeysResult, BenchError> {
    let (events, cache_mb) = (args.events, args.state_cache_mb);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    write_events(&input.join("a-bulk.jsonl"), 0..events, keys)?;
    let metrics = Arc::new(Metrics::new());
    reset_peak_rss();
    let engine = Engine::open(
        EngineConfig {
            max_epoch: Duration::from_millis(args.max_epoch_ms),
            state_cache_bytes: (cache_mb << 20) as usize,
            ..super::engine_config(dir.path().join("state"), Duration::from_millis(100))
        },
        metrics.clone(),
    )
    .await?;
    run_script(
        &engine,
        &format!(
            "CREATE SOURCE s (k TEXT, v BIGINT, ts TIMESTAMP) WITH (connector = 'file', path = '{}', mode = 'follow')",
            input.display()
        ),
    )
    .await?;
    let started = Instant::now();
    let (roles_before, cpu_before) = (cpu::by_role(), cpu::process_seconds());
    let faults_before = cpu::faults_by_role();
    run_script(
        &engine,
        "CREATE MATERIALIZED VIEW q AS SELECT k, count(*) AS n, sum(v) AS total FROM s GROUP BY k",
    )
    .await?;
    // Ingest alone: source events are published after the epoch that applied them is
    // committed.
    wait_for_events(&engine, "s", "q", events).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_us_per_event = cpu::per_event_us(
        &roles_before,
        &cpu::by_role(),
        cpu::process_seconds() - cpu_before,
        events,
    );
    let first_touch_bytes_per_key =
        cpu::first_touch_per_item(&faults_before, &cpu::faults_by_role(), keys);
    let peak = peak_rss_mb();
    // Ingested while the queries run: enough to keep the source busy through every phase at
    // the bulk's rate, written while the engine is idle and added to the directory at once.
    let window = Duration::from_millis(1500);
    let busy_for = QUERY_PHASES as f64 * window.as_secs_f64() + QUERY_SLACK_SECS;
    let more_events =
        ((events as f64 / elapsed * busy_for) as u64).clamp(2 * events, MAX_MORE * events);
    tracing::info!(
        "K={keys}: {events} events ingested in {elapsed:.2} s ({:.0} ev/s), CPU per event {}, \
         memory first touched per key {}; next: writing {more_events} more events to ingest \
         while point queries run, then a trickle",
        events as f64 / elapsed,
        cpu::describe(&cpu_us_per_event),
        cpu::describe_bytes(&first_touch_bytes_per_key),
    );
    let more = dir.path().join("b-more.jsonl");
    write_events(&more, events..events + more_events, keys)?;
    let total = events + more_events;
    // The views' progress is counted in the bytes they applied (committed events lag by up
    // to a grown epoch, 5 s), in events at the second file's bytes per event.
    let more_bytes = std::fs::metadata(&more)?.len();
    let bytes_per_event = more_bytes as f64 / more_events as f64;
    let source_bytes = metrics.source_bytes.with_label_values(&["s"]);
    let applied = || source_bytes.get();
    let rate =
        |bytes: u64, since: Instant| bytes as f64 / bytes_per_event / since.elapsed().as_secs_f64();
    // Point queries while the events ingest: the DataFusion-planned baseline with sixteen
    // clients, then as served (the fast path) with sixteen and with one.
    std::fs::rename(&more, input.join("b-more.jsonl"))?;
    let (queries_started, applied_before) = (Instant::now(), applied());
    let point = move |i: u64| format!("SELECT n, total FROM q WHERE k = '{}'", key(i * 31, keys));
    let planned = timed(
        "planned",
        query_latencies(&engine, 16, window, point, Route::Planned),
    )
    .await;
    let sixteen = timed(
        "sixteen",
        query_latencies(&engine, 16, window, point, Route::AsServed),
    )
    .await;
    let one = timed(
        "one",
        query_latencies(&engine, 1, window, point, Route::AsServed),
    )
    .await;
    // The same questions as a driver asks them over TCP.
    let (addr, server) = listen(&engine).await?;
    let wire_key = move |i: u64| key(i * 31, keys);
    let by_key = "SELECT n, total FROM q WHERE k = $1";
    let wire_paced = |connections, template: &str, mode, pace| {
        wire_latencies(
            addr,
            connections,
            window,
            template.to_string(),
            wire_key,
            (mode, pace),
        )
    };
    let wire =
        |connections, template: &str, mode: WireMode| wire_paced(connections, template, mode, None);
    // Sixteen clients at a dashboard's pace (2,000 queries/s in all), which leaves the cores
    // to ingestion, unlike the saturating loops after it.
    let paced_from = (Instant::now(), applied());
    let paced = timed(
        "wire_paced",
        wire_paced(16, by_key, WireMode::Prepared, Some(PACE)),
    )
    .await;
    let eps_during_paced = rate(applied() - paced_from.1, paced_from.0);
    let wire_planned = timed(
        "wire_planned",
        wire(16, &format!("{by_key} LIMIT 1"), WireMode::Prepared),
    )
    .await;
    let wire_prepared = timed("wire_prepared", wire(16, by_key, WireMode::Prepared)).await;
    let wire_prepared_1 = timed("wire_prepared_1", wire(1, by_key, WireMode::Prepared)).await;
    let wire_prepared_64 = timed("wire_prepared_64", wire(64, by_key, WireMode::Prepared)).await;
    let wire_simple = timed("wire_simple", wire(16, by_key, WireMode::Simple)).await;
    server.abort();
    let (paced, wire_planned, wire_prepared, wire_prepared_1, wire_prepared_64, wire_simple) = (
        paced?,
        wire_planned?,
        wire_prepared?,
        wire_prepared_1?,
        wire_prepared_64?,
        wire_simple?,
    );
    let applied_after = applied();
    let ingesting = applied_after - applied_before < more_bytes;
    let eps_during_queries = rate(applied_after - applied_before, queries_started);
    tracing::info!(
        "K={keys}: queries done in {:.1} s, {eps_during_queries:.0} ev/s ingested meanwhile; \
         waiting for the rest of the {total} events",
        queries_started.elapsed().as_secs_f64()
    );
    wait_for_events(&engine, "s", "q", total).await?;
    tracing::info!("K={keys}: all ingested; letting RocksDB settle, then a 5 s trickle");
    // Let the reader go idle and RocksDB finish the bulk load's compactions (at most 60 s)
    // before measuring the trickle: its cost is what a quiet view with K keys costs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = engine.store();
    // RocksDB flushes the load's last full memtable only at the next write, which would be
    // the trickle's first: flush it now, so the trickle measures a quiet view alone.
    let flushing = store.clone();
    tokio::task::spawn_blocking(move || flushing.flush_memtables()).await??;
    let settle = Instant::now();
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < Duration::from_secs(2)
        && settle.elapsed() < Duration::from_secs(60)
    {
        // RocksDB schedules the compaction that rewrites the load's newest table files (to
        // clear their sequence numbers) when a snapshot is released, which every query does:
        // release one here, or the trickle's first query starts it and pays for it.
        drop(store.read_view());
        if store.background_busy() {
            idle_since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trickle_cores = trickle(&input.join("b-trickle.jsonl"), 5).await?;
    let count = |c: &prometheus::IntCounterVec| c.with_label_values(&["q"]).get();
    let epochs = metrics
        .epoch_commit_seconds
        .with_label_values(&["s"])
        .get_sample_count();
    let bytes = metrics.epoch_bytes.with_label_values(&["s"]).get();
    let result = KeysResult {
        keys,
        events,
        eps: events as f64 / elapsed,
        eps_ratio_to_smallest: 1.0,
        peak_rss_mb: peak,
        epochs,
        bytes_per_epoch: bytes as f64 / epochs.max(1) as f64,
        store_reads: count(&metrics.state_store_reads),
        evictions: count(&metrics.state_cache_evictions),
        point_p50_ms_1: one.0,
        point_p99_ms_1: one.1,
        point_qps_1: one.2,
        point_p50_ms_16: sixteen.0,
        point_p99_ms_16: sixteen.1,
        point_qps_16: sixteen.2,
        queries_during_ingest: ingesting,
        eps_during_queries,
        planned_p50_ms_16: planned.0,
        planned_p99_ms_16: planned.1,
        planned_qps_16: planned.2,
        wire_paced_p50_ms_16: paced.p50_ms,
        wire_paced_p99_ms_16: paced.p99_ms,
        wire_paced_qps_16: paced.qps,
        eps_during_paced,
        wire_prepared_p50_ms_16: wire_prepared.p50_ms,
        wire_prepared_p99_ms_16: wire_prepared.p99_ms,
        wire_prepared_qps_16: wire_prepared.qps,
        wire_prepared_p50_ms_64: wire_prepared_64.p50_ms,
        wire_prepared_p99_ms_64: wire_prepared_64.p99_ms,
        wire_prepared_qps_64: wire_prepared_64.qps,
        wire_prepared_p50_ms_1: wire_prepared_1.p50_ms,
        wire_prepared_p99_ms_1: wire_prepared_1.p99_ms,
        wire_simple_p50_ms_16: wire_simple.p50_ms,
        wire_simple_p99_ms_16: wire_simple.p99_ms,
        wire_simple_qps_16: wire_simple.qps,
        wire_planned_p50_ms_16: wire_planned.p50_ms,
        wire_planned_p99_ms_16: wire_planned.p99_ms,
        wire_planned_qps_16: wire_planned.qps,
        trickle_cores,
        cpu_us_per_event,
        first_touch_bytes_per_key,
    };
    engine.shutdown().await;
    Ok(result)
}

/// Runs the keys benchmark for every K of `--keys`.
pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let mut smallest = None;
    for keys in &args.keys {
        let mut r = run_one(*keys, args).await?;
        let base = *smallest.get_or_insert(r.eps);
        r.eps_ratio_to_smallest = r.eps / base;
        let line = format!(
            "K={:<9} {:>9.0} ev/s ({:.2}x of smallest K)  peak RSS {:>6.0} MB  {:>5} epochs, {:>9.0} B/epoch  \
             store reads {}  evictions {}  point query 1 conn p50 {:.2} ms p99 {:.2} ms {:.0} q/s; \
             16 conns p50 {:.2} ms p99 {:.2} ms {:.0} q/s (all planned by DataFusion: p50 {:.2} ms \
             p99 {:.2} ms {:.0} q/s; ingesting throughout: {}, at {:.0} ev/s); over TCP, 16 conns: paced at 2,000 q/s \
             p50 {:.2} ms p99 {:.2} ms {:.0} q/s while {:.0} ev/s ingest; prepared p50 {:.2} ms \
             p99 {:.2} ms {:.0} q/s, simple p50 {:.2} ms p99 {:.2} ms {:.0} q/s, prepared and planned \
             (LIMIT 1) p50 {:.2} ms p99 {:.2} ms {:.0} q/s; 64 conns prepared p50 {:.2} ms p99 {:.2} ms \
             {:.0} q/s; 1 conn prepared p50 {:.2} ms p99 {:.2} ms; \
             trickle 1000 ev/s: {:.3} cores; CPU per event during ingest: {}; memory first \
             touched per key during ingest: {}",
            r.keys, r.eps, r.eps_ratio_to_smallest, r.peak_rss_mb, r.epochs, r.bytes_per_epoch,
            r.store_reads, r.evictions, r.point_p50_ms_1, r.point_p99_ms_1, r.point_qps_1,
            r.point_p50_ms_16, r.point_p99_ms_16, r.point_qps_16, r.planned_p50_ms_16,
            r.planned_p99_ms_16, r.planned_qps_16, r.queries_during_ingest, r.eps_during_queries,
            r.wire_paced_p50_ms_16, r.wire_paced_p99_ms_16, r.wire_paced_qps_16, r.eps_during_paced,
            r.wire_prepared_p50_ms_16, r.wire_prepared_p99_ms_16, r.wire_prepared_qps_16,
            r.wire_simple_p50_ms_16, r.wire_simple_p99_ms_16, r.wire_simple_qps_16,
            r.wire_planned_p50_ms_16, r.wire_planned_p99_ms_16, r.wire_planned_qps_16,
            r.wire_prepared_p50_ms_64, r.wire_prepared_p99_ms_64, r.wire_prepared_qps_64,
            r.wire_prepared_p50_ms_1, r.wire_prepared_p99_ms_1, r.trickle_cores,
            cpu::describe(&r.cpu_us_per_event),
            cpu::describe_bytes(&r.first_touch_bytes_per_key)
        );
        super::print_result(args.json, &r, line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file added while queries run must not start like the bulk file: the file source
    /// would take it for a copy of the bulk file and never read it (the benchmark then waited
    /// 30 minutes for its events).
    #[test]
    fn the_second_file_does_not_start_like_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (bulk, more) = (dir.path().join("a"), dir.path().join("b"));
        write_events(&bulk, 0..10, 4).unwrap();
        write_events(&more, 10..30, 4).unwrap();
        let bulk = std::fs::read_to_string(bulk).unwrap();
        let more = std::fs::read_to_string(more).unwrap();
        assert_eq!((bulk.lines().count(), more.lines().count()), (10, 20));
        assert_ne!(bulk.lines().next(), more.lines().next());
        assert!(!more.starts_with(&bulk));
    }
}
