//! The decision rule, evaluated on a [`Snapshot`]: the one place it lives.
//!
//! 1. Unknown user → Deny (`UnknownUser`); a reference several users share → Deny
//!    (`AmbiguousUser`). Users are resolved by [`crate::identity::resolve`], the one rule.
//! 2. Locked user → Deny (`UserLocked`); inactive user → Deny (`UserInactive`).
//! 3. The agent, by exact id or alias (empty is unregistered): unregistered while the
//!    organisation denies unregistered agents → Deny (`UnknownAgent`); disabled → Deny
//!    (`AgentDisabled`); the user outside its scope → Deny (`AgentNotAllowed`).
//! 4. Candidates: enabled policies of the request's connector that list its tool or cover all
//!    tools, whose scope covers the user, whose agent selector covers the agent (an
//!    unregistered agent only "all agents"), whose conditions all hold and whose CEL condition
//!    evaluates to true (an error or a non-boolean: the policy does not apply).
//! 5. A Step up candidate whose requirement the request's authentication meets counts as an
//!    Allow.
//! 6. No candidate → Deny (`NoMatchingPolicy`). Otherwise the most restrictive action wins;
//!    the deciding policy is the lowest id among those with that action; the reason is
//!    `StepUpMet` when it is a met Step up policy, `Policy` otherwise.
//! 7. A `RequireApproval` answer becomes Allow (`Approved`, same deciding policy) when the
//!    request carries a usable [`Grant`] for exactly this call: the same user (by id), agent
//!    (a registered agent's id, whatever alias it arrived under), connector and tool, and
//!    unless the grant covers any arguments, the same [`arguments_digest`]. Anything more
//!    restrictive found above (a lock, a disabled agent, a Deny policy) still wins.

use crate::agents::Gate;
use crate::approval::{Grant, arguments_digest};
use crate::expression::{Input, UserFacts};
use crate::identity::{By, Resolved};
use crate::model::{Action, Attributes, Authentication, Mfa, StepUp, Timestamp, UserStatus};
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
    /// An approved request the caller found usable (approved, within its window, not used):
    /// what may turn a Require approval answer into an Allow.
    pub grant: Option<Grant<'a>>,
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
    /// A Require approval policy decided, and the request carries an approved request's grant
    /// for exactly this call: the answer is Allow. See [`Decision::policy_id`].
    Approved,
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
    /// When the deciding policy requires approval: the flow it names (`None`: the
    /// organisation's default flow).
    pub approval_flow: Option<&'a str>,
}

impl<'a> Decision<'a> {
    pub(crate) const fn deny(reason: Reason) -> Decision<'static> {
        Decision {
            action: Action::Deny,
            reason,
            policy_id: None,
            user_id: None,
            step_up: None,
            approval_flow: None,
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

/// The user and agent as the rule sees them once they passed steps 1 to 3.
#[derive(Clone, Copy)]
struct Subject<'s> {
    idx: UserIdx,
    id: Option<&'s str>,
    groups: &'s [u32],
    mfa: Mfa,
    /// The agent's canonical id; `None` for an unregistered agent.
    agent: Option<&'s str>,
}

/// How a listing of allowed tools treats conditions that read the call's arguments, which it
/// cannot know.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Deciding a real call: nothing is unknown.
    None,
    /// Such a condition holds.
    Holds,
    /// Such a condition does not hold.
    Fails,
}

/// Whether one candidate policy applies, and how.
enum Applies {
    No,
    Yes,
    /// A Step up policy whose requirement the request meets: an Allow.
    StepUpMet,
}

impl Snapshot {
    /// Decides one request. Deterministic, allocation-free on the common path.
    pub fn decide<'a>(&'a self, request: &Request<'a>) -> Decision<'a> {
        let subject = match self.subject(request.user, request.agent) {
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
        let decision = self.first_applicable(candidates, subject, request, Unknown::None);
        let decision = match request.context.grant {
            Some(grant) if decision.action == Action::RequireApproval => {
                approve(decision, grant, subject, request)
            }
            _ => decision,
        };
        decision.for_user(subject.id)
    }

    /// Decides a request and explains it: every policy of the request's connector, in id order,
    /// with whether it applied and why not. Off the hot path: it scans the connector's policies.
    pub fn explain<'a>(&'a self, request: &Request<'a>) -> (Decision<'a>, Vec<PolicyMatch<'a>>) {
        let decision = self.decide(request);
        let Some(connector) = self.connector(request.connector) else {
            return (decision, Vec::new());
        };
        let subject = self.subject(request.user, request.agent).ok();
        let matches = connector
            .policies
            .iter()
            .filter_map(|&p| self.policy(p))
            .map(|policy| {
                let mut detail = None;
                let outcome = match subject {
                    None => Outcome::UserDenied,
                    Some(_) if !policy.enabled => Outcome::Disabled,
                    Some(_) if !policy.tools.covers(request.tool) => Outcome::ToolNotCovered,
                    Some(s) if !policy.covers(s.idx, s.groups) => Outcome::ScopeNotCovered,
                    Some(s) if !policy.covers_agent(s.agent) => Outcome::AgentNotCovered,
                    Some(_) if !conditions_hold(policy, request.attributes) => {
                        Outcome::ConditionFailed
                    }
                    Some(s) => match self.expression_holds(policy, s, request, Unknown::None) {
                        Err(error) => {
                            detail = Some(error);
                            Outcome::ConditionError
                        }
                        Ok(false) => Outcome::ConditionFailed,
                        Ok(true) if step_up_met(policy, request) => Outcome::StepUpMet,
                        Ok(true) => Outcome::Matched,
                    },
                };
                PolicyMatch {
                    policy_id: &policy.id,
                    policy_name: &policy.name,
                    action: policy.action,
                    outcome,
                    deciding: decision.policy_id == Some(&*policy.id),
                    detail,
                }
            })
            .collect();
        (decision, matches)
    }

