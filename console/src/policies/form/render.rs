//! The policy form as HTML: the fields, the scope, agent, action, step-up, approval-flow and
//! condition pickers, and each refusal next to the field it names.

use super::draft::Draft;
use super::{Choices, Mode};
use crate::call::Signed;
use crate::fields::Problems;
use crate::layout;
use crate::policies::{ACTIONS, SECTION, href};
use crate::view;
use maud::{Markup, html};

/// The form page of `mode`, showing `draft` and `problems`, offering `choices`.
pub(super) fn page(
    signed: &Signed,
    mode: Mode<'_>,
    draft: &Draft,
    problems: &Problems,
    choices: &Choices,
) -> Markup {
    let (title, action, cancel) = match mode {
        Mode::New => (
            "New policy".to_owned(),
            SECTION.to_owned(),
            SECTION.to_owned(),
        ),
        Mode::Edit(id) => (format!("Edit {}", draft.name), href(id), href(id)),
    };
    let content = html! {
        h1 { (title) }
        (problems.above())
        @if !problems.is_empty() {
            p.visually-hidden role="alert" { "The policy was not saved: see the messages by the fields." }
        }
        form.card.policy-form method="post" action=(action) {
            input type="hidden" name="csrf" value=(signed.csrf());
            (problems.text("name", "Name", &draft.name, true, 256))
            (problems.text("description", "Description", &draft.description, false, 1024))
            (problems.text("connector", "Connector (for example github)", &draft.connector, true, 128))

            fieldset {
                legend { "Tools" }
                (radio("tools_mode", "all", "Every tool of the connector", draft.all_tools))
                (radio("tools_mode", "listed", "These tools", !draft.all_tools))
                div.field {
                    label for="tools" { "Tools (separated by commas or spaces)" }
                    textarea #tools name="tools" rows="2" aria-describedby=[problems.described_by("tools")] { (draft.tools) }
                    (problems.under("tools"))
                }
            }

            fieldset {
                legend { "Who it applies to" }
                (radio("scope_mode", "all", "All users", draft.all_users))
                (radio("scope_mode", "listed", "These users and groups", !draft.all_users))
                div.field {
                    label for="users" { "Users: ids, emails or user names (separated by commas or spaces)" }
                    textarea #users name="users" rows="2" { (draft.users) }
                }
                div.field {
                    label for="groups" { "Groups: ids or names (one a line)" }
                    textarea #groups name="groups" rows="2" aria-describedby=[problems.described_by("scope")] { (draft.groups) }
                    (problems.under("scope"))
                }
            }

            fieldset {
                legend { "Agents" }
                (radio("agents_mode", "all", "Every agent, registered or not", draft.all_agents))
                (radio("agents_mode", "listed", "Only these registered agents", !draft.all_agents))
                ul.choices {
                    @for (i, agent) in choices.agents.iter().enumerate() {
                        li {
                            input id=(format!("agent-{i}")) type="checkbox" name="agent" value=(agent.id) checked[draft.agents.contains(&agent.id)];
                            label.inline for=(format!("agent-{i}")) {
                                (agent.display_name) " " span.muted { "(" (agent.id) ")" }
                                @if !agent.enabled { " " (view::badge("disabled", "Disabled")) }
                            }
                        }
                    }
                    // An agent the policy lists that is no longer offered stays selected.
                    @for (i, id) in draft.agents.iter().filter(|id| !choices.agents.iter().any(|a| &a.id == *id)).enumerate() {
                        li {
                            input id=(format!("agent-gone-{i}")) type="checkbox" name="agent" value=(id) checked;
                            label.inline for=(format!("agent-gone-{i}")) { (id) " " span.muted { "(not registered)" } }
                        }
                    }
                }
                (problems.under("agents"))
            }

            div.field {
                label for="action" { "Action" }
                select #action name="action" {
                    @for (_, name, label) in ACTIONS {
                        option value=(name) selected[draft.action == name] { (label) }
                    }
                }
                (problems.under("action"))
            }

            fieldset.when-step-up {
                legend { "Step-up requirement (with Step up)" }
                p.muted { "What the user's sign-in must show for the call to be allowed; empty for a step-up that is never met." }
                div.field {
                    label for="acr" { "acr: one of (separated by spaces)" }
                    input #acr type="text" name="acr" value=(draft.acr);
                }
                div.field {
                    label for="amr" { "amr: all of (separated by spaces)" }
                    input #amr type="text" name="amr" value=(draft.amr);
                }
                div.field {
                    label for="max_age" { "Max age: signed in at most this many seconds ago" }
                    input #max_age type="text" inputmode="numeric" name="max_age" value=(draft.max_age);
                }
                (problems.under("step_up"))
            }

            div.field.when-approval {
                label for="approval_flow" { "Approval flow (with Require approval)" }
                select #approval_flow name="approval_flow" {
                    option value="" selected[draft.approval_flow.is_empty()] {
                        "The default flow"
                        @if !choices.default_flow.is_empty() { " (" (choices.default_flow) ")" }
                    }
                    @for flow in &choices.flows {
                        option value=(flow.id) selected[draft.approval_flow == flow.id] { (flow.name) " (" (flow.id) ")" }
                    }
                }
                (problems.under("approval_flow"))
            }

            div.field {
                label for="expression" { "Condition in CEL over request, user and now (empty for none)" }
                textarea #expression name="expression" rows="3" spellcheck="false"
                    placeholder=r#"request.arguments.repo.startsWith("acme/")"#
                    aria-invalid=[problems.of("expression").map(|_| "true")]
                    aria-describedby=[problems.described_by("expression")] { (draft.expression) }
                (problems.under("expression"))
            }
            div.field {
                label for="conditions" { "Attribute conditions: attribute in a, b / attribute not_in a, b (one a line)" }
                textarea #conditions name="conditions" rows="2" spellcheck="false" { (draft.conditions) }
                (problems.under("conditions"))
            }
            @if matches!(mode, Mode::New) {
                div.field {
                    input #enabled type="checkbox" name="enabled" value="yes" checked[draft.enabled];
                    label.inline for="enabled" { " Enabled: applies from the next decision on" }
                }
            }
            button type="submit" { (if matches!(mode, Mode::New) { "Create policy" } else { "Save policy" }) }
            " "
            a.button.secondary href=(cancel) { "Cancel" }
        }
    };
    layout::page(signed, SECTION, &title, content)
}

fn radio(name: &str, value: &str, label: &str, checked: bool) -> Markup {
    let id = format!("{name}-{value}");
    html! {
        div {
            input id=(id) type="radio" name=(name) value=(value) checked[checked];
            label.inline for=(id) { " " (label) }
        }
    }
}
