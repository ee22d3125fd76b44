//! Correctness oracle: for file and generator inputs with out-of-order events, every view's
//! final rows equal the same query computed by DataFusion as a batch query.

mod common;

use common::oracle::{
    assert_views_match, create_views, oracle_from_batches, oracle_from_json, security_views,
};
use common::{security_source_sql, wait_views_finished, write_security_events, Weir};

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
    let views = security_views();
    create_views(&client, &views).await;
    wait_views_finished(&client).await;
    let oracle = oracle_from_json(&input, batches[0].schema()).await;
    let compared = assert_views_match(&client, &oracle, &views).await;
    assert!(compared > 1000, "compared only {compared} rows");
    let late = common::rows(&client, "SELECT sum(late_rows) FROM weir_catalog.views").await;
    assert_eq!(
        late[0][0], "0",
        "out-of-order events within the watermark delay must not be late"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_source_views_equal_batch_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    let source = "connector = 'generator', kind = 'security_events', count = '80000', seed = '5'";
    client
        .simple_query(&security_source_sql(source))
        .await
        .unwrap();
    let views = security_views();
    create_views(&client, &views).await;
    wait_views_finished(&client).await;
    let events = weir::source::generate(weir::source::GeneratorKind::SecurityEvents, 5, 0, 80_000);
    let oracle = oracle_from_batches(vec![events]);
    assert_views_match(&client, &oracle, &views).await;
    let sources = common::rows(
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
    let demo = include_str!("../examples/security_pipeline.sql");
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
        let n = common::rows(&client, &format!("SELECT count(*) FROM {view}")).await;
        assert_ne!(n[0][0], "0", "{view} is empty");
    }
    // The generator compromises every user whose number is 3 modulo 7.
    let users = common::rows(
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
