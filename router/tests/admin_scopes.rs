//! Scoped operator tokens on the Admin API: every call needs its scope (read-only: reads;
//! supervisor: transfers, agents' status, tiers and the reads; integration: the event feed;
//! admin: everything, and alone a customer's export and erasure, changes of the agent
//! directory and operator tokens). Unknown tokens get UNAUTHENTICATED, known tokens without the scope
//! PERMISSION_DENIED; `node.admin_token` works in dev mode only.

use centralino_testkit as common;

use centralino_base::credentials::{hash_password, new_token, Scope};
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::{
    AgentStatus, EraseCustomerRequest, ExportCustomerRequest, ForceTransferRequest,
    GetSnapshotRequest, GetTranscriptRequest, ListConversationsRequest, SetAgentStatusRequest,
    SetCustomerTierRequest, StreamIntegrationEventsRequest, WatchConversationRequest,
};
use centralino_proto::v1::{
    CreateOperatorTokenRequest, ListOperatorTokensRequest, RevokeOperatorTokenRequest,
};
use centralino_proto::v1::{
    DirectoryKind, GetDirectoryEntryRequest, ListDirectoryAuditRequest,
    ListDirectoryEntriesRequest, PutDirectoryEntryRequest, SetDirectoryEntryDisabledRequest,
};
use centralino_router::config::{Config, OperatorConfig};
use centralino_router::standalone::{self, StoreChoice};
use common::*;
use tonic::transport::Channel;
use tonic::Code;

