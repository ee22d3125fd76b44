//! `weir demo`: the security pipeline on the built-in generator (or, with `--kafka`, through
//! an embedded Kafka cluster), with a psql walkthrough.

use std::time::{Duration, Instant};

use crate::config::DemoArgs;
use crate::server::{self, shutdown_signal, ServerError};
use crate::source::{generate, EmbeddedKafka, GeneratorKind};

/// The demo pipeline, built into the binary so the demo runs from any directory.
pub const DEMO_PIPELINE: &str = include_str!("../examples/security_pipeline.sql");

/// The generator source of the demo pipeline, replaced for `--kafka`.
const GENERATOR_OPTIONS: &str =
    "connector = 'generator', kind = 'security_events', rate = '100', seed = '7', format = 'json'";

/// Events per second the demo producer writes to Kafka.
const KAFKA_RATE: u64 = 100;

/// Starts the embedded cluster on its own thread (it is not `Send`) with a producer writing
/// security events at `KAFKA_RATE`; returns the bootstrap address.
fn start_embedded_kafka() -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-kafka".into())
        .spawn(move || {
            let kafka = match EmbeddedKafka::start(1, "security-events", 4) {
                Ok(k) => k,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok(kafka.bootstrap()));
            let started = Instant::now();
            let mut next = 0u64;
            loop {
                let due = started.elapsed().as_millis() as u64 * KAFKA_RATE / 1000;
                if due > next {
                    let rows = generate(GeneratorKind::SecurityEvents, 7, next, due);
                    if let Err(e) = kafka.send_rows(&rows, "user_name") {
                        tracing::warn!(error = %e, "demo producer failed");
                    }
                    next = due;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

/// Writes the pipeline next to the demo's data and runs the server on it.
pub async fn run(args: DemoArgs) -> Result<(), ServerError> {
    let mut server = args.server.clone();
    if server.data_dir.is_none() {
        server.data_dir = Some(if args.kafka {
            "weir-demo-kafka-data".into()
        } else {
            "weir-demo-data".into()
        });
    }
    let mut pipeline_sql = DEMO_PIPELINE.to_string();
    let mut kafka_note = None;
    if args.kafka {
        let bootstrap = start_embedded_kafka().map_err(|message| ServerError::Pipeline {
            index: 0,
            sql: "embedded Kafka".into(),
            message,
        })?;
        pipeline_sql = pipeline_sql.replace(
            GENERATOR_OPTIONS,
            &format!(
                "connector = 'kafka', brokers = '{bootstrap}', topic = 'security-events', format = 'json', idle_timeout = '5 seconds'"
            ),
        );
        kafka_note = Some(bootstrap);
    }
    let config = server.resolve().map_err(|e| ServerError::Pipeline {
        index: 0,
        sql: String::new(),
        message: e.to_string(),
    })?;
    if args.kafka {
        // The embedded cluster starts empty each time, so stored offsets would point past
        // its end: the Kafka demo starts from fresh state.
        let _ = std::fs::remove_dir_all(&config.data_dir);
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|error| ServerError::PipelineFile {
        path: config.data_dir.clone(),
        error,
    })?;
    let pipeline = config.data_dir.join("security_pipeline.sql");
    std::fs::write(&pipeline, &pipeline_sql).map_err(|error| ServerError::PipelineFile {
        path: pipeline.clone(),
        error,
    })?;
    let mut config = config;
    config.pipeline = Some(pipeline);
    let (host, port) = (config.pg_addr.ip(), config.pg_addr.port());
    match &kafka_note {
        Some(bootstrap) => {
            println!("Weir demo: a producer writes 100 security events/s to topic security-events");
            println!("(4 partitions) on an embedded Kafka cluster at {bootstrap};");
            println!(
                "source auth_events reads it. Try: kcat -b {bootstrap} -t security-events -C -c 3"
            );
            println!(
                "  psql -h {host} -p {port} -c 'SELECT * FROM weir_catalog.source_partitions'"
            );
        }
        None => {
            println!("Weir demo: a generator writes 100 security events/s into source auth_events;")
        }
    }
    println!("three materialized views aggregate them. Connect and look:");
    println!();
    println!("  psql -h {host} -p {port} -c 'SHOW MATERIALIZED VIEWS'");
    println!("  psql -h {host} -p {port} -c 'SELECT * FROM failed_logins_1m ORDER BY failures DESC LIMIT 10'");
    println!("  psql -h {host} -p {port} -c 'SELECT * FROM user_activity ORDER BY max_threat DESC LIMIT 10'");
    println!("  psql -h {host} -p {port} -c 'SELECT * FROM weir_catalog.sources'");
    println!("  curl -s http://{}/metrics | grep weir_", config.http_addr);
    println!();
    if kafka_note.is_some() {
        println!(
            "Stop with Ctrl-C; the embedded cluster and the demo's state start fresh each run."
        );
    } else {
        println!(
            "Stop with Ctrl-C; state is kept in {} and the demo resumes where it stopped.",
            config.data_dir.display()
        );
    }
    server::run(config, shutdown_signal()).await
}
