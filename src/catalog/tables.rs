//! The `weir_catalog` system tables: sources, views, partitions, dead letters, late rows,
//! `llm_analyze` records and functions.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::{PartitionStatus, StatusBoard};
use crate::decode::DeadLetter;
use crate::llm::LlmRecord;
use crate::operator::LateRow;
use crate::state::{window_start_of_key, Store, Table};

/// The schema holding the system tables.
pub const SYSTEM_SCHEMA: &str = "weir_catalog";

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

pub(super) async fn scan_batches(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    MemTable::try_new(schema, vec![batches])?
        .scan(state, projection, filters, limit)
        .await
}

#[derive(Debug, Clone, Copy)]
enum SystemKind {
    Sources,
    Views,
    DeadLetters,
    LateRows,
    SourcePartitions,
    LlmAnalyses,
}

/// A `weir_catalog` table, computed when it is scanned.
#[derive(Debug)]
struct SystemTable {
    kind: SystemKind,
    schema: SchemaRef,
    board: Arc<StatusBoard>,
    store: Arc<Store>,
}

fn ts_field(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, None), true)
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<TimestampMillisecondArray>())
}

fn ints(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(values.map(|v| v as i64).collect::<Int64Array>())
}

/// Watermarks before any event, and +infinity after the end, are shown as NULL.
fn shown(watermark: Option<i64>) -> Option<i64> {
    watermark.filter(|w| *w != i64::MIN && *w != i64::MAX)
}

impl SystemKind {
    fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(match self {
            SystemKind::Sources => vec![
                text("name"),
                text("connector"),
                text("status"),
                int("events"),
                int("bad_records"),
                ts_field("watermark"),
                text("error"),
            ],
            SystemKind::Views => vec![
                text("name"),
                text("source"),
                text("status"),
                ts_field("watermark"),
                int("rows"),
                int("late_rows"),
                int("open_windows"),
                text("error"),
            ],
            SystemKind::DeadLetters => {
                vec![text("source"), text("position"), text("raw"), text("error")]
            }
            SystemKind::SourcePartitions => vec![
                text("source"),
                Field::new("partition", DataType::Int32, true),
                int("offset"),
                int("high_watermark"),
                int("lag"),
                ts_field("watermark"),
                Field::new("idle", DataType::Boolean, true),
            ],
            SystemKind::LateRows => vec![
                text("view"),
                ts_field("event_time"),
                ts_field("watermark"),
                text("raw"),
                int("missed_windows"),
            ],
            SystemKind::LlmAnalyses => vec![
                text("view"),
                ts_field("event_time"),
                text("position"),
                text("column_name"),
                text("status"),
                text("prompt"),
                text("answer"),
                text("error"),
                int("attempts"),
                int("latency_ms"),
                ts_field("requested_at"),
                ts_field("answered_at"),
            ],
        }))
    }

    fn table_name(self) -> &'static str {
        match self {
            SystemKind::Sources => "sources",
            SystemKind::Views => "views",
            SystemKind::DeadLetters => "dead_letters",
            SystemKind::LateRows => "late_rows",
            SystemKind::SourcePartitions => "source_partitions",
            SystemKind::LlmAnalyses => "llm_analyses",
        }
    }
}

