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
//! a change a crash could still lose), builds a snapshot from it and publishes it. Writes that
//! land while it builds are covered together by the next build. When all that changed since
//! the last full build is some existing users' statuses and group memberships (locks, unlocks,
//! deactivations, group adds and removes), it publishes that build with those users
//! overridden instead, in proportion to the change, so the changes that take access away never
//! wait for a rebuild.
//!
//! It must not speak any protocol: admin (gRPC) and sync (SCIM) call it.

use pdp::{Parts, Snapshot, UserChange};
use pdp_service::Engine;
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
    /// The newest revision some writer committed and wants published.
    wanted: Mutex<Wanted>,
    wake: Condvar,
}

#[derive(Default)]
struct Wanted {
    revision: u64,
    /// Why the last publish failed, for writers waiting on it.
    failure: Option<String>,
}

impl Live {
    /// Builds the first snapshot from the store (reading it whole) and starts the publisher.
    pub fn start(store: Store) -> Result<Live> {
        let started = Instant::now();
        let view = store.view()?;
        store.sync(view.revision())?;
        let loaded = started.elapsed();
        let snapshot = build(&view);
        let base = Base {
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
            wanted: Mutex::new(Wanted::default()),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || publish_loop(weak, Some(base)))
            .map_err(|e| Error::Task(format!("cannot start the publisher: {e}")))?;
        Ok(Live { shared })
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
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

/// Users who may differ from the last full build before the publisher rebuilds.
pub const MAX_USER_OVERRIDES: usize = 10_000;

/// The last full build: the view it was made from and its snapshot.
struct Base {
    view: Arc<View>,
    snapshot: Snapshot,
}

/// The snapshot for `view`: the base's with some users overridden when users' statuses and
/// memberships are all that changed since it (locks, deactivations, group adds and removes: in
/// proportion to the change), else a full build, which becomes the new base.
fn snapshot_for(base: &mut Option<Base>, view: Arc<View>) -> (Snapshot, bool) {
    if let Some(base) = base.as_ref()
        && let Some(changes) = view.user_changes_since(&base.view)
        && changes.len() <= MAX_USER_OVERRIDES
        && let Some(snapshot) = base.snapshot.with_changes(
            view.revision(),
            changes.iter().map(|state| UserChange {
                id: &state.id,
                status: state.status,
                groups: state
                    .groups
                    .as_ref()
                    .map(|groups| groups.iter().map(|g| &**g).collect()),
            }),
        )
    {
        return (snapshot, false);
    }
    let snapshot = build(&view);
    *base = Some(Base {
        view,
        snapshot: snapshot.clone(),
    });
    (snapshot, true)
}

/// Publishes what writers ask for until the last [`Live`] handle is gone.
fn publish_loop(shared: Weak<Shared>, mut base: Option<Base>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let wanted = {
            let Ok(guard) = shared.wanted.lock() else {
                return;
            };
            let engine = &shared.engine;
            // Wake now and then to notice the handles are gone.
            let Ok((guard, _)) =
                shared
                    .wake
                    .wait_timeout_while(guard, Duration::from_millis(500), |w| {
                        w.revision <= engine.revision()
                    })
            else {
                return;
            };
            guard.revision
        };
        if wanted <= shared.engine.revision() {
            continue;
        }
        let started = Instant::now();
        let result = shared.store.view().and_then(|view| {
            shared.store.sync(view.revision())?;
            Ok(view)
        });
        match result {
            Ok(view) => {
                let revision = view.revision();
                let (snapshot, full) = snapshot_for(&mut base, view);
                let overrides = snapshot.overridden_users();
                shared.engine.publish(snapshot);
                if let Ok(mut w) = shared.wanted.lock() {
                    w.failure = None;
                }
                tracing::debug!(
                    revision,
                    full,
                    overrides,
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
}
