//! The policy form's fields as typed ([`Draft`]): read from a submitted form or from a stored
//! policy, and turned into the policy the service is asked to write.

use super::refusal::Refusal;
use crate::Console;
use crate::call::Signed;
use crate::fields::Problems;
use crate::policies::ACTIONS;
use portcullis_proto::v1 as pb;

/// The form's fields as typed: what it shows again when the service refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Draft {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) connector: String,
    pub(super) all_tools: bool,
    /// Separated by commas or white space.
    pub(super) tools: String,
    pub(super) all_users: bool,
    /// Ids, emails or user names, separated by commas or white space.
    pub(super) users: String,
    /// Ids or names, one a line (names may hold spaces and commas).
    pub(super) groups: String,
    pub(super) all_agents: bool,
    pub(super) agents: Vec<String>,
    /// One of the form names in [`ACTIONS`].
    pub(super) action: String,
    pub(super) acr: String,
    pub(super) amr: String,
    /// Seconds; empty for none.
    pub(super) max_age: String,
    pub(super) approval_flow: String,
    /// `attribute in a, b` or `attribute not_in a, b`, one a line.
    pub(super) conditions: String,
    pub(super) expression: String,
    pub(super) enabled: bool,
}

impl Default for Draft {
    fn default() -> Draft {
        Draft {
            name: String::new(),
            description: String::new(),
            connector: String::new(),
            all_tools: false,
            tools: String::new(),
            all_users: false,
            users: String::new(),
            groups: String::new(),
            all_agents: true,
            agents: Vec::new(),
            action: "allow".to_owned(),
            acr: String::new(),
            amr: String::new(),
            max_age: String::new(),
            approval_flow: String::new(),
            conditions: String::new(),
            expression: String::new(),
            enabled: true,
        }
    }
}

impl Draft {
    /// The draft of a submitted form. Repeated fields (the agents' boxes) come as repeated
    /// pairs, which is why the form is read as pairs.
    pub(super) fn from_pairs(pairs: Vec<(String, String)>) -> Draft {
        let mut draft = Draft {
            all_agents: false,
            enabled: false,
            ..Draft::default()
        };
        for (name, value) in pairs {
            match name.as_str() {
                "name" => draft.name = value,
                "description" => draft.description = value,
                "connector" => draft.connector = value,
                "tools_mode" => draft.all_tools = value == "all",
                "tools" => draft.tools = value,
                "scope_mode" => draft.all_users = value == "all",
                "users" => draft.users = value,
                "groups" => draft.groups = value,
                "agents_mode" => draft.all_agents = value == "all",
                "agent" => draft.agents.push(value),
                "action" => draft.action = value,
                "acr" => draft.acr = value,
                "amr" => draft.amr = value,
                "max_age" => draft.max_age = value,
                "approval_flow" => draft.approval_flow = value,
                "conditions" => draft.conditions = value,
                "expression" => draft.expression = value,
                "enabled" => draft.enabled = value == "yes",
                _ => {}
            }
        }
        draft
    }

    pub(super) fn from_policy(policy: &pb::Policy) -> Draft {
        let scope = policy.scope.clone().unwrap_or_default();
        let step_up = policy.step_up.clone().unwrap_or_default();
        let action = ACTIONS
            .iter()
            .find(|(a, _, _)| *a == policy.action())
            .map_or("allow", |(_, name, _)| name);
        Draft {
            name: policy.name.clone(),
            description: policy.description.clone(),
            connector: policy.connector.clone(),
            all_tools: policy.all_tools,
            tools: policy.tools.join("\n"),
            all_users: scope.all_users,
            users: scope.user_ids.join("\n"),
            groups: scope.group_ids.join("\n"),
            all_agents: policy.agents.is_none(),
            agents: policy
                .agents
                .as_ref()
                .map(|a| a.agent_ids.clone())
                .unwrap_or_default(),
            action: action.to_owned(),
            acr: step_up.acr_values.join(" "),
            amr: step_up.amr_values.join(" "),
            max_age: if step_up.max_age > 0 {
                step_up.max_age.to_string()
            } else {
                String::new()
            },
            approval_flow: policy.approval_flow_id.clone(),
            conditions: policy
                .conditions
                .iter()
                .map(|c| format!("{} {} {}", c.attribute, c.operator, c.values.join(", ")))
                .collect::<Vec<_>>()
                .join("\n"),
            expression: policy.expression.clone(),
            enabled: policy.enabled,
        }
    }

    pub(super) fn action(&self) -> pb::PolicyAction {
        ACTIONS
            .iter()
            .find(|(_, name, _)| *name == self.action)
            .map_or(pb::PolicyAction::Unspecified, |(action, _, _)| *action)
    }

