//! Scalar subqueries in select lists: answered as PostgreSQL answers them, or refused.
//!
//! datafusion-pg-catalog 0.19 rewrites a select item that is a scalar subquery before
//! DataFusion sees it: to NULL when the subquery looks correlated to it (it names a relation
//! its own FROM does not alias, or binds a parameter), otherwise by adding `LIMIT 1`. So
//! `SELECT s.name, (SELECT count(*) FROM weir_catalog.views v WHERE v.source = s.name)
//! FROM weir_catalog.sources s` answered NULL for every source, without an error.
//! DataFusion itself plans correlated subqueries that aggregate, and refuses the others.
//!
//! Before the library parses a query, Weir
//! - puts each select item that is a scalar subquery in parentheses, where the library's rule
//!   does not look, so DataFusion plans the subquery itself;
//! - rewrites each scalar subquery in a select list that does not aggregate (`(SELECT e FROM
//!   ... WHERE ...)` without GROUP BY, DISTINCT or LIMIT) into one that aggregates and means
//!   the same: `(SELECT CASE WHEN count(*) > 1 THEN weir_subquery_rows(count(*)) ELSE
//!   first_value(e) END FROM ... WHERE ...)`. Without rows it is NULL, with one row it is
//!   that row's value, with more it fails as PostgreSQL does (SQLSTATE 21000).
//!
//! - helps DataFusion decorrelate: in a scalar subquery's WHERE, where a conjunct says an
//!   outer column equals an inner one (`c.oid = a.attcollation`), the other conjuncts read
//!   the inner column instead (`a.attcollation <> t.typcollation` becomes `c.oid <>
//!   t.typcollation`); and a conjunct of a subquery that does not aggregate reading only
//!   outer columns (`AND a.atthasdef`) moves out of it: `CASE WHEN a.atthasdef THEN
//!   (SELECT ...) END`. Both mean the same (psql's `\d` asks this way).
//!
//! A subquery DataFusion still cannot plan fails with SQLSTATE 0A000 (`errors.rs`).
//!
//! The same pass turns a field of a record that is not a column, `(f(x)).n` (pgJDBC's
//! `getPrimaryKeys`), into `get_field(f(x), 'n')`, which DataFusion plans.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, AccessExpr, BinaryOperator, Expr, GroupByExpr, Ident,
    Query, Select, SelectItem, SetExpr, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The function a rewritten subquery calls when it has more than one row (it fails).
pub const TOO_MANY_ROWS_FUNCTION: &str = "weir_subquery_rows";

/// PostgreSQL's message for a scalar subquery with more than one row (SQLSTATE 21000).
pub const TOO_MANY_ROWS: &str = "more than one row returned by a subquery used as an expression";

/// Functions that return several rows per input row: a subquery calling them is left alone.
const SET_RETURNING: [&str; 3] = ["unnest", "generate_series", "generate_subscripts"];

/// `sql` with the scalar subqueries of its select lists rewritten as the module docs say;
/// borrowed when there is none (or it does not parse). `aggregates` holds the (lowercase)
/// names of the aggregate functions.
pub fn rewrite_scalar_subqueries<'a>(sql: &'a str, aggregates: &HashSet<String>) -> Cow<'a, str> {
    if sql.to_ascii_lowercase().matches("select").count() < 2 && !sql.contains(").") {
        return Cow::Borrowed(sql);
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Cow::Borrowed(sql);
    };
    let mut rewriter = Rewriter {
        aggregates,
        changed: false,
    };
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    if !rewriter.changed {
        return Cow::Borrowed(sql);
    }
    let texts: Vec<String> = statements.iter().map(ToString::to_string).collect();
    Cow::Owned(texts.join("; "))
}

struct Rewriter<'a> {
    aggregates: &'a HashSet<String>,
    changed: bool,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                continue;
            };
            let _ = visit_expressions_mut(expr, |e: &mut Expr| {
                self.changed |= rewrite_subquery(e, self.aggregates);
                ControlFlow::<()>::Continue(())
            });
            if matches!(expr, Expr::Subquery(_)) {
                let subquery = std::mem::replace(expr, Expr::Value(Value::Null.with_empty_span()));
                *expr = Expr::Nested(Box::new(subquery));
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.changed |= field_access(expr);
        ControlFlow::Continue(())
    }
}

fn parse_expr(text: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `(expr).a.b` of an expression that is not a column, as `get_field(get_field(expr, 'a'),
/// 'b')`; whether it changed.
fn field_access(expr: &mut Expr) -> bool {
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return false;
    };
    if matches!(**root, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
        return false;
    }
    let mut text = root.to_string();
    for access in access_chain.iter() {
        let AccessExpr::Dot(Expr::Identifier(field)) = access else {
            return false;
        };
        text = format!("get_field({text}, '{}')", field.value.replace('\'', "''"));
    }
    match parse_expr(&text) {
        Some(fields) => {
            *expr = fields;
            true
        }
        None => false,
    }
}

