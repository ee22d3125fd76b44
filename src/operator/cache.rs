//! The bounded in-memory cache of stored group states, shared out of one budget by all views.
//!
//! A view keeps the stored state of the groups it touched recently, per window, so that most
//! epochs merge without reading RocksDB. When the budget is spent the groups touched least
//! recently are dropped; a window that lost a group (or whose groups were never all loaded)
//! is *incomplete*, and a group missing from it is read from the store. A window the cache
//! holds completely — every window created since start, and every one loaded whole at start —
//! answers a miss with "new group" and never reads the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::prefetch::prefetch;

/// Bytes the caches of all views may hold together.
#[derive(Debug)]
pub struct CacheBudget {
    limit: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by all caches now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }
}

/// Bytes a group is counted beyond its key and value: its record's header, and its share of
/// the index (16 to 32 bytes: the index is a quarter to half full).
const ENTRY_OVERHEAD: usize = HEADER + 24;

/// How many groups ahead [`GroupCache::lookup_each`] asks for a group's index slot (and half
/// that for its record): enough misses in flight to cover a trip to memory.
const LOOK_AHEAD: usize = 16;

/// The smallest index, in slots.
const MIN_SLOTS: usize = 64;

/// A record's header: its key's hash (8 bytes), then its epoch, key length, value length and
/// room for the value (4 bytes each), little-endian. The key follows, then the value and any
/// unused room. The hash is kept so that rebuilding the index (as a window grows, or after
/// an eviction) does not hash every key again.
const HEADER: usize = 24;

/// Where the header's fields are.
const EPOCH: usize = 8;
const KEY_LEN: usize = 12;
const VALUE_LEN: usize = 16;
const ROOM: usize = 20;

/// The epoch of a record that was moved or dropped: its bytes wait for the next compaction.
/// [`GroupCache::next_epoch`] never counts to it.
const DEAD: u32 = u32::MAX;

/// The bytes of a record a new window's arena reserves per group before it has any.
const FIRST_RECORD_GUESS: usize = 64;

/// Where records start in an index slot's word: the low 40 bits hold the record's place in
/// the arena plus one, the high 24 the hash's high 24 bits.
const PLACE_BITS: u32 = 40;

/// One window's cached groups: each group a record (its epoch, key and stored value) in one
/// arena, found through an index with open addressing and linear probing, at most half full.
///
/// An arena instead of an allocation per group: a window's first epoch writes its groups
/// front to back into one buffer, a million of them without a million allocations, and each
/// group costs its key and value plus a 24-byte header (an entry and an allocation took 56).
/// A value that outgrows its room is written again at the end and the old record is dead
/// until the window is compacted ([`GroupCache::evict`], between epochs).
///
/// Why not hashbrown: a window of a million groups is cold, and an epoch looks up its groups
/// all at once; hashbrown cannot be asked where a key's slot is, so each lookup waited for
/// its own misses. Here a lookup asks for the slot of the group [`LOOK_AHEAD`] on, and a
/// group's record (its [`Slot`]) stays where it is while the window grows.
#[derive(Default)]
struct WindowCache {
    /// Per slot: 0 when empty, else a record's place and hash tag ([`PLACE_BITS`]).
    index: Vec<u64>,
    arena: Vec<u8>,
    /// Records the index holds (claimed ones included).
    live: usize,
    /// Bytes of dead records in the arena.
    dead: usize,
    /// The room a claimed record gets for its value: the length of the last value written.
    value_hint: u32,
    complete: bool,
}

/// A record read from a window's arena.
struct Record<'a> {
    hash: u64,
    epoch: u32,
    key: &'a [u8],
    value: &'a [u8],
    /// Bytes the record takes in the arena.
    size: usize,
}

