//! ApplyPolicies: policies as code. The server's whole set of policies becomes the request's, in
//! one transaction with one audit event, each policy validated exactly as CreatePolicy and
//! UpdatePolicy validate it, and only if the server still has the policies the export read.
//! So do, when the request carries them, the agents, the approval flows, the groups' roles and
//! the settings (`agents`, `flows`, `roles`, `settings`): written in the order that lets each
//! name what it needs (flows and agents before the policies naming them, deletions last).

mod agents;
mod flows;
mod roles;
mod settings;

use super::{Patch, check, check_flow_named, check_id, check_scope, check_selected, new_id};
use crate::auth::Caller;
use crate::{Error, Result, audit, clock, convert};
use pdp::{Policy, Timestamp};
use portcullis_proto::v1 as pb;
use std::collections::{BTreeMap, HashSet};

/// Most policies one apply may list (and most `expected` versions).
pub(crate) const MAX_APPLY: usize = 5_000;
/// Largest `before` plus `after` one audit event keeps, in bytes of JSON: past it the event keeps
/// only the ids changed, so that one large apply cannot make an audit page too large for a
/// gRPC answer (4 MiB).
const MAX_AUDIT_BYTES: usize = 512 << 10;
/// Most conflicts a refusal names; the rest are counted.
const MAX_NAMED: usize = 10;

/// What an apply changes, as ids.
#[derive(Debug, Default)]
struct Outcome {
    created: Vec<String>,
    updated: Vec<String>,
    deleted: Vec<String>,
    /// The other sections' changes.
    changes: Vec<pb::AppliedChange>,
}

/// The audit event's `before` and `after` (policies by id, the rest by `kind:id`) and the other
/// sections' changes.
#[derive(Debug, Default)]
struct Log {
    before: serde_json::Map<String, serde_json::Value>,
    after: serde_json::Map<String, serde_json::Value>,
    changes: Vec<pb::AppliedChange>,
}

impl Log {
    fn record(
        &mut self,
        kind: &str,
        id: &str,
        change: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) {
        let key = format!("{kind}:{id}");
        if let Some(before) = before {
            self.before.insert(key.clone(), before);
        }
        if let Some(after) = after {
            self.after.insert(key, after);
        }
        self.changes.push(pb::AppliedChange {
            kind: kind.to_owned(),
            id: id.to_owned(),
            change: change.to_owned(),
        });
    }
}

/// An apply's failure, or a dry run's outcome: returning it aborts the transaction, so a dry run
/// runs every check a real apply runs and writes nothing.
enum Abort {
    Failed(Error),
    DryRun(Outcome),
}

impl From<Error> for Abort {
    fn from(error: Error) -> Abort {
        Abort::Failed(error)
    }
}

impl From<store::Error> for Abort {
    fn from(error: store::Error) -> Abort {
        Abort::Failed(error.into())
    }
}

impl From<live::Error> for Abort {
    fn from(error: live::Error) -> Abort {
        Abort::Failed(error.into())
    }
}

/// An error about one policy, its field renamed from `policy.…` to `policies[i].…`.
fn at(i: usize, error: Error) -> Error {
    renamed("policy", &format!("policies[{i}]"), error)
}

/// An error about one entry of a section, its field renamed from the single-record call's
/// (`agent.…`, `flow.…`) to the entry's (`agents[i].…`).
fn renamed(from: &str, to: &str, error: Error) -> Error {
    let rename = |field: String| match field.strip_prefix(from) {
        Some(rest) => format!("{to}{rest}"),
        None => format!("{to}.{field}"),
    };
    match error {
        Error::InvalidArgument { field, problem } => Error::InvalidArgument {
            field: rename(field),
            problem,
        },
        Error::NotFoundAt { field, kind, id } => Error::NotFoundAt {
            field: rename(field),
            kind,
            id,
        },
        Error::NotFound { kind, id } => Error::NotFoundAt {
            field: to.to_owned(),
            kind,
            id,
        },
        Error::FailedPrecondition(message) => {
            Error::FailedPrecondition(match message.strip_prefix(&format!("{from}.")) {
                Some(rest) => format!("{to}.{rest}"),
                None => format!("{to}: {message}"),
            })
        }
        other => other,
    }
}