const CALLS: [&str; 18] = [
    "GetSnapshot",
    "ListConversations",
    "GetTranscript",
    "WatchConversation",
    "ForceTransfer",
    "StreamIntegrationEvents",
    "SetCustomerTier",
    "SetAgentStatus",
    "ExportCustomer",
    "EraseCustomer",
    "PutDirectoryEntry",
    "GetDirectoryEntry",
    "ListDirectoryEntries",
    "SetDirectoryEntryDisabled",
    "ListDirectoryAudit",
    "CreateOperatorToken",
    "ListOperatorTokens",
    "RevokeOperatorToken",
];

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// Calls `call` with `token`; returns the status code (OK for a stream that opened).
async fn call(admin: &mut AdminClient<Channel>, call: &str, token: &str) -> Code {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    match call {
        "GetSnapshot" => code(
            admin
                .get_snapshot(with_token(GetSnapshotRequest {}, token))
                .await
                .map(drop),
        ),
        "ListConversations" => code(
            admin
                .list_conversations(with_token(ListConversationsRequest::default(), token))
                .await
                .map(drop),
        ),
        "GetTranscript" => code(
            admin
                .get_transcript(with_token(
                    GetTranscriptRequest {
                        conversation_id: "nope".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "WatchConversation" => code(
            admin
                .watch_conversation(with_token(
                    WatchConversationRequest {
                        conversation_id: "nope".into(),
                        after_event_id: 0,
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "ForceTransfer" => code(
            admin
                .force_transfer(with_token(
                    ForceTransferRequest {
                        conversation_id: "nope".into(),
                        target: Some(
                            centralino_proto::v1::force_transfer_request::Target::AgentId(
                                "giulia".into(),
                            ),
                        ),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "StreamIntegrationEvents" => code(
            admin
                .stream_integration_events(with_token(
                    StreamIntegrationEventsRequest { after_event_id: 0 },
                    token,
                ))
                .await
                .map(drop),
        ),
        "SetCustomerTier" => code(
            admin
                .set_customer_tier(with_token(
                    SetCustomerTierRequest {
                        customer_id: "vera".into(),
                        tier: "vip".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "SetAgentStatus" => code(
            admin
                .set_agent_status(with_token(
                    SetAgentStatusRequest {
                        agent_id: "giulia".into(),
                        status: AgentStatus::Available as i32,
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "ExportCustomer" => code(
            admin
                .export_customer(with_token(
                    ExportCustomerRequest {
                        customer_id: "vera".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "EraseCustomer" => code(
            admin
                .erase_customer(with_token(
                    EraseCustomerRequest {
                        customer_id: "vera".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "PutDirectoryEntry" => code(
            admin
                .put_directory_entry(with_token(
                    PutDirectoryEntryRequest {
                        kind: DirectoryKind::Team as i32,
                        id: "night".into(),
                        json: r#"{"language": "it"}"#.into(),
                        expected_version: None,
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "GetDirectoryEntry" => code(
            admin
                .get_directory_entry(with_token(
                    GetDirectoryEntryRequest {
                        kind: DirectoryKind::Agent as i32,
                        id: "giulia".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "ListDirectoryEntries" => code(
            admin
                .list_directory_entries(with_token(
                    ListDirectoryEntriesRequest {
                        kind: DirectoryKind::Agent as i32,
                        include_disabled: true,
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "SetDirectoryEntryDisabled" => code(
            admin
                .set_directory_entry_disabled(with_token(
                    SetDirectoryEntryDisabledRequest {
                        kind: DirectoryKind::Agent as i32,
                        id: "nobody".into(),
                        disabled: true,
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "ListDirectoryAudit" => code(
            admin
                .list_directory_audit(with_token(ListDirectoryAuditRequest::default(), token))
                .await
                .map(drop),
        ),
        "CreateOperatorToken" => code(
            admin
                .create_operator_token(with_token(
                    CreateOperatorTokenRequest {
                        name: format!("probe-{}", uuid::Uuid::new_v4().simple()),
                        scopes: vec!["read-only".into()],
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        "ListOperatorTokens" => code(
            admin
                .list_operator_tokens(with_token(ListOperatorTokensRequest {}, token))
                .await
                .map(drop),
        ),
        "RevokeOperatorToken" => code(
            admin
                .revoke_operator_token(with_token(
                    RevokeOperatorTokenRequest {
                        name: "nobody".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
        ),
        other => panic!("unknown call {other}"),
    }
}

/// Which calls a holder of `scopes` may make.
fn allowed(scopes: &[Scope], call: &str) -> bool {
    let required = match call {
        "ForceTransfer" | "SetAgentStatus" | "SetCustomerTier" => Scope::Supervisor,
        "StreamIntegrationEvents" => Scope::Integration,
        "ExportCustomer"
        | "EraseCustomer"
        | "PutDirectoryEntry"
        | "SetDirectoryEntryDisabled"
        | "CreateOperatorToken"
        | "ListOperatorTokens"
        | "RevokeOperatorToken" => Scope::Admin,
        _ => Scope::ReadOnly,
    };
    scopes.iter().any(|s| match s {
        Scope::Admin => true,
        Scope::Supervisor => matches!(required, Scope::Supervisor | Scope::ReadOnly),
        other => *other == required,
    })
}

/// The test shop outside dev mode: no admin_token, agents with argon2id hashes.
fn production(mut config: Config) -> Config {
    config.node.dev_mode = false;
    config.node.admin_token.clear();
    for agent in &mut config.agents {
        agent.password_hash = hash_password(&agent.password).expect("hash");
        agent.password.clear();
    }
    config
}

#[test]
fn every_call_needs_its_scope() {
    let holders: Vec<(&str, Vec<Scope>)> = vec![
        ("reader", vec![Scope::ReadOnly]),
        ("supervisor", vec![Scope::Supervisor]),
        ("integration", vec![Scope::Integration]),
        ("admin", vec![Scope::Admin]),
        (
            "reader+integration",
            vec![Scope::ReadOnly, Scope::Integration],
        ),
    ];
    let tokens: Vec<(String, String)> = holders.iter().map(|_| new_token()).collect();
    let mut config = production(config(""));
    for ((name, scopes), (_, hash)) in holders.iter().zip(&tokens) {
        config.operators.push(OperatorConfig {
            name: name.to_string(),
            token_hash: hash.clone(),
            scopes: scopes.clone(),
        });
    }
    run(|| async move {
        let node = start(config).await;
        let mut admin = admin(&node).await;
        let mut failures = Vec::new();
        for ((name, scopes), (token, _)) in holders.iter().zip(&tokens) {
            for c in CALLS {
                let got = call(&mut admin, c, token).await;
                let ok = if allowed(scopes, c) {
                    !matches!(got, Code::PermissionDenied | Code::Unauthenticated)
                } else {
                    got == Code::PermissionDenied
                };
                if !ok {
                    failures.push(format!("{name} {c}: {got:?}"));
                }
            }
        }
        assert!(failures.is_empty(), "scope boundaries broken: {failures:?}");
        // The checks above can fail: a reader's SetAgentStatus really is refused, a
        // supervisor's really reaches the node (giulia has not logged in).
        assert_eq!(
            call(&mut admin, "SetAgentStatus", &tokens[0].0).await,
            Code::PermissionDenied
        );
        assert_eq!(
            call(&mut admin, "SetAgentStatus", &tokens[1].0).await,
            Code::FailedPrecondition
        );
        assert_eq!(
            call(&mut admin, "GetSnapshot", &tokens[3].0).await,
            Code::Ok
        );
        // Unknown tokens, the hash itself and no token at all: UNAUTHENTICATED — until
        // the address has guessed too often, then RESOURCE_EXHAUSTED (throttled), never
        // anything that reaches the call.
        let free = centralino_core::ingress::admin::OPERATOR_FREE_FAILURES as usize;
        let mut guesses = 0;
        for token in ["cnt_unknown", tokens[3].1.as_str(), "test-admin"] {
            for c in CALLS {
                let got = call(&mut admin, c, token).await;
                guesses += 1;
                let expected: &[Code] = if guesses <= free + 1 {
                    &[Code::Unauthenticated]
                } else {
                    &[Code::Unauthenticated, Code::ResourceExhausted]
                };
                assert!(expected.contains(&got), "{c} with {token:?}: {got:?}");
            }
        }
        assert!(guesses > free + 1, "the guesses reach the throttle");
        assert_eq!(
            call(&mut admin, "GetSnapshot", &tokens[3].0).await,
            Code::ResourceExhausted,
            "after the guesses the address waits, whatever its token"
        );
        let err = admin
            .get_snapshot(GetSnapshotRequest {})
            .await
            .expect_err("no token");
        assert_eq!(err.code(), Code::Unauthenticated);
        drop(admin);
        node.shutdown().await;
    });
}

#[test]
fn the_admin_token_is_an_all_scopes_token_in_dev_mode_only() {
    run(|| async {
        // Dev mode (the test configuration): admin_token reaches every call.
        let node = start(config("")).await;
        let mut admin = admin(&node).await;
        for c in CALLS {
            let got = call(&mut admin, c, ADMIN).await;
            assert!(
                !matches!(got, Code::PermissionDenied | Code::Unauthenticated),
                "{c}: {got:?}"
            );
        }
        drop(admin);
        node.shutdown().await;

        // Outside dev mode the node refuses to start with it.
        let mut config = production(config(""));
        config.node.admin_token = "a-long-random-admin-token-0123456789".into();
        let err = standalone::start_with(config, StoreChoice::Memory)
            .await
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("node.admin_token") && text.contains("dev mode"),
            "{text}"
        );
    });
}

#[test]
fn operators_with_bad_digests_or_no_scopes_are_refused_at_start() {
    let mut config = production(config(""));
    config.operators = vec![
        OperatorConfig {
            name: "plain".into(),
            token_hash: "my-token".into(),
            scopes: vec![Scope::Admin],
        },
        OperatorConfig {
            name: "nothing".into(),
            token_hash: new_token().1,
            scopes: vec![],
        },
        OperatorConfig {
            name: "demo".into(),
            token_hash: centralino_base::credentials::token_hash("demo-operator-token"),
            scopes: vec![Scope::ReadOnly],
        },
    ];
    let problems = config.credential_problems().join("\n");
    assert!(
        problems.contains("operators[0] (name \"plain\").token_hash"),
        "{problems}"
    );
    assert!(
        problems.contains("operators[1] (name \"nothing\").scopes"),
        "{problems}"
    );
    assert!(
        problems.contains("operators[2] (name \"demo\").token_hash: the example"),
        "{problems}"
    );
    // Unknown scope names are a parse error naming the value.
    let text = config_text(
        "[[operators]]\nname = \"x\"\ntoken_hash = \"sha256:00\"\nscopes = [\"root\"]\n",
    );
    let err = Config::from_toml(&text, Vec::new()).expect_err("unknown scope");
    assert!(err.to_string().contains("root"), "{err}");
}
