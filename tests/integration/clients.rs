//! Client compatibility: psql meta-commands, tokio-postgres prepared statements, what clients
//! ask at connect (version, settings, session statements), the Python drivers' scripts in
//! `tests/clients/` (psycopg 3, psycopg2 + SQLAlchemy 2, asyncpg), pgJDBC
//! (`tests/clients/JdbcClient.java`, compiled with the JDK at test time), HTTP health and metrics,
//! and `--help` listing every option.

use std::process::Command;

use crate::common::{rows, wait_views_finished, Weir};

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
    stdout_of(out, &format!("psql {command}"))
}

/// The standard output of a client or tool that ran, after asserting that it succeeded
/// (its standard output and error, under `what`, are the failure message).
fn stdout_of(out: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Creates source `logins` (tests/data/logins.jsonl) and view `failures` (failed logins per
/// user), and waits until the view is final.
async fn failures_view(client: &tokio_postgres::Client) {
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
    wait_views_finished(client).await;
}

/// [`failures_view`], then view `worst`: per user the highest threat score, how many
/// places, and the first event time.
async fn worst_view(client: &tokio_postgres::Client) {
    failures_view(client).await;
    client
        .simple_query(
            "CREATE MATERIALIZED VIEW worst AS SELECT user_name, max(threat_score) AS worst, \
             approx_distinct(geo) AS geos, min(ts) AS first_seen FROM logins GROUP BY user_name",
        )
        .await
        .unwrap();
    wait_views_finished(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_drivers_and_http_work() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    failures_view(&client).await;

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

    let health = crate::common::http_get(weir.http_port, "/health").await;
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let metrics = crate::common::http_get(weir.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_source_events_total{source=\"logins\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_view_rows_written_total{view=\"failures\"}"),
        "{metrics}"
    );
}

/// The SQLSTATE of a failed simple query.
async fn sqlstate(client: &tokio_postgres::Client, sql: &str) -> String {
    let err = client.simple_query(sql).await.unwrap_err();
    err.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// `--query-memory-mb` bounds each connection's query: one past it fails with 53200 and its
/// session goes on, while the same query's smaller sibling runs on two connections at once
/// (each has a pool of its own, not a share of one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_memory_limit_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &["--query-memory-mb", "24"]);
    let (a, b) = (weir.client().await, weir.client().await);
    // A hash join keeps its whole build side in memory (DataFusion cannot spill it).
    let join = |n: u64| {
        format!(
            "SELECT count(*) FROM generate_series(1, {n}) x(v) JOIN generate_series(1, {n}) y(v) \
             ON x.v = y.v"
        )
    };
    let err = a.simple_query(&join(4_000_000)).await.unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "53200", "{db:?}");
    assert!(db.message().contains("memory"), "{}", db.message());
    assert_eq!(rows(&a, "SELECT 'still here'").await[0][0], "still here");
    // DataFusion's own options are per connection too.
    rows(&a, "SET datafusion.explain.physical_plan_only = true").await;
    let plans = |rows: Vec<Vec<String>>| rows.concat().join(" ");
    let on_a = plans(rows(&a, "EXPLAIN SELECT 1").await);
    let on_b = plans(rows(&b, "EXPLAIN SELECT 1").await);
    assert!(
        !on_a.contains("logical_plan") && on_b.contains("logical_plan"),
        "{on_a} / {on_b}"
    );
    let small = join(300_000);
    let (x, y) = tokio::join!(a.simple_query(&small), b.simple_query(&small));
    for result in [x, y] {
        let messages = result.unwrap();
        let row = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        assert_eq!(row.and_then(|r| r.get(0)), Some("300000"), "{messages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_time_behaviour_clients_rely_on() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    let one = |rows: Vec<Vec<String>>| rows[0][0].clone();

    // SQLAlchemy parses version(); the startup ParameterStatus and SHOW agree with it.
    let version = one(rows(&client, "SELECT pg_catalog.version()").await);
    assert!(
        version.starts_with("PostgreSQL 15.0 (Weir ") && version.contains("-pc-linux-gnu"),
        "{version}"
    );
    let announced = psql(
        weir.pg_port,
        "\\echo :SERVER_VERSION_NAME :SERVER_VERSION_NUM",
    );
    assert!(
        announced.starts_with("15.0 (Weir ") && announced.contains("150000"),
        "{announced}"
    );
    for (name, value) in [
        ("server_version_num", "150000"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "Etc/UTC"),
        ("time zone", "Etc/UTC"),
        ("DateStyle", "ISO, YMD"),
        ("client_encoding", "UTF8"),
        ("integer_datetimes", "on"),
        ("transaction_isolation", "read committed"),
        ("transaction isolation level", "read committed"),
    ] {
        assert_eq!(
            one(rows(&client, &format!("SHOW {name}")).await),
            value,
            "{name}"
        );
    }
    let shown = one(rows(&client, "SHOW server_version").await);
    assert!(shown.starts_with("15.0 (Weir "), "{shown}");
    // Grafana's version check; an unknown setting is 42704 and the session goes on.
    let grafana = "SELECT current_setting('server_version_num')::int / 100";
    assert_eq!(one(rows(&client, grafana).await), "1500");
    assert_eq!(
        sqlstate(&client, "SELECT current_setting('nope')").await,
        "42704"
    );
    assert_eq!(
        one(rows(&client, "SELECT current_setting('nope', true)").await),
        "NULL"
    );
    // The extended protocol answers SHOW too.
    let row = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "150000");

    // SET / RESET / RESET ALL / DISCARD ALL, per connection.
    let other = weir.client().await;
    rows(
        &client,
        "SET application_name = 'grafana'; SET DateStyle TO ISO, MDY",
    )
    .await;
    assert_eq!(one(rows(&client, "SHOW application_name").await), "grafana");
    let setting =
        "SELECT pg_catalog.current_setting('application_name'), current_setting('DateStyle')";
    assert_eq!(rows(&client, setting).await[0], ["grafana", "ISO, MDY"]);
    assert_eq!(rows(&other, setting).await[0], ["", "ISO, YMD"]);
    let prepared = client.query_one(setting, &[]).await.unwrap();
    assert_eq!(prepared.get::<_, String>(0), "grafana");
    // A statement prepared before a SET answers with the setting in force when it runs.
    let named = client.prepare(setting).await.unwrap();
    rows(&client, "SET application_name = 'pool-7'").await;
    let now = client.query_one(&named, &[]).await.unwrap();
    assert_eq!(now.get::<_, String>(0), "pool-7");
    rows(&client, "SET application_name = 'grafana'").await;
    let again = client.query_one(&named, &[]).await.unwrap();
    assert_eq!(again.get::<_, String>(0), "grafana");
    assert_eq!(one(rows(&client, "SHOW datestyle").await), "ISO, MDY");
    assert_eq!(one(rows(&other, "SHOW datestyle").await), "ISO, YMD");
    rows(&client, "RESET datestyle").await;
    assert_eq!(one(rows(&client, "SHOW datestyle").await), "ISO, YMD");
    rows(&client, "RESET ALL").await;
    assert_eq!(one(rows(&client, "SHOW application_name").await), "");
    // DISCARD ALL drops the connection's prepared statements too.
    let stmt = client.prepare("SELECT 7::BIGINT").await.unwrap();
    assert_eq!(
        client.query_one(&stmt, &[]).await.unwrap().get::<_, i64>(0),
        7
    );
    rows(&client, "DISCARD ALL").await;
    let gone = client.query(&stmt, &[]).await.unwrap_err();
    assert_eq!(gone.code().map(|c| c.code()), Some("26000"), "{gone:?}");
    rows(&client, "SET statement_timeout = '5s'").await;
    assert_eq!(one(rows(&client, "SHOW statement_timeout").await), "5000ms");
    rows(&client, "DISCARD ALL").await;
    assert_eq!(one(rows(&client, "SHOW statement_timeout").await), "0");
    // statement_timeout stops a query while its rows are computed, in both protocols, and
    // the session goes on. Unlimited, the query runs for seconds.
    let slow = "SELECT count(*) FROM generate_series(1, 3000000000) t(x) WHERE x % 7 = 3";
    rows(&client, "SET statement_timeout = '200ms'").await;
    let started = std::time::Instant::now();
    assert_eq!(sqlstate(&client, slow).await, "57014");
    let extended = client.query(slow, &[]).await.unwrap_err();
    assert_eq!(extended.code().map(|c| c.code()), Some("57014"));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(
        one(rows(&client, "SELECT 'still here'").await),
        "still here"
    );
    rows(&client, "RESET statement_timeout").await;
    // A CancelRequest stops a query while its rows are computed; the session goes on.
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let err = client.simple_query(slow).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err:?}");
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert_eq!(
        message.as_deref(),
        Some("canceling statement due to user request")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    canceller.await.unwrap().unwrap();
    assert_eq!(one(rows(&client, "SELECT 1").await), "1");
    assert_eq!(sqlstate(&client, "SET server_version = '9'").await, "55P02");
    assert_eq!(sqlstate(&client, "RESET no_such_setting").await, "42704");

    // Transactions and savepoints around reads (psycopg's transaction(), tokio-postgres).
    let in_tx = rows(
        &client,
        "BEGIN; SAVEPOINT a; SELECT 1; RELEASE SAVEPOINT a; SAVEPOINT b; \
         ROLLBACK TO SAVEPOINT b; COMMIT",
    )
    .await;
    assert_eq!(in_tx, vec![vec!["1".to_string()]]);
    assert_eq!(sqlstate(&client, "SAVEPOINT outside").await, "25P01");
    let mut client = client;
    let mut tx = client.transaction().await.unwrap();
    let nested = tx.transaction().await.unwrap();
    assert_eq!(
        nested
            .query_one("SELECT 2::BIGINT", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    nested.rollback().await.unwrap();
    tx.commit().await.unwrap();

    // asyncpg's pool reset.
    rows(
        &client,
        "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
    )
    .await;

    // The database is Weir's, never DataFusion's.
    assert_eq!(
        one(rows(&client, "SELECT current_database()").await),
        "weir"
    );
    let names = rows(
        &client,
        "SELECT datname FROM pg_catalog.pg_database ORDER BY datname",
    )
    .await;
    assert!(names.contains(&vec!["weir".to_string()]), "{names:?}");
    let listed = psql(weir.pg_port, "\\l");
    assert!(
        listed.contains("weir") && !listed.contains("datafusion"),
        "{listed}"
    );
}

/// A Grafana discovery query from tests/clients/grafana/.
fn grafana_query(name: &str, table: &str) -> String {
    let path = format!(
        "{}/tests/clients/grafana/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .replace("$TABLE", table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_information_schema_and_copy() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    failures_view(&client).await;
    let strings = |rows: &[&[&str]]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    };

    // Column types as Postgres names them, with udt_name.
    let columns = rows(
        &client,
        "SELECT table_catalog, column_name, data_type, udt_name, is_nullable \
         FROM information_schema.columns WHERE table_name = 'failures' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        columns,
        strings(&[
            &["weir", "user_name", "text", "text", "YES"],
            &["weir", "n", "bigint", "int8", "YES"],
        ])
    );
    let kinds = rows(
        &client,
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'failures'",
    )
    .await;
    assert_eq!(kinds, strings(&[&["VIEW"]]));

    // Grafana's query builder: tables on the search path unqualified, columns of an
    // unqualified table name.
    let tables = rows(&client, &grafana_query("tables.sql", "")).await;
    assert_eq!(tables[0], vec!["failures".to_string()], "{tables:?}");
    assert!(
        tables.contains(&vec!["weir_catalog.views".to_string()]),
        "{tables:?}"
    );
    let grafana_columns = rows(&client, &grafana_query("columns.sql", "failures")).await;
    assert_eq!(
        grafana_columns,
        strings(&[&["user_name", "text"], &["n", "bigint"]])
    );
    let qualified = rows(&client, &grafana_query("columns.sql", "weir_catalog.views")).await;
    assert!(
        qualified.contains(&vec![
            "watermark".to_string(),
            "timestamp without time zone".to_string()
        ]),
        "{qualified:?}"
    );

    // psql: materialized views listed by \dm (and not as views, nor the system views that
    // are off the search path), \copy of a query, COPY to a server file refused.
    let matviews = psql(weir.pg_port, "\\dm");
    assert!(
        matviews.contains("failures") && matviews.contains("materialized view"),
        "{matviews}"
    );
    let views = psql(weir.pg_port, "\\dv");
    assert!(
        !views.contains("failures") && !views.contains("weir_catalog"),
        "{views}"
    );
    let described = psql(weir.pg_port, "\\d failures");
    assert!(
        described.contains("Materialized view") && described.contains("bigint"),
        "{described}"
    );
    // With sizes and descriptions (none are kept), schemas, connection, expanded output.
    let sized = psql(weir.pg_port, "\\dm+");
    assert!(
        sized.contains("failures") && sized.contains("Size"),
        "{sized}"
    );
    // `\d+` adds storage details and the view's query.
    let verbose = psql(weir.pg_port, "\\d+ failures");
    assert!(
        verbose.contains("View definition:") && verbose.contains("count(*)"),
        "{verbose}"
    );
    // No tables ("Did not find any relations", on stderr); psql() asserts it succeeded.
    assert!(!psql(weir.pg_port, "\\dt+").contains("failures"));
    let schemas = psql(weir.pg_port, "\\dn");
    assert!(
        schemas.contains("public") && schemas.contains("weir_catalog"),
        "{schemas}"
    );
    let info = psql(weir.pg_port, "\\conninfo");
    assert!(
        info.contains("database \"weir\" as user \"analyst\""),
        "{info}"
    );
    let expanded = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &weir.pg_port.to_string(),
            "-d",
            "weir",
            "-X",
        ])
        .args(["-c", "\\x on", "-c", "SELECT 1 AS a, 2 AS b"])
        .output()
        .unwrap();
    let expanded = String::from_utf8_lossy(&expanded.stdout);
    assert!(
        expanded.contains("-[ RECORD 1 ]") && expanded.contains("b | 2"),
        "{expanded}"
    );
    let copied = psql(
        weir.pg_port,
        "\\copy (SELECT user_name, n FROM failures ORDER BY user_name) TO STDOUT",
    );
    assert_eq!(copied, "alice\t4\nbob\t2\ncarol\t1\n");
    let csv = psql(weir.pg_port, "COPY failures TO STDOUT WITH (FORMAT csv)");
    assert!(csv.contains("alice,4\n"), "{csv}");
    let file = dir.path().join("out.csv");
    let refused = client
        .simple_query(&format!("COPY (SELECT 1) TO '{}'", file.display()))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code().map(|c| c.code()),
        Some("42501"),
        "{refused:?}"
    );
    assert!(!file.exists());
    assert_eq!(rows(&client, "SELECT 1").await[0][0], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_print_as_postgres_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    let text = rows(
        &client,
        "SELECT 105::DOUBLE, 'Infinity'::DOUBLE, '-Infinity'::DOUBLE, 'NaN'::DOUBLE, 1e16::DOUBLE, \
         0.1::DOUBLE, 2.5::REAL, TIMESTAMP '2026-01-01 00:00:00', TIMESTAMP '2026-01-01 00:00:00.5'",
    )
    .await;
    let expected = [
        "105",
        "Infinity",
        "-Infinity",
        "NaN",
        "1e+16",
        "0.1",
        "2.5",
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:00.5",
    ];
    assert_eq!(text[0], expected.map(String::from).to_vec());
    // psql prints what the server sends; a view's double max is whole here.
    worst_view(&client).await;
    let out = psql(
        weir.pg_port,
        "SELECT user_name, worst, geos FROM worst WHERE user_name = 'alice'",
    );
    assert!(out.contains("alice     |    40 |    2"), "{out}");
    // COPY prints values as query results do.
    let copied = psql(
        weir.pg_port,
        "\\copy (SELECT user_name, worst FROM worst ORDER BY user_name) TO STDOUT",
    );
    assert_eq!(copied, "alice\t40\nbob\t25\ncarol\t50\n");
    let csv = psql(
        weir.pg_port,
        "COPY (SELECT TIMESTAMP '2026-01-01 00:00:00', 'Infinity'::DOUBLE, 0.5::DOUBLE, \
         NULL::TEXT, 'a,b') TO STDOUT WITH (FORMAT csv)",
    );
    assert_eq!(csv, "2026-01-01 00:00:00,Infinity,0.5,,\"a,b\"\n");
    // Unsigned results (approx_distinct) carry a type clients know: numeric.
    let stmt = client.prepare("SELECT geos FROM worst").await.unwrap();
    assert_eq!(
        stmt.columns()[0].type_(),
        &tokio_postgres::types::Type::NUMERIC
    );
}

/// psql completes names with TAB from the queries it sends (relations, schema-qualified
/// names, columns, materialized views to drop, settings to SET): typed on a pseudo-terminal,
/// each partial line comes back completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_tab_completion_finds_views_columns_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    worst_view(&client).await;
    let typed = [
        ("SELECT * FROM wor", "SELECT * FROM worst "),
        (
            "SELECT * FROM weir_catalog.vie",
            "SELECT * FROM weir_catalog.views ",
        ),
        (
            "SELECT * FROM worst WHERE geo",
            "SELECT * FROM worst WHERE geos ",
        ),
        ("DROP MATERIALIZED VIEW wo", "DROP MATERIALIZED VIEW worst "),
        ("\\d wor", "\\d worst "),
        ("SET statement_t", "SET statement_timeout "),
    ];
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/psql_tab_completion.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(weir.pg_port.to_string())
        .args(typed.iter().map(|(line, _)| *line))
        .output()
        .unwrap();
    let stdout = stdout_of(out, "psql_tab_completion.py");
    let echoed: Vec<&str> = stdout.lines().collect();
    assert_eq!(echoed.len(), typed.len(), "{stdout}");
    for ((line, completed), echo) in typed.iter().zip(echoed) {
        assert!(echo.contains(completed), "{line:?} completed as {echo:?}");
    }
}

/// The Python with the client libraries `.ci/setup` installs (psycopg 3, psycopg2,
/// SQLAlchemy 2, asyncpg).
fn python() -> std::path::PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    std::path::Path::new(&home).join(".cache/weir-py/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_read_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    worst_view(&client).await;
    let python = python();
    assert!(
        python.exists(),
        "{} missing: run .ci/setup",
        python.display()
    );
    for script in [
        "psycopg3_client.py",
        "sqlalchemy_client.py",
        "asyncpg_client.py",
    ] {
        let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(&python)
            .arg(&path)
            .env("WEIR_PG_PORT", weir.pg_port.to_string())
            .output()
            .unwrap();
        stdout_of(out, script);
    }
}

/// The pgJDBC driver `.ci/setup` installs (Debian's libpostgresql-jdbc-java).
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Whether `tool -version` runs (the JDK's `javac` and `java`).
fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_discovers_and_reads_the_views() {
    if !runs("java") || !runs("javac") {
        eprintln!("SKIPPED jdbc_discovers_and_reads_the_views: no Java (javac and java) on PATH");
        return;
    }
    assert!(
        std::path::Path::new(PGJDBC_JAR).exists(),
        "{PGJDBC_JAR} missing: run .ci/setup"
    );
    let classes = tempfile::tempdir().unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/JdbcClient.java");
    let compiled = Command::new("javac")
        .args(["-cp", PGJDBC_JAR, "-d"])
        .arg(classes.path())
        .arg(source)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &[]);
    let client = weir.client().await;
    worst_view(&client).await;
    let classpath = format!("{PGJDBC_JAR}:{}", classes.path().display());
    let out = Command::new("java")
        .args(["-cp", &classpath, "JdbcClient"])
        .env("WEIR_PG_PORT", weir.pg_port.to_string())
        .output()
        .unwrap();
    stdout_of(out, "JdbcClient");
}

/// With a password set, every client logs in with SCRAM-SHA-256 (tokio-postgres and psql),
/// a wrong or missing password is refused with 28P01, and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_required_once_set() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        &dir.path().join("data"),
        &[],
        &[("WEIR_PASSWORD", "pencil")],
    );
    let connect = |password: Option<&str>| {
        let mut conn = format!(
            "host=127.0.0.1 port={} user=grafana dbname=weir",
            weir.pg_port
        );
        if let Some(p) = password {
            conn.push_str(&format!(" password={p}"));
        }
        async move { tokio_postgres::connect(&conn, tokio_postgres::NoTls).await }
    };
    for wrong in [Some("crayon"), None] {
        let err = connect(wrong)
            .await
            .err()
            .expect("a login without the password");
        let code = err.as_db_error().map(|e| e.code().code().to_string());
        // Without a password the client gives up before the server can answer.
        if wrong.is_some() {
            assert_eq!(code.as_deref(), Some("28P01"), "{err:?}");
        }
    }
    let (client, connection) = connect(Some("pencil")).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(rows(&client, "SELECT 1 + 1").await, [["2"]]);
    // Startup parameters still become the connection's settings.
    assert_eq!(
        rows(&client, "SHOW application_name").await,
        [[""]],
        "a fresh session"
    );
    // psql, with PGPASSWORD and without any (`-w`: never prompt).
    let psql_login = |password: Option<&str>, sql: &str| {
        let mut command = Command::new("psql");
        command
            .args(["-h", "127.0.0.1", "-p", &weir.pg_port.to_string()])
            .args(["-U", "analyst", "-d", "weir", "-X", "-w", "-At", "-c", sql])
            .env_remove("PGPASSWORD");
        if let Some(p) = password {
            command.env("PGPASSWORD", p);
        }
        command.output().unwrap()
    };
    let out = psql_login(Some("pencil"), "SELECT 40 + 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let out = psql_login(None, "SELECT 1");
    assert!(!out.status.success(), "psql without the password got in");
}

/// Grafana's PostgreSQL data source, emulated with Go's pgx v4 (Debian `golang-go` and
/// `golang-github-jackc-pgx-v4-dev`) over the simple query protocol: its health check
/// (`-- ping`), version check and discovery queries, and every panel query of the shipped
/// dashboard (`docker/grafana/dashboards/security.json`) with Grafana's macros expanded, over
/// the demo pipeline's views. Each panel must return rows.
#[test]
fn grafana_over_pgx_runs_the_shipped_dashboard() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("grafana_pgx");
    let build = Command::new("go")
        .args(["build", "-o"])
        .arg(&program)
        .arg(format!("{root}/tests/clients/grafana/grafana_pgx.go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .output()
        .expect("go (Debian golang-go; .ci/setup installs it)");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    // The demo pipeline, five minutes of its events at full speed.
    let demo = include_str!("../../examples/security_pipeline.sql");
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(
        &pipeline,
        demo.replace("rate = '100'", "rate = '0', count = '30000'"),
    )
    .unwrap();
    let weir = Weir::start(
        &dir.path().join("data"),
        &["--pipeline", pipeline.to_str().unwrap()],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = weir.client().await;
        wait_views_finished(&client).await;
    });
    let out = Command::new(&program)
        .arg(format!(
            "postgres://grafana@127.0.0.1:{}/weir?sslmode=disable",
            weir.pg_port
        ))
        .arg(format!("{root}/docker/grafana/dashboards/security.json"))
        .args(["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"])
        .arg(format!("{root}/tests/clients/grafana"))
        .output()
        .unwrap();
    let stdout = stdout_of(out, "the Grafana client");
    // Five one-minute windows; the alerts panel's LIMIT; 20 of the 40 users.
    for line in [
        "ping: ok",
        "version: 1500",
        "panel Failed logins per minute: 5 rows",
        "panel Alerts: logins unlike the user's own history: 100 rows",
        "panel Users by worst threat: 20 rows",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
}

/// A self-signed certificate for `localhost` and its key, made with the openssl command.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian package openssl)");
    stdout_of(out, "openssl req");
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_configured_certificate_and_reader_roles() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server");
    let (other, _) = self_signed(dir.path(), "other");
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "tls_cert = {cert:?}\ntls_key = {key:?}\n\
             [[users]]\nname = \"grafana\"\npassword = \"dashboards\"\nrole = \"reader\"\n\
             [[users]]\nname = \"ops\"\npassword = \"pipelines\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let weir = Weir::start(&dir.path().join("data"), &["--config", config]);
    let psql = |user: &str, password: &str, ssl: &str, sql: &str| {
        let out = Command::new("psql")
            .arg(format!(
                "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname=weir {ssl}",
                weir.pg_port
            ))
            .args(["-X", "-w", "-At", "-c", sql])
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // The server's certificate is the configured one: it verifies against it, not another.
    let verified = format!("sslmode=verify-full sslrootcert={}", cert.display());
    let (ok, out, err) = psql("grafana", "dashboards", &verified, "SELECT 40 + 2");
    assert!(ok && out == "42", "{out} {err}");
    let wrong_root = format!("sslmode=verify-full sslrootcert={}", other.display());
    let (ok, _, err) = psql("grafana", "dashboards", &wrong_root, "SELECT 1");
    assert!(!ok && err.contains("certificate"), "{err}");
    // A client that does not ask for TLS is still served; passwords are per user.
    let (ok, out, err) = psql("grafana", "dashboards", "sslmode=disable", "SELECT 1");
    assert!(ok && out == "1", "{err}");
    let (ok, _, _) = psql("grafana", "pipelines", "sslmode=require", "SELECT 1");
    assert!(!ok, "another user's password let grafana in");
    let (ok, _, _) = psql("nobody", "dashboards", "sslmode=require", "SELECT 1");
    assert!(!ok, "a user that is not listed got in");
    // A reader may query but not change the catalog, over both protocols.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/logins.jsonl");
    let create = format!(
        "CREATE SOURCE logins (user_name TEXT, ts TIMESTAMP, type TEXT) \
         WITH (connector = 'file', path = '{data}')"
    );
    let connect = |user: &'static str, password: &'static str| {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=weir",
            weir.pg_port
        );
        async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        }
    };
    let reader = connect("grafana", "dashboards").await;
    for result in [
        reader.batch_execute(&create).await,
        reader.execute(create.as_str(), &[]).await.map(|_| ()),
        reader.batch_execute("DROP SOURCE logins").await,
    ] {
        let err = result.expect_err("a reader ran DDL");
        let code = err.as_db_error().map(|e| e.code().code().to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{err:?}");
    }
    assert_eq!(
        rows(&reader, "SELECT count(*) FROM weir_catalog.sources").await,
        [["0"]]
    );
    let admin = connect("ops", "pipelines").await;
    admin.batch_execute(&create).await.unwrap();
    assert_eq!(
        rows(&reader, "SELECT name FROM weir_catalog.sources").await,
        [["logins"]]
    );
    let (ok, out, err) = psql("ops", "pipelines", &verified, "SHOW SOURCES");
    assert!(ok && out.contains("logins"), "{out} {err}");
}

#[test]
fn listening_on_every_address_without_a_password_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::common::weir_bin())
        .args([
            "--pg-addr",
            "0.0.0.0:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env_remove("WEIR_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WEIR_PASSWORD") && err.contains("--allow-no-password"),
        "{err}"
    );
}