/// Splits a stored key `name \0 seq` into the name.
fn owner_of(key: &[u8]) -> String {
    let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

impl SystemTable {
    fn batch(&self) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = match self.kind {
            SystemKind::Sources => {
                let s = self.board.sources.read();
                vec![
                    strings(s.keys().map(|k| Some(k.as_str()))),
                    strings(s.values().map(|v| Some(v.connector.as_str()))),
                    strings(s.values().map(|v| Some(v.status.as_str()))),
                    ints(s.values().map(|v| v.events)),
                    ints(s.values().map(|v| v.bad_records)),
                    times(s.values().map(|v| shown(v.watermark))),
                    strings(s.values().map(|v| v.error.as_deref())),
                ]
            }
            SystemKind::Views => {
                let s = self.board.views.read();
                vec![
                    strings(s.keys().map(|k| Some(k.as_str()))),
                    strings(s.values().map(|v| Some(v.source.as_str()))),
                    strings(s.values().map(|v| Some(v.status.as_str()))),
                    times(s.values().map(|v| shown(v.watermark))),
                    ints(s.values().map(|v| v.rows)),
                    ints(s.values().map(|v| v.late_rows)),
                    ints(s.values().map(|v| v.open_windows)),
                    strings(s.values().map(|v| v.error.as_deref())),
                ]
            }
            SystemKind::SourcePartitions => {
                let s = self.board.sources.read();
                let rows: Vec<(&String, &PartitionStatus)> = s
                    .iter()
                    .flat_map(|(name, status)| status.partitions.iter().map(move |p| (name, p)))
                    .collect();
                vec![
                    strings(rows.iter().map(|(n, _)| Some(n.as_str()))),
                    Arc::new(
                        rows.iter()
                            .map(|(_, p)| Some(p.partition as i32))
                            .collect::<Int32Array>(),
                    ),
                    ints(rows.iter().map(|(_, p)| p.offset)),
                    Arc::new(
                        rows.iter()
                            .map(|(_, p)| p.high_watermark)
                            .collect::<Int64Array>(),
                    ),
                    Arc::new(
                        rows.iter()
                            .map(|(_, p)| p.high_watermark.map(|h| (h - p.offset as i64).max(0)))
                            .collect::<Int64Array>(),
                    ),
                    times(rows.iter().map(|(_, p)| shown(p.watermark))),
                    Arc::new(
                        rows.iter()
                            .map(|(_, p)| Some(p.idle))
                            .collect::<BooleanArray>(),
                    ),
                ]
            }
            SystemKind::DeadLetters => {
                let entries = self
                    .store
                    .scan_prefix(Table::DeadLetters, b"")
                    .map_err(external)?;
                let mut owners = Vec::with_capacity(entries.len());
                let mut letters = Vec::with_capacity(entries.len());
                for (key, value) in &entries {
                    owners.push(owner_of(key));
                    letters.push(serde_json::from_slice::<DeadLetter>(value).map_err(external)?);
                }
                vec![
                    strings(owners.iter().map(|o| Some(o.as_str()))),
                    strings(letters.iter().map(|l| Some(l.position.as_str()))),
                    strings(letters.iter().map(|l| Some(l.raw.as_str()))),
                    strings(letters.iter().map(|l| Some(l.error.as_str()))),
                ]
            }
            SystemKind::LateRows => {
                let entries = self
                    .store
                    .scan_prefix(Table::LateRows, b"")
                    .map_err(external)?;
                let mut owners = Vec::with_capacity(entries.len());
                let mut rows = Vec::with_capacity(entries.len());
                for (key, value) in &entries {
                    owners.push(owner_of(key));
                    rows.push(serde_json::from_slice::<LateRow>(value).map_err(external)?);
                }
                vec![
                    strings(owners.iter().map(|o| Some(o.as_str()))),
                    times(rows.iter().map(|r| Some(r.event_time))),
                    times(rows.iter().map(|r| shown(Some(r.watermark)))),
                    strings(rows.iter().map(|r| Some(r.raw.as_str()))),
                    Arc::new(
                        rows.iter()
                            .map(|r| r.missed_windows.map(i64::from))
                            .collect::<Int64Array>(),
                    ),
                ]
            }
            SystemKind::LlmAnalyses => self.llm_analyses()?,
        };
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    /// Every `llm_analyze` record: its view, the asking row's event time and source position
    /// (from the record's key: view, event time, split, offset, column), and the record.
    fn llm_analyses(&self) -> Result<Vec<ArrayRef>> {
        let entries = self
            .store
            .scan_prefix(Table::LlmAnalyses, b"")
            .map_err(external)?;
        let mut owners = Vec::with_capacity(entries.len());
        let mut places = Vec::with_capacity(entries.len());
        let mut records = Vec::with_capacity(entries.len());
        for (key, value) in &entries {
            let Some(record) = LlmRecord::decode(value) else {
                continue;
            };
            let owner = owner_of(key);
            // name \0, event time (8), split (4), offset (8), column (1)
            let place = key
                .get(owner.len() + 1..)
                .filter(|t| t.len() == 21)
                .map(|t| {
                    let time = window_start_of_key(&t[..8]).unwrap_or_default();
                    let split = u32::from_be_bytes(t[8..12].try_into().expect("4 bytes"));
                    let end = u64::from_be_bytes(t[12..20].try_into().expect("8 bytes"));
                    (time, format!("{split}:{end}"))
                });
            owners.push(owner);
            places.push(place);
            records.push(record);
        }
        Ok(vec![
            strings(owners.iter().map(|o| Some(o.as_str()))),
            times(places.iter().map(|p| p.as_ref().map(|(t, _)| *t))),
            strings(places.iter().map(|p| p.as_ref().map(|(_, s)| s.as_str()))),
            strings(records.iter().map(|r| Some(r.column.as_str()))),
            strings(records.iter().map(|r| Some(r.status.as_str()))),
            strings(records.iter().map(|r| Some(r.prompt.as_str()))),
            strings(records.iter().map(|r| r.answer.as_deref())),
            strings(records.iter().map(|r| r.error.as_deref())),
            ints(records.iter().map(|r| u64::from(r.attempts))),
            Arc::new(
                records
                    .iter()
                    .map(|r| r.latency_ms.map(|l| l as i64))
                    .collect::<Int64Array>(),
            ),
            times(records.iter().map(|r| Some(r.requested_at_ms))),
            times(records.iter().map(|r| r.answered_at_ms)),
        ])
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        scan_batches(
            self.schema.clone(),
            vec![self.batch()?],
            state,
            projection,
            filters,
            limit,
        )
        .await
    }
}

/// Creates schema `weir_catalog` with its tables in `ctx`'s default catalog.
pub fn register_system_tables(
    ctx: &SessionContext,
    board: Arc<StatusBoard>,
    store: Arc<Store>,
) -> Result<()> {
    let catalog_name = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let catalog = ctx
        .catalog(&catalog_name)
        .ok_or_else(|| DataFusionError::Internal("default catalog missing".into()))?;
    catalog.register_schema(SYSTEM_SCHEMA, Arc::new(MemorySchemaProvider::new()))?;
    for kind in [
        SystemKind::Sources,
        SystemKind::Views,
        SystemKind::DeadLetters,
        SystemKind::LateRows,
        SystemKind::SourcePartitions,
        SystemKind::LlmAnalyses,
    ] {
        let table = SystemTable {
            kind,
            schema: kind.schema(),
            board: board.clone(),
            store: store.clone(),
        };
        ctx.register_table(
            format!("{SYSTEM_SCHEMA}.{}", kind.table_name()),
            Arc::new(table),
        )?;
    }
    ctx.register_table(
        format!("{SYSTEM_SCHEMA}.functions"),
        Arc::new(super::functions::functions_table(ctx)?),
    )?;
    Ok(())
}
