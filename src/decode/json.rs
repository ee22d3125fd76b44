//! JSON lines into Arrow, vectorized, with a per-line fallback that isolates bad lines.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, max, take};
use datafusion::arrow::csv::ReaderBuilder as CsvReaderBuilder;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;

use super::flat_json::FlatJson;
use super::skipped::{Skipping, SourceLines};
use super::{DeadLetter, Decoded, FutureGuard};
use crate::source::LineChunk;

/// How each line of a source is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// Comma- (or `delimiter`-) separated values in declared column order; with `header`,
    /// the first line of each file is column names and is skipped.
    Csv {
        header: bool,
        delimiter: u8,
    },
}

/// Decodes lines (JSON or CSV) into batches of one schema.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
    /// The event-time column, which must not be NULL.
    required: Option<usize>,
    format: Format,
    /// Refuses event times too far ahead (none: every time is admitted).
    guard: Option<FutureGuard>,
    /// The fast path for flat JSON lines, when the schema's types allow it.
    flat: Option<Arc<FlatJson>>,
    /// The columns the fast path leaves out ([`JsonDecoder::reading_only`]).
    skipping: Option<Skipping>,
}

/// Longest raw text kept in a dead letter.
const MAX_RAW: usize = 4096;
/// The deepest JSON nesting a line may have (serde_json's default limit too).
const MAX_JSON_DEPTH: usize = 128;

