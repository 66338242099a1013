//! Fan-out of committed writes to watchers, with catch-up from a backend's own history.
//!
//! A backend that keeps a revision log (every backend here does) publishes each committed batch
//! of events on an [`EventFeed`] and implements [`History`] over its log; [`watch`] then builds a
//! [`WatchStream`] that replays history and switches to live events without a gap or a duplicate.
//!
//! Why there is no gap: the watcher subscribes to the feed *before* it reads history, and a
//! backend publishes a batch only *after* the batch is committed and readable. A write committed
//! before the subscription is therefore in the history read, and a write committed after it is in
//! the subscription; the overlap is dropped by revision. When a watcher falls so far behind that
//! the broadcast drops batches for it, the stream re-reads history from its last delivered
//! revision instead of skipping ahead (kine drops the watcher in that case; we can afford better).

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::{Event, Result, Revision, WatchStream};

/// How many events one history read returns at most; bounds the memory of a catch-up.
pub const HISTORY_PAGE: usize = 1000;

/// A broadcast of committed batches of events, in revision order.
#[derive(Debug)]
pub struct EventFeed {
    tx: broadcast::Sender<Arc<[Event]>>,
}

impl EventFeed {
    /// A feed that keeps up to `capacity` batches for slow watchers before they must catch up
    /// from history.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventFeed { tx }
    }

    /// Publishes one committed batch. Call it only once the batch is durable and visible to
    /// [`History`] reads, and in revision order.
    pub fn publish(&self, events: Arc<[Event]>) {
        // An error only means nobody is watching right now, which is fine: history has it all.
        let _ = self.tx.send(events);
    }

    /// A receiver of every batch published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Event]>> {
        self.tx.subscribe()
    }
}

/// Read access to a backend's revision log, for watch catch-up.
#[async_trait]
pub trait History: Send + Sync + 'static {
    /// Up to `limit` events for keys starting with `prefix` with a revision greater than
    /// `after`, in revision order. Fails with [`crate::Error::Compacted`] when `after` is below
    /// the compacted revision, because events after it may be gone.
    async fn events_after(&self, prefix: &str, after: Revision, limit: usize)
    -> Result<Vec<Event>>;
}

/// A watch of `prefix` from `after`: history from `history`, then live batches from `feed`.
///
/// The first history page is read before this returns, so a compacted `after` fails here
/// rather than in the stream. A later catch-up failure (a lagging watcher whose history was
/// compacted meanwhile) is yielded once as an error, and the stream ends.
pub async fn watch<H: History>(
    feed: &EventFeed,
    history: H,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    // Subscribe first: see the module docs for why this order leaves no gap.
    let live = feed.subscribe();
    let first = history.events_after(prefix, after, HISTORY_PAGE).await?;
    let state = WatchState {
        history_done: first.len() < HISTORY_PAGE,
        pending: first.into(),
        live,
        history,
        prefix: prefix.to_owned(),
        last: after,
        finished: false,
    };
    Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
}

/// The state of one watch stream between two items.
struct WatchState<H> {
    live: broadcast::Receiver<Arc<[Event]>>,
    history: H,
    prefix: String,
    /// The revision of the last event handed out (or the watch's start).
    last: Revision,
    /// Events read but not yet handed out, in revision order, all above `last`.
    pending: VecDeque<Event>,
    /// False while history may hold events above `last` that `live` will never deliver.
    history_done: bool,
    finished: bool,
}

impl<H: History> WatchState<H> {
    async fn next(mut self) -> Option<(Result<Event>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.revision();
                return Some((Ok(event), self));
            }
            if !self.history_done {
                match self
                    .history
                    .events_after(&self.prefix, self.last, HISTORY_PAGE)
                    .await
                {
                    Ok(page) => {
                        self.history_done = page.len() < HISTORY_PAGE;
                        self.pending.extend(page);
                        continue;
                    }
                    Err(e) => {
                        self.finished = true;
                        return Some((Err(e), self));
                    }
                }
            }
            match self.live.recv().await {
                Ok(batch) => {
                    let last = self.last;
                    let prefix = &self.prefix;
                    self.pending.extend(
                        batch
                            .iter()
                            .filter(|e| {
                                e.revision() > last && e.kv.key.starts_with(prefix.as_str())
                            })
                            .cloned(),
                    );
                }
                // The broadcast dropped batches for us: everything after `last` is still in
                // history, and batches still queued in `live` are deduplicated by revision.
                Err(broadcast::error::RecvError::Lagged(_)) => self.history_done = false,
                // The store is gone; nothing more will be written.
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
