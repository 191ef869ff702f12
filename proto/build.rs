//! Compiles the .proto files with `protox` (pure Rust), so building needs no `protoc` install.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "portcullis/v1/decision.proto",
        "portcullis/v1/admin.proto",
        "portcullis/v1/snapshot.proto",
        "portcullis/v1/approval.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["."])?;
    // Served by gRPC server reflection, so tools like grpcurl work without the .proto files.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("portcullis_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Requests that do not decode are INVALID_ARGUMENT, not tonic's INTERNAL (src/codec.rs).
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
