//! The Portcullis gRPC API: the `.proto` files under `portcullis/v1` (package `portcullis.v1`)
//! and the Rust code generated from them at build time.
//!
//! This crate owns the wire format only. Conversions to and from the decision model live in the
//! services that speak it (`pdp-service`, `admin`), never in `pdp`.

pub mod codec;

/// The one spelling of decisions and reasons everywhere they are shown (CLI, JSON, AuthZEN,
/// metrics labels, traces): the protobuf enum value's name without its prefix (`ALLOW`,
/// `STEP_UP_MET`).
pub mod names {
    use super::v1::{Decision, Reason};

    pub fn decision(decision: Decision) -> &'static str {
        unprefixed(decision.as_str_name(), "DECISION_")
    }

    pub fn reason(reason: Reason) -> &'static str {
        unprefixed(reason.as_str_name(), "REASON_")
    }

    fn unprefixed<'a>(name: &'a str, prefix: &str) -> &'a str {
        name.strip_prefix(prefix).unwrap_or(name)
    }
}

/// Package `portcullis.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("portcullis.v1");

    /// The encoded `FileDescriptorSet` of every `portcullis.v1` file, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("portcullis_descriptor");
}
