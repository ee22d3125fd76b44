//! The server: open the engine, run the pipeline file, serve Postgres wire and HTTP.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::engine::{Engine, EngineConfig, EngineError, Origin, Outcome};
use crate::metrics::{serve_http, Metrics};
use crate::pg::{
    engine_error_info, serve_pg, split_statements, tls_acceptor, Accounts, WeirHandlers,
};
use crate::plan::parse_statement;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {error} (pick another with --pg-addr / --http-addr)")]
    Bind {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read pipeline file {path}: {error}")]
    PipelineFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("pipeline statement {index} failed: {message}\n  statement: {sql}")]
    Pipeline {
        index: usize,
        sql: String,
        message: String,
    },
    #[error(transparent)]
    Tls(#[from] crate::pg::TlsError),
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServerError::Bind { addr, error })
}

/// Runs every statement of a SQL script, in order; stops at the first error.
pub async fn run_script(engine: &Engine, sql: &str) -> Result<(), ServerError> {
    let statements = split_statements(sql);
    for (i, stmt_sql) in statements.iter().enumerate() {
        let fail = |message: String| ServerError::Pipeline {
            index: i + 1,
            sql: stmt_sql.to_string(),
            message,
        };
        match parse_statement(stmt_sql) {
            Ok(Some(stmt)) => match engine.execute(stmt, stmt_sql, Origin::PipelineFile).await {
                Ok(Outcome::Done(tag)) => {
                    tracing::info!("pipeline [{}/{}] {tag}", i + 1, statements.len())
                }
                Ok(Outcome::Skipped(_, notice)) => {
                    tracing::info!("pipeline [{}/{}] {notice}", i + 1, statements.len())
                }
                Ok(Outcome::Query(_)) => {}
                Err(e) => return Err(fail(engine_error_info(&e).message)),
            },
            Ok(None) => {
                let df = engine
                    .context()
                    .sql(stmt_sql)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                df.collect().await.map_err(|e| fail(e.to_string()))?;
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Ok(())
}

/// Runs the server until `shutdown` resolves, then stops the pipelines after a final commit.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new());
    let tls = match &config.tls {
        Some(files) => Some(tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let pg_listener = bind(config.pg_addr).await?;
    let http_listener = bind(config.http_addr).await?;
    let engine = Engine::open(
        EngineConfig {
            data_dir: config.data_dir.clone(),
            epoch: config.epoch,
            max_epoch: config.max_epoch,
            state_cache_bytes: config.state_cache_bytes,
            decode_threads: config.decode_threads,
            ingest_nice: config.ingest_nice,
            logs: config.logs,
            llm: config.llm.clone(),
        },
        metrics.clone(),
    )
    .await?;
    if let Some(path) = &config.pipeline {
        let sql = std::fs::read_to_string(path).map_err(|error| ServerError::PipelineFile {
            path: path.clone(),
            error,
        })?;
        if let Err(e) = run_script(&engine, &sql).await {
            engine.shutdown().await;
            return Err(e);
        }
    }
    let pg_addr = pg_listener
        .local_addr()
        .map_err(|error| ServerError::Bind {
            addr: config.pg_addr,
            error,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|error| ServerError::Bind {
            addr: config.http_addr,
            error,
        })?;
    let accounts = Accounts::new(config.password.as_ref().map(|p| p.expose()), &config.users);
    let handlers = Arc::new(
        WeirHandlers::with_accounts(engine.clone(), accounts)
            .with_query_memory(config.query_memory_bytes),
    );
    let pg_task = tokio::spawn(serve_pg(pg_listener, handlers, tls));
    let http_task = tokio::spawn(serve_http(http_listener, metrics, engine.board()));
    tracing::info!(%pg_addr, %http_addr, data_dir = %config.data_dir.display(), "weir is ready");
    println!(
        "weir ready: postgres on {pg_addr} (psql -h {} -p {}), http on http://{http_addr}",
        pg_addr.ip(),
        pg_addr.port()
    );
    shutdown.await;
    tracing::info!("shutting down: committing pipelines");
    pg_task.abort();
    http_task.abort();
    engine.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
