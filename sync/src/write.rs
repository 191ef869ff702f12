//! The write path of every SCIM change: one store transaction, checked against the view it
//! was validated on, then published.
//!
//! Uniqueness (`userName`, `externalId`) and member checks need the view's indexes, which a
//! transaction cannot scan. So a write reads the view, and inside the transaction (under the
//! store's write lock) makes sure no other write landed since that view (its revision is the
//! one just before the transaction's); if one did, it starts again on a fresh view. SCIM writes
//! take turns for the commit (not for the fsync and publish that follow), so they never make each other
//! start again: IdPs send many changes at once, and only an admin write landing in between
//! costs a retry.

use crate::{Result, Scim, ScimError};
use std::sync::Arc;
use store::{Tx, View};

/// How many times a write starts again after other writes landed between reading the view and
/// taking the write lock.
const ATTEMPTS: usize = 16;

/// Commits what `build` writes, validated against `view` (the exact state the transaction
/// reads), and returns once decisions reflect it. A `build` that fails writes nothing.
pub async fn write<T, F>(scim: &Scim, build: F) -> Result<T>
where
    T: Send + 'static,
    F: Fn(&mut Tx<'_, '_>, &View) -> Result<T> + Send + Sync + 'static,
{
    let mut turn = Turn::take(scim).await;
    let out = turn.commit(build).await?;
    turn.publish().await?;
    Ok(out)
}

/// A SCIM writer's turn: the transactions it commits follow each other with no other SCIM
/// write in between.
pub struct Turn<'s> {
    scim: &'s Scim,
    turn: Option<tokio::sync::MutexGuard<'s, ()>>,
    revision: u64,
}

impl<'s> Turn<'s> {
    pub async fn take(scim: &'s Scim) -> Turn<'s> {
        Turn {
            scim,
            turn: Some(scim.writes.lock().await),
            revision: 0,
        }
    }

    /// Commits what `build` writes, validated against `view` (the exact state the transaction
    /// reads). A `build` that fails writes nothing.
    pub async fn commit<T, F>(&mut self, build: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut Tx<'_, '_>, &View) -> Result<T> + Send + Sync + 'static,
    {
        let build = Arc::new(build);
        for _ in 0..ATTEMPTS {
            let view = self.scim.live.view()?;
            let build = Arc::clone(&build);
            let (revision, out) = self
                .scim
                .live
                .blocking(move |store| {
                    // Durable in `publish`, after the turn: SCIM writes share their fsyncs.
                    store.transact_applied(move |tx| {
                        if view.revision().checked_add(1) != Some(tx.revision()) {
                            return Ok(None);
                        }
                        build(tx, &view).map(Some)
                    })
                })
                .await??;
            if let Some(out) = out {
                self.revision = self.revision.max(revision);
                return Ok(out);
            }
        }
        Err(ScimError::unavailable(
            "the directory kept changing during this request; try again",
        ))
    }

    /// Ends the turn, then returns once what it committed is durable and decisions reflect it.
    pub async fn publish(mut self) -> Result<()> {
        self.turn = None;
        let revision = self.revision;
        self.scim
            .live
            .blocking(move |store| store.sync(revision))
            .await??;
        self.scim.live.published(revision).await?;
        Ok(())
    }
}
