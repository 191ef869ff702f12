//! The audit log viewer (ListAuditEvents): newest first, filtered by actor, action (exact, or a
//! prefix ending with a dot), target id and a time range, paged; each event's record before and
//! after the change on demand (`<details>`, no script), as escaped text.

use super::page;
use crate::Console;
use crate::call::{Failure, Page, Signed};
use crate::fields::Problems;
use crate::list::{self, pager_saying};
use crate::view::{badge, time};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

const PATH: &str = "/console/settings/audit";

/// Events per page.
const PAGE: u32 = 50;

/// The request fields the filters set, for placing the service's refusals.
const FIELDS: [&str; 5] = ["actor", "action", "target_id", "since", "until"];

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target_id: String,
    /// `YYYY-MM-DDTHH:MM[:SS]`, UTC (what a `datetime-local` input sends).
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    page: String,
}

impl Filters {
    /// This page's address with the same filters and `page`.
    fn link(&self, page: &str) -> String {
        let mut pairs = vec![];
        for (name, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target_id", &self.target_id),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.is_empty() {
                pairs.push((name, value.as_str()));
            }
        }
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        list::link(PATH, &pairs)
    }
}

/// A time typed in a filter, read as UTC; empty for none.
fn instant(field: &'static str, text: &str) -> Result<Option<prost_types::Timestamp>, Problems> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let with_seconds =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let minutes = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let parsed = time::PrimitiveDateTime::parse(text, &with_seconds)
        .or_else(|_| time::PrimitiveDateTime::parse(text, &minutes))
        .map_err(|_| {
            Problems::field(
                field,
                format!("`{text}` is not a time such as 2026-12-07T09:30 (UTC)"),
            )
        })?;
    Ok(Some(prost_types::Timestamp {
        seconds: parsed.assume_utc().unix_timestamp(),
        nanos: 0,
    }))
}

/// A stored record as indented JSON (as stored when it does not parse).
fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| json.to_owned())
}

fn outcome(event: &pb::AuditEvent) -> Markup {
    match event.outcome.as_str() {
        "ok" => badge("active", "OK"),
        "denied" => badge("locked", "Denied"),
        other => badge("", other),
    }
}

fn changes(event: &pb::AuditEvent) -> Markup {
    html! {
        @if !event.before_json.is_empty() || !event.after_json.is_empty() {
            details {
                summary { "Before and after" span.visually-hidden { " event " (event.seq) } }
                @if !event.before_json.is_empty() {
                    div.muted { "Before" }
                    pre.json { (pretty(&event.before_json)) }
                }
                @if !event.after_json.is_empty() {
                    div.muted { "After" }
                    pre.json { (pretty(&event.after_json)) }
                }
            }
        }
    }
}

pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Page {
    let range = instant("since", &filters.since)
        .and_then(|since| instant("until", &filters.until).map(|until| (since, until)));
    let (events, next, problems) = match range {
        Err(problems) => (Vec::new(), String::new(), problems),
        Ok((since, until)) => {
            let request = pb::ListAuditEventsRequest {
                actor: filters.actor.trim().to_owned(),
                target_id: filters.target_id.trim().to_owned(),
                since,
                until,
                page_size: PAGE,
                page_token: filters.page.clone(),
                action: filters.action.trim().to_owned(),
            };
            match console
                .services()
                .admin
                .list_audit_events(signed.request(request))
                .await
            {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    (answer.events, answer.next_page_token, Problems::none())
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => (
                    Vec::new(),
                    String::new(),
                    Problems::from_status(&status, &FIELDS),
                ),
                Err(status) => return Err(Failure::from(status)),
            }
        }
    };
    let content = html! {
        h1 { "Audit log" }
        form.card method="get" action=(PATH) role="search"
            hx-get=(PATH) hx-trigger="submit" hx-target="#events" hx-select="#events"
            hx-swap="outerHTML" hx-push-url="true" {
            (problems.above())
            div.toolbar {
                (filter("actor", "Actor (user id, scim:<name> or cli)", &filters.actor, "text", &problems))
                (filter("action", "Action (user.lock, or user. for every user action)", &filters.action, "text", &problems))
                (filter("target_id", "Target id", &filters.target_id, "text", &problems))
                (filter("since", "Since (UTC)", &filters.since, "datetime-local", &problems))
                (filter("until", "Until (UTC)", &filters.until, "datetime-local", &problems))
                button type="submit" { "Filter" }
            }
        }
        div #events {
            table.audit {
                caption.visually-hidden { "Audit events, newest first" }
                thead { tr {
                    th scope="col" { "Time" }
                    th scope="col" { "Actor" }
                    th scope="col" { "Action" }
                    th scope="col" { "Target" }
                    th scope="col" { "Outcome" }
                    th scope="col" { "Detail" }
                } }
                tbody {
                    @for event in &events {
                        tr {
                            td { (time(event.time.as_ref())) }
                            td {
                                (event.actor)
                                @if !event.via.is_empty() { div.muted { "via token " (event.via) } }
                            }
                            td { code { (event.action) } }
                            td { (event.target_kind) " " code { (event.target_id) } }
                            td { (outcome(event)) }
                            td { (event.detail) (changes(event)) }
                        }
                    }
                    @if events.is_empty() {
                        tr { td colspan="6" {
                            @if next.is_empty() { "No event matches." }
                            @else { "No match among the events examined so far: the next page looks further back." }
                        } }
                    }
                }
            }
            (pager_saying("Pages", ("Newest", "Older events"), &filters.page, &next, |page| filters.link(page)))
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    Ok((status, page(&signed, super::SETTINGS, "Audit log", content)).into_response())
}

fn filter(name: &str, label: &str, value: &str, kind: &str, problems: &Problems) -> Markup {
    html! {
        div {
            label for=(name) { (label) }
            input id=(name) type=(kind) name=(name) value=(value) maxlength="1024"
                aria-invalid=[problems.of(name).map(|_| "true")]
                aria-describedby=[problems.described_by(name)];
            (problems.under(name))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_times_read_as_utc_or_are_refused() {
        let at = super::instant("since", "2026-12-07T09:30").ok().flatten();
        assert_eq!(at.map(|t| t.seconds), Some(1_796_635_800));
        let with_seconds = super::instant("since", "2026-12-07T09:30:15")
            .ok()
            .flatten();
        assert_eq!(with_seconds.map(|t| t.seconds), Some(1_796_635_815));
        assert_eq!(super::instant("until", "").ok(), Some(None));
        assert!(super::instant("until", "yesterday").is_err());
    }
}
