//! The crate's one error type.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process (or another `Store` in this one) has the directory open.
    #[error(
        "the data directory `{}` is in use by another process (is `portcullis serve` running?)",
        .path.display()
    )]
    Locked { path: PathBuf },

    #[error("cannot open the store in `{}`: {reason}", .path.display())]
    Open { path: PathBuf, reason: String },

    /// The directory holds a store this build cannot read.
    #[error(
        "the data directory `{}` holds store format {found}, this build reads format {expected}",
        .path.display()
    )]
    Format {
        path: PathBuf,
        found: String,
        expected: u32,
    },

    /// Making a change durable failed; the change may or may not survive a crash, and the store
    /// refuses further writes until it is reopened.
    #[error("cannot sync `{}` to disk: {source}", .path.display())]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The storage engine failed (an I/O error, most likely).
    #[error("the storage engine failed: {0}")]
    Storage(String),

    /// What is on disk breaks an invariant; nothing partial is handed out.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),

    /// A previous write or sync failed or panicked, so what is on disk is uncertain until the
    /// store is reopened (which rolls back or completes what was left).
    #[error("the store stopped after a write or sync that did not finish; reopen it")]
    Failed,

    #[error("invalid {field} `{id}`: {reason}")]
    InvalidId {
        field: &'static str,
        /// Escaped and shortened for display.
        id: String,
        reason: &'static str,
    },

    #[error("no {kind} with id `{id}`")]
    NotFound { kind: &'static str, id: String },

    #[error("duplicate {kind} `{id}`")]
    Duplicate { kind: &'static str, id: String },

    /// A membership names a user or group that exists neither in the store nor in the change.
    #[error(
        "the membership of user `{user_id}` in group `{group_id}` names a {missing} that does not exist"
    )]
    Dangling {
        group_id: String,
        user_id: String,
        missing: &'static str,
    },

    /// A membership passed for one group names another.
    #[error("a membership of group `{found}` was given for group `{expected}`")]
    WrongGroup { expected: String, found: String },

    /// An agent's id or alias is already another agent's id or alias (or repeats in its own).
    #[error("agent {field} `{name}` is already {taken_as} of agent `{by}`")]
    AgentNameTaken {
        /// `id` or `alias`.
        field: &'static str,
        name: String,
        /// `the id` or `an alias`.
        taken_as: &'static str,
        by: String,
    },

    /// A policy's agent selector names an agent that is not registered.
    #[error("policy `{policy_id}` names agent `{agent_id}`, which is not registered")]
    UnknownAgent { policy_id: String, agent_id: String },

    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// Maps a sled error, keeping corruption distinguishable from plain I/O failures.
pub(crate) fn engine(error: sled::Error) -> Error {
    match error {
        sled::Error::Corruption { at, .. } => match at {
            Some(at) => Error::Corrupt(format!("the storage engine found corrupt data at {at:?}")),
            None => Error::Corrupt("the storage engine found corrupt data".to_owned()),
        },
        other => Error::Storage(other.to_string()),
    }
}
