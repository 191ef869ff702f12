//! The snapshot stream between one control plane and any number of PDP-only sidecars: the
//! control plane's [`Feed`] (gRPC `SnapshotService.Watch`) and the sidecar's [`Follower`].
//!
//! The stream carries the directory as records of the model, only what decisions read: a full
//! snapshot in chunks when the follower has nothing usable, then each published change as whole
//! records by revision. The follower replays them into the same in-memory [`store::View`] the
//! control plane keeps and publishes with the same [`live::Publisher`], so a sidecar's snapshot
//! at a revision decides exactly like the control plane's. It never opens a store.
//!
//! Alongside, the stream carries the control plane's approval state (usable grants, pending
//! requests' calls, the default flow): the sidecar decides `window` grants on its own and asks
//! the control plane to use a `once` grant ([`Grants`]), failing closed when it cannot.
//!
//! It owns the stream's protocol at both ends; serving Check from the result is `pdp-service`'s
//! job and wiring the processes is the binary's.

mod approval_feed;
mod decoder;
mod feed;
mod follower;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod grants;
mod wire;

pub use approval_feed::ApprovalSource;
pub use feed::{Feed, HEARTBEAT, MAX_GRANT_ID};
pub use follower::{Follower, Options, Status, Upstream};
pub use grants::{GrantStats, Grants, USE_TIMEOUT};

/// The stream format this build reads and writes (`WatchRequest.format`, `SnapshotBegin.format`).
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is unusable; the message names it.
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to the control plane: {0}")]
    Connect(String),
    #[error("the control plane refused: {}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
    /// The stream broke its own rules; the follower reconnects and starts over from what it
    /// holds.
    #[error("the stream is broken: {0}")]
    Stream(String),
    /// The follower is shutting down.
    #[error("the follower stopped")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
