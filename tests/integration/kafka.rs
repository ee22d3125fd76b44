//! Kafka topics as streaming tables, against librdkafka's in-process mock cluster: several
//! partitions with out-of-order events, per-partition watermarks, bad messages, tombstones,
//! kill -9 while consuming, and a broker that goes away and comes back.

use std::time::{Duration, Instant};

use crate::common::kafka::{kafka_source_sql, kafka_source_sql_idle, mock_kafka, EmbeddedKafka};
use crate::common::oracle::{
    assert_views_match, create_views, oracle_from_batches, security_views,
};
use crate::common::{rows, Weir};
use datafusion::arrow::record_batch::RecordBatch;
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
    start_with_source_idle(kafka, "1 second").await
}

/// [`start_with_source`] with partitions going idle after `idle`.
async fn start_with_source_idle(
    kafka: &EmbeddedKafka,
    idle: &str,
) -> (tempfile::TempDir, Weir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    client
        .simple_query(&kafka_source_sql_idle(kafka, idle, ""))
        .await
        .unwrap();
    (dir, weir, client)
}

/// Waits until all `partitions` partitions are idle and fully read.
async fn wait_all_idle(client: &Client, partitions: usize) {
    wait_cell(
        client,
        "SELECT count(*) FROM weir_catalog.source_partitions WHERE idle AND lag = 0",
        &partitions.to_string(),
        Duration::from_secs(30),
    )
    .await;
}

/// Produces `batch` and waits until the source has counted `total` events.
async fn send_and_count(kafka: &EmbeddedKafka, client: &Client, batch: &RecordBatch, total: usize) {
    kafka.send_rows(batch, "user_name").unwrap();
    kafka.flush().unwrap();
    wait_cell(
        client,
        "SELECT events FROM weir_catalog.sources",
        &total.to_string(),
        Duration::from_secs(60),
    )
    .await;
}

fn events(seed: u64, from: u64, to: u64) -> RecordBatch {
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
    wait_all_idle(&client, 4).await;
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
    let metrics = crate::common::http_get(weir.http_port, "/metrics").await;
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
    // The mock cluster keeps about 5 MB per partition (users hash unevenly to partitions, so
    // stay well below it): 32 partitions hold 200,000 events, enough that the reader is still
    // at work when a kill lands (with 100,000 a whole run sometimes committed in one epoch,
    // between two polls).
    let kafka = mock_kafka(1, "security-events", 32);
    let total = 200_000u64;
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
    // Short epochs that do not grow while the topic is backlogged, so the views commit many
    // times while 200,000 events are read (with growth on, a fast reader commits them all in
    // one grown epoch and no kill lands between two commits).
    let args = [
        "--pipeline",
        file.to_str().unwrap(),
        "--epoch-ms",
        "20",
        "--max-epoch-ms",
        "0",
    ];
    let data = dir.path().join("data");

    let mut interrupted = 0;
    for after in [20_000u64, 60_000, 100_000, 140_000] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_broker_errors_moved_leaders_and_an_oversized_message() {
    use rdkafka::types::RDKafkaApiKey;
    use rdkafka::types::RDKafkaRespErr::*;
    const TOPIC: &str = "security-events";
    let kafka = mock_kafka(3, TOPIC, 4);
    let cluster = kafka.cluster();
    let first = events(11, 0, 10_000);
    kafka.send_rows(&first, "user_name").unwrap();
    // Valid JSON, but over the default max_message_bytes (1 MiB): a dead letter, and the
    // partition goes on past it.
    let big = format!(
        r#"{{"event_id":"big","user_name":"big","ts":"2026-01-01T00:00:00Z","type":"{}"}}"#,
        "x".repeat(1_500_000)
    );
    kafka.send(1, Some("big"), big.as_bytes()).unwrap();
    kafka.flush().unwrap();
    let big_offset = split_by_partition(&first, 1, kafka.partitions).0.num_rows();

    // Every kind of request Weir makes fails now and then: fetches (a moved leader, a
    // timeout, a dropped connection), offset lookups, metadata and group commits.
    let fetch_errors = [
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
    ];
    cluster.request_errors(RDKafkaApiKey::Fetch, &fetch_errors);
    cluster.request_errors(
        RDKafkaApiKey::ListOffsets,
        &[
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::Metadata,
        &[RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TRANSPORT],
    );
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        ],
    );

    // No partition goes idle during the test, so no row can be late.
    let (_dir, _weir, client) = start_with_source_idle(&kafka, "30 seconds").await;
    let views = security_views();
    create_views(&client, &views).await;
    wait_cell(
        &client,
        "SELECT events FROM weir_catalog.sources",
        "10000",
        Duration::from_secs(60),
    )
    .await;

    // Leaders move to other brokers while more events arrive, with more fetch errors.
    for p in 0..kafka.partitions {
        cluster
            .partition_leader(TOPIC, p, Some(1 + (p + 1) % 3))
            .unwrap();
    }
    cluster.request_errors(RDKafkaApiKey::Fetch, &fetch_errors);
    let second = events(11, 10_000, 20_000);
    send_and_count(&kafka, &client, &second, 20_000).await;
    assert_views_match(&client, &oracle_from_batches(vec![first, second]), &views).await;

    let source = rows(
        &client,
        "SELECT status, bad_records FROM weir_catalog.sources",
    )
    .await;
    assert_eq!(source[0], vec!["running", "1"]);
    let dead = rows(
        &client,
        "SELECT position, error FROM weir_catalog.dead_letters",
    )
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0][0], format!("1/{big_offset}"));
    assert!(dead[0][1].contains("max_message_bytes"), "{dead:?}");
}

