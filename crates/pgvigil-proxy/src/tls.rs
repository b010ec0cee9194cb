//! TLS configurations for both legs, built from the settings and kept
//! swappable so RELOAD can roll certificates without a restart. No socket
//! is touched here: the session code takes a configuration and runs the
//! handshake itself.
//!
//! Client leg: pgvigil is the TLS server, with PgBouncer's
//! `client_tls_sslmode`. Server leg: pgvigil is the TLS client, with
//! libpq's `sslmode` meanings, including that `prefer` and `require`
//! encrypt without authenticating the server.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use pgvigil_config::{ClientSslMode, ClientTlsSettings, ServerSslMode, ServerTlsSettings};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;

/// The ALPN protocol PostgreSQL 17 registered. Clients using
/// `sslnegotiation=direct` must offer it, and PostgreSQL 17 servers refuse
/// a different one, so both legs announce it.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The largest TLS record pgvigil sends a client: 8 KB of data, as in
/// PostgreSQL's own records (its send buffer is 8 KB), plus the 5-byte
/// header rustls counts in. libpq reading without blocking takes a record
/// only as far as its input buffer has room and leaves the rest decrypted
/// inside OpenSSL, where a client that then waits on the socket (psycopg
/// 3) never sees it: with rustls' default 16 KB records, large replies
/// left such clients waiting for good.
const CLIENT_RECORD_BYTES: usize = 8192 + 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A file named by a setting is missing, unreadable or holds the
    /// wrong thing. The reason never quotes the file's content.
    #[error("{key} {path}: {reason}")]
    File {
        key: &'static str,
        path: String,
        reason: String,
    },
    /// A setting the mode needs is not set.
    #[error("{key} is needed for {mode}")]
    Missing { key: &'static str, mode: String },
    /// rustls refused the combination (say, a key that does not match the
    /// certificate).
    #[error("{context}: {reason}")]
    Rustls {
        context: &'static str,
        reason: String,
    },
}

/// RFC 5929 `tls-server-end-point` data for SCRAM-SHA-256-PLUS. Empty
/// when the certificate's signature names no usable hash: then
/// SCRAM-SHA-256-PLUS must not be offered, as PostgreSQL does not.
pub(crate) type ChannelBindingHash = Arc<[u8]>;

/// The ring provider, whatever provider some other part of the process
/// may have installed as the default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn load_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(key, path)?;
    let bad = |reason: String| TlsError::File {
        key,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no certificate found".into()));
    }
    Ok(certs)
}

fn load_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(key, path)?;
    // The parser's own message may quote a line of the file: say what
    // was expected instead.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::File {
        key,
        path: path.display().to_string(),
        reason: "no private key found (expected PEM PKCS#8, PKCS#1 or SEC1)".into(),
    })
}

