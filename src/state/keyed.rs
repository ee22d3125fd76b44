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
//! the window has closed, the row alone. Readers of the view skip the state. The row format is
//! not promised stable across Arrow releases, so [`STATE_FORMAT`] names the layout and a
//! golden test pins its bytes: when an upgrade changes them the test fails and the format
//! number goes up; a view stored in an older format is rebuilt from its source.

use std::panic::{catch_unwind, AssertUnwindSafe};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::{window_key_prefix, window_start_bytes, StateError};

/// The version of the per-group layout, stored in every value and in each view's progress.
/// Format 5 stores the per-entity states of stateful functions (`anomaly_score`'s baselines)
/// in a compact varint form; format 4 kept a group's row and state in one `view_rows` value
/// too, with fixed-width entity states; format 3 kept a group's state under the same key in
/// `group_state`.
pub const STATE_FORMAT: u8 = 5;

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

    /// Splits a key of this view into window start and group key.
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
            [STATE_FORMAT, shown @ (0 | 1), state @ ..] => Ok(Self {
                shown: *shown == 1,
                state,
            }),
            [STATE_FORMAT, ..] | [] => Err(corrupt("truncated group state")),
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
/// - kind 2, an open window's group HAVING hides: the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredValue<'a> {
    Row(&'a [u8]),
    Open {
        row: Option<&'a [u8]>,
        state: &'a [u8],
    },
}

const ROW_ALONE: u8 = 0;
const ROW_AND_STATE: u8 = 1;
const STATE_ALONE: u8 = 2;

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
            [STATE_FORMAT, ROW_ALONE, row @ ..] => Ok(Self::Row(row)),
            [STATE_FORMAT, ROW_AND_STATE, l0, l1, l2, l3, rest @ ..] => {
                let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
                let (row, state) = rest
                    .split_at_checked(len)
                    .ok_or_else(|| corrupt("a row longer than its value"))?;
                Ok(Self::Open {
                    row: Some(row),
                    state,
                })
            }
            [STATE_FORMAT, STATE_ALONE, state @ ..] => Ok(Self::Open { row: None, state }),
            [STATE_FORMAT, ..] | [] => Err(corrupt("truncated value")),
            [other, ..] => Err(corrupt(&format!(
                "value in format {other}, expected {STATE_FORMAT}"
            ))),
        }
    }

    /// The output row, if the group is in the view.
    pub fn row(&self) -> Option<&'a [u8]> {
        match self {
            Self::Row(row) => Some(row),
            Self::Open { row, .. } => *row,
        }
    }

    /// The group as the operators cache it; None for a row stored alone (its window closed).
    pub fn group(&self) -> Option<StoredGroup<'a>> {
        match self {
            Self::Row(_) => None,
            Self::Open { row, state } => Some(StoredGroup {
                shown: row.is_some(),
                state,
            }),
        }
    }
}

/// A row stored alone: the header, then the row.
pub fn encode_view_row(row: &[u8]) -> Vec<u8> {
    [&VIEW_ROW_HEADER[..], row].concat()
}

/// The output row of a `view_rows` value; None for a group HAVING hides.
pub fn decode_view_row(value: &[u8]) -> Result<Option<&[u8]>, StateError> {
    Ok(StoredValue::decode(value)?.row())
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
            decode_view_row(&encode_view_row(b"r")).unwrap(),
            Some(&b"r"[..])
        );
        assert!(decode_view_row(&[9, 1]).is_err());
        assert!(decode_view_row(&[3, b'r']).is_err(), "a format 3 row");
    }

    #[test]
    fn open_groups_keep_row_and_state_in_one_value() {
        let (head, n) = StoredValue::open_header(Some(3));
        let shown = [&head[..n], b"row", b"st"].concat();
        let value = StoredValue::decode(&shown).unwrap();
        assert_eq!(value.row(), Some(&b"row"[..]));
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
        assert_eq!(value.row(), None);
        assert_eq!(
            value.group().map(|g| (g.shown, g.state)),
            Some((false, &b"st"[..]))
        );
        let row_alone = encode_view_row(b"row");
        let closed = StoredValue::decode(&row_alone).unwrap();
        assert_eq!((closed.row(), closed.group()), (Some(&b"row"[..]), None));
        // A row length past the value's end is corruption.
        let (head, n) = StoredValue::open_header(Some(9));
        assert!(StoredValue::decode(&[&head[..n], b"ab"].concat()).is_err());
        assert!(StoredValue::decode(&[STATE_FORMAT, 1, 0]).is_err());
        assert!(StoredValue::decode(&[STATE_FORMAT, 7]).is_err());
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
