//! Agents and the organisation's settings: list, get, create, update, delete (cleaning
//! policies' agent selectors), the kill switch, and the `unregistered_agents` setting.
//!
//! The store keeps the registry's invariants (ids and aliases unique across agents, selectors
//! naming registered agents); this module checks requests first so errors name the wire field,
//! and checks the scope names users and groups that exist, inside the transaction that writes.

use crate::auth::Caller;
use crate::convert::timestamp;
use crate::{Error, Result, audit, clock, convert, mask, text};
use live::Live;
use pdp::{Agent, Policy, Scope, Settings, Unregistered};
use portcullis_proto::v1 as pb;
use std::collections::HashSet;
use store::Tx;

/// Most aliases one agent may have.
pub(crate) const MAX_ALIASES: usize = 64;
/// Most agents the registry holds: every decision reads the whole registry's index.
pub(crate) const MAX_AGENTS: usize = 1000;
/// Longest display name or vendor, in characters.
const MAX_NAME: usize = 256;

/// The update mask paths UpdateAgent accepts.
const PATHS: [&str; 4] = ["display_name", "vendor", "aliases", "scope"];

/// An agent id or alias: present, bounded, no NUL, no surrounding whitespace (lookups are
/// exact, so a stray space would make a name no gateway sends).
pub(crate) fn check_name(field: &str, name: &str) -> Result<()> {
    text::id(field, name)?;
    if name.trim() != name {
        return Err(Error::invalid(
            field,
            format!("`{name}` has leading or trailing whitespace"),
        ));
    }
    Ok(())
}

pub(crate) fn bounded_name(field: &str, value: &str, required: bool) -> Result<()> {
    if required {
        text::required(field, value)?;
    }
    let chars = value.chars().count();
    if chars > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("{chars} characters, the limit is {MAX_NAME}"),
        ));
    }
    Ok(())
}

pub(crate) fn scope_from(field: &str, scope: Option<pb::PolicyScope>) -> Result<Scope> {
    let pb::PolicyScope {
        all_users,
        user_ids,
        group_ids,
    } = scope.ok_or_else(|| Error::invalid(field, "a scope is required"))?;
    let listed = !user_ids.is_empty() || !group_ids.is_empty();
    if all_users && listed {
        return Err(Error::invalid(
            field,
            "`all_users` covers everyone: do not list user or group ids with it",
        ));
    }
    if !all_users && !listed {
        return Err(Error::invalid(
            field,
            "covers no one: set `all_users` or list user or group ids",
        ));
    }
    for (list, ids) in [("user_ids", &user_ids), ("group_ids", &group_ids)] {
        let mut seen = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            let field = format!("{field}.{list}[{i}]");
            check_name(&field, id)?;
            if !seen.insert(id) {
                return Err(Error::invalid(field, format!("`{id}` is listed twice")));
            }
        }
    }
    Ok(Scope {
        all_users,
        users: user_ids,
        groups: group_ids,
    })
}

