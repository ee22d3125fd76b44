//! Functions SQLAlchemy's inspector calls in its `pg_catalog` queries that neither DataFusion
//! nor datafusion-pg-catalog 0.19 provide: `weir_subscripts(array, dim)` (what
//! `catalog_sql` turns `generate_subscripts` into), `pg_get_indexdef(...)`, which is
//! NULL (Weir's relations have no indexes, so there is no definition to print),
//! `obj_description(...)` and `col_description(...)`, NULL (they have no comments; psql's
//! `\dt+`, `\dv+`, `\dm+` ask), and
//! `pg_type_is_visible(oid)`, true: every type Weir has is a built-in of `pg_catalog`.
//! `information_schema._pg_expandarray(array)` (pgJDBC's `getPrimaryKeys`) is the record
//! `(x, n)` of an array's element and its subscript. PostgreSQL's returns one row per
//! element; Weir's is a scalar function, exact for arrays of at most one element (NULL for
//! none, where PostgreSQL has no row: the client's query filters on `x`), and refusing longer
//! ones with SQLSTATE 0A000. Weir's relations have no keys, so `pg_index` has no arrays.
//! Also `weir_subquery_rows(n)`, which fails (as PostgreSQL does) when a scalar subquery
//! rewritten by `subqueries.rs` has more than one row.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int32Builder, ListBuilder,
    StructArray, UInt32Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, not_impl_err, plan_err, Result, ScalarValue};
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
    ctx.register_udf(ScalarUDF::new_from_impl(NullText::new("obj_description")));
    ctx.register_udf(ScalarUDF::new_from_impl(NullText::new("col_description")));
    ctx.register_udf(ScalarUDF::new_from_impl(TypeIsVisible {
        signature: Signature::any(1, Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(TooManyRows {
        signature: Signature::any(1, Volatility::Volatile),
    }));
}

/// `_pg_expandarray(array)`: see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn fields(element: &DataType) -> Fields {
        Fields::from(vec![
            Field::new("x", element.clone(), true),
            Field::new("n", DataType::Int32, true),
        ])
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::List(item) => Ok(DataType::Struct(Self::fields(item.data_type()))),
            DataType::Null => Ok(DataType::Struct(Self::fields(&DataType::Null))),
            other => plan_err!("_pg_expandarray needs an array, not {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let DataType::Struct(fields) = args.return_field.data_type() else {
            return exec_err!("_pg_expandarray returns a record");
        };
        let Some(lists) = arrays[0].as_list_opt::<i32>() else {
            let nulls = NullBuffer::new_null(arrays[0].len());
            let columns = fields
                .iter()
                .map(|f| new_null_array(f.data_type(), arrays[0].len()))
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                Some(nulls),
            )?)));
        };
        let mut firsts = Vec::with_capacity(lists.len());
        for row in 0..lists.len() {
            let len = if lists.is_null(row) {
                0
            } else {
                lists.value_length(row)
            };
            if len > 1 {
                return not_impl_err!(
                    "_pg_expandarray of an array of more than one element ({len})"
                );
            }
            firsts.push((len == 1).then(|| lists.value_offsets()[row] as u32));
        }
        let x = take(
            lists.values().as_ref(),
            &UInt32Array::from(firsts.clone()),
            None,
        )?;
        let n: Int32Array = firsts.iter().map(|f| f.map(|_| 1)).collect();
        let valid = NullBuffer::from(firsts.iter().map(Option::is_some).collect::<Vec<_>>());
        let record = StructArray::try_new(fields.clone(), vec![x, Arc::new(n)], Some(valid))?;
        Ok(ColumnarValue::Array(Arc::new(record)))
    }
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
