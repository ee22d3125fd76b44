//! Functions whose output size the caller sets with a number — `repeat`, `lpad`, `rpad`,
//! `array_repeat` and the scalar `range` / `generate_series` — wrapped so that a call that
//! would build more than [`MAX_OUTPUT_BYTES`] fails with SQLSTATE 53200 before it allocates.
//!
//! Without the bound one statement from any client, `SELECT repeat('x', 1000000000)`, took the
//! server to 4 GB of RSS (the value, its text encoding and the wire buffer each hold a copy),
//! and a few such statements at once would have it killed for memory. The query memory pool
//! (`--query-memory-mb`) does not see these: it accounts for sorts, joins and aggregates, not
//! for the arrays a scalar function returns. PostgreSQL refuses any value over 1 GB; Weir's
//! bound is lower because a value is copied several times on its way to the client.
//!
//! The size is estimated from the arguments: `repeat`: the string's bytes times the count;
//! `lpad`/`rpad`: the length in characters times 4 (the widest UTF-8 character);
//! `array_repeat`: the count times 8 bytes; `range`/`generate_series` over integers: the number
//! of elements times 8 bytes (over dates and timestamps they are not bounded). The estimate is
//! summed over the rows of one call, since the rows of a batch form one array.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// The most bytes one call of a bounded function may build (64 MiB).
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    /// `repeat(text, count)`.
    Repeat,
    /// `lpad(text, length [, fill])`, `rpad(...)`.
    Pad,
    /// `array_repeat(element, count)`.
    ArrayRepeat,
    /// `range(start, stop [, step])`, `generate_series(...)`.
    Series,
}

const BOUNDED: &[(&str, Measure)] = &[
    ("repeat", Measure::Repeat),
    ("lpad", Measure::Pad),
    ("rpad", Measure::Pad),
    ("array_repeat", Measure::ArrayRepeat),
    ("range", Measure::Series),
    ("generate_series", Measure::Series),
];

/// Replaces each function of [`BOUNDED`] in `ctx` with its bounded form.
pub fn register(ctx: &SessionContext) {
    for (name, measure) in BOUNDED {
        if let Some(inner) = ctx.state().scalar_functions().get(*name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                measure: *measure,
            }));
        }
    }
}

/// A function of DataFusion's that checks its output size before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    measure: Measure,
}

/// Argument `i` of a call as 64-bit integers, one per row (`None`: NULL, or not an integer).
fn integers(args: &[ColumnarValue], i: usize, rows: usize) -> Result<Vec<Option<i64>>> {
    let Some(arg) = args.get(i) else {
        return Ok(vec![None; rows]);
    };
    let array = arg.to_array(rows)?;
    if !array.data_type().is_integer() {
        return Ok(vec![None; rows]);
    }
    let array = cast(&array, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().iter().collect())
}

/// The bytes of argument `i` per row, if it is a string (a scalar is not expanded).
fn string_bytes(args: &[ColumnarValue], i: usize, rows: usize) -> Vec<u64> {
    match args.get(i) {
        Some(ColumnarValue::Scalar(s)) => {
            let len = match s {
                ScalarValue::Utf8(Some(v))
                | ScalarValue::LargeUtf8(Some(v))
                | ScalarValue::Utf8View(Some(v)) => v.len() as u64,
                _ => 0,
            };
            vec![len; rows]
        }
        Some(ColumnarValue::Array(a)) => match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().iter().map(str_len).collect(),
            DataType::LargeUtf8 => a.as_string::<i64>().iter().map(str_len).collect(),
            DataType::Utf8View => a.as_string_view().iter().map(str_len).collect(),
            _ => vec![0; rows],
        },
        None => vec![0; rows],
    }
}

fn str_len(s: Option<&str>) -> u64 {
    s.map_or(0, |s| s.len() as u64)
}

/// The sum of `per_row`, saturating at `u64::MAX`.
fn saturating_sum(per_row: impl Iterator<Item = u64>) -> u64 {
    per_row.fold(0, u64::saturating_add)
}

