//! Approval flows over the admin API: the `ApprovalFlowService` (flows and the default flow),
//! the checks a flow must pass ([`check_flow`]), and flows between the model and the wire.
//!
//! Flows are records outside the model: they never enter a snapshot, so every read goes to the
//! store. The built-in flow ([`pdp::BUILTIN_FLOW_ID`]) is listed and gettable but never stored,
//! so it cannot be created, changed or deleted.

use crate::auth::{self, Caller};
use crate::convert::timestamp;
use crate::{Error, Result, audit, clock, users};
use live::Live;
use pb::approval_flow_service_server::ApprovalFlowServiceServer;
use pdp::approval::BUILTIN_FLOW_ID;
use pdp::identity::Resolved;
use pdp::{ApprovalFlow, ApprovalStep, Approver, GrantMode, Role};
use portcullis_proto::v1 as pb;
use std::collections::HashSet;
use store::{Tx, View};
use tonic::{Request, Response, Status};

/// Longest flow name, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest flow description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most steps one flow may have.
pub const MAX_STEPS: usize = 10;
/// Most approvers one step may list.
pub const MAX_APPROVERS: usize = 100;
/// Longest request TTL, step timeout or grant window: 30 days, in seconds.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 60 * 60;
/// Most flows the store holds: every list reads them all.
pub const MAX_FLOWS: usize = 1000;
/// Most policies a refused delete names.
const NAMED_POLICIES: usize = 10;

const READ: bool = false;
const WRITE: bool = true;

