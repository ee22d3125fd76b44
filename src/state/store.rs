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
    /// `llm_analyze` requests and answers (JSON), keyed by the key of the view row that asked
    /// and the column's index (one byte).
    LlmAnalyses,
}

impl Table {
    /// Every table, in declaration order (`ALL[t as usize] == t`).
    const ALL: [Table; 8] = [
        Table::Catalog,
        Table::Progress,
        Table::ViewRows,
        Table::GroupState,
        Table::LegacyWindowState,
        Table::DeadLetters,
        Table::LateRows,
        Table::LlmAnalyses,
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
            Table::LlmAnalyses => "llm_analyses",
        }
    }
}

pub(super) fn storage(e: rocksdb::Error) -> StateError {
    StateError::Storage(e.into_string())
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// The version of the store as a whole (its tables and their key layouts), stored under
/// [`STORE_FORMAT_KEY`] in the progress table. A store of a newer format is refused at open;
/// each view's own layout is checked when it loads (`operator::view`).
pub const STORE_FORMAT: u32 = 1;

const STORE_FORMAT_KEY: &[u8] = b"store/format";

/// The on-disk store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    db: DB,
    /// Write sets are applied under its read side (several at once, as RocksDB groups them);
    /// [`Store::update_existing`] takes its write side, so no write lands between its read and
    /// its write.
    writes: parking_lot::RwLock<()>,
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
            if matches!(t, Table::GroupState | Table::ViewRows) {
                // Epochs look up groups and entities that may not exist yet: a bloom filter
                // over the memtable's keys answers most of those without a skiplist search.
                cf_opts.set_memtable_whole_key_filtering(true);
                cf_opts.set_memtable_prefix_bloom_ratio(0.05);
                // The same for the table files: a lookup of a key that a file does not hold
                // skips that file's index and data blocks. Without it, each group an epoch
                // reads back seeks every level-0 file and one file per level.
                let mut table = rocksdb::BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                cf_opts.set_block_based_table_factory(&table);
            }
            ColumnFamilyDescriptor::new(t.cf_name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir.join("rocksdb"), cfs).map_err(|e| {
            StateError::Storage(format!(
                "cannot open the state store in {}: {} (is another weir running on this --data-dir?)",
                dir.display(),
                e.into_string()
            ))
        })?;
        let store = Self {
            db,
            writes: parking_lot::RwLock::new(()),
        };
        store.check_format(dir)?;
        Ok(store)
    }

    /// Refuses a store written by a newer Weir (its layout may mean something else here), and
    /// stamps a store that has no format yet.
    fn check_format(&self, dir: &Path) -> Result<(), StateError> {
        match self.get(Table::Progress, STORE_FORMAT_KEY)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > STORE_FORMAT {
                    return Err(StateError::NewerStore {
                        dir: dir.to_path_buf(),
                        found,
                        known: STORE_FORMAT,
                    });
                }
                Ok(())
            }
            None => {
                let mut ws = WriteSet::default();
                ws.put(
                    Table::Progress,
                    STORE_FORMAT_KEY,
                    STORE_FORMAT.to_be_bytes(),
                );
                self.write(&ws)
            }
        }
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
        multi_get_owned(&self.db, self.cf(table), keys, &ReadOptions::default())
    }

    /// Reads many keys at once (latest committed values) and hands each value to `f` with its
    /// key's index, in no particular order, without copying it.
    pub fn multi_get_each<K: AsRef<[u8]>>(
        &self,
        table: Table,
        keys: &[K],
        f: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), StateError> {
        multi_get_in_chunks(&self.db, self.cf(table), keys, &ReadOptions::default(), f)
    }

    /// Rewrites the values of `keys` in `table` that exist, each to what `change` makes of it
    /// (None leaves it), with no other write between the read and the write: a value that a
    /// concurrent write deletes stays deleted. For writers outside the epochs (the LLM worker).
    pub fn update_existing(
        &self,
        table: Table,
        keys: &[Vec<u8>],
        mut change: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), StateError> {
        let _alone = self.writes.write();
        let mut batch = WriteBatch::default();
        let cf = self.cf(table);
        for (key, value) in keys.iter().zip(self.multi_get(table, keys)?) {
            if let Some(new) = value.as_deref().and_then(&mut change) {
                batch.put_cf(cf, key, new);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.db.write(batch).map_err(storage)
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
    /// The set is left as it was: the caller may [`WriteSet::clear`] and reuse it.
    pub fn write(&self, set: &WriteSet) -> Result<(), StateError> {
        if set.ops.is_empty() {
            return Ok(());
        }
        let _shared = self.writes.read();
        let mut batch = WriteBatch::with_capacity_bytes(set.bytes + 16 * set.ops.len());
        let cfs = self.all_cfs();
        for op in &set.ops {
            let cf = cfs[op.table as usize];
            let key = set.slice(op.key);
            match op.kind {
                OpKind::Put => batch.put_cf(cf, key, set.slice(op.value)),
                OpKind::Delete => batch.delete_cf(cf, key),
                OpKind::DeleteRange => batch.delete_range_cf(cf, key, set.slice(op.value)),
            }
        }
        self.db.write(batch).map_err(storage)
    }

    /// Every table's column family, indexed by `Table as usize` (looking one up takes a lock
    /// and a map search: once per write, not per key).
    fn all_cfs(&self) -> Vec<&rocksdb::ColumnFamily> {
        Table::ALL.iter().map(|t| self.cf(*t)).collect()
    }

    /// Writes every table's memtable to disk and waits for it. RocksDB flushes a full
    /// memtable only when the next write arrives, so after a bulk load the first small write
    /// pays for flushing the load's last memtable; a benchmark measuring a quiet view flushes
    /// first.
    pub fn flush_memtables(&self) -> Result<(), StateError> {
        let cfs = self.all_cfs();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(storage)
    }

    /// Whether RocksDB is flushing or compacting, or has compactions waiting.
    pub fn background_busy(&self) -> bool {
        let int = |v: Result<Option<u64>, rocksdb::Error>| v.ok().flatten().unwrap_or(0);
        let running = [
            "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes",
        ]
        .iter()
        .any(|p| int(self.db.property_int_value(*p)) > 0);
        // Pending compactions are counted per column family.
        running
            || self.all_cfs().into_iter().any(|cf| {
                int(self
                    .db
                    .property_int_value_cf(cf, "rocksdb.compaction-pending"))
                    > 0
            })
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

/// A RocksDB cursor at a read view's snapshot.
pub(super) type Cursor<'a> = rocksdb::DBRawIteratorWithThreadMode<'a, DB>;

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A key and value as RocksDB's iterator hands them over.
type RawEntry = (Box<[u8]>, Box<[u8]>);

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

    /// A cursor over the entries with `from <= key < to`, unpositioned: for readers that
    /// step through a range and seek within it.
    pub(super) fn cursor(&self, table: Table, from: &[u8], to: &[u8]) -> Cursor<'_> {
        self.store
            .db
            .raw_iterator_cf_opt(self.store.cf(table), self.options(from, to))
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
        let first = self.edge(table, from, to, IteratorMode::Start)?;
        let last = self.edge(table, from, to, IteratorMode::End)?;
        Ok(first
            .zip(last)
            .map(|((a, _), (b, _))| (a.into_vec(), b.into_vec())))
    }

    /// The last entry with `from <= key < to`, if any (one seek backwards).
    pub fn last_in(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Entry>, StateError> {
        let last = self.edge(table, from, to, IteratorMode::End)?;
        Ok(last.map(|(k, v)| (k.into_vec(), v.into_vec())))
    }

    /// The first (`Start`) or last (`End`) entry with `from <= key < to`.
    fn edge(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
        mode: IteratorMode<'_>,
    ) -> Result<Option<RawEntry>, StateError> {
        self.store
            .db
            .iterator_cf_opt(self.store.cf(table), self.options(from, to), mode)
            .next()
            .transpose()
            .map_err(storage)
    }

    /// Reads many keys at this snapshot.
    pub fn multi_get(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        multi_get_owned(&self.store.db, self.store.cf(table), keys, &opts)
    }
}

/// Keys per RocksDB multi-get call. RocksDB builds a context of ~300 bytes for every key of a
/// call before it reads any (a lookup key with an inline buffer, a pinned value, a status), so
/// one call for an epoch's million missing groups took ~300 MB at once: the largest single
/// allocation of a 10M-key ingest. It reads in batches of 32 keys inside a call anyway.
const MULTI_GET_CHUNK: usize = 16 * 1024;

/// [`multi_get_in_chunks`] collecting owned values in the order of `keys`.
fn multi_get_owned(
    db: &DB,
    cf: &rocksdb::ColumnFamily,
    keys: &[Vec<u8>],
    opts: &ReadOptions,
) -> Result<Vec<Option<Vec<u8>>>, StateError> {
    let mut values = vec![None; keys.len()];
    multi_get_in_chunks(db, cf, keys, opts, |i, v| values[i] = v.map(<[u8]>::to_vec))?;
    Ok(values)
}

/// Reads `keys` from `cf` with `opts` and hands each value to `f` with its key's index, in no
/// particular order. More than [`MULTI_GET_CHUNK`] keys are read in ascending key order, that
/// many at a time: each call then reads a narrow range of every file, and a data block is read
/// and decompressed once for all its keys, as in one large call (unsorted chunks read a block
/// per key: 1.6x the operator's CPU at 10M keys).
fn multi_get_in_chunks<K: AsRef<[u8]>>(
    db: &DB,
    cf: &rocksdb::ColumnFamily,
    keys: &[K],
    opts: &ReadOptions,
    mut f: impl FnMut(usize, Option<&[u8]>),
) -> Result<(), StateError> {
    if keys.len() <= MULTI_GET_CHUNK {
        let values = db.batched_multi_get_cf_opt(cf, keys, false, opts);
        for (i, value) in values.into_iter().enumerate() {
            f(i, value.map_err(storage)?.as_deref());
        }
        return Ok(());
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|a, b| keys[*a].as_ref().cmp(keys[*b].as_ref()));
    let mut chunk_keys: Vec<&[u8]> = Vec::with_capacity(MULTI_GET_CHUNK);
    for chunk in order.chunks(MULTI_GET_CHUNK) {
        chunk_keys.clear();
        chunk_keys.extend(chunk.iter().map(|i| keys[*i].as_ref()));
        let values = db.batched_multi_get_cf_opt(cf, &chunk_keys, true, opts);
        for (i, value) in chunk.iter().zip(values) {
            f(*i, value.map_err(storage)?.as_deref());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum OpKind {
    Put,
    Delete,
    /// Deletes `key <= k < value`.
    DeleteRange,
}

/// Where a key or value lies in a write set's chunks.
#[derive(Debug, Clone, Copy)]
struct Span {
    chunk: u32,
    at: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: OpKind,
    table: Table,
    key: Span,
    value: Span,
}

/// Changes collected during an epoch and applied by [`Store::write`] in one atomic batch.
///
/// Keys and values are copied into a list of fixed-size chunks, so adding a change allocates
/// nothing once the set has held an epoch's size, and a growing set never copies what it
/// holds (one growing buffer copied everything at each doubling, onto freshly faulted pages:
/// a third of the operator thread in a catch-up of a HOP view). A set that is cleared and
/// reused keeps its chunks (an epoch of a million groups adds two million keys and values,
/// and allocating each was most of what the epoch cost).
#[derive(Default)]
pub struct WriteSet {
    /// Filled chunks, then the one being filled (the last).
    chunks: Vec<Vec<u8>>,
    /// Emptied chunks of [`CHUNK`] bytes, kept for the next epoch.
    spare: Vec<Vec<u8>>,
    ops: Vec<Op>,
    /// Key and value bytes held.
    bytes: usize,
    /// Clears in a row that found most of the held chunks unused.
    idle_clears: u8,
}

/// The size of a write set's chunks (a key and value larger than this get a chunk of their
/// own).
const CHUNK: usize = 4 << 20;

impl WriteSet {
    fn slice(&self, span: Span) -> &[u8] {
        let at = span.at as usize;
        &self.chunks[span.chunk as usize][at..at + span.len as usize]
    }

    /// Appends the concatenation of `parts`, in one chunk.
    fn append(&mut self, parts: &[&[u8]]) -> Span {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            let chunk = match self.spare.pop() {
                Some(chunk) if len <= CHUNK => chunk,
                spare => {
                    self.spare.extend(spare);
                    Vec::with_capacity(len.max(CHUNK))
                }
            };
            self.chunks.push(chunk);
        }
        let chunk = self.chunks.len() - 1;
        let buf = &mut self.chunks[chunk];
        let at = buf.len();
        for part in parts {
            buf.extend_from_slice(part);
        }
        self.bytes += len;
        let narrow = |n: usize| u32::try_from(n).expect("a key or value under 4 GiB");
        Span {
            chunk: narrow(chunk),
            at: narrow(at),
            len: narrow(len),
        }
    }

    fn push(&mut self, kind: OpKind, table: Table, key: &[&[u8]], value: &[&[u8]]) {
        let key = self.append(key);
        let value = self.append(value);
        self.ops.push(Op {
            kind,
            table,
            key,
            value,
        });
    }

    pub fn put(&mut self, table: Table, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(OpKind::Put, table, &[key.as_ref()], &[value.as_ref()]);
    }

    /// Puts the value made of `value`'s parts under the key made of `key`'s parts, without
    /// building either first.
    pub fn put_parts(&mut self, table: Table, key: &[&[u8]], value: &[&[u8]]) {
        self.push(OpKind::Put, table, key, value);
    }

    pub fn delete(&mut self, table: Table, key: impl AsRef<[u8]>) {
        self.push(OpKind::Delete, table, &[key.as_ref()], &[]);
    }

    /// Deletes the key made of `key`'s parts.
    pub fn delete_parts(&mut self, table: Table, key: &[&[u8]]) {
        self.push(OpKind::Delete, table, key, &[]);
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(&mut self, table: Table, prefix: impl AsRef<[u8]>) {
        let prefix = prefix.as_ref();
        self.delete_range(table, prefix, prefix_end(prefix));
    }

    /// Deletes every key with `from <= key < to`.
    pub fn delete_range(&mut self, table: Table, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        self.push(OpKind::DeleteRange, table, &[from.as_ref()], &[to.as_ref()]);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Makes room for `ops` more changes, so that a large epoch does not copy its list of
    /// changes at each doubling (their bytes go into chunks, which never move).
    pub fn reserve(&mut self, ops: usize) {
        self.ops.reserve(ops);
    }

    /// Bytes of keys and values the set writes (for logs and metrics).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Empties the set for reuse, keeping its chunks: the next epoch fills memory earlier
    /// ones paged in, instead of faulting in fresh memory. When more than 64 MiB of chunks
    /// stayed less than a quarter used for 16 clears in a row, the unused ones are released
    /// (one huge epoch, say a catch-up, should not pin its memory for good).
    pub fn clear(&mut self) {
        const LARGE: usize = 64 << 20;
        const RELEASE_AFTER: u8 = 16;
        let used = self.chunks.len();
        for mut chunk in self.chunks.drain(..) {
            if chunk.capacity() == CHUNK {
                chunk.clear();
                self.spare.push(chunk);
            }
        }
        let held = self.spare.len();
        let idle = held * CHUNK > LARGE && used < held / 4;
        self.idle_clears = if idle { self.idle_clears + 1 } else { 0 };
        if self.idle_clears >= RELEASE_AFTER {
            self.spare.truncate(used);
            self.spare.shrink_to_fit();
            self.ops = Vec::new();
            self.idle_clears = 0;
        }
        self.ops.clear();
        self.bytes = 0;
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
    fn a_store_of_a_newer_format_is_refused_and_a_new_one_is_stamped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(
                store.get(Table::Progress, STORE_FORMAT_KEY).unwrap(),
                Some(STORE_FORMAT.to_be_bytes().to_vec())
            );
            let mut set = WriteSet::default();
            set.put(
                Table::Progress,
                STORE_FORMAT_KEY,
                (STORE_FORMAT + 1).to_be_bytes(),
            );
            store.write(&set).unwrap();
        }
        let refused = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(refused, StateError::NewerStore { found, known, .. } if found == STORE_FORMAT + 1 && known == STORE_FORMAT),
            "{refused}"
        );
        assert!(refused.to_string().contains("newer Weir"), "{refused}");
    }

    #[test]
    fn a_cleared_write_set_keeps_its_chunks_until_they_stay_mostly_unused() {
        let mut set = WriteSet::default();
        let value = vec![7u8; 1 << 20];
        for i in 0..100u32 {
            set.put(Table::ViewRows, i.to_be_bytes(), &value);
        }
        assert_eq!(set.bytes(), 100 * (4 + (1 << 20)));
        assert_eq!(
            set.slice(set.ops[99].value),
            &value[..],
            "values stay whole"
        );
        assert_eq!(set.slice(set.ops[99].key), 99u32.to_be_bytes());
        let held = set.chunks.len();
        assert!(held > 16, "{held} chunks");
        set.clear();
        assert!(set.is_empty());
        assert_eq!(set.bytes(), 0);
        assert_eq!(set.spare.len(), held, "kept for the next epoch");
        for _ in 0..15 {
            set.put(Table::ViewRows, b"k", b"small");
            set.clear();
        }
        assert_eq!(set.spare.len(), held, "15 small epochs in a row keep them");
        set.put(Table::ViewRows, b"k", b"small");
        set.clear();
        assert_eq!(
            set.spare.len(),
            1,
            "the 16th releases all but the one it used"
        );
        set.put(Table::ViewRows, b"big", vec![1u8; CHUNK + 1]);
        set.put(Table::ViewRows, b"k", b"after");
        assert_eq!(set.slice(set.ops[0].value).len(), CHUNK + 1);
        assert_eq!(set.slice(set.ops[1].value), b"after");
    }

    #[test]
    fn an_update_never_brings_back_what_a_write_during_it_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = b"v\0row".to_vec();
        let mut ws = WriteSet::default();
        ws.put(Table::LlmAnalyses, key.clone(), b"pending");
        store.write(&ws).unwrap();
        let mut delete = WriteSet::default();
        delete.delete(Table::LlmAnalyses, key.clone());
        std::thread::scope(|s| {
            let mut deleter = None;
            store
                .update_existing(Table::LlmAnalyses, std::slice::from_ref(&key), |old| {
                    assert_eq!(old, b"pending");
                    // An epoch that deletes the record is written while the answer is made.
                    deleter = Some(s.spawn(|| store.write(&delete)));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    Some(b"answered".to_vec())
                })
                .unwrap();
            deleter.unwrap().join().unwrap().unwrap();
        });
        assert_eq!(store.get(Table::LlmAnalyses, &key).unwrap(), None);
        // Keys that do not exist are left alone.
        store
            .update_existing(Table::LlmAnalyses, &[b"gone".to_vec()], |_| {
                Some(b"x".to_vec())
            })
            .unwrap();
        assert_eq!(store.get(Table::LlmAnalyses, b"gone").unwrap(), None);
    }

    /// Reads of more keys than one multi-get call takes are sorted and chunked; every value
    /// still reaches the index of its key, in the store and at a snapshot, missing keys
    /// included.
    #[test]
    fn chunked_multi_gets_give_each_key_its_own_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = 2 * MULTI_GET_CHUNK + 7;
        let mut set = WriteSet::default();
        for i in (0..n).step_by(3) {
            set.put(Table::ViewRows, format!("k{i}"), format!("v{i}"));
        }
        store.write(&set).unwrap();
        // Not in key order: a multiplicative shuffle of 0..n.
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|j| format!("k{}", (j * 7919) % n).into_bytes())
            .collect();
        let expected: Vec<Option<Vec<u8>>> = (0..n)
            .map(|j| {
                let i = (j * 7919) % n;
                i.is_multiple_of(3).then(|| format!("v{i}").into_bytes())
            })
            .collect();
        assert_eq!(store.multi_get(Table::ViewRows, &keys).unwrap(), expected);
        let read = store.read_view();
        assert_eq!(read.multi_get(Table::ViewRows, &keys).unwrap(), expected);
        let mut seen = vec![0u8; n];
        store
            .multi_get_each(Table::ViewRows, &keys, |i, v| {
                seen[i] += 1;
                assert_eq!(v.map(<[u8]>::to_vec), expected[i]);
            })
            .unwrap();
        assert!(seen.iter().all(|c| *c == 1), "each key read once");
    }

    #[test]
    fn write_set_is_atomic_and_prefix_scans_are_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut set = WriteSet::default();
        set.put(Table::ViewRows, b"a\0\x02", b"two");
        set.put(Table::ViewRows, b"a\0\x01", b"one");
        set.put(Table::ViewRows, b"ab\0\x01", b"other");
        store.write(&set).unwrap();
        let rows = store.scan_prefix(Table::ViewRows, b"a\0").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1, b"one");
        let mut set = WriteSet::default();
        set.delete_prefix(Table::ViewRows, b"a\0");
        store.write(&set).unwrap();
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
        set.put(Table::ViewRows, b"k\0b", b"1");
        set.put(Table::ViewRows, b"k\0a", b"1");
        set.put(Table::ViewRows, b"k\0b", b"2");
        set.delete_prefix(Table::ViewRows, b"k\0");
        set.put(Table::ViewRows, b"k\0c", b"3");
        set.put(Table::ViewRows, b"k\0a", b"4");
        store.write(&set).unwrap();
        let rows = store.scan_prefix(Table::ViewRows, b"k\0").unwrap();
        let values: Vec<&[u8]> = rows.iter().map(|(_, v)| v.as_slice()).collect();
        assert_eq!(values, vec![&b"4"[..], &b"3"[..]]);
        let mut set = WriteSet::default();
        set.put(Table::ViewRows, b"k\0b", b"5");
        set.put(Table::ViewRows, b"k\0b", b"6");
        store.write(&set).unwrap();
        assert_eq!(store.get(Table::ViewRows, b"k\0b").unwrap().unwrap(), b"6");
    }

    #[test]
    fn prefix_end_handles_max_bytes() {
        assert_eq!(prefix_end(b"a\0"), b"a\x01".to_vec());
        assert_eq!(prefix_end(&[1, 255]), vec![2]);
    }
}
