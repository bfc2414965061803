//! The one way every gRPC listener of centralino is built (standalone node, cluster router,
//! agent-node, benchmarks): a [`Listener`] whose accepted connections have `TCP_NODELAY`
//! and TCP keepalive, and a [`GrpcServer`] with health, reflection (v1 and v1alpha, listing
//! the public services only), HTTP/2 keepalive, a cap on concurrent streams per connection,
//! a timeout for unary calls and, optionally, TLS ([`GrpcServer::tls`]).
//!
//! With TLS the server accepts the handshakes itself (tokio-rustls, each handshake in its
//! own task with a deadline) and hands the encrypted connections to tonic, so the socket
//! options stay. Every request carries the client's address (tonic's `remote_addr()` works)
//! and, when it presented a certificate naming a centralino identity, that
//! [`PeerIdentity`] in its extensions ([`peer_identity`]).
//!
//! tonic ignores its own `tcp_nodelay`/`tcp_keepalive` settings when it is given the
//! incoming connections, so they are set here on every accepted socket; without
//! `TCP_NODELAY`, Nagle's algorithm holds small writes (a streamed event) for ~40 ms.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tracing::debug;

use crate::tls::{PeerIdentity, ServerTls};
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
/// Default cap on concurrent streams (calls) of one HTTP/2 connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Deadline of a unary call (and of the response headers of a streaming one); a client's
/// shorter `grpc-timeout` wins.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake not done within this is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once on one listener; further connections wait.
const MAX_HANDSHAKES: usize = 512;

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
    tls: Option<ServerTls>,
    max_concurrent_streams: u32,
    web: Option<WebRoutes>,
}

/// Wraps the gRPC routes of a public listener into its whole router (the browser routes,
/// CORS); see `centralino_web::Web::wrap`.
pub type WebRoutes = Box<dyn FnOnce(axum::Router) -> axum::Router + Send>;

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
            tls: None,
            max_concurrent_streams: MAX_CONCURRENT_STREAMS,
            web: None,
        }
    }

    /// Serves browsers too: HTTP/1.1 next to HTTP/2, gRPC-web on the gRPC services, and
    /// the router `web` makes of the gRPC routes (the JSON/SSE API and the pages).
    pub fn web(mut self, web: WebRoutes) -> Self {
        self.web = Some(web);
        self
    }

    /// Serves TLS with `tls` (plaintext when None).
    pub fn tls(mut self, tls: Option<ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the cap on concurrent streams of one connection (default
    /// [`MAX_CONCURRENT_STREAMS`]).
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max;
        self
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
        let builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(self.max_concurrent_streams)
            .timeout(REQUEST_TIMEOUT);
        let incoming: Pin<Box<dyn Stream<Item = std::io::Result<Conn>> + Send>> = match self.tls {
            None => Box::pin(listener.map(|accepted| accepted.map(Conn::plain))),
            Some(tls) => Box::pin(tls_incoming(listener, tls)),
        };
        let serving = match self.web {
            None => {
                let router = builder
                    .layer(tonic::service::InterceptorLayer::new(peer_extensions))
                    .add_routes(routes);
                Box::pin(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                })
                    as Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>
            }
            Some(web) => {
                let whole = web(routes.into_axum_router()).fallback(not_found);
                let router = builder
                    .accept_http1(true)
                    .layer(tonic::service::InterceptorLayer::new(peer_extensions))
                    .layer(BrowserLayer)
                    .add_routes(Routes::from(whole));
                Box::pin(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                })
            }
        };
        Ok(tokio::spawn(async move {
            if let Err(e) = serving.await {
                warn!(error = %e, "gRPC server stopped with an error");
            }
        }))
    }
}

/// Puts gRPC-web in front of a public listener's routes for the requests that are gRPC-web
/// or HTTP/2 (which tonic-web passes through), and lets plain HTTP/1.1 requests (the JSON
/// API, the pages) reach the routes as they are: tonic-web alone answers those 400.
#[derive(Debug, Clone, Copy)]
struct BrowserLayer;

impl<S: Clone> tower::Layer<S> for BrowserLayer {
    type Service = Browser<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Browser {
            web: tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), inner.clone()),
            plain: inner,
        }
    }
}

/// See [`BrowserLayer`].
#[derive(Debug, Clone)]
struct Browser<S> {
    web: tonic_web::GrpcWebService<S>,
    plain: S,
}

impl<S> Service<Request<Body>> for Browser<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call readies its own clone (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use tower::ServiceExt;
        let grpc_web = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc-web"));
        if grpc_web || request.version() == tonic::codegen::http::Version::HTTP_2 {
            Box::pin(self.web.clone().oneshot(request))
        } else {
            Box::pin(self.plain.clone().oneshot(request))
        }
    }
}

