//! Session handlers: route each statement to the engine or to DataFusion.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use super::auth::{may_run, Accounts, Login};
use super::catalog_sql::rewrite_catalog_query;
use super::copy::CopyHook;
use super::errors::{engine_error_info, refine};
use super::extended::WeirParser;
use super::guard::refusal;
use super::interrupt::{interruptible, Stops};
use super::point_query;
use super::rewrite::rewrite_for;
use super::session::SessionHook;
use super::settings;
use super::split::split_statements;
use super::subqueries::rewrite_scalar_subqueries;
use super::text::{extra_float_digits, postgres_text};
use crate::engine::{connection_context, Engine, Origin, Outcome};
use crate::plan::parse_statement;

/// Startup without authentication (when no password is set).
pub struct Startup {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }

    /// pgwire has announced its own `server_version` (16.6-pgwire); Weir's follows it, and
    /// clients keep the last value. The startup parameters become the connection's settings.
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        settings::remember_startup(client.metadata_mut());
        client
            .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                "server_version".into(),
                settings::server_version(),
            )))
            .await?;
        Ok(())
    }
}

/// Maps every error to its SQLSTATE before it is sent.
pub struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        refine(error);
        tracing::debug!(%error, "statement failed");
    }
}

/// Simple-protocol statements: Weir DDL to the engine, the rest to DataFusion.
pub struct WeirQueries {
    pub(super) engine: Arc<Engine>,
    pub(super) df: Arc<DfSessionService>,
    pub(super) parser: Arc<WeirParser>,
    /// The names of the aggregate functions (for `subqueries.rs`).
    pub(super) aggregates: Arc<HashSet<String>>,
}

/// The handlers of every connection.
pub struct WeirHandlers {
    engine: Arc<Engine>,
    hooks: Vec<Arc<dyn QueryHook>>,
    aggregates: Arc<HashSet<String>>,
    /// The memory each connection's queries may use (see `connection_context`).
    query_memory: usize,
    startup: Arc<Startup>,
    accounts: Option<Arc<Accounts>>,
    connections: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
}

impl WeirHandlers {
    /// Handlers that let every connection in.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_accounts(engine, None)
    }

    /// Handlers that let in connections that know their password (SCRAM-SHA-256), or every
    /// connection when `accounts` is None.
    pub fn with_accounts(engine: Arc<Engine>, accounts: Option<Accounts>) -> Self {
        super::functions::register(&engine.context());
        let aggregates: Arc<HashSet<String>> = Arc::new(
            engine
                .context()
                .state()
                .aggregate_functions()
                .keys()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
        );
        // Weir's session hook first: it answers settings per connection and savepoints,
        // and leaves the rest to datafusion-postgres's hooks (see `session.rs`).
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(SessionHook),
            Arc::new(CopyHook),
            Arc::new(TransactionStatementHook),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
        ];
        let connections = Arc::new(ConnectionManager::new());
        Self {
            engine,
            hooks,
            aggregates,
            query_memory: (crate::config::DEFAULT_QUERY_MEMORY_MB << 20) as usize,
            startup: Arc::new(Startup {
                connections: connections.clone(),
            }),
            accounts: accounts.map(Arc::new),
            cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
            connections,
        }
    }
}

impl WeirHandlers {
    /// Sets the memory each connection's queries may use.
    pub fn with_query_memory(mut self, bytes: usize) -> Self {
        self.query_memory = bytes;
        self
    }

    /// The query handlers of a new connection, over a DataFusion context of its own.
    fn connection_queries(&self) -> Arc<WeirQueries> {
        let base = self.engine.context();
        let ctx = match connection_context(&base, self.query_memory) {
            Ok(ctx) => Arc::new(ctx),
            Err(e) => {
                tracing::error!(error = %e, "connection context failed; using the shared one");
                base
            }
        };
        let df = Arc::new(DfSessionService::new_with_hooks(ctx, self.hooks.clone()));
        let parser = Arc::new(WeirParser {
            inner: ExtendedQueryHandler::query_parser(df.as_ref()),
            aggregates: self.aggregates.clone(),
        });
        Arc::new(WeirQueries {
            engine: self.engine.clone(),
            df,
            parser,
            aggregates: self.aggregates.clone(),
        })
    }
}

thread_local! {
    /// The query handlers `simple_query_handler` made for the connection being set up, for
    /// `extended_query_handler`: pgwire asks for both, one after the other on one thread,
    /// when a connection starts, and both protocols of a connection share one context.
    static NEW_CONNECTION: std::cell::RefCell<Option<Arc<WeirQueries>>> =
        const { std::cell::RefCell::new(None) };
}

