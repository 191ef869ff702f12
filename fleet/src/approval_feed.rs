//! The control plane's side of approvals on sidecars: the approval state the stream carries,
//! kept in step with the control plane's approval requests.
//!
//! One task holds what every follower was last sent (the usable grants, the pending requests'
//! calls, the default flow) and, on each change of the requests, reads them again, turns the
//! difference into an [`pb::ApprovalUpdate`], encoded once and broadcast to every follower. A
//! grant's window ends without any transition on the control plane, so the task also looks at
//! the clock every second and removes the grants whose window passed (sidecars check the window
//! themselves as well: this only keeps their state small). A follower starts from the whole
//! state (`reset`) and gets it again when it falls behind the broadcast.

use pb::watch_event::Event;
use pdp::{ApprovalRequest, RequestState, Timestamp};
use portcullis_proto::v1 as pb;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tonic::Status;
use tracing::warn;

/// How often the feed looks for grants whose window passed and for a new default flow.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// The least time between two reads of every request: a burst of transitions costs one read.
const MIN_REREAD: Duration = Duration::from_millis(50);

/// Updates a follower may fall behind by before it gets the whole state again.
pub(crate) const BROADCAST: usize = 1024;

/// Grants, pending calls and removed ids per message: a part stays well under a megabyte.
const ITEMS_PER_MESSAGE: usize = 4096;

/// The control plane's approval requests, as the feed reads them. The binary implements it
/// over its approvals service, which keeps this crate free of the admin API.
#[tonic::async_trait]
pub trait ApprovalSource: Send + Sync + 'static {
    /// Every approved and every pending request (the feed keeps the approved ones whose grant
    /// is usable).
    fn requests(&self) -> Vec<Arc<ApprovalRequest>>;

    /// The id of the flow for Require approval answers whose policy names none.
    fn default_flow(&self) -> String;

    /// A receiver whose value changes with every transition of a request.
    fn changes(&self) -> watch::Receiver<u64>;

    /// Every approval flow, by id (read again every [`EXPIRY_TICK`] and on every transition);
    /// `None` when they cannot be read now (those held stay as they are).
    fn flows(&self) -> Option<Vec<pb::ApprovalFlow>> {
        None
    }

    /// Uses the `once` grant of request `id` for decision `decision_id`: true for exactly one
    /// caller, once durable.
    async fn use_once(&self, id: &str, decision_id: &str) -> Result<bool, Status>;
}

/// The approval state the stream carries, and its changes.
pub(crate) struct ApprovalFeed {
    pub(crate) source: Arc<dyn ApprovalSource>,
    state: Mutex<Held>,
}

/// What every follower was last sent.
struct Held {
    /// Counts the updates broadcast; a follower's stream tracks where it is.
    seq: u64,
    grants: HashMap<String, pb::ApprovalGrant>,
    pending: HashMap<String, pb::PendingApproval>,
    default_flow: String,
    flows: Vec<pb::ApprovalFlow>,
    /// The whole state at `seq`, encoded for the first follower that needed it.
    reset: Option<Arc<[pb::WatchEvent]>>,
    updates: broadcast::Sender<Update>,
}

/// One change of the approval state, for every follower.
#[derive(Clone)]
pub(crate) struct Update {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) events: Arc<[pb::WatchEvent]>,
}

/// A follower's view of the approval state: the whole of it at `at`, and every update after.
pub(crate) struct Subscription {
    pub(crate) at: u64,
    pub(crate) reset: Arc<[pb::WatchEvent]>,
    pub(crate) updates: broadcast::Receiver<Update>,
}

/// What changed between two readings of the requests.
#[derive(Default)]
struct Diff {
    grants: Vec<pb::ApprovalGrant>,
    removed_grants: Vec<String>,
    pending: Vec<pb::PendingApproval>,
    removed_pending: Vec<String>,
    default_flow: Option<String>,
    /// Every flow, when they changed.
    flows: Option<Vec<pb::ApprovalFlow>>,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.grants.is_empty()
            && self.removed_grants.is_empty()
            && self.pending.is_empty()
            && self.removed_pending.is_empty()
            && self.default_flow.is_none()
            && self.flows.is_none()
    }
}

