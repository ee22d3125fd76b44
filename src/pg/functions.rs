//! Postgres system functions clients call at connect that neither DataFusion nor
//! datafusion-pg-catalog 0.19 provide (or provide with DataFusion's identity):
//! `version()`, `current_setting(name [, missing_ok])`, `pg_advisory_unlock_all()`,
//! `to_regtype(name)` (psycopg's `TypeInfo.fetch`, which SQLAlchemy's psycopg dialect runs
//! at connect), and `pg_table_size(oid)` with `pg_size_pretty(bytes)` (psql's `\dt+`, `\dv+`,
//! `\dm+`; a view's size is not measured, so it is NULL).
//!
//! `current_setting` answers the server-wide values of [`super::settings`]: a scalar
//! function sees the shared context, not the connection. A call with a literal name never
//! reaches it: `rewrite.rs` puts the connection's value in its place.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use pgwire::api::Type;

use super::settings;

/// Registers the functions into `ctx`, replacing DataFusion's `version()`.
pub fn register(ctx: &SessionContext) {
    register_pg_settings(ctx);
    ctx.register_udf(constant_udf("version", Some(settings::version_string())));
    // Weir takes no advisory locks; releasing them all is a no-op returning void (NULL).
    ctx.register_udf(constant_udf("pg_advisory_unlock_all", None));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new()));
    super::catalog_functions::register(ctx);
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(to_regtype),
    ));
    ctx.register_udf(create_udf(
        "pg_table_size",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
    ));
    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(pg_size_pretty),
    ));
}

/// A byte count as PostgreSQL's `pg_size_pretty` writes it: bytes below 10 kB, then the
/// largest unit that keeps the number below 10,240, rounded half away from zero.
fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    // One extra bit of precision, for rounding.
    let mut size = bytes >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < 2 * LIMIT - 1 {
            return format!("{} {unit}", (size + size.signum()) / 2);
        }
        size >>= 10;
    }
    format!("{} PB", (size + size.signum()) / 2)
}

fn pg_size_pretty(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let bytes = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let mut out = StringBuilder::with_capacity(bytes.len(), bytes.len() * 8);
    for b in bytes.iter() {
        out.append_option(b.map(size_pretty));
    }
    same_shape(args, Arc::new(out.finish()))
}

/// Names of built-in types as SQL writes them, beside their `pg_type.typname`.
const TYPE_ALIASES: &[(&str, &str)] = &[
    ("integer", "int4"),
    ("int", "int4"),
    ("bigint", "int8"),
    ("smallint", "int2"),
    ("real", "float4"),
    ("double precision", "float8"),
    ("boolean", "bool"),
    ("decimal", "numeric"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
    ("time without time zone", "time"),
];

/// The OID of built-in type `name` (`int8`, `bigint`, `pg_catalog.text`, `integer[]`).
fn type_oid(name: &str) -> Option<u32> {
    static BY_NAME: LazyLock<HashMap<String, u32>> = LazyLock::new(|| {
        (0..10_000)
            .filter_map(Type::from_oid)
            .map(|t| (t.name().to_string(), t.oid()))
            .collect()
    });
    let name = name.trim().to_ascii_lowercase().replace('"', "");
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let (base, array) = match name.strip_suffix("[]") {
        Some(base) => (base.trim(), true),
        None => (name, false),
    };
    let base = TYPE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == base)
        .map_or(base, |(_, typname)| typname);
    let typname = if array {
        format!("_{base}")
    } else {
        base.to_string()
    };
    BY_NAME.get(&typname).copied()
}

/// `to_regtype(name)`: the type's OID, NULL when there is no such type.
fn to_regtype(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let names = arrays[0].as_string::<i32>();
    let oids: Int32Array = (0..names.len())
        .map(|i| {
            (!names.is_null(i))
                .then(|| type_oid(names.value(i)))
                .flatten()
                .map(|oid| oid as i32)
        })
        .collect();
    same_shape(args, Arc::new(oids))
}

/// `array` as the result of a call on `args`: a scalar when the argument was one.
fn same_shape(args: &[ColumnarValue], array: ArrayRef) -> Result<ColumnarValue> {
    if matches!(args.first(), Some(ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?));
    }
    Ok(ColumnarValue::Array(array))
}

/// Puts Weir's `pg_settings` (see `settings::pg_settings`) into `pg_catalog`.
fn register_pg_settings(ctx: &SessionContext) {
    let schema = ctx
        .catalog(crate::engine::DATABASE)
        .and_then(|c| c.schema("pg_catalog"));
    let registered = match (schema, settings::pg_settings()) {
        (Some(schema), Ok(table)) => schema
            .register_table("pg_settings".into(), Arc::new(table))
            .map(|_| ()),
        (None, _) => Err(datafusion::error::DataFusionError::Internal(
            "pg_catalog is not set up".into(),
        )),
        (_, Err(e)) => Err(e),
    };
    if let Err(e) = registered {
        tracing::warn!(error = %e, "pg_settings keeps the library's rows");
    }
}

/// A function of no arguments with a fixed text result.
fn constant_udf(name: &str, value: Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value.clone())))),
    )
}

/// `current_setting(name)`, `current_setting(name, missing_ok)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

/// The value of setting `name`; `None` when unknown and `missing_ok`.
fn setting_value(name: &str, missing_ok: bool) -> Result<Option<String>> {
    match settings::lookup(name) {
        Some(setting) => Ok(Some(settings::default_value(setting))),
        None if missing_ok => Ok(None),
        None => exec_err!("unrecognized configuration parameter \"{name}\""),
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrays[0].as_string::<i32>();
        let missing_ok = arrays.get(1).map(|a| a.as_boolean());
        let mut out = StringBuilder::new();
        for row in 0..names.len() {
            if names.is_null(row) {
                out.append_null();
                continue;
            }
            let ok = missing_ok.is_some_and(|m| m.is_valid(row) && m.value(row));
            out.append_option(setting_value(names.value(row), ok)?);
        }
        let array: ArrayRef = Arc::new(out.finish());
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_resolve_to_builtin_oids() {
        assert_eq!(type_oid("int8"), Some(20));
        assert_eq!(type_oid("bigint"), Some(20));
        assert_eq!(type_oid("pg_catalog.text"), Some(25));
        assert_eq!(type_oid("double precision"), Some(701));
        assert_eq!(type_oid("integer[]"), Some(1007));
        assert_eq!(type_oid("hstore"), None);
    }

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10_239), "10239 bytes");
        assert_eq!(size_pretty(10_240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(-10_240), "-10 kB");
    }
}
