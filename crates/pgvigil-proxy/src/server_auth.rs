//! What pgvigil may prove itself to PostgreSQL with, and which of
//! PostgreSQL's authentication requests it is willing to answer
//! (`server_require_auth`, libpq's `require_auth`). Socket-free; the
//! login conversation is `ServerConn::login`.

use crate::scram::{ScramKeys, ScramVerifier, StoredPassword};

/// A pool's credential for logging in to PostgreSQL.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// No password configured: only trust (AuthenticationOk) can work.
    #[default]
    None,
    Plain(String),
    /// md5(password || user): answers md5 challenges, nothing else.
    Md5Hash([u8; 16]),
    /// A SCRAM secret alone cannot log in; it waits for a client's SCRAM
    /// login to reveal the ClientKey (see `ServerPool::offer_scram_keys`).
    ScramSecret(ScramVerifier),
    ScramKeys(ScramKeys),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "None",
            Credential::Plain(_) => "Plain(<redacted>)",
            Credential::Md5Hash(_) => "Md5Hash(<redacted>)",
            Credential::ScramSecret(_) => "ScramSecret(<redacted>)",
            Credential::ScramKeys(_) => "ScramKeys(<redacted>)",
        })
    }
}

impl Credential {
    /// From a user's configured `password`, in any form `StoredPassword`
    /// accepts.
    pub fn from_config(password: Option<&str>) -> Credential {
        match password.map(StoredPassword::parse) {
            None => Credential::None,
            Some(StoredPassword::Plain(p)) => Credential::Plain(p),
            Some(StoredPassword::Md5(h)) => Credential::Md5Hash(h),
            Some(StoredPassword::Scram(v)) => Credential::ScramSecret(v),
        }
    }
}

