//! Creating and editing a policy: the form ([`Draft`] is what it holds, as typed), its
//! scope, agent, action, step-up, approval-flow and condition pickers, and the service's
//! refusals shown next to the field they name (400, the form keeping what was typed).

use super::{ACTIONS, SECTION, get, href};
use crate::Console;
use crate::call::{Failure, Signed};
use crate::form::Posted;
use crate::layout;
use crate::view;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use pb::approval_flow_service_server::ApprovalFlowService as _;
use portcullis_proto::v1 as pb;
use std::collections::BTreeMap;
use tonic::Code;

/// Most users or groups one scope may name in the form (each is looked up before the write).
const MAX_NAMED: usize = 1000;

/// Most pages of group search results read to find a group by its exact name.
const MAX_NAME_PAGES: usize = 10;

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

/// The form's fields as typed: what it shows again when the service refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    name: String,
    description: String,
    connector: String,
    all_tools: bool,
    /// Separated by commas or white space.
    tools: String,
    all_users: bool,
    /// Ids, emails or user names, separated by commas or white space.
    users: String,
    /// Ids or names, one a line (names may hold spaces and commas).
    groups: String,
    all_agents: bool,
    agents: Vec<String>,
    /// One of the form names in [`ACTIONS`].
    action: String,
    acr: String,
    amr: String,
    /// Seconds; empty for none.
    max_age: String,
    approval_flow: String,
    /// `attribute in a, b` or `attribute not_in a, b`, one a line.
    conditions: String,
    expression: String,
    enabled: bool,
}

impl Default for Draft {
    fn default() -> Draft {
        Draft {
            name: String::new(),
            description: String::new(),
            connector: String::new(),
            all_tools: false,
            tools: String::new(),
            all_users: false,
            users: String::new(),
            groups: String::new(),
            all_agents: true,
            agents: Vec::new(),
            action: "allow".to_owned(),
            acr: String::new(),
            amr: String::new(),
            max_age: String::new(),
            approval_flow: String::new(),
            conditions: String::new(),
            expression: String::new(),
            enabled: true,
        }
    }
}

/// Which form: a new policy, or the edit of policy `id`.
#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    New,
    Edit(&'a str),
}

/// Refusals of a submitted form, by the field they belong to (`""`: the form as a whole).
type Problems = BTreeMap<&'static str, String>;

impl Draft {
    /// The draft of a submitted form. Repeated fields (the agents' boxes) come as repeated
    /// pairs, which is why the form is read as pairs.
    fn from_pairs(pairs: Vec<(String, String)>) -> Draft {
        let mut draft = Draft {
            all_agents: false,
            enabled: false,
            ..Draft::default()
        };
        for (name, value) in pairs {
            match name.as_str() {
                "name" => draft.name = value,
                "description" => draft.description = value,
                "connector" => draft.connector = value,
                "tools_mode" => draft.all_tools = value == "all",
                "tools" => draft.tools = value,
                "scope_mode" => draft.all_users = value == "all",
                "users" => draft.users = value,
                "groups" => draft.groups = value,
                "agents_mode" => draft.all_agents = value == "all",
                "agent" => draft.agents.push(value),
                "action" => draft.action = value,
                "acr" => draft.acr = value,
                "amr" => draft.amr = value,
                "max_age" => draft.max_age = value,
                "approval_flow" => draft.approval_flow = value,
                "conditions" => draft.conditions = value,
                "expression" => draft.expression = value,
                "enabled" => draft.enabled = value == "yes",
                _ => {}
            }
        }
        draft
    }

