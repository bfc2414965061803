//! A certificate authority made at test time (feature `test-pki`, for tests and the test
//! kit only): a CA and node certificates with centralino identities, written as PEM files
//! to a temporary directory. Panics on failure (it is test tooling).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::tls::{PeerIdentity, PeerRole, TlsFiles};

/// A test CA and the certificates it issued, as files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pki({})", self.dir.path().display())
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// Makes a new CA ("centralino test CA").
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "centralino test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        Self { dir, ca, ca_file }
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a certificate for `identity` (URI SAN) with IP SAN 127.0.0.1 and DNS SAN
    /// `localhost`, written to `<name>.pem` / `<name>-key.pem` (over older files of that
    /// name: a rotation); the returned files name this CA as `ca_file`.
    pub fn issue(&self, name: &str, identity: Option<&PeerIdentity>) -> TlsFiles {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        if let Some(identity) = identity {
            params.subject_alt_names.push(SanType::URI(
                identity.uri().try_into().expect("identity URI"),
            ));
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("certificate");
        let cert_file = self.dir.path().join(format!("{name}.pem"));
        let key_file = self.dir.path().join(format!("{name}-key.pem"));
        // Key first: a reader that sees the new certificate finds its key.
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        std::fs::write(&cert_file, cert.pem()).expect("write certificate");
        TlsFiles {
            cert_file,
            key_file,
            ca_file: Some(self.ca_file.clone()),
        }
    }

    /// Issues the certificate of node `node_id` of `role`, in files named after the node.
    pub fn node(&self, role: PeerRole, node_id: &str) -> TlsFiles {
        self.issue(node_id, Some(&PeerIdentity::new(role, node_id)))
    }
}
