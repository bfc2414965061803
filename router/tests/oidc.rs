//! OIDC/JWT: agents log in at the desk with an ID token and operators call the Admin API
//! with a JWT, verified against a JWKS file or a JWKS URL (RS256 and ES256; keys made at
//! test time): issuer, audience, expiry and signature are checked, `alg: none` and unknown
//! keys are refused, and refused tokens count as failed logins for the throttle. The URL is
//! served by a small HTTP server on 127.0.0.1 started by the test, which rotates the keys.

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
            target: Some(
                centralino_proto::v1::force_transfer_request::Target::AgentId("giulia".into()),
            ),
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
    // An https JWKS URL is fine; plain http only on loopback (or in dev mode).
    config.oidc.jwks_url = "https://login.example.test/jwks".into();
    assert_eq!(config.credential_problems(), Vec::<String>::new());
    config.oidc.jwks_url = "http://127.0.0.1:8080/jwks".into();
    assert_eq!(config.credential_problems(), Vec::<String>::new());
    config.oidc.jwks_url = "http://login.example.test/jwks".into();
    let problems = config.credential_problems().join("\n");
    assert!(
        problems.contains("oidc.jwks_url: plain http://"),
        "{problems}"
    );
    config.node.dev_mode = true;
    assert!(!config
        .credential_problems()
        .join("\n")
        .contains("oidc.jwks_url"));
    config.node.dev_mode = false;
    config.oidc.jwks_file = Default::default();
    config.oidc.jwks_url.clear();
    config.oidc.audience.clear();
    let problems = config.credential_problems().join("\n");
    assert!(problems.contains("oidc.audience: required"), "{problems}");
    assert!(
        problems.contains("oidc.jwks_file or oidc.jwks_url: required"),
        "{problems}"
    );
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

