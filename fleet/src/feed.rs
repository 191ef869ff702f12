//! The control plane's side: the feed of published changes and the `SnapshotService` that
//! streams it to each sidecar.
//!
//! One task follows the views the control plane publishes ([`live::Live::published_views`]) and
//! turns the difference between consecutive ones into a `DirectoryChange`, encoded once and
//! broadcast to every follower. Each follower's stream first catches it up to the view current
//! when it subscribed, with the smallest thing that works: nothing, one change built from the
//! store's change log, or a full snapshot; then it forwards the broadcast changes. A follower
//! that falls behind the broadcast (or a view the feed cannot diff, after a bulk import)
//! catches up the same way again, from where it is.
//!
//! With an approval source ([`Feed::with_approvals`]), each stream also carries the approval
//! state ([`crate::approval_feed`]) after its first catch-up, and `UseGrant` uses `once` grants
//! for the sidecars' Checks.

use crate::approval_feed::{ApprovalFeed, ApprovalSource, Subscription};
use crate::{FORMAT, wire};
use live::Live;
use pb::snapshot_service_server::{SnapshotService, SnapshotServiceServer};
use pdp_service::RequireToken;
use portcullis_proto::v1 as pb;
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use store::{Store, View};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

/// How often an idle stream says the control plane is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Broadcast changes a follower may fall behind by before it catches up from the change log.
const BROADCAST: usize = 4096;

/// Users per message: a snapshot chunk or a part of a change stays well under a megabyte.
const USERS_PER_MESSAGE: usize = 4096;

/// Ids a catch-up from the change log may carry; past this a full snapshot is cheaper to send.
const MAX_CATCH_UP: usize = 65_536;

/// Group ids per snapshot chunk.
const GROUPS_PER_MESSAGE: usize = 16_384;

/// Messages queued for one follower before the producer waits for it to read.
const QUEUED: usize = 16;

/// The longest approval id or decision id `UseGrant` takes.
pub const MAX_GRANT_ID: usize = 128;

/// The published changes, for any number of followers. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("revision", &self.revision())
            .finish()
    }
}

struct Inner {
    store: Store,
    store_id: String,
    /// The last published view and the channel of changes after it: taken together, under the
    /// lock, so a subscriber misses nothing and sees nothing twice.
    state: Mutex<State>,
    /// The last full snapshot encoded, shared by the followers that need one.
    full: Mutex<Option<Arc<Encoded>>>,
    /// Turns true when the server shuts down: every stream then ends, so a graceful shutdown
    /// does not wait on streams that never finish.
    stop: tokio::sync::watch::Sender<bool>,
    /// The approval state streamed along, once a source is given.
    approvals: OnceLock<Arc<ApprovalFeed>>,
}

struct State {
    view: Arc<View>,
    changes: broadcast::Sender<Item>,
}

/// What the feed broadcasts.
#[derive(Clone)]
enum Item {
    /// The change from one published revision to the next, encoded.
    Change {
        from: u64,
        to: u64,
        events: Arc<[pb::WatchEvent]>,
    },
    /// The new view shares nothing with the last (the store reloaded it): followers catch up
    /// from the change log or a full snapshot.
    Reset,
}

impl Feed {
    /// Starts following what `live` publishes. Must run within a tokio runtime; the feed stops
    /// when `live`'s publisher does.
    pub fn start(live: &Live) -> Feed {
        let mut views = live.published_views();
        let view = Arc::clone(&views.borrow_and_update());
        let store = live.store().clone();
        let inner = Arc::new(Inner {
            store_id: store.id().to_owned(),
            store,
            state: Mutex::new(State {
                view: Arc::clone(&view),
                changes: broadcast::channel(BROADCAST).0,
            }),
            full: Mutex::new(None),
            stop: tokio::sync::watch::channel(false).0,
            approvals: OnceLock::new(),
        });
        let feed = Feed { inner };
        let follower = feed.clone();
        tokio::spawn(async move {
            let mut last = view;
            while views.changed().await.is_ok() {
                let view = Arc::clone(&views.borrow_and_update());
                last = follower.advance(&last, view);
            }
        });
        feed
    }

    /// Broadcasts the change from `last` to `view`; returns `view`.
    fn advance(&self, last: &Arc<View>, view: Arc<View>) -> Arc<View> {
        let item = match view.changes_since(last) {
            Some(changes) => Item::Change {
                from: last.revision(),
                to: view.revision(),
                events: change_events(
                    &view,
                    last.revision(),
                    changes.users.iter().map(|(id, _)| &**id),
                    changes.groups.iter().map(|id| &**id),
                    changes.policies.iter().map(|id| &**id),
                    changes.agents,
                )
                .into(),
            },
            None => Item::Reset,
        };
        if let Ok(mut state) = self.inner.state.lock() {
            state.view = Arc::clone(&view);
            // No receiver is fine: nobody follows yet.
            let _ = state.changes.send(item);
        }
        view
    }

