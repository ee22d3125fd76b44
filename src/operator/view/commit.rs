//! A view's commit of one window's epoch: the window's partial aggregate merged into the
//! stored groups it touched, a chunk at a time in key order ([`WindowMerge`]), and written.
//!
//! Writing a merged chunk has two halves: what goes to RocksDB ([`write_chunk`], a function of
//! the merged groups alone) and what the view keeps in memory ([`ViewOperator::account_chunk`]:
//! row counts, the cache, the open blocks' key filter). A window of more than one chunk is
//! committed on two threads ([`ViewOperator::merge_on_two_threads`]): a helper cuts the
//! chunks, merges them and writes them to the write set, while the view's thread finds each
//! chunk's stored groups (cache claims, store reads) and then accounts for it. Either way the
//! chunks are merged, written and accounted for in key order.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};

use super::{state_err, AfterMerge, ViewOperator};
use crate::operator::cache::Lookup;
use crate::operator::key_filter::KeyFilter;
use crate::operator::merge::{
    merge_chunk, merge_chunk_groups, open_block_min_groups, Codecs, GroupKeys, Merged, MergedGroup,
    StoredValues, WindowMerge,
};
use crate::operator::GroupState;
use crate::plan::ViewPlan;
use crate::state::{
    window_start_bytes, OpenBlockFinder, RowBlockWriter, StoredGroup, StoredValue, Table, ViewKeys,
    WriteSet, VIEW_ROW_HEADER,
};

/// How a window's merged groups are written, settled before its first chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct WindowWrite {
    start: i64,
    then: AfterMerge,
    /// The window had groups stored before this epoch.
    stored: bool,
    /// The window has open row blocks.
    blocks: bool,
}

/// Writes a window's merged chunk to `ws`, as `w` says:
/// - an open window: one value per group holding its row (when shown) and its state, or, when
///   it had nothing stored, open row blocks of such values;
/// - a closed window: the row alone, and a delete for a group that has none; when it had
///   nothing stored, row blocks of the rows;
/// - a window closed past the retention: nothing.
///
/// `scratch` holds an open block's values while they are packed; the caller keeps it from
/// chunk to chunk, so a window of many chunks fills the same memory each time instead of
/// growing a fresh buffer onto newly faulted pages.
fn write_chunk(
    ws: &mut WriteSet,
    keys: &ViewKeys,
    w: WindowWrite,
    merged: &Merged,
    scratch: &mut Vec<u8>,
) {
    match w.then {
        AfterMerge::KeepOpen => {
            let window = window_start_bytes(w.start);
            for group in merged.groups() {
                let (head, len) = StoredValue::open_header(group.row.map(<[u8]>::len));
                let row = group.row.unwrap_or_default();
                let key: [&[u8]; 3] = [keys.prefix(), &window, group.key];
                ws.put_parts(Table::ViewRows, &key, &[&head[..len], row, group.state]);
            }
        }
        AfterMerge::OpenInBlocks => write_open_blocks(ws, keys, w.start, merged, scratch),
        AfterMerge::Close if w.stored => {
            let window = window_start_bytes(w.start);
            for group in merged.groups() {
                let key: [&[u8]; 3] = [keys.prefix(), &window, group.key];
                if let Some(row) = group.row {
                    ws.put_parts(Table::ViewRows, &key, &[&VIEW_ROW_HEADER, row]);
                } else if w.blocks {
                    // Its value shadows its entry in an open block, which would show again if
                    // the value were deleted: it stays, with no row, as long as the window.
                    let (head, len) = StoredValue::open_header(None);
                    ws.put_parts(Table::ViewRows, &key, &[&head[..len], group.state]);
                } else {
                    // Its state (and row, if it had one) stay no longer than its window.
                    ws.delete_parts(Table::ViewRows, &key);
                }
            }
        }
        // Opened and closed within this epoch: nothing stored to replace.
        AfterMerge::Close => {
            let mut blocks = RowBlockWriter::default();
            let mut emit = |first: &[u8], value: &[u8]| {
                ws.put_parts(Table::ViewRows, &[&keys.block(w.start, first)], &[value]);
            };
            for group in merged.groups() {
                // A group HAVING hides has nothing to store once its window closed.
                if let Some(row) = group.row {
                    blocks.push(group.key, row, &mut emit);
                }
            }
            blocks.finish(&mut emit);
        }
        // Closed already past the retention: its new rows are never written (rows it had were
        // deleted, and counted, by `expire`).
        AfterMerge::Expired => {}
    }
}

