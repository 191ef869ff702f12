//! Approval flows over the admin API: the `ApprovalFlowService` (flows and the default flow),
//! the checks a flow must pass ([`check_flow`]), and flows between the model and the wire
//! ([`flow`], [`flow_from`]).
//!
//! Flows are records outside the model: they never enter a snapshot, so every read goes to the
//! store. The built-in flow ([`pdp::approval::BUILTIN_FLOW_ID`]) is listed and gettable but
//! never stored, so it cannot be created, changed or deleted.

mod check;
mod wire;

pub use check::{
    MAX_APPROVERS, MAX_DESCRIPTION, MAX_DURATION_SECS, MAX_NAME, MAX_STEPS, check_flow,
};
pub use wire::{flow, flow_from};

use crate::auth::{self, Caller};
use crate::{Error, Result, audit, clock};
use live::Live;
use pb::approval_flow_service_server::ApprovalFlowServiceServer;
use pdp::approval::BUILTIN_FLOW_ID;
use pdp::{ApprovalFlow, Approver};
use portcullis_proto::v1 as pb;
use store::Tx;
use tonic::{Request, Response, Status};

/// Most flows the store holds: every list reads them all.
pub const MAX_FLOWS: usize = 1000;
/// Most policies a refused delete names.
const NAMED_POLICIES: usize = 10;

const READ: bool = false;
const WRITE: bool = true;

/// Checks, in the transaction that writes `flow`, that the users and groups it names still
/// exist (the check against the view ran before the write).
pub(crate) fn check_named(tx: &Tx<'_, '_>, flow: &ApprovalFlow) -> Result<()> {
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

/// A flow id a request names: present, bounded, no NUL.
pub(crate) fn check_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_NAME || id.contains('\0') {
        return Err(Error::invalid(field, "is not a flow id"));
    }
    Ok(())
}

/// A new flow id: `flw_` and 16 lower-case hex digits from the OS.
pub(crate) fn new_id() -> Result<String> {
    Ok(format!("flw_{}", pdp_service::secret::new_id()?))
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
        Ok(auth::authorize(&self.live, request, method, write)?)
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
