//! Keeps decisions live with the store: the snapshot publisher, and the write path that admin
//! and scim share.
//!
//! [`Live`] owns the store and the decision [`Engine`]. A write ([`Live::write`]) commits a store
//! transaction, wakes the publisher, and returns only once a snapshot at (or past) its revision
//! is what Check answers from: so a change is in every decision made after it is acknowledged,
//! and callers can pass the revision to Check as `min_revision`.
//!
//! The publisher is one thread that follows the store's revisions: it takes the store's
//! in-memory [`store::View`], waits until that revision is durable (a decision never reflects
//! a change a crash could still lose), and hands it to a [`Publisher`], which applies what
//! changed since the last view to the last snapshot and folds the changes into a full build in
//! the background once they pile up. Writes that land meanwhile are covered together by the
//! next publish. Every published view is also offered to followers ([`Live::published_views`]):
//! the snapshot stream to sidecars starts there.
//!
//! Admin and scim also count here the calls they refuse without a valid token ([`Refusals`]),
//! which the binary's metrics read.
//!
//! It must not speak any protocol: admin (gRPC) and scim (SCIM) call it.

mod publisher;
pub mod refusals;

pub use publisher::{FOLD_AT, Publish, Publisher, Settings, Wake, build};
pub use refusals::Refusals;

use pdp_service::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use store::{Store, Tx, View};
use tokio::sync::watch;
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
    /// Background builds made the base so far (the publisher's counter).
    folds: Arc<AtomicU64>,
    /// The view of every publish, for followers.
    views: watch::Sender<Arc<View>>,
    signal: Arc<Signal>,
    /// Calls admin and scim refused for want of a valid credential.
    refusals: Arc<Refusals>,
}

/// How writers and the background build wake the publisher.
#[derive(Default)]
struct Signal {
    /// The newest revision some writer committed and wants published.
    wanted: Mutex<Wanted>,
    wake: Condvar,
}

#[derive(Default)]
struct Wanted {
    revision: u64,
    /// Why the last publish failed, for writers waiting on it.
    failure: Option<String>,
    /// A background build is done.
    folded: bool,
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
        info!(
            revision = snapshot.revision(),
            users = snapshot.user_count(),
            policies = snapshot.policy_count(),
            load_ms = loaded.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        let engine = Engine::new(snapshot.clone());
        let signal = Arc::new(Signal::default());
        let wake: Wake = {
            let signal = Arc::clone(&signal);
            Arc::new(move || {
                if let Ok(mut wanted) = signal.wanted.lock() {
                    wanted.folded = true;
                }
                signal.wake.notify_one();
            })
        };
        let publisher = Publisher::new(engine.clone(), Arc::clone(&view), snapshot, settings, wake);
        let shared = Arc::new(Shared {
            store,
            engine,
            folds: publisher.folds(),
            views: watch::channel(view).0,
            signal,
            refusals: Arc::default(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || publish_loop(weak, publisher))
            .map_err(|e| Error::Task(format!("cannot start the publisher: {e}")))?;
        Ok(Live { shared })
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Where admin and scim count the calls they refuse without a valid credential (and that
    /// metrics read).
    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.shared.refusals
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

    /// The view of the last publish, then of every publish after it: what the snapshot stream
    /// to sidecars follows. Views already published when a follower lags are skipped, so it
    /// sees each published revision or a later one.
    pub fn published_views(&self) -> watch::Receiver<Arc<View>> {
        self.shared.views.subscribe()
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
                .signal
                .wanted
                .lock()
                .map_err(|_| Error::Task("the publisher panicked".into()))?;
            wanted.revision = wanted.revision.max(revision);
        }
        self.shared.signal.wake.notify_one();
        if engine.wait_for(revision, PUBLISH_WAIT).await {
            return Ok(());
        }
        let reason = self
            .shared
            .signal
            .wanted
            .lock()
            .ok()
            .and_then(|w| w.failure.clone())
            .unwrap_or_else(|| format!("still building after {PUBLISH_WAIT:?}"));
        Err(Error::NotLive { revision, reason })
    }
}

/// Publishes what writers ask for until the last [`Live`] handle is gone, and makes the
/// background builds the publisher starts the new base when they are done.
fn publish_loop(shared: Weak<Shared>, mut publisher: Publisher) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (wanted, folded) = {
            let signal = &shared.signal;
            let Ok(guard) = signal.wanted.lock() else {
                return;
            };
            let engine = &shared.engine;
            // Wake now and then to notice the handles are gone.
            let Ok((mut guard, _)) =
                signal
                    .wake
                    .wait_timeout_while(guard, Duration::from_millis(500), |w| {
                        w.revision <= engine.revision() && !w.folded
                    })
            else {
                return;
            };
            (guard.revision, std::mem::take(&mut guard.folded))
        };
        if folded {
            publisher.fold_done();
        }
        if wanted > shared.engine.revision() {
            let started = Instant::now();
            let result = shared.store.view().and_then(|view| {
                shared.store.sync(view.revision())?;
                Ok(view)
            });
            match result {
                Ok(view) => {
                    let published = publisher.publish(Arc::clone(&view));
                    shared.views.send_replace(view);
                    if let Ok(mut w) = shared.signal.wanted.lock() {
                        w.failure = None;
                    }
                    tracing::debug!(
                        revision = published.revision,
                        full = published.full,
                        pending = published.pending,
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "snapshot published"
                    );
                }
                Err(e) => {
                    error!(error = %e, "cannot publish a snapshot");
                    if let Ok(mut w) = shared.signal.wanted.lock() {
                        w.failure = Some(e.to_string());
                    }
                    // Do not spin on a store that keeps failing.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
