//! What a decision adds to its trace span: the connector and tool asked about, the approval
//! request it carried, and the answer (decision, reason, revision, decision id), never the
//! user, the agent or the attributes.
//!
//! The span itself is the RPC's, opened around the call by whoever serves it (the binary's
//! tracing layer, only when traces are exported); these functions record into the current
//! span. Without an exporter no layer is interested in [`TRACE_TARGET`], so the `enabled!`
//! check each starts with is two relaxed loads (the level filter and a cached callsite
//! interest) and nothing else runs: no allocation, no lock, no thread-local lookup.

use portcullis_proto::v1 as pb;
use tracing::{Level, Span};

/// The target of the spans exported as traces. The log output never shows them; the trace
/// exporter sees nothing else.
pub const TRACE_TARGET: &str = "portcullis::trace";

/// Whether the spans of [`TRACE_TARGET`] go anywhere.
fn on() -> bool {
    tracing::enabled!(target: TRACE_TARGET, Level::INFO)
}

/// A Check's connector and tool.
pub(crate) fn check(request: &pb::CheckRequest) {
    if !on() {
        return;
    }
    let span = Span::current();
    span.record("connector", request.connector.as_str());
    span.record("tool", request.tool.as_str());
    if !request.approval_id.is_empty() {
        span.record("approval_id", request.approval_id.as_str());
    }
}

/// A BatchCheck's size, and its connector and tool when all its checks share them.
pub(crate) fn batch(checks: &[pb::CheckRequest]) {
    if !on() {
        return;
    }
    let span = Span::current();
    span.record("checks", checks.len());
    let shared = |field: fn(&pb::CheckRequest) -> &str| {
        let first = checks.first().map(field)?;
        checks.iter().all(|c| field(c) == first).then_some(first)
    };
    if let Some(connector) = shared(|c| c.connector.as_str()) {
        span.record("connector", connector);
    }
    if let Some(tool) = shared(|c| c.tool.as_str()) {
        span.record("tool", tool);
    }
}

/// The answers of a Check (one) or a BatchCheck (each decision counted: `ALLOW:3 DENY:1`).
pub(crate) fn answers(answers: &[pb::CheckResponse]) {
    if !on() {
        return;
    }
    let span = Span::current();
    let Some(first) = answers.first() else {
        return;
    };
    // One snapshot answers a whole batch.
    span.record("revision", first.revision);
    if let [answer] = answers {
        span.record("decision", decision(answer.decision));
        span.record("reason", reason(answer.reason));
        span.record("decision_id", answer.decision_id.as_str());
        return;
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for answer in answers {
        let name = decision(answer.decision);
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(n, c)| format!("{n}:{c}")).collect();
    span.record("decision", counts.join(" ").as_str());
}

fn decision(value: i32) -> &'static str {
    pb::Decision::try_from(value).map_or("UNSPECIFIED", portcullis_proto::names::decision)
}

fn reason(value: i32) -> &'static str {
    pb::Reason::try_from(value).map_or("UNSPECIFIED", portcullis_proto::names::reason)
}