    /// Also streams the approval state of `source` (usable grants, pending requests' calls, the
    /// default flow) and serves `UseGrant` from it. Call before serving: streams that started
    /// earlier carry no approvals. A second source is ignored. Must run within a tokio runtime.
    pub fn with_approvals(self, source: Arc<dyn ApprovalSource>) -> Feed {
        if self.inner.approvals.get().is_none() {
            let _ = self.inner.approvals.set(ApprovalFeed::start(source));
        }
        self
    }

    /// Ends every stream, now and from now on; followers reconnect (to the next control plane
    /// to start).
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// The latest published revision.
    pub fn revision(&self) -> u64 {
        self.inner
            .state
            .lock()
            .map_or(0, |state| state.view.revision())
    }

    /// The current view and every change after it.
    fn subscribe(&self) -> Option<(Arc<View>, broadcast::Receiver<Item>)> {
        let state = self.inner.state.lock().ok()?;
        Some((Arc::clone(&state.view), state.changes.subscribe()))
    }

    /// The gRPC service streaming this feed, to callers presenting `token` only: the stream is
    /// the whole directory.
    pub fn service(
        &self,
        token: RequireToken,
    ) -> InterceptedService<SnapshotServiceServer<Feed>, RequireToken> {
        SnapshotServiceServer::with_interceptor(self.clone(), token)
    }
}

