//! Restart: kill -9 mid-stream and clean stops; afterwards the finished views equal the batch
//! oracle — no event lost, none counted twice. The pipeline file is re-run at every start.

use std::time::{Duration, Instant};

use crate::common::oracle::{
    assert_views_match, oracle_from_batches, oracle_from_json, security_views, views_over_views,
    OracleView,
};
use crate::common::{
    http_get, rows, security_source_sql, wait_views_finished, write_security_events, Weir,
};

/// Every oracle view: those over the source, then those over a view.
fn all_views() -> Vec<OracleView> {
    security_views()
        .into_iter()
        .chain(views_over_views())
        .collect()
}

/// A pipeline file: the source and every oracle view.
fn pipeline(dir: &std::path::Path, source_options: &str) -> std::path::PathBuf {
    pipeline_of(dir, source_options, &all_views())
}

fn pipeline_of(
    dir: &std::path::Path,
    source_options: &str,
    views: &[OracleView],
) -> std::path::PathBuf {
    let mut sql = security_source_sql(source_options) + ";\n";
    for v in views {
        sql += &format!("CREATE MATERIALIZED VIEW {} AS {};\n", v.name, v.view_sql);
    }
    let path = dir.join("pipeline.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

/// Waits (bounded) until the source has decoded more than `events`, or finished. Returns
/// true when the source was still running, i.e. a kill now lands mid-stream.
async fn wait_events_over(weir: &Weir, events: u64) -> bool {
    let client = weir.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let r = rows(&client, "SELECT events, status FROM weir_catalog.sources").await;
        if let Some(r) = r.first() {
            if r[1] == "finished" {
                return false;
            }
            if r[0].parse::<u64>().unwrap() > events {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("source made no progress past {events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_survives_kill9_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 60,000 events at 20,000/s: about three seconds of streaming to interrupt.
    let file = pipeline(dir.path(), "connector = 'generator', kind = 'security_events', rate = '20000', count = '60000', seed = '3'");
    let args = ["--pipeline", file.to_str().unwrap()];
    let mut interrupted = 0;
    for (i, after) in [5_000u64, 15_000, 25_000].into_iter().enumerate() {
        let mut weir = Weir::start(&data, &args);
        interrupted += wait_events_over(&weir, after).await as usize;
        if i == 1 {
            weir.stop();
        } else {
            weir.kill9();
        }
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} stops landed mid-stream"
    );
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    wait_views_finished(&client).await;
    let events = weir::source::generate(weir::source::GeneratorKind::SecurityEvents, 3, 0, 60_000);
    assert_views_match(&client, &oracle_from_batches(vec![events]), &all_views()).await;
    let source = rows(&client, "SELECT events FROM weir_catalog.sources").await;
    assert_eq!(
        source[0][0], "60000",
        "each event counted once across restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_survives_repeated_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let batches = write_security_events(&input, 21, 400_000);
    let data = dir.path().join("data");
    let mut views = all_views();
    views.push(OracleView {
        name: "scored",
        view_sql: "SELECT event_id, ewma_zscore(user_name, threat_score) AS z FROM events",
        batch_sql: "",
        canonical: "",
    });
    let file = pipeline_of(
        dir.path(),
        &format!("connector = 'file', path = '{}'", input.display()),
        &views,
    );
    // Short epochs, so the counts move in small steps and the kills land mid-input however
    // fast this machine reads it.
    let args = ["--pipeline", file.to_str().unwrap(), "--epoch-ms", "50"];
    let mut interrupted = 0;
    for after in [20_000u64, 120_000, 250_000] {
        let mut weir = Weir::start(&data, &args);
        interrupted += wait_events_over(&weir, after).await as usize;
        weir.kill9();
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} kills landed mid-stream"
    );
    let mut weir = Weir::start(&data, &args);
    let client = weir.client().await;
    wait_views_finished(&client).await;
    // A clean stop and start of a finished pipeline changes nothing.
    weir.stop();
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    let oracle = oracle_from_json(&input, batches[0].schema()).await;
    assert_views_match(&client, &oracle, &all_views()).await;
    let source = rows(&client, "SELECT events, status FROM weir_catalog.sources").await;
    assert_eq!(
        source[0],
        vec!["400000".to_string(), "finished".to_string()]
    );
    assert_scores_learnt_once(&client, &batches).await;
}

/// Each event's `ewma_zscore(user_name, threat_score)` in the view equals the score computed
/// over the file in order: a baseline lost at a restart would score NULL again, one that
/// learnt an event twice would score it differently.
async fn assert_scores_learnt_once(
    client: &tokio_postgres::Client,
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Float64Type;
    use weir_udfs::stateful::{Ewma, DEFAULT_ALPHA};
    let mut baselines: std::collections::HashMap<String, Ewma> = Default::default();
    let mut expected = std::collections::HashMap::new();
    for batch in batches {
        let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>();
        let users = batch
            .column_by_name("user_name")
            .unwrap()
            .as_string::<i32>();
        let scores = batch
            .column_by_name("threat_score")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let z = (users.is_valid(i) && scores.is_valid(i)).then(|| {
                baselines
                    .entry(users.value(i).to_string())
                    .or_default()
                    .score_then_learn(scores.value(i), DEFAULT_ALPHA)
            });
            expected.insert(ids.value(i).to_string(), z.flatten());
        }
    }
    let got = rows(client, "SELECT event_id, z FROM scored").await;
    assert_eq!(got.len(), expected.len(), "one row per event");
    let mut scored = 0;
    for row in got {
        let want = expected[&row[0]];
        let have = (row[1] != "NULL").then(|| row[1].parse::<f64>().unwrap());
        match (want, have) {
            (None, None) => {}
            (Some(w), Some(h)) if w == h || (w - h).abs() <= 1e-9 * w.abs().max(1.0) => scored += 1,
            _ => panic!("event {}: z {have:?}, expected {want:?}", row[0]),
        }
    }
    assert!(scored > 300_000, "only {scored} events scored");
}

/// The sum of every series of counter `name` on a metrics page.
fn counter_sum(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// With a cache far smaller than the state, groups are evicted and read back from RocksDB
/// at every epoch, across kill -9; the answers stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_larger_than_its_cache_survives_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let batches = write_security_events(&input, 5, 150_000);
    let data = dir.path().join("data");
    let mut views = security_views();
    // Tens of thousands of groups: several MB of state against a 1 MB cache.
    views.push(OracleView {
        name: "per_ip",
        view_sql: "SELECT source_ip, count(*) AS n, max(threat_score) AS hi FROM events GROUP BY source_ip",
        batch_sql: "SELECT source_ip, count(*) AS n, max(threat_score) AS hi FROM events GROUP BY source_ip",
        canonical: "SELECT source_ip, n, hi FROM {} ORDER BY 1",
    });
    let file = pipeline_of(
        dir.path(),
        &format!("connector = 'file', path = '{}'", input.display()),
        &views,
    );
    let args = [
        "--pipeline",
        file.to_str().unwrap(),
        "--state-cache-mb",
        "1",
        // Short epochs, so the kills land mid-input (a fast machine reads it in a few epochs).
        "--epoch-ms",
        "10",
    ];
    let (mut evictions, mut reads, mut interrupted) = (0, 0, 0);
    for after in [30_000u64, 90_000] {
        let mut weir = Weir::start(&data, &args);
        interrupted += u32::from(wait_events_over(&weir, after).await);
        let page = http_get(weir.http_port, "/metrics").await;
        evictions += counter_sum(&page, "weir_state_cache_evictions_total");
        reads += counter_sum(&page, "weir_state_store_reads_total");
        weir.kill9();
    }
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    wait_views_finished(&client).await;
    let page = http_get(weir.http_port, "/metrics").await;
    evictions += counter_sum(&page, "weir_state_cache_evictions_total");
    reads += counter_sum(&page, "weir_state_store_reads_total");
    assert!(evictions > 0, "the cache never evicted");
    // A restart mid-input starts with a cold cache: the groups it touches are read back. (If
    // the first run read all of the input before its kill, no restart had anything to merge.)
    if interrupted > 0 {
        assert!(reads > 0, "no group was read back from the store");
    }
    let oracle = oracle_from_json(&input, batches[0].schema()).await;
    assert_views_match(&client, &oracle, &views).await;
    let source = rows(&client, "SELECT events FROM weir_catalog.sources").await;
    assert_eq!(source[0][0], "150000");
}

/// A view that failed does not make its finished source look failed after a restart; the
/// failed view keeps its error and the source's other view its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_view_leaves_its_finished_source_finished_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_file =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nulls.jsonl");
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE SOURCE s (k TEXT, v BIGINT, x DOUBLE, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10 seconds') \
             WITH (connector = 'file', path = '{}');\n\
             CREATE MATERIALIZED VIEW good AS SELECT k, count(*) AS n FROM s GROUP BY k;\n\
             -- integer division by zero over the aggregate fails when a group's row is \
             emitted (a failing input row would only be a dead letter)\n\
             CREATE MATERIALIZED VIEW bad AS SELECT k, sum(v) / (sum(v) - sum(v)) AS q FROM s GROUP BY k;\n",
            data_file.display()
        ),
    )
    .unwrap();
    let args = ["--pipeline", pipeline.to_str().unwrap()];
    let mut weir = Weir::start(&data, &args);
    let client = weir.client().await;
    crate::common::wait_for(
        &client,
        "SELECT count(*) FROM weir_catalog.views WHERE status IN ('finished', 'failed')",
        "2",
    )
    .await;
    weir.stop();
    let weir = Weir::start(&data, &args);
    let client = weir.client().await;
    let source = rows(&client, "SELECT status, error FROM weir_catalog.sources").await;
    assert_eq!(source, vec![vec!["finished".to_string(), "NULL".into()]]);
    let views = rows(
        &client,
        "SELECT name, status, CASE WHEN error IS NULL THEN 'no error' ELSE 'error' END \
         FROM weir_catalog.views ORDER BY name",
    )
    .await;
    assert_eq!(
        views,
        vec![
            vec!["bad".to_string(), "failed".into(), "error".into()],
            vec!["good".to_string(), "finished".into(), "no error".into()],
        ]
    );
    let good = rows(&client, "SELECT k, n FROM good ORDER BY k").await;
    assert_eq!(
        good,
        vec![
            vec!["a".to_string(), "1".into()],
            vec!["b".to_string(), "1".into()]
        ]
    );
}

/// A view whose rows fail to evaluate in the middle of a window of several merge chunks
/// (merged on two threads) is failed with that error, not a generic one, and the source's
/// other view holds every group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_failing_midway_through_a_two_thread_merge_names_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // 40,000 keys with two events each, but k25000 with one, whose row divides by zero; in
    // key order k25000 comes after ~17,000 others, so in the third of the window's five
    // chunks of 8K groups, and the view's thread is looking up the fourth as it fails.
    let lines: Vec<String> = (0..80_000u32)
        .filter(|i| *i != 65_000)
        .map(|i| format!("{{\"k\":\"k{}\"}}", i % 40_000))
        .collect();
    crate::common::write_lines(&input, &lines);
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE s (k TEXT) WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW good AS SELECT k, count(*) AS n FROM s GROUP BY k; \
             CREATE MATERIALIZED VIEW bad AS SELECT k, 10 / (count(*) - 1) AS q FROM s GROUP BY k",
            input.display()
        ))
        .await
        .unwrap();
    crate::common::wait_for(
        &client,
        "SELECT count(*) FROM weir_catalog.views WHERE status IN ('finished', 'failed')",
        "2",
    )
    .await;
    let views = rows(
        &client,
        "SELECT name, status, error FROM weir_catalog.views ORDER BY name",
    )
    .await;
    assert_eq!(views[0][..2], ["bad", "failed"], "{views:?}");
    assert!(views[0][2].contains("Divide by zero"), "{views:?}");
    assert_eq!(views[1][..2], ["good", "finished"], "{views:?}");
    let good = rows(&client, "SELECT count(*), sum(n) FROM good").await;
    assert_eq!(good, vec![vec!["40000", "79999"]]);
}

