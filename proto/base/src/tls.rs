//! TLS for every listener and every node-to-node channel, with rustls (ring).
//!
//! - [`ServerTls`]: a server identity (certificate chain + key from PEM files) and, when a
//!   client CA is given, mandatory client certificates signed by it (mutual TLS). The files
//!   are polled for changes ([`RELOAD_EVERY`]); a changed set is loaded and served to new
//!   connections, a broken one is logged and the last good one kept.
//! - [`ClientTls`]: the client side of the internal plane: the cluster CA, this node's own
//!   certificate, and the role the server must have. Peers are not checked by host name
//!   (pods move, addresses change) but by their certificate's identity, a URI SAN
//!   `spiffe://centralino/<role>/<node-id>` ([`PeerIdentity`]).
//! - [`PeerIdentity`]: who is calling; the server puts it in every request's extensions
//!   (see [`crate::server`]) so handlers and layers can check the caller's role.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tracing::{info, warn};

/// How often certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Scheme and trust domain of centralino's peer identities.
pub const SPIFFE_PREFIX: &str = "spiffe://centralino/";
/// The ALPN protocol of gRPC.
const H2: &[u8] = b"h2";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM object.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the material (key does not match the certificate, bad CA...).
    #[error("tls: {0}")]
    Rustls(String),
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The role a peer certificate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// A router.
    Router,
    /// An agent-node.
    AgentNode,
}

impl PeerRole {
    /// The role's name in a peer identity URI.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRole::Router => "router",
            PeerRole::AgentNode => "agent-node",
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a peer is, from the URI SAN `spiffe://centralino/<role>/<node-id>` of its
/// certificate; node id `*` stands for any node of that role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Router or agent-node.
    pub role: PeerRole,
    /// The node id, or `*`.
    pub node_id: String,
}

impl PeerIdentity {
    /// Returns the identity `role`/`node_id`.
    pub fn new(role: PeerRole, node_id: impl Into<String>) -> Self {
        Self {
            role,
            node_id: node_id.into(),
        }
    }

    /// Returns the identity's URI (the certificate's URI SAN).
    pub fn uri(&self) -> String {
        format!("{SPIFFE_PREFIX}{}/{}", self.role, self.node_id)
    }

    /// Parses an identity URI; None when it is not one of centralino's.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(SPIFFE_PREFIX)?;
        let (role, node_id) = rest.split_once('/')?;
        let role = match role {
            "router" => PeerRole::Router,
            "agent-node" => PeerRole::AgentNode,
            _ => return None,
        };
        let valid = !node_id.is_empty()
            && node_id.len() <= 253
            && node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*'));
        valid.then(|| Self::new(role, node_id))
    }

    /// Returns the identity a DER certificate names (its first centralino URI SAN).
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Self::from_uri(uri),
            _ => None,
        })
    }

    /// Whether this identity may speak for node `node_id` (`*` speaks for every node).
    pub fn is_node(&self, node_id: &str) -> bool {
        self.node_id == "*" || self.node_id == node_id
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

pub(crate) fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The PEM files of one TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates: on a server, the CA client certificates must be signed by (none =
    /// no client certificate asked); on a client, the CA of the servers.
    pub ca_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Returns the set from configuration strings: None when `cert` and `key` are both
    /// empty; an error when only one of them is set.
    pub fn from_config(
        cert: &str,
        key: &str,
        ca: &str,
        section: &str,
    ) -> Result<Option<Self>, String> {
        match (cert.is_empty(), key.is_empty()) {
            (true, true) if ca.is_empty() => Ok(None),
            (true, true) => Err(format!(
                "{section}: a CA file without cert_file and key_file"
            )),
            (false, false) => Ok(Some(Self {
                cert_file: cert.into(),
                key_file: key.into(),
                ca_file: (!ca.is_empty()).then(|| ca.into()),
            })),
            _ => Err(format!("{section}: cert_file and key_file go together")),
        }
    }

    fn paths(&self) -> Vec<&Path> {
        let mut out = vec![self.cert_file.as_path(), self.key_file.as_path()];
        out.extend(self.ca_file.as_deref());
        out
    }

    /// The files' modification times (None for a file that cannot be read).
    fn stamp(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .into_iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// A configuration rebuilt from its files whenever they change.
struct Reloading<T> {
    current: RwLock<Arc<T>>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Loads `build(files)` now, then polls the files every `every` from a task that ends
    /// when the returned value is dropped. Outside a tokio runtime nothing is polled.
    fn start(
        files: TlsFiles,
        every: Duration,
        what: &'static str,
        build: impl Fn(&TlsFiles) -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let mut stamp = files.stamp();
        let this = Arc::new(Self {
            current: RwLock::new(Arc::new(build(&files)?)),
        });
        let weak: Weak<Self> = Arc::downgrade(&this);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(this) = weak.upgrade() else { return };
                    let now = files.stamp();
                    if now == stamp {
                        continue;
                    }
                    match build(&files) {
                        Ok(config) => {
                            stamp = now;
                            if let Ok(mut current) = this.current.write() {
                                *current = Arc::new(config);
                            }
                            info!(cert = %files.cert_file.display(), "{what}: certificates reloaded");
                        }
                        // A half-written set (cert renewed, key not yet): try again next time.
                        Err(e) => warn!(error = %e, "{what}: cannot reload certificates; keeping the old ones"),
                    }
                }
            });
        }
        Ok(this)
    }

    fn get(&self) -> Arc<T> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Returns the identity this node's own certificate names, checked against the node's