impl ApprovalFeed {
    /// Reads the source's state now and starts following it (on the current tokio runtime).
    pub(crate) fn start(source: Arc<dyn ApprovalSource>) -> Arc<ApprovalFeed> {
        let changes = source.changes();
        let feed = Arc::new(ApprovalFeed {
            source,
            state: Mutex::new(Held {
                seq: 0,
                grants: HashMap::new(),
                pending: HashMap::new(),
                default_flow: String::new(),
                flows: Vec::new(),
                reset: None,
                updates: broadcast::channel(BROADCAST).0,
            }),
        });
        feed.reread();
        tokio::spawn(Arc::clone(&feed).follow(changes));
        feed
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every change of the state is made in one step under the lock: a poisoned lock still
        // holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The whole state now and every update after it.
    pub(crate) fn subscribe(&self) -> Subscription {
        let mut held = self.held();
        let reset = match &held.reset {
            Some(reset) => Arc::clone(reset),
            None => {
                let whole = Diff {
                    grants: held.grants.values().cloned().collect(),
                    pending: held.pending.values().cloned().collect(),
                    default_flow: Some(held.default_flow.clone()),
                    flows: Some(held.flows.clone()),
                    ..Diff::default()
                };
                let reset: Arc<[pb::WatchEvent]> = events(whole, true, &held.default_flow).into();
                held.reset = Some(Arc::clone(&reset));
                reset
            }
        };
        Subscription {
            at: held.seq,
            reset,
            updates: held.updates.subscribe(),
        }
    }

    /// Rereads the requests on every change, at most every [`MIN_REREAD`]; drops grants past
    /// their window every [`EXPIRY_TICK`].
    async fn follow(self: Arc<Self>, mut changes: watch::Receiver<u64>) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut following = true;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                changed = changes.changed(), if following => {
                    if changed.is_err() {
                        // The approvals service is gone: windows still end.
                        following = false;
                        continue;
                    }
                    tokio::time::sleep(MIN_REREAD.saturating_sub(last.elapsed())).await;
                    changes.borrow_and_update();
                    let feed = Arc::clone(&self);
                    // Reading every request is a copy of an index: off the async threads.
                    if tokio::task::spawn_blocking(move || feed.reread()).await.is_err() {
                        warn!("rereading the approval requests failed");
                    }
                    last = Instant::now();
                }
                _ = tick.tick() => self.expire(Timestamp::now()),
            }
        }
    }

    /// Reads every request and broadcasts what changed.
    pub(crate) fn reread(&self) {
        let now = Timestamp::now();
        let requests = self.source.requests();
        let default_flow = self.source.default_flow();
        let flows = self.source.flows();
        let mut grants = HashMap::new();
        let mut pending = HashMap::new();
        for request in &requests {
            match request.state {
                RequestState::Approved if request.grant(now).is_some() => {
                    grants.insert(request.id.clone(), crate::wire::grant(request));
                }
                RequestState::Pending => {
                    pending.insert(request.id.clone(), crate::wire::pending(request));
                }
                _ => {}
            }
        }
        let mut held = self.held();
        let mut diff = Diff::default();
        for (id, grant) in &grants {
            if held.grants.get(id) != Some(grant) {
                diff.grants.push(grant.clone());
            }
        }
        diff.removed_grants = held
            .grants
            .keys()
            .filter(|id| !grants.contains_key(*id))
            .cloned()
            .collect();
        for (id, call) in &pending {
            if held.pending.get(id) != Some(call) {
                diff.pending.push(call.clone());
            }
        }
        diff.removed_pending = held
            .pending
            .keys()
            .filter(|id| !pending.contains_key(*id))
            .cloned()
            .collect();
        if default_flow != held.default_flow {
            diff.default_flow = Some(default_flow.clone());
        }
        if let Some(flows) = flows
            && flows != held.flows
        {
            diff.flows = Some(flows.clone());
            held.flows = flows;
        }
        held.grants = grants;
        held.pending = pending;
        held.default_flow = default_flow;
        broadcast_diff(&mut held, diff);
    }

    /// Removes the grants whose window passed by `now`; notices a new default flow.
    fn expire(&self, now: Timestamp) {
        let default_flow = self.source.default_flow();
        let flows = self.source.flows();
        let mut held = self.held();
        let mut diff = Diff {
            removed_grants: held
                .grants
                .values()
                .filter(|g| g.approved_until_ms <= now.0)
                .map(|g| g.id.clone())
                .collect(),
            ..Diff::default()
        };
        for id in &diff.removed_grants {
            held.grants.remove(id);
        }
        if default_flow != held.default_flow {
            held.default_flow.clone_from(&default_flow);
            diff.default_flow = Some(default_flow);
        }
        if let Some(flows) = flows
            && flows != held.flows
        {
            held.flows.clone_from(&flows);
            diff.flows = Some(flows);
        }
        broadcast_diff(&mut held, diff);
    }
}

