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