#[test]
fn help_lists_every_option() {
    let out = Command::new(crate::common::weir_bin())
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
        "--state-cache-mb",
        "--error-rows-max",
        "--password",
        "--allow-no-password",
        "--tls-cert",
        "--tls-key",
        "demo",
        "bench",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// Runs `weir bench` with `args` and returns each printed JSON object.
fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(crate::common::weir_bin())
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    stdout_of(out, "weir bench")
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
    for field in [
        "stream_eps",
        "decode_eps",
        "ratio",
        "stream_flow_eps",
        "decode_flow_eps",
        "flow_ratio",
    ] {
        assert!(kafka[0][field].as_f64().unwrap() > 0.0, "{field}");
    }
    // From the first message on, a phase runs at least as fast as over its whole run.
    for phase in ["stream", "decode"] {
        let whole = kafka[0][format!("{phase}_eps")].as_f64().unwrap();
        let flow = kafka[0][format!("{phase}_flow_eps")].as_f64().unwrap();
        assert!(flow >= whole, "{phase}: {flow} < {whole}");
        assert!(kafka[0][format!("{phase}_first_ms")].is_u64(), "{phase}");
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
        let out = Command::new(crate::common::weir_bin())
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

/// 200 connections at once, each querying a view several times while its source ingests at
/// full speed: every one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_are_served_while_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let admin = weir.client().await;
    admin
        .batch_execute(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP, \
             WATERMARK FOR date_time AS date_time - INTERVAL '1 second') \
             WITH (connector = 'generator', kind = 'nexmark_bids', count = '100000000'); \
             CREATE MATERIALIZED VIEW per_auction AS \
             SELECT auction, count(*) AS n, max(price) AS top FROM bids GROUP BY auction",
        )
        .await
        .unwrap();
    let events = |rows: Vec<Vec<String>>| rows[0][0].parse::<u64>().unwrap();
    let sql = "SELECT events FROM weir_catalog.sources";
    let mut before = 0;
    for _ in 0..100 {
        before = events(rows(&admin, sql).await);
        if before > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(before > 0, "the source did not start");
    let port = weir.pg_port;
    let clients: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let conn = format!("host=127.0.0.1 port={port} user=dashboard{i} dbname=weir");
                let (client, connection) =
                    tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                let mut groups = 0;
                for _ in 0..5 {
                    let row = client
                        .query_one("SELECT count(*) FROM per_auction WHERE n > $1", &[&0i64])
                        .await?;
                    groups = row.get::<_, i64>(0);
                }
                Ok::<i64, tokio_postgres::Error>(groups)
            })
        })
        .collect();
    for client in clients {
        let groups = client.await.unwrap().expect("every connection is served");
        assert!(groups <= 10_100, "{groups} auctions");
    }
    let after = events(rows(&admin, sql).await);
    assert!(
        after >= before && after < 100_000_000,
        "the source was ingesting throughout ({before} -> {after} events)"
    );
}