/// Writes `n` events `{"k": "<prefix><i % 3>", "v": i}` as a new file; returns their count and
/// sum of v.
fn write_numbered(path: &std::path::Path, prefix: &str, n: u64) -> (u64, u64) {
    let _ = std::fs::remove_file(path);
    append_numbered(path, prefix, 0, n)
}

/// Event counts and sums of v, added.
fn add(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0 + b.0, a.1 + b.1)
}

/// A followed directory `in` under `dir`, a `totals` view (count and sum of v per key) over
/// it, and the data directory: returns the input directory, the data directory and the
/// pipeline file.
fn totals_pipeline(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let sql = format!(
        "CREATE SOURCE s (k TEXT, v BIGINT) WITH (connector = 'file', path = '{}', mode = 'follow');\n\
         CREATE MATERIALIZED VIEW totals AS SELECT k, count(*) AS n, sum(v) AS total FROM s GROUP BY k;\n",
        input.display()
    );
    let file = dir.join("pipeline.sql");
    std::fs::write(&file, sql).unwrap();
    (input, dir.join("data"), file)
}

/// Waits (bounded) until the view's totals reach `want` (events, sum of v); then checks they
/// stay there a few epochs (nothing read twice).
async fn assert_totals_reach(weir: &Weir, want: (u64, u64)) {
    let client = weir.client().await;
    let sql = "SELECT COALESCE(sum(n), 0), COALESCE(sum(total), 0) FROM totals";
    let read = || async {
        let r = rows(&client, sql).await;
        (
            r[0][0].parse::<u64>().unwrap(),
            r[0][1].parse::<u64>().unwrap(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = read().await;
    while seen != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = read().await;
    }
    assert_eq!(seen, want, "events and sum of v over the files present");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(read().await, want, "nothing read twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_resumes_by_file_not_by_position_in_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, data, file) = totals_pipeline(dir.path());
    let args = ["--pipeline", file.to_str().unwrap()];

    let b = write_numbered(&input.join("b.jsonl"), "b", 3_000);
    let c = write_numbered(&input.join("c.jsonl"), "c", 2_000);
    let mut weir = Weir::start(&data, &args);
    assert_totals_reach(&weir, add(b, c)).await;
    // While running: a file whose name sorts before every other one is still read.
    let zero = write_numbered(&input.join("0.jsonl"), "z", 500);
    let mut total = add(add(b, c), zero);
    assert_totals_reach(&weir, total).await;
    weir.kill9();

    // While stopped: a file already read is deleted, and another with an earlier name added.
    std::fs::remove_file(input.join("b.jsonl")).unwrap();
    let a = write_numbered(&input.join("a.jsonl"), "a", 1_000);
    total = add(total, a);
    let mut weir = Weir::start(&data, &args);
    assert_totals_reach(&weir, total).await;

    // Rotation by rename of the file being followed (the newest): a line appended before the
    // rename is read once, then the new file.
    let mut tail = std::fs::OpenOptions::new()
        .append(true)
        .open(input.join("a.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut tail, b"{\"k\":\"a0\",\"v\":7}\n").unwrap();
    drop(tail);
    std::fs::rename(input.join("a.jsonl"), input.join("a.jsonl.1")).unwrap();
    let fresh = write_numbered(&input.join("a.jsonl"), "a", 10);
    total = add(add(total, (1, 7)), fresh);
    assert_totals_reach(&weir, total).await;
    weir.stop();
    let weir = Weir::start(&data, &args);
    assert_totals_reach(&weir, total).await;
}

/// Appends `n` events `{"k": "<prefix><i % 3>", "v": i}` for i in `from..from + n`; returns
/// their count and sum of v.
fn append_numbered(path: &std::path::Path, prefix: &str, from: u64, n: u64) -> (u64, u64) {
    let lines: String = (from..from + n)
        .map(|i| format!("{{\"k\":\"{prefix}{}\",\"v\":{i}}}\n", i % 3))
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut file, lines.as_bytes()).unwrap();
    (n, (from..from + n).sum())
}

/// logrotate's `copytruncate`, with a kill -9 landing after each of its steps in turn (and
/// the reader at whatever point it had reached): every line is counted once. The copy is
/// made beside the directory and renamed into it, so it appears whole (a copy listed while
/// still being written is read as a new file, a documented limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_survives_kill9_after_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let (input, data, file) = totals_pipeline(dir.path());
    let args = ["--pipeline", file.to_str().unwrap(), "--epoch-ms", "50"];
    let log = input.join("app.log");

    let mut next = 0;
    let mut total = append_numbered(&log, "a", next, 2_000);
    next += 2_000;
    let mut weir = Weir::start(&data, &args);
    assert_totals_reach(&weir, total).await;
    for (round, kill_after) in ["copy", "truncate", "new lines"].into_iter().enumerate() {
        // A burst the reader is likely still reading when the rotation comes.
        total = add(total, append_numbered(&log, "a", next, 20_000));
        next += 20_000;
        let staged = dir.path().join("staged");
        std::fs::copy(&log, &staged).unwrap();
        std::fs::rename(&staged, input.join(format!("app.log.{}", round + 1))).unwrap();
        if kill_after == "copy" {
            weir.kill9();
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        if kill_after == "truncate" {
            weir.kill9();
        }
        total = add(total, append_numbered(&log, "a", next, 300));
        next += 300;
        if kill_after == "new lines" {
            weir.kill9();
        }
        weir = Weir::start(&data, &args);
        assert_totals_reach(&weir, total).await;
    }
    // Lines appended to the truncated file while running, then a clean restart.
    total = add(total, append_numbered(&log, "a", next, 100));
    assert_totals_reach(&weir, total).await;
    weir.stop();
    let weir = Weir::start(&data, &args);
    assert_totals_reach(&weir, total).await;
}
