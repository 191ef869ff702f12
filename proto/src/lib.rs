//! The Portcullis gRPC API: the `.proto` files under `portcullis/v1` (package `portcullis.v1`)
//! and the Rust code generated from them at build time.
//!
//! This crate owns the wire format only. Conversions to and from the decision model live in the
//! services that speak it (`pdp-service`, `admin`), never in `pdp`.

pub mod codec;

/// Package `portcullis.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("portcullis.v1");

    /// The encoded `FileDescriptorSet` of every `portcullis.v1` file, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("portcullis_descriptor");
}