/// Writes the merged groups of an open window that had nothing stored as open row blocks:
/// many groups to a RocksDB value, each entry the group's whole open value, in key order. A
/// block never spans two chunks of the merge (the chunk's rows are gone by the next).
fn write_open_blocks(
    ws: &mut WriteSet,
    keys: &ViewKeys,
    start: i64,
    merged: &Merged,
    values: &mut Vec<u8>,
) {
    // Each group's value is its header, row and state; all of them go into `values` first,
    // since a block packs each value against the one before it.
    let value_len = |group: &MergedGroup<'_>| {
        let (_, head) = StoredValue::open_header(group.row.map(<[u8]>::len));
        head + group.row.map_or(0, <[u8]>::len) + group.state.len()
    };
    values.clear();
    for group in merged.groups() {
        let (head, len) = StoredValue::open_header(group.row.map(<[u8]>::len));
        values.extend_from_slice(&head[..len]);
        values.extend_from_slice(group.row.unwrap_or_default());
        values.extend_from_slice(group.state);
    }
    let mut blocks = RowBlockWriter::open_groups();
    let mut emit = |first: &[u8], value: &[u8]| {
        ws.put_parts(Table::ViewRows, &[&keys.open_block(start, first)], &[value]);
    };
    let mut from = 0;
    for group in merged.groups() {
        let end = from + value_len(&group);
        blocks.push(group.key, &values[from..end], &mut emit);
        from = end;
    }
    blocks.finish(&mut emit);
}

/// What the helper thread of a two-thread merge sends the view's thread, in this order: the
/// keys of the first two chunks, then each chunk written followed by the keys of the one two
/// chunks after it, then `Done`.
enum FromHelper {
    /// A chunk's keys: the view's thread finds their stored values and sends both back.
    Keys(GroupKeys),
    /// A chunk merged and written to the write set: the view's thread accounts for it.
    Written(Box<Merged>),
    /// Every chunk was written.
    Done,
}

/// The helper thread's side of a two-thread merge.
struct Helper<'a> {
    plan: &'a ViewPlan,
    codecs: &'a Codecs,
    keys: &'a ViewKeys,
    w: WindowWrite,
    closes: bool,
    chunk: usize,
    to_view: Sender<Result<FromHelper>>,
    from_view: Receiver<(GroupKeys, StoredValues)>,
}

impl Helper<'_> {
    /// Merges and writes every chunk of `merge`; an error goes to the view's thread.
    fn run(self, mut merge: WindowMerge, ws: &mut WriteSet) {
        if let Err(e) = self.merge_all(&mut merge, ws) {
            let _ = self.to_view.send(Err(e));
        }
    }

    fn merge_all(&self, merge: &mut WindowMerge, ws: &mut WriteSet) -> Result<()> {
        // Cut chunks whose stored values the view's thread is looking up, in key order: one
        // ahead of the chunk being merged, so neither thread waits for the other.
        let mut cut = VecDeque::with_capacity(2);
        let mut scratch = Vec::new();
        loop {
            while cut.len() < 2 {
                let Some((chunk, keys)) = merge.next_chunk(self.codecs, self.chunk)? else {
                    break;
                };
                if self.to_view.send(Ok(FromHelper::Keys(keys))).is_err() {
                    return Ok(());
                }
                cut.push_back(chunk);
            }
            let Some(chunk) = cut.pop_front() else { break };
            // The view's thread gave up (it failed): nothing more to do.
            let Ok((keys, previous)) = self.from_view.recv() else {
                return Ok(());
            };
            let merged = merge_chunk(self.plan, self.codecs, chunk, keys, previous, self.closes)?;
            write_chunk(ws, self.keys, self.w, &merged, &mut scratch);
            if self
                .to_view
                .send(Ok(FromHelper::Written(Box::new(merged))))
                .is_err()
            {
                return Ok(());
            }
        }
        let _ = self.to_view.send(Ok(FromHelper::Done));
        Ok(())
    }
}

