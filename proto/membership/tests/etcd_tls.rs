//! The etcd client against a real etcd that requires TLS client certificates
//! (`--client-cert-auth`, peer TLS) and then user authentication (`scripts/ensure_etcd.sh`
//! installs etcd; these tests fail, never skip, without it).

use std::time::Duration;

use centralino_base::test_pki::Pki;
use centralino_membership::etcd::testing::{EtcdCluster, EtcdTls};
use centralino_membership::etcd::{Etcd, EtcdSecurity};
use centralino_membership::kv::Kv;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

async fn secure_cluster(pki: &Pki, members: usize) -> EtcdCluster {
    let server = pki.issue("etcd-server", None);
    let client = pki.issue("etcd-client", None);
    EtcdCluster::start_secure(
        members,
        EtcdTls {
            ca_file: pki.ca_file().to_path_buf(),
            cert_file: server.cert_file,
            key_file: server.key_file,
            client: EtcdSecurity {
                ca_file: path(pki.ca_file()),
                cert_file: path(&client.cert_file),
                key_file: path(&client.key_file),
                ..Default::default()
            },
        },
    )
    .await
    .unwrap_or_else(|e| panic!("cannot start etcd: {e}"))
}

async fn reads(endpoints: &[String], security: &EtcdSecurity) -> bool {
    match Etcd::connect_with(endpoints, REQUEST_TIMEOUT, security).await {
        Ok(etcd) => etcd.get("centralino-probe").await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn etcd_with_client_certificates_serves_only_clients_with_one() {
    let pki = Pki::new();
    let cluster = secure_cluster(&pki, 3).await;
    let endpoints = cluster.endpoints();
    assert!(endpoints.iter().all(|e| e.starts_with("https://")));
    let security = cluster.security();
    let etcd = Etcd::connect_with(&endpoints, REQUEST_TIMEOUT, &security)
        .await
        .expect("connect with a client certificate");
    etcd.put("k", b"v".to_vec(), None).await.expect("put");
    assert_eq!(
        etcd.get("k").await.expect("get").map(|kv| kv.value),
        Some(b"v".to_vec())
    );

    // Without a client certificate, with one of another CA, or in plaintext: nothing.
    let no_cert = EtcdSecurity {
        ca_file: security.ca_file.clone(),
        ..Default::default()
    };
    assert!(!reads(&endpoints, &no_cert).await, "no client certificate");
    let other = Pki::new();
    let stranger = other.issue("stranger", None);
    let foreign = EtcdSecurity {
        cert_file: path(&stranger.cert_file),
        key_file: path(&stranger.key_file),
        ..security.clone()
    };
    assert!(
        !reads(&endpoints, &foreign).await,
        "another CA's certificate"
    );
    let plaintext: Vec<String> = endpoints
        .iter()
        .map(|e| e.replace("https://", "http://"))
        .collect();
    assert!(
        !reads(&plaintext, &EtcdSecurity::default()).await,
        "plaintext"
    );
}

#[tokio::test]
async fn etcd_with_users_serves_the_right_password_only() {
    let pki = Pki::new();
    let cluster = secure_cluster(&pki, 1).await;
    let endpoints = cluster.endpoints();
    let security = cluster.security();
    // Turn etcd's authentication on: a root user with a password.
    let options = etcd_client::ConnectOptions::new().with_tls(
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(
                std::fs::read(pki.ca_file()).expect("ca"),
            ))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(&security.cert_file).expect("cert"),
                std::fs::read(&security.key_file).expect("key"),
            )),
    );
    let mut admin = etcd_client::Client::connect(&endpoints, Some(options))
        .await
        .expect("admin client");
    admin
        .user_add("root", "s3cret-root", None)
        .await
        .expect("user");
    admin.user_grant_role("root", "root").await.expect("grant");
    admin.auth_enable().await.expect("auth enable");

    let user = |password: &str| EtcdSecurity {
        username: "root".into(),
        password: password.into(),
        ..security.clone()
    };
    let etcd = Etcd::connect_with(&endpoints, REQUEST_TIMEOUT, &user("s3cret-root"))
        .await
        .expect("connect as root");
    etcd.put("k", b"v".to_vec(), None)
        .await
        .expect("put as root");
    assert!(!reads(&endpoints, &user("wrong")).await, "a wrong password");
    // The certificate alone names user "etcd-client" (its CN), which does not exist.
    assert!(!reads(&endpoints, &security).await, "no user");
}

/// Writes `from`'s certificate and key over `to`'s (key first, each by rename: what a
/// renewal by cert-manager or `cluster.sh` looks like to the node).
fn install(from: &centralino_base::tls::TlsFiles, cert: &std::path::Path, key: &std::path::Path) {
    for (src, dst) in [(&from.key_file, key), (&from.cert_file, cert)] {
        let tmp = dst.with_extension("tmp");
        std::fs::copy(src, &tmp).expect("copy");
        std::fs::rename(&tmp, dst).expect("rename");
    }
}

#[tokio::test]
async fn a_renewed_client_certificate_is_used_without_a_restart() {
    let pki = Pki::new();
    let cluster = secure_cluster(&pki, 1).await;
    let endpoints = cluster.endpoints();
    // The node's own copy of its client certificate, which the test renews in place.
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    install(&pki.issue("etcd-client-1", None), &cert, &key);
    let security = EtcdSecurity {
        cert_file: path(&cert),
        key_file: path(&key),
        ..cluster.security()
    };
    let every = Duration::from_millis(200);
    let etcd = Etcd::connect_reloading(&endpoints, REQUEST_TIMEOUT, &security, every)
        .await
        .expect("connect");
    etcd.put("k", b"1".to_vec(), None).await.expect("put");

    // Replaced by a certificate of a CA etcd does not trust: once reloaded, calls fail —
    // proof that the client now presents the new identity.
    let other = Pki::new();
    install(&other.issue("stranger", None), &cert, &key);
    let refused = async {
        loop {
            if etcd.get("k").await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("the foreign certificate was picked up");

    // Renewed with a good certificate again: calls work again, without reconnecting.
    install(&pki.issue("etcd-client-2", None), &cert, &key);
    let served = async {
        loop {
            if let Ok(Some(kv)) = etcd.get("k").await {
                return kv.value;
            }
            tokio::time::sleep(every).await;
        }
    };
    let value = tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("the renewed certificate was picked up");
    assert_eq!(value, b"1".to_vec());

    // A half-written renewal (an empty certificate) keeps the good client.
    std::fs::write(&cert, b"").expect("truncate");
    tokio::time::sleep(every * 3).await;
    etcd.put("k", b"2".to_vec(), None)
        .await
        .expect("still served with the last good certificate");
}
