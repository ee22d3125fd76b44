//! The per-group layout of a view: its keys, its value formats, and the row codec both use.
//!
//! Every group of a view has one key, `view \0 window_start group_key`: the window start as
//! eight order-preserving bytes (0 for a view without windows), then the group's columns other
//! than `window_start`/`window_end` (which the window start already says) in Arrow's row
//! format, which compares bytewise in the columns' order. So a view's keys sort
//! by window, then by key: a time range is a key range and a group is a point read.
//!
//! Under that key `view_rows` holds one value per group (see [`StoredValue`]): while the
//! group's window is open, its output row and its accumulators' state together (or the state
//! alone while HAVING hides the row), so an epoch writes one value per touched group; once
//! the window has closed, the row alone. Readers of the view skip the state.
//!
//! A window that opens and closes within one epoch (every window of a catch-up or a replay)
//! has nothing stored to replace, so its final rows go out in *row blocks* instead: up to
//! [`BLOCK_ROWS`] rows in key order in one value, under `view \0 window_start 0xFF
//! first_group_key` ([`ViewKeys::block`]). RocksDB's cost is mostly per key (the memtable's
//! skip list, the write batch's and the WAL's record framing), so a block costs about what one
//! row did. No group key starts with 0xFF (Arrow's row format starts each column with 0, 1 or
//! 2), so a window's blocks sort after its single-group values, and the block that may hold
//! a group is the last one at or before `0xFF group_key`.
//!
//! A window whose first epoch brings many groups (a bulk load, a view's first epoch after a
//! replay) has nothing stored to replace either, but stays open: its groups go out in *open
//! row blocks*, each entry a group's whole open value (row and state), under `view \0
//! window_start 0xFE first_group_key` ([`ViewKeys::open_block`]). A later epoch that changes
//! such a group writes its single value as usual; the single value *shadows* the block's
//! entry, which is never rewritten. So a group of such a window is its single value if it has
//! one, else its entry in the open block at or before it; readers of ranges merge the two
//! (`view_read`), point readers look for the single value first.
//!
//! The row format is not promised stable across Arrow releases, so [`STATE_FORMAT`] names
//! the layout and a golden test pins its bytes: when an upgrade changes them the test fails
//! and the format number goes up; a view stored in a format older than
//! [`OLDEST_READ_FORMAT`] is rebuilt from its source.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::{window_key_prefix, window_start_bytes, StateError};

/// The version of the per-group layout, stored in every value and in each view's progress.
/// Format 8 adds open row blocks (a window's first groups, shadowed by later single values);
/// format 7 packs row blocks (each entry's key and row keep only what differs from the entry
/// before); format 6 adds row blocks (closed windows' rows, many to a value); format 5 stores the
/// per-entity states of stateful functions (`anomaly_score`'s baselines) in a compact varint
/// form; format 4 kept a group's row and state in one `view_rows` value too, with fixed-width
/// entity states; format 3 kept a group's state under the same key in `group_state`.
pub const STATE_FORMAT: u8 = 8;

/// The oldest format this Weir reads as it is: formats 6 to 8 only added kinds of value, so a
/// view stored in format 5 to 7 goes on (and is stamped 8, so an older Weir refuses it rather
/// than meet a block it cannot read). Older views are rebuilt from their sources.
pub const OLDEST_READ_FORMAT: u8 = 5;

/// Whether a value's first byte is a format this Weir reads.
fn readable(format: u8) -> bool {
    (OLDEST_READ_FORMAT..=STATE_FORMAT).contains(&format)
}

/// At most this many rows go into one row block.
pub const BLOCK_ROWS: usize = 128;
/// A row block is closed once it holds this many bytes.
const BLOCK_BYTES: usize = 16 * 1024;
/// The byte between a window start and a row block's first group key.
pub(super) const BLOCK_MARK: u8 = 0xFF;
/// The byte between a window start and an open row block's first group key: a window's open
/// blocks sort after its single values and before its row blocks.
pub(super) const OPEN_BLOCK_MARK: u8 = 0xFE;

