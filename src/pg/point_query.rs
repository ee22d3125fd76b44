//! The point-query fast path: `SELECT cols FROM view WHERE key = literal [AND ...]` answered by
//! one point read of the view, without DataFusion parsing, planning and optimizing the text.
//!
//! Dashboards and services ask a view for one key over and over. Through DataFusion each such
//! query costs ~0.4 ms of CPU, nearly all of it planning; the read itself is one multi-get. So
//! a query of exactly this shape is answered here (like Materialize's "fast path peeks"):
//! - one view, no alias, no join; the select list is `*` or plain columns with optional aliases;
//! - WHERE is a conjunction of `column = literal`, naming each group key column of the view
//!   exactly once and nothing else; literals are strings for text keys, integers (negative
//!   ones too) for integer keys and `true`/`false` for boolean keys, or parameters (`$1`) of a
//!   prepared statement, bound to such values.
//!
//! Anything else, or anything this module is unsure of, returns None and goes the normal way.
//! The shape is checked by rebuilding the statement from the accepted parts and comparing it
//! with the parsed statement as printed, so a clause this module does not know about (ORDER
//! BY, LIMIT, DISTINCT, a lock, a new sqlparser clause) always sends the query to DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Scalar};
use datafusion::arrow::compute::{and, filter_record_batch, kernels::cmp::eq};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue, TableReference};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectNamePart, SelectItem, SetExpr, Statement, TableFactor,
    UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;

use crate::catalog::ViewTable;

/// What a point query asks, before the view is looked up.
#[derive(Debug, PartialEq)]
pub(crate) struct PointShape {
    view: String,
    /// `None` for `*`; else each item's column and output name.
    columns: Option<Vec<(String, String)>>,
    /// Each `column = literal` of the WHERE clause.
    equalities: Vec<(String, Literal)>,
}

#[derive(Debug, PartialEq)]
enum Literal {
    Text(String),
    Integer(String),
    Boolean(bool),
    /// A parameter of a prepared statement: its index from 0 (`$1` is 0).
    Param(usize),
}

/// An identifier as DataFusion names it: unquoted ones fold to lower case.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// Whether `sql` may be a point query: most queries that are not stop at this cheap test.
fn may_be_point_query(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("select"))
        && !sql.contains('(')
}

/// The point-query shape of `sql`, if it has exactly that shape.
pub(crate) fn shape(sql: &str) -> Option<PointShape> {
    if !may_be_point_query(sql) {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    shape_of(&statements.pop()?)
}

/// The point-query shape of a parsed statement, if it has exactly that shape.
fn shape_of(statement: &Statement) -> Option<PointShape> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name, alias: None, ..
    } = &from.relation
    else {
        return None;
    };
    let view = match name.0.as_slice() {
        [ObjectNamePart::Identifier(view)] => normalized(view),
        _ => return None,
    };
    let selection = select.selection.as_ref()?;
    // Rebuilt from the parts read here: equal only when nothing else was in the statement.
    let items: Vec<String> = select.projection.iter().map(ToString::to_string).collect();
    let rebuilt = format!(
        "SELECT {} FROM {} WHERE {}",
        items.join(", "),
        from,
        selection
    );
    if rebuilt != statement.to_string() {
        return None;
    }
    let columns = match select.projection.as_slice() {
        [SelectItem::Wildcard(_)] => None,
        items => Some(
            items
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(Expr::Identifier(c)) => {
                        Some((normalized(c), normalized(c)))
                    }
                    SelectItem::ExprWithAlias {
                        expr: Expr::Identifier(c),
                        alias,
                    } => Some((normalized(c), normalized(alias))),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    let mut equalities = Vec::new();
    conjuncts(selection, &mut equalities)?;
    Some(PointShape {
        view,
        columns,
        equalities,
    })
}

/// Appends each `column = literal` of an AND tree; None at anything else.
fn conjuncts(expr: &Expr, out: &mut Vec<(String, Literal)>) -> Option<()> {
    let Expr::BinaryOp { left, op, right } = expr else {
        return None;
    };
    match op {
        BinaryOperator::And => {
            conjuncts(left, out)?;
            conjuncts(right, out)
        }
        BinaryOperator::Eq => {
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(c), value) | (value, Expr::Identifier(c)) => (c, value),
                _ => return None,
            };
            out.push((normalized(column), literal(value)?));
            Some(())
        }
        _ => None,
    }
}

