//! The decision rule, evaluated on a [`Snapshot`]: the one place it lives.
//!
//! 1. Unknown user → Deny (`UnknownUser`); a reference several users share → Deny
//!    (`AmbiguousUser`). Users are resolved by [`crate::identity::resolve`], the one rule.
//! 2. Locked user → Deny (`UserLocked`); inactive user → Deny (`UserInactive`).
//! 3. Candidates: enabled policies of the request's connector that list its tool or cover all
//!    tools, whose scope covers the user and whose conditions all hold.
//! 4. No candidate → Deny (`NoMatchingPolicy`).
//! 5. Otherwise the most restrictive action wins; the deciding policy is the lowest id among
//!    those with that action.

use crate::identity::Resolved;
use crate::model::UserStatus;
use crate::model::{Action, Attributes, Authentication, StepUp, Timestamp};
use crate::snapshot::{Candidates, PolicyEntry, Snapshot, UserIdx};

/// One question: may `agent` call `connector`/`tool` for `user`?
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// A user reference: a user id, an identity-provider id, an email or a user name (see
    /// [`crate::identity`]).
    pub user: &'a str,
    pub agent: &'a str,
    pub connector: &'a str,
    pub tool: &'a str,
    pub attributes: &'a dyn Attributes,
    /// The rest of what the gateway knows of the call.
    pub context: Context<'a>,
}

/// What a request carries besides who and what: the user's authentication (for step-up), the
/// tool call's arguments (for conditions) and the time (the server's clock, an input so that
/// deciding stays deterministic).
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub authentication: Option<&'a Authentication>,
    /// The tool call's arguments, as JSON.
    pub arguments: Option<&'a Arguments>,
    pub now: Timestamp,
}

/// A tool call's arguments: a JSON object.
pub type Arguments = serde_json::Map<String, serde_json::Value>;

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Attribute values are left out on purpose: they may be sensitive.
        f.debug_struct("Request")
            .field("user", &self.user)
            .field("agent", &self.agent)
            .field("connector", &self.connector)
            .field("tool", &self.tool)
            .finish_non_exhaustive()
    }
}

/// Why the answer is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A policy decided; see [`Decision::policy_id`].
    Policy,
    NoMatchingPolicy,
    UserLocked,
    UserInactive,
    UnknownUser,
    /// The reference names several users (a shared email, say): only an id names one of them.
    AmbiguousUser,
    /// No registered agent has this id or alias, and the organisation denies unregistered
    /// agents.
    UnknownAgent,
    /// The agent is registered and disabled (the kill switch).
    AgentDisabled,
    /// The agent's scope does not cover the user.
    AgentNotAllowed,
    /// A Step up policy decided, and the request's authentication meets its requirement: the
    /// answer is Allow. See [`Decision::policy_id`].
    StepUpMet,
}

/// An answer. A deny is a value like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub action: Action,
    pub reason: Reason,
    /// The deciding policy's id, when `reason` is `Policy`.
    pub policy_id: Option<&'a str>,
    /// The id of the user the request's reference resolved to, when it resolved to one: what
    /// a decision is recorded under.
    pub user_id: Option<&'a str>,
    /// When the answer is Step up: what the deciding policy requires (`None` if it requires
    /// nothing a request could meet).
    pub step_up: Option<&'a StepUp>,
}

impl<'a> Decision<'a> {
    pub(crate) const fn deny(reason: Reason) -> Decision<'static> {
        Decision {
            action: Action::Deny,
            reason,
            policy_id: None,
            user_id: None,
            step_up: None,
        }
    }

    pub(crate) const fn for_user(self, user_id: Option<&'a str>) -> Decision<'a> {
        Decision { user_id, ..self }
    }
}

/// Why a policy did or did not apply to a request, for explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Matched,
    Disabled,
    ToolNotCovered,
    ScopeNotCovered,
    ConditionFailed,
    /// The user is unknown, locked or inactive: no policy is considered.
    UserDenied,
    /// The request's agent is not one the policy lists.
    AgentNotCovered,
    /// A condition could not be evaluated (see [`PolicyMatch::detail`]): the policy does not
    /// apply.
    ConditionError,
    /// A Step up policy that matched, whose requirement the request's authentication meets: it
    /// counts as an Allow.
    StepUpMet,
}

/// One policy of the request's connector, as an explained decision saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch<'a> {
    pub policy_id: &'a str,
    pub policy_name: &'a str,
    pub action: Action,
    pub outcome: Outcome,
    pub deciding: bool,
    /// Why, when the outcome needs more than its name (a condition's evaluation error).
    pub detail: Option<String>,
}

/// A tool the user may use through some agent, with a decision other than Deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTool<'a> {
    pub connector: &'a str,
    /// A tool name, or `*` for every tool of the connector that no policy names.
    pub tool: &'a str,
    pub action: Action,
    pub policy_id: &'a str,
    /// The answer depends on a condition over the call's arguments, which a listing cannot
    /// know: the tool may be allowed or not when called.
    pub conditional: bool,
}

/// The user as the rule sees it once they passed the status checks.
#[derive(Clone, Copy)]
struct Subject<'s> {
    idx: UserIdx,
    id: Option<&'s str>,
    groups: &'s [u32],
}