    fn from_policy(policy: &pb::Policy) -> Draft {
        let scope = policy.scope.clone().unwrap_or_default();
        let step_up = policy.step_up.clone().unwrap_or_default();
        let action = ACTIONS
            .iter()
            .find(|(a, _, _)| *a == policy.action())
            .map_or("allow", |(_, name, _)| name);
        Draft {
            name: policy.name.clone(),
            description: policy.description.clone(),
            connector: policy.connector.clone(),
            all_tools: policy.all_tools,
            tools: policy.tools.join("\n"),
            all_users: scope.all_users,
            users: scope.user_ids.join("\n"),
            groups: scope.group_ids.join("\n"),
            all_agents: policy.agents.is_none(),
            agents: policy
                .agents
                .as_ref()
                .map(|a| a.agent_ids.clone())
                .unwrap_or_default(),
            action: action.to_owned(),
            acr: step_up.acr_values.join(" "),
            amr: step_up.amr_values.join(" "),
            max_age: if step_up.max_age > 0 {
                step_up.max_age.to_string()
            } else {
                String::new()
            },
            approval_flow: policy.approval_flow_id.clone(),
            conditions: policy
                .conditions
                .iter()
                .map(|c| format!("{} {} {}", c.attribute, c.operator, c.values.join(", ")))
                .collect::<Vec<_>>()
                .join("\n"),
            expression: policy.expression.clone(),
            enabled: policy.enabled,
        }
    }

    fn action(&self) -> pb::PolicyAction {
        ACTIONS
            .iter()
            .find(|(_, name, _)| *name == self.action)
            .map_or(pb::PolicyAction::Unspecified, |(action, _, _)| *action)
    }

    /// The wire policy this draft asks for, its users and groups looked up by the service.
    /// The step-up fields count only with Step up and the flow only with Require approval, so
    /// what a hidden part of the form still holds changes nothing.
    async fn policy(&self, console: &Console, signed: &Signed) -> Result<pb::Policy, Refusal> {
        let mut problems = Problems::new();
        let action = self.action();
        if action == pb::PolicyAction::Unspecified {
            problems.insert("action", "choose an action".to_owned());
        }
        let step_up = if action == pb::PolicyAction::StepUp {
            let max_age = match self.max_age.trim() {
                "" => 0,
                seconds => seconds.parse::<u64>().unwrap_or_else(|_| {
                    problems.insert(
                        "step_up",
                        format!("max age: `{seconds}` is not a whole number of seconds"),
                    );
                    0
                }),
            };
            let requirement = pb::StepUpRequirement {
                acr_values: words(&self.acr),
                amr_values: words(&self.amr),
                max_age,
            };
            let empty = requirement.acr_values.is_empty()
                && requirement.amr_values.is_empty()
                && requirement.max_age == 0;
            // Nothing entered: no requirement (the service documents it as never met).
            (!empty).then_some(requirement)
        } else {
            None
        };
        let conditions = conditions(&self.conditions).unwrap_or_else(|problem| {
            problems.insert("conditions", problem);
            Vec::new()
        });
        let (user_ids, group_ids) = if self.all_users {
            (Vec::new(), Vec::new())
        } else {
            match self.scope(console, signed).await {
                Ok(ids) => ids,
                Err(Refusal::Problems(found)) => {
                    problems.extend(found);
                    (Vec::new(), Vec::new())
                }
                Err(failure) => return Err(failure),
            }
        };
        if !problems.is_empty() {
            return Err(Refusal::Problems(problems));
        }
        Ok(pb::Policy {
            id: String::new(),
            name: self.name.trim().to_owned(),
            description: self.description.trim().to_owned(),
            connector: self.connector.trim().to_owned(),
            all_tools: self.all_tools,
            tools: if self.all_tools {
                Vec::new()
            } else {
                words(&self.tools)
            },
            scope: Some(pb::PolicyScope {
                all_users: self.all_users,
                user_ids,
                group_ids,
            }),
            action: action as i32,
            approval_flow_id: if action == pb::PolicyAction::RequireApproval {
                self.approval_flow.clone()
            } else {
                String::new()
            },
            conditions,
            enabled: self.enabled,
            created_at: None,
            updated_at: None,
            agents: (!self.all_agents).then(|| pb::PolicyAgents {
                agent_ids: self.agents.clone(),
            }),
            step_up,
            expression: self.expression.trim().to_owned(),
        })
    }

