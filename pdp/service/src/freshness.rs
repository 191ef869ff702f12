//! Whether a snapshot may still be answered from: a sidecar that has not heard from its control
//! plane for longer than its staleness bound fails closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag the follower of a snapshot stream sets when what it holds is too old to answer from
/// (or it holds nothing yet); while set, [`crate::DecisionService`] denies every check with
/// `REASON_STALE_SNAPSHOT` and lists no tools. Cheap to clone; clones share the flag.
///
/// Check reads it with one relaxed load: whoever watches the clock sets it, so the hot path
/// never reads the time.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    stale: Arc<AtomicBool>,
}

impl Freshness {
    /// A flag starting as `stale`.
    pub fn new(stale: bool) -> Freshness {
        Freshness {
            stale: Arc::new(AtomicBool::new(stale)),
        }
    }

    pub fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }
}
