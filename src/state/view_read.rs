//! Reading a view's stored values as its layout (`keyed`) means them: a window's open row
//! blocks merged with the single values that shadow their entries.
//!
//! In key order a window holds its single values, then its open row blocks, then its row
//! blocks. A range reader that meets a window's first single value looks ahead, with a second
//! cursor, for the window's open blocks (one seek per window with single values). If there
//! are some, it merges the two in group order and a single value wins over the block entry of
//! the same group. Windows that have only blocks (a catch-up's closed windows) need no look
//! ahead.

use std::cmp::Ordering;
use std::ops::ControlFlow;

use super::keyed::{
    find_in_block, open_entry_row, RowBlock, StoredValue, ViewKeys, BLOCK_MARK, OPEN_BLOCK_MARK,
};
use super::store::{storage, Cursor, ReadView, Table};
use super::StateError;

/// A group key and its open value, taken out of an open row block.
type BlockEntry = (Vec<u8>, Vec<u8>);

fn corrupt(reason: &str) -> StateError {
    StateError::Corrupt {
        table: "view_rows",
        reason: reason.into(),
    }
}

/// Calls `f` with each stored value of the view in `[from, to)`, which must be whole windows,
/// in key order, until it breaks. Single values and row blocks come as stored; each entry of
/// an open row block that no single value shadows comes as the group's key and its open value.
/// `grouped` is false for an append-only view: its rows are never in blocks (and each event
/// time is a "window" of its own, so looking for blocks would cost a seek per row).
pub fn for_each_view_value(
    read: &ReadView<'_>,
    keys: &ViewKeys,
    grouped: bool,
    from: &[u8],
    to: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<(), StateError> {
    if !grouped {
        return read.for_each_in(Table::ViewRows, from, to, f);
    }
    let mut a = read.cursor(Table::ViewRows, from, to);
    a.seek(from);
    // Looks ahead for each window's open blocks.
    let mut b = read.cursor(Table::ViewRows, from, to);
    while let (Some(key), Some(value)) = (a.key(), a.value()) {
        let Some((start, group)) = keys.parse(key) else {
            return Err(corrupt("a key of the view does not parse"));
        };
        match group.first() {
            Some(&OPEN_BLOCK_MARK) => {
                // Open blocks with no single value before them: every entry is current.
                if open_entries(keys, start, value, &mut f)?.is_break() {
                    return Ok(());
                }
                a.next();
            }
            Some(&BLOCK_MARK) => {
                if f(key, value).is_break() {
                    return Ok(());
                }
                a.next();
            }
            _ => {
                // The window's first single value.
                let window = Span {
                    start,
                    blocks: keys.open_block(start, &[]),
                    past_blocks: keys.block(start, &[]),
                };
                b.seek(&window.blocks);
                b.status().map_err(storage)?;
                let flow = if window.holds(b.key()) {
                    let flow = merge_window(keys, &window, &mut a, &mut b, &mut f)?;
                    a.seek(&window.past_blocks);
                    flow
                } else {
                    singles(&mut a, &window.blocks, &mut f)
                };
                if flow.is_break() {
                    return Ok(());
                }
            }
        }
    }
    a.status().map_err(storage)
}

/// Where one window's open blocks lie: from `blocks` up to `past_blocks`.
struct Span {
    start: i64,
    blocks: Vec<u8>,
    past_blocks: Vec<u8>,
}

impl Span {
    /// Whether `key` is one of the window's open blocks.
    fn holds(&self, key: Option<&[u8]>) -> bool {
        key.is_some_and(|k| k >= self.blocks.as_slice() && k < self.past_blocks.as_slice())
    }
}

/// Hands `f` the single values from `a` on, up to `end`.
fn singles(
    a: &mut Cursor<'_>,
    end: &[u8],
    f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> ControlFlow<()> {
    while let (Some(key), Some(value)) = (a.key(), a.value()) {
        if key >= end {
            break;
        }
        if f(key, value).is_break() {
            return ControlFlow::Break(());
        }
        a.next();
    }
    ControlFlow::Continue(())
}

/// Hands `f` each entry of open block `value` of window `start`, as its group's key and value.
fn open_entries(
    keys: &ViewKeys,
    start: i64,
    value: &[u8],
    f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, StateError> {
    let StoredValue::OpenBlock(block) = StoredValue::decode(value)? else {
        return Err(corrupt("a value under an open row block's key is not one"));
    };
    let mut key = keys.window(start);
    let window = key.len();
    block.for_each(|group, entry| {
        key.truncate(window);
        key.extend_from_slice(group);
        f(&key, entry)
    })
}

/// The entries of the open block under `b`, each as (group key, open value).
fn block_entries(b: &Cursor<'_>) -> Result<Vec<BlockEntry>, StateError> {
    let value = b.value().unwrap_or_default();
    let StoredValue::OpenBlock(block) = StoredValue::decode(value)? else {
        return Err(corrupt("a value under an open row block's key is not one"));
    };
    let mut entries = Vec::with_capacity(block.len());
    let _ = block.for_each(|group, entry| {
        entries.push((group.to_vec(), entry.to_vec()));
        ControlFlow::Continue(())
    })?;
    Ok(entries)
}

/// Merges a window's single values (from `a`, up to where its open blocks start) with the
/// entries of its open blocks (from `b`, on the first of them), in group order; a single value
/// wins over the entry of its group.
fn merge_window(
    keys: &ViewKeys,
    window: &Span,
    a: &mut Cursor<'_>,
    b: &mut Cursor<'_>,
    f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, StateError> {
    let mut key = keys.window(window.start);
    let prefix = key.len();
    let mut entries: Vec<BlockEntry> = Vec::new();
    let mut next = 0;
    loop {
        while next == entries.len() && window.holds(b.key()) {
            entries = block_entries(b)?;
            next = 0;
            b.next();
        }
        b.status().map_err(storage)?;
        let single = match (a.key(), a.value()) {
            (Some(k), Some(v)) if k < window.blocks.as_slice() => Some((k, v)),
            (Some(_), Some(_)) => None,
            _ => {
                // An error must not pass for the end of the single values: the entries they
                // shadow would show.
                a.status().map_err(storage)?;
                None
            }
        };
        let entry = entries.get(next);
        let order = match (&single, entry) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((k, _)), Some((group, _))) => k[prefix..].cmp(group),
        };
        let flow = match (single, entry) {
            (Some((k, v)), _) if order != Ordering::Greater => {
                let flow = f(k, v);
                a.next();
                if order == Ordering::Equal {
                    // Shadowed: the single value is the group's current one.
                    next += 1;
                }
                flow
            }
            (_, Some((group, value))) => {
                key.truncate(prefix);
                key.extend_from_slice(group);
                next += 1;
                f(&key, value)
            }
            _ => unreachable!("one side is present"),
        };
        if flow.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// The row of group `group` of window `start`, for a group with no single value: from the
/// open row block or the row block that would hold it (None when none holds it, or HAVING
/// hides it).
pub fn find_row_in_blocks(
    read: &ReadView<'_>,
    keys: &ViewKeys,
    start: i64,
    group: &[u8],
) -> Result<Option<Vec<u8>>, StateError> {
    if let Some(value) = find_open_group(read, keys, start, group)? {
        return Ok(open_entry_row(&value)?.map(<[u8]>::to_vec));
    }
    let (from, to) = keys.block_search(start, group);
    match read.last_in(Table::ViewRows, &from, &to)? {
        Some((_, value)) => find_in_block(&value, group),
        None => Ok(None),
    }
}

/// The open value (row and state) of group `group` of window `start` in the window's open row
/// blocks, for a group with no single value.
pub fn find_open_group(
    read: &ReadView<'_>,
    keys: &ViewKeys,
    start: i64,
    group: &[u8],
) -> Result<Option<Vec<u8>>, StateError> {
    OpenBlockFinder::new(read, keys, start).find(group)
}

/// Calls `f` with each open row block of window `start`, in key order, until it fails.
fn for_each_open_block(
    read: &ReadView<'_>,
    keys: &ViewKeys,
    start: i64,
    mut f: impl FnMut(&RowBlock<'_>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let (from, to) = (keys.open_block(start, &[]), keys.block(start, &[]));
    let mut error = None;
    read.for_each_in(Table::ViewRows, &from, &to, |_, value| {
        let done = match StoredValue::decode(value) {
            Ok(StoredValue::OpenBlock(block)) => f(&block),
            Ok(_) => Err(corrupt("a value under an open row block's key is not one")),
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                error = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    error.map_or(Ok(()), Err)
}

/// How many entries (shadowed or not) window `start`'s open row blocks hold.
pub fn open_block_entries(
    read: &ReadView<'_>,
    keys: &ViewKeys,
    start: i64,
) -> Result<usize, StateError> {
    let mut count = 0;
    for_each_open_block(read, keys, start, |block| {
        count += block.len();
        Ok(())
    })?;
    Ok(count)
}

/// Calls `f` with the group key of every entry (shadowed or not) of window `start`'s open row
/// blocks, in key order.
pub fn for_each_open_block_key(
    read: &ReadView<'_>,
    keys: &ViewKeys,
    start: i64,
    mut f: impl FnMut(&[u8]),
) -> Result<(), StateError> {
    for_each_open_block(read, keys, start, |block| {
        block
            .for_each(|group, _| {
                f(group);
                ControlFlow::Continue(())
            })
            .map(|_| ())
    })
}

/// Finds groups of one window in its open row blocks. Asked for groups in key order, it reads
/// and decodes each block once for all the groups it holds.
pub struct OpenBlockFinder<'r> {
    keys: &'r ViewKeys,
    start: i64,
    cursor: Cursor<'r>,
    /// The key of the block last read, and its entries.
    label: Vec<u8>,
    entries: Vec<BlockEntry>,
}

impl<'r> OpenBlockFinder<'r> {
    pub fn new(read: &'r ReadView<'_>, keys: &'r ViewKeys, start: i64) -> Self {
        let cursor = read.cursor(
            Table::ViewRows,
            &keys.open_block(start, &[]),
            &keys.block(start, &[]),
        );
        Self {
            keys,
            start,
            cursor,
            label: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// The open value of `group`, if the window's open blocks hold it.
    pub fn find(&mut self, group: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let in_last = matches!(
            (self.entries.first(), self.entries.last()),
            (Some((first, _)), Some((last, _))) if first.as_slice() <= group && group <= last.as_slice()
        );
        if !in_last {
            // The last block whose first group is at or before `group`.
            self.cursor
                .seek_for_prev(self.keys.open_block(self.start, group));
            self.cursor.status().map_err(storage)?;
            let Some(label) = self.cursor.key() else {
                return Ok(None);
            };
            if label != self.label.as_slice() {
                self.label = label.to_vec();
                self.entries = block_entries(&self.cursor)?;
            }
        }
        Ok(self
            .entries
            .binary_search_by(|(key, _)| key.as_slice().cmp(group))
            .ok()
            .map(|i| self.entries[i].1.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::{for_each_view_row, RowBlockWriter, Store, WriteSet};

    fn group(i: u32) -> Vec<u8> {
        vec![1, (i >> 8) as u8, i as u8]
    }

    /// An open value: the row (None when hidden), then the state.
    fn open_value(row: Option<&[u8]>, state: &[u8]) -> Vec<u8> {
        let (head, len) = StoredValue::open_header(row.map(<[u8]>::len));
        [&head[..len], row.unwrap_or_default(), state].concat()
    }

    /// Each value of `[from, to)` as the merged reader hands it over: key and rows.
    fn read_all(
        store: &Store,
        keys: &ViewKeys,
        from: &[u8],
        to: &[u8],
    ) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        for_each_view_value(&store.read_view(), keys, true, from, to, |key, value| {
            let mut rows = Vec::new();
            let _ = for_each_view_row(value, |row| {
                rows.push(row.to_vec());
                ControlFlow::Continue(())
            })
            .unwrap();
            out.push((key.to_vec(), rows));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn single_values_shadow_their_entries_in_open_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = ViewKeys::new("v");
        let mut ws = WriteSet::default();
        // Window 0: 300 groups (three open blocks), each shown with row "b<i>".
        let values: Vec<(Vec<u8>, Vec<u8>)> = (0..300u32)
            .map(|i| {
                let row = format!("b{i}").into_bytes();
                (group(i * 2 + 2), open_value(Some(&row), b"st"))
            })
            .collect();
        let mut blocks = RowBlockWriter::open_groups();
        let mut written = 0;
        let mut emit = |first: &[u8], value: &[u8]| {
            ws.put(Table::ViewRows, keys.open_block(0, first), value);
            written += 1;
        };
        for (g, v) in &values {
            blocks.push(g, v, &mut emit);
        }
        blocks.finish(&mut emit);
        assert_eq!(written, 3);
        // What the window's groups are: the blocks' rows, then the single values over them.
        let mut model: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = values
            .iter()
            .map(|(g, _)| {
                let i = (g[1] as u32) << 8 | g[2] as u32;
                (g.clone(), vec![format!("b{}", (i - 2) / 2).into_bytes()])
            })
            .collect();
        let singles: [(u32, Option<&[u8]>); 6] = [
            (0, Some(b"before all")),      // before every block entry
            (2, Some(b"shadows first")),   // the first entry of the first block
            (257, Some(b"between")),       // a new group between two entries
            (258, None),                   // hides an entry (HAVING)
            (400, Some(b"shadows later")), // an entry of the last block
            (900, Some(b"after all")),     // after every entry
        ];
        for (i, row) in singles {
            ws.put(
                Table::ViewRows,
                keys.group(0, &group(i)),
                open_value(row, b"s2"),
            );
            model.insert(group(i), row.map(|r| vec![r.to_vec()]).unwrap_or_default());
        }
        // Window 1: single values only; window 2: a closed window's row block.
        ws.put(
            Table::ViewRows,
            keys.group(1, &group(5)),
            open_value(Some(b"w1"), b"s"),
        );
        let mut closed = RowBlockWriter::default();
        let (g7, g8) = (group(7), group(8));
        let mut emit = |first: &[u8], value: &[u8]| {
            ws.put(Table::ViewRows, keys.block(2, first), value);
        };
        closed.push(&g7, b"c7", &mut emit);
        closed.push(&g8, b"c8", &mut emit);
        closed.finish(&mut emit);
        store.write(&ws).unwrap();

        let (from, to) = keys.all();
        let all = read_all(&store, &keys, &from, &to);
        let window0: Vec<(Vec<u8>, Vec<Vec<u8>>)> = model
            .iter()
            .map(|(g, rows)| (keys.group(0, g), rows.clone()))
            .collect();
        assert_eq!(
            all[..window0.len()],
            window0[..],
            "window 0, merged in key order"
        );
        assert_eq!(
            all[window0.len()..],
            [
                (keys.group(1, &group(5)), vec![b"w1".to_vec()]),
                (keys.block(2, &g7), vec![b"c7".to_vec(), b"c8".to_vec()]),
            ]
        );
        // One window alone, and a window with open blocks but no single value before them.
        let (a, b) = keys.windows(1, 2);
        assert_eq!(read_all(&store, &keys, &a, &b).len(), 1);
        // A reader that stops stops.
        let mut seen = 0;
        for_each_view_value(&store.read_view(), &keys, true, &from, &to, |_, _| {
            seen += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(seen, 1);

        // Point reads of groups without a single value.
        let read = store.read_view();
        let row = |start, i| find_row_in_blocks(&read, &keys, start, &group(i)).unwrap();
        assert_eq!(row(0, 4), Some(b"b1".to_vec()));
        assert_eq!(row(0, 600), Some(b"b299".to_vec()));
        assert_eq!(row(0, 3), None, "no such group");
        assert_eq!(row(0, 1000), None, "past every entry");
        assert_eq!(row(2, 8), Some(b"c8".to_vec()), "a closed window's block");
        assert_eq!(row(1, 5), None, "a window without blocks");
        // Groups asked in key order, through one finder: in a block, before the first, in the
        // gaps between entries and between blocks, past the last.
        let mut finder = OpenBlockFinder::new(&read, &keys, 0);
        for (i, expected) in [
            (1, None),
            (2, Some(0)),
            (3, None),
            (256, Some(127)),
            (257, None),
            (258, Some(128)),
            (600, Some(299)),
            (601, None),
        ] {
            let found = finder.find(&group(i)).unwrap();
            let expected = expected.map(|e: usize| values[e].1.clone());
            assert_eq!(found, expected, "group {i}");
        }
        let open = find_open_group(&read, &keys, 0, &group(260))
            .unwrap()
            .unwrap();
        assert_eq!(
            StoredValue::decode(&open).unwrap().group().unwrap().state,
            b"st"
        );
    }

    #[test]
    fn windows_of_open_blocks_alone_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = ViewKeys::new("v");
        let mut ws = WriteSet::default();
        let mut blocks = RowBlockWriter::open_groups();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
            .map(|i| (group(i), open_value((i != 1).then_some(b"r"), b"s")))
            .collect();
        let mut emit = |first: &[u8], value: &[u8]| {
            ws.put(Table::ViewRows, keys.open_block(5, first), value);
        };
        for (g, v) in &entries {
            blocks.push(g, v, &mut emit);
        }
        blocks.finish(&mut emit);
        store.write(&ws).unwrap();
        let (from, to) = keys.all();
        let all = read_all(&store, &keys, &from, &to);
        let rows: Vec<usize> = all.iter().map(|(_, rows)| rows.len()).collect();
        assert_eq!(
            rows,
            [1, 0, 1],
            "each entry, the hidden one without its row"
        );
        assert_eq!(all[2].0, keys.group(5, &group(2)));
    }
}
