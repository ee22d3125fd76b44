//! Restart: kill -9 mid-stream and clean stops; afterwards the finished views equal the batch
//! oracle — no event lost, none counted twice. The pipeline file is re-run at every start.

mod common;

use std::time::{Duration, Instant};

use common::oracle::{assert_views_match, oracle_from_batches, oracle_from_json, security_views};
use common::{rows, security_source_sql, wait_views_finished, write_security_events, Weir};

/// A pipeline file: the source and every oracle view.
fn pipeline(dir: &std::path::Path, source_options: &str) -> std::path::PathBuf {
    let mut sql = security_source_sql(source_options) + ";\n";
    for v in security_views() {
        sql += &format!("CREATE MATERIALIZED VIEW {} AS {};\n", v.name, v.view_sql);
    }
    let path = dir.join("pipeline.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

/// Waits (bounded) until the source has decoded more than `events`, or finished. Returns
/// true when the source was still running, i.e. a kill now lands mid-stream.
async fn wait_events_over(weir: &Weir, events: u64) -> bool {
    let client = weir.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let r = rows(&client, "SELECT events, status FROM weir_catalog.sources").await;
        if let Some(r) = r.first() {
            if r[1] == "finished" {
                return false;
            }
            if r[0].parse::<u64>().unwrap() > events {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("source made no progress past {events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_survives_kill9_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 60,000 events at 20,000/s: about three seconds of streaming to interrupt.
    let file = pipeline(dir.path(), "connector = 'generator', kind = 'security_events', rate = '20000', count = '60000', seed = '3'");
    let args = ["--pipeline", file.to_str().unwrap()];
    let mut interrupted = 0;
    for (i, after) in [5_000u64, 15_000, 25_000].into_iter().enumerate() {
        let mut weir = Weir::start(&data, &args);
        interrupted += wait_events_over(&weir, after).await as usize;
        if i == 1 {
            weir.stop();
        } else {
            weir.kill9();
        }
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} stops landed mid-stream"
    );
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    wait_views_finished(&client).await;
    let events = weir::source::generate(weir::source::GeneratorKind::SecurityEvents, 3, 0, 60_000);
    assert_views_match(
        &client,
        &oracle_from_batches(vec![events]),
        &security_views(),
    )
    .await;
    let source = rows(&client, "SELECT events FROM weir_catalog.sources").await;
    assert_eq!(
        source[0][0], "60000",
        "each event counted once across restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_survives_repeated_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let batches = write_security_events(&input, 21, 400_000);
    let data = dir.path().join("data");
    let file = pipeline(
        dir.path(),
        &format!("connector = 'file', path = '{}'", input.display()),
    );
    let args = ["--pipeline", file.to_str().unwrap()];
    let mut interrupted = 0;
    for after in [20_000u64, 120_000, 250_000] {
        let mut weir = Weir::start(&data, &args);
        interrupted += wait_events_over(&weir, after).await as usize;
        weir.kill9();
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} kills landed mid-stream"
    );
    let mut weir = Weir::start(&data, &args);
    let client = weir.client().await;
    wait_views_finished(&client).await;
    // A clean stop and start of a finished pipeline changes nothing.
    weir.stop();
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    let oracle = oracle_from_json(&input, batches[0].schema()).await;
    assert_views_match(&client, &oracle, &security_views()).await;
    let source = rows(&client, "SELECT events, status FROM weir_catalog.sources").await;
    assert_eq!(
        source[0],
        vec!["400000".to_string(), "finished".to_string()]
    );
}
