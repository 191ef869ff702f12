//! The gRPC `DecisionService`.

use crate::record::{Record, Recorder};
use crate::{Approvals, Call, DecisionMetrics, Engine, Error, Freshness, Result, convert, trace};
use pb::decision_service_server::DecisionServiceServer;
use pdp::Snapshot;
use portcullis_proto::v1 as pb;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// The most checks one `BatchCheck` may carry unless told otherwise
/// ([`DecisionService::with_max_batch`]; `serve`'s `batch-max-checks`).
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// Answers `Check`, `BatchCheck` and `ListAllowedTools` from the engine's current snapshot.
#[derive(Debug, Clone)]
pub struct DecisionService {
    engine: Engine,
    ids: Arc<DecisionIds>,
    recorder: Option<Recorder>,
    freshness: Option<Freshness>,
    metrics: Option<Arc<DecisionMetrics>>,
    approvals: Option<Arc<dyn Approvals>>,
    max_batch: usize,
    check_bounds: convert::CheckBounds,
    json_max_depth: usize,
}

/// One check's answer, and what it still needs before it stands.
struct Answered {
    answer: pb::CheckResponse,
    record: Option<Record>,
    /// The answer is an Allow by a `once` grant, which this approval request must first give
    /// up ([`Approvals::use_once`]); if it cannot, the check is answered again without it.
    use_once: Option<String>,
}

/// Whether a check may use the grant its `approval_id` names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grants {
    Use,
    /// Its `once` grant was used meanwhile: decide as if the check carried none.
    Ignore,
}

impl DecisionService {
    pub fn new(engine: Engine) -> DecisionService {
        DecisionService {
            engine,
            ids: Arc::new(DecisionIds::new()),
            recorder: None,
            freshness: None,
            metrics: None,
            approvals: None,
            max_batch: DEFAULT_MAX_BATCH,
            check_bounds: convert::CheckBounds::default(),
            json_max_depth: crate::json_depth::DEFAULT_JSON_DEPTH,
        }
    }

    /// Refuses an AuthZEN body nesting deeper than `max` levels (`json-max-depth`; at most
    /// [`crate::json_depth::MAX_JSON_DEPTH`]).
    pub fn with_json_max_depth(mut self, max: usize) -> DecisionService {
        self.json_max_depth = max.clamp(1, crate::json_depth::MAX_JSON_DEPTH);
        self
    }

    /// The deepest nesting of an AuthZEN body.
    pub fn json_max_depth(&self) -> usize {
        self.json_max_depth
    }

    /// Refuses a check whose `attributes` or `arguments` are over `bounds` (Check's, each of a
    /// batch's and AuthZEN's).
    pub fn with_check_bounds(mut self, bounds: convert::CheckBounds) -> DecisionService {
        self.check_bounds = bounds;
        self
    }

    /// The bounds of a check's `attributes` and `arguments`.
    pub fn check_bounds(&self) -> &convert::CheckBounds {
        &self.check_bounds
    }

    /// Refuses a batch of more than `max` checks (at least one), `BatchCheck`'s and AuthZEN's.
    pub fn with_max_batch(mut self, max: usize) -> DecisionService {
        self.max_batch = max.max(1);
        self
    }

    /// The most checks one batch may carry.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Honours `approval_id` on checks with these approval requests, and points Require
    /// approval answers at their flow and pending request. Without, `approval_id` is ignored.
    pub fn with_approvals(mut self, approvals: Arc<dyn Approvals>) -> DecisionService {
        self.approvals = Some(approvals);
        self
    }

    /// Counts every answered check (each of a batch too) in `metrics` by decision and reason,
    /// and times every Check, from the handler's entry to its answer (any `min_revision` wait
    /// included).
    pub fn with_metrics(mut self, metrics: Arc<DecisionMetrics>) -> DecisionService {
        self.metrics = Some(metrics);
        self
    }

    /// Counts answered checks (and puts them on the trace span, when traces are on). Relaxed
    /// atomic adds into a fixed array: no allocation, no lock.
    fn count(&self, answers: &[pb::CheckResponse]) {
        trace::answers(answers);
        if let Some(metrics) = &self.metrics {
            for answer in answers {
                metrics.count(answer.decision, answer.reason);
            }
        }
    }

    async fn check_one(
        &self,
        check: pb::CheckRequest,
    ) -> Result<(pb::CheckResponse, Option<Record>)> {
        if self.stale() {
            return Ok((self.stale_answer(&check, "")?, None));
        }
        let snapshot = self.engine.snapshot_at_least(check.min_revision).await?;
        let answered = self.answer(&snapshot, &check, "", Grants::Use)?;
        self.settle(&snapshot, &check, "", answered).await
    }

