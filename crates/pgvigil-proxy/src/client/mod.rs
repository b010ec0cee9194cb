//! A client connection from accept to goodbye: the startup handshake
//! (SSL/GSS negotiation, cancel requests, authentication) here, the
//! forwarding loop in `session`.

mod commands;
mod observe;
mod session;
mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgvigil_config::ClientAuth;
use pgvigil_wire::backend::{self, Severity, TransactionStatus};
use pgvigil_wire::frontend::{self, tag as fe};
use pgvigil_wire::startup::{self, InitialPacket, StartupParams};
use pgvigil_wire::FrameHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::ids::{ClientId, ClientKey};
use crate::registry::NewClient;
use crate::scram::{md5_matches, ScramExchange};
use crate::Shared;
pub(crate) use observe::LintJob;
use observe::Observer;
use session::{Exit, Session};
use settings::ClientSettings;

/// How long a client may take to log in, as PgBouncer's client_login_timeout.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Authentication messages are small.
const MAX_AUTH_FRAME: usize = 64 * 1024;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Serves one accepted client until it leaves.
pub(crate) async fn serve(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let id = ClientId(NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed));
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let login =
        tokio::time::timeout(LOGIN_TIMEOUT, login(&shared, &mut stream, &mut buf, peer)).await;
    let login = match login {
        Ok(Ok(Some(Entry::Pool(login)))) => login,
        Ok(Ok(Some(Entry::Console(console)))) => {
            let registration = shared.registry.add_client(NewClient {
                id,
                database: console.database.clone(),
                user: console.user.clone(),
                addr: peer,
                local_addr: stream.local_addr().ok(),
                application_name: console.application_name.clone(),
                console: true,
            });
            crate::console::serve(shared.clone(), stream, buf, console).await;
            drop(registration);
            return;
        }
        Ok(Ok(None)) => return, // a cancel request, or the client left
        Ok(Err(e)) => {
            tracing::info!(client = %id, %peer, "login failed: {e}");
            let _ = stream
                .write_all(&backend::error_response(
                    Severity::Fatal,
                    e.sqlstate(),
                    &e.to_string(),
                ))
                .await;
            return;
        }
        Err(_) => {
            let _ = stream
                .write_all(&backend::error_response(
                    Severity::Fatal,
                    "08P01",
                    "login timed out",
                ))
                .await;
            return;
        }
    };
    let Login {
        pool,
        settings,
        told,
        key,
        cancel,
    } = login;
    tracing::debug!(client = %id, %peer, database = %pool.database, user = %pool.user, "client logged in");
    let registration = shared.registry.add_client(NewClient {
        id,
        database: pool.database.clone(),
        user: pool.user.clone(),
        addr: peer,
        local_addr: stream.local_addr().ok(),
        application_name: settings.get("application_name").unwrap_or("").to_string(),
        console: false,
    });
    let clients = pool.clone();
    let clients = &clients.counters.clients;
    clients.fetch_add(1, Ordering::Relaxed);
    let observer = match (&shared.insight, &shared.lint) {
        (Some(insight), Some(lint)) => Some(Observer::new(
            insight.clone(),
            lint.clone(),
            &pool.database,
            &pool.user,
            settings.get("application_name").unwrap_or(""),
            peer.ip().to_string(),
        )),
        _ => None,
    };
    let session = Session::new(
        id,
        stream,
        buf,
        pool,
        settings,
        told,
        cancel,
        shared.config.max_packet_size,
        observer,
        registration.entry.clone(),
    );
    let exit = session.run().await;
    clients.fetch_sub(1, Ordering::Relaxed);
    drop(registration);
    shared.cancel.unregister(key);
    match exit {
        Exit::ClientLeft => tracing::debug!(client = %id, "client left"),
        Exit::Error(e) => tracing::info!(client = %id, %peer, "session ended: {e}"),
    }
}

/// Rejects a client over `max_client_conn` the way PostgreSQL rejects one
/// over `max_connections`: after its startup packet, with 53300.
pub(crate) async fn reject_too_many(mut stream: TcpStream, limit: usize) {
    let mut buf = BytesMut::with_capacity(512);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read_initial_packet(&mut stream, &mut buf).await? {
                InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                    stream.write_all(b"N").await.map_err(ProxyError::ClientIo)?;
                }
                _ => return Ok::<(), ProxyError>(()),
            }
        }
    })
    .await;
    if let Ok(Ok(())) = read {
        let message =
            format!("no more connections allowed (max_client_conn = {limit}): pgvigil is at its client limit");
        let _ = stream
            .write_all(&backend::error_response(Severity::Fatal, "53300", &message))
            .await;
    }
}

/// Where a logged-in client goes: a pool, or the admin console.
enum Entry {
    Pool(Login),
    Console(ConsoleLogin),
}

/// A console user past authentication.
pub(crate) struct ConsoleLogin {
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) application_name: String,
    /// Stats users may only SHOW.
    pub(crate) admin: bool,
}

struct Login {
    pool: Arc<crate::pool::ServerPool>,
    settings: ClientSettings,
    told: HashMap<String, String>,
    key: ClientKey,
    cancel: Arc<crate::cancel::CancelTarget>,
}

