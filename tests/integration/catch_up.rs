//! A view created on a running source never freezes the others: it replays the source's
//! history from a reader of its own, without the source's rate limit, while the views that
//! were running go on; then it joins them. Both end exact, also across kill -9 mid catch-up.

use std::time::{Duration, Instant};

use crate::common::oracle::{assert_views_match, oracle_from_batches, security_views, OracleView};
use crate::common::{rows, security_source_sql, wait_for, wait_views_finished, Weir};
use datafusion::arrow::record_batch::RecordBatch;
use tokio_postgres::Client;
use weir::source::{generate, GeneratorKind};

/// The oracle view named `name`.
fn view(name: &str) -> OracleView {
    security_views()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap()
}

async fn create(client: &Client, v: &OracleView) {
    client
        .simple_query(&format!(
            "CREATE MATERIALIZED VIEW {} AS {}",
            v.name, v.view_sql
        ))
        .await
        .unwrap();
}

/// Events a view holds: the sum of its per-group counts (0 while it has none).
async fn events_in(client: &Client, view: &str) -> u64 {
    let r = rows(client, &format!("SELECT sum(n) FROM {view}")).await;
    r[0][0].parse().unwrap_or(0)
}

fn events(seed: u64, from: u64, to: u64) -> RecordBatch {
    generate(GeneratorKind::SecurityEvents, seed, from, to)
}

/// Writes security events `from..to` of `seed` as one JSON-lines file.
fn write_events(path: &std::path::Path, seed: u64, from: u64, to: u64) -> RecordBatch {
    let batch = events(seed, from, to);
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        datafusion::arrow::json::LineDelimitedWriter::new(std::io::BufWriter::new(file));
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_view_catches_up_at_full_speed_while_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    // 40,000 events at 5,000 a second: eight seconds of a paced stream.
    client
        .simple_query(&security_source_sql(
            "connector = 'generator', kind = 'security_events', rate = '5000', count = '40000', seed = '4'",
        ))
        .await
        .unwrap();
    let (old, new) = (view("tumble_user"), view("per_user"));
    create(&client, &old).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while events_in(&client, old.name).await < 15_000 {
        assert!(
            Instant::now() < deadline,
            "the old view never got 15,000 events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = events_in(&client, old.name).await;
    create(&client, &new).await;
    // Replaying three seconds of history at the source's rate would take three seconds, and
    // the old view would wait for it; caught up at full speed, both are past `before` at once.
    let created = Instant::now();
    loop {
        let (old_n, new_n) = (
            events_in(&client, old.name).await,
            events_in(&client, new.name).await,
        );
        if old_n > before && new_n >= before {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_millis(1500),
            "1.5 s after CREATE: old view {old_n} events, new view {new_n} (old had {before} at CREATE)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_views_finished(&client).await;
    let oracle = oracle_from_batches(vec![events(4, 0, 40_000)]);
    assert_views_match(&client, &oracle, &[old, new]).await;
    let source = rows(&client, "SELECT events FROM weir_catalog.sources").await;
    assert_eq!(source[0][0], "40000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_a_view_catches_up_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let first = write_events(&input.join("part-0.jsonl"), 9, 0, 200_000);
    let mut weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    client
        .simple_query(&security_source_sql(&format!(
            "connector = 'file', path = '{}', mode = 'follow'",
            input.display()
        )))
        .await
        .unwrap();
    let (old, new) = (view("tumble_user"), view("per_user"));
    let newer = OracleView {
        name: "per_geo",
        view_sql: "SELECT geo, count(*) AS n FROM events GROUP BY geo",
        batch_sql: "SELECT geo, count(*) AS n FROM events GROUP BY geo",
        canonical: "SELECT geo, n FROM {} ORDER BY 1",
    };
    create(&client, &old).await;
    wait_for(
        &client,
        &format!("SELECT sum(n) FROM {}", old.name),
        "200000",
    )
    .await;
    create(&client, &new).await;
    // A second view created while the first catches up restarts the pipeline: the catch-up
    // resumes from the first one's stored frontier.
    create(&client, &newer).await;
    // The new views show that they are catching up until they hold the whole history.
    let status = rows(
        &client,
        "SELECT status FROM weir_catalog.views WHERE name = 'per_geo'",
    )
    .await;
    let newer_events = events_in(&client, newer.name).await;
    assert!(
        status[0][0] == "catching up" || newer_events == 200_000,
        "per_geo is {status:?} with {newer_events} of 200000 events"
    );
    let caught = events_in(&client, new.name).await;
    weir.kill9();
    eprintln!("killed with {caught} of 200000 events in the catching-up view");

    let second = write_events(&input.join("part-1.jsonl"), 9, 200_000, 201_000);
    let weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    let views = [old, new, newer];
    for v in &views {
        wait_for(&client, &format!("SELECT sum(n) FROM {}", v.name), "201000").await;
    }
    let oracle = oracle_from_batches(vec![first, second]);
    assert_views_match(&client, &oracle, &views).await;
    let source = rows(&client, "SELECT events FROM weir_catalog.sources").await;
    assert_eq!(source[0][0], "201000", "each event counted once");
}