    /// Uses the `once` grant an answer relies on; if it was used meanwhile (or the approvals
    /// are out of reach), answers again without it.
    async fn settle(
        &self,
        snapshot: &Snapshot,
        check: &pb::CheckRequest,
        path: &str,
        answered: Answered,
    ) -> Result<(pb::CheckResponse, Option<Record>)> {
        let (Some(id), Some(approvals)) = (&answered.use_once, &self.approvals) else {
            return Ok((answered.answer, answered.record));
        };
        match approvals.use_once(id, &answered.answer.decision_id).await {
            Ok(true) => Ok((answered.answer, answered.record)),
            Ok(false) => {
                let again = self.answer(snapshot, check, path, Grants::Ignore)?;
                Ok((again.answer, again.record))
            }
            Err(status) => {
                tracing::warn!(approval_id = %id, error = %status.message(), "cannot use an approval's once grant: answering without it");
                let again = self.answer(snapshot, check, path, Grants::Ignore)?;
                Ok((again.answer, again.record))
            }
        }
    }

    /// Fails closed while `freshness` says the snapshot is stale: every check is denied with
    /// `REASON_STALE_SNAPSHOT` (at once, whatever its `min_revision`) and no tool is listed.
    pub fn with_freshness(mut self, freshness: Freshness) -> DecisionService {
        self.freshness = Some(freshness);
        self
    }

    fn stale(&self) -> bool {
        self.freshness.as_ref().is_some_and(Freshness::is_stale)
    }

    /// The answer while stale: a deny that names the snapshot it would have come from.
    fn stale_answer(&self, check: &pb::CheckRequest, path: &str) -> Result<pb::CheckResponse> {
        let owned = convert::owned(check, path, &self.check_bounds)?;
        convert::request(
            check,
            &owned,
            pdp::Timestamp::default(),
            path,
            &self.check_bounds,
        )?;
        Ok(pb::CheckResponse {
            decision: pb::Decision::Deny.into(),
            reason: pb::Reason::StaleSnapshot.into(),
            revision: self.engine.revision(),
            decision_id: self.ids.next(),
            ..Default::default()
        })
    }

    /// Also hands every decision to `recorder` (without ever waiting for it).
    pub fn with_recorder(mut self, recorder: Recorder) -> DecisionService {
        self.recorder = Some(recorder);
        self
    }

    /// The tonic service, ready to add to a server.
    pub fn into_server(self) -> DecisionServiceServer<DecisionService> {
        DecisionServiceServer::new(self)
    }

    fn answer(
        &self,
        snapshot: &Snapshot,
        check: &pb::CheckRequest,
        path: &str,
        grants: Grants,
    ) -> Result<Answered> {
        let owned = convert::owned(check, path, &self.check_bounds)?;
        let now = pdp::Timestamp::now();
        let mut request = convert::request(check, &owned, now, path, &self.check_bounds)?;
        let approval = match (&self.approvals, grants) {
            (Some(approvals), Grants::Use) if !check.approval_id.is_empty() => {
                approvals.request(&check.approval_id)
            }
            _ => None,
        };
        request.context.grant = approval.as_deref().and_then(|a| a.grant(now));
        let (decision, explanation) = if check.explain {
            let (decision, matches) = snapshot.explain(&request);
            (
                decision,
                matches.iter().map(convert::policy_match).collect(),
            )
        } else {
            (snapshot.decide(&request), Vec::new())
        };
        let decision_id = self.ids.next();
        // Handed to the recorder by the handler once it knows the latency (`record`).
        let record = self.recorder.as_ref().map(|_| Record {
            time_ms: now.0,
            decision_id: decision_id.clone(),
            user: check.user.clone(),
            user_id: decision.user_id.map(str::to_owned),
            agent: check.agent.clone(),
            connector: check.connector.clone(),
            tool: check.tool.clone(),
            action: decision.action,
            reason: decision.reason,
            policy_id: decision.policy_id.map(str::to_owned),
            approval_id: (!check.approval_id.is_empty()).then(|| check.approval_id.clone()),
            revision: snapshot.revision(),
            latency: Duration::ZERO,
        });
        let (step_up, challenge) = match decision.step_up {
            Some(requirement) if decision.action == pdp::Action::StepUp => {
                let (wire, challenge) = convert::step_up(requirement);
                (Some(wire), challenge)
            }
            _ if decision.action == pdp::Action::StepUp => {
                let (_, challenge) = convert::step_up(&pdp::StepUp::default());
                (None, challenge)
            }
            _ => (None, String::new()),
        };
        let use_once = approval
            .as_deref()
            .filter(|a| {
                decision.reason == pdp::Reason::Approved && a.flow.grant == pdp::GrantMode::Once
            })
            .map(|a| a.id.clone());
        let (approval_flow_id, arguments_digest, pending_approval_id) =
            if decision.action == pdp::Action::RequireApproval {
                let digest = pdp::arguments_digest(owned.arguments());
                let flow = match (decision.approval_flow, &self.approvals) {
                    (Some(flow), _) => flow.to_owned(),
                    (None, Some(approvals)) => approvals.default_flow(),
                    (None, None) => pdp::approval::BUILTIN_FLOW_ID.to_owned(),
                };
                let pending = match (&self.approvals, decision.user_id) {
                    (Some(approvals), Some(user_id)) => approvals.pending(&Call {
                        user_id,
                        agent: snapshot.agent_name(&check.agent),
                        connector: &check.connector,
                        tool: &check.tool,
                        arguments_digest: &digest,
                    }),
                    _ => None,
                };
                (flow, digest, pending.unwrap_or_default())
            } else {
                Default::default()
            };
        let answer = pb::CheckResponse {
            decision: convert::action(decision.action).into(),
            reason: convert::reason(decision.reason).into(),
            policy_id: decision.policy_id.unwrap_or_default().to_owned(),
            revision: snapshot.revision(),
            decision_id,
            explanation,
            step_up,
            challenge,
            approval_flow_id,
            arguments_digest,
            pending_approval_id,
        };
        Ok(Answered {
            answer,
            record,
            use_once,
        })
    }

