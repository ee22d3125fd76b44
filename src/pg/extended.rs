//! The extended query protocol (prepared statements: pgJDBC, psycopg, tokio-postgres):
//! Weir DDL is recognised at Parse and executed at Execute; a point query on a view is
//! answered at Execute by one read with its parameters bound (`point_query.rs`); everything
//! else is DataFusion's.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, Type, DEFAULT_NAME};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Describe, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::PgWireBackendMessage;

use super::auth::may_run;
use super::catalog_sql::{rewrite_catalog_query, rewrite_parameterized_subqueries};
use super::errors::engine_error_info;
use super::guard::refusal;
use super::handler::WeirQueries;
use super::interrupt::{interruptible, Stops};
use super::point_query;
use super::prepared;
use super::rewrite::rewrite_for;
use super::subqueries::rewrite_scalar_subqueries;
use super::text::{extra_float_digits, postgres_text};
use crate::engine::{Origin, Outcome, SHOW_SOURCES_SQL, SHOW_VIEWS_SQL};
use crate::plan::{parse_statement, WeirStatement};

/// The statement type shared with `datafusion-postgres`: SQL text and, for DataFusion
/// statements, the parsed statement and plan. Weir DDL has no plan.
pub type PgStatement = (String, Option<(Statement, LogicalPlan)>);

/// Recognises Weir DDL; hands everything else to DataFusion's parser.
pub struct WeirParser {
    pub(super) inner: Arc<datafusion_postgres::Parser>,
    /// The names of the aggregate functions (for `subqueries.rs`).
    pub(super) aggregates: Arc<HashSet<String>>,
}

#[async_trait]
impl QueryParser for WeirParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        match parse_statement(sql) {
            Ok(Some(WeirStatement::ShowSources)) => {
                self.inner.parse_sql(client, SHOW_SOURCES_SQL, types).await
            }
            Ok(Some(WeirStatement::ShowViews)) => {
                self.inner.parse_sql(client, SHOW_VIEWS_SQL, types).await
            }
            Ok(Some(_)) => Ok(Some((sql.to_string(), None))),
            Ok(None) => {
                if let Some(refused) = refusal(sql) {
                    return Err(PgWireError::UserError(Box::new(refused)));
                }
                let sql = match rewrite_for(client, sql) {
                    Cow::Borrowed(sql) => rewrite_parameterized_subqueries(sql),
                    Cow::Owned(sql) => {
                        Cow::Owned(rewrite_parameterized_subqueries(&sql).into_owned())
                    }
                };
                let sent = rewrite_scalar_subqueries(&sql, &self.aggregates);
                match self.inner.parse_sql(client, &sent, types).await {
                    Err(e) => match rewrite_catalog_query(&sql) {
                        Cow::Owned(retry) => {
                            let retry = rewrite_scalar_subqueries(&retry, &self.aggregates);
                            self.inner
                                .parse_sql(client, &retry, types)
                                .await
                                .map_err(|_| e)
                        }
                        Cow::Borrowed(_) => Err(e),
                    },
                    parsed => parsed,
                }
            }
            Err(e) => Err(PgWireError::UserError(Box::new(engine_error_info(
                &e.into(),
            )))),
        }
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

/// The values bound to a portal's parameters, typed as DataFusion inferred them for the
/// statement (what datafusion-postgres does before it plans); None when they do not decode.
fn bound_parameters(portal: &Portal<PgStatement>, plan: &LogicalPlan) -> Option<Vec<ScalarValue>> {
    let types = plan.get_parameter_types().ok()?;
    let inferred: Vec<Option<DataType>> = (1..=portal.parameter_len())
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect();
    let inferred: Vec<Option<&DataType>> = inferred.iter().map(Option::as_ref).collect();
    match deserialize_parameters(portal, &inferred).ok()? {
        ParamValues::List(values) => Some(values.into_iter().map(|v| v.value).collect()),
        ParamValues::Map(_) => None,
    }
}

/// Why the format codes a Bind gave `portal` do not fit it, if they do not: a list of codes
/// must have one per parameter (or per result column), as Postgres checks at Bind. pgwire
/// 0.41.1 stores the list and indexes it per column unchecked, so a short list panicked the
/// connection's task at Describe or Execute (fuzz_wire, case seed 1486).
fn misfit_formats(portal: &Portal<PgStatement>) -> Option<PgWireError> {
    let misfit = |what: &str, codes: usize, wanted: usize, of: &str| {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "08P01".into(),
            format!("bind message has {codes} {what} formats but {wanted} {of}"),
        )))
    };
    if let Format::Individual(codes) = &portal.parameter_format {
        if codes.len() != portal.parameters.len() {
            let params = portal.parameters.len();
            return Some(misfit("parameter", codes.len(), params, "parameters"));
        }
    }
    if let (Format::Individual(codes), (_, Some((_, plan)))) =
        (&portal.result_column_format, &portal.statement.statement)
    {
        let columns = plan.schema().fields().len();
        if codes.len() != columns {
            return Some(misfit(
                "result",
                codes.len(),
                columns,
                "columns in the query",
            ));
        }
    }
    None
}

