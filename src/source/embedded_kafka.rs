//! An embedded Kafka-protocol cluster (librdkafka's mock brokers) with a producer, for
//! `weir demo --kafka`, `weir bench --kafka` and the tests: the real Kafka path on a machine
//! without Kafka. It serves a real bootstrap address on 127.0.0.1 that any client can use.
//! [`JsonProducer`] writes rows as JSON messages to any broker.
//!
//! The mock keeps at most about 5 MB or 100,000 messages per partition and drops the oldest
//! beyond that, so spread larger inputs over more partitions.

use std::time::Duration;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Bytes a mock partition keeps before it drops its oldest messages.
pub const MOCK_PARTITION_BYTES: u64 = 5 << 20;

/// A mock Kafka cluster with one topic and a producer for it.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    pub topic: String,
    pub partitions: i32,
    producer: JsonProducer,
}

/// Produces JSON rows to one topic of any Kafka-protocol broker.
pub struct JsonProducer {
    producer: BaseProducer,
    bootstrap: String,
    topic: String,
    partitions: i32,
}

fn new_producer(bootstrap: &str) -> Result<BaseProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        // Room for oversized messages in tests (the source's own limit is max_message_bytes).
        .set("message.max.bytes", "16000000")
        .create()
}

impl EmbeddedKafka {
    /// Starts `brokers` mock brokers and creates `topic` with `partitions` partitions.
    pub fn start(brokers: i32, topic: &str, partitions: i32) -> Result<Self, KafkaError> {
        let cluster = MockCluster::new(brokers)?;
        cluster.create_topic(topic, partitions, 1)?;
        let producer = JsonProducer::new(&cluster.bootstrap_servers(), topic, partitions)?;
        Ok(Self {
            cluster,
            topic: topic.to_string(),
            partitions,
            producer,
        })
    }

    /// The cluster's producer.
    pub fn producer(&self) -> &JsonProducer {
        &self.producer
    }

    /// A fresh producer (after a broker outage the old one may still be backing off).
    pub fn reconnect(&mut self) -> Result<(), KafkaError> {
        self.producer.reconnect()
    }

    /// See [`JsonProducer::send`].
    pub fn send(&self, partition: i32, key: Option<&str>, value: &[u8]) -> Result<(), KafkaError> {
        self.producer.send(partition, key, value)
    }

    /// See [`JsonProducer::send_rows`].
    pub fn send_rows(&self, batch: &RecordBatch, key_column: &str) -> Result<u64, KafkaError> {
        self.producer.send_rows(batch, key_column)
    }

    /// See [`JsonProducer::flush`].
    pub fn flush(&self) -> Result<(), KafkaError> {
        self.producer.flush()
    }

    /// The address clients connect to (`host:port,...` on 127.0.0.1).
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster itself, for fault injection (request errors, leader moves).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }

    /// Takes broker `id` (1-based) down or brings it back, for fault tests.
    pub fn set_broker_up(&self, id: i32, up: bool) -> Result<(), KafkaError> {
        if up {
            self.cluster.broker_up(id)
        } else {
            self.cluster.broker_down(id)
        }
    }
}

impl JsonProducer {
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: new_producer(bootstrap)?,
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            partitions,
        })
    }

    /// A fresh producer (after a broker outage the old one may still be backing off).
    pub fn reconnect(&mut self) -> Result<(), KafkaError> {
        self.producer = new_producer(&self.bootstrap)?;
        Ok(())
    }

    /// Produces `value` (with `key`) to `partition`, waiting while the local queue is full.
    pub fn send(&self, partition: i32, key: Option<&str>, value: &[u8]) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic)
            .partition(partition)
            .payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        let mut record = Some(record);
        // Bounded: about a minute of a full queue.
        for _ in 0..12_000 {
            match self.producer.send(record.take().expect("record kept")) {
                Ok(()) => return Ok(()),
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = Some(r);
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
    }

    /// Produces each row of `batch` as a JSON message, keyed by the text column `key_column`
    /// and sent to the partition the key hashes to (so one key's rows stay in order).
    /// Returns the number of messages.
    pub fn send_rows(&self, batch: &RecordBatch, key_column: &str) -> Result<u64, KafkaError> {
        let keys = batch
            .column_by_name(key_column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .cloned();
        let mut writer = LineDelimitedWriter::new(Vec::new());
        let written = writer.write(batch).and_then(|_| writer.finish());
        if let Err(e) = written {
            return Err(KafkaError::Subscription(format!("cannot encode rows: {e}")));
        }
        let text = writer.into_inner();
        let mut sent = 0;
        for (i, line) in text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let key = keys.as_ref().filter(|k| k.is_valid(i)).map(|k| k.value(i));
            let hash = key.map_or(i as u64, |k| k.bytes().map(u64::from).sum());
            let partition = (hash % self.partitions as u64) as i32;
            self.send(partition, key, line)?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Waits (up to 60 s) until everything produced is acknowledged.
    pub fn flush(&self) -> Result<(), KafkaError> {
        self.producer.flush(Duration::from_secs(60))
    }
}
