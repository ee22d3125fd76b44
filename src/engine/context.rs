//! The DataFusion session that client queries run in.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;

use crate::catalog::{
    correct_pg_catalog, register_system_tables, OneSnapshotPerQuery, PgInformationSchema,
    StatusBoard, INFORMATION_SCHEMA,
};
use crate::state::Store;

/// The database (DataFusion catalog) clients see: `current_database()`, `pg_database`, psql's
/// `\l`, `information_schema.*.table_catalog`.
pub const DATABASE: &str = "weir";

/// A context with Weir's functions, pg_catalog, information_schema and the system tables;
/// every query in it reads all views at one snapshot.
pub fn new_session_context(
    board: Arc<StatusBoard>,
    store: Arc<Store>,
) -> Result<SessionContext, DataFusionError> {
    let config = SessionConfig::new()
        // Weir's own `information_schema` (Postgres type names) replaces DataFusion's.
        .with_information_schema(false)
        .with_default_catalog_and_schema(DATABASE, "public");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(OneSnapshotPerQuery))
        .build();
    let ctx = SessionContext::new_with_state(state);
    weir_udfs::register(&ctx);
    super::bounded::register(&ctx);
    setup_pg_catalog(&ctx, DATABASE, Arc::new(AuthManager::default())).map_err(|e| *e)?;
    correct_pg_catalog(&ctx, DATABASE)?;
    let catalogs = ctx.state().catalog_list().clone();
    ctx.catalog(DATABASE)
        .ok_or_else(|| DataFusionError::Internal("default catalog missing".into()))?
        .register_schema(
            INFORMATION_SCHEMA,
            Arc::new(PgInformationSchema::new(catalogs)),
        )?;
    register_system_tables(&ctx, board, store)?;
    Ok(ctx)
}

/// A context of one Postgres connection: the engine's catalogs, functions and settings, with a
/// memory pool of `memory_limit` bytes of its own. A connection runs one query at a time, so
/// this is a per-query limit: a query that needs more (a large sort, join or aggregate over
/// many rows) fails with `ResourcesExhausted` naming its largest consumers, and the other
/// connections' queries and the pipelines are not starved. SET on one connection no longer
/// changes the DataFusion options of the others.
pub fn connection_context(
    base: &SessionContext,
    memory_limit: usize,
) -> Result<SessionContext, DataFusionError> {
    let pool = TrackConsumersPool::new(
        GreedyMemoryPool::new(memory_limit),
        NonZeroUsize::new(3).expect("3 is not 0"),
    );
    let runtime = RuntimeEnvBuilder::from_runtime_env(&base.runtime_env())
        .with_memory_pool(Arc::new(pool))
        .build_arc()?;
    let state = SessionStateBuilder::new_from_existing(base.state())
        .with_runtime_env(runtime)
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// A bare context with Weir's functions, for planning views.
pub fn planning_context() -> SessionContext {
    let ctx = SessionContext::new();
    weir_udfs::register(&ctx);
    super::bounded::register(&ctx);
    ctx
}
