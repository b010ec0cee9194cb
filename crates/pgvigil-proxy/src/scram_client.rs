//! The client side of SCRAM-SHA-256 without a password: pgvigil logging in
//! to PostgreSQL with the ClientKey a client's proof revealed (see
//! `ScramExchange::finish_with_keys`) and the ServerKey of the configured
//! secret, so a config file holding only pg_authid's secret is enough.
//! Socket-free: the caller moves the messages.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::scram::{constant_time_eq, hmac, ScramError, ScramKeys, SCRAM_KEY_LEN};

/// The GS2 header choices of RFC 5802, as libpq makes them.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientChannelBinding {
    /// `n`: this leg cannot bind (not TLS).
    Unsupported,
    /// `y`: the leg is TLS but the server did not offer SCRAM-SHA-256-PLUS;
    /// saying so lets a server that does support it detect a downgrade.
    NotOffered,
    /// `p=tls-server-end-point`: the hash of the server's certificate
    /// (RFC 5929), binding the exchange to this TLS connection.
    TlsServerEndPoint(Vec<u8>),
}

impl std::fmt::Debug for ClientChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientChannelBinding::Unsupported => "Unsupported",
            ClientChannelBinding::NotOffered => "NotOffered",
            ClientChannelBinding::TlsServerEndPoint(_) => "TlsServerEndPoint",
        })
    }
}

impl ClientChannelBinding {
    /// What to use on a leg, given the server's SASL mechanisms and the
    /// certificate hash when the leg is TLS (libpq's default
    /// `channel_binding=prefer`).
    pub fn choose(server_offers_plus: bool, tls_end_point: Option<&[u8]>) -> ClientChannelBinding {
        match tls_end_point {
            Some(hash) if server_offers_plus => {
                ClientChannelBinding::TlsServerEndPoint(hash.to_vec())
            }
            Some(_) => ClientChannelBinding::NotOffered,
            None => ClientChannelBinding::Unsupported,
        }
    }

    /// The SASL mechanism name that goes with this choice.
    pub fn mechanism(&self) -> &'static str {
        match self {
            ClientChannelBinding::TlsServerEndPoint(_) => "SCRAM-SHA-256-PLUS",
            _ => "SCRAM-SHA-256",
        }
    }

    fn gs2_header(&self) -> &'static str {
        match self {
            ClientChannelBinding::Unsupported => "n,,",
            ClientChannelBinding::NotOffered => "y,,",
            ClientChannelBinding::TlsServerEndPoint(_) => "p=tls-server-end-point,,",
        }
    }
}

enum State {
    /// client-first sent, waiting for server-first.
    Started,
    /// client-final sent; the server's signature to expect.
    Proved {
        server_signature: [u8; SCRAM_KEY_LEN],
    },
    /// Anything after an error or out of order.
    Done,
}

/// One login to PostgreSQL: `new` -> client-first, `server_first` ->
/// client-final, `server_final` -> verified.
pub struct ScramKeysClient {
    keys: ScramKeys,
    channel_binding: ClientChannelBinding,
    client_nonce: String,
    client_first_bare: String,
    state: State,
}

impl ScramKeysClient {
    /// Returns the client and the SASLInitialResponse data (send it with
    /// `channel_binding.mechanism()`).
    pub fn new(keys: ScramKeys, channel_binding: ClientChannelBinding) -> (Self, Vec<u8>) {
        let nonce: [u8; 18] = rand::random();
        Self::with_nonce(keys, channel_binding, STANDARD.encode(nonce))
    }

    fn with_nonce(
        keys: ScramKeys,
        channel_binding: ClientChannelBinding,
        client_nonce: String,
    ) -> (Self, Vec<u8>) {
        // The user name is left empty, as libpq does: PostgreSQL takes it
        // from the StartupMessage.
        let client_first_bare = format!("n=,r={client_nonce}");
        let client_first = format!("{}{client_first_bare}", channel_binding.gs2_header());
        let client = ScramKeysClient {
            keys,
            channel_binding,
            client_nonce,
            client_first_bare,
            state: State::Started,
        };
        (client, client_first.into_bytes())
    }

