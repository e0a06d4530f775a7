//! [`StateCache`]: the states a repository's commands left behind, so the next command on
//! the same aggregate skips its load.
//!
//! A cached state may be stale: another process may have appended to the stream since.
//! That is safe, because a command appends expecting the cached version: if the stream
//! moved on, the append is a conflict, the entry is dropped, and the command loads the
//! stream and decides again. So a command on a recently used aggregate costs one round
//! trip (the append) instead of two (load, then append), and a command on a hot stream
//! queued behind another (see `queue.rs`) starts from the state the previous one left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A bounded map from stream id to (state, version), shared by a repository's clones.
pub(crate) struct StateCache<A> {
    entries: Arc<Mutex<Entries<A>>>,
    /// `A: Clone` is known where the cache is made ([`Repository::with_cache`](super::Repository::with_cache)).
    clone: fn(&A) -> A,
}

struct Entries<A> {
    map: HashMap<String, Entry<A>>,
    capacity: usize,
    /// Bumped on every use: entries with the smallest ticks are evicted first.
    tick: u64,
}

struct Entry<A> {
    state: A,
    version: u64,
    used: u64,
}

impl<A> Clone for StateCache<A> {
    fn clone(&self) -> Self {
        StateCache { entries: Arc::clone(&self.entries), clone: self.clone }
    }
}

impl<A> StateCache<A> {
    /// A cache of at most `capacity` aggregates (at least one).
    pub(crate) fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        let entries = Entries { map: HashMap::new(), capacity: capacity.max(1), tick: 0 };
        StateCache { entries: Arc::new(Mutex::new(entries)), clone }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<A>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of `state`.
    pub(crate) fn copy(&self, state: &A) -> A {
        (self.clone)(state)
    }

    /// A copy of the cached state of `stream` and its version.
    pub(crate) fn get(&self, stream: &str) -> Option<(A, u64)> {
        let mut entries = self.lock();
        entries.tick = entries.tick.wrapping_add(1);
        let tick = entries.tick;
        let entry = entries.map.get_mut(stream)?;
        entry.used = tick;
        Some(((self.clone)(&entry.state), entry.version))
    }

    /// Keeps a copy of `state` at `version` for `stream`, evicting the least recently
    /// used entries when full.
    pub(crate) fn put(&self, stream: &str, state: &A, version: u64) {
        let state = (self.clone)(state);
        let mut entries = self.lock();
        entries.tick = entries.tick.wrapping_add(1);
        let used = entries.tick;
        if !entries.map.contains_key(stream) && entries.map.len() >= entries.capacity {
            entries.evict();
        }
        entries.map.insert(stream.to_owned(), Entry { state, version, used });
    }

    /// Drops the entry of `stream` (it turned out stale).
    pub(crate) fn forget(&self, stream: &str) {
        self.lock().map.remove(stream);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

impl<A> Entries<A> {
    /// Makes room: drops the least recently used eighth of the entries (at least one), so
    /// that a full cache scans its entries once per `capacity / 8` insertions.
    fn evict(&mut self) {
        let drop = (self.map.len() / 8).max(1);
        let mut ticks: Vec<u64> = self.map.values().map(|entry| entry.used).collect();
        ticks.sort_unstable();
        if let Some(&threshold) = ticks.get(drop - 1) {
            self.map.retain(|_, entry| entry.used > threshold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_capacity_and_evicts_the_least_recently_used() {
        let cache = StateCache::<u32>::new(8, |n| *n);
        for n in 0..8 {
            cache.put(&format!("s-{n}"), &n, u64::from(n));
        }
        assert_eq!(cache.get("s-0"), Some((0, 0)), "s-0 is now the most recently used");
        cache.put("s-8", &8, 8);
        assert_eq!(cache.len(), 8);
        assert_eq!(cache.get("s-1"), None, "the least recently used went");
        assert_eq!(cache.get("s-0"), Some((0, 0)));
        cache.put("s-0", &10, 10);
        assert_eq!(cache.get("s-0"), Some((10, 10)));
        cache.forget("s-0");
        assert_eq!(cache.get("s-0"), None);
    }
}
