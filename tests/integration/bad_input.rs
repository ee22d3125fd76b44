//! Bad input: valid lines mixed with malformed JSON, wrong types and missing fields. Every
//! valid row is counted, every bad one is in dead_letters, and the server stays up.

use crate::common::{refused, rows, wait_views_finished, Weir};

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
    crate::common::write_lines(&input, &lines);
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
    crate::common::write_lines(&input, &lines);
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
    let page = crate::common::http_get(weir.http_port, "/metrics").await;
    let dropped: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("weir_dead_letters_dropped_total{source=\"pay\"} "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(dropped + kept, 750);
}

/// An event time read in the wrong unit (microseconds as milliseconds: year 57,000) is a dead
/// letter, not the watermark: the rows after it are on time and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_time_far_ahead_is_a_dead_letter_not_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let base = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut lines: Vec<String> = (0..100)
        .map(|i| format!("{{\"user\":\"u{}\",\"ts\":{}}}", i % 3, base + i * 1_000))
        .collect();
    lines.insert(
        50,
        format!("{{\"user\":\"u0\",\"ts\":{}}}", (base + 50_000) * 1_000),
    );
    // Two hours ahead: within the default bound, beyond the source's `max_future`.
    lines.insert(
        60,
        format!("{{\"user\":\"u0\",\"ts\":{}}}", base + 7_200_000),
    );
    crate::common::write_lines(&input, &lines);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    let (code, _) = refused(
        &client,
        "CREATE SOURCE bad (ts TIMESTAMP) WITH (connector = 'file', path = '/tmp', max_future = 'soon')",
    )
    .await;
    assert_eq!(code, "22023");
    client
        .simple_query(&format!(
            "CREATE SOURCE ev (user TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'file', path = '{}', max_future = '1 hour'); \
             CREATE MATERIALIZED VIEW per_minute AS SELECT window_start, count(*) AS n \
             FROM TUMBLE(ev, ts, INTERVAL '1 minute') GROUP BY window_start, window_end",
            input.display()
        ))
        .await
        .unwrap();
    wait_views_finished(&client).await;
    let per_minute = rows(&client, "SELECT n FROM per_minute ORDER BY window_start").await;
    assert_eq!(
        per_minute,
        vec![vec!["60".to_string()], vec!["40".to_string()]]
    );
    let views = rows(&client, "SELECT status, late_rows FROM weir_catalog.views").await;
    assert_eq!(views, vec![vec!["finished".to_string(), "0".into()]]);
    let dead = rows(
        &client,
        "SELECT position, error FROM weir_catalog.dead_letters ORDER BY position",
    )
    .await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert!(d[1].contains("ahead of the watermark"), "{d:?}");
    }
    assert!(dead[0][1].contains("+57"), "{:?}", dead[0]);
}

/// A live source also refuses event times beyond `max_future` ahead of the wall clock, even
/// before it has a watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_source_refuses_event_times_ahead_of_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("live.jsonl");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    crate::common::write_lines(
        &input,
        &[
            format!("{{\"ts\":{}}}", now + 3 * day),
            format!("{{\"ts\":{}}}", now - 1_000),
            format!("{{\"ts\":{}}}", now + 2 * day),
            format!("{{\"ts\":{}}}", now),
        ],
    );
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE live (ts TIMESTAMP, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}', mode = 'follow'); \
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM live",
            input.display()
        ))
        .await
        .unwrap();
    crate::common::wait_for(&client, "SELECT n FROM n", "2").await;
    let dead = rows(&client, "SELECT error FROM weir_catalog.dead_letters").await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d[0].contains("ahead of the wall clock")),
        "{dead:?}"
    );
}