/// Encodes and decodes columns of fixed types as rows.
#[derive(Debug)]
pub struct RowCodec {
    converter: RowConverter,
    what: &'static str,
}

impl RowCodec {
    /// A codec for columns of `types`; `what` names them in errors.
    pub fn new(types: &[DataType], what: &'static str) -> Result<Self, StateError> {
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
            what,
        })
    }

    /// A codec for the columns of `schema`.
    pub fn for_schema(schema: &Schema, what: &'static str) -> Result<Self, StateError> {
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Self::new(&types, what)
    }

    /// One row per index of `columns` (which must all have the same length).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Rows, StateError> {
        Ok(self.converter.convert_columns(columns)?)
    }

    /// The columns of `rows`, each made by a codec of the same types.
    pub fn decode<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>, StateError> {
        let parser = self.converter.parser();
        let rows: Vec<&[u8]> = rows.into_iter().collect();
        // Bytes from disk that are not such rows make the decoder panic; that is corruption,
        // reported as an error and not a crash.
        catch_unwind(AssertUnwindSafe(|| {
            self.converter
                .convert_rows(rows.iter().map(|r| parser.parse(r)))
        }))
        .map_err(|_| StateError::Corrupt {
            table: self.what,
            reason: "a stored row does not decode".into(),
        })?
        .map_err(StateError::from)
    }
}

/// The keys of one view.
#[derive(Debug, Clone)]
pub struct ViewKeys {
    prefix: Vec<u8>,
}

impl ViewKeys {
    pub fn new(view: &str) -> Self {
        Self {
            prefix: window_key_prefix(view),
        }
    }

    /// `view \0`: every key of the view starts with it.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The first key of window `start`.
    pub fn window(&self, start: i64) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(&window_start_bytes(start));
        key
    }

    /// The key of the group `group` (its key columns as a row) in window `start`.
    pub fn group(&self, start: i64, group: &[u8]) -> Vec<u8> {
        let mut key = self.window(start);
        key.extend_from_slice(group);
        key
    }

    /// The key range `[from, to)` of windows `from_start <= start < to_start`.
    pub fn windows(&self, from_start: i64, to_start: i64) -> (Vec<u8>, Vec<u8>) {
        let to = if to_start == i64::MAX {
            super::store::prefix_end(&self.prefix)
        } else {
            self.window(to_start)
        };
        (self.window(from_start), to)
    }

    /// The key range of the whole view.
    pub fn all(&self) -> (Vec<u8>, Vec<u8>) {
        (self.prefix.clone(), super::store::prefix_end(&self.prefix))
    }

    /// The key of the row block of window `start` whose first group is `first`.
    pub fn block(&self, start: i64, first: &[u8]) -> Vec<u8> {
        self.marked(start, BLOCK_MARK, first)
    }

    /// The key of the open row block of window `start` whose first group is `first`.
    pub fn open_block(&self, start: i64, first: &[u8]) -> Vec<u8> {
        self.marked(start, OPEN_BLOCK_MARK, first)
    }

    fn marked(&self, start: i64, mark: u8, first: &[u8]) -> Vec<u8> {
        let mut key = self.window(start);
        key.push(mark);
        key.extend_from_slice(first);
        key
    }

    /// The key range that holds the row block of window `start` which may hold `group`, as
    /// its last key: from the window's first block key up to just past `0xFF group`.
    pub fn block_search(&self, start: i64, group: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut to = self.block(start, group);
        to.push(0);
        (self.block(start, &[]), to)
    }

    /// Splits a key of this view into window start and group key (for a row block, `0xFF`
    /// and its first group key).
    pub fn parse<'a>(&self, key: &'a [u8]) -> Option<(i64, &'a [u8])> {
        let rest = key.strip_prefix(self.prefix.as_slice())?;
        let (start, group) = rest.split_at_checked(8)?;
        let start: [u8; 8] = start.try_into().ok()?;
        Some(((u64::from_be_bytes(start) ^ (1 << 63)) as i64, group))
    }
}

