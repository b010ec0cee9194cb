//! The server side of SCRAM-SHA-256 (RFC 5802 / 7677), for clients that
//! log in to pgvigil, and the forms a configured password may take. The
//! client side with a password, for pgvigil logging in to PostgreSQL,
//! comes from postgres-protocol; the client side without one (keys
//! recovered from a client's proof) is in `scram_client.rs`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("password authentication failed")]
    BadProof,
    /// Only a client with the ClientKey for this salt and iteration count
    /// can log in; a different pair means pg_authid holds another secret.
    #[error("the server's salt/iterations differ from the SCRAM secret's")]
    SecretMismatch,
    #[error("the server's SCRAM signature is wrong")]
    BadServerSignature,
    /// The server's `e=` attribute: a fixed protocol word, safe to log.
    #[error("the server rejected the SCRAM exchange: {0}")]
    ServerRejected(String),
}

/// SHA-256 output length: the size of every SCRAM-SHA-256 key.
pub const SCRAM_KEY_LEN: usize = 32;

/// PostgreSQL's default `scram_iterations`, so a mock secret offers what a
/// real one made with the defaults would.
pub const SCRAM_DEFAULT_ITERATIONS: u32 = 4096;

/// PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
const SCRAM_DEFAULT_SALT_LEN: usize = 16;

/// What a server stores for a password: computing it costs 4096 HMAC
/// rounds, so it is done once per configured user, not per login.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; SCRAM_KEY_LEN],
    server_key: [u8; SCRAM_KEY_LEN],
    /// A mock for an unknown user: every proof fails, whatever the keys.
    doomed: bool,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are password-equivalent for logging in to pgvigil.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    pub fn from_password(password: &str) -> ScramVerifier {
        // postgres-protocol applies SASLprep and salts exactly like
        // PostgreSQL; its text form is "SCRAM-SHA-256$iter:salt$stored:server".
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        Self::parse(&text).expect("postgres-protocol produced a well-formed SCRAM verifier")
    }

    /// Parses pg_authid's form, `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`,
    /// as strictly as PostgreSQL's `parse_scram_secret`: anything else is
    /// not a secret (and so, to PostgreSQL, a plaintext password).
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        if iterations == 0 {
            return None;
        }
        Some(ScramVerifier {
            iterations,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored).ok()?.try_into().ok()?,
            server_key: STANDARD.decode(server).ok()?.try_into().ok()?,
            doomed: false,
        })
    }

    /// A secret for a user pgvigil does not know, so that asking for one
    /// proceeds exactly like a wrong password (PostgreSQL's
    /// `scram_mock_salt`): the salt is stable per user name, so probing
    /// twice reveals nothing, and unguessable, since it mixes in `secret`
    /// (use [`mock_secret`]). The exchange always ends in `BadProof`.
    pub fn mock(user: &str, secret: &[u8]) -> ScramVerifier {
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update(secret);
        let digest = h.finalize();
        ScramVerifier {
            iterations: SCRAM_DEFAULT_ITERATIONS,
            salt: digest[..SCRAM_DEFAULT_SALT_LEN].to_vec(),
            stored_key: [0; SCRAM_KEY_LEN],
            server_key: [0; SCRAM_KEY_LEN],
            doomed: true,
        }
    }

    /// The keys a client holding `client_key` logs in to PostgreSQL with;
    /// None unless `client_key` belongs to this secret.
    pub fn keys_for(&self, client_key: [u8; SCRAM_KEY_LEN]) -> Option<ScramKeys> {
        let stored: [u8; SCRAM_KEY_LEN] = Sha256::digest(client_key).into();
        (!self.doomed && constant_time_eq(&stored, &self.stored_key)).then(|| ScramKeys {
            client_key,
            server_key: self.server_key,
            salt: self.salt.clone(),
            iterations: self.iterations,
        })
    }
}

