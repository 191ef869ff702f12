//! Serves decisions: the [`Engine`] holding the current [`pdp::Snapshot`] behind `arc-swap`, and
//! the gRPC `DecisionService` answering from it, and the same service over the OpenID AuthZEN
//! Authorization API ([`authzen`]).
//!
//! This crate never touches storage: whoever owns the data (the control plane's store, or a
//! sidecar's follower of its snapshot stream) builds snapshots and calls [`Engine::publish`]. It converts between the wire
//! types and `pdp` at the edge and builds `tonic::Status` only through [`Error`].

mod approvals;
pub mod authzen;
mod convert;
mod engine;
mod error;
mod freshness;
pub mod json_depth;
mod metrics;
mod record;
pub mod secret;
mod service;
mod token;
mod trace;

pub use approvals::{Approvals, Call};
pub use convert::{
    CheckBounds, MAX_ARGUMENTS_BYTES, MAX_ATTRIBUTES, authentication, bounded, json_to_struct,
    json_to_value, struct_to_json,
};
pub use engine::{Engine, MAX_REVISION_WAIT};
pub use error::{Error, Result};
pub use freshness::Freshness;
pub use metrics::{CHECK_BUCKETS, DecisionMetrics, Latencies, PublishStats};
pub use record::{Record, Recorder};
pub use service::{DEFAULT_MAX_BATCH, DecisionService};
pub use token::{MAX_SECRETS, RequireToken, SecretsError};
pub use trace::TRACE_TARGET;
