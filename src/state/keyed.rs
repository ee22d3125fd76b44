//! The per-group layout of a view: its keys, its value formats, and the row codec both use.
//!
//! Every group of a view has one key, `view \0 window_start group_key`: the window start as
//! eight order-preserving bytes (0 for a view without windows), then the group's columns other
//! than `window_start`/`window_end` (which the window start already says) in Arrow's row
//! format, which compares bytewise in the columns' order. So a view's keys sort
//! by window, then by key: a time range is a key range and a group is a point read.
//!
//! Under that key `view_rows` holds the group's output row and `group_state` (while its window
//! is open) the accumulators' state, both in the row format after a format byte. The row
//! format is not promised stable across Arrow releases, so [`STATE_FORMAT`] names the layout
//! and a golden test pins its bytes: when an upgrade changes them the test fails and the
//! format number goes up; a view stored in another format is rebuilt from its source.

use std::panic::{catch_unwind, AssertUnwindSafe};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::{window_key_prefix, window_start_bytes, StateError};

/// The version of the per-group layout, stored in every value and in each view's progress.
pub const STATE_FORMAT: u8 = 3;

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

/// A group's stored state: whether its row is in the view (HAVING may hide it), and its
/// accumulators' state as a row (empty for the one group of a global aggregate that has not
/// seen a row yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredGroup<'a> {
    pub shown: bool,
    pub state: &'a [u8],
}

fn corrupt(table: &'static str, reason: &str) -> StateError {
    StateError::Corrupt {
        table,
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
            [STATE_FORMAT, ..] | [] => Err(corrupt("group_state", "truncated group state")),
            [other, ..] => Err(corrupt(
                "group_state",
                &format!("group state in format {other}, expected {STATE_FORMAT}"),
            )),
        }
    }
}

/// The bytes before a stored output row.
pub const VIEW_ROW_HEADER: [u8; 1] = [STATE_FORMAT];

/// A stored output row: the format byte, then the row.
pub fn encode_view_row(row: &[u8]) -> Vec<u8> {
    [&VIEW_ROW_HEADER[..], row].concat()
}

/// The row of a value made by [`encode_view_row`].
pub fn decode_view_row(value: &[u8]) -> Result<&[u8], StateError> {
    match value {
        [STATE_FORMAT, row @ ..] => Ok(row),
        [other, ..] => Err(corrupt(
            "view_rows",
            &format!("row in format {other}, expected {STATE_FORMAT}"),
        )),
        [] => Err(corrupt("view_rows", "empty row")),
    }
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

    /// Arrow's row format is not promised stable across releases; these bytes are what format
    /// 3 stores. If an Arrow upgrade changes them, raise STATE_FORMAT (stored views are then
    /// rebuilt from their sources) and update the bytes here.
    #[test]
    fn the_row_format_is_the_one_state_format_3_stores() {
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
            StoredGroup::decode(&[2, 0]).is_err(),
            "format 2 keys held window columns"
        );
        assert!(StoredGroup::decode(&[]).is_err());
        assert_eq!(decode_view_row(&encode_view_row(b"r")).unwrap(), b"r");
        assert!(decode_view_row(&[9, 1]).is_err());
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
