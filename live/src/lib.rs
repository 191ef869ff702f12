//! Keeps decisions live with the store: the snapshot publisher, and the write path that admin
//! and sync share.
//!
//! [`Live`] owns the store and the decision [`Engine`]. A write ([`Live::write`]) commits a store
//! transaction, wakes the publisher, and returns only once a snapshot at (or past) its revision
//! is what Check answers from: so a change is in every decision made after it is acknowledged,
//! and callers can pass the revision to Check as `min_revision`.
//!
//! The publisher is one thread that follows the store's revisions: it takes the store's
//! in-memory [`store::View`], waits until that revision is durable (a decision never reflects
//! a change a crash could still lose), applies what changed since the last view it published
//! to the last snapshot ([`Snapshot::apply`], in proportion to the change) and publishes the
//! result. Writes that land meanwhile are covered together by the next publish. Once enough
//! changes pile up over the last full build ([`FOLD_AT`]), a full build of the current view
//! runs on a thread of its own while publishing goes on; when it is done the publisher catches
//! it up with what it published meanwhile and makes it the new base. So no change, least of
//! all one that takes access away, ever waits for a full build (except after the store
//! reloads its whole view following a bulk change, when there is nothing to apply changes
//! to).
//!
//! It must not speak any protocol: admin (gRPC) and sync (SCIM) call it.

use pdp::{Parts, Snapshot};
use pdp_service::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use store::{Store, Tx, View};
use tracing::{error, info};

/// How long a write waits for its revision to be published before reporting it committed but
/// not yet live. Building a snapshot of a million users takes a few seconds.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The change is committed and durable, but no snapshot including it was published in time.
    #[error("the change committed at revision {revision} but is not live yet: {reason}")]
    NotLive { revision: u64, reason: String },
    #[error("the write task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cheap-to-clone handle on the store and the engine that follows it.
#[derive(Clone)]
pub struct Live {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("store", &self.shared.store)
            .field("engine", &self.shared.engine)
            .finish()
    }
}

struct Shared {
    store: Store,
    engine: Engine,
    settings: Settings,
    /// Background builds made the base so far.
    folds: AtomicU64,
    /// The newest revision some writer committed and wants published.
    wanted: Mutex<Wanted>,
    wake: Condvar,
}

#[derive(Default)]
struct Wanted {
    revision: u64,
    /// Why the last publish failed, for writers waiting on it.
    failure: Option<String>,
    /// A background build, done.
    folded: Option<Folded>,
}

/// How the publisher behaves.
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

impl Live {
    /// Builds the first snapshot from the store (reading it whole) and starts the publisher.
    pub fn start(store: Store) -> Result<Live> {
        Live::start_with(store, Settings::default())
    }