/// Checks, in the transaction, that the users and groups `scope` names exist.
pub(crate) fn check_scope(tx: &Tx<'_, '_>, scope: &Scope) -> Result<()> {
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

pub(crate) fn aliases_from(aliases: Vec<String>) -> Result<Vec<String>> {
    if aliases.len() > MAX_ALIASES {
        return Err(Error::invalid(
            "agent.aliases",
            format!("{} aliases, the limit is {MAX_ALIASES}", aliases.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, alias) in aliases.iter().enumerate() {
        let field = format!("agent.aliases[{i}]");
        check_name(&field, alias)?;
        if !seen.insert(alias.as_str()) {
            return Err(Error::invalid(field, format!("`{alias}` is listed twice")));
        }
    }
    Ok(aliases)
}

/// Refuses an id or alias another agent (or this one's id) already answers to, naming the
/// field; the store checks the same, this only gives the error its field.
pub(crate) fn check_unique(agent: &Agent, others: &[Agent]) -> Result<()> {
    for (i, alias) in agent.aliases.iter().enumerate() {
        if *alias == agent.id {
            return Err(Error::invalid(
                format!("agent.aliases[{i}]"),
                format!("`{alias}` is the agent's own id"),
            ));
        }
    }
    let names = std::iter::once(("agent.id".to_owned(), &agent.id)).chain(
        agent
            .aliases
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("agent.aliases[{i}]"), a)),
    );
    for (field, name) in names {
        if let Some(other) = others
            .iter()
            .find(|o| o.id != agent.id && (o.id == *name || o.aliases.contains(name)))
        {
            let taken_as = if other.id == *name {
                "the id"
            } else {
                "an alias"
            };
            return Err(Error::FailedPrecondition(format!(
                "{field}: `{name}` is already {taken_as} of agent `{}`",
                other.id
            )));
        }
    }
    Ok(())
}

pub(crate) fn agent(a: &Agent) -> pb::Agent {
    pb::Agent {
        id: a.id.clone(),
        display_name: a.display_name.clone(),
        vendor: a.vendor.clone(),
        aliases: a.aliases.clone(),
        enabled: a.enabled,
        scope: Some(pb::PolicyScope {
            all_users: a.scope.all_users,
            user_ids: a.scope.users.clone(),
            group_ids: a.scope.groups.clone(),
        }),
        created_at: Some(timestamp(a.created_at)),
        updated_at: Some(timestamp(a.updated_at)),
    }
}

pub(crate) async fn list(
    live: &Live,
    request: pb::ListAgentsRequest,
) -> Result<pb::ListAgentsResponse> {
    let pb::ListAgentsRequest {} = request;
    let view = live.view()?;
    Ok(pb::ListAgentsResponse {
        agents: view.agents().map(|a| agent(a)).collect(),
        revision: view.revision(),
    })
}

pub(crate) async fn get(live: &Live, request: pb::GetAgentRequest) -> Result<pb::GetAgentResponse> {
    let pb::GetAgentRequest { id } = request;
    check_name("id", &id)?;
    let view = live.view()?;
    let found = view
        .agent_named(&id)
        .ok_or_else(|| Error::not_found("agent", &id))?;
    Ok(pb::GetAgentResponse {
        agent: Some(agent(found)),
        revision: view.revision(),
    })
}

pub(crate) async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreateAgentRequest,
) -> Result<pb::CreateAgentResponse> {
    let pb::CreateAgentRequest { agent: wire } = request;
    let pb::Agent {
        id,
        display_name,
        vendor,
        aliases,
        enabled: _,
        scope,
        created_at: _,
        updated_at: _,
    } = wire.ok_or_else(|| Error::invalid("agent", "an agent is required"))?;
    check_name("agent.id", &id)?;
    bounded_name("agent.display_name", &display_name, true)?;
    bounded_name("agent.vendor", &vendor, false)?;
    let now = clock::now();
    let new = Agent {
        id,
        display_name: display_name.trim().to_owned(),
        vendor: vendor.trim().to_owned(),
        aliases: aliases_from(aliases)?,
        enabled: true,
        scope: scope_from("agent.scope", scope)?,
        created_at: now,
        updated_at: now,
    };
    let (revision, created) = live
        .write(move |tx| -> Result<Agent> {
            let others = tx.agents()?;
            if others.iter().any(|o| o.id == new.id) {
                return Err(Error::FailedPrecondition(format!(
                    "agent.id: agent `{}` already exists",
                    new.id
                )));
            }
            if others.len() >= MAX_AGENTS {
                return Err(Error::FailedPrecondition(format!(
                    "the registry holds {MAX_AGENTS} agents, the limit"
                )));
            }
            check_unique(&new, &others)?;
            check_scope(tx, &new.scope)?;
            tx.put_agent(&new)?;
            let mut event = caller.event("agent.create", "agent", &new.id);
            event.after = audit::json(&new);
            tx.audit(event)?;
            Ok(new)
        })
        .await?;
    Ok(pb::CreateAgentResponse {
        agent: Some(agent(&created)),
        revision,
    })
}

pub(crate) async fn update(
    live: &Live,
    caller: Caller,
    request: pb::UpdateAgentRequest,
) -> Result<pb::UpdateAgentResponse> {
    let pb::UpdateAgentRequest {
        agent: wire,
        update_mask,
    } = request;
    let pb::Agent {
        id,
        display_name,
        vendor,
        aliases,
        enabled: _,
        scope,
        created_at: _,
        updated_at: _,
    } = wire.ok_or_else(|| Error::invalid("agent", "an agent is required"))?;
    check_name("agent.id", &id)?;
    let (wanted, paths) = mask::fields(update_mask, &PATHS, "UpdateAgent", "display_name")?;
    let display_name = if wanted.contains("display_name") {
        bounded_name("agent.display_name", &display_name, true)?;
        Some(display_name.trim().to_owned())
    } else {
        None
    };
    let vendor = if wanted.contains("vendor") {
        bounded_name("agent.vendor", &vendor, false)?;
        Some(vendor.trim().to_owned())
    } else {
        None
    };
    let aliases = if wanted.contains("aliases") {
        Some(aliases_from(aliases)?)
    } else {
        None
    };
    let scope = if wanted.contains("scope") {
        Some(scope_from("agent.scope", scope)?)
    } else {
        None
    };
    let detail = paths.join(",");
    let (revision, updated) = live
        .write(move |tx| -> Result<Agent> {
            let before = tx
                .agent(&id)?
                .ok_or_else(|| Error::not_found("agent", &id))?;
            let mut after = before.clone();
            if let Some(display_name) = display_name {
                after.display_name = display_name;
            }
            if let Some(vendor) = vendor {
                after.vendor = vendor;
            }
            if let Some(aliases) = aliases {
                after.aliases = aliases;
            }
            if let Some(scope) = &scope {
                after.scope = scope.clone();
            }
            if after == before {
                return Ok(before);
            }
            after.updated_at = clock::now();
            check_unique(&after, &tx.agents()?)?;
            if scope.is_some() {
                check_scope(tx, &after.scope)?;
            }
            tx.put_agent(&after)?;
            let mut event = caller.event("agent.update", "agent", &id);
            event.detail = detail;
            event.before = audit::json(&before);
            event.after = audit::json(&after);
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::UpdateAgentResponse {
        agent: Some(agent(&updated)),
        revision,
    })
}

pub(crate) async fn delete(
    live: &Live,
    caller: Caller,
    request: pb::DeleteAgentRequest,
) -> Result<pb::DeleteAgentResponse> {
    let pb::DeleteAgentRequest { id } = request;
    check_name("id", &id)?;
    let (revision, cleaned) = live
        .write(move |tx| -> Result<Vec<Policy>> {
            let before = tx
                .agent(&id)?
                .ok_or_else(|| Error::not_found("agent", &id))?;
            let now = clock::now();
            let mut cleaned = Vec::new();
            for (policy, after) in tx.delete_agent(&id, now)? {
                let mut event = caller.event("policy.update", "policy", &after.id);
                event.detail = format!("agent `{id}` deleted");
                event.before = audit::json(&policy);
                event.after = audit::json(&after);
                tx.audit(event)?;
                cleaned.push(after);
            }
            let mut event = caller.event("agent.delete", "agent", &id);
            event.detail = if cleaned.is_empty() {
                "selected by no policy".into()
            } else {
                let ids: Vec<String> = cleaned.iter().map(|p| format!("`{}`", p.id)).collect();
                format!("removed from policies {}", ids.join(", "))
            };
            event.before = audit::json(&before);
            tx.audit(event)?;
            Ok(cleaned)
        })
        .await?;
    Ok(pb::DeleteAgentResponse {
        updated_policies: cleaned.iter().map(convert::policy).collect(),
        revision,
    })
}

pub(crate) async fn set_enabled(
    live: &Live,
    caller: Caller,
    request: pb::SetAgentEnabledRequest,
) -> Result<pb::SetAgentEnabledResponse> {
    let pb::SetAgentEnabledRequest {
        id,
        enabled,
        reason,
    } = request;
    check_name("id", &id)?;
    if !enabled {
        text::required("reason", &reason)?;
    }
    text::bounded("reason", &reason)?;
    let (revision, updated) = live
        .write(move |tx| crate::switch::set::<Agent>(tx, &caller, &id, enabled, reason))
        .await?;
    Ok(pb::SetAgentEnabledResponse {
        agent: Some(agent(&updated)),
        revision,
    })
}

pub(crate) fn settings(s: Settings) -> pb::Settings {
    pb::Settings {
        unregistered_agents: match s.unregistered_agents {
            Unregistered::Allow => pb::UnregisteredAgents::Allow,
            Unregistered::Deny => pb::UnregisteredAgents::Deny,
        }
        .into(),
    }
}

/// Wire settings as the model holds them; errors name `field.unregistered_agents`.
pub(crate) fn settings_from(field: &str, wire: Option<pb::Settings>) -> Result<Settings> {
    let pb::Settings {
        unregistered_agents,
    } = wire.ok_or_else(|| Error::invalid(field, "settings are required"))?;
    let unregistered_agents = match pb::UnregisteredAgents::try_from(unregistered_agents) {
        Ok(pb::UnregisteredAgents::Allow) => Unregistered::Allow,
        Ok(pb::UnregisteredAgents::Deny) => Unregistered::Deny,
        Ok(pb::UnregisteredAgents::Unspecified) => {
            return Err(Error::invalid(
                format!("{field}.unregistered_agents"),
                "must be ALLOW or DENY",
            ));
        }
        Err(_) => {
            return Err(Error::invalid(
                format!("{field}.unregistered_agents"),
                format!("unknown value {unregistered_agents}"),
            ));
        }
    };
    Ok(Settings {
        unregistered_agents,
    })
}

pub(crate) async fn get_settings(
    live: &Live,
    request: pb::GetSettingsRequest,
) -> Result<pb::GetSettingsResponse> {
    let pb::GetSettingsRequest {} = request;
    let view = live.view()?;
    Ok(pb::GetSettingsResponse {
        settings: Some(settings(view.settings())),
        revision: view.revision(),
    })
}

pub(crate) async fn update_settings(
    live: &Live,
    caller: Caller,
    request: pb::UpdateSettingsRequest,
) -> Result<pb::UpdateSettingsResponse> {
    let pb::UpdateSettingsRequest { settings: wire } = request;
    let new = settings_from("settings", wire)?;
    let (revision, stored) = live
        .write(move |tx| -> Result<Settings> {
            let before = tx.settings()?;
            if before == new {
                return Ok(before);
            }
            tx.put_settings(&new)?;
            let mut event = caller.event("settings.update", "settings", "settings");
            event.before = audit::json(&before);
            event.after = audit::json(&new);
            tx.audit(event)?;
            Ok(new)
        })
        .await?;
    Ok(pb::UpdateSettingsResponse {
        settings: Some(settings(stored)),
        revision,
    })
}
