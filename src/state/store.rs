//! The RocksDB-backed store: open, point reads, prefix scans, atomic write sets, snapshots.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteBatch, DB,
};

use super::StateError;

/// A logical table of the store; each is one RocksDB column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// Source and view definitions (`source/<name>`, `view/<name>`).
    Catalog,
    /// Positions, watermarks and counters (`source/<name>`, `view/<name>`).
    Progress,
    /// A view's rows: one output row per group, keyed by view, window start and group key
    /// (see `keyed`).
    ViewRows,
    /// Accumulator state of each group of an open window (or of a view without windows),
    /// under the same key as its row.
    GroupState,
    /// Whole-window state blobs of state format 1; nothing reads them, a view that had them
    /// is rebuilt and they are deleted.
    LegacyWindowState,
    /// Records that could not be decoded, keyed by source and sequence number.
    DeadLetters,
    /// Rows that arrived after their window closed, keyed by view and sequence number.
    LateRows,
}

impl Table {
    /// Every table, in declaration order (`ALL[t as usize] == t`).
    const ALL: [Table; 7] = [
        Table::Catalog,
        Table::Progress,
        Table::ViewRows,
        Table::GroupState,
        Table::LegacyWindowState,
        Table::DeadLetters,
        Table::LateRows,
    ];

    fn cf_name(self) -> &'static str {
        match self {
            Table::Catalog => "catalog",
            Table::Progress => "progress",
            Table::ViewRows => "view_rows",
            Table::GroupState => "group_state",
            Table::LegacyWindowState => "window_state",
            Table::DeadLetters => "dead_letters",
            Table::LateRows => "late_rows",
        }
    }
}

