//! Start never fails because of one source or view: a source whose input is gone, a view
//! whose plan no longer builds or whose state no longer loads is `failed` with the reason in
//! `weir_catalog`, everything else runs and answers, and the failed one can still be queried,
//! inspected and dropped. A reader that fails with an error shows its views failed too.

use crate::common::{refused, rows, wait_for, wait_views_finished, write_lines, Weir};
use weir::catalog::{CatalogEntry, EntryKind};
use weir::state::{Store, Table, WriteSet};

fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{{\"k\":{i}}}")).collect()
}

/// Runs source `s` (numbers 0..10 from a file) with `views` (`name AS query` each) until they
/// finish, then stops weir; returns the data directory.
async fn finished_views(dir: &std::path::Path, views: &[&str]) -> std::path::PathBuf {
    let data = dir.join("data");
    let input = dir.join("in.jsonl");
    write_lines(&input, &numbers(10));
    let mut weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    let mut sql = format!(
        "CREATE SOURCE s (k BIGINT) WITH (connector = 'file', path = '{}')",
        input.display()
    );
    for view in views {
        sql += &format!("; CREATE MATERIALIZED VIEW {view}");
    }
    client.simple_query(&sql).await.unwrap();
    wait_views_finished(&client).await;
    weir.stop();
    data
}