/// A row on which a view's WHERE, projection or aggregate argument fails at runtime is a dead
/// letter of that view (once, whatever its windows), and the view goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_a_view_fails_on_is_a_dead_letter_and_the_view_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = [(1, 1_000), (0, 2_000), (2, 3_000)]
        .iter()
        .map(|(a, ts)| format!("{{\"a\":{a},\"ts\":{ts}}}"))
        .collect();
    crate::common::write_lines(&input, &lines);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE s (a BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW in_sum AS SELECT count(*) AS n, sum(10 / a) AS q FROM s; \
             CREATE MATERIALIZED VIEW in_where AS SELECT count(*) AS n FROM s WHERE 10 / a > 1; \
             CREATE MATERIALIZED VIEW in_cast AS SELECT count(*) AS n, \
               sum(CAST(CASE WHEN a = 0 THEN 'x' ELSE CAST(a AS TEXT) END AS BIGINT)) AS c FROM s; \
             CREATE MATERIALIZED VIEW in_hop AS SELECT window_start, count(*) AS n \
               FROM HOP(s, ts, INTERVAL '1 second', INTERVAL '3 seconds') WHERE 10 / a > 0 \
               GROUP BY window_start, window_end",
            input.display()
        ))
        .await
        .unwrap();
    wait_views_finished(&client).await;
    assert_eq!(
        rows(&client, "SELECT n, q FROM in_sum").await,
        vec![vec!["2".to_string(), "15".into()]]
    );
    assert_eq!(rows(&client, "SELECT n FROM in_where").await[0][0], "2");
    assert_eq!(
        rows(&client, "SELECT n, c FROM in_cast").await,
        vec![vec!["2".to_string(), "3".into()]]
    );
    // Windows [-1,2) [0,3) [1,4) hold the row at 1 s; [1,4) [2,5) [3,6) the row at 3 s.
    assert_eq!(
        rows(&client, "SELECT sum(n), count(*) FROM in_hop").await,
        vec![vec!["6".to_string(), "5".into()]]
    );
    let dead = rows(
        &client,
        "SELECT error, raw FROM weir_catalog.dead_letters ORDER BY error",
    )
    .await;
    let views: Vec<&str> = dead
        .iter()
        .map(|d| d[0].split(':').next().unwrap())
        .collect();
    assert_eq!(
        views,
        vec![
            "view in_cast",
            "view in_hop",
            "view in_sum",
            "view in_where"
        ]
    );
    assert!(dead.iter().all(|d| d[1].contains("\"a\":0")), "{dead:?}");
    assert!(dead[2][0].contains("Divide by zero"), "{dead:?}");
}

/// Columns no view reads are not kept by the decoder, but nothing a user sees changes: a value
/// of the wrong type in one is a dead letter, and a row a view refuses or finds late is shown
/// whole, unread columns included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_columns_are_still_checked_and_shown_in_refused_and_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let line = |a: i64, note: &str, code: &str, ts: i64| {
        format!("{{\"a\":{a},\"note\":\"{note}\",\"code\":{code},\"ts\":{ts}}}")
    };
    let lines = vec![
        line(1, "first", "7", 1_000),
        line(0, "zero", "8", 2_000),
        line(2, "wrong", "\"eight\"", 3_000),
        line(2, "fine", "9", 4_000),
    ];
    crate::common::write_lines(&input, &lines);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE s (a BIGINT, note TEXT, code BIGINT, ts TIMESTAMP, \
               WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}', mode = 'follow'); \
             CREATE MATERIALIZED VIEW quotients AS SELECT count(*) AS n, sum(10 / a) AS q FROM s; \
             CREATE MATERIALIZED VIEW per_second AS SELECT window_start, count(*) AS n \
               FROM TUMBLE(s, ts, INTERVAL '1 second') GROUP BY window_start, window_end",
            input.display()
        ))
        .await
        .unwrap();
    crate::common::wait_for(&client, "SELECT n FROM quotients", "2").await;
    let dead = rows(
        &client,
        "SELECT error, raw FROM weir_catalog.dead_letters ORDER BY position",
    )
    .await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0][0].starts_with("view quotients"), "{dead:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&dead[0][1]).unwrap(),
        serde_json::json!({"a": 0, "note": "zero", "code": 8, "ts": "1970-01-01T00:00:02"}),
        "the refused row is whole: {dead:?}"
    );
    assert_eq!(
        dead[1][1], lines[2],
        "a string in the unread BIGINT column: {dead:?}"
    );

    let late = line(5, "late one", "10", 500);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{late}\n").as_bytes()))
        .unwrap();
    crate::common::wait_for(&client, "SELECT count(*) FROM weir_catalog.late_rows", "1").await;
    let raw = rows(&client, "SELECT raw FROM weir_catalog.late_rows").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&raw[0][0]).unwrap(),
        serde_json::json!({"a": 5, "note": "late one", "code": 10, "ts": "1970-01-01T00:00:00.500"}),
    );
    crate::common::wait_for(&client, "SELECT q FROM quotients", "17").await;
}
