//! One accepted connection: the handshake, then the pool session or the
//! admin console it asked for.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::admission::Admission;
use bytes::BytesMut;
use pgvigil_wire::backend::{self, Severity};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::handshake::{self, Destination, Negotiated, Outcome};
use crate::ids::ClientId;
use crate::transport::Transport;
use crate::Shared;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Serves one accepted client until it leaves; `admission` (its place
/// under `max_client_conn`) is given back when it does.
///
/// The returned future is the client's task for as long as the client
/// stays connected, so it holds only what the session needs: the
/// handshake and the console are boxed and freed when done, and the
/// session itself (the common case) is inline. It is an `async` block
/// over its captures rather than an `async fn`, which would store every
/// argument twice (as given, and as moved into its body).
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    admission: Admission,
) -> impl Future<Output = ()> {
    let id = ClientId(NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed));
    let _ = tcp.set_nodelay(true);
    // Made before the block: the block keeps room for each capture for
    // its whole life, and a boxed handshake takes less than the socket.
    let admitting = Box::pin(admit(shared.clone(), tcp, peer, id));
    async move {
        let Some(auth) = admitting.await else {
            return;
        };
        match auth.destination {
            Destination::Pool => crate::client::serve(&shared, auth, id, &peer).await,
            Destination::Console { .. } => {
                let registration = shared.registry.add_client(crate::registry::NewClient {
                    id,
                    who: Arc::new(pgvigil_insight::SessionInfo {
                        database: auth.database.as_str().into(),
                        user: auth.user.as_str().into(),
                        application_name: auth.application_name().to_string(),
                        client_addr: peer.ip(),
                    }),
                    port: peer.port(),
                    local_addr: auth.transport.local_addr(),
                    console: true,
                });
                Box::pin(crate::console::serve(shared.clone(), *auth)).await;
                drop(registration);
            }
        }
        drop(admission);
    }
}

/// The handshake: an authenticated client, or None when it failed (the
/// client was told why), timed out, or was a cancel request.
async fn admit(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    id: ClientId,
) -> Option<Box<handshake::Authenticated>> {
    let deadline = login_deadline(shared.login_timeout());
    match handshake::run(&shared, tcp, peer, deadline).await {
        Outcome::Authenticated(auth) => return Some(auth),
        Outcome::Done => {}
        Outcome::Failed(transport, e) => {
            FAILED_LOGINS.record(id, peer, &e, shared.started.elapsed().as_secs());
            if let Some(mut t) = transport {
                tell_fatal(&mut t, e.sqlstate(), &e.to_string()).await;
            }
        }
        Outcome::TimedOut(transport) => {
            crate::stats::count_timeout(crate::stats::TimeoutKind::ClientLogin);
            if let Some(mut transport) = transport {
                tell_fatal(
                    &mut transport,
                    "08P01",
                    "client_login_timeout: login not completed in time",
                )
                .await;
            }
        }
    }
    None
}

/// `client_login_timeout`; 0 means no limit.
fn login_deadline(timeout: Duration) -> tokio::time::Instant {
    let timeout = if timeout.is_zero() {
        Duration::from_secs(100 * 365 * 24 * 3600)
    } else {
        timeout
    };
    tokio::time::Instant::now() + timeout
}

/// Sends a FATAL error and leaves the connection to be closed.
pub(crate) async fn tell_fatal(transport: &mut Transport, code: &str, message: &str) {
    let error = backend::error_response(Severity::Fatal, code, message);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        transport.write_all(&error).await?;
        transport.flush().await
    })
    .await;
}

/// Rejects a client over `max_client_conn` the way PostgreSQL rejects one
/// over `max_connections`: after its startup packet, with 53300.
pub(crate) async fn reject_too_many(shared: Arc<Shared>, tcp: TcpStream, limit: usize) {
    let mut buf = BytesMut::with_capacity(512);
    let negotiated = tokio::time::timeout(
        Duration::from_secs(5),
        handshake::negotiate(&shared, Transport::Tcp(tcp), &mut buf),
    )
    .await;
    if let Ok(Negotiated::Startup(mut transport, ..) | Negotiated::Failed(Some(mut transport), _)) =
        negotiated
    {
        let message = format!(
            "no more connections allowed (max_client_conn = {limit}): pgvigil is at its client limit"
        );
        tell_fatal(&mut transport, "53300", &message).await;
    }
}

/// Failed logins are logged one line each up to a limit per minute, then
/// summed up: a password-guessing run must not flood the log.
static FAILED_LOGINS: FailedLogins = FailedLogins::new(10, 60);

pub(crate) struct FailedLogins {
    per_window: u32,
    window_secs: u64,
    state: Mutex<FailedLoginWindow>,
}

#[derive(Default)]
struct FailedLoginWindow {
    started: u64,
    logged: u32,
    suppressed: u64,
}

/// What to do with one failed login.
#[derive(Debug, PartialEq, Eq)]
enum FailedLoginLog {
    /// Log it, after a summary of the previous window's suppressed lines.
    Line {
        suppressed_before: u64,
    },
    Suppress,
}

impl FailedLogins {
    const fn new(per_window: u32, window_secs: u64) -> FailedLogins {
        FailedLogins {
            per_window,
            window_secs,
            state: Mutex::new(FailedLoginWindow {
                started: 0,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    fn decide(&self, now_secs: u64) -> FailedLoginLog {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut suppressed_before = 0;
        if now_secs >= st.started + self.window_secs || st.logged == 0 {
            suppressed_before = std::mem::take(&mut st.suppressed);
            st.started = now_secs;
            st.logged = 0;
        }
        if st.logged < self.per_window {
            st.logged += 1;
            FailedLoginLog::Line { suppressed_before }
        } else {
            st.suppressed += 1;
            FailedLoginLog::Suppress
        }
    }

    fn record(&self, id: ClientId, peer: SocketAddr, e: &ProxyError, now_secs: u64) {
        crate::stats::count_failed_login();
        if let FailedLoginLog::Line { suppressed_before } = self.decide(now_secs) {
            if suppressed_before > 0 {
                tracing::warn!(
                    "{suppressed_before} more failed logins in the previous {} s were not logged one by one",
                    self.window_secs
                );
            }
            tracing::info!(client = %id, %peer, "login failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_are_logged_up_to_a_limit_per_window_then_summed() {
        let limiter = FailedLogins::new(3, 60);
        let at = |t| limiter.decide(t);
        assert_eq!(
            at(100),
            FailedLoginLog::Line {
                suppressed_before: 0
            }
        );
        assert_eq!(
            at(101),
            FailedLoginLog::Line {
                suppressed_before: 0
            }
        );
        assert_eq!(
            at(102),
            FailedLoginLog::Line {
                suppressed_before: 0
            }
        );
        for t in 103..150 {
            assert_eq!(at(t), FailedLoginLog::Suppress);
        }
        // A new window: the first line carries the count of the last one.
        assert_eq!(
            at(161),
            FailedLoginLog::Line {
                suppressed_before: 47
            }
        );
        assert_eq!(
            at(162),
            FailedLoginLog::Line {
                suppressed_before: 0
            }
        );
    }
}
