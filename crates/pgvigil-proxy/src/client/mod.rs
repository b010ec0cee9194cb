//! A client logged in to a pool: it is welcomed (ParameterStatus,
//! BackendKeyData, ReadyForQuery), given a cancel key, and served by the
//! forwarding loop in `session` until it leaves.

mod commands;
mod guards;
mod observe;
mod reply_queue;
mod session;
mod session_state;
mod settings;
mod shared_list;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use pgvigil_wire::backend::{self, TransactionStatus};
use tokio::io::AsyncWriteExt;

use crate::error::ProxyError;
use crate::handshake::Authenticated;
use crate::ids::ClientId;
use crate::registry::NewClient;
use crate::Shared;
use pgvigil_config::PoolMode;
use session::{Exit, Session};
use settings::ClientSettings;
pub(crate) use shared_list::ListCache;

/// Why a transaction-mode client keeps its server connection, from its
/// registry entry's bits ("" when it does not).
pub(crate) fn pin_reasons(bits: u8) -> String {
    session_state::PinReason::describe(bits)
}

/// Serves an authenticated pool client until it leaves.
///
/// The returned future sits inline in the client's task for the whole
/// session (see `connection::serve`): it keeps across the session's await
/// only the session and what ends it.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<'a>(
    shared: &'a Arc<Shared>,
    auth: Box<Authenticated>,
    id: ClientId,
    peer: &'a SocketAddr,
) -> impl Future<Output = ()> + 'a {
    async move {
        // Boxed: what logging in waits for (a server connection, learning
        // a setting's spelling) is freed once the client is in, instead
        // of staying in this future for the whole session.
        let Some(logged_in) = Box::pin(log_in(shared, auth, id, *peer)).await else {
            return;
        };
        let (session, ending) = begin(shared, logged_in, id, *peer);
        let exit = session.run().await;
        ending.end(shared, id, peer, exit);
    }
}

/// What a session leaves to undo when it ends.
struct SessionEnding {
    pool: Arc<crate::ServerPool>,
    registration: crate::registry::ClientRegistration,
    key: crate::ids::ClientKey,
}

impl SessionEnding {
    fn end(self, shared: &Shared, id: ClientId, peer: &SocketAddr, exit: Exit) {
        self.pool.counters.clients.fetch_sub(1, Ordering::Relaxed);
        drop(self.registration);
        shared.cancel.unregister(self.key);
        match exit {
            Exit::ClientLeft => tracing::debug!(client = %id, "client left"),
            Exit::Error(e) => tracing::info!(client = %id, %peer, "session ended: {e}"),
        }
    }
}

/// Registers a logged-in client and builds its session.
fn begin(
    shared: &Shared,
    logged_in: LoggedIn,
    id: ClientId,
    peer: SocketAddr,
) -> (Box<Session>, SessionEnding) {
    let LoggedIn {
        transport,
        buf,
        pool,
        settings,
        told,
        owned,
        key,
        cancel,
    } = logged_in;
    tracing::debug!(client = %id, %peer, database = %pool.database, user = %pool.user, "client logged in");
    let who = Arc::new(pgvigil_insight::SessionInfo {
        database: pool.database.clone(),
        user: pool.user.clone(),
        application_name: settings.get("application_name").unwrap_or("").to_string(),
        client_addr: peer.ip(),
    });
    let registration = shared.registry.add_client(NewClient {
        id,
        who: who.clone(),
        port: peer.port(),
        local_addr: transport.local_addr(),
        console: false,
    });
    pool.counters.clients.fetch_add(1, Ordering::Relaxed);
    let observer = shared.insight.as_ref().map(|insight| {
        pgvigil_insight::Recorder::new(
            insight.clone(),
            who,
            crate::clock::MonoTime::now().as_nanos(),
        )
    });
    // Boxed: moved into `run`'s future, an unboxed session would be laid
    // out twice in the task (once here, once there).
    let session = Box::new(Session::new(
        transport,
        buf,
        pool.clone(),
        settings,
        told,
        cancel,
        shared.config.max_packet_size,
        observer,
        registration.entry.clone(),
        owned,
        key.process_id,
    ));
    let ending = SessionEnding {
        pool,
        registration,
        key,
    };
    (session, ending)
}

/// What a client that logged in takes into its session.
struct LoggedIn {
    transport: crate::transport::Transport,
    buf: BytesMut,
    pool: Arc<crate::ServerPool>,
    settings: ClientSettings,
    told: shared_list::ToldParams,
    owned: Option<crate::pool::PooledServer>,
    key: crate::ids::ClientKey,
    cancel: Arc<crate::cancel::CancelTarget>,
}