/// Rewrites `e` if it is a scalar subquery (module docs); whether it changed.
fn rewrite_subquery(e: &mut Expr, aggregates: &HashSet<String>) -> bool {
    let Expr::Subquery(query) = e else {
        return false;
    };
    let aggregated = aggregate(query, aggregates);
    let SetExpr::Select(select) = query.body.as_mut() else {
        return aggregated;
    };
    let Some(untangled) = untangle(select, aggregated) else {
        return aggregated;
    };
    select.selection = untangled.selection;
    if untangled.guard.is_empty() {
        return true;
    }
    let guard: Vec<String> = untangled.guard.iter().map(|g| format!("({g})")).collect();
    match parse_expr(&format!("CASE WHEN {} THEN {e} END", guard.join(" AND "))) {
        Some(guarded) => *e = guarded,
        // Cannot happen (the text is printed from a parsed statement); keep the meaning.
        None => select_guard_back(e, untangled.guard),
    }
    true
}

/// Puts `guard` back into the WHERE of the subquery `e`.
fn select_guard_back(e: &mut Expr, guard: Vec<Expr>) {
    if let Expr::Subquery(query) = e {
        if let SetExpr::Select(select) = query.body.as_mut() {
            let mut all: Vec<Expr> = select.selection.take().into_iter().collect();
            all.extend(guard);
            select.selection = and_all(all);
        }
    }
}

/// A subquery's WHERE rewritten by [`untangle`], and the conjuncts moved out of it.
struct Untangled {
    selection: Option<Expr>,
    guard: Vec<Expr>,
}

/// The names (lowercase) a subquery's FROM gives its relations; `None` if it reads anything
/// but tables.
fn inner_names(select: &Select) -> Option<HashSet<String>> {
    let mut names = HashSet::new();
    for from in &select.from {
        let joined = from.joins.iter().map(|j| &j.relation);
        for relation in std::iter::once(&from.relation).chain(joined) {
            let TableFactor::Table { name, alias, .. } = relation else {
                return None;
            };
            names.insert(name.0.last()?.as_ident()?.value.to_ascii_lowercase());
            if let Some(alias) = alias {
                names.insert(alias.name.value.to_ascii_lowercase());
            }
        }
    }
    Some(names)
}

/// Whether a qualified column `parts` belongs to the enclosing query, not to `inner`.
fn outer(parts: &[Ident], inner: &HashSet<String>) -> bool {
    parts.len() >= 2 && !inner.contains(&parts[parts.len() - 2].value.to_ascii_lowercase())
}

/// `e` split at its top-level ANDs.
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

fn and_all(all: Vec<Expr>) -> Option<Expr> {
    all.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    })
}

