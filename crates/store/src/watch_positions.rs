//! Where each open watch of this process stands, so that retention never compacts history an
//! open watch still has to read.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::Revision;

/// Registry of the positions of open watches. A position is dropped when its watch is.
#[derive(Default)]
pub(crate) struct WatchPositions {
    positions: Mutex<Vec<Weak<AtomicI64>>>,
}

impl WatchPositions {
    /// Registers a new watch that has seen everything up to `after`.
    pub(crate) fn register(&self, after: Revision) -> Arc<AtomicI64> {
        let position = Arc::new(AtomicI64::new(after));
        let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        positions.retain(|p| p.strong_count() > 0);
        positions.push(Arc::downgrade(&position));
        position
    }

    /// The smallest position of any open watch.
    pub(crate) fn oldest(&self) -> Option<Revision> {
        let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        positions.retain(|p| p.strong_count() > 0);
        positions
            .iter()
            .filter_map(|p| p.upgrade())
            .map(|p| p.load(Ordering::Relaxed))
            .min()
    }
}

/// Records that a watch has moved past `revision`.
pub(crate) fn advance(position: &AtomicI64, revision: Revision) {
    position.fetch_max(revision, Ordering::Relaxed);
}