/// A path nothing serves: UNIMPLEMENTED for a gRPC call, 404 for a browser.
async fn not_found(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let grpc = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("no such method")
            .into_http::<()>()
            .into_parts();
        return axum::response::Response::from_parts(parts, axum::body::Body::empty());
    }
    (
        axum::http::StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        r#"{"code":"NOT_FOUND","message":"nothing is served at this path"}"#,
    )
        .into_response()
}

/// Copies what the connection knows into each request: the client's address in tonic's
/// own form (for `remote_addr()`) and the peer's identity.
#[allow(clippy::result_large_err)]
fn peer_extensions(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(info) = request.extensions().get::<ConnInfo>().cloned() {
        request.extensions_mut().insert(info.tcp);
        if let Some(peer) = info.peer {
            request.extensions_mut().insert(peer);
        }
    }
    Ok(request)
}

/// Who may call the services of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (public listeners; the internal plane in dev mode, plaintext).
    Open,
    /// Callers with a certificate of the cluster CA naming a centralino identity (the
    /// internal plane in cluster mode); each call then checks the caller's role.
    Mtls,
}

impl Access {
    /// Returns the caller's identity when it has one of `roles`: None with [`Access::Open`]
    /// (no check); UNAUTHENTICATED without an identity, PERMISSION_DENIED with another
    /// role.
    #[allow(clippy::result_large_err)]
    pub fn check<T>(
        self,
        request: &tonic::Request<T>,
        roles: &[crate::tls::PeerRole],
        call: &str,
    ) -> Result<Option<PeerIdentity>, tonic::Status> {
        self.check_identity(peer_identity(request), roles, call)
    }

    #[allow(clippy::result_large_err)]
    fn check_identity(
        self,
        peer: Option<&PeerIdentity>,
        roles: &[crate::tls::PeerRole],
        call: &str,
    ) -> Result<Option<PeerIdentity>, tonic::Status> {
        if self == Access::Open {
            return Ok(None);
        }
        let Some(peer) = peer else {
            return Err(tonic::Status::unauthenticated(
                "the internal plane needs a peer certificate of the cluster CA",
            ));
        };
        if !roles.contains(&peer.role) {
            warn!(%peer, call, "internal call refused: wrong role");
            return Err(tonic::Status::permission_denied(format!(
                "{call} is not for a {}",
                peer.role
            )));
        }
        Ok(Some(peer.clone()))
    }

    /// Wraps `service` so that only callers of `roles` reach it (every call of it).
    pub fn guard<S>(self, roles: &'static [crate::tls::PeerRole], service: S) -> Guarded<S> {
        Guarded {
            inner: service,
            access: self,
            roles,
        }
    }
}

/// A service only callers of some roles reach (see [`Access::guard`]); the others get
/// UNAUTHENTICATED or PERMISSION_DENIED.
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    access: Access,
    roles: &'static [crate::tls::PeerRole],
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Guarded<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let peer = request.extensions().get::<PeerIdentity>();
        match self
            .access
            .check_identity(peer, self.roles, request.uri().path())
        {
            Ok(_) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

/// Refuses a plaintext listener (`tls` false) on an address that is not a loopback one,
/// unless `insecure` (`--insecure`, `[node] insecure = true`).
pub fn check_plaintext(key: &str, addr: &str, tls: bool, insecure: bool) -> Result<(), String> {
    if tls || insecure {
        return Ok(());
    }
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{key}: {addr} is not a loopback address and has no TLS; configure TLS or \
             start with --insecure ([node] insecure = true)"
        ))
    }
}

/// Returns the identity named by the certificate the caller presented (None without TLS,
/// without a client certificate, or when it names no centralino identity).
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<&PeerIdentity> {
    request.extensions().get::<PeerIdentity>()
}

/// What a connection tells each of its requests.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Local and remote address.
    pub tcp: TcpConnectInfo,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The identity the client's certificate names.
    pub peer: Option<PeerIdentity>,
}

/// An accepted connection, plaintext or TLS.
pub struct Conn {
    io: ConnIo,
    info: ConnInfo,
}

