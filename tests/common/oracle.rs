//! The correctness oracle: a view's rows must equal the same query run as a DataFusion batch
//! query over the same events. Both sides are compared through one canonical SELECT whose
//! columns are integers, text and floats (compared within a relative tolerance).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::MemTable;
use datafusion::prelude::{JsonReadOptions, SessionContext};
use tokio_postgres::Client;

/// A view checked against a batch query.
pub struct OracleView {
    pub name: &'static str,
    /// The view's SELECT, as given to CREATE MATERIALIZED VIEW.
    pub view_sql: &'static str,
    /// The same result computed as a batch query over table `events`.
    pub batch_sql: &'static str,
    /// Run over both; `{}` is replaced by the view name. Integer, text and float columns.
    pub canonical: &'static str,
}

/// Views over the security events schema, covering tumble, hop, plain GROUP BY, HAVING and
/// append-only views.
pub fn security_views() -> Vec<OracleView> {
    vec![
        OracleView {
            name: "tumble_user",
            view_sql: "SELECT window_start, window_end, user_name, count(*) AS n, sum(threat_score) AS s, \
                       min(threat_score) AS lo, max(threat_score) AS hi, avg(threat_score) AS mean, \
                       count(DISTINCT geo) AS geos \
                       FROM TUMBLE(events, ts, INTERVAL '10 seconds') GROUP BY window_start, window_end, user_name",
            batch_sql: "SELECT (CAST(ts AS BIGINT) / 10000) * 10000 AS ws, user_name, count(*) AS n, sum(threat_score) AS s, \
                        min(threat_score) AS lo, max(threat_score) AS hi, avg(threat_score) AS mean, \
                        count(DISTINCT geo) AS geos FROM events GROUP BY 1, 2",
            canonical: "SELECT {ws}, user_name, n, s, lo, hi, mean, geos FROM {} ORDER BY 1, 2",
        },
        OracleView {
            name: "hop_type",
            view_sql: "SELECT window_start, window_end, type, count(*) AS n, approx_distinct(user_name) AS users \
                       FROM HOP(events, ts, INTERVAL '5 seconds', INTERVAL '15 seconds') \
                       WHERE threat_score > 10 GROUP BY window_start, window_end, type",
            batch_sql: "SELECT ws, type, count(*) AS n, approx_distinct(user_name) AS users FROM \
                        (SELECT (CAST(ts AS BIGINT) / 5000) * 5000 - k * 5000 AS ws, CAST(ts AS BIGINT) AS t, type, user_name \
                         FROM events CROSS JOIN (VALUES (0), (1), (2)) AS slots(k) WHERE threat_score > 10) \
                        WHERE ws + 15000 > t GROUP BY 1, 2",
            canonical: "SELECT {ws}, type, n, users FROM {} ORDER BY 1, 2",
        },
        OracleView {
            name: "per_user",
            view_sql: "SELECT user_name, count(*) AS n, count(DISTINCT source_ip) AS ips, max(ts) AS last_seen \
                       FROM events GROUP BY user_name",
            batch_sql: "SELECT user_name, count(*) AS n, count(DISTINCT source_ip) AS ips, max(ts) AS last_seen \
                        FROM events GROUP BY user_name",
            canonical: "SELECT user_name, n, ips, CAST(last_seen AS BIGINT) FROM {} ORDER BY 1",
        },
        OracleView {
            name: "noisy_minutes",
            view_sql: "SELECT window_start, geo, count(*) AS failures FROM TUMBLE(events, ts, INTERVAL '1 minute') \
                       WHERE type = 'LOGIN_FAILED' GROUP BY window_start, window_end, geo HAVING count(*) > 20",
            batch_sql: "SELECT (CAST(ts AS BIGINT) / 60000) * 60000 AS ws, geo, count(*) AS failures FROM events \
                        WHERE type = 'LOGIN_FAILED' GROUP BY 1, 2 HAVING count(*) > 20",
            canonical: "SELECT {ws}, geo, failures FROM {} ORDER BY 1, 2",
        },
        // Append-only: every failed login, as it came, through a projection.
        OracleView {
            name: "failed_logins",
            view_sql: "SELECT event_id, user_name, source_ip, ts, threat_score * 2 AS doubled \
                       FROM events WHERE type = 'LOGIN_FAILED'",
            batch_sql: "SELECT event_id, user_name, source_ip, ts, threat_score * 2 AS doubled \
                        FROM events WHERE type = 'LOGIN_FAILED'",
            canonical: "SELECT event_id, user_name, source_ip, CAST(ts AS BIGINT), doubled FROM {} ORDER BY 1, 4",
        },
    ]
}

