//! The keep-alive connections that wait for their next request, oldest first: at the
//! connection limit the oldest of them is closed to make room for a new connection,
//! so that idle sockets cannot keep every slot.
//!
//! A connection enters the register when its answer is done and leaves it when the
//! first byte of its next request arrives or it closes ([`super::watch::ConnClock`]
//! does both). Only idle connections are ever evicted: one that is reading a head
//! or being served keeps its slot until its own deadline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// How a connection is told that it was evicted.
#[derive(Debug, Default)]
pub struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
}

impl Eviction {
    /// Whether the connection was chosen for eviction.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Resolves once the connection is evicted (at once if it already was).
    pub async fn wait(&self) {
        // `notify_one` stores a permit: an eviction before this wait is not lost.
        while !self.is_evicted() {
            self.notify.notified().await;
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Where a connection stands in the register: when it became idle, and a number
/// that tells apart two connections idle since the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdleKey(Instant, u64);

#[derive(Debug, Default)]
struct Register {
    next: u64,
    by_age: BTreeMap<IdleKey, Arc<Eviction>>,
}

/// The idle connections of one listener.
#[derive(Debug, Default)]
pub struct IdleConnections {
    register: Mutex<Register>,
}

impl IdleConnections {
    fn lock(&self) -> MutexGuard<'_, Register> {
        // Every change is one insert or remove: a panic cannot leave it half done.
        self.register.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection became idle at `since`.
    pub fn enter(&self, since: Instant, eviction: &Arc<Eviction>) -> IdleKey {
        let mut register = self.lock();
        let key = IdleKey(since, register.next);
        register.next = register.next.wrapping_add(1);
        register.by_age.insert(key, Arc::clone(eviction));
        key
    }

    /// A connection is idle no more (or has closed).
    pub fn leave(&self, key: IdleKey) {
        self.lock().by_age.remove(&key);
    }

    /// Evicts the connection idle the longest; `false` when none is idle.
    pub fn evict_oldest(&self) -> bool {
        let oldest = self.lock().by_age.pop_first();
        match oldest {
            Some((_, eviction)) => {
                eviction.evict();
                true
            }
            None => false,
        }
    }

    /// How many connections are idle.
    pub fn len(&self) -> usize {
        self.lock().by_age.len()
    }

    /// Whether no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_oldest_idle_connection_goes_first() {
        let idle = IdleConnections::default();
        let start = Instant::now();
        let (older, newer) = (Arc::new(Eviction::default()), Arc::new(Eviction::default()));
        let newer_key = idle.enter(start + Duration::from_secs(1), &newer);
        let older_key = idle.enter(start, &older);
        assert_eq!(idle.len(), 2);
        assert!(idle.evict_oldest());
        assert!(older.is_evicted() && !newer.is_evicted());
        older.wait().await;
        // Leaving after an eviction changes nothing.
        idle.leave(older_key);
        idle.leave(newer_key);
        assert!(idle.is_empty());
        assert!(!idle.evict_oldest(), "nothing idle: nothing to evict");
        assert!(!newer.is_evicted());
    }
}
