//! The batch side: the same SELECT run by DataFusion over the case's events as one table.
//!
//! Windows are laid out here, independently of Weir: each event is repeated once per window
//! it falls in, and a (row, window) pair counts unless the window had already closed when the
//! row arrived (its end at or before the watermark as it stood just before the row: the
//! largest earlier event time minus the delay).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::case::{Case, Event, Line, Read, ViewSpec, Window, DELAY_MS};
use super::common::oracle::to_cells;

/// The table a view reads in the oracle.
pub const EVENTS: &str = "events";

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The events that reach views (dead letters removed), with the watermark each met.
pub fn accepted(case: &Case) -> Vec<(Event, Option<i64>)> {
    let mut max_seen: Option<i64> = None;
    let mut out = Vec::new();
    for line in &case.lines {
        if let Line::Event(e) = line {
            if let Some(t) = e.ts {
                out.push((e.clone(), max_seen.map(|m| m - DELAY_MS)));
                max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
            }
        }
    }
    out
}

/// Lines that must become dead letters.
pub fn dead_letters(case: &Case) -> usize {
    case.lines
        .iter()
        .filter(|l| matches!(l, Line::Bad(_) | Line::Event(Event { ts: None, .. })))
        .count()
}

/// (slide, size) in milliseconds.
fn window_ms(window: Window) -> Option<(i64, i64)> {
    match window {
        Window::None => None,
        Window::Tumble { size_s } => Some((size_s * 1000, size_s * 1000)),
        Window::Hop { slide_s, size_s } => Some((slide_s * 1000, size_s * 1000)),
    }
}

/// An input row of a view: the event, and its window (start, end) for windowed views.
type InputRow = (Event, Option<(i64, i64)>);

/// Rows of the view's input: each accepted event once, or once per open window it falls in.
/// Also returns how many events were late for at least one of their windows.
fn input_rows(case: &Case, window: Window) -> (Vec<InputRow>, usize) {
    let mut rows = Vec::new();
    let mut late = 0;
    for (e, watermark) in accepted(case) {
        let Some((slide, size)) = window_ms(window) else {
            rows.push((e, None));
            continue;
        };
        let t = e.ts.expect("accepted events have a time");
        let mut start = t.div_euclid(slide) * slide;
        let mut missed = false;
        while start + size > t {
            if watermark.is_none_or(|w| start + size > w) {
                rows.push((e.clone(), Some((start, start + size))));
            } else {
                missed = true;
            }
            start -= slide;
        }
        late += usize::from(missed);
    }
    (rows, late)
}

/// Events that were late for at least one window they fall in (the view's `late_rows`; a
/// HOP row may miss only its oldest windows).
pub fn late_rows(case: &Case, view: &ViewSpec) -> usize {
    match view.window {
        Window::None => 0,
        w => input_rows(case, w).1,
    }
}

fn input_table(case: &Case, window: Window) -> RecordBatch {
    let (rows, _) = input_rows(case, window);
    let mut fields = vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("g", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("ts", ts_type(), true),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(rows.iter().map(|(e, _)| e.k))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(e, _)| e.g))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|(e, _)| e.v))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|(e, _)| e.x))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(e, _)| e.b))),
        Arc::new(TimestampMillisecondArray::from_iter(
            rows.iter().map(|(e, _)| e.ts),
        )),
    ];
    if window != Window::None {
        fields.push(Field::new("window_start", ts_type(), false));
        fields.push(Field::new("window_end", ts_type(), false));
        cols.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|(_, w)| w.expect("windowed").0),
        )));
        cols.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|(_, w)| w.expect("windowed").1),
        )));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("oracle input")
}

/// What the batch side expects of a view.
pub struct Expected {
    pub names: Vec<String>,
    /// The view's rows as text in Weir's canonical form.
    pub rows: Rows,
    /// The rows each of the view's reads selects (before its LIMIT, unless it is ordered), or
    /// why the batch side refused it.
    pub reads: Vec<Result<Rows, String>>,
}

pub type Rows = Vec<Vec<Option<String>>>;

/// Runs the view's SELECT as a batch query, then each of its reads over that result.
pub async fn expected_rows(case: &Case, view: &ViewSpec) -> Result<Expected, String> {
    let err = |e: datafusion::error::DataFusionError| e.to_string();
    let ctx = SessionContext::new();
    weir_udfs::register(&ctx);
    let input = input_table(case, view.window);
    let table = MemTable::try_new(input.schema(), vec![vec![input]]).map_err(err)?;
    ctx.register_table(EVENTS, Arc::new(table)).map_err(err)?;
    let df = ctx.sql(&view.select(EVENTS)).await.map_err(err)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let batches = df.collect().await.map_err(err)?;
    let schema = batches.first().map_or(schema, |b| b.schema());
    // The same text conversion Weir's side uses: DataFusion's cast to text.
    let result = MemTable::try_new(schema, vec![batches]).map_err(err)?;
    ctx.register_table("result", Arc::new(result))
        .map_err(err)?;
    let text = |sql: String| {
        let ctx = &ctx;
        async move {
            let batches = ctx.sql(&sql).await.map_err(err)?.collect().await;
            batches.map(|b| to_cells(&b)).map_err(err)
        }
    };
    let rows = text(canonical_select(&names, "result")).await?;
    let mut reads = Vec::new();
    for read in &view.reads {
        // An ordered read expects exactly its first rows; an unordered one, any of them.
        let expected = if read.order_by.is_empty() {
            Read {
                limit: None,
                ..read.clone()
            }
        } else {
            read.clone()
        };
        reads.push(text(expected.text_sql(&names, "result")).await);
    }
    Ok(Expected { names, rows, reads })
}

/// Every column cast to text by DataFusion, so both sides format values the same way.
pub fn canonical_select(columns: &[String], table: &str) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST(\"{c}\" AS VARCHAR)"))
        .collect();
    format!("SELECT {} FROM {table}", cols.join(", "))
}
