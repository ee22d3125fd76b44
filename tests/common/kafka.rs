//! Kafka for tests: librdkafka's in-process mock cluster, and a producer of security events.

use std::time::Duration;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

fn new_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// A mock Kafka cluster with one topic.
pub struct MockKafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub topic: String,
    pub partitions: i32,
    producer: BaseProducer,
}

impl MockKafka {
    pub fn new(brokers: i32, topic: &str, partitions: i32) -> Self {
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        cluster
            .create_topic(topic, partitions, 1)
            .expect("create topic");
        let producer = new_producer(&cluster.bootstrap_servers());
        Self {
            cluster,
            topic: topic.to_string(),
            partitions,
            producer,
        }
    }

    /// A fresh producer (after a broker outage the old one may still be backing off).
    pub fn reconnect(&mut self) {
        self.producer = new_producer(&self.bootstrap());
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Produces `value` (with `key`) to `partition`.
    pub fn send(&self, partition: i32, key: Option<&str>, value: &[u8]) {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic)
            .partition(partition)
            .payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        let mut record = Some(record);
        // Bounded retry while the local queue is full.
        for _ in 0..10_000 {
            match self.producer.send(record.take().unwrap()) {
                Ok(()) => return,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce failed: {e}"
                    );
                    record = Some(r);
                    self.producer.poll(Duration::from_millis(5));
                }
            }
        }
        panic!("producer queue stayed full");
    }

    /// Produces every row of `batch` as a JSON message keyed by user, to the partition the
    /// user hashes to (so each partition has its own out-of-order stream). Returns rows sent.
    pub fn send_events(&self, batch: &RecordBatch) -> usize {
        let users = batch
            .column_by_name("user_name")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let mut writer = LineDelimitedWriter::new(Vec::new());
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        let text = writer.into_inner();
        let mut sent = 0;
        for (i, line) in text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let user = users.value(i);
            let partition =
                (user.bytes().map(u32::from).sum::<u32>() % self.partitions as u32) as i32;
            self.send(partition, Some(user), line);
            sent += 1;
        }
        sent
    }

    /// Waits (bounded) until everything produced is acknowledged.
    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(30))
            .expect("flush producer");
    }
}

/// `CREATE SOURCE events` over the mock cluster's topic, with Kafka metadata columns.
pub fn kafka_source_sql(kafka: &MockKafka, extra_options: &str) -> String {
    format!(
        "CREATE SOURCE IF NOT EXISTS events (event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT, source_ip TEXT, \
         geo TEXT, threat_score DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         INCLUDE partition AS kafka_partition, offset AS kafka_offset, key AS kafka_key, timestamp AS kafka_ts \
         WITH (connector = 'kafka', brokers = '{}', topic = '{}', format = 'json', idle_timeout = '1 second', \
         \"properties.session.timeout.ms\" = '6000'{extra_options})",
        kafka.bootstrap(),
        kafka.topic
    )
}
