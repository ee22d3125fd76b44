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

/// Bytes an entry is counted beyond its key and value: the entry is 32 bytes, its share of
/// the index 16 to 32 (the index is a quarter to half full), its allocation's header 8.
const ENTRY_OVERHEAD: usize = 64;

/// How many groups ahead [`GroupCache::lookup_each`] asks for a group's index slot (and half
/// that for its entry): enough misses in flight to cover a trip to memory.
const LOOK_AHEAD: usize = 16;

/// The smallest index, in slots.
const MIN_SLOTS: usize = 64;

/// One cached group: its key and stored value in one allocation, so a lookup that finds the
/// key has the value in the same cache lines.
struct Entry {
    /// The key, then the value; the value is empty while the entry is only claimed (the
    /// group's value is being read or merged this epoch).
    data: Box<[u8]>,
    hash: u64,
    /// The epoch that last touched it (epochs are counted modulo 2^32: at ten a second,
    /// thirteen years).
    epoch: u32,
    key_len: u32,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    /// Bytes it counts against the budget (a claimed entry counts once it has a value).
    fn cost(&self) -> usize {
        if self.value().is_empty() {
            0
        } else {
            self.data.len() + ENTRY_OVERHEAD
        }
    }
}

/// One window's cached groups: the entries in a slab, found through an index with open
/// addressing and linear probing, at most half full.
///
/// Why not hashbrown: a window of a million groups is cold, and an epoch looks up its groups
/// all at once; hashbrown cannot be asked where a key's slot is, so each lookup waited for
/// its own misses. Here a lookup asks for the slot of the group [`LOOK_AHEAD`] on, and a
/// group's place in the slab (its [`Slot`]) holds while the window grows.
#[derive(Default)]
struct WindowCache {
    /// Per slot: 0 when empty, else the entry's hash tag (its hash's high 32 bits) and its
    /// place in `entries` plus one (low 32 bits).
    index: Vec<u64>,
    entries: Vec<Entry>,
    complete: bool,
}

