//! Activity: decisions per minute by outcome and the tools denied most (from the decision log,
//! `GetActivity`), recent locks and admin changes (the audit log), drawn as SVG on the server:
//! no chart library, no script. Each chart has its numbers in a table beside it for screen
//! readers and for reading exact values.

use crate::Console;
use crate::call::{Answer as _, Page, Signed};
use crate::layout;
use crate::view::time;
use axum::extract::{Query, State};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// The windows offered, in minutes.
const WINDOWS: &[(u32, &str)] = &[(60, "Last hour"), (360, "Last 6 hours"), (1440, "Last day")];

/// The outcomes in the order the bars stack them (bottom first): CSS class, label.
const OUTCOMES: [(&str, &str); 4] = [
    ("allow", "Allow"),
    ("step_up", "Step up"),
    ("require_approval", "Require approval"),
    ("deny", "Deny"),
];

#[derive(Debug, Default, Deserialize)]
pub struct ActivityQuery {
    #[serde(default)]
    minutes: Option<u32>,
}

pub async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ActivityQuery>,
) -> Page<Markup> {
    let minutes = query
        .minutes
        .filter(|m| WINDOWS.iter().any(|(w, _)| w == m))
        .unwrap_or(60);
    let admin = &console.services().admin;
    let activity = admin
        .get_activity(signed.request(pb::GetActivityRequest { minutes }))
        .await
        .page()?;
    let audit = |action: &str, page_size: u32| pb::ListAuditEventsRequest {
        action: action.to_owned(),
        page_size,
        ..Default::default()
    };
    let locks = admin
        .list_audit_events(signed.request(audit("user.lock", 10)))
        .await
        .page()?
        .events;
    let changes = admin
        .list_audit_events(signed.request(audit("", 20)))
        .await
        .page()?
        .events;
    let total: u64 = activity.minutes.iter().map(sum).sum();
    let content = html! {
        h1 { "Activity" }
        form.toolbar method="get" action="/console/activity" {
            div {
                label for="minutes" { "Window" }
                select #minutes name="minutes" {
                    @for (value, label) in WINDOWS {
                        option value=(value) selected[*value == minutes] { (label) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        h2 { "Decisions per minute" }
        p.muted {
            (total) " decisions"
            @if activity.partial {
                " (the oldest minutes show part of theirs: only the latest "
                (activity.scanned) " were read)"
            }
        }
        div.card { (per_minute(&activity.minutes)) (legend()) }
        details {
            summary { "The numbers" }
            (per_minute_table(&activity.minutes))
        }
        h2 { "Tools denied most" }
        @if activity.top_denied.is_empty() {
            p { "No denial in this window." }
        } @else {
            div.card { (top_denied(&activity.top_denied)) }
            table {
                caption.visually-hidden { "Tools denied most" }
                thead { tr { th scope="col" { "Tool" } th scope="col" { "Denials" } } }
                tbody {
                    @for t in &activity.top_denied {
                        tr { td { (t.connector) "." (t.tool) } td { (t.count) } }
                    }
                }
            }
        }
        h2 { "Recent locks" }
        (events(&locks, "No user was locked lately."))
        h2 { "Recent admin changes" }
        (events(&changes, "No change yet."))
    };
    Ok(layout::page(
        &signed,
        "/console/activity",
        "Activity",
        content,
    ))
}

fn sum(m: &pb::ActivityMinute) -> u64 {
    m.allow + m.step_up + m.require_approval + m.deny
}

fn counts(m: &pb::ActivityMinute) -> [u64; 4] {
    [m.allow, m.step_up, m.require_approval, m.deny]
}

/// The stacked bars: one per minute, oldest on the left.
fn per_minute(minutes: &[pb::ActivityMinute]) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 180.0;
    const AXIS: f64 = 40.0;
    let top = minutes.iter().map(sum).max().unwrap_or(0).max(1);
    let slot = (WIDTH - AXIS) / minutes.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let scale = |n: u64| n as f64 / top as f64 * (HEIGHT - 20.0);
    let total: u64 = minutes.iter().map(sum).sum();
    // Each minute's bars, stacked from the axis up.
    let mut rects = Vec::new();
    for (i, m) in minutes.iter().enumerate() {
        let x = AXIS + i as f64 * slot;
        let mut y = HEIGHT;
        for (n, (class, label)) in counts(m).into_iter().zip(OUTCOMES) {
            if n > 0 {
                let h = scale(n);
                y -= h;
                let title = format!("{}: {n} {label}", time(m.start.as_ref()));
                rects.push((class, x, y, h, title));
            }
        }
    }
    let label = format!(
        "Decisions per minute over the last {} minutes: {total} in all, at most {top} in one minute",
        minutes.len()
    );
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            line.axis x1=(AXIS) y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
            text.tick x="0" y="12" { (top) }
            text.tick x="0" y=(HEIGHT - 2.0) { "0" }
            @for (class, x, y, h, title) in &rects {
                rect class=(class) x=(format!("{x:.1}")) y=(format!("{y:.1}"))
                    width=(format!("{bar:.1}")) height=(format!("{h:.1}")) {
                    title { (title) }
                }
            }
        }
    }
}

fn legend() -> Markup {
    html! {
        ul.legend {
            @for (class, label) in OUTCOMES {
                li { svg width="12" height="12" aria-hidden="true" { rect class=(class) width="12" height="12" {} } " " (label) }
            }
        }
    }
}

fn per_minute_table(minutes: &[pb::ActivityMinute]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Decisions per minute" }
            thead { tr {
                th scope="col" { "Minute" }
                @for (_, label) in OUTCOMES { th scope="col" { (label) } }
            } }
            tbody {
                @for m in minutes.iter().rev().filter(|m| sum(m) > 0) {
                    tr {
                        td { (time(m.start.as_ref())) }
                        @for n in counts(m) { td { (n) } }
                    }
                }
            }
        }
    }
}

/// Horizontal bars, the most denied on top.
fn top_denied(tools: &[pb::ToolCount]) -> Markup {
    const WIDTH: f64 = 720.0;
    const ROW: f64 = 24.0;
    const LABEL: f64 = 260.0;
    let top = tools.iter().map(|t| t.count).max().unwrap_or(1).max(1);
    let height = ROW * tools.len() as f64;
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label="Tools denied most, as bars; the table below has the numbers" {
            @for (i, t) in tools.iter().enumerate() {
                @let y = i as f64 * ROW;
                @let w = t.count as f64 / top as f64 * (WIDTH - LABEL - 60.0);
                text.label x="0" y=(format!("{:.1}", y + 16.0)) { (t.connector) "." (t.tool) }
                rect.deny x=(LABEL) y=(format!("{:.1}", y + 4.0)) width=(format!("{:.1}", w.max(1.0))) height="16" {}
                text.label x=(format!("{:.1}", LABEL + w + 6.0)) y=(format!("{:.1}", y + 16.0)) { (t.count) }
            }
        }
    }
}

fn events(events: &[pb::AuditEvent], none: &str) -> Markup {
    html! {
        @if events.is_empty() {
            p { (none) }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Who" } th scope="col" { "What" }
                    th scope="col" { "Target" } th scope="col" { "Detail" }
                } }
                tbody {
                    @for e in events {
                        tr {
                            td { (time(e.time.as_ref())) }
                            td { (e.actor) }
                            td { (e.action) }
                            td { (e.target_kind) " " (e.target_id) }
                            td { (e.detail) }
                        }
                    }
                }
            }
        }
    }
}
