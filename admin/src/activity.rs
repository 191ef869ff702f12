//! Recent decisions per user, for `GetUser`; decisions per minute and the tools denied most,
//! for `GetActivity`.
//!
//! `serve` reads them from the store's decision log ([`decision_log::Log`], fed from the
//! decision service's records off the hot path): they survive restarts, follow the user through
//! a change of email, and are bounded by the log's retention, not by memory. An `AdminService`
//! running without a decision log (tests, benches, embedders) can keep the latest ones in memory
//! instead ([`Activity::start`]).

use crate::Result;
use decision_log::{Log, LoggedDecision};
use live::Live;
use pdp::User;
use pdp_service::Record;
use portcullis_proto::v1 as pb;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Records kept per user key in memory.
pub const PER_USER: usize = 50;
/// User keys kept in memory; past this an arbitrary key is forgotten for each new one.
pub const USERS: usize = 100_000;

/// Where `GetUser` finds a user's recent decisions; cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity(Source);

#[derive(Debug, Clone)]
enum Source {
    /// The decision log of the live store.
    Log,
    Memory(Arc<Mutex<HashMap<String, VecDeque<Record>>>>),
}

impl Activity {
    /// Reads the store's decision log: whatever a [`decision_log::Writer`] on the same store
    /// appended (`serve` feeds one from the decision service's records).
    pub fn decision_log() -> Activity {
        Activity(Source::Log)
    }

    /// Keeps what `records` delivers in memory (on the current tokio runtime), for an admin
    /// service without a decision log: the latest [`PER_USER`] per user key, for at most
    /// [`USERS`] keys, gone at restart.
    pub fn start(mut records: mpsc::Receiver<Record>) -> Activity {
        let recent = Arc::new(Mutex::new(HashMap::new()));
        let keeper = Arc::clone(&recent);
        tokio::spawn(async move {
            while let Some(record) = records.recv().await {
                keep(&keeper, record);
            }
        });
        Activity(Source::Memory(recent))
    }

    /// The latest decisions about `user`, newest first, at most `limit`: those their key
    /// resolved to them for, and those that named one of their keys (id, external id, user
    /// name, emails; any case) without resolving.
    pub(crate) async fn of(
        &self,
        live: &Live,
        user: &User,
        limit: usize,
    ) -> Result<Vec<LoggedDecision>> {
        let keys: Vec<String> = user
            .external_id
            .iter()
            .chain(std::iter::once(&user.user_name))
            .chain(&user.emails)
            .cloned()
            .collect();
        match &self.0 {
            Source::Log => {
                let id = user.id.clone();
                Ok(live
                    .blocking(move |store| {
                        Log::of(store).decisions_of(&id, keys.iter().map(String::as_str), limit)
                    })
                    .await??)
            }
            Source::Memory(recent) => {
                let keys = keys.iter().map(String::as_str).chain([user.id.as_str()]);
                Ok(remembered(recent, keys, limit))
            }
        }
    }
}

/// `record` as the decision log keeps it (its user not resolved yet: the log does that).
pub fn logged(record: Record) -> LoggedDecision {
    let Record {
        time_ms,
        decision_id,
        user,
        user_id,
        agent,
        connector,
        tool,
        action,
        reason,
        policy_id,
        approval_id,
        revision,
        latency,
    } = record;
    LoggedDecision {
        seq: 0,
        time_ms,
        decision_id,
        user,
        user_id,
        agent,
        connector,
        tool,
        action,
        reason,
        policy_id,
        revision,
        latency_ns: u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
        approval_id,
    }
}

fn keep(recent: &Mutex<HashMap<String, VecDeque<Record>>>, record: Record) {
    let Ok(mut recent) = recent.lock() else {
        return;
    };
    let key = record.user.to_lowercase();
    if !recent.contains_key(&key)
        && recent.len() >= USERS
        && let Some(evict) = recent.keys().next().cloned()
    {
        recent.remove(&evict);
    }
    let list = recent.entry(key).or_default();
    if list.len() >= PER_USER {
        list.pop_back();
    }
    list.push_front(record);
}

fn remembered<'k>(
    recent: &Mutex<HashMap<String, VecDeque<Record>>>,
    keys: impl IntoIterator<Item = &'k str>,
    limit: usize,
) -> Vec<LoggedDecision> {
    let Ok(recent) = recent.lock() else {
        return Vec::new();
    };
    let mut keys: Vec<String> = keys.into_iter().map(str::to_lowercase).collect();
    keys.sort();
    keys.dedup();
    let mut records: Vec<Record> = keys
        .iter()
        .filter_map(|k| recent.get(k))
        .flat_map(|list| list.iter().cloned())
        .collect();
    records.sort_by(|a, b| {
        b.time_ms
            .cmp(&a.time_ms)
            .then_with(|| b.decision_id.cmp(&a.decision_id))
    });
    records.truncate(limit);
    records.into_iter().map(logged).collect()
}

/// The most decisions `GetActivity` reads (newest first); past it the oldest minutes of the
/// window count only part of theirs.
pub const ACTIVITY_SCAN: usize = 200_000;
/// The longest window `GetActivity` covers, in minutes.
pub const ACTIVITY_MINUTES: u32 = 1_440;