/// Starts weir on `data`, checks that view `good` still answers, and returns the views'
/// names, statuses and errors.
async fn restart_with_good_view(
    data: &std::path::Path,
) -> (Weir, tokio_postgres::Client, Vec<Vec<String>>) {
    let weir = Weir::start(data, &[]);
    let client = weir.client().await;
    assert_eq!(rows(&client, "SELECT n FROM good").await, vec![vec!["10"]]);
    let views = rows(
        &client,
        "SELECT name, status, error FROM weir_catalog.views ORDER BY name",
    )
    .await;
    (weir, client, views)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_directory_was_deleted_fails_alone_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (kept, gone) = (dir.path().join("kept"), dir.path().join("gone"));
    for (path, n) in [(&kept, 10), (&gone, 5)] {
        std::fs::create_dir(path).unwrap();
        write_lines(&path.join("part-0.jsonl"), &numbers(n));
    }
    let mut weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE kept (k BIGINT) WITH (connector = 'file', path = '{}'); \
             CREATE SOURCE gone (k BIGINT) WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW kept_n AS SELECT count(*) AS n FROM kept; \
             CREATE MATERIALIZED VIEW gone_n AS SELECT count(*) AS n FROM gone",
            kept.display(),
            gone.display()
        ))
        .await
        .unwrap();
    wait_views_finished(&client).await;
    weir.stop();
    std::fs::remove_dir_all(&gone).unwrap();

    let mut weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    assert_eq!(
        rows(&client, "SELECT n FROM kept_n").await,
        vec![vec!["10"]]
    );
    let source = rows(
        &client,
        "SELECT status, error FROM weir_catalog.sources WHERE name = 'gone'",
    )
    .await;
    assert_eq!(source[0][0], "failed", "{source:?}");
    assert!(source[0][1].contains(gone.to_str().unwrap()), "{source:?}");
    let view = rows(
        &client,
        "SELECT status, error FROM weir_catalog.views WHERE name = 'gone_n'",
    )
    .await;
    assert_eq!(view[0][0], "failed", "{view:?}");
    assert!(view[0][1].contains("source \"gone\""), "{view:?}");
    // What the failed view stored is still there to inspect.
    assert_eq!(rows(&client, "SELECT n FROM gone_n").await, vec![vec!["5"]]);
    let health = crate::common::http_get(weir.http_port, "/health").await;
    assert!(health.contains(r#""status":"degraded""#), "{health}");
    assert_eq!(
        rows(
            &client,
            "SELECT status FROM weir_catalog.views WHERE name = 'kept_n'"
        )
        .await,
        vec![vec!["finished"]]
    );

    client
        .simple_query("DROP MATERIALIZED VIEW gone_n; DROP SOURCE gone")
        .await
        .unwrap();
    let names = rows(
        &client,
        "SELECT name FROM weir_catalog.sources UNION ALL SELECT name FROM weir_catalog.views ORDER BY name",
    )
    .await;
    assert_eq!(names, vec![vec!["kept"], vec!["kept_n"]]);
    let health = crate::common::http_get(weir.http_port, "/health").await;
    assert!(health.contains(r#"{"status":"ok","#), "{health}");
    weir.stop();
    let weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    assert_eq!(
        rows(&client, "SELECT n FROM kept_n").await,
        vec![vec!["10"]]
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM weir_catalog.sources").await,
        vec![vec!["1"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_plan_or_state_no_longer_loads_fails_alone_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = finished_views(
        dir.path(),
        &[
            "good AS SELECT count(*) AS n FROM s",
            "unloadable AS SELECT k, count(*) AS n FROM s GROUP BY k",
            "unplannable AS SELECT sum(k) AS total FROM s",
        ],
    )
    .await;
    {
        // What an upgrade or a damaged disk can leave: progress that does not parse, and a
        // stored definition that no longer plans.
        let store = Store::open(&data).unwrap();
        let key = CatalogEntry::key(EntryKind::View, "unplannable");
        let mut entry: CatalogEntry =
            serde_json::from_slice(&store.get(Table::Catalog, &key).unwrap().unwrap()).unwrap();
        entry.sql =
            "CREATE MATERIALIZED VIEW unplannable AS SELECT sum(missing) AS total FROM s".into();
        let mut ws = WriteSet::default();
        ws.put(Table::Catalog, key, serde_json::to_vec(&entry).unwrap());
        ws.put(
            Table::Progress,
            weir::operator::progress_key("unloadable"),
            b"{not json",
        );
        store.write(&ws).unwrap();
    }

    let (mut weir, client, views) = restart_with_good_view(&data).await;
    assert_eq!(views.len(), 3, "{views:?}");
    assert_eq!(views[0][..2], ["good", "finished"], "{views:?}");
    assert_eq!(views[1][..2], ["unloadable", "failed"], "{views:?}");
    assert!(views[1][2].contains("stored state"), "{views:?}");
    assert_eq!(views[2][..2], ["unplannable", "failed"], "{views:?}");
    assert!(views[2][2].contains("missing"), "{views:?}");
    assert_eq!(
        rows(&client, "SELECT status FROM weir_catalog.sources").await,
        vec![vec!["finished"]]
    );
    // The name stays taken until it is dropped.
    let (code, _) = refused(
        &client,
        "CREATE MATERIALIZED VIEW unplannable AS SELECT count(*) AS n FROM s",
    )
    .await;
    assert_eq!(code, "42P07");
    client
        .simple_query("DROP MATERIALIZED VIEW unloadable; DROP MATERIALIZED VIEW unplannable")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT name FROM weir_catalog.views").await,
        vec![vec!["good"]]
    );
    weir.stop();
    let weir = Weir::start(&data, &[]);
    let client = weir.client().await;
    assert_eq!(
        rows(&client, "SELECT name, status FROM weir_catalog.views").await,
        vec![vec!["good", "finished"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_error_shows_the_source_and_its_views_failed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_lines(&input.join("a.jsonl"), &numbers(10));
    // A file that lists as a regular file but whose read fails (EIO at offset 0).
    std::os::unix::fs::symlink("/proc/self/mem", input.join("b.jsonl")).unwrap();
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE s (k BIGINT) WITH (connector = 'file', path = '{}'); \
             CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM s",
            input.display()
        ))
        .await
        .unwrap();
    wait_for(&client, "SELECT status FROM weir_catalog.sources", "failed").await;
    let view = rows(&client, "SELECT status, error FROM weir_catalog.views").await;
    assert_eq!(view[0][0], "failed", "{view:?}");
    assert!(view[0][1].contains("b.jsonl"), "{view:?}");
    assert_eq!(rows(&client, "SELECT n FROM v").await, vec![vec!["10"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_stored_in_another_layout_or_by_a_newer_weir_fails_alone_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = finished_views(
        dir.path(),
        &[
            "good AS SELECT count(*) AS n FROM s",
            "relaid AS SELECT k, count(*) AS n FROM s GROUP BY k",
            "newer AS SELECT k, sum(k) AS total FROM s GROUP BY k",
            "older AS SELECT k, is_novel('e', CAST(k AS TEXT)) AS novel FROM s",
        ],
    )
    .await;
    let progress = |store: &Store, view: &str| -> serde_json::Value {
        let bytes = store
            .get(Table::Progress, &weir::operator::progress_key(view))
            .unwrap()
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    {
        // What an upgrade can leave: a view whose query now plans other column types, and a
        // view written by a newer Weir (a downgrade).
        let store = Store::open(&data).unwrap();
        let mut relaid = progress(&store, "relaid");
        assert_eq!(
            relaid["layout"], "key [Int64], state [Int64], row [Int64, Int64]",
            "the layout is recorded"
        );
        relaid["layout"] = "key [Utf8], state [Int64], row [Utf8, Int64]".into();
        let mut newer = progress(&store, "newer");
        newer["state_format"] = 99.into();
        // And a view stored by an older Weir: rebuilt from its source, its entity states too.
        let mut older = progress(&store, "older");
        older["state_format"] = (weir::state::OLDEST_READ_FORMAT - 1).into();
        let mut ws = WriteSet::default();
        // Its rows are gone too: only a rebuild brings them back.
        ws.delete_prefix(
            Table::ViewRows,
            weir::state::ViewKeys::new("older").prefix(),
        );
        for (view, value) in [("relaid", relaid), ("newer", newer), ("older", older)] {
            ws.put(
                Table::Progress,
                weir::operator::progress_key(view),
                serde_json::to_vec(&value).unwrap(),
            );
        }
        store.write(&ws).unwrap();
    }

    let (mut weir, client, views) = restart_with_good_view(&data).await;
    assert_eq!(views[0][..2], ["good", "finished"], "{views:?}");
    assert_eq!(views[1][..2], ["newer", "failed"], "{views:?}");
    assert!(
        views[1][2].contains("\"newer\"") && views[1][2].contains("newer Weir"),
        "{views:?}"
    );
    assert_eq!(views[3][..2], ["relaid", "failed"], "{views:?}");
    assert!(
        views[3][2].contains("\"relaid\"")
            && views[3][2].contains("another layout")
            && views[3][2].contains("DROP"),
        "{views:?}"
    );
    // Rebuilt from its source: its rows are back, and every value is novel once (had the old
    // entity state survived the rebuild, none would be).
    wait_for(
        &client,
        "SELECT status FROM weir_catalog.views WHERE name = 'older'",
        "finished",
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(*) FILTER (WHERE novel) FROM older"
        )
        .await,
        vec![vec!["10", "10"]]
    );
    weir.stop();
    // Nothing the newer Weir wrote was deleted; the older view is stored in today's format.
    let store = Store::open(&data).unwrap();
    assert_eq!(progress(&store, "newer")["state_format"], 99);
    assert_eq!(
        progress(&store, "older")["state_format"],
        weir::state::STATE_FORMAT
    );
}

/// A view stored in the previous state format (5: no row blocks yet) is read as it is, not
/// rebuilt: one of its rows deleted behind Weir's back stays deleted, and its values, whose
/// first byte says format 5, still decode. Its next epoch stamps it with today's format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_stored_in_the_previous_format_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = finished_views(
        dir.path(),
        &[
            "good AS SELECT count(*) AS n FROM s",
            "previous AS SELECT k, count(*) AS c FROM s GROUP BY k",
        ],
    )
    .await;
    {
        let store = Store::open(&data).unwrap();
        let key = weir::operator::progress_key("previous");
        let mut progress: serde_json::Value =
            serde_json::from_slice(&store.get(Table::Progress, &key).unwrap().unwrap()).unwrap();
        progress["state_format"] = weir::state::OLDEST_READ_FORMAT.into();
        let prefix = weir::state::ViewKeys::new("previous").prefix().to_vec();
        let stored = store.scan_prefix(Table::ViewRows, &prefix).unwrap();
        assert_eq!(stored.len(), 10, "one value per group");
        let mut ws = WriteSet::default();
        ws.put(Table::Progress, key, serde_json::to_vec(&progress).unwrap());
        for (i, (key, mut value)) in stored.into_iter().enumerate() {
            if i == 0 {
                ws.delete(Table::ViewRows, key);
                continue;
            }
            value[0] = weir::state::OLDEST_READ_FORMAT;
            ws.put(Table::ViewRows, key, value);
        }
        store.write(&ws).unwrap();
    }
    let (weir, client, views) = restart_with_good_view(&data).await;
    assert_eq!(views[1][..2], ["previous", "finished"], "{views:?}");
    assert_eq!(
        rows(&client, "SELECT count(*), sum(c) FROM previous").await,
        vec![vec!["9", "9"]],
        "rebuilt, or its format-5 values did not decode"
    );
    drop(weir);
}
