//! Policies: list and search, get, create, update, delete, enable and disable, validated on
//! write.
//!
//! Every write converts the wire policy field by field ([`Patch`] destructures the whole
//! message, so a new field cannot be ignored by accident), then validates the policy that would
//! result ([`check`]) and the users and groups its scope names, inside the transaction that
//! writes it.

mod apply;

use crate::auth::Caller;
use crate::{Error, Result, audit, clock, convert, mask, page, text};
use live::Live;
use pdp::{Action, Agents, Condition, Operator, Policy, Scope, StepUp, Tools};
use portcullis_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use store::Tx;
use text::MAX_ID;
use text::id as check_id;

/// Longest policy name, in characters.
const MAX_NAME: usize = 256;
/// Longest connector name, in characters.
const MAX_CONNECTOR: usize = 128;

/// The update mask paths UpdatePolicy accepts.
const PATHS: [&str; 13] = [
    "name",
    "description",
    "connector",
    "tools",
    "all_tools",
    "scope",
    "action",
    "approval_flow_id",
    "conditions",
    "enabled",
    "agents",
    "step_up",
    "expression",
];

/// Most agents one policy may select, and most values in each part of a step-up requirement.
const MAX_LISTED: usize = 64;

/// The orders policies are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// By name, ignoring case.
    Name,
    /// Most restrictive first, then by name.
    Action,
}

/// A policy's position in a listing: page tokens carry the last row's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct PolicyKey {
    /// 0 when sorting by name; otherwise the action's rank, most restrictive first.
    rank: u8,
    /// Lower-cased.
    name: String,
    id: String,
}

impl PolicyKey {
    fn of(policy: &Policy, order: Order) -> PolicyKey {
        PolicyKey {
            rank: match order {
                Order::Name => 0,
                Order::Action => restrictive_rank(policy.action),
            },
            name: policy.name.to_lowercase(),
            id: policy.id.clone(),
        }
    }
}

/// Deny first, then Require approval, Step-up, Allow.
fn restrictive_rank(action: Action) -> u8 {
    match action {
        Action::Deny => 0,
        Action::RequireApproval => 1,
        Action::StepUp => 2,
        Action::Allow => 3,
    }
}

pub(crate) use apply::{apply, export};

