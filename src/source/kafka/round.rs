//! One poll round of a Kafka source: the messages taken from each partition, turned into one
//! line chunk per partition (plus the `INCLUDE` metadata columns and refused messages).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::queue::Record;
use crate::plan::{IncludeColumn, KafkaMeta};
use crate::source::{LineChunk, RejectedRecord};

/// Bytes of an oversized message kept in its dead letter (as many as the decoder keeps).
const REJECTED_RAW: usize = 4096;

/// The message metadata a round keeps (only what `INCLUDE` asks for costs anything).
pub(super) struct WantedMetadata {
    any: bool,
    key: bool,
    timestamp: bool,
}

impl WantedMetadata {
    pub(super) fn for_columns(include: &[IncludeColumn]) -> Self {
        let has = |m: KafkaMeta| include.iter().any(|c| c.meta == m);
        Self {
            any: !include.is_empty(),
            key: has(KafkaMeta::Key),
            timestamp: has(KafkaMeta::Timestamp),
        }
    }
}

/// The messages of one partition in a poll round.
#[derive(Default)]
pub(super) struct PartitionRound {
    data: Vec<u8>,
    record_ends: Vec<u64>,
    first_offset: Option<u64>,
    /// Offset after the last message taken.
    pub(super) end: u64,
    skipped: u64,
    rejected: Vec<RejectedRecord>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    key: Vec<Option<String>>,
    timestamp: Vec<Option<i64>>,
}

impl PartitionRound {
    /// Takes one message; returns its payload size. Empty messages (tombstones) are counted
    /// as skipped, messages over `max_bytes` are refused.
    pub(super) fn add(
        &mut self,
        message: &Record<'_>,
        max_bytes: usize,
        wants: &WantedMetadata,
    ) -> usize {
        let offset = message.offset;
        self.first_offset.get_or_insert(offset as u64);
        self.end = offset as u64 + 1;
        let payload = message.payload;
        if payload.iter().all(|b| b.is_ascii_whitespace()) {
            self.skipped += 1;
            return 0;
        }
        if payload.len() > max_bytes {
            self.rejected.push(RejectedRecord {
                offset: offset as u64,
                raw: String::from_utf8_lossy(&payload[..payload.len().min(REJECTED_RAW)])
                    .into_owned(),
                reason: format!(
                    "message of {} bytes is larger than max_message_bytes ({max_bytes}); raise \
                     the source option to decode it",
                    payload.len()
                ),
            });
            return payload.len();
        }
        // JSON never needs a raw line break, so breaks inside a message become spaces and
        // each message is one line.
        let at = self.data.len();
        self.data.extend_from_slice(payload);
        if memchr::memchr2(b'\n', b'\r', payload).is_some() {
            for b in &mut self.data[at..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        }
        self.data.push(b'\n');
        self.record_ends.push(offset as u64 + 1);
        if wants.any {
            self.partition.push(message.partition);
            self.offset.push(offset);
            self.timestamp
                .push(message.timestamp_ms.filter(|_| wants.timestamp));
            self.key.push(
                message
                    .key
                    .filter(|_| wants.key)
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
            );
        }
        payload.len()
    }

    /// Whether the round took no message.
    pub(super) fn is_empty(&self) -> bool {
        self.first_offset.is_none()
    }

    /// The round of partition `p` as a chunk.
    pub(super) fn into_chunk(self, p: i32, include: &[IncludeColumn]) -> LineChunk {
        let extra = self.metadata_columns(include);
        LineChunk {
            file_name: p.to_string(),
            split: p as u32,
            start_offset: self.first_offset.unwrap_or(self.end),
            data: self.data,
            record_ends: Some(self.record_ends),
            extra,
            skipped: self.skipped,
            rejected: self.rejected,
            end: self.end,
        }
    }

    /// The `INCLUDE` columns of the round's messages.
    fn metadata_columns(&self, include: &[IncludeColumn]) -> Option<RecordBatch> {
        if include.is_empty() {
            return None;
        }
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for column in include {
            fields.push(Field::new(
                &column.name,
                column.meta.data_type_ref().clone(),
                true,
            ));
            columns.push(match column.meta {
                KafkaMeta::Partition => {
                    let mut b = Int32Builder::new();
                    b.append_slice(&self.partition);
                    Arc::new(b.finish())
                }
                KafkaMeta::Offset => {
                    let mut b = Int64Builder::new();
                    b.append_slice(&self.offset);
                    Arc::new(b.finish())
                }
                KafkaMeta::Key => {
                    let mut b = StringBuilder::new();
                    for k in &self.key {
                        b.append_option(k.as_deref());
                    }
                    Arc::new(b.finish())
                }
                KafkaMeta::Timestamp => {
                    let mut b = TimestampMillisecondBuilder::new();
                    for t in &self.timestamp {
                        b.append_option(*t);
                    }
                    Arc::new(b.finish())
                }
            });
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()
    }
}
