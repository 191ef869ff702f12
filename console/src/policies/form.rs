//! Creating and editing a policy: the handlers (here), the form's fields as typed and the
//! policy they ask for ([`draft`]), the scope picker's lookups ([`scope`]), the refusals
//! shown next to the field they name ([`refusal`]: 400, the form keeping what was typed) and
//! the form as HTML ([`render`]).

mod draft;
mod refusal;
mod render;
mod scope;

use super::{SECTION, get, href};
use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::fields::Problems;
use crate::form::Posted;
use crate::view;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use draft::Draft;
use maud::Markup;
use pb::admin_service_server::AdminService as _;
use pb::approval_flow_service_server::ApprovalFlowService as _;
use portcullis_proto::v1 as pb;
use refusal::Refusal;

/// The update mask of an edit: every field the form holds (enabling is its own control).
const EDITED: [&str; 12] = [
    "name",
    "description",
    "connector",
    "tools",
    "all_tools",
    "scope",
    "action",
    "approval_flow_id",
    "conditions",
    "agents",
    "step_up",
    "expression",
];

/// Which form: a new policy, or the edit of policy `id`.
#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    New,
    Edit(&'a str),
}

/// What the form offers to pick from: the registered agents and the approval flows.
struct Choices {
    agents: Vec<pb::Agent>,
    flows: Vec<pb::ApprovalFlow>,
    default_flow: String,
}

async fn choices(console: &Console, signed: &Signed) -> Page<Choices> {
    let agents = console
        .services()
        .admin
        .list_agents(signed.request(pb::ListAgentsRequest {}))
        .await
        .page()?
        .agents;
    let flows = console
        .services()
        .flows
        .list_approval_flows(signed.request(pb::ListApprovalFlowsRequest {}))
        .await
        .page()?;
    Ok(Choices {
        agents,
        flows: flows.flows,
        default_flow: flows.default_flow_id,
    })
}

/// Only Admins get the form: Read Only people see no write controls (and the service refuses
/// their writes whatever they post).
fn admins_only(signed: &Signed) -> Result<(), Failure> {
    if signed.is_admin() {
        Ok(())
    } else {
        Err(Failure::new(
            StatusCode::FORBIDDEN,
            "only Admins create and edit policies",
        ))
    }
}

pub async fn new(State(console): State<Console>, signed: Signed) -> Page<Markup> {
    admins_only(&signed)?;
    form_page(
        &console,
        &signed,
        Mode::New,
        &Draft::default(),
        &Problems::none(),
    )
    .await
}

pub async fn edit(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Page<Markup> {
    admins_only(&signed)?;
    let (policy, _) = get(&console, &signed, &id).await?;
    form_page(
        &console,
        &signed,
        Mode::Edit(&id),
        &Draft::from_policy(&policy),
        &Problems::none(),
    )
    .await
}

pub async fn create(State(console): State<Console>, posted: Posted<Vec<(String, String)>>) -> Page {
    let Posted { signed, form } = posted;
    let draft = Draft::from_pairs(form);
    let written = match draft.policy(&console, &signed).await {
        Ok(policy) => console
            .services()
            .admin
            .create_policy(signed.request(pb::CreatePolicyRequest {
                policy: Some(policy),
            }))
            .await
            .map(|answer| answer.into_inner().policy.map(|p| p.id))
            .map_err(Refusal::of_write),
        Err(refusal) => Err(refusal),
    };
    settle(&console, &signed, Mode::New, &draft, written).await
}

pub async fn update(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Page {
    let Posted { signed, form } = posted;
    let draft = Draft::from_pairs(form);
    let written = match draft.policy(&console, &signed).await {
        Ok(policy) => {
            let request = pb::UpdatePolicyRequest {
                policy: Some(pb::Policy {
                    id: id.clone(),
                    ..policy
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: EDITED.iter().map(|p| (*p).to_owned()).collect(),
                }),
            };
            console
                .services()
                .admin
                .update_policy(signed.request(request))
                .await
                .map(|answer| answer.into_inner().policy.map(|p| p.id))
                .map_err(Refusal::of_write)
        }
        Err(refusal) => Err(refusal),
    };
    settle(&console, &signed, Mode::Edit(&id), &draft, written).await
}

/// After a write: to the policy's page, or the form again with the problems (400), or the
/// error page.
async fn settle(
    console: &Console,
    signed: &Signed,
    mode: Mode<'_>,
    draft: &Draft,
    written: Result<Option<String>, Refusal>,
) -> Page {
    match written {
        Ok(Some(id)) => Ok(view::see_other(&href(&id))),
        Ok(None) => Ok(view::see_other(SECTION)),
        Err(Refusal::Failure(failure)) => Err(failure),
        Err(Refusal::Problems(problems)) => {
            let page = form_page(console, signed, mode, draft, &problems).await?;
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}

async fn form_page(
    console: &Console,
    signed: &Signed,
    mode: Mode<'_>,
    draft: &Draft,
    problems: &Problems,
) -> Page<Markup> {
    let choices = choices(console, signed).await?;
    Ok(render::page(signed, mode, draft, problems, &choices))
}
