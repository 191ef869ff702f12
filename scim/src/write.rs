//! The write path of every SCIM change: prepared outside the store's write lock, then one store
//! transaction that only checks nothing changed since and writes what was prepared.
//!
//! Everything a write costs in proportion to its input (reading the stored document, applying
//! a PATCH, mapping and checking the result against [`crate::limits::Limits`], uniqueness and
//! member checks against the view's indexes, rendering the answer) runs in `prepare`, on a
//! blocking thread, holding no lock. `prepare` reads the view at one revision and returns a
//! [`Commit`]; inside the transaction (under the store's write lock) the write makes sure no
//! other write landed since that view (its revision is the one just before the transaction's),
//! then runs the commit, which only puts records whose number the limits bound. If another
//! write did land, it prepares again on a fresh view. So an admin's `LockUser` waits for at
//! most one bounded commit, never for a SCIM request's parsing or patching.
//!
//! SCIM writes take turns to prepare and commit (not for the fsync and publish that follow), so
//! they never make each other start again: IdPs send many changes at once, and only an admin
//! write landing in between costs a retry.

use crate::{Result, Scim, ScimError};
use std::sync::Arc;
use store::{Store, Tx, View};

/// How many times a write starts again after other writes landed between reading the view and
/// taking the write lock.
const ATTEMPTS: usize = 16;

/// What a prepared write does under the write lock: put records, audit, return the answer.
pub type Commit<T> = Box<dyn FnOnce(&mut Tx<'_, '_>) -> Result<T> + Send>;

/// A commit that writes nothing and answers `out`.
pub fn nothing<T: Send + 'static>(out: T) -> Commit<T> {
    Box::new(move |_| Ok(out))
}

/// Prepares a write on the current view (outside the write lock), commits it if nothing
/// changed since that view, and returns once decisions reflect it. A `prepare` or commit that
/// fails writes nothing.
pub async fn write<T, P>(scim: &Scim, prepare: P) -> Result<T>
where
    T: Send + 'static,
    P: Fn(&Store, &View) -> Result<Commit<T>> + Send + Sync + 'static,
{
    let mut turn = Turn::take(scim).await;
    let out = turn.commit(prepare).await?;
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

    /// Prepares on the current view, then commits what `prepare` returned if the store is
    /// still at that view's revision; prepares again otherwise.
    pub async fn commit<T, P>(&mut self, prepare: P) -> Result<T>
    where
        T: Send + 'static,
        P: Fn(&Store, &View) -> Result<Commit<T>> + Send + Sync + 'static,
    {
        let prepare = Arc::new(prepare);
        for _ in 0..ATTEMPTS {
            let view = self.scim.live.view()?;
            let prepare = Arc::clone(&prepare);
            let (revision, out) = self
                .scim
                .live
                .blocking(move |store| {
                    // Outside the write lock: whatever the request costs.
                    let commit = prepare(store, &view)?;
                    // Durable in `publish`, after the turn: SCIM writes share their fsyncs.
                    store.transact_applied(move |tx| {
                        if view.revision().checked_add(1) != Some(tx.revision()) {
                            return Ok(None);
                        }
                        commit(tx).map(Some)
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