impl ViewOperator {
    /// Merges a window's partial aggregate into its stored groups (from the cache, or the
    /// store for those not in it), [`merge_chunk_groups`] groups at a time in key order, and
    /// writes each chunk as `then` says before merging the next.
    pub(super) fn merge_and_write(
        &mut self,
        ws: &mut WriteSet,
        start: i64,
        delta: &mut GroupState,
        then: AfterMerge,
    ) -> Result<()> {
        let mut merge = WindowMerge::start(&self.plan, &self.codecs, delta)?;
        let then = match then {
            // Nothing stored to replace: many groups are cheaper written many to a value.
            AfterMerge::KeepOpen
                if !self.progress.open_windows.contains(&start)
                    && merge.len() >= open_block_min_groups() =>
            {
                self.progress.open_blocks.insert(start);
                self.block_keys
                    .insert(start, KeyFilter::with_capacity(merge.len()));
                AfterMerge::OpenInBlocks
            }
            then => then,
        };
        let closes = matches!(then, AfterMerge::Close | AfterMerge::Expired);
        // Room for every group at once, so the first epoch of a large window does not copy its
        // cache entries and its list of changes at each doubling.
        self.cache.reserve(start, merge.len());
        if then != AfterMerge::Expired {
            ws.reserve(merge.len());
        }
        let w = self.window_write(start, then);
        let chunk = merge_chunk_groups();
        if merge.len() > chunk {
            return self.merge_on_two_threads(ws, w, merge, closes, chunk);
        }
        let mut scratch = Vec::new();
        while let Some((chunk, keys)) = merge.next_chunk(&self.codecs, chunk)? {
            let previous = self.stored_values(w, &keys)?;
            let merged = merge_chunk(&self.plan, &self.codecs, chunk, keys, previous, closes)?;
            write_chunk(ws, &self.keys, w, &merged, &mut scratch);
            self.account_chunk(w, &merged);
        }
        Ok(())
    }

