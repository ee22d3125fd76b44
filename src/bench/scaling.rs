//! `weir bench --query scaling`: the same GROUP BY as 1, 2 and 4 views on one source.
//!
//! Each run opens a fresh engine on an empty followed directory, creates the views (so they
//! share one pipeline: one reader and decoder, one operator thread), then links the bids
//! file into the directory and times until the source has committed every event. The
//! ratio to one view says what each added view costs the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keys::wait_for_events;
use super::{engine_config, write_events, BenchError};
use crate::config::BenchArgs;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::server::run_script;

const VIEW: &str = "SELECT auction, count(*) AS bids, max(price) AS top FROM bids GROUP BY auction";

/// Events/s of `views` copies of the view fed by one source reading `data`.
async fn run_views(data: &std::path::Path, events: u64, views: usize) -> Result<f64, BenchError> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    let engine = Engine::open(
        engine_config(dir.path().join("state"), Duration::from_secs(1)),
        Arc::new(Metrics::new()),
    )
    .await?;
    run_script(
        &engine,
        &format!(
            "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, \
             url TEXT, date_time TIMESTAMP) WITH (connector = 'file', path = '{}', \
             format = 'json', mode = 'follow')",
            input.display()
        ),
    )
    .await?;
    for i in 0..views {
        run_script(&engine, &format!("CREATE MATERIALIZED VIEW q{i} AS {VIEW}")).await?;
    }
    let started = Instant::now();
    std::fs::hard_link(data, input.join("bids.json"))?;
    wait_for_events(&engine, "bids", "q0", events).await?;
    let eps = events as f64 / started.elapsed().as_secs_f64();
    engine.shutdown().await;
    Ok(eps)
}

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("bids.json");
    write_events(&data, args.events)?;
    let mut one = None;
    for views in [1, 2, 4] {
        let eps = run_views(&data, args.events, views).await?;
        let base = *one.get_or_insert(eps);
        println!(
            "{views} view(s) of GROUP BY auction on one source: {eps:>10.0} ev/s ({:.2}x of one view)",
            eps / base
        );
    }
    Ok(())
}
