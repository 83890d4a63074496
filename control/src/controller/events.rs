//! Events to subscribers (the notifier, the demo), one batch per turn.

use super::*;

/// Batches of events kept for subscribers that fall behind: a batch is what one turn
/// (or one action and the turn it leads to) recorded, however many events that is.
pub(super) const EVENT_BATCHES: usize = 1024;

/// Events recorded together, numbered from the loop's start.
#[derive(Debug)]
struct Batch {
    /// The number of the first.
    first: u64,
    events: Vec<(String, Event)>,
}

/// Where the loop publishes its events.
#[derive(Clone, Debug)]
pub(crate) struct Events {
    tx: broadcast::Sender<Arc<Batch>>,
    /// Events published so far.
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl Events {
    pub(crate) fn new(batches: usize) -> Events {
        Events {
            tx: broadcast::channel(batches).0,
            count: Arc::default(),
        }
    }

    /// Publishes `events` as one batch.
    pub(crate) fn publish(&self, events: Vec<(String, Event)>) {
        if events.is_empty() {
            return;
        }
        let first = self
            .count
            .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(Arc::new(Batch { first, events }));
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        let rx = self.tx.subscribe();
        EventStream {
            rx,
            next: self.count.load(std::sync::atomic::Ordering::Relaxed),
            batch: None,
            at: 0,
        }
    }
}

/// The control loop's events, one at a time, from the moment of subscribing
/// ([`ControllerHandle::subscribe`]). Events come in batches, one per turn, so that a
/// turn that records thousands (a long rollout run through at once) loses none; a
/// subscriber that falls more than 1,024 turns behind is told how many events it missed.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Arc<Batch>>,
    /// The number of the next event expected.
    next: u64,
    batch: Option<Arc<Batch>>,
    /// The next event of `batch` to give.
    at: usize,
}

impl EventStream {
    /// The next event, with its rollout's name.
    ///
    /// # Errors
    /// [`broadcast::error::RecvError::Lagged`] with the number of events missed (the
    /// events after them come next), or `Closed` once the loop has stopped.
    pub async fn recv(&mut self) -> Result<(String, Event), broadcast::error::RecvError> {
        loop {
            if let Some(b) = &self.batch {
                if let Some(e) = b.events.get(self.at) {
                    self.at += 1;
                    return Ok(e.clone());
                }
                self.batch = None;
            }
            match self.rx.recv().await {
                Ok(b) => {
                    let missed = b.first.saturating_sub(self.next);
                    self.next = self.next.max(b.first + b.events.len() as u64);
                    self.batch = Some(b);
                    self.at = 0;
                    if missed > 0 {
                        return Err(broadcast::error::RecvError::Lagged(missed));
                    }
                }
                // How many events were missed shows in the next batch's number.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(broadcast::error::RecvError::Closed);
                }
            }
        }
    }
}
