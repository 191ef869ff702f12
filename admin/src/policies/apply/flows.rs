//! The approval flows section of ApplyPolicies: the stored flows become the request's, each
//! checked as CreateApprovalFlow and UpdateApprovalFlow check it ([`check_flow`] against the
//! view, the users and groups it names again in the transaction).

use super::{Log, renamed, versions};
use crate::approvals::flows::{self, MAX_FLOWS, check_flow, check_named, flow_from};
use crate::{Error, Result, audit};
use pdp::approval::BUILTIN_FLOW_ID;
use pdp::{ApprovalFlow, Timestamp};
use portcullis_proto::v1 as pb;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use store::{Tx, View};

pub(super) struct Flows {
    /// The position in the request, the id asked for (`None`: a new one) and the checked flow.
    wanted: Vec<(usize, Option<String>, ApprovalFlow)>,
    base: BTreeMap<String, Timestamp>,
}

/// `approval_flows[i]`, the name errors use.
fn field(i: usize) -> String {
    format!("approval_flows[{i}]")
}

pub(super) fn prepare(section: pb::ApplyApprovalFlows, view: &View) -> Result<Flows> {
    let pb::ApplyApprovalFlows {
        flows: wires,
        expected,
    } = section;
    if wires.len() > MAX_FLOWS {
        return Err(Error::invalid(
            "approval_flows",
            format!("{} flows, the limit is {MAX_FLOWS}", wires.len()),
        ));
    }
    let base = versions(
        "approval_flows.expected",
        expected,
        MAX_FLOWS,
        &flows::check_id,
    )?;
    let mut wanted = Vec::with_capacity(wires.len());
    let mut ids = HashSet::new();
    for (i, wire) in wires.into_iter().enumerate() {
        let at = |e: Error| renamed("flow", &field(i), e);
        let id = Some(wire.id.clone()).filter(|id| !id.is_empty());
        if let Some(id) = &id {
            flows::check_id(&format!("{}.id", field(i)), id)?;
            if id == BUILTIN_FLOW_ID {
                return Err(Error::invalid(
                    format!("{}.id", field(i)),
                    format!("`{BUILTIN_FLOW_ID}` is the built-in flow, never stored: leave it out"),
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(Error::invalid(
                    format!("{}.id", field(i)),
                    format!("`{id}` is listed twice"),
                ));
            }
        }
        let flow = check_flow(view, &flow_from(wire).map_err(at)?).map_err(at)?;
        wanted.push((i, id, flow));
    }
    Ok(Flows { wanted, base })
}

/// What changed in the stored flows since the export.
pub(super) fn conflicts(tx: &Tx<'_, '_>, flows: &Flows, out: &mut Vec<String>) -> Result<()> {
    let current: Vec<(String, String, Timestamp)> = tx
        .flows()?
        .into_iter()
        .map(|f| (f.id, f.name, f.updated_at))
        .collect();
    super::changed_since("approval flow", &flows.base, &current, out);
    Ok(())
}

/// The flows as the apply leaves them: which ids exist afterwards, and which to delete (after
/// the policies and the default, which must no longer name them).
pub(super) struct Outcome {
    pub kept: HashSet<String>,
    pub deleted: BTreeSet<String>,
}

/// Creates and updates the listed flows.
pub(super) fn upsert(
    tx: &mut Tx<'_, '_>,
    flows: Flows,
    now: Timestamp,
    log: &mut Log,
) -> Result<Outcome> {
    let current: BTreeMap<String, ApprovalFlow> =
        tx.flows()?.into_iter().map(|f| (f.id.clone(), f)).collect();
    let mut kept = HashSet::new();
    let mut count = current.len();
    for (i, id, wanted) in flows.wanted {
        let at = |e: Error| renamed("flow", &field(i), e);
        match id.as_ref().and_then(|id| current.get(id)) {
            Some(old) => {
                kept.insert(old.id.clone());
                let new = ApprovalFlow {
                    id: old.id.clone(),
                    created_at: old.created_at,
                    updated_at: old.updated_at,
                    ..wanted
                };
                if new == *old {
                    continue;
                }
                let new = ApprovalFlow {
                    updated_at: now,
                    ..new
                };
                check_named(tx, &new).map_err(at)?;
                tx.put_flow(&new)?;
                log.record(
                    "approval_flow",
                    &new.id,
                    "updated",
                    audit::json(old),
                    audit::json(&new),
                );
            }
            None => {
                count += 1;
                if count > MAX_FLOWS {
                    return Err(Error::FailedPrecondition(format!(
                        "{}: at most {MAX_FLOWS} approval flows are stored",
                        field(i)
                    )));
                }
                let id = match id {
                    Some(id) => id,
                    None => flows::new_id()?,
                };
                // A new id is 64 random bits: a collision is all but impossible, but never
                // overwrite.
                if current.contains_key(&id) {
                    return Err(Error::Unavailable(format!(
                        "the new flow id `{id}` is taken; try again"
                    )));
                }
                let new = ApprovalFlow {
                    id,
                    created_at: now,
                    updated_at: now,
                    ..wanted
                };
                check_named(tx, &new).map_err(at)?;
                tx.put_flow(&new)?;
                kept.insert(new.id.clone());
                log.record("approval_flow", &new.id, "created", None, audit::json(&new));
            }
        }
    }
    let deleted = current
        .into_keys()
        .filter(|id| !kept.contains(id))
        .collect();
    Ok(Outcome { kept, deleted })
}

/// Deletes the flows the file no longer lists, unless a policy as the apply leaves them, or
/// the default flow, still names one.
pub(super) fn delete(
    tx: &mut Tx<'_, '_>,
    deleted: &BTreeSet<String>,
    named: &BTreeMap<String, String>,
    default: Option<&str>,
    log: &mut Log,
) -> Result<()> {
    for id in deleted {
        if let Some(policy) = named.get(id) {
            return Err(Error::FailedPrecondition(format!(
                "approval_flows: flow `{id}` is left out (deleted) but policy `{policy}` still \
                 names it: change the policy too, or keep the flow"
            )));
        }
        if default == Some(id.as_str()) {
            return Err(Error::FailedPrecondition(format!(
                "approval_flows: flow `{id}` is left out (deleted) but is the default flow: \
                 set another default in the settings too, or keep the flow"
            )));
        }
        let old = tx.flow(id)?;
        tx.delete_flow(id)?;
        log.record(
            "approval_flow",
            id,
            "deleted",
            old.as_ref().and_then(audit::json),
            None,
        );
    }
    Ok(())
}
