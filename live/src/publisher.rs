//! Keeps an engine's snapshot in step with a sequence of views of the model: the control
//! plane's (views of its store) and a sidecar's (views it rebuilds from the snapshot stream).
//!
//! Each publish applies what changed since the last view to the last snapshot
//! ([`Snapshot::apply`], in proportion to the change). Once enough changes pile up over the last
//! full build ([`Settings::fold_at`]), a full build of the current view runs on a thread of its
//! own while publishing goes on; when it is done, [`Publisher::fold_done`] catches it up with
//! what was published meanwhile and makes it the new base. So no change, least of all one that
//! takes access away, waits for a full build, except when the new view shares nothing with the
//! last (the store reloaded its view after a bulk change), when there is nothing to apply
//! changes to.

use pdp::{Parts, Snapshot};
use pdp_service::{Engine, PublishStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use store::View;
use tracing::{error, info};

/// Changes pending over the last full build past which the publisher folds them into a new
/// build, in the background. Applying a change copies what is pending, so this bounds the cost
/// of every publish (about a millisecond at this size; see BENCHMARKS.md) and the memory the
/// overlay holds.
pub const FOLD_AT: usize = 8_192;

/// How a publisher behaves.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Changes pending over the last full build past which a new one is built in the
    /// background.
    pub fold_at: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { fold_at: FOLD_AT }
    }
}

/// Indexes the view into a snapshot.
pub fn build(view: &View) -> Snapshot {
    Snapshot::build_from(Parts {
        revision: view.revision(),
        users: view.users().map(|u| &**u).collect(),
        groups: view.groups().map(|g| &*g.group).collect(),
        memberships: view.memberships().map(|(g, u)| (&**g, &**u)),
        policies: view.policies().map(|p| &**p).collect(),
        agents: pdp::Directory::agents(view),
        settings: pdp::Directory::settings(view),
    })
}

/// Called from the background build's thread when it is done: the owner should call
/// [`Publisher::fold_done`] soon (from its own thread).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Publishes views into an engine, one at a time, from one thread.
pub struct Publisher {
    engine: Engine,
    settings: Settings,
    last: Published,
    /// A background build is running.
    folding: bool,
    /// Where the background build leaves its result.
    folded: Arc<Mutex<Option<Folded>>>,
    wake: Wake,
    folds: Arc<AtomicU64>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("revision", &self.last.view.revision())
            .field("folding", &self.folding)
            .finish()
    }
}

/// What one publish did.
#[derive(Debug, Clone, Copy)]
pub struct Publish {
    pub revision: u64,
    /// Built in full rather than applied as changes.
    pub full: bool,
    /// Changes pending over the last full build.
    pub pending: usize,
}

/// A published snapshot and the view it answers for.
struct Published {
    view: Arc<View>,
    snapshot: Snapshot,
}

/// A full build made in the background, from the view it holds.
struct Folded {
    built: std::thread::Result<Published>,
    started: Instant,
    /// How long the build itself took.
    build: std::time::Duration,
}

impl Publisher {
    /// A publisher whose last publish was `snapshot`, built from `view` (the caller publishes
    /// it however it sees fit: a new engine, or [`Engine::replace`]).
    pub fn new(
        engine: Engine,
        view: Arc<View>,
        snapshot: Snapshot,
        settings: Settings,
        wake: Wake,
    ) -> Publisher {
        Publisher {
            engine,
            settings,
            last: Published { view, snapshot },
            folding: false,
            folded: Arc::default(),
            wake,
            folds: Arc::default(),
        }
    }

    /// The view of the last publish.
    pub fn view(&self) -> &Arc<View> {
        &self.last.view
    }

    /// What this publisher (and any other publishing into the same engine) recorded: publishes
    /// applied as changes or built in full, folds, the last build's and fold's durations. It
    /// lives in the engine ([`Engine::publish_stats`]), so whoever holds the engine reads it.
    pub fn stats(&self) -> &PublishStats {
        self.engine.publish_stats()
    }