async fn read_initial_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<InitialPacket, ProxyError> {
    loop {
        if let Some(len) = startup::initial_packet_len(buf)? {
            if buf.len() >= len {
                let packet = buf.split_to(len);
                return Ok(startup::parse_initial_packet(&packet)?);
            }
        }
        if stream.read_buf(buf).await.map_err(ProxyError::ClientIo)? == 0 {
            return Err(ProxyError::ClientIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<BytesMut, ProxyError> {
    loop {
        if let Some(h) = FrameHeader::peek(buf, MAX_AUTH_FRAME)? {
            if buf.len() >= h.frame_len {
                return Ok(buf.split_to(h.frame_len));
            }
        }
        if stream.read_buf(buf).await.map_err(ProxyError::ClientIo)? == 0 {
            return Err(ProxyError::ClientIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}

/// Runs the startup handshake. Returns None when the connection was a
/// cancel request or ended before logging in.
async fn login(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
) -> Result<Option<Entry>, ProxyError> {
    let params: StartupParams = loop {
        let packet = match read_initial_packet(stream, buf).await {
            Ok(p) => p,
            Err(ProxyError::ClientIo(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match packet {
            // TLS and GSS encryption are not offered (yet): 'N' tells the
            // client to go on in the clear, or give up if it requires them.
            InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                stream.write_all(b"N").await.map_err(ProxyError::ClientIo)?;
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
                return Ok(None);
            }
            InitialPacket::UnsupportedVersion(v) => {
                return Err(ProxyError::client(
                    "0A000",
                    format!(
                        "unsupported frontend protocol {}.{}: pgvigil supports 3.0",
                        v >> 16,
                        v & 0xffff
                    ),
                ));
            }
            InitialPacket::Startup(params) => break params,
        }
    };

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
        let console = console_login(shared, stream, buf, peer, &user, &database).await?;
        return Ok(Some(Entry::Console(ConsoleLogin {
            application_name: params.get("application_name").unwrap_or("").to_string(),
            ..console
        })));
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
    authenticate(shared.config.client_auth, stream, buf, &user, account).await?;
    stream
        .write_all(&backend::auth_ok())
        .await
        .map_err(ProxyError::ClientIo)?;

    let pool = shared
        .pools
        .get(&(database.clone(), user.clone()))
        .cloned()
        .ok_or_else(|| {
            ProxyError::client("3D000", format!("no pool for database \"{database}\""))
        })?;
    let settings = ClientSettings::from_startup(&params);
    let welcome = pool.welcome_params().await?;
    let mut told = HashMap::new();
    let mut out = BytesMut::with_capacity(512);
    for (name, value) in welcome.iter() {
        // The client will see its own settings once they are applied on a
        // server; until then it is told what it asked for.
        let value = settings.get(name).unwrap_or(value);
        backend::write_parameter_status(&mut out, name.as_bytes(), value.as_bytes());
        told.insert(name.clone(), value.to_string());
    }
    let (key, cancel) = shared.cancel.register(pool.target());
    out.extend_from_slice(&backend::backend_key_data_message(
        key.process_id,
        key.secret_key,
    ));
    out.extend_from_slice(&backend::ready_for_query(TransactionStatus::Idle));
    if let Err(e) = stream.write_all(&out).await {
        shared.cancel.unregister(key);
        return Err(ProxyError::ClientIo(e));
    }
    Ok(Some(Entry::Pool(Login {
        pool,
        settings,
        told,
        key,
        cancel,
    })))
}

/// Admits admin and stats users to the console. Their password is their
/// `[users]` password, else the admin token; `trust` is honoured only for
/// connections from this host, so a console reachable from elsewhere
/// always asks for one.
async fn console_login(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    user: &str,
    database: &str,
) -> Result<ConsoleLogin, ProxyError> {
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
    let account = access
        .users
        .get(user)
        .filter(|a| a.password.is_some())
        .or(access.token.as_ref());
    match account {
        Some(account) => authenticate(method, stream, buf, user, account).await?,
        None if method == ClientAuth::Trust => {}
        None => {
            return Err(ProxyError::client(
                "28P01",
                format!("password authentication failed for user \"{user}\" (the console needs users.{user}.password or admin_token)"),
            ))
        }
    }
    Ok(ConsoleLogin {
        user: user.to_string(),
        database: database.to_string(),
        application_name: String::new(),
        admin,
    })
}

/// A configured user, with its SCRAM secret computed once.
pub(crate) struct Account {
    pub(crate) password: Option<String>,
    pub(crate) scram: Option<crate::scram::ScramVerifier>,
}

async fn authenticate(
    method: ClientAuth,
    stream: &mut TcpStream,
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
            stream
                .write_all(&backend::auth_md5(salt))
                .await
                .map_err(ProxyError::ClientIo)?;
            let frame = read_frame(stream, buf).await?;
            if frame[0] != fe::PASSWORD {
                return Err(ProxyError::client("08P01", "expected a password message"));
            }
            let response = frontend::parse_password(&frame)?;
            if md5_matches(user, password, salt, response) {
                Ok(())
            } else {
                Err(failed())
            }
        }
        ClientAuth::ScramSha256 => {
            let verifier = account.scram.as_ref().ok_or_else(failed)?;
            stream
                .write_all(&backend::auth_sasl(&["SCRAM-SHA-256"]))
                .await
                .map_err(ProxyError::ClientIo)?;
            let frame = read_frame(stream, buf).await?;
            if frame[0] != fe::PASSWORD {
                return Err(ProxyError::client(
                    "08P01",
                    "expected a SASL initial response",
                ));
            }
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
            stream
                .write_all(&backend::auth_sasl_continue(server_first.as_bytes()))
                .await
                .map_err(ProxyError::ClientIo)?;
            let frame = read_frame(stream, buf).await?;
            if frame[0] != fe::PASSWORD {
                return Err(ProxyError::client("08P01", "expected a SASL response"));
            }
            let server_final = exchange
                .finish(frontend::sasl_response_data(&frame))
                .map_err(|_| failed())?;
            stream
                .write_all(&backend::auth_sasl_final(server_final.as_bytes()))
                .await
                .map_err(ProxyError::ClientIo)
        }
    }
}