/// Whether `line` nests arrays and objects deeper than [`MAX_JSON_DEPTH`]. Lines with fewer
/// opening brackets than that cost one memchr pass; only the others are walked.
fn json_too_deep(line: &[u8]) -> bool {
    if memchr::memchr2_iter(b'[', b'{', line)
        .nth(MAX_JSON_DEPTH)
        .is_none()
    {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in line {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `(start, end)` of each non-blank line in `data`, `end` excluding the newline. Newlines are
/// found with `memchr` (SIMD): a byte-at-a-time search was ~40% of a decode thread's samples.
pub fn line_spans(data: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(data.len() / 64 + 1);
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len()));
    for end in ends {
        if data[start..end].iter().any(|b| !b.is_ascii_whitespace()) {
            spans.push((start, end));
        }
        start = end + 1;
    }
    spans
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef, required: Option<usize>) -> Self {
        Self {
            flat: FlatJson::new(schema.clone()).map(Arc::new),
            schema,
            required,
            format: Format::Json,
            guard: None,
            skipping: None,
        }
    }

    /// The same decoder keeping only the columns `read` marks (indexes of the decoded
    /// schema) and the event-time column. The fast path checks the others but leaves them
    /// null, and each [`Decoded`] then carries its chunk's lines ([`SourceLines`]) to show a
    /// row whole. Lines arrow-json decodes keep every column. Set the format first.
    pub fn reading_only(mut self, read: &[bool]) -> Self {
        let mask: Vec<bool> = (0..self.schema.fields().len())
            .map(|i| !read.get(i).copied().unwrap_or(true) && Some(i) != self.required)
            .collect();
        let Some(flat) = self.flat.as_ref().filter(|_| self.format == Format::Json) else {
            return self;
        };
        if !mask.contains(&true) {
            return self;
        }
        let flat = Arc::new(flat.as_ref().clone().skipping(&mask));
        let whole = Arc::new(Self {
            skipping: None,
            ..self.without_guard()
        });
        self.flat = Some(flat);
        self.skipping = Some(Skipping {
            mask: mask.into(),
            whole,
        });
        self
    }

    /// The one line `span` of `data` decoded alone, every column read; None when it does not
    /// decode to one row.
    pub(super) fn decode_line(&self, data: &[u8], span: (usize, usize)) -> Option<RecordBatch> {
        self.decode_lines(data, &[span], true)
            .ok()
            .filter(|b| b.num_rows() == 1)
    }

    /// The same decoder without its future guard, for [`JsonDecoder::decode_unguarded`] on
    /// other threads.
    pub fn without_guard(&self) -> Self {
        Self {
            guard: None,
            ..self.clone()
        }
    }

    /// The same decoder refusing event times `guard` finds too far ahead.
    pub fn with_future_guard(mut self, guard: FutureGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The largest event time in a decoded batch (None without an event-time column).
    pub fn max_event_time(&self, batch: &RecordBatch) -> Option<i64> {
        let column = batch.column(self.required?);
        let times = column
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()?;
        max(times)
    }

    /// The same decoder for lines in `format`.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Decodes the lines `spans` of `data` into one batch, one row per line. A line that is
    /// not exactly one record (a truncated value, two objects, a quoted CSV field running
    /// into the next line, a carriage return splitting a CSV line) is an error, so rows
    /// never shift onto the wrong line.
    fn decode_lines(
        &self,
        data: &[u8],
        spans: &[(usize, usize)],
        try_flat: bool,
    ) -> Result<RecordBatch, ArrowError> {
        let capacity = spans.len() + 1;
        let batch = match self.format {
            Format::Json => {
                let flat = self.flat.as_ref().filter(|_| try_flat);
                if let Some(batch) = flat.and_then(|f| f.decode(data, spans)) {
                    return Ok(batch);
                }
                let mut decoder = ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(capacity)
                    .build_decoder()?;
                for (i, &(start, end)) in spans.iter().enumerate() {
                    feed(&data[start..end], |b| decoder.decode(b))?;
                    if decoder.has_partial_record() {
                        return Err(ArrowError::JsonError(
                            "the line ends inside a JSON value".into(),
                        ));
                    }
                    let found = decoder.len() - i;
                    if found != 1 {
                        return Err(ArrowError::JsonError(format!(
                            "expected one JSON object on the line, found {found}"
                        )));
                    }
                }
                decoder.flush()?
            }
            Format::Csv { delimiter, .. } => {
                let mut decoder = CsvReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(capacity)
                    .build_decoder();
                for (i, &(start, end)) in spans.iter().enumerate() {
                    // The record must end at the line's newline, not before it (a carriage
                    // return inside the line), nor after it (a quote left open).
                    let line = &data[start..end];
                    let body = line.len() - line.iter().rev().take_while(|b| **b == b'\r').count();
                    feed(&line[..body], |b| decoder.decode(b))?;
                    let early = capacity - decoder.capacity() - i;
                    feed(b"\n", |b| decoder.decode(b))?;
                    let found = capacity - decoder.capacity() - i;
                    let problem = match (early, found) {
                        (0, 1) => continue,
                        (0, _) => "the line ends inside a quoted field".to_string(),
                        (n, _) => format!("{n} record(s) end before the line does (a carriage return outside quotes ends a record)"),
                    };
                    return Err(ArrowError::CsvError(format!(
                        "expected one CSV record on the line: {problem}"
                    )));
                }
                decoder.flush()?
            }
        };
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }

    /// Decodes every line of `chunk`; bad lines become dead letters.
    pub fn decode(&mut self, chunk: LineChunk) -> Decoded {
        let unguarded = self.decode_unguarded(&chunk);
        self.admit(chunk, unguarded)
    }

    /// Decodes every line of `chunk` but for the future guard, which depends on the chunks
    /// before: this part may run on several chunks at once, on other threads, as long as
    /// [`JsonDecoder::admit`] then takes the results in the chunks' order.
    pub fn decode_unguarded(&self, chunk: &LineChunk) -> Unguarded {
        let data = &chunk.data;
        let mut spans = line_spans(data);
        let file_header = chunk.record_ends.is_none() && chunk.start_offset == 0;
        if matches!(self.format, Format::Csv { header: true, .. })
            && file_header
            && !spans.is_empty()
        {
            spans.remove(0);
        }
        let lines = Lines { chunk, spans };
        let mut dead = Vec::new();
        // Flat lines (most chunks) are read whole by the fast path, which declines any nesting,
        // so they need no depth check.
        let flat = match self.format {
            Format::Json => self
                .flat
                .as_ref()
                .and_then(|f| f.decode(data, &lines.spans)),
            Format::Csv { .. } => None,
        };
        let (batch, good_spans) = match flat {
            Some(batch) => (batch, lines.spans.clone()),
            None => self.decode_checked(&lines, &mut dead),
        };
        let (batch, good_spans) = self.drop_null_event_times(batch, good_spans, &lines, &mut dead);
        let batch = match &chunk.extra {
            Some(extra) => {
                let rows = UInt32Array::from_iter_values(
                    good_spans.iter().map(|s| lines.index(*s) as u32),
                );
                append_columns(batch, extra, &rows, &self.schema)
            }
            None => batch,
        };
        dead.extend(chunk.rejected.iter().map(|r| DeadLetter {
            position: format!("{}/{}", chunk.file_name, r.offset),
            raw: r.raw.clone(),
            error: r.reason.clone(),
            at_ms: 0,
            end: r.offset + 1,
        }));
        Unguarded {
            batch,
            rows: good_spans,
            spans: lines.spans,
            dead,
        }
    }

    /// Decodes the lines of a chunk the fast path declined: lines nested too deep and lines
    /// arrow-json refuses become dead letters; returns the rest and their spans.
    fn decode_checked(
        &self,
        lines: &Lines<'_>,
        dead: &mut Vec<DeadLetter>,
    ) -> (RecordBatch, Vec<(usize, usize)>) {
        let data = &lines.chunk.data;
        // JSON nested deeper than MAX_JSON_DEPTH is refused before arrow-json sees it: its
        // error message prints the value recursively, and 100,000 `[` overflow the stack.
        let decodable: Vec<(usize, usize)> = match self.format {
            Format::Json => lines
                .spans
                .iter()
                .copied()
                .filter(|&span| match json_too_deep(&data[span.0..span.1]) {
                    false => true,
                    true => {
                        let reason = format!("JSON nested deeper than {MAX_JSON_DEPTH} levels");
                        dead.push(lines.dead_letter(span, reason));
                        false
                    }
                })
                .collect(),
            Format::Csv { .. } => lines.spans.clone(),
        };
        // Fast path: the whole chunk at once. Slow path on any error: line by line.
        // From the first line kept (a CSV header before it is not data).
        // Without a line refused above, the fast path has declined this chunk already.
        let retry_flat = decodable.len() != lines.spans.len();
        match self.decode_lines(data, &decodable, retry_flat) {
            Ok(batch) if batch.num_rows() == decodable.len() => (batch, decodable),
            _ => {
                let mut good = Vec::with_capacity(decodable.len());
                let mut rows = Vec::with_capacity(decodable.len());
                for &span in &decodable {
                    match self.decode_lines(data, &[span], true) {
                        Ok(b) if b.num_rows() == 1 => {
                            good.push(span);
                            rows.push(b);
                        }
                        Ok(b) => dead.push(lines.dead_letter(
                            span,
                            format!("expected one record on the line, found {}", b.num_rows()),
                        )),
                        Err(e) => dead.push(lines.dead_letter(span, e.to_string())),
                    }
                }
                // Lines that decode alone decode together; should they not, the rows of
                // each line are joined as they are.
                let batch = match self.decode_lines(data, &good, true) {
                    Ok(b) if b.num_rows() == good.len() => b,
                    _ => concat_batches(&self.schema, &rows)
                        .expect("every line's batch has the decoder's schema"),
                };
                (batch, good)
            }
        }
    }

    /// Applies the future guard to a chunk decoded by [`JsonDecoder::decode_unguarded`]:
    /// rows whose event time is too far ahead become dead letters. Takes chunks in order.
    pub fn admit(&mut self, chunk: LineChunk, unguarded: Unguarded) -> Decoded {
        let Unguarded {
            batch,
            mut rows,
            spans,
            mut dead,
        } = unguarded;
        let lines = Lines {
            chunk: &chunk,
            spans,
        };
        let times = self.required.and_then(|col| {
            batch
                .column(col)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .cloned()
        });
        // Most chunks are admitted whole, decided from their largest time.
        let checked = match (self.guard.as_mut(), times) {
            (Some(guard), Some(times)) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let all = guard.admits_all(chunk.split, times.values(), now_ms);
                (!all).then_some((guard, times, now_ms))
            }
            _ => None,
        };
        let (batch, row_ends) = match checked {
            Some((guard, times, now_ms)) => {
                let mut keep = Vec::with_capacity(rows.len());
                let mut row_ends = Vec::with_capacity(rows.len());
                for (i, span) in rows.iter().enumerate() {
                    match guard.admit(chunk.split, times.value(i), now_ms) {
                        Ok(()) => {
                            keep.push(true);
                            row_ends.push(lines.end_of(*span));
                        }
                        Err(reason) => {
                            keep.push(false);
                            dead.push(lines.dead_letter(*span, reason));
                        }
                    }
                }
                if row_ends.len() == keep.len() {
                    (batch, row_ends)
                } else {
                    let mut kept = keep.iter();
                    rows.retain(|_| *kept.next().expect("a mask entry per row"));
                    let batch = filter_record_batch(&batch, &BooleanArray::from(keep))
                        .expect("mask matches batch length");
                    (batch, row_ends)
                }
            }
            _ => {
                let row_ends = rows.iter().map(|s| lines.end_of(*s)).collect();
                (batch, row_ends)
            }
        };
        let lines = self
            .skipping
            .clone()
            .map(|skipping| SourceLines::new(chunk.data, rows, skipping));
        Decoded {
            batch,
            row_ends,
            dead,
            lines,
        }
    }

    /// Rows whose event-time value is missing or NULL become dead letters.
    fn drop_null_event_times(
        &self,
        batch: RecordBatch,
        spans: Vec<(usize, usize)>,
        lines: &Lines<'_>,
        dead: &mut Vec<DeadLetter>,
    ) -> (RecordBatch, Vec<(usize, usize)>) {
        let Some(col) = self.required else {
            return (batch, spans);
        };
        let ts = batch.column(col).clone();
        if ts.null_count() == 0 {
            return (batch, spans);
        }
        let name = self.schema.field(col).name().clone();
        let mut keep = Vec::with_capacity(spans.len());
        let mut kept = Vec::with_capacity(spans.len());
        for (i, span) in spans.into_iter().enumerate() {
            keep.push(!ts.is_null(i));
            if ts.is_null(i) {
                let reason = format!("missing or NULL event-time column '{name}'");
                dead.push(lines.dead_letter(span, reason));
            } else {
                kept.push(span);
            }
        }
        let keep = BooleanArray::from(keep);
        let batch = filter_record_batch(&batch, &keep).expect("mask matches batch length");
        (batch, kept)
    }
}