impl Activity {
    /// Decisions per minute by outcome over the last `minutes` minutes before `now` (the
    /// current minute included), and the tools denied most.
    pub(crate) async fn summary(
        &self,
        live: &Live,
        now: pdp::Timestamp,
        minutes: u32,
    ) -> Result<pb::GetActivityResponse> {
        let minutes = minutes.clamp(1, ACTIVITY_MINUTES);
        let current = now.0.div_euclid(60_000) * 60_000;
        let since = current - i64::from(minutes - 1) * 60_000;
        let mut summary = Summary::new(since, minutes);
        match &self.0 {
            Source::Log => {
                summary = live
                    .blocking(move |store| -> decision_log::Result<Summary> {
                        let log = Log::of(store);
                        let mut before = None;
                        loop {
                            let batch = log.decisions(before, 4_096)?;
                            let Some(last) = batch.last() else { break };
                            before = Some(last.seq);
                            for d in &batch {
                                if d.time_ms < since {
                                    return Ok(summary);
                                }
                                if !summary.count(d.time_ms, d.action, &d.connector, &d.tool) {
                                    return Ok(summary);
                                }
                            }
                        }
                        Ok(summary)
                    })
                    .await??;
            }
            Source::Memory(recent) => {
                if let Ok(recent) = recent.lock() {
                    for r in recent.values().flatten() {
                        if r.time_ms >= since
                            && !summary.count(r.time_ms, r.action, &r.connector, &r.tool)
                        {
                            break;
                        }
                    }
                }
            }
        }
        Ok(summary.into_response())
    }
}

/// What `summary` counts.
struct Summary {
    since: i64,
    minutes: Vec<[u64; 4]>,
    denied: HashMap<(String, String), u64>,
    scanned: u64,
    partial: bool,
}

impl Summary {
    fn new(since: i64, minutes: u32) -> Summary {
        Summary {
            since,
            minutes: vec![[0; 4]; minutes as usize],
            denied: HashMap::new(),
            scanned: 0,
            partial: false,
        }
    }

    /// Counts one decision; false once the scan bound is reached.
    fn count(&mut self, time_ms: i64, action: pdp::Action, connector: &str, tool: &str) -> bool {
        if self.scanned >= ACTIVITY_SCAN as u64 {
            self.partial = true;
            return false;
        }
        self.scanned += 1;
        let minute = usize::try_from((time_ms - self.since).div_euclid(60_000)).ok();
        if let Some(slot) = minute.and_then(|m| self.minutes.get_mut(m)) {
            let outcome = match action {
                pdp::Action::Allow => 0,
                pdp::Action::StepUp => 1,
                pdp::Action::RequireApproval => 2,
                pdp::Action::Deny => 3,
            };
            slot[outcome] += 1;
        }
        if action == pdp::Action::Deny {
            *self
                .denied
                .entry((connector.to_owned(), tool.to_owned()))
                .or_default() += 1;
        }
        true
    }

    fn into_response(self) -> pb::GetActivityResponse {
        let minutes = self
            .minutes
            .iter()
            .enumerate()
            .map(
                |(i, [allow, step_up, require_approval, deny])| pb::ActivityMinute {
                    start: Some(crate::convert::timestamp(pdp::Timestamp(
                        self.since + i as i64 * 60_000,
                    ))),
                    allow: *allow,
                    step_up: *step_up,
                    require_approval: *require_approval,
                    deny: *deny,
                },
            )
            .collect();
        let mut denied: Vec<((String, String), u64)> = self.denied.into_iter().collect();
        denied.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        denied.truncate(10);
        pb::GetActivityResponse {
            minutes,
            top_denied: denied
                .into_iter()
                .map(|((connector, tool), count)| pb::ToolCount {
                    connector,
                    tool,
                    count,
                })
                .collect(),
            scanned: self.scanned,
            partial: self.partial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_count_each_outcome_and_denials_rank_tools() {
        let since = 1_000 * 60_000;
        let mut summary = Summary::new(since, 3);
        let at = |minute: i64| since + minute * 60_000 + 59_999;
        assert!(summary.count(at(0), pdp::Action::Allow, "github", "read"));
        assert!(summary.count(at(2), pdp::Action::Deny, "slack", "post"));
        assert!(summary.count(at(2), pdp::Action::Deny, "slack", "post"));
        assert!(summary.count(at(1), pdp::Action::Deny, "github", "merge"));
        assert!(summary.count(at(1), pdp::Action::StepUp, "github", "merge"));
        // Outside the window: read, not placed in a minute.
        assert!(summary.count(since - 1, pdp::Action::Deny, "x", "y"));
        let response = summary.into_response();
        let counts: Vec<[u64; 4]> = response
            .minutes
            .iter()
            .map(|m| [m.allow, m.step_up, m.require_approval, m.deny])
            .collect();
        assert_eq!(counts, [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 2]]);
        assert_eq!(
            response.minutes[1].start.as_ref().unwrap().seconds,
            (since / 1000) + 60
        );
        let top: Vec<(&str, u64)> = response
            .top_denied
            .iter()
            .map(|t| (t.tool.as_str(), t.count))
            .collect();
        assert_eq!(top, [("post", 2), ("merge", 1), ("y", 1)]);
        assert_eq!(response.scanned, 6);
        assert!(!response.partial);
    }

    #[test]
    fn the_scan_stops_at_its_bound_and_says_so() {
        let mut summary = Summary::new(0, 1);
        for _ in 0..ACTIVITY_SCAN {
            assert!(summary.count(1, pdp::Action::Allow, "c", "t"));
        }
        assert!(!summary.count(1, pdp::Action::Allow, "c", "t"));
        let response = summary.into_response();
        assert!(response.partial);
        assert_eq!(response.minutes[0].allow, ACTIVITY_SCAN as u64);
    }
}