impl Record<'_> {
    /// Bytes it counts against the budget (a claimed record counts once it has a value).
    fn cost(&self) -> usize {
        if self.value.is_empty() {
            0
        } else {
            self.key.len() + self.value.len() + ENTRY_OVERHEAD
        }
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn narrow(n: usize) -> u32 {
    u32::try_from(n).expect("a cached key or value under 4 GiB")
}

impl WindowCache {
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.index.len() - 1)
    }

    fn record(&self, at: usize) -> Record<'_> {
        let a = &self.arena;
        let key_len = read_u32(a, at + KEY_LEN) as usize;
        let value_len = read_u32(a, at + VALUE_LEN) as usize;
        let room = read_u32(a, at + ROOM) as usize;
        let key_at = at + HEADER;
        Record {
            hash: u64::from_le_bytes(a[at..at + 8].try_into().expect("eight bytes")),
            epoch: read_u32(a, at + EPOCH),
            key: &a[key_at..key_at + key_len],
            value: &a[key_at + key_len..key_at + key_len + value_len],
            size: HEADER + key_len + room,
        }
    }

    /// The record at `at` if one that is not dead starts there and holds `key`: a [`Slot`]
    /// handed out before the window was compacted may point anywhere.
    fn record_of(&self, at: usize, key: &[u8]) -> Option<Record<'_>> {
        let a = &self.arena;
        let header = a.get(at..at.checked_add(HEADER)?)?;
        let key_len = read_u32(header, KEY_LEN) as usize;
        let value_len = read_u32(header, VALUE_LEN) as usize;
        let room = read_u32(header, ROOM) as usize;
        let fits = key_len == key.len()
            && value_len <= room
            && at + HEADER + key_len + room <= a.len()
            && read_u32(header, EPOCH) != DEAD;
        fits.then(|| self.record(at)).filter(|r| r.key == key)
    }

    /// Every record that is not dead, in arena order.
    fn records(&self) -> impl Iterator<Item = Record<'_>> {
        let mut at = 0;
        std::iter::from_fn(move || {
            while at < self.arena.len() {
                let r = self.record(at);
                at += r.size;
                if r.epoch != DEAD {
                    return Some(r);
                }
            }
            None
        })
    }

    /// Makes room for `more` records without the index going over half full, and for their
    /// bytes in the arena (as large as the records so far, or a guess).
    fn reserve(&mut self, more: usize) {
        let wanted = ((self.live + more) * 2).next_power_of_two().max(MIN_SLOTS);
        if wanted > self.index.len() {
            self.index = vec![0; wanted];
            self.reindex();
        }
        let per_record = match self.live {
            0 => FIRST_RECORD_GUESS,
            n => (self.arena.len() - self.dead) / n + 1,
        };
        self.arena.reserve(more.saturating_mul(per_record));
    }

    /// Puts every record that is not dead into the index, which must be empty.
    fn reindex(&mut self) {
        let mask = self.index.len() - 1;
        let mut at = 0;
        while at < self.arena.len() {
            let r = self.record(at);
            let (size, epoch) = (r.size, r.epoch);
            if epoch != DEAD {
                let hash = r.hash;
                let mut pos = hash as usize & mask;
                while self.index[pos] != 0 {
                    pos = (pos + 1) & mask;
                }
                self.index[pos] = slot_word(hash, at);
            }
            at += size;
        }
    }

    fn prefetch_slot(&self, hash: u64) {
        prefetch(&self.index[self.home(hash)]);
    }

    /// Asks for the record the key of `hash` most likely is, when its home slot holds one.
    fn prefetch_entry(&self, hash: u64) {
        let word = self.index[self.home(hash)];
        if word != 0 && same_tag(word, hash) {
            let at = place(word);
            prefetch(&self.arena[at]);
            if let Some(next) = self.arena.get(at + 64) {
                prefetch(next);
            }
        }
    }

    /// Appends a record of `key` holding the concatenation of `value` with room for at least
    /// `room` bytes of value; returns its place.
    fn append(
        &mut self,
        (hash, key): (u64, &[u8]),
        value: &[&[u8]],
        room: usize,
        epoch: u32,
    ) -> usize {
        let len: usize = value.iter().map(|p| p.len()).sum();
        let room = room.max(len);
        let at = self.arena.len();
        assert!(at < 1 << PLACE_BITS, "a window's cache holds under 1 TiB");
        self.arena.extend_from_slice(&hash.to_le_bytes());
        for word in [epoch, narrow(key.len()), narrow(len), narrow(room)] {
            self.arena.extend_from_slice(&word.to_le_bytes());
        }
        self.arena.extend_from_slice(key);
        value.iter().for_each(|p| self.arena.extend_from_slice(p));
        self.arena.resize(at + HEADER + key.len() + room, 0);
        at
    }

    /// The record of `key`; when there is none, a new one holding the concatenation of `value`
    /// (empty: claimed, with room for a value as long as the last one written). Call
    /// [`WindowCache::reserve`] first.
    fn find_or_add(&mut self, hash: u64, key: &[u8], value: &[&[u8]], epoch: u32) -> usize {
        let mask = self.index.len() - 1;
        let mut pos = hash as usize & mask;
        loop {
            let word = self.index[pos];
            if word == 0 {
                let room = if value.is_empty() {
                    self.value_hint as usize
                } else {
                    0
                };
                let at = self.append((hash, key), value, room, epoch);
                self.index[pos] = slot_word(hash, at);
                self.live += 1;
                return at;
            }
            if same_tag(word, hash) {
                let at = place(word);
                if self.record(at).key == key {
                    return at;
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Sets the value of `key` to the concatenation of `parts`, adding its record if there is
    /// none; returns the bytes it added to and freed from the budget. Call
    /// [`WindowCache::reserve`] first.
    fn upsert(&mut self, hash: u64, key: &[u8], parts: &[&[u8]], epoch: u32) -> (usize, usize) {
        let before = self.live;
        let at = self.find_or_add(hash, key, parts, epoch);
        if self.live > before {
            self.value_hint = narrow(parts.iter().map(|p| p.len()).sum());
            (self.record(at).cost(), 0)
        } else {
            self.write(at, parts, epoch)
        }
    }

    /// Sets the value of the record at `at`; returns the bytes
    /// it added to and freed from the budget. A value that fits the record's room is written
    /// in place; a longer one makes a new record at the end, and the old one is dead.
    fn write(&mut self, at: usize, parts: &[&[u8]], epoch: u32) -> (usize, usize) {
        let old = self.record(at);
        let (freed, old_size, key_len, old_hash) = (old.cost(), old.size, old.key.len(), old.hash);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.value_hint = narrow(len);
        if len <= old_size - HEADER - key_len {
            let mut to = at + HEADER + key_len;
            for part in parts {
                self.arena[to..to + part.len()].copy_from_slice(part);
                to += part.len();
            }
            write_u32(&mut self.arena, at + EPOCH, epoch);
            write_u32(&mut self.arena, at + VALUE_LEN, narrow(len));
            return (self.record(at).cost(), freed);
        }
        let key = self.arena[at + HEADER..at + HEADER + key_len].to_vec();
        let hash = old_hash;
        let moved = self.append((hash, &key), parts, 0, epoch);
        write_u32(&mut self.arena, at + EPOCH, DEAD);
        self.dead += old_size;
        // Every record that is not dead is in the index; the search is bounded all the same.
        let mask = self.index.len() - 1;
        let home = hash as usize & mask;
        let pos = (0..self.index.len())
            .map(|step| (home + step) & mask)
            .find(|pos| place_plus_one(self.index[*pos]) == at + 1)
            .expect("a live record is in its window's index");
        self.index[pos] = slot_word(hash, moved);
        (self.record(moved).cost(), freed)
    }

    /// Finds or claims the record of `key` (see [`WindowCache::find_or_add`]), marks it
    /// touched in `epoch`, and says what the cache knows of it.
    fn touch(&mut self, hash: u64, key: &[u8], epoch: u32) -> (Lookup<'_>, Slot) {
        let at = self.find_or_add(hash, key, &[], epoch);
        write_u32(&mut self.arena, at + EPOCH, epoch);
        let complete = self.complete;
        (Lookup::of(self.record(at).value, complete), Slot(at))
    }

    /// Keeps the records `keep` says (dead ones never), moved toward the front of the arena in
    /// their order (in place: a record only ever moves down); returns the bytes of those it
    /// dropped.
    fn retain(&mut self, mut keep: impl FnMut(&Record<'_>) -> bool) -> usize {
        let (mut freed, mut live) = (0, 0);
        let (mut at, mut to) = (0, 0);
        while at < self.arena.len() {
            let r = self.record(at);
            let (size, kept) = (r.size, r.epoch != DEAD && keep(&r));
            if r.epoch != DEAD && !kept {
                freed += r.cost();
            }
            if kept {
                self.arena.copy_within(at..at + size, to);
                to += size;
                live += 1;
            }
            at += size;
        }
        self.arena.truncate(to);
        self.live = live;
        self.dead = 0;
        let slots = (live * 2).next_power_of_two().max(MIN_SLOTS);
        if slots < self.index.len() {
            self.index = vec![0; slots];
        } else {
            self.index.fill(0);
        }
        self.reindex();
        freed
    }

    /// Whether dead records take more than half of the arena (then it is worth compacting).
    fn mostly_dead(&self) -> bool {
        self.dead > 64 << 10 && self.dead * 2 > self.arena.len()
    }
}

/// A group key's hash, for every cache's index (one random seed for the process).
fn hash(key: &[u8]) -> u64 {
    static HASHER: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    HASHER.get_or_init(ahash::RandomState::new).hash_one(key)
}

/// An index slot's word for the record at `at` whose key hashes to `hash`.
fn slot_word(hash: u64, at: usize) -> u64 {
    (hash >> PLACE_BITS << PLACE_BITS) | (at as u64 + 1)
}

fn place_plus_one(word: u64) -> usize {
    (word & ((1 << PLACE_BITS) - 1)) as usize
}

fn place(word: u64) -> usize {
    place_plus_one(word) - 1
}

fn same_tag(word: u64, hash: u64) -> bool {
    word >> PLACE_BITS == hash >> PLACE_BITS
}

/// Where a looked-up group sits in its window (its record in the arena), so that writing its
/// new value does not search again. Valid until the window loses records or is compacted
/// ([`GroupCache::evict`]) or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

/// One view's cache.
pub struct GroupCache {
    windows: BTreeMap<i64, WindowCache>,
    bytes: usize,
    epoch: u32,
    budget: std::sync::Arc<CacheBudget>,
}

/// What a lookup found for one group.
pub enum Lookup<'a> {
    /// The stored value (a `StoredGroup`).
    Found(&'a [u8]),
    /// The group has nothing stored.
    New,
    /// Not cached and the window is incomplete: read the store.
    Unknown,
}

impl<'a> Lookup<'a> {
    fn of(value: &'a [u8], complete: bool) -> Self {
        match value {
            [] if complete => Lookup::New,
            [] => Lookup::Unknown,
            value => Lookup::Found(value),
        }
    }
}

impl GroupCache {
    pub fn new(budget: std::sync::Arc<CacheBudget>) -> Self {
        Self {
            windows: BTreeMap::new(),
            bytes: 0,
            epoch: 0,
            budget,
        }
    }

    /// Starts the next epoch: groups touched from now on are the most recent.
    pub fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == DEAD {
            self.epoch = 0;
        }
    }

    /// Whether the cache can take `bytes` more without going over the budget.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.budget.used() + bytes <= self.budget.limit()
    }

    /// Makes window `start` known; `complete` says whether every stored group of it will be
    /// inserted (a new window, or one being loaded whole).
    pub fn open_window(&mut self, start: i64, complete: bool) {
        self.windows.entry(start).or_insert_with(|| WindowCache {
            complete,
            ..WindowCache::default()
        });
    }

    /// Says whether window `start` holds every stored group of the window.
    pub fn set_complete(&mut self, start: i64, complete: bool) {
        if let Some(w) = self.windows.get_mut(&start) {
            w.complete = complete;
        }
    }

    /// Finds group `group` of window `start`, claiming a slot for it when it is not cached;
    /// [`GroupCache::put`] writes its new value there.
    #[cfg(test)]
    pub fn lookup(&mut self, start: i64, group: &[u8]) -> (Lookup<'_>, Slot) {
        let epoch = self.epoch;
        let window = self.windows.entry(start).or_default();
        window.reserve(1);
        window.touch(hash(group), group, epoch)
    }

    /// Looks up groups `0..groups` of window `start` (`key(i)` is group i's key), claiming a
    /// slot for each that is not cached, and hands each to `found` in order;
    /// [`GroupCache::put`] writes a group's new value in its slot. The groups' keys are hashed
    /// first, so that each lookup can ask for the slots of the groups ahead of it.
    pub fn lookup_each<'k>(
        &mut self,
        start: i64,
        groups: usize,
        key: impl Fn(usize) -> &'k [u8],
        mut found: impl FnMut(usize, Lookup<'_>, Slot),
    ) {
        let epoch = self.epoch;
        let hashes: Vec<u64> = (0..groups).map(|i| hash(key(i))).collect();
        let window = self.windows.entry(start).or_default();
        window.reserve(groups);
        for (i, hash) in hashes.iter().enumerate() {
            if let Some(ahead) = hashes.get(i + LOOK_AHEAD) {
                window.prefetch_slot(*ahead);
            }
            if let Some(ahead) = hashes.get(i + LOOK_AHEAD / 2) {
                window.prefetch_entry(*ahead);
            }
            let (what, slot) = window.touch(*hash, key(i), epoch);
            found(i, what, slot);
        }
    }

    /// Makes room in window `start`'s index for `groups` more groups at once, so that looking
    /// them up a chunk at a time does not grow it (and place every record again) step by step.
    pub fn reserve(&mut self, start: i64, groups: usize) {
        self.windows.entry(start).or_default().reserve(groups);
    }

    /// Writes the concatenation of `parts` as the value of the group `lookup` gave `slot`.
    /// A value that fits the group's record (most do: fixed-width states) is written in place.
    pub fn put(&mut self, start: i64, slot: Slot, group: &[u8], parts: &[&[u8]]) {
        let epoch = self.epoch;
        let window = self.windows.entry(start).or_default();
        if window.record_of(slot.0, group).is_some() {
            let (added, freed) = window.write(slot.0, parts, epoch);
            self.grow(added, freed);
        } else {
            // The slot moved (it should not): find the group, or add it.
            self.insert_parts(start, group, parts);
        }
    }

    /// Caches the concatenation of `parts` as group `group`'s stored value in window `start`.
    pub fn insert_parts(&mut self, start: i64, group: &[u8], parts: &[&[u8]]) {
        let epoch = self.epoch;
        let window = self.windows.entry(start).or_default();
        window.reserve(1);
        let (added, freed) = window.upsert(hash(group), group, parts, epoch);
        self.grow(added, freed);
    }

    /// Caches the stored values of groups `0..groups` of window `start` as
    /// [`GroupCache::insert_parts`] does, for groups that were not looked up (a window with
    /// nothing stored): `key(i)` is group i's key, and `value(i, buf)` appends its value to
    /// `buf`. A new group's record is appended to the window's arena, and the keys are hashed
    /// first, so that each insert asks for the index slot of the group [`LOOK_AHEAD`] on.
    pub fn insert_each<'k>(
        &mut self,
        start: i64,
        groups: usize,
        key: impl Fn(usize) -> &'k [u8],
        value: impl Fn(usize, &mut Vec<u8>),
    ) {
        let epoch = self.epoch;
        let hashes: Vec<u64> = (0..groups).map(|i| hash(key(i))).collect();
        let window = self.windows.entry(start).or_default();
        window.reserve(groups);
        let (mut added, mut freed) = (0, 0);
        let mut buf = Vec::new();
        for (i, hash) in hashes.iter().enumerate() {
            if let Some(ahead) = hashes.get(i + LOOK_AHEAD) {
                window.prefetch_slot(*ahead);
            }
            buf.clear();
            value(i, &mut buf);
            let (a, f) = window.upsert(*hash, key(i), &[&buf], epoch);
            added += a;
            freed += f;
        }
        self.grow(added, freed);
    }

    /// Caches `value` as group `group`'s stored value in window `start`.
    #[cfg(test)]
    pub fn insert(&mut self, start: i64, group: &[u8], value: &[u8]) {
        self.insert_parts(start, group, &[value]);
    }

    fn grow(&mut self, added: usize, freed: usize) {
        self.bytes = self.bytes + added - freed;
        if added >= freed {
            self.budget.used.fetch_add(added - freed, Ordering::Relaxed);
        } else {
            self.budget.used.fetch_sub(freed - added, Ordering::Relaxed);
        }
    }

    /// Forgets window `start` (it closed).
    pub fn remove_window(&mut self, start: i64) {
        if let Some(w) = self.windows.remove(&start) {
            let bytes: usize = w.records().map(|r| r.cost()).sum();
            self.grow(0, bytes);
        }
    }

    /// Bytes this cache holds.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Between epochs: compacts windows whose arenas are mostly dead records, then, while the
    /// budget is spent, drops this view's least recently touched groups (never those of the
    /// current epoch). Returns how many it dropped. Slots handed out before are invalid after.
    pub fn evict(&mut self) -> u64 {
        for w in self.windows.values_mut().filter(|w| w.mostly_dead()) {
            w.retain(|_| true);
        }
        if !self.budget.over() || self.bytes == 0 {
            return 0;
        }
        // Aim below the limit so eviction does not run at every epoch.
        let excess = self
            .budget
            .used()
            .saturating_sub(self.budget.limit() / 10 * 9);
        let mut by_epoch: BTreeMap<u32, usize> = BTreeMap::new();
        for w in self.windows.values() {
            for r in w.records() {
                *by_epoch.entry(r.epoch).or_default() += r.cost();
            }
        }
        let mut cutoff = None;
        let mut freed = 0;
        for (epoch, bytes) in by_epoch {
            if epoch >= self.epoch || freed >= excess {
                break;
            }
            freed += bytes;
            cutoff = Some(epoch);
        }
        let Some(cutoff) = cutoff else { return 0 };
        let mut dropped = 0u64;
        let mut freed = 0;
        for w in self.windows.values_mut() {
            let mut lost = 0u64;
            freed += w.retain(|r| {
                // A claimed record without a value (a merge that failed) holds nothing.
                let keep = r.epoch > cutoff && !r.value.is_empty();
                if !keep && !r.value.is_empty() {
                    lost += 1;
                }
                keep
            });
            if lost > 0 {
                w.complete = false;
                dropped += lost;
            }
        }
        self.grow(0, freed);
        dropped
    }
}

impl Drop for GroupCache {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.grow(0, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn complete_windows_answer_misses_and_eviction_makes_them_incomplete() {
        let budget = Arc::new(CacheBudget::new(1_000));
        let mut cache = GroupCache::new(budget.clone());
        cache.open_window(0, true);
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::New));
        assert!(matches!(cache.lookup(60, b"a").0, Lookup::Unknown));
        cache.insert(0, b"a", &[1; 100]);
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::Found(v) if v.len() == 100));
        // Same size: overwritten in place; another size: replaced. The bytes follow.
        cache.insert_parts(0, b"a", &[&[2; 60], &[3; 40]]);
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::Found(v) if v[0] == 2 && v[99] == 3));
        assert_eq!(budget.used(), 1 + 100 + ENTRY_OVERHEAD);
        cache.insert_parts(0, b"a", &[&[4; 10], &[5; 80]]);
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::Found(v) if v.len() == 90 && v[89] == 5));
        assert_eq!(budget.used(), 1 + 90 + ENTRY_OVERHEAD);
        cache.insert(0, b"a", &[1; 100]);
        assert_eq!(budget.used(), 1 + 100 + ENTRY_OVERHEAD);
        assert_eq!(cache.evict(), 0, "under budget");
        for i in 0..10u8 {
            cache.next_epoch();
            cache.insert(0, &[b'k', i], &[0; 100]);
        }
        let dropped = cache.evict();
        assert!(dropped > 0);
        assert!(
            budget.used() <= 900,
            "evicts below the limit: {}",
            budget.used()
        );
        // The newest group stays; an evicted one is now unknown, not new.
        assert!(matches!(cache.lookup(0, &[b'k', 9]).0, Lookup::Found(_)));
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::Unknown));
        cache.remove_window(0);
        assert_eq!(cache.bytes(), 0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_lookup_claims_a_slot_and_the_value_is_written_there() {
        let budget = Arc::new(CacheBudget::new(10_000));
        let mut cache = GroupCache::new(budget.clone());
        cache.open_window(0, true);
        let (found, a) = cache.lookup(0, b"a");
        assert!(matches!(found, Lookup::New));
        let (_, b) = cache.lookup(0, b"b");
        assert_eq!(budget.used(), 0, "a claimed slot costs nothing yet");
        cache.put(0, a, b"a", &[b"1", b"23"]);
        cache.put(0, b, b"b", &[b"4"]);
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::Found(v) if v == b"123"));
        assert!(matches!(cache.lookup(0, b"b").0, Lookup::Found(v) if v == b"4"));
        assert_eq!(cache.bytes(), (1 + 3) + (1 + 1) + 2 * ENTRY_OVERHEAD);
        // A slot keeps its group while the window grows: the value is written where it was.
        for i in 0..100u8 {
            cache.insert(0, &[b'x', i], &[i]);
        }
        cache.put(0, a, b"a", &[b"999"]);
        assert!(matches!(cache.lookup(0, b"a").0, Lookup::Found(v) if v == b"999"));
        // In an incomplete window a claimed group is unknown until written.
        cache.open_window(60, false);
        assert!(matches!(cache.lookup(60, b"a").0, Lookup::Unknown));
        assert!(matches!(cache.lookup(60, b"a").0, Lookup::Unknown));
        cache.next_epoch();
        cache.remove_window(0);
        cache.remove_window(60);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_chunk_of_groups_inserted_at_once_is_cached_as_one_by_one() {
        let key = |i: usize| format!("key{i}").into_bytes();
        let keys: Vec<Vec<u8>> = (0..3000).map(key).collect();
        let budget = Arc::new(CacheBudget::new(usize::MAX));
        let mut cache = GroupCache::new(budget.clone());
        cache.open_window(0, true);
        // Two chunks, the second overlapping the first: its first 500 groups are written
        // again, half with a value of the same length (in place), half with a longer one.
        cache.insert_each(
            0,
            2000,
            |i| &keys[i],
            |i, v| v.extend_from_slice(&[i as u8; 3]),
        );
        cache.insert_each(
            0,
            1500,
            |i| &keys[1500 + i],
            |i, v| v.resize(if i % 2 == 0 { 3 } else { 5 }, 7),
        );
        let mut expected = 0;
        for (i, k) in keys.iter().enumerate() {
            let value = match i {
                0..1500 => vec![i as u8; 3],
                _ if (i - 1500) % 2 == 0 => vec![7; 3],
                _ => vec![7; 5],
            };
            expected += k.len() + value.len() + ENTRY_OVERHEAD;
            assert!(
                matches!(cache.lookup(0, k).0, Lookup::Found(v) if v == value),
                "group {i}"
            );
        }
        assert_eq!(cache.bytes(), expected);
        assert_eq!(budget.used(), expected);
        cache.remove_window(0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn lookups_of_many_groups_agree_with_a_map_across_growth_and_eviction() {
        use crate::source::generator::mix;
        use std::collections::HashMap;
        let budget = Arc::new(CacheBudget::new(usize::MAX));
        let mut cache = GroupCache::new(budget.clone());
        cache.open_window(0, true);
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for round in 0..6u64 {
            cache.next_epoch();
            // Groups from a space that grows each round: some seen before, most new; keys
            // of several lengths.
            let keys: Vec<Vec<u8>> = (0..5_000u64)
                .map(|i| {
                    let k = mix(round * 10_000 + i) % (4_000 * (round + 1));
                    let mut key = format!("g{k}").into_bytes();
                    key.resize(key.len() + (k % 3) as usize * 7, b'.');
                    key
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut slots = Vec::new();
            cache.lookup_each(
                0,
                keys.len(),
                |i| &keys[i],
                |i, found, slot| {
                    match (found, model.get(&keys[i])) {
                        (Lookup::Found(v), Some(m)) => assert_eq!(v, &m[..]),
                        (Lookup::New, None) => {}
                        _ => panic!("group {i} of round {round} disagrees with the map"),
                    }
                    slots.push(slot);
                },
            );
            for (key, slot) in keys.iter().zip(slots) {
                let value = format!("{round}:{}", key.len()).into_bytes();
                cache.put(0, slot, key, &[&value]);
                model.insert(key.clone(), value);
            }
        }
        let held: usize = model
            .iter()
            .map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        assert_eq!(cache.bytes(), held);
        // Evicting the older half: what is left is found, what went is unknown.
        let cutoff = cache.epoch - 3;
        let freed = cache
            .windows
            .get_mut(&0)
            .unwrap()
            .retain(|e| e.epoch > cutoff);
        cache.grow(0, freed);
        cache.set_complete(0, false);
        let kept: Vec<(Vec<u8>, bool)> = model
            .keys()
            .map(|k| {
                let w = &cache.windows[&0];
                (k.clone(), w.records().any(|r| r.key == &k[..]))
            })
            .collect();
        assert!(kept.iter().any(|(_, k)| *k) && kept.iter().any(|(_, k)| !*k));
        cache.lookup_each(
            0,
            kept.len(),
            |i| &kept[i].0,
            |i, found, _| match found {
                Lookup::Found(v) => assert!(kept[i].1 && v == &model[&kept[i].0][..]),
                Lookup::Unknown => assert!(!kept[i].1),
                Lookup::New => panic!("an incomplete window never says new"),
            },
        );
        cache.remove_window(0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn values_that_outgrow_their_room_move_and_compaction_keeps_every_group() {
        let budget = Arc::new(CacheBudget::new(usize::MAX));
        let mut cache = GroupCache::new(budget.clone());
        cache.open_window(0, true);
        let keys: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("group-{i}").into_bytes())
            .collect();
        let mut compacted = false;
        // Each round's values are a byte longer than the last: every record moves, and the
        // arena fills with dead ones until the end of an epoch compacts it.
        for (round, len) in (4..12).enumerate() {
            let mut slots = Vec::new();
            cache.lookup_each(
                0,
                keys.len(),
                |i| &keys[i],
                |i, found, slot| {
                    match found {
                        Lookup::Found(v) => assert_eq!(v, vec![round as u8 - 1; len - 1], "{i}"),
                        Lookup::New => assert_eq!(round, 0),
                        Lookup::Unknown => panic!("a complete window never says unknown"),
                    }
                    slots.push(slot);
                },
            );
            for (key, slot) in keys.iter().zip(slots) {
                cache.put(0, slot, key, &[&vec![round as u8; len]]);
            }
            let dead_before = cache.windows[&0].dead;
            assert_eq!(cache.evict(), 0, "nothing is evicted under budget");
            let window = &cache.windows[&0];
            compacted |= dead_before > 0 && window.dead == 0;
            assert!(
                window.dead * 2 <= window.arena.len().max(64 << 10),
                "round {round}"
            );
        }
        assert!(compacted, "the arena was compacted");
        let held: usize = keys.iter().map(|k| k.len() + 11 + ENTRY_OVERHEAD).sum();
        assert_eq!(cache.bytes(), held);
        // A slot from before a compaction is stale: the value still lands on its group.
        let (_, stale) = cache.lookup(0, &keys[7]);
        cache.put(0, stale, &keys[7], &[&[9; 30]]);
        cache.windows.get_mut(&0).unwrap().retain(|_| true);
        cache.put(0, stale, &keys[7], &[&[8; 3]]);
        cache.put(0, stale, &keys[8], &[&[7; 3]]);
        assert!(matches!(cache.lookup(0, &keys[7]).0, Lookup::Found(v) if v == [8; 3]));
        assert!(matches!(cache.lookup(0, &keys[8]).0, Lookup::Found(v) if v == [7; 3]));
        cache.remove_window(0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn dropping_a_cache_returns_its_bytes() {
        let budget = Arc::new(CacheBudget::new(1_000));
        {
            let mut cache = GroupCache::new(budget.clone());
            cache.insert(5, b"x", &[0; 10]);
            assert!(budget.used() > 0);
        }
        assert_eq!(budget.used(), 0);
    }
}
