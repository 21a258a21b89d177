//! Watches on the embedded store.
//!
//! A watch first replays history from SQLite's `log` table and the tail, page by page
//! (bounded in events and in bytes), then follows the ring of events the writer publishes
//! after each commit. It subscribes to the ring before its first history read and discards
//! what the ring held before each read, so every event is either in a read page or still in
//! the ring: none is missed and duplicates are skipped by revision.
//!
//! The ring holds weak references to the tail's events: an event the applier has moved to
//! SQLite before this watcher read it is gone from the ring, and the watcher replays from
//! SQLite again from its last revision. So a watcher that stops reading holds no values
//! however far the writers go. A watcher that lets the ring overtake it while live is cut
//! off with [`StoreError::WatcherTooSlow`]; writers never wait for watchers.

use std::collections::VecDeque;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Weak};

use futures::stream;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::{Shared, WATCH_REPLAY_PAGE, reader};
use crate::watch_positions::advance;
use crate::{Event, Result, Revision, StoreError, WatchStream};

struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    /// Highest revision seen (delivered, or skipped as outside the prefix).
    seen: Revision,
    ring: broadcast::Receiver<Weak<Event>>,
    /// Replaying history from disk; false once the replay caught up with the ring.
    replaying: bool,
    replayed: VecDeque<Event>,
    /// Revision the last history read covered; `seen` moves there once its events are out.
    replay_scanned: Revision,
    position: Arc<AtomicI64>,
    finished: bool,
}

pub(super) fn start(shared: Arc<Shared>, prefix: String, after: Revision) -> Result<WatchStream> {
    let compacted = shared.compacted.load(std::sync::atomic::Ordering::Acquire);
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    if after < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "cannot watch after negative revision {after}"
        )));
    }
    let state = WatchState {
        ring: shared.subscribe(),
        position: shared.positions.register(after),
        shared,
        prefix,
        seen: after,
        replaying: true,
        replayed: VecDeque::new(),
        replay_scanned: after,
        finished: false,
    };
    Ok(Box::pin(stream::unfold(state, next_event)))
}

async fn next_event(mut state: WatchState) -> Option<(Result<Event>, WatchState)> {
    loop {
        if state.finished {
            return None;
        }
        if let Some(event) = state.replayed.pop_front() {
            state.seen = event.revision();
            advance(&state.position, state.seen);
            return Some((Ok(event), state));
        }
        if state.replay_scanned > state.seen {
            state.seen = state.replay_scanned;
            advance(&state.position, state.seen);
        }
        if state.replaying {
            // Everything the ring holds now is already in the tail or SQLite, so the read
            // below sees it.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = state.ring.try_recv() {}
            match reader::history(
                &state.shared,
                state.prefix.clone(),
                state.seen,
                WATCH_REPLAY_PAGE,
            )
            .await
            {
                Ok((events, scanned, reached_end)) => {
                    state.replaying = !reached_end;
                    state.replay_scanned = scanned;
                    state.replayed.extend(events);
                    continue;
                }
                Err(e) => {
                    state.finished = true;
                    return Some((Err(e), state));
                }
            }
        }
        match state.ring.recv().await {
            Ok(event) => {
                let Some(event) = event.upgrade() else {
                    // Applied to SQLite and gone from the tail before this watcher read it:
                    // read it (and whatever follows) from there.
                    state.replaying = true;
                    continue;
                };
                if event.revision() <= state.seen {
                    continue;
                }
                state.seen = event.revision();
                advance(&state.position, state.seen);
                if event.kv.key.starts_with(&state.prefix) {
                    return Some((Ok(Event::clone(&event)), state));
                }
            }
            Err(RecvError::Lagged(_)) => {
                state.finished = true;
                let last_revision = state.seen;
                return Some((Err(StoreError::WatcherTooSlow { last_revision }), state));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}
