//! Statements Weir refuses before DataFusion sees them.
//!
//! DataFusion's context is shared by every connection, and only Weir's catalog may change
//! state (`CREATE`/`DROP SOURCE`, `CREATE`/`DROP MATERIALIZED VIEW`, handled by the engine
//! before this). So `CREATE TABLE`/`VIEW`/`SCHEMA`/..., `DROP` of anything else, `ALTER`,
//! and `INSERT`/`UPDATE`/`DELETE` are refused with SQLSTATE 0A000; `CREATE EXTERNAL TABLE`,
//! which reads server files, with 42501 (as `COPY` to or from a server file is, `copy.rs`);
//! and `DROP VIEW` as PostgreSQL refuses it for a materialized view (42809, with a hint).
//! The session goes on.

use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use pgwire::error::ErrorInfo;

use crate::plan::leading_words;

const CATALOG: &str = "Weir's catalog changes only through CREATE/DROP SOURCE and \
                       CREATE/DROP MATERIALIZED VIEW";

fn error(code: &str, message: String) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), code.into(), message)
}

/// The error `sql` (one statement) is refused with, if it is.
pub fn refusal(sql: &str) -> Option<ErrorInfo> {
    let words = leading_words(sql, 4);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    if matches!(
        words.as_slice(),
        ["CREATE", "EXTERNAL", ..] | ["CREATE", "UNBOUNDED", "EXTERNAL", ..]
    ) {
        return Some(error(
            "42501",
            "CREATE EXTERNAL TABLE is not allowed: it reads files on the server; \
             read files through CREATE SOURCE ... WITH (connector = 'file')"
                .into(),
        ));
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let statement = statements.first()?;
    if let Statement::Drop {
        object_type: ObjectType::View,
        names,
        ..
    } = statement
    {
        let name = names.first().map(ToString::to_string).unwrap_or_default();
        let mut info = error("42809", format!("\"{name}\" is not a view"));
        info.hint = Some("Use DROP MATERIALIZED VIEW to remove a materialized view.".into());
        return Some(info);
    }
    let changes_state = matches!(
        statement,
        Statement::CreateTable { .. }
            | Statement::CreateView { .. }
            | Statement::CreateVirtualTable { .. }
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction { .. }
            | Statement::CreateIndex { .. }
            | Statement::CreateSequence { .. }
            | Statement::CreateType { .. }
            | Statement::CreateExtension { .. }
            | Statement::CreateMacro { .. }
            | Statement::AlterTable { .. }
            | Statement::AlterView { .. }
            | Statement::AlterSchema { .. }
            | Statement::AlterIndex { .. }
            | Statement::Drop { .. }
            | Statement::DropFunction { .. }
            | Statement::DropExtension { .. }
            | Statement::Insert { .. }
            | Statement::Update { .. }
            | Statement::Delete { .. }
            | Statement::Merge { .. }
            | Statement::Truncate { .. }
    );
    changes_state.then(|| {
        let kind = leading_words(sql, 2).join(" ");
        error("0A000", format!("{kind} is not supported: {CATALOG}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sql: &str) -> Option<String> {
        refusal(sql).map(|e| e.code)
    }

    #[test]
    fn state_changing_statements_are_refused() {
        assert_eq!(code("DROP VIEW failures").as_deref(), Some("42809"));
        assert!(refusal("drop view failures").unwrap().hint.is_some());
        for sql in [
            "CREATE TABLE t (a INT)",
            "CREATE VIEW v AS SELECT 1",
            "CREATE SCHEMA s",
            "DROP TABLE t",
            "DROP SCHEMA public",
            "INSERT INTO t VALUES (1)",
            "DELETE FROM t",
        ] {
            assert_eq!(code(sql).as_deref(), Some("0A000"), "{sql}");
        }
        assert_eq!(
            code("/* x */ CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'").as_deref(),
            Some("42501")
        );
        for sql in [
            "SELECT 1",
            "SHOW ALL",
            "SET datestyle = 'ISO'",
            "BEGIN",
            "not sql",
        ] {
            assert_eq!(code(sql), None, "{sql}");
        }
    }
}