    /// The ids of the users and groups the scope names, each looked up as the API's other
    /// callers do (the CLI too): a user by id, email or user name (GetUser), a group by id or
    /// exact name (GetGroup, then ListGroups).
    async fn scope(
        &self,
        console: &Console,
        signed: &Signed,
    ) -> Result<(Vec<String>, Vec<String>), Refusal> {
        let users = words(&self.users);
        let groups: Vec<String> = lines(&self.groups);
        if users.len() > MAX_NAMED || groups.len() > MAX_NAMED {
            return Err(Refusal::field(
                "scope",
                format!("name at most {MAX_NAMED} users and {MAX_NAMED} groups"),
            ));
        }
        let admin = &console.services().admin;
        let mut user_ids = Vec::with_capacity(users.len());
        for user in users {
            let request = pb::GetUserRequest {
                user: user.clone(),
                activity_limit: 1,
            };
            match admin.get_user(signed.request(request)).await {
                Ok(found) => {
                    let id = found.into_inner().user.map(|u| u.id).unwrap_or(user);
                    if !user_ids.contains(&id) {
                        user_ids.push(id);
                    }
                }
                Err(status) => return Err(Refusal::about("scope", status)),
            }
        }
        let mut group_ids = Vec::with_capacity(groups.len());
        for group in groups {
            let id = group_id(console, signed, &group).await?;
            if !group_ids.contains(&id) {
                group_ids.push(id);
            }
        }
        Ok((user_ids, group_ids))
    }
}

/// The group `reference` names: its id, or the one group with that name (ignoring case).
async fn group_id(console: &Console, signed: &Signed, reference: &str) -> Result<String, Refusal> {
    let admin = &console.services().admin;
    let request = pb::GetGroupRequest {
        id: reference.to_owned(),
    };
    match admin.get_group(signed.request(request)).await {
        Ok(found) => {
            return Ok(found
                .into_inner()
                .group
                .map_or_else(|| reference.to_owned(), |g| g.id));
        }
        Err(status) if status.code() != Code::NotFound => {
            return Err(Refusal::about("scope", status));
        }
        Err(_) => {}
    }
    let wanted = reference.to_lowercase();
    let mut named = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_NAME_PAGES {
        let request = pb::ListGroupsRequest {
            search: reference.to_owned(),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        let page = admin
            .list_groups(signed.request(request))
            .await
            .map_err(|status| Refusal::about("scope", status))?
            .into_inner();
        named.extend(
            page.groups
                .into_iter()
                .filter(|g| g.name.to_lowercase() == wanted)
                .map(|g| g.id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match named.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(Refusal::field(
            "scope",
            format!("no group has the id or the name `{reference}`"),
        )),
        ids => Err(Refusal::field(
            "scope",
            format!(
                "{} groups are named `{reference}`: give one of their ids ({})",
                ids.len(),
                ids.join(", ")
            ),
        )),
    }
}

/// Items separated by commas or white space.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Non-empty lines, trimmed.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `attribute in a, b` / `attribute not_in a, b`, one a line.
fn conditions(text: &str) -> Result<Vec<pb::PolicyCondition>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let mut parts = line.trim().splitn(3, char::is_whitespace);
            let attribute = parts.next().unwrap_or_default();
            let operator = parts.next().unwrap_or_default();
            let values: Vec<String> = parts
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            if !matches!(operator, "in" | "not_in") || values.is_empty() {
                return Err(format!(
                    "line {}: write `attribute in value, value` or `attribute not_in value`",
                    i + 1
                ));
            }
            Ok(pb::PolicyCondition {
                attribute: attribute.to_owned(),
                operator: operator.to_owned(),
                values,
            })
        })
        .collect()
}

/// Why a submitted form was not saved: problems shown on the form, or a refusal shown as an
/// error page (no permission, the service unavailable).
#[derive(Debug)]
enum Refusal {
    Problems(Problems),
    Failure(Failure),
}

impl Refusal {
    fn field(field: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Problems(Problems::from([(field, message.into())]))
    }

    /// A refusal by the service: input errors go next to `field`, the rest to an error page.
    fn about(field: &'static str, status: tonic::Status) -> Refusal {
        match status.code() {
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => {
                Refusal::field(field, status.message())
            }
            _ => Refusal::Failure(status.into()),
        }
    }