pub(crate) async fn list(
    live: &Live,
    request: pb::ListPoliciesRequest,
) -> Result<pb::ListPoliciesResponse> {
    let pb::ListPoliciesRequest {
        search,
        action,
        sort,
        descending,
        page_size,
        page_token,
        connector,
    } = request;
    text::bounded("search", &search)?;
    text::bounded("connector", &connector)?;
    let size = page::size("page_size", page_size)?;
    let action = convert::action_from("action", action)?;
    let order = match pb::PolicySort::try_from(sort) {
        Ok(pb::PolicySort::Unspecified | pb::PolicySort::Name) => Order::Name,
        Ok(pb::PolicySort::Action) => Order::Action,
        Err(_) => return Err(Error::invalid("sort", format!("unknown sort {sort}"))),
    };
    let needle = search.to_lowercase();
    let query = format!("policies\0{needle}\0{action:?}\0{connector}\0{order:?}\0{descending}");
    let after: Option<PolicyKey> = page::decode("page_token", &page_token, &query)?;
    let view = live.view()?;
    let mut rows: Vec<(PolicyKey, &Arc<Policy>)> = view
        .policies()
        .filter(|p| action.is_none_or(|a| p.action == a))
        .filter(|p| connector.is_empty() || p.connector == connector)
        .filter(|p| {
            needle.is_empty()
                || text::contains_folded(&p.name, &needle)
                || text::contains_folded(&p.description, &needle)
        })
        .map(|p| (PolicyKey::of(p, order), p))
        .filter(|(key, _)| match &after {
            None => true,
            Some(after) if descending => key < after,
            Some(after) => key > after,
        })
        .collect();
    if descending {
        rows.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    } else {
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    let next_page_token = page::next(&mut rows, size, &query, |(key, _)| key.clone());
    Ok(pb::ListPoliciesResponse {
        policies: rows.iter().map(|(_, p)| convert::policy_row(p)).collect(),
        next_page_token,
        revision: view.revision(),
    })
}

pub(crate) async fn get(
    live: &Live,
    request: pb::GetPolicyRequest,
) -> Result<pb::GetPolicyResponse> {
    let pb::GetPolicyRequest { id } = request;
    check_id("id", &id)?;
    let view = live.view()?;
    let policy = view
        .policy(&id)
        .ok_or_else(|| Error::not_found("policy", &id))?;
    Ok(pb::GetPolicyResponse {
        policy: Some(convert::policy(policy)),
        revision: view.revision(),
    })
}

/// The fields of a wire policy a write sets, each converted (`None`: left as it is).
#[derive(Debug, Default)]
struct Patch {
    name: Option<String>,
    description: Option<String>,
    connector: Option<String>,
    tools: Option<Tools>,
    scope: Option<Scope>,
    action: Option<Action>,
    approval_flow_id: Option<Option<String>>,
    conditions: Option<Vec<Condition>>,
    enabled: Option<bool>,
    agents: Option<Agents>,
    step_up: Option<Option<StepUp>>,
    expression: Option<Option<String>>,
}

impl Patch {
    /// Converts the fields of `policy` that `wanted` names (all of them when `wanted` is
    /// `None`). `id`, `created_at` and `updated_at` are never taken from the wire.
    fn from_wire(policy: pb::Policy, wanted: Option<&HashSet<&str>>) -> Result<Patch> {
        let pb::Policy {
            id: _,
            name,
            description,
            connector,
            all_tools,
            tools,
            scope,
            action,
            approval_flow_id,
            conditions,
            enabled,
            created_at: _,
            updated_at: _,
            agents,
            step_up,
            expression,
        } = policy;
        let wants = |path: &str| wanted.is_none_or(|w| w.contains(path));
        Ok(Patch {
            name: wants("name").then_some(name),
            description: wants("description").then_some(description),
            connector: wants("connector").then_some(connector),
            tools: if wants("tools") || wants("all_tools") {
                Some(tools_from(all_tools, tools)?)
            } else {
                None
            },
            scope: if wants("scope") {
                Some(scope_from(scope)?)
            } else {
                None
            },
            action: if wants("action") {
                Some(
                    convert::action_from("policy.action", action)?.ok_or_else(|| {
                        Error::invalid("policy.action", "an action must be specified")
                    })?,
                )
            } else {
                None
            },
            approval_flow_id: wants("approval_flow_id")
                .then(|| Some(approval_flow_id).filter(|f| !f.is_empty())),
            conditions: if wants("conditions") {
                Some(conditions_from(conditions)?)
            } else {
                None
            },
            enabled: wants("enabled").then_some(enabled),
            agents: wants("agents").then(|| agents_from(agents)),
            step_up: wants("step_up").then(|| step_up.map(step_up_from)),
            expression: wants("expression").then(|| Some(expression).filter(|e| !e.is_empty())),
        })
    }

    /// The policy with these fields set.
    fn apply(self, mut policy: Policy) -> Policy {
        let Patch {
            name,
            description,
            connector,
            tools,
            scope,
            action,
            approval_flow_id,
            conditions,
            enabled,
            agents,
            step_up,
            expression,
        } = self;
        if let Some(name) = name {
            policy.name = name;
        }
        if let Some(description) = description {
            policy.description = description;
        }
        if let Some(connector) = connector {
            policy.connector = connector;
        }
        if let Some(tools) = tools {
            policy.tools = tools;
        }
        if let Some(scope) = scope {
            policy.scope = scope;
        }
        if let Some(action) = action {
            policy.action = action;
        }
        if let Some(approval_flow_id) = approval_flow_id {
            policy.approval_flow_id = approval_flow_id;
        }
        if let Some(conditions) = conditions {
            policy.conditions = conditions;
        }
        if let Some(enabled) = enabled {
            policy.enabled = enabled;
        }
        if let Some(agents) = agents {
            policy.agents = agents;
        }
        if let Some(step_up) = step_up {
            policy.step_up = step_up;
        }
        if let Some(expression) = expression {
            policy.expression = expression;
        }
        policy
    }
}

/// `all_tools` or a list, exactly one of them.
fn tools_from(all_tools: bool, tools: Vec<String>) -> Result<Tools> {
    match (all_tools, tools.is_empty()) {
        (true, true) => Ok(Tools::All),
        (false, false) => Ok(Tools::Only(tools)),
        (true, false) => Err(Error::invalid(
            "policy.tools",
            "set `all_tools` or list tools, not both",
        )),
        (false, true) => Err(Error::invalid(
            "policy.tools",
            "list at least one tool, or set `all_tools`",
        )),
    }
}

/// Absent: every agent; present: exactly the listed ones.
fn agents_from(agents: Option<pb::PolicyAgents>) -> Agents {
    match agents {
        None => Agents::All,
        Some(pb::PolicyAgents { agent_ids }) => Agents::Only(agent_ids),
    }
}

fn step_up_from(step_up: pb::StepUpRequirement) -> StepUp {
    let pb::StepUpRequirement {
        acr_values,
        amr_values,
        max_age,
    } = step_up;
    StepUp {
        acr_values,
        amr_values,
        max_age: (max_age > 0).then_some(max_age),
    }
}

fn scope_from(scope: Option<pb::PolicyScope>) -> Result<Scope> {
    let pb::PolicyScope {
        all_users,
        user_ids,
        group_ids,
    } = scope.ok_or_else(|| Error::invalid("policy.scope", "a scope is required"))?;
    Ok(Scope {
        all_users,
        users: user_ids,
        groups: group_ids,
    })
}

fn conditions_from(conditions: Vec<pb::PolicyCondition>) -> Result<Vec<Condition>> {
    conditions
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let pb::PolicyCondition {
                attribute,
                operator,
                values,
            } = c;
            let operator = match operator.as_str() {
                "in" => Operator::In,
                "not_in" => Operator::NotIn,
                other => {
                    return Err(Error::invalid(
                        format!("policy.conditions[{i}].operator"),
                        format!("`{other}` is not `in` or `not_in`"),
                    ));
                }
            };
            Ok(Condition {
                attribute,
                operator,
                values,
            })
        })
        .collect()
}

