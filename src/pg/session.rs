//! Session statements clients send at connect and when a pool hands a connection back:
//! `SHOW`, `SET`, `RESET [ALL]`, `DISCARD ALL`, `DEALLOCATE [ALL]`,
//! `SAVEPOINT`/`RELEASE`/`ROLLBACK TO` and `UNLISTEN`, answered per connection from
//! [`super::settings`] and [`super::prepared`].
//!
//! Hand-written because datafusion-postgres 0.19's `SetShowHook` knows six settings, answers
//! `SHOW server_version` with DataFusion's name, reports `read uncommitted` isolation, rejects
//! `RESET` and `DISCARD`, and applies `SET TIME ZONE` to the one context all connections
//! share; its `TransactionStatementHook` ends the transaction on `ROLLBACK TO SAVEPOINT`.
//! This hook runs before theirs (see `handler.rs`) and leaves `datafusion.*` settings,
//! cursors and `BEGIN`/`COMMIT`/`ROLLBACK` to them.
//!
//! A connection's `TimeZone` is recorded and reported, not applied: Weir's timestamps carry
//! no zone, and DataFusion's zone is a setting of the shared context.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    DiscardObject, Expr, Ident, ObjectName, Reset, ResetStatement, Set, Statement,
};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::prepared;
use super::settings::{self, Setting};

