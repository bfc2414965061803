//! What a standalone node's gRPC listener serves besides the APIs: health for every
//! service, and reflection (v1 and v1alpha) that lists the public services only.

use centralino_testkit as common;

use centralino_proto::v1::{admin_server, agent_desk_server, conversation_service_server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server;
use tonic_health::pb::HealthCheckRequest;

#[test]
fn reflection_lists_the_public_services_over_v1_and_v1alpha() {
    common::run(|| async {
        let node = common::start(common::config("")).await;
        let mut public = vec![
            admin_server::SERVICE_NAME.to_string(),
            agent_desk_server::SERVICE_NAME.to_string(),
            conversation_service_server::SERVICE_NAME.to_string(),
            health_server::SERVICE_NAME.to_string(),
        ];
        public.sort();
        let (v1, v1alpha) = common::reflected_services(node.grpc_addr).await;
        assert_eq!(v1, public, "reflection v1");
        assert_eq!(v1alpha, public, "reflection v1alpha");

        let mut health = HealthClient::new(common::channel(&node).await);
        for service in [
            conversation_service_server::SERVICE_NAME,
            agent_desk_server::SERVICE_NAME,
            admin_server::SERVICE_NAME,
        ] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .expect("health check")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service}"
            );
        }
        node.shutdown().await;
    });
}