/// Checks a whole policy as it would be stored; errors name the wire field at fault.
pub(crate) fn check(policy: &Policy) -> Result<()> {
    let Policy {
        id: _,
        name,
        description,
        connector,
        tools,
        scope,
        action,
        approval_flow_id,
        conditions,
        enabled: _,
        created_at: _,
        updated_at: _,
        agents,
        step_up,
        expression,
    } = policy;
    text::required("policy.name", name)?;
    if name.chars().count() > MAX_NAME {
        return Err(Error::invalid(
            "policy.name",
            format!("longer than {MAX_NAME} characters"),
        ));
    }
    text::bounded("policy.description", description)?;
    text::required("policy.connector", connector)?;
    if connector.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            "policy.connector",
            format!("`{connector}` contains whitespace"),
        ));
    }
    if connector.chars().count() > MAX_CONNECTOR {
        return Err(Error::invalid(
            "policy.connector",
            format!("longer than {MAX_CONNECTOR} characters"),
        ));
    }
    if let Tools::Only(tools) = tools {
        if tools.is_empty() {
            return Err(Error::invalid(
                "policy.tools",
                "list at least one tool, or set `all_tools`",
            ));
        }
        unique("policy.tools", tools, |field, tool| {
            text::required(field, tool)
        })?;
    }
    let listed = !scope.users.is_empty() || !scope.groups.is_empty();
    if scope.all_users && listed {
        return Err(Error::invalid(
            "policy.scope",
            "`all_users` covers everyone: do not list user or group ids with it",
        ));
    }
    if !scope.all_users && !listed {
        return Err(Error::invalid(
            "policy.scope",
            "covers no one: set `all_users` or list user or group ids",
        ));
    }
    unique("policy.scope.user_ids", &scope.users, check_id)?;
    unique("policy.scope.group_ids", &scope.groups, check_id)?;
    if let Some(flow) = approval_flow_id {
        text::required("policy.approval_flow_id", flow)?;
        if *action != Action::RequireApproval {
            return Err(Error::invalid(
                "policy.approval_flow_id",
                "only a require-approval policy names an approval flow (clear it when \
                 changing the action)",
            ));
        }
    }
    for (i, condition) in conditions.iter().enumerate() {
        let Condition {
            attribute,
            operator: _,
            values,
        } = condition;
        text::required(&format!("policy.conditions[{i}].attribute"), attribute)?;
        if values.is_empty() {
            return Err(Error::invalid(
                format!("policy.conditions[{i}].values"),
                "list at least one value",
            ));
        }
        for (j, value) in values.iter().enumerate() {
            text::bounded(&format!("policy.conditions[{i}].values[{j}]"), value)?;
        }
    }
    if let Agents::Only(ids) = agents {
        check_agents(ids)?;
    }
    if let Some(step_up) = step_up {
        check_step_up(*action, step_up)?;
    }
    if let Some(source) = expression {
        check_expression(source)?;
    }
    Ok(())
}

