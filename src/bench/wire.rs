//! Point queries over TCP, sent by a real Postgres driver (tokio-postgres) to the server's own
//! pgwire front end: what a client measures, encoding and sockets included.
//!
//! Three ways of asking the same question are compared in one run: a prepared statement
//! (`WHERE k = $1`, Parse once, then Bind/Execute per query, as JDBC, asyncpg and pgx do), the
//! same text with the key inlined over the simple-query protocol (as psql and Grafana do), and a
//! prepared statement DataFusion must plan at each execution (the same query with `LIMIT 1`,
//! which the point-read path does not take), the baseline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use super::BenchError;
use crate::engine::Engine;
use crate::pg::{serve_pg, WeirHandlers};

/// How each query travels.
#[derive(Debug, Clone, Copy)]
pub(super) enum WireMode {
    /// Parsed once per connection, then bound and executed with the key as a parameter.
    Prepared,
    /// The key inlined as a literal, over the simple-query protocol.
    Simple,
}

/// p50 and p99 latency (ms) and queries per second of one phase.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Latencies {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub qps: f64,
}

impl Latencies {
    /// Summarizes `all` (ms, any order) measured over `elapsed` seconds.
    pub fn of(mut all: Vec<f64>, elapsed: f64) -> Self {
        if all.is_empty() {
            return Self::default();
        }
        all.sort_by(f64::total_cmp);
        let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
        Self {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            qps: all.len() as f64 / elapsed,
        }
    }
}

/// The engine's Postgres front end on an ephemeral port of 127.0.0.1, until the task is aborted.
pub(super) async fn listen(
    engine: &Arc<Engine>,
) -> Result<(SocketAddr, JoinHandle<()>), BenchError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let handlers = Arc::new(WeirHandlers::new(engine.clone()));
    Ok((addr, tokio::spawn(serve_pg(listener, handlers, None))))
}

async fn connect(addr: SocketAddr) -> Result<Client, BenchError> {
    let conn = format!(
        "host={} port={} user=bench dbname=weir",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls)
        .await
        .map_err(|e| BenchError::Client(e.to_string()))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Sends `template` (with `$1` for a text key) from `connections` clients for `duration`, the
/// key of query `i` being `key(i)`: back to back, or with `pace` each client one query per
/// `pace` (a dashboard's rate rather than a saturating loop). Latency runs from sending to
/// the answer: counted from when a paced query was due it would include the timer's
/// millisecond granularity. A query that fails or returns no row is an error: the bench
/// measures answers, not refusals.
pub(super) async fn wire_latencies(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    template: String,
    key: impl Fn(u64) -> String + Clone + Send + 'static,
    (mode, pace): (WireMode, Option<Duration>),
) -> Result<Latencies, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..connections {
        let client = connect(addr).await?;
        let (stop, key, template) = (stop.clone(), key.clone(), template.clone());
        handles.push(tokio::spawn(async move {
            let statement = match mode {
                WireMode::Prepared => Some(client.prepare(&template).await?),
                WireMode::Simple => None,
            };
            let mut latencies = Vec::new();
            let mut i = t as u64;
            // Paced clients start spread over one interval, not all at once.
            let first = Instant::now() + pace.unwrap_or_default() * t as u32 / connections as u32;
            while !stop.load(Ordering::Relaxed) && latencies.len() < 100_000 {
                let k = key(i);
                if let Some(pace) = pace {
                    let due = first + pace * latencies.len() as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let t0 = Instant::now();
                let rows = match &statement {
                    Some(s) => client.query(s, &[&k]).await?.len(),
                    None => {
                        let text = template.replace("$1", &format!("'{k}'"));
                        client
                            .simple_query(&text)
                            .await?
                            .iter()
                            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
                            .count()
                    }
                };
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                if rows != 1 {
                    return Ok::<_, tokio_postgres::Error>(Err(format!(
                        "{template} with key {k} returned {rows} rows, not 1"
                    )));
                }
                i += connections as u64;
            }
            Ok(Ok(latencies))
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(Ok(latencies))) => all.extend(latencies),
            Ok(Ok(Err(wrong))) => return Err(BenchError::Client(wrong)),
            Ok(Err(e)) => return Err(BenchError::Client(e.to_string())),
            Err(e) => return Err(BenchError::Client(e.to_string())),
        }
    }
    Ok(Latencies::of(all, started.elapsed().as_secs_f64()))
}