    /// Every (connector, tool) the user may use through `agent` with a decision other than
    /// Deny, by connector then tool name: what an MCP `tools/list` should show. Tools are those
    /// some policy names; an all-tools grant appears as tool `*`. Empty for an unknown, locked
    /// or inactive user, or an agent the gate refuses. A tool whose answer depends on a
    /// condition over the call's arguments is listed as `conditional`, with the answer the
    /// call may get that is not a Deny.
    pub fn allowed_tools(
        &self,
        user: &str,
        agent: &str,
        connector: Option<&str>,
        attributes: &dyn Attributes,
        now: Timestamp,
    ) -> Vec<AllowedTool<'_>> {
        let Ok(subject) = self.subject(user, agent) else {
            return Vec::new();
        };
        let request = Request {
            user,
            agent,
            connector: connector.unwrap_or(""),
            tool: "",
            attributes,
            context: Context {
                now,
                ..Context::default()
            },
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
                let request = Request {
                    connector: name,
                    tool,
                    ..request
                };
                let holds = self.first_applicable(candidates, subject, &request, Unknown::Holds);
                let fails = self.first_applicable(candidates, subject, &request, Unknown::Fails);
                let conditional = (holds.action, holds.policy_id, holds.reason)
                    != (fails.action, fails.policy_id, fails.reason);
                // The answer the call may get that is not a Deny, the less restrictive first.
                let shown = [holds, fails]
                    .into_iter()
                    .filter(|d| d.action != Action::Deny && d.policy_id.is_some())
                    .min_by_key(|d| d.action);
                if let Some(Decision {
                    action,
                    policy_id: Some(policy_id),
                    ..
                }) = shown
                {
                    allowed.push(AllowedTool {
                        connector: name,
                        tool,
                        action,
                        policy_id,
                        conditional,
                    });
                }
            }
        }
        allowed
    }

    /// Resolves the user and applies the status checks and the agent gate (steps 1 to 3).
    fn subject<'a>(&'a self, user: &'a str, agent: &str) -> Result<Subject<'a>, Decision<'a>> {
        let (entry, by) = match self.find_user(user) {
            Resolved::User(found) => found,
            Resolved::Ambiguous => return Err(Decision::deny(Reason::AmbiguousUser)),
            Resolved::Unknown => return Err(Decision::deny(Reason::UnknownUser)),
        };
        // A reference that is the id is the id: no lookup (a likely cache miss) on the hot path.
        let id = match by {
            By::Id => Some(user),
            By::Key => self.user_id(entry.idx),
        };
        match entry.status {
            UserStatus::Locked => return Err(Decision::deny(Reason::UserLocked).for_user(id)),
            UserStatus::Inactive => {
                return Err(Decision::deny(Reason::UserInactive).for_user(id));
            }
            UserStatus::Active => {}
        }
        let groups = self.groups_of(entry);
        let agent = match self.agent_index().gate(agent, entry.idx, groups) {
            Gate::Registered(agent) => Some(agent),
            Gate::Unregistered => None,
            Gate::UnknownAgent => return Err(Decision::deny(Reason::UnknownAgent).for_user(id)),
            Gate::Disabled => return Err(Decision::deny(Reason::AgentDisabled).for_user(id)),
            Gate::NotAllowed => {
                return Err(Decision::deny(Reason::AgentNotAllowed).for_user(id));
            }
        };
        Ok(Subject {
            idx: entry.idx,
            id,
            groups,
            mfa: entry.mfa,
            agent,
        })
    }

    /// Steps 4 to 6: the applicable candidate of lowest rank (most restrictive, then lowest
    /// id), with a met Step up counting as an Allow.
    ///
    /// Only the posting lists of this user, of the user's groups and of all-users policies can
    /// hold a covering policy; each list's first rank that applies (and is not a met Step up)
    /// is its best, and the answer is the least of those. Met Step up policies rank with the
    /// Step up ones, above every Allow, so each list is read past them, remembering the lowest
    /// id among them, which competes with the best Allow by id.
    fn first_applicable<'s>(
        &'s self,
        candidates: &Candidates,
        subject: Subject<'_>,
        request: &Request<'_>,
        unknown: Unknown,
    ) -> Decision<'s> {
        let mut best = u32::MAX;
        let mut met: Option<&'s PolicyEntry> = None;
        let mut consider = |ranks: &[u32]| {
            for &rank in ranks {
                if rank >= best {
                    return;
                }
                let Some(&idx) = candidates.order.get(rank as usize) else {
                    return;
                };
                if !candidates.conditional[rank as usize] {
                    best = rank;
                    return;
                }
                let Some(policy) = self.policy(idx) else {
                    continue;
                };
                match self.applies(policy, subject, request, unknown) {
                    Applies::No => {}
                    Applies::Yes => {
                        best = rank;
                        return;
                    }
                    Applies::StepUpMet => {
                        if met.is_none_or(|m| policy.id < m.id) {
                            met = Some(policy);
                        }
                    }
                }
            }
        };
        consider(&candidates.all_users);
        consider(candidates.by_user.get(subject.idx));
        if !candidates.by_group.is_empty() {
            for &group in subject.groups {
                consider(candidates.by_group.get(group));
            }
        }
        let best = candidates
            .order
            .get(best as usize)
            .and_then(|&p| self.policy(p));
        let decided = |policy: &'s PolicyEntry, reason| Decision {
            action: if reason == Reason::StepUpMet {
                Action::Allow
            } else {
                policy.action
            },
            reason,
            policy_id: Some(&policy.id),
            user_id: None,
            step_up: policy
                .step_up
                .as_deref()
                .filter(|_| reason == Reason::Policy),
            approval_flow: policy.approval_flow.as_deref(),
        };
        match (best, met) {
            (Some(best), _) if best.action > Action::Allow => decided(best, Reason::Policy),
            (Some(best), Some(met)) if met.id < best.id => decided(met, Reason::StepUpMet),
            (Some(best), _) => decided(best, Reason::Policy),
            (None, Some(met)) => decided(met, Reason::StepUpMet),
            (None, None) => Decision::deny(Reason::NoMatchingPolicy),
        }
    }

    /// Whether a candidate (its tool and scope already matched) applies to the request.
    fn applies(
        &self,
        policy: &PolicyEntry,
        subject: Subject<'_>,
        request: &Request<'_>,
        unknown: Unknown,
    ) -> Applies {
        if !policy.covers_agent(subject.agent)
            || !conditions_hold(policy, request.attributes)
            || self.expression_holds(policy, subject, request, unknown) != Ok(true)
        {
            return Applies::No;
        }
        if step_up_met(policy, request) {
            Applies::StepUpMet
        } else {
            Applies::Yes
        }
    }

    /// Evaluates the policy's CEL condition (true without one).
    fn expression_holds(
        &self,
        policy: &PolicyEntry,
        subject: Subject<'_>,
        request: &Request<'_>,
        unknown: Unknown,
    ) -> Result<bool, String> {
        let expression = match &policy.expression {
            None => return Ok(true),
            Some(Err(error)) => return Err(format!("does not compile: {error}")),
            Some(Ok(expression)) => expression,
        };
        match unknown {
            Unknown::Holds if expression.reads_arguments() => return Ok(true),
            Unknown::Fails if expression.reads_arguments() => return Ok(false),
            _ => {}
        }
        let mut groups: Vec<&str> = subject
            .groups
            .iter()
            .filter_map(|&g| self.group_id(g))
            .collect();
        groups.sort_unstable();
        let input = Input {
            request,
            user: UserFacts {
                id: subject.id.unwrap_or(""),
                email: self.user_email(subject.idx),
                groups: &groups,
                mfa: subject.mfa,
            },
        };
        expression.evaluate(&input)
    }
}

/// Step 7: a Require approval answer with a grant for exactly this call is an Allow.
fn approve<'s>(
    decision: Decision<'s>,
    grant: Grant<'_>,
    subject: Subject<'_>,
    request: &Request<'_>,
) -> Decision<'s> {
    let agent = subject.agent.unwrap_or(request.agent);
    let covers = subject.id == Some(grant.user_id)
        && agent == grant.agent
        && request.connector == grant.connector
        && request.tool == grant.tool
        && grant
            .arguments_digest
            .is_none_or(|digest| digest == arguments_digest(request.context.arguments));
    if covers {
        Decision {
            action: Action::Allow,
            reason: Reason::Approved,
            ..decision
        }
    } else {
        decision
    }
}

/// Whether the policy is a Step up policy whose requirement the request's authentication
/// meets at the request's time.
fn step_up_met(policy: &PolicyEntry, request: &Request<'_>) -> bool {
    policy.action == Action::StepUp
        && policy.step_up.as_ref().is_some_and(|s| {
            !s.is_empty() && s.met_by(request.context.authentication, request.context.now)
        })
}

fn conditions_hold(policy: &PolicyEntry, attributes: &dyn Attributes) -> bool {
    policy.conditions.iter().all(|c| c.holds(attributes))
}
