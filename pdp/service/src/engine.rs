//! The current snapshot, swapped atomically as new revisions are published.

use crate::{Error, PublishStats, Result};
use arc_swap::ArcSwap;
use pdp::Snapshot;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a request with `min_revision` may wait for that revision to be published.
pub const MAX_REVISION_WAIT: Duration = Duration::from_millis(100);

/// Holds the snapshot every decision reads. Cheap to clone; all clones share one snapshot.
///
/// Readers load the current `Arc<Snapshot>` without locking and never see a half-built one;
/// writers build a new snapshot off to the side and publish it in one swap.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Snapshot>,
    /// The revision of `current`, for callers waiting on a newer one.
    revision: watch::Sender<u64>,
    /// When the engine was made: `published_ns` counts from here.
    epoch: Instant,
    /// When the current revision was published, in nanoseconds after `epoch` (one clock read
    /// per publish; Check never reads it).
    published_ns: AtomicU64,
    /// What the publisher records about how it made the snapshots it publishes here.
    stats: PublishStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("revision", &self.revision())
            .finish()
    }
}

impl Engine {
    pub fn new(snapshot: Snapshot) -> Engine {
        let (revision, _) = watch::channel(snapshot.revision());
        Engine {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(snapshot),
                revision,
                epoch: Instant::now(),
                published_ns: AtomicU64::new(0),
                stats: PublishStats::default(),
            }),
        }
    }

    /// The current snapshot. Hold it only for the duration of one request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    pub fn revision(&self) -> u64 {
        self.inner.current.load().revision()
    }

    /// Publishes `snapshot` unless a newer one is already current, so revisions served never go
    /// backwards even if two publishers race.
    pub fn publish(&self, snapshot: Snapshot) {
        let new = Arc::new(snapshot);
        let revision = new.revision();
        let previous = self.inner.current.rcu(|current| {
            if current.revision() > revision {
                Arc::clone(current)
            } else {
                Arc::clone(&new)
            }
        });
        if previous.revision() < revision {
            self.published_now();
        }
        if previous.revision() <= revision {
            self.inner.revision.send_if_modified(|current| {
                let newer = *current < revision;
                if newer {
                    *current = revision;
                }
                newer
            });
        }
    }

    /// Publishes `snapshot` even if it is older than the current one: for a sidecar whose
    /// control plane now serves another store, or one restored to an earlier revision, where
    /// the old revisions mean nothing any more. Waiters on a revision keep waiting for it.
    pub fn replace(&self, snapshot: Snapshot) {
        let revision = snapshot.revision();
        self.inner.current.store(Arc::new(snapshot));
        self.published_now();
        self.inner.revision.send_replace(revision);
    }

    fn published_now(&self) {
        let ns = u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.inner.published_ns.store(ns, Ordering::Relaxed);
    }

    /// Time since the current revision was published (or the engine made, before any
    /// publish). Republishing the same revision (a background build made the base) does not
    /// reset it.
    pub fn snapshot_age(&self) -> Duration {
        let published = Duration::from_nanos(self.inner.published_ns.load(Ordering::Relaxed));
        self.inner.epoch.elapsed().saturating_sub(published)
    }

    /// Where publishers record how they made the snapshots they publish here.
    pub fn publish_stats(&self) -> &PublishStats {
        &self.inner.stats
    }

    /// Waits up to `limit` until a snapshot at least as new as `revision` is published; returns
    /// whether it was.
    pub async fn wait_for(&self, revision: u64, limit: Duration) -> bool {
        if self.revision() >= revision {
            return true;
        }
        let mut revisions = self.inner.revision.subscribe();
        let waited = tokio::time::timeout(limit, revisions.wait_for(|&r| r >= revision)).await;
        matches!(waited, Ok(Ok(_))) || self.revision() >= revision
    }

    /// A snapshot at least as new as `min_revision`, waiting up to [`MAX_REVISION_WAIT`] for it.
    pub async fn snapshot_at_least(&self, min_revision: u64) -> Result<Arc<Snapshot>> {
        let snapshot = self.snapshot();
        if snapshot.revision() >= min_revision {
            return Ok(snapshot);
        }
        let mut revisions = self.inner.revision.subscribe();
        let reached = tokio::time::timeout(
            MAX_REVISION_WAIT,
            revisions.wait_for(|&r| r >= min_revision),
        )
        .await;
        let snapshot = self.snapshot();
        match reached {
            Ok(Ok(_)) if snapshot.revision() >= min_revision => Ok(snapshot),
            _ => Err(Error::RevisionNotReached {
                min_revision,
                current: snapshot.revision(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(revision: u64) -> Snapshot {
        Snapshot::build(&pdp::Model {
            revision,
            ..pdp::Model::default()
        })
    }

    #[test]
    fn the_age_counts_from_the_publish_of_a_newer_revision() {
        let engine = Engine::new(at(1));
        std::thread::sleep(Duration::from_millis(20));
        let aged = engine.snapshot_age();
        assert!(aged >= Duration::from_millis(20), "{aged:?}");
        // The same revision again (a fold), or an older one: still as old.
        engine.publish(at(1));
        engine.publish(at(0));
        assert!(engine.snapshot_age() >= aged);
        engine.publish(at(2));
        assert!(engine.snapshot_age() < aged, "{:?}", engine.snapshot_age());
        std::thread::sleep(Duration::from_millis(20));
        // Replacing starts over, whatever the revision.
        engine.replace(at(1));
        assert!(engine.snapshot_age() < Duration::from_millis(20));
        assert_eq!(engine.revision(), 1);
    }
}
