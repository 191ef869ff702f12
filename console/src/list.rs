//! What every searchable, paged list shares (users, groups, members, Assign Users, policies,
//! the audit log): the search form that htmx sends as you type and whose answer replaces only
//! the list (`hx-select`), the list's own address with its query, the sort a column header
//! asks for, and the pager. Without JavaScript the form and the links load whole pages.

use maud::{Markup, html};

/// `base` with `pairs` as its query.
pub fn link(base: &str, pairs: &[(&str, &str)]) -> String {
    format!(
        "{base}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

/// Whether a `desc` query parameter asks for the descending order (`1`, or a ticked box).
pub fn descending(desc: Option<&str>) -> bool {
    desc.is_some_and(|d| d == "1" || d == "on")
}

/// The order a link asks for: a column header (`clicked`) flips the direction when its column
/// is already the sort and starts ascending otherwise; no column keeps the current order.
pub fn sort_after<'a>(
    current: &'a str,
    descending: bool,
    clicked: Option<&'a str>,
) -> (&'a str, bool) {
    match clicked {
        Some(s) if s == current => (s, !descending),
        Some(s) => (s, false),
        None => (current, descending),
    }
}

/// The search form above a list whose element has id `target`.
pub struct Search<'a> {
    /// Where the form sends its query (the list's own address).
    pub action: &'a str,
    /// What sends it under htmx (`hx-trigger`).
    pub trigger: &'a str,
    pub target: &'a str,
    /// The search box's label, and what it holds.
    pub label: &'a str,
    pub q: &'a str,
    pub maxlength: Option<&'a str>,
    pub placeholder: Option<&'a str>,
    /// The filters and hidden fields between the search box and the button.
    pub more: Markup,
}

impl Search<'_> {
    pub fn render(&self) -> Markup {
        let target = format!("#{}", self.target);
        html! {
            form.toolbar method="get" action=(self.action) role="search"
                hx-get=(self.action) hx-trigger=(self.trigger)
                hx-target=(target) hx-select=(target) hx-swap="outerHTML" hx-push-url="true" {
                div {
                    label for="q" { (self.label) }
                    input #q type="search" name="q" value=(self.q) maxlength=[self.maxlength]
                        placeholder=[self.placeholder];
                }
                (self.more)
                button type="submit" { "Search" }
            }
        }
    }
}

/// The links under a list, called `label`: back to the first page while on a later one
/// (`page` is its token), and on to the next while there is one (`next`); `link` makes a
/// page's address from its token.
pub fn pager(label: &str, page: &str, next: &str, link: impl Fn(&str) -> String) -> Markup {
    pager_saying(label, ("First page", "Next page"), page, next, link)
}

/// [`pager`] with its links saying `says` (first, next).
pub fn pager_saying(
    label: &str,
    says: (&str, &str),
    page: &str,
    next: &str,
    link: impl Fn(&str) -> String,
) -> Markup {
    html! {
        nav.pager aria-label=(label) {
            @if !page.is_empty() {
                a.button.secondary href=(link("")) { (says.0) }
            }
            @if !next.is_empty() {
                a.button.secondary href=(link(next)) { (says.1) }
            }
        }
    }
}
