//! The agents section of ApplyPolicies: the registry becomes the request's, each agent checked
//! as CreateAgent and UpdateAgent check it.

use super::{Log, renamed, versions};
use crate::agents::{MAX_AGENTS, bounded_name, check_name, check_scope, check_unique, scope_from};
use crate::{Error, Result, audit};
use pdp::{Agent, Timestamp};
use portcullis_proto::v1 as pb;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use store::Tx;

/// The section, checked for shape.
pub(super) struct Agents {
    /// The position in the request, and the agent (timestamps unset).
    wanted: Vec<(usize, Agent)>,
    base: BTreeMap<String, Timestamp>,
}

/// `agents[i]`, the name errors use.
fn field(i: usize) -> String {
    format!("agents[{i}]")
}

pub(super) fn prepare(section: pb::ApplyAgents) -> Result<Agents> {
    let pb::ApplyAgents { agents, expected } = section;
    if agents.len() > MAX_AGENTS {
        return Err(Error::invalid(
            "agents",
            format!("{} agents, the limit is {MAX_AGENTS}", agents.len()),
        ));
    }
    let base = versions("agents.expected", expected, MAX_AGENTS, &|field, id| {
        check_name(field, id)
    })?;
    let mut wanted = Vec::with_capacity(agents.len());
    let mut ids = HashSet::new();
    for (i, wire) in agents.into_iter().enumerate() {
        let agent = from_wire(wire).map_err(|e| renamed("agent", &field(i), e))?;
        if !ids.insert(agent.id.clone()) {
            return Err(Error::invalid(
                format!("{}.id", field(i)),
                format!("`{}` is listed twice", agent.id),
            ));
        }
        wanted.push((i, agent));
    }
    Ok(Agents { wanted, base })
}

/// The checks CreateAgent runs on a request's agent, `enabled` kept as sent.
fn from_wire(wire: pb::Agent) -> Result<Agent> {
    let pb::Agent {
        id,
        display_name,
        vendor,
        aliases,
        enabled,
        scope,
        created_at: _,
        updated_at: _,
    } = wire;
    check_name("agent.id", &id)?;
    bounded_name("agent.display_name", &display_name, true)?;
    bounded_name("agent.vendor", &vendor, false)?;
    Ok(Agent {
        id,
        display_name: display_name.trim().to_owned(),
        vendor: vendor.trim().to_owned(),
        aliases: crate::agents::aliases_from(aliases)?,
        enabled,
        scope: scope_from("agent.scope", scope)?,
        created_at: Timestamp::default(),
        updated_at: Timestamp::default(),
    })
}

/// What changed in the registry since the export.
pub(super) fn conflicts(tx: &Tx<'_, '_>, agents: &Agents, out: &mut Vec<String>) -> Result<()> {
    let current: Vec<(String, String, Timestamp)> = tx
        .agents()?
        .into_iter()
        .map(|a| (a.id, a.display_name, a.updated_at))
        .collect();
    super::changed_since("agent", &agents.base, &current, out);
    Ok(())
}

/// Creates and updates the listed agents; returns the ids of those to delete (after the
/// policies, which must no longer select them).
pub(super) fn upsert(
    tx: &mut Tx<'_, '_>,
    agents: Agents,
    now: Timestamp,
    log: &mut Log,
) -> Result<BTreeSet<String>> {
    let current: BTreeMap<String, Agent> = tx
        .agents()?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let listed: HashSet<String> = agents.wanted.iter().map(|(_, a)| a.id.clone()).collect();
    let mut count = current.len();
    // Checked against the registry as the file leaves it, so the refusal names the file's
    // entry (the store checks the same as it writes).
    let leaving: Vec<Agent> = agents.wanted.iter().map(|(_, a)| a.clone()).collect();
    for (i, wanted) in agents.wanted {
        let at = |e: Error| renamed("agent", &field(i), e);
        let scope_at = |e: Error| renamed("agent", &format!("{}.scope", field(i)), e);
        check_unique(&wanted, &leaving).map_err(at)?;
        match current.get(&wanted.id) {
            Some(old) => {
                if wanted.enabled != old.enabled {
                    return Err(Error::FailedPrecondition(format!(
                        "{}.enabled: agent `{}` is {} on the server: the kill switch changes \
                         only through `portcullis admin agents enable|disable` (with a reason)",
                        field(i),
                        old.id,
                        if old.enabled { "enabled" } else { "disabled" }
                    )));
                }
                let new = Agent {
                    created_at: old.created_at,
                    updated_at: old.updated_at,
                    ..wanted
                };
                if new == *old {
                    continue;
                }
                let new = Agent {
                    updated_at: now,
                    ..new
                };
                if new.scope != old.scope {
                    check_scope(tx, &new.scope).map_err(scope_at)?;
                }
                tx.put_agent(&new).map_err(|e| at(e.into()))?;
                log.record(
                    "agent",
                    &new.id,
                    "updated",
                    audit::json(old),
                    audit::json(&new),
                );
            }
            None => {
                if !wanted.enabled {
                    return Err(Error::invalid(
                        format!("{}.enabled", field(i)),
                        "a new agent is enabled: create it, then disable it with \
                         `portcullis admin agents disable` (with a reason)",
                    ));
                }
                count += 1;
                if count > MAX_AGENTS {
                    return Err(Error::FailedPrecondition(format!(
                        "{}: the registry holds at most {MAX_AGENTS} agents",
                        field(i)
                    )));
                }
                let new = Agent {
                    created_at: now,
                    updated_at: now,
                    ..wanted
                };
                check_scope(tx, &new.scope).map_err(scope_at)?;
                tx.put_agent(&new).map_err(|e| at(e.into()))?;
                log.record("agent", &new.id, "created", None, audit::json(&new));
            }
        }
    }
    Ok(current
        .into_keys()
        .filter(|id| !listed.contains(id))
        .collect())
}

/// Deletes the agents the file no longer lists (no policy selects them any more: checked with
/// the policies).
pub(super) fn delete(
    tx: &mut Tx<'_, '_>,
    deleted: &BTreeSet<String>,
    now: Timestamp,
    log: &mut Log,
) -> Result<()> {
    for id in deleted {
        let old = tx.agent(id)?.ok_or_else(|| Error::not_found("agent", id))?;
        let cleaned = tx.delete_agent(id, now)?;
        if let Some((policy, _)) = cleaned.first() {
            // The policies were checked first; this would be a bug, never a half change.
            return Err(Error::Internal(format!(
                "policy `{}` still selects deleted agent `{id}`",
                policy.id
            )));
        }
        log.record("agent", id, "deleted", audit::json(&old), None);
    }
    Ok(())
}
