//! A client connection from accept to authenticated: encryption
//! negotiation, the startup packet, cancel requests, authentication.
//!
//! It ends with an authenticated client and its transport, or with the
//! reason it did not get there. What the client does next (a pool, the
//! console) is `connection`'s business; nothing here knows a pool.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use pgvigil_config::ClientAuth;
use pgvigil_wire::backend;
use pgvigil_wire::frontend::{self, tag as fe};
use pgvigil_wire::startup::{self, InitialPacket, StartupParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::ids::ClientKey;
use crate::negotiation::{Negotiation, Step};
use crate::scram::{
    mock_secret, ScramExchange, ScramKeys, ScramVerifier, StoredPassword, MD5_CANNOT_DO_SCRAM,
};
use crate::transport::Transport;
use crate::Shared;

/// Authentication messages are small.
const MAX_AUTH_FRAME: usize = 64 * 1024;

/// A configured user, with its SCRAM secret computed once.
pub(crate) struct Account {
    /// What the configuration holds: plaintext, md5 hash or SCRAM secret.
    pub(crate) stored: Option<StoredPassword>,
    pub(crate) scram: Option<crate::scram::ScramVerifier>,
}

impl Account {
    /// From a password in any form `StoredPassword` accepts: a configured
    /// one, or one auth_query returned.
    pub(crate) fn from_password(password: Option<&str>) -> Account {
        let stored = password.map(StoredPassword::parse);
        Account {
            // A SCRAM secret checks clients as it is; an md5 hash cannot,
            // and leaves the user without SCRAM.
            scram: stored.as_ref().and_then(|s| s.scram_verifier().ok()),
            stored,
        }
    }
}

/// Where an authenticated client is headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    Pool,
    /// The admin console; stats users may only SHOW.
    Console {
        admin: bool,
    },
}

/// A client past authentication, not yet told AuthenticationOk.
pub(crate) struct Authenticated {
    pub(crate) transport: Transport,
    /// Bytes the client sent after its last login message.
    pub(crate) buf: BytesMut,
    pub(crate) params: StartupParams,
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) destination: Destination,
    /// Keys a SCRAM login revealed: the pool may log in to PostgreSQL
    /// with them when only the user's SCRAM secret is configured.
    pub(crate) scram_keys: Option<ScramKeys>,
}

/// The encryption a client negotiated.
#[derive(Clone, Default)]
pub(crate) struct ClientEncryption {
    /// `tls-server-end-point` data of the certificate this client saw,
    /// for SCRAM-SHA-256-PLUS; None without TLS (or when the
    /// certificate's signature names no usable hash).
    pub(crate) channel_binding: Option<crate::tls::ChannelBindingHash>,
}

impl Authenticated {
    pub(crate) fn application_name(&self) -> &str {
        self.params.get("application_name").unwrap_or("")
    }
}

pub(crate) enum Outcome {
    Authenticated(Box<Authenticated>),
    /// A cancel request was passed on, or the client left (or never said
    /// anything before `client_login_timeout`).
    Done,
    /// Login failed; the client is told why on the transport, if any.
    Failed(Option<Transport>, ProxyError),
    /// `client_login_timeout` passed: before the startup packet (nothing
    /// to tell a client that has said nothing) or after it.
    TimedOut(Option<Transport>),
}