impl PgWireServerHandlers for WeirHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        let queries = self.connection_queries();
        NEW_CONNECTION.with(|slot| *slot.borrow_mut() = Some(queries.clone()));
        queries
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        NEW_CONNECTION
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| self.connection_queries())
    }

    /// Called once per connection: a SCRAM login keeps its progress in its handler.
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(Login::new(
            &self.startup,
            self.accounts.as_ref(),
            &self.connections,
        ))
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Applies the transaction changes of `responses` to the client's status.
fn track_transaction<C: ClientInfo>(client: &mut C, responses: &[Response]) {
    for r in responses {
        let status = client.transaction_status();
        let next = match r {
            Response::TransactionStart(_) => status.to_in_transaction_state(),
            Response::TransactionEnd(_) => status.to_idle_state(),
            Response::Error(_) => status.to_error_state(),
            _ => status,
        };
        client.set_transaction_status(next);
    }
}

fn error_response(info: ErrorInfo) -> Response {
    Response::Error(Box::new(info))
}

#[async_trait]
impl SimpleQueryHandler for WeirQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let mut responses = Vec::new();
        let statements = split_statements(query);
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        for sql in statements {
            let stops = Stops::of(client);
            let result = match parse_statement(sql) {
                Ok(Some(stmt)) => match may_run(client, &stmt) {
                    Err(refused) => Err(PgWireError::UserError(refused)),
                    Ok(()) => match self.engine.execute(stmt, sql, Origin::Client).await {
                        Ok(Outcome::Done(tag)) => Ok(vec![Response::Execution(Tag::new(tag))]),
                        Ok(Outcome::Skipped(tag, notice)) => {
                            let info = ErrorInfo::new("NOTICE".into(), "00000".into(), notice);
                            client
                                .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                                    info,
                                )))
                                .await?;
                            Ok(vec![Response::Execution(Tag::new(tag))])
                        }
                        Ok(Outcome::Query(q)) => {
                            SimpleQueryHandler::do_query(self.df.as_ref(), client, &q).await
                        }
                        Err(e) => Err(PgWireError::UserError(Box::new(engine_error_info(&e)))),
                    },
                },
                Ok(None) => match refusal(sql) {
                    Some(refused) => Err(PgWireError::UserError(Box::new(refused))),
                    None => {
                        let sql = rewrite_for(client, sql);
                        // A point query on a view is one read; an aborted transaction
                        // refuses everything but its end (the session hook words that).
                        let fast = match client.transaction_status() {
                            TransactionStatus::Error => None,
                            _ => point_query::answer(&self.engine.context(), &sql).await,
                        };
                        if let Some(answer) = fast {
                            answer
                                .map_err(|e| PgWireError::ApiError(Box::new(e)))
                                .and_then(|batch| point_query::response(client, batch))
                                .map(|r| vec![r])
                        } else {
                            let sent = rewrite_scalar_subqueries(&sql, &self.aggregates);
                            match SimpleQueryHandler::do_query(self.df.as_ref(), client, &sent)
                                .await
                            {
                                Err(e) => match rewrite_catalog_query(&sql) {
                                    Cow::Owned(retry) => {
                                        let retry =
                                            rewrite_scalar_subqueries(&retry, &self.aggregates);
                                        SimpleQueryHandler::do_query(
                                            self.df.as_ref(),
                                            client,
                                            &retry,
                                        )
                                        .await
                                        .map_err(|_| e)
                                    }
                                    Cow::Borrowed(_) => Err(e),
                                },
                                done => done,
                            }
                        }
                    }
                },
                Err(e) => Err(PgWireError::UserError(Box::new(engine_error_info(
                    &e.into(),
                )))),
            };
            match result {
                Ok(r) => {
                    let digits = extra_float_digits(client);
                    let mut r: Vec<Response> = r
                        .into_iter()
                        .map(|r| interruptible(postgres_text(r, digits), &stops))
                        .collect();
                    // The next statement of this query sees the transaction this one began
                    // or ended (pgwire only records it after the whole query).
                    track_transaction(client, &r);
                    responses.append(&mut r)
                }
                Err(mut e) => {
                    // Postgres stops a multi-statement query at its first error.
                    refine(&mut e);
                    responses.push(error_response(ErrorInfo::from(e)));
                    break;
                }
            }
        }
        self.engine
            .metrics()
            .query_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(responses)
    }
}

/// Accepts Postgres connections on `listener` forever, with TLS for clients that ask for it
/// when `tls` is set.
pub async fn serve_pg(
    listener: TcpListener,
    handlers: Arc<WeirHandlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let handlers = handlers.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}