/// The WHERE of `select` with outer columns replaced by the inner columns they equal, and,
/// if `hoist`, without the conjuncts reading only outer columns; `None` if nothing changes.
fn untangle(select: &Select, hoist: bool) -> Option<Untangled> {
    let inner = inner_names(select)?;
    let mut all = Vec::new();
    conjuncts(select.selection.clone()?, &mut all);
    let mut equal: Vec<(String, Expr)> = Vec::new();
    let mut is_equality = vec![false; all.len()];
    for (i, conjunct) in all.iter().enumerate() {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = conjunct
        else {
            continue;
        };
        for (a, b) in [(left, right), (right, left)] {
            if let (Expr::CompoundIdentifier(o), Expr::CompoundIdentifier(n)) = (&**a, &**b) {
                if outer(o, &inner) && !outer(n, &inner) {
                    equal.push((a.to_string().to_ascii_lowercase(), (**b).clone()));
                    is_equality[i] = true;
                }
            }
        }
    }
    let mut changed = false;
    let mut kept = Vec::new();
    let mut guard = Vec::new();
    for (i, mut conjunct) in all.into_iter().enumerate() {
        if !is_equality[i] {
            let _ = visit_expressions_mut(&mut conjunct, |e: &mut Expr| {
                if matches!(&*e, Expr::CompoundIdentifier(parts) if outer(parts, &inner)) {
                    let text = e.to_string().to_ascii_lowercase();
                    if let Some((_, same)) = equal.iter().find(|(o, _)| *o == text) {
                        *e = same.clone();
                        changed = true;
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        }
        let (mut reads_outer, mut reads_other) = (false, false);
        let _ = visit_expressions(&conjunct, |e: &Expr| {
            match e {
                Expr::CompoundIdentifier(parts) if outer(parts, &inner) => reads_outer = true,
                Expr::CompoundIdentifier(_)
                | Expr::Identifier(_)
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => reads_other = true,
                Expr::Function(f) if f.over.is_some() => reads_other = true,
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        if hoist && reads_outer && !reads_other {
            guard.push(conjunct);
        } else {
            kept.push(conjunct);
        }
    }
    (changed || !guard.is_empty()).then(|| Untangled {
        selection: and_all(kept),
        guard,
    })
}

/// The name of a function call, lowercase, without its schema.
fn function_name(e: &Expr) -> Option<String> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?;
    Some(name.value.to_ascii_lowercase())
}

/// Whether `expr` computes one value per row: no aggregate, window or set-returning call
/// (also not in a subquery within it, to be safe).
fn per_row(expr: &Expr, aggregates: &HashSet<String>) -> bool {
    visit_expressions(expr, |e: &Expr| {
        let windowed = matches!(e, Expr::Function(f) if f.over.is_some());
        let grouping = function_name(e).is_some_and(|name| {
            aggregates.contains(&name) || SET_RETURNING.contains(&name.as_str())
        });
        if windowed || grouping {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_continue()
}

/// Rewrites `query`, a scalar subquery, into an aggregating one if it is a plain
/// `SELECT e FROM ... [WHERE ...]` of one value per row; whether it did.
fn aggregate(query: &mut Query, aggregates: &HashSet<String>) -> bool {
    let limited = query.limit_clause.is_some() || query.fetch.is_some();
    if query.with.is_some() || limited || !query.locks.is_empty() {
        return false;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    let ungrouped =
        matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    let plain = select.distinct.is_none()
        && select.top.is_none()
        && select.into.is_none()
        && select.having.is_none()
        && select.qualify.is_none()
        && select.named_window.is_empty()
        && !select.from.is_empty()
        && select.projection.len() == 1;
    if !ungrouped || !plain {
        return false;
    }
    let value = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return false,
    };
    if !per_row(value, aggregates) {
        return false;
    }
    let text = format!(
        "CASE WHEN count(*) > 1 THEN {TOO_MANY_ROWS_FUNCTION}(count(*)) ELSE first_value({value}) END"
    );
    let Some(one_value) = parse_expr(&text) else {
        return false;
    };
    select.projection = vec![SelectItem::UnnamedExpr(one_value)];
    // Without a limit the order of the rows cannot change the value.
    query.order_by = None;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregates() -> HashSet<String> {
        ["count", "max", "first_value"]
            .map(String::from)
            .into_iter()
            .collect()
    }

    #[test]
    fn select_items_that_are_subqueries_are_parenthesized() {
        let sql = "SELECT s.name, (SELECT count(*) FROM weir_catalog.views v WHERE v.source = s.name) AS n \
                   FROM weir_catalog.sources s";
        assert_eq!(
            rewrite_scalar_subqueries(sql, &aggregates()),
            "SELECT s.name, ((SELECT count(*) FROM weir_catalog.views v WHERE v.source = s.name)) AS n \
             FROM weir_catalog.sources s"
        );
    }

    #[test]
    fn subqueries_that_do_not_aggregate_are_aggregated() {
        let sql = "SELECT f.u, 1 + (SELECT p.n FROM per_user p WHERE p.u = f.u ORDER BY 1) FROM failures f";
        assert_eq!(
            rewrite_scalar_subqueries(sql, &aggregates()),
            "SELECT f.u, 1 + (SELECT CASE WHEN count(*) > 1 THEN weir_subquery_rows(count(*)) \
             ELSE first_value(p.n) END FROM per_user p WHERE p.u = f.u) FROM failures f"
        );
    }

    #[test]
    fn outer_columns_equal_to_inner_ones_are_replaced_and_outer_conditions_move_out() {
        let sql = "SELECT a.attname, (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t \
                   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS coll, \
                   (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND a.atthasdef), \
                   (SELECT count(*) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND a.atthasdef) \
                   FROM pg_catalog.pg_attribute a";
        assert_eq!(
            rewrite_scalar_subqueries(sql, &aggregates()),
            "SELECT a.attname, ((SELECT CASE WHEN count(*) > 1 THEN weir_subquery_rows(count(*)) \
             ELSE first_value(c.collname) END FROM pg_catalog.pg_collation c, pg_catalog.pg_type t \
             WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND c.oid <> t.typcollation)) AS coll, \
             CASE WHEN (a.atthasdef) THEN (SELECT CASE WHEN count(*) > 1 THEN weir_subquery_rows(count(*)) \
             ELSE first_value(d.adbin) END FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) END, \
             ((SELECT count(*) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND a.atthasdef)) \
             FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn fields_of_records_that_are_not_columns_use_get_field() {
        let sql = "SELECT (f(k)).n AS s, (r.keys).x, r.keys FROM r";
        assert_eq!(
            rewrite_scalar_subqueries(sql, &aggregates()),
            "SELECT get_field((f(k)), 'n') AS s, get_field((r.keys), 'x'), r.keys FROM r"
        );
    }

    #[test]
    fn limited_grouped_and_set_returning_subqueries_stay() {
        for sql in [
            "SELECT 1 + (SELECT n FROM t WHERE t.a = o.a LIMIT 1) FROM o",
            "SELECT 1 + (SELECT max(n) FROM t WHERE t.a = o.a) FROM o",
            "SELECT 1 + (SELECT n FROM t WHERE t.a = o.a GROUP BY n) FROM o",
            "SELECT 1 + (SELECT unnest(n) FROM t WHERE t.a = o.a) FROM o",
            "SELECT n FROM t WHERE n = (SELECT m FROM u)",
            "SELECT 1",
        ] {
            assert!(
                matches!(
                    rewrite_scalar_subqueries(sql, &aggregates()),
                    Cow::Borrowed(_)
                ),
                "{sql}"
            );
        }
    }
}
