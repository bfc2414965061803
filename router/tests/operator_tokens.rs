//! Operator tokens created at run time (issue 11): an admin creates a token with scopes and
//! gets its secret once; the record keeps only its digest; the token works at once with
//! exactly its scopes, on every router of a cluster; a revoked token is refused from the
//! next call, everywhere; each change is in the audit log under the operator's name; bad
//! names, unknown scopes, a name in use and a caller without the admin scope change
//! nothing.

use centralino_testkit as common;

use centralino_agent_node::cluster_node;
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::{
    CreateOperatorTokenRequest, GetSnapshotRequest, ListOperatorTokensRequest,
    RevokeOperatorTokenRequest, SetCustomerTierRequest,
};
use centralino_record::testing::TestPostgres;
use centralino_router::clustered;
use common::cluster::{agent_node_config, channel_at, cluster_config, unique_id};
use common::*;
use tonic::transport::Channel;
use tonic::Code;

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

fn create(name: &str, scopes: &[&str]) -> CreateOperatorTokenRequest {
    CreateOperatorTokenRequest {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    }
}

/// The status code of a snapshot call with `token` (OK when it answered).
async fn snapshot_code(admin: &mut AdminClient<Channel>, token: &str) -> Code {
    admin
        .get_snapshot(with_token(GetSnapshotRequest {}, token))
        .await
        .err()
        .map_or(Code::Ok, |s| s.code())
}

#[test]
fn a_created_token_works_with_its_scopes_until_revoked() {
    run(|| async {
        let node = start(config("")).await;
        let mut admin = admin(&node).await;
        let made = admin
            .create_operator_token(authed(create("wallboard", &["read-only"])))
            .await
            .expect("created")
            .into_inner();
        assert_eq!(made.name, "wallboard");
        assert_eq!(made.scopes, ["read-only"]);
        assert!(made.token.starts_with("cnt_"), "{:?}", made.token);
        let reader = made.token.clone();
        // Its scope and nothing more.
        assert_eq!(snapshot_code(&mut admin, &reader).await, Code::Ok);
        let tier = admin
            .set_customer_tier(with_token(
                SetCustomerTierRequest {
                    customer_id: "c1".into(),
                    tier: "vip".into(),
                },
                &reader,
            ))
            .await
            .unwrap_err();
        assert_eq!(tier.code(), Code::PermissionDenied);
        // A reader cannot make tokens; nothing is stored.
        let refused = admin
            .create_operator_token(with_token(create("sneaky", &["admin"]), &reader))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        // Bad input is refused and changes nothing.
        for (bad, why) in [
            (create("has space", &["admin"]), "name"),
            (create("", &["admin"]), "name"),
            (create("ok-name", &[]), "scopes"),
            (create("ok-name", &["root"]), "scope"),
        ] {
            let status = admin.create_operator_token(authed(bad)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{why}: {status:?}");
            assert!(status.message().contains(why), "{status:?}");
        }
        let taken = admin
            .create_operator_token(authed(create("wallboard", &["admin"])))
            .await
            .unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists);
        // The list shows names and scopes; the record holds a digest, never the secret.
        let listed = admin
            .list_operator_tokens(authed(ListOperatorTokensRequest {}))
            .await
            .expect("list")
            .into_inner()
            .tokens;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].name.as_str(), listed[0].scopes.clone()),
            ("wallboard", vec!["read-only".to_string()])
        );
        let stored = node.router.shared.record.list_tokens().await.unwrap();
        assert_eq!(
            stored[0].digest,
            centralino_base::credentials::token_hash(&reader)
        );
        assert!(!format!("{stored:?}").contains(&reader));
        // Revoked: refused from the next call; revoking again finds nothing.
        let revoked = admin
            .revoke_operator_token(authed(RevokeOperatorTokenRequest {
                name: "wallboard".into(),
            }))
            .await
            .expect("revoke")
            .into_inner();
        assert!(revoked.revoked);
        assert_eq!(
            snapshot_code(&mut admin, &reader).await,
            Code::Unauthenticated
        );
        let again = admin
            .revoke_operator_token(authed(RevokeOperatorTokenRequest {
                name: "wallboard".into(),
            }))
            .await
            .expect("revoke again")
            .into_inner();
        assert!(!again.revoked);
        // The audit log: who made and revoked it, never the digest.
        let audit = node.router.shared.record.audit_after(0, 100).await.unwrap();
        let token_rows: Vec<_> = audit
            .iter()
            .filter(|a| a.subject == "token/wallboard")
            .collect();
        assert_eq!(
            token_rows
                .iter()
                .map(|a| (a.action.as_str(), a.actor.as_str()))
                .collect::<Vec<_>>(),
            [
                ("token.put", "admin_token"),
                ("token.delete", "admin_token")
            ],
            "{audit:?}"
        );
        assert!(!format!("{audit:?}").contains(&stored[0].digest));
        node.shutdown().await;
    });
}

#[test]
fn in_a_cluster_a_token_made_on_one_router_works_and_is_revoked_on_every_router() {
    run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let pg = TestPostgres::start_new().expect("PostgreSQL (scripts/ensure_postgres.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let router_config = |node: &str| {
            let mut config = cluster_config(node, &prefix);
            config.cluster.etcd_endpoints = endpoints.clone();
            config.record.postgres_url = pg.url();
            config
        };
        let a = clustered::start(router_config("router-tok-a"))
            .await
            .expect("router a starts");
        let b = clustered::start(router_config("router-tok-b"))
            .await
            .expect("router b starts");
        let agents = cluster_node::start(agent_node_config(&router_config("agent-node-tok")))
            .await
            .expect("agent-node starts");
        common::cluster::settled(&a).await;
        common::cluster::settled(&b).await;
        let mut on_a = AdminClient::new(channel_at(a.grpc_addr).await);
        let mut on_b = AdminClient::new(channel_at(b.grpc_addr).await);
        let token = on_a
            .create_operator_token(authed(create("crm", &["supervisor"])))
            .await
            .expect("created on a")
            .into_inner()
            .token;
        // At once on the other router (the record is shared; no cache to wait for).
        assert_eq!(snapshot_code(&mut on_b, &token).await, Code::Ok);
        assert_eq!(snapshot_code(&mut on_a, &token).await, Code::Ok);
        assert!(
            on_b.revoke_operator_token(authed(RevokeOperatorTokenRequest { name: "crm".into() }))
                .await
                .expect("revoked on b")
                .into_inner()
                .revoked
        );
        assert_eq!(
            snapshot_code(&mut on_a, &token).await,
            Code::Unauthenticated
        );
        assert_eq!(
            snapshot_code(&mut on_b, &token).await,
            Code::Unauthenticated
        );
        b.stop().await;
        a.stop().await;
        drop(agents);
    });
}