impl WindowCache {
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.index.len() - 1)
    }

    /// Makes room for `more` entries without the index going over half full.
    fn reserve(&mut self, more: usize) {
        let wanted = ((self.entries.len() + more) * 2)
            .next_power_of_two()
            .max(MIN_SLOTS);
        if wanted > self.index.len() {
            self.index = vec![0; wanted];
            self.reindex();
        }
        if self.entries.is_empty() {
            // A new window's first groups: one allocation, not a copy at each doubling.
            self.entries.reserve(more);
        }
    }

    /// Puts every entry into the index, which must be empty.
    fn reindex(&mut self) {
        for (at, e) in self.entries.iter().enumerate() {
            let mut pos = e.hash as usize & (self.index.len() - 1);
            while self.index[pos] != 0 {
                pos = (pos + 1) & (self.index.len() - 1);
            }
            self.index[pos] = slot_word(e.hash, at);
        }
    }

    fn prefetch_slot(&self, hash: u64) {
        prefetch(&self.index[self.home(hash)]);
    }

    /// Asks for the entry the key of `hash` most likely is, when its home slot holds one.
    fn prefetch_entry(&self, hash: u64) {
        let word = self.index[self.home(hash)];
        if word != 0 && word >> 32 == hash >> 32 {
            prefetch(&self.entries[(word as u32 - 1) as usize]);
        }
    }

    /// The entry of `key`, claimed (an entry without a value) when there is none. Call
    /// [`WindowCache::reserve`] first.
    fn find_or_claim(&mut self, hash: u64, key: &[u8], epoch: u32) -> usize {
        self.find_or_add(hash, key, &[], epoch)
    }

    /// The entry of `key`; when there is none, a new one holding the concatenation of `value`
    /// (empty: claimed), the key and value in one allocation. Call [`WindowCache::reserve`]
    /// first.
    fn find_or_add(&mut self, hash: u64, key: &[u8], value: &[&[u8]], epoch: u32) -> usize {
        let mask = self.index.len() - 1;
        let mut pos = hash as usize & mask;
        loop {
            let word = self.index[pos];
            if word == 0 {
                let at = self.entries.len();
                let len = key.len() + value.iter().map(|p| p.len()).sum::<usize>();
                let mut data = Vec::with_capacity(len);
                data.extend_from_slice(key);
                value.iter().for_each(|p| data.extend_from_slice(p));
                self.entries.push(Entry {
                    data: data.into_boxed_slice(),
                    hash,
                    epoch,
                    key_len: key.len() as u32,
                });
                self.index[pos] = slot_word(hash, at);
                return at;
            }
            if word >> 32 == hash >> 32 {
                let at = (word as u32 - 1) as usize;
                if self.entries[at].key() == key {
                    return at;
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Sets the value of `key` to the concatenation of `parts`, adding its entry if there is
    /// none; returns the bytes it added to and freed from the budget. Call
    /// [`WindowCache::reserve`] first.
    fn upsert(&mut self, hash: u64, key: &[u8], parts: &[&[u8]], epoch: u32) -> (usize, usize) {
        let before = self.entries.len();
        let at = self.find_or_add(hash, key, parts, epoch);
        if self.entries.len() > before {
            (self.entries[at].cost(), 0)
        } else {
            GroupCache::write(&mut self.entries[at], parts, epoch)
        }
    }

    /// Finds or claims the entry of `key` (see [`WindowCache::find_or_claim`]), marks it
    /// touched in `epoch`, and says what the cache knows of it.
    fn touch(&mut self, hash: u64, key: &[u8], epoch: u32) -> (Lookup<'_>, Slot) {
        let at = self.find_or_claim(hash, key, epoch);
        let entry = &mut self.entries[at];
        entry.epoch = epoch;
        (Lookup::of(entry, self.complete), Slot(at))
    }

    /// Keeps the entries `keep` says; returns the bytes of those it dropped.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> usize {
        let mut freed = 0;
        let before = self.entries.len();
        self.entries.retain(|e| {
            let kept = keep(e);
            if !kept {
                freed += e.cost();
            }
            kept
        });
        if self.entries.len() == before {
            return freed;
        }
        let slots = (self.entries.len() * 2).next_power_of_two().max(MIN_SLOTS);
        if slots < self.index.len() {
            self.index = vec![0; slots];
        } else {
            self.index.fill(0);
        }
        self.reindex();
        freed
    }
}

/// An index slot's word for the entry at `at` whose key hashes to `hash`.
fn slot_word(hash: u64, at: usize) -> u64 {
    (hash >> 32 << 32) | (at as u64 + 1)
}

/// Where a looked-up group sits in its window (its place in the slab), so that writing its
/// new value does not search again. Valid until the window loses entries (eviction, the
/// window's removal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

/// One view's cache.
pub struct GroupCache {
    windows: BTreeMap<i64, WindowCache>,
    hasher: ahash::RandomState,
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
    fn of(entry: &'a Entry, complete: bool) -> Self {
        match entry.value() {
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
            hasher: ahash::RandomState::new(),
            bytes: 0,
            epoch: 0,
            budget,
        }
    }

    /// Starts the next epoch: groups touched from now on are the most recent.
    pub fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
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
        let hash = self.hasher.hash_one(group);
        let window = self.windows.entry(start).or_default();
        window.reserve(1);
        window.touch(hash, group, epoch)
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
        let hashes: Vec<u64> = (0..groups).map(|i| self.hasher.hash_one(key(i))).collect();
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
    /// them up a chunk at a time does not grow it (and place every entry again) step by step.
    pub fn reserve(&mut self, start: i64, groups: usize) {
        self.windows.entry(start).or_default().reserve(groups);
    }

    /// Writes the concatenation of `parts` as the value of the group `lookup` gave `slot`.
    /// A value that keeps its size (most do: fixed-width states) is overwritten in place.
    pub fn put(&mut self, start: i64, slot: Slot, group: &[u8], parts: &[&[u8]]) {
        let epoch = self.epoch;
        let window = self.windows.entry(start).or_default();
        match window.entries.get_mut(slot.0) {
            Some(e) if e.key() == group => {
                let (added, freed) = Self::write(e, parts, epoch);
                self.grow(added, freed);
            }
            // The slot moved (it should not): find the group, or add it.
            _ => self.insert_parts(start, group, parts),
        }
    }

    /// Caches the concatenation of `parts` as group `group`'s stored value in window `start`.
    pub fn insert_parts(&mut self, start: i64, group: &[u8], parts: &[&[u8]]) {
        let epoch = self.epoch;
        let hash = self.hasher.hash_one(group);
        let window = self.windows.entry(start).or_default();
        window.reserve(1);
        let (added, freed) = window.upsert(hash, group, parts, epoch);
        self.grow(added, freed);
    }

    /// Caches the stored values of groups `0..groups` of window `start` as
    /// [`GroupCache::insert_parts`] does, for groups that were not looked up (a window with
    /// nothing stored): `key(i)` is group i's key, and `value(i, buf)` appends its value to
    /// `buf`. A new group's entry takes one allocation (a claim, then its value, took two),
    /// and the keys are hashed first, so that each insert asks for the index slot of the
    /// group [`LOOK_AHEAD`] on.
    pub fn insert_each<'k>(
        &mut self,
        start: i64,
        groups: usize,
        key: impl Fn(usize) -> &'k [u8],
        value: impl Fn(usize, &mut Vec<u8>),
    ) {
        let epoch = self.epoch;
        let hashes: Vec<u64> = (0..groups).map(|i| self.hasher.hash_one(key(i))).collect();
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

    /// Sets `entry`'s value; returns the bytes it added to and freed from the budget.
    fn write(entry: &mut Entry, parts: &[&[u8]], epoch: u32) -> (usize, usize) {
        let freed = entry.cost();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if entry.value().len() == len {
            let mut at = entry.key_len as usize;
            for part in parts {
                entry.data[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        } else {
            let mut data = Vec::with_capacity(entry.key_len as usize + len);
            data.extend_from_slice(entry.key());
            for part in parts {
                data.extend_from_slice(part);
            }
            entry.data = data.into_boxed_slice();
        }
        entry.epoch = epoch;
        (entry.cost(), freed)
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
            let bytes: usize = w.entries.iter().map(Entry::cost).sum();
            self.grow(0, bytes);
        }
    }

    /// Bytes this cache holds.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// While the budget is spent, drops this view's least recently touched groups (never
    /// those of the current epoch). Returns how many it dropped.
    pub fn evict(&mut self) -> u64 {
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
            for e in &w.entries {
                *by_epoch.entry(e.epoch).or_default() += e.cost();
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
            freed += w.retain(|e| {
                // A claimed entry without a value (a merge that failed) holds nothing.
                let keep = e.epoch > cutoff && !e.value().is_empty();
                if !keep && !e.value().is_empty() {
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
                (k.clone(), w.entries.iter().any(|e| e.key() == &k[..]))
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
