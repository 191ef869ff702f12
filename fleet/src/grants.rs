//! The sidecar's side of approvals: the approval state its control plane streams, as the
//! decision service reads it ([`pdp_service::Approvals`]).
//!
//! A Check naming an approval decides with the grant held here. A `window` grant is decided
//! here alone, until its `approved_until`. A `once` grant must be used on the control plane
//! (`SnapshotService.UseGrant`), so that of every Check across the fleet exactly one gets it;
//! if the control plane does not answer within [`USE_TIMEOUT`], the grant counts as not used
//! and the Check is answered Require approval (it fails closed).
//!
//! What is held outlives the connection: while the control plane is unreachable, window grants
//! keep allowing until their window ends (or the sidecar fails closed as stale), and a grant
//! cancelled meanwhile is dropped only once the stream is back.

use crate::{Error, Result, wire};
use pb::snapshot_service_client::SnapshotServiceClient;
use pdp::ApprovalRequest;
use pdp_service::Call;
use portcullis_proto::v1 as pb;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tracing::{debug, warn};

/// How long using a `once` grant may take on the control plane before the Check is answered
/// without it.
pub const USE_TIMEOUT: Duration = Duration::from_secs(2);

/// The approval state a sidecar holds, and the way to its control plane. Cheap to clone.
#[derive(Clone)]
pub struct Grants {
    inner: Arc<Inner>,
}

struct Inner {
    held: RwLock<Held>,
    /// `once` grants used through the control plane, and uses it did not answer.
    used: AtomicU64,
    failed: AtomicU64,
    /// Connected on first use, and again after the control plane comes back.
    channel: Channel,
    authorization: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        let held = self.held();
        f.debug_struct("Grants")
            .field("grants", &held.grants.len())
            .field("pending", &held.pending.len())
            .field("default_flow", &held.default_flow)
            .finish()
    }
}

/// A sidecar's approval state and its uses of `once` grants, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantStats {
    /// Usable grants held.
    pub grants: usize,
    /// Pending requests' calls held.
    pub pending: usize,
    /// Approval flows held.
    pub flows: usize,
    /// `once` grants used through the control plane (Checks allowed by them).
    pub once_used: u64,
    /// Uses the control plane did not answer in time or refused with an error: each such Check
    /// was answered Require approval.
    pub once_failed: u64,
}

/// A pending request's call, as Require approval answers look it up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallKey {
    user_id: String,
    agent: String,
    connector: String,
    tool: String,
    digest: String,
}

