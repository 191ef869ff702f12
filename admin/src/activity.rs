//! Recent decisions per user, for `GetUser`.
//!
//! `serve` reads them from the store's decision log ([`store::DecisionLog`], fed from the
//! decision service's records off the hot path): they survive restarts, follow the user through
//! a change of email, and are bounded by the log's retention, not by memory. An `AdminService`
//! running without a decision log (tests, benches, embedders) can keep the latest ones in memory
//! instead ([`Activity::start`]).

use crate::Result;
use live::Live;
use pdp::User;
use pdp_service::Record;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use store::LoggedDecision;
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
    /// Reads the store's decision log: whatever a [`store::DecisionLog`] on the same store
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
                        store.decisions_of(&id, keys.iter().map(String::as_str), limit)
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
