//! Asking before an irreversible action (revoke a token, delete a group, remove a member): the
//! required checkbox every such form carries ([`tick`]), and the page that is nothing but that
//! question ([`Confirm`]). The handler checks the box too: a form sent without it gets the page
//! again with the problem next to the box.

use crate::call::Signed;
use crate::fields::Problems;
use crate::layout;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

/// The required confirmation checkbox `id` (named `confirm`), labelled `label`, with the
/// problem of an unticked box under it.
pub fn tick(id: &str, label: &str, problems: &Problems) -> Markup {
    html! {
        div.field {
            input id=(id) type="checkbox" name="confirm" value="yes" required
                aria-describedby=[problems.described_by("confirm")];
            label.inline for=(id) { (label) }
            (problems.under("confirm"))
        }
    }
}

/// A confirmation page: what happens, the checkbox and the button.
pub struct Confirm<'a> {
    /// The console section the page belongs to.
    pub section: &'a str,
    pub title: &'a str,
    /// The link above the heading: (path, label).
    pub back: (&'a str, &'a str),
    /// Where the form posts.
    pub action: String,
    /// Said before any problem (such as the warning that a sync may overwrite the change).
    pub warning: Markup,
    /// What happens.
    pub what: Markup,
    /// The checkbox's label.
    pub tick: &'a str,
    pub button: &'a str,
    /// Where a Cancel link beside the button leads, if the page has one.
    pub cancel: Option<&'a str>,
}

impl Confirm<'_> {
    pub fn render(&self, signed: &Signed, problems: &Problems) -> Response {
        let content = html! {
            p { a href=(self.back.0) { "← " (self.back.1) } }
            h1 { (self.title) }
            form.card method="post" action=(self.action) {
                (self.warning)
                (problems.above())
                (self.what)
                input type="hidden" name="csrf" value=(signed.csrf());
                (tick("confirm", self.tick, problems))
                button.danger type="submit" { (self.button) }
                @if let Some(cancel) = self.cancel {
                    " "
                    a.button.secondary href=(cancel) { "Cancel" }
                }
            }
        };
        let status = problems.status.unwrap_or(StatusCode::OK);
        (
            status,
            layout::page(signed, self.section, self.title, content),
        )
            .into_response()
    }

    /// The page again after the form came without its box ticked: `why`, next to the box.
    pub fn unticked(&self, signed: &Signed, why: &str) -> Response {
        self.render(signed, &Problems::field("confirm", why.to_owned()))
    }
}