/// A string, a whole number (a negative one is the parser's minus applied to a number), a
/// boolean, or a parameter; None for anything else.
fn literal(expr: &Expr) -> Option<Literal> {
    let integer = |n: &str| n.bytes().all(|b| b.is_ascii_digit()).then(|| n.to_string());
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(Literal::Text(s.clone())),
            Value::Number(n, false) => integer(n).map(Literal::Integer),
            Value::Boolean(b) => Some(Literal::Boolean(*b)),
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                Some(Literal::Param(n.checked_sub(1)?))
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) => integer(n).map(|n| Literal::Integer(format!("-{n}"))),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The literal as a value of a key column of type `data_type`, when it is exactly one;
/// `params` are the values bound to a prepared statement's parameters (a string for a text
/// key, an integer in range for an integer key, a boolean for a boolean key; NULL and
/// anything else go to DataFusion).
fn key_value(
    literal: &Literal,
    data_type: &DataType,
    params: &[ScalarValue],
) -> Option<ScalarValue> {
    match literal {
        Literal::Text(s) => text_key(s, data_type),
        Literal::Integer(n) => integer_key(n.parse().ok()?, data_type),
        Literal::Boolean(b) => boolean_key(*b, data_type),
        Literal::Param(i) => match params.get(*i)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => text_key(s, data_type),
            ScalarValue::Int8(Some(v)) => integer_key(i64::from(*v), data_type),
            ScalarValue::Int16(Some(v)) => integer_key(i64::from(*v), data_type),
            ScalarValue::Int32(Some(v)) => integer_key(i64::from(*v), data_type),
            ScalarValue::Int64(Some(v)) => integer_key(*v, data_type),
            ScalarValue::Boolean(Some(b)) => boolean_key(*b, data_type),
            _ => None,
        },
    }
}

/// `s` as a value of a text key column of type `data_type`.
fn text_key(s: &str, data_type: &DataType) -> Option<ScalarValue> {
    match data_type {
        DataType::Utf8 => Some(ScalarValue::Utf8(Some(s.to_string()))),
        DataType::LargeUtf8 => Some(ScalarValue::LargeUtf8(Some(s.to_string()))),
        DataType::Utf8View => Some(ScalarValue::Utf8View(Some(s.to_string()))),
        _ => None,
    }
}

/// `n` as a value of an integer key column of type `data_type`, when it is in range.
fn integer_key(n: i64, data_type: &DataType) -> Option<ScalarValue> {
    match data_type {
        DataType::Int64 => Some(ScalarValue::Int64(Some(n))),
        DataType::Int32 => i32::try_from(n).ok().map(|v| ScalarValue::Int32(Some(v))),
        DataType::Int16 => i16::try_from(n).ok().map(|v| ScalarValue::Int16(Some(v))),
        _ => None,
    }
}

/// `b` as a value of a boolean key column.
fn boolean_key(b: bool, data_type: &DataType) -> Option<ScalarValue> {
    (*data_type == DataType::Boolean).then_some(ScalarValue::Boolean(Some(b)))
}

/// The answer to `sql` by a point read, when `sql` is a point query over a view of `ctx`;
/// None sends it the normal way (including every error: DataFusion words them).
pub async fn answer(ctx: &SessionContext, sql: &str) -> Option<Result<RecordBatch>> {
    answer_with(ctx, sql, None, || None).await
}

