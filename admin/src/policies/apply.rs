//! ApplyPolicies: policies as code. The server's whole set of policies becomes the request's, in
//! one transaction with one audit event, each policy validated exactly as CreatePolicy and
//! UpdatePolicy validate it, and only if the server still has the policies the export read.

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
    let rename = |field: String| match field.strip_prefix("policy") {
        Some(rest) => format!("policies[{i}]{rest}"),
        None => format!("policies[{i}].{field}"),
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
            field: format!("policies[{i}]"),
            kind,
            id,
        },
        other => other,
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
    } = request;
    if policies.len() > MAX_APPLY {
        return Err(Error::invalid(
            "policies",
            format!("{} policies, the limit is {MAX_APPLY}", policies.len()),
        ));
    }
    if expected.len() > MAX_APPLY {
        return Err(Error::invalid(
            "expected",
            format!("{} versions, the limit is {MAX_APPLY}", expected.len()),
        ));
    }
    let mut base: BTreeMap<String, Timestamp> = BTreeMap::new();
    for (i, version) in expected.into_iter().enumerate() {
        let pb::PolicyVersion { id, updated_at } = version;
        check_id(&format!("expected[{i}].id"), &id)?;
        let field = format!("expected[{i}].updated_at");
        let updated_at = updated_at.ok_or_else(|| Error::invalid(&field, "is required"))?;
        let updated_at = convert::from_timestamp(&field, &updated_at)?;
        if base.insert(id.clone(), updated_at).is_some() {
            return Err(Error::invalid(
                format!("expected[{i}].id"),
                format!("`{id}` is listed twice"),
            ));
        }
    }
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
            refuse_conflicts(&base, &current)?;
            let now = clock::now();
            let mut outcome = Outcome::default();
            let mut before = serde_json::Map::new();
            let mut after = serde_json::Map::new();
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
                    check_flow_named(tx, &policy).map_err(|e| at(index, e))?;
                    if current.contains_key(&policy.id) {
                        return Err(Error::Unavailable(format!(
                            "the new policy id `{}` is taken; try again",
                            policy.id
                        ))
                        .into());
                    }
                    tx.put_policy(&policy)?;
                    after.insert(policy.id.clone(), audit::json(&policy).into());
                    outcome.created.push(policy.id);
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
                    check_flow_named(tx, &new).map_err(|e| at(index, e))?;
                }
                tx.put_policy(&new)?;
                before.insert(id.clone(), audit::json(old).into());
                after.insert(id.clone(), audit::json(&new).into());
                outcome.updated.push(id);
            }
            for (id, old) in &current {
                if !kept.contains(id) {
                    tx.delete_policy(id)?;
                    before.insert(id.clone(), audit::json(old).into());
                    outcome.deleted.push(id.clone());
                }
            }
            outcome.created.sort();
            outcome.updated.sort();
            outcome.deleted.sort();
            if dry_run {
                return Err(Abort::DryRun(outcome));
            }
            if outcome.created.is_empty()
                && outcome.updated.is_empty()
                && outcome.deleted.is_empty()
            {
                return Ok(outcome);
            }
            let mut event = caller.event("policies.apply", "policy", "");
            event.detail = format!(
                "created {}, updated {}, deleted {}",
                outcome.created.len(),
                outcome.updated.len(),
                outcome.deleted.len()
            );
            let before = serde_json::Value::from(before);
            let after = serde_json::Value::from(after);
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
    } = outcome;
    Ok(pb::ApplyPoliciesResponse {
        created,
        updated,
        deleted,
        revision,
    })
}

/// Every policy in full, by id, from one view.
pub(crate) fn export(live: &live::Live) -> Result<pb::ExportPoliciesResponse> {
    let view = live.view()?;
    let mut policies: Vec<pb::Policy> = view.policies().map(|p| convert::policy(p)).collect();
    policies.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(pb::ExportPoliciesResponse {
        policies,
        revision: view.revision(),
    })
}

/// Refuses unless the server's policies are exactly those the export read, naming what
/// changed since.
fn refuse_conflicts(
    base: &BTreeMap<String, Timestamp>,
    current: &BTreeMap<String, Policy>,
) -> Result<()> {
    let mut conflicts = Vec::new();
    for (id, policy) in current {
        match base.get(id) {
            None => conflicts.push(format!("policy `{id}` ({}) was created", policy.name)),
            Some(at) if *at != policy.updated_at => {
                conflicts.push(format!("policy `{id}` ({}) was changed", policy.name));
            }
            Some(_) => {}
        }
    }
    for id in base.keys() {
        if !current.contains_key(id) {
            conflicts.push(format!("policy `{id}` was deleted"));
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    let more = conflicts.len().saturating_sub(MAX_NAMED);
    conflicts.truncate(MAX_NAMED);
    let mut message = format!(
        "the server's policies changed since the export: {}",
        conflicts.join("; ")
    );
    if more > 0 {
        message.push_str(&format!(" (and {more} more)"));
    }
    message.push_str("; export again and redo your edits on it (nothing was written)");
    Err(Error::FailedPrecondition(message))
}
