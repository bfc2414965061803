//! JSON Web Key Sets and JWT verification against them, shared by the agents' and
//! operators' OIDC tokens ([`crate::oidc`]) and the shops' customer identity JWTs (the
//! router's `identity`): RS256 and ES256 only, the `kid` picks the key when present.
//!
//! Also the JWKS download ([`fetch`]): one HTTP/1.1 GET over TCP, or over TLS with the
//! project's rustls (the WebPKI roots, or a configured CA file), bounded in time and size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest a JWKS download may take (connect, TLS, request and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT (header or encoding).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed with an algorithm other than RS256 and ES256 (`none`, HS256 ...).
    #[error("algorithm {0:?} is not accepted (RS256, ES256)")]
    Algorithm(Algorithm),
    /// No key of the set has the token's `kid` and algorithm.
    #[error("no key of the JWKS matches the token")]
    NoKey,
    /// Signature, issuer, audience, expiry or claims refused.
    #[error("token refused: {0}")]
    Refused(String),
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Required `iss`.
    pub issuer: &'a str,
    /// Required `aud` (one of the token's audiences).
    pub audience: &'a str,
    /// Claims that must be present (`exp`, `iss`, `aud`, `sub` ...).
    pub required: &'a [&'a str],
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// The RSA and P-256 keys of one JWKS document.
pub struct KeySet {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeySet {
    /// Returns the RSA and P-256 keys of the JWKS document `jwks` (others are skipped);
    /// an error when it is no JWKS, has a bad key or no usable key at all.
    pub fn parse(jwks: &str) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let key =
                DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key in the JWKS: {e}"))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the JWKS has no RSA or P-256 key".to_string());
        }
        Ok(Self { keys })
    }

    /// Reads and parses the JWKS file `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// Returns how many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Returns whether a key of the set could have signed `token`: one of its algorithm
    /// with its `kid` (or without a `kid` on either side). False for a malformed token.
    pub fn has_key_for(&self, token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .map(|h| self.candidates(h.alg, h.kid.as_deref()).next().is_some())
            .unwrap_or(false)
    }

    fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.alg == alg
                && match (kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        })
    }

    /// Verifies `token` (signature by a key of the set, then `rules`) and returns its
    /// claims.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        rules: &Rules<'_>,
    ) -> Result<T, JwtError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(JwtError::Algorithm(header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[rules.issuer]);
        validation.set_audience(&[rules.audience]);
        validation.set_required_spec_claims(rules.required);
        validation.leeway = rules.leeway_secs;
        validation.validate_nbf = true;
        let mut last = JwtError::NoKey;
        for key in self.candidates(header.alg, header.kid.as_deref()) {
            match jsonwebtoken::decode::<T>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = JwtError::Refused(e.to_string()),
            }
        }
        Err(last)
    }
}

/// Where a JWKS is downloaded from, or a webhook posted to: `http(s)://host[:port]/path`,
/// the one rule for the node's outgoing HTTP URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl {
    url: hyper::Uri,
    https: bool,
    host: String,
    port: u16,
}

impl JwksUrl {
    /// Parses `url`; plain `http://` only when `allow_http` or the host is a loopback
    /// address (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn parse(url: &str, allow_http: bool) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("must start with https:// (or http:// on loopback)".to_string()),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !https && !allow_http && !loopback {
            return Err(
                "plain http:// is accepted only on loopback addresses or in dev mode; use https://"
                    .to_string(),
            );
        }
        Ok(Self {
            url: uri,
            https,
            host,
            port,
        })
    }
}

impl JwksUrl {
    /// The URL as parsed.
    pub fn uri(&self) -> &hyper::Uri {
        &self.url
    }

    /// Whether it is `https://`.
    pub fn https(&self) -> bool {
        self.https
    }

    /// The host, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 or 80 when none is given).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for JwksUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

/// Downloads the JWKS at `url` (within [`FETCH_TIMEOUT`], at most [`MAX_JWKS_BYTES`]),
/// checking an https server's certificate against `ca_file` when given, else the WebPKI
/// roots; returns the parsed key set.
pub async fn fetch(url: &JwksUrl, ca_file: Option<&Path>) -> Result<KeySet, String> {
    let text = tokio::time::timeout(FETCH_TIMEOUT, fetch_text(url, ca_file))
        .await
        .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))??;
    KeySet::parse(&text)
}

async fn fetch_text(url: &JwksUrl, ca_file: Option<&Path>) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if url.https {
        let roots = match ca_file {
            Some(path) => crate::tls::read_roots(path).map_err(|e| e.to_string())?,
            None => Arc::new(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
        };
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("bad host name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        get(url, tls).await
    } else {
        get(url, tcp).await
    }
}

async fn get<S>(url: &JwksUrl, stream: S) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let path = url
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let authority = url
        .url
        .authority()
        .map_or(url.host.clone(), |a| a.to_string());
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "centralino")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("HTTP request: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_https_off_loopback() {
        assert!(JwksUrl::parse("https://idp.example/jwks", false).is_ok());
        assert!(JwksUrl::parse("http://127.0.0.1:8080/jwks", false).is_ok());
        assert!(JwksUrl::parse("http://[::1]:8080/jwks", false).is_ok());
        assert!(JwksUrl::parse("http://localhost/jwks", false).is_ok());
        let plain = JwksUrl::parse("http://idp.example/jwks", false).unwrap_err();
        assert!(plain.contains("loopback"), "{plain}");
        assert!(JwksUrl::parse("http://idp.example/jwks", true).is_ok());
        assert!(JwksUrl::parse("ftp://idp.example/jwks", true).is_err());
        assert!(JwksUrl::parse("idp.example/jwks", true).is_err());
        let u = JwksUrl::parse("https://idp.example/realms/x/certs", false).unwrap();
        assert_eq!(
            (u.port, u.https, u.host.as_str()),
            (443, true, "idp.example")
        );
    }

    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"shop-1","use":"sig","alg":"ES256",
        "x":"GQUKx9JzvI8gImU2M9Q-bRmLDAnkJ1M2czskHHn5jxM","y":"Ed9qrBIzGVgCkwN0W05gjgGxo-w832YdSSTsh5UO6dM"}]}"#;

    /// Serves `JWKS` over TLS with a certificate of `pki` for localhost; returns the port.
    async fn https_server(pki: &crate::test_pki::Pki) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut files = pki.issue("jwks-server", None);
        files.ca_file = None; // no client certificates
        let tls = crate::tls::ServerTls::load(files).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{JWKS}",
                        JWKS.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn an_https_jwks_is_fetched_with_a_trusted_ca_only() {
        let pki = crate::test_pki::Pki::new();
        let port = https_server(&pki).await;
        let url = JwksUrl::parse(&format!("https://localhost:{port}/certs"), false).unwrap();
        let keys = fetch(&url, Some(pki.ca_file())).await.expect("fetched");
        assert_eq!(keys.len(), 1);
        // The test CA is none of the public roots: the certificate is refused.
        let refused = fetch(&url, None).await.unwrap_err();
        assert!(refused.contains("TLS"), "{refused}");
        // Nobody listening: a clear error, no hang.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = JwksUrl::parse(&format!("http://127.0.0.1:{port}/certs"), false).unwrap();
        let err = fetch(&url, None).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused() {
        assert!(KeySet::parse("{}").is_err());
        assert!(KeySet::parse(r#"{"keys":[]}"#).is_err());
        assert!(KeySet::parse("not json").is_err());
    }
}
