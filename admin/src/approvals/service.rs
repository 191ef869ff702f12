//! The gRPC `ApprovalService`: gateways ask and wait, people approve or deny.
//!
//! Gateways authenticate with the decision token (when the server has one; without one,
//! asking for approval is as open as Check is) or an admin token; people with their own admin
//! token, whose user is the approver (no admin role is needed to approve what one is named
//! for; listing every request needs one).

use super::eligible;
use super::requests::{Approvals, Filter, NewRequest, Verdict};
use crate::auth::{self, Caller};
use crate::{Error, Result, convert, page};
use pb::approval_service_server::ApprovalServiceServer;
use pdp::{ApprovalRequest, RequestState};
use pdp_service::RequireToken;
use portcullis_proto::v1 as pb;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The longest a Get may wait for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Serves approval requests.
#[derive(Debug, Clone)]
pub struct ApprovalService {
    approvals: Approvals,
    gateway_token: Option<RequireToken>,
    /// The bounds Check applies to `attributes` and `arguments` (the `check-max-…` settings):
    /// a request is for a call Check answered, so it takes what Check took.
    bounds: pdp_service::CheckBounds,
}

/// Who is calling.
enum Who {
    /// A gateway (the decision token, or no token where decisions need none).
    Gateway,
    Person(Caller),
}

impl ApprovalService {
    /// `gateway_token`: the decision token, if decisions need one.
    pub fn new(approvals: Approvals, gateway_token: Option<RequireToken>) -> ApprovalService {
        ApprovalService {
            approvals,
            gateway_token,
            bounds: pdp_service::CheckBounds::default(),
        }
    }

    /// Bounds requests' `attributes` and `arguments` as Check does (serve's `check-max-…`
    /// settings); the defaults otherwise.
    pub fn with_check_bounds(mut self, bounds: pdp_service::CheckBounds) -> ApprovalService {
        self.bounds = bounds;
        self
    }

    pub fn into_server(self) -> ApprovalServiceServer<ApprovalService> {
        ApprovalServiceServer::new(self)
    }

    fn gateway_or_person<T>(&self, request: &Request<T>, method: &str) -> Result<Who> {
        if request.extensions().get::<auth::ConsoleSession>().is_some() {
            return Ok(Who::Person(self.person(request, method)?));
        }
        let presented = auth::bearer(request.metadata());
        match (&self.gateway_token, presented) {
            (Some(token), Some(secret)) if token.matches(secret) => Ok(Who::Gateway),
            (None, None) => Ok(Who::Gateway),
            (_, Some(_)) => Ok(Who::Person(self.person(request, method)?)),
            (Some(_), None) => Err(Error::Unauthenticated(
                "missing credentials: send `authorization: Bearer <token>` (the decision token, or an admin token)".into(),
            )),
        }
    }

    fn person<T>(&self, request: &Request<T>, method: &str) -> Result<Caller> {
        auth::authenticate(self.approvals.live(), request, method)
    }

    fn found(&self, id: &str) -> Result<Arc<ApprovalRequest>> {
        crate::text::required("id", id)?;
        crate::text::bounded("id", id)?;
        self.approvals
            .get(id)
            .ok_or_else(|| Error::not_found("approval request", id))
    }

    fn show(&self, request: &ApprovalRequest) -> Result<pb::ApprovalRequest> {
        let view = self.approvals.live().view()?;
        Ok(wire(&view, request))
    }
}

