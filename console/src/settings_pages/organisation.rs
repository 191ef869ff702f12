//! Organisation settings (GetSettings, UpdateSettings): how requests from agents no registered
//! id or alias names are decided. Admins change it; Read Only people read it.

use super::page;
use crate::Console;
use crate::call::{Answer as _, Page, Signed};
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::view;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

const PATH: &str = "/console/settings/organisation";

/// The choices for unregistered agents: (form value, setting, label, what it means).
const UNREGISTERED: [(&str, pb::UnregisteredAgents, &str, &str); 2] = [
    (
        "allow",
        pb::UnregisteredAgents::Allow,
        "Decide by the policies",
        "Requests go on to the policies and match only those for every agent (the default).",
    ),
    (
        "deny",
        pb::UnregisteredAgents::Deny,
        "Deny",
        "Requests are denied with UNKNOWN_AGENT.",
    ),
];

#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    #[serde(default)]
    saved: Option<String>,
}

fn render(
    signed: &Signed,
    chosen: pb::UnregisteredAgents,
    problems: &Problems,
    saved: bool,
) -> Response {
    let content = html! {
        h1 { "Organisation" }
        @if saved { p.notice role="status" { "Saved." } }
        @if signed.is_admin() {
            form.card method="post" action=(PATH) {
                (problems.above())
                input type="hidden" name="csrf" value=(signed.csrf());
                fieldset.field aria-describedby=[problems.described_by("settings")] {
                    legend { "Requests from unregistered agents" }
                    @for (value, setting, label, about) in UNREGISTERED {
                        div {
                            input id=(format!("unregistered-{value}")) type="radio"
                                name="unregistered_agents" value=(value) checked[chosen == setting];
                            label.inline for=(format!("unregistered-{value}")) { strong { (label) } ": " (about) }
                        }
                    }
                    (problems.under("settings"))
                }
                button type="submit" { "Save" }
            }
        } @else {
            div.card {
                dl.facts {
                    dt { "Requests from unregistered agents" }
                    dd {
                        @for (_, setting, label, about) in UNREGISTERED {
                            @if chosen == setting { strong { (label) } ": " (about) }
                        }
                    }
                }
            }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        page(signed, super::SETTINGS, "Organisation", content),
    )
        .into_response()
}

pub async fn show(
    State(console): State<Console>,
    signed: Signed,
    Query(shown): Query<Shown>,
) -> Page {
    let settings = console
        .services()
        .admin
        .get_settings(signed.request(pb::GetSettingsRequest {}))
        .await
        .page()?
        .settings
        .unwrap_or_default();
    Ok(render(
        &signed,
        settings.unregistered_agents(),
        &Problems::none(),
        shown.saved.is_some(),
    ))
}

pub async fn update(State(console): State<Console>, posted: Posted<Fields>) -> Page {
    let Posted { signed, form } = posted;
    // An unknown choice goes to the service unspecified, which refuses it with the field named.
    let chosen = UNREGISTERED
        .iter()
        .find(|(value, ..)| *value == form.one("unregistered_agents"))
        .map_or(pb::UnregisteredAgents::Unspecified, |(_, setting, ..)| {
            *setting
        });
    let request = pb::UpdateSettingsRequest {
        settings: Some(pb::Settings {
            unregistered_agents: chosen as i32,
        }),
    };
    let problems = match console
        .services()
        .admin
        .update_settings(signed.request(request))
        .await
    {
        Ok(_) => return Ok(view::see_other(&format!("{PATH}?saved=1"))),
        Err(status) => Problems::refused(status, &["settings"])?,
    };
    Ok(render(&signed, chosen, &problems, false))
}