enum ConnIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn plain(tcp: TcpStream) -> Self {
        let info = ConnInfo {
            tcp: tcp.connect_info(),
            tls: false,
            peer: None,
        };
        Self {
            io: ConnIo::Plain(tcp),
            info,
        }
    }

    fn tls(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let (tcp, session) = stream.get_ref();
        let peer = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| PeerIdentity::from_certificate(leaf));
        let info = ConnInfo {
            tcp: tcp.connect_info(),
            tls: true,
            peer,
        };
        Self {
            io: ConnIo::Tls(Box::new(stream)),
            info,
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ConnIo::Plain(s) => s.is_write_vectored(),
            ConnIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The TLS connections of `listener`: every accepted socket's handshake runs in its own
/// task (a slow client holds nobody else up), with [`TLS_HANDSHAKE_TIMEOUT`]; failed
/// handshakes are dropped. The accepting task ends when the returned stream is dropped.
fn tls_incoming(
    mut listener: Listener,
    tls: ServerTls,
) -> impl Stream<Item = std::io::Result<Conn>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Conn>>(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.next() => accepted,
            };
            let tcp = match accepted {
                None => return,
                Some(Ok(tcp)) => tcp,
                Some(Err(e)) => {
                    debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let permit = tokio::select! {
                _ = tx.closed() => return,
                permit = handshakes.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls());
            let tx = tx.clone();
            tokio::spawn(async move {
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        drop(permit);
                        let _ = tx.send(Ok(Conn::tls(stream))).await;
                    }
                    Ok(Err(e)) => debug!(?peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;
    use tonic::transport::Channel;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::{v1, v1alpha};

    /// Answers each request with its path in `x-path` and a JSON content type.
    fn echo_path(request: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
        let mut response = Response::new(Body::empty());
        let path = request
            .uri()
            .path()
            .parse()
            .expect("a path is a header value");
        response.headers_mut().insert("x-path", path);
        response.headers_mut().insert(
            "content-type",
            "application/json".parse().expect("header value"),
        );
        std::future::ready(Ok(response))
    }

    #[tokio::test]
    async fn http1_requests_that_are_not_grpc_web_reach_the_routes() {
        use tonic::codegen::http::{StatusCode, Version};
        use tower::{Layer, ServiceExt};
        let service = BrowserLayer.layer(tower::service_fn(echo_path));
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let mut request = Request::new(Body::empty());
            *request.version_mut() = version;
            *request.uri_mut() = "/v1/openapi.json".parse().expect("uri");
            let response = service.clone().oneshot(request).await.expect("answered");
            assert_eq!(response.status(), StatusCode::OK, "{version:?}");
            assert_eq!(
                response.headers().get("x-path").map(|v| v.as_bytes()),
                Some(&b"/v1/openapi.json"[..])
            );
        }
        // A gRPC-web call goes through tonic-web, which answers in gRPC-web.
        let mut request = Request::new(Body::empty());
        *request.version_mut() = Version::HTTP_11;
        *request.method_mut() = tonic::codegen::http::Method::POST;
        *request.uri_mut() = "/centralino.v1.Admin/GetSnapshot".parse().expect("uri");
        request.headers_mut().insert(
            "content-type",
            "application/grpc-web+proto".parse().expect("header value"),
        );
        let response = service.clone().oneshot(request).await.expect("answered");
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/grpc-web+proto"[..])
        );
    }

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

    /// A service that records the identity of each caller, to see what handlers see.
    #[derive(Clone)]
    struct Recording {
        inner: Internal,
        seen: Seen,
    }

    /// Who called, from where.
    type Seen = Arc<std::sync::Mutex<Vec<(Option<PeerIdentity>, Option<SocketAddr>)>>>;

    impl NamedService for Recording {
        const NAME: &'static str = "centralino.test.Internal";
    }

    impl Service<Request<Body>> for Recording {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = <Internal as Service<Request<Body>>>::Future;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Service::<Request<Body>>::poll_ready(&mut self.inner.0, cx)
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            let peer = request.extensions().get::<PeerIdentity>().cloned();
            let addr = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|i| i.remote_addr());
            self.seen.lock().unwrap().push((peer, addr));
            let mut request = request;
            *request.uri_mut() = "/grpc.health.v1.Health/Check".parse().unwrap();
            self.inner.0.call(request)
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

    mod tls {
        use super::*;
        use crate::test_pki::Pki;
        use crate::tls::{ClientTls, PeerRole, TlsFiles};

        async fn serve_tls(
            files: TlsFiles,
        ) -> (SocketAddr, Seen, tokio::sync::oneshot::Sender<()>) {
            let listener = Listener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr();
            let seen = Seen::default();
            let tls = crate::tls::ServerTls::load_every(files, Duration::from_millis(50)).unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            GrpcServer::new()
                .internal(Recording {
                    inner: internal(),
                    seen: seen.clone(),
                })
                .tls(Some(tls))
                .start(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            (addr, seen, stop)
        }

        async fn check(addr: SocketAddr, client: &ClientTls) -> Result<i32, tonic::Status> {
            let client = client.clone();
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_with_connector(tower::service_fn(move |uri: tonic::codegen::http::Uri| {
                    let client = client.clone();
                    async move {
                        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                        client
                            .connect(&authority)
                            .await
                            .map(hyper_util::rt::TokioIo::new)
                    }
                }))
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            // Through the recording service (its path), answered by a health service.
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let codec = tonic_prost::ProstCodec::<
                HealthCheckRequest,
                tonic_health::pb::HealthCheckResponse,
            >::default();
            grpc.unary(
                tonic::Request::new(HealthCheckRequest::default()),
                tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/centralino.test.Internal/Check",
                ),
                codec,
            )
            .await
            .map(|r| r.into_inner().status)
        }

        fn leaf_identity(cert_file: &std::path::Path) -> Option<PeerIdentity> {
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_file(cert_file).unwrap();
            PeerIdentity::from_certificate(&der)
        }

        #[test]
        fn plaintext_listens_on_loopback_only_unless_insecure() {
            assert!(check_plaintext("node.grpc_addr", "127.0.0.1:1", false, false).is_ok());
            assert!(check_plaintext("node.grpc_addr", "[::1]:1", false, false).is_ok());
            assert!(check_plaintext("node.grpc_addr", "localhost:1", false, false).is_ok());
            let refused = check_plaintext("node.grpc_addr", "0.0.0.0:1", false, false);
            assert!(refused.unwrap_err().contains("--insecure"));
            assert!(check_plaintext("node.grpc_addr", "10.0.0.5:1", false, false).is_err());
            assert!(check_plaintext("node.grpc_addr", "0.0.0.0:1", true, false).is_ok());
            assert!(check_plaintext("node.grpc_addr", "0.0.0.0:1", false, true).is_ok());
        }

        #[tokio::test]
        async fn mutual_tls_gives_handlers_the_callers_identity_and_address() {
            let pki = Pki::new();
            let (addr, seen, _stop) = serve_tls(pki.node(PeerRole::Router, "router-1")).await;
            let client = ClientTls::load(
                pki.node(PeerRole::AgentNode, "agent-node-1"),
                Some(PeerRole::Router),
            )
            .unwrap();
            assert_eq!(check(addr, &client).await.unwrap(), 1, "SERVING");
            let seen = seen.lock().unwrap().clone();
            assert_eq!(
                seen,
                vec![(
                    Some(PeerIdentity::new(PeerRole::AgentNode, "agent-node-1")),
                    seen[0].1
                )]
            );
            assert_eq!(
                seen[0].1.map(|a| a.ip()),
                Some(std::net::Ipv4Addr::LOCALHOST.into())
            );
        }

        #[tokio::test]
        async fn clients_without_a_certificate_of_the_ca_or_the_wrong_server_role_fail() {
            let pki = Pki::new();
            let (addr, seen, _stop) = serve_tls(pki.node(PeerRole::Router, "router-1")).await;
            // A certificate of another CA.
            let other = Pki::new();
            let mut stranger = other.node(PeerRole::AgentNode, "agent-node-1");
            stranger.ca_file = Some(pki.ca_file().to_path_buf());
            let stranger = ClientTls::load(stranger, Some(PeerRole::Router)).unwrap();
            assert!(check(addr, &stranger).await.is_err());
            // No certificate at all: a plaintext client and a TLS client without identity.
            let plain = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await;
            if let Ok(plain) = plain {
                assert!(HealthClient::new(plain)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_err());
            }
            // Our own CA, but the server is not the role we expect.
            let wrong_role = ClientTls::load(
                pki.node(PeerRole::Router, "router-2"),
                Some(PeerRole::AgentNode),
            )
            .unwrap();
            assert!(check(addr, &wrong_role).await.is_err());
            assert!(
                seen.lock().unwrap().is_empty(),
                "a refused client reached a handler"
            );
        }

        #[tokio::test]
        async fn a_rotated_certificate_is_served_to_new_connections() {
            let pki = Pki::new();
            let first = pki.issue(
                "server",
                Some(&PeerIdentity::new(PeerRole::Router, "r-old")),
            );
            let (addr, _seen, _stop) = serve_tls(first.clone()).await;
            let client =
                ClientTls::load(pki.node(PeerRole::AgentNode, "a1"), Some(PeerRole::Router))
                    .unwrap();
            let served = |client: ClientTls| async move {
                let stream = client.connect(&addr.to_string()).await.unwrap();
                let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
                PeerIdentity::from_certificate(&leaf)
            };
            assert_eq!(
                served(client.clone()).await,
                Some(PeerIdentity::new(PeerRole::Router, "r-old"))
            );
            // mtimes have a coarse granularity on some file systems.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let second = pki.issue(
                "server",
                Some(&PeerIdentity::new(PeerRole::Router, "r-new")),
            );
            assert_eq!(second.cert_file, first.cert_file);
            assert_eq!(
                leaf_identity(&second.cert_file),
                Some(PeerIdentity::new(PeerRole::Router, "r-new"))
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let now = served(client.clone()).await;
                if now == Some(PeerIdentity::new(PeerRole::Router, "r-new")) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still serving {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(check(addr, &client).await.unwrap(), 1);
        }
    }
}
