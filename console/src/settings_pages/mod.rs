//! Settings: the landing page linking the sub-pages (here), the organisation settings
//! ([`organisation`]), the admin API tokens ([`tokens`]), the SCIM connections ([`scim`]), the
//! approval webhooks ([`webhooks`]) and the audit log viewer ([`audit`]).
//!
//! Secrets (a new token, a SCIM bearer token, a webhook signing secret) are shown once, on the
//! page that answers the form that made them ([`secret_once`]): never in a redirect's address,
//! never logged, and every console page is sent `Cache-Control: no-store`.

pub mod audit;
pub mod organisation;
pub mod scim;
pub mod tokens;
pub mod webhooks;

use crate::call::Signed;
use crate::confirm::Confirm;
use crate::fields::Problems;
use crate::layout;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

/// The section every settings page belongs to.
pub const SECTION: &str = "/console/settings";

/// The sub-pages: (path, title, what it holds).
const PAGES: &[(&str, &str, &str)] = &[
    (
        "/console/settings/organisation",
        "Organisation",
        "How requests from agents no one registered are decided.",
    ),
    (
        "/console/settings/tokens",
        "Admin API tokens",
        "Tokens for the admin API and this console: create, list, revoke (Admins only).",
    ),
    (
        "/console/settings/scim",
        "SCIM connections",
        "One per identity provider (Okta, Entra ID): its bearer token, rotation and revocation.",
    ),
    (
        "/console/settings/webhooks",
        "Webhooks",
        "Endpoints notified of approval requests, with their recent deliveries.",
    ),
    (
        "/console/settings/audit",
        "Audit log",
        "Every change and refused attempt: who, what, when, before and after.",
    ),
];

pub async fn landing(signed: Signed) -> Response {
    let content = html! {
        h1 { "Settings" }
        @for (path, title, about) in PAGES {
            div.card {
                h2 { a href=(path) { (title) } }
                p.muted { (about) }
            }
        }
    };
    layout::page(&signed, SECTION, "Settings", content).into_response()
}

/// The link back to the landing page.
pub const SETTINGS: (&str, &str) = (SECTION, "Settings");

/// A settings page: the frame, with a link `back` (path, label) above `content`.
pub fn page(signed: &Signed, back: (&str, &str), title: &str, content: Markup) -> Markup {
    layout::page(
        signed,
        SECTION,
        title,
        html! {
            p { a href=(back.0) { "← " (back.1) } }
            (content)
        },
    )
}

/// A secret made just now, shown this once in a read-only field to copy.
fn secret_once(label: &str, secret: &str) -> Markup {
    html! {
        div.field {
            label for="secret" { (label) }
            input #secret.secret type="text" name="secret" value=(secret) readonly
                autocomplete="off" spellcheck="false" aria-describedby="secret-note";
            p #secret-note.notice.warn {
                strong { "Copy it now. " }
                "It is shown only this once: Portcullis keeps only its hash and cannot show it again."
            }
        }
    }
}

/// The page answering a form that made a secret (a token created, a SCIM token rotated, a
/// webhook's signing secret): what was made, the secret this once, and where to go next.
pub struct Secret<'a> {
    pub title: &'a str,
    /// The link above the heading: (path, label).
    pub back: (&'a str, &'a str),
    /// The facts of what was made (`dt` / `dd` pairs).
    pub facts: Markup,
    /// Said between the facts and the secret.
    pub more: Markup,
    /// What the secret is and how it is used.
    pub label: &'a str,
    pub secret: &'a str,
    /// The link below: (path, label).
    pub next: (&'a str, &'a str),
}

impl Secret<'_> {
    pub fn render(&self, signed: &Signed) -> Response {
        let content = html! {
            h1 { (self.title) }
            div.card {
                dl.facts { (self.facts) }
                (self.more)
                (secret_once(self.label, self.secret))
            }
            p { a href=(self.next.0) { (self.next.1) } }
        };
        page(signed, self.back, self.title, content).into_response()
    }
}

/// A confirmation page in the settings section.
pub fn confirm<'a>(
    title: &'a str,
    back: (&'a str, &'a str),
    action: String,
    what: Markup,
    tick: &'a str,
    button: &'a str,
) -> Confirm<'a> {
    Confirm {
        section: SECTION,
        title,
        back,
        action,
        warning: html! {},
        what,
        tick,
        button,
        cancel: None,
    }
}

/// A duration typed in a form (`90d`, `12h`, `30m`; empty for none), as the services take it.
/// A duration that does not read is refused here, next to its field; its bounds are the
/// service's.
pub fn duration(
    field: &'static str,
    text: &str,
) -> Result<Option<prost_types::Duration>, Problems> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = humantime::parse_duration(text).map_err(|e| {
        Problems::field(
            field,
            format!("`{text}` is not a duration such as 90d, 12h or 30m: {e}"),
        )
    })?;
    prost_types::Duration::try_from(parsed)
        .map(Some)
        .map_err(|_| Problems::field(field, format!("`{text}` is too long")))
}

/// Whether `at` is in the past.
pub fn past(at: Option<&prost_types::Timestamp>) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    at.is_some_and(|at| at.seconds <= now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_or_are_refused_next_to_their_field() {
        assert_eq!(super::duration("grace", " ").ok(), Some(None));
        let day = super::duration("grace", "1d").ok().flatten();
        assert_eq!(day.map(|d| d.seconds), Some(86_400));
        let refused = super::duration("grace", "soon").err();
        assert!(refused.is_some_and(|p| p.of("grace").is_some_and(|m| m.contains("soon"))));
    }
}
