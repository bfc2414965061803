//! The gRPC interface of centralino, package `centralino.v1`: the customer
//! `ConversationService`, the `AgentDesk` stream and the operator `Admin` service, generated
//! from `proto/centralino/v1/*.proto` at build time.

#![forbid(unsafe_code)]

pub mod codec;

/// Generated messages, clients and servers of `centralino.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("centralino.v1");
    // serde impls in the proto3 JSON mapping (pbjson): lowerCamelCase names, enums by
    // name, 64-bit integers as strings.
    include!(concat!(env!("OUT_DIR"), "/centralino.v1.serde.rs"));
}

/// Encoded file descriptor set of every centralino proto, the internal API included.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("centralino_descriptor");

/// Encoded file descriptor set of the public protos only (customer, agent desk, admin), the
/// one gRPC reflection serves: `RouterInternal` and `AgentNodeInternal` are not described.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("centralino_public_descriptor");
