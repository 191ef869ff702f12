//! Small pieces pages share: redirects, the error pages, times, badges, initials.

use crate::layout;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

/// 303 See Other to `location` (after a form, and for htmx a full navigation).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The console's home: Users, or the approvals inbox for a person without a role.
pub async fn home(signed: crate::call::Signed) -> Response {
    if signed.has_role() {
        see_other("/console/users")
    } else {
        see_other("/console/approvals")
    }
}

/// To the sign-in page, saying why when there is a reason, and coming back to `then` (the
/// page asked for, such as a webhook's link to a request) once signed in. An htmx request is
/// told to load the page whole (`HX-Redirect`) instead of swapping the sign-in form into a
/// list.
pub fn to_sign_in(headers: &HeaderMap, why: Option<&str>, then: Option<&str>) -> Response {
    let query: Vec<(&str, &str)> = [("why", why), ("then", then.and_then(return_path))]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
    let location = match serde_urlencoded::to_string(&query) {
        Ok(query) if !query.is_empty() => format!("/console/sign-in?{query}"),
        _ => "/console/sign-in".to_owned(),
    };
    if headers.contains_key("hx-request") {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert("hx-redirect", value);
        }
        return response;
    }
    see_other(&location)
}

/// `path` if it is a console page to come back to after sign-in: `/console/…`, of letters,
/// digits, `/`, `-`, `_`, `.`, `~` and `%` only, at most 512 bytes, and not the sign-in itself.
/// Anything else (another site, `//host`, a query) is no place to send a browser.
pub fn return_path(path: &str) -> Option<&str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/-_.~%".contains(c);
    (path.len() <= 512
        && path.starts_with("/console/")
        && !path.starts_with("/console/sign-in")
        && !path.contains("//")
        && !path.contains("..")
        && path.chars().all(allowed))
    .then_some(path)
}

/// An error page with the service's message.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = layout::bare(
        title,
        html! {
            div.card.sign-in {
                h1 { (status.as_u16()) " " (title) }
                p.error role="alert" { (message) }
                p { a href="/console/users" { "Back to the console" } }
            }
        },
    );
    (status, body).into_response()
}

pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// `id` as one path segment: record ids may hold any character but NUL (imported ones are not
/// generated), so `/`, `?`, `#`, `%` and spaces are percent-encoded, and `.` too, so that an id
/// `..` stays one segment instead of being resolved away by the browser.
pub fn segment(id: &str) -> String {
    /// Everything but letters, digits, `-`, `_` and `~`.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// A protobuf time as `2026-12-07 22:55:42 UTC`, or an empty string.
pub fn time(at: Option<&prost_types::Timestamp>) -> String {
    let Some(at) = at else { return String::new() };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(at.seconds) else {
        return String::new();
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&format).unwrap_or_default()
}

/// A status badge: `kind` is its CSS class (lower case), `label` what it says.
pub fn badge(kind: &str, label: &str) -> Markup {
    html! { span class=(format!("badge {kind}")) { (label) } }
}

/// Up to two initials of a name, for an avatar.
pub fn initials(name: &str) -> String {
    name.split(|c: char| c.is_whitespace() || c == '.' || c == '@')
        .filter_map(|word| word.chars().next())
        .filter(|c| c.is_alphanumeric())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn initials_of_names_and_emails() {
        assert_eq!(super::initials("Ada Lovelace"), "AL");
        assert_eq!(super::initials("grace.hopper@example.com"), "GH");
        assert_eq!(super::initials("<img src=x>"), "S");
        assert_eq!(super::initials(""), "");
    }

    #[test]
    fn only_console_pages_are_returned_to() {
        for good in ["/console/approvals/apr_01ab", "/console/users/u%2F1"] {
            assert_eq!(super::return_path(good), Some(good));
        }
        for bad in [
            "https://evil.example/console/",
            "//evil.example/console/",
            "/console//evil",
            "/console/../x",
            "/console/sign-in/callback",
            "/console/users?q=x",
            "/consolex",
            "/console/a\\b",
            "/console/a b",
        ] {
            assert_eq!(super::return_path(bad), None, "{bad}");
        }
        assert_eq!(
            super::return_path(&format!("/console/{}", "a".repeat(600))),
            None
        );
    }

    #[test]
    fn segments_keep_ids_in_one_piece() {
        assert_eq!(super::segment("pol_0a1b"), "pol_0a1b");
        assert_eq!(super::segment("a/b c?d#%"), "a%2Fb%20c%3Fd%23%25");
    }
}