/// Broadcasts `diff` (already applied to `held`) as the next update, if it changes anything.
fn broadcast_diff(held: &mut Held, diff: Diff) {
    if diff.is_empty() {
        return;
    }
    let from = held.seq;
    held.seq += 1;
    held.reset = None;
    let update = Update {
        from,
        to: held.seq,
        events: events(diff, false, &held.default_flow).into(),
    };
    // No receiver is fine: nobody follows yet.
    let _ = held.updates.send(update);
}

/// `diff` as stream events, in parts of at most [`ITEMS_PER_MESSAGE`] items.
fn events(diff: Diff, reset: bool, default_flow: &str) -> Vec<pb::WatchEvent> {
    let part = || pb::ApprovalUpdate {
        reset,
        default_flow_id: default_flow.to_owned(),
        ..Default::default()
    };
    let mut parts = vec![part()];
    if let Some(flows) = diff.flows {
        parts[0].flows_replaced = true;
        parts[0].flows = flows;
    }
    let size = |p: &pb::ApprovalUpdate| {
        p.grants.len() + p.removed_grants.len() + p.pending.len() + p.removed_pending.len()
    };
    let room = |parts: &mut Vec<pb::ApprovalUpdate>| {
        if parts.last().is_some_and(|p| size(p) >= ITEMS_PER_MESSAGE) {
            parts.push(part());
        }
        parts.len() - 1
    };
    for grant in diff.grants {
        let i = room(&mut parts);
        parts[i].grants.push(grant);
    }
    for id in diff.removed_grants {
        let i = room(&mut parts);
        parts[i].removed_grants.push(id);
    }
    for call in diff.pending {
        let i = room(&mut parts);
        parts[i].pending.push(call);
    }
    for id in diff.removed_pending {
        let i = room(&mut parts);
        parts[i].removed_pending.push(id);
    }
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, mut part)| {
            part.continued = i < last;
            pb::WatchEvent {
                event: Some(Event::Approvals(part)),
            }
        })
        .collect()
}

/// A source of requests the test sets, for the feed's unit tests.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Fixed {
    pub(crate) requests: Mutex<Vec<Arc<ApprovalRequest>>>,
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) flows: Mutex<Option<Vec<pb::ApprovalFlow>>>,
}

