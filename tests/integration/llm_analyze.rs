//! `llm_analyze` against a local OpenAI-compatible mock on 127.0.0.1: answers fill the view
//! and survive a restart without new calls; failures open the circuit breaker, and records
//! left pending are asked again after a restart.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{http_get, rows, wait_for, write_lines, Weir};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// The mock endpoint: counts calls; answers "analysis of: <prompt>", or HTTP 500 while
/// `failing`. Checks the API key each call carries.
#[derive(Default)]
struct Mock {
    calls: AtomicUsize,
    failing: AtomicBool,
    bad_keys: AtomicUsize,
}

async fn complete(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON request");
    mock.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
        mock.bad_keys.fetch_add(1, Ordering::SeqCst);
    }
    if mock.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error": "overloaded"}"#.to_string(),
        );
    }
    let prompt = body
        .pointer("/messages/0/content")
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    let model = body["model"].as_str().unwrap_or_default();
    let answer = format!("{model} says: analysis of {prompt}");
    let reply = serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]
    });
    (StatusCode::OK, reply.to_string())
}

/// Serves the mock on a free loopback port; returns its chat-completions URL.
async fn serve(mock: Arc<Mock>) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(complete))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1/chat/completions")
}

/// A config file with an `[llm]` table for `url` and `extra` settings.
fn config(dir: &Path, url: &str, extra: &str) -> String {
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[llm]\nurl = \"{url}\"\nmodel = \"mock-1\"\napi_key_env = \"WEIR_TEST_LLM_KEY\"\ncalls_per_minute = 60000\n{extra}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn start(data: &Path, config: &str) -> Weir {
    Weir::start_with_env(
        data,
        &["--config", config],
        &[("WEIR_TEST_LLM_KEY", "sk-test")],
    )
}

/// Ten logins; users u0..u9, every third one failed.
fn write_logins(path: &Path) {
    let lines: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"user_name":"u{i}","ts":"2026-01-01T00:00:{i:02}Z","failed":{},"ip":"10.0.0.{i}"}}"#,
                i % 3 == 0
            )
        })
        .collect();
    write_lines(path, &lines);
}

const SETUP: [&str; 2] = [
    "CREATE SOURCE logins (user_name TEXT, ts TIMESTAMP, failed BOOLEAN, ip TEXT, \
     WATERMARK FOR ts AS ts - INTERVAL '1 second') \
     WITH (connector = 'file', path = '{DIR}', format = 'json')",
    "CREATE MATERIALIZED VIEW explained AS SELECT user_name, ip, \
     llm_analyze('Why did ' || user_name || ' fail from ' || ip || '?') AS why \
     FROM logins WHERE failed",
];

async fn create(weir: &Weir, input: &Path) {
    let client = weir.client().await;
    for sql in SETUP {
        client
            .batch_execute(&sql.replace("{DIR}", &input.display().to_string()))
            .await
            .unwrap();
    }
}

/// Waits (bounded) until `n` records are answered.
async fn wait_answered(client: &tokio_postgres::Client, n: usize) {
    let sql = "SELECT count(*) FROM weir_catalog.llm_analyses WHERE status = 'ok'";
    wait_for(client, sql, &n.to_string()).await;
}

/// Waits (bounded) until `calls` reaches `n`.
async fn wait_calls(mock: &Mock, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.calls.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{} calls, expected {n}",
            mock.calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_fill_the_view_once_and_survive_a_restart() {
    let mock = Arc::new(Mock::default());
    let url = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_logins(&input.join("a.jsonl"));
    let config = config(dir.path(), &url, "max_concurrent = 2");
    let data = dir.path().join("data");
    let mut weir = start(&data, &config);
    create(&weir, &input).await;
    let client = weir.client().await;
    wait_answered(&client, 4).await;
    let expected = vec![
        vec![
            "u0".to_string(),
            "mock-1 says: analysis of Why did u0 fail from 10.0.0.0?".into(),
        ],
        vec![
            "u3".into(),
            "mock-1 says: analysis of Why did u3 fail from 10.0.0.3?".into(),
        ],
        vec![
            "u6".into(),
            "mock-1 says: analysis of Why did u6 fail from 10.0.0.6?".into(),
        ],
        vec![
            "u9".into(),
            "mock-1 says: analysis of Why did u9 fail from 10.0.0.9?".into(),
        ],
    ];
    let query = "SELECT user_name, why FROM explained ORDER BY user_name";
    assert_eq!(rows(&client, query).await, expected);
    assert_eq!(
        mock.calls.load(Ordering::SeqCst),
        4,
        "one call per kept row"
    );
    assert_eq!(
        mock.bad_keys.load(Ordering::SeqCst),
        0,
        "the key from api_key_env"
    );
    let record = rows(
        &client,
        "SELECT column_name, attempts, latency_ms IS NOT NULL, answered_at >= requested_at \
         FROM weir_catalog.llm_analyses WHERE prompt LIKE '%u3%'",
    )
    .await;
    assert_eq!(record, vec![vec!["why", "1", "t", "t"]]);
    let metrics = http_get(weir.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_llm_calls_total{outcome=\"ok\"} 4"),
        "{metrics}"
    );

    // A restart reads nothing again and asks nothing again; the answers stay.
    weir.stop();
    let weir = start(&data, &config);
    let client = weir.client().await;
    wait_for(
        &client,
        "SELECT status FROM weir_catalog.views WHERE name = 'explained'",
        "finished",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows(&client, query).await, expected);
    assert_eq!(mock.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_open_the_breaker_and_pending_records_are_asked_after_a_restart() {
    let mock = Arc::new(Mock::default());
    mock.failing.store(true, Ordering::SeqCst);
    let url = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_logins(&input.join("a.jsonl"));
    let config = config(
        dir.path(),
        &url,
        "max_concurrent = 1\nmax_attempts = 10\nbreaker_failures = 3\nbreaker_cooldown_ms = 600000",
    );
    let data = dir.path().join("data");
    let mut weir = start(&data, &config);
    create(&weir, &input).await;
    let client = weir.client().await;
    wait_calls(&mock, 3).await;
    // Open: no more calls for the cooldown; the records wait, pending, with the last error.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mock.calls.load(Ordering::SeqCst),
        3,
        "the breaker stops calling"
    );
    wait_for(
        &client,
        "SELECT count(*) FROM weir_catalog.llm_analyses WHERE status = 'pending'",
        "4",
    )
    .await;
    let errors = rows(
        &client,
        "SELECT DISTINCT error FROM weir_catalog.llm_analyses WHERE error IS NOT NULL",
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0][0].contains("HTTP 500"), "{errors:?}");
    assert_eq!(
        rows(&client, "SELECT count(*) FROM explained WHERE why IS NULL").await,
        vec![vec!["4"]]
    );
    let metrics = http_get(weir.http_port, "/metrics").await;
    assert!(metrics.contains("weir_llm_breaker_open 1"), "{metrics}");

    // The endpoint recovers; a restart asks again for what is pending.
    mock.failing.store(false, Ordering::SeqCst);
    weir.kill9();
    let weir = start(&data, &config);
    let client = weir.client().await;
    wait_answered(&client, 4).await;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*) FROM explained WHERE why LIKE 'mock-1 says:%'"
        )
        .await,
        vec![vec!["4"]]
    );
    assert_eq!(mock.calls.load(Ordering::SeqCst), 3 + 4);
}