/// A JWKS server on 127.0.0.1: answers every request with the current document (or with
/// the current error status) and counts the requests.
struct JwksServer {
    url: String,
    body: std::sync::Arc<parking_lot::Mutex<Result<String, u16>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    async fn start(jwks: String) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/realms/shop/certs",
            listener.local_addr().expect("addr")
        );
        let body = std::sync::Arc::new(parking_lot::Mutex::new(Ok(jwks)));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, count) = (body.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (served, count) = (served.clone(), count.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.ends_with(b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let current = served.lock().clone();
                    let response = match current {
                        Ok(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Err(code) => format!(
                            "HTTP/1.1 {code} Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        ),
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
            body,
            requests,
        }
    }

    fn serve(&self, answer: Result<String, u16>) {
        *self.body.lock() = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn jwks_of(keys: &[(&EncodingKey, &str)]) -> String {
    let keys = keys
        .iter()
        .map(|(key, kid)| {
            let mut jwk = Jwk::from_encoding_key(key, Algorithm::ES256).expect("jwk");
            jwk.common.key_id = Some(kid.to_string());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).expect("json")
}

fn url_section(url: &str, refresh_secs: u64) -> String {
    format!(
        "[oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_url = \"{url}\"\njwks_refresh_secs = {refresh_secs}\n"
    )
}

#[test]
fn a_jwks_url_is_fetched_and_fetched_again_for_a_new_key() {
    run(|| async move {
        let first = ec_key();
        let server = JwksServer::start(jwks_of(&[(&first, "k1")])).await;
        // No periodic refresh within the test: only the new key's kid triggers one.
        let node = start(config(&url_section(&server.url, 3600))).await;
        assert!(server.requests() >= 1, "fetched at start");
        let t = sign(&first, Algorithm::ES256, "k1", &claims("giulia"));
        assert_eq!(token_login(&node, "", &t).await.expect("k1"), "giulia");

        // The identity provider rotates: k2 replaces k1.
        let second = ec_key();
        server.serve(Ok(jwks_of(&[(&second, "k2")])));
        let before = server.requests();
        let t = sign(&second, Algorithm::ES256, "k2", &claims("marco"));
        assert_eq!(
            token_login(&node, "", &t).await.expect("the rotated key"),
            "marco"
        );
        assert!(server.requests() > before, "the unknown kid made it fetch");
        // k1 is gone; another unknown kid within 30 s does not fetch again.
        let fetched = server.requests();
        let old = sign(&first, Algorithm::ES256, "k1", &claims("emma"));
        assert_eq!(
            code(token_login(&node, "", &old).await),
            Code::Unauthenticated
        );
        let stranger = sign(&ec_key(), Algorithm::ES256, "k3", &claims("emma"));
        assert_eq!(
            code(token_login(&node, "", &stranger).await),
            Code::Unauthenticated
        );
        assert!(
            server.requests() <= fetched + 1,
            "at most one kid-triggered fetch per 30 s: {} after {fetched}",
            server.requests()
        );
        node.shutdown().await;
    });
}

#[test]
fn a_failed_jwks_refresh_keeps_the_last_good_keys() {
    run(|| async move {
        let key = ec_key();
        let server = JwksServer::start(jwks_of(&[(&key, "k1")])).await;
        let node = start(config(&url_section(&server.url, 1))).await;
        let t = sign(&key, Algorithm::ES256, "k1", &claims("giulia"));
        assert_eq!(token_login(&node, "", &t).await.expect("k1"), "giulia");
        // The identity provider fails; the periodic refreshes fail with it.
        server.serve(Err(503));
        let before = server.requests();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert!(server.requests() > before, "refreshes were tried");
        let t = sign(&key, Algorithm::ES256, "k1", &claims("marco"));
        assert_eq!(
            token_login(&node, "", &t)
                .await
                .expect("the last good keys"),
            "marco"
        );
        // A broken document is refused the same way.
        server.serve(Ok("{\"keys\": \"nope\"}".to_string()));
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let t = sign(&key, Algorithm::ES256, "k1", &claims("emma"));
        assert_eq!(token_login(&node, "", &t).await.expect("still"), "emma");
        node.shutdown().await;
    });
}

#[test]
fn a_start_without_a_reachable_jwks_url_or_file_fails_clearly() {
    run(|| async move {
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/jwks", closed.local_addr().expect("addr"));
        drop(closed);
        let err = centralino_router::standalone::start_with(
            config(&url_section(&url, 300)),
            centralino_router::standalone::StoreChoice::Memory,
        )
        .await
        .err()
        .expect("the start fails");
        let text = err.to_string();
        assert!(
            text.contains("oidc.jwks_url: cannot fetch the JWKS")
                && text.contains("no oidc.jwks_file"),
            "{text}"
        );
        // With a file to fall back on, the node starts and uses the file's keys.
        let keys = keys();
        let section = format!(
            "{}jwks_file = \"{}\"\n",
            url_section(&url, 300),
            keys.jwks_file.display()
        );
        let node = start(config(&section)).await;
        let t = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("giulia"));
        assert_eq!(
            token_login(&node, "", &t).await.expect("file keys"),
            "giulia"
        );
        node.shutdown().await;
    });
}

/// An agent whose identity provider's subject is not their id logs in with it: the file's
/// `oidc_subject`, or one set at run time through the directory. The subject mapping is
/// explicit: a token naming such an agent by id does not log in, and two agents cannot
/// share a subject.
#[test]
fn an_oidc_subject_maps_an_opaque_identity_to_its_agent() {
    use centralino_proto::v1::admin_client::AdminClient;
    use centralino_proto::v1::{DirectoryKind, PutDirectoryEntryRequest};
    let keys = keys();
    let extra = format!(
        "{}\n[[agents]]\nid = \"sara\"\nname = \"Sara\"\nteam = \"italian\"\noidc_subject = \"00u-opaque-42\"\nskills = {{ \"lang:it\" = 4, support = 3 }}\n",
        oidc_section(&keys)
    );
    let config = config(&extra);
    run(|| async move {
        let node = start(config).await;
        let t = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("00u-opaque-42"));
        assert_eq!(token_login(&node, "", &t).await.expect("subject"), "sara");
        assert_eq!(
            token_login(&node, "sara", &t).await.expect("with id"),
            "sara"
        );
        let by_id = sign(&keys.ec, Algorithm::ES256, "ec1", &claims("sara"));
        assert_eq!(
            code(token_login(&node, "", &by_id).await),
            Code::Unauthenticated,
            "an agent with a subject is not named by id"
        );
        // At run time: the directory maps another subject to another agent.
        let mut admin = AdminClient::new(channel(&node).await);
        let put = |id: &str, subject: &str| PutDirectoryEntryRequest {
            kind: DirectoryKind::Agent as i32,
            id: id.to_string(),
            json: json!({"name": id, "team": "italian", "oidc_subject": subject,
                         "skills": {"lang:it": 3}})
            .to_string(),
            expected_version: None,
        };
        admin
            .put_directory_entry(authed(put("tina", "00u-opaque-77")))
            .await
            .expect("tina with a subject");
        let taken = admin
            .put_directory_entry(authed(put("ugo", "00u-opaque-77")))
            .await
            .expect_err("a subject already taken");
        assert_eq!(taken.code(), Code::InvalidArgument, "{taken}");
        let tina = sign(
            &keys.rsa,
            Algorithm::RS256,
            "rsa1",
            &claims("00u-opaque-77"),
        );
        let logged = wait_until(5, || {
            let node = &node;
            let tina = tina.clone();
            async move {
                token_login(node, "", &tina)
                    .await
                    .is_ok_and(|id| id == "tina")
            }
        })
        .await;
        assert!(logged, "tina logs in with her subject");
        node.shutdown().await;
    });
}