#[cfg(test)]
#[tonic::async_trait]
impl ApprovalSource for Fixed {
    fn requests(&self) -> Vec<Arc<ApprovalRequest>> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn default_flow(&self) -> String {
        "flow-1".into()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
    fn flows(&self) -> Option<Vec<pb::ApprovalFlow>> {
        self.flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    async fn use_once(&self, _: &str, _: &str) -> Result<bool, Status> {
        Ok(false)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pdp::{ApprovalFlow, GrantMode};

    pub(crate) fn request(
        id: &str,
        state: RequestState,
        until: Option<i64>,
    ) -> Arc<ApprovalRequest> {
        Arc::new(ApprovalRequest {
            id: id.into(),
            user_id: "u1".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "deploy".into(),
            arguments_digest: "d".into(),
            flow: ApprovalFlow {
                grant: GrantMode::Window { seconds: 60 },
                ..ApprovalFlow::default()
            },
            state,
            approved_until: until.map(Timestamp),
            ..ApprovalRequest::default()
        })
    }

    #[tokio::test]
    async fn flows_travel_whole_when_they_change_and_a_failed_read_keeps_them() {
        let flow = |id: &str| pb::ApprovalFlow {
            id: id.into(),
            name: id.into(),
            ..pb::ApprovalFlow::default()
        };
        let source = Arc::new(Fixed {
            requests: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            flows: Mutex::new(Some(vec![flow("f1")])),
        });
        let feed = ApprovalFeed::start(source.clone());
        let mut sub = feed.subscribe();
        let reset = updates(&sub.reset);
        assert!(reset[0].flows_replaced);
        assert_eq!(reset[0].flows, vec![flow("f1")]);

        // A flow added: the whole list again.
        *source.flows.lock().unwrap() = Some(vec![flow("f1"), flow("f2")]);
        feed.reread();
        let update = sub.updates.recv().await.unwrap();
        let parts = updates(&update.events);
        assert!(parts[0].flows_replaced);
        assert_eq!(parts[0].flows.len(), 2);

        // Unreadable: nothing is sent, those held stay.
        *source.flows.lock().unwrap() = None;
        feed.reread();
        assert!(sub.updates.try_recv().is_err());
        let again = updates(&feed.subscribe().reset);
        assert_eq!(again[0].flows.len(), 2);
    }

    pub(crate) fn updates(events: &[pb::WatchEvent]) -> Vec<pb::ApprovalUpdate> {
        events
            .iter()
            .filter_map(|e| match &e.event {
                Some(Event::Approvals(u)) => Some(u.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_state_follows_the_requests_and_the_clock() {
        let far = Timestamp::now().0 + 3_600_000;
        let source = Arc::new(Fixed {
            requests: Mutex::new(vec![
                request("a", RequestState::Approved, Some(far)),
                request("p", RequestState::Pending, None),
                request("used", RequestState::Approved, Some(far)),
                request("denied", RequestState::Denied, None),
            ]),
            changed: watch::channel(0).0,
            flows: Mutex::new(None),
        });
        Arc::make_mut(&mut source.requests.lock().unwrap()[2]).used_by = Some("d1".into());
        let feed = ApprovalFeed::start(source.clone());

        // The whole state: one usable grant, one pending call, the default flow.
        let mut sub = feed.subscribe();
        let reset = updates(&sub.reset);
        assert_eq!(reset.len(), 1);
        assert!(reset[0].reset && !reset[0].continued);
        assert_eq!(reset[0].default_flow_id, "flow-1");
        let ids: Vec<_> = reset[0].grants.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(reset[0].pending[0].id, "p");

        // The pending request is approved with a window that is already over by the next
        // look at the clock; the grant is used meanwhile.
        let soon = Timestamp::now().0 + 500;
        *source.requests.lock().unwrap() = vec![
            request("p", RequestState::Approved, Some(soon)),
            request("a", RequestState::Cancelled, None),
        ];
        feed.reread();
        let update = sub.updates.recv().await.unwrap();
        assert_eq!((update.from, update.to), (sub.at, sub.at + 1));
        let change = &updates(&update.events)[0];
        assert!(!change.reset);
        assert_eq!(change.grants[0].id, "p");
        assert_eq!(change.removed_grants, ["a"]);
        assert_eq!(change.removed_pending, ["p"]);
        assert!(change.pending.is_empty());

        feed.expire(Timestamp(soon));
        let expired = sub.updates.recv().await.unwrap();
        assert_eq!(updates(&expired.events)[0].removed_grants, ["p"]);
        // The request is then used: it was gone already, so nothing is sent.
        Arc::make_mut(&mut source.requests.lock().unwrap()[0]).used_by = Some("d2".into());
        feed.reread();
        feed.expire(Timestamp(soon));
        assert!(sub.updates.try_recv().is_err());
        let again = updates(&feed.subscribe().reset);
        assert!(again[0].grants.is_empty() && again[0].pending.is_empty());
    }

    #[test]
    fn a_large_state_comes_in_parts() {
        let diff = Diff {
            pending: (0..ITEMS_PER_MESSAGE + 1)
                .map(|i| pb::PendingApproval {
                    id: i.to_string(),
                    ..Default::default()
                })
                .collect(),
            removed_grants: vec!["x".into()],
            ..Diff::default()
        };
        let parts = updates(&events(diff, true, "f"));
        assert_eq!(parts.len(), 2);
        assert!(parts[0].continued && !parts[1].continued);
        assert!(parts.iter().all(|p| p.reset && p.default_flow_id == "f"));
        let items: usize = parts
            .iter()
            .map(|p| p.pending.len() + p.removed_grants.len())
            .sum();
        assert_eq!(items, ITEMS_PER_MESSAGE + 2);
    }
}
