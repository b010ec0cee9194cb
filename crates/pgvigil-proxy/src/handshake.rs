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
use pgvigil_wire::FrameHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::ids::ClientKey;
use crate::scram::{md5_matches, ScramExchange};
use crate::transport::Transport;
use crate::Shared;

/// Authentication messages are small.
const MAX_AUTH_FRAME: usize = 64 * 1024;

/// A configured user, with its SCRAM secret computed once.
pub(crate) struct Account {
    pub(crate) password: Option<String>,
    pub(crate) scram: Option<crate::scram::ScramVerifier>,
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
    /// `client_login_timeout` passed after the startup packet.
    TimedOut(Transport),
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
    let (mut transport, params) = match negotiated {
        Err(_) => return Outcome::Done,
        Ok(Negotiated::Startup(transport, params)) => (transport, params),
        Ok(Negotiated::Done) => return Outcome::Done,
        Ok(Negotiated::Failed(transport, e)) => return Outcome::Failed(transport, e),
    };
    let authenticated = tokio::time::timeout_at(
        deadline,
        authenticate_client(shared, &mut transport, &mut buf, peer, &params),
    )
    .await;
    match authenticated {
        Err(_) => Outcome::TimedOut(transport),
        Ok(Err(ProxyError::ClientIo(_))) => Outcome::Done,
        Ok(Err(e)) => Outcome::Failed(Some(transport), e),
        Ok(Ok((user, database, destination))) => Outcome::Authenticated(Box::new(Authenticated {
            transport,
            buf,
            params,
            user,
            database,
            destination,
        })),
    }
}

/// How the pre-login exchange ended.
pub(crate) enum Negotiated {
    Startup(Transport, StartupParams),
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
    loop {
        let packet = match read_initial_packet(&mut transport, buf).await {
            Ok(p) => p,
            Err(ProxyError::ClientIo(_)) => return Negotiated::Done,
            Err(e) => return Negotiated::Failed(Some(transport), e),
        };
        match packet {
            // Encryption is offered only once, before the startup packet,
            // and never inside TLS.
            InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                if let Err(e) = transport.write_all(b"N").await {
                    return Negotiated::Failed(None, ProxyError::ClientIo(e));
                }
            }
            InitialPacket::Cancel {
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
            InitialPacket::UnsupportedVersion(v) => {
                return Negotiated::Failed(
                    Some(transport),
                    ProxyError::client(
                        "0A000",
                        format!(
                            "unsupported frontend protocol {}.{}: pgvigil supports 3.0",
                            v >> 16,
                            v & 0xffff
                        ),
                    ),
                );
            }
            InitialPacket::Startup(params) => return Negotiated::Startup(transport, params),
        }
    }
}

/// Checks who the client is and where it may go. Returns (user,
/// database, destination).
async fn authenticate_client(
    shared: &Shared,
    transport: &mut Transport,
    buf: &mut BytesMut,
    peer: SocketAddr,
    params: &StartupParams,
) -> Result<(String, String, Destination), ProxyError> {
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
        let admin = console_login(shared, transport, buf, peer, &user).await?;
        return Ok((user, database, Destination::Console { admin }));
    }
    if !shared.config.databases.contains_key(&database) {
        return Err(ProxyError::client(
            "3D000",
            format!("database \"{database}\" does not exist (not configured in pgvigil)"),
        ));
    }
    let access = shared.access();
    let Some(account) = access.users.get(&user) else {
        return Err(ProxyError::client(
            "28000",
            format!("role \"{user}\" does not exist (not configured in pgvigil)"),
        ));
    };
    authenticate(shared.config.client_auth, transport, buf, &user, account).await?;
    Ok((user, database, Destination::Pool))
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
        .filter(|a| a.password.is_some())
        .or(access.token.as_ref());
    match account {
        Some(account) => authenticate(method, transport, buf, user, account).await?,
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

async fn authenticate(
    method: ClientAuth,
    transport: &mut Transport,
    buf: &mut BytesMut,
    user: &str,
    account: &Account,
) -> Result<(), ProxyError> {
    let failed = || {
        ProxyError::client(
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        )
    };
    match method {
        ClientAuth::Trust => Ok(()),
        ClientAuth::Md5 => {
            let password = account.password.as_deref().ok_or_else(failed)?;
            let salt: [u8; 4] = rand::random();
            send(transport, &backend::auth_md5(salt)).await?;
            let frame = read_password_frame(transport, buf, "expected a password message").await?;
            let response = frontend::parse_password(&frame)?;
            if md5_matches(user, password, salt, response) {
                Ok(())
            } else {
                Err(failed())
            }
        }
        ClientAuth::ScramSha256 => {
            let verifier = account.scram.as_ref().ok_or_else(failed)?;
            send(transport, &backend::auth_sasl(&["SCRAM-SHA-256"])).await?;
            let frame =
                read_password_frame(transport, buf, "expected a SASL initial response").await?;
            let (mechanism, data) = frontend::parse_sasl_initial_response(&frame)?;
            if mechanism != b"SCRAM-SHA-256" {
                return Err(ProxyError::client(
                    "28000",
                    "unsupported SASL mechanism: pgvigil offers SCRAM-SHA-256",
                ));
            }
            let nonce: [u8; 18] = rand::random();
            let (exchange, server_first) =
                ScramExchange::start(verifier, data, &nonce).map_err(|_| failed())?;
            send(
                transport,
                &backend::auth_sasl_continue(server_first.as_bytes()),
            )
            .await?;
            let frame = read_password_frame(transport, buf, "expected a SASL response").await?;
            let server_final = exchange
                .finish(frontend::sasl_response_data(&frame))
                .map_err(|_| failed())?;
            send(
                transport,
                &backend::auth_sasl_final(server_final.as_bytes()),
            )
            .await
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

pub(crate) async fn read_initial_packet(
    transport: &mut Transport,
    buf: &mut BytesMut,
) -> Result<InitialPacket, ProxyError> {
    loop {
        if let Some(len) = startup::initial_packet_len(buf)? {
            if buf.len() >= len {
                let packet = buf.split_to(len);
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
    let frame = loop {
        if let Some(h) = FrameHeader::peek(buf, MAX_AUTH_FRAME)? {
            if buf.len() >= h.frame_len {
                break buf.split_to(h.frame_len);
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
    };
    if frame[0] != fe::PASSWORD {
        return Err(ProxyError::client("08P01", expected));
    }
    Ok(frame)
}
