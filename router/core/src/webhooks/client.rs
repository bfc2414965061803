//! The webhook HTTP client: one HTTP/1.1 `POST` per attempt on a fresh connection
//! (`Connection: close`), over the project's rustls (the same TLS stack as the gRPC
//! listeners and the JWKS download; no second TLS library), bounded by the endpoint's
//! timeout from connect to the end of the answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The most of an answer's body read (and ignored): receivers answer briefly.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where an endpoint's events are POSTed: `http(s)://host[:port]/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Endpoint {
    /// Parses `url`; plain `http://` only when `allow_http` (dev mode) or the host is a
    /// loopback address (`localhost`, `127.0.0.0/8`, `::1`), as for the JWKS URL.
    pub fn parse(url: &str, allow_http: bool) -> Result<Self, String> {
        let parsed = centralino_base::jwks::JwksUrl::parse(url, allow_http)?;
        let uri = parsed.uri();
        let authority = uri.authority().ok_or("has no host")?.to_string();
        if authority.contains('@') {
            return Err("must not carry credentials; the signature authenticates".to_string());
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Self {
            https: parsed.https(),
            host: parsed.host().to_string(),
            port: parsed.port(),
            authority,
            path,
        })
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The endpoint answered with a status other than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// No whole answer within the timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
}

impl AttemptError {
    /// The attempt's outcome label in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AttemptError::Status(_) => "status",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Transport(_) => "transport",
        }
    }
}

/// Posts to one endpoint.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let Some(path) = ca_file else {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

impl Client {
    /// Returns a client of `endpoint` whose attempts last at most `timeout`, checking an
    /// https server's certificate against `ca_file` when given, else the WebPKI roots.
    pub fn new(
        endpoint: Endpoint,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let tls = if endpoint.https {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            endpoint,
            tls,
            timeout,
        })
    }

    /// POSTs `body` (JSON) with `headers`; `Ok` on a 2xx answer.
    pub async fn post(&self, headers: &[(&str, String)], body: Bytes) -> Result<(), AttemptError> {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        tokio::time::timeout(self.timeout, self.attempt(headers, body))
            .await
            .map_err(|_| AttemptError::Timeout(ms))?
    }

    async fn attempt(&self, headers: &[(&str, String)], body: Bytes) -> Result<(), AttemptError> {
        let transport =
            |what: &str, e: &dyn std::fmt::Display| AttemptError::Transport(format!("{what}: {e}"));
        let tcp = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
            .await
            .map_err(|e| transport("cannot connect", &e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|e| transport("bad host name", &e))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| transport("TLS", &e))?;
                self.send(stream, headers, body).await
            }
            None => self.send(tcp, headers, body).await,
        }
    }

    async fn send<S>(
        &self,
        stream: S,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<(), AttemptError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let transport = |e: hyper::Error| AttemptError::Transport(format!("HTTP: {e}"));
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        let driver = tokio::spawn(connection);
        let mut request = hyper::Request::post(self.endpoint.path.as_str())
            .header(hyper::header::HOST, self.endpoint.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "centralino-webhooks")
            .header(hyper::header::CONNECTION, "close");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| AttemptError::Transport(format!("HTTP request: {e}")))?;
        let result = async {
            let response = sender.send_request(request).await.map_err(transport)?;
            let status = response.status();
            // Read the (short) answer so the receiver is not cut off mid-write.
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(AttemptError::Status(status.as_u16()))
            }
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_https_off_loopback() {
        assert!(Endpoint::parse("https://crm.example.com/hooks/centralino", false).is_ok());
        assert!(Endpoint::parse("http://127.0.0.1:9000/hook", false).is_ok());
        assert!(Endpoint::parse("http://localhost/hook", false).is_ok());
        assert!(Endpoint::parse("http://[::1]:8080/", false).is_ok());
        assert!(Endpoint::parse("http://crm.example.com/hook", false).is_err());
        assert!(Endpoint::parse("http://crm.example.com/hook", true).is_ok());
        assert!(Endpoint::parse("ftp://crm.example.com/", true).is_err());
        assert!(Endpoint::parse("crm.example.com/hook", true).is_err());
        assert!(Endpoint::parse("https://user:pw@crm.example.com/", false).is_err());
        let e = Endpoint::parse("https://crm.example.com:8443/in?src=c", false).unwrap();
        assert_eq!(e.port, 8443);
        assert_eq!(e.path, "/in?src=c");
        assert_eq!(e.authority, "crm.example.com:8443");
    }
}