/// A group's state as the operators cache it: whether its row is in the view (HAVING may
/// hide it), and its accumulators' state as a row (empty for the one group of a global
/// aggregate that has not seen a row yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredGroup<'a> {
    pub shown: bool,
    pub state: &'a [u8],
}

fn corrupt(reason: &str) -> StateError {
    StateError::Corrupt {
        table: "view_rows",
        reason: reason.into(),
    }
}

impl<'a> StoredGroup<'a> {
    /// The bytes before the state: a value is the header, then the state row.
    pub fn header(shown: bool) -> [u8; 2] {
        [STATE_FORMAT, u8::from(shown)]
    }

    pub fn encode(shown: bool, state: &[u8]) -> Vec<u8> {
        [&Self::header(shown)[..], state].concat()
    }

    pub fn decode(value: &'a [u8]) -> Result<Self, StateError> {
        match value {
            [f, shown @ (0 | 1), state @ ..] if readable(*f) => Ok(Self {
                shown: *shown == 1,
                state,
            }),
            [f, ..] if readable(*f) => Err(corrupt("truncated group state")),
            [] => Err(corrupt("truncated group state")),
            [other, ..] => Err(corrupt(&format!(
                "group state in format {other}, expected {STATE_FORMAT}"
            ))),
        }
    }
}

