//! Kafka topics as streaming tables, against librdkafka's in-process mock cluster: several
//! partitions with out-of-order events, per-partition watermarks, bad messages, tombstones,
//! kill -9 while consuming, and a broker that goes away and comes back.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{kafka_source_sql, mock_kafka, EmbeddedKafka};
use common::oracle::{assert_views_match, create_views, oracle_from_batches, security_views};
use common::{rows, Weir};
use tokio_postgres::Client;

/// Waits (bounded) until `sql` returns `expected` in its first cell.
async fn wait_cell(client: &Client, sql: &str, expected: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = rows(client, sql).await;
        if last.first().is_some_and(|r| r[0] == expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sql}: expected {expected}, last saw {last:?}");
}

/// A weir on a fresh data directory with source `events` over the mock cluster's topic.
async fn start_with_source(kafka: &EmbeddedKafka) -> (tempfile::TempDir, Weir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    client
        .simple_query(&kafka_source_sql(kafka, ""))
        .await
        .unwrap();
    (dir, weir, client)
}

fn events(seed: u64, from: u64, to: u64) -> datafusion::arrow::record_batch::RecordBatch {
    weir::source::generate(weir::source::GeneratorKind::SecurityEvents, seed, from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_bad_messages_and_watermarks() {
    let kafka = mock_kafka(3, "security-events", 4);
    let batch = events(9, 0, 40_000);
    let good = kafka.send_rows(&batch, "user_name").unwrap();
    // Bad messages on partition 2 only, and a tombstone on partition 1.
    kafka.send(2, None, b"not json at all").unwrap();
    kafka
        .send(2, None, br#"{"user_name":"x","ts":"yesterday"}"#)
        .unwrap();
    kafka.send(2, None, br#"{"user_name":"no_time"}"#).unwrap();
    kafka.send(1, Some("deleted"), b"").unwrap();
    kafka.flush().unwrap();

    let (_dir, weir, client) = start_with_source(&kafka).await;
    let views = security_views();
    create_views(&client, &views).await;
    wait_cell(
        &client,
        "SELECT events FROM weir_catalog.sources",
        &good.to_string(),
        Duration::from_secs(60),
    )
    .await;
    // Every partition goes idle after 1 s: the watermark reaches the newest event and the
    // windows before it close; the open ones stay visible. Either way views equal the oracle.
    wait_cell(
        &client,
        "SELECT count(*) FROM weir_catalog.source_partitions WHERE idle AND lag = 0",
        "4",
        Duration::from_secs(30),
    )
    .await;
    assert_views_match(&client, &oracle_from_batches(vec![batch]), &views).await;

    let source = rows(
        &client,
        "SELECT connector, status, bad_records FROM weir_catalog.sources",
    )
    .await;
    assert_eq!(source[0], vec!["kafka", "running", "3"]);
    let dead = rows(
        &client,
        "SELECT position, error FROM weir_catalog.dead_letters ORDER BY position",
    )
    .await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    for letter in &dead {
        assert!(
            letter[0].starts_with("2/"),
            "position is partition/offset: {letter:?}"
        );
    }
    assert!(dead.iter().any(|d| d[1].contains("event-time")), "{dead:?}");
    let late = rows(&client, "SELECT sum(late_rows) FROM weir_catalog.views").await;
    assert_eq!(late[0][0], "0", "per-partition watermarks make no row late");
    let metrics = common::http_get(weir.http_port, "/metrics").await;
    for p in 0..4 {
        let lag = format!("weir_source_partition_lag{{partition=\"{p}\",source=\"events\"}} 0");
        assert!(metrics.contains(&lag), "missing {lag} in\n{metrics}");
    }
    for metric in [
        "weir_source_bytes_total{source=\"events\"}",
        "weir_source_skipped_total{source=\"events\"} 1",
        "weir_source_bad_records_total{source=\"events\"} 3",
        "weir_source_watermark_lag_seconds{source=\"events\"}",
        "weir_state_size_bytes",
        "weir_epoch_commit_seconds_count{source=\"events\"}",
    ] {
        assert!(metrics.contains(metric), "missing {metric}");
    }

    // Metadata columns: every row's partition and offset are where it was produced.
    client
        .simple_query(
            "CREATE MATERIALIZED VIEW per_partition AS SELECT kafka_partition, count(*) AS n, \
             max(kafka_offset) AS last_offset, count(DISTINCT kafka_key) AS keys FROM events GROUP BY kafka_partition",
        )
        .await
        .unwrap();
    wait_cell(
        &client,
        "SELECT sum(n) FROM per_partition",
        &good.to_string(),
        Duration::from_secs(30),
    )
    .await;
    let parts = rows(
        &client,
        "SELECT count(*), sum(CASE WHEN last_offset >= n - 1 THEN 1 ELSE 0 END) FROM per_partition",
    )
    .await;
    assert_eq!(parts[0], vec!["4", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_consuming_counts_every_message_once() {
    // The mock cluster keeps about 5 MB per partition: 8 partitions hold 100,000 events.
    let kafka = mock_kafka(1, "security-events", 8);
    let total = 100_000u64;
    let all = events(4, 0, total);
    kafka.send_rows(&all, "user_name").unwrap();
    kafka.flush().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = kafka_source_sql(&kafka, "") + ";\n";
    for v in security_views() {
        pipeline += &format!("CREATE MATERIALIZED VIEW {} AS {};\n", v.name, v.view_sql);
    }
    let file = dir.path().join("pipeline.sql");
    std::fs::write(&file, pipeline).unwrap();
    let args = ["--pipeline", file.to_str().unwrap()];
    let data = dir.path().join("data");

    let mut interrupted = 0;
    for after in [10_000u64, 40_000, 70_000] {
        let mut weir = Weir::start(&data, &args);
        let client = weir.client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n: u64 = rows(&client, "SELECT events FROM weir_catalog.sources").await[0][0]
                .parse()
                .unwrap();
            if n >= total {
                break;
            }
            if n > after {
                interrupted += 1;
                break;
            }
            if Instant::now() >= deadline {
                let parts = rows(&client, "SELECT * FROM weir_catalog.source_partitions").await;
                let src = rows(&client, "SELECT (SELECT sum(n) FROM per_user), (SELECT events FROM weir_catalog.sources)").await;
                panic!("no progress past {n} events: {src:?} {parts:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        weir.kill9();
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} kills landed mid-stream"
    );
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    wait_cell(
        &client,
        "SELECT events FROM weir_catalog.sources",
        &total.to_string(),
        Duration::from_secs(60),
    )
    .await;
    assert_views_match(&client, &oracle_from_batches(vec![all]), &security_views()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_stalls_and_resumes() {
    let mut kafka = mock_kafka(1, "security-events", 2);
    let first = events(6, 0, 5_000);
    kafka.send_rows(&first, "user_name").unwrap();
    kafka.flush().unwrap();

    let (_dir, _weir, client) = start_with_source(&kafka).await;
    client
        .simple_query("CREATE MATERIALIZED VIEW totals AS SELECT type, count(*) AS n FROM events GROUP BY type")
        .await
        .unwrap();
    wait_cell(
        &client,
        "SELECT sum(n) FROM totals",
        "5000",
        Duration::from_secs(30),
    )
    .await;

    kafka.set_broker_up(1, false).unwrap();
    wait_cell(
        &client,
        "SELECT status FROM weir_catalog.sources",
        "stalled",
        Duration::from_secs(30),
    )
    .await;
    // Queries go on while the broker is away.
    assert_eq!(
        rows(&client, "SELECT sum(n) FROM totals").await[0][0],
        "5000"
    );
    let reason = rows(&client, "SELECT error FROM weir_catalog.sources").await;
    assert_ne!(reason[0][0], "NULL", "a stalled source says why");

    kafka.set_broker_up(1, true).unwrap();
    kafka.reconnect().unwrap();
    let second = events(6, 5_000, 8_000);
    kafka.send_rows(&second, "user_name").unwrap();
    kafka.flush().unwrap();
    wait_cell(
        &client,
        "SELECT sum(n) FROM totals",
        "8000",
        Duration::from_secs(60),
    )
    .await;
    wait_cell(
        &client,
        "SELECT status FROM weir_catalog.sources",
        "running",
        Duration::from_secs(30),
    )
    .await;
}
