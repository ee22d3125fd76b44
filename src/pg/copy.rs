//! `COPY (SELECT ...) TO STDOUT` (psql's `\copy (...) TO ...`, exports), in Postgres's text
//! or CSV format, with values printed as query results print them; `COPY` that would read
//! or write files on the server is refused.
//!
//! Hand-written because datafusion-postgres 0.19 hands `COPY` to DataFusion, whose `COPY`
//! only writes files (`TO STDOUT` is a syntax error there, and `TO '<path>'` would write on
//! the server).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopyOption, CopySource, CopyTarget, Statement};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, DataRowEncoder, FieldFormat,
    FieldInfo, Response,
};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;

use super::text::{extra_float_digits, row_values, TextFix};

fn error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// Text or CSV, from the statement's options.
#[derive(Clone, Copy)]
enum CopyFormat {
    Text,
    Csv,
}

fn copy_format(options: &[CopyOption]) -> PgWireResult<CopyFormat> {
    let mut format = CopyFormat::Text;
    for option in options {
        match option {
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => {
                format = CopyFormat::Text
            }
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv") => {
                format = CopyFormat::Csv
            }
            other => {
                return Err(error(
                    "0A000",
                    &format!("COPY option {other} is not supported (FORMAT text or csv are)"),
                ))
            }
        }
    }
    Ok(format)
}

/// One `CopyData` message per row: each row is encoded as a query result row, printed as
/// [`TextFix`] prints query results, then written in `format`.
fn copy_rows(
    stream: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
    format: CopyFormat,
    extra_float_digits: i8,
) -> impl futures::Stream<Item = PgWireResult<CopyData>> + Send {
    let fix = TextFix::new(&fields, extra_float_digits);
    // Every value reaches the COPY encoder as text, already formatted.
    let text_fields: Arc<Vec<FieldInfo>> = Arc::new(
        fields
            .iter()
            .map(|f| FieldInfo::new(f.name().into(), None, None, Type::TEXT, FieldFormat::Text))
            .collect(),
    );
    stream.flat_map(move |batch| {
        let rows: Vec<PgWireResult<CopyData>> = match batch {
            Err(e) => vec![Err(PgWireError::ApiError(Box::new(e)))],
            Ok(batch) => (0..batch.num_rows())
                .map(|row| {
                    let mut encoder = DataRowEncoder::new(fields.clone());
                    for (col, field) in batch.schema().fields().iter().enumerate() {
                        encode_value(&mut encoder, batch.column(col), row, field, &fields[col])?;
                    }
                    copy_line(&fix.apply(encoder.take_row()), &text_fields, format)
                })
                .collect(),
        };
        futures::stream::iter(rows)
    })
}

/// One row of text values in COPY's `format` (pgwire escapes and quotes).
fn copy_line(
    row: &DataRow,
    fields: &Arc<Vec<FieldInfo>>,
    format: CopyFormat,
) -> PgWireResult<CopyData> {
    let mut encoder = match format {
        CopyFormat::Text => CopyEncoder::new_text(fields.clone(), CopyTextOptions::default()),
        CopyFormat::Csv => CopyEncoder::new_csv(fields.clone(), CopyCsvOptions::default()),
    };
    let values = row_values(row).ok_or_else(|| error("XX000", "malformed result row"))?;
    for value in values {
        let text = value.map(|v| String::from_utf8_lossy(v).into_owned());
        encoder.encode_field(&text)?;
    }
    Ok(encoder.take_copy())
}

async fn copy_out(
    ctx: &SessionContext,
    query: &str,
    options: &[CopyOption],
    extra_float_digits: i8,
) -> PgWireResult<Response> {
    let format = copy_format(options)?;
    let api = |e| PgWireError::ApiError(Box::new(e));
    let frame = ctx.sql(query).await.map_err(api)?;
    let schema = frame.schema().as_arrow().clone();
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedText,
        None,
    )?);
    let stream = frame.execute_stream().await.map_err(api)?;
    let columns = fields.len();
    Ok(Response::CopyOut(CopyResponse::new(
        0,
        columns,
        copy_rows(stream, fields, format, extra_float_digits),
    )))
}

/// The hook: `COPY` statements, simple protocol.
#[derive(Debug)]
pub struct CopyHook;

#[async_trait]
impl QueryHook for CopyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            ..
        } = statement
        else {
            return None;
        };
        let digits = extra_float_digits(&*client);
        Some(match (source, to, target) {
            (CopySource::Query(query), true, CopyTarget::Stdout) => {
                copy_out(ctx, &query.to_string(), options, digits).await
            }
            (CopySource::Table { table_name, .. }, true, CopyTarget::Stdout) => {
                copy_out(
                    ctx,
                    &format!("SELECT * FROM {table_name}"),
                    options,
                    digits,
                )
                .await
            }
            (_, _, CopyTarget::File { .. } | CopyTarget::Program { .. }) => Err(error(
                "42501",
                "COPY to or from a file or program on the server is not allowed; use COPY ... TO STDOUT (psql: \\copy)",
            )),
            _ => Err(error(
                "0A000",
                "COPY FROM is not supported: Weir's data comes from sources",
            )),
        })
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