/// A request as the API shows it, with who is awaited read from `view`.
pub(crate) fn wire(view: &store::View, r: &ApprovalRequest) -> pb::ApprovalRequest {
    let email = |id: &str| {
        view.user(id)
            .map(|u| u.email().to_owned())
            .unwrap_or_default()
    };
    let decision = |a: &pdp::Approval| pb::ApprovalDecision {
        user_id: a.user_id.clone(),
        user_email: email(&a.user_id),
        step: a.step,
        comment: a.comment.clone(),
        at: Some(convert::timestamp(a.at)),
    };
    let pending = r.state == RequestState::Pending;
    pb::ApprovalRequest {
        id: r.id.clone(),
        user_id: r.user_id.clone(),
        user_email: email(&r.user_id),
        agent: r.agent.clone(),
        connector: r.connector.clone(),
        tool: r.tool.clone(),
        arguments: Some(prost_types::Struct {
            fields: r
                .arguments
                .iter()
                .map(|(k, v)| (k.clone(), pdp_service::json_to_value(v)))
                .collect(),
        }),
        arguments_digest: r.arguments_digest.clone(),
        attributes: r.attributes.clone().into_iter().collect(),
        justification: r.justification.clone(),
        policy_id: r.policy_id.clone(),
        flow: Some(super::flows::flow(&r.flow)),
        state: state(r.state).into(),
        step: r.step,
        approvals: r.approvals.iter().map(decision).collect(),
        denial: r.denial.as_ref().map(decision),
        awaiting: eligible::awaiting(view, r),
        approvals_needed: if pending { eligible::needed(r) } else { 0 },
        created_at: Some(convert::timestamp(r.created_at)),
        updated_at: Some(convert::timestamp(r.updated_at)),
        expires_at: pending.then(|| convert::timestamp(r.expires_at)),
        step_deadline: super::requests::step_deadline(r)
            .filter(|_| pending)
            .map(convert::timestamp),
        approved_until: r.approved_until.map(convert::timestamp),
        used_by_decision: r.used_by.clone().unwrap_or_default(),
        idempotency_key: r.idempotency_key.clone().unwrap_or_default(),
    }
}

pub(crate) fn state(s: RequestState) -> pb::ApprovalState {
    match s {
        RequestState::Pending => pb::ApprovalState::Pending,
        RequestState::Approved => pb::ApprovalState::Approved,
        RequestState::Denied => pb::ApprovalState::Denied,
        RequestState::Expired => pb::ApprovalState::Expired,
        RequestState::Cancelled => pb::ApprovalState::Cancelled,
    }
}

fn state_from(field: &str, value: i32) -> Result<RequestState> {
    match pb::ApprovalState::try_from(value) {
        Ok(pb::ApprovalState::Pending) => Ok(RequestState::Pending),
        Ok(pb::ApprovalState::Approved) => Ok(RequestState::Approved),
        Ok(pb::ApprovalState::Denied) => Ok(RequestState::Denied),
        Ok(pb::ApprovalState::Expired) => Ok(RequestState::Expired),
        Ok(pb::ApprovalState::Cancelled) => Ok(RequestState::Cancelled),
        _ => Err(Error::invalid(field, format!("{value} is not a state"))),
    }
}

fn comment(field: &str, comment: &str) -> Result<()> {
    if comment.len() > super::requests::MAX_COMMENT {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes long, the limit is {}",
                comment.len(),
                super::requests::MAX_COMMENT
            ),
        ));
    }
    Ok(())
}

/// Checks a gateway's request for approval and converts it.
fn new_request(
    r: pb::CreateApprovalRequestRequest,
    bounds: &pdp_service::CheckBounds,
) -> Result<NewRequest> {
    let pb::CreateApprovalRequestRequest {
        user,
        agent,
        connector,
        tool,
        arguments,
        attributes,
        authentication,
        justification,
        idempotency_key,
    } = r;
    crate::text::required("user", &user)?;
    pdp_service::bounded(&user, "", "user")?;
    pdp_service::bounded(&agent, "", "agent")?;
    crate::text::required("connector", &connector)?;
    pdp_service::bounded(&connector, "", "connector")?;
    crate::text::required("tool", &tool)?;
    pdp_service::bounded(&tool, "", "tool")?;
    if justification.len() > super::requests::MAX_JUSTIFICATION {
        return Err(Error::invalid(
            "justification",
            format!(
                "is {} bytes long, the limit is {}",
                justification.len(),
                super::requests::MAX_JUSTIFICATION
            ),
        ));
    }
    if !idempotency_key.is_empty()
        && (idempotency_key.len() > super::requests::MAX_IDEMPOTENCY_KEY
            || !idempotency_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)))
    {
        return Err(Error::invalid(
            "idempotency_key",
            format!(
                "must be 1 to {} characters from A-Z a-z 0-9 . _ : -",
                super::requests::MAX_IDEMPOTENCY_KEY
            ),
        ));
    }
    // Bounded as Check bounds them: the request is for a call Check answered.
    bounds.attributes(&attributes, "")?;
    if let Some(arguments) = &arguments {
        bounds.arguments(arguments, "")?;
    }
    let arguments = arguments
        .as_ref()
        .map(pdp_service::struct_to_json)
        .unwrap_or_default();
    let authentication = authentication
        .as_ref()
        .map(|a| pdp_service::authentication(a, ""))
        .transpose()?;
    Ok(NewRequest {
        user,
        agent,
        connector,
        tool,
        arguments,
        attributes: attributes.into_iter().collect(),
        authentication,
        justification,
        idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
    })
}

type WatchStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<pb::ApprovalRequest, Status>> + Send>>;

#[tonic::async_trait]
impl pb::approval_service_server::ApprovalService for ApprovalService {
    async fn create_approval_request(
        &self,
        request: Request<pb::CreateApprovalRequestRequest>,
    ) -> Result<Response<pb::CreateApprovalRequestResponse>, Status> {
        self.gateway_or_person(&request, "CreateApprovalRequest")?;
        let new = new_request(request.into_inner(), &self.bounds)?;
        let (created, fresh) = self.approvals.create(new).await?;
        Ok(Response::new(pb::CreateApprovalRequestResponse {
            request: Some(self.show(&created)?),
            created: fresh,
        }))
    }

    async fn get_approval_request(
        &self,
        request: Request<pb::GetApprovalRequestRequest>,
    ) -> Result<Response<pb::GetApprovalRequestResponse>, Status> {
        self.gateway_or_person(&request, "GetApprovalRequest")?;
        let pb::GetApprovalRequestRequest {
            id,
            wait,
            known_state,
            known_step,
        } = request.into_inner();
        let mut changes = self.approvals.changes();
        let current = self.found(&id)?;
        let wait = match wait {
            None => Duration::ZERO,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(Error::invalid("wait", "must not be negative").into());
            }
            Some(d) => Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                .saturating_add(Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))),
        };
        if wait > MAX_WAIT {
            return Err(Error::invalid("wait", "must be at most 60 s").into());
        }
        let (known_state, known_step) = if known_state == 0 {
            (current.state, current.step)
        } else {
            (state_from("known_state", known_state)?, known_step)
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut latest = current;
        while latest.state == known_state && latest.step == known_step && !latest.state.is_final() {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => latest = self.found(&id)?,
                // The time is up, or the approvals are shutting down: answer what we have.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(Response::new(pb::GetApprovalRequestResponse {
            request: Some(self.show(&latest)?),
        }))
    }

    type WatchApprovalRequestStream = WatchStream;

    async fn watch_approval_request(
        &self,
        request: Request<pb::WatchApprovalRequestRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.gateway_or_person(&request, "WatchApprovalRequest")?;
        let id = request.into_inner().id;
        let first = self.found(&id)?;
        let service = self.clone();
        let changes = self.approvals.changes();
        // State: what was last sent (None before the first), and whether the stream is done.
        let stream = futures_util::stream::unfold(
            (
                service,
                changes,
                id,
                None::<(RequestState, u32, usize)>,
                false,
                Some(first),
            ),
            |(service, mut changes, id, sent, done, first)| async move {
                if done {
                    return None;
                }
                let mut next = first;
                loop {
                    if let Some(request) = next.take() {
                        let seen = (request.state, request.step, request.approvals.len());
                        if sent != Some(seen) {
                            // Approved is the end of waiting too: the gateway retries its call.
                            let end = request.state != RequestState::Pending;
                            let item = service.show(&request).map_err(Status::from);
                            return Some((item, (service, changes, id, Some(seen), end, None)));
                        }
                    }
                    if changes.changed().await.is_err() {
                        return None;
                    }
                    match service.approvals.get(&id) {
                        Some(request) => next = Some(request),
                        None => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream) as WatchStream))
    }

    async fn list_approval_requests(
        &self,
        request: Request<pb::ListApprovalRequestsRequest>,
    ) -> Result<Response<pb::ListApprovalRequestsResponse>, Status> {
        let caller = self.person(&request, "ListApprovalRequests")?;
        let pb::ListApprovalRequestsRequest {
            all,
            states,
            user,
            connector,
            created_after,
            created_before,
            page_size,
            page_token,
        } = request.into_inner();
        if all && caller.roles.is_empty() {
            return Err(Status::from(auth::refused(
                self.approvals.live(),
                &caller.user_id,
                Some(&caller.token_id),
                "ListApprovalRequests",
                Error::PermissionDenied(format!(
                    "listing every approval request needs an admin role; user `{}` holds none",
                    caller.user_id
                )),
            )));
        }
        let limit = page::size("page_size", page_size)?;
        let view = self.approvals.live().view().map_err(Error::from)?;
        let mut filter = Filter {
            states: states
                .iter()
                .enumerate()
                .map(|(i, &s)| state_from(&format!("states[{i}]"), s))
                .collect::<Result<_>>()?,
            connector: (!connector.is_empty()).then_some(connector.clone()),
            created_after: created_after
                .as_ref()
                .map(|t| convert::from_timestamp("created_after", t))
                .transpose()?,
            created_before: created_before
                .as_ref()
                .map(|t| convert::from_timestamp("created_before", t))
                .transpose()?,
            ..Filter::default()
        };
        if filter.states.is_empty() {
            filter.states = vec![RequestState::Pending];
        }
        if !user.is_empty() {
            pdp_service::bounded(&user, "", "user")?;
            match view.resolve_user(&user) {
                pdp::identity::Resolved::User(found) => filter.user_id = Some(found.id.clone()),
                pdp::identity::Resolved::Ambiguous => {
                    return Err(Error::FailedPrecondition(format!(
                        "user `{user}` names several users: use an id"
                    ))
                    .into());
                }
                pdp::identity::Resolved::Unknown => {
                    return Err(Error::not_found("user", user).into());
                }
            }
        }
        let query = format!(
            "{all}|{states:?}|{user}|{connector}|{created_after:?}|{created_before:?}|{}",
            caller.user_id
        );
        let after: Option<String> = page::decode("page_token", &page_token, &query)?;
        let awaiting = (!all).then_some((caller.user_id.as_str(), &*view));
        let (rows, more) = self
            .approvals
            .list(&filter, awaiting, after.as_deref(), limit);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode(&query, &last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListApprovalRequestsResponse {
            requests: rows.iter().map(|r| wire(&view, r)).collect(),
            next_page_token,
        }))
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let caller = self.person(&request, "Approve")?;
        let pb::ApproveRequest { id, comment: text } = request.into_inner();
        self.found(&id)?;
        comment("comment", &text)?;
        let decided = self
            .approvals
            .decide(&id, &caller, Verdict::Approve, text)
            .await?;
        Ok(Response::new(pb::ApproveResponse {
            request: Some(self.show(&decided)?),
        }))
    }

    async fn deny(
        &self,
        request: Request<pb::DenyRequest>,
    ) -> Result<Response<pb::DenyResponse>, Status> {
        let caller = self.person(&request, "Deny")?;
        let pb::DenyRequest { id, comment: text } = request.into_inner();
        self.found(&id)?;
        comment("comment", &text)?;
        let decided = self
            .approvals
            .decide(&id, &caller, Verdict::Deny, text)
            .await?;
        Ok(Response::new(pb::DenyResponse {
            request: Some(self.show(&decided)?),
        }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let who = self.gateway_or_person(&request, "Cancel")?;
        let pb::CancelRequest { id, comment: text } = request.into_inner();
        let current = self.found(&id)?;
        comment("comment", &text)?;
        let actor = match who {
            Who::Gateway => "gateway".to_owned(),
            Who::Person(caller) => {
                if !caller.is_admin() && caller.user_id != current.user_id {
                    return Err(Status::from(auth::refused(
                        self.approvals.live(),
                        &caller.user_id,
                        Some(&caller.token_id),
                        "Cancel",
                        Error::PermissionDenied(format!(
                            "only the gateway, the requester or an Admin may cancel approval request `{id}`"
                        )),
                    )));
                }
                caller.user_id
            }
        };
        let cancelled = self.approvals.cancel(&id, actor, text).await?;
        Ok(Response::new(pb::CancelResponse {
            request: Some(self.show(&cancelled)?),
        }))
    }
}
