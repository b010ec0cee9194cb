//! Certificates for the TLS tests, generated per test process: a CA, a
//! server certificate for `localhost` and `127.0.0.1` signed by it, a
//! client certificate signed by it, and an unrelated CA with a client
//! certificate of its own, each written as PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A certificate authority that can sign more certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Ca> {
        let key = KeyPair::generate().context("generating a CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).context("self-signing a CA")?;
        Ok(Ca { cert, key })
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) with the
    /// given serial number, subject and purpose.
    pub fn sign(
        &self,
        names: &[&str],
        common_name: &str,
        serial: u64,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Leaf> {
        let key = KeyPair::generate().context("generating a leaf key")?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing a leaf certificate")?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }

    /// A server certificate for [`SERVER_NAMES`].
    pub fn server_leaf(&self, serial: u64) -> Result<Leaf> {
        self.sign(
            &SERVER_NAMES,
            "pgvigil test server",
            serial,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose subject is the role `user` (as
    /// PostgreSQL's `cert` authentication would read it).
    pub fn client_leaf(&self, user: &str, serial: u64) -> Result<Leaf> {
        self.sign(&[], user, serial, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A signed certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// Writes `<stem>.crt` and `<stem>.key` (mode 0600, as libpq and
    /// PostgreSQL insist for keys) into `dir`; returns (cert, key) paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, &self.cert_pem, 0o644)?;
        write_file(&key, &self.key_pem, 0o600)?;
        Ok((cert, key))
    }
}

/// Writes `content` to `path` with `mode`, replacing the file in one step
/// (a reader never sees half a file).
pub fn write_file(path: &Path, content: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The whole set of test certificates, as objects and as files in a
/// temporary directory (removed when dropped).
pub struct Pki {
    pub ca: Ca,
    pub other_ca: Ca,
    pub server: Leaf,
    pub client: Leaf,
    pub other_client: Leaf,
    pub ca_file: PathBuf,
    pub other_ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    pub other_client_cert_file: PathBuf,
    pub other_client_key_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Pki {
    /// Generates everything; `client_user` is the client certificates' subject.
    pub fn generate(client_user: &str) -> Result<Pki> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgvigil-it-{}-pki-", std::process::id()))
            .tempdir()
            .context("creating the certificates' directory")?;
        let ca = Ca::new("pgvigil test CA")?;
        let other_ca = Ca::new("unrelated test CA")?;
        let server = ca.server_leaf(1000)?;
        let client = ca.client_leaf(client_user, 2000)?;
        let other_client = other_ca.client_leaf(client_user, 3000)?;
        let ca_file = dir.path().join("ca.crt");
        write_file(&ca_file, &ca.pem(), 0o644)?;
        let other_ca_file = dir.path().join("other-ca.crt");
        write_file(&other_ca_file, &other_ca.pem(), 0o644)?;
        let (server_cert_file, server_key_file) = server.write(dir.path(), "server")?;
        let (client_cert_file, client_key_file) = client.write(dir.path(), "client")?;
        let (other_client_cert_file, other_client_key_file) =
            other_client.write(dir.path(), "other-client")?;
        Ok(Pki {
            ca,
            other_ca,
            server,
            client,
            other_client,
            ca_file,
            other_ca_file,
            server_cert_file,
            server_key_file,
            client_cert_file,
            client_key_file,
            other_client_cert_file,
            other_client_key_file,
            dir,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls client configuration trusting `ca` only, offering ALPN
    /// `postgresql` when `alpn`, presenting `client_cert` if given.
    pub fn client_config(
        ca: &Ca,
        alpn: bool,
        client_cert: Option<&Leaf>,
    ) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.der())
            .context("adding the CA to a root store")?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_root_certificates(roots);
        let mut config = match client_cert {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(leaf.der.clone())],
                    PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
                        .context("parsing a client key")?,
                )
                .context("client certificate")?,
            None => builder.with_no_client_auth(),
        };
        if alpn {
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        Ok(Arc::new(config))
    }
}
