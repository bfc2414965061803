//! Compiles `proto/centralino/v1/*.proto` with protox (no system `protoc` needed) and
//! generates prost messages, tonic clients and servers, and a file descriptor set for
//! gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/centralino/v1/common.proto",
        "proto/centralino/v1/conversation.proto",
        "proto/centralino/v1/agent.proto",
        "proto/centralino/v1/admin.proto",
        "proto/centralino/v1/cluster.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("centralino_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
