//! The one way every gRPC listener of centralino is built (standalone node, cluster router,
//! agent-node, benchmarks): a [`Listener`] whose accepted connections have `TCP_NODELAY`
//! and TCP keepalive, and a [`GrpcServer`] with health, reflection (v1 and v1alpha, listing
//! the public services only) and HTTP/2 keepalive.
//!
//! tonic ignores its own `tcp_nodelay`/`tcp_keepalive` settings when it is given the
//! incoming connections, so they are set here on every accepted socket; without
//! `TCP_NODELAY`, Nagle's algorithm holds small writes (a streamed event) for ~40 ms.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::{self, HealthServer};
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tracing::warn;

/// Idle time of a connection before the kernel sends TCP keepalive probes.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// Interval of the server's HTTP/2 PINGs on a connection.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// A PING not acknowledged within this closes the connection.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a gRPC listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The reflection service could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A bound TCP listener; the connections it accepts have `TCP_NODELAY` and TCP keepalive
/// ([`TCP_KEEPALIVE`]). The only incoming stream [`GrpcServer::start`] takes.
#[derive(Debug)]
pub struct Listener {
    incoming: TcpIncoming,
    local_addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (`host:port`; port 0 picks a free one).
    pub async fn bind(addr: &str) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(TCP_KEEPALIVE));
        Ok(Self {
            incoming,
            local_addr,
        })
    }

    /// Returns the bound address (the chosen port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Stream for Listener {
    type Item = std::io::Result<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.incoming).poll_next(cx)
    }
}

/// A gRPC server being assembled: the health service is always there, every added service
/// is reported SERVING when the server starts, and reflection lists health and the services
/// added with [`public`](Self::public), never those added with [`internal`](Self::internal).
pub struct GrpcServer {
    health: HealthReporter,
    routes: Routes,
    served: Vec<&'static str>,
    public: Vec<&'static str>,
    descriptors: Vec<&'static [u8]>,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    /// Returns a server with the health service only.
    pub fn new() -> Self {
        let health = HealthReporter::new();
        let service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
        Self {
            health,
            routes: Routes::new(service),
            served: Vec::new(),
            public: vec![health_server::SERVICE_NAME],
            descriptors: vec![tonic_health::pb::FILE_DESCRIPTOR_SET],
        }
    }

    /// Returns the health reporter (to turn services NOT_SERVING while draining).
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Adds an encoded file descriptor set that reflection serves; it should describe the
    /// public services only.
    pub fn describe(mut self, encoded: &'static [u8]) -> Self {
        self.descriptors.push(encoded);
        self
    }

    /// Adds a service that reflection lists.
    pub fn public<S>(self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let mut server = self.add(service);
        server.public.push(S::NAME);
        server
    }

    /// Adds a service that reflection does not list (the API between nodes).
    pub fn internal<S>(self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.add(service)
    }

    fn add<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.served.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Reports every service SERVING and serves on `listener` until `shutdown` completes;
    /// then the listener closes and open connections are drained. Errors while serving are
    /// logged; the returned task ends with the server.
    pub async fn start<F>(
        self,
        listener: Listener,
        shutdown: F,
    ) -> Result<tokio::task::JoinHandle<()>, ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let reflection = || {
            let builder = self.descriptors.iter().fold(
                tonic_reflection::server::Builder::configure(),
                |builder, set| builder.register_encoded_file_descriptor_set(set),
            );
            self.public
                .iter()
                .fold(builder, |builder, name| builder.with_service_name(*name))
        };
        let v1 = reflection().build_v1()?;
        let v1alpha = reflection().build_v1alpha()?;
        for name in &self.served {
            self.health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let routes = self.routes.add_service(v1).add_service(v1alpha);
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .add_routes(routes);
        Ok(tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(listener, shutdown)
                .await
            {
                warn!(error = %e, "gRPC server stopped with an error");
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;
    use tonic::transport::Channel;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::{v1, v1alpha};

    /// A service under another name, to stand for an internal API.
    #[derive(Clone)]
    struct Internal(HealthServer<HealthService>);

    impl NamedService for Internal {
        const NAME: &'static str = "centralino.test.Internal";
    }

    impl Service<Request<Body>> for Internal {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = <HealthServer<HealthService> as Service<Request<Body>>>::Future;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Service::<Request<Body>>::poll_ready(&mut self.0, cx)
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            self.0.call(request)
        }
    }

    fn internal() -> Internal {
        Internal(HealthServer::new(HealthService::from_health_reporter(
            HealthReporter::new(),
        )))
    }

    #[tokio::test]
    async fn accepted_connections_have_nodelay_and_keepalive() {
        let mut listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr()).await.unwrap();
        let accepted = listener.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off");
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap(), "SO_KEEPALIVE is off");
        assert_eq!(socket.tcp_keepalive_time().unwrap(), TCP_KEEPALIVE);
    }

    async fn started() -> (Channel, tokio::sync::oneshot::Sender<()>) {
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        GrpcServer::new()
            .internal(internal())
            .start(listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        (channel, stop)
    }

    #[tokio::test]
    async fn reflection_v1_and_v1alpha_list_public_services_only() {
        let (channel, _stop) = started().await;
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let mut answers = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.next().await.unwrap().unwrap();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("v1 answered {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec![health_server::SERVICE_NAME.to_string()]);

        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
        let mut answers = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.next().await.unwrap().unwrap();
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("v1alpha answered {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec![health_server::SERVICE_NAME.to_string()]);
    }

    #[tokio::test]
    async fn added_services_are_reported_serving() {
        let (channel, _stop) = started().await;
        let mut health = HealthClient::new(channel);
        let status = health
            .check(HealthCheckRequest {
                service: Internal::NAME.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
}