#[tonic::async_trait]
impl SnapshotService for Feed {
    type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let watch = request.into_inner();
        if watch.format != FORMAT {
            return Err(Status::failed_precondition(format!(
                "format: the follower reads stream format {}, this control plane writes format \
                 {FORMAT}; upgrade the older of the two",
                watch.format
            )));
        }
        let (tx, rx) = mpsc::channel(QUEUED);
        let feed = self.clone();
        tokio::spawn(async move {
            info!(%peer, from_revision = watch.from_revision, "sidecar following");
            match feed.follow(watch, &tx).await {
                Ok(()) | Err(Gone) => info!(%peer, "sidecar gone"),
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn use_grant(
        &self,
        request: Request<pb::UseGrantRequest>,
    ) -> Result<Response<pb::UseGrantResponse>, Status> {
        let request = request.into_inner();
        for (field, value) in [
            ("approval_id", &request.approval_id),
            ("decision_id", &request.decision_id),
        ] {
            if value.is_empty() {
                return Err(Status::invalid_argument(format!("{field}: required")));
            }
            if value.len() > MAX_GRANT_ID {
                return Err(Status::invalid_argument(format!(
                    "{field}: at most {MAX_GRANT_ID} bytes"
                )));
            }
        }
        let Some(approvals) = self.inner.approvals.get() else {
            return Err(Status::failed_precondition(
                "this control plane streams no approvals: its sidecars cannot use grants",
            ));
        };
        let used = approvals
            .source
            .use_once(&request.approval_id, &request.decision_id)
            .await?;
        debug!(approval_id = %request.approval_id, used, "a sidecar used a grant");
        Ok(Response::new(pb::UseGrantResponse { used }))
    }
}

/// The follower hung up.
struct Gone;

type Events = mpsc::Sender<Result<pb::WatchEvent, Status>>;

async fn send(tx: &Events, event: pb::WatchEvent) -> Result<(), Gone> {
    tx.send(Ok(event)).await.map_err(|_| Gone)
}

impl Feed {
    /// Streams to one follower until it hangs up or the feed stops.
    async fn follow(&self, watch: pb::WatchRequest, tx: &Events) -> Result<(), Gone> {
        let mut store_id = watch.store_id;
        let mut at = watch.from_revision;
        let mut stopped = self.inner.stop.subscribe();
        if *stopped.borrow_and_update() {
            return Ok(());
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The approval state, whole once the directory is caught up, then each update.
        let mut approvals = self.inner.approvals.get().map(|a| (a.subscribe(), true));
        loop {
            let Some((view, mut changes)) = self.subscribe() else {
                return Ok(());
            };
            self.catch_up(&store_id, at, &view, tx).await?;
            store_id.clone_from(&self.inner.store_id);
            at = view.revision();
            drop(view);
            if let Some((subscription, unsent @ true)) = &mut approvals {
                send_all(tx, &subscription.reset).await?;
                *unsent = false;
            }
            // Forward changes until the follower falls behind or the feed resets.
            loop {
                tokio::select! {
                    () = tx.closed() => return Err(Gone),
                    _ = stopped.changed() => return Ok(()),
                    item = changes.recv() => match item {
                        Ok(Item::Change { from, to, events }) => {
                            if to <= at {
                                continue;
                            }
                            if from != at {
                                warn!(from, at, "the feed skipped a revision; catching up");
                                break;
                            }
                            for event in events.iter() {
                                send(tx, event.clone()).await?;
                            }
                            at = to;
                        }
                        Ok(Item::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    update = next_approvals(&mut approvals) => {
                        self.forward_approvals(update, &mut approvals, tx).await?;
                    }
                    _ = heartbeat.tick() => {
                        let beat = pb::Heartbeat { revision: self.revision() };
                        send(tx, event(pb::watch_event::Event::Heartbeat(beat))).await?;
                    }
                }
            }
        }
    }

    /// Sends a follower the approval update that came, or the whole state again if it fell
    /// behind.
    async fn forward_approvals(
        &self,
        update: Result<crate::approval_feed::Update, broadcast::error::RecvError>,
        approvals: &mut Option<(Subscription, bool)>,
        tx: &Events,
    ) -> Result<(), Gone> {
        let (Some((subscription, _)), Some(feed)) =
            (approvals.as_mut(), self.inner.approvals.get())
        else {
            return Ok(());
        };
        match update {
            Ok(update) if update.to <= subscription.at => Ok(()),
            Ok(update) if update.from == subscription.at => {
                send_all(tx, &update.events).await?;
                subscription.at = update.to;
                Ok(())
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                debug!("a follower fell behind the approval updates; sending them whole");
                *subscription = feed.subscribe();
                send_all(tx, &subscription.reset).await
            }
            Err(broadcast::error::RecvError::Closed) => {
                *approvals = None;
                Ok(())
            }
        }
    }

    /// Brings a follower at `at` of store `store_id` to `view`: nothing if it is there, one
    /// change from the store's change log if that still covers the gap, else a full snapshot
    /// (the one already encoded for an earlier follower when the change log can bring it up to
    /// `view`, so a fleet starting at once costs one encoding).
    async fn catch_up(
        &self,
        store_id: &str,
        at: u64,
        view: &Arc<View>,
        tx: &Events,
    ) -> Result<(), Gone> {
        let to = view.revision();
        let same_store = store_id == self.inner.store_id;
        if same_store && at == to {
            return Ok(());
        }
        if same_store
            && at < to
            && let Some(events) = self.logged_change(at, view).await
        {
            debug!(from = at, to, "catching a follower up from the change log");
            for e in events {
                send(tx, e).await?;
            }
            return Ok(());
        }
        let (revision, full, then) = self.full_snapshot(view).await;
        info!(
            from = at,
            to,
            same_store,
            snapshot_revision = revision,
            "sending a full snapshot to a follower"
        );
        for bytes in full.iter() {
            // Decoding what was encoded once costs a fraction of encoding it from the view.
            let Ok(e) = pb::WatchEvent::decode(&bytes[..]) else {
                warn!("a kept snapshot message does not decode");
                return Err(Gone);
            };
            send(tx, e).await?;
        }
        for e in then {
            send(tx, e).await?;
        }
        Ok(())
    }

    /// The change from `from` to `view` built from the change log, if it covers them.
    async fn logged_change(&self, from: u64, view: &Arc<View>) -> Option<Vec<pb::WatchEvent>> {
        let store = self.inner.store.clone();
        let to = view.revision();
        let touched = tokio::task::spawn_blocking(move || store.touched_between(from, to))
            .await
            .ok()?
            .map_err(|e| warn!(error = %e, "cannot read the change log"))
            .ok()??;
        if touched.users.len() + touched.groups.len() + touched.policies.len() > MAX_CATCH_UP {
            return None;
        }
        Some(change_events(
            view,
            from,
            touched.users.iter().map(String::as_str),
            touched.groups.iter().map(String::as_str),
            touched.policies.iter().map(String::as_str),
            !touched.agents.is_empty() || touched.settings,
        ))
    }

    /// A full snapshot and the change that brings it up to `view`: the one encoded last if the
    /// change log covers the way from it, else `view` encoded now (and kept for the next
    /// follower).
    async fn full_snapshot(&self, view: &Arc<View>) -> (u64, Arc<[Vec<u8>]>, Vec<pb::WatchEvent>) {
        let to = view.revision();
        let cached = self.inner.full.lock().ok().and_then(|slot| slot.clone());
        if let Some(cached) = cached.filter(|c| c.revision <= to) {
            let then = if cached.revision == to {
                Some(Vec::new())
            } else {
                self.logged_change(cached.revision, view).await
            };
            if let Some(then) = then {
                return (cached.revision, self.encoded(&cached, view).await, then);
            }
        }
        let fresh = {
            let Ok(mut slot) = self.inner.full.lock() else {
                let fresh = Arc::new(Encoded::new(to));
                return (to, self.encoded(&fresh, view).await, Vec::new());
            };
            match &*slot {
                // Another follower got here first with the same view.
                Some(same) if same.revision == to => Arc::clone(same),
                _ => {
                    let fresh = Arc::new(Encoded::new(to));
                    *slot = Some(Arc::clone(&fresh));
                    fresh
                }
            }
        };
        (to, self.encoded(&fresh, view).await, Vec::new())
    }

    /// `full` with its events, encoding them from `view` (at `full`'s revision) if nobody has.
    async fn encoded(&self, full: &Encoded, view: &Arc<View>) -> Arc<[Vec<u8>]> {
        let view = Arc::clone(view);
        let store_id = self.inner.store_id.clone();
        full.events
            .get_or_init(|| async move {
                // Encoding a million users is CPU work: off the async threads.
                tokio::task::spawn_blocking(move || Arc::from(full_snapshot(&view, &store_id)))
                    .await
                    .unwrap_or_else(|_| Arc::from(Vec::new()))
            })
            .await
            .clone()
    }
}

/// A full snapshot, encoded once for every follower that needs it. Kept as the messages'
/// bytes: a decoded message holds every string on the heap, several times its wire size
/// (hundreds of MB at a million users, against 60 MB encoded).
struct Encoded {
    revision: u64,
    events: tokio::sync::OnceCell<Arc<[Vec<u8>]>>,
}

impl Encoded {
    fn new(revision: u64) -> Encoded {
        Encoded {
            revision,
            events: tokio::sync::OnceCell::new(),
        }
    }
}

async fn send_all(tx: &Events, events: &[pb::WatchEvent]) -> Result<(), Gone> {
    for e in events {
        send(tx, e.clone()).await?;
    }
    Ok(())
}

/// The next approval update once the whole state went out; never without approvals.
async fn next_approvals(
    approvals: &mut Option<(Subscription, bool)>,
) -> Result<crate::approval_feed::Update, broadcast::error::RecvError> {
    match approvals {
        Some((subscription, false)) => subscription.updates.recv().await,
        _ => std::future::pending().await,
    }
}

fn event(event: pb::watch_event::Event) -> pb::WatchEvent {
    pb::WatchEvent { event: Some(event) }
}

/// The whole of `view`, in chunks: the begin and end messages and everything between, each
/// encoded as soon as it is built (so only one chunk is ever held decoded).
fn full_snapshot(view: &View, store_id: &str) -> Vec<Vec<u8>> {
    use pb::watch_event::Event;
    let mut out = Vec::new();
    let mut send = |e: Event| out.push(event(e).encode_to_vec());
    let revision = view.revision();
    send(Event::Begin(pb::SnapshotBegin {
        format: FORMAT,
        store_id: store_id.to_owned(),
        revision,
        users: view.user_count() as u64,
        groups: view.group_count() as u64,
        policies: view.policies().len() as u64,
        memberships: view.membership_count() as u64,
        registry: Some(wire::registry(
            view.agents().map(|a| &**a),
            &view.settings(),
        )),
    }));
    let group_ids: Vec<&str> = view.groups().map(|g| g.group.id.as_str()).collect();
    let index: HashMap<&str, u32> = group_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    for chunk in group_ids.chunks(GROUPS_PER_MESSAGE) {
        send(Event::Chunk(pb::SnapshotChunk {
            group_ids: chunk.iter().map(|id| (*id).to_owned()).collect(),
            ..Default::default()
        }));
    }
    send(Event::Chunk(pb::SnapshotChunk {
        policies: view.policies().map(|p| wire::policy(p)).collect(),
        ..Default::default()
    }));
    let mut users = Vec::with_capacity(USERS_PER_MESSAGE);
    for user in view.users() {
        let mut record = wire::user(user);
        record.group_indexes = view
            .groups_of(&user.id)
            .filter_map(|(g, _)| index.get(&**g).copied())
            .collect();
        users.push(record);
        if users.len() == USERS_PER_MESSAGE {
            send(Event::Chunk(pb::SnapshotChunk {
                users: std::mem::take(&mut users),
                ..Default::default()
            }));
        }
    }
    if !users.is_empty() {
        send(Event::Chunk(pb::SnapshotChunk {
            users,
            ..Default::default()
        }));
    }
    send(Event::End(pb::SnapshotEnd { revision }));
    out
}

/// The change from `from` to `view`'s revision for these ids, as whole records from `view`,
/// in parts of at most [`USERS_PER_MESSAGE`] users.
fn change_events<'a>(
    view: &View,
    from: u64,
    users: impl Iterator<Item = &'a str>,
    groups: impl Iterator<Item = &'a str>,
    policies: impl Iterator<Item = &'a str>,
    agents: bool,
) -> Vec<pb::WatchEvent> {
    let mut first = pb::DirectoryChange {
        from_revision: from,
        revision: view.revision(),
        registry: agents.then(|| wire::registry(view.agents().map(|a| &**a), &view.settings())),
        ..Default::default()
    };
    for id in groups.collect::<BTreeSet<_>>() {
        match view.group(id) {
            Some(_) => first.groups.push(id.to_owned()),
            None => first.removed_groups.push(id.to_owned()),
        }
    }
    for id in policies.collect::<BTreeSet<_>>() {
        match view.policy(id) {
            Some(p) => first.policies.push(wire::policy(p)),
            None => first.removed_policies.push(id.to_owned()),
        }
    }
    let mut parts = vec![first];
    for id in users.collect::<BTreeSet<_>>() {
        if parts
            .last()
            .is_some_and(|p| p.users.len() >= USERS_PER_MESSAGE)
        {
            parts.push(pb::DirectoryChange {
                from_revision: from,
                revision: view.revision(),
                ..Default::default()
            });
        }
        let Some(part) = parts.last_mut() else {
            continue;
        };
        match view.user(id) {
            Some(user) => {
                let mut record = wire::user(user);
                record.group_ids = view.groups_of(id).map(|(g, _)| g.to_string()).collect();
                part.users.push(record);
            }
            None => part.removed_users.push(id.to_owned()),
        }
    }
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, mut part)| {
            part.continued = i < last;
            event(pb::watch_event::Event::Change(part))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::approval_feed::Fixed;
    use crate::approval_feed::tests::{request, updates};
    use pdp::RequestState;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_behind_the_approval_updates_gets_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::start(Store::open(dir.path()).unwrap()).unwrap();
        let source = Arc::new(Fixed {
            requests: Mutex::new(Vec::new()),
            changed: tokio::sync::watch::channel(0).0,
            flows: Mutex::new(None),
        });
        let feed = Feed::start(&live).with_approvals(source.clone());
        let approvals = Arc::clone(feed.inner.approvals.get().unwrap());
        let mut subscription = Some((approvals.subscribe(), false));

        // One update the follower takes in order, then more than the broadcast holds.
        let pending = |n: usize| {
            (0..n)
                .map(|i| request(&format!("p{i}"), RequestState::Pending, None))
                .collect::<Vec<_>>()
        };
        *source.requests.lock().unwrap() = pending(1);
        approvals.reread();
        let (tx, mut rx) = mpsc::channel(4 * QUEUED);
        let update = next_approvals(&mut subscription).await;
        assert!(
            feed.forward_approvals(update, &mut subscription, &tx)
                .await
                .is_ok()
        );
        let event = rx.recv().await.unwrap().unwrap();
        let first = updates(std::slice::from_ref(&event));
        assert!(!first[0].reset);
        assert_eq!(first[0].pending.len(), 1);

        let many = crate::approval_feed::BROADCAST + 10;
        for n in 2..=many {
            *source.requests.lock().unwrap() = pending(n);
            approvals.reread();
        }
        let update = next_approvals(&mut subscription).await;
        assert!(matches!(
            update,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        assert!(
            feed.forward_approvals(update, &mut subscription, &tx)
                .await
                .is_ok()
        );
        let event = rx.recv().await.unwrap().unwrap();
        let whole = updates(std::slice::from_ref(&event));
        assert!(whole[0].reset && !whole[0].continued);
        assert_eq!(whole[0].pending.len(), many);
        // Then the updates after it, in order, and nothing twice.
        *source.requests.lock().unwrap() = pending(many + 1);
        approvals.reread();
        let update = next_approvals(&mut subscription).await;
        assert!(
            feed.forward_approvals(update, &mut subscription, &tx)
                .await
                .is_ok()
        );
        let event = rx.recv().await.unwrap().unwrap();
        let next = updates(std::slice::from_ref(&event));
        assert!(!next[0].reset);
        assert_eq!(next[0].pending.len(), 1);
        assert!(rx.try_recv().is_err());
    }
}
