//! OIDC/JWT: agents log in at the desk with an ID token and operators call the Admin API
//! with a JWT, verified against a JWKS file (RS256 and ES256; keys made at test time):
//! issuer, audience, expiry and signature are checked, `alg: none` and unknown keys are
//! refused, and refused tokens count as failed logins for the throttle.

use centralino_testkit as common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::{
    agent_command, agent_event, AgentCommand, ForceTransferRequest, GetSnapshotRequest, Login,
    SetCustomerTierRequest,
};
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use rand::RngCore as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const ISSUER: &str = "https://login.example.test/realms/shop";
const AUDIENCE: &str = "centralino";

struct Keys {
    ec: EncodingKey,
    rsa: EncodingKey,
    /// A P-256 key the JWKS does not hold.
    stranger: EncodingKey,
    _dir: tempfile::TempDir,
    jwks_file: std::path::PathBuf,
}

fn ec_key() -> EncodingKey {
    loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        if let Ok(key) = p256::ecdsa::SigningKey::from_bytes(&bytes.into()) {
            let der = key.to_pkcs8_der().expect("pkcs8");
            return EncodingKey::from_ec_der(der.as_bytes());
        }
    }
}

fn keys() -> Keys {
    let ec = ec_key();
    let stranger = ec_key();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key");
    let rsa = EncodingKey::from_rsa_der(rsa_key.to_pkcs1_der().expect("pkcs1").as_bytes());
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).expect("ec jwk");
    ec_jwk.common.key_id = Some("ec1".into());
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).expect("rsa jwk");
    rsa_jwk.common.key_id = Some("rsa1".into());
    let dir = tempfile::tempdir().expect("dir");
    let jwks_file = dir.path().join("jwks.json");
    let set = JwkSet {
        keys: vec![ec_jwk, rsa_jwk],
    };
    std::fs::write(&jwks_file, serde_json::to_string(&set).expect("json")).expect("write");
    Keys {
        ec,
        rsa,
        stranger,
        _dir: dir,
        jwks_file,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 300, "iat": now() })
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// An unsigned token (`alg: none`) with the right claims.
fn unsigned(claims: &serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

fn oidc_section(keys: &Keys) -> String {
    format!(
        "[oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n",
        keys.jwks_file.display()
    )
}

/// Logs in at the desk with an ID token; returns the logged-in agent id.
async fn token_login(
    node: &centralino_router::standalone::RunningNode,
    agent_id: &str,
    token: &str,
) -> Result<String, tonic::Status> {
    let mut client = AgentDeskClient::new(channel(node).await);
    let (tx, rx) = mpsc::channel(8);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent_id.to_string(),
            id_token: token.to_string(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue login");
    let events = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut desk = Desk { tx, events };
    desk.next(5, |k| match k {
        agent_event::Kind::LoggedIn(l) => Some(l.agent_id),
        _ => None,
    })
    .await
    .ok_or_else(|| tonic::Status::internal("no logged_in event"))
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.err().map_or(Code::Ok, |s| s.code())
}

#[test]
fn agents_log_in_with_valid_id_tokens_only() {
    let keys = keys();
    let config = config(&oidc_section(&keys));
    run(|| async move {
        let node = start(config).await;
        // ES256 and RS256, with or without the agent id typed at the desk.
        let t = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("giulia"));
        assert_eq!(token_login(&node, "", &t).await.expect("es256"), "giulia");
        let t = sign(&keys.rsa, Algorithm::RS256, "rsa1", &claims("emma"));
        assert_eq!(token_login(&node, "emma", &t).await.expect("rs256"), "emma");

        let mut wrong_iss = claims("marco");
        wrong_iss["iss"] = json!("https://evil.example.test");
        let mut wrong_aud = claims("marco");
        wrong_aud["aud"] = json!("another-app");
        let mut expired = claims("marco");
        expired["exp"] = json!(now() - 120);
        let mut no_exp = claims("marco");
        no_exp.as_object_mut().expect("object").remove("exp");
        let refused = [
            (
                "wrong issuer",
                sign(&keys.ec, Algorithm::ES256, "ec1", &wrong_iss),
            ),
            (
                "wrong audience",
                sign(&keys.ec, Algorithm::ES256, "ec1", &wrong_aud),
            ),
            (
                "expired",
                sign(&keys.rsa, Algorithm::RS256, "rsa1", &expired),
            ),
            ("no exp", sign(&keys.ec, Algorithm::ES256, "ec1", &no_exp)),
            (
                "unknown key under a known kid",
                sign(&keys.stranger, Algorithm::ES256, "ec1", &claims("marco")),
            ),
            (
                "unknown key without kid",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::ES256),
                    &claims("marco"),
                    &keys.stranger,
                )
                .expect("sign"),
            ),
            ("alg none", unsigned(&claims("marco"))),
            (
                "HS256 with the key id as secret",
                sign(
                    &EncodingKey::from_secret(b"ec1"),
                    Algorithm::HS256,
                    "ec1",
                    &claims("marco"),
                ),
            ),
            ("garbage", "a.b.c".to_string()),
        ];
        for (what, token) in &refused {
            assert_eq!(
                code(token_login(&node, "", token).await),
                Code::Unauthenticated,
                "{what}"
            );
        }
        // A valid token of another agent, or of an agent not configured.
        let t = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("giulia"));
        assert_eq!(
            code(token_login(&node, "marco", &t).await),
            Code::Unauthenticated
        );
        let t = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("mallory"));
        assert_eq!(
            code(token_login(&node, "", &t).await),
            Code::Unauthenticated
        );
        // And the right one still works.
        let t = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("marco"));
        assert_eq!(token_login(&node, "", &t).await.expect("marco"), "marco");
        node.shutdown().await;
    });
}

