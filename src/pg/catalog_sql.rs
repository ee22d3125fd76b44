//! Catalog queries of client libraries rewritten into what DataFusion can plan.
//!
//! SQLAlchemy's inspector (`get_columns`, `get_pk_constraint`, `get_indexes`) asks
//! `pg_catalog` with two shapes DataFusion 55 refuses:
//! - correlated scalar subqueries inside a select-list expression that DataFusion cannot
//!   plan even once `subqueries.rs` aggregated them (`(SELECT json_build_object(...) FROM
//!   pg_sequence s WHERE ...)`). One that reads a catalog table Weir keeps empty
//!   (`ALWAYS_EMPTY`: column defaults, identity sequences, indexes, constraints, ...) and
//!   does not count is replaced by NULL, which is the answer PostgreSQL gives. Any other
//!   subquery is left for DataFusion to plan or refuse: never a NULL in place of a value.
//! - `LIKE pattern ESCAPE '/'` (SQLAlchemy's `get_schema_names`): DataFusion knows only the
//!   backslash as escape; the pattern becomes `replace(replace(pattern, '\', '\\'), '/',
//!   '\')`, which also works when the pattern is a bound parameter.
//! - `x || ARRAY(SELECT ... FROM unnest(t.reloptions) ...)` (psql's `\d+`): Weir's relations
//!   have no storage options, so the array is empty and the expression is `x`.
//! - `generate_subscripts(array, 1)` as a set-returning function in the select list:
//!   rewritten to `unnest(weir_subscripts(array, 1))` (`functions.rs`), which DataFusion
//!   unnests alongside the query's other `unnest` calls, row by row, as PostgreSQL does.
//!
//! Only a query that names `pg_catalog` is rewritten: `LIKE ... ESCAPE` always (DataFusion
//! fails it only when it runs); the rest after the query failed as sent, or at once for a
//! prepared statement whose select-list subqueries bind parameters (see
//! [`rewrite_parameterized_subqueries`]). So queries that work (among them those
//! datafusion-pg-catalog recognises token by token) are not changed. Queries over views are
//! untouched.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr, Function, FunctionArguments,
    JoinOperator, Query, SelectItem, SetExpr, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The name `generate_subscripts` is rewritten to (a function returning the subscripts).
pub const SUBSCRIPTS_FUNCTION: &str = "weir_subscripts";

/// `sql` with every `LIKE ... ESCAPE` rewritten (always: DataFusion refuses them at
/// execution, after a prepared statement was accepted); unchanged when there is none.
pub fn rewrite_like_escapes(sql: &str) -> Cow<'_, str> {
    if !sql.to_ascii_lowercase().contains("escape") {
        return Cow::Borrowed(sql);
    }
    rewrite(sql, Mode::Escapes)
}

/// `sql` rewritten as described in the module docs, for another try after it failed;
/// unchanged when there is nothing to do or it does not parse.
pub fn rewrite_catalog_query(sql: &str) -> Cow<'_, str> {
    rewrite(sql, Mode::Retry)
}

/// `sql` rewritten as [`rewrite_catalog_query`] does, but only if a correlated subquery of
/// a select list binds parameters: for a prepared statement, at once. datafusion-pg-catalog
/// would replace such a subquery with NULL and drop its parameters, shifting the types of
/// the parameters the client then binds; and DataFusion refuses the other subqueries only
/// when the statement runs, too late for another try.
pub fn rewrite_parameterized_subqueries(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    rewrite(sql, Mode::Parameters)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Escapes,
    Retry,
    Parameters,
}

fn rewrite(sql: &str, mode: Mode) -> Cow<'_, str> {
    if !sql.to_ascii_lowercase().contains("pg_catalog") {
        return Cow::Borrowed(sql);
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Cow::Borrowed(sql);
    };
    let mut rewriter = Rewriter {
        select_lists: mode != Mode::Escapes,
        changed: false,
        kept_parameters: false,
    };
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    if !rewriter.changed || (mode == Mode::Parameters && !rewriter.kept_parameters) {
        return Cow::Borrowed(sql);
    }
    let texts: Vec<String> = statements.iter().map(ToString::to_string).collect();
    Cow::Owned(texts.join("; "))
}

