//! The checks an endpoint passes before it is written.

use crate::approvals::events::EventType;
use crate::{Error, Result, text};
use std::net::IpAddr;

/// Longest endpoint url, in bytes.
pub(crate) const MAX_URL: usize = 2048;

/// `https://host…`, or `http://` to a loopback host (a receiver on the same machine): what a
/// webhook may be sent to. No user information (credentials belong in the receiver's check of
/// the signature, not in a url the API shows).
pub(crate) fn url(field: &str, url: &str) -> Result<()> {
    crate::text::present(field, url, MAX_URL)?;
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::invalid(field, format!("`{url}` is not a url: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| Error::invalid(field, format!("`{url}` has no host")))?;
    if authority.as_str().contains('@') {
        return Err(Error::invalid(
            field,
            "must not carry user information (`user:password@`)",
        ));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(Error::invalid(field, format!("`{url}` has no host")));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback(host) => Ok(()),
        Some("http") => Err(Error::invalid(
            field,
            format!(
                "`http` only to a loopback host (localhost, 127.0.0.1, ::1), not `{host}`: use https"
            ),
        )),
        _ => Err(Error::invalid(
            field,
            format!("`{url}` must start with `https://` (or `http://` to a loopback host)"),
        )),
    }
}

fn loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Event type names, each known, without repeats; kept in the order given.
pub(crate) fn events(field: &str, events: &[String]) -> Result<()> {
    for (i, name) in events.iter().enumerate() {
        text::bounded(&format!("{field}[{i}]"), name)?;
        if EventType::parse(name).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("unknown event type `{name}`; known: {}", known.join(", ")),
            ));
        }
        if events[..i].contains(name) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("`{name}` is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in [
            "https://hooks.example.com/portcullis",
            "https://example.com:8443/a?b=c",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:8080/",
        ] {
            assert!(url("url", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ftp://example.com/x",
            "http://example.com/hook",
            "http://10.0.0.1/hook",
            "https://user:pw@example.com/",
            "example.com/hook",
            "/relative",
            "http://127.0.0.1.example.com/",
        ] {
            let error = url("webhook.url", bad).unwrap_err().to_string();
            assert!(error.starts_with("webhook.url: "), "{bad}: {error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert!(url("url", &long).is_err());
    }

    #[test]
    fn event_names() {
        assert!(events("events", &[]).is_ok());
        assert!(
            events(
                "events",
                &["approval.created".into(), "approval.denied".into()]
            )
            .is_ok()
        );
        let error = events(
            "webhook.events",
            &["approval.created".into(), "nope".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("webhook.events[1]: unknown event type `nope`"),
            "{error}"
        );
        assert!(events("e", &["approval.created".into(), "approval.created".into()]).is_err());
    }
}
