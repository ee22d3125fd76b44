//! The engine: owns the store, the catalog, the running pipelines and the query context,
//! and executes Weir's DDL against them.

mod bounded;
mod context;
mod ddl;
mod restore;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;

pub use context::{connection_context, new_session_context, DATABASE};

use crate::catalog::{CatalogError, SourceDef, StatusBoard, ViewDef};
use crate::metrics::Metrics;
use crate::operator::CacheBudget;
use crate::pipeline::{PipelineError, Runner, RunnerConfig};
use crate::plan::{PlanError, WeirStatement};
use crate::source::{check_source, SourceError};
use crate::state::{LogLimits, StateError, Store};

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
    /// How long an epoch may grow while the input is backlogged.
    pub max_epoch: Duration,
    /// Memory for the cached group states of all views.
    pub state_cache_bytes: usize,
    /// Threads decoding each source's input (1: on its reader's thread).
    pub decode_threads: usize,
    /// Nice steps the pipeline threads run below the query threads.
    pub ingest_nice: i32,
    /// How many dead letters and late rows to keep, and for how long.
    pub logs: LogLimits,
    /// Where `llm_analyze` sends prompts (`None`: off).
    pub llm: Option<crate::config::LlmConfig>,
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
    /// Stored definitions that could not be re-created at start (shown failed, droppable).
    broken: BTreeMap<String, restore::Broken>,
    /// Sources whose input could not be opened at start, and why: no pipeline runs for them
    /// until it opens.
    unopened: HashMap<String, String>,
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

impl Drop for Engine {
    /// Breaks the reference cycles of the query context: its `pg_catalog` and
    /// `information_schema` hold its catalog list, which holds them, so every table (and the
    /// store they read) outlived the engine, and a store could not be opened again in the
    /// same process.
    fn drop(&mut self) {
        let catalogs = self.ctx.state().catalog_list().clone();
        for name in catalogs.catalog_names() {
            let Some(catalog) = catalogs.catalog(&name) else {
                continue;
            };
            for schema in catalog.schema_names() {
                let _ = catalog.deregister_schema(&schema, true);
            }
        }
    }
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
        let llm = crate::llm::Llm::start(config.llm, store.clone(), metrics.clone());
        let engine = Arc::new(Self {
            store,
            board,
            metrics,
            ctx,
            catalog: tokio::sync::Mutex::new(Catalog::default()),
            runner_config: RunnerConfig {
                epoch: config.epoch,
                max_epoch: config.max_epoch,
                cache: Arc::new(CacheBudget::new(config.state_cache_bytes)),
                decode_threads: config.decode_threads,
                ingest_nice: config.ingest_nice,
                logs: config.logs,
                llm: llm.clone(),
            },
        });
        engine.restore().await?;
        let resumed = llm.resume()?;
        if resumed > 0 {
            tracing::info!(
                requests = resumed,
                "llm_analyze: asking again for pending records"
            );
        }
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
    /// A pipeline that cannot start shows its source and views `failed` with the reason; the
    /// error is for the caller only when `Err` comes from stopping.
    async fn restart_pipeline(
        &self,
        catalog: &mut Catalog,
        source: &str,
    ) -> Result<(), EngineError> {
        if let Err(e) = self.try_restart_pipeline(catalog, source).await? {
            self.fail_source(catalog, source, &e.to_string());
        }
        Ok(())
    }

    /// Like [`Self::restart_pipeline`], but a pipeline that cannot start is left to the
    /// caller: the inner result is the start's.
    async fn try_restart_pipeline(
        &self,
        catalog: &mut Catalog,
        source: &str,
    ) -> Result<Result<(), EngineError>, EngineError> {
        if let Some(runner) = catalog.runners.remove(source) {
            tokio::task::spawn_blocking(move || runner.stop())
                .await
                .map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "pipeline did not stop: {e}"
                    ))
                })?;
        }
        Ok(self.start_pipeline(catalog, source))
    }

    /// Starts the source's pipeline with its current views (none: the source is idle).
    fn start_pipeline(&self, catalog: &mut Catalog, source: &str) -> Result<(), EngineError> {
        let Some(def) = catalog.sources.get(source).cloned() else {
            return Ok(());
        };
        if catalog.unopened.contains_key(source) {
            // It could not be opened at start; it may open now (a directory restored).
            check_source(&def.spec, def.schema.clone())?;
            catalog.unopened.remove(source);
        }
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
                s.error = None;
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
