//! The engine: owns the store, the catalog, the running pipelines and the query context,
//! and executes Weir's DDL against them.

mod context;
mod ddl;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;

pub use context::new_session_context;

use crate::catalog::{CatalogEntry, CatalogError, SourceDef, StatusBoard, ViewDef};
use crate::metrics::Metrics;
use crate::operator::CacheBudget;
use crate::pipeline::{PipelineError, Runner, RunnerConfig};
use crate::plan::{PlanError, WeirStatement};
use crate::source::SourceError;
use crate::state::{LogLimits, StateError, Store, Table};

/// Errors of the engine, as the Postgres edge sees them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// What `SHOW SOURCES` answers.
pub const SHOW_SOURCES_SQL: &str =
    "SELECT name, connector, status, events, bad_records, watermark FROM weir_catalog.sources ORDER BY name";
/// What `SHOW MATERIALIZED VIEWS` answers.
pub const SHOW_VIEWS_SQL: &str =
    "SELECT name, source, status, watermark, rows FROM weir_catalog.views ORDER BY name";

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub epoch: Duration,
    /// Memory for the cached group states of all views.
    pub state_cache_bytes: usize,
    /// How many dead letters and late rows to keep, and for how long.
    pub logs: LogLimits,
}

/// Who sent a statement: a client, or the `--pipeline` file (where re-creating an identical
/// object is a no-op, so running the same file at every start is harmless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    PipelineFile,
}

/// What a statement did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; the command tag.
    Done(&'static str),
    /// Nothing to do; the command tag and a notice saying why.
    Skipped(&'static str, String),
    /// Answer with the rows of this query.
    Query(String),
}

/// Definitions and pipelines, changed only under the engine's lock.
#[derive(Default)]
struct Catalog {
    sources: BTreeMap<String, Arc<SourceDef>>,
    views: BTreeMap<String, Arc<ViewDef>>,
    runners: HashMap<String, Runner>,
    next_seq: u64,
}

/// The running server's core.
pub struct Engine {
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    ctx: Arc<SessionContext>,
    catalog: tokio::sync::Mutex<Catalog>,
    runner_config: RunnerConfig,
}

impl Engine {
    /// Opens the store in `config.data_dir`, re-creates the stored sources and views and
    /// resumes their pipelines.
    pub async fn open(
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, EngineError> {
        let store = Arc::new(Store::open(&config.data_dir)?);
        let board = Arc::new(StatusBoard::default());
        let ctx = Arc::new(new_session_context(board.clone(), store.clone())?);
        let engine = Arc::new(Self {
            store,
            board,
            metrics,
            ctx,
            catalog: tokio::sync::Mutex::new(Catalog::default()),
            runner_config: RunnerConfig {
                epoch: config.epoch,
                cache: Arc::new(CacheBudget::new(config.state_cache_bytes)),
                logs: config.logs,
            },
        });
        engine.restore().await?;
        Ok(engine)
    }

    /// The DataFusion context queries run in (views, system tables, pg_catalog, functions).
    pub fn context(&self) -> Arc<SessionContext> {
        self.ctx.clone()
    }

    /// The state store (benchmarks wait on its background work).
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    pub fn board(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Re-creates the catalog from the store, in creation order, then starts the pipelines.
    async fn restore(&self) -> Result<(), EngineError> {
        let mut entries: Vec<CatalogEntry> = self
            .store
            .scan_prefix(Table::Catalog, b"")?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v))
            .collect::<Result<_, _>>()
            .map_err(|e| StateError::Corrupt {
                table: "catalog",
                reason: e.to_string(),
            })?;
        entries.sort_by_key(|e| e.seq);
        let mut catalog = self.catalog.lock().await;
        for entry in entries {
            catalog.next_seq = catalog.next_seq.max(entry.seq + 1);
            let stmt = crate::plan::parse_statement(&entry.sql)?;
            match stmt {
                Some(WeirStatement::CreateSource(decl)) => {
                    self.add_source(&mut catalog, decl, entry.sql.clone())?;
                }
                Some(WeirStatement::CreateView(decl)) => {
                    self.add_view(&mut catalog, decl, entry.sql.clone()).await?;
                }
                _ => {
                    return Err(StateError::Corrupt {
                        table: "catalog",
                        reason: format!("not a definition: {}", entry.sql),
                    }
                    .into())
                }
            }
        }
        let sources: Vec<String> = catalog.sources.keys().cloned().collect();
        for source in sources {
            self.restart_pipeline(&mut catalog, &source).await?;
        }
        Ok(())
    }

    /// Executes one Weir statement; `sql` is its text, stored for definitions.
    pub async fn execute(
        &self,
        stmt: WeirStatement,
        sql: &str,
        origin: Origin,
    ) -> Result<Outcome, EngineError> {
        let mut catalog = self.catalog.lock().await;
        match stmt {
            WeirStatement::CreateSource(decl) => {
                self.create_source(&mut catalog, decl, sql, origin).await
            }
            WeirStatement::CreateView(decl) => {
                self.create_view(&mut catalog, decl, sql, origin).await
            }
            WeirStatement::DropSource { name, if_exists } => {
                self.drop_source(&mut catalog, &name, if_exists).await
            }
            WeirStatement::DropView { name, if_exists } => {
                self.drop_view(&mut catalog, &name, if_exists).await
            }
            WeirStatement::ShowSources => Ok(Outcome::Query(SHOW_SOURCES_SQL.into())),
            WeirStatement::ShowViews => Ok(Outcome::Query(SHOW_VIEWS_SQL.into())),
        }
    }

    /// Stops every pipeline after a final commit.
    pub async fn shutdown(&self) {
        let mut catalog = self.catalog.lock().await;
        let runners: Vec<Runner> = catalog.runners.drain().map(|(_, r)| r).collect();
        let _ =
            tokio::task::spawn_blocking(move || runners.into_iter().for_each(Runner::stop)).await;
    }

    /// Stops the source's pipeline (committing) and starts it again with its current views.
    async fn restart_pipeline(
        &self,
        catalog: &mut Catalog,
        source: &str,
    ) -> Result<(), EngineError> {
        if let Some(runner) = catalog.runners.remove(source) {
            tokio::task::spawn_blocking(move || runner.stop())
                .await
                .map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "pipeline did not stop: {e}"
                    ))
                })?;
        }
        let Some(def) = catalog.sources.get(source).cloned() else {
            return Ok(());
        };
        let views: Vec<Arc<ViewDef>> = catalog
            .views
            .values()
            .filter(|v| v.source == source)
            .cloned()
            .collect();
        if views.is_empty() {
            self.board.update_source(source, |s| {
                s.connector = def.spec.connector().into();
                s.status = "idle".into();
            });
            return Ok(());
        }
        let runner = Runner::start(
            def,
            views,
            self.store.clone(),
            self.board.clone(),
            self.metrics.clone(),
            self.runner_config.clone(),
        )?;
        catalog.runners.insert(source.to_string(), runner);
        Ok(())
    }
}