/// The versions an export read (`expected`), by id: each checked with `check`, once.
fn versions(
    field: &str,
    expected: Vec<pb::PolicyVersion>,
    max: usize,
    check: &dyn Fn(&str, &str) -> Result<()>,
) -> Result<BTreeMap<String, Timestamp>> {
    if expected.len() > max {
        return Err(Error::invalid(
            field,
            format!("{} versions, the limit is {max}", expected.len()),
        ));
    }
    let mut base = BTreeMap::new();
    for (i, version) in expected.into_iter().enumerate() {
        let pb::PolicyVersion { id, updated_at } = version;
        check(&format!("{field}[{i}].id"), &id)?;
        let at = format!("{field}[{i}].updated_at");
        let updated_at = updated_at.ok_or_else(|| Error::invalid(&at, "is required"))?;
        let updated_at = convert::from_timestamp(&at, &updated_at)?;
        if base.insert(id.clone(), updated_at).is_some() {
            return Err(Error::invalid(
                format!("{field}[{i}].id"),
                format!("`{id}` is listed twice"),
            ));
        }
    }
    Ok(base)
}

/// What was created, changed or deleted since the export, by comparing the records' `(id,
/// name, updated_at)` with the export's versions.
fn changed_since(
    kind: &str,
    base: &BTreeMap<String, Timestamp>,
    current: &[(String, String, Timestamp)],
    out: &mut Vec<String>,
) {
    for (id, name, updated_at) in current {
        match base.get(id) {
            None => out.push(format!("{kind} `{id}` ({name}) was created")),
            Some(at) if at != updated_at => {
                out.push(format!("{kind} `{id}` ({name}) was changed"));
            }
            Some(_) => {}
        }
    }
    for id in base.keys() {
        if !current.iter().any(|(c, _, _)| c == id) {
            out.push(format!("{kind} `{id}` was deleted"));
        }
    }
}

/// Whether the flow a policy names exists as the apply leaves the flows (`kept`, when it
/// manages them), else as the store has them.
fn check_flow_in(
    tx: &store::Tx<'_, '_>,
    policy: &Policy,
    kept: Option<&HashSet<String>>,
) -> Result<()> {
    match (kept, &policy.approval_flow_id) {
        (Some(kept), Some(id)) if id != pdp::approval::BUILTIN_FLOW_ID && !kept.contains(id) => {
            Err(Error::NotFoundAt {
                field: "policy.approval_flow_id".into(),
                kind: "approval flow",
                id: id.clone(),
            })
        }
        (Some(_), _) => Ok(()),
        (None, _) => check_flow_named(tx, policy),
    }
}

/// A wire policy converted: its id (`None` for a new one) and its fields.
struct Wanted {
    index: usize,
    id: Option<String>,
    patch: Patch,
}