/// Welcomes an authenticated client (ParameterStatus, BackendKeyData,
/// ReadyForQuery), or tells it why it cannot log in.
async fn log_in(
    shared: &Arc<Shared>,
    auth: Box<Authenticated>,
    id: ClientId,
    peer: SocketAddr,
) -> Option<LoggedIn> {
    let Authenticated {
        mut transport,
        buf,
        params,
        user,
        database,
        scram_keys,
        ..
    } = *auth;
    let Some(pool) = shared.pool(&database, &user) else {
        let e = ProxyError::client("3D000", format!("no pool for database \"{database}\""));
        crate::connection::tell_fatal(&mut transport, e.sqlstate(), &e.to_string()).await;
        return None;
    };
    if let Some(keys) = &scram_keys {
        pool.offer_scram_keys(keys);
    }
    let settings = ClientSettings::from_startup(&params, &pool.startup_settings);
    let welcome = match pool.welcome_params().await {
        Ok(w) => w,
        Err(e) => {
            tracing::info!(client = %id, %peer, "login failed: {e}");
            crate::connection::tell_fatal(&mut transport, e.sqlstate(), &e.to_string()).await;
            return None;
        }
    };
    // In session mode the client owns a backend for its whole session, as
    // on a direct connection: it gets it now, so it can be told the
    // backend's real pid.
    let mut owned = None;
    if pool.mode() == PoolMode::Session {
        match pool.acquire().await {
            Ok(server) => owned = Some(server),
            Err(e) => {
                tracing::info!(client = %id, %peer, "login failed: {e}");
                crate::connection::tell_fatal(&mut transport, e.sqlstate(), &e.to_string()).await;
                return None;
            }
        }
    }
    let values = match reported_values(&pool, &settings, &welcome, owned.as_mut()).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(client = %id, %peer, "login failed: {e}");
            match &e {
                // PostgreSQL refuses a login with an invalid setting the
                // same way, with the same words.
                ProxyError::ServerLogin { code, message } => {
                    crate::connection::tell_fatal(&mut transport, code, message).await
                }
                _ => {
                    crate::connection::tell_fatal(&mut transport, e.sqlstate(), &e.to_string())
                        .await
                }
            }
            return None;
        }
    };
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(&backend::auth_ok());
    for (name, value) in &values {
        backend::write_parameter_status(&mut out, name.as_bytes(), value.as_bytes());
    }
    let told = shared_list::ToldParams::new(pool.told_at_login.share(values));
    let (key, cancel) = match &owned {
        Some(server) => shared
            .cancel
            .register_backend(pool.target(), server.backend_key.process_id),
        None => shared.cancel.register(pool.target()),
    };
    out.extend_from_slice(&backend::backend_key_data_message(
        key.process_id,
        key.secret_key,
    ));
    out.extend_from_slice(&backend::ready_for_query(TransactionStatus::Idle));
    let sent = async {
        transport.write_all(&out).await?;
        transport.flush().await
    }
    .await;
    if sent.is_err() {
        shared.cancel.unregister(key);
        return None;
    }
    Some(LoggedIn {
        transport,
        buf,
        pool,
        settings,
        told,
        owned,
        key,
        cancel,
    })
}

/// The ParameterStatus values a logging-in client is told: the server's,
/// with each setting the client asked for as PostgreSQL itself reports
/// it (`utf-8` is `UTF8`, `iso, dmy` is `ISO, DMY`, `europe/rome` is
/// `Europe/Rome`): drivers check these strictly. A spelling not seen
/// before is learnt from a server connection, once per pool, by setting
/// it there; an invalid value fails the login as PostgreSQL's would.
async fn reported_values(
    pool: &Arc<crate::ServerPool>,
    settings: &ClientSettings,
    welcome: &[(String, String)],
    owned: Option<&mut crate::pool::PooledServer>,
) -> Result<Vec<(String, String)>, ProxyError> {
    let mut values = Vec::with_capacity(welcome.len());
    let mut unknown = Vec::new();
    for (name, server_value) in welcome {
        let value = match settings.get(name) {
            None => server_value.clone(),
            Some(asked) if asked == server_value => server_value.clone(),
            // Printable ASCII is kept as sent by every PostgreSQL version.
            Some(asked)
                if name.eq_ignore_ascii_case("application_name")
                    && asked.bytes().all(|b| (b' '..=b'~').contains(&b)) =>
            {
                asked.to_string()
            }
            Some(asked) => match pool.canonical_value(name, asked) {
                Some(known) => known,
                None => {
                    unknown.push((values.len(), name.clone(), asked.to_string()));
                    asked.to_string()
                }
            },
        };
        values.push((name.clone(), value));
    }
    if unknown.is_empty() {
        return Ok(values);
    }
    let mut borrowed = None;
    let server = match owned {
        Some(server) => server,
        None => borrowed.insert(pool.acquire().await?),
    };
    for (at, name, asked) in unknown {
        let rows = server
            .run_own_extended_query(
                "SELECT pg_catalog.set_config($1, $2, false)",
                &[Some(&name), Some(&asked)],
            )
            .await?;
        if let Some(Some(reported)) = rows.first().and_then(|r| r.first()) {
            pool.learn_canonical(&name, &asked, reported);
            values[at].1 = reported.clone();
        }
        // The connection now carries this setting: the next client's
        // checkout compares and resets it (signature 0 matches nobody).
        server.applied.insert(name, asked);
        server.applied_signature = 0;
    }
    Ok(values)
}