fn storage(e: rocksdb::Error) -> StateError {
    StateError::Storage(e.into_string())
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// The on-disk store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    db: DB,
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StateError::Storage(format!("{}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = Table::ALL.iter().map(|t| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(t.cf_name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir.join("rocksdb"), cfs).map_err(|e| {
            StateError::Storage(format!(
                "cannot open the state store in {}: {} (is another weir running on this --data-dir?)",
                dir.display(),
                e.into_string()
            ))
        })?;
        Ok(Self { db })
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(table.cf_name())
            .expect("column family created at open")
    }

    /// Reads one value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get_cf(self.cf(table), key).map_err(storage)
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        self.read_view().scan_prefix(table, prefix)
    }

    /// Reads many keys at once (latest committed values).
    pub fn multi_get(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        self.db
            .batched_multi_get_cf(self.cf(table), keys, false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())).map_err(storage))
            .collect()
    }

    /// A consistent point-in-time view of the whole store.
    pub fn read_view(&self) -> ReadView<'_> {
        ReadView {
            store: self,
            snapshot: self.db.snapshot(),
        }
    }

    /// Applies every change of `set` atomically, in the order they were added: all of it is on
    /// disk, or none. Writers add each table's keys in ascending order where they can: RocksDB's
    /// memtable inserts keys that arrive in order several times faster (each insert starts
    /// where the previous one ended; 1M-key epochs measured 0.2 s sorted against 1–2 s not).
    pub fn write(&self, set: WriteSet) -> Result<(), StateError> {
        if set.ops.is_empty() {
            return Ok(());
        }
        let ops = set.ops;
        let mut batch = WriteBatch::with_capacity_bytes(batch_bytes(&ops));
        // Looking a column family up takes a lock and a map search: once per table.
        let cfs: Vec<&rocksdb::ColumnFamily> = Table::ALL.iter().map(|t| self.cf(*t)).collect();
        let cf = |t: &Table| cfs[*t as usize];
        for op in &ops {
            match op {
                Op::Put(t, k, v) => batch.put_cf(cf(t), k, v),
                Op::Delete(t, k) => batch.delete_cf(cf(t), k),
                Op::DeletePrefix(t, p) => {
                    batch.delete_range_cf(cf(t), p.as_slice(), prefix_end(p).as_slice())
                }
                Op::DeleteRange(t, from, to) => batch.delete_range_cf(cf(t), from, to),
            }
        }
        self.db.write(batch).map_err(storage)
    }

    /// Whether RocksDB is flushing or compacting, or has compactions waiting.
    pub fn background_busy(&self) -> bool {
        [
            "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes",
            "rocksdb.compaction-pending",
        ]
        .iter()
        .any(|p| self.db.property_int_value(*p).ok().flatten().unwrap_or(0) > 0)
    }

    /// Approximate bytes on disk, for metrics.
    pub fn approximate_size(&self) -> u64 {
        Table::ALL
            .iter()
            .filter_map(|t| {
                self.db
                    .property_int_value_cf(self.cf(*t), "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

/// The bytes a write batch of `ops` needs, so it is allocated once.
fn batch_bytes(ops: &[Op]) -> usize {
    ops.iter()
        .map(|op| {
            16 + match op {
                Op::Put(_, k, v) => k.len() + v.len(),
                Op::Delete(_, k) => k.len(),
                Op::DeletePrefix(_, k) => 2 * k.len() + 1,
                Op::DeleteRange(_, a, b) => a.len() + b.len(),
            }
        })
        .sum()
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// Reads at one snapshot, so a query sees every view as of the same committed epochs.
pub struct ReadView<'a> {
    store: &'a Store,
    snapshot: rocksdb::Snapshot<'a>,
}

/// A [`ReadView`] that holds its store, so it is not tied to a borrow: one query's scans
/// share it across their blocking tasks and all read the same committed epochs.
pub struct SharedReadView {
    // Declared first, so the snapshot is released before the store handle below is dropped.
    view: ReadView<'static>,
    _store: Arc<Store>,
}

impl SharedReadView {
    pub fn new(store: Arc<Store>) -> Self {
        // SAFETY: the store lives in the Arc's allocation, which never moves and outlives
        // `view`: fields drop in declaration order, and `view` is never handed out for
        // longer than a borrow of `self`.
        let store_ref: &'static Store = unsafe { &*Arc::as_ptr(&store) };
        Self {
            view: store_ref.read_view(),
            _store: store,
        }
    }

    pub fn view(&self) -> &ReadView<'_> {
        &self.view
    }
}

impl std::fmt::Debug for SharedReadView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedReadView")
    }
}

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The first and the last key of a range.
pub type KeyBounds = (Vec<u8>, Vec<u8>);

impl ReadView<'_> {
    fn options(&self, from: &[u8], to: &[u8]) -> ReadOptions {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        opts.set_iterate_lower_bound(from.to_vec());
        opts.set_iterate_upper_bound(to.to_vec());
        opts
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        self.for_each_in(table, prefix, &prefix_end(prefix), |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Calls `f` on each entry with `from <= key < to`, in key order, until it breaks.
    pub fn for_each_in(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StateError> {
        let iter = self.store.db.iterator_cf_opt(
            self.store.cf(table),
            self.options(from, to),
            IteratorMode::From(from, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(storage)?;
            if f(&k, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The first and the last key with `from <= key < to`, if any.
    pub fn key_bounds(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<KeyBounds>, StateError> {
        let cf = self.store.cf(table);
        let first = self
            .store
            .db
            .iterator_cf_opt(cf, self.options(from, to), IteratorMode::Start)
            .next()
            .transpose()
            .map_err(storage)?;
        let last = self
            .store
            .db
            .iterator_cf_opt(cf, self.options(from, to), IteratorMode::End)
            .next()
            .transpose()
            .map_err(storage)?;
        Ok(first
            .zip(last)
            .map(|((a, _), (b, _))| (a.into_vec(), b.into_vec())))
    }

    /// Reads many keys at this snapshot.
    pub fn multi_get(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        self.store
            .db
            .batched_multi_get_cf_opt(self.store.cf(table), keys, false, &opts)
            .into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())).map_err(storage))
            .collect()
    }
}

enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
    DeletePrefix(Table, Vec<u8>),
    DeleteRange(Table, Vec<u8>, Vec<u8>),
}

/// Changes collected during an epoch and applied by [`Store::write`] in one atomic batch.
#[derive(Default)]
pub struct WriteSet {
    ops: Vec<Op>,
}

impl WriteSet {
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(table, key.into(), value.into()));
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(table, key.into()));
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(&mut self, table: Table, prefix: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeletePrefix(table, prefix.into()));
    }

    /// Deletes every key with `from <= key < to`.
    pub fn delete_range(&mut self, table: Table, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(Op::DeleteRange(table, from, to));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values the set writes (for logs and metrics).
    pub fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put(_, k, v) => k.len() + v.len(),
                Op::Delete(_, k) | Op::DeletePrefix(_, k) => k.len(),
                Op::DeleteRange(_, a, b) => a.len() + b.len(),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_tables_are_listed_in_declaration_order() {
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
        }
    }

    #[test]
    fn write_set_is_atomic_and_prefix_scans_are_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut set = WriteSet::default();
        set.put(Table::ViewRows, b"a\0\x02".to_vec(), b"two".to_vec());
        set.put(Table::ViewRows, b"a\0\x01".to_vec(), b"one".to_vec());
        set.put(Table::ViewRows, b"ab\0\x01".to_vec(), b"other".to_vec());
        store.write(set).unwrap();
        let rows = store.scan_prefix(Table::ViewRows, b"a\0").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1, b"one");
        let mut set = WriteSet::default();
        set.delete_prefix(Table::ViewRows, b"a\0".to_vec());
        store.write(set).unwrap();
        assert!(store
            .scan_prefix(Table::ViewRows, b"a\0")
            .unwrap()
            .is_empty());
        assert_eq!(
            store.scan_prefix(Table::ViewRows, b"ab\0").unwrap().len(),
            1
        );
    }

    #[test]
    fn puts_are_sorted_between_deletes_and_keep_their_order_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut set = WriteSet::default();
        set.put(Table::ViewRows, b"k\0b".to_vec(), b"1".to_vec());
        set.put(Table::ViewRows, b"k\0a".to_vec(), b"1".to_vec());
        set.put(Table::ViewRows, b"k\0b".to_vec(), b"2".to_vec());
        set.delete_prefix(Table::ViewRows, b"k\0".to_vec());
        set.put(Table::ViewRows, b"k\0c".to_vec(), b"3".to_vec());
        set.put(Table::ViewRows, b"k\0a".to_vec(), b"4".to_vec());
        store.write(set).unwrap();
        let rows = store.scan_prefix(Table::ViewRows, b"k\0").unwrap();
        let values: Vec<&[u8]> = rows.iter().map(|(_, v)| v.as_slice()).collect();
        assert_eq!(values, vec![&b"4"[..], &b"3"[..]]);
        let mut set = WriteSet::default();
        set.put(Table::ViewRows, b"k\0b".to_vec(), b"5".to_vec());
        set.put(Table::ViewRows, b"k\0b".to_vec(), b"6".to_vec());
        store.write(set).unwrap();
        assert_eq!(store.get(Table::ViewRows, b"k\0b").unwrap().unwrap(), b"6");
    }

    #[test]
    fn prefix_end_handles_max_bytes() {
        assert_eq!(prefix_end(b"a\0"), b"a\x01".to_vec());
        assert_eq!(prefix_end(&[1, 255]), vec![2]);
    }
}