pub(crate) async fn apply(
    live: &live::Live,
    caller: Caller,
    request: pb::ApplyPoliciesRequest,
) -> Result<pb::ApplyPoliciesResponse> {
    let pb::ApplyPoliciesRequest {
        policies,
        expected,
        dry_run,
        agents,
        approval_flows,
        group_roles,
        settings,
    } = request;
    if policies.len() > MAX_APPLY {
        return Err(Error::invalid(
            "policies",
            format!("{} policies, the limit is {MAX_APPLY}", policies.len()),
        ));
    }
    let base = versions("expected", expected, MAX_APPLY, &check_id)?;
    let agents = agents.map(agents::prepare).transpose()?;
    let flows = match approval_flows {
        Some(section) => Some(flows::prepare(section, live.view()?.as_ref())?),
        None => None,
    };
    let roles = group_roles.map(roles::prepare).transpose()?;
    let settings = settings.map(settings::prepare).transpose()?;
    let mut wanted = Vec::with_capacity(policies.len());
    let mut ids = HashSet::new();
    for (index, policy) in policies.into_iter().enumerate() {
        let id = Some(policy.id.clone()).filter(|id| !id.is_empty());
        if let Some(id) = &id {
            check_id(&format!("policies[{index}].id"), id)?;
            if !ids.insert(id.clone()) {
                return Err(Error::invalid(
                    format!("policies[{index}].id"),
                    format!("`{id}` is listed twice"),
                ));
            }
        }
        let patch = Patch::from_wire(policy, None).map_err(|e| at(index, e))?;
        wanted.push(Wanted { index, id, patch });
    }
    let written = live
        .write(move |tx| -> std::result::Result<Outcome, Abort> {
            let current: BTreeMap<String, Policy> = tx
                .policies()?
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect();
            let mut conflicts = policy_conflicts(&base, &current);
            if let Some(agents) = &agents {
                agents::conflicts(tx, agents, &mut conflicts)?;
            }
            if let Some(flows) = &flows {
                flows::conflicts(tx, flows, &mut conflicts)?;
            }
            if let Some(roles) = &roles {
                roles::conflicts(tx, roles, &mut conflicts)?;
            }
            if let Some(settings) = &settings {
                settings::conflicts(tx, settings, &mut conflicts)?;
            }
            refuse_conflicts(conflicts)?;
            let now = clock::now();
            let mut outcome = Outcome::default();
            let mut log = Log::default();
            let flows = match flows {
                Some(flows) => Some(flows::upsert(tx, flows, now, &mut log)?),
                None => None,
            };
            let kept_flows = flows.as_ref().map(|f| &f.kept);
            let deleted_agents = match agents {
                Some(agents) => agents::upsert(tx, agents, now, &mut log)?,
                None => Default::default(),
            };
            if let Some(roles) = roles {
                roles::apply(tx, roles, now, &mut log)?;
            }
            // Each listed policy as the apply leaves it, by its position in the request.
            let mut leaving: Vec<(usize, Policy)> = Vec::new();
            let mut kept = HashSet::new();
            for Wanted { index, id, patch } in wanted {
                let Some(id) = id else {
                    let policy = patch.apply(Policy {
                        id: new_id()?,
                        created_at: now,
                        updated_at: now,
                        ..Policy::default()
                    });
                    check(&policy).map_err(|e| at(index, e))?;
                    check_scope(tx, &policy.scope).map_err(|e| at(index, e))?;
                    check_selected(tx, &policy.agents).map_err(|e| at(index, e))?;
                    check_flow_in(tx, &policy, kept_flows).map_err(|e| at(index, e))?;
                    if current.contains_key(&policy.id) {
                        return Err(Error::Unavailable(format!(
                            "the new policy id `{}` is taken; try again",
                            policy.id
                        ))
                        .into());
                    }
                    tx.put_policy(&policy)?;
                    log.after
                        .insert(policy.id.clone(), audit::json(&policy).into());
                    outcome.created.push(policy.id.clone());
                    leaving.push((index, policy));
                    continue;
                };
                let Some(old) = current.get(&id) else {
                    return Err(Error::invalid(
                        format!("policies[{index}].id"),
                        format!(
                            "the server has no policy `{id}`: leave `id` out to create a new one"
                        ),
                    )
                    .into());
                };
                kept.insert(id.clone());
                let mut new = patch.apply(old.clone());
                if new == *old {
                    leaving.push((index, new));
                    continue;
                }
                new.updated_at = now;
                check(&new).map_err(|e| at(index, e))?;
                if new.scope != old.scope {
                    check_scope(tx, &new.scope).map_err(|e| at(index, e))?;
                }
                if new.agents != old.agents {
                    check_selected(tx, &new.agents).map_err(|e| at(index, e))?;
                }
                if new.approval_flow_id != old.approval_flow_id {
                    check_flow_in(tx, &new, kept_flows).map_err(|e| at(index, e))?;
                }
                tx.put_policy(&new)?;
                log.before.insert(id.clone(), audit::json(old).into());
                log.after.insert(id.clone(), audit::json(&new).into());
                outcome.updated.push(id);
                leaving.push((index, new));
            }
            for (id, old) in &current {
                if !kept.contains(id) {
                    tx.delete_policy(id)?;
                    log.before.insert(id.clone(), audit::json(old).into());
                    outcome.deleted.push(id.clone());
                }
            }
            // The policies as the apply leaves them may name no agent or flow it deletes.
            let mut flows_named = BTreeMap::new();
            for (index, policy) in &leaving {
                if let pdp::Agents::Only(ids) = &policy.agents
                    && let Some(gone) = ids.iter().find(|id| deleted_agents.contains(*id))
                {
                    return Err(Error::FailedPrecondition(format!(
                        "policies[{index}].agents: agent `{gone}` is left out of the agents \
                         (deleted) but this policy selects it: change the policy too, or keep \
                         the agent"
                    ))
                    .into());
                }
                if let Some(flow) = &policy.approval_flow_id {
                    flows_named
                        .entry(flow.clone())
                        .or_insert_with(|| policy.id.clone());
                }
            }
            let mut default_flow = None;
            if let Some(settings) = &settings {
                settings::apply(tx, settings, kept_flows, &mut log)?;
                default_flow = settings::default_flow(settings).map(str::to_owned);
            }
            agents::delete(tx, &deleted_agents, now, &mut log)?;
            if let Some(flows) = &flows {
                if settings.is_none() {
                    default_flow = tx.default_flow()?;
                }
                flows::delete(
                    tx,
                    &flows.deleted,
                    &flows_named,
                    default_flow.as_deref(),
                    &mut log,
                )?;
            }
            outcome.changes = std::mem::take(&mut log.changes);
            outcome.created.sort();
            outcome.updated.sort();
            outcome.deleted.sort();
            if dry_run {
                return Err(Abort::DryRun(outcome));
            }
            if outcome.created.is_empty()
                && outcome.updated.is_empty()
                && outcome.deleted.is_empty()
                && outcome.changes.is_empty()
            {
                return Ok(outcome);
            }
            let mut event = caller.event("policies.apply", "policy", "");
            event.detail = detail(&outcome);
            let before = serde_json::Value::from(log.before);
            let after = serde_json::Value::from(log.after);
            let size = before.to_string().len() + after.to_string().len();
            if size <= MAX_AUDIT_BYTES {
                event.before = Some(before);
                event.after = Some(after);
            } else {
                event.after = Some(serde_json::json!({
                    "omitted": format!("{size} bytes of policies, over the {MAX_AUDIT_BYTES} kept"),
                    "created": outcome.created,
                    "updated": outcome.updated,
                    "deleted": outcome.deleted,
                    "others": outcome.changes.iter()
                        .map(|c| format!("{} {}:{}", c.change, c.kind, c.id))
                        .collect::<Vec<_>>(),
                }));
            }
            tx.audit(event)?;
            Ok(outcome)
        })
        .await;
    let (revision, outcome) = match written {
        Ok(written) => written,
        Err(Abort::DryRun(outcome)) => (live.view()?.revision(), outcome),
        Err(Abort::Failed(error)) => return Err(error),
    };
    let Outcome {
        created,
        updated,
        deleted,
        changes,
    } = outcome;
    Ok(pb::ApplyPoliciesResponse {
        created,
        updated,
        deleted,
        revision,
        changes,
    })
}

