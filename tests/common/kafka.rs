//! Kafka for tests: Weir's embedded mock cluster, and the source statement over it.

pub use weir::source::EmbeddedKafka;

/// A mock cluster with `brokers` brokers and `topic` of `partitions` partitions.
pub fn mock_kafka(brokers: i32, topic: &str, partitions: i32) -> EmbeddedKafka {
    EmbeddedKafka::start(brokers, topic, partitions).expect("mock Kafka cluster")
}

/// `CREATE SOURCE events` over the mock cluster's topic, with Kafka metadata columns; its
/// partitions go idle after 1 second.
pub fn kafka_source_sql(kafka: &EmbeddedKafka, extra_options: &str) -> String {
    kafka_source_sql_idle(kafka, "1 second", extra_options)
}

/// [`kafka_source_sql`] with another `idle_timeout`.
pub fn kafka_source_sql_idle(kafka: &EmbeddedKafka, idle: &str, extra_options: &str) -> String {
    format!(
        "CREATE SOURCE IF NOT EXISTS events (event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT, source_ip TEXT, \
         geo TEXT, threat_score DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         INCLUDE partition AS kafka_partition, offset AS kafka_offset, key AS kafka_key, timestamp AS kafka_ts \
         WITH (connector = 'kafka', brokers = '{}', topic = '{}', format = 'json', idle_timeout = '{idle}', \
         \"properties.session.timeout.ms\" = '6000'{extra_options})",
        kafka.bootstrap(),
        kafka.topic
    )
}