/// A selector lists at least one agent (none would cover no agent: absent means all), each
/// once, each a valid agent id. Whether they are registered is checked in the transaction.
fn check_agents(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::invalid(
            "policy.agents.agent_ids",
            "list at least one agent, or leave `agents` out for every agent",
        ));
    }
    if ids.len() > MAX_LISTED {
        return Err(Error::invalid(
            "policy.agents.agent_ids",
            format!("{} agents, the limit is {MAX_LISTED}", ids.len()),
        ));
    }
    unique("policy.agents.agent_ids", ids, crate::agents::check_name)
}

fn check_step_up(action: Action, step_up: &StepUp) -> Result<()> {
    if action != Action::StepUp {
        return Err(Error::invalid(
            "policy.step_up",
            "only a step-up policy has a step-up requirement (clear it when changing the action)",
        ));
    }
    if step_up.is_empty() {
        return Err(Error::invalid(
            "policy.step_up",
            "set at least one of `acr_values`, `amr_values` and `max_age`, or leave it out",
        ));
    }
    for (part, values) in [
        ("acr_values", &step_up.acr_values),
        ("amr_values", &step_up.amr_values),
    ] {
        let field = format!("policy.step_up.{part}");
        if values.len() > MAX_LISTED {
            return Err(Error::invalid(
                field,
                format!("{} values, the limit is {MAX_LISTED}", values.len()),
            ));
        }
        unique(&field, values, |field, value| {
            text::required(field, value)?;
            if value.len() > MAX_ID {
                return Err(Error::invalid(
                    field,
                    format!("{} bytes, the limit is {MAX_ID}", value.len()),
                ));
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// A condition in CEL: bounded, and it must compile (the compiler's message names where).
fn check_expression(source: &str) -> Result<()> {
    use pdp::expression::{Expression, MAX_SOURCE_LEN};
    if source.len() > MAX_SOURCE_LEN {
        return Err(Error::invalid(
            "policy.expression",
            format!("{} bytes, the limit is {MAX_SOURCE_LEN}", source.len()),
        ));
    }
    Expression::compile(source)
        .map(drop)
        .map_err(|e| Error::invalid("policy.expression", e.message))
}

/// Checks, in the transaction, that the approval flow a policy names exists.
fn check_flow_named(tx: &Tx<'_, '_>, policy: &Policy) -> Result<()> {
    if let Some(id) = &policy.approval_flow_id
        && !crate::approvals::flows::exists(tx, id)?
    {
        return Err(Error::NotFoundAt {
            field: "policy.approval_flow_id".into(),
            kind: "approval flow",
            id: id.clone(),
        });
    }
    Ok(())
}

/// Checks, in the transaction, that the agents a selector names are registered.
fn check_selected(tx: &Tx<'_, '_>, agents: &Agents) -> Result<()> {
    if let Agents::Only(ids) = agents {
        for id in ids {
            if tx.agent(id)?.is_none() {
                return Err(Error::not_found("agent", id));
            }
        }
    }
    Ok(())
}

/// Checks each item of a list with `each` and refuses repeats; errors name `field[i]`.
fn unique(field: &str, items: &[String], each: impl Fn(&str, &str) -> Result<()>) -> Result<()> {
    let mut seen = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("{field}[{i}]");
        each(&field, item)?;
        if !seen.insert(item.as_str()) {
            return Err(Error::invalid(field, format!("`{item}` is listed twice")));
        }
    }
    Ok(())
}

/// Checks, in the transaction, that the users and groups `scope` names exist.
fn check_scope(tx: &Tx<'_, '_>, scope: &Scope) -> Result<()> {
    for id in &scope.users {
        if tx.user(id)?.is_none() {
            return Err(Error::not_found("user", id));
        }
    }
    for id in &scope.groups {
        if tx.group(id)?.is_none() {
            return Err(Error::not_found("group", id));
        }
    }
    Ok(())
}

/// A new policy id: `pol_` and 16 lower-case hex digits from the OS.
fn new_id() -> Result<String> {
    Ok(format!("pol_{}", pdp_service::secret::new_id()?))
}

pub(crate) async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreatePolicyRequest,
) -> Result<pb::CreatePolicyResponse> {
    let pb::CreatePolicyRequest { policy } = request;
    let policy = policy.ok_or_else(|| Error::invalid("policy", "a policy is required"))?;
    let now = clock::now();
    let policy = Patch::from_wire(policy, None)?.apply(Policy {
        id: new_id()?,
        created_at: now,
        updated_at: now,
        ..Policy::default()
    });
    check(&policy)?;
    let (revision, policy) = live
        .write(move |tx| -> Result<Policy> {
            check_scope(tx, &policy.scope)?;
            check_selected(tx, &policy.agents)?;
            check_flow_named(tx, &policy)?;
            if tx.policy(&policy.id)?.is_some() {
                return Err(Error::Unavailable(format!(
                    "the new policy id `{}` is taken; try again",
                    policy.id
                )));
            }
            tx.put_policy(&policy)?;
            let mut event = caller.event("policy.create", "policy", &policy.id);
            event.after = audit::json(&policy);
            tx.audit(event)?;
            Ok(policy)
        })
        .await?;
    Ok(pb::CreatePolicyResponse {
        policy: Some(convert::policy(&policy)),
        revision,
    })
}

pub(crate) async fn update(
    live: &Live,
    caller: Caller,
    request: pb::UpdatePolicyRequest,
) -> Result<pb::UpdatePolicyResponse> {
    let pb::UpdatePolicyRequest {
        policy,
        update_mask,
    } = request;
    let policy = policy.ok_or_else(|| Error::invalid("policy", "a policy is required"))?;
    let id = policy.id.clone();
    check_id("policy.id", &id)?;
    let (wanted, paths) = mask::fields(update_mask, &PATHS, "UpdatePolicy", "name")?;
    let scope_changes = wanted.contains("scope");
    let agents_change = wanted.contains("agents");
    let patch = Patch::from_wire(policy, Some(&wanted))?;
    let detail = paths.join(",");
    let (revision, policy) = live
        .write(move |tx| -> Result<Policy> {
            let before = tx
                .policy(&id)?
                .ok_or_else(|| Error::not_found("policy", &id))?;
            let mut after = patch.apply(before.clone());
            if after == before {
                return Ok(before);
            }
            after.updated_at = clock::now();
            check(&after)?;
            if scope_changes {
                check_scope(tx, &after.scope)?;
            }
            if agents_change {
                check_selected(tx, &after.agents)?;
            }
            if after.approval_flow_id != before.approval_flow_id {
                check_flow_named(tx, &after)?;
            }
            tx.put_policy(&after)?;
            let mut event = caller.event("policy.update", "policy", &id);
            event.detail = detail;
            event.before = audit::json(&before);
            event.after = audit::json(&after);
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::UpdatePolicyResponse {
        policy: Some(convert::policy(&policy)),
        revision,
    })
}

pub(crate) async fn delete(
    live: &Live,
    caller: Caller,
    request: pb::DeletePolicyRequest,
) -> Result<pb::DeletePolicyResponse> {
    let pb::DeletePolicyRequest { id } = request;
    check_id("id", &id)?;
    let (revision, ()) = live
        .write(move |tx| -> Result<()> {
            let before = tx
                .policy(&id)?
                .ok_or_else(|| Error::not_found("policy", &id))?;
            tx.delete_policy(&id)?;
            let mut event = caller.event("policy.delete", "policy", &id);
            event.before = audit::json(&before);
            tx.audit(event)?;
            Ok(())
        })
        .await?;
    Ok(pb::DeletePolicyResponse { revision })
}

pub(crate) async fn set_enabled(
    live: &Live,
    caller: Caller,
    request: pb::SetPolicyEnabledRequest,
) -> Result<pb::SetPolicyEnabledResponse> {
    let pb::SetPolicyEnabledRequest { id, enabled } = request;
    check_id("id", &id)?;
    let (revision, policy) = live
        .write(move |tx| crate::switch::set::<Policy>(tx, &caller, &id, enabled, String::new()))
        .await?;
    Ok(pb::SetPolicyEnabledResponse {
        policy: Some(convert::policy(&policy)),
        revision,
    })
}
