//! Approval requests: creating them, their transitions, their deadlines, and the grants they
//! give decisions.
//!
//! The store is the source of truth: every transition reads the request inside a store
//! transaction, writes it back with its audit event and its webhook deliveries, and is
//! acknowledged only once durable. An in-memory index of every kept request (at most
//! [`MAX_KEPT`]) answers gets, inboxes and decisions without reading the store; it is updated
//! after each commit, keyed by the revision that wrote each request so a late update never
//! overwrites a newer one.
//!
//! Deadlines (a step's timeout, the request's TTL) are applied by one task that sleeps until
//! the next; on start it applies every deadline that passed while the server was down.

use super::eligible;
use super::events::{Event, EventType, Outbox};
use super::stats::{Outcome, Stats};
use crate::auth::Caller;
use crate::{Error, Result, clock};
use live::Live;
use pdp::{Action, Approval, ApprovalFlow, ApprovalRequest, GrantMode, RequestState, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use store::AuditEvent;
use tokio::sync::{Notify, watch};

/// The most pending requests at once; creating more is refused (RESOURCE_EXHAUSTED).
pub const MAX_PENDING: usize = 100_000;
/// The most pending requests for one user at once.
pub const MAX_PENDING_PER_USER: usize = 1_000;
/// The most requests kept (pending or not); the oldest finished ones are deleted past it.
pub const MAX_KEPT: usize = 200_000;
/// Finished requests are kept this long after their last change (then deleted): 30 days.
pub const KEPT_FOR_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// The longest justification.
pub const MAX_JUSTIFICATION: usize = 4096;
/// The longest comment on an approval, denial or cancellation.
pub const MAX_COMMENT: usize = 1024;
/// The longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The approval requests of this control plane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Approvals {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    live: Live,
    index: Mutex<Index>,
    /// Bumped after every applied transition: what waiting gets and watches listen to.
    changed: watch::Sender<u64>,
    /// Wakes the deadline task when a new deadline may be earlier than the one it sleeps to.
    deadlines: Arc<Notify>,
    outbox: Option<Arc<dyn Outbox>>,
    /// Creating is serialized, so two identical creates cannot both find no pending request.
    creating: tokio::sync::Mutex<()>,
    stats: Stats,
}

/// The exact call a request is for, as pending requests are deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallKey {
    user_id: String,
    agent: String,
    connector: String,
    tool: String,
    digest: String,
}