/// Runs the handshake until `deadline` (`client_login_timeout`).
pub(crate) async fn run(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Outcome {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let negotiated =
        tokio::time::timeout_at(deadline, negotiate(shared, Transport::Tcp(tcp), &mut buf)).await;
    let (mut transport, params, encryption) = match negotiated {
        Err(_) => return Outcome::TimedOut(None),
        Ok(Negotiated::Startup(transport, params, encryption)) => (transport, params, encryption),
        Ok(Negotiated::Done) => return Outcome::Done,
        Ok(Negotiated::Failed(transport, e)) => return Outcome::Failed(transport, e),
    };
    let authenticated = tokio::time::timeout_at(
        deadline,
        authenticate_client(shared, &mut transport, &mut buf, peer, &params, &encryption),
    )
    .await;
    match authenticated {
        Err(_) => Outcome::TimedOut(Some(transport)),
        Ok(Err(ProxyError::ClientIo(_))) => Outcome::Done,
        Ok(Err(e)) => Outcome::Failed(Some(transport), e),
        Ok(Ok((user, database, destination, scram_keys))) => {
            Outcome::Authenticated(Box::new(Authenticated {
                transport,
                buf,
                params,
                user,
                database,
                destination,
                scram_keys,
            }))
        }
    }
}

/// How the pre-login exchange ended.
pub(crate) enum Negotiated {
    Startup(Transport, StartupParams, ClientEncryption),
    Done,
    Failed(Option<Transport>, ProxyError),
}

/// Reads initial packets until a StartupMessage: SSL and GSS encryption
/// requests are answered (and TLS set up), cancel requests passed on.
pub(crate) async fn negotiate(
    shared: &Shared,
    transport: Transport,
    buf: &mut BytesMut,
) -> Negotiated {
    let mut transport = transport;
    let mut encryption = ClientEncryption::default();
    // One snapshot for the whole exchange: a RELOAD meanwhile does not
    // change the certificate half-way.
    let tls = shared.client_tls.current();
    let mut rules = Negotiation::new(tls.is_some(), shared.client_tls.mode().requires_tls());
    // PostgreSQL 17's direct TLS (`sslnegotiation=direct`): the connection
    // opens with a TLS handshake record instead of a packet length.
    if let (Transport::Tcp(tcp), Some((config, binding))) = (&transport, &tls) {
        let mut first = [0u8; 1];
        if rules.accepts_direct_tls()
            && matches!(tcp.peek(&mut first).await, Ok(1))
            && first[0] == TLS_HANDSHAKE_RECORD
        {
            let Transport::Tcp(tcp) = transport else {
                return Negotiated::Done;
            };
            match accept_tls(tcp, config.clone()).await {
                Ok(tls) => {
                    if tls.get_ref().1.alpn_protocol() != Some(crate::tls::ALPN_POSTGRESQL) {
                        return Negotiated::Failed(
                            Some(Transport::TlsIn(Box::new(tls))),
                            ProxyError::client(
                                "08P01",
                                "received direct SSL connection request without ALPN protocol negotiation extension",
                            ),
                        );
                    }
                    transport = Transport::TlsIn(Box::new(tls));
                    rules.tls_started();
                    encryption.channel_binding = usable(binding.clone());
                }
                Err(e) => return tls_failed(e),
            }
        }
    }
    let mut first_packet = true;
    loop {
        let packet = match read_initial_packet(&mut transport, buf, first_packet).await {
            Ok(p) => p,
            Err(ProxyError::ClientIo(_)) => return Negotiated::Done,
            Err(e) => return Negotiated::Failed(Some(transport), e),
        };
        first_packet = false;
        match rules.on_packet(&packet) {
            Step::Decline => {
                if let Err(e) = transport.write_all(b"N").await {
                    return Negotiated::Failed(None, ProxyError::ClientIo(e));
                }
            }
            Step::StartTls => {
                let Some((config, binding)) = &tls else {
                    return Negotiated::Done;
                };
                if let Err(e) = transport.write_all(b"S").await {
                    return Negotiated::Failed(None, ProxyError::ClientIo(e));
                }
                // Bytes sent before the TLS handshake were not encrypted:
                // someone in the middle may have put them there.
                if !buf.is_empty() {
                    return Negotiated::Failed(
                        None,
                        ProxyError::client("08P01", "received unencrypted data after SSL request"),
                    );
                }
                let Transport::Tcp(tcp) = transport else {
                    return Negotiated::Done;
                };
                match accept_tls(tcp, config.clone()).await {
                    Ok(tls) => transport = Transport::TlsIn(Box::new(tls)),
                    Err(e) => return tls_failed(e),
                }
                rules.tls_started();
                encryption.channel_binding = usable(binding.clone());
            }
            Step::Cancel {
                process_id,
                secret_key,
            } => {
                shared
                    .cancel
                    .cancel(ClientKey {
                        process_id,
                        secret_key,
                    })
                    .await;
                return Negotiated::Done;
            }
            Step::Refuse { code, message } => {
                return Negotiated::Failed(Some(transport), ProxyError::client(code, message));
            }
            Step::Startup { negotiate_version } => {
                let InitialPacket::Startup(params) = packet else {
                    return Negotiated::Done;
                };
                // A newer minor version or `_pq_` options: say what this
                // server speaks (3.0, none of the options) and go on, as
                // PostgreSQL does.
                if negotiate_version {
                    let options: Vec<&str> =
                        params.protocol_options.iter().map(String::as_str).collect();
                    let reply = backend::negotiate_protocol_version(0, &options);
                    if let Err(e) = transport.write_all(&reply).await {
                        return Negotiated::Failed(None, ProxyError::ClientIo(e));
                    }
                }
                return Negotiated::Startup(transport, params, encryption);
            }
        }
    }
}

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn accept_tls(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
}

/// A failed TLS handshake: rustls has already sent the client its alert,
/// so only the log learns why (a client certificate from another CA,
/// no shared protocol version...).
fn tls_failed(e: std::io::Error) -> Negotiated {
    Negotiated::Failed(
        None,
        ProxyError::client("08P01", format!("TLS handshake failed: {e}")),
    )
}

fn usable(binding: crate::tls::ChannelBindingHash) -> Option<crate::tls::ChannelBindingHash> {
    (!binding.is_empty()).then_some(binding)
}

/// Checks who the client is and where it may go. Returns (user,
/// database, destination).
async fn authenticate_client(
    shared: &Shared,
    transport: &mut Transport,
    buf: &mut BytesMut,
    peer: SocketAddr,
    params: &StartupParams,
    encryption: &ClientEncryption,
) -> Result<(String, String, Destination, Option<ScramKeys>), ProxyError> {
    let user = params
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ProxyError::client(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_string();
    let database = params
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_string();
    if params
        .get("replication")
        .is_some_and(|r| r != "false" && r != "0")
    {
        return Err(ProxyError::client(
            "08P01",
            "replication connections are not supported through pgvigil",
        ));
    }
    if shared.is_console_database(&database) {
        let admin = console_login(shared, transport, buf, peer, &user, encryption).await?;
        return Ok((user, database, Destination::Console { admin }, None));
    }
    if !shared.config.databases.contains_key(&database) {
        return Err(ProxyError::client(
            "3D000",
            format!("database \"{database}\" does not exist (not configured in pgvigil)"),
        ));
    }
    let access = shared.access();
    let method = shared.config.client_auth;
    let Some(account) = access.users.get(&user) else {
        // Not configured: auth_query may know the user. It is checked
        // exactly as a configured user would be, and gets a pool of its own.
        if let Some(found) = crate::auth_query::lookup(shared, &database, &user).await? {
            let keys =
                authenticate(method, transport, buf, &user, &found.account, encryption).await?;
            crate::auth_query::dynamic_pool(shared, &database, &user, &found, keys.as_ref())?;
            return Ok((user, database, Destination::Pool, keys));
        }
        if method == ClientAuth::Trust {
            return Err(ProxyError::client(
                "28000",
                format!("role \"{user}\" does not exist (not configured in pgvigil)"),
            ));
        }
        // As PostgreSQL: an unknown user goes through the whole password
        // exchange and fails exactly like a wrong password, so trying
        // names tells nothing about which exist.
        let mock = Account {
            stored: None,
            scram: Some(ScramVerifier::mock(&user, mock_secret())),
        };
        authenticate(method, transport, buf, &user, &mock, encryption).await?;
        return Err(password_failed(&user));
    };
    let keys = authenticate(method, transport, buf, &user, account, encryption).await?;
    Ok((user, database, Destination::Pool, keys))
}

/// Admits admin and stats users to the console. Their password is their
/// `[users]` password, else the admin token; `trust` is honoured only for
/// connections from this host, so a console reachable from elsewhere
/// always asks for one. Returns whether the user is an admin.
async fn console_login(
    shared: &Shared,
    transport: &mut Transport,
    buf: &mut BytesMut,
    peer: SocketAddr,
    user: &str,
    encryption: &ClientEncryption,
) -> Result<bool, ProxyError> {
    let access = shared.access();
    let admin = access.admin_users.contains(user);
    if !admin && !access.stats_users.contains(user) {
        return Err(ProxyError::client(
            "28000",
            format!("user \"{user}\" may not use the admin console: list it in admin_users or stats_users"),
        ));
    }
    let method = match shared.config.client_auth {
        ClientAuth::Trust if !peer.ip().is_loopback() => ClientAuth::ScramSha256,
        method => method,
    };
    let account: Option<&Arc<Account>> = access
        .users
        .get(user)
        .filter(|a| a.stored.is_some())
        .or(access.token.as_ref());
    match account {
        Some(account) => {
            authenticate(method, transport, buf, user, account, encryption).await?;
        }
        None if method == ClientAuth::Trust => {}
        None => {
            return Err(ProxyError::client(
                "28P01",
                format!("password authentication failed for user \"{user}\" (the console needs users.{user}.password or admin_token)"),
            ))
        }
    }
    Ok(admin)
}

fn password_failed(user: &str) -> ProxyError {
    ProxyError::client(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Runs the configured method; returns the SCRAM keys the client's proof
/// revealed, if any.
async fn authenticate(
    method: ClientAuth,
    transport: &mut Transport,
    buf: &mut BytesMut,
    user: &str,
    account: &Account,
    encryption: &ClientEncryption,
) -> Result<Option<ScramKeys>, ProxyError> {
    let failed = || password_failed(user);
    match method {
        ClientAuth::Trust => Ok(None),
        // A SCRAM secret cannot check an md5 response: PostgreSQL then
        // asks for SCRAM instead, and so does pgvigil.
        ClientAuth::Md5
            if account
                .stored
                .as_ref()
                .is_some_and(StoredPassword::can_check_md5) =>
        {
            let stored = account.stored.as_ref().ok_or_else(failed)?;
            let salt: [u8; 4] = rand::random();
            send(transport, &backend::auth_md5(salt)).await?;
            let frame = read_password_frame(transport, buf, "expected a password message").await?;
            let response = frontend::parse_password(&frame)?;
            if stored.md5_matches(user, salt, response) {
                Ok(None)
            } else {
                Err(failed())
            }
        }
        ClientAuth::Md5 | ClientAuth::ScramSha256 => {
            let Some(verifier) = account.scram.as_ref() else {
                tracing::debug!(user, "{MD5_CANNOT_DO_SCRAM}");
                return Err(failed());
            };
            // Over TLS, SCRAM-SHA-256-PLUS binds the exchange to the
            // certificate this client saw: a man in the middle with
            // another certificate cannot relay it.
            let binding = encryption.channel_binding.as_deref();
            let mechanisms: &[&str] = if binding.is_some() {
                &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
            } else {
                &["SCRAM-SHA-256"]
            };
            send(transport, &backend::auth_sasl(mechanisms)).await?;
            let frame =
                read_password_frame(transport, buf, "expected a SASL initial response").await?;
            let (mechanism, data) = frontend::parse_sasl_initial_response(&frame)?;
            let plus = match mechanism {
                b"SCRAM-SHA-256" => false,
                b"SCRAM-SHA-256-PLUS" if binding.is_some() => true,
                _ => {
                    return Err(ProxyError::client(
                        "28000",
                        "unsupported SASL mechanism: pgvigil offers SCRAM-SHA-256",
                    ))
                }
            };
            let nonce: [u8; 18] = rand::random();
            let (exchange, server_first) =
                ScramExchange::start_bound(verifier, data, &nonce, binding, plus)
                    .map_err(|_| failed())?;
            send(
                transport,
                &backend::auth_sasl_continue(server_first.as_bytes()),
            )
            .await?;
            let frame = read_password_frame(transport, buf, "expected a SASL response").await?;
            let (server_final, keys) = exchange
                .finish_with_keys(frontend::sasl_response_data(&frame))
                .map_err(|_| failed())?;
            send(
                transport,
                &backend::auth_sasl_final(server_final.as_bytes()),
            )
            .await?;
            Ok(Some(keys))
        }
    }
}

async fn send(transport: &mut Transport, bytes: &[u8]) -> Result<(), ProxyError> {
    transport
        .write_all(bytes)
        .await
        .map_err(ProxyError::ClientIo)?;
    transport.flush().await.map_err(ProxyError::ClientIo)
}

/// Reads the connection's next initial packet. PostgreSQL answers a
/// first packet whose length cannot be a startup packet, or a cancel
/// request of the wrong size, by logging it and closing without a word
/// (the peer may not speak the protocol at all, and a client that sends
/// Terminate right after connecting must not meet an unexpected
/// message); after an encryption request was declined it sends a
/// protocol error. pgvigil does the same (`first`: nothing was
/// negotiated yet).
pub(crate) async fn read_initial_packet(
    transport: &mut Transport,
    buf: &mut BytesMut,
    first: bool,
) -> Result<InitialPacket, ProxyError> {
    let silent = |what: &str| {
        tracing::info!("{what}: connection closed");
        ProxyError::ClientIo(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            what.to_string(),
        ))
    };
    loop {
        let len = match startup::initial_packet_len(buf) {
            Ok(len) => len,
            Err(_) if first => return Err(silent("invalid length of startup packet")),
            Err(e) => return Err(e.into()),
        };
        if let Some(len) = len {
            if buf.len() >= len {
                let packet = buf.split_to(len);
                if packet.get(4..8) == Some(&startup::CANCEL_REQUEST_CODE.to_be_bytes()[..])
                    && len != startup::CANCEL_REQUEST_LEN
                    && first
                {
                    return Err(silent("invalid length of query cancel packet"));
                }
                return Ok(startup::parse_initial_packet(&packet)?);
            }
        }
        if transport
            .read_buf(buf)
            .await
            .map_err(ProxyError::ClientIo)?
            == 0
        {
            return Err(ProxyError::ClientIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}

/// Reads one authentication message, which must be a PasswordMessage
/// ('p', also carrying SASL data).
async fn read_password_frame(
    transport: &mut Transport,
    buf: &mut BytesMut,
    expected: &'static str,
) -> Result<BytesMut, ProxyError> {
    let Some(frame) = transport.read_client_frame(buf, MAX_AUTH_FRAME).await? else {
        return Err(ProxyError::ClientIo(
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    };
    if frame[0] != fe::PASSWORD {
        return Err(ProxyError::client("08P01", expected));
    }
    Ok(frame)
}
