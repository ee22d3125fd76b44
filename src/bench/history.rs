//! `weir bench --query history`: reads of the last hour of a 1-minute TUMBLE view that holds
//! `--days` days of closed windows (default 30), over 1 and 16 concurrent queries.
//!
//! The view is loaded from a file (one event per minute for each of `HISTORY_KEYS` keys, so
//! 30 days are 43,200 windows and 172,800 rows); queries then run while a second source
//! ingests a GROUP BY at full speed, so they compete with ingest for the two cores. A
//! last-hour query reads 60 windows: one range scan over time-ordered keys.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keys::{peak_rss_mb, query_latencies, reset_peak_rss, wait_for_events, Route};
use super::BenchError;
use crate::config::BenchArgs;
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::server::run_script;

/// Keys per minute of history.
const HISTORY_KEYS: u64 = 4;
/// Events of the source that ingests while the queries run.
const BUSY_EVENTS: u64 = 3_000_000;
/// The first minute of the history.
const EPOCH_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[derive(Debug, serde::Serialize)]
pub struct HistoryResult {
    pub days: u64,
    pub windows: u64,
    pub rows: u64,
    pub load_seconds: f64,
    pub peak_rss_mb: f64,
    /// Rows a last-hour query returned (60 windows × keys).
    pub rows_per_query: usize,
    pub p50_ms_1: f64,
    pub p99_ms_1: f64,
    pub qps_1: f64,
    pub p50_ms_16: f64,
    pub p99_ms_16: f64,
    pub qps_16: f64,
    pub p50_ms_64: f64,
    pub p99_ms_64: f64,
    pub qps_64: f64,
}

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string()
}

fn write_history(path: &std::path::Path, minutes: u64) -> Result<(), BenchError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    // One more minute so the last full hour's windows close.
    for m in 0..=minutes {
        let ts = timestamp(EPOCH_MS + m as i64 * 60_000);
        for k in 0..HISTORY_KEYS {
            writeln!(out, r#"{{"k":"host{k}","v":{},"ts":"{ts}"}}"#, m % 100)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn write_busy(path: &std::path::Path) -> Result<(), BenchError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..BUSY_EVENTS {
        writeln!(
            out,
            r#"{{"k":"key{}","v":{},"ts":"{}"}}"#,
            (i * 7919) % 100_000,
            i % 100,
            timestamp(EPOCH_MS + i as i64)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Runs the history benchmark and prints its result.
pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let days = args.days;
    let minutes = days * 24 * 60;
    let dir = tempfile::tempdir()?;
    let history = dir.path().join("history.jsonl");
    let busy = dir.path().join("busy.jsonl");
    write_history(&history, minutes)?;
    write_busy(&busy)?;
    reset_peak_rss();
    let engine = Engine::open(
        EngineConfig {
            state_cache_bytes: (args.state_cache_mb << 20) as usize,
            ..super::engine_config(dir.path().join("state"), Duration::from_millis(500))
        },
        Arc::new(Metrics::new()),
    )
    .await?;
    let started = Instant::now();
    run_script(
        &engine,
        &format!(
            "CREATE SOURCE h (k TEXT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}');
             CREATE MATERIALIZED VIEW per_minute AS SELECT k, window_start, count(*) AS n, \
             sum(v) AS total FROM TUMBLE(h, ts, INTERVAL '1 minute') \
             GROUP BY window_start, window_end, k",
            history.display()
        ),
    )
    .await?;
    wait_for_events(&engine, "h", "per_minute", (minutes + 1) * HISTORY_KEYS).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    // Ingest at full speed while the queries run.
    run_script(
        &engine,
        &format!(
            "CREATE SOURCE busy (k TEXT, v BIGINT, ts TIMESTAMP) WITH (connector = 'file', path = '{}');
             CREATE MATERIALIZED VIEW busy_totals AS SELECT k, count(*) AS n FROM busy GROUP BY k",
            busy.display()
        ),
    )
    .await?;
    let from = timestamp(EPOCH_MS + (minutes as i64 - 60) * 60_000);
    let to = timestamp(EPOCH_MS + minutes as i64 * 60_000);
    let sql = move |_: u64| {
        format!(
            "SELECT k, window_start, n, total FROM per_minute \
             WHERE window_start >= TIMESTAMP '{from}' AND window_start < TIMESTAMP '{to}'"
        )
    };
    let rows_per_query = engine
        .context()
        .sql(&sql(0))
        .await?
        .collect()
        .await?
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let latencies = |connections| {
        query_latencies(
            &engine,
            connections,
            Duration::from_millis(2000),
            sql.clone(),
            Route::AsServed,
        )
    };
    let one = latencies(1).await;
    let sixteen = latencies(16).await;
    let sixty_four = latencies(64).await;
    let r = HistoryResult {
        days,
        windows: minutes,
        rows: minutes * HISTORY_KEYS,
        load_seconds,
        peak_rss_mb: peak_rss_mb(),
        rows_per_query,
        p50_ms_1: one.0,
        p99_ms_1: one.1,
        qps_1: one.2,
        p50_ms_16: sixteen.0,
        p99_ms_16: sixteen.1,
        qps_16: sixteen.2,
        p50_ms_64: sixty_four.0,
        p99_ms_64: sixty_four.1,
        qps_64: sixty_four.2,
    };
    engine.shutdown().await;
    let line =
        format!(
        "history {} days: {} windows, {} rows, loaded in {:.1} s, peak RSS {:.0} MB; last hour \
         ({} rows) while ingesting: 1 conn p50 {:.2} ms p99 {:.2} ms {:.0} q/s; 16 conns p50 \
         {:.2} ms p99 {:.2} ms {:.0} q/s; 64 conns p50 {:.2} ms p99 {:.2} ms {:.0} q/s",
        r.days, r.windows, r.rows, r.load_seconds, r.peak_rss_mb, r.rows_per_query, r.p50_ms_1,
        r.p99_ms_1, r.qps_1, r.p50_ms_16, r.p99_ms_16, r.qps_16, r.p50_ms_64, r.p99_ms_64,
        r.qps_64
    );
    super::print_result(args.json, &r, line);
    Ok(())
}
