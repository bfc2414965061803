//! Agents' credentials: argon2id `password_hash`es log in (the throttle in front), plaintext
//! passwords, agents without a secret and the example configuration's published secrets
//! are refused at start outside dev mode with a message naming the key; in dev mode the
//! example runs and an empty password never logs in.

use centralino_testkit as common;

use centralino_base::credentials::hash_password;
use centralino_router::config::{Config, EXAMPLE_CONFIG};
use centralino_router::standalone::{self, StoreChoice};
use common::*;
use tonic::Code;

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn start_error(config: Config) -> String {
    match standalone::start_with(config, StoreChoice::Memory).await {
        Ok(node) => {
            node.shutdown().await;
            panic!("the node started");
        }
        Err(e) => e.to_string(),
    }
}

/// The test shop outside dev mode, its agents' passwords hashed.
fn production() -> Config {
    let mut config = config("");
    config.node.dev_mode = false;
    config.node.admin_token.clear();
    for agent in &mut config.agents {
        agent.password_hash = hash_password(&format!("{}-secret", agent.id)).expect("hash");
        agent.password.clear();
    }
    config
}

#[test]
fn the_example_configuration_is_refused_outside_dev_mode_naming_each_key() {
    run(|| async {
        let mut example = Config::from_toml(EXAMPLE_CONFIG, Vec::new()).expect("example parses");
        example.node.grpc_addr = "127.0.0.1:0".into();
        example.node.metrics_addr = String::new();
        assert!(!example.node.dev_mode, "the example is not in dev mode");
        let err = start_error(example.clone()).await;
        for key in [
            "agents[0] (id \"giulia\").password_hash: the example configuration's published hash",
            "agents[17] (id \"oliver\").password_hash",
            "operators[0] (name \"demo-admin\").token_hash: the example configuration's published token",
        ] {
            assert!(err.contains(key), "missing {key:?} in: {err}");
        }

        // In dev mode it starts, and the documented demo passwords log in.
        example.node.dev_mode = true;
        let node = standalone::start_with(example, StoreChoice::Memory)
            .await
            .expect("dev mode starts");
        assert!(login(&node, "giulia", "giulia-pw").await.is_ok());
        assert_eq!(
            code(login(&node, "giulia", "marco-pw").await),
            Code::Unauthenticated
        );
        node.shutdown().await;
    });
}

#[test]
fn plaintext_and_missing_secrets_are_refused_outside_dev_mode() {
    run(|| async {
        let mut plain = production();
        plain.agents[1].password = "a-real-looking-password".into();
        plain.agents[1].password_hash.clear();
        plain.agents[2].password_hash.clear();
        let err = start_error(plain).await;
        assert!(
            err.contains("agents[1] (id \"marco\").password: plaintext passwords are accepted only in dev mode"),
            "{err}"
        );
        assert!(
            err.contains("agents[2] (id \"emma\").password_hash: the agent has no secret"),
            "{err}"
        );
        assert!(!err.contains("giulia"), "giulia's hash is fine: {err}");

        let mut bad = production();
        bad.agents[0].password_hash = "$2b$12$notargon2notargon2notargon2".into();
        let err = start_error(bad).await;
        assert!(
            err.contains("agents[0] (id \"giulia\").password_hash: not a PHC string"),
            "{err}"
        );

        let mut both = production();
        both.agents[0].password = "x".into();
        let err = start_error(both).await;
        assert!(err.contains("not both"), "{err}");
    });
}

#[test]
fn hashed_passwords_log_in_and_wrong_ones_are_throttled() {
    run(|| async {
        let node = start(production()).await;
        assert!(login(&node, "giulia", "giulia-secret").await.is_ok());
        assert_eq!(
            code(login(&node, "giulia", "giulia-secret ").await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(login(&node, "giulia", "").await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(login(&node, "nobody", "giulia-secret").await),
            Code::Unauthenticated
        );
        // Five free failures for marco, then the throttle answers before any hashing.
        for _ in 0..6 {
            assert_eq!(
                code(login(&node, "marco", "guess").await),
                Code::Unauthenticated
            );
        }
        assert_eq!(
            code(login(&node, "marco", "marco-secret").await),
            Code::ResourceExhausted,
            "throttled, even with the right password"
        );
        assert!(login(&node, "emma", "emma-secret").await.is_ok());
        node.shutdown().await;
    });
}

#[test]
fn in_dev_mode_an_empty_password_never_logs_in() {
    let text = config_text("").replace(
        "id = \"emma\"\nname = \"Emma\"\npassword = \"pw\"",
        "id = \"emma\"\nname = \"Emma\"\npassword = \"\"",
    );
    let config = Config::from_toml(&text, Vec::new()).expect("config");
    assert!(config.node.dev_mode);
    assert!(config.agents[2].password.is_empty(), "emma has no password");
    run(|| async {
        let node = start(config).await;
        assert_eq!(code(login(&node, "emma", "").await), Code::Unauthenticated);
        assert_eq!(
            code(login(&node, "emma", "pw").await),
            Code::Unauthenticated
        );
        assert!(login(&node, "giulia", "pw").await.is_ok());
        node.shutdown().await;
    });
}