    /// A refusal of the policy write: next to the field the message names
    /// (`policy.expression: …`), else at the top of the form.
    fn of_write(status: tonic::Status) -> Refusal {
        if !matches!(
            status.code(),
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
        ) {
            return Refusal::Failure(status.into());
        }
        let message = status.message();
        let field = match message.strip_prefix("policy.") {
            Some(rest) => {
                let path = rest.split(['.', '[', ':']).next().unwrap_or_default();
                match path {
                    "name" => "name",
                    "description" => "description",
                    "connector" => "connector",
                    "tools" | "all_tools" => "tools",
                    "scope" => "scope",
                    "action" => "action",
                    "approval_flow_id" => "approval_flow",
                    "conditions" => "conditions",
                    "agents" => "agents",
                    "step_up" => "step_up",
                    "expression" => "expression",
                    _ => "",
                }
            }
            // `agent `x` not found`, `user …`, `group …`: records the policy names.
            None if message.starts_with("agent ") => "agents",
            None if message.starts_with("user ") || message.starts_with("group ") => "scope",
            None => "",
        };
        Refusal::field(field, message)
    }
}

/// What the form offers to pick from: the registered agents and the approval flows.
struct Choices {
    agents: Vec<pb::Agent>,
    flows: Vec<pb::ApprovalFlow>,
    default_flow: String,
}

async fn choices(console: &Console, signed: &Signed) -> Result<Choices, Failure> {
    let agents = console
        .services()
        .admin
        .list_agents(signed.request(pb::ListAgentsRequest {}))
        .await?
        .into_inner()
        .agents;
    let flows = console
        .services()
        .flows
        .list_approval_flows(signed.request(pb::ListApprovalFlowsRequest {}))
        .await?
        .into_inner();
    Ok(Choices {
        agents,
        flows: flows.flows,
        default_flow: flows.default_flow_id,
    })
}

/// Only Admins get the form: Read Only people see no write controls (and the service refuses
/// their writes whatever they post).
fn admins_only(signed: &Signed) -> Option<Response> {
    (!signed.is_admin()).then(|| {
        Failure::new(
            StatusCode::FORBIDDEN,
            "only Admins create and edit policies",
        )
        .into_response()
    })
}

pub async fn new(State(console): State<Console>, signed: Signed) -> Response {
    if let Some(refusal) = admins_only(&signed) {
        return refusal;
    }
    form_page(
        &console,
        &signed,
        Mode::New,
        &Draft::default(),
        &Problems::new(),
    )
    .await
    .into_response()
}

pub async fn edit(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = admins_only(&signed) {
        return refusal;
    }
    let (policy, _) = match get(&console, &signed, &id).await {
        Ok(found) => found,
        Err(failure) => return failure.into_response(),
    };
    form_page(
        &console,
        &signed,
        Mode::Edit(&id),
        &Draft::from_policy(&policy),
        &Problems::new(),
    )
    .await
    .into_response()
}

pub async fn create(
    State(console): State<Console>,
    posted: Posted<Vec<(String, String)>>,
) -> Response {
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
) -> Response {
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
) -> Response {
    match written {
        Ok(Some(id)) => view::see_other(&href(&id)),
        Ok(None) => view::see_other(SECTION),
        Err(Refusal::Failure(failure)) => failure.into_response(),
        Err(Refusal::Problems(problems)) => {
            let page = form_page(console, signed, mode, draft, &problems).await;
            (StatusCode::BAD_REQUEST, page).into_response()
        }
    }
}