/// An authentication method PostgreSQL may ask for, named as in libpq's
/// `require_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// AuthenticationOk with no challenge (trust, peer...).
    None,
    /// Cleartext password.
    Password,
    Md5,
    ScramSha256,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }

    fn from_name(name: &str) -> Option<AuthMethod> {
        [
            AuthMethod::None,
            AuthMethod::Password,
            AuthMethod::Md5,
            AuthMethod::ScramSha256,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// Which authentication requests pgvigil answers when logging in to
/// PostgreSQL. A cleartext password over plain TCP is readable by anyone
/// on the path, and an md5 response can be replayed against the same salt
/// or brute-forced offline; SCRAM reveals nothing. So by default only
/// SCRAM is answered unless the leg is TLS, where all are.
///
/// AuthenticationOk without a challenge is allowed by default although
/// the default is "SCRAM only": a server that lets pgvigil in without
/// asking learns no secret, so refusing would only break trust setups.
/// An explicit list refuses it unless it names `none`, as libpq does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequireAuth {
    /// None: the default policy above. Some: exactly these methods, on
    /// any leg (the operator chose).
    explicit: Option<Vec<AuthMethod>>,
}

impl RequireAuth {
    /// Exactly `methods`, TLS or not.
    pub fn only(methods: &[AuthMethod]) -> RequireAuth {
        RequireAuth {
            explicit: Some(methods.to_vec()),
        }
    }

    /// libpq's syntax: `scram-sha-256,md5` allows those, `!password,!md5`
    /// allows all but those (no mixing). `gss` and `sspi` are accepted
    /// for compatibility; pgvigil cannot do them anyway. An empty string
    /// is the default policy.
    pub fn parse(list: &str) -> Result<RequireAuth, String> {
        let list = list.trim();
        if list.is_empty() {
            return Ok(RequireAuth::default());
        }
        let mut named = Vec::new();
        let mut negated = None;
        for word in list.split(',').map(str::trim) {
            let (neg, name) = match word.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, word),
            };
            if *negated.get_or_insert(neg) != neg {
                return Err(format!(
                    "negative and positive methods cannot be mixed in \"{list}\""
                ));
            }
            match AuthMethod::from_name(name) {
                Some(m) => named.push(m),
                None if matches!(name, "gss" | "sspi") => {}
                None => return Err(format!("unknown authentication method \"{name}\"")),
            }
        }
        let methods = if negated == Some(true) {
            [
                AuthMethod::None,
                AuthMethod::Password,
                AuthMethod::Md5,
                AuthMethod::ScramSha256,
            ]
            .into_iter()
            .filter(|m| !named.contains(m))
            .collect()
        } else {
            named
        };
        Ok(RequireAuth {
            explicit: Some(methods),
        })
    }

    pub fn allows(&self, method: AuthMethod, leg_is_tls: bool) -> bool {
        match &self.explicit {
            Some(methods) => methods.contains(&method),
            None => match method {
                AuthMethod::None | AuthMethod::ScramSha256 => true,
                AuthMethod::Password | AuthMethod::Md5 => leg_is_tls,
            },
        }
    }

    /// For messages: what the policy allows on this leg.
    pub fn describe(&self, leg_is_tls: bool) -> String {
        match &self.explicit {
            None if leg_is_tls => "default: any method over TLS".to_string(),
            None => "default: scram-sha-256 only without TLS".to_string(),
            Some(m) if m.is_empty() => "no method".to_string(),
            Some(m) => m.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [AuthMethod; 4] = [
        AuthMethod::None,
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::ScramSha256,
    ];

    fn allowed(policy: &RequireAuth, tls: bool) -> Vec<&'static str> {
        ALL.iter()
            .filter(|m| policy.allows(**m, tls))
            .map(|m| m.name())
            .collect()
    }

    #[test]
    fn default_policy_sends_no_password_in_the_clear() {
        let policy = RequireAuth::default();
        assert_eq!(allowed(&policy, false), ["none", "scram-sha-256"]);
        assert_eq!(
            allowed(&policy, true),
            ["none", "password", "md5", "scram-sha-256"]
        );
    }

    #[test]
    fn an_explicit_list_applies_on_any_leg_and_excludes_unlisted_none() {
        let policy = RequireAuth::parse("scram-sha-256, md5").unwrap();
        for tls in [false, true] {
            assert_eq!(allowed(&policy, tls), ["md5", "scram-sha-256"]);
        }
        let policy = RequireAuth::only(&[AuthMethod::Password]);
        assert_eq!(allowed(&policy, false), ["password"]);
    }

    #[test]
    fn negated_lists_allow_everything_else() {
        let policy = RequireAuth::parse("!password,!none").unwrap();
        assert_eq!(allowed(&policy, false), ["md5", "scram-sha-256"]);
        assert_eq!(
            RequireAuth::parse("!gss").map(|p| allowed(&p, false).len()),
            Ok(4)
        );
    }

    #[test]
    fn malformed_lists_are_errors_not_silently_permissive() {
        assert!(RequireAuth::parse("scram-sha-256,!md5").is_err());
        assert!(RequireAuth::parse("scram").is_err());
        assert_eq!(RequireAuth::parse(" "), Ok(RequireAuth::default()));
    }

    #[test]
    fn credential_follows_the_configured_form_and_hides_it() {
        let secret = postgres_protocol::password::scram_sha_256(b"pw");
        let md5 = postgres_protocol::password::md5(b"pw", "app");
        assert_eq!(Credential::from_config(None), Credential::None);
        assert_eq!(
            Credential::from_config(Some("pw")),
            Credential::Plain("pw".into())
        );
        assert!(matches!(
            Credential::from_config(Some(&md5)),
            Credential::Md5Hash(_)
        ));
        assert!(matches!(
            Credential::from_config(Some(&secret)),
            Credential::ScramSecret(_)
        ));
        for text in ["pw", md5.as_str(), secret.as_str()] {
            let shown = format!("{:?}", Credential::from_config(Some(text)));
            assert!(shown.ends_with("(<redacted>)"), "{shown}");
        }
    }
}

/// `ServerConn`'s login against a stand-in PostgreSQL on loopback that
/// asks for one method and records what it was sent: the cases a real
/// cluster cannot be configured for without TLS or a config setting.
#[cfg(test)]
mod login_tests {
    use super::*;
    use crate::scram::{md5_password_hash, ScramExchange};
    use crate::server::{ServerConn, ServerTarget};
    use bytes::Bytes;
    use pgvigil_wire::backend::{self, Severity, TransactionStatus};
    use pgvigil_wire::frontend;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    enum Ask {
        Trust,
        Cleartext,
        Md5,
        Scram {
            secret: ScramVerifier,
            skip_final: bool,
        },
    }

    const PASSWORD: &str = "pw-Zq9";

    /// Frames after the startup packet; None at end of stream.
    async fn read_frame(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut frame = head.to_vec();
        frame.resize(1 + len, 0);
        s.read_exact(&mut frame[5..]).await.ok()?;
        Some(frame)
    }