/// What one `view_rows` value holds. Its bytes: [`STATE_FORMAT`], a kind byte, then
/// - kind 0, a row alone (a closed window's group, an append-only view's row): the row;
/// - kind 1, an open window's shown group: the row's length (u32, little-endian), the row,
///   the state;
/// - kind 2, an open window's group HAVING hides: the state;
/// - kind 3, a row block of format 6, each entry whole; kind 4, a packed row block (see
///   [`RowBlock`]);
/// - kind 5, a packed open row block: each entry's row is a whole value of kind 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredValue<'a> {
    Row(&'a [u8]),
    Open {
        row: Option<&'a [u8]>,
        state: &'a [u8],
    },
    Block(RowBlock<'a>),
    OpenBlock(RowBlock<'a>),
}

const ROW_ALONE: u8 = 0;
const ROW_AND_STATE: u8 = 1;
const STATE_ALONE: u8 = 2;
const ROW_BLOCK: u8 = 3;
const PACKED_BLOCK: u8 = 4;
const PACKED_OPEN_BLOCK: u8 = 5;

/// The bytes before a row stored alone.
pub const VIEW_ROW_HEADER: [u8; 2] = [STATE_FORMAT, ROW_ALONE];

impl<'a> StoredValue<'a> {
    /// The bytes before an open group's row and state (`row_len` is None when hidden); the
    /// value is the header, then the row if any, then the state.
    pub fn open_header(row_len: Option<usize>) -> ([u8; 6], usize) {
        match row_len {
            Some(len) => {
                let len = u32::try_from(len).expect("a group row is under 4 GiB");
                let l = len.to_le_bytes();
                ([STATE_FORMAT, ROW_AND_STATE, l[0], l[1], l[2], l[3]], 6)
            }
            None => ([STATE_FORMAT, STATE_ALONE, 0, 0, 0, 0], 2),
        }
    }

    pub fn decode(value: &'a [u8]) -> Result<Self, StateError> {
        match value {
            [f, ..] if !readable(*f) => Err(corrupt(&format!(
                "value in format {f}, expected {STATE_FORMAT}"
            ))),
            [_, ROW_ALONE, row @ ..] => Ok(Self::Row(row)),
            [_, ROW_BLOCK, body @ ..] => Ok(Self::Block(RowBlock::decode(body, false)?)),
            [_, PACKED_BLOCK, body @ ..] => Ok(Self::Block(RowBlock::decode(body, true)?)),
            [_, PACKED_OPEN_BLOCK, body @ ..] => Ok(Self::OpenBlock(RowBlock::decode(body, true)?)),
            [_, ROW_AND_STATE, l0, l1, l2, l3, rest @ ..] => {
                let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
                let (row, state) = rest
                    .split_at_checked(len)
                    .ok_or_else(|| corrupt("a row longer than its value"))?;
                Ok(Self::Open {
                    row: Some(row),
                    state,
                })
            }
            [_, STATE_ALONE, state @ ..] => Ok(Self::Open { row: None, state }),
            _ => Err(corrupt("truncated value")),
        }
    }

    /// The group as the operators cache it; None for rows stored alone (its window closed).
    pub fn group(&self) -> Option<StoredGroup<'a>> {
        match self {
            Self::Row(_) | Self::Block(_) | Self::OpenBlock(_) => None,
            Self::Open { row, state } => Some(StoredGroup {
                shown: row.is_some(),
                state,
            }),
        }
    }

    /// Calls `f` with each output row the value holds (none for a group HAVING hides, many
    /// for a row block) until it breaks; says whether it did.
    pub fn for_each_row(
        &self,
        mut f: impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StateError> {
        match *self {
            Self::Row(row) | Self::Open { row: Some(row), .. } => Ok(f(row)),
            Self::Open { row: None, .. } => Ok(ControlFlow::Continue(())),
            Self::Block(block) => block.for_each(|_, row| f(row)),
            Self::OpenBlock(block) => {
                let mut error = None;
                let flow = block.for_each(|_, entry| match open_entry_row(entry) {
                    Ok(Some(row)) => f(row),
                    Ok(None) => ControlFlow::Continue(()),
                    Err(e) => {
                        error = Some(e);
                        ControlFlow::Break(())
                    }
                })?;
                error.map_or(Ok(flow), Err)
            }
        }
    }

    /// How many output rows the value holds (an open block's entries that do not decode
    /// count none: reading them reports the corruption).
    pub fn row_count(&self) -> usize {
        match self {
            Self::Row(_) | Self::Open { row: Some(_), .. } => 1,
            Self::Open { row: None, .. } => 0,
            Self::Block(block) => block.len(),
            Self::OpenBlock(block) => {
                let mut rows = 0;
                let _ = block.for_each(|_, entry| {
                    rows += usize::from(matches!(open_entry_row(entry), Ok(Some(_))));
                    ControlFlow::Continue(())
                });
                rows
            }
        }
    }
}

/// The row of an open block's entry (a whole open value), None while HAVING hides it.
pub(super) fn open_entry_row(entry: &[u8]) -> Result<Option<&[u8]>, StateError> {
    match StoredValue::decode(entry)? {
        StoredValue::Open { row, .. } => Ok(row),
        _ => Err(corrupt("an open row block's entry is not an open group")),
    }
}

/// A row stored alone: the header, then the row.
pub fn encode_view_row(row: &[u8]) -> Vec<u8> {
    [&VIEW_ROW_HEADER[..], row].concat()
}

/// Calls `f` with each output row of a `view_rows` value (see [`StoredValue::for_each_row`]).
pub fn for_each_view_row(
    value: &[u8],
    f: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, StateError> {
    StoredValue::decode(value)?.for_each_row(f)
}

/// The row of `group` in `value`, which must be a row block (the one found under the block
/// key at or before the group's), if the block holds it. (Open row blocks are searched by
/// `view_read::OpenBlockFinder`.)
pub fn find_in_block(value: &[u8], group: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
    match StoredValue::decode(value)? {
        StoredValue::Block(block) => block.find(group),
        _ => Err(corrupt(
            "a value under a row block's key is not a row block",
        )),
    }
}

/// Rows of a closed window in key order, many to a value: the row count (u32, little-endian),
/// then per row its group key and its row.
///
/// In a packed block (kind 4, written since format 7) each of the two is stored as the length
/// of the prefix it shares with the entry before (a LEB128 number), then the rest as a LEB128
/// length and the bytes. A window's rows in key order share most of their bytes with the row
/// before: the window bounds, the key's high bytes, often whole key columns. A HOP row of
/// ~56 bytes packs into ~25, and the epoch writer's cost (the WAL, the memtable, the kernel's
/// page cache) goes with the bytes. In a block of format 6 (kind 3) each is whole: a LEB128
/// length and the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBlock<'a> {
    rows: usize,
    packed: bool,
    body: &'a [u8],
}

impl<'a> RowBlock<'a> {
    fn decode(bytes: &'a [u8], packed: bool) -> Result<Self, StateError> {
        let (count, body) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated row block"))?;
        Ok(Self {
            rows: u32::from_le_bytes(*count) as usize,
            packed,
            body,
        })
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Calls `f` with each (group key, row), in key order, until it breaks; says whether it
    /// did.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StateError> {
        let mut rest = self.body;
        let (mut key, mut row) = (Vec::new(), Vec::new());
        for _ in 0..self.rows {
            let flow = if self.packed {
                unpack(&mut rest, &mut key)?;
                unpack(&mut rest, &mut row)?;
                f(&key, &row)
            } else {
                let key = take_bytes(&mut rest)?;
                let row = take_bytes(&mut rest)?;
                f(key, row)
            };
            if flow.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The row of `group`, if the block holds it.
    pub fn find(&self, group: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let mut found = None;
        // It breaks at the group or past it; either way the search is over.
        let _ = self.for_each(|key, row| match key.cmp(group) {
            std::cmp::Ordering::Less => ControlFlow::Continue(()),
            std::cmp::Ordering::Equal => {
                found = Some(row.to_vec());
                ControlFlow::Break(())
            }
            std::cmp::Ordering::Greater => ControlFlow::Break(()),
        })?;
        Ok(found)
    }
}

/// Reads one packed entry part into `last` (which holds the part before it).
fn unpack(rest: &mut &[u8], last: &mut Vec<u8>) -> Result<(), StateError> {
    let shared = take_len(rest)?;
    if shared > last.len() {
        return Err(corrupt(
            "a row block entry shares more than the entry before",
        ));
    }
    last.truncate(shared);
    last.extend_from_slice(take_bytes(rest)?);
    Ok(())
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], StateError> {
    let len = take_len(rest)?;
    if len > rest.len() {
        return Err(corrupt("a row block entry longer than the block"));
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Ok(bytes)
}

/// A LEB128 length.
fn take_len(rest: &mut &[u8]) -> Result<usize, StateError> {
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let (byte, tail) = rest
            .split_first()
            .ok_or_else(|| corrupt("truncated row block"))?;
        *rest = tail;
        if shift > 28 {
            return Err(corrupt("a row block's length does not fit"));
        }
        len |= usize::from(byte & 0x7F) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(len);
        }
    }
}

fn put_len(out: &mut Vec<u8>, mut len: usize) {
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
}

/// Builds packed row blocks: rows go in in key order; [`Self::push`] hands back a full block's
/// key suffix (its first group key) and value when the next row does not fit. The rows pushed
/// must outlive the writer: each entry is packed against the one before.
#[derive(Debug, Default)]
pub struct RowBlockWriter<'a> {
    /// Whether each row is a whole open value (an open row block).
    open: bool,
    value: Vec<u8>,
    first: Vec<u8>,
    rows: u32,
    /// The entry before (empty at a block's start).
    last: (&'a [u8], &'a [u8]),
}

impl<'a> RowBlockWriter<'a> {
    /// A writer of open row blocks: each row pushed is a group's whole open value.
    pub fn open_groups() -> Self {
        Self {
            open: true,
            ..Self::default()
        }
    }

    /// Adds a row; when the block was full it is first handed to `emit` (first key, value).
    pub fn push(&mut self, group: &'a [u8], row: &'a [u8], emit: impl FnOnce(&[u8], &[u8])) {
        if self.rows as usize >= BLOCK_ROWS || self.value.len() >= BLOCK_BYTES {
            self.finish(emit);
        }
        if self.rows == 0 {
            self.value.clear();
            let kind = if self.open {
                PACKED_OPEN_BLOCK
            } else {
                PACKED_BLOCK
            };
            self.value
                .extend_from_slice(&[STATE_FORMAT, kind, 0, 0, 0, 0]);
            self.first.clear();
            self.first.extend_from_slice(group);
            self.last = (&[], &[]);
        }
        pack(&mut self.value, self.last.0, group);
        pack(&mut self.value, self.last.1, row);
        self.last = (group, row);
        self.rows += 1;
    }

    /// Hands the block being built, if it has rows, to `emit` and starts anew.
    pub fn finish(&mut self, emit: impl FnOnce(&[u8], &[u8])) {
        if self.rows == 0 {
            return;
        }
        self.value[2..6].copy_from_slice(&self.rows.to_le_bytes());
        emit(&self.first, &self.value);
        self.rows = 0;
    }
}

/// Appends `part` to `out` as the length of its prefix shared with `last`, then the rest.
fn pack(out: &mut Vec<u8>, last: &[u8], part: &[u8]) {
    let shared = shared_prefix(last, part);
    put_len(out, shared);
    put_len(out, part.len() - shared);
    out.extend_from_slice(&part[shared..]);
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("eight bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn keys_sort_by_window_then_group_and_parse_back() {
        let keys = ViewKeys::new("v");
        let codec = RowCodec::new(&[DataType::Utf8, DataType::Int64], "test").unwrap();
        let rows = codec
            .encode(&[
                Arc::new(StringArray::from(vec![Some("b"), Some("a"), None])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ])
            .unwrap();
        let mut all = Vec::new();
        for start in [60_000i64, -60_000, 0] {
            for row in rows.iter() {
                all.push(keys.group(start, row.as_ref()));
            }
        }
        all.sort();
        let parsed: Vec<i64> = all.iter().map(|k| keys.parse(k).unwrap().0).collect();
        assert_eq!(
            parsed,
            vec![-60_000, -60_000, -60_000, 0, 0, 0, 60_000, 60_000, 60_000]
        );
        let (_, group) = keys.parse(&all[0]).unwrap();
        let cols = codec.decode([group]).unwrap();
        // NULL sorts first, then "a" before "b".
        assert!(cols[0].is_null(0));
        let (from, to) = keys.windows(0, 60_000);
        assert!(all.iter().filter(|k| **k >= from && **k < to).count() == 3);
        assert!(keys.parse(b"w\0\x01").is_none());
    }

    /// Arrow's row format is not promised stable across releases; these bytes are what formats
    /// 4 and 5 store. If an Arrow upgrade changes them, raise STATE_FORMAT (stored views are
    /// then rebuilt from their sources) and update the bytes here.
    #[test]
    fn the_row_format_is_the_one_the_state_format_stores() {
        let codec = RowCodec::new(
            &[DataType::Utf8, DataType::Int64, DataType::Float64],
            "test",
        )
        .unwrap();
        let rows = codec
            .encode(&[
                Arc::new(StringArray::from(vec![Some("ab"), None])),
                Arc::new(Int64Array::from(vec![Some(-2), Some(7)])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ])
            .unwrap();
        let bytes: Vec<Vec<u8>> = rows.iter().map(|r| r.as_ref().to_vec()).collect();
        let expected_first: Vec<u8> = vec![
            2, b'a', b'b', 0, 0, 0, 0, 0, 0, 2, 1, 127, 255, 255, 255, 255, 255, 255, 254, 1, 191,
            248, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes[0], expected_first, "arrow's row format changed");
        let back = codec.decode(bytes.iter().map(|b| b.as_slice())).unwrap();
        assert_eq!(back[1].len(), 2);
        assert!(back[0].is_null(1));
    }

    fn rows_of(value: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        let mut rows = Vec::new();
        let _ = for_each_view_row(value, |row| {
            rows.push(row.to_vec());
            ControlFlow::Continue(())
        })?;
        Ok(rows)
    }

    #[test]
    fn values_carry_their_format() {
        let value = StoredGroup::encode(true, b"xyz");
        assert_eq!(
            StoredGroup::decode(&value).unwrap(),
            StoredGroup {
                shown: true,
                state: b"xyz"
            }
        );
        assert!(StoredGroup::decode(&[1, 0]).is_err());
        assert!(
            StoredGroup::decode(&[3, 0]).is_err(),
            "format 3 kept states apart"
        );
        assert!(StoredGroup::decode(&[]).is_err());
        assert_eq!(
            rows_of(&encode_view_row(b"r")).unwrap(),
            vec![b"r".to_vec()]
        );
        assert!(rows_of(&[9, 1]).is_err());
        assert!(rows_of(&[3, b'r']).is_err(), "a format 3 row");
        // Format 5 values read as they are; the format byte says which.
        assert_eq!(rows_of(&[5, 0, b'r']).unwrap(), vec![b"r".to_vec()]);
        assert!(StoredGroup::decode(&[5, 1, b's']).unwrap().shown);
    }

    #[test]
    fn open_groups_keep_row_and_state_in_one_value() {
        let (head, n) = StoredValue::open_header(Some(3));
        let shown = [&head[..n], b"row", b"st"].concat();
        let value = StoredValue::decode(&shown).unwrap();
        assert_eq!(rows_of(&shown).unwrap(), vec![b"row".to_vec()]);
        assert_eq!(
            value.group(),
            Some(StoredGroup {
                shown: true,
                state: b"st"
            })
        );
        let (head, n) = StoredValue::open_header(None);
        let hidden = [&head[..n], b"st"].concat();
        let value = StoredValue::decode(&hidden).unwrap();
        assert_eq!(value.row_count(), 0);
        assert_eq!(
            value.group().map(|g| (g.shown, g.state)),
            Some((false, &b"st"[..]))
        );
        let row_alone = encode_view_row(b"row");
        let closed = StoredValue::decode(&row_alone).unwrap();
        assert_eq!((closed.row_count(), closed.group()), (1, None));
        // A row length past the value's end is corruption.
        let (head, n) = StoredValue::open_header(Some(9));
        assert!(StoredValue::decode(&[&head[..n], b"ab"].concat()).is_err());
        assert!(StoredValue::decode(&[STATE_FORMAT, 1, 0]).is_err());
        assert!(StoredValue::decode(&[STATE_FORMAT, 7]).is_err());
    }

    /// A group key and its row.
    type Entry = (Vec<u8>, Vec<u8>);

    /// Each (group key, row) of a block value.
    fn entries(value: &[u8]) -> Result<Vec<Entry>, StateError> {
        let StoredValue::Block(block) = StoredValue::decode(value)? else {
            panic!("not a block");
        };
        let mut all = Vec::new();
        let _ = block.for_each(|k, r| {
            all.push((k.to_vec(), r.to_vec()));
            ControlFlow::Continue(())
        })?;
        assert_eq!(all.len(), block.len());
        Ok(all)
    }

    #[test]
    fn row_blocks_hold_rows_in_key_order_and_find_each() {
        let n = BLOCK_ROWS * 2 + 5;
        // Keys and rows that share prefixes of every length with the entry before, some
        // longer and some shorter than it.
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("\x02k{i:05}").into_bytes())
            .collect();
        let rows: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut row = vec![b'w'; 18];
                row.extend(format!("{i:07}").bytes());
                row.extend(std::iter::repeat_n(b'r', i % 37));
                row
            })
            .collect();
        let mut blocks: Vec<Entry> = Vec::new();
        let mut writer = RowBlockWriter::default();
        for (key, row) in keys.iter().zip(&rows) {
            writer.push(key, row, |first, value| {
                blocks.push((first.to_vec(), value.to_vec()))
            });
        }
        writer.finish(|first, value| blocks.push((first.to_vec(), value.to_vec())));
        assert_eq!(
            blocks.len(),
            3,
            "full blocks of {BLOCK_ROWS} rows, then the rest"
        );
        let mut seen = 0;
        let whole: usize = keys.iter().chain(&rows).map(Vec::len).sum();
        let mut stored = 0;
        for (first, value) in &blocks {
            stored += value.len();
            assert_eq!(value[..2], [STATE_FORMAT, PACKED_BLOCK]);
            assert_eq!(first, &keys[seen]);
            let StoredValue::Block(block) = StoredValue::decode(value).unwrap() else {
                panic!("not a block");
            };
            for (k, r) in entries(value).unwrap() {
                assert_eq!((k, r), (keys[seen].clone(), rows[seen].clone()));
                seen += 1;
            }
            let last = seen - 1;
            assert_eq!(block.find(&keys[last]).unwrap(), Some(rows[last].clone()));
            assert_eq!(block.find(b"\x02k").unwrap(), None);
            assert_eq!(block.find(b"\x03").unwrap(), None);
            assert_eq!(rows_of(value).unwrap().len(), block.len());
        }
        assert_eq!(seen, n);
        assert!(
            stored * 2 < whole,
            "packed entries keep what differs: {stored} bytes for {whole}"
        );
        // Cut anywhere, a block is an error, not a panic.
        let value = &blocks[0].1;
        for cut in 2..value.len() {
            if StoredValue::decode(&value[..cut]).is_ok() {
                assert!(entries(&value[..cut]).is_err());
            }
        }
        // An entry that claims more shared bytes than the entry before had is corruption.
        let mut bad = vec![STATE_FORMAT, PACKED_BLOCK, 1, 0, 0, 0];
        bad.extend([3, 1, b'k', 0, 1, b'r']);
        assert!(entries(&bad).is_err());
    }

    #[test]
    fn format_6_row_blocks_read_as_they_are() {
        // Kind 3: count, then each key and row whole.
        let mut value = vec![6, ROW_BLOCK, 2, 0, 0, 0];
        value.extend([2, b'k', b'1', 3, b'r', b'o', b'w', 2, b'k', b'2', 1, b's']);
        assert_eq!(
            entries(&value).unwrap(),
            vec![
                (b"k1".to_vec(), b"row".to_vec()),
                (b"k2".to_vec(), b"s".to_vec())
            ]
        );
        assert_eq!(find_in_block(&value, b"k2").unwrap(), Some(b"s".to_vec()));
        assert_eq!(find_in_block(&value, b"k0").unwrap(), None);
    }

    #[test]
    fn shared_prefixes_are_counted_to_the_byte() {
        for (a, b, n) in [
            (&b""[..], &b"abc"[..], 0),
            (b"abcdefghij", b"abcdefghij", 10),
            (b"abcdefghij", b"abcdefghiX", 9),
            (b"abcdefgh12", b"abcdefgh", 8),
            (b"abcXefgh", b"abcdefgh", 3),
            (b"abcdefghijklmnopq", b"abcdefghijklmnopz", 16),
        ] {
            assert_eq!(shared_prefix(a, b), n, "{a:?} {b:?}");
            assert_eq!(shared_prefix(b, a), n, "{b:?} {a:?}");
        }
    }

    #[test]
    fn a_windows_blocks_sort_after_its_groups_and_before_the_next_window() {
        let keys = ViewKeys::new("v");
        let codec = RowCodec::new(&[DataType::Utf8, DataType::Int64], "test").unwrap();
        let rows = codec
            .encode(&[
                Arc::new(StringArray::from(vec![Some("\u{10FFFF}"), None, Some("")])),
                Arc::new(Int64Array::from(vec![i64::MAX, -1, 0])),
            ])
            .unwrap();
        for row in rows.iter() {
            assert!(
                row.as_ref()[0] < BLOCK_MARK,
                "no group key starts with 0xFF"
            );
            let group = keys.group(0, row.as_ref());
            assert!(group < keys.block(0, &[]));
            assert!(keys.block(0, row.as_ref()) < keys.window(1));
            let (from, to) = keys.block_search(0, row.as_ref());
            assert!(from <= keys.block(0, row.as_ref()) && keys.block(0, row.as_ref()) < to);
        }
    }

    #[test]
    fn garbage_rows_are_corruption_not_a_crash() {
        // Too short for an Int64 column: the decoder would panic; it is an error instead.
        let codec = RowCodec::new(&[DataType::Int64], "test").unwrap();
        assert!(codec.decode([&[1u8, 2][..]]).is_err());
        let text = RowCodec::new(&[DataType::Utf8], "test").unwrap();
        let _ = text.decode([&[7u8, 1, 2][..], &[][..]]);
    }
}
