//! The frame of every page: the side navigation, the signed-in person with sign-out, and the
//! page's content; and the bare frame of the sign-in and error pages.

use crate::call::Signed;
use maud::{DOCTYPE, Markup, html};

/// The sections in the navigation: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/console/users", "Users"),
    ("/console/groups", "Groups"),
    ("/console/policies", "Policies"),
    ("/console/approvals", "Approvals"),
    ("/console/agents", "Agents"),
    ("/console/activity", "Activity"),
    ("/console/settings", "Settings"),
];

/// The sections a person without a role may open: their approvals inbox.
const WITHOUT_ROLE: &[&str] = &["/console/approvals"];

/// A page of the signed-in console; `section` is the navigation entry it belongs to.
pub fn page(signed: &Signed, section: &str, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            // Forms carry the CSRF token themselves; htmx sends it on requests it makes from
            // elements outside a form too.
            body hx-headers=(format!(r#"{{"x-csrf-token":"{}"}}"#, signed.csrf())) {
                a.visually-hidden href="#main" { "Skip to content" }
                nav.side aria-label="Console" {
                    a.brand href="/console" { "Portcullis" }
                    ul {
                        @for (path, label) in NAV.iter().filter(|(path, _)| signed.has_role() || WITHOUT_ROLE.contains(path)) {
                            li {
                                @if *path == section {
                                    a href=(path) aria-current="page" { (label) }
                                } @else {
                                    a href=(path) { (label) }
                                }
                            }
                        }
                    }
                    div.who {
                        div { (signed.name()) }
                        div.muted {
                            (if signed.is_admin() { "Admin" } else if signed.has_role() { "Read Only" } else { "Approver" })
                        }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(signed.csrf());
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (content) }
            }
        }
    }
}

/// A page outside the signed-in console (sign-in, errors before sign-in).
pub fn bare(title: &str, content: Markup) -> Markup {
    bare_page(title, None, content)
}

/// A bare page that moves on to `to` at once by itself (a `refresh` meta element: the CSP
/// allows no script), for browsers that stop on it; `content` should link to `to` too.
pub fn bare_then(title: &str, to: &str, content: Markup) -> Markup {
    bare_page(title, Some(to), content)
}

fn bare_page(title: &str, then: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, then))
            body.bare { main #main { (content) } }
        }
    }
}

fn head(title: &str, then: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            @if let Some(to) = then {
                meta http-equiv="refresh" content=(format!("0;url={to}"));
            }
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx must not add its indicator styles inline: the CSP allows no inline style.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            title { (title) " · Portcullis" }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/htmx.min.js" defer {}
        }
    }
}