impl CallKey {
    fn of(r: &ApprovalRequest) -> CallKey {
        CallKey {
            user_id: r.user_id.clone(),
            agent: r.agent.clone(),
            connector: r.connector.clone(),
            tool: r.tool.clone(),
            digest: r.arguments_digest.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    /// Every kept request, with the revision that last wrote it.
    requests: HashMap<String, (u64, Arc<ApprovalRequest>)>,
    /// Pending requests by call and by idempotency key.
    pending: HashMap<CallKey, String>,
    keys: HashMap<String, String>,
    pending_per_user: HashMap<String, usize>,
    /// (next deadline, id) of every pending request.
    deadlines: BTreeSet<(Timestamp, String)>,
    /// (last change, id) of every finished request, oldest first: what retention deletes.
    finished: BTreeSet<(Timestamp, String)>,
}

impl Index {
    fn apply(&mut self, revision: u64, request: ApprovalRequest) -> bool {
        if let Some((at, _)) = self.requests.get(&request.id)
            && *at > revision
        {
            return false;
        }
        self.forget(&request.id);
        let request = Arc::new(request);
        if request.state == RequestState::Pending {
            self.pending
                .insert(CallKey::of(&request), request.id.clone());
            if let Some(key) = &request.idempotency_key {
                self.keys.insert(key.clone(), request.id.clone());
            }
            *self
                .pending_per_user
                .entry(request.user_id.clone())
                .or_default() += 1;
            self.deadlines
                .insert((next_deadline(&request), request.id.clone()));
        } else {
            self.finished
                .insert((request.updated_at, request.id.clone()));
        }
        self.requests
            .insert(request.id.clone(), (revision, request));
        true
    }

    fn forget(&mut self, id: &str) {
        let Some((_, old)) = self.requests.remove(id) else {
            return;
        };
        if old.state == RequestState::Pending {
            let key = CallKey::of(&old);
            if self.pending.get(&key).is_some_and(|p| p == id) {
                self.pending.remove(&key);
            }
            if let Some(k) = &old.idempotency_key
                && self.keys.get(k).is_some_and(|p| p == id)
            {
                self.keys.remove(k);
            }
            if let Some(n) = self.pending_per_user.get_mut(&old.user_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.pending_per_user.remove(&old.user_id);
                }
            }
            self.deadlines.remove(&(next_deadline(&old), id.to_owned()));
        } else {
            self.finished.remove(&(old.updated_at, id.to_owned()));
        }
    }

    fn get(&self, id: &str) -> Option<Arc<ApprovalRequest>> {
        self.requests.get(id).map(|(_, r)| r.clone())
    }
}

/// When a pending request next needs a look: its step's timeout or its expiry.
fn next_deadline(request: &ApprovalRequest) -> Timestamp {
    step_deadline(request).map_or(request.expires_at, |d| d.min(request.expires_at))
}

/// When the current step times out, if it has a timeout.
pub fn step_deadline(request: &ApprovalRequest) -> Option<Timestamp> {
    let step = request.flow.steps.get(request.step as usize)?;
    let timeout = step.timeout_secs?;
    Some(Timestamp(
        request
            .step_started_at
            .0
            .saturating_add(secs_to_ms(timeout)),
    ))
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// A call to request approval for, as the gateway sent it (checked by the service).
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub user: String,
    pub agent: String,
    pub connector: String,
    pub tool: String,
    pub arguments: pdp::Arguments,
    pub attributes: BTreeMap<String, String>,
    pub authentication: Option<pdp::Authentication>,
    pub justification: String,
    pub idempotency_key: Option<String>,
}

/// Who ends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

/// Filters of an administrator's listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub states: Vec<RequestState>,
    pub user_id: Option<String>,
    pub connector: Option<String>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
}

