//! Bad input: valid lines mixed with malformed JSON, wrong types and missing fields. Every
//! valid row is counted, every bad one is in dead_letters, and the server stays up.

mod common;

use common::{rows, wait_views_finished, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_go_to_dead_letters_and_valid_ones_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let mut lines = Vec::new();
    let (mut valid, mut bad) = (0u64, 0u64);
    let mut expected_sum = 0i64;
    for i in 0..20_000i64 {
        let line = match i % 10 {
            3 => {
                bad += 1;
                format!(
                    "{{\"user\":\"u{}\",\"ts\":\"2026-01-01T00:00:00Z\",\"amount\":",
                    i % 7
                ) // truncated JSON
            }
            5 => {
                bad += 1;
                format!(
                    "{{\"user\":\"u{}\",\"ts\":\"2026-01-01T00:00:00Z\",\"amount\":\"lots\"}}",
                    i % 7
                ) // wrong type
            }
            7 => {
                bad += 1;
                format!("{{\"user\":\"u{}\",\"amount\":{i}}}", i % 7) // missing event time
            }
            8 => {
                valid += 1;
                format!(
                    "{{\"user\":\"u{}\",\"ts\":{}}}",
                    i % 7,
                    1_767_225_600_000i64 + i
                ) // missing amount: NULL
            }
            _ => {
                valid += 1;
                expected_sum += i;
                format!(
                    "{{\"user\":\"u{}\",\"ts\":{},\"amount\":{i},\"extra\":[1,2]}}",
                    i % 7,
                    1_767_225_600_000i64 + i
                )
            }
        };
        lines.push(line);
    }
    common::write_lines(&input, &lines);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE pay (user TEXT, ts TIMESTAMP, amount BIGINT, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS total FROM pay",
            input.display()
        ))
        .await
        .unwrap();
    wait_views_finished(&client).await;
    let totals = rows(&client, "SELECT n, total FROM totals").await;
    assert_eq!(
        totals,
        vec![vec![valid.to_string(), expected_sum.to_string()]]
    );
    let source = rows(
        &client,
        "SELECT events, bad_records FROM weir_catalog.sources",
    )
    .await;
    assert_eq!(source, vec![vec![valid.to_string(), bad.to_string()]]);
    let dead = rows(
        &client,
        "SELECT count(*), count(DISTINCT position) FROM weir_catalog.dead_letters",
    )
    .await;
    assert_eq!(dead, vec![vec![bad.to_string(), bad.to_string()]]);
    let reasons = rows(
        &client,
        "SELECT count(*) FROM weir_catalog.dead_letters WHERE error LIKE '%event-time%'",
    )
    .await;
    assert_eq!(reasons[0][0], "2000");
    assert_eq!(rows(&client, "SELECT 'alive'").await[0][0], "alive");
}

/// Dead letters are bounded: beyond `--error-rows-max` the oldest are deleted (counted in a
/// metric), while the source still counts every bad record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_bounded_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let lines: Vec<String> = (0..1_000)
        .map(|i| {
            if i % 4 == 0 {
                format!(
                    "{{\"user\":\"u\",\"ts\":{},\"amount\":1}}",
                    1_767_225_600_000i64 + i
                )
            } else {
                format!("not json {i}")
            }
        })
        .collect();
    common::write_lines(&input, &lines);
    let weir = Weir::start(&dir.path().join("data"), &["--error-rows-max", "100"]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE pay (user TEXT, ts TIMESTAMP, amount BIGINT) \
             WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM pay",
            input.display()
        ))
        .await
        .unwrap();
    wait_views_finished(&client).await;
    let source = rows(
        &client,
        "SELECT events, bad_records FROM weir_catalog.sources",
    )
    .await;
    assert_eq!(source, vec![vec!["250".to_string(), "750".into()]]);
    let kept: u64 = rows(&client, "SELECT count(*) FROM weir_catalog.dead_letters").await[0][0]
        .parse()
        .unwrap();
    assert!((100..=110).contains(&kept), "kept {kept} dead letters");
    // The newest are the ones kept.
    let last = rows(
        &client,
        "SELECT count(*) FROM weir_catalog.dead_letters WHERE raw = 'not json 999'",
    )
    .await;
    assert_eq!(last[0][0], "1");
    let page = common::http_get(weir.http_port, "/metrics").await;
    let dropped: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("weir_dead_letters_dropped_total{source=\"pay\"} "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(dropped + kept, 750);
}
