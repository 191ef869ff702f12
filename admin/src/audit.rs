//! The audit log: what every write records, and `ListAuditEvents`.

use crate::convert::{self, timestamp};
use crate::{Error, Result, page};
use live::Live;
use portcullis_proto::v1 as pb;
use serde::Serialize;
use store::{ApiToken, AuditEvent};

/// A record as the audit log keeps it.
pub(crate) fn json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// A token as the audit log shows it: without its secret's hash.
pub(crate) fn redacted(token: &ApiToken) -> ApiToken {
    ApiToken {
        secret_hash: String::new(),
        ..token.clone()
    }
}

/// How far back of `since` the newest-first scan goes before it stops: events of concurrent
/// writers are appended a little out of time order.
const SCAN_SLACK_MS: i64 = 60_000;

pub(crate) async fn list(
    live: &Live,
    request: pb::ListAuditEventsRequest,
) -> Result<pb::ListAuditEventsResponse> {
    let pb::ListAuditEventsRequest {
        actor,
        target_id,
        since,
        until,
        page_size,
        page_token,
    } = request;
    let size = page::size("page_size", page_size)?;
    let since = since
        .map(|t| convert::from_timestamp("since", &t))
        .transpose()?;
    let until = until
        .map(|t| convert::from_timestamp("until", &t))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && until <= since
    {
        return Err(Error::invalid("until", "must be after `since`"));
    }
    let query = format!("{actor}\0{target_id}\0{since:?}\0{until:?}");
    let before: Option<u64> = page::decode("page_token", &page_token, &query)?;
    let events = live
        .blocking(move |store| {
            store.audit_events(
                before,
                size + 1,
                |e| {
                    (actor.is_empty() || e.actor == actor)
                        && (target_id.is_empty() || e.target_id == target_id)
                        && since.is_none_or(|s| e.time >= s)
                        && until.is_none_or(|u| e.time < u)
                },
                |e| since.is_some_and(|s| e.time.0 < s.0.saturating_sub(SCAN_SLACK_MS)),
            )
        })
        .await??;
    let mut events = events;
    let next_page_token = if events.len() > size {
        events.truncate(size);
        events
            .last()
            .map(|e| page::encode(&query, &e.seq))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListAuditEventsResponse {
        events: events.iter().map(event).collect(),
        next_page_token,
    })
}

pub(crate) fn event(e: &AuditEvent) -> pb::AuditEvent {
    let json =
        |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    pb::AuditEvent {
        seq: e.seq,
        time: Some(timestamp(e.time)),
        actor: e.actor.clone(),
        via: e.via.clone().unwrap_or_default(),
        action: e.action.clone(),
        target_kind: e.target_kind.clone(),
        target_id: e.target_id.clone(),
        outcome: e.outcome.clone(),
        detail: e.detail.clone(),
        before_json: json(&e.before),
        after_json: json(&e.after),
        revision: e.revision,
    }
}

/// The latest events about one target, newest first.
pub(crate) async fn about(
    live: &Live,
    kind: &'static str,
    id: String,
    limit: usize,
) -> Result<Vec<pb::AuditEvent>> {
    let events = live
        .blocking(move |store| {
            store.audit_events(
                None,
                limit,
                |e| e.target_kind == kind && e.target_id == id,
                |_| false,
            )
        })
        .await??;
    Ok(events.iter().map(event).collect())
}
