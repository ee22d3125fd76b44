//! The streaming side: a case run by a real `weir` process over a directory of JSON-lines
//! files, with an optional kill -9 or clean restart, then compared with the batch oracle.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::case::{Case, Compare, Read, Restart, ViewSpec, Window};
use super::common::{http_get, Weir};
use super::oracle::{canonical_select, dead_letters, expected_rows, late_rows, Expected, Rows};

/// A `weir` server shared by the cases, restarted by cases that ask for it.
pub struct Server {
    pub weir: Weir,
    pub client: Client,
    data: PathBuf,
}

impl Server {
    pub async fn start(data: &Path) -> Server {
        // Epochs as short as possible: a case's files become several epochs, so state goes
        // through snapshot and restore between them. Windows are merged two groups at a time
        // (not thousands), so that a case's few groups cross the chunks' boundaries, and a
        // window's first epoch with two groups or more is written in open row blocks (not
        // from a thousand on), so that later epochs' values shadow their entries.
        let weir = Weir::start_with_env(
            data,
            &["--epoch-ms", "1"],
            &[
                ("WEIR_MERGE_CHUNK_GROUPS", "2"),
                ("WEIR_OPEN_BLOCK_MIN_GROUPS", "2"),
            ],
        );
        let client = weir.client().await;
        Server {
            weir,
            client,
            data: data.to_path_buf(),
        }
    }

    async fn restart(&mut self, restart: Restart) {
        match restart {
            Restart::Kill9 { .. } => self.weir.kill9(),
            Restart::Clean { .. } => self.weir.stop(),
        }
        *self = Server::start(&self.data).await;
    }
}

/// What a case found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Views Weir refused at CREATE (with the reason); the oracle could run them.
    pub refused: Vec<String>,
    /// Views that neither Weir nor the batch engine accepts.
    pub both_refused: usize,
    /// The first disagreement, if any.
    pub failure: Option<String>,
    pub rows_compared: usize,
    /// Reads of the point-query shape (also asked as prepared statements on views without
    /// windows), and how many of them the fast path answered.
    pub point_reads: u64,
    pub prepared_reads: u64,
    pub fast_path_reads: u64,
}

async fn query(client: &Client, sql: &str) -> Result<Rows, String> {
    let messages = client.simple_query(sql).await.map_err(|e| {
        e.as_db_error()
            .map(|d| format!("{} ({})", d.message(), d.code().code()))
            .unwrap_or_else(|| e.to_string())
    })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

fn cell_equal(actual: &Option<String>, expected: &Option<String>, compare: Compare) -> bool {
    match (actual, expected) {
        (None, None) => true,
        (Some(a), Some(e)) => match compare {
            Compare::NullOnly => true,
            _ if a == e => true,
            Compare::Exact => false,
            Compare::Float => match (a.parse::<f64>(), e.parse::<f64>()) {
                (Ok(a), Ok(e)) => (a - e).abs() <= 1e-6 * e.abs().max(1.0),
                _ => false,
            },
        },
        _ => false,
    }
}

/// Sorts rows by their exactly compared cells (the window and group keys come first and are
/// unique), so the two sides line up.
fn sorted(mut rows: Rows, compare: &[Compare]) -> Rows {
    rows.sort_by(|a, b| {
        let key = |r: &Vec<Option<String>>| -> Vec<Option<String>> {
            r.iter()
                .zip(compare)
                .filter(|(_, c)| **c == Compare::Exact)
                .map(|(v, _)| v.clone())
                .collect()
        };
        key(a).cmp(&key(b))
    });
    rows
}

fn show(rows: &Rows) -> String {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|c| c.as_deref().unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Two answers to one question, one under the other, each with its row count.
fn two_sides((a, a_rows): (&str, &Rows), (b, b_rows): (&str, &Rows)) -> String {
    format!(
        "\n  {a} ({} rows):\n    {}\n  {b} ({} rows):\n    {}",
        a_rows.len(),
        show(a_rows),
        b_rows.len(),
        show(b_rows)
    )
}

/// The statements that create the case's source and views in Weir.
pub fn statements(case: &Case, source: &str, dir: &Path) -> Vec<String> {
    let mut out = vec![format!(
        "CREATE SOURCE IF NOT EXISTS {source} (k TEXT, g TEXT, v BIGINT, x DOUBLE, b BOOLEAN, ts TIMESTAMP, \
         WATERMARK FOR ts AS ts - INTERVAL '10 seconds') WITH (connector = 'file', path = '{}', format = 'json')",
        dir.display()
    )];
    for (i, view) in case.views.iter().enumerate() {
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {source}_v{i} AS {}",
            view.select(&view.weir_from(source))
        ));
    }
    out
}

