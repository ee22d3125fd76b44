//! Runs every `sql/*.slt` suite over the Postgres wire against a fresh `weir` process.
//!
//! `${DATA}` in a suite is replaced by the absolute path of `tests/data`.

use std::path::PathBuf;

use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

struct Pg {
    client: Client,
}

/// A query error as a suite matches it: the server's message and hint (tokio-postgres alone
/// prints only "db error").
#[derive(Debug)]
struct PgError(tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => match db.hint() {
                Some(hint) => write!(f, "{}\nHINT: {hint}", db.message()),
                None => write!(f, "{}", db.message()),
            },
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for PgError {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Pg {
    type Error = PgError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await.map_err(PgError)?;
        let mut columns = None;
        let mut rows = Vec::new();
        let mut affected = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(cols) => columns = Some(cols.len()),
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &Self::Error) -> Option<String> {
        err.0.code().map(|c| c.code().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_suites() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("tests/data");
    let mut suites: Vec<PathBuf> = std::fs::read_dir(root.join("sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    suites.sort();
    assert!(!suites.is_empty(), "no sql/*.slt suites found");
    let only = std::env::var("WEIR_SLT").ok();
    let mut failures = Vec::new();
    for suite in &suites {
        let name = suite.file_name().unwrap().to_string_lossy().to_string();
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let weir = crate::common::Weir::start(dir.path(), &[]);
        let script = std::fs::read_to_string(suite)
            .unwrap()
            .replace("${DATA}", &data.display().to_string());
        let port = weir.pg_port;
        let mut runner = sqllogictest::Runner::new(move || async move {
            let conn = format!("host=127.0.0.1 port={port} user=slt dbname=weir");
            let (client, connection) = tokio_postgres::connect(&conn, NoTls)
                .await
                .map_err(PgError)?;
            tokio::spawn(connection);
            Ok(Pg { client })
        });
        match runner
            .run_script_with_name_async(&script, name.as_str())
            .await
        {
            Ok(()) => eprintln!("ok   {name}"),
            Err(e) => {
                eprintln!("FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} suite(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
