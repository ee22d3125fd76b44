//! A panic in a pipeline thread fails that pipeline only: its source and views show `failed`
//! with the message, `/health` stays 200 but says `degraded` and names them, a metric counts
//! it, and the other pipelines and queries go on.

use crate::common::{rows, wait_for, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_pipeline_is_failed_and_health_is_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..10).map(|i| format!("{{\"a\":{i}}}")).collect();
    crate::common::write_lines(&input, &lines);
    let weir = Weir::start_with_env(
        &dir.path().join("data"),
        &[],
        &[("WEIR_PANIC_IN_VIEW", "boom")],
    );
    let client = weir.client().await;
    let health = crate::common::http_get(weir.http_port, "/health").await;
    assert!(health.contains(r#"{"status":"ok","#), "{health}");
    client
        .simple_query(&format!(
            "CREATE SOURCE calm (a BIGINT) WITH (connector = 'file', path = '{0}'); \
             CREATE SOURCE wild (a BIGINT) WITH (connector = 'file', path = '{0}'); \
             CREATE MATERIALIZED VIEW fine AS SELECT count(*) AS n FROM calm; \
             CREATE MATERIALIZED VIEW boom AS SELECT count(*) AS n FROM wild",
            input.display()
        ))
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT status FROM weir_catalog.views WHERE name = 'boom'",
        "failed",
    )
    .await;
    let failed = rows(
        &client,
        "SELECT name, status, error FROM weir_catalog.sources WHERE name = 'wild' \
         UNION ALL SELECT name, status, error FROM weir_catalog.views WHERE name = 'boom'",
    )
    .await;
    assert_eq!(failed.len(), 2);
    for row in &failed {
        assert_eq!(row[1], "failed", "{row:?}");
        assert!(row[2].contains("injected fault in view boom"), "{row:?}");
    }
    wait_for(
        &client,
        "SELECT status FROM weir_catalog.views WHERE name = 'fine'",
        "finished",
    )
    .await;
    assert_eq!(rows(&client, "SELECT n FROM fine").await[0][0], "10");

    let health = crate::common::http_get(weir.http_port, "/health").await;
    assert!(
        health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"),
        "{health}"
    );
    assert!(health.contains(r#""status":"degraded""#), "{health}");
    assert!(
        health.contains(r#""failed_sources":[{"name":"wild","#),
        "{health}"
    );
    assert!(
        health.contains(r#""failed_views":[{"name":"boom","#),
        "{health}"
    );
    assert!(
        !health.contains("calm") && !health.contains("fine"),
        "{health}"
    );
    let page = crate::common::http_get(weir.http_port, "/metrics").await;
    assert!(
        page.lines()
            .any(|l| l == "weir_pipelines_failed_total{source=\"wild\"} 1"),
        "{page}"
    );
}