    /// Hands `record` to the recorder (without ever waiting for it), timed at `latency`.
    fn record(&self, record: Option<Record>, latency: Option<Duration>) {
        if let (Some(recorder), Some(mut record)) = (&self.recorder, record) {
            record.latency = latency.unwrap_or_default();
            recorder.record(record);
        }
    }
}

#[tonic::async_trait]
impl pb::decision_service_server::DecisionService for DecisionService {
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        trace::check(request.get_ref());
        // Metrics cost the Check path two clock reads (vDSO on Linux, no syscall) and two or three
        // relaxed atomic adds: nothing allocates or locks for them. The decision record's
        // latency is the same interval, read once.
        let started = (self.metrics.is_some() || self.recorder.is_some()).then(Instant::now);
        let answer = self.check_one(request.into_inner()).await;
        let elapsed = started.map(|started| started.elapsed());
        if let (Some(metrics), Some(elapsed)) = (&self.metrics, elapsed) {
            metrics.observe_check(elapsed);
        }
        let (answer, record) = answer?;
        self.record(record, elapsed);
        self.count(std::slice::from_ref(&answer));
        Ok(Response::new(answer))
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        let started = self.recorder.is_some().then(Instant::now);
        let pb::BatchCheckRequest { checks } = request.into_inner();
        trace::batch(&checks);
        if checks.len() > self.max_batch {
            return Err(Error::invalid(
                "checks",
                format!(
                    "{} checks, the limit is {} (`batch-max-checks`)",
                    checks.len(),
                    self.max_batch
                ),
            )
            .into());
        }
        if self.stale() {
            let results = checks
                .iter()
                .enumerate()
                .map(|(i, check)| self.stale_answer(check, &format!("checks[{i}].")))
                .collect::<Result<Vec<_>>>()?;
            self.count(&results);
            return Ok(Response::new(pb::BatchCheckResponse { results }));
        }
        // One snapshot answers the whole batch, so its answers are mutually consistent.
        let min_revision = checks.iter().map(|c| c.min_revision).max().unwrap_or(0);
        let snapshot = self.engine.snapshot_at_least(min_revision).await?;
        let answered = checks
            .iter()
            .enumerate()
            .map(|(i, check)| self.answer(&snapshot, check, &format!("checks[{i}]."), Grants::Use))
            .collect::<Result<Vec<_>>>()?;
        // `once` grants are used in the batch's order: of two checks with the same one, the
        // first is allowed.
        let mut results = Vec::with_capacity(answered.len());
        let mut records = Vec::with_capacity(answered.len());
        for (i, (check, answered)) in checks.iter().zip(answered).enumerate() {
            let (answer, record) = self
                .settle(&snapshot, check, &format!("checks[{i}]."), answered)
                .await?;
            results.push(answer);
            records.push(record);
        }
        let elapsed = started.map(|started| started.elapsed());
        for record in records {
            self.record(record, elapsed);
        }
        self.count(&results);
        Ok(Response::new(pb::BatchCheckResponse { results }))
    }

    async fn list_allowed_tools(
        &self,
        request: Request<pb::ListAllowedToolsRequest>,
    ) -> Result<Response<pb::ListAllowedToolsResponse>, Status> {
        let pb::ListAllowedToolsRequest {
            user,
            agent,
            connector,
            attributes,
            min_revision,
        } = request.into_inner();
        convert::required(&user, "", "user")?;
        convert::bounded(&agent, "", "agent")?;
        convert::bounded(&connector, "", "connector")?;
        if self.stale() {
            return Ok(Response::new(pb::ListAllowedToolsResponse {
                tools: Vec::new(),
                revision: self.engine.revision(),
            }));
        }
        let snapshot = self.engine.snapshot_at_least(min_revision).await?;
        let connector = (!connector.is_empty()).then_some(connector.as_str());
        let tools = snapshot
            .allowed_tools(&user, &agent, connector, &attributes, pdp::Timestamp::now())
            .iter()
            .map(convert::allowed_tool)
            .collect();
        Ok(Response::new(pb::ListAllowedToolsResponse {
            tools,
            revision: snapshot.revision(),
        }))
    }
}

/// Decision ids: unique per process start (a random prefix) and per answer (a counter), and
/// cheap enough for the hot path.
#[derive(Debug)]
struct DecisionIds {
    prefix: u64,
    counter: AtomicU64,
}

impl DecisionIds {
    fn new() -> DecisionIds {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is seeded from the OS; hashing the start time through it gives a
        // prefix that differs across restarts and across replicas.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        DecisionIds {
            prefix: hasher.finish(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{n:016x}", self.prefix)
    }
}