fn positive(n: Option<i64>) -> u64 {
    n.map_or(0, |n| n.max(0) as u64)
}

impl Bounded {
    /// The bytes a call with `args` over `rows` rows would build (saturating).
    fn output_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        Ok(match self.measure {
            Measure::Repeat => {
                let counts = integers(args, 1, rows)?;
                let bytes = string_bytes(args, 0, rows);
                saturating_sum(
                    counts
                        .iter()
                        .zip(bytes)
                        .map(|(n, b)| positive(*n).saturating_mul(b)),
                )
            }
            Measure::Pad => {
                let lengths = integers(args, 1, rows)?;
                saturating_sum(lengths.iter().map(|n| positive(*n).saturating_mul(4)))
            }
            Measure::ArrayRepeat => {
                let counts = integers(args, 1, rows)?;
                saturating_sum(counts.iter().map(|n| positive(*n).saturating_mul(8)))
            }
            Measure::Series => {
                let (starts, stops) = (integers(args, 0, rows)?, integers(args, 1, rows)?);
                let steps = integers(args, 2, rows)?;
                let one_arg = args.len() == 1;
                saturating_sum((0..rows).map(|i| {
                    // `range(stop)` counts from 0.
                    let (start, stop) = if one_arg {
                        (Some(0), starts[i])
                    } else {
                        (starts[i], stops[i])
                    };
                    let step = if args.len() > 2 { steps[i] } else { Some(1) };
                    match (start, stop, step) {
                        (Some(a), Some(b), Some(s)) if s != 0 => {
                            let span = (i128::from(b) - i128::from(a)) / i128::from(s);
                            u64::try_from(span.max(0)).unwrap_or(u64::MAX)
                        }
                        _ => 0,
                    }
                    .saturating_mul(8)
                }))
            }
        })
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args.args, args.number_rows)?;
        if bytes > MAX_OUTPUT_BYTES {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build about {bytes} bytes, over Weir's limit of {} MiB for one \
                 call; ask for a smaller result",
                self.inner.name(),
                MAX_OUTPUT_BYTES >> 20
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn query(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    fn bounded_context() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx);
        ctx
    }

    #[tokio::test]
    async fn calls_that_would_build_too_much_are_refused_before_they_run() {
        let ctx = bounded_context();
        for sql in [
            "SELECT repeat('x', 1000000000)",
            "SELECT repeat('ab', 40000000)",
            "SELECT lpad('x', 100000000)",
            "SELECT rpad('x', 100000000, 'é')",
            "SELECT array_repeat(1, 100000000)",
            "SELECT range(100000000)",
            "SELECT generate_series(1, 100000000)",
            "SELECT range(-100000000, 100000000, 2)",
            "SELECT repeat(s, 30000000) FROM (VALUES ('ab'), ('cd')) AS t(s)",
        ] {
            let err = query(&ctx, sql).await.expect_err(sql);
            assert!(
                matches!(err.find_root(), DataFusionError::ResourcesExhausted(m) if m.contains("Weir's limit")),
                "{sql}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn ordinary_calls_and_nulls_run_as_before() {
        let ctx = bounded_context();
        for sql in [
            "SELECT repeat('x', 1000)",
            "SELECT repeat('x', -5)",
            "SELECT repeat(NULL, 1000000000)",
            "SELECT repeat('x', NULL)",
            "SELECT lpad('x', 20), rpad('x', 20, '-')",
            "SELECT array_repeat('a', 3)",
            "SELECT range(10), generate_series(1, 10, 3), range(10, 1, -1)",
            "SELECT repeat(s, n) FROM (VALUES ('ab', 3), ('cd', 1000)) AS t(s, n)",
        ] {
            assert!(query(&ctx, sql).await.expect(sql) > 0, "{sql}");
        }
        let rows = ctx
            .sql("SELECT repeat('ab', 3) AS r")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            rows[0].column(0).as_string::<i32>().value(0),
            "ababab",
            "the wrapped function's result"
        );
    }
}
