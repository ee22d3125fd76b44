//! `weir bench --query freshness`: how far behind a live source a query sees its events.
//!
//! A generator emits Nexmark bids at a fixed rate (100,000 ev/s) into `SELECT count(*)` with
//! 500 ms epochs, the defaults a dashboard would run with. Every 5 ms a query reads the count.
//! The generator makes event `i` due at `t0 + i / rate` (`t0`: just before the view is
//! created), so a count `c` read at time `t` says the newest visible event is at most
//! `t - t0 - c / rate` old. After a 2 s warm-up, 10 s of such reads give the delay's p50, p99
//! and maximum: the time from an event's arrival to its count being visible, for the newest
//! event a query sees (older ones became visible no later).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array};

use super::{engine_config, BenchError};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::server::run_script;

const RATE: u64 = 100_000;
const EPOCH: Duration = Duration::from_millis(500);
const WARM_UP: Duration = Duration::from_secs(2);
const MEASURED: Duration = Duration::from_secs(10);

/// The view's count, read as a client's query would.
async fn count(engine: &Engine) -> Result<u64, BenchError> {
    let batches = engine
        .context()
        .sql("SELECT n FROM fresh")
        .await?
        .collect()
        .await?;
    Ok(batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
        .find(|a| !a.is_empty() && a.is_valid(0))
        .map_or(0, |a| a.value(0) as u64))
}

/// The `q`-quantile of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

pub async fn run() -> Result<(), BenchError> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(
        engine_config(dir.path().join("state"), EPOCH),
        Arc::new(Metrics::new()),
    )
    .await?;
    let total = RATE * (WARM_UP + MEASURED + Duration::from_secs(2)).as_secs();
    run_script(
        &engine,
        &format!(
            "CREATE SOURCE live (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, \
             date_time TIMESTAMP) WITH (connector = 'generator', kind = 'nexmark_bids', \
             count = '{total}', rate = '{RATE}', seed = '1')"
        ),
    )
    .await?;
    let t0 = Instant::now();
    run_script(
        &engine,
        "CREATE MATERIALIZED VIEW fresh AS SELECT count(*) AS n FROM live",
    )
    .await?;
    let mut delays = Vec::new();
    while t0.elapsed() < WARM_UP + MEASURED {
        let seen = count(&engine).await?;
        let at = t0.elapsed();
        if at >= WARM_UP {
            let due = seen as f64 / RATE as f64;
            delays.push((at.as_secs_f64() - due).max(0.0) * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "freshness: generator at {RATE} ev/s, {} ms epochs, count(*) read every 5 ms for {} s: \
         delay from arrival to visible p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} reads)",
        EPOCH.as_millis(),
        MEASURED.as_secs(),
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN),
        delays.len()
    );
    engine.shutdown().await;
    Ok(())
}