/// The per-process secret [`ScramVerifier::mock`] salts with (PostgreSQL's
/// `mock_auth_nonce`): random at start, so salts differ between restarts
/// but never between two probes of one process.
pub fn mock_secret() -> &'static [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(rand::random)
}

/// What logging in to PostgreSQL as a SCRAM user takes without the
/// password: the ClientKey (recovered from a client's proof, see
/// [`ScramExchange::finish_with_keys`]) and the secret's ServerKey, salt
/// and iteration count (PostgreSQL must offer the same ones).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub(crate) client_key: [u8; SCRAM_KEY_LEN],
    pub(crate) server_key: [u8; SCRAM_KEY_LEN],
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ClientKey logs in to PostgreSQL: as secret as a password.
        f.write_str("ScramKeys(<redacted>)")
    }
}

impl Drop for ScramKeys {
    fn drop(&mut self) {
        // Best effort without a zeroize dependency: volatile writes are not
        // elided, so the key does not outlive its holder in freed memory.
        for b in self.client_key.iter_mut().chain(self.server_key.iter_mut()) {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// A configured user's password as the operator wrote it: plaintext, or
/// one of the two hashed forms PostgreSQL itself stores in pg_authid, so a
/// config file need not hold the password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPassword {
    Plain(String),
    Scram(ScramVerifier),
    /// md5(password || user name), as `md5<32 hex>` holds it.
    Md5([u8; 16]),
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoredPassword::Plain(_) => "Plain(<redacted>)",
            StoredPassword::Scram(_) => "Scram(<redacted>)",
            StoredPassword::Md5(_) => "Md5(<redacted>)",
        })
    }
}

/// Why a stored password cannot serve a client's authentication method;
/// safe to log (it names no secret), not meant for the client, who is told
/// only "password authentication failed" as PostgreSQL does.
pub const MD5_CANNOT_DO_SCRAM: &str = "the user's configured password is an md5 hash, which \
     cannot verify SCRAM (configure the plaintext password or its SCRAM secret, or use client_auth = md5)";

impl StoredPassword {
    /// Like PostgreSQL's `get_password_type`: a string is a hash only if it
    /// has exactly one of the two hashed forms; anything else, however
    /// close, is a plaintext password.
    pub fn parse(text: &str) -> StoredPassword {
        if let Some(v) = ScramVerifier::parse(text) {
            return StoredPassword::Scram(v);
        }
        if let Some(hex) = text.strip_prefix("md5") {
            if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                let mut hash = [0u8; 16];
                for (i, out) in hash.iter_mut().enumerate() {
                    *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                        .expect("checked to be lowercase hex");
                }
                return StoredPassword::Md5(hash);
            }
        }
        StoredPassword::Plain(text.to_string())
    }

    /// The SCRAM secret to check clients against; computing one from a
    /// plaintext password costs 4096 HMAC rounds, so call it once per
    /// configured user. An md5 hash cannot do SCRAM: `Err` carries the
    /// log-safe reason, and the client must get 28P01.
    pub fn scram_verifier(&self) -> Result<ScramVerifier, &'static str> {
        match self {
            StoredPassword::Plain(p) => Ok(ScramVerifier::from_password(p)),
            StoredPassword::Scram(v) => Ok(v.clone()),
            StoredPassword::Md5(_) => Err(MD5_CANNOT_DO_SCRAM),
        }
    }

    /// Whether md5 client authentication can be checked. With a SCRAM
    /// secret it cannot: PostgreSQL then runs SCRAM instead of md5, and so
    /// should the caller.
    pub fn can_check_md5(&self) -> bool {
        !matches!(self, StoredPassword::Scram(_))
    }

    /// Checks an md5 PasswordMessage against a plaintext password or an
    /// md5 hash; false for a SCRAM secret (see [`Self::can_check_md5`]).
    pub fn md5_matches(&self, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
        let hash = match self {
            StoredPassword::Plain(p) => md5_password_hash(user, p),
            StoredPassword::Md5(h) => *h,
            StoredPassword::Scram(_) => return false,
        };
        constant_time_eq(md5_salted_response(&hash, salt).as_bytes(), response)
    }
}