/// The rows of `batch` that `send_rows` puts in `partition` (keys hash as it does), and the
/// rest.
fn split_by_partition(
    batch: &RecordBatch,
    partition: i32,
    partitions: i32,
) -> (RecordBatch, RecordBatch) {
    use datafusion::arrow::array::{Array, BooleanArray, StringArray};
    use datafusion::arrow::compute::{filter_record_batch, not};
    let keys = batch
        .column_by_name("user_name")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let mask: BooleanArray = (0..keys.len())
        .map(|i| {
            let hash: u64 = keys.value(i).bytes().map(u64::from).sum();
            Some((hash % partitions as u64) as i32 == partition)
        })
        .collect();
    (
        filter_record_batch(batch, &mask).unwrap(),
        filter_record_batch(batch, &not(&mask).unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_that_wake_up_lose_no_row_silently() {
    // All partitions go idle (the watermark moves to the newest event), then a backlog of
    // older-than-the-rest events arrives on all of them. Whatever the watermark makes late is
    // counted late; nothing is lost or overwritten: every event is in a window or a late row.
    let kafka = mock_kafka(3, "security-events", 4);
    let first = events(12, 0, 10_000);
    kafka.send_rows(&first, "user_name").unwrap();
    kafka.flush().unwrap();
    let (_dir, _weir, client) = start_with_source(&kafka).await;
    client
        .simple_query(
            "CREATE MATERIALIZED VIEW per_window AS SELECT window_start, user_name, count(*) AS n \
             FROM TUMBLE(events, ts, INTERVAL '10 seconds') GROUP BY window_start, window_end, user_name",
        )
        .await
        .unwrap();
    wait_all_idle(&client, 4).await;
    // Partition 0's share of the next events comes first and runs the watermark ahead (the
    // others are idle); then the others' share, now older than the watermark.
    let second = events(12, 10_000, 20_000);
    let (ahead, behind) = split_by_partition(&second, 0, kafka.partitions);
    send_and_count(&kafka, &client, &ahead, 10_000 + ahead.num_rows()).await;
    send_and_count(&kafka, &client, &behind, 20_000).await;
    let accounted =
        "SELECT (SELECT sum(n) FROM per_window) + (SELECT late_rows FROM weir_catalog.views)";
    wait_cell(&client, accounted, "20000", Duration::from_secs(10)).await;
}

/// Real clusters compress: messages produced with each codec librdkafka offers (zstd, lz4,
/// snappy, gzip) are all read and counted, one codec per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_topics_are_read_with_every_codec() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let codecs = ["zstd", "lz4", "snappy", "gzip"];
    let kafka = mock_kafka(1, "compressed", codecs.len() as i32);
    let per_codec = 500;
    for (partition, codec) in codecs.iter().enumerate() {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap())
            .set("compression.type", *codec)
            .set("linger.ms", "20")
            .create()
            .unwrap_or_else(|e| panic!("a {codec} producer: {e}"));
        for i in 0..per_codec {
            let value = format!(
                r#"{{"event_id":"{codec}-{i}","user_name":"u{i}","ts":"2026-01-01T00:00:{:02}","type":"{codec}","source_ip":"10.0.0.1","geo":"US","threat_score":0.5}}"#,
                i % 60
            );
            producer
                .send(
                    BaseRecord::<(), str>::to(&kafka.topic)
                        .partition(partition as i32)
                        .payload(&value),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    let (_dir, _weir, client) = start_with_source(&kafka).await;
    client
        .simple_query(
            "CREATE MATERIALIZED VIEW per_codec AS SELECT type AS codec, count(*) AS n \
             FROM events GROUP BY type",
        )
        .await
        .unwrap();
    let total = codecs.len() * per_codec;
    wait_cell(
        &client,
        "SELECT sum(n) FROM per_codec",
        &total.to_string(),
        Duration::from_secs(60),
    )
    .await;
    let got = rows(&client, "SELECT codec, n FROM per_codec ORDER BY codec").await;
    let mut want: Vec<Vec<String>> = codecs
        .iter()
        .map(|c| vec![c.to_string(), per_codec.to_string()])
        .collect();
    want.sort();
    assert_eq!(got, want);
    let dead = rows(&client, "SELECT count(*) FROM weir_catalog.dead_letters").await;
    assert_eq!(dead[0][0], "0");
}
