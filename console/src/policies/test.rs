//! "Test this policy": a question (user, agent, tool, arguments) asked of the decision engine
//! on the policy's connector, explained, and not recorded (the console's own decisions are
//! not the gateway's). It is a read, so the box is a GET form: the answer has an address.

use crate::Console;
use crate::users::decision_badge;
use maud::{Markup, html};
use pb::decision_service_server::DecisionService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// The longest arguments JSON the box takes.
const MAX_ARGUMENTS: usize = 16 * 1024;

/// The box's fields, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct Question {
    /// `1` when the box was submitted (a plain visit to the page asks nothing).
    #[serde(default)]
    test: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    tool: String,
    /// A JSON object; empty for none.
    #[serde(default)]
    arguments: String,
}

impl Question {
    pub fn asked(&self) -> bool {
        self.test == "1"
    }
}

/// Why there is no answer: the field at fault (`""` for the question as a whole) and why.
#[derive(Debug)]
pub struct Unanswered {
    field: &'static str,
    message: String,
}

pub async fn run(
    console: &Console,
    policy: &pb::Policy,
    question: &Question,
    revision: u64,
) -> Result<pb::CheckResponse, Unanswered> {
    let arguments = arguments(&question.arguments)?;
    let request = pb::CheckRequest {
        user: question.user.trim().to_owned(),
        agent: question.agent.trim().to_owned(),
        connector: policy.connector.clone(),
        tool: question.tool.trim().to_owned(),
        attributes: Default::default(),
        // Answered from the policy as this page shows it, or newer.
        min_revision: revision,
        explain: true,
        authentication: None,
        arguments,
        approval_id: String::new(),
    };
    console
        .services()
        .decisions
        .check(tonic::Request::new(request))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| {
            let message = status.message().to_owned();
            let field = ["user", "agent", "tool", "arguments"]
                .into_iter()
                .find(|f| message.starts_with(&format!("{f}:")))
                .unwrap_or("");
            Unanswered { field, message }
        })
}

/// The arguments JSON as a protobuf `Struct`: absent when empty, refused unless an object.
fn arguments(text: &str) -> Result<Option<prost_types::Struct>, Unanswered> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_ARGUMENTS {
        return Err(Unanswered {
            field: "arguments",
            message: format!("arguments: longer than {} KiB", MAX_ARGUMENTS / 1024),
        });
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => Ok(Some(pdp_service::json_to_struct(&object))),
        Ok(_) => Err(Unanswered {
            field: "arguments",
            message: "arguments: write a JSON object, such as {\"repo\": \"acme/web\"}".to_owned(),
        }),
        Err(e) => Err(Unanswered {
            field: "arguments",
            message: format!("arguments: not JSON: {e}"),
        }),
    }
}

/// The box, and the answer when there is one.
pub fn section(
    policy: &pb::Policy,
    question: &Question,
    tested: Option<&Result<pb::CheckResponse, Unanswered>>,
) -> Markup {
    let asked = question.asked();
    let tool = if asked {
        question.tool.as_str()
    } else {
        policy.tools.first().map_or("", String::as_str)
    };
    let problem = |field: &str| match tested {
        Some(Err(unanswered)) if unanswered.field == field => Some(unanswered.message.as_str()),
        _ => None,
    };
    html! {
        section.card #test aria-labelledby="test-heading" {
            h2 #test-heading { "Test this policy" }
            p.muted { "Asks the decision engine about a call on " code { (policy.connector) } ", explained; the answer is not recorded in the decision log." }
            form method="get" action=(format!("{}#test", super::href(&policy.id))) {
                input type="hidden" name="test" value="1";
                div.field {
                    label for="test-user" { "User: id, email or user name" }
                    input #test-user type="text" name="user" value=(question.user) required maxlength="1000";
                    (message(problem("user"), "test-user"))
                }
                div.field {
                    label for="test-agent" { "Agent: id or alias (empty for an unregistered agent)" }
                    input #test-agent type="text" name="agent" value=(question.agent) maxlength="256";
                    (message(problem("agent"), "test-agent"))
                }
                div.field {
                    label for="test-tool" { "Tool of " (policy.connector) }
                    input #test-tool type="text" name="tool" value=(tool) required maxlength="256";
                    (message(problem("tool"), "test-tool"))
                }
                div.field {
                    label for="test-arguments" { "Arguments: a JSON object (optional)" }
                    textarea #test-arguments name="arguments" rows="2" spellcheck="false" { (question.arguments) }
                    (message(problem("arguments"), "test-arguments"))
                }
                (message(problem(""), "test"))
                button type="submit" { "Test" }
            }
            @if let Some(Ok(answer)) = tested {
                (answer_view(policy, answer))
            }
        }
    }
}