fn write_files(case: &Case, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut lines = case.lines.iter();
    for (i, n) in case.files.iter().enumerate() {
        let text: String = lines.by_ref().take(*n).map(|l| l.text() + "\n").collect();
        std::fs::write(dir.join(format!("{i:03}.jsonl")), text).unwrap();
    }
    if case.files.is_empty() {
        std::fs::write(dir.join("000.jsonl"), "").unwrap();
    }
}

/// Waits (bounded) until `views` views of `source` have finished or failed.
async fn wait_settled(client: &Client, source: &str, views: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let sql = format!(
        "SELECT count(*) FROM weir_catalog.views WHERE source = '{source}' \
         AND status IN ('finished', 'failed')"
    );
    let want = views.to_string();
    while Instant::now() < deadline {
        if query(client, &sql).await?[0][0].as_deref() == Some(want.as_str()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("the views of {source} did not finish within 60 s"))
}

/// Runs `case` as source `source` (its files under `root`) and compares every view.
pub async fn run_case(server: &mut Server, case: &Case, source: &str, root: &Path) -> Outcome {
    let dir = root.join(source);
    write_files(case, &dir);
    let mut outcome = Outcome::default();
    let stmts = statements(case, source, &dir);
    let mut created = vec![true; case.views.len()];
    for (i, sql) in stmts.iter().enumerate() {
        if let Err(e) = query(&server.client, sql).await {
            if i == 0 {
                outcome.failure = Some(format!("CREATE SOURCE failed: {e}"));
                return outcome;
            }
            let view = &case.views[i - 1];
            if expected_rows(case, view).await.is_err() {
                // Neither engine takes it (DataFusion refuses some queries the generator
                // makes, e.g. `sum(CAST(v AS DOUBLE))` with `HAVING sum(v) > 1`).
                outcome.both_refused += 1;
            } else if !e.contains("(0A000)") {
                outcome.failure = Some(format!("CREATE refused without 0A000: {e}\n  {sql}"));
                return outcome;
            } else {
                outcome.refused.push(e);
            }
            created[i - 1] = false;
        }
    }
    if let Some(restart) = case.restart {
        let (Restart::Kill9 { after_ms } | Restart::Clean { after_ms }) = restart;
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        server.restart(restart).await;
        for (i, sql) in stmts.iter().enumerate() {
            if i == 0 || created[i - 1] {
                if let Err(e) = query(&server.client, sql).await {
                    outcome.failure = Some(format!("re-running after restart failed: {e}"));
                    return outcome;
                }
            }
        }
    }
    let views = created.iter().filter(|c| **c).count();
    if let Err(e) = wait_settled(&server.client, source, views).await {
        outcome.failure = Some(e);
        return outcome;
    }
    for (i, view) in case.views.iter().enumerate() {
        if !created[i] {
            continue;
        }
        let name = format!("{source}_v{i}");
        let http = server.weir.http_port;
        if let Err(e) = compare_view(&server.client, http, case, view, &name, &mut outcome).await {
            outcome.failure = Some(format!("view {name}: {e}"));
            return outcome;
        }
    }
    if views == 0 {
        // No view reads the source, so it never runs and counts nothing.
        return outcome;
    }
    let dead = query(
        &server.client,
        &format!("SELECT bad_records FROM weir_catalog.sources WHERE name = '{source}'"),
    )
    .await;
    let expected = dead_letters(case).to_string();
    if dead
        .as_ref()
        .map(|r| r.first().and_then(|row| row[0].clone()))
        != Ok(Some(expected.clone()))
    {
        outcome.failure = Some(format!(
            "source {source}: bad_records {dead:?}, expected {expected}"
        ));
    }
    outcome
}

async fn compare_view(
    client: &Client,
    http_port: u16,
    case: &Case,
    view: &ViewSpec,
    name: &str,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let status = query(
        client,
        &format!("SELECT status, error, late_rows FROM weir_catalog.views WHERE name = '{name}'"),
    )
    .await?;
    let Some([status, error, late]) = status.first().map(|r| &r[..]) else {
        return Err("no status row".into());
    };
    if status.as_deref() != Some("finished") {
        return Err(format!("status {status:?}, error {error:?}"));
    }
    let Expected {
        names,
        rows: expected,
        reads,
    } = expected_rows(case, view)
        .await
        .map_err(|e| format!("the oracle failed on a view Weir accepted: {e}"))?;
    let actual = query(client, &canonical_select(&names, name)).await?;
    let compare = view.column_compare();
    let (actual, expected) = (sorted(actual, &compare), sorted(expected, &compare));
    let equal = actual.len() == expected.len()
        && actual.iter().zip(&expected).all(|(a, e)| {
            a.iter()
                .zip(e)
                .zip(&compare)
                .all(|((a, e), c)| cell_equal(a, e, *c))
        });
    if !equal {
        return Err(format!(
            "rows differ{}",
            two_sides(("weir", &actual), ("batch", &expected))
        ));
    }
    let expected_late = late_rows(case, view).to_string();
    if late.as_deref() != Some(expected_late.as_str()) {
        return Err(format!("late_rows {late:?}, expected {expected_late}"));
    }
    outcome.rows_compared += actual.len();
    let server = (client, http_port);
    outcome.rows_compared += compare_reads(server, view, name, &names, reads, outcome).await?;
    Ok(())
}

/// Checks the view's reads: the rows Weir returns for each filter (and LIMIT) against the
/// batch result filtered the same way. A read of the point-query shape is also asked as
/// `SELECT *`, which the fast path answers, and must return what DataFusion returns for it.
async fn compare_reads(
    (client, http_port): (&Client, u16),
    view: &ViewSpec,
    name: &str,
    names: &[String],
    expected: Vec<Result<Rows, String>>,
    outcome: &mut Outcome,
) -> Result<usize, String> {
    let mut compared = 0;
    for (read, want) in view.reads.iter().zip(expected) {
        let compare = if read.count {
            vec![Compare::Exact]
        } else {
            view.column_compare()
        };
        let same = |a: &Vec<Option<String>>, e: &Vec<Option<String>>| {
            a.iter()
                .zip(e)
                .zip(&compare)
                .all(|((a, e), c)| cell_equal(a, e, *c))
        };
        let sql = read.text_sql(names, name);
        let ordered = !read.order_by.is_empty();
        let (got, want) = match (query(client, &sql).await, want) {
            (Ok(got), Ok(want)) if ordered => (got, want),
            (Ok(got), Ok(want)) => (sorted(got, &compare), sorted(want, &compare)),
            (Err(_), Err(_)) => continue,
            (Err(e), Ok(_)) => return Err(format!("read failed: {e}\n  {sql}")),
            (Ok(_), Err(e)) => {
                return Err(format!(
                    "the batch side refused a read Weir answered: {e}\n  {sql}"
                ))
            }
        };
        let equal = match read.limit {
            // Unordered, a LIMIT may return any of the rows.
            Some(n) if !ordered => {
                got.len() == want.len().min(n as usize)
                    && got.iter().all(|a| want.iter().any(|e| same(a, e)))
            }
            _ => got.len() == want.len() && got.iter().zip(&want).all(|(a, e)| same(a, e)),
        };
        if !equal {
            let batch = ("batch (before the limit unless ordered)", &want);
            return Err(format!(
                "read differs: {sql}{}",
                two_sides(("weir", &got), batch)
            ));
        }
        compared += got.len();
        if read.is_point() {
            let fast = read.sql(&format!("SELECT * FROM {name}"));
            let planned = format!("{fast} LIMIT 1000000000");
            let before = fast_path_answers(http_port, name).await;
            let mut by_fast_path = query(client, &fast).await?;
            outcome.point_reads += 1;
            let after = fast_path_answers(http_port, name).await;
            outcome.fast_path_reads += after - before;
            // (DataFusion's answers do not count: `before` for the prepared read is `after`.)
            let before = after;
            let mut by_datafusion = query(client, &planned).await?;
            by_fast_path.sort();
            by_datafusion.sort();
            if by_fast_path != by_datafusion {
                return Err(format!(
                    "the point query differs from DataFusion's answer: {fast}{}",
                    two_sides(("fast path", &by_fast_path), ("DataFusion", &by_datafusion))
                ));
            }
            if let Some(prepared) = prepared_point_read(client, view, read, name).await? {
                outcome.prepared_reads += 1;
                outcome.fast_path_reads += fast_path_answers(http_port, name).await - before;
                let keys = view.keys.join(", ");
                let planned = read.sql(&format!("SELECT {keys} FROM {name}"));
                let mut by_datafusion =
                    query(client, &format!("{planned} LIMIT 1000000000")).await?;
                by_datafusion.sort();
                if prepared != by_datafusion {
                    return Err(format!(
                        "the prepared point query differs from DataFusion's answer: {planned}{}",
                        two_sides(("prepared", &prepared), ("DataFusion", &by_datafusion))
                    ));
                }
            }
        }
    }
    Ok(compared)
}

/// Drops the case's views and source.
pub async fn drop_case(server: &Server, case: &Case, source: &str) {
    for i in 0..case.views.len() {
        let _ = query(
            &server.client,
            &format!("DROP MATERIALIZED VIEW IF EXISTS {source}_v{i}"),
        )
        .await;
    }
    let _ = query(&server.client, &format!("DROP SOURCE IF EXISTS {source}")).await;
}

/// Queries on `view` the point-query fast path has answered (its metric).
async fn fast_path_answers(http_port: u16, view: &str) -> u64 {
    let page = http_get(http_port, "/metrics").await;
    let series = format!("weir_view_point_queries_total{{view=\"{view}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A point read of a view without windows, asked as a prepared statement with its literals
/// bound as parameters (as drivers such as asyncpg and pgJDBC ask): the view's key columns of
/// the rows it returns, as text, sorted. `None` for a windowed view.
async fn prepared_point_read(
    client: &Client,
    view: &ViewSpec,
    read: &Read,
    name: &str,
) -> Result<Option<Rows>, String> {
    if view.window != Window::None {
        return Ok(None);
    }
    let err = |e: tokio_postgres::Error| e.to_string();
    let wheres: Vec<String> = (1..=read.equalities.len())
        .zip(&read.equalities)
        .map(|(i, (k, _))| format!("{k} = ${i}"))
        .collect();
    let sql = format!(
        "SELECT {} FROM {name} WHERE {}",
        view.keys.join(", "),
        wheres.join(" AND ")
    );
    let statement = client.prepare(&sql).await.map_err(err)?;
    // Each literal as a value of the type the server describes its parameter as.
    let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    for (i, (ty, (_, literal))) in statement.params().iter().zip(&read.equalities).enumerate() {
        values.push(match *ty {
            Type::TEXT | Type::VARCHAR => Box::new(literal.trim_matches('\'').to_string()),
            Type::INT8 => Box::new(literal.parse::<i64>().map_err(|e| e.to_string())?),
            Type::BOOL => Box::new(literal == "true"),
            ref other => return Err(format!("{sql}: parameter ${} described as {other}", i + 1)),
        });
    }
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(AsRef::as_ref).collect();
    let rows = client.query(&statement, &params).await.map_err(err)?;
    let mut out: Rows = Vec::new();
    for row in rows {
        let mut cells = Vec::new();
        for (i, column) in row.columns().iter().enumerate() {
            cells.push(match *column.type_() {
                Type::TEXT | Type::VARCHAR => row.try_get::<_, Option<String>>(i).map_err(err)?,
                Type::INT8 => row
                    .try_get::<_, Option<i64>>(i)
                    .map_err(err)?
                    .map(|v| v.to_string()),
                // As the simple protocol shows a boolean.
                Type::BOOL => row
                    .try_get::<_, Option<bool>>(i)
                    .map_err(err)?
                    .map(|v| if v { "t" } else { "f" }.to_string()),
                ref other => return Err(format!("{sql}: column {i} is {other}")),
            });
        }
        out.push(cells);
    }
    out.sort();
    Ok(Some(out))
}
