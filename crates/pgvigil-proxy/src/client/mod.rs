//! A client logged in to a pool: it is welcomed (ParameterStatus,
//! BackendKeyData, ReadyForQuery), given a cancel key, and served by the
//! forwarding loop in `session` until it leaves.

mod commands;
mod guards;
mod observe;
mod reply_queue;
mod session;
mod settings;

use std::collections::HashMap;
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
use session::{Exit, Session};
use settings::ClientSettings;

/// Serves an authenticated pool client until it leaves.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    auth: Authenticated,
    id: ClientId,
    peer: SocketAddr,
    local_addr: Option<SocketAddr>,
) {
    let Authenticated {
        mut transport,
        buf,
        params,
        user,
        database,
        scram_keys,
        ..
    } = auth;
    let Some(pool) = shared.pool(&database, &user) else {
        let e = ProxyError::client("3D000", format!("no pool for database \"{database}\""));
        crate::connection::tell_fatal(&mut transport, e.sqlstate(), &e.to_string()).await;
        return;
    };
    if let Some(keys) = &scram_keys {
        pool.offer_scram_keys(keys);
    }
    let settings = ClientSettings::from_startup(&params);
    let welcome = match pool.welcome_params().await {
        Ok(w) => w,
        Err(e) => {
            tracing::info!(client = %id, %peer, "login failed: {e}");
            crate::connection::tell_fatal(&mut transport, e.sqlstate(), &e.to_string()).await;
            return;
        }
    };
    let mut told = HashMap::new();
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(&backend::auth_ok());
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
    let sent = async {
        transport.write_all(&out).await?;
        transport.flush().await
    }
    .await;
    if sent.is_err() {
        shared.cancel.unregister(key);
        return;
    }
    tracing::debug!(client = %id, %peer, database = %pool.database, user = %pool.user, "client logged in");
    let registration = shared.registry.add_client(NewClient {
        id,
        database: pool.database.clone(),
        user: pool.user.clone(),
        addr: peer,
        local_addr,
        application_name: settings.get("application_name").unwrap_or("").to_string(),
        console: false,
    });
    let clients = pool.clone();
    let clients = &clients.counters.clients;
    clients.fetch_add(1, Ordering::Relaxed);
    let observer = shared.insight.as_ref().map(|insight| {
        let who = pgvigil_insight::SessionInfo {
            database: pool.database.clone(),
            user: pool.user.clone(),
            application_name: settings.get("application_name").unwrap_or("").to_string(),
            client_addr: peer.ip().to_string(),
        };
        pgvigil_insight::Recorder::new(
            insight.clone(),
            who,
            crate::clock::MonoTime::now().as_nanos(),
        )
    });
    let session = Session::new(
        id,
        transport,
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
