//! What a delivery's body says: the Standard Webhooks event JSON, or a Slack message.

use crate::approvals::events::Event;
use pdp::{Approval, ApprovalRequest, Timestamp};
use serde_json::{Value, json};

/// RFC 3339 in UTC, to the millisecond (`2026-01-02T03:04:05.678Z`).
pub(crate) fn rfc3339(t: Timestamp) -> String {
    // Out of the representable range (years beyond 9999): the milliseconds themselves.
    t.rfc3339().unwrap_or_else(|| t.0.to_string())
}

fn approval(a: &Approval) -> Value {
    json!({
        "user_id": a.user_id,
        "step": a.step,
        "comment": a.comment,
        "at": rfc3339(a.at),
    })
}

/// The request's page in the console served at `origin`: one path segment, its id
/// percent-encoded (ids are `apr_` and hex digits; the encoding only keeps that a promise).
fn console_link(origin: &str, id: &str) -> String {
    /// Everything but letters, digits, `-`, `_` and `~`.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'~');
    format!(
        "{origin}/console/approvals/{}",
        percent_encoding::utf8_percent_encode(id, SEGMENT)
    )
}

/// The request as the payload's `data` shows it; `console_url` is its console page, or null
/// when the console has no public URL.
fn request(r: &ApprovalRequest, actor: &str, console: Option<&str>) -> Value {
    json!({
        "id": r.id,
        "state": r.state.name(),
        "user_id": r.user_id,
        "agent": r.agent,
        "connector": r.connector,
        "tool": r.tool,
        "arguments": r.arguments,
        "arguments_digest": r.arguments_digest,
        "attributes": r.attributes,
        "justification": r.justification,
        "policy_id": r.policy_id,
        "flow_id": r.flow.id,
        "step": r.step,
        "steps": r.flow.steps.len(),
        "approvals": r.approvals.iter().map(approval).collect::<Vec<_>>(),
        "denial": r.denial.as_ref().map(approval),
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
        "step_started_at": rfc3339(r.step_started_at),
        "expires_at": rfc3339(r.expires_at),
        "approved_until": r.approved_until.map(rfc3339),
        "ended_by": r.ended_by,
        "actor": actor,
        "console_url": console.map(|origin| console_link(origin, &r.id)),
    })
}

/// `{"type": "approval.approved", "timestamp": …, "data": {…the request…}}`.
pub(crate) fn event(event: &Event<'_>, console: Option<&str>) -> String {
    json!({
        "type": event.kind.name(),
        "timestamp": rfc3339(event.at),
        "data": request(event.request, event.actor, console),
    })
    .to_string()
}

/// Slack's `{"text": …}`: who, which call, what happened, a link to the request in the
/// console when it has a public URL, and never the call's arguments (a Slack channel is no
/// place for them).
pub(crate) fn slack(event: &Event<'_>, console: Option<&str>) -> String {
    let r = event.request;
    let mut text = format!(
        "*{}*: approval request `{}` for user `{}`, agent `{}`, tool `{}` of `{}`: {} (by `{}`)",
        event.kind.name(),
        escape(&r.id),
        escape(&r.user_id),
        escape(&r.agent),
        escape(&r.tool),
        escape(&r.connector),
        r.state.name(),
        escape(event.actor),
    );
    if let Some(origin) = console {
        // Slack's link syntax `<url|label>`; the URL escaped like any text.
        text.push_str(&format!(
            " <{}|Open in the console>",
            escape(&console_link(origin, &r.id))
        ));
    }
    json!({ "text": text }).to_string()
}

/// Slack's message escaping: `&`, `<` and `>` (so user input cannot form a link or mention),
/// and backticks, which would end the code span.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::events::EventType;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Timestamp(1_500)), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn slack_leaves_the_arguments_out() {
        let mut request = ApprovalRequest {
            id: "r1".into(),
            user_id: "alice".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "<!channel>".into(),
            ..ApprovalRequest::default()
        };
        request
            .arguments
            .insert("token".into(), json!("secret-argument"));
        let event = Event {
            kind: EventType::Created,
            request: &request,
            actor: "gateway",
            at: Timestamp(0),
        };
        let body = slack(&event, None);
        assert!(!body.contains("secret-argument"), "{body}");
        assert!(body.contains("&lt;!channel&gt;"), "{body}");
        assert!(!body.contains("console"), "{body}");
        let full: Value = serde_json::from_str(&super::event(&event, None)).unwrap();
        assert_eq!(full["type"], "approval.created");
        assert_eq!(full["data"]["arguments"]["token"], "secret-argument");
        assert_eq!(full["data"]["state"], "pending");
        assert_eq!(full["data"]["console_url"], Value::Null);
    }

    #[test]
    fn a_console_url_links_the_request() {
        let request = ApprovalRequest {
            id: "apr_01/x".into(),
            ..ApprovalRequest::default()
        };
        let event = Event {
            kind: EventType::Created,
            request: &request,
            actor: "gateway",
            at: Timestamp(0),
        };
        let origin = Some("https://portcullis.example.com");
        let full: Value = serde_json::from_str(&super::event(&event, origin)).unwrap();
        assert_eq!(
            full["data"]["console_url"],
            "https://portcullis.example.com/console/approvals/apr_01%2Fx"
        );
        let text: Value = serde_json::from_str(&slack(&event, origin)).unwrap();
        assert!(
            text["text"].as_str().unwrap().ends_with(
                " <https://portcullis.example.com/console/approvals/apr_01%2Fx|Open in the console>"
            ),
            "{text}"
        );
    }
}
