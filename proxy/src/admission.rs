//! Admission of client connections: the connection limit, and room made at the limit.
//!
//! At `maxConnections`, a new connection does not simply bounce: the connection that has
//! waited longest with no request in flight (idle keep-alive, a TLS handshake, or a
//! request head still arriving, as a slowloris keeps it) is asked to close, and the new
//! one takes its place. nginx does the same with its "reusable" connections; here a
//! connection whose head is still trickling in counts as waiting too, so a slowloris that
//! fills every slot and reconnects only ever evicts itself and idle keep-alives, while
//! clients that send a request at once are served. A connection with a request in flight
//! (a WebSocket tunnel included) is never evicted.
//!
//! Hand-written because no crate keeps this order: the registry is a `BTreeMap` by
//! admission order behind one mutex, touched at accept, at close and at the limit, never
//! per request; per request a connection only flips its own `in_flight` counter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How many registered connections one eviction looks at, at most: those with a request
/// in flight are moved behind the others as they are passed over, so the next search
/// starts among waiting ones.
const SCAN: usize = 256;

/// A connection's admission state, shared with the registry.
#[derive(Debug, Default)]
pub struct Slot {
    /// Cancelled to make the connection finish: at shutdown (a child of the drain token)
    /// or when it is evicted.
    pub stop: CancellationToken,
    /// Requests in flight (HTTP/1.1: 0 or 1; HTTP/2: streams being answered).
    in_flight: AtomicU32,
    /// Its key in the registry.
    key: AtomicU64,
}

impl Slot {
    /// A slot that `stop` asks to finish.
    pub(crate) fn new(stop: CancellationToken) -> Self {
        Slot {
            stop,
            ..Slot::default()
        }
    }

    /// A request began.
    #[inline]
    pub(crate) fn busy(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended.
    #[inline]
    pub(crate) fn idle(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Marks its slot busy while alive: a request in flight, however its future ends.
pub(crate) struct Busy<'a>(&'a Slot);

impl<'a> Busy<'a> {
    pub(crate) fn new(slot: &'a Slot) -> Self {
        slot.busy();
        Busy(slot)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.idle();
    }
}

/// The connection limit and the registry of admitted connections.
#[derive(Debug)]
pub struct Admission {
    /// One permit per open client connection.
    pub(crate) limit: Arc<Semaphore>,
    /// Newcomers admitted by an eviction that have not yet taken the permit it frees:
    /// while there are any, a freed permit is theirs, so the accept loop evicts again
    /// rather than take it.
    pub(crate) owed: std::sync::atomic::AtomicUsize,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    by_age: BTreeMap<u64, Arc<Slot>>,
}

impl Admission {
    /// A limit of `max` connections.
    pub fn new(max: usize) -> Self {
        Admission {
            limit: Arc::new(Semaphore::new(max)),
            owed: Default::default(),
            registry: Mutex::default(),
        }
    }

    /// Registers an admitted connection; [`Admission::leave`] forgets it.
    pub(crate) fn enter(&self, slot: &Arc<Slot>) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let key = r.next;
        r.next += 1;
        slot.key.store(key, Ordering::Relaxed);
        r.by_age.insert(key, slot.clone());
    }

    /// Forgets a connection that closed.
    pub(crate) fn leave(&self, slot: &Slot) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        r.by_age.remove(&slot.key.load(Ordering::Relaxed));
    }

    /// Asks the connection that has waited longest with no request in flight to close.
    /// False when every connection looked at is busy.
    pub(crate) fn evict_one(&self) -> bool {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut passed = Vec::new();
        let mut chosen = None;
        for (key, slot) in r.by_age.iter().take(SCAN) {
            if slot.stop.is_cancelled() {
                continue;
            }
            if slot.in_flight.load(Ordering::Relaxed) == 0 {
                chosen = Some(slot.clone());
                break;
            }
            passed.push(*key);
        }
        for key in passed {
            if let Some(slot) = r.by_age.remove(&key) {
                let k = r.next;
                r.next += 1;
                slot.key.store(k, Ordering::Relaxed);
                r.by_age.insert(k, slot);
            }
        }
        drop(r);
        match chosen {
            Some(slot) => {
                slot.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections registered now.
    pub fn registered(&self) -> usize {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_age
            .len()
    }
}

/// Forgets its connection when dropped, however the connection's task ends.
pub(crate) struct Admitted<'a> {
    pub(crate) admission: &'a Admission,
    pub(crate) slot: Arc<Slot>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.admission.leave(&self.slot);
    }
}

/// A newcomer admitted by an eviction, owed the permit it frees ([`Admission::owed`])
/// for as long as this lives.
pub(crate) struct Owed(Arc<Admission>);

impl Owed {
    pub(crate) fn new(admission: &Arc<Admission>) -> Self {
        admission.owed.fetch_add(1, Ordering::AcqRel);
        Owed(admission.clone())
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.0.owed.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_waiting_idle_connection_is_evicted_first() {
        let a = Admission::new(3);
        let slots: Vec<Arc<Slot>> = (0..3).map(|_| Arc::new(Slot::default())).collect();
        for s in &slots {
            a.enter(s);
        }
        slots[0].busy();
        assert!(a.evict_one());
        assert!(!slots[0].stop.is_cancelled(), "a busy connection stays");
        assert!(slots[1].stop.is_cancelled(), "the oldest idle one goes");
        // The busy one was moved behind the others: the next eviction takes slot 2.
        assert!(a.evict_one());
        assert!(slots[2].stop.is_cancelled());
        assert!(!a.evict_one(), "only a busy connection is left");
        slots[0].idle();
        assert!(a.evict_one());
        assert!(slots[0].stop.is_cancelled());
        for s in &slots {
            a.leave(s);
        }
        assert_eq!(a.registered(), 0);
    }
}
