//! Source and view definitions, and how they are stored.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::plan::{CreateSource, SourceSchema, ViewPlan};
use crate::source::SourceSpec;

/// Whether a catalog entry is a source or a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Source,
    View,
}

/// A stored definition: its SQL, re-run at start, and its creation order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub kind: EntryKind,
    pub name: String,
    pub sql: String,
    pub seq: u64,
}

impl CatalogEntry {
    pub fn key(kind: EntryKind, name: &str) -> Vec<u8> {
        match kind {
            EntryKind::Source => format!("source/{name}").into_bytes(),
            EntryKind::View => format!("view/{name}").into_bytes(),
        }
    }
}

/// A source as the engine runs it.
#[derive(Debug)]
pub struct SourceDef {
    pub name: String,
    pub decl: CreateSource,
    pub spec: SourceSpec,
    pub schema: SchemaRef,
    pub sql: String,
}

impl SourceDef {
    pub fn new(decl: CreateSource, spec: SourceSpec, sql: String) -> Self {
        let fields: Vec<Field> = decl
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), true))
            .chain(
                decl.include
                    .iter()
                    .map(|c| Field::new(&c.name, c.meta.data_type_ref().clone(), true)),
            )
            .collect();
        Self {
            name: decl.name.clone(),
            schema: Arc::new(Schema::new(fields)),
            spec,
            decl,
            sql,
        }
    }

    /// The columns decoded from a record's value: the declared ones, without metadata.
    pub fn decoded_schema(&self) -> SchemaRef {
        let n = self.decl.columns.len();
        Arc::new(Schema::new(self.schema.fields()[..n].to_vec()))
    }

    /// The event-time column when it is decoded from the value (it must then be present).
    pub fn required_decoded_column(&self) -> Option<usize> {
        self.watermark_column()
            .filter(|i| *i < self.decl.columns.len())
    }

    /// Index of the event-time column, if the source declares a watermark.
    pub fn watermark_column(&self) -> Option<usize> {
        self.decl
            .watermark
            .as_ref()
            .and_then(|w| self.schema.index_of(&w.column).ok())
    }

    pub fn planner_schema(&self) -> SourceSchema {
        SourceSchema {
            name: self.name.clone(),
            schema: self.schema.clone(),
            watermark: self.decl.watermark.clone(),
            upstream: None,
        }
    }
}

/// A materialized view as the engine runs it.
#[derive(Debug)]
pub struct ViewDef {
    pub name: String,
    pub source: String,
    pub plan: Arc<ViewPlan>,
    pub sql: String,
}