/// md5(password || user), what `md5<hex>` stores.
pub fn md5_password_hash(user: &str, password: &str) -> [u8; 16] {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    h.finalize().into()
}

/// The md5 challenge response from the stored hash alone:
/// `md5` + hex(md5(hex(hash) || salt)). Needs no plaintext, which is what
/// lets an md5-hashed password log in to PostgreSQL too.
pub fn md5_salted_response(hash: &[u8; 16], salt: [u8; 4]) -> String {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    h.update(hex(hash).as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One login's exchange: client-first -> server-first, client-final ->
/// server-final.
pub struct ScramExchange<'a> {
    verifier: &'a ScramVerifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// What client-final's `c=` must say: the gs2 header, and for
    /// SCRAM-SHA-256-PLUS the certificate hash, base64-encoded.
    expected_channel: String,
}

impl<'a> ScramExchange<'a> {
    /// Handles the SASLInitialResponse data; returns server-first-message.
    pub fn start(
        verifier: &'a ScramVerifier,
        client_first: &[u8],
        server_nonce: &[u8],
    ) -> Result<(ScramExchange<'a>, String), ScramError> {
        Self::start_bound(verifier, client_first, server_nonce, None, false)
    }

    /// `start` over TLS: `binding` is the `tls-server-end-point` hash of
    /// the certificate the client saw, when SCRAM-SHA-256-PLUS was
    /// offered; `plus` says whether the client chose it.
    pub fn start_bound(
        verifier: &'a ScramVerifier,
        client_first: &[u8],
        server_nonce: &[u8],
        binding: Option<&[u8]>,
        plus: bool,
    ) -> Result<(ScramExchange<'a>, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
        // gs2-header: "n,," (no channel binding), "y,," (the client could
        // bind but thinks the server can't: a lie when PLUS was offered,
        // so someone in the middle removed it), or
        // "p=tls-server-end-point,," (bound to the certificate).
        let (bare, expected_channel) = if let Some(rest) = text.strip_prefix("n,,") {
            (rest, STANDARD.encode("n,,"))
        } else if let Some(rest) = text.strip_prefix("y,,") {
            if binding.is_some() {
                return Err(ScramError::ChannelBinding);
            }
            (rest, STANDARD.encode("y,,"))
        } else if let Some(rest) = text.strip_prefix("p=tls-server-end-point,,") {
            let Some(hash) = binding.filter(|_| plus) else {
                return Err(ScramError::ChannelBinding);
            };
            let mut data = b"p=tls-server-end-point,,".to_vec();
            data.extend_from_slice(hash);
            (rest, STANDARD.encode(data))
        } else if text.starts_with("p=") {
            return Err(ScramError::ChannelBinding);
        } else {
            return Err(ScramError::Malformed("bad gs2 header"));
        };
        if plus && !text.starts_with("p=") {
            return Err(ScramError::ChannelBinding);
        }
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-first has no nonce"))?;
        if client_nonce.is_empty() || client_nonce.contains(',') {
            return Err(ScramError::Malformed("bad client nonce"));
        }
        let nonce = format!("{client_nonce}{}", STANDARD.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        let exchange = ScramExchange {
            verifier,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            expected_channel,
        };
        Ok((exchange, server_first))
    }

    /// Checks the client's proof; returns server-final-message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        self.finish_with_keys(client_final)
            .map(|(server_final, _)| server_final)
    }

    /// Like [`Self::finish`], also returning the keys the proof revealed:
    /// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), checked
    /// by H(ClientKey) == StoredKey. With them pgvigil can log in to
    /// PostgreSQL as this user knowing only the SCRAM secret (as PgBouncer
    /// does), provided pg_authid holds the same secret.
    pub fn finish_with_keys(self, client_final: &[u8]) -> Result<(String, ScramKeys), ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final has no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        match channel {
            Some(c) if c == self.expected_channel => {}
            Some(_) => return Err(ScramError::ChannelBinding),
            None => return Err(ScramError::Malformed("client-final has no channel binding")),
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof);
        }
        let mut client_key = [0u8; SCRAM_KEY_LEN];
        for ((k, a), b) in client_key.iter_mut().zip(&proof).zip(&client_signature) {
            *k = a ^ b;
        }
        let keys = self
            .verifier
            .keys_for(client_key)
            .ok_or(ScramError::BadProof)?;
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok((format!("v={}", STANDARD.encode(server_signature)), keys))
    }
}

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; SCRAM_KEY_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an md5 PasswordMessage: "md5" + hex(md5(hex(md5(password + user)) + salt)).
pub fn md5_matches(user: &str, password: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let expected =
        postgres_protocol::authentication::md5_hash(user.as_bytes(), password.as_bytes(), salt);
    constant_time_eq(expected.as_bytes(), response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn run_exchange(server_password: &str, client_password: &str) -> Result<(), ScramError> {
        let verifier = ScramVerifier::from_password(server_password);
        let mut client =
            ScramSha256::new(client_password.as_bytes(), ChannelBinding::unsupported());
        let (exchange, server_first) =
            ScramExchange::start(&verifier, client.message(), b"0123456789abcdef01")?;
        client
            .update(server_first.as_bytes())
            .expect("client accepts server-first");
        let server_final = exchange.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .expect("client verifies the server signature");
        Ok(())
    }

    /// A client-side exchange with `binding`, against a server that
    /// offered SCRAM-SHA-256-PLUS with `server_hash`.
    fn run_bound(
        binding: ChannelBinding,
        plus: bool,
        server_hash: Option<&[u8]>,
    ) -> Result<(), ScramError> {
        let verifier = ScramVerifier::from_password("pw");
        let mut client = ScramSha256::new(b"pw", binding);
        let (exchange, server_first) = ScramExchange::start_bound(
            &verifier,
            client.message(),
            b"0123456789abcdef01",
            server_hash,
            plus,
        )?;
        client
            .update(server_first.as_bytes())
            .expect("client accepts server-first");
        let server_final = exchange.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .expect("client verifies the server signature");
        Ok(())
    }

    proptest::proptest! {
        /// What a client sends during SCRAM is untrusted: any bytes get
        /// an error or a server-first message, never a panic, and no
        /// proof made without the password is accepted.
        #[test]
        fn scram_server_never_panics_on_any_client_message(
            first in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            last in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            header in proptest::sample::select(vec!["", "n,,", "y,,", "p=tls-server-end-point,,", "p=x,,"]),
            offered in proptest::prelude::any::<bool>(),
            plus in proptest::prelude::any::<bool>(),
        ) {
            // PBKDF2 once for all cases.
            static VERIFIER: std::sync::OnceLock<ScramVerifier> = std::sync::OnceLock::new();
            let verifier = VERIFIER.get_or_init(|| ScramVerifier::from_password("pw"));
            let mut client_first = header.as_bytes().to_vec();
            client_first.extend_from_slice(&first);
            let binding = [3u8; 32];
            let offered = offered.then_some(&binding[..]);
            if let Ok((exchange, _)) =
                ScramExchange::start_bound(verifier, &client_first, b"nonce", offered, plus)
            {
                proptest::prop_assert!(exchange.finish_with_keys(&last).is_err());
            }
        }
    }

    #[test]
    fn channel_binding_must_name_the_certificate_the_client_saw() {
        let hash = [7u8; 32];
        let bound = || ChannelBinding::tls_server_end_point(hash.to_vec());
        assert_eq!(run_bound(bound(), true, Some(&hash)), Ok(()));
        // A certificate swapped in the middle: the client saw another one.
        let other = [8u8; 32];
        assert_eq!(
            run_bound(bound(), true, Some(&other)),
            Err(ScramError::ChannelBinding)
        );
        // Plain SCRAM ("n,,": a client that cannot bind) still works
        // over TLS.
        assert_eq!(
            run_bound(ChannelBinding::unsupported(), false, Some(&hash)),
            Ok(())
        );
        // "y,,": the client could bind but thinks the server cannot, yet
        // PLUS was offered: someone removed it on the way, a downgrade.
        assert_eq!(
            run_bound(ChannelBinding::unrequested(), false, Some(&hash)),
            Err(ScramError::ChannelBinding)
        );
        // Binding asked for where none was offered.
        assert_eq!(
            run_bound(bound(), true, None),
            Err(ScramError::ChannelBinding)
        );
        // The PLUS mechanism without binding data.
        assert_eq!(
            run_bound(ChannelBinding::unrequested(), true, Some(&hash)),
            Err(ScramError::ChannelBinding)
        );
    }

    #[test]
    fn a_y_header_is_refused_when_plus_was_offered() {
        let verifier = ScramVerifier::from_password("pw");
        let first = b"y,,n=,r=abcdefghijkl";
        assert!(ScramExchange::start_bound(&verifier, first, b"n", None, false).is_ok());
        assert!(matches!(
            ScramExchange::start_bound(&verifier, first, b"n", Some(&[1u8; 32]), false),
            Err(ScramError::ChannelBinding)
        ));
    }

    #[test]
    fn scram_login_succeeds_with_the_right_password() {
        assert_eq!(run_exchange("s3cret", "s3cret"), Ok(()));
    }

    #[test]
    fn scram_login_fails_with_a_wrong_password() {
        assert_eq!(run_exchange("s3cret", "guess"), Err(ScramError::BadProof));
    }

    #[test]
    fn stored_password_recognises_exactly_pg_authid_forms() {
        let secret = postgres_protocol::password::scram_sha_256(b"pw");
        assert!(matches!(
            StoredPassword::parse(&secret),
            StoredPassword::Scram(_)
        ));
        let md5 = postgres_protocol::password::md5(b"pw", "app");
        assert_eq!(
            StoredPassword::parse(&md5),
            StoredPassword::Md5(md5_password_hash("app", "pw"))
        );
        // Near misses are passwords, as in PostgreSQL.
        for plain in [
            "pw",
            "md5",
            &md5[..34],
            &format!("{md5}0"),
            &md5.to_uppercase().replacen("MD5", "md5", 1),
            &secret.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
            &secret[..secret.len() - 4],
            &secret.replacen("$4096:", "$0:", 1),
            &secret.replacen("$4096:", "$x:", 1),
        ] {
            assert_eq!(
                StoredPassword::parse(plain),
                StoredPassword::Plain(plain.to_string()),
                "{plain:?} is not a hash"
            );
        }
    }

    #[test]
    fn stored_password_debug_shows_no_secret() {
        for text in ["hunter2", "md50123456789abcdef0123456789abcdef"] {
            let shown = format!("{:?}", StoredPassword::parse(text));
            assert!(!shown.contains(text.trim_start_matches("md5")), "{shown}");
            assert!(shown.contains("redacted"));
        }
    }

    /// A SCRAM login against a stored password, with postgres-protocol as
    /// the client.
    fn scram_against(stored: &StoredPassword, client_password: &str) -> Result<(), ScramError> {
        let verifier = stored.scram_verifier().map_err(|_| ScramError::BadProof)?;
        let mut client =
            ScramSha256::new(client_password.as_bytes(), ChannelBinding::unsupported());
        let (exchange, server_first) = ScramExchange::start(&verifier, client.message(), b"nonce")?;
        client.update(server_first.as_bytes()).unwrap();
        let server_final = exchange.finish(client.message())?;
        client.finish(server_final.as_bytes()).unwrap();
        Ok(())
    }

    #[test]
    fn scram_client_auth_works_with_plaintext_and_scram_secret() {
        let plain = StoredPassword::parse("pw");
        let secret = StoredPassword::parse(&postgres_protocol::password::scram_sha_256(b"pw"));
        for stored in [&plain, &secret] {
            assert_eq!(scram_against(stored, "pw"), Ok(()), "{stored:?}");
            assert_eq!(scram_against(stored, "nope"), Err(ScramError::BadProof));
        }
    }

    #[test]
    fn scram_client_auth_is_refused_for_an_md5_hash() {
        let stored = StoredPassword::parse(&postgres_protocol::password::md5(b"pw", "app"));
        assert_eq!(stored.scram_verifier(), Err(MD5_CANNOT_DO_SCRAM));
        assert!(!MD5_CANNOT_DO_SCRAM.contains("pw"));
    }

    #[test]
    fn md5_client_auth_works_with_plaintext_and_md5_hash() {
        let salt = [9, 8, 7, 6];
        let response = postgres_protocol::authentication::md5_hash(b"app", b"pw", salt);
        let plain = StoredPassword::parse("pw");
        let hashed = StoredPassword::parse(&postgres_protocol::password::md5(b"pw", "app"));
        for stored in [&plain, &hashed] {
            assert!(stored.can_check_md5());
            assert!(
                stored.md5_matches("app", salt, response.as_bytes()),
                "{stored:?}"
            );
            assert!(!stored.md5_matches("app", [0; 4], response.as_bytes()));
        }
        // The user name salts the plaintext; a hash already has it baked in.
        assert!(!plain.md5_matches("other", salt, response.as_bytes()));
        let wrong = postgres_protocol::authentication::md5_hash(b"app", b"px", salt);
        assert!(!hashed.md5_matches("app", salt, wrong.as_bytes()));
        let secret = StoredPassword::parse(&postgres_protocol::password::scram_sha_256(b"pw"));
        assert!(!secret.can_check_md5());
        assert!(!secret.md5_matches("app", salt, response.as_bytes()));
    }

    #[test]
    fn md5_response_from_the_hash_equals_libpq_from_the_password() {
        let salt = [1, 2, 3, 4];
        assert_eq!(
            md5_salted_response(&md5_password_hash("app", "pw"), salt),
            postgres_protocol::authentication::md5_hash(b"app", b"pw", salt)
        );
    }

    #[test]
    fn mock_salt_is_stable_per_user_and_differs_between_users() {
        let secret = mock_secret();
        let a1 = ScramVerifier::mock("alice", secret);
        let a2 = ScramVerifier::mock("alice", secret);
        let b = ScramVerifier::mock("bob", secret);
        assert_eq!(a1.salt, a2.salt);
        assert_ne!(a1.salt, b.salt);
        assert_ne!(
            a1.salt,
            ScramVerifier::mock("alice", b"another process").salt
        );
        assert_eq!(a1.salt.len(), 16);
        // Same offer as a real secret made with the defaults.
        assert_eq!(a1.iterations, ScramVerifier::from_password("x").iterations);
    }

    #[test]
    fn an_exchange_against_a_mock_always_fails_like_a_wrong_password() {
        let mock = ScramVerifier::mock("ghost", mock_secret());
        for password in ["", "pw", "ghost"] {
            let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
            let (exchange, server_first) =
                ScramExchange::start(&mock, client.message(), b"nonce").unwrap();
            assert!(server_first.contains(",i=4096"));
            client.update(server_first.as_bytes()).unwrap();
            assert_eq!(exchange.finish(client.message()), Err(ScramError::BadProof));
        }
        // Even a ClientKey that hashes to the mock's StoredKey is refused.
        let mut rigged = mock.clone();
        rigged.stored_key = Sha256::digest([0u8; 32]).into();
        assert_eq!(rigged.keys_for([0; 32]), None);
    }

    #[test]
    fn md5_response_is_checked() {
        let salt = [1, 2, 3, 4];
        let good = postgres_protocol::authentication::md5_hash(b"app", b"pw", salt);
        assert!(md5_matches("app", "pw", salt, good.as_bytes()));
        assert!(!md5_matches("app", "other", salt, good.as_bytes()));
    }
}
