//! Columns no view reads. A source's decoder can leave them out of its batches (their values
//! are still checked, so which lines become dead letters does not change); each batch then
//! keeps the lines its rows came from, so a row shown to a user (a late row, a refused row)
//! is still shown whole: its skipped columns are decoded again from its line.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use super::JsonDecoder;

/// Which columns a decoder skips, and a decoder that reads them all.
#[derive(Debug, Clone)]
pub(super) struct Skipping {
    /// Per decoded column, whether it is skipped.
    pub mask: Arc<[bool]>,
    /// The same decoder reading every column (and without a future guard).
    pub whole: Arc<JsonDecoder>,
}

/// The text of a decoded chunk and the line of each of its rows.
pub struct SourceLines {
    data: Vec<u8>,
    /// The line (`start`, `end` in `data`) of each row of the chunk's batch.
    rows: Vec<(usize, usize)>,
    skipping: Skipping,
}

impl std::fmt::Debug for SourceLines {
    /// Sizes, not the chunk's megabyte of text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLines")
            .field("bytes", &self.data.len())
            .field("rows", &self.rows.len())
            .field("skipped", &self.skipping.mask)
            .finish()
    }
}

impl SourceLines {
    pub(super) fn new(data: Vec<u8>, rows: Vec<(usize, usize)>, skipping: Skipping) -> Self {
        Self {
            data,
            rows,
            skipping,
        }
    }

    /// `row`, one row of the chunk's batch (row `index` of it), with its skipped columns
    /// decoded from its line. Should the line not decode alone (it decoded with its chunk),
    /// the row is returned as it is.
    pub fn whole_row(&self, row: RecordBatch, index: usize) -> RecordBatch {
        let Some(&line) = self.rows.get(index) else {
            return row;
        };
        let whole = match self.skipping.whole.decode_line(&self.data, line) {
            Some(whole) => whole,
            None => return row,
        };
        let columns = row
            .columns()
            .iter()
            .enumerate()
            .map(|(i, column)| match self.skipping.mask.get(i) {
                Some(true) => whole.column(i).clone(),
                _ => column.clone(),
            })
            .collect();
        RecordBatch::try_new(row.schema(), columns).unwrap_or(row)
    }
}
