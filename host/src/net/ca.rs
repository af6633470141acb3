//! The per-VM certificate authority of hutch's TLS interception.
//!
//! Made on the host with rcgen the first time a VM's network starts, and
//! kept in the VM's `net/` folder (`ca.pem`, `ca.key`, both mode 0600; the
//! key never leaves the host). Only the certificate goes to the guest, which
//! trusts it so that hutch can answer for the hosts that have secrets. Each
//! VM has its own: a certificate minted for one VM means nothing to another,
//! and deleting the VM deletes its CA.
//!
//! Leaf certificates are minted on demand, one per host name, valid for a
//! week (the network process reissues them after a day), and kept in memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::NetError;

/// The CA certificate's file in the VM's `net/` folder.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file.
pub const CA_KEY: &str = "ca.key";

/// How long a minted leaf is served before a fresh one is made.
const LEAF_REISSUE: Duration = Duration::from_secs(24 * 3600);

/// A VM's CA, able to mint leaves.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, (Instant, Arc<CertifiedKey>)>>,
}

impl Authority {
    /// Loads the CA in `net_dir`, making one (for VM `vm`) if there is none.
    pub fn load_or_create(net_dir: &Path, vm: &str) -> Result<Authority, NetError> {
        let (cert_path, key_path) = (net_dir.join(CA_CERT), net_dir.join(CA_KEY));
        let tls = |what: &str, e: rcgen::Error| NetError::Tls(format!("{what}: {e}"));
        let (cert_pem, key) = match (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
            (Ok(cert), Ok(key)) => (cert, KeyPair::from_pem(&key).map_err(|e| tls("reading the VM's CA key", e))?),
            _ => {
                let key = KeyPair::generate().map_err(|e| tls("making a key for the VM's CA", e))?;
                let mut params = CertificateParams::default();
                let mut name = DistinguishedName::new();
                name.push(DnType::OrganizationName, "hutch");
                name.push(DnType::CommonName, format!("hutch egress CA for VM {vm}"));
                params.distinguished_name = name;
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                let now = time::OffsetDateTime::now_utc();
                params.not_before = now - time::Duration::days(1);
                params.not_after = now + time::Duration::days(3650);
                let cert = params.self_signed(&key).map_err(|e| tls("making the VM's CA", e))?;
                super::write_private(&key_path, key.serialize_pem().as_bytes())?;
                super::write_private(&cert_path, cert.pem().as_bytes())?;
                (cert.pem(), key)
            }
        };
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| NetError::Tls(format!("reading {}: {e}", cert_path.display())))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| tls("reading the VM's CA", e))?;
        Ok(Authority { issuer, cert_pem, cert_der, leaves: Mutex::new(HashMap::new()) })
    }

    /// The CA certificate, for the guest's trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate and key for `host` (a name or an IP address), signed by
    /// this CA, with the CA certificate after it in the chain.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, NetError> {
        let mut leaves = self.leaves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((made, key)) = leaves.get(host)
            && made.elapsed() < LEAF_REISSUE
        {
            return Ok(key.clone());
        }
        let tls = |e: rcgen::Error| NetError::Tls(format!("minting a certificate for {host}: {e}"));
        let key = KeyPair::generate().map_err(tls)?;
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(tls)?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        let cert = params.signed_by(&key, &self.issuer).map_err(tls)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| NetError::Tls(format!("loading a leaf key: {e}")))?;
        let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone(), self.cert_der.clone()], signing));
        leaves.insert(host.to_owned(), (Instant::now(), certified.clone()));
        Ok(certified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path(), "web").unwrap();
        let again = Authority::load_or_create(dir.path(), "web").unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        for file in [CA_CERT, CA_KEY] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "{file}");
        }
        let leaf = again.leaf("api.example.com").unwrap();
        assert_eq!(leaf.cert.len(), 2);
        assert!(Arc::ptr_eq(&leaf, &again.leaf("api.example.com").unwrap()), "leaves are cached");
        again.leaf("127.0.0.1").unwrap();
    }
}
