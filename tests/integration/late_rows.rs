//! Late rows, through a followed file: a row appended after its window closed lands in
//! `weir_catalog.late_rows` and leaves the view unchanged; on-time rows keep flowing.

use crate::common::{append_line as append, rows, wait_for, Weir};

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
    // The status board counts the row once the runner sees the epoch written, which can be
    // a moment after the row is readable from the store.
    wait_for(&client, "SELECT late_rows FROM weir_catalog.views", "1").await;

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
    let metrics = crate::common::http_get(weir.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_view_late_rows_total{view=\"per_minute\"} 1"),
        "{metrics}"
    );
}

/// A HOP row late for some of its windows (not all) is applied to the open ones and counted
/// as late (`late_rows`, the metric and `weir_catalog.late_rows` with the windows it missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_row_late_for_some_windows_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hop.jsonl");
    let base = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z, a multiple of 30 s
    for s in [10, 70, 50] {
        append(&input, &format!("{{\"ts\":{}}}", base + s * 1_000));
    }
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE hops (ts TIMESTAMP, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW per_window AS SELECT window_start, count(*) AS n \
             FROM HOP(hops, ts, INTERVAL '30 seconds', INTERVAL '1 minute') \
             GROUP BY window_start, window_end",
            input.display()
        ))
        .await
        .unwrap();
    crate::common::wait_views_finished(&client).await;
    // The row at 50 s met watermark 70 s: [0 s, 60 s) was closed, [30 s, 90 s) was open.
    let counts = rows(&client, "SELECT n FROM per_window ORDER BY window_start").await;
    let counts: Vec<&str> = counts.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(counts, vec!["1", "1", "2", "1"]);
    assert_eq!(
        rows(&client, "SELECT late_rows FROM weir_catalog.views").await[0][0],
        "1"
    );
    assert_eq!(
        rows(&client, "SELECT missed_windows FROM weir_catalog.late_rows").await,
        vec![vec!["1".to_string()]]
    );
    let page = crate::common::http_get(weir.http_port, "/metrics").await;
    assert!(
        page.lines()
            .any(|l| l == "weir_view_late_rows_total{view=\"per_window\"} 1"),
        "{page}"
    );
}
