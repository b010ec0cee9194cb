//! CancelRequest routing. Clients only ever see pgvigil's own keys; a
//! cancel arrives on a fresh connection carrying one, and is passed on,
//! with the real backend's key, to whichever backend serves that client
//! at this moment.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use pgvigil_wire::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ids::{BackendKey, ClientKey};
use crate::server::ServerTarget;

/// Where a client's queries currently run. Updated when a server is
/// attached or released; a single atomic so the hot path pays one store.
pub struct CancelTarget {
    host: Arc<str>,
    port: u16,
    /// `server_connect_timeout` of the client's pool: forwarding a cancel
    /// opens a server connection, so the setting that bounds opening one
    /// bounds it too, instead of a limit no operator can see.
    timeout: Duration,
    backend: AtomicU64,
    /// Wakes the client's wait for a server connection: a statement that
    /// has not reached a server yet is cancelled where it waits.
    waiting: tokio::sync::Notify,
    /// The client's key carries its backend's real pid (`register_backend`).
    real_pid: AtomicBool,
}

const SYNTHETIC_PID_BIT: i32 = 1 << 22;

impl CancelTarget {
    pub fn set(&self, key: Option<BackendKey>) {
        self.backend
            .store(key.map_or(0, BackendKey::pack), Ordering::Release);
    }

    /// Signalled by a cancel request while the client waits for a server
    /// connection (`ServerPool::acquire_for` listens only while waiting).
    pub(crate) fn waiting(&self) -> &tokio::sync::Notify {
        &self.waiting
    }

    /// Cancels whatever the client's current server runs, in the
    /// background (`query_timeout`).
    pub(crate) fn cancel_now(self: &Arc<Self>) {
        let target = self.clone();
        tokio::spawn(async move { send_cancel(&target).await });
    }
}

/// Sends a CancelRequest for the backend `target` points at now, if any.
async fn send_cancel(target: &CancelTarget) {
    let Some(backend) = BackendKey::unpack(target.backend.load(Ordering::Acquire)) else {
        return;
    };
    let packet = frontend::cancel_request(backend.process_id, backend.secret_key);
    let send = async {
        let mut s = crate::transport::Transport::connect(&target.host, target.port).await?;
        s.write_all(&packet).await?;
        // PostgreSQL closes a cancel connection once it has signalled the
        // backend, and libpq's PQcancel returns only then. The client's
        // own cancel connection is closed after this returns, so it too
        // learns that the cancel has landed before it sends its next
        // statement; otherwise the cancel could hit that statement, on
        // the same backend in transaction mode.
        let mut rest = [0u8; 64];
        while s.read(&mut rest).await? != 0 {}
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(target.timeout, send).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("could not forward cancel request: {e}"),
        Err(_) => tracing::warn!("forwarding a cancel request timed out"),
    }
}

#[derive(Default)]
pub struct CancelRegistry {
    clients: DashMap<ClientKey, Arc<CancelTarget>>,
    /// Real backend pids handed to session-mode clients: two servers may
    /// run backends with the same pid, and a client must never share
    /// its pid with another.
    real_pids: DashMap<i32, ()>,
}

impl CancelRegistry {
    /// Issues a fresh key for a client whose pool talks to `server`.
    pub fn register(&self, server: &ServerTarget) -> (ClientKey, Arc<CancelTarget>) {
        let target = Self::target(server);
        loop {
            let key = ClientKey {
                // At or above 2^22, Linux's largest pid_max: a synthetic
                // pid is never a real backend's.
                process_id: (rand::random::<i32>() & i32::MAX) | SYNTHETIC_PID_BIT,
                secret_key: rand::random::<i32>(),
            };
            if let dashmap::Entry::Vacant(slot) = self.clients.entry(key) {
                slot.insert(target.clone());
                return (key, target);
            }
        }
    }

    /// A key whose process id is the real pid of the client's server
    /// backend (session mode: the client owns that backend, so
    /// `pg_backend_pid()`, `pg_terminate_backend` and NOTIFY's pid agree
    /// with what it was told), with a secret of pgvigil's own. Falls back
    /// to a fresh pid when another client already has this one.
    pub fn register_backend(
        &self,
        server: &ServerTarget,
        pid: i32,
    ) -> (ClientKey, Arc<CancelTarget>) {
        if pid <= 0 || self.real_pids.insert(pid, ()).is_some() {
            return self.register(server);
        }
        let target = Self::target(server);
        target.real_pid.store(true, Ordering::Relaxed);
        loop {
            let key = ClientKey {
                process_id: pid,
                secret_key: rand::random::<i32>(),
            };
            if let dashmap::Entry::Vacant(slot) = self.clients.entry(key) {
                slot.insert(target.clone());
                return (key, target);
            }
        }
    }

    fn target(server: &ServerTarget) -> Arc<CancelTarget> {
        Arc::new(CancelTarget {
            host: server.host.clone(),
            port: server.port,
            timeout: server.connect_timeout,
            backend: AtomicU64::new(0),
            waiting: tokio::sync::Notify::new(),
            real_pid: AtomicBool::new(false),
        })
    }

    pub fn unregister(&self, key: ClientKey) {
        if let Some((_, target)) = self.clients.remove(&key) {
            if target.real_pid.load(Ordering::Relaxed) {
                self.real_pids.remove(&key.process_id);
            }
        }
    }

    /// Passes a cancel on. Unknown keys and idle clients are ignored, as
    /// PostgreSQL ignores a cancel it cannot match.
    pub async fn cancel(&self, key: ClientKey) {
        let Some(target) = self.clients.get(&key).map(|t| t.clone()) else {
            tracing::debug!("cancel request with an unknown key ignored");
            return;
        };
        if target.backend.load(Ordering::Acquire) == 0 {
            // No server yet: the statement is still waiting for one.
            target.waiting.notify_waiters();
            return;
        }
        send_cancel(&target).await;
    }
}