impl Approvals {
    /// Loads the kept requests and starts the deadline task (on the current tokio runtime),
    /// which first applies every deadline that passed while the server was down.
    pub fn start(live: Live, outbox: Option<Arc<dyn Outbox>>) -> Result<Approvals> {
        let revision = live.store().revision();
        let mut index = Index::default();
        for request in live.store().approvals()? {
            index.apply(revision, request);
        }
        let (changed, _) = watch::channel(0);
        let approvals = Approvals {
            inner: Arc::new(Inner {
                live,
                index: Mutex::new(index),
                changed,
                deadlines: Arc::new(Notify::new()),
                outbox,
                creating: tokio::sync::Mutex::new(()),
                stats: Stats::default(),
            }),
        };
        let weak = Arc::downgrade(&approvals.inner);
        let wake = approvals.inner.deadlines.clone();
        tokio::spawn(async move { deadline_loop(weak, wake).await });
        Ok(approvals)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the index leaves it consistent (every method updates it in
        // one step), so a poisoned lock is still usable.
        self.inner
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What requests came to, for metrics.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn live(&self) -> &Live {
        &self.inner.live
    }

    /// The request with this id.
    pub fn get(&self, id: &str) -> Option<Arc<ApprovalRequest>> {
        self.index().get(id)
    }

    /// The number of pending requests.
    pub fn pending_count(&self) -> usize {
        self.index().pending.len()
    }

    /// A receiver that sees every applied transition (its value is a counter).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Creates a pending request for the call, if its answer now is Require approval;
    /// returns it and whether it is new (false: an identical pending one).
    pub async fn create(&self, new: NewRequest) -> Result<(Arc<ApprovalRequest>, bool)> {
        let _creating = self.inner.creating.lock().await;
        let now = clock::now();
        let snapshot = self.inner.live.engine().snapshot();
        let (decided, agent) = {
            let request = pdp::Request {
                user: &new.user,
                agent: &new.agent,
                connector: &new.connector,
                tool: &new.tool,
                attributes: &new.attributes,
                context: pdp::Context {
                    authentication: new.authentication.as_ref(),
                    arguments: Some(&new.arguments),
                    now,
                    grant: None,
                },
            };
            let decision = snapshot.decide(&request);
            let owned = |s: Option<&str>| s.map(str::to_owned);
            let (user_id, policy_id, approval_flow) = (
                owned(decision.user_id),
                owned(decision.policy_id),
                owned(decision.approval_flow),
            );
            (
                (
                    decision.action,
                    decision.reason,
                    user_id,
                    policy_id,
                    approval_flow,
                ),
                snapshot.agent_name(&new.agent).to_owned(),
            )
        };
        let (action, reason, user_id, policy_id, approval_flow) = decided;
        let (Action::RequireApproval, Some(user_id), Some(policy_id)) =
            (action, user_id, policy_id.clone())
        else {
            return Err(Error::FailedPrecondition(format!(
                "the call is answered {} ({}{}): only a REQUIRE_APPROVAL answer can be approved",
                crate::users::decision(action)
                    .as_str_name()
                    .trim_start_matches("DECISION_"),
                crate::users::reason(reason)
                    .as_str_name()
                    .trim_start_matches("REASON_"),
                policy_id
                    .map(|p| format!(", policy `{p}`"))
                    .unwrap_or_default(),
            )));
        };
        let digest = pdp::arguments_digest(Some(&new.arguments));
        let call = CallKey {
            user_id,
            agent,
            connector: new.connector.clone(),
            tool: new.tool.clone(),
            digest,
        };
        {
            let index = self.index();
            if let Some(key) = &new.idempotency_key
                && let Some(existing) = index.keys.get(key).and_then(|id| index.get(id))
            {
                if CallKey::of(&existing) != call {
                    return Err(Error::FailedPrecondition(format!(
                        "idempotency_key `{key}` names pending approval request `{}`, for another call",
                        existing.id
                    )));
                }
                return Ok((existing, false));
            }
            if let Some(existing) = index.pending.get(&call).and_then(|id| index.get(id)) {
                return Ok((existing, false));
            }
            if index.pending.len() >= MAX_PENDING {
                return Err(Error::Unavailable(format!(
                    "{MAX_PENDING} approval requests are pending, the limit: try again later"
                )));
            }
            if index
                .pending_per_user
                .get(&call.user_id)
                .copied()
                .unwrap_or(0)
                >= MAX_PENDING_PER_USER
            {
                return Err(Error::FailedPrecondition(format!(
                    "user `{}` has {MAX_PENDING_PER_USER} pending approval requests, the limit",
                    call.user_id
                )));
            }
        }
        let flow = self.flow_for(approval_flow.as_deref())?;
        let ttl = secs_to_ms(flow.request_ttl_secs);
        let request = ApprovalRequest {
            id: new_id(now)?,
            idempotency_key: new.idempotency_key.clone(),
            user_id: call.user_id,
            agent: call.agent,
            connector: call.connector,
            tool: call.tool,
            arguments_digest: call.digest,
            arguments: new.arguments,
            attributes: new.attributes,
            justification: new.justification,
            policy_id,
            flow,
            state: RequestState::Pending,
            step: 0,
            step_started_at: now,
            approvals: Vec::new(),
            denial: None,
            created_at: now,
            updated_at: now,
            expires_at: Timestamp(now.0.saturating_add(ttl)),
            approved_until: None,
            used_by: None,
            ended_by: None,
        };
        let written = request.clone();
        let outbox = self.inner.outbox.clone();
        let revision = self
            .commit(move |tx| {
                tx.put_approval(&written)?;
                tx.audit(audit_event(&written, "approval.created", "gateway", ""))?;
                if let Some(outbox) = &outbox {
                    outbox.enqueue(tx, &event(EventType::Created, &written, "gateway"))?;
                }
                Ok(())
            })
            .await?;
        self.applied(revision, request.clone());
        self.inner.stats.count(Outcome::Created);
        Ok((Arc::new(request), true))
    }

    /// The flow a Require approval answer's policy names, else the default, else the built-in.
    fn flow_for(&self, named: Option<&str>) -> Result<ApprovalFlow> {
        let store = self.inner.live.store();
        let id = match named {
            Some(id) => Some(id.to_owned()),
            None => store.default_flow()?,
        };
        match id {
            None => Ok(ApprovalFlow::builtin()),
            Some(id) if id == pdp::approval::BUILTIN_FLOW_ID => Ok(ApprovalFlow::builtin()),
            Some(id) => store.get_flow(&id)?.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "the policy's approval flow `{id}` does not exist"
                ))
            }),
        }
    }

    /// The default flow's id (the built-in one's when none is set).
    pub fn default_flow(&self) -> String {
        self.inner
            .live
            .store()
            .default_flow()
            .ok()
            .flatten()
            .unwrap_or_else(|| pdp::approval::BUILTIN_FLOW_ID.to_owned())
    }

    /// The pending request for exactly this call.
    pub fn pending(&self, call: &pdp_service::Call<'_>) -> Option<String> {
        let key = CallKey {
            user_id: call.user_id.to_owned(),
            agent: call.agent.to_owned(),
            connector: call.connector.to_owned(),
            tool: call.tool.to_owned(),
            digest: call.arguments_digest.to_owned(),
        };
        self.index().pending.get(&key).cloned()
    }

    /// An approver approves or denies a request.
    pub async fn decide(
        &self,
        id: &str,
        caller: &Caller,
        verdict: Verdict,
        comment: String,
    ) -> Result<Arc<ApprovalRequest>> {
        let id = id.to_owned();
        let user_id = caller.user_id.clone();
        let token = caller.token_id.clone();
        let outbox = self.inner.outbox.clone();
        let (revision, request) = self
            .transition(move |tx, view| {
                let mut request = tx
                    .approval(&id)?
                    .ok_or_else(|| Error::not_found("approval request", &id))?;
                let now = clock::now();
                match eligible::check(view, &request, &user_id) {
                    Ok(()) => {}
                    Err(refusal @ eligible::Refusal::NotPending) => {
                        return Err(Error::FailedPrecondition(
                            refusal.message(&request, &user_id),
                        ));
                    }
                    Err(refusal) => {
                        return Err(Error::PermissionDenied(refusal.message(&request, &user_id)));
                    }
                }
                if now >= request.expires_at {
                    return Err(Error::FailedPrecondition(format!(
                        "approval request `{id}` has expired"
                    )));
                }
                let approval = Approval {
                    user_id: user_id.clone(),
                    step: request.step,
                    comment,
                    at: now,
                };
                let kind = match verdict {
                    Verdict::Deny => {
                        request.denial = Some(approval);
                        request.state = RequestState::Denied;
                        EventType::Denied
                    }
                    Verdict::Approve => {
                        request.approvals.push(approval);
                        if eligible::needed(&request) > 0 {
                            // More approvals needed at this step: no event but the audit's.
                            request.updated_at = now;
                            tx.put_approval(&request)?;
                            let mut audit = audit_event(&request, "approval.approve", &user_id, "");
                            audit.via = Some(token);
                            tx.audit(audit)?;
                            return Ok(request);
                        }
                        if (request.step as usize) + 1 < request.flow.steps.len() {
                            request.step += 1;
                            request.step_started_at = now;
                            EventType::Escalated
                        } else {
                            request.state = RequestState::Approved;
                            request.approved_until =
                                Some(Timestamp(now.0.saturating_add(grant_length(&request.flow))));
                            EventType::Approved
                        }
                    }
                };
                request.updated_at = now;
                tx.put_approval(&request)?;
                let action = match verdict {
                    Verdict::Approve => "approval.approve",
                    Verdict::Deny => "approval.deny",
                };
                let mut audit = audit_event(&request, action, &user_id, kind.name());
                audit.via = Some(token);
                tx.audit(audit)?;
                if let Some(outbox) = &outbox {
                    outbox.enqueue(tx, &event(kind, &request, &user_id))?;
                }
                Ok(request)
            })
            .await?;
        Ok(self.applied(revision, request))
    }

    /// Withdraws a pending or approved (not yet used) request.
    pub async fn cancel(
        &self,
        id: &str,
        actor: String,
        comment: String,
    ) -> Result<Arc<ApprovalRequest>> {
        let id = id.to_owned();
        let outbox = self.inner.outbox.clone();
        let (revision, request) = self
            .transition(move |tx, _view| {
                let mut request = tx
                    .approval(&id)?
                    .ok_or_else(|| Error::not_found("approval request", &id))?;
                if request.state.is_final() || request.used_by.is_some() {
                    return Err(Error::FailedPrecondition(format!(
                        "approval request `{id}` is {}{}: only a pending or unused approved request can be cancelled",
                        request.state.name(),
                        if request.used_by.is_some() { " and used" } else { "" },
                    )));
                }
                let now = clock::now();
                request.state = RequestState::Cancelled;
                request.ended_by = Some(actor.clone());
                request.updated_at = now;
                tx.put_approval(&request)?;
                tx.audit(audit_event(&request, "approval.cancel", &actor, &comment))?;
                if let Some(outbox) = &outbox {
                    outbox.enqueue(tx, &event(EventType::Cancelled, &request, &actor))?;
                }
                Ok(request)
            })
            .await?;
        Ok(self.applied(revision, request))
    }

    /// Uses a `once` grant for `decision_id`: true for exactly one caller.
    pub async fn use_once(&self, id: &str, decision_id: &str) -> Result<bool> {
        let id = id.to_owned();
        let decision_id = decision_id.to_owned();
        let outcome = self
            .transition(move |tx, _view| {
                let Some(mut request) = tx.approval(&id)? else {
                    return Ok(None);
                };
                let now = clock::now();
                if request.flow.grant != GrantMode::Once || request.grant(now).is_none() {
                    return Ok(None);
                }
                request.used_by = Some(decision_id.clone());
                request.updated_at = now;
                tx.put_approval(&request)?;
                tx.audit(audit_event(
                    &request,
                    "approval.used",
                    "gateway",
                    &decision_id,
                ))?;
                Ok(Some(request))
            })
            .await?;
        match outcome {
            (revision, Some(request)) => {
                self.applied(revision, request);
                self.inner.stats.count(Outcome::Used);
                Ok(true)
            }
            (_, None) => Ok(false),
        }
    }

    /// Applies every deadline due at `now`; returns the next one.
    async fn apply_deadlines(&self, now: Timestamp) -> Option<Timestamp> {
        let due: Vec<String> = {
            let index = self.index();
            index
                .deadlines
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(256)
                .map(|(_, id)| id.clone())
                .collect()
        };
        for id in due {
            if let Err(error) = self.timeout(&id).await {
                tracing::warn!(approval_id = %id, %error, "cannot apply an approval request's deadline");
                // Try again shortly rather than spin.
                return Some(Timestamp(now.0 + 1000));
            }
        }
        self.retain(now).await;
        let index = self.index();
        index.deadlines.iter().next().map(|(at, _)| *at)
    }

    /// Escalates or expires one request whose deadline passed.
    async fn timeout(&self, id: &str) -> Result<()> {
        let gone = id.to_owned();
        let id = id.to_owned();
        let outbox = self.inner.outbox.clone();
        let (revision, request) = self
            .transition(move |tx, _view| {
                let Some(mut request) = tx.approval(&id)? else {
                    return Ok(None);
                };
                let now = clock::now();
                if request.state != RequestState::Pending || next_deadline(&request) > now {
                    return Ok(Some(request));
                }
                let kind = if now >= request.expires_at
                    || (request.step as usize) + 1 >= request.flow.steps.len()
                {
                    request.state = RequestState::Expired;
                    request.ended_by = Some("system".into());
                    EventType::Expired
                } else {
                    request.step += 1;
                    request.step_started_at = now;
                    EventType::Escalated
                };
                request.updated_at = now;
                tx.put_approval(&request)?;
                tx.audit(audit_event(&request, kind_action(kind), "system", ""))?;
                if let Some(outbox) = &outbox {
                    outbox.enqueue(tx, &event(kind, &request, "system"))?;
                }
                Ok(Some(request))
            })
            .await?;
        match request {
            Some(request) => {
                self.applied(revision, request);
            }
            // Deleted meanwhile: nothing to wait for.
            None => self.index().forget(&gone),
        }
        Ok(())
    }

    /// Deletes finished requests past their keeping time, or past [`MAX_KEPT`] requests.
    async fn retain(&self, now: Timestamp) {
        let doomed: Vec<String> = {
            let index = self.index();
            let over = index.requests.len().saturating_sub(MAX_KEPT);
            index
                .finished
                .iter()
                .enumerate()
                .take_while(|(i, (at, _))| *i < over || at.0.saturating_add(KEPT_FOR_MS) <= now.0)
                .take(256)
                .map(|(_, (_, id))| id.clone())
                .collect()
        };
        if doomed.is_empty() {
            return;
        }
        let ids = doomed.clone();
        let store = self.inner.live.store().clone();
        let deleted = tokio::task::spawn_blocking(move || {
            store.transact(|tx| {
                for id in &ids {
                    tx.delete_approval(id)?;
                }
                Ok::<(), store::Error>(())
            })
        })
        .await;
        match deleted {
            Ok(Ok(_)) => {
                let mut index = self.index();
                for id in &doomed {
                    index.forget(id);
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot delete old approval requests"),
            Err(error) => tracing::warn!(%error, "cannot delete old approval requests"),
        }
    }

    /// Runs one transition as a store transaction on a blocking thread, durable on return.
    async fn transition<T: Send + 'static>(
        &self,
        build: impl FnOnce(&mut store::Tx<'_, '_>, &store::View) -> Result<T> + Send + 'static,
    ) -> Result<(u64, T)> {
        let live = self.inner.live.clone();
        let out = tokio::task::spawn_blocking(move || {
            let view = live.view()?;
            live.store().transact(|tx| build(tx, &view))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        if let Some(outbox) = &self.inner.outbox {
            outbox.committed();
        }
        Ok(out)
    }

    async fn commit(
        &self,
        build: impl FnOnce(&mut store::Tx<'_, '_>) -> Result<()> + Send + 'static,
    ) -> Result<u64> {
        let (revision, ()) = self.transition(move |tx, _| build(tx)).await?;
        Ok(revision)
    }

    /// Puts a committed request in the index, counts its transition and tells waiters.
    fn applied(&self, revision: u64, request: ApprovalRequest) -> Arc<ApprovalRequest> {
        let id = request.id.clone();
        let newer = {
            let mut index = self.index();
            let before = index.get(&id).map(|r| (r.state, r.step));
            if before.is_some_and(|b| b != (request.state, request.step)) {
                let stats = &self.inner.stats;
                match request.state {
                    RequestState::Pending => stats.count(Outcome::Escalated),
                    RequestState::Approved => stats.count(Outcome::Approved),
                    RequestState::Denied => stats.count(Outcome::Denied),
                    RequestState::Expired => stats.count(Outcome::Expired),
                    RequestState::Cancelled => stats.count(Outcome::Cancelled),
                }
                if matches!(request.state, RequestState::Approved | RequestState::Denied) {
                    stats.decided_after(request.updated_at.0 - request.created_at.0);
                }
            }
            index.apply(revision, request);
            index.get(&id)
        };
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
        self.inner.deadlines.notify_one();
        newer.unwrap_or_default()
    }

    /// Requests matching `filter`, newest first, after `after` (a page token: an id).
    pub fn list(
        &self,
        filter: &Filter,
        awaiting: Option<(&str, &store::View)>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<ApprovalRequest>>, bool) {
        let index = self.index();
        let mut rows: Vec<&Arc<ApprovalRequest>> = index
            .requests
            .values()
            .map(|(_, r)| r)
            .filter(|r| after.is_none_or(|after| r.id.as_str() < after))
            .filter(|r| filter.states.is_empty() || filter.states.contains(&r.state))
            .filter(|r| filter.user_id.as_ref().is_none_or(|u| *u == r.user_id))
            .filter(|r| filter.connector.as_ref().is_none_or(|c| *c == r.connector))
            .filter(|r| filter.created_after.is_none_or(|t| r.created_at >= t))
            .filter(|r| filter.created_before.is_none_or(|t| r.created_at < t))
            .filter(|r| awaiting.is_none_or(|(user, view)| eligible::check(view, r, user).is_ok()))
            .collect();
        rows.sort_unstable_by(|a, b| b.id.cmp(&a.id));
        let more = rows.len() > limit;
        (rows.into_iter().take(limit).cloned().collect(), more)
    }
}

/// How long an approval's grant lasts: a window's length, or for a `once` grant, until the
/// request would have expired (it must be used while the approval is fresh).
fn grant_length(flow: &ApprovalFlow) -> i64 {
    match flow.grant {
        GrantMode::Window { seconds } => secs_to_ms(seconds),
        GrantMode::Once => secs_to_ms(flow.request_ttl_secs),
    }
}

fn kind_action(kind: EventType) -> &'static str {
    match kind {
        EventType::Escalated => "approval.escalate",
        EventType::Expired => "approval.expire",
        _ => "approval.update",
    }
}

fn event<'a>(kind: EventType, request: &'a ApprovalRequest, actor: &'a str) -> Event<'a> {
    Event {
        kind,
        request,
        actor,
        at: request.updated_at,
    }
}

fn audit_event(request: &ApprovalRequest, action: &str, actor: &str, detail: &str) -> AuditEvent {
    AuditEvent {
        time: request.updated_at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target_kind: "approval_request".into(),
        target_id: request.id.clone(),
        outcome: "ok".into(),
        detail: detail.to_owned(),
        ..AuditEvent::default()
    }
}

/// A new request id: `apr_`, the creation time (12 hex digits of milliseconds, so ids sort by
/// age) and 8 random hex digits.
fn new_id(now: Timestamp) -> Result<String> {
    let random = pdp_service::secret::random_hex(4)?;
    Ok(format!("apr_{:012x}{random}", now.0.max(0)))
}

/// Sleeps until the next deadline (or a change that may bring an earlier one), applies due
/// deadlines, and repeats while the approvals are alive.
async fn deadline_loop(inner: std::sync::Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let approvals = Approvals { inner: strong };
        let next = approvals.apply_deadlines(clock::now()).await;
        drop(approvals);
        // Wake at the next deadline, on a change, and at least every minute (retention).
        let wait = next
            .map(|at| (at.0 - clock::now().0).clamp(0, 60_000))
            .unwrap_or(60_000);
        let wait = std::time::Duration::from_millis(u64::try_from(wait).unwrap_or(0));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

#[tonic::async_trait]
impl pdp_service::Approvals for Approvals {
    fn request(&self, id: &str) -> Option<Arc<ApprovalRequest>> {
        self.get(id)
    }

    async fn use_once(&self, id: &str, decision_id: &str) -> Result<bool, tonic::Status> {
        Approvals::use_once(self, id, decision_id)
            .await
            .map_err(tonic::Status::from)
    }

    fn pending(&self, call: &pdp_service::Call<'_>) -> Option<String> {
        Approvals::pending(self, call)
    }

    fn default_flow(&self) -> String {
        Approvals::default_flow(self)
    }
}