fn load_roots(key: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots.add(cert).map_err(|e| TlsError::File {
            key,
            path: path.display().to_string(),
            reason: format!("unusable CA certificate ({e})"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its own
/// signature's hash, SHA-256 when that is MD5 or SHA-1. `None` when the
/// signature names no single hash (RSA-PSS, Ed25519) or the DER does not
/// parse; PostgreSQL then offers no channel binding either.
pub(crate) fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, .. }
    let (cert, _) = der_element(cert_der, 0x30)?;
    let (_, rest) = der_element(cert, 0x30)?;
    let (algorithm, _) = der_element(rest, 0x30)?;
    let (oid, _) = der_element(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    let hash = match oid {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1
        [prefix @ .., 4 | 5] if prefix == RSA => Hash::Sha256,
        o if o == ECDSA_SHA1 => Hash::Sha256,
        [prefix @ .., n] if prefix == RSA => match n {
            11 => Hash::Sha256,
            12 => Hash::Sha384,
            13 => Hash::Sha512,
            14 => Hash::Sha224,
            _ => return None,
        },
        [prefix @ .., n] if prefix == ECDSA_SHA2 => match n {
            1 => Hash::Sha224,
            2 => Hash::Sha256,
            3 => Hash::Sha384,
            4 => Hash::Sha512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(cert_der).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
    })
}

enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// One DER element with the expected tag: its content and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, mut rest) = rest.split_first()?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// A configuration swapped whole by RELOAD: readers take a snapshot, so a
/// reload never changes one under a handshake in flight.
struct Swappable<T>(RwLock<Arc<T>>);

impl<T> Swappable<T> {
    fn new(value: T) -> Swappable<T> {
        Swappable(RwLock::new(Arc::new(value)))
    }

    fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

struct ClientTlsState {
    mode: ClientSslMode,
    /// `None` under `disable`.
    config: Option<(Arc<rustls::ServerConfig>, ChannelBindingHash)>,
}

/// The client-facing TLS server configuration. Handshakes take a snapshot
/// with `current()`, so a reload never disturbs one in flight.
pub(crate) struct ClientTls {
    state: Swappable<ClientTlsState>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub(crate) fn new(settings: &ClientTlsSettings) -> Result<ClientTls, TlsError> {
        Ok(ClientTls {
            state: Swappable::new(Self::build(settings)?),
        })
    }

    /// Re-reads the files; on any error the configuration in use stays.
    pub(crate) fn reload(&self, settings: &ClientTlsSettings) -> Result<(), TlsError> {
        self.state.set(Self::build(settings)?);
        Ok(())
    }

    /// The configuration for the next handshake and the channel-binding
    /// data of its certificate; `None` when client TLS is disabled.
    pub(crate) fn current(&self) -> Option<(Arc<rustls::ServerConfig>, ChannelBindingHash)> {
        self.state.get().config.clone()
    }

    pub(crate) fn mode(&self) -> ClientSslMode {
        self.state.get().mode
    }

    fn build(settings: &ClientTlsSettings) -> Result<ClientTlsState, TlsError> {
        let mode = settings.sslmode;
        if mode == ClientSslMode::Disable {
            return Ok(ClientTlsState { mode, config: None });
        }
        let missing = |key| TlsError::Missing {
            key,
            mode: format!("client_tls_sslmode {}", mode.as_str()),
        };
        let cert_path = settings
            .cert_file
            .as_deref()
            .ok_or_else(|| missing("client_tls_cert_file"))?;
        let key_path = settings
            .key_file
            .as_deref()
            .ok_or_else(|| missing("client_tls_key_file"))?;
        let certs = load_certs("client_tls_cert_file", cert_path)?;
        let key = load_key("client_tls_key_file", key_path)?;
        let end_point: ChannelBindingHash =
            tls_server_end_point(&certs[0]).unwrap_or_default().into();
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls {
                context: "client TLS",
                reason: e.to_string(),
            })?;
        let builder = if mode.verifies_client() {
            let ca_path = settings
                .ca_file
                .as_deref()
                .ok_or_else(|| missing("client_tls_ca_file"))?;
            let roots = load_roots("client_tls_ca_file", ca_path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::File {
                    key: "client_tls_ca_file",
                    path: ca_path.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::File {
                key: "client_tls_key_file",
                path: key_path.display().to_string(),
                reason: format!("unusable with client_tls_cert_file ({e})"),
            })?;
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        config.max_fragment_size = Some(CLIENT_RECORD_BYTES);
        Ok(ClientTlsState {
            mode,
            config: Some((Arc::new(config), end_point)),
        })
    }
}

/// libpq never uses TLS over a Unix socket, whatever sslmode says; nor
/// does pgvigil.
pub(crate) fn server_leg_can_use_tls(host: &str) -> bool {
    !host.starts_with('/')
}

/// The name the server's certificate is checked against (verify-full)
/// and sent as SNI. A host that is neither an IP address nor a valid DNS
/// name gets a placeholder that no certificate names, so verify-full
/// fails closed while the modes that ignore the name still connect.
pub(crate) fn server_name(host: &str) -> ServerName<'static> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(bare.to_string())
        .unwrap_or_else(|_| ServerName::try_from("invalid.").expect("a valid DNS name"))
}

struct ServerTlsState {
    mode: ServerSslMode,
    /// `None` under `disable`.
    config: Option<Arc<rustls::ClientConfig>>,
}

/// TLS towards one database's PostgreSQL server.
pub(crate) struct ServerTls {
    state: Swappable<ServerTlsState>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A server leg that never asks for TLS, for tests.
    #[cfg(test)]
    pub(crate) fn disabled() -> std::sync::Arc<ServerTls> {
        let settings = ServerTlsSettings {
            sslmode: ServerSslMode::Disable,
            ca_file: None,
        };
        std::sync::Arc::new(ServerTls::new(&settings).expect("disable needs no files"))
    }

    pub(crate) fn new(settings: &ServerTlsSettings) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            state: Swappable::new(Self::build(settings)?),
        })
    }

    /// Re-reads the CA file; on any error the configuration in use stays.
    pub(crate) fn reload(&self, settings: &ServerTlsSettings) -> Result<(), TlsError> {
        self.state.set(Self::build(settings)?);
        Ok(())
    }

    /// The configuration for the next connection; `None` under `disable`
    /// (send no SSLRequest).
    pub(crate) fn connector_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.state.get().config.clone()
    }

    pub(crate) fn mode(&self) -> ServerSslMode {
        self.state.get().mode
    }

    fn build(settings: &ServerTlsSettings) -> Result<ServerTlsState, TlsError> {
        let mode = settings.sslmode;
        let provider = provider();
        let roots = match (&settings.ca_file, mode) {
            (_, ServerSslMode::Disable) => {
                return Ok(ServerTlsState { mode, config: None });
            }
            (Some(path), _) => Some(load_roots("server_tls_ca_file", path)?),
            (None, ServerSslMode::VerifyCa | ServerSslMode::VerifyFull) => {
                return Err(TlsError::Missing {
                    key: "server_tls_ca_file",
                    mode: format!("server_tls_sslmode {}", mode.as_str()),
                })
            }
            (None, _) => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            // libpq: with a root certificate, `require` checks the chain as
            // `verify-ca` does.
            (ServerSslMode::Require | ServerSslMode::VerifyCa, Some(roots)) => {
                Arc::new(ChainOnly(webpki_verifier(roots, provider.clone())?))
            }
            (ServerSslMode::VerifyFull, Some(roots)) => webpki_verifier(roots, provider.clone())?,
            _ => Arc::new(AnyCertificate(provider.clone())),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls {
                context: "server TLS",
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(ServerTlsState {
            mode,
            config: Some(Arc::new(config)),
        })
    }
}

fn webpki_verifier(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| TlsError::Rustls {
            context: "server_tls_ca_file",
            reason: e.to_string(),
        })
}

/// `prefer` and `require` without a CA: any certificate is taken, as
/// libpq does, but the handshake signatures are still checked so the
/// session keys belong to whoever holds that certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the host name is not
/// looked at. webpki checks the name only after the chain, so a name
/// mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::{ClientConnection, ServerConnection};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate (PEM cert, PEM key, DER cert) signed by `ca`.
    fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A directory of PEM files for one test, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "pgvigil-tls-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        fn file(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A PostgreSQL stand-in's certificates: the CA that signed a server
    /// certificate for localhost and 127.0.0.1, and that CA's files.
    struct Pki {
        dir: Dir,
        ca: Ca,
        ca_file: PathBuf,
        other_ca_file: PathBuf,
        cert_file: PathBuf,
        key_file: PathBuf,
        cert_der: Vec<u8>,
    }

    fn pki() -> Pki {
        let dir = Dir::new();
        let ca = ca("test CA");
        let other = ca_named_other();
        let (cert, key, cert_der) = leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        Pki {
            ca_file: dir.file("ca.pem", &ca.cert.pem()),
            other_ca_file: dir.file("other-ca.pem", &other.cert.pem()),
            cert_file: dir.file("server.pem", &cert),
            key_file: dir.file("server.key", &key),
            cert_der,
            ca,
            dir,
        }
    }

    fn ca_named_other() -> Ca {
        ca("unrelated CA")
    }

    fn client_settings(pki: &Pki, sslmode: ClientSslMode) -> ClientTlsSettings {
        ClientTlsSettings {
            sslmode,
            cert_file: Some(pki.cert_file.clone()),
            key_file: Some(pki.key_file.clone()),
            ca_file: Some(pki.ca_file.clone()),
        }
    }

    fn server_settings(sslmode: ServerSslMode, ca_file: Option<&Path>) -> ServerTlsSettings {
        ServerTlsSettings {
            sslmode,
            ca_file: ca_file.map(Path::to_path_buf),
        }
    }

    #[derive(Debug)]
    enum Failed {
        Client(rustls::Error),
        Server(rustls::Error),
    }

    /// Runs a handshake in memory; the error says which side refused.
    fn handshake(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
    ) -> Result<(), Failed> {
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().map_err(Failed::Server)?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().map_err(Failed::Client)?;
            }
            if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    /// pgvigil's server leg (`leg`) connecting to `host` served by `postgres`.
    fn connect(leg: &ServerTls, host: &str, postgres: &ClientTls) -> Result<(), Failed> {
        let config = leg.connector_config().expect("TLS enabled");
        let (server_config, _) = postgres.current().expect("TLS enabled");
        let mut client = ClientConnection::new(config, server_name(host)).unwrap();
        let mut server = ServerConnection::new(server_config).unwrap();
        handshake(&mut client, &mut server)
    }

    fn postgres(pki: &Pki) -> ClientTls {
        ClientTls::new(&client_settings(pki, ClientSslMode::Require)).unwrap()
    }

    /// A psql stand-in: trusts `pki`'s CA, offers ALPN `postgresql` when
    /// asked, and presents `client_cert` (PEM cert, PEM key) if given.
    fn psql_config(
        pki: &Pki,
        alpn: bool,
        client_cert: Option<(&str, &str)>,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.cert.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        if alpn {
            config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        }
        Arc::new(config)
    }

    fn client_connects(
        tls: &ClientTls,
        psql: Arc<rustls::ClientConfig>,
    ) -> Result<ServerConnection, Failed> {
        let (config, _) = tls.current().expect("TLS enabled");
        let mut client = ClientConnection::new(psql, server_name("localhost")).unwrap();
        let mut server = ServerConnection::new(config).unwrap();
        handshake(&mut client, &mut server)?;
        Ok(server)
    }

    #[test]
    fn verify_full_accepts_the_named_host_and_refuses_another_name_or_ca() {
        let pki = pki();
        let pg = postgres(&pki);
        let leg = ServerTls::new(&server_settings(
            ServerSslMode::VerifyFull,
            Some(&pki.ca_file),
        ))
        .unwrap();
        connect(&leg, "localhost", &pg).unwrap();
        connect(&leg, "127.0.0.1", &pg).unwrap();

        let err = connect(&leg, "db.example.com", &pg).unwrap_err();
        assert!(
            matches!(&err, Failed::Client(e) if e.to_string().contains("not valid for name")),
            "{err:?}"
        );

        let wrong_ca = ServerTls::new(&server_settings(
            ServerSslMode::VerifyFull,
            Some(&pki.other_ca_file),
        ))
        .unwrap();
        let err = connect(&wrong_ca, "localhost", &pg).unwrap_err();
        assert!(
            matches!(&err, Failed::Client(e) if e.to_string().contains("UnknownIssuer")
                || e.to_string().contains("unknown issuer")),
            "{err:?}"
        );
    }

    #[test]
    fn verify_ca_ignores_the_host_name_but_refuses_another_ca() {
        let pki = pki();
        let pg = postgres(&pki);
        let leg = ServerTls::new(&server_settings(
            ServerSslMode::VerifyCa,
            Some(&pki.ca_file),
        ))
        .unwrap();
        connect(&leg, "db.example.com", &pg).unwrap();
        connect(&leg, "10.1.2.3", &pg).unwrap();

        let wrong_ca = ServerTls::new(&server_settings(
            ServerSslMode::VerifyCa,
            Some(&pki.other_ca_file),
        ))
        .unwrap();
        assert!(matches!(
            connect(&wrong_ca, "localhost", &pg),
            Err(Failed::Client(rustls::Error::InvalidCertificate(_)))
        ));
    }

    #[test]
    fn prefer_and_require_encrypt_to_a_certificate_from_an_unknown_ca() {
        let pki = pki();
        let pg = postgres(&pki);
        for mode in [ServerSslMode::Prefer, ServerSslMode::Require] {
            let leg = ServerTls::new(&server_settings(mode, None)).unwrap();
            assert_eq!(leg.mode(), mode);
            connect(&leg, "some-other-name", &pg).unwrap();
        }
    }

    #[test]
    fn require_with_a_ca_file_checks_the_chain_as_libpq_does() {
        let pki = pki();
        let pg = postgres(&pki);
        let leg = ServerTls::new(&server_settings(
            ServerSslMode::Require,
            Some(&pki.other_ca_file),
        ))
        .unwrap();
        assert!(connect(&leg, "localhost", &pg).is_err());
        let leg =
            ServerTls::new(&server_settings(ServerSslMode::Require, Some(&pki.ca_file))).unwrap();
        connect(&leg, "another-name", &pg).unwrap();
    }

    #[test]
    fn disable_builds_no_configuration_and_unix_sockets_never_use_tls() {
        let leg = ServerTls::new(&server_settings(ServerSslMode::Disable, None)).unwrap();
        assert!(leg.connector_config().is_none());
        let client = ClientTls::new(&ClientTlsSettings {
            sslmode: ClientSslMode::Disable,
            cert_file: None,
            key_file: None,
            ca_file: None,
        })
        .unwrap();
        assert!(client.current().is_none());
        assert!(!server_leg_can_use_tls("/var/run/postgresql"));
        assert!(server_leg_can_use_tls("db.internal"));
        assert!(server_leg_can_use_tls("127.0.0.1"));
    }

    #[test]
    fn server_names_keep_ip_addresses_as_addresses() {
        assert!(matches!(server_name("127.0.0.1"), ServerName::IpAddress(_)));
        assert!(matches!(server_name("[::1]"), ServerName::IpAddress(_)));
        assert!(matches!(server_name("::1"), ServerName::IpAddress(_)));
        assert!(matches!(server_name("db.internal"), ServerName::DnsName(_)));
        assert!(matches!(server_name("bad name!"), ServerName::DnsName(_)));
    }

    #[test]
    fn verify_ca_on_the_client_leg_requires_a_certificate_from_the_ca() {
        let pki = pki();
        let tls = ClientTls::new(&client_settings(&pki, ClientSslMode::VerifyCa)).unwrap();
        assert!(matches!(
            client_connects(&tls, psql_config(&pki, false, None)),
            Err(Failed::Server(_))
        ));

        let (cert, key, _) = leaf(&pki.ca, &["app"], ExtendedKeyUsagePurpose::ClientAuth);
        let server = client_connects(&tls, psql_config(&pki, false, Some((&cert, &key)))).unwrap();
        assert!(server.peer_certificates().is_some_and(|c| c.len() == 1));

        let other = ca_named_other();
        let (cert, key, _) = leaf(&other, &["app"], ExtendedKeyUsagePurpose::ClientAuth);
        let err = client_connects(&tls, psql_config(&pki, false, Some((&cert, &key)))).unwrap_err();
        assert!(
            matches!(
                &err,
                Failed::Server(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn require_on_the_client_leg_asks_for_no_certificate() {
        let pki = pki();
        for mode in [
            ClientSslMode::Allow,
            ClientSslMode::Prefer,
            ClientSslMode::Require,
        ] {
            let tls = ClientTls::new(&client_settings(&pki, mode)).unwrap();
            assert_eq!(tls.mode(), mode);
            let server = client_connects(&tls, psql_config(&pki, false, None)).unwrap();
            assert!(server.peer_certificates().is_none());
        }
    }

    #[test]
    fn alpn_postgresql_is_negotiated_when_the_client_offers_it() {
        let pki = pki();
        let tls = postgres(&pki);
        let server = client_connects(&tls, psql_config(&pki, true, None)).unwrap();
        assert_eq!(server.alpn_protocol(), Some(ALPN_POSTGRESQL));
        let server = client_connects(&tls, psql_config(&pki, false, None)).unwrap();
        assert_eq!(server.alpn_protocol(), None);
    }

    #[test]
    fn reload_swaps_the_certificate_and_a_bad_reload_keeps_the_old_one() {
        let pki = pki();
        let settings = client_settings(&pki, ClientSslMode::Require);
        let tls = ClientTls::new(&settings).unwrap();
        let (_, first) = tls.current().unwrap();
        assert_eq!(&first[..], &sha2::Sha256::digest(&pki.cert_der)[..]);

        let (cert, key, der) = leaf(&pki.ca, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        let renewed = ClientTlsSettings {
            cert_file: Some(pki.dir.file("renewed.pem", &cert)),
            key_file: Some(pki.dir.file("renewed.key", &key)),
            ..settings.clone()
        };
        tls.reload(&renewed).unwrap();
        let (_, second) = tls.current().unwrap();
        assert_eq!(&second[..], &sha2::Sha256::digest(&der)[..]);
        assert_ne!(first, second);
        let server = client_connects(&tls, psql_config(&pki, false, None)).unwrap();
        let seen = server.peer_certificates();
        assert!(seen.is_none(), "no client certificate was sent");

        let broken = ClientTlsSettings {
            cert_file: Some(pki.dir.file("broken.pem", "not a certificate\n")),
            ..renewed.clone()
        };
        let err = tls.reload(&broken).unwrap_err();
        assert!(err.to_string().contains("broken.pem"), "{err}");
        let (_, after) = tls.current().unwrap();
        assert_eq!(after, second);
        client_connects(&tls, psql_config(&pki, false, None)).unwrap();

        // A key that belongs to another certificate is refused too.
        let (_, other_key, _) = leaf(&pki.ca, &["x"], ExtendedKeyUsagePurpose::ServerAuth);
        let mismatched = ClientTlsSettings {
            key_file: Some(pki.dir.file("other.key", &other_key)),
            ..renewed
        };
        assert!(tls.reload(&mismatched).is_err());
        assert_eq!(tls.current().unwrap().1, second);
    }

    #[test]
    fn errors_name_the_setting_and_file_but_never_key_material() {
        let pki = pki();
        let missing = ClientTlsSettings {
            cert_file: Some(pki.dir.0.join("absent.pem")),
            ..client_settings(&pki, ClientSslMode::Require)
        };
        let err = ClientTls::new(&missing).unwrap_err().to_string();
        assert!(err.starts_with("client_tls_cert_file "), "{err}");
        assert!(err.contains("absent.pem"), "{err}");

        let empty = ClientTlsSettings {
            cert_file: Some(pki.dir.file("empty.pem", "")),
            ..client_settings(&pki, ClientSslMode::Require)
        };
        let err = ClientTls::new(&empty).unwrap_err().to_string();
        assert!(err.ends_with("empty.pem: no certificate found"), "{err}");

        // A certificate where the key should be: the message must not
        // echo the file.
        let key_text = std::fs::read_to_string(&pki.key_file).unwrap();
        let swapped = ClientTlsSettings {
            key_file: Some(
                pki.dir
                    .file("swapped.key", &key_text.replace("PRIVATE KEY", "X")),
            ),
            ..client_settings(&pki, ClientSslMode::Require)
        };
        let err = ClientTls::new(&swapped).unwrap_err().to_string();
        assert!(err.starts_with("client_tls_key_file "), "{err}");
        let body: String = key_text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!err.contains(line), "{err}");
        }
        assert!(!body.is_empty());

        let err = ServerTls::new(&server_settings(ServerSslMode::VerifyFull, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server_tls_ca_file"), "{err}");
    }

    #[test]
    fn end_point_hash_follows_the_signature_hash() {
        let ca = ca("p384 CA");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        // Signed by a P-256 CA: ecdsa-with-SHA256.
        assert_eq!(
            tls_server_end_point(cert.der()).unwrap(),
            sha2::Sha256::digest(cert.der()).to_vec()
        );
        // Self-signed with P-384: ecdsa-with-SHA384.
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            tls_server_end_point(cert.der()).unwrap(),
            sha2::Sha384::digest(cert.der()).to_vec()
        );
        assert_eq!(tls_server_end_point(b"\x30\x03junk"), None);
        assert_eq!(tls_server_end_point(&[]), None);
    }

    #[test]
    fn server_leg_reload_swaps_the_verification_and_a_bad_reload_keeps_the_old_one() {
        let pki = pki();
        let pg = postgres(&pki);
        let leg = ServerTls::new(&server_settings(ServerSslMode::Prefer, None)).unwrap();
        connect(&leg, "localhost", &pg).unwrap();

        leg.reload(&server_settings(
            ServerSslMode::VerifyFull,
            Some(&pki.other_ca_file),
        ))
        .unwrap();
        assert_eq!(leg.mode(), ServerSslMode::VerifyFull);
        assert!(connect(&leg, "localhost", &pg).is_err());

        let missing = pki.dir.0.join("absent-ca.pem");
        let err = leg
            .reload(&server_settings(ServerSslMode::Require, Some(&missing)))
            .unwrap_err();
        assert!(err.to_string().starts_with("server_tls_ca_file "), "{err}");
        assert_eq!(leg.mode(), ServerSslMode::VerifyFull);
        assert!(connect(&leg, "localhost", &pg).is_err());

        leg.reload(&server_settings(ServerSslMode::Disable, None))
            .unwrap();
        assert!(leg.connector_config().is_none());
    }
}
