//! The extended query protocol (prepared statements: pgJDBC, psycopg, tokio-postgres):
//! Weir DDL is recognised at Parse and executed at Execute; everything else is DataFusion's.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::errors::engine_error_info;
use super::handler::WeirQueries;
use super::rewrite::rewrite_for;
use super::text::{extra_float_digits, postgres_text};
use crate::engine::{Origin, Outcome, SHOW_SOURCES_SQL, SHOW_VIEWS_SQL};
use crate::plan::{parse_statement, WeirStatement};

/// The statement type shared with `datafusion-postgres`: SQL text and, for DataFusion
/// statements, the parsed statement and plan. Weir DDL has no plan.
pub type PgStatement = (String, Option<(Statement, LogicalPlan)>);

/// Recognises Weir DDL; hands everything else to DataFusion's parser.
pub struct WeirParser {
    pub(super) inner: Arc<datafusion_postgres::Parser>,
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
                let sql = rewrite_for(client, sql);
                self.inner.parse_sql(client, &sql, types).await
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

#[async_trait]
impl ExtendedQueryHandler for WeirQueries {
    type Statement = PgStatement;
    type QueryParser = WeirParser;

    fn query_parser(&self) -> Arc<WeirParser> {
        self.parser.clone()
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
        let (sql, parsed) = &portal.statement.statement;
        if parsed.is_none() {
            if let Ok(Some(stmt)) = parse_statement(sql) {
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
        ExtendedQueryHandler::do_query(self.df.as_ref(), client, portal, max_rows)
            .await
            .map(|r| postgres_text(r, digits))
    }
}