fn message(text: Option<&str>, id: &str) -> Markup {
    html! {
        @if let Some(text) = text {
            p.error id=(format!("{id}-error")) role="alert" { (text) }
        }
    }
}

fn answer_view(policy: &pb::Policy, answer: &pb::CheckResponse) -> Markup {
    html! {
        h3 { "Answer" }
        dl.facts #answer {
            dt { "Decision" } dd { (decision_badge(answer.decision())) }
            dt { "Reason" } dd { code { (portcullis_proto::names::reason(answer.reason())) } }
            dt { "Deciding policy" } dd {
                @if answer.policy_id.is_empty() {
                    "None"
                } @else if answer.policy_id == policy.id {
                    "This policy"
                } @else {
                    a href=(super::href(&answer.policy_id)) { code { (answer.policy_id) } }
                }
            }
            @if let Some(step_up) = &answer.step_up {
                dt { "Step-up requirement" } dd { (super::step_up_summary(step_up)) }
            }
            @if !answer.approval_flow_id.is_empty() {
                dt { "Approval flow" } dd { code { (answer.approval_flow_id) } }
            }
            dt { "Revision" } dd { (answer.revision) }
        }
        table {
            caption { "Every policy of " code { (policy.connector) } ", as the engine weighed them" }
            thead { tr {
                th scope="col" { "Policy" }
                th scope="col" { "Action" }
                th scope="col" { "Outcome" }
                th scope="col" { "Deciding" }
            } }
            tbody {
                @for row in &answer.explanation {
                    tr {
                        td {
                            a href=(super::href(&row.policy_id)) { (row.policy_name) }
                            @if row.policy_id == policy.id { " " span.muted { "(this policy)" } }
                        }
                        td { (decision_badge(row.action())) }
                        td {
                            (outcome(row.outcome()))
                            @if !row.detail.is_empty() { ": " (row.detail) }
                        }
                        td { (if row.deciding { "Yes" } else { "" }) }
                    }
                }
                @if answer.explanation.is_empty() {
                    tr { td colspan="4" { "No policy was weighed." } }
                }
            }
        }
    }
}

fn outcome(outcome: pb::MatchOutcome) -> &'static str {
    match outcome {
        pb::MatchOutcome::Matched => "Matched",
        pb::MatchOutcome::Disabled => "Disabled",
        pb::MatchOutcome::ToolNotCovered => "Tool not covered",
        pb::MatchOutcome::ScopeNotCovered => "User not covered",
        pb::MatchOutcome::ConditionFailed => "Condition not met",
        pb::MatchOutcome::UserDenied => "Not reached: the user or agent was denied first",
        pb::MatchOutcome::AgentNotCovered => "Agent not covered",
        pb::MatchOutcome::ConditionError => "Condition error",
        pb::MatchOutcome::StepUpMet => "Matched, step-up met",
        pb::MatchOutcome::Unspecified => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_must_be_a_json_object() {
        assert!(super::arguments("").unwrap().is_none());
        let parsed = super::arguments(r#"{"repo": "acme/web", "n": [1, true]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.fields.len(), 2);
        assert_eq!(super::arguments("[1]").unwrap_err().field, "arguments");
        assert_eq!(super::arguments("{").unwrap_err().field, "arguments");
    }
}