    /// Handles AuthenticationSASLContinue; returns the client-final-message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Started) {
            return Err(ScramError::Malformed("unexpected server-first"));
        }
        self.state = State::Done;
        let text = std::str::from_utf8(data)
            .map_err(|_| ScramError::Malformed("server-first is not UTF-8"))?;
        let mut attrs = text.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("server-first has no nonce"))?;
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or(ScramError::Malformed("server-first has no salt"))?;
        let iterations = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or(ScramError::Malformed("server-first has no iteration count"))?;
        if attrs.next().is_some() {
            return Err(ScramError::Malformed("server-first has extra attributes"));
        }
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("bad iteration count"))?;
        if salt != self.keys.salt || iterations != self.keys.iterations {
            return Err(ScramError::SecretMismatch);
        }
        let mut binding = self.channel_binding.gs2_header().as_bytes().to_vec();
        if let ClientChannelBinding::TlsServerEndPoint(hash) = &self.channel_binding {
            binding.extend_from_slice(hash);
        }
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(binding));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let stored_key: [u8; SCRAM_KEY_LEN] = Sha256::digest(self.keys.client_key).into();
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = [0u8; SCRAM_KEY_LEN];
        for ((p, k), s) in proof
            .iter_mut()
            .zip(&self.keys.client_key)
            .zip(&client_signature)
        {
            *p = k ^ s;
        }
        self.state = State::Proved {
            server_signature: hmac(&self.keys.server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Handles AuthenticationSASLFinal: the server proves it knows the
    /// ServerKey, i.e. it is the PostgreSQL holding this secret.
    pub fn server_final(&self, data: &[u8]) -> Result<(), ScramError> {
        let State::Proved { server_signature } = &self.state else {
            return Err(ScramError::Malformed("unexpected server-final"));
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| ScramError::Malformed("server-final is not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            // RFC 5802's server-error-value is a fixed vocabulary; anything
            // else is cut down so a hostile server cannot fill our logs.
            let word: String = error
                .chars()
                .take(64)
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            return Err(ScramError::ServerRejected(word));
        }
        let verifier = text
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("v="))
            .ok_or(ScramError::Malformed("server-final has no verifier"))?;
        let verifier = STANDARD
            .decode(verifier)
            .map_err(|_| ScramError::Malformed("server verifier is not base64"))?;
        if constant_time_eq(&verifier, server_signature) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::{ScramExchange, ScramVerifier};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Logs a password client (postgres-protocol's) in to our SCRAM server
    /// and returns the keys its proof revealed.
    fn keys_from_a_password_login(verifier: &ScramVerifier, password: &str) -> ScramKeys {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let (exchange, server_first) =
            ScramExchange::start(verifier, client.message(), b"server-nonce-one").unwrap();
        client.update(server_first.as_bytes()).unwrap();
        let (server_final, keys) = exchange.finish_with_keys(client.message()).unwrap();
        client.finish(server_final.as_bytes()).unwrap();
        keys
    }

    /// Runs our keys client against our SCRAM server.
    fn login_with_keys(verifier: &ScramVerifier, keys: ScramKeys) -> Result<(), ScramError> {
        let (mut client, client_first) =
            ScramKeysClient::new(keys, ClientChannelBinding::Unsupported);
        let (exchange, server_first) =
            ScramExchange::start(verifier, &client_first, b"server-nonce-two")?;
        let client_final = client.server_first(server_first.as_bytes())?;
        let server_final = exchange.finish(&client_final)?;
        client.server_final(server_final.as_bytes())
    }

    #[test]
    fn keys_recovered_from_a_client_proof_log_in_without_the_password() {
        let verifier = ScramVerifier::from_password("correct horse");
        let keys = keys_from_a_password_login(&verifier, "correct horse");
        assert_eq!(login_with_keys(&verifier, keys), Ok(()));
    }

    #[test]
    fn recovered_client_key_hashes_to_the_stored_key() {
        let verifier = ScramVerifier::from_password("pw");
        let keys = keys_from_a_password_login(&verifier, "pw");
        assert_eq!(verifier.keys_for(keys.client_key.to_owned()), Some(keys));
        assert_eq!(verifier.keys_for([7; SCRAM_KEY_LEN]), None);
    }

    #[test]
    fn a_server_with_another_salt_is_refused_before_any_proof_is_sent() {
        let ours = ScramVerifier::from_password("pw");
        let keys = keys_from_a_password_login(&ours, "pw");
        // Same password, new random salt: what pg_authid holds after the
        // password was set again.
        let theirs = ScramVerifier::from_password("pw");
        let (mut client, client_first) =
            ScramKeysClient::new(keys, ClientChannelBinding::Unsupported);
        let (_exchange, server_first) =
            ScramExchange::start(&theirs, &client_first, b"nonce").unwrap();
        assert_eq!(
            client.server_first(server_first.as_bytes()),
            Err(ScramError::SecretMismatch)
        );
    }

    #[test]
    fn a_wrong_client_key_fails_at_the_server() {
        let verifier = ScramVerifier::from_password("pw");
        let mut keys = keys_from_a_password_login(&verifier, "pw");
        keys.client_key[0] ^= 1;
        assert_eq!(login_with_keys(&verifier, keys), Err(ScramError::BadProof));
    }

    #[test]
    fn a_server_without_the_server_key_is_not_believed() {
        let verifier = ScramVerifier::from_password("pw");
        let keys = keys_from_a_password_login(&verifier, "pw");
        let (mut client, client_first) =
            ScramKeysClient::new(keys, ClientChannelBinding::Unsupported);
        let (exchange, server_first) =
            ScramExchange::start(&verifier, &client_first, b"nonce").unwrap();
        let client_final = client.server_first(server_first.as_bytes()).unwrap();
        exchange.finish(&client_final).unwrap();
        let forged = format!("v={}", STANDARD.encode([0u8; 32]));
        assert_eq!(
            client.server_final(forged.as_bytes()),
            Err(ScramError::BadServerSignature)
        );
        assert_eq!(
            client.server_final(b"e=invalid-proof"),
            Err(ScramError::ServerRejected("invalid-proof".into()))
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let verifier = ScramVerifier::from_password("pw");
        let keys = keys_from_a_password_login(&verifier, "pw");
        let (mut client, _) =
            ScramKeysClient::with_nonce(keys, ClientChannelBinding::Unsupported, "abc".into());
        assert!(matches!(
            client.server_first(b"r=xyzdef,s=AAAA,i=4096"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn gs2_header_and_channel_binding_follow_the_leg() {
        let verifier = ScramVerifier::from_password("pw");
        let keys = keys_from_a_password_login(&verifier, "pw");
        let salt = STANDARD.encode(&keys.salt);
        let iterations = keys.iterations;
        for (binding, first, c) in [
            (
                ClientChannelBinding::choose(false, None),
                "n,,n=,r=abc",
                b"n,,".to_vec(),
            ),
            (
                ClientChannelBinding::choose(false, Some(b"H")),
                "y,,n=,r=abc",
                b"y,,".to_vec(),
            ),
            (
                ClientChannelBinding::choose(true, Some(b"HASH")),
                "p=tls-server-end-point,,n=,r=abc",
                b"p=tls-server-end-point,,HASH".to_vec(),
            ),
        ] {
            let plus = matches!(binding, ClientChannelBinding::TlsServerEndPoint(_));
            assert_eq!(
                binding.mechanism(),
                if plus {
                    "SCRAM-SHA-256-PLUS"
                } else {
                    "SCRAM-SHA-256"
                }
            );
            let (mut client, client_first) =
                ScramKeysClient::with_nonce(keys.clone(), binding, "abc".into());
            assert_eq!(client_first, first.as_bytes());
            let server_first = format!("r=abcdef,s={salt},i={iterations}");
            let client_final = client.server_first(server_first.as_bytes()).unwrap();
            let expected = format!("c={},r=abcdef,p=", STANDARD.encode(c));
            assert!(
                String::from_utf8(client_final)
                    .unwrap()
                    .starts_with(&expected),
                "client-final must carry c={expected}"
            );
        }
    }

    #[test]
    fn keys_are_redacted_in_debug_output() {
        let verifier = ScramVerifier::from_password("pw");
        let keys = keys_from_a_password_login(&verifier, "pw");
        assert_eq!(format!("{keys:?}"), "ScramKeys(<redacted>)");
        assert_eq!(
            format!("{verifier:?}"),
            "ScramVerifier { iterations: 4096, .. }"
        );
    }
}
