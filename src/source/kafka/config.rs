//! The librdkafka client configuration of a Kafka source, built the same way when the source
//! is created (to refuse a bad property then) and when its reader starts.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::{KafkaSpec, StartOffset};
use crate::source::SourceError;

/// The consumer configuration of `spec`: Weir's settings, then the `properties.*` options.
pub(super) fn consumer_config(spec: &KafkaSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.brokers)
        .set("group.id", &spec.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set(
            "auto.offset.reset",
            match spec.start {
                StartOffset::Earliest => "earliest",
                StartOffset::Latest => "latest",
            },
        );
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
}

/// Builds the client librdkafka would run for `spec`, and drops it: an unknown property, a
/// bad value or an inconsistent combination fails here. Nothing is read or committed (an
/// unreachable broker makes a `stalled` source later, not a bad definition).
pub fn check_config(spec: &KafkaSpec) -> Result<(), SourceError> {
    let consumer: BaseConsumer = consumer_config(spec)
        .create()
        .map_err(|e| SourceError::Options(format!("kafka client configuration refused: {e}")))?;
    drop(consumer);
    Ok(())
}
