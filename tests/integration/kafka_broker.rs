//! Kafka against a real broker process (`noida-db`, installed by `.ci/setup`): 1M events over
//! 4 partitions, weir killed with -9 at five moments while it consumes, and the broker itself
//! restarted mid-stream; afterwards every view equals the batch oracle over everything produced.
//!
//! noida-db answers a fetch with everything it has, ignoring the requested maximum, so the
//! source raises librdkafka's `receive.message.max.bytes` through a `properties.*` option.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::oracle::{assert_views_match, oracle_from_batches, security_views};
use crate::common::{rows, Weir};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use weir::source::JsonProducer;

const TOPIC: &str = "security-events";
const PARTITIONS: i32 = 4;
const EVENTS: u64 = 1_000_000;

/// The noida-db binary `.ci/setup` installed (or `WEIR_NOIDA_BIN`).
fn noida_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("WEIR_NOIDA_BIN") {
        return bin.into();
    }
    let venv = Path::new(&std::env::var("HOME").unwrap()).join(".cache/weir-noida/lib");
    std::fs::read_dir(&venv)
        .ok()
        .and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("site-packages/noida_db/noida-db"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| panic!("noida-db not found under {venv:?}: run .ci/setup"))
}

/// A broker process on its own port and data directory.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    fn start(port: u16, dir: &Path) -> Self {
        let mut command = Command::new(noida_bin());
        crate::common::die_with_parent(&mut command);
        let child = command
            .args([
                "start",
                "--only",
                "kafka",
                "--kafka-port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start noida-db");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "noida-db did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker as Ctrl-C does, letting it write what it holds, and starts it again.
    fn restart_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals the broker process this test started and still owns.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
        *self = Broker::start(self.port, &self.dir.clone());
    }

    fn restart(&mut self) {
        self.kill9();
        *self = Broker::start(self.port, &self.dir.clone());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin(bootstrap)
        .create_topics([&topic], &admin_options())
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// `CREATE SOURCE events` over `topic` of `broker`, partitions idle after `idle`.
fn source_sql(broker: &Broker, topic: &str, idle: &str) -> String {
    format!(
        "CREATE SOURCE IF NOT EXISTS events (event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT, source_ip TEXT, \
         geo TEXT, threat_score DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         WITH (connector = 'kafka', brokers = '{}', topic = '{topic}', format = 'json', idle_timeout = '{idle}', \
         \"properties.receive.message.max.bytes\" = '1000000000');\n",
        broker.bootstrap()
    )
}

async fn events_counted(weir: &Weir) -> u64 {
    let client = weir.client().await;
    rows(&client, "SELECT events FROM weir_catalog.sources").await[0][0]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_broker_restart_against_a_broker_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(free_port(), &dir.path().join("broker"));
    create_topic(&broker.bootstrap(), TOPIC, PARTITIONS).await;
    let producer = JsonProducer::new(&broker.bootstrap(), TOPIC, PARTITIONS).unwrap();
    let mut batches = Vec::new();
    let mut from = 0;
    while from < EVENTS {
        let to = (from + 100_000).min(EVENTS);
        let batch =
            weir::source::generate(weir::source::GeneratorKind::SecurityEvents, 13, from, to);
        producer.send_rows(&batch, "user_name").unwrap();
        batches.push(batch);
        from = to;
    }
    producer.flush().unwrap();
    // noida-db writes appended messages to disk a few seconds later: a kill -9 before that
    // loses them (the topic's tail is gone, and the source rightly finds nothing more to read).
    // The broker kill below must test Weir, not that, so the broker saves its data first.
    broker.restart_gracefully();

    let mut pipeline = source_sql(&broker, TOPIC, "2 seconds");
    for v in security_views() {
        pipeline += &format!("CREATE MATERIALIZED VIEW {} AS {};\n", v.name, v.view_sql);
    }
    let file = dir.path().join("pipeline.sql");
    std::fs::write(&file, pipeline).unwrap();
    // Short epochs, so the counts move in small steps and the kills and the broker restart
    // land mid-stream however fast the broker serves the topic.
    let args = ["--pipeline", file.to_str().unwrap(), "--epoch-ms", "50"];
    let data = dir.path().join("weir");

    // Five kills at spread-out (pseudo-random) points of the stream, then a broker restart.
    let mut interrupted = 0;
    for (i, after) in [60_000u64, 230_000, 410_000, 570_000, 760_000]
        .into_iter()
        .enumerate()
    {
        let mut weir = Weir::start(&data, &args);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = events_counted(&weir).await;
            if n >= EVENTS {
                break;
            }
            if n > after + (i as u64 * 7_919) % 20_000 {
                interrupted += 1;
                break;
            }
            assert!(Instant::now() < deadline, "no progress past {n} events");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        weir.kill9();
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} kills landed mid-stream"
    );

    let weir = Weir::start(&data, &args);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counted = events_counted(&weir).await;
    while counted < 800_000 {
        assert!(Instant::now() < deadline, "no progress after the kills");
        tokio::time::sleep(Duration::from_millis(5)).await;
        counted = events_counted(&weir).await;
    }
    assert!(counted < EVENTS, "the broker restart must land mid-stream");
    broker.restart();
    let client = weir.client().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = rows(&client, "SELECT events, status FROM weir_catalog.sources").await;
        if r[0][0] == EVENTS.to_string() && r[0][1] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not finish after the broker restart: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_views_match(&client, &oracle_from_batches(batches), &security_views()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_the_topic_are_picked_up() {
    const GROWN: &str = "grown-topic";
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(free_port(), &dir.path().join("broker"));
    create_topic(&broker.bootstrap(), GROWN, 2).await;
    let first = weir::source::generate(weir::source::GeneratorKind::SecurityEvents, 21, 0, 20_000);
    let producer = JsonProducer::new(&broker.bootstrap(), GROWN, 2).unwrap();
    producer.send_rows(&first, "user_name").unwrap();
    producer.flush().unwrap();

    let weir = Weir::start(&dir.path().join("weir"), &[]);
    let client = weir.client().await;
    // No partition may go idle during the test, so no row can be late. If the pause between
    // the two batches outlasts the idle timeout (a loaded machine), partitions 0 and 1 go
    // idle, the new partitions' rows move the watermark on, and the old partitions'
    // second-batch rows come in late: one full run with a 30 s timeout saw 9,645 late rows,
    // which only that explains. Idleness is not what this test is about, so the timeout is
    // far beyond any pause it makes.
    client
        .simple_query(&source_sql(&broker, GROWN, "10 minutes"))
        .await
        .unwrap();
    let views = security_views();
    crate::common::oracle::create_views(&client, &views).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_counted(&weir).await < 20_000 {
        assert!(Instant::now() < deadline, "the first events were not read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two more partitions. Weir finds them at its next metadata refresh; until they produce
    // or go idle they hold the watermark back. Then events spread over all four.
    let results = admin(&broker.bootstrap())
        .create_partitions([&NewPartitions::new(GROWN, 4)], &admin_options())
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
    let partitions = "SELECT count(*) FROM weir_catalog.source_partitions";
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(&client, partitions).await[0][0] != "4" {
        assert!(Instant::now() < deadline, "new partitions not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = weir::source::generate(
        weir::source::GeneratorKind::SecurityEvents,
        21,
        20_000,
        40_000,
    );
    let producer = JsonProducer::new(&broker.bootstrap(), GROWN, 4).unwrap();
    producer.send_rows(&second, "user_name").unwrap();
    producer.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_counted(&weir).await < 40_000 {
        assert!(
            Instant::now() < deadline,
            "the events of the new partitions were not read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read = rows(
        &client,
        "SELECT count(*) FROM weir_catalog.source_partitions WHERE \"offset\" > 0",
    )
    .await;
    assert_eq!(read[0][0], "4", "every partition was read");
    assert_views_match(&client, &oracle_from_batches(vec![first, second]), &views).await;
}
