//! `weir_catalog.functions`: every function a query or a view can call, with its kind, where
//! it comes from (Weir's `udfs` crate or DataFusion), its call syntax and a one-line
//! description, read from each function's own documentation when the session is built.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Documentation;
use datafusion::prelude::SessionContext;

/// One row of the table.
struct FunctionRow {
    name: String,
    kind: &'static str,
    signature: Option<String>,
    description: Option<String>,
}

impl FunctionRow {
    fn new(name: &str, kind: &'static str, doc: Option<&Documentation>) -> Self {
        Self {
            name: name.to_string(),
            kind,
            signature: doc.map(|d| d.syntax_example.clone()),
            // The first line: DataFusion's descriptions run on into paragraphs.
            description: doc.and_then(|d| d.description.lines().next().map(str::to_string)),
        }
    }
}

/// The functions registered in `ctx` (aliases left out: each function once, by its name).
fn rows(ctx: &SessionContext) -> Vec<FunctionRow> {
    let state = ctx.state();
    let mut rows: Vec<FunctionRow> = Vec::new();
    for (name, f) in state.scalar_functions() {
        if name == f.name() {
            let kind = if weir_udfs::stateful::StatefulKind::from_name(name).is_some() {
                "stateful"
            } else {
                "scalar"
            };
            rows.push(FunctionRow::new(name, kind, f.documentation()));
        }
    }
    for (name, f) in state.aggregate_functions() {
        if name == f.name() {
            rows.push(FunctionRow::new(name, "aggregate", f.documentation()));
        }
    }
    for (name, f) in state.window_functions() {
        if name == f.name() {
            rows.push(FunctionRow::new(name, "window", f.documentation()));
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.kind.cmp(b.kind)));
    rows
}

/// The table of `ctx`'s functions, as they are when it is called.
pub fn functions_table(ctx: &SessionContext) -> Result<MemTable> {
    let rows = rows(ctx);
    let own = weir_udfs::names();
    let text = |name: &str| Field::new(name, datafusion::arrow::datatypes::DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        text("name"),
        text("kind"),
        text("origin"),
        text("signature"),
        text("description"),
    ]));
    let column = |f: &dyn Fn(&FunctionRow) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(&|r| Some(r.name.clone())),
            column(&|r| Some(r.kind.to_string())),
            column(&|r| {
                Some(
                    if own.contains(&r.name) {
                        "weir"
                    } else {
                        "datafusion"
                    }
                    .to_string(),
                )
            }),
            column(&|r| r.signature.clone()),
            column(&|r| r.description.clone()),
        ],
    )?;
    MemTable::try_new(schema, vec![vec![batch]])
}