    /// Merges a window of more than one chunk on two threads: a helper thread cuts, merges
    /// and writes the chunks while this one finds their stored values and accounts for them
    /// (the cache and the view's progress are this thread's alone).
    fn merge_on_two_threads(
        &mut self,
        ws: &mut WriteSet,
        w: WindowWrite,
        merge: WindowMerge,
        closes: bool,
        chunk: usize,
    ) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        let codecs = Arc::clone(&self.codecs);
        let keys = self.keys.clone();
        std::thread::scope(|scope| {
            let (to_view, from_helper) = channel();
            let (to_helper, from_view) = channel();
            let helper = Helper {
                plan: &plan,
                codecs: &codecs,
                keys: &keys,
                w,
                closes,
                chunk,
                to_view,
                from_view,
            };
            std::thread::Builder::new()
                .name("merge".into())
                .spawn_scoped(scope, move || helper.run(merge, ws))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            // Every chunk the helper wrote is accounted for, even after a failure on either
            // side: the failed view's write still goes out with its progress.
            let mut to_helper = Some(to_helper);
            let mut failure = None;
            while let Ok(message) = from_helper.recv() {
                match message {
                    Ok(FromHelper::Keys(keys)) => {
                        let Some(sender) = to_helper.as_ref() else {
                            continue;
                        };
                        match self.stored_values(w, &keys) {
                            Ok(previous) => {
                                // A failed send means the helper failed: its error follows.
                                let _ = sender.send((keys, previous));
                            }
                            Err(e) => {
                                failure = Some(e);
                                // The helper stops at its next wait for stored values.
                                to_helper = None;
                            }
                        }
                    }
                    Ok(FromHelper::Written(merged)) => self.account_chunk(w, &merged),
                    Ok(FromHelper::Done) => return Ok(()),
                    Err(e) => return Err(failure.unwrap_or(e)),
                }
            }
            Err(failure.unwrap_or_else(|| {
                DataFusionError::Internal(format!(
                    "view {}: the merge thread of window {} stopped before its last chunk",
                    self.name, w.start
                ))
            }))
        })
    }

    /// Writes (or, past the retention, counts) a window's merged groups as `then` says.
    pub(super) fn take_merged(
        &mut self,
        ws: &mut WriteSet,
        start: i64,
        merged: &Merged,
        then: AfterMerge,
    ) {
        let w = self.window_write(start, then);
        write_chunk(ws, &self.keys, w, merged, &mut Vec::new());
        self.account_chunk(w, merged);
    }

    fn window_write(&self, start: i64, then: AfterMerge) -> WindowWrite {
        WindowWrite {
            start,
            then,
            stored: self.progress.open_windows.contains(&start),
            blocks: self.progress.open_blocks.contains(&start),
        }
    }

    /// Keeps in memory what a written chunk changed: the view's row counts, and in an open
    /// window the groups' cached values and the open blocks' key filter.
    fn account_chunk(&mut self, w: WindowWrite, merged: &Merged) {
        let start = w.start;
        match w.then {
            AfterMerge::KeepOpen | AfterMerge::OpenInBlocks => {
                for group in merged.groups() {
                    self.count_rows(&group);
                }
                self.cache_open(w, merged);
                if w.then == AfterMerge::OpenInBlocks {
                    if let Some(filter) = self.block_keys.get_mut(&start) {
                        merged.groups().for_each(|group| filter.insert(group.key));
                    }
                }
                self.progress.open_windows.insert(start);
            }
            AfterMerge::Close => {
                for group in merged.groups() {
                    self.count_rows(&group);
                    if !w.stored && group.shown() {
                        self.counters.rows_in_blocks += 1;
                    }
                }
            }
            AfterMerge::Expired => {
                self.counters.rows_expired += merged
                    .groups()
                    .filter(|g| g.shown() && !g.was_shown)
                    .count() as u64
            }
        }
    }

    /// The stored values of a window's groups `groups`: from the cache, or from the store for
    /// those the cache does not know. A window with nothing stored has none to look up (its
    /// groups are cached when written: [`ViewOperator::cache_open`]).
    fn stored_values(&mut self, w: WindowWrite, groups: &GroupKeys) -> Result<StoredValues> {
        if !w.stored {
            return Ok(StoredValues::none(groups.len()));
        }
        let start = w.start;
        let mut values = StoredValues::with_capacity(groups.len());
        let mut missing = Vec::new();
        self.cache.lookup_each(
            start,
            groups.len(),
            |i| groups.get(i),
            |i, found, slot| match found {
                Lookup::Found(v) => values.push(Some(v), Some(slot)),
                Lookup::New => values.push(None, Some(slot)),
                Lookup::Unknown => {
                    missing.push(i);
                    values.push(None, Some(slot));
                }
            },
        );
        if missing.is_empty() {
            return Ok(values);
        }
        let wanted: Vec<Vec<u8>> = missing
            .iter()
            .map(|i| self.keys.group(start, groups.get(*i)))
            .collect();
        let found = self
            .store
            .multi_get(Table::ViewRows, &wanted)
            .map_err(state_err)?;
        self.counters.store_reads += wanted.len() as u64;
        // A group without a single value may still have its entry in an open block; the
        // groups come in key order, so each block is read once.
        let read = self
            .progress
            .open_blocks
            .contains(&start)
            .then(|| self.store.read_view());
        let mut blocks = read
            .as_ref()
            .map(|read| OpenBlockFinder::new(read, &self.keys, start));
        // Most groups missing everywhere are new; the filter says so without a block read.
        let filter = self.block_keys.get(&start);
        for (i, value) in missing.into_iter().zip(found) {
            let group = groups.get(i);
            let value = match (value, blocks.as_mut()) {
                (Some(value), _) => value,
                (None, Some(_)) if filter.is_some_and(|f| !f.may_hold(group)) => continue,
                (None, Some(blocks)) => match blocks.find(group).map_err(state_err)? {
                    Some(value) => value,
                    None => continue,
                },
                (None, None) => continue,
            };
            match StoredValue::decode(&value).map_err(state_err)?.group() {
                Some(g) => values.set_parts(i, &[&StoredGroup::header(g.shown), g.state]),
                None => {
                    return Err(DataFusionError::Internal(format!(
                        "a group of open window {start} has a row but no state"
                    )))
                }
            }
        }
        Ok(values)
    }

    /// Counts a merged group's row in the view's row counts.
    fn count_rows(&mut self, group: &MergedGroup<'_>) {
        if group.row.is_some() {
            self.progress.rows_written += 1;
            if !group.was_shown {
                self.progress.rows += 1;
            }
        } else if group.was_shown {
            self.progress.rows = self.progress.rows.saturating_sub(1);
        }
    }

    /// Caches the stored values of an open window's merged groups, and counts them written.
    /// The groups of a window with nothing stored were not looked up (they have no slot): they
    /// are inserted, a chunk at a time.
    fn cache_open(&mut self, w: WindowWrite, merged: &Merged) {
        self.counters.groups_written += merged.len() as u64;
        if !w.stored {
            self.cache.insert_each(
                w.start,
                merged.len(),
                |i| merged.group(i).key,
                |i, value| {
                    let group = merged.group(i);
                    value.extend_from_slice(&StoredGroup::header(group.shown()));
                    value.extend_from_slice(group.state);
                },
            );
            return;
        }
        for group in merged.groups() {
            let cached = StoredGroup::header(group.shown());
            let parts: [&[u8]; 2] = [&cached, group.state];
            match group.slot {
                Some(slot) => self.cache.put(w.start, slot, group.key, &parts),
                None => self.cache.insert_parts(w.start, group.key, &parts),
            }
        }
    }
}
