//! The bounded in-memory cache of stored group states, shared out of one budget by all views.
//!
//! A view keeps the stored state of the groups it touched recently, per window, so that most
//! epochs merge without reading RocksDB. When the budget is spent the groups touched least
//! recently are dropped; a window that lost a group (or whose groups were never all loaded)
//! is *incomplete*, and a group missing from it is read from the store. A window the cache
//! holds completely — every window created since start, and every one loaded whole at start —
//! answers a miss with "new group" and never reads the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Bytes an entry costs beyond its key and value (map slot, boxes, epoch).
const ENTRY_OVERHEAD: usize = 64;

struct Cached {
    value: Box<[u8]>,
    epoch: u64,
}

#[derive(Default)]
struct WindowCache {
    groups: HashMap<Box<[u8]>, Cached, ahash::RandomState>,
    complete: bool,
}

/// One view's cache.
pub struct GroupCache {
    windows: BTreeMap<i64, WindowCache>,
    bytes: usize,
    epoch: u64,
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
        self.epoch += 1;
    }

    /// Whether the cache can take `bytes` more without going over the budget.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.budget.used() + bytes <= self.budget.limit()
    }

    /// Makes window `start` known; `complete` says whether every stored group of it will be
    /// inserted (a new window, or one being loaded whole).
    pub fn open_window(&mut self, start: i64, complete: bool) {
        self.windows.entry(start).or_insert_with(|| WindowCache {
            groups: HashMap::default(),
            complete,
        });
    }

    /// Says whether window `start` holds every stored group of the window.
    pub fn set_complete(&mut self, start: i64, complete: bool) {
        if let Some(w) = self.windows.get_mut(&start) {
            w.complete = complete;
        }
    }

    pub fn lookup(&mut self, start: i64, group: &[u8]) -> Lookup<'_> {
        let epoch = self.epoch;
        match self.windows.get_mut(&start) {
            Some(w) => match w.groups.get_mut(group) {
                Some(c) => {
                    c.epoch = epoch;
                    Lookup::Found(&c.value)
                }
                None if w.complete => Lookup::New,
                None => Lookup::Unknown,
            },
            None => Lookup::Unknown,
        }
    }

    /// Caches `value` as group `group`'s stored value in window `start`.
    pub fn insert(&mut self, start: i64, group: &[u8], value: &[u8]) {
        self.insert_parts(start, group, &[value]);
    }

    /// Caches the concatenation of `parts` as the group's stored value. A group whose value
    /// keeps its size (most do: fixed-width states) is overwritten in place.
    pub fn insert_parts(&mut self, start: i64, group: &[u8], parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let epoch = self.epoch;
        let window = self.windows.entry(start).or_default();
        let (added, freed) = match window.groups.get_mut(group) {
            Some(cached) => {
                let freed = cached.value.len();
                if freed == len {
                    let mut at = 0;
                    for part in parts {
                        cached.value[at..at + part.len()].copy_from_slice(part);
                        at += part.len();
                    }
                } else {
                    cached.value = parts.concat().into();
                }
                cached.epoch = epoch;
                (len, freed)
            }
            None => {
                window.groups.insert(
                    group.into(),
                    Cached {
                        value: parts.concat().into(),
                        epoch,
                    },
                );
                (group.len() + len + ENTRY_OVERHEAD, 0)
            }
        };
        self.grow(added, freed);
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
            let bytes: usize = w
                .groups
                .iter()
                .map(|(k, c)| k.len() + c.value.len() + ENTRY_OVERHEAD)
                .sum();
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
        let mut by_epoch: BTreeMap<u64, usize> = BTreeMap::new();
        for w in self.windows.values() {
            for (k, c) in &w.groups {
                *by_epoch.entry(c.epoch).or_default() += k.len() + c.value.len() + ENTRY_OVERHEAD;
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
            let before = w.groups.len();
            w.groups.retain(|k, c| {
                let keep = c.epoch > cutoff;
                if !keep {
                    freed += k.len() + c.value.len() + ENTRY_OVERHEAD;
                }
                keep
            });
            if w.groups.len() < before {
                w.complete = false;
                dropped += (before - w.groups.len()) as u64;
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
        assert!(matches!(cache.lookup(0, b"a"), Lookup::New));
        assert!(matches!(cache.lookup(60, b"a"), Lookup::Unknown));
        cache.insert(0, b"a", &[1; 100]);
        assert!(matches!(cache.lookup(0, b"a"), Lookup::Found(v) if v.len() == 100));
        // Same size: overwritten in place; another size: replaced. The bytes follow.
        cache.insert_parts(0, b"a", &[&[2; 60], &[3; 40]]);
        assert!(matches!(cache.lookup(0, b"a"), Lookup::Found(v) if v[0] == 2 && v[99] == 3));
        assert_eq!(budget.used(), 1 + 100 + ENTRY_OVERHEAD);
        cache.insert_parts(0, b"a", &[&[4; 10], &[5; 80]]);
        assert!(matches!(cache.lookup(0, b"a"), Lookup::Found(v) if v.len() == 90 && v[89] == 5));
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
        assert!(matches!(cache.lookup(0, &[b'k', 9]), Lookup::Found(_)));
        assert!(matches!(cache.lookup(0, b"a"), Lookup::Unknown));
        cache.remove_window(0);
        assert_eq!(cache.bytes(), 0);
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
