//! Client compatibility: psql meta-commands, tokio-postgres prepared statements, HTTP health
//! and metrics, and `--help` listing every option.

mod common;

use std::process::Command;

use common::{rows, wait_views_finished, Weir};

fn psql(port: u16, command: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "analyst",
            "-d",
            "weir",
            "-X",
            "-c",
            command,
        ])
        .output()
        .expect("psql must be installed (the README's test command installs postgresql-client)");
    assert!(
        out.status.success(),
        "psql {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_drivers_and_http_work() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/logins.jsonl");
    client
        .simple_query(&format!(
            "CREATE SOURCE logins (event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT, source_ip TEXT, geo TEXT, \
             threat_score DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') WITH (connector = 'file', path = '{data}'); \
             CREATE MATERIALIZED VIEW failures AS SELECT user_name, count(*) AS n FROM logins \
             WHERE type = 'LOGIN_FAILED' GROUP BY user_name"
        ))
        .await
        .unwrap();
    wait_views_finished(&client).await;

    // psql: plain queries and the catalog queries behind \d.
    let out = psql(
        weir.pg_port,
        "SELECT user_name, n FROM failures ORDER BY user_name",
    );
    assert!(out.contains("alice     | 4"), "{out}");
    let listed = psql(weir.pg_port, "\\d");
    assert!(listed.contains("failures"), "\\d lists the view: {listed}");
    let described = psql(weir.pg_port, "\\d failures");
    assert!(
        described.contains("user_name") && described.contains("bigint"),
        "\\d failures: {described}"
    );

    // tokio-postgres extended protocol with a parameter.
    let row = client
        .query_one("SELECT n FROM failures WHERE user_name = $1", &[&"bob"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);

    // Errors keep their SQLSTATE through the extended protocol too.
    let err = client.query("SELECT * FROM nope", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err:?}");
    assert_eq!(rows(&client, "SELECT 1").await[0][0], "1");

    let health = common::http_get(weir.http_port, "/health").await;
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let metrics = common::http_get(weir.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_source_events_total{source=\"logins\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_view_rows_written_total{view=\"failures\"}"),
        "{metrics}"
    );
}

#[test]
fn help_lists_every_option() {
    let out = Command::new(common::weir_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--pg-addr",
        "--http-addr",
        "--data-dir",
        "--pipeline",
        "--epoch-ms",
        "--config",
        "demo",
        "bench",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// Runs `weir bench` with `args` and returns each printed JSON object.
fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(common::weir_bin())
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn bench_prints_json_for_file_and_kafka_pipelines() {
    let file = bench_json(&["--events", "20000", "--query", "hop"]);
    assert_eq!(file.len(), 1);
    assert_eq!(file[0]["query"], "hop");
    assert_eq!(file[0]["events"], 20000);
    assert_eq!(file[0]["stream_rows"], file[0]["batch_rows"]);
    for field in ["stream_eps", "batch_eps", "ratio"] {
        assert!(file[0][field].as_f64().unwrap() > 0.0, "{field}");
    }
    let kafka = bench_json(&["--kafka", "--events", "20000", "--query", "tumble"]);
    assert_eq!(kafka.len(), 1);
    assert_eq!(kafka[0]["query"], "kafka_tumble");
    for field in ["stream_eps", "decode_eps", "ratio"] {
        assert!(kafka[0][field].as_f64().unwrap() > 0.0, "{field}");
    }
}

#[test]
fn subcommand_help_lists_kafka_options() {
    for (command, flags) in [
        ("demo", &["--kafka", "--pg-addr"][..]),
        (
            "bench",
            &["--kafka", "--partitions", "--events", "--json", "--query"][..],
        ),
    ] {
        let out = Command::new(common::weir_bin())
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(
                help.contains(flag),
                "{command} --help lacks {flag}:\n{help}"
            );
        }
    }
}
