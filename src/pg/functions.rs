//! Postgres system functions clients call at connect that neither DataFusion nor
//! datafusion-pg-catalog 0.19 provide (or provide with DataFusion's identity):
//! `version()`, `current_setting(name [, missing_ok])` and `pg_advisory_unlock_all()`.
//!
//! `current_setting` answers the server-wide values of [`super::settings`]: a scalar
//! function sees the shared context, not the connection, so a connection's own `SET`
//! shows in `SHOW`, not here. Clients call it for fixed values (Grafana:
//! `current_setting('server_version_num')`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

use super::settings;

/// Registers the functions into `ctx`, replacing DataFusion's `version()`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(constant_udf("version", Some(settings::version_string())));
    // Weir takes no advisory locks; releasing them all is a no-op returning void (NULL).
    ctx.register_udf(constant_udf("pg_advisory_unlock_all", None));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new()));
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