/// Checks a flow as it would be stored, against `view`, and returns it with every user
/// approver resolved to the user's id. Errors name the wire field at fault (`flow.name`,
/// `flow.steps[1].approvers[0].user_id`, …): INVALID_ARGUMENT for a malformed flow, NOT_FOUND
/// for a user or group that does not exist, FAILED_PRECONDITION for an ambiguous user
/// reference. Shared by the admin API and anyone else writing flows.
pub fn check_flow(view: &View, flow: &ApprovalFlow) -> Result<ApprovalFlow> {
    let ApprovalFlow {
        id: _,
        name,
        description,
        steps,
        request_ttl_secs,
        grant,
        any_arguments: _,
        created_at: _,
        updated_at: _,
    } = flow;
    if name.trim().is_empty() {
        return Err(Error::invalid("flow.name", "must not be empty"));
    }
    if name.len() > MAX_NAME {
        return Err(Error::invalid(
            "flow.name",
            format!("{} bytes, the limit is {MAX_NAME}", name.len()),
        ));
    }
    if description.len() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "flow.description",
            format!(
                "{} bytes, the limit is {MAX_DESCRIPTION}",
                description.len()
            ),
        ));
    }
    if steps.is_empty() {
        return Err(Error::invalid(
            "flow.steps",
            "a flow needs at least one step",
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(Error::invalid(
            "flow.steps",
            format!("{} steps, the limit is {MAX_STEPS}", steps.len()),
        ));
    }
    check_secs("flow.request_ttl", *request_ttl_secs)?;
    if let GrantMode::Window { seconds } = grant {
        check_secs("flow.window", *seconds)?;
    }
    let mut out = flow.clone();
    for (i, step) in steps.iter().enumerate() {
        out.steps[i] = check_step(view, i, step)?;
    }
    Ok(out)
}

/// A duration of a flow: at least a second, at most [`MAX_DURATION_SECS`].
fn check_secs(field: &str, secs: u64) -> Result<()> {
    if secs == 0 {
        return Err(Error::invalid(field, "must be positive"));
    }
    if secs > MAX_DURATION_SECS {
        return Err(Error::invalid(
            field,
            format!("{secs}s, the limit is 30 days ({MAX_DURATION_SECS}s)"),
        ));
    }
    Ok(())
}

fn check_step(view: &View, i: usize, step: &ApprovalStep) -> Result<ApprovalStep> {
    let ApprovalStep {
        approvers,
        min_approvals,
        timeout_secs,
    } = step;
    let field = format!("flow.steps[{i}]");
    if approvers.is_empty() {
        return Err(Error::invalid(
            format!("{field}.approvers"),
            "a step needs at least one approver",
        ));
    }
    if approvers.len() > MAX_APPROVERS {
        return Err(Error::invalid(
            format!("{field}.approvers"),
            format!(
                "{} approvers, the limit is {MAX_APPROVERS}",
                approvers.len()
            ),
        ));
    }
    if let Some(timeout) = timeout_secs {
        check_secs(&format!("{field}.timeout"), *timeout)?;
    }
    let mut resolved = Vec::with_capacity(approvers.len());
    for (j, approver) in approvers.iter().enumerate() {
        let at = format!("{field}.approvers[{j}]");
        let approver = match approver {
            Approver::User(reference) => {
                Approver::User(resolve_user(view, &format!("{at}.user_id"), reference)?)
            }
            Approver::Group(id) => {
                if view.group(id).is_none() {
                    return Err(Error::NotFoundAt {
                        field: format!("{at}.group_id"),
                        kind: "group",
                        id: id.clone(),
                    });
                }
                Approver::Group(id.clone())
            }
            Approver::Manager => Approver::Manager,
            Approver::Admins => Approver::Admins,
        };
        if resolved.contains(&approver) {
            return Err(Error::invalid(at, "this approver is listed twice"));
        }
        resolved.push(approver);
    }
    if *min_approvals == 0 {
        return Err(Error::invalid(
            format!("{field}.min_approvals"),
            "must be at least 1",
        ));
    }
    let possible = possible_approvers(view, &resolved, *min_approvals as usize);
    if possible < *min_approvals as usize {
        return Err(Error::invalid(
            format!("{field}.min_approvals"),
            format!(
                "{min_approvals} approvals needed, but the step's approvers are at most \
                 {possible} people"
            ),
        ));
    }
    Ok(ApprovalStep {
        approvers: resolved,
        min_approvals: *min_approvals,
        timeout_secs: *timeout_secs,
    })
}

/// How many distinct people could approve at a step (counting only up to `enough`): listed
/// users, members of listed groups and of groups holding the Admin role, and one for the
/// requester's manager (who may be one of the others: an approximation that never refuses a
/// step that could be satisfied).
fn possible_approvers(view: &View, approvers: &[Approver], enough: usize) -> usize {
    let manager = usize::from(approvers.contains(&Approver::Manager));
    let mut people: HashSet<&str> = HashSet::new();
    let mut groups: Vec<&str> = Vec::new();
    for approver in approvers {
        match approver {
            Approver::User(id) => {
                people.insert(id);
            }
            Approver::Group(id) => groups.push(id),
            Approver::Admins => groups.extend(
                view.groups()
                    .filter(|g| g.group.roles.contains(&Role::Admin))
                    .map(|g| g.group.id.as_str()),
            ),
            Approver::Manager => {}
        }
    }
    for group in groups {
        for (user, _) in view.members_of(group) {
            if people.len() + manager >= enough {
                return people.len() + manager;
            }
            people.insert(user);
        }
    }
    people.len() + manager
}

fn resolve_user(view: &View, field: &str, reference: &str) -> Result<String> {
    match view.resolve_user(reference) {
        Resolved::User(user) => Ok(user.id.clone()),
        Resolved::Unknown => Err(Error::NotFoundAt {
            field: field.to_owned(),
            kind: "user",
            id: reference.to_owned(),
        }),
        // The same message (and the same users named) as every other user reference.
        Resolved::Ambiguous => users::resolve(view, field, reference).map(|u| u.id.clone()),
    }
}

/// Checks, in the transaction that writes `flow`, that the users and groups it names still
/// exist (the check against the view ran before the write).
fn check_named(tx: &Tx<'_, '_>, flow: &ApprovalFlow) -> Result<()> {
    for (i, step) in flow.steps.iter().enumerate() {
        for (j, approver) in step.approvers.iter().enumerate() {
            let at = format!("flow.steps[{i}].approvers[{j}]");
            match approver {
                Approver::User(id) if tx.user(id)?.is_none() => {
                    return Err(Error::NotFoundAt {
                        field: format!("{at}.user_id"),
                        kind: "user",
                        id: id.clone(),
                    });
                }
                Approver::Group(id) if tx.group(id)?.is_none() => {
                    return Err(Error::NotFoundAt {
                        field: format!("{at}.group_id"),
                        kind: "group",
                        id: id.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether a flow id names a flow, in the transaction: a stored one or the built-in one. What
/// policies naming a flow are checked with.
pub(crate) fn exists(tx: &Tx<'_, '_>, id: &str) -> Result<bool> {
    Ok(id == BUILTIN_FLOW_ID || tx.flow(id)?.is_some())
}

// ---- Between the model and the wire ----

fn duration(secs: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A wire duration in whole seconds (ranges are [`check_flow`]'s to check).
fn secs_from(field: &str, d: prost_types::Duration) -> Result<u64> {
    let d =
        std::time::Duration::try_from(d).map_err(|_| Error::invalid(field, "must be positive"))?;
    if d.subsec_nanos() != 0 {
        return Err(Error::invalid(field, "must be whole seconds"));
    }
    Ok(d.as_secs())
}

/// A flow as the wire shows it.
pub fn flow(f: &ApprovalFlow) -> pb::ApprovalFlow {
    let (grant_mode, window) = match f.grant {
        GrantMode::Once => (pb::GrantMode::Once, None),
        GrantMode::Window { seconds } => (pb::GrantMode::Window, Some(duration(seconds))),
    };
    pb::ApprovalFlow {
        id: f.id.clone(),
        name: f.name.clone(),
        description: f.description.clone(),
        steps: f
            .steps
            .iter()
            .map(|s| pb::ApprovalStep {
                approvers: s.approvers.iter().map(approver).collect(),
                min_approvals: s.min_approvals,
                timeout: s.timeout_secs.map(duration),
            })
            .collect(),
        request_ttl: Some(duration(f.request_ttl_secs)),
        grant_mode: grant_mode.into(),
        window,
        any_arguments: f.any_arguments,
        created_at: Some(timestamp(f.created_at)),
        updated_at: Some(timestamp(f.updated_at)),
    }
}

fn approver(a: &Approver) -> pb::Approver {
    use pb::approver::Approver as A;
    pb::Approver {
        approver: Some(match a {
            Approver::User(id) => A::UserId(id.clone()),
            Approver::Group(id) => A::GroupId(id.clone()),
            Approver::Manager => A::Manager(true),
            Approver::Admins => A::Admins(true),
        }),
    }
}

/// A wire flow as the model holds it, unchecked but for its shape: `id`, `created_at` and
/// `updated_at` are not taken from the wire; an absent TTL is the default (24 h); the grant
/// mode and the window agree.
pub fn flow_from(wire: pb::ApprovalFlow) -> Result<ApprovalFlow> {
    let pb::ApprovalFlow {
        id: _,
        name,
        description,
        steps,
        request_ttl,
        grant_mode,
        window,
        any_arguments,
        created_at: _,
        updated_at: _,
    } = wire;
    // Bounded before converting, so a huge list costs nothing.
    if steps.len() > MAX_STEPS {
        return Err(Error::invalid(
            "flow.steps",
            format!("{} steps, the limit is {MAX_STEPS}", steps.len()),
        ));
    }
    let grant = match (pb::GrantMode::try_from(grant_mode), window) {
        (Ok(pb::GrantMode::Unspecified | pb::GrantMode::Once), None) => GrantMode::Once,
        (Ok(pb::GrantMode::Window), Some(window)) => GrantMode::Window {
            seconds: secs_from("flow.window", window)?,
        },
        (Ok(pb::GrantMode::Window), None) => {
            return Err(Error::invalid(
                "flow.window",
                "GRANT_MODE_WINDOW needs a window",
            ));
        }
        (Ok(_), Some(_)) => {
            return Err(Error::invalid(
                "flow.window",
                "only a GRANT_MODE_WINDOW flow has a window",
            ));
        }
        (Err(_), _) => {
            return Err(Error::invalid(
                "flow.grant_mode",
                format!("unknown value {grant_mode}"),
            ));
        }
    };
    let mut model_steps = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let pb::ApprovalStep {
            approvers,
            min_approvals,
            timeout,
        } = step;
        if approvers.len() > MAX_APPROVERS {
            return Err(Error::invalid(
                format!("flow.steps[{i}].approvers"),
                format!(
                    "{} approvers, the limit is {MAX_APPROVERS}",
                    approvers.len()
                ),
            ));
        }
        let approvers = approvers
            .into_iter()
            .enumerate()
            .map(|(j, a)| approver_from(&format!("flow.steps[{i}].approvers[{j}]"), a))
            .collect::<Result<Vec<_>>>()?;
        model_steps.push(ApprovalStep {
            approvers,
            min_approvals,
            timeout_secs: timeout
                .map(|t| secs_from(&format!("flow.steps[{i}].timeout"), t))
                .transpose()?,
        });
    }
    Ok(ApprovalFlow {
        id: String::new(),
        name,
        description,
        steps: model_steps,
        request_ttl_secs: match request_ttl {
            Some(ttl) => secs_from("flow.request_ttl", ttl)?,
            None => pdp::approval::DEFAULT_REQUEST_TTL_SECS,
        },
        grant,
        any_arguments,
        ..ApprovalFlow::default()
    })
}

fn approver_from(field: &str, wire: pb::Approver) -> Result<Approver> {
    use pb::approver::Approver as A;
    match wire.approver {
        Some(A::UserId(id)) => {
            if id.trim().is_empty() {
                return Err(Error::invalid(
                    format!("{field}.user_id"),
                    "must not be empty",
                ));
            }
            crate::text::bounded(&format!("{field}.user_id"), &id)?;
            Ok(Approver::User(id))
        }
        Some(A::GroupId(id)) => {
            if id.trim().is_empty() {
                return Err(Error::invalid(
                    format!("{field}.group_id"),
                    "must not be empty",
                ));
            }
            crate::text::bounded(&format!("{field}.group_id"), &id)?;
            Ok(Approver::Group(id))
        }
        Some(A::Manager(true)) => Ok(Approver::Manager),
        Some(A::Admins(true)) => Ok(Approver::Admins),
        Some(A::Manager(false) | A::Admins(false)) => Err(Error::invalid(
            field,
            "`manager` and `admins` are set to true when chosen",
        )),
        None => Err(Error::invalid(field, "names no approver")),
    }
}

/// A flow id a request names: present, bounded, no NUL.
fn check_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_NAME || id.contains('\0') {
        return Err(Error::invalid(field, "is not a flow id"));
    }
    Ok(())
}

/// A new flow id: `flw_` and 16 lower-case hex digits from the OS.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Unavailable(format!("the system random source failed: {e}")))?;
    Ok(format!(
        "flw_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn builtin_refused(what: &str) -> Error {
    Error::FailedPrecondition(format!(
        "flow.id: `{BUILTIN_FLOW_ID}` is the built-in flow and cannot be {what}"
    ))
}

// ---- The calls ----

async fn list(live: &Live) -> Result<pb::ListApprovalFlowsResponse> {
    let (flows, default) = live
        .blocking(|store| -> store::Result<_> { Ok((store.flows()?, store.default_flow()?)) })
        .await??;
    let mut flows: Vec<ApprovalFlow> = flows;
    flows.push(ApprovalFlow::builtin());
    flows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(pb::ListApprovalFlowsResponse {
        flows: flows.iter().map(flow).collect(),
        default_flow_id: default.unwrap_or_default(),
    })
}

async fn get(live: &Live, id: String) -> Result<pb::GetApprovalFlowResponse> {
    check_id("id", &id)?;
    let found = if id == BUILTIN_FLOW_ID {
        Some(ApprovalFlow::builtin())
    } else {
        let wanted = id.clone();
        live.blocking(move |store| store.get_flow(&wanted))
            .await??
    };
    let found = found.ok_or_else(|| Error::not_found("approval flow", &id))?;
    Ok(pb::GetApprovalFlowResponse {
        flow: Some(flow(&found)),
    })
}

async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreateApprovalFlowRequest,
) -> Result<pb::CreateApprovalFlowResponse> {
    let pb::CreateApprovalFlowRequest { flow: wire } = request;
    let wire = wire.ok_or_else(|| Error::invalid("flow", "a flow is required"))?;
    let now = clock::now();
    let mut new = check_flow(live.view()?.as_ref(), &flow_from(wire)?)?;
    new.id = new_id()?;
    new.created_at = now;
    new.updated_at = now;
    let (_, created) = live
        .write(move |tx| -> Result<ApprovalFlow> {
            check_named(tx, &new)?;
            let stored = tx.flows()?.len();
            if stored >= MAX_FLOWS {
                return Err(Error::FailedPrecondition(format!(
                    "{stored} approval flows are stored, the limit is {MAX_FLOWS}"
                )));
            }
            // 64 random bits: a collision is all but impossible, but never overwrite.
            if tx.flow(&new.id)?.is_some() {
                return Err(Error::Unavailable(format!(
                    "the new flow id `{}` is taken; try again",
                    new.id
                )));
            }
            tx.put_flow(&new)?;
            let mut event = caller.event("approval_flow.created", "approval_flow", &new.id);
            event.after = audit::json(&new);
            tx.audit(event)?;
            Ok(new)
        })
        .await?;
    Ok(pb::CreateApprovalFlowResponse {
        flow: Some(flow(&created)),
    })
}

async fn update(
    live: &Live,
    caller: Caller,
    request: pb::UpdateApprovalFlowRequest,
) -> Result<pb::UpdateApprovalFlowResponse> {
    let pb::UpdateApprovalFlowRequest { flow: wire } = request;
    let wire = wire.ok_or_else(|| Error::invalid("flow", "a flow is required"))?;
    let id = wire.id.clone();
    check_id("flow.id", &id)?;
    if id == BUILTIN_FLOW_ID {
        return Err(builtin_refused("changed"));
    }
    let wanted = check_flow(live.view()?.as_ref(), &flow_from(wire)?)?;
    let (_, updated) = live
        .write(move |tx| -> Result<ApprovalFlow> {
            let before = tx
                .flow(&id)?
                .ok_or_else(|| Error::not_found("approval flow", &id))?;
            let after = ApprovalFlow {
                id: before.id.clone(),
                created_at: before.created_at,
                updated_at: before.updated_at,
                ..wanted
            };
            if after == before {
                return Ok(before);
            }
            let after = ApprovalFlow {
                updated_at: clock::now(),
                ..after
            };
            check_named(tx, &after)?;
            tx.put_flow(&after)?;
            let mut event = caller.event("approval_flow.updated", "approval_flow", &id);
            event.before = audit::json(&before);
            event.after = audit::json(&after);
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::UpdateApprovalFlowResponse {
        flow: Some(flow(&updated)),
    })
}

async fn delete(live: &Live, caller: Caller, id: String) -> Result<pb::DeleteApprovalFlowResponse> {
    check_id("id", &id)?;
    if id == BUILTIN_FLOW_ID {
        return Err(builtin_refused("deleted"));
    }
    live.write(move |tx| -> Result<()> {
        let before = tx
            .flow(&id)?
            .ok_or_else(|| Error::not_found("approval flow", &id))?;
        if tx.default_flow()?.as_deref() == Some(id.as_str()) {
            return Err(Error::FailedPrecondition(format!(
                "approval flow `{id}` is the default flow: set another default first"
            )));
        }
        let users: Vec<String> = tx
            .policies()?
            .into_iter()
            .filter(|p| p.approval_flow_id.as_deref() == Some(id.as_str()))
            .map(|p| p.id)
            .collect();
        if !users.is_empty() {
            let named: Vec<String> = users
                .iter()
                .take(NAMED_POLICIES)
                .map(|p| format!("`{p}`"))
                .collect();
            let more = users.len().saturating_sub(NAMED_POLICIES);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return Err(Error::FailedPrecondition(format!(
                "approval flow `{id}` is used by {} ({}{more}): change them first",
                if users.len() == 1 {
                    "a policy"
                } else {
                    "policies"
                },
                named.join(", ")
            )));
        }
        tx.delete_flow(&id)?;
        let mut event = caller.event("approval_flow.deleted", "approval_flow", &id);
        event.before = audit::json(&before);
        tx.audit(event)?;
        Ok(())
    })
    .await?;
    Ok(pb::DeleteApprovalFlowResponse {})
}

async fn get_default(live: &Live) -> Result<pb::GetDefaultApprovalFlowResponse> {
    let id = live.blocking(|store| store.default_flow()).await??;
    Ok(pb::GetDefaultApprovalFlowResponse {
        flow_id: id.unwrap_or_default(),
    })
}

async fn set_default(
    live: &Live,
    caller: Caller,
    flow_id: String,
) -> Result<pb::SetDefaultApprovalFlowResponse> {
    // Naming the built-in flow is the same as naming none: it is what applies then.
    let wanted = Some(flow_id).filter(|id| !id.is_empty() && id != BUILTIN_FLOW_ID);
    if let Some(id) = &wanted {
        check_id("flow_id", id)?;
    }
    live.write(move |tx| -> Result<()> {
        let before = tx.default_flow()?;
        if before == wanted {
            return Ok(());
        }
        if let Some(id) = &wanted
            && tx.flow(id)?.is_none()
        {
            return Err(Error::NotFoundAt {
                field: "flow_id".into(),
                kind: "approval flow",
                id: id.clone(),
            });
        }
        tx.put_default_flow(wanted.as_deref())?;
        let target = wanted.as_deref().unwrap_or(BUILTIN_FLOW_ID);
        let mut event = caller.event("approval_flow.default", "approval_flow", target);
        event.before = audit::json(&before);
        event.after = audit::json(&wanted);
        tx.audit(event)?;
        Ok(())
    })
    .await?;
    Ok(pb::SetDefaultApprovalFlowResponse {})
}

/// Serves the `ApprovalFlowService` over the live store.
#[derive(Debug, Clone)]
pub struct ApprovalFlowService {
    live: Live,
}

impl ApprovalFlowService {
    pub fn new(live: Live) -> ApprovalFlowService {
        ApprovalFlowService { live }
    }

    /// The tonic service, ready to add to a server.
    pub fn into_server(self) -> ApprovalFlowServiceServer<ApprovalFlowService> {
        ApprovalFlowServiceServer::new(self)
    }

    fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
        write: bool,
    ) -> Result<Caller, Status> {
        Ok(auth::authorize(
            &self.live,
            request.metadata(),
            method,
            write,
        )?)
    }
}

#[tonic::async_trait]
impl pb::approval_flow_service_server::ApprovalFlowService for ApprovalFlowService {
    async fn list_approval_flows(
        &self,
        request: Request<pb::ListApprovalFlowsRequest>,
    ) -> Result<Response<pb::ListApprovalFlowsResponse>, Status> {
        let _caller = self.authorize(&request, "ListApprovalFlows", READ)?;
        let pb::ListApprovalFlowsRequest {} = request.into_inner();
        Ok(Response::new(list(&self.live).await?))
    }

    async fn get_approval_flow(
        &self,
        request: Request<pb::GetApprovalFlowRequest>,
    ) -> Result<Response<pb::GetApprovalFlowResponse>, Status> {
        let _caller = self.authorize(&request, "GetApprovalFlow", READ)?;
        let pb::GetApprovalFlowRequest { id } = request.into_inner();
        Ok(Response::new(get(&self.live, id).await?))
    }

    async fn create_approval_flow(
        &self,
        request: Request<pb::CreateApprovalFlowRequest>,
    ) -> Result<Response<pb::CreateApprovalFlowResponse>, Status> {
        let caller = self.authorize(&request, "CreateApprovalFlow", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(create(&self.live, caller, request).await?))
    }

    async fn update_approval_flow(
        &self,
        request: Request<pb::UpdateApprovalFlowRequest>,
    ) -> Result<Response<pb::UpdateApprovalFlowResponse>, Status> {
        let caller = self.authorize(&request, "UpdateApprovalFlow", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(update(&self.live, caller, request).await?))
    }

    async fn delete_approval_flow(
        &self,
        request: Request<pb::DeleteApprovalFlowRequest>,
    ) -> Result<Response<pb::DeleteApprovalFlowResponse>, Status> {
        let caller = self.authorize(&request, "DeleteApprovalFlow", WRITE)?;
        let pb::DeleteApprovalFlowRequest { id } = request.into_inner();
        Ok(Response::new(delete(&self.live, caller, id).await?))
    }

    async fn get_default_approval_flow(
        &self,
        request: Request<pb::GetDefaultApprovalFlowRequest>,
    ) -> Result<Response<pb::GetDefaultApprovalFlowResponse>, Status> {
        let _caller = self.authorize(&request, "GetDefaultApprovalFlow", READ)?;
        let pb::GetDefaultApprovalFlowRequest {} = request.into_inner();
        Ok(Response::new(get_default(&self.live).await?))
    }

    async fn set_default_approval_flow(
        &self,
        request: Request<pb::SetDefaultApprovalFlowRequest>,
    ) -> Result<Response<pb::SetDefaultApprovalFlowResponse>, Status> {
        let caller = self.authorize(&request, "SetDefaultApprovalFlow", WRITE)?;
        let pb::SetDefaultApprovalFlowRequest { flow_id } = request.into_inner();
        Ok(Response::new(
            set_default(&self.live, caller, flow_id).await?,
        ))
    }
}