/// role and id (a certificate for `*` serves any id of its role).
pub fn own_identity(
    files: &TlsFiles,
    role: PeerRole,
    node_id: &str,
) -> Result<PeerIdentity, TlsError> {
    let certs = read_certs(&files.cert_file)?;
    let identity = PeerIdentity::from_certificate(&certs[0]).ok_or_else(|| {
        file_error(
            &files.cert_file,
            format!("the certificate has no URI SAN {SPIFFE_PREFIX}<role>/<node-id>"),
        )
    })?;
    if identity.role != role || !identity.is_node(node_id) {
        return Err(file_error(
            &files.cert_file,
            format!("the certificate names {identity}, but this is {role} {node_id:?}"),
        ));
    }
    Ok(identity)
}

/// TLS of a listener: its identity and, optionally, the CA its clients' certificates must
/// be signed by. Cheap to clone; reloads its files while any clone lives.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfigured>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Loads the files (checked for changes every [`RELOAD_EVERY`]).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Self::load_every(files, RELOAD_EVERY)
    }

    /// Loads the files, checked for changes every `every`.
    pub fn load_every(files: TlsFiles, every: Duration) -> Result<Self, TlsError> {
        let config = Reloading::start(files, every, "server tls", server_config)?;
        Ok(Self { config })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certs(&self) -> bool {
        self.config.get().verifier_required
    }

    /// The current rustls configuration (new connections use the newest).
    pub(crate) fn rustls(&self) -> Arc<ServerConfig> {
        self.config.get().rustls.clone()
    }
}

/// A built server configuration.
struct ServerConfigured {
    rustls: Arc<ServerConfig>,
    verifier_required: bool,
}

fn server_config(files: &TlsFiles) -> Result<ServerConfigured, TlsError> {
    let certs = read_certs(&files.cert_file)?;
    let key = read_key(&files.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &files.ca_file {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(read_roots(ca)?, provider())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", files.key_file.display())))?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(ServerConfigured {
        rustls: Arc::new(config),
        verifier_required: files.ca_file.is_some(),
    })
}

/// The client side of the internal plane: trusts servers whose certificate is signed by
/// the cluster CA and names the expected role, and presents this node's certificate.
/// Cheap to clone; reloads its files while any clone lives.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Loads `files` (`ca_file` is required: the CA of the servers); servers must present
    /// an identity of role `server_role` (any role when None).
    pub fn load(files: TlsFiles, server_role: Option<PeerRole>) -> Result<Self, TlsError> {
        Self::load_every(files, server_role, RELOAD_EVERY)
    }

    /// Like [`load`](Self::load), checking the files every `every`.
    pub fn load_every(
        files: TlsFiles,
        server_role: Option<PeerRole>,
        every: Duration,
    ) -> Result<Self, TlsError> {
        if files.ca_file.is_none() {
            return Err(file_error(
                &files.cert_file,
                "a client needs the servers' CA file",
            ));
        }
        let config = Reloading::start(files, every, "client tls", move |files| {
            client_config(files, server_role)
        })?;
        Ok(Self { config })
    }

    /// The current rustls configuration (new connections use the newest).
    pub fn rustls(&self) -> Arc<ClientConfig> {
        self.config.get()
    }

    /// Connects to `addr` (`host:port`) over TCP (`TCP_NODELAY`) and TLS.
    pub async fn connect(
        &self,
        addr: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let host = match addr.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => addr,
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(self.rustls())
            .connect(name, tcp)
            .await
    }
}

fn client_config(
    files: &TlsFiles,
    server_role: Option<PeerRole>,
) -> Result<ClientConfig, TlsError> {
    let ca = files
        .ca_file
        .as_deref()
        .ok_or_else(|| file_error(&files.cert_file, "no CA file"))?;
    let verifier = Arc::new(PeerVerifier {
        roots: read_roots(ca)?,
        role: server_role,
        provider: provider(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(read_certs(&files.cert_file)?, read_key(&files.key_file)?)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", files.key_file.display())))?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(config)
}

/// Verifies a server by chain (to the cluster CA) and by the role its identity names, not
/// by host name.
#[derive(Debug)]
struct PeerVerifier {
    roots: Arc<RootCertStore>,
    role: Option<PeerRole>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let identity = PeerIdentity::from_certificate(end_entity).ok_or_else(|| {
            rustls::Error::General("the server's certificate names no centralino identity".into())
        })?;
        match self.role {
            Some(role) if identity.role != role => Err(rustls::Error::General(format!(
                "the server is {identity}, not a {role}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_parse_and_bad_ones_do_not() {
        let id = PeerIdentity::from_uri("spiffe://centralino/router/router-1").unwrap();
        assert_eq!(id, PeerIdentity::new(PeerRole::Router, "router-1"));
        assert_eq!(id.uri(), "spiffe://centralino/router/router-1");
        let any = PeerIdentity::from_uri("spiffe://centralino/agent-node/*").unwrap();
        assert!(any.is_node("agent-node-7"));
        assert!(!id.is_node("router-2"));
        for bad in [
            "spiffe://other/router/r1",
            "spiffe://centralino/admin/r1",
            "spiffe://centralino/router/",
            "spiffe://centralino/router/a/b",
            "https://centralino/router/r1",
        ] {
            assert_eq!(PeerIdentity::from_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn half_a_pair_of_files_is_refused() {
        assert_eq!(TlsFiles::from_config("", "", "", "tls"), Ok(None));
        assert!(TlsFiles::from_config("c.pem", "", "", "tls").is_err());
        assert!(TlsFiles::from_config("", "", "ca.pem", "tls").is_err());
        let files = TlsFiles::from_config("c.pem", "k.pem", "ca.pem", "tls")
            .unwrap()
            .unwrap();
        assert_eq!(files.ca_file, Some(PathBuf::from("ca.pem")));
    }
}
