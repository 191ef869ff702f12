//! The store: Portcullis's source of truth for users, groups, memberships and policies (the
//! [`pdp::Model`]), persisted in sled, with one revision counter that every committed change bumps.
//!
//! It owns the on-disk layout, the invariants that need the whole directory (valid and unique
//! ids, memberships naming existing users and groups, integrity counts) and durability: a write
//! method returns only once its change survives a crash. Every sled call stays inside this crate,
//! so the engine can be replaced without touching callers; no sled type appears in the API.
//!
//! The layout is one sled tree with key prefixes (module `keys`), so a change is one atomic
//! batch; changes too large for one batch (big imports) are chunked behind an undo log (module
//! `undo`). Module `durability` explains when a write counts as done.
//!
//! Each committed revision also leaves a record of the ids it touched (module `changelog`), so
//! a follower of the store catches up from its revision without a full resync; [`Store::id`]
//! tells followers one store from another.
//!
//! It must not decide anything (that is `pdp`), speak any protocol (SCIM, gRPC), log, or start an
//! async runtime: methods block, and async callers run them on a blocking thread.
//!
//! Besides the sled data, it keeps an in-memory [`View`] of the model current with every commit,
//! for listing and for building snapshots without reading sled (module `view`). API tokens, SCIM
//! connections and documents, and the audit log (module `audit`: kept by age and count) live in
//! the same tree, outside the model; so does append-only data kept for other crates (the
//! [`Journal`]: opaque numbered entries and an index of them, not synced per write, never
//! bumping the revision; the decision log, crate `decision-log`, keeps its blocks there).
//!
//! Policy scopes naming a deleted user or group are left as they are by the plain write
//! methods: the snapshot matches nobody through them. The admin API cleans them up in the same
//! transaction ([`Store::transact`]).

mod approvals;
mod audit;
mod backup;
mod change;
mod changelog;
mod codec;
mod durability;
mod error;
mod import;
mod journal;
mod keys;
mod records;
mod store;
mod tx;
mod undo;
pub mod varint;
pub mod view;
mod webhooks;
mod write;
mod written;

pub use audit::{AUDIT_MAX_AGE, AUDIT_MAX_RECORDS, AuditRetention, AuditScan, Swept};
pub use backup::{
    BACKUP_FORMAT, BACKUP_MANIFEST, BACKUP_RECORDS, BackupError, BackupManifest, BackupSummary,
    RestoreSummary, read_manifest,
};
pub use changelog::{CHANGE_LOG_REVISIONS, Touched};
pub use error::{Error, Result};
pub use import::ImportSummary;
pub use journal::{Journal, JournalBatch, Value};
pub use records::{ApiToken, AuditEvent, KeptLock, ScimConnection, ScimKind};
pub use store::{Options, Store};
pub use tx::Tx;
pub use view::{View, ViewChanges};
pub use webhooks::{Delivery, DeliveryRetention, Webhook};

/// Locks a mutex, or fails if a thread panicked holding it: it may have left a change or a sync
/// half done, which only reopening the store sorts out (see [`Error::Failed`]).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| Error::Failed)
}