/// A chunk decoded up to the future guard: the rows, the line each came from, every line of
/// the chunk, and the dead letters so far.
pub struct Unguarded {
    batch: RecordBatch,
    rows: Vec<(usize, usize)>,
    spans: Vec<(usize, usize)>,
    dead: Vec<DeadLetter>,
}

/// The lines of a chunk, to place a row or a dead letter in its file or partition.
struct Lines<'a> {
    chunk: &'a LineChunk,
    /// Every data line of the chunk, in order.
    spans: Vec<(usize, usize)>,
}

impl Lines<'_> {
    /// The index of a line among all lines (record sources map it to a record offset).
    fn index(&self, span: (usize, usize)) -> usize {
        self.spans.partition_point(|s| s.0 < span.0)
    }

    /// The position after the line.
    fn end_of(&self, span: (usize, usize)) -> u64 {
        match &self.chunk.record_ends {
            Some(ends) => ends[self.index(span)],
            None => self.chunk.start_offset + span.1 as u64 + 1,
        }
    }

    fn dead_letter(&self, span: (usize, usize), error: String) -> DeadLetter {
        let chunk = self.chunk;
        DeadLetter {
            position: match &chunk.record_ends {
                Some(ends) => format!("{}/{}", chunk.file_name, ends[self.index(span)] - 1),
                None => format!("{}:{}", chunk.file_name, chunk.start_offset + span.0 as u64),
            },
            raw: String::from_utf8_lossy(&chunk.data[span.0..span.1.min(span.0 + MAX_RAW)])
                .into_owned(),
            error,
            at_ms: 0,
            end: self.end_of(span),
        }
    }
}