async fn form_page(
    console: &Console,
    signed: &Signed,
    mode: Mode<'_>,
    draft: &Draft,
    problems: &Problems,
) -> Response {
    let choices = match choices(console, signed).await {
        Ok(choices) => choices,
        Err(failure) => return failure.into_response(),
    };
    let (title, action, cancel) = match mode {
        Mode::New => (
            "New policy".to_owned(),
            SECTION.to_owned(),
            SECTION.to_owned(),
        ),
        Mode::Edit(id) => (format!("Edit {}", draft.name), href(id), href(id)),
    };
    let content = html! {
        h1 { (title) }
        @if let Some(problem) = problems.get("") {
            p.notice.danger role="alert" { (problem) }
        }
        @if !problems.is_empty() {
            p.visually-hidden role="alert" { "The policy was not saved: see the messages by the fields." }
        }
        form.card.policy-form method="post" action=(action) {
            input type="hidden" name="csrf" value=(signed.csrf());
            (text_field("name", "Name", &draft.name, problems, true))
            (text_field("description", "Description", &draft.description, problems, false))
            (text_field("connector", "Connector (for example github)", &draft.connector, problems, true))

            fieldset {
                legend { "Tools" }
                (radio("tools_mode", "all", "Every tool of the connector", draft.all_tools))
                (radio("tools_mode", "listed", "These tools", !draft.all_tools))
                div.field {
                    label for="tools" { "Tools (separated by commas or spaces)" }
                    textarea #tools name="tools" rows="2" aria-describedby=[problems.get("tools").map(|_| "tools-error")] { (draft.tools) }
                    (problem("tools", problems))
                }
            }

            fieldset {
                legend { "Who it applies to" }
                (radio("scope_mode", "all", "All users", draft.all_users))
                (radio("scope_mode", "listed", "These users and groups", !draft.all_users))
                div.field {
                    label for="users" { "Users: ids, emails or user names (separated by commas or spaces)" }
                    textarea #users name="users" rows="2" { (draft.users) }
                }
                div.field {
                    label for="groups" { "Groups: ids or names (one a line)" }
                    textarea #groups name="groups" rows="2" aria-describedby=[problems.get("scope").map(|_| "scope-error")] { (draft.groups) }
                    (problem("scope", problems))
                }
            }

            fieldset {
                legend { "Agents" }
                (radio("agents_mode", "all", "Every agent, registered or not", draft.all_agents))
                (radio("agents_mode", "listed", "Only these registered agents", !draft.all_agents))
                ul.choices {
                    @for (i, agent) in choices.agents.iter().enumerate() {
                        li {
                            input id=(format!("agent-{i}")) type="checkbox" name="agent" value=(agent.id) checked[draft.agents.contains(&agent.id)];
                            label.inline for=(format!("agent-{i}")) {
                                (agent.display_name) " " span.muted { "(" (agent.id) ")" }
                                @if !agent.enabled { " " (view::badge("disabled", "Disabled")) }
                            }
                        }
                    }
                    // An agent the policy lists that is no longer offered stays selected.
                    @for (i, id) in draft.agents.iter().filter(|id| !choices.agents.iter().any(|a| &a.id == *id)).enumerate() {
                        li {
                            input id=(format!("agent-gone-{i}")) type="checkbox" name="agent" value=(id) checked;
                            label.inline for=(format!("agent-gone-{i}")) { (id) " " span.muted { "(not registered)" } }
                        }
                    }
                }
                (problem("agents", problems))
            }

            div.field {
                label for="action" { "Action" }
                select #action name="action" {
                    @for (_, name, label) in ACTIONS {
                        option value=(name) selected[draft.action == name] { (label) }
                    }
                }
                (problem("action", problems))
            }

            fieldset.when-step-up {
                legend { "Step-up requirement (with Step up)" }
                p.muted { "What the user's sign-in must show for the call to be allowed; empty for a step-up that is never met." }
                div.field {
                    label for="acr" { "acr: one of (separated by spaces)" }
                    input #acr type="text" name="acr" value=(draft.acr);
                }
                div.field {
                    label for="amr" { "amr: all of (separated by spaces)" }
                    input #amr type="text" name="amr" value=(draft.amr);
                }
                div.field {
                    label for="max_age" { "Max age: signed in at most this many seconds ago" }
                    input #max_age type="text" inputmode="numeric" name="max_age" value=(draft.max_age);
                }
                (problem("step_up", problems))
            }

            div.field.when-approval {
                label for="approval_flow" { "Approval flow (with Require approval)" }
                select #approval_flow name="approval_flow" {
                    option value="" selected[draft.approval_flow.is_empty()] {
                        "The default flow"
                        @if !choices.default_flow.is_empty() { " (" (choices.default_flow) ")" }
                    }
                    @for flow in &choices.flows {
                        option value=(flow.id) selected[draft.approval_flow == flow.id] { (flow.name) " (" (flow.id) ")" }
                    }
                }
                (problem("approval_flow", problems))
            }

            div.field {
                label for="expression" { "Condition in CEL over request, user and now (empty for none)" }
                textarea #expression name="expression" rows="3" spellcheck="false"
                    placeholder=r#"request.arguments.repo.startsWith("acme/")"#
                    aria-invalid=[problems.get("expression").map(|_| "true")]
                    aria-describedby=[problems.get("expression").map(|_| "expression-error")] { (draft.expression) }
                (problem("expression", problems))
            }
            div.field {
                label for="conditions" { "Attribute conditions: attribute in a, b / attribute not_in a, b (one a line)" }
                textarea #conditions name="conditions" rows="2" spellcheck="false" { (draft.conditions) }
                (problem("conditions", problems))
            }
            @if matches!(mode, Mode::New) {
                div.field {
                    input #enabled type="checkbox" name="enabled" value="yes" checked[draft.enabled];
                    label.inline for="enabled" { " Enabled: applies from the next decision on" }
                }
            }
            button type="submit" { (if matches!(mode, Mode::New) { "Create policy" } else { "Save policy" }) }
            " "
            a.button.secondary href=(cancel) { "Cancel" }
        }
    };
    layout::page(signed, SECTION, &title, content).into_response()
}

