//! Importing a whole model (a first load, a bulk sync) as one change.

use crate::change::{Change, Kind};
use crate::store::Store;
use crate::{Error, Result, codec, keys};
use pdp::{ApprovalFlow, Membership, Model};
use std::collections::{BTreeMap, HashSet};

/// What an import wrote: the model's records, all committed at `revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub revision: u64,
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
    pub policies: usize,
    pub agents: usize,
    pub flows: usize,
}

impl Store {
    /// Upserts a model in one change: users, groups, policies and agents replace those with the same
    /// id; each group in the model gets exactly the model's memberships of it; memberships of
    /// groups not in the model are added (or replace the same user's) and others of those groups
    /// stay. Nothing is deleted otherwise. The model's settings replace the stored ones (a
    /// model without settings has the defaults). `model.revision` is ignored.
    ///
    /// Everything is checked first and on any error nothing is written: ids valid and unique
    /// within the model, every membership naming a user and a group in the model or the store,
    /// agents' ids and aliases unique across the agents of the model and the store, every
    /// agent a policy selects registered in the model or the store. Policies may name users and
    /// groups that exist nowhere.
    pub fn import(&self, model: &Model) -> Result<ImportSummary> {
        self.import_with_flows(model, &[])
    }

    /// [`Store::import`], with approval flows (checked by the caller) written in the same
    /// change: each replaces the stored flow with its id.
    pub fn import_with_flows(
        &self,
        model: &Model,
        flows: &[ApprovalFlow],
    ) -> Result<ImportSummary> {
        let checked = Checked::new(model, flows)?;
        let revision = self.commit(|change| checked.stage(change))?;
        Ok(checked.summary(revision))
    }
}

impl crate::Tx<'_, '_> {
    /// [`Store::import_with_flows`] as this transaction's change, so that it commits with the
    /// transaction's audit event: it must be the transaction's only write (nothing written
    /// before it, nothing but [`crate::Tx::audit`] after).
    pub fn import(&mut self, model: &Model, flows: &[ApprovalFlow]) -> Result<ImportSummary> {
        let checked = Checked::new(model, flows)?;
        let revision = self.revision();
        checked.stage(self.change_for_import()?)?;
        Ok(checked.summary(revision))
    }
}

/// A model whose own invariants hold (ids valid and unique), memberships sorted by group.
struct Checked<'m> {
    model: &'m Model,
    flows: &'m [ApprovalFlow],
    users: HashSet<&'m str>,
    groups: HashSet<&'m str>,
    by_group: BTreeMap<&'m str, Vec<&'m Membership>>,
}

impl<'m> Checked<'m> {
    /// Checks what needs only the model, before taking the write lock.
    fn new(model: &'m Model, flows: &'m [ApprovalFlow]) -> Result<Checked<'m>> {
        unique(
            "approval flow",
            "approval flow id",
            flows.iter().map(|f| f.id.as_str()),
        )?;
        let users = unique("user", "user id", model.users.iter().map(|u| u.id.as_str()))?;
        let groups = unique(
            "group",
            "group id",
            model.groups.iter().map(|g| g.id.as_str()),
        )?;
        unique(
            "policy",
            "policy id",
            model.policies.iter().map(|p| p.id.as_str()),
        )?;
        unique(
            "agent",
            "agent id",
            model.agents.iter().map(|a| a.id.as_str()),
        )?;
        // Sorted, so an import writes, and reports a bad membership, in the same order every time.
        let mut by_group: BTreeMap<&str, Vec<&Membership>> = BTreeMap::new();
        for m in &model.memberships {
            keys::check_id("membership group id", &m.group_id)?;
            by_group.entry(m.group_id.as_str()).or_default().push(m);
        }
        Ok(Checked {
            model,
            flows,
            users,
            groups,
            by_group,
        })
    }

    fn summary(&self, revision: u64) -> ImportSummary {
        ImportSummary {
            revision,
            users: self.model.users.len(),
            groups: self.model.groups.len(),
            memberships: self.model.memberships.len(),
            policies: self.model.policies.len(),
            agents: self.model.agents.len(),
            flows: self.flows.len(),
        }
    }

    /// Checks what needs the stored state, then stages every record, under the write lock.
    fn stage(&self, change: &mut Change<'_>) -> Result<()> {
        let Checked {
            model,
            flows,
            users,
            groups,
            by_group,
        } = self;
        // The registry as the import leaves it: the store's agents, replaced by the model's.
        let mut agents: BTreeMap<String, pdp::Agent> = BTreeMap::new();
        for item in change.scan(keys::AGENT) {
            let (key, value) = item?;
            let id = keys::id_of(keys::AGENT, &key)?;
            agents.insert(id.to_owned(), codec::from_json("agent", id, &value)?);
        }
        for agent in &model.agents {
            agents.insert(agent.id.clone(), agent.clone());
        }
        for agent in &model.agents {
            crate::tx::check_agent(agent, agents.values().filter(|a| a.id != agent.id))?;
        }
        for policy in &model.policies {
            if let pdp::Agents::Only(ids) = &policy.agents {
                crate::tx::check_selector(policy, ids, |id| agents.contains_key(id))?;
            }
        }
        let known_user = |id: &str| users.contains(id);
        // Checked in full before the first record is staged, so a bad membership fails fast.
        let mut checked = Vec::with_capacity(by_group.len());
        for (group_id, members) in by_group {
            let in_model = groups.contains(group_id);
            if !in_model && !change.exists(&keys::group(group_id))? {
                let user_id = members.first().map_or("", |m| m.user_id.as_str());
                return Err(Error::Dangling {
                    group_id: (*group_id).to_owned(),
                    user_id: user_id.to_owned(),
                    missing: "group",
                });
            }
            let members = change.check_members(group_id, members.iter().copied(), known_user)?;
            checked.push((*group_id, in_model, members));
        }

        for user in &model.users {
            let value = codec::to_json("user", user)?;
            change.put(Kind::User, keys::user(&user.id), &value)?;
        }
        for group in &model.groups {
            let value = codec::to_json("group", group)?;
            change.put(Kind::Group, keys::group(&group.id), &value)?;
            if !by_group.contains_key(group.id.as_str()) {
                change.replace_members(&group.id, &BTreeMap::new())?;
            }
        }
        for (group_id, in_model, members) in &checked {
            if *in_model {
                change.replace_members(group_id, members)?;
            } else {
                for m in members.values() {
                    let old = change.get(&keys::member(group_id, &m.user_id))?;
                    change.put_membership(m, old)?;
                }
            }
        }
        for agent in &model.agents {
            let value = codec::to_json("agent", agent)?;
            change.put(Kind::Agent, keys::agent(&agent.id), &value)?;
        }
        for policy in &model.policies {
            let value = codec::to_json("policy", policy)?;
            change.put(Kind::Policy, keys::policy(&policy.id), &value)?;
        }
        let settings = codec::to_json("settings", &model.settings)?;
        change.put_record(keys::SETTINGS.to_vec(), &settings)?;
        for flow in *flows {
            let value = codec::to_json("approval flow", flow)?;
            change.put_record(keys::flow(&flow.id), &value)?;
        }
        Ok(())
    }
}

/// Checks ids (`field` names them) and that none repeats.
fn unique<'m>(
    kind: &'static str,
    field: &'static str,
    ids: impl Iterator<Item = &'m str>,
) -> Result<HashSet<&'m str>> {
    let mut seen = HashSet::new();
    for id in ids {
        keys::check_id(field, id)?;
        if !seen.insert(id) {
            return Err(Error::Duplicate {
                kind,
                id: id.to_owned(),
            });
        }
    }
    Ok(seen)
}