impl Snapshot {
    /// Decides one request. Deterministic, allocation-free on the common path.
    pub fn decide(&self, request: &Request<'_>) -> Decision<'_> {
        let subject = match self.subject(request.user) {
            Ok(subject) => subject,
            Err(denied) => return denied,
        };
        let Some(connector) = self.connector(request.connector) else {
            return Decision::deny(Reason::NoMatchingPolicy).for_user(subject.id);
        };
        let candidates = connector
            .by_tool
            .get(request.tool)
            .unwrap_or(&connector.all_tools);
        self.first_applicable(candidates, subject, request.attributes)
            .for_user(subject.id)
    }

    /// Decides a request and explains it: every policy of the request's connector, in id order,
    /// with whether it applied and why not. Off the hot path: it scans the connector's policies.
    pub fn explain(&self, request: &Request<'_>) -> (Decision<'_>, Vec<PolicyMatch<'_>>) {
        let decision = self.decide(request);
        let Some(connector) = self.connector(request.connector) else {
            return (decision, Vec::new());
        };
        let subject = self.subject(request.user).ok();
        let matches = connector
            .policies
            .iter()
            .filter_map(|&p| self.policy(p))
            .map(|policy| {
                let outcome = match subject {
                    None => Outcome::UserDenied,
                    Some(_) if !policy.enabled => Outcome::Disabled,
                    Some(_) if !policy.tools.covers(request.tool) => Outcome::ToolNotCovered,
                    Some(s) if !policy.covers(s.idx, s.groups) => Outcome::ScopeNotCovered,
                    Some(_) if !conditions_hold(policy, request.attributes) => {
                        Outcome::ConditionFailed
                    }
                    Some(_) => Outcome::Matched,
                };
                PolicyMatch {
                    policy_id: &policy.id,
                    policy_name: &policy.name,
                    action: policy.action,
                    outcome,
                    deciding: decision.policy_id == Some(&*policy.id),
                    detail: None,
                }
            })
            .collect();
        (decision, matches)
    }

    /// Every (connector, tool) the user may use with a decision other than Deny, by connector
    /// then tool name: what an MCP `tools/list` should show. Tools are those some policy names;
    /// an all-tools grant appears as tool `*`. Empty for an unknown, locked or inactive user.
    pub fn allowed_tools(
        &self,
        user: &str,
        agent: &str,
        connector: Option<&str>,
        attributes: &dyn Attributes,
        now: Timestamp,
    ) -> Vec<AllowedTool<'_>> {
        let _ = (agent, now);
        let Ok(subject) = self.subject(user) else {
            return Vec::new();
        };
        let mut allowed = Vec::new();
        for name in self.connector_names() {
            if connector.is_some_and(|c| c != &**name) {
                continue;
            }
            let Some(index) = self.connector(name) else {
                continue;
            };
            let tools = index
                .tool_names
                .iter()
                .filter_map(|tool| Some((&**tool, index.by_tool.get(tool)?)))
                .chain(std::iter::once(("*", &index.all_tools)));
            for (tool, candidates) in tools {
                let decision = self.first_applicable(candidates, subject, attributes);
                if let (Some(policy_id), true) =
                    (decision.policy_id, decision.action != Action::Deny)
                {
                    allowed.push(AllowedTool {
                        connector: name,
                        tool,
                        action: decision.action,
                        policy_id,
                        conditional: false,
                    });
                }
            }
        }
        allowed
    }

    /// Resolves the user and applies the status checks (steps 1 and 2).
    fn subject(&self, user: &str) -> Result<Subject<'_>, Decision<'_>> {
        let entry = match self.find_user(user) {
            Resolved::User(entry) => entry,
            Resolved::Ambiguous => return Err(Decision::deny(Reason::AmbiguousUser)),
            Resolved::Unknown => return Err(Decision::deny(Reason::UnknownUser)),
        };
        let id = self.user_id(entry.idx);
        match entry.status {
            UserStatus::Locked => Err(Decision::deny(Reason::UserLocked).for_user(id)),
            UserStatus::Inactive => Err(Decision::deny(Reason::UserInactive).for_user(id)),
            UserStatus::Active => Ok(Subject {
                idx: entry.idx,
                id,
                groups: self.groups_of(&entry),
            }),
        }
    }

    /// Steps 3 to 5: the applicable candidate of lowest rank (most restrictive, then lowest id).
    ///
    /// Only the posting lists of this user, of the user's groups and of all-users policies can
    /// hold a covering policy; each list's first rank whose conditions hold is its best, and the
    /// answer is the least of those.
    fn first_applicable(
        &self,
        candidates: &Candidates,
        subject: Subject<'_>,
        attributes: &dyn Attributes,
    ) -> Decision<'_> {
        let mut best = u32::MAX;
        let mut consider = |ranks: &[u32]| {
            for &rank in ranks {
                if rank >= best {
                    return;
                }
                let policy = candidates.order[rank as usize];
                if !candidates.conditional[rank as usize]
                    || self
                        .policy(policy)
                        .is_some_and(|p| conditions_hold(p, attributes))
                {
                    best = rank;
                    return;
                }
            }
        };
        consider(&candidates.all_users);
        if let Some(ranks) = candidates.by_user.get(&subject.idx) {
            consider(ranks);
        }
        if !candidates.by_group.is_empty() {
            for group in subject.groups {
                if let Some(ranks) = candidates.by_group.get(group) {
                    consider(ranks);
                }
            }
        }
        match candidates
            .order
            .get(best as usize)
            .and_then(|&p| self.policy(p))
        {
            Some(policy) => Decision {
                action: policy.action,
                reason: Reason::Policy,
                policy_id: Some(&policy.id),
                user_id: None,
                step_up: None,
            },
            None => Decision::deny(Reason::NoMatchingPolicy),
        }
    }
}

fn conditions_hold(policy: &PolicyEntry, attributes: &dyn Attributes) -> bool {
    policy.conditions.iter().all(|c| c.holds(attributes))
}
