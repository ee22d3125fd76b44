//! Late rows, through a followed file: a row appended after its window closed lands in
//! `weir_catalog.late_rows` and leaves the view unchanged; on-time rows keep flowing.

mod common;

use std::io::Write;

use common::{rows, wait_for, Weir};

fn append(path: &std::path::Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_after_window_close_is_late_and_view_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("live.jsonl");
    append(&input, r#"{"user_name":"a","ts":"2026-01-01T00:00:10Z"}"#);
    append(&input, r#"{"user_name":"a","ts":"2026-01-01T00:01:10Z"}"#);
    append(&input, r#"{"user_name":"a","ts":"2026-01-01T00:02:10Z"}"#);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE live (user_name TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
             WITH (connector = 'file', path = '{}', mode = 'follow'); \
             CREATE MATERIALIZED VIEW per_minute AS SELECT window_start, count(*) AS n \
             FROM TUMBLE(live, ts, INTERVAL '1 minute') GROUP BY window_start, window_end",
            input.display()
        ))
        .await
        .unwrap();
    // Watermark 00:02:05: minutes 0 and 1 are closed, minute 2 is open and visible.
    wait_for(&client, "SELECT count(*) FROM per_minute", "3").await;
    wait_for(&client, "SELECT open_windows FROM weir_catalog.views", "1").await;
    let before = rows(
        &client,
        "SELECT window_start, n FROM per_minute ORDER BY window_start",
    )
    .await;

    append(
        &input,
        r#"{"user_name":"late","ts":"2026-01-01T00:00:30Z"}"#,
    );
    wait_for(&client, "SELECT count(*) FROM weir_catalog.late_rows", "1").await;
    let late = rows(
        &client,
        "SELECT view, event_time, watermark, raw FROM weir_catalog.late_rows",
    )
    .await;
    assert_eq!(late[0][0], "per_minute");
    assert_eq!(late[0][1], "2026-01-01 00:00:30");
    assert_eq!(late[0][2], "2026-01-01 00:02:05");
    assert!(
        late[0][3].contains("\"late\""),
        "raw row kept: {}",
        late[0][3]
    );
    assert_eq!(
        rows(&client, "SELECT late_rows FROM weir_catalog.views").await[0][0],
        "1"
    );

    // An on-time row for the open window is applied; the closed windows never change.
    append(&input, r#"{"user_name":"b","ts":"2026-01-01T00:02:20Z"}"#);
    wait_for(
        &client,
        "SELECT n FROM per_minute WHERE window_start = TIMESTAMP '2026-01-01 00:02:00'",
        "2",
    )
    .await;
    let after = rows(
        &client,
        "SELECT window_start, n FROM per_minute ORDER BY window_start",
    )
    .await;
    assert_eq!(after[..2], before[..2]);
    let metrics = common::http_get(weir.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_view_late_rows_total{view=\"per_minute\"} 1"),
        "{metrics}"
    );
}