    /// Serves one login; returns every frame the client sent after its
    /// StartupMessage.
    async fn serve(
        mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        ask: Ask,
    ) -> Vec<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut startup).await.unwrap();
        let mut seen = Vec::new();
        let ok = match ask {
            Ask::Trust => true,
            Ask::Cleartext => {
                s.write_all(&backend::auth_cleartext()).await.unwrap();
                let Some(f) = read_frame(&mut s).await else {
                    return seen;
                };
                let ok = frontend::parse_password(&f).unwrap() == PASSWORD.as_bytes();
                seen.push(f);
                ok
            }
            Ask::Md5 => {
                let salt = [1, 2, 3, 4];
                s.write_all(&backend::auth_md5(salt)).await.unwrap();
                let Some(f) = read_frame(&mut s).await else {
                    return seen;
                };
                let expected =
                    postgres_protocol::authentication::md5_hash(b"app", PASSWORD.as_bytes(), salt);
                let ok = frontend::parse_password(&f).unwrap() == expected.as_bytes();
                seen.push(f);
                ok
            }
            Ask::Scram { secret, skip_final } => {
                s.write_all(&backend::auth_sasl(&["SCRAM-SHA-256"]))
                    .await
                    .unwrap();
                let Some(f) = read_frame(&mut s).await else {
                    return seen;
                };
                let (_, data) = frontend::parse_sasl_initial_response(&f).unwrap();
                let (exchange, first) = ScramExchange::start(&secret, data, b"srv").unwrap();
                seen.push(f.clone());
                s.write_all(&backend::auth_sasl_continue(first.as_bytes()))
                    .await
                    .unwrap();
                let Some(f) = read_frame(&mut s).await else {
                    return seen;
                };
                let outcome = exchange.finish(frontend::sasl_response_data(&f));
                seen.push(f.clone());
                match outcome {
                    Ok(last) if !skip_final => {
                        s.write_all(&backend::auth_sasl_final(last.as_bytes()))
                            .await
                            .unwrap();
                        true
                    }
                    Ok(_) => true,
                    Err(_) => false,
                }
            }
        };
        let reply: Vec<Bytes> = if ok {
            vec![
                backend::auth_ok(),
                backend::backend_key_data_message(1, 2),
                backend::ready_for_query(TransactionStatus::Idle),
            ]
        } else {
            vec![backend::error_response(
                Severity::Fatal,
                "28P01",
                "password authentication failed for user \"app\"",
            )]
        };
        for r in reply {
            let _ = s.write_all(&r).await;
        }
        // Until the client hangs up, so nothing it sends is missed.
        while let Some(f) = read_frame(&mut s).await {
            seen.push(f);
        }
        seen
    }

    /// Logs in with `credential` and `require_auth` to a server asking
    /// for `ask`; returns the outcome and what the server received.
    async fn login(
        ask: Ask,
        credential: Credential,
        require_auth: RequireAuth,
        tls: bool,
    ) -> (Result<(), String>, Vec<Vec<u8>>) {
        // A secure leg (TLS or a Unix socket) is a Unix socket here: the
        // policy treats both alike, and the stand-in needs no certificate.
        let dir = std::env::temp_dir().join(format!(
            "pgvigil-auth-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (host, port, server) = if tls {
            std::fs::create_dir_all(&dir).unwrap();
            let path = crate::transport::socket_path(dir.to_str().unwrap(), 5432);
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                serve(s, ask).await
            });
            (dir.to_str().unwrap().to_string(), 5432, server)
        } else {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                serve(s, ask).await
            });
            ("127.0.0.1".to_string(), port, server)
        };
        let target = ServerTarget {
            host: host.into(),
            port,
            dbname: "db".into(),
            user: "app".into(),
            credential,
            require_auth,
            tls: crate::tls::ServerTls::disabled(),
            connect_timeout: std::time::Duration::from_secs(5),
        };
        let outcome = match ServerConn::connect(&target, 10).await {
            Ok(conn) => {
                conn.terminate().await;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        let received = server.await.unwrap();
        // The stand-in's socket directory goes with the test.
        let _ = std::fs::remove_dir_all(&dir);
        (outcome, received)
    }

    fn contains(frames: &[Vec<u8>], needle: &[u8]) -> bool {
        frames
            .iter()
            .any(|f| f.windows(needle.len()).any(|w| w == needle))
    }

    fn plain() -> Credential {
        Credential::Plain(PASSWORD.into())
    }

    /// Keys for `secret` as a client logging in with the password reveals them.
    fn keys_for(secret: &ScramVerifier) -> ScramKeys {
        let mut client = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        let (exchange, first) = ScramExchange::start(secret, client.message(), b"n").unwrap();
        client.update(first.as_bytes()).unwrap();
        exchange.finish_with_keys(client.message()).unwrap().1
    }

    #[tokio::test]
    async fn cleartext_request_without_tls_is_refused_before_sending_anything() {
        let (outcome, seen) = login(Ask::Cleartext, plain(), RequireAuth::default(), false).await;
        let message = outcome.unwrap_err();
        assert!(message.contains("server_require_auth"), "{message}");
        assert!(message.contains("password"), "{message}");
        assert!(!message.contains(PASSWORD));
        assert!(
            seen.iter().all(|f| f[0] != b'p'),
            "a password message was sent"
        );
    }

    #[tokio::test]
    async fn cleartext_request_over_tls_is_answered() {
        let (outcome, seen) = login(Ask::Cleartext, plain(), RequireAuth::default(), true).await;
        assert_eq!(outcome, Ok(()));
        assert!(contains(&seen, PASSWORD.as_bytes()));
    }

    #[tokio::test]
    async fn md5_request_without_tls_is_refused_before_sending_anything() {
        let hash = Credential::Md5Hash(md5_password_hash("app", PASSWORD));
        let (outcome, seen) = login(Ask::Md5, hash, RequireAuth::default(), false).await;
        assert!(outcome.unwrap_err().contains("md5"));
        assert!(seen.iter().all(|f| f[0] != b'p'));
    }

    #[tokio::test]
    async fn md5_request_is_answered_from_the_stored_hash_alone() {
        let hash = Credential::Md5Hash(md5_password_hash("app", PASSWORD));
        let (outcome, _) = login(Ask::Md5, hash, RequireAuth::default(), true).await;
        assert_eq!(outcome, Ok(()));
        let only_md5 = RequireAuth::parse("md5").unwrap();
        let (outcome, _) = login(Ask::Md5, plain(), only_md5, false).await;
        assert_eq!(outcome, Ok(()));
    }

    #[tokio::test]
    async fn scram_with_keys_recovered_from_a_client_logs_in_without_the_password() {
        let secret = ScramVerifier::from_password(PASSWORD);
        let keys = keys_for(&secret);
        let ask = Ask::Scram {
            secret,
            skip_final: false,
        };
        let (outcome, seen) = login(
            ask,
            Credential::ScramKeys(keys),
            RequireAuth::default(),
            false,
        )
        .await;
        assert_eq!(outcome, Ok(()));
        assert!(!contains(&seen, PASSWORD.as_bytes()));
    }

    #[tokio::test]
    async fn scram_keys_for_another_secret_fail_with_a_clear_error() {
        let keys = keys_for(&ScramVerifier::from_password(PASSWORD));
        let ask = Ask::Scram {
            secret: ScramVerifier::from_password(PASSWORD),
            skip_final: false,
        };
        let (outcome, seen) = login(
            ask,
            Credential::ScramKeys(keys),
            RequireAuth::default(),
            false,
        )
        .await;
        let message = outcome.unwrap_err();
        assert!(
            message.contains(
                "the SCRAM secret for user \"app\" does not match the server's (salt/iterations differ)"
            ),
            "{message}"
        );
        // Only the client-first message, which carries no proof.
        assert_eq!(seen.iter().filter(|f| f[0] == b'p').count(), 1);
    }

    #[tokio::test]
    async fn a_scram_secret_alone_cannot_log_in() {
        let secret = ScramVerifier::from_password(PASSWORD);
        let ask = Ask::Scram {
            secret: secret.clone(),
            skip_final: false,
        };
        let (outcome, _) = login(
            ask,
            Credential::ScramSecret(secret),
            RequireAuth::default(),
            false,
        )
        .await;
        assert!(outcome.unwrap_err().contains("only a SCRAM secret"));
    }

    #[tokio::test]
    async fn scram_with_a_password_still_logs_in() {
        let ask = Ask::Scram {
            secret: ScramVerifier::from_password(PASSWORD),
            skip_final: false,
        };
        let (outcome, _) = login(ask, plain(), RequireAuth::default(), false).await;
        assert_eq!(outcome, Ok(()));
    }

    #[tokio::test]
    async fn a_server_that_skips_the_scram_signature_is_refused() {
        let ask = Ask::Scram {
            secret: ScramVerifier::from_password(PASSWORD),
            skip_final: true,
        };
        let (outcome, _) = login(ask, plain(), RequireAuth::default(), false).await;
        assert!(outcome.unwrap_err().contains("without proving"));
    }

    #[tokio::test]
    async fn trust_is_allowed_by_default_and_refused_when_the_list_omits_none() {
        let (outcome, _) = login(Ask::Trust, plain(), RequireAuth::default(), false).await;
        assert_eq!(outcome, Ok(()));
        let scram_only = RequireAuth::parse("scram-sha-256").unwrap();
        let (outcome, _) = login(Ask::Trust, plain(), scram_only, false).await;
        assert!(outcome.unwrap_err().contains("without authentication"));
    }
}