/// The audit event's detail: the policies' counts, then each other kind's that changed
/// (`created 1, updated 0, deleted 0; agent: updated 1`).
fn detail(outcome: &Outcome) -> String {
    let mut text = format!(
        "created {}, updated {}, deleted {}",
        outcome.created.len(),
        outcome.updated.len(),
        outcome.deleted.len()
    );
    let mut kinds: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for change in &outcome.changes {
        *kinds
            .entry(change.kind.as_str())
            .or_default()
            .entry(change.change.as_str())
            .or_default() += 1;
    }
    for (kind, counts) in kinds {
        let counts: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
        text.push_str(&format!("; {kind}: {}", counts.join(", ")));
    }
    text
}

/// Every policy in full, by id, from one view; with the agents, the settings and the groups
/// holding roles from the same view, and the approval flows (records outside the view) read
/// from the store.
pub(crate) async fn export(live: &live::Live) -> Result<pb::ExportPoliciesResponse> {
    let (flows, default) = live
        .blocking(|store| -> store::Result<_> { Ok((store.flows()?, store.default_flow()?)) })
        .await??;
    let view = live.view()?;
    let mut policies: Vec<pb::Policy> = view.policies().map(|p| convert::policy(p)).collect();
    policies.sort_by(|a, b| a.id.cmp(&b.id));
    let mut approval_flows: Vec<pb::ApprovalFlow> =
        flows.iter().map(crate::approvals::flows::flow).collect();
    approval_flows.sort_by(|a, b| a.id.cmp(&b.id));
    let mut group_roles: Vec<pb::GroupRoles> = view
        .groups()
        .filter(|g| !g.group.roles.is_empty())
        .map(|g| pb::GroupRoles {
            group_id: g.group.id.clone(),
            name: g.group.display_name.clone(),
            roles: convert::roles(&g.group.roles),
        })
        .collect();
    group_roles.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(pb::ExportPoliciesResponse {
        policies,
        revision: view.revision(),
        agents: view.agents().map(|a| crate::agents::agent(a)).collect(),
        approval_flows,
        default_approval_flow_id: default.unwrap_or_default(),
        settings: Some(crate::agents::settings(view.settings())),
        group_roles,
    })
}

/// What changed in the server's policies since the export.
fn policy_conflicts(
    base: &BTreeMap<String, Timestamp>,
    current: &BTreeMap<String, Policy>,
) -> Vec<String> {
    let current: Vec<(String, String, Timestamp)> = current
        .values()
        .map(|p| (p.id.clone(), p.name.clone(), p.updated_at))
        .collect();
    let mut conflicts = Vec::new();
    changed_since("policy", base, &current, &mut conflicts);
    conflicts
}

/// Refuses, naming what changed since the export, unless nothing did.
fn refuse_conflicts(mut conflicts: Vec<String>) -> Result<()> {
    if conflicts.is_empty() {
        return Ok(());
    }
    let more = conflicts.len().saturating_sub(MAX_NAMED);
    conflicts.truncate(MAX_NAMED);
    let mut message = format!(
        "the server changed since the export: {}",
        conflicts.join("; ")
    );
    if more > 0 {
        message.push_str(&format!(" (and {more} more)"));
    }
    message.push_str("; export again and redo your edits on it (nothing was written)");
    Err(Error::FailedPrecondition(message))
}