/// Views over `tumble_user` (of [`security_views`], created before them): minutes made of its
/// closed 10-second windows, and an alert view keeping each closed window that passes its
/// WHERE. The oracle's side reads the batch result of `tumble_user`, registered under its
/// name. They show closed windows only, so they equal the oracle once the input is finished
/// (a live source's last windows are still open).
pub fn views_over_views() -> Vec<OracleView> {
    vec![
        OracleView {
            name: "user_minutes",
            view_sql: "SELECT window_start, window_end, user_name, sum(n) AS n, max(hi) AS hi, count(*) AS windows \
                       FROM TUMBLE(tumble_user, window_start, INTERVAL '1 minute') \
                       GROUP BY window_start, window_end, user_name",
            batch_sql: "SELECT (ws / 60000) * 60000 AS ws, user_name, sum(n) AS n, max(hi) AS hi, count(*) AS windows \
                        FROM tumble_user GROUP BY 1, 2",
            canonical: "SELECT {ws}, user_name, n, hi, windows FROM {} ORDER BY 1, 2",
        },
        OracleView {
            name: "busy_windows",
            view_sql: "SELECT window_start, user_name, n, geos FROM tumble_user WHERE n >= 4",
            batch_sql: "SELECT ws, user_name, n, geos FROM tumble_user WHERE n >= 4",
            canonical: "SELECT {ws}, user_name, n, geos FROM {} ORDER BY 1, 2",
        },
    ]
}

/// Floating-point sums depend on the order rows are added in, which differs between an
/// incremental and a batch aggregate, so float cells match within a relative 1e-9.
fn cell_equal(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(e)) => (a - e).abs() <= 1e-9 * e.abs().max(1.0),
        _ => false,
    }
}

fn row_equal(actual: &[String], expected: &[String]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| cell_equal(a, e))
}

fn rows_equal(actual: &[Vec<String>], expected: &[Vec<String>]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| row_equal(a, e))
}

/// The window column in canonical form on each side.
fn canonical(view: &OracleView, weir_side: bool) -> String {
    let ws = if view.canonical.contains("{ws}") && weir_side {
        "CAST(window_start AS BIGINT)"
    } else {
        "ws"
    };
    view.canonical.replace("{ws}", ws).replace("{}", view.name)
}

/// Every cell of `batches` as text, NULL as `None`.
pub fn to_cells(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        (!c.is_null(row)).then(|| array_value_to_string(c, row).expect("text"))
                    })
                    .collect(),
            );
        }
    }
    out
}

fn to_strings(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    to_cells(batches)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|c| c.unwrap_or_else(|| "NULL".to_string()))
                .collect()
        })
        .collect()
}

/// An oracle context with `events` read from JSON lines at `path`.
pub async fn oracle_from_json(
    path: &Path,
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> SessionContext {
    let ctx = SessionContext::new();
    let options = JsonReadOptions::default()
        .schema(&schema)
        .file_extension(".jsonl");
    ctx.register_json("events", path.to_str().unwrap(), options)
        .await
        .unwrap();
    ctx
}

/// An oracle context with `events` held in memory.
pub fn oracle_from_batches(batches: Vec<RecordBatch>) -> SessionContext {
    let ctx = SessionContext::new();
    let schema = batches[0].schema();
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    ctx
}

/// Creates every view in weir (over source `events`).
pub async fn create_views(client: &Client, views: &[OracleView]) {
    for v in views {
        client
            .simple_query(&format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {} AS {}",
                v.name, v.view_sql
            ))
            .await
            .unwrap_or_else(|e| panic!("create {}: {e:?}", v.name));
    }
}

/// Asserts every view's rows equal the batch oracle's, once no view still replays history on
/// a catch-up reader (a view created on a running source). Returns the number of rows
/// compared.
pub async fn assert_views_match(
    client: &Client,
    oracle: &SessionContext,
    views: &[OracleView],
) -> usize {
    super::wait_for(
        client,
        "SELECT count(*) FROM weir_catalog.views WHERE status = 'catching up'",
        "0",
    )
    .await;
    let mut compared = 0;
    for v in views {
        let batch = oracle
            .sql(v.batch_sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let schema = oracle
            .sql(v.batch_sql)
            .await
            .unwrap()
            .schema()
            .as_arrow()
            .clone();
        let _ = oracle.deregister_table(v.name);
        oracle
            .register_table(
                v.name,
                Arc::new(MemTable::try_new(Arc::new(schema), vec![batch]).unwrap()),
            )
            .unwrap();
        let expected = to_strings(
            &oracle
                .sql(&canonical(v, false))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        let actual = super::rows(client, &canonical(v, true)).await;
        assert!(
            !expected.is_empty(),
            "oracle for {} is empty: the test input is too small",
            v.name
        );
        if !rows_equal(&actual, &expected) {
            let first_diff = actual
                .iter()
                .zip(&expected)
                .position(|(a, e)| !row_equal(a, e));
            let status = super::rows(
                client,
                &format!(
                    "SELECT status, watermark, late_rows, error FROM weir_catalog.views WHERE name = '{}'",
                    v.name
                ),
            )
            .await;
            panic!(
                "view {} ({status:?}) differs from the batch oracle: {} rows vs {} expected; first difference at {:?}: {:?} vs {:?}",
                v.name,
                actual.len(),
                expected.len(),
                first_diff,
                first_diff.map(|i| &actual[i]),
                first_diff.map(|i| &expected[i]),
            );
        }
        compared += actual.len();
    }
    compared
}