/// Rewrites `LIKE ... ESCAPE` anywhere and, if `select_lists`, the expressions of every
/// select list; records whether a replaced subquery had parameters.
struct Rewriter {
    select_lists: bool,
    changed: bool,
    kept_parameters: bool,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        if !self.select_lists {
            return ControlFlow::Continue(());
        }
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                let _ = visit_expressions_mut(expr, |e: &mut Expr| {
                    if let Some(parameters) = rewrite_expr(e) {
                        self.changed = true;
                        self.kept_parameters |= parameters;
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.changed |= backslash_escape(expr);
        ControlFlow::Continue(())
    }
}

/// `LIKE` with another escape character than backslash, rewritten to backslash.
fn backslash_escape(expr: &mut Expr) -> bool {
    let Expr::Like {
        pattern,
        escape_char,
        ..
    } = expr
    else {
        return false;
    };
    let escape = match escape_char.as_ref().map(|e| &e.value) {
        Some(Value::SingleQuotedString(c)) if c.chars().count() == 1 && c != "\\" => c.clone(),
        _ => return false,
    };
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let converted = format!(
        "replace(replace({pattern}, '\\', '\\\\'), {}, '\\')",
        quote(&escape)
    );
    match Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&converted)
        .and_then(|mut p| p.parse_expr())
    {
        Ok(converted) => {
            **pattern = converted;
            *escape_char = None;
            true
        }
        Err(_) => false,
    }
}

/// `pg_catalog` tables that are empty in Weir (its relations have no defaults, indexes,
/// constraints, inheritance, triggers, policies, extended statistics, sequences or enums).
const ALWAYS_EMPTY: [&str; 9] = [
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_inherits",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_sequence",
    "pg_enum",
];

/// Whether `query` certainly has no rows and its value is NULL: it reads (not through an
/// outer join) a table of [`ALWAYS_EMPTY`], and counts nothing (a count of no rows is 0).
fn certainly_null(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let empty = |relation: &TableFactor| match relation {
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|t| ALWAYS_EMPTY.contains(&t.value.to_ascii_lowercase().as_str())),
        _ => false,
    };
    let reads_empty = select.from.iter().any(|from| {
        empty(&from.relation)
            || from.joins.iter().any(|j| {
                matches!(
                    j.join_operator,
                    JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                ) && empty(&j.relation)
            })
    });
    let counts = visit_expressions(&select.projection, |e: &Expr| match e {
        Expr::Function(f) if named(f, "count") => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    reads_empty && !counts
}

/// Rewrites one expression of a select list; `Some(kept parameters)` if it changed.
fn rewrite_expr(expr: &mut Expr) -> Option<bool> {
    match expr {
        Expr::Subquery(query) if correlated(query) && certainly_null(query) => {
            let (null, parameters) = null_keeping_placeholders(query);
            *expr = null;
            Some(parameters)
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } if options_of_unnested_reloptions(right) => {
            *expr = (**left).clone();
            Some(false)
        }
        Expr::Function(f) if named(f, "generate_subscripts") => {
            let mut inner = f.clone();
            inner.name = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(SUBSCRIPTS_FUNCTION)
                .and_then(|mut p| p.parse_object_name(false))
                .unwrap_or(inner.name);
            let unnest = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&format!("unnest({inner})"))
                .and_then(|mut p| p.parse_expr())
                .ok()?;
            *expr = unnest;
            Some(false)
        }
        _ => None,
    }
}

/// NULL in place of `query`, and whether it had parameters. Its parameters (`$n`) stay in
/// the statement, as text, so the statement still has every parameter the client binds.
fn null_keeping_placeholders(query: &Query) -> (Expr, bool) {
    let null = Expr::Value(Value::Null.with_empty_span());
    let mut placeholders = Vec::new();
    let _ = visit_expressions(query, |e: &Expr| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                placeholders.push(p.clone());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if placeholders.is_empty() {
        return (null, false);
    }
    let used: Vec<String> = placeholders
        .iter()
        .map(|p| format!("CAST({p} AS TEXT) IS NULL"))
        .collect();
    let kept = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("CASE WHEN {} THEN NULL END", used.join(" OR ")))
        .and_then(|mut p| p.parse_expr())
        .unwrap_or(null);
    (kept, true)
}

/// Whether `f` is the function `name`, qualified or not.
/// Whether `expr` is `ARRAY(SELECT ... FROM unnest(<...>.reloptions) ...)`, which psql's
/// `\d+` appends to `c.reloptions` (the TOAST table's options). Weir's relations have no
/// storage options (`reloptions` is NULL), so it is the empty array and `x || it` is `x`.
fn options_of_unnested_reloptions(expr: &Expr) -> bool {
    let Expr::Function(f) = expr else {
        return false;
    };
    let FunctionArguments::Subquery(query) = &f.args else {
        return false;
    };
    let text = query.to_string().to_ascii_lowercase();
    named(f, "array") && text.contains("unnest(") && text.contains("reloptions)")
}

fn named(f: &Function, name: &str) -> bool {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
}

/// Whether `query` names a column of a relation it does not read itself (`t.c` or
/// `schema.t.c` with `t` not in its FROM): a reference to the enclosing query.
fn correlated(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let mut relations = HashSet::new();
    for from in &select.from {
        let joined = from.joins.iter().map(|j| &j.relation);
        for relation in std::iter::once(&from.relation).chain(joined) {
            if let TableFactor::Table { name, alias, .. } = relation {
                if let Some(table) = name.0.last().and_then(|p| p.as_ident()) {
                    relations.insert(table.value.to_ascii_lowercase());
                }
                if let Some(alias) = alias {
                    relations.insert(alias.name.value.to_ascii_lowercase());
                }
            }
        }
    }
    visit_expressions(query, |e: &Expr| match e {
        Expr::CompoundIdentifier(parts)
            if parts.len() >= 2
                && !relations.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_correlated_subqueries_of_empty_tables_become_null() {
        let sql = "SELECT a.attname, CASE WHEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d \
                   WHERE d.adrelid = a.attrelid) <> '' THEN 'c' END AS c, \
                   (SELECT max(oid) FROM pg_catalog.pg_type) AS m FROM pg_catalog.pg_attribute a";
        assert_eq!(
            rewrite_catalog_query(sql),
            "SELECT a.attname, CASE WHEN NULL <> '' THEN 'c' END AS c, \
             (SELECT max(oid) FROM pg_catalog.pg_type) AS m FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn subqueries_that_may_have_a_value_are_never_null() {
        for sql in [
            "SELECT (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) \
             FROM pg_catalog.pg_attribute a",
            "SELECT (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid) \
             FROM pg_catalog.pg_class c",
            "SELECT (SELECT i.x FROM pg_catalog.pg_class k LEFT JOIN pg_catalog.pg_index i \
             ON i.indrelid = k.oid WHERE k.oid = c.oid) FROM pg_catalog.pg_class c",
        ] {
            assert!(
                matches!(rewrite_catalog_query(sql), Cow::Borrowed(_)),
                "{sql}"
            );
        }
    }

    #[test]
    fn parameters_of_a_removed_subquery_stay() {
        let sql = "SELECT (SELECT x FROM pg_catalog.pg_sequence s WHERE a.attidentity != $1) \
                   FROM pg_catalog.pg_attribute a WHERE a.attnum > $2";
        assert_eq!(
            rewrite_catalog_query(sql),
            "SELECT CASE WHEN CAST($1 AS TEXT) IS NULL THEN NULL END \
             FROM pg_catalog.pg_attribute a WHERE a.attnum > $2"
        );
    }

    #[test]
    fn prepared_statements_are_rewritten_only_for_parameters_in_subqueries() {
        let with = "SELECT (SELECT x FROM pg_catalog.pg_sequence s WHERE a.attidentity != $1) \
                    FROM pg_catalog.pg_attribute a";
        assert!(matches!(
            rewrite_parameterized_subqueries(with),
            Cow::Owned(_)
        ));
        let without = "SELECT (SELECT x FROM pg_catalog.pg_sequence s WHERE a.attidentity = s.y) \
                       FROM pg_catalog.pg_attribute a WHERE a.attnum > $1";
        assert!(matches!(
            rewrite_parameterized_subqueries(without),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn generate_subscripts_unnests_the_subscripts() {
        let sql = "SELECT unnest(i.indkey) AS k, generate_subscripts(i.indkey, 1) AS o \
                   FROM pg_catalog.pg_index i";
        assert_eq!(
            rewrite_catalog_query(sql),
            "SELECT unnest(i.indkey) AS k, unnest(weir_subscripts(i.indkey, 1)) AS o \
             FROM pg_catalog.pg_index i"
        );
    }

    #[test]
    fn like_escapes_become_backslashes() {
        let sql = "SELECT nspname FROM pg_catalog.pg_namespace \
                   WHERE nspname NOT LIKE 'pg/_' || '%' ESCAPE '/'";
        assert_eq!(
            rewrite_catalog_query(sql),
            "SELECT nspname FROM pg_catalog.pg_namespace \
             WHERE nspname NOT LIKE replace(replace('pg/_' || '%', '\\', '\\\\'), '/', '\\')"
        );
    }

    #[test]
    fn queries_not_over_pg_catalog_are_untouched() {
        let sql = "SELECT (SELECT max(n) FROM failures f WHERE f.u = w.u) FROM worst w";
        assert!(matches!(rewrite_catalog_query(sql), Cow::Borrowed(_)));
    }
}
