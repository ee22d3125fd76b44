//! Correctness oracle: for file and generator inputs with out-of-order events, every view's
//! final rows equal the same query computed by DataFusion as a batch query.

use crate::common::oracle::{
    assert_views_match, create_views, oracle_from_batches, oracle_from_json, security_views,
    views_over_views,
};
use crate::common::{security_source_sql, wait_views_finished, write_security_events, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_views_equal_batch_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let batches = write_security_events(&input, 11, 120_000);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    let source = format!(
        "connector = 'file', path = '{}', format = 'json'",
        input.display()
    );
    client
        .simple_query(&security_source_sql(&source))
        .await
        .unwrap();
    let views: Vec<_> = security_views()
        .into_iter()
        .chain(views_over_views())
        .collect();
    create_views(&client, &views).await;
    wait_views_finished(&client).await;
    let oracle = oracle_from_json(&input, batches[0].schema()).await;
    let compared = assert_views_match(&client, &oracle, &views).await;
    assert!(compared > 1000, "compared only {compared} rows");
    let late = crate::common::rows(&client, "SELECT sum(late_rows) FROM weir_catalog.views").await;
    assert_eq!(
        late[0][0], "0",
        "out-of-order events within the watermark delay must not be late"
    );
}

/// A fresh Weir in `dir` with the security events source `events` made of `options`.
async fn with_source(dir: &std::path::Path, options: &str) -> (Weir, tokio_postgres::Client) {
    let weir = Weir::start(dir, &[]);
    let client = weir.client().await;
    client
        .simple_query(&security_source_sql(options))
        .await
        .unwrap();
    (weir, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_source_views_equal_batch_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let (_weir, client) = with_source(
        dir.path(),
        "connector = 'generator', kind = 'security_events', count = '80000', seed = '5'",
    )
    .await;
    let views: Vec<_> = security_views()
        .into_iter()
        .chain(views_over_views())
        .collect();
    create_views(&client, &views).await;
    wait_views_finished(&client).await;
    let events = weir::source::generate(weir::source::GeneratorKind::SecurityEvents, 5, 0, 80_000);
    let oracle = oracle_from_batches(vec![events]);
    assert_views_match(&client, &oracle, &views).await;
    let sources = crate::common::rows(
        &client,
        "SELECT status, events, bad_records FROM weir_catalog.sources",
    )
    .await;
    assert_eq!(
        sources,
        vec![vec!["finished".to_string(), "80000".into(), "0".into()]]
    );
}

/// The demo pipeline (`examples/security_pipeline.sql`) runs as `--pipeline`, each of its
/// views fills, and its `alerts` view names the users the generator compromises and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pipeline_runs_and_its_alerts_name_the_compromised_users() {
    let dir = tempfile::tempdir().unwrap();
    let demo = include_str!("../../examples/security_pipeline.sql");
    // Five minutes of the demo's events, at full speed and then finished.
    let bounded = demo.replace("rate = '100'", "rate = '0', count = '30000'");
    assert_ne!(bounded, demo, "the demo's generator options changed");
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(&pipeline, bounded).unwrap();
    let weir = Weir::start(
        &dir.path().join("data"),
        &["--pipeline", pipeline.to_str().unwrap()],
    );
    let client = weir.client().await;
    wait_views_finished(&client).await;
    for view in [
        "failed_logins_1m",
        "threat_by_geo_5m",
        "user_activity",
        "alerts",
    ] {
        let n = crate::common::rows(&client, &format!("SELECT count(*) FROM {view}")).await;
        assert_ne!(n[0][0], "0", "{view} is empty");
    }
    // The generator compromises every user whose number is 3 modulo 7.
    let users = crate::common::rows(
        &client,
        "SELECT user_name FROM alerts GROUP BY user_name ORDER BY user_name",
    )
    .await;
    let users: Vec<&str> = users.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        users,
        ["user_03", "user_10", "user_17", "user_24", "user_31", "user_38"]
    );
}

/// On a live source a view over a view goes on as its upstream's windows close: while the
/// generator still runs, every closed window of `user_minutes` equals the sum of the final
/// 10-second windows of `tumble_user` it covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_view_follows_a_live_source() {
    let dir = tempfile::tempdir().unwrap();
    // Unbounded: 5,000 events a second, 10 ms of event time apart (50 s per second).
    let (_weir, client) = with_source(
        dir.path(),
        "connector = 'generator', kind = 'security_events', rate = '5000', seed = '9'",
    )
    .await;
    let views: Vec<_> = security_views()
        .into_iter()
        .filter(|v| v.name == "tumble_user")
        .chain(views_over_views())
        .collect();
    create_views(&client, &views).await;
    // Until the view over the view closed three minutes (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let through = loop {
        let w = crate::common::rows(
            &client,
            "SELECT CAST(watermark AS BIGINT) FROM weir_catalog.views WHERE name = 'user_minutes'",
        )
        .await;
        let w: i64 = w[0][0].parse().unwrap_or(0);
        // 2026-01-01 00:03:00
        if w >= 1_767_225_780_000 {
            break w;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "user_minutes never closed three minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let closed = |sql: &str| sql.replace("{through}", &through.to_string());
    let actual = crate::common::rows(
        &client,
        &closed(
            "SELECT CAST(window_start AS BIGINT), user_name, n, hi, windows FROM user_minutes \
             WHERE CAST(window_end AS BIGINT) <= {through} ORDER BY 1, 2",
        ),
    )
    .await;
    let expected = crate::common::rows(
        &client,
        &closed(
            "SELECT (CAST(window_start AS BIGINT) / 60000) * 60000 AS m, user_name, sum(n), max(hi), count(*) \
             FROM tumble_user WHERE CAST(window_start AS BIGINT) < ({through} / 60000) * 60000 \
             GROUP BY 1, 2 ORDER BY 1, 2",
        ),
    )
    .await;
    assert!(expected.len() > 10, "only {} rows closed", expected.len());
    assert_eq!(actual, expected);
    let status = crate::common::rows(&client, "SELECT status FROM weir_catalog.sources").await;
    assert_eq!(status[0][0], "running", "the source is live");
}
