//! `weir demo`: the security pipeline on the built-in generator, with a psql walkthrough.

use crate::config::DemoArgs;
use crate::server::{self, shutdown_signal, ServerError};

/// The demo pipeline, built into the binary so the demo runs from any directory.
pub const DEMO_PIPELINE: &str = include_str!("../examples/security_pipeline.sql");

/// Writes the pipeline next to the demo's data and runs the server on it.
pub async fn run(args: DemoArgs) -> Result<(), ServerError> {
    let mut server = args.server.clone();
    if server.data_dir.is_none() {
        server.data_dir = Some("weir-demo-data".into());
    }
    let config = server.resolve().map_err(|e| ServerError::Pipeline {
        index: 0,
        sql: String::new(),
        message: e.to_string(),
    })?;
    std::fs::create_dir_all(&config.data_dir).map_err(|error| ServerError::PipelineFile {
        path: config.data_dir.clone(),
        error,
    })?;
    let pipeline = config.data_dir.join("security_pipeline.sql");
    std::fs::write(&pipeline, DEMO_PIPELINE).map_err(|error| ServerError::PipelineFile {
        path: pipeline.clone(),
        error,
    })?;
    let mut config = config;
    config.pipeline = Some(pipeline);
    let (host, port) = (config.pg_addr.ip(), config.pg_addr.port());
    println!("Weir demo: a generator writes 100 security events/s into source auth_events;");
    println!("three materialized views aggregate them. Connect and look:");
    println!();
    println!("  psql -h {host} -p {port} -c 'SHOW MATERIALIZED VIEWS'");
    println!("  psql -h {host} -p {port} -c 'SELECT * FROM failed_logins_1m ORDER BY failures DESC LIMIT 10'");
    println!("  psql -h {host} -p {port} -c 'SELECT * FROM user_activity ORDER BY max_threat DESC LIMIT 10'");
    println!("  psql -h {host} -p {port} -c 'SELECT * FROM weir_catalog.sources'");
    println!("  curl -s http://{}/metrics | grep weir_", config.http_addr);
    println!();
    println!(
        "Stop with Ctrl-C; state is kept in {} and the demo resumes where it stopped.",
        config.data_dir.display()
    );
    server::run(config, shutdown_signal()).await
}