fn text_field(name: &str, label: &str, value: &str, problems: &Problems, required: bool) -> Markup {
    let error = problems.get(name);
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) type="text" name=(name) value=(value) required[required]
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("{name}-error"))];
            (problem(name, problems))
        }
    }
}

fn radio(name: &str, value: &str, label: &str, checked: bool) -> Markup {
    let id = format!("{name}-{value}");
    html! {
        div {
            input id=(id) type="radio" name=(name) value=(value) checked[checked];
            label.inline for=(id) { " " (label) }
        }
    }
}

/// The service's message about `field`, if it has one.
fn problem(field: &str, problems: &Problems) -> Markup {
    html! {
        @if let Some(message) = problems.get(field) {
            p.error id=(format!("{field}-error")) role="alert" { (message) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_comes_back_as_the_draft_that_makes_it() {
        let policy = pb::Policy {
            name: "n".into(),
            connector: "github".into(),
            tools: vec!["a".into(), "b".into()],
            scope: Some(pb::PolicyScope {
                all_users: false,
                user_ids: vec!["u1".into()],
                group_ids: vec!["g 1".into()],
            }),
            action: pb::PolicyAction::StepUp as i32,
            step_up: Some(pb::StepUpRequirement {
                acr_values: vec!["phr".into()],
                amr_values: vec![],
                max_age: 300,
            }),
            conditions: vec![pb::PolicyCondition {
                attribute: "env".into(),
                operator: "not_in".into(),
                values: vec!["prod".into(), "stage".into()],
            }],
            ..Default::default()
        };
        let draft = Draft::from_policy(&policy);
        assert_eq!(words(&draft.tools), ["a", "b"]);
        assert_eq!(lines(&draft.groups), ["g 1"]);
        assert_eq!(draft.action(), pb::PolicyAction::StepUp);
        assert_eq!(
            conditions(&draft.conditions).unwrap(),
            policy.conditions,
            "{}",
            draft.conditions
        );
    }

    #[test]
    fn a_malformed_condition_names_its_line() {
        let problem = conditions("env in prod\n\nenv is prod").unwrap_err();
        assert!(problem.starts_with("line 3:"), "{problem}");
        assert!(conditions("env in").is_err());
    }

    #[test]
    fn write_refusals_go_next_to_their_field() {
        let placed =
            |message: &str| match Refusal::of_write(tonic::Status::invalid_argument(message)) {
                Refusal::Problems(p) => p.into_keys().next().unwrap_or("?"),
                Refusal::Failure(_) => "failure",
            };
        assert_eq!(placed("policy.expression: Syntax error"), "expression");
        assert_eq!(placed("policy.tools[0]: must not be empty"), "tools");
        assert_eq!(placed("policy.approval_flow_id: only"), "approval_flow");
        assert_eq!(placed("agent `x` not found"), "agents");
        assert_eq!(placed("something else"), "");
        assert!(matches!(
            Refusal::of_write(tonic::Status::permission_denied("no")),
            Refusal::Failure(_)
        ));
    }
}