#[test]
fn refused_tokens_are_throttled_like_wrong_passwords() {
    let keys = keys();
    let config = config(&oidc_section(&keys));
    run(|| async move {
        let node = start(config).await;
        let mut expired = claims("marco");
        expired["exp"] = json!(now() - 3600);
        let bad = sign(&keys.ec, Algorithm::ES256, "ec1", &expired);
        for i in 0..6 {
            assert_eq!(
                code(token_login(&node, "marco", &bad).await),
                Code::Unauthenticated,
                "failure {i}"
            );
        }
        let good = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("marco"));
        assert_eq!(
            code(token_login(&node, "marco", &good).await),
            Code::ResourceExhausted,
            "marco is throttled, whatever the credential"
        );
        assert!(login(&node, "giulia", "pw").await.is_ok(), "others are not");
        node.shutdown().await;
    });
}

#[test]
fn operators_call_the_admin_api_with_a_jwt_and_its_scopes() {
    let keys = keys();
    let config = config(&oidc_section(&keys));
    run(|| async move {
        let node = start(config).await;
        let mut admin = admin(&node).await;
        let bearer = |token: &str| format!("Bearer {token}").parse().expect("header");
        let mut reader = claims("ops-anna");
        reader["scope"] = json!("openid read-only");
        let reader = sign(&keys.rsa, Algorithm::RS256, "rsa1", &reader);
        let mut req = tonic::Request::new(GetSnapshotRequest {});
        req.metadata_mut().insert("authorization", bearer(&reader));
        assert!(admin.get_snapshot(req).await.is_ok(), "read-only reads");
        let mut req = tonic::Request::new(SetCustomerTierRequest {
            customer_id: "vera".into(),
            tier: "vip".into(),
        });
        req.metadata_mut().insert("authorization", bearer(&reader));
        assert_eq!(
            code(admin.set_customer_tier(req).await),
            Code::PermissionDenied
        );

        // Scopes as an array with a prefix.
        let mut supervisor = claims("ops-bruno");
        supervisor["scope"] = json!(["centralino:supervisor"]);
        let supervisor = sign(&keys.ec, Algorithm::ES256, "ec1", &supervisor);
        let mut req = tonic::Request::new(ForceTransferRequest {
            conversation_id: "nope".into(),
            agent_id: "giulia".into(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("authorization", bearer(&supervisor));
        let got = code(admin.force_transfer(req).await);
        assert!(
            !matches!(got, Code::PermissionDenied | Code::Unauthenticated),
            "{got:?}"
        );

        // Expired, wrong audience, unsigned: unknown tokens.
        let mut expired = claims("ops-anna");
        expired["scope"] = json!("admin");
        expired["exp"] = json!(now() - 600);
        let mut wrong_aud = claims("ops-anna");
        wrong_aud["scope"] = json!("admin");
        wrong_aud["aud"] = json!("other");
        let mut none = claims("ops-anna");
        none["scope"] = json!("admin");
        for token in [
            sign(&keys.ec, Algorithm::ES256, "ec1", &expired),
            sign(&keys.ec, Algorithm::ES256, "ec1", &wrong_aud),
            unsigned(&none),
        ] {
            let mut req = tonic::Request::new(GetSnapshotRequest {});
            req.metadata_mut().insert("authorization", bearer(&token));
            assert_eq!(code(admin.get_snapshot(req).await), Code::Unauthenticated);
        }
        drop(admin);
        node.shutdown().await;
    });
}

#[test]
fn a_bad_oidc_section_is_refused_at_start() {
    let keys = keys();
    let mut config = config(&oidc_section(&keys));
    // With [oidc], agents without a password are SSO-only (and valid outside dev mode).
    config.node.dev_mode = false;
    config.node.admin_token.clear();
    for agent in &mut config.agents {
        agent.password.clear();
    }
    assert_eq!(config.credential_problems(), Vec::<String>::new());

    config.oidc.jwks_file = keys.jwks_file.with_file_name("missing.json");
    let problems = config.credential_problems().join("\n");
    assert!(
        problems.contains("oidc.jwks_file: cannot read"),
        "{problems}"
    );
    config.oidc.jwks_file = keys.jwks_file.clone();
    config.oidc.audience.clear();
    config.oidc.jwks_url = "https://login.example.test/jwks".into();
    let problems = config.credential_problems().join("\n");
    assert!(problems.contains("oidc.audience: required"), "{problems}");
    assert!(problems.contains("oidc.jwks_url"), "{problems}");
}

#[test]
fn a_rotated_jwks_file_is_read_again() {
    let keys = keys();
    let config = config(&oidc_section(&keys));
    run(|| async move {
        let node = start(config).await;
        let rotated = ec_key();
        let token = sign(&rotated, Algorithm::ES256, "ec2", &claims("giulia"));
        assert_eq!(
            code(token_login(&node, "", &token).await),
            Code::Unauthenticated,
            "the new key is not published yet"
        );
        // The identity provider publishes the new key next to the old one.
        let mut set: JwkSet =
            serde_json::from_str(&std::fs::read_to_string(&keys.jwks_file).expect("read"))
                .expect("jwks");
        let mut jwk = Jwk::from_encoding_key(&rotated, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some("ec2".into());
        set.keys.push(jwk);
        std::fs::write(&keys.jwks_file, serde_json::to_string(&set).expect("json")).expect("write");
        tokio::time::sleep(
            centralino_base::oidc::JWKS_RECHECK + std::time::Duration::from_millis(500),
        )
        .await;
        assert_eq!(
            token_login(&node, "", &token).await.expect("rotated key"),
            "giulia"
        );
        let old = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("marco"));
        assert_eq!(
            token_login(&node, "", &old).await.expect("old key"),
            "marco"
        );
        node.shutdown().await;
    });
}
