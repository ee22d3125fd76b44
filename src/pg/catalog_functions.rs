//! Functions SQLAlchemy's inspector calls in its `pg_catalog` queries that neither DataFusion
//! nor datafusion-pg-catalog 0.19 provide: `weir_subscripts(array, dim)` (what
//! `catalog_sql` turns `generate_subscripts` into), `pg_get_indexdef(...)`, which is
//! NULL (Weir's relations have no indexes, so there is no definition to print), and
//! `pg_type_is_visible(oid)`, true: every type Weir has is a built-in of `pg_catalog`.
//! Also `weir_subquery_rows(n)`, which fails (as PostgreSQL does) when a scalar subquery
//! rewritten by `subqueries.rs` has more than one row.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Builder, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use super::catalog_sql::SUBSCRIPTS_FUNCTION;
use super::subqueries::{TOO_MANY_ROWS, TOO_MANY_ROWS_FUNCTION};

/// Registers the functions into `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Subscripts::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(NullText::new("pg_get_indexdef")));
    ctx.register_udf(ScalarUDF::new_from_impl(TypeIsVisible {
        signature: Signature::any(1, Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(TooManyRows {
        signature: Signature::any(1, Volatility::Volatile),
    }));
}

/// `weir_subquery_rows(n)`: fails for any row it is evaluated on (a subquery's `CASE` calls
/// it only when the subquery has more than one row).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TooManyRows {
    signature: Signature,
}

impl ScalarUDFImpl for TooManyRows {
    fn name(&self) -> &str {
        TOO_MANY_ROWS_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Null)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.number_rows == 0 {
            return Ok(ColumnarValue::Scalar(ScalarValue::Null));
        }
        exec_err!("{TOO_MANY_ROWS}")
    }
}

/// `pg_type_is_visible(oid)`: true (NULL for a NULL oid).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TypeIsVisible {
    signature: Signature,
}

impl ScalarUDFImpl for TypeIsVisible {
    fn name(&self) -> &str {
        "pg_type_is_visible"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let ColumnarValue::Scalar(oid) = &args.args[0] {
            let visible = (!oid.is_null()).then_some(true);
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(visible)));
        }
        let oids = ColumnarValue::values_to_arrays(&args.args)?;
        let visible: BooleanArray = (0..oids[0].len())
            .map(|i| oids[0].is_valid(i).then_some(true))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(visible)))
    }
}

fn item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int32, true))
}

/// `weir_subscripts(array, dim)`: the subscripts `1..=len` of a one-dimensional array.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Subscripts {
    signature: Signature,
}

impl Subscripts {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Subscripts {
    fn name(&self) -> &str {
        SUBSCRIPTS_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(lists) = arrays[0].as_list_opt::<i32>() else {
            return exec_err!(
                "generate_subscripts needs an array, not {}",
                arrays[0].data_type()
            );
        };
        let mut out = ListBuilder::new(Int32Builder::new()).with_field(item());
        for row in 0..lists.len() {
            if lists.is_null(row) {
                out.append_null();
                continue;
            }
            let len = lists.value_length(row);
            out.values().append_slice(&(1..=len).collect::<Vec<i32>>());
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// A function of any arguments whose value is always a text NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullText {
    name: &'static str,
    signature: Signature,
}

impl NullText {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for NullText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}
