//! Reading the log: the latest decisions, a user's latest decisions, how many it holds.

use crate::index::IndexKey;
use crate::{LoggedDecision, Result, block};
use std::collections::BTreeSet;
use store::{Journal, Store};

/// A store's decision log, for reading; cheap to clone. It reads whatever the store's
/// [`crate::Writer`] appended.
#[derive(Debug, Clone)]
pub struct Log {
    journal: Journal,
}

impl Log {
    pub fn of(store: &Store) -> Log {
        Log::of_journal(store.journal())
    }

    pub(crate) fn of_journal(journal: Journal) -> Log {
        Log { journal }
    }

    /// How many decisions the log holds.
    pub fn count(&self) -> Result<u64> {
        Ok(self.bounds()?.map_or(0, |(first, last)| last - first + 1))
    }

    /// The log's decisions with `seq` below `before` (all if `None`), newest first, at most
    /// `limit`.
    pub fn decisions(&self, before: Option<u64>, limit: usize) -> Result<Vec<LoggedDecision>> {
        let before = before.unwrap_or(u64::MAX);
        let mut decisions = Vec::new();
        for item in self.journal.range(..before).rev() {
            if decisions.len() >= limit {
                break;
            }
            let (first, value) = item?;
            let block = block::decode(first, &value)?;
            decisions.extend(
                block
                    .into_iter()
                    .rev()
                    .filter(|d| d.seq < before)
                    .take(limit - decisions.len()),
            );
        }
        Ok(decisions)
    }

    /// The latest decisions about one user, newest first, at most `limit`: those whose user
    /// resolved to `user_id`, and those whose user did not resolve but was named by `user_id`
    /// or one of `keys` (their emails, user name, external id), ignoring case.
    pub fn decisions_of<'k>(
        &self,
        user_id: &str,
        keys: impl IntoIterator<Item = &'k str>,
        limit: usize,
    ) -> Result<Vec<LoggedDecision>> {
        let named: BTreeSet<String> = keys
            .into_iter()
            .map(str::to_lowercase)
            .chain(std::iter::once(user_id.to_lowercase()))
            .filter(|k| !k.is_empty())
            .collect();
        let names = std::iter::once(IndexKey::User(user_id).name())
            .chain(named.iter().map(|k| IndexKey::Named(k.clone()).name()));
        // Each block listed holds at least one of the user's decisions, so `limit` blocks per
        // name are enough.
        let mut blocks = BTreeSet::new();
        for name in names {
            for seq in self.journal.indexed(&name).rev().take(limit) {
                blocks.insert(seq?);
            }
        }
        let theirs = |d: &block::Raw<'_>| match d.user_id {
            Some(id) => id == user_id,
            None => named.contains(&d.user.to_lowercase()),
        };
        let mut decisions = Vec::new();
        for first in blocks.into_iter().rev() {
            if decisions.len() >= limit {
                break;
            }
            // Gone if retention removed it since the index was read.
            let Some(value) = self.journal.get(first)? else {
                continue;
            };
            let block = block::decode_raw(first, &value)?;
            decisions.extend(
                block
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, d)| theirs(d))
                    .take(limit - decisions.len())
                    .map(|(i, d)| d.owned(first + i as u64)),
            );
        }
        Ok(decisions)
    }

    /// The first and last `seq` in the log, if it holds any. The first is read before the
    /// last, so the first is never after the last while appends and retention run.
    pub(crate) fn bounds(&self) -> Result<Option<(u64, u64)>> {
        let Some((first, _)) = self.journal.first()? else {
            return Ok(None);
        };
        let Some((last_first, value)) = self.journal.last()? else {
            return Ok(None);
        };
        Ok(Some((
            first,
            last_first + block::len(last_first, &value)? - 1,
        )))
    }
}
