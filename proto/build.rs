//! Compiles `proto/centralino/v1/*.proto` with protox (no system `protoc` needed) and
//! generates prost messages, tonic clients and servers, and two file descriptor sets: every
//! file, and the public ones only (what gRPC reflection describes; `cluster.proto`, the
//! routers' and agent-nodes' internal API, is left out).

use std::path::PathBuf;

/// The customer, agent desk and admin APIs with what they import.
const PUBLIC: [&str; 4] = [
    "proto/centralino/v1/common.proto",
    "proto/centralino/v1/conversation.proto",
    "proto/centralino/v1/agent.proto",
    "proto/centralino/v1/admin.proto",
];
/// The API between routers and agent-nodes.
const INTERNAL: [&str; 1] = ["proto/centralino/v1/cluster.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<&str> = PUBLIC.iter().chain(&INTERNAL).copied().collect();
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("centralino_public_descriptor.bin"),
        prost::Message::encode_to_vec(&protox::compile(PUBLIC, ["proto"])?),
    )?;
    let fds = protox::compile(&files, ["proto"])?;
    let encoded = prost::Message::encode_to_vec(&fds);
    std::fs::write(out_dir.join("centralino_descriptor.bin"), &encoded)?;
    // The proto3 JSON mapping (serde impls) of every message, for the browser API.
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .out_dir(&out_dir)
        .build(&[".centralino"])?;
    // Decode errors are the client's (INVALID_ARGUMENT), not the server's (see codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
