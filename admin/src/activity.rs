//! Recent decisions per user, for `GetUser`: kept in memory from the decision service's
//! records, bounded in both users and records per user.

use pdp_service::Record;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Records kept per user key.
pub const PER_USER: usize = 50;
/// User keys kept; past this an arbitrary key is forgotten for each new one.
pub const USERS: usize = 100_000;

/// A cheap-to-clone handle on the recent decisions.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    recent: Arc<Mutex<HashMap<String, VecDeque<Record>>>>,
}

impl Activity {
    /// Starts keeping what `records` delivers (on the current tokio runtime).
    pub fn start(mut records: mpsc::Receiver<Record>) -> Activity {
        let activity = Activity::default();
        let keeper = activity.clone();
        tokio::spawn(async move {
            while let Some(record) = records.recv().await {
                keeper.keep(record);
            }
        });
        activity
    }

    fn keep(&self, record: Record) {
        let Ok(mut recent) = self.recent.lock() else {
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

    /// The latest decisions made for any of `keys` (a user's id, emails, external id), newest
    /// first.
    pub fn for_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
        limit: usize,
    ) -> Vec<Record> {
        let Ok(recent) = self.recent.lock() else {
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
        records
    }
}