/// What this hook does with a statement; `None` leaves it to the next hook.
enum Action {
    Show(Vec<&'static Setting>),
    Set(&'static Setting, Option<String>),
    ResetAll,
    DiscardAll,
    /// `DEALLOCATE name`, or `DEALLOCATE ALL` (`None`).
    Deallocate(Option<String>),
    /// Accepted inside a transaction block (reads only: nothing to undo); the tag.
    InTransaction(&'static str, &'static str),
    Unlisten,
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

fn unknown_setting(name: &str) -> PgWireError {
    error(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// `name` as written (`time zone`, `DateStyle`, `datafusion.execution.batch_size`).
fn object_name(name: &ObjectName) -> String {
    name.to_string()
}

/// A `SET` value as Postgres stores it: strings unquoted, lists joined with `, `.
fn set_value(values: &[Expr]) -> Option<String> {
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => v
                .value
                .clone()
                .into_string()
                .unwrap_or_else(|| v.value.to_string()),
            Expr::Identifier(Ident { value, .. }) => value.clone(),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [one] if one.eq_ignore_ascii_case("default") => None,
        _ => Some(parts.join(", ")),
    }
}

/// The settings `name` refers to in `SHOW`; `None` for names this hook leaves alone.
fn show_target(variable: &[Ident]) -> Option<PgWireResult<Vec<&'static Setting>>> {
    let name = variable
        .iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if name.eq_ignore_ascii_case("all") {
        return Some(Ok(settings::all().iter().collect()));
    }
    if name.contains('.') {
        return None; // datafusion.* and extension settings
    }
    match settings::lookup(&name) {
        Some(s) => Some(Ok(vec![s])),
        None if name.eq_ignore_ascii_case("transaction isolation level") => {
            Some(Ok(vec![settings::lookup("transaction_isolation")?]))
        }
        None => None,
    }
}

/// Classifies `statement`; errors are Postgres errors for the client.
fn action(statement: &Statement) -> Option<PgWireResult<Action>> {
    let found = match statement {
        // `SHOW` and nothing after it; datafusion-postgres's own hook indexes the first name
        // and panicked the connection (fuzz_wire, case seed 882).
        Statement::ShowVariable { variable } if variable.is_empty() => Err(error(
            "42601",
            "SHOW needs the name of a setting, e.g. SHOW TimeZone, or SHOW ALL".into(),
        )),
        Statement::ShowVariable { variable } => {
            return Some(show_target(variable)?.map(Action::Show))
        }
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = object_name(variable);
            let setting = settings::lookup(&name)?;
            Ok(Action::Set(setting, set_value(values)))
        }
        Statement::Set(Set::SetTimeZone { value, .. }) => Ok(Action::Set(
            settings::lookup("TimeZone")?,
            set_value(std::slice::from_ref(value)),
        )),
        Statement::Reset(ResetStatement { reset }) => match reset {
            Reset::ALL => Ok(Action::ResetAll),
            Reset::ConfigurationParameter(name) => {
                let name = object_name(name);
                match settings::lookup(&name) {
                    Some(setting) => Ok(Action::Set(setting, None)),
                    None if name.contains('.') => return None,
                    None => Err(unknown_setting(&name)),
                }
            }
        },
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => Ok(Action::DiscardAll),
        Statement::Deallocate { name, .. } => Ok(Action::Deallocate(
            (name.quote_style.is_some() || !name.value.eq_ignore_ascii_case("all"))
                .then(|| name.value.clone()),
        )),
        Statement::Savepoint { .. } => Ok(Action::InTransaction("SAVEPOINT", "SAVEPOINT")),
        Statement::ReleaseSavepoint { .. } => {
            Ok(Action::InTransaction("RELEASE", "RELEASE SAVEPOINT"))
        }
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Ok(Action::InTransaction("ROLLBACK", "ROLLBACK TO SAVEPOINT")),
        Statement::UNLISTEN { .. } => Ok(Action::Unlisten),
        _ => return None,
    };
    Some(found)
}

/// The rows of `SHOW`: one column named after the setting, or name and setting for `ALL`.
fn show_response(client: &dyn HookClient, shown: &[&Setting]) -> PgWireResult<Response> {
    let text = |name: &str| FieldInfo::new(name.into(), None, None, Type::TEXT, FieldFormat::Text);
    let fields = Arc::new(match shown {
        [one] => vec![text(one.name)],
        _ => vec![text("name"), text("setting")],
    });
    let mut rows = Vec::with_capacity(shown.len());
    for setting in shown {
        let mut encoder = DataRowEncoder::new(fields.clone());
        if shown.len() > 1 {
            encoder.encode_field(&setting.name)?;
        }
        encoder.encode_field(&settings::session_value(client.metadata(), setting))?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

/// Sends the current value of a reported setting, as Postgres does after it changes.
async fn report(client: &mut dyn HookClient, setting: &Setting) -> PgWireResult<()> {
    if !setting.reported {
        return Ok(());
    }
    let value = settings::session_value(client.metadata(), setting);
    client
        .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            setting.name.to_string(),
            value,
        )))
        .await
}

/// Refuses values Weir cannot honour.
fn check_value(setting: &Setting, value: &str) -> PgWireResult<()> {
    if setting.read_only {
        return Err(error(
            "55P02",
            format!("parameter \"{}\" cannot be changed", setting.name),
        ));
    }
    let utf8 = ["utf8", "utf-8", "unicode"];
    if setting.name == "client_encoding" && !utf8.contains(&value.to_ascii_lowercase().as_str()) {
        return Err(error(
            "0A000",
            format!("client_encoding \"{value}\" is not supported: Weir speaks UTF8 only"),
        ));
    }
    Ok(())
}

async fn set(
    client: &mut dyn HookClient,
    setting: &'static Setting,
    value: Option<String>,
) -> PgWireResult<Response> {
    let metadata = client.metadata_mut();
    match value {
        Some(value) => {
            check_value(setting, &value)?;
            if setting.name == "statement_timeout" {
                set_statement_timeout(metadata, &value)?;
                return Ok(Response::Execution(Tag::new("SET")));
            }
            metadata.insert(settings::key(setting), value);
        }
        None if setting.read_only => check_value(setting, "")?,
        None => settings::reset(metadata, setting),
    }
    report(client, setting).await?;
    Ok(Response::Execution(Tag::new("SET")))
}

/// `statement_timeout` in the form datafusion-postgres enforces it (milliseconds).
fn set_statement_timeout(
    metadata: &mut std::collections::HashMap<String, String>,
    value: &str,
) -> PgWireResult<()> {
    let value = value.trim();
    let (number, unit_ms) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = value.strip_suffix("min") {
        (n, 60_000)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000)
    } else {
        (value, 1)
    };
    let ms = number.trim().parse::<u64>().map_err(|_| {
        error(
            "22023",
            format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
        )
    })? * unit_ms;
    if ms == 0 {
        metadata.remove("statement_timeout_ms");
    } else {
        metadata.insert("statement_timeout_ms".into(), ms.to_string());
    }
    Ok(())
}

