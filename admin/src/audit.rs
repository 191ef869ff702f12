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

/// The most events one `ListAuditEvents` call examines, whatever its filters match: a filter
/// that matches nothing costs one bounded read per page (0.14 s for 10,000 small events in a
/// debug build), and the page token continues the scan. Paging through a million events takes
/// a hundred calls; an index by action and actor would make that one, but would add keys to
/// every write, to retention and to backups, for a query investigations run rarely.
pub const LIST_SCAN: usize = 10_000;

/// The most events `GetUser` examines for a user's recent changes: it is called far more often
/// than the audit listing, and a user with few changes would otherwise cost a read of the whole
/// log.
pub const ABOUT_SCAN: usize = 20_000;

/// The longest `action` filter; actions are short names like `user.lock`.
const MAX_ACTION: usize = 128;
/// The longest `actor` or `target_id` filter: ids are at most this long.
const MAX_ID: usize = pdp::identity::MAX_KEY_LEN;

/// What `ListAuditEvents` filters on.
#[derive(Debug)]
struct Filter {
    actor: String,
    target_id: String,
    action: String,
    since: Option<pdp::Timestamp>,
    until: Option<pdp::Timestamp>,
}

impl Filter {
    fn keeps(&self, e: &AuditEvent) -> bool {
        (self.actor.is_empty() || e.actor == self.actor)
            && (self.target_id.is_empty() || e.target_id == self.target_id)
            && (self.action.is_empty()
                || if self.action.ends_with('.') {
                    e.action.starts_with(&self.action)
                } else {
                    e.action == self.action
                })
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time < u)
    }

    /// Whether the newest-first scan is past `since` (with slack): nothing older can match.
    fn past(&self, e: &AuditEvent) -> bool {
        self.since
            .is_some_and(|s| e.time.0 < s.0.saturating_sub(SCAN_SLACK_MS))
    }
}

fn bounded(field: &str, value: String, max: usize) -> Result<String> {
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("{} bytes is more than the maximum of {max}", value.len()),
        ));
    }
    Ok(value)
}

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
        action,
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
    let filter = Filter {
        actor: bounded("actor", actor, MAX_ID)?,
        target_id: bounded("target_id", target_id, MAX_ID)?,
        action: bounded("action", action, MAX_ACTION)?,
        since,
        until,
    };
    let query = format!(
        "{}\0{}\0{since:?}\0{until:?}\0{}",
        filter.actor, filter.target_id, filter.action
    );
    let before: Option<u64> = page::decode("page_token", &page_token, &query)?;
    let scan = live
        .blocking(move |store| {
            store.scan_audit(
                before,
                size + 1,
                LIST_SCAN,
                |e| filter.keeps(e),
                |e| filter.past(e),
            )
        })
        .await??;
    let mut events = scan.events;
    let next_page_token = if events.len() > size {
        events.truncate(size);
        events
            .last()
            .map(|e| page::encode(&query, &e.seq))
            .unwrap_or_default()
    } else {
        // The scan bound stopped it short of `size`: continue from the last event examined.
        scan.more
            .map(|seq| page::encode(&query, &seq))
            .unwrap_or_default()
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

/// The latest events about one target, newest first, among the latest [`ABOUT_SCAN`].
pub(crate) async fn about(
    live: &Live,
    kind: &'static str,
    id: String,
    limit: usize,
) -> Result<Vec<pb::AuditEvent>> {
    let events = live
        .blocking(move |store| {
            store.scan_audit(
                None,
                limit,
                ABOUT_SCAN,
                |e| e.target_kind == kind && e.target_id == id,
                |_| false,
            )
        })
        .await??;
    Ok(events.events.iter().map(event).collect())
}
