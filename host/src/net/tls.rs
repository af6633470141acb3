//! TLS settings of the proxy: the host's trust store (what upstream servers
//! are verified against, and what the guest is told to trust), the client
//! side towards real servers, and the server side that answers the guest
//! with a certificate of the VM's CA.
//!
//! The trust store is the host's own (rustls-native-certs: the system store,
//! or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), never a bundled list: many
//! networks, this project's CI among them, sit behind a TLS-inspecting
//! gateway whose CA only the system store has. Both sides offer only
//! HTTP/1.1 in ALPN, so intercepted requests are plain HTTP/1.1 to rewrite.

use std::sync::Arc;

use base64::Engine;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::NetError;

/// The only application protocol either side of an interception offers.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider: ring (as the SSH client uses), so no C toolchain
/// beyond a compiler is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's trusted CAs.
pub struct HostRoots {
    certs: Vec<CertificateDer<'static>>,
}

impl HostRoots {
    /// Reads the host's trust store; fails when it yields no certificate at all.
    pub fn load() -> Result<HostRoots, NetError> {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!("reading the host's trust store: {error}");
        }
        if found.certs.is_empty() {
            let why = found.errors.first().map_or_else(|| "it is empty".to_owned(), ToString::to_string);
            return Err(NetError::Tls(format!("no CA certificates in the host's trust store: {why}")));
        }
        Ok(HostRoots { certs: found.certs })
    }

    /// The certificates as PEM, for the guest's bundle.
    pub fn pem(&self) -> String {
        self.certs.iter().map(|der| pem("CERTIFICATE", der)).collect()
    }

    /// Client settings that verify servers against these roots.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, NetError> {
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(self.certs.iter().cloned());
        tracing::debug!("upstream TLS trusts {added} host CAs ({ignored} unparsable)");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

/// `der` as one PEM block.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// Server settings that answer every guest with `leaf` (minted for the host
/// the guest asked for), offering HTTP/1.1 only.
pub fn server_config(leaf: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, NetError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(leaf)));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// One certificate for every client hello.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
