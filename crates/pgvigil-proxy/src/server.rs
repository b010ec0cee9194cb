//! One connection from pgvigil to PostgreSQL: login, and the little
//! conversations pgvigil has with it on its own account (reset, health
//! check, applying a client's settings). Client traffic does not pass
//! through here; the session forwards it on `stream` directly.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pgvigil_wire::backend::{self, tag as be, AuthRequest, TransactionStatus};
use pgvigil_wire::{frontend, FrameHeader};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clock::MonoTime;
use crate::error::ProxyError;
use crate::ids::{BackendKey, ServerId};
use crate::prepared::ServerStatements;
use crate::transport::Transport;

/// Where and as whom a pool's server connections log in.
#[derive(Clone)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// The database's server-leg TLS (`server_tls_sslmode`).
    pub(crate) tls: std::sync::Arc<crate::tls::ServerTls>,
}

impl ServerTarget {
    /// Where the server is, for messages: `host:port`, or the socket file.
    pub fn address(&self) -> String {
        if crate::transport::is_socket_dir(&self.host) {
            crate::transport::socket_path(&self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Login-time messages are small; this only guards against a confused peer.
const MAX_LOGIN_FRAME: usize = 1 << 20;

static NEXT_SERVER_ID: AtomicU64 = AtomicU64::new(1);

pub struct ServerConn {
    pub(crate) id: ServerId,
    pub(crate) stream: Transport,
    pub(crate) buf: BytesMut,
    pub(crate) backend_key: BackendKey,
    /// ParameterStatus values reported at login.
    pub(crate) login_params: Vec<(String, String)>,
    /// Settings applied for clients, as the clients spelled them, so the
    /// next client with the same settings costs nothing.
    pub(crate) applied: HashMap<String, String>,
    /// Signature of the client settings `applied` matches; 0 for none.
    pub(crate) applied_signature: u64,
    /// Prepared statements pgvigil created on this backend.
    pub(crate) statements: ServerStatements,
    pub(crate) created: MonoTime,
    pub(crate) last_used: MonoTime,
    pub(crate) status: TransactionStatus,
    /// False while requests are outstanding: a connection given back in
    /// that state has a reply in flight and cannot serve anyone else.
    pub(crate) settled: bool,
    /// Lists the connection in SHOW SERVERS while it is open; None for
    /// readiness probes, which never join a pool.
    pub(crate) registration: Option<crate::registry::ServerRegistration>,
}

impl ServerConn {
    pub async fn connect(
        target: &ServerTarget,
        max_prepared: usize,
    ) -> Result<ServerConn, ProxyError> {
        let connect = Transport::connect(&target.host, target.port);
        let stream = tokio::time::timeout(target.connect_timeout, connect)
            .await
            .map_err(|_| {
                ProxyError::Connect(format!(
                    "{}: timed out after {:?}",
                    target.address(),
                    target.connect_timeout
                ))
            })?
            .map_err(|e| ProxyError::Connect(format!("{}: {e}", target.address())))?;
        let stream = tokio::time::timeout(target.connect_timeout, start_tls(stream, target))
            .await
            .map_err(|_| {
                ProxyError::Connect(format!(
                    "{}: TLS negotiation timed out after {:?}",
                    target.address(),
                    target.connect_timeout
                ))
            })??;
        let now = MonoTime::now();
        let mut conn = ServerConn {
            id: ServerId(NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed)),
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            backend_key: BackendKey {
                process_id: 0,
                secret_key: 0,
            },
            login_params: Vec::new(),
            applied: HashMap::new(),
            applied_signature: 0,
            statements: ServerStatements::new(max_prepared),
            created: now,
            last_used: now,
            status: TransactionStatus::Idle,
            settled: true,
            registration: None,
        };
        tokio::time::timeout(target.connect_timeout, conn.login(target))
            .await
            .map_err(|_| ProxyError::Connect("timed out during login".into()))??;
        Ok(conn)
    }

    async fn login(&mut self, target: &ServerTarget) -> Result<(), ProxyError> {
        let startup = frontend::startup_message(&[
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
        ]);
        self.send(&startup).await?;
        let password = target.password.as_deref().unwrap_or("");
        let mut scram: Option<ScramSha256> = None;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::AUTHENTICATION => match backend::auth_request(&frame)? {
                    AuthRequest::Ok => {}
                    AuthRequest::Cleartext => {
                        self.send(&frontend::password(password.as_bytes())).await?
                    }
                    AuthRequest::Md5 { salt } => {
                        let hash = postgres_protocol::authentication::md5_hash(
                            target.user.as_bytes(),
                            password.as_bytes(),
                            salt,
                        );
                        self.send(&frontend::password(hash.as_bytes())).await?;
                    }
                    AuthRequest::Sasl { mechanisms } => {
                        if !mechanisms.iter().any(|m| *m == b"SCRAM-SHA-256") {
                            return Err(login_error("server offers no SASL mechanism pgvigil supports"));
                        }
                        let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        let msg = frontend::sasl_initial_response("SCRAM-SHA-256", s.message());
                        scram = Some(s);
                        self.send(&msg).await?;
                    }
                    AuthRequest::SaslContinue { data } => {
                        let mut s = scram
                            .take()
                            .ok_or_else(|| login_error("unexpected SASL continue"))?;
                        // 4096 rounds of PBKDF2: milliseconds of CPU that
                        // must not stall the sessions sharing this thread.
                        let data = data.to_vec();
                        let s = tokio::task::spawn_blocking(move || s.update(&data).map(|()| s))
                            .await
                            .map_err(|e| login_error(&format!("SCRAM: {e}")))?
                            .map_err(|e| login_error(&format!("SCRAM: {e}")))?;
                        let msg = frontend::sasl_response(s.message());
                        scram = Some(s);
                        self.send(&msg).await?;
                    }
                    AuthRequest::SaslFinal { data } => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| login_error("unexpected SASL final"))?;
                        s.finish(data)
                            .map_err(|e| login_error(&format!("SCRAM: {e}")))?;
                    }
                    AuthRequest::Unsupported(code) => {
                        return Err(login_error(&format!(
                            "server asks for authentication method {code}, which pgvigil does not support"
                        )))
                    }
                },
                be::PARAMETER_STATUS => {
                    let (k, v) = backend::parameter_status(&frame)?;
                    self.login_params.push((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
                be::BACKEND_KEY_DATA => {
                    let (process_id, secret_key) = backend::backend_key_data(&frame)?;
                    self.backend_key = BackendKey {
                        process_id,
                        secret_key,
                    };
                }
                be::READY_FOR_QUERY => {
                    self.status = backend::ready_for_query_status(&frame)?;
                    return Ok(());
                }
                be::ERROR_RESPONSE => {
                    let f = backend::error_fields(&frame)?;
                    return Err(ProxyError::ServerLogin {
                        code: String::from_utf8_lossy(f.code).into_owned(),
                        message: String::from_utf8_lossy(f.message).into_owned(),
                    });
                }
                _ => {} // NoticeResponse, NegotiateProtocolVersion: nothing to do
            }
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), ProxyError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(ProxyError::ServerIo)
    }

    /// Reads one whole frame; only for pgvigil's own conversations.
    async fn read_frame(&mut self) -> Result<Bytes, ProxyError> {
        loop {
            if let Some(h) = FrameHeader::peek(&self.buf, MAX_LOGIN_FRAME)? {
                if self.buf.len() >= h.frame_len {
                    return Ok(self.buf.split_to(h.frame_len).freeze());
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(ProxyError::ServerIo)?;
            if n == 0 {
                return Err(ProxyError::ServerClosed);
            }
        }
    }

    /// Runs SQL for pgvigil's own purposes and discards the results.
    /// ParameterStatus messages it causes are returned, since a client may
    /// need to hear about them.
    pub(crate) async fn run_own_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<(String, String)>, ProxyError> {
        self.send(&frontend::query(sql)).await?;
        let mut reported = Vec::new();
        let mut failure = None;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::READY_FOR_QUERY => {
                    self.status = backend::ready_for_query_status(&frame)?;
                    break;
                }
                be::ERROR_RESPONSE => {
                    let f = backend::error_fields(&frame)?;
                    failure = Some(ProxyError::ServerLogin {
                        code: String::from_utf8_lossy(f.code).into_owned(),
                        message: String::from_utf8_lossy(f.message).into_owned(),
                    });
                }
                be::PARAMETER_STATUS => {
                    let (k, v) = backend::parameter_status(&frame)?;
                    reported.push((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(reported),
        }
    }

    /// An idle backend has nothing to say. If its socket is readable, it
    /// either closed (PostgreSQL restarted, or the backend was terminated)
    /// or sent an unsolicited message; either way it is not fit to serve.
    ///
    /// The runtime's readiness state answers first, without a system call:
    /// the session's last read ended in "would block", so unless the
    /// reactor has since seen the socket become readable, nothing arrived.
    /// Only a socket marked readable is probed with a real read.
    pub(crate) fn looks_alive(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if !self.buf.is_empty() || self.stream.has_buffered_input() {
            return false;
        }
        match self.stream.poll_read_ready(&mut cx) {
            std::task::Poll::Pending => return true,
            std::task::Poll::Ready(Err(_)) => return false,
            std::task::Poll::Ready(Ok(())) => {}
        }
        matches!(self.stream.probe_raw(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Tells the server goodbye; a dropped socket would do, but a
    /// Terminate keeps PostgreSQL's log free of "unexpected EOF".
    pub(crate) async fn terminate(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.stream.write_all(&frontend::terminate()),
        )
        .await;
    }
}

/// Asks for TLS as libpq does for `server_tls_sslmode` (`prefer`: if the
/// server offers it; `require` and up: or give up). Unix sockets stay
/// plain, as libpq keeps them.
async fn start_tls(stream: Transport, target: &ServerTarget) -> Result<Transport, ProxyError> {
    let Some(config) = target.tls.connector_config() else {
        return Ok(stream);
    };
    if !crate::tls::server_leg_can_use_tls(&target.host) {
        return Ok(stream);
    }
    let Transport::Tcp(mut tcp) = stream else {
        return Ok(stream);
    };
    let mode = target.tls.mode();
    let io = |e: io::Error| ProxyError::Connect(format!("{}: {e}", target.address()));
    tcp.write_all(&frontend::ssl_request()).await.map_err(io)?;
    // Exactly one byte: anything after the 'S' would be unencrypted data
    // an attacker slipped in before the handshake.
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io)?;
    match answer[0] {
        b'S' => {
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = connector
                .connect(crate::tls::server_name(&target.host), tcp)
                .await
                .map_err(|e| {
                    ProxyError::Connect(format!(
                        "{}: TLS handshake failed (server_tls_sslmode = {}): {e}",
                        target.address(),
                        mode.as_str()
                    ))
                })?;
            Ok(Transport::TlsOut(Box::new(tls)))
        }
        b'N' if !mode.requires_tls() => Ok(Transport::Tcp(tcp)),
        b'N' => Err(ProxyError::Connect(format!(
            "{}: the server does not accept TLS, and server_tls_sslmode = {} requires it",
            target.address(),
            mode.as_str()
        ))),
        other => Err(ProxyError::Connect(format!(
            "{}: unexpected answer {other:#04x} to SSLRequest",
            target.address()
        ))),
    }
}

fn login_error(message: &str) -> ProxyError {
    ProxyError::ServerLogin {
        code: "08006".into(),
        message: message.to_string(),
    }
}