    /// Background builds made the base so far; the counter stays readable after the publisher
    /// is gone.
    pub fn folds(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.folds)
    }

    /// Publishes `view`: the last snapshot with the changes since the last view applied, or a
    /// full build when the two views share nothing. Starts a background build once enough
    /// changes are pending.
    pub fn publish(&mut self, view: Arc<View>) -> Publish {
        let started = Instant::now();
        let (snapshot, full) = next_snapshot(&self.last, &view);
        self.stats().published(full, started.elapsed());
        let pending = snapshot.pending_changes();
        self.engine.publish(snapshot.clone());
        self.last = Published { view, snapshot };
        if !self.folding && pending > self.settings.fold_at {
            match self.start_fold() {
                Ok(()) => self.folding = true,
                Err(e) => error!(error = %e, "cannot start a background build"),
            }
        }
        Publish {
            revision: self.last.view.revision(),
            full,
            pending,
        }
    }

    /// If a background build is done, catches it up with what was published meanwhile and
    /// publishes it as the new base; returns whether one was done.
    pub fn fold_done(&mut self) -> bool {
        let Some(folded) = self.folded.lock().ok().and_then(|mut f| f.take()) else {
            return false;
        };
        self.folding = false;
        match folded.built {
            Ok(base) => {
                let (snapshot, full) = next_snapshot(&base, &self.last.view);
                let pending = snapshot.pending_changes();
                self.engine.publish(snapshot.clone());
                info!(
                    revision = snapshot.revision(),
                    base_revision = base.view.revision(),
                    full,
                    pending,
                    elapsed_ms = folded.started.elapsed().as_millis() as u64,
                    "snapshot folded"
                );
                self.last.snapshot = snapshot;
                self.folds.fetch_add(1, Ordering::Relaxed);
                self.stats().folded(folded.build, folded.started.elapsed());
            }
            Err(_) => error!("building a snapshot in the background panicked"),
        }
        true
    }

    /// Builds the last view on a thread of its own and leaves the result for
    /// [`Publisher::fold_done`].
    fn start_fold(&self) -> std::io::Result<()> {
        let view = Arc::clone(&self.last.view);
        let slot = Arc::clone(&self.folded);
        let wake = Arc::clone(&self.wake);
        std::thread::Builder::new()
            .name("snapshot-fold".into())
            .spawn(move || {
                let started = Instant::now();
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let snapshot = build(&view);
                    Published { view, snapshot }
                }));
                let build = started.elapsed();
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(Folded {
                        built,
                        started,
                        build,
                    });
                }
                wake();
            })
            .map(drop)
    }
}

/// The next snapshot: `last`'s with the changes since its view applied, in proportion to
/// them; a full build only when the two views share nothing (the store reloaded its view).
fn next_snapshot(last: &Published, view: &Arc<View>) -> (Snapshot, bool) {
    match view.changes_since(&last.view) {
        Some(changes) => (
            last.snapshot
                .apply(view.revision(), &changes.as_changes(), &**view),
            false,
        ),
        None => (build(view), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp::{Model, User};
    use store::view::Update;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            user_name: format!("{id}@example.com"),
            ..User::default()
        }
    }

    #[test]
    fn publishes_and_folds_are_recorded_in_the_engine() {
        let view = Arc::new(View::from_model(Model {
            revision: 1,
            users: vec![user("u1")],
            ..Model::default()
        }));
        let snapshot = build(&view);
        let engine = Engine::new(snapshot.clone());
        let (woken, wakes) = std::sync::mpsc::channel();
        let wake: Wake = Arc::new(move || {
            let _ = woken.send(());
        });
        // Fold after any change.
        let settings = Settings { fold_at: 0 };
        let mut publisher =
            Publisher::new(engine.clone(), Arc::clone(&view), snapshot, settings, wake);
        let mut next = View::clone(&view);
        next.apply(2, vec![Update::User("u2".into(), Some(user("u2")))]);
        let published = publisher.publish(Arc::new(next));
        assert!(!published.full);
        let stats = engine.publish_stats();
        assert_eq!((stats.applied(), stats.built(), stats.folds()), (1, 0, 0));
        assert_eq!(stats.last_build(), std::time::Duration::ZERO);

        wakes
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the fold is done");
        assert!(publisher.fold_done());
        assert_eq!((stats.applied(), stats.built(), stats.folds()), (1, 0, 1));
        assert!(stats.last_build() > std::time::Duration::ZERO);
        assert!(stats.last_fold() >= stats.last_build());
        assert_eq!(engine.revision(), 2);

        // A view sharing nothing with the last one is built in full.
        let unrelated = Arc::new(View::from_model(Model {
            revision: 3,
            users: vec![user("u3")],
            ..Model::default()
        }));
        assert!(publisher.publish(unrelated).full);
        assert_eq!((stats.applied(), stats.built()), (1, 1));
    }
}