    /// [`Live::start`] with these settings.
    pub fn start_with(store: Store, settings: Settings) -> Result<Live> {
        let started = Instant::now();
        let view = store.view()?;
        store.sync(view.revision())?;
        let loaded = started.elapsed();
        let snapshot = build(&view);
        let last = Published {
            view: Arc::clone(&view),
            snapshot: snapshot.clone(),
        };
        info!(
            revision = snapshot.revision(),
            users = snapshot.user_count(),
            policies = snapshot.policy_count(),
            load_ms = loaded.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        let shared = Arc::new(Shared {
            store,
            engine: Engine::new(snapshot),
            settings,
            folds: AtomicU64::new(0),
            wanted: Mutex::new(Wanted::default()),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || publish_loop(weak, last))
            .map_err(|e| Error::Task(format!("cannot start the publisher: {e}")))?;
        Ok(Live { shared })
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// How many background builds have replaced the base since start.
    pub fn folds(&self) -> u64 {
        self.shared.folds.load(Ordering::Relaxed)
    }

    /// The store's in-memory view (what admin lists from). Runs on a blocking thread the first
    /// time only; afterwards it is a pointer copy.
    pub fn view(&self) -> Result<Arc<View>> {
        Ok(self.shared.store.view()?)
    }

    /// Commits `build` as one store transaction, then returns once its revision is published.
    /// Returns the revision and what `build` returned; a transaction that changed nothing
    /// returns the current revision at once.
    pub async fn write<T, E>(
        &self,
        build: impl FnOnce(&mut Tx<'_, '_>) -> std::result::Result<T, E> + Send + 'static,
    ) -> std::result::Result<(u64, T), E>
    where
        T: Send + 'static,
        E: From<store::Error> + From<Error> + Send + 'static,
    {
        let store = self.shared.store.clone();
        let (revision, out) = tokio::task::spawn_blocking(move || store.transact(build))
            .await
            .map_err(|e| E::from(Error::Task(e.to_string())))??;
        self.published(revision).await.map_err(E::from)?;
        Ok((revision, out))
    }

    /// Runs a blocking store call off the async threads.
    pub async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T> {
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .map_err(|e| Error::Task(e.to_string()))
    }

    /// Returns once decisions are answered from `revision` or later, asking the publisher for
    /// it if needed.
    pub async fn published(&self, revision: u64) -> Result<()> {
        let engine = &self.shared.engine;
        if engine.revision() >= revision {
            return Ok(());
        }
        {
            let mut wanted = self
                .shared
                .wanted
                .lock()
                .map_err(|_| Error::Task("the publisher panicked".into()))?;
            wanted.revision = wanted.revision.max(revision);
        }
        self.shared.wake.notify_one();
        if engine.wait_for(revision, PUBLISH_WAIT).await {
            return Ok(());
        }
        let reason = self
            .shared
            .wanted
            .lock()
            .ok()
            .and_then(|w| w.failure.clone())
            .unwrap_or_else(|| format!("still building after {PUBLISH_WAIT:?}"));
        Err(Error::NotLive { revision, reason })
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
    })
}

/// Changes pending over the last full build past which the publisher folds them into a new
/// build, in the background. Applying a change copies what is pending, so this bounds the cost
/// of every publish (about a millisecond at this size; see BENCHMARKS.md) and the memory the
/// overlay holds.
pub const FOLD_AT: usize = 8_192;

/// A published snapshot and the view it answers for.
struct Published {
    view: Arc<View>,
    snapshot: Snapshot,
}

/// A full build made in the background, from `view`.
struct Folded {
    built: std::thread::Result<Published>,
    started: Instant,
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

/// Builds `view` on a thread of its own and hands the result to the publisher.
fn start_fold(shared: Weak<Shared>, view: Arc<View>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("snapshot-fold".into())
        .spawn(move || {
            let started = Instant::now();
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let snapshot = build(&view);
                Published { view, snapshot }
            }));
            if let Some(shared) = shared.upgrade() {
                if let Ok(mut wanted) = shared.wanted.lock() {
                    wanted.folded = Some(Folded { built, started });
                }
                shared.wake.notify_one();
            }
        })
        .map(drop)
}

/// Publishes what writers ask for until the last [`Live`] handle is gone. Every publish applies
/// the changes since the last one; once enough are pending, a full build of the latest view
/// runs in the background and, when done, replaces the base, caught up with what was
/// published meanwhile.
fn publish_loop(shared: Weak<Shared>, mut last: Published) {
    let mut folding = false;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (wanted, folded) = {
            let Ok(guard) = shared.wanted.lock() else {
                return;
            };
            let engine = &shared.engine;
            // Wake now and then to notice the handles are gone.
            let Ok((mut guard, _)) =
                shared
                    .wake
                    .wait_timeout_while(guard, Duration::from_millis(500), |w| {
                        w.revision <= engine.revision() && w.folded.is_none()
                    })
            else {
                return;
            };
            (guard.revision, guard.folded.take())
        };
        if let Some(folded) = folded {
            folding = false;
            match folded.built {
                Ok(base) => {
                    // Catch the new base up with what was published while it was built.
                    let (snapshot, full) = next_snapshot(&base, &last.view);
                    let pending = snapshot.pending_changes();
                    shared.engine.publish(snapshot.clone());
                    info!(
                        revision = snapshot.revision(),
                        base_revision = base.view.revision(),
                        full,
                        pending,
                        elapsed_ms = folded.started.elapsed().as_millis() as u64,
                        "snapshot folded"
                    );
                    last.snapshot = snapshot;
                    shared.folds.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => error!("building a snapshot in the background panicked"),
            }
        }
        if wanted > shared.engine.revision() {
            let started = Instant::now();
            let result = shared.store.view().and_then(|view| {
                shared.store.sync(view.revision())?;
                Ok(view)
            });
            match result {
                Ok(view) => {
                    let (snapshot, full) = next_snapshot(&last, &view);
                    let pending = snapshot.pending_changes();
                    shared.engine.publish(snapshot.clone());
                    last = Published { view, snapshot };
                    if let Ok(mut w) = shared.wanted.lock() {
                        w.failure = None;
                    }
                    tracing::debug!(
                        revision = last.view.revision(),
                        full,
                        pending,
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "snapshot published"
                    );
                }
                Err(e) => {
                    error!(error = %e, "cannot publish a snapshot");
                    if let Ok(mut w) = shared.wanted.lock() {
                        w.failure = Some(e.to_string());
                    }
                    // Do not spin on a store that keeps failing.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        if !folding && last.snapshot.pending_changes() > shared.settings.fold_at {
            match start_fold(Arc::downgrade(&shared), Arc::clone(&last.view)) {
                Ok(()) => folding = true,
                Err(e) => error!(error = %e, "cannot start a background build"),
            }
        }
    }
}
