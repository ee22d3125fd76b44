//! Reads that touch only what a query asks for: point reads on group keys, window ranges,
//! LIMIT, what EXPLAIN shows, and retention. Each answer is checked against values computed
//! here, and the keys each scan read against `weir_view_scan_keys_total`.

use crate::common::{
    append_line, http_get, rows, wait_for, wait_views_finished, write_lines, Weir,
};

/// 2026-01-01 00:00:00 UTC in milliseconds.
const BASE: i64 = 1_767_225_600_000;
const EVENTS: i64 = 20_000;
const KEYS: i64 = 1_000;

/// Event `i`: key `key{(7 i) mod 1000}`, value `i mod 13`, one every 60 ms, so each minute
/// holds every key exactly once.
fn key_of(i: i64) -> String {
    format!("key{}", (i * 7) % KEYS)
}

fn events() -> Vec<String> {
    (0..EVENTS)
        .map(|i| {
            let ts = chrono::DateTime::from_timestamp_millis(BASE + i * 60)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3f");
            format!(r#"{{"k": "{}", "v": {}, "ts": "{ts}"}}"#, key_of(i), i % 13)
        })
        .collect()
}

/// The value of counter `name{view="view"}` in a metrics page.
fn counter(page: &str, name: &str, view: &str) -> u64 {
    let prefix = format!("{name}{{view=\"{view}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

struct Server {
    weir: Weir,
    client: tokio_postgres::Client,
}

impl Server {
    async fn keys_read(&self, view: &str) -> u64 {
        let page = http_get(self.weir.http_port, "/metrics").await;
        counter(&page, "weir_view_scan_keys_total", view)
    }

    /// Runs `sql`; returns its rows and how many stored keys it read from `view`.
    async fn query(&self, view: &str, sql: &str) -> (Vec<Vec<String>>, u64) {
        let before = self.keys_read(view).await;
        let r = rows(&self.client, sql).await;
        (r, self.keys_read(view).await - before)
    }

    async fn explain(&self, sql: &str) -> String {
        rows(&self.client, &format!("EXPLAIN {sql}"))
            .await
            .into_iter()
            .map(|r| r.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn start(dir: &std::path::Path) -> Server {
    let input = dir.join("events.jsonl");
    write_lines(&input, &events());
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE SOURCE s (k TEXT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'file', path = '{}');\n\
             CREATE MATERIALIZED VIEW per_key AS SELECT k, count(*) AS n, sum(v) AS total FROM s GROUP BY k;\n\
             CREATE MATERIALIZED VIEW per_minute AS SELECT window_start, window_end, k, count(*) AS n \
             FROM TUMBLE(s, ts, INTERVAL '1 minute') GROUP BY window_start, window_end, k;\n\
             CREATE MATERIALIZED VIEW recent WITH (retention = '5 minutes') AS \
             SELECT window_start, count(*) AS n FROM TUMBLE(s, ts, INTERVAL '1 minute') \
             GROUP BY window_start, window_end;\n\
             CREATE MATERIALIZED VIEW high AS SELECT k, v, ts AS at FROM s WHERE v > 10;\n",
            input.display()
        ),
    )
    .unwrap();
    let weir = Weir::start(
        &dir.join("data"),
        &["--pipeline", pipeline.to_str().unwrap()],
    );
    let client = weir.client().await;
    wait_views_finished(&client).await;
    Server { weir, client }
}

/// Minute `m` after BASE as a SQL literal.
fn minute(m: i64) -> String {
    chrono::DateTime::from_timestamp_millis(BASE + m * 60_000)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Minute `m` after BASE as Weir prints a timestamp (as PostgreSQL does: no zero fraction).
fn shown(m: i64) -> String {
    minute(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_only_the_keys_they_ask_for() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;

    // One key of a view without windows: one point read.
    let total: i64 = (0..EVENTS)
        .filter(|i| key_of(*i) == "key7")
        .map(|i| i % 13)
        .sum();
    let (r, keys) = s
        .query(
            "per_key",
            "SELECT k, n, total FROM per_key WHERE k = 'key7'",
        )
        .await;
    assert_eq!(
        r,
        vec![vec!["key7".to_string(), "20".into(), total.to_string()]]
    );
    assert_eq!(keys, 1, "a point query reads one key");
    let plan = s.explain("SELECT * FROM per_key WHERE k = 'key7'").await;
    assert!(
        plan.contains("ViewScan: view=per_key, access=points 1 key(s)"),
        "{plan}"
    );

    // IN: one read per value, found or not.
    let (r, keys) = s
        .query(
            "per_key",
            "SELECT k FROM per_key WHERE k IN ('key1', 'key2', 'nokey') ORDER BY k",
        )
        .await;
    assert_eq!(r, vec![vec!["key1".to_string()], vec!["key2".to_string()]]);
    assert_eq!(keys, 3);

    // The whole view, and LIMIT, which stops the scan early.
    let (r, keys) = s.query("per_key", "SELECT count(*) FROM per_key").await;
    assert_eq!(r[0][0], KEYS.to_string());
    assert_eq!(keys, KEYS as u64);
    let (r, keys) = s.query("per_key", "SELECT k FROM per_key LIMIT 5").await;
    assert_eq!(r.len(), 5);
    assert!(keys <= 5, "LIMIT 5 read {keys} keys");

    // Two minutes of a windowed view: a range over those windows' keys.
    let sql = format!(
        "SELECT count(*), sum(n) FROM per_minute WHERE window_start >= '{}' AND window_start < '{}'",
        minute(3),
        minute(5)
    );
    let (r, keys) = s.query("per_minute", &sql).await;
    assert_eq!(r[0], vec!["2000".to_string(), "2000".into()]);
    // Windows that opened and closed within one epoch keep their rows in row blocks (up to
    // 128 rows to a stored value); the others one row to a value.
    let page = http_get(s.weir.http_port, "/metrics").await;
    let in_blocks = counter(&page, "weir_view_rows_in_blocks_total", "per_minute");
    assert!(in_blocks > 0, "no window's rows went into blocks");
    assert!(
        (16..=2000).contains(&keys),
        "a two-minute range reads those minutes' values: {keys}"
    );
    let plan = s.explain(&sql).await;
    assert!(plan.contains("access=windows ["), "{plan}");

    // One key of a windowed view: one point read per window.
    let (r, keys) = s
        .query(
            "per_minute",
            "SELECT window_start, n FROM per_minute WHERE k = 'key3' ORDER BY window_start",
        )
        .await;
    assert_eq!(r.len(), 20);
    assert_eq!(r[0], vec![shown(0), "1".into()]);
    assert_eq!(r[19][0], shown(19));
    assert!(
        (20..=40).contains(&keys),
        "at most two reads per window (the key alone, then its row block): {keys}"
    );

    // The first and last key of every window (the edges of its row blocks), a key between
    // them, and one that is in no window.
    let (r, _) = s
        .query(
            "per_minute",
            "SELECT k, count(*), sum(n) FROM per_minute \
             WHERE k IN ('key0', 'key999', 'key5', 'nokey') GROUP BY k ORDER BY k",
        )
        .await;
    let expected: Vec<Vec<String>> = ["key0", "key5", "key999"]
        .iter()
        .map(|k| vec![k.to_string(), "20".into(), "20".into()])
        .collect();
    assert_eq!(r, expected);

    // A key and a time range: points in just those windows.
    let (r, keys) = s
        .query(
            "per_minute",
            &format!(
                "SELECT window_end FROM per_minute WHERE k = 'key3' AND window_end > '{}' AND window_end <= '{}'",
                minute(10),
                minute(12)
            ),
        )
        .await;
    assert_eq!(r.len(), 2);
    assert!(keys <= 6, "read {keys} keys for two windows");

    // An append-only view's rows are keyed by event time: a range on it reads that range.
    let in_range =
        |i: &i64| BASE + i * 60 >= BASE + 3 * 60_000 && BASE + i * 60 < BASE + 5 * 60_000;
    let expected = (0..EVENTS).filter(|i| in_range(i) && i % 13 > 10).count();
    let sql = format!(
        "SELECT count(*), sum(v) FROM high WHERE at >= '{}' AND at < '{}'",
        minute(3),
        minute(5)
    );
    let (r, keys) = s.query("high", &sql).await;
    let sum: i64 = (0..EVENTS)
        .filter(|i| in_range(i) && i % 13 > 10)
        .map(|i| i % 13)
        .sum();
    assert_eq!(r[0], vec![expected.to_string(), sum.to_string()]);
    assert_eq!(keys as usize, expected, "two minutes of a 20-minute view");
    let plan = s.explain(&sql).await;
    assert!(plan.contains("access=windows ["), "{plan}");
    // One instant, and an open-ended range.
    let (r, keys) = s
        .query(
            "high",
            &format!("SELECT k, v FROM high WHERE at = '{}.660'", minute(1)),
        )
        .await;
    // Event 1011 is at minute 1 + 660 ms, value 1011 mod 13 = 10: not in the view; 1012 is.
    assert!(r.is_empty() && keys == 0, "{r:?} {keys}");
    let (r, keys) = s
        .query(
            "high",
            &format!("SELECT k, v FROM high WHERE at = '{}.720'", minute(1)),
        )
        .await;
    assert_eq!(r, vec![vec![key_of(1012), "11".to_string()]]);
    assert_eq!(keys, 1);
    let (r, keys) = s
        .query(
            "high",
            &format!("SELECT count(*) FROM high WHERE at > '{}'", minute(19)),
        )
        .await;
    let late = (0..EVENTS)
        .filter(|i| *i * 60 > 19 * 60_000 && i % 13 > 10)
        .count();
    assert_eq!(r[0][0], late.to_string());
    assert_eq!(keys as usize, late);

    // Filters that are not on keys still answer right (read the whole view).
    let (r, _) = s
        .query(
            "per_key",
            "SELECT count(*) FROM per_key WHERE n = 20 AND k LIKE 'key9%'",
        )
        .await;
    assert_eq!(r[0][0], "111");

    // Prepared with a parameter (tokio-postgres: extended protocol, binary results): each
    // execution is one point read, answered without planning, and exact.
    let point_queries = || async {
        let page = http_get(s.weir.http_port, "/metrics").await;
        counter(&page, "weir_view_point_queries_total", "per_key")
    };
    let before = point_queries().await;
    let statement = s
        .client
        .prepare("SELECT k, n, total AS t FROM per_key WHERE k = $1")
        .await
        .unwrap();
    for key in ["key7", "key8", "nokey", "key7"] {
        let keys_before = s.keys_read("per_key").await;
        let found = s.client.query(&statement, &[&key]).await.unwrap();
        assert_eq!(s.keys_read("per_key").await - keys_before, 1, "{key}");
        let expected: Vec<(String, i64, i64)> = (0..EVENTS)
            .filter(|i| key_of(*i) == key)
            .fold(None, |acc: Option<(i64, i64)>, i| {
                let (n, t) = acc.unwrap_or((0, 0));
                Some((n + 1, t + i % 13))
            })
            .map(|(n, t)| vec![(key.to_string(), n, t)])
            .unwrap_or_default();
        let got: Vec<(String, i64, i64)> = found
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        assert_eq!(got, expected, "{key}");
        assert_eq!(
            found.first().map(|r| r.columns()[2].name()),
            expected.first().map(|_| "t")
        );
    }
    assert_eq!(
        point_queries().await - before,
        4,
        "each execution took the fast path"
    );
    // The same statement with a key column compared to another parameter type is planned.
    let found = s
        .client
        .query("SELECT n FROM per_key WHERE n = $1", &[&20i64])
        .await
        .unwrap();
    assert_eq!(found.len(), KEYS as usize);
    assert_eq!(point_queries().await - before, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_windows_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    // The last event is at 19:59.94, the watermark one second before: windows ending more
    // than 5 minutes before it (up to the one starting at 12:00) are gone.
    let r = rows(&s.client, "SELECT window_start, n FROM recent ORDER BY 1").await;
    let starts: Vec<&str> = r.iter().map(|row| row[0].as_str()).collect();
    let expected: Vec<String> = (13..20).map(shown).collect();
    assert_eq!(starts, expected);
    assert!(r.iter().all(|row| row[1] == "1000"));
    let views = rows(
        &s.client,
        "SELECT rows FROM weir_catalog.views WHERE name = 'recent'",
    )
    .await;
    assert_eq!(views[0][0], "7", "the view's row count follows the deletes");
    let page = http_get(s.weir.http_port, "/metrics").await;
    assert_eq!(counter(&page, "weir_view_rows_expired_total", "recent"), 13);
}

/// Each thread of process `pid`: its name and nice value (`/proc/<pid>/task/<tid>/stat`).
#[cfg(target_os = "linux")]
fn threads_and_nice(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // `tid (name) state ...`: the name may hold spaces, the fields after it do not;
        // nice is the 19th field, the 17th after the name.
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        threads.push((
            stat[open + 1..close].to_string(),
            fields[16].parse().unwrap(),
        ));
    }
    threads
}

/// Reading, decoding, the operators and the epoch writer run `--ingest-nice` steps behind the
/// threads that answer queries, so a query gets a core at once while ingestion keeps every
/// core busy; the query threads keep the process's priority.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_threads_run_behind_the_query_threads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_lines(&input.join("a.jsonl"), &events()[..100]);
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE SOURCE s (k TEXT, v BIGINT, ts TIMESTAMP) \
             WITH (connector = 'file', path = '{}', mode = 'follow');\n\
             CREATE MATERIALIZED VIEW per_key AS SELECT k, count(*) AS n FROM s GROUP BY k;\n",
            input.display()
        ),
    )
    .unwrap();
    let weir = Weir::start(
        &dir.path().join("data"),
        &[
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--ingest-nice",
            "7",
        ],
    );
    let client = weir.client().await;
    wait_for(&client, "SELECT sum(n) FROM per_key", "100").await;
    let pid = weir.pid().unwrap();
    let threads = threads_and_nice(pid);
    let base = threads
        .iter()
        .find(|(name, _)| name.starts_with("tokio-rt-worker"))
        .map(|(_, nice)| *nice)
        .expect("a runtime worker");
    for role in ["read-s", "views-s", "commit-s"] {
        let niced: Vec<_> = threads
            .iter()
            .filter(|(n, _)| n.starts_with(role))
            .collect();
        assert!(!niced.is_empty(), "no {role} thread in {threads:?}");
        for (name, nice) in niced {
            assert_eq!(*nice, (base + 7).min(19), "{name} in {threads:?}");
        }
    }
    for (name, nice) in threads.iter().filter(|(n, _)| n.starts_with("tokio-rt")) {
        assert_eq!(
            *nice, base,
            "{name} answers queries at the process's priority"
        );
    }
}

/// Each group of `per_k` as `key=sum`, in key order.
async fn sums(client: &tokio_postgres::Client) -> Vec<String> {
    rows(client, "SELECT k, s FROM per_k ORDER BY k")
        .await
        .into_iter()
        .map(|r| format!("{}={}", r[0], r[1]))
        .collect()
}

/// A window whose first epoch went out in open row blocks, then changed: later values shadow
/// their entries in scans and point reads, a group HAVING hid stays hidden once the window
/// closes (its value is kept, not deleted, or its block entry would show again), across a
/// kill -9. The server writes open blocks from two groups on, not from 1,024.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_row_blocks_are_shadowed_by_later_epochs_across_close_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("live.jsonl");
    let data = dir.path().join("data");
    let env = [("WEIR_OPEN_BLOCK_MIN_GROUPS", "2")];
    for k in ["a", "b", "c"] {
        append_line(
            &input,
            &format!(r#"{{"k":"{k}","v":5,"ts":"2026-01-01T00:00:10Z"}}"#),
        );
    }
    let mut weir = Weir::start_with_env(&data, &[], &env);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE live (k TEXT, v BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
             WITH (connector = 'file', path = '{}', mode = 'follow'); \
             CREATE MATERIALIZED VIEW per_k AS SELECT window_start, k, sum(v) AS s \
             FROM TUMBLE(live, ts, INTERVAL '1 hour') GROUP BY window_start, window_end, k \
             HAVING sum(v) > 0",
            input.display()
        ))
        .await
        .unwrap();
    wait_for(&client, "SELECT count(*) FROM per_k", "3").await;
    // The next epoch hides a (its block entry still shows it) and changes b.
    append_line(&input, r#"{"k":"a","v":-10,"ts":"2026-01-01T00:00:20Z"}"#);
    append_line(&input, r#"{"k":"b","v":1,"ts":"2026-01-01T00:00:30Z"}"#);
    wait_for(&client, "SELECT count(*) FROM per_k", "2").await;
    wait_for(&client, "SELECT s FROM per_k WHERE k = 'b'", "6").await;
    assert_eq!(sums(&client).await, ["b=6", "c=5"]);
    assert_eq!(
        rows(&client, "SELECT s FROM per_k WHERE k = 'c'").await,
        [["5"]]
    );
    assert!(rows(&client, "SELECT s FROM per_k WHERE k = 'a'")
        .await
        .is_empty());

    weir.kill9();
    let weir = Weir::start_with_env(&data, &[], &env);
    let client = weir.client().await;
    wait_for(&client, "SELECT count(*) FROM per_k", "2").await;
    assert_eq!(sums(&client).await, ["b=6", "c=5"]);
    // After the restart c's state, still its block entry, comes back from the store.
    append_line(&input, r#"{"k":"c","v":2,"ts":"2026-01-01T00:00:40Z"}"#);
    wait_for(&client, "SELECT s FROM per_k WHERE k = 'c'", "7").await;
    // A row two hours on closes the window in the epoch that touches a again, still hidden.
    append_line(
        &input,
        concat!(
            r#"{"k":"a","v":1,"ts":"2026-01-01T00:00:50Z"}"#,
            "\n",
            r#"{"k":"d","v":1,"ts":"2026-01-01T02:00:00Z"}"#
        ),
    );
    wait_for(&client, "SELECT count(*) FROM per_k", "3").await;
    wait_for(&client, "SELECT open_windows FROM weir_catalog.views", "1").await;
    assert_eq!(sums(&client).await, ["b=6", "c=7", "d=1"]);
    assert!(rows(&client, "SELECT s FROM per_k WHERE k = 'a'")
        .await
        .is_empty());
}