async fn reset_all(client: &mut dyn HookClient) -> PgWireResult<()> {
    for setting in settings::all().iter().filter(|s| !s.read_only) {
        settings::reset(client.metadata_mut(), setting);
        report(client, setting).await?;
    }
    Ok(())
}

/// Drops every statement the connection prepared (`DEALLOCATE ALL`).
fn deallocate_all(client: &mut dyn HookClient) {
    for name in prepared::take_all(client.metadata_mut()) {
        client.portal_store().rm_statement(&name);
    }
}

async fn run(client: &mut dyn HookClient, action: Action) -> PgWireResult<Response> {
    let status = client.transaction_status();
    match action {
        Action::Show(shown) => show_response(client, &shown),
        Action::Set(setting, value) => set(client, setting, value).await,
        Action::ResetAll => {
            reset_all(client).await?;
            Ok(Response::Execution(Tag::new("RESET")))
        }
        Action::DiscardAll => {
            if status != TransactionStatus::Idle {
                return Err(error(
                    "25001",
                    "DISCARD ALL cannot run inside a transaction block".into(),
                ));
            }
            client.portal_store().clear_portals();
            deallocate_all(client);
            reset_all(client).await?;
            Ok(Response::Execution(Tag::new("DISCARD ALL")))
        }
        Action::Deallocate(None) => {
            deallocate_all(client);
            Ok(Response::Execution(Tag::new("DEALLOCATE ALL")))
        }
        Action::Deallocate(Some(name)) => {
            if client.portal_store().get_statement(&name).is_none() {
                return Err(error(
                    "26000",
                    format!("prepared statement \"{name}\" does not exist"),
                ));
            }
            client.portal_store().rm_statement(&name);
            prepared::forget(client.metadata_mut(), &name);
            Ok(Response::Execution(Tag::new("DEALLOCATE")))
        }
        Action::InTransaction(tag, what) => {
            if status == TransactionStatus::Idle {
                return Err(error(
                    "25P01",
                    format!("{what} can only be used in transaction blocks"),
                ));
            }
            Ok(Response::Execution(Tag::new(tag)))
        }
        Action::Unlisten => Ok(Response::Execution(Tag::new("UNLISTEN"))),
    }
}

/// The result columns of `action`, for the extended protocol's Describe.
fn plan_of(action: &Action) -> PgWireResult<LogicalPlan> {
    let fields = match action {
        Action::Show(shown) if shown.len() == 1 => {
            vec![Field::new(shown[0].name, DataType::Utf8, false)]
        }
        Action::Show(_) => vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
        ],
        _ => vec![],
    };
    let schema =
        DFSchema::try_from(Schema::new(fields)).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(schema),
    }))
}

/// In an aborted transaction only `ROLLBACK TO SAVEPOINT` is Weir's; the rest goes to
/// datafusion-postgres's transaction hook, which refuses it (25P02) as Postgres does.
fn allowed_in(status: TransactionStatus, statement: &Statement) -> bool {
    status != TransactionStatus::Error
        || matches!(
            statement,
            Statement::Rollback {
                savepoint: Some(_),
                ..
            }
        )
}

/// The hook: settings and session statements, per connection.
#[derive(Debug)]
pub struct SessionHook;

#[async_trait]
impl QueryHook for SessionHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !allowed_in(client.transaction_status(), statement) {
            return None;
        }
        Some(match action(statement)? {
            Ok(action) => run(client, action).await,
            Err(e) => Err(e),
        })
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Some(action(statement)?.and_then(|a| plan_of(&a)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.handle_simple_query(statement, ctx, client).await
    }
}