/// [`answer`] for a prepared statement, parsed at Parse (`parsed`, the statement `sql` was
/// parsed into, spares parsing it again at each execution): `params` gives the values bound to
/// its parameters (called once, only when the statement is a point query that has parameters).
pub async fn answer_with(
    ctx: &SessionContext,
    sql: &str,
    parsed: Option<&Statement>,
    params: impl FnOnce() -> Option<Vec<ScalarValue>>,
) -> Option<Result<RecordBatch>> {
    let shape = match parsed {
        Some(statement) if may_be_point_query(sql) => shape_of(statement)?,
        Some(_) => return None,
        None => shape(sql)?,
    };
    let bound = if shape
        .equalities
        .iter()
        .any(|(_, l)| matches!(l, Literal::Param(_)))
    {
        params()?
    } else {
        Vec::new()
    };
    let provider = ctx
        .table_provider(TableReference::bare(shape.view.as_str()))
        .await
        .ok()?;
    let view = provider.downcast_ref::<ViewTable>()?;
    let schema = provider.schema();
    let mut equalities = Vec::with_capacity(shape.equalities.len());
    for (column, literal) in &shape.equalities {
        let c = view.key_column(column)?;
        if equalities.iter().any(|(seen, _)| *seen == c) {
            return None;
        }
        equalities.push((c, key_value(literal, schema.field(c).data_type(), &bound)?));
    }
    let fixed: Vec<usize> = equalities.iter().map(|(c, _)| *c).collect();
    if !view.keys_covered_by(&fixed) {
        return None;
    }
    let projection = match &shape.columns {
        None => (0..schema.fields().len())
            .map(|i| (i, schema.field(i).name().clone()))
            .collect(),
        Some(columns) => columns
            .iter()
            .map(|(c, name)| Some((schema.index_of(c).ok()?, name.clone())))
            .collect::<Option<Vec<_>>>()?,
    };
    let read = match view.read_points(&equalities) {
        Ok(Some(batch)) => batch,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    Some(matching(read, &equalities).and_then(|rows| project(rows, &projection)))
}

/// `batch` as a query response in text format, as datafusion-postgres encodes one.
pub(crate) fn response<C: ClientInfo + ?Sized>(
    client: &C,
    batch: RecordBatch,
) -> PgWireResult<Response> {
    response_in(client, batch, &Format::UnifiedText)
}

/// `batch` as a query response in the result formats a portal asked for (text or binary).
pub(crate) fn response_in<C: ClientInfo + ?Sized>(
    client: &C,
    batch: RecordBatch,
    format: &Format,
) -> PgWireResult<Response> {
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(
        batch.schema().as_ref(),
        format,
        Some(options),
    )?);
    let rows = encode_recordbatch(fields.clone(), batch);
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

/// The rows of `batch` where every equality holds (a point read is exact, but a key value
/// that does not encode falls back to a wider read).
fn matching(batch: RecordBatch, equalities: &[(usize, ScalarValue)]) -> Result<RecordBatch> {
    let mut keep: Option<BooleanArray> = None;
    for (c, value) in equalities {
        let wanted: ArrayRef = value.to_array()?;
        let here = eq(batch.column(*c), &Scalar::new(wanted))?;
        keep = Some(match keep {
            Some(k) => and(&k, &here)?,
            None => here,
        });
    }
    match keep {
        Some(k) if k.true_count() < batch.num_rows() || k.null_count() > 0 => {
            Ok(filter_record_batch(&batch, &k)?)
        }
        _ => Ok(batch),
    }
}

/// The selected columns of `batch`, named as the query names them.
fn project(batch: RecordBatch, projection: &[(usize, String)]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let fields: Vec<Field> = projection
        .iter()
        .map(|(i, name)| schema.field(*i).clone().with_name(name))
        .collect();
    let columns = projection
        .iter()
        .map(|(i, _)| batch.column(*i).clone())
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Literal {
        Literal::Text(s.into())
    }

    #[test]
    fn point_queries_are_recognised() {
        let s = shape("SELECT n, total AS t FROM q WHERE k = 'a'").unwrap();
        assert_eq!(s.view, "q");
        assert_eq!(
            s.columns,
            Some(vec![("n".into(), "n".into()), ("total".into(), "t".into())])
        );
        assert_eq!(s.equalities, vec![("k".into(), text("a"))]);
        let s = shape("select * from Q where 'x' = K and \"Id\" = 7").unwrap();
        assert_eq!((s.view.as_str(), s.columns), ("q", None));
        assert_eq!(
            s.equalities,
            vec![
                ("k".into(), text("x")),
                ("Id".into(), Literal::Integer("7".into()))
            ]
        );
        assert!(shape("  SELECT n FROM q WHERE k = 'it''s'").is_some());
        let s = shape("SELECT n FROM q WHERE k = $1 AND id = $2").unwrap();
        assert_eq!(
            s.equalities,
            vec![
                ("k".into(), Literal::Param(0)),
                ("id".into(), Literal::Param(1))
            ]
        );
        let s = shape("SELECT n FROM q WHERE id = -7 AND -8 = other").unwrap();
        assert_eq!(
            s.equalities,
            vec![
                ("id".into(), Literal::Integer("-7".into())),
                ("other".into(), Literal::Integer("-8".into()))
            ]
        );
        let s = shape("SELECT n FROM q WHERE ok = false").unwrap();
        assert_eq!(s.equalities, vec![("ok".into(), Literal::Boolean(false))]);
        assert_eq!(shape("SELECT n FROM q WHERE k = $0"), None);
        assert_eq!(shape("SELECT n FROM q WHERE id = - -7"), None);
        assert_eq!(shape("SELECT n FROM q WHERE id = -'7'"), None);
        assert_eq!(shape("SELECT n FROM q WHERE id = -1.5"), None);
        assert_eq!(shape("SELECT n FROM q WHERE id = other"), None);
        assert_eq!(shape("SELECT n FROM q WHERE k = $$a$$"), None);
    }

    #[test]
    fn bound_parameters_must_be_of_the_key_type() {
        let p = Literal::Param(0);
        let text = [ScalarValue::Utf8(Some("a".into()))];
        assert_eq!(
            key_value(&p, &DataType::Utf8, &text),
            Some(ScalarValue::Utf8(Some("a".into())))
        );
        assert_eq!(key_value(&p, &DataType::Int64, &text), None);
        assert_eq!(
            key_value(&Literal::Param(1), &DataType::Utf8, &text),
            None,
            "unbound"
        );
        assert_eq!(
            key_value(&p, &DataType::Int16, &[ScalarValue::Int64(Some(7))]),
            Some(ScalarValue::Int16(Some(7)))
        );
        assert_eq!(
            key_value(&p, &DataType::Int16, &[ScalarValue::Int64(Some(1 << 20))]),
            None
        );
        assert_eq!(
            key_value(&p, &DataType::Utf8, &[ScalarValue::Utf8(None)]),
            None
        );
        assert_eq!(
            key_value(&p, &DataType::Int64, &[ScalarValue::Float64(Some(1.0))]),
            None
        );
    }

    #[test]
    fn anything_else_goes_to_datafusion() {
        for sql in [
            "SELECT n FROM q",
            "SELECT n FROM q WHERE k = 'a' ORDER BY n",
            "SELECT n FROM q WHERE k = 'a' LIMIT 1",
            "SELECT DISTINCT n FROM q WHERE k = 'a'",
            "SELECT n FROM q WHERE k = 'a' OR k = 'b'",
            "SELECT n FROM q WHERE k IN ('a', 'b')",
            "SELECT n FROM q WHERE k > 'a'",
            "SELECT n FROM q WHERE k = 1.5",
            "SELECT n FROM q WHERE k = E'a'",
            "SELECT count(n) FROM q WHERE k = 'a'",
            "SELECT n + 1 FROM q WHERE k = 'a'",
            "SELECT q.n FROM q WHERE k = 'a'",
            "SELECT n FROM q AS x WHERE k = 'a'",
            "SELECT n FROM public.q WHERE k = 'a'",
            "SELECT n FROM q, r WHERE k = 'a'",
            "SELECT n FROM q JOIN r ON true WHERE k = 'a'",
            "SELECT n FROM q WHERE k = 'a' GROUP BY n",
            "SELECT n FROM q WHERE k = 'a' FOR UPDATE",
            "SELECT n FROM q WHERE k = 'a'; SELECT 1",
            "WITH x AS (SELECT 1) SELECT n FROM q WHERE k = 'a'",
            "EXPLAIN SELECT n FROM q WHERE k = 'a'",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
    }

    #[test]
    fn literals_must_be_exactly_of_the_key_type() {
        assert_eq!(
            key_value(&text("a"), &DataType::Utf8, &[]),
            Some(ScalarValue::Utf8(Some("a".into())))
        );
        assert_eq!(key_value(&text("1"), &DataType::Int64, &[]), None);
        assert_eq!(
            key_value(&Literal::Boolean(true), &DataType::Boolean, &[]),
            Some(ScalarValue::Boolean(Some(true)))
        );
        assert_eq!(
            key_value(&Literal::Boolean(true), &DataType::Utf8, &[]),
            None
        );
        assert_eq!(key_value(&text("true"), &DataType::Boolean, &[]), None);
        assert_eq!(
            key_value(
                &Literal::Param(0),
                &DataType::Boolean,
                &[ScalarValue::Boolean(Some(false))]
            ),
            Some(ScalarValue::Boolean(Some(false)))
        );
        assert_eq!(
            key_value(&Literal::Integer("-3".into()), &DataType::Int32, &[]),
            Some(ScalarValue::Int32(Some(-3)))
        );
        assert_eq!(
            key_value(
                &Literal::Integer("99999999999".into()),
                &DataType::Int32,
                &[]
            ),
            None
        );
        assert_eq!(
            key_value(&Literal::Integer("1".into()), &DataType::Utf8, &[]),
            None
        );
        assert_eq!(
            key_value(&Literal::Integer("1".into()), &DataType::Float64, &[]),
            None
        );
    }
}
