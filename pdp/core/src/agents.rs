//! The agent registry as decisions read it: agents by id and alias, each with its switch and
//! its scope resolved to dense indexes, and the organisation's setting for unregistered agents.
//!
//! A registry has a few dozen agents, so it is indexed whole: at a full build, and again (into
//! the overlay) whenever any agent or the setting changes.

use crate::model::{Agent, Settings, Unregistered};
use crate::snapshot::{GroupIdx, Key, Map, UserIdx, sorted_intersect};

/// The registry, indexed.
#[derive(Debug, Default)]
pub(crate) struct AgentIndex {
    /// Every id and alias → the agent's position in `entries`.
    pub(crate) by_name: Map<Key, u32>,
    pub(crate) entries: Vec<AgentEntry>,
    pub(crate) settings: Settings,
}

#[derive(Debug)]
pub(crate) struct AgentEntry {
    /// The canonical id: what policies' agent selectors name.
    pub(crate) id: Box<str>,
    pub(crate) enabled: bool,
    pub(crate) all_users: bool,
    /// Invariant: sorted.
    pub(crate) users: Box<[UserIdx]>,
    /// Invariant: sorted.
    pub(crate) groups: Box<[GroupIdx]>,
}

/// What the agent gate (step 3 of the rule) makes of a request's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate<'a> {
    /// A registered agent that may act for the user: policies see its canonical id.
    Registered(&'a str),
    /// Not registered, and the organisation allows that: only policies for all agents apply.
    Unregistered,
    UnknownAgent,
    Disabled,
    NotAllowed,
}

impl AgentIndex {
    /// Indexes `agents`, resolving the ids their scopes name with `user_idx` and `group_idx`
    /// (which hand out reserved indexes to ids the directory does not have). On an id or
    /// alias two agents share (which the store refuses), the first agent keeps it.
    pub(crate) fn build(
        agents: &[&Agent],
        settings: Settings,
        mut user_idx: impl FnMut(&str) -> UserIdx,
        mut group_idx: impl FnMut(&str) -> GroupIdx,
    ) -> AgentIndex {
        let mut by_name: Map<Key, u32> = Map::default();
        let mut entries = Vec::with_capacity(agents.len());
        let mut sorted: Vec<&Agent> = agents.to_vec();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for agent in sorted {
            let position = entries.len() as u32;
            if by_name.contains_key(agent.id.as_str()) {
                continue;
            }
            for name in std::iter::once(&agent.id).chain(&agent.aliases) {
                if !name.is_empty() {
                    by_name.entry(name.as_str().into()).or_insert(position);
                }
            }
            let mut users: Vec<UserIdx> = agent.scope.users.iter().map(|u| user_idx(u)).collect();
            users.sort_unstable();
            users.dedup();
            let mut groups: Vec<GroupIdx> =
                agent.scope.groups.iter().map(|g| group_idx(g)).collect();
            groups.sort_unstable();
            groups.dedup();
            entries.push(AgentEntry {
                id: agent.id.as_str().into(),
                enabled: agent.enabled,
                all_users: agent.scope.all_users,
                users: users.into(),
                groups: groups.into(),
            });
        }
        AgentIndex {
            by_name,
            entries,
            settings,
        }
    }

    /// The canonical id of the registered agent with this id or alias.
    pub(crate) fn canonical(&self, agent: &str) -> Option<&str> {
        let &i = self.by_name.get(agent)?;
        self.entries.get(i as usize).map(|e| &*e.id)
    }

    /// Step 3 of the rule for the request's `agent` (exact id or alias; empty is never
    /// registered) and the user (index and sorted groups).
    pub(crate) fn gate(&self, agent: &str, user: UserIdx, groups: &[GroupIdx]) -> Gate<'_> {
        // No registry (or no name): no lookup, not even the agent's hash.
        let entry = (!agent.is_empty() && !self.by_name.is_empty())
            .then(|| self.by_name.get(agent))
            .flatten()
            .and_then(|&i| self.entries.get(i as usize));
        match entry {
            None => match self.settings.unregistered_agents {
                Unregistered::Allow => Gate::Unregistered,
                Unregistered::Deny => Gate::UnknownAgent,
            },
            Some(entry) if !entry.enabled => Gate::Disabled,
            Some(entry)
                if !(entry.all_users
                    || entry.users.binary_search(&user).is_ok()
                    || sorted_intersect(&entry.groups, groups)) =>
            {
                Gate::NotAllowed
            }
            Some(entry) => Gate::Registered(&entry.id),
        }
    }
}