/// Hands all of `bytes` to an incremental decoder that takes what it can per call.
fn feed(
    bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    let mut consumed = 0;
    while consumed < bytes.len() {
        let n = decode(&bytes[consumed..])?;
        if n == 0 {
            break;
        }
        consumed += n;
    }
    Ok(())
}

/// `batch` with the `rows` of `extra` appended as columns (the output schema is the decoded
/// schema followed by `extra`'s fields).
fn append_columns(
    batch: RecordBatch,
    extra: &RecordBatch,
    rows: &UInt32Array,
    decoded: &SchemaRef,
) -> RecordBatch {
    let mut fields: Vec<_> = decoded.fields().iter().cloned().collect();
    fields.extend(extra.schema().fields().iter().cloned());
    let mut columns = batch.columns().to_vec();
    for column in extra.columns() {
        columns.push(take(column, rows, None).expect("indices are in range"));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("decoded and extra columns have matching lengths")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn line_spans_skip_blank_lines_and_keep_an_unterminated_last_line() {
        assert_eq!(line_spans(b""), vec![]);
        assert_eq!(line_spans(b"\n\n"), vec![]);
        assert_eq!(line_spans(b"a\n"), vec![(0, 1)]);
        assert_eq!(line_spans(b"a\n \t\r\nbc"), vec![(0, 1), (6, 8)]);
        assert_eq!(line_spans(b"\nab\n\ncd\n"), vec![(1, 3), (5, 7)]);
    }

    fn decoder() -> JsonDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        JsonDecoder::new(schema, Some(2))
    }

    fn chunk(text: &str) -> LineChunk {
        LineChunk {
            file_name: "f.json".into(),
            split: 0,
            start_offset: 100,
            data: text.as_bytes().to_vec(),
            record_ends: None,
            extra: None,
            skipped: 0,
            rejected: Vec::new(),
            end: 100 + text.len() as u64,
        }
    }

    #[test]
    fn good_lines_decode_with_positions() {
        let d = decoder().decode(chunk(
            "{\"k\":\"a\",\"v\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"extra\":true}\n\n{\"k\":\"b\",\"ts\":1767225600000}\n",
        ));
        assert!(d.dead.is_empty(), "{:?}", d.dead);
        assert_eq!(d.batch.num_rows(), 2);
        assert_eq!(d.batch.column(1).null_count(), 1);
        assert_eq!(d.row_ends, vec![100 + 57, 100 + 87]);
    }

    #[test]
    fn flat_chunks_take_the_fast_path_and_others_fall_back_to_arrow_json() {
        let mut general = JsonDecoder {
            flat: None,
            ..decoder()
        };
        assert!(
            decoder().flat.is_some(),
            "text, integers and times are read on the fast path"
        );
        let flat =
            "{\"k\":\"a\",\"v\":1,\"ts\":\"2026-01-01 00:00:00.5\"}\n{\"k\":null,\"ts\":7}\n";
        // A nested value and an escape are the fast path's to decline, not to misread.
        let mixed = format!("{flat}{{\"k\":\"b\\\"c\",\"v\":2,\"ts\":8,\"o\":{{\"x\":[1]}}}}\n");
        for text in [flat.to_string(), mixed] {
            let (fast, slow) = (decoder().decode(chunk(&text)), general.decode(chunk(&text)));
            assert!(fast.dead.is_empty() && slow.dead.is_empty());
            assert_eq!(fast.batch, slow.batch);
            assert_eq!(fast.row_ends, slow.row_ends);
        }
    }

    #[test]
    fn bad_lines_become_dead_letters_and_good_ones_stay() {
        let text = "{\"k\":\"a\",\"ts\":1}\nnot json\n{\"k\":\"b\",\"v\":\"x\",\"ts\":2}\n{\"k\":\"c\"}\n{\"k\":\"d\",\"ts\":3}\n";
        let d = decoder().decode(chunk(text));
        assert_eq!(d.batch.num_rows(), 2);
        let errors: Vec<_> = d.dead.iter().map(|x| x.raw.as_str()).collect();
        assert_eq!(
            errors,
            vec![
                "not json",
                "{\"k\":\"b\",\"v\":\"x\",\"ts\":2}",
                "{\"k\":\"c\"}"
            ]
        );
        assert!(d.dead[2].error.contains("event-time"));
        assert_eq!(d.dead[0].position, "f.json:117");
    }

    /// The rows' event times and the dead letters' raw text of `d`.
    fn outcome(d: &Decoded) -> (Vec<i64>, Vec<String>) {
        let ts = d
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        (
            ts.values().to_vec(),
            d.dead.iter().map(|x| x.raw.clone()).collect(),
        )
    }

    #[test]
    fn json_nested_too_deep_is_a_dead_letter_not_a_stack_overflow() {
        // Found by tests/integration/fuzz.rs: arrow-json's error for a value of the wrong type prints the
        // value recursively; 100,000 nested arrays overflowed the decoder's stack.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let fine = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let brackets_in_text = format!("\"{}\"", "[".repeat(1000));
        let text = format!(
            "{{\"k\":{deep},\"ts\":1}}\n{{\"ts\":2,\"other\":{fine}}}\n{{\"k\":{brackets_in_text},\"ts\":3}}\n"
        );
        let d = decoder().decode(chunk(&text));
        assert_eq!(d.batch.num_rows(), 2, "{:?}", d.dead);
        assert_eq!(d.dead.len(), 1);
        assert_eq!(d.dead[0].error, "JSON nested deeper than 128 levels");
        assert!(json_too_deep(deep.as_bytes()));
        assert!(!json_too_deep(fine.as_bytes()));
        assert!(!json_too_deep(brackets_in_text.as_bytes()));
    }

    #[test]
    fn a_line_is_one_row_or_one_dead_letter_whatever_its_neighbours() {
        // Found by tests/integration/fuzz.rs: decoded as one stream, two objects on the first line and
        // an object split over the last two made as many rows as lines, each on the wrong
        // line.
        let d = decoder().decode(chunk(
            "{\"ts\":1}{\"ts\":2}\n{\"ts\":3,\"k\":\n\"a\"}\n{\"ts\":4}\n",
        ));
        assert_eq!(
            outcome(&d),
            (
                vec![4],
                vec![
                    "{\"ts\":1}{\"ts\":2}".to_string(),
                    "{\"ts\":3,\"k\":".into(),
                    "\"a\"}".into()
                ]
            )
        );
        assert_eq!(d.row_ends, vec![100 + 44]);
        assert!(d.dead[0].error.contains("found 2"), "{}", d.dead[0].error);
        assert!(
            d.dead[1].error.contains("ends inside"),
            "{}",
            d.dead[1].error
        );
    }

    fn csv_decoder() -> JsonDecoder {
        decoder().with_format(Format::Csv {
            header: false,
            delimiter: b',',
        })
    }

    #[test]
    fn a_csv_quote_or_carriage_return_never_moves_rows_to_another_line() {
        // Found by tests/integration/fuzz.rs: a quoted field ran into the next line and a bare carriage
        // return split a line, so the rows after them shifted.
        let d = csv_decoder().decode(chunk(
            "a,1,1970-01-01T00:00:00.001Z\rb,2,1970-01-01T00:00:00.002Z\n\"c,3,1970-01-01T00:00:00.003Z\nd\",4,1970-01-01T00:00:00.004Z\ne,5,1970-01-01T00:00:00.005Z\n\
             f,6,1970-01-01T00:00:00.006Z\r\"g\nh,8,1970-01-01T00:00:00.008Z\n",
        ));
        // A quote inside an unquoted field (`d"`) is text, as in any CSV reader. The line
        // `f,6,...\r"g` is a record and then an open quote: a dead letter, not a row with
        // `"g` silently dropped.
        let (rows, dead) = outcome(&d);
        assert_eq!(rows, vec![4, 5, 8]);
        assert_eq!(dead.len(), 3, "{dead:?}");
        assert!(d.dead.iter().all(|x| x.error.contains("one CSV record")));
    }

    #[test]
    fn csv_lines_ending_in_crlf_decode() {
        let d = csv_decoder().decode(chunk(
            "a,1,1970-01-01T00:00:00.001Z\r\n\"b\r\",2,1970-01-01T00:00:00.002Z\r\nc,3,1970-01-01T00:00:00.003Z",
        ));
        assert_eq!(outcome(&d), (vec![1, 2, 3], vec![]));
        let k = d
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(k.value(1), "b\r");
    }

    #[test]
    fn records_refused_by_the_reader_become_dead_letters_at_their_offset() {
        let mut c = chunk("{\"k\":\"a\",\"ts\":1}\n");
        c.file_name = "3".into();
        c.record_ends = Some(vec![8]);
        c.rejected = vec![crate::source::RejectedRecord {
            offset: 8,
            raw: "{\"k\":".into(),
            reason: "too large".into(),
        }];
        let d = decoder().decode(c);
        assert_eq!(d.batch.num_rows(), 1);
        assert_eq!(d.row_ends, vec![8]);
        assert_eq!(d.dead.len(), 1);
        assert_eq!(
            (
                d.dead[0].position.as_str(),
                d.dead[0].error.as_str(),
                d.dead[0].end
            ),
            ("3/8", "too large", 9)
        );
    }

    /// Columns no view reads come out null on the fast path, their values still checked, and
    /// a row is shown whole from its line; the event-time column is always read.
    #[test]
    fn unread_columns_are_checked_left_null_and_shown_whole_from_the_line() {
        let mut d = decoder().reading_only(&[false, true, false]);
        let text = "{\"k\":\"a\",\"v\":1,\"ts\":5}\n{\"k\":\"b\",\"v\":2,\"ts\":6}\n";
        let decoded = d.decode(chunk(text));
        assert!(decoded.dead.is_empty(), "{:?}", decoded.dead);
        assert_eq!(decoded.batch.column(0).null_count(), 2, "k is not read");
        assert_eq!(decoded.batch.column(2).null_count(), 0, "ts is always read");
        let lines = decoded.lines.expect("lines kept while columns are skipped");
        let whole = lines.whole_row(decoded.batch.slice(1, 1), 1);
        let k = whole
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!((k.len(), k.value(0)), (1, "b"));
        // A value of the wrong type in an unread column is a dead letter all the same.
        let bad = d.decode(chunk(
            "{\"k\":7,\"v\":1,\"ts\":5}\n{\"k\":\"c\",\"ts\":6}\n",
        ));
        assert_eq!((bad.batch.num_rows(), bad.dead.len()), (1, 1));
        // Nothing skipped: no lines kept.
        assert!(decoder()
            .reading_only(&[true, true, false])
            .decode(chunk(text))
            .lines
            .is_none());
    }
}