    /// The wire policy this draft asks for, its users and groups looked up by the service.
    /// The step-up fields count only with Step up and the flow only with Require approval, so
    /// what a hidden part of the form still holds changes nothing.
    pub(super) async fn policy(
        &self,
        console: &Console,
        signed: &Signed,
    ) -> Result<pb::Policy, Refusal> {
        let mut problems = Problems::none();
        let action = self.action();
        if action == pb::PolicyAction::Unspecified {
            problems.add("action", "choose an action".to_owned());
        }
        let step_up = if action == pb::PolicyAction::StepUp {
            let max_age = match self.max_age.trim() {
                "" => 0,
                seconds => seconds.parse::<u64>().unwrap_or_else(|_| {
                    problems.add(
                        "step_up",
                        format!("max age: `{seconds}` is not a whole number of seconds"),
                    );
                    0
                }),
            };
            let requirement = pb::StepUpRequirement {
                acr_values: words(&self.acr),
                amr_values: words(&self.amr),
                max_age,
            };
            let empty = requirement.acr_values.is_empty()
                && requirement.amr_values.is_empty()
                && requirement.max_age == 0;
            // Nothing entered: no requirement (the service documents it as never met).
            (!empty).then_some(requirement)
        } else {
            None
        };
        let conditions = conditions(&self.conditions).unwrap_or_else(|problem| {
            problems.add("conditions", problem);
            Vec::new()
        });
        let (user_ids, group_ids) = if self.all_users {
            (Vec::new(), Vec::new())
        } else {
            match self.scope(console, signed).await {
                Ok(ids) => ids,
                Err(Refusal::Problems(found)) => {
                    problems.extend(found);
                    (Vec::new(), Vec::new())
                }
                Err(failure) => return Err(failure),
            }
        };
        if !problems.is_empty() {
            return Err(Refusal::Problems(problems));
        }
        Ok(pb::Policy {
            id: String::new(),
            name: self.name.trim().to_owned(),
            description: self.description.trim().to_owned(),
            connector: self.connector.trim().to_owned(),
            all_tools: self.all_tools,
            tools: if self.all_tools {
                Vec::new()
            } else {
                words(&self.tools)
            },
            scope: Some(pb::PolicyScope {
                all_users: self.all_users,
                user_ids,
                group_ids,
            }),
            action: action as i32,
            approval_flow_id: if action == pb::PolicyAction::RequireApproval {
                self.approval_flow.clone()
            } else {
                String::new()
            },
            conditions,
            enabled: self.enabled,
            created_at: None,
            updated_at: None,
            agents: (!self.all_agents).then(|| pb::PolicyAgents {
                agent_ids: self.agents.clone(),
            }),
            step_up,
            expression: self.expression.trim().to_owned(),
        })
    }
}

/// Items separated by commas or white space.
pub(super) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Non-empty lines, trimmed.
pub(super) fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `attribute in a, b` / `attribute not_in a, b`, one a line.
pub(super) fn conditions(text: &str) -> Result<Vec<pb::PolicyCondition>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let mut parts = line.trim().splitn(3, char::is_whitespace);
            let attribute = parts.next().unwrap_or_default();
            let operator = parts.next().unwrap_or_default();
            let values: Vec<String> = parts
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            if !matches!(operator, "in" | "not_in") || values.is_empty() {
                return Err(format!(
                    "line {}: write `attribute in value, value` or `attribute not_in value`",
                    i + 1
                ));
            }
            Ok(pb::PolicyCondition {
                attribute: attribute.to_owned(),
                operator: operator.to_owned(),
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_comes_back_as_the_draft_that_makes_it() {
        let policy = pb::Policy {
            name: "n".into(),
            connector: "github".into(),
            tools: vec!["a".into(), "b".into()],
            scope: Some(pb::PolicyScope {
                all_users: false,
                user_ids: vec!["u1".into()],
                group_ids: vec!["g 1".into()],
            }),
            action: pb::PolicyAction::StepUp as i32,
            step_up: Some(pb::StepUpRequirement {
                acr_values: vec!["phr".into()],
                amr_values: vec![],
                max_age: 300,
            }),
            conditions: vec![pb::PolicyCondition {
                attribute: "env".into(),
                operator: "not_in".into(),
                values: vec!["prod".into(), "stage".into()],
            }],
            ..Default::default()
        };
        let draft = Draft::from_policy(&policy);
        assert_eq!(words(&draft.tools), ["a", "b"]);
        assert_eq!(lines(&draft.groups), ["g 1"]);
        assert_eq!(draft.action(), pb::PolicyAction::StepUp);
        assert_eq!(
            conditions(&draft.conditions).unwrap(),
            policy.conditions,
            "{}",
            draft.conditions
        );
    }

    #[test]
    fn a_malformed_condition_names_its_line() {
        let problem = conditions("env in prod\n\nenv is prod").unwrap_err();
        assert!(problem.starts_with("line 3:"), "{problem}");
        assert!(conditions("env in").is_err());
    }
}