/// The misfit of the formats of the portal `name`, if it exists and has one.
fn portal_misfit<C>(client: &C, name: Option<&str>) -> Option<PgWireError>
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore<Statement = PgStatement>,
{
    match client
        .portal_store()
        .get_portal(name.unwrap_or(DEFAULT_NAME))
    {
        Some(Entry::Value(portal)) => misfit_formats(&portal),
        _ => None,
    }
}

/// The largest row limit of an Execute message taken as a limit (see `on_execute`).
const MAX_ROWS_LIMIT: i32 = 1_000_000;

#[async_trait]
impl ExtendedQueryHandler for WeirQueries {
    type Statement = PgStatement;
    type QueryParser = WeirParser;

    fn query_parser(&self) -> Arc<WeirParser> {
        self.parser.clone()
    }

    /// pgwire's Parse, remembering the statement's name for `DISCARD ALL`.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME).to_string();
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        prepared::remember(client.metadata_mut(), &name, &message.query);
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's Execute, with a row limit below zero read as "all rows", as Postgres reads it,
    /// and so is a limit above [`MAX_ROWS_LIMIT`]. pgwire 0.41.1 casts the limit to `usize`
    /// and reserves room for that many rows before fetching: `-1` panicked the connection's
    /// task ("capacity overflow"; found by `fuzz_wire`, case seed 523), and `i32::MAX` would
    /// ask for tens of gigabytes. A client asking for more than a million rows at a time
    /// gets them all in one go instead of a suspension after its count.
    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !(0..=MAX_ROWS_LIMIT).contains(&message.max_rows) {
            message.max_rows = 0;
        }
        if let Some(misfit) = portal_misfit(client, message.name.as_deref()) {
            return Err(misfit);
        }
        self._on_execute(client, message).await
    }

    /// pgwire's Describe, refusing a portal whose format codes do not fit it.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            if let Some(misfit) = portal_misfit(client, message.name.as_deref()) {
                return Err(misfit);
            }
        }
        self._on_describe(client, message).await
    }

    /// pgwire's Close, forgetting a closed statement's name.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                prepared::forget(client.metadata_mut(), name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Planned with the settings in force now, not those of its Parse.
        let replanned;
        let portal = match prepared::reads_settings(client.metadata(), &portal.statement.id) {
            Some(sql) => {
                let sql = sql.to_string();
                let types = &portal.statement.parameter_types;
                match self.parser.parse_sql(client, &sql, types).await? {
                    Some(statement) => {
                        let mut fresh = Portal::default();
                        fresh.name = portal.name.clone();
                        fresh.statement = Arc::new(StoredStatement::new(
                            portal.statement.id.clone(),
                            statement,
                            types.clone(),
                        ));
                        fresh.parameter_format = portal.parameter_format.clone();
                        fresh.parameters = portal.parameters.clone();
                        fresh.result_column_format = portal.result_column_format.clone();
                        fresh.state = portal.state.clone();
                        replanned = fresh;
                        &replanned
                    }
                    None => portal,
                }
            }
            None => portal,
        };
        let (sql, parsed) = &portal.statement.statement;
        if parsed.is_none() {
            if let Ok(Some(stmt)) = parse_statement(sql) {
                if let Err(refused) = may_run(client, &stmt) {
                    return Err(PgWireError::UserError(refused));
                }
                return match self.engine.execute(stmt, sql, Origin::Client).await {
                    Ok(Outcome::Done(tag)) | Ok(Outcome::Skipped(tag, _)) => {
                        Ok(Response::Execution(Tag::new(tag)))
                    }
                    Ok(Outcome::Query(_)) => Ok(Response::EmptyQuery),
                    Err(e) => Err(PgWireError::UserError(Box::new(engine_error_info(&e)))),
                };
            }
        }
        let digits = extra_float_digits(client);
        // A prepared point query on a view is one read, its parameters bound here; an
        // aborted transaction refuses everything but its end (the session hook words that).
        if let (sql, Some((parsed, plan))) = &portal.statement.statement {
            if !matches!(client.transaction_status(), TransactionStatus::Error) {
                let bound = || bound_parameters(portal, plan);
                if let Some(answer) =
                    point_query::answer_with(&self.engine.context(), sql, Some(parsed), bound).await
                {
                    return answer
                        .map_err(|e| PgWireError::ApiError(Box::new(e)))
                        .and_then(|batch| {
                            point_query::response_in(client, batch, &portal.result_column_format)
                        })
                        .map(|r| postgres_text(r, digits));
                }
            }
        }
        let stops = Stops::of(client);
        ExtendedQueryHandler::do_query(self.df.as_ref(), client, portal, max_rows)
            .await
            .map(|r| interruptible(postgres_text(r, digits), &stops))
    }
}