impl CallKey {
    fn of(call: &Call<'_>) -> CallKey {
        CallKey {
            user_id: call.user_id.to_owned(),
            agent: call.agent.to_owned(),
            connector: call.connector.to_owned(),
            tool: call.tool.to_owned(),
            digest: call.arguments_digest.to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct Held {
    grants: HashMap<String, Arc<ApprovalRequest>>,
    /// Pending requests by call, and each one's call by id (to remove it).
    pending: HashMap<CallKey, String>,
    calls: HashMap<String, CallKey>,
    /// Empty until the control plane says: the built-in flow's id is answered then.
    default_flow: String,
    /// The control plane's approval flows, by id.
    flows: HashMap<String, pb::ApprovalFlow>,
}

impl Held {
    fn remove_pending(&mut self, id: &str) {
        if let Some(key) = self.calls.remove(id)
            && self.pending.get(&key).is_some_and(|p| p == id)
        {
            self.pending.remove(&key);
        }
    }

    fn add_pending(&mut self, id: String, key: CallKey) {
        self.remove_pending(&id);
        self.pending.insert(key.clone(), id.clone());
        self.calls.insert(id, key);
    }
}

impl Grants {
    /// Nothing held yet; `once` grants are used over `channel`, sending `authorization`.
    pub(crate) fn new(channel: Channel, authorization: Option<MetadataValue<Ascii>>) -> Grants {
        Grants {
            inner: Arc::new(Inner {
                held: RwLock::new(Held::default()),
                used: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                channel,
                authorization,
            }),
        }
    }

    fn held(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        // Every change is made in one step under the lock: a poisoned lock still holds a
        // consistent state.
        self.inner
            .held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held_mut(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.inner
            .held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of grants and pending requests held.
    pub fn counts(&self) -> (usize, usize) {
        let held = self.held();
        (held.grants.len(), held.pending.len())
    }

    /// What the metrics read.
    pub fn stats(&self) -> GrantStats {
        let (grants, pending) = self.counts();
        GrantStats {
            grants,
            pending,
            flows: self.held().flows.len(),
            once_used: self.inner.used.load(Ordering::Relaxed),
            once_failed: self.inner.failed.load(Ordering::Relaxed),
        }
    }

    /// Applies one update, given as all its parts; checked whole before anything changes.
    pub(crate) fn apply(&self, parts: Vec<pb::ApprovalUpdate>) -> Result<()> {
        let Some(last) = parts.last() else {
            return Ok(());
        };
        let reset = parts[0].reset;
        if parts.iter().any(|p| p.reset != reset) {
            return Err(Error::Stream(
                "the parts of an approval update disagree on whether it is whole".into(),
            ));
        }
        let default_flow = last.default_flow_id.clone();
        let mut grants = Vec::new();
        let mut pending = Vec::new();
        for part in &parts {
            for record in &part.grants {
                match wire::grant_from(record)? {
                    Some(grant) => grants.push(Arc::new(grant)),
                    None => warn!(
                        approval_id = %record.id,
                        grant_mode = record.grant_mode,
                        "an approval grant of a mode this sidecar does not know: not honoured"
                    ),
                }
            }
            for call in &part.pending {
                if call.id.is_empty() {
                    return Err(Error::Stream("a pending approval without an id".into()));
                }
                let key = CallKey {
                    user_id: call.user_id.clone(),
                    agent: call.agent.clone(),
                    connector: call.connector.clone(),
                    tool: call.tool.clone(),
                    digest: call.arguments_digest.clone(),
                };
                pending.push((call.id.clone(), key));
            }
        }
        let flows = parts.iter().find(|p| p.flows_replaced).map(|p| {
            p.flows
                .iter()
                .map(|f| (f.id.clone(), f.clone()))
                .collect::<HashMap<_, _>>()
        });
        let mut held = self.held_mut();
        if reset {
            let kept = std::mem::take(&mut held.flows);
            *held = Held::default();
            held.flows = kept;
        }
        if let Some(flows) = flows {
            held.flows = flows;
        }
        for part in &parts {
            for id in &part.removed_grants {
                held.grants.remove(id);
            }
            for id in &part.removed_pending {
                held.remove_pending(id);
            }
        }
        for grant in grants {
            held.grants.insert(grant.id.clone(), grant);
        }
        for (id, key) in pending {
            held.add_pending(id, key);
        }
        held.default_flow = default_flow;
        debug!(
            reset,
            grants = held.grants.len(),
            pending = held.pending.len(),
            "approval state updated"
        );
        Ok(())
    }

    /// Asks the control plane to use the `once` grant of `id` for `decision_id`.
    async fn use_upstream(&self, id: &str, decision_id: &str) -> Result<bool, tonic::Status> {
        let mut client = SnapshotServiceClient::new(self.inner.channel.clone());
        let mut request = tonic::Request::new(pb::UseGrantRequest {
            approval_id: id.to_owned(),
            decision_id: decision_id.to_owned(),
        });
        // The control plane gives up too once the sidecar has.
        request.set_timeout(USE_TIMEOUT);
        if let Some(value) = &self.inner.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let answer = tokio::time::timeout(USE_TIMEOUT, client.use_grant(request))
            .await
            .map_err(|_| {
                tonic::Status::deadline_exceeded(format!(
                    "the control plane did not answer within {} ms",
                    USE_TIMEOUT.as_millis()
                ))
            })??;
        Ok(answer.into_inner().used)
    }
}

#[tonic::async_trait]
impl pdp_service::Approvals for Grants {
    fn request(&self, id: &str) -> Option<Arc<ApprovalRequest>> {
        self.held().grants.get(id).cloned()
    }

    async fn use_once(&self, id: &str, decision_id: &str) -> Result<bool, tonic::Status> {
        let used = match self.use_upstream(id, decision_id).await {
            Ok(used) => used,
            Err(status) => {
                self.inner.failed.fetch_add(1, Ordering::Relaxed);
                return Err(status);
            }
        };
        if used {
            self.inner.used.fetch_add(1, Ordering::Relaxed);
        }
        // Used now, or unusable: either way no later Check here can have it, and the stream's
        // removal may take a moment.
        self.held_mut().grants.remove(id);
        Ok(used)
    }

    fn pending(&self, call: &Call<'_>) -> Option<String> {
        self.held().pending.get(&CallKey::of(call)).cloned()
    }

    fn default_flow(&self) -> String {
        let held = self.held();
        if held.default_flow.is_empty() {
            pdp::approval::BUILTIN_FLOW_ID.to_owned()
        } else {
            held.default_flow.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pdp_service::Approvals as _;

    fn grants() -> Grants {
        // Nothing listens there: using a once grant fails, as with a control plane gone.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        Grants::new(channel, None)
    }

    fn grant(id: &str, mode: pb::GrantMode) -> pb::ApprovalGrant {
        pb::ApprovalGrant {
            id: id.into(),
            user_id: "u1".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "deploy".into(),
            arguments_digest: "d".into(),
            grant_mode: mode.into(),
            window_seconds: 60,
            approved_until_ms: pdp::Timestamp::now().0 + 60_000,
            ..Default::default()
        }
    }

    fn pending(id: &str, digest: &str) -> pb::PendingApproval {
        pb::PendingApproval {
            id: id.into(),
            user_id: "u1".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "deploy".into(),
            arguments_digest: digest.into(),
        }
    }

    fn call(digest: &str) -> Call<'_> {
        Call {
            user_id: "u1",
            agent: "claude",
            connector: "github",
            tool: "deploy",
            arguments_digest: digest,
        }
    }

    #[tokio::test]
    async fn updates_replace_add_and_remove() {
        let g = grants();
        assert_eq!(g.default_flow(), pdp::approval::BUILTIN_FLOW_ID);
        g.apply(vec![
            pb::ApprovalUpdate {
                reset: true,
                grants: vec![grant("w", pb::GrantMode::Window)],
                continued: true,
                ..Default::default()
            },
            pb::ApprovalUpdate {
                reset: true,
                grants: vec![grant("o", pb::GrantMode::Once)],
                pending: vec![pending("p1", "d1")],
                default_flow_id: "flow-1".into(),
                ..Default::default()
            },
        ])
        .unwrap();
        assert_eq!(g.counts(), (2, 1));
        assert_eq!(g.default_flow(), "flow-1");
        assert_eq!(g.pending(&call("d1")).as_deref(), Some("p1"));
        assert!(g.pending(&call("d2")).is_none());
        let window = g.request("w").unwrap();
        assert!(window.grant(pdp::Timestamp::now()).is_some());

        // A change: p1 approved, w cancelled.
        g.apply(vec![pb::ApprovalUpdate {
            grants: vec![grant("p1", pb::GrantMode::Once)],
            removed_grants: vec!["w".into()],
            removed_pending: vec!["p1".into()],
            default_flow_id: "flow-1".into(),
            ..Default::default()
        }])
        .unwrap();
        assert!(g.request("w").is_none() && g.request("p1").is_some());
        assert!(g.pending(&call("d1")).is_none());

        // A bad record changes nothing.
        let mut bad = grant("x", pb::GrantMode::Once);
        bad.id.clear();
        assert!(
            g.apply(vec![pb::ApprovalUpdate {
                reset: true,
                grants: vec![bad],
                ..Default::default()
            }])
            .is_err()
        );
        assert_eq!(g.counts(), (2, 0));

        // A reset replaces everything.
        g.apply(vec![pb::ApprovalUpdate {
            reset: true,
            ..Default::default()
        }])
        .unwrap();
        assert_eq!(g.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_once_grant_without_its_control_plane_is_not_used() {
        let g = grants();
        g.apply(vec![pb::ApprovalUpdate {
            reset: true,
            grants: vec![grant("o", pb::GrantMode::Once)],
            ..Default::default()
        }])
        .unwrap();
        let started = std::time::Instant::now();
        assert!(g.use_once("o", "decision-1").await.is_err());
        assert!(started.elapsed() <= USE_TIMEOUT + Duration::from_millis(500));
        // Still held: the control plane may be back for the next Check.
        assert!(g.request("o").is_some());
        let stats = g.stats();
        assert_eq!(
            (stats.grants, stats.once_used, stats.once_failed),
            (1, 0, 1)
        );
    }
}
