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
use crate::scram::ScramError;
use crate::scram_client::{ClientChannelBinding, ScramKeysClient};
use crate::server_auth::{AuthMethod, Credential, RequireAuth};
use crate::transport::Transport;

/// Where and as whom a pool's server connections log in.
#[derive(Clone)]
pub struct ServerTarget {
    pub host: std::sync::Arc<str>,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub credential: Credential,
    /// Which of PostgreSQL's authentication requests pgvigil answers.
    pub require_auth: RequireAuth,
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
        let end_point = self.stream.peer_end_point();
        self.login_with(target, end_point.as_deref()).await
    }

    /// Logs in as `target.user`. `tls_end_point` is the hash of the
    /// server's certificate (RFC 5929 tls-server-end-point) when the leg
    /// is TLS: with it, SCRAM is bound to this connection if the server
    /// offers SCRAM-SHA-256-PLUS.
    pub(crate) async fn login_with(
        &mut self,
        target: &ServerTarget,
        tls_end_point: Option<&[u8]>,
    ) -> Result<(), ProxyError> {
        let startup = frontend::startup_message(&[
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
        ]);
        self.send(&startup).await?;
        // Nothing sent on a TLS leg or a Unix socket can be read on the
        // way: the default policy answers any method there.
        let secure_leg = self.stream.is_secure();
        let mut scram: Option<ServerScram> = None;
        // Whether PostgreSQL asked for anything before AuthenticationOk.
        let mut challenged = false;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::AUTHENTICATION => match backend::auth_request(&frame)? {
                    AuthRequest::Ok => {
                        if !challenged {
                            check_policy(target, secure_leg, AuthMethod::None)?;
                        }
                        if scram.as_ref().is_some_and(|s| !s.verified) {
                            // libpq too: a server that skips SCRAM's last
                            // step never proved it knows the secret.
                            return Err(login_error(
                                "server ended SCRAM authentication without proving it knows the secret",
                            ));
                        }
                    }
                    AuthRequest::Cleartext => {
                        challenged = true;
                        check_policy(target, secure_leg, AuthMethod::Password)?;
                        let Credential::Plain(password) = &target.credential else {
                            return Err(no_credential_for(target, AuthMethod::Password));
                        };
                        self.send(&frontend::password(password.as_bytes())).await?
                    }
                    AuthRequest::Md5 { salt } => {
                        challenged = true;
                        check_policy(target, secure_leg, AuthMethod::Md5)?;
                        let hash = match &target.credential {
                            Credential::Plain(p) => crate::scram::md5_password_hash(&target.user, p),
                            Credential::Md5Hash(h) => *h,
                            _ => return Err(no_credential_for(target, AuthMethod::Md5)),
                        };
                        let response = crate::scram::md5_salted_response(&hash, salt);
                        self.send(&frontend::password(response.as_bytes())).await?;
                    }
                    AuthRequest::Sasl { mechanisms } => {
                        challenged = true;
                        check_policy(target, secure_leg, AuthMethod::ScramSha256)?;
                        let offers = |m: &str| mechanisms.contains(&m.as_bytes());
                        let binding = ClientChannelBinding::choose(
                            offers("SCRAM-SHA-256-PLUS"),
                            tls_end_point,
                        );
                        if !offers(binding.mechanism()) {
                            return Err(login_error("server offers no SASL mechanism pgvigil supports"));
                        }
                        let (s, first) = ServerScram::start(target, binding)?;
                        let msg = frontend::sasl_initial_response(s.mechanism, &first);
                        scram = Some(s);
                        self.send(&msg).await?;
                    }
                    AuthRequest::SaslContinue { data } => {
                        let s = scram
                            .take()
                            .ok_or_else(|| login_error("unexpected SASL continue"))?;
                        // 4096 rounds of PBKDF2 (with a password): milliseconds
                        // of CPU that must not stall the sessions sharing
                        // this thread.
                        let data = data.to_vec();
                        let (s, msg) = tokio::task::spawn_blocking(move || {
                            let mut s = s;
                            s.server_first(&data).map(|msg| (s, msg))
                        })
                        .await
                        .map_err(|e| login_error(&format!("SCRAM: {e}")))?
                        .map_err(|e| scram_error(target, e))?;
                        scram = Some(s);
                        self.send(&frontend::sasl_response(&msg)).await?;
                    }
                    AuthRequest::SaslFinal { data } => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| login_error("unexpected SASL final"))?;
                        s.server_final(data).map_err(|e| scram_error(target, e))?;
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
        self.run_own_simple_query_keeping(sql, None).await
    }

    /// `run_own_query` on a connection a client holds: NotificationResponse
    /// and NoticeResponse messages that arrive meanwhile are kept, in order,
    /// for the client.
    pub(crate) async fn run_own_simple_query_keeping(
        &mut self,
        sql: &str,
        mut asynchronous: Option<&mut Vec<bytes::Bytes>>,
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
                be::NOTIFICATION_RESPONSE | be::NOTICE_RESPONSE => {
                    if let Some(keep) = asynchronous.as_mut() {
                        keep.push(frame);
                    }
                }
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(reported),
        }
    }

    /// Runs one statement for pgvigil's own purposes with the extended
    /// protocol, so `params` travel as bound values and are never spliced
    /// into SQL (auth_query binds a client-chosen user name). Returns the
    /// rows in text format, NULL as None.
    pub(crate) async fn run_own_extended_query(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Vec<Vec<Option<String>>>, ProxyError> {
        self.run_own_query_keeping(sql, params, None).await
    }

    /// `run_own_extended_query` on a connection a client holds: messages
    /// PostgreSQL may send at any time (NotificationResponse,
    /// NoticeResponse, ParameterStatus) are kept in `asynchronous`, in
    /// order, for the client, never dropped.
    pub(crate) async fn run_own_query_keeping(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
        mut asynchronous: Option<&mut Vec<bytes::Bytes>>,
    ) -> Result<Vec<Vec<Option<String>>>, ProxyError> {
        let count = i16::try_from(params.len())
            .map_err(|_| ProxyError::client("54000", "too many parameters"))?;
        let mut out = BytesMut::with_capacity(128 + sql.len());
        out.extend_from_slice(&frontend::parse(b"", sql.as_bytes(), &0i16.to_be_bytes()));
        frontend::write_frame(&mut out, frontend::tag::BIND, |b| {
            b.extend_from_slice(b"\0\0"); // unnamed portal, unnamed statement
            b.extend_from_slice(&0i16.to_be_bytes()); // all parameters in text
            b.extend_from_slice(&count.to_be_bytes());
            for p in params {
                match p {
                    Some(v) => {
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(v.as_bytes());
                    }
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            b.extend_from_slice(&0i16.to_be_bytes()); // all results in text
        });
        out.extend_from_slice(&frontend::describe(frontend::TARGET_PORTAL, b""));
        frontend::write_frame(&mut out, frontend::tag::EXECUTE, |b| {
            b.extend_from_slice(b"\0");
            b.extend_from_slice(&0i32.to_be_bytes());
        });
        out.extend_from_slice(&frontend::sync());
        // Until ReadyForQuery, the connection is mid-conversation: if
        // anything fails on the way it must not go back to the pool.
        self.settled = false;
        self.send(&out).await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::READY_FOR_QUERY => {
                    self.status = backend::ready_for_query_status(&frame)?;
                    self.settled = true;
                    break;
                }
                be::DATA_ROW => rows.push(data_row(&frame)?),
                be::ERROR_RESPONSE => {
                    let f = backend::error_fields(&frame)?;
                    failure = Some(ProxyError::ServerLogin {
                        code: String::from_utf8_lossy(f.code).into_owned(),
                        message: String::from_utf8_lossy(f.message).into_owned(),
                    });
                }
                be::NOTIFICATION_RESPONSE | be::NOTICE_RESPONSE | be::PARAMETER_STATUS => {
                    if let Some(keep) = asynchronous.as_mut() {
                        keep.push(frame);
                    }
                }
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(rows),
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

/// A DataRow's columns as text; a malformed row is a protocol error,
/// never a panic.
fn data_row(frame: &[u8]) -> Result<Vec<Option<String>>, ProxyError> {
    let malformed =
        || ProxyError::Protocol(pgvigil_wire::FrameError::Malformed { what: "DataRow" });
    let mut rest = frame.get(5..).ok_or_else(malformed)?;
    let mut take = |n: usize| -> Result<&[u8], ProxyError> {
        if rest.len() < n {
            return Err(malformed());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let head = take(2)?;
    let columns = i16::from_be_bytes([head[0], head[1]]);
    let mut row = Vec::with_capacity(columns.max(0) as usize);
    for _ in 0..columns {
        let len = take(4)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len < 0 {
            row.push(None);
        } else {
            row.push(Some(
                String::from_utf8_lossy(take(len as usize)?).into_owned(),
            ));
        }
    }
    Ok(row)
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

/// Refuses, before anything secret is sent, a method `server_require_auth`
/// does not allow; the warning tells the operator what to change.
fn check_policy(
    target: &ServerTarget,
    secure_leg: bool,
    method: AuthMethod,
) -> Result<(), ProxyError> {
    if target.require_auth.allows(method, secure_leg) {
        return Ok(());
    }
    let allowed = target.require_auth.describe(secure_leg);
    let leg = if secure_leg {
        "a TLS"
    } else {
        "an unencrypted"
    };
    let request = match method {
        AuthMethod::None => "lets pgvigil in without authentication".to_string(),
        m => format!("asks for {} authentication", m.name()),
    };
    tracing::warn!(
        server = %target.address(),
        user = %target.user,
        method = method.name(),
        "PostgreSQL {request} over {leg} connection, which server_require_auth \
         ({allowed}) does not allow; nothing was sent. Change server_require_auth, \
         use TLS to the server, or switch pg_hba.conf to scram-sha-256",
    );
    Err(login_error(&format!(
        "pgvigil refused to log in: PostgreSQL {request} over {leg} connection \
         (server_require_auth: {allowed})"
    )))
}

fn no_credential_for(target: &ServerTarget, method: AuthMethod) -> ProxyError {
    let have = match &target.credential {
        Credential::None => "no password is configured",
        Credential::Plain(_) => "a plaintext password is configured",
        Credential::Md5Hash(_) => "only an md5 hash of the password is configured",
        Credential::ScramSecret(_) => {
            "only a SCRAM secret is configured, usable once a client has logged in with SCRAM"
        }
        Credential::ScramKeys(_) => "only a SCRAM secret is configured",
    };
    login_error(&format!(
        "PostgreSQL asks user \"{}\" for {} authentication, but {have}",
        target.user,
        method.name()
    ))
}

fn scram_error(target: &ServerTarget, e: ScramError) -> ProxyError {
    match e {
        ScramError::SecretMismatch => login_error(&format!(
            "the SCRAM secret for user \"{}\" does not match the server's (salt/iterations differ)",
            target.user
        )),
        e => login_error(&format!("SCRAM: {e}")),
    }
}

/// pgvigil's side of a SCRAM login to PostgreSQL, with a password or
/// with keys recovered from a client.
struct ServerScram {
    mechanism: &'static str,
    client: ScramClientKind,
    /// Whether the server's signature checked out.
    verified: bool,
}

enum ScramClientKind {
    Password(ScramSha256),
    Keys(ScramKeysClient),
}

impl ServerScram {
    fn start(
        target: &ServerTarget,
        binding: ClientChannelBinding,
    ) -> Result<(ServerScram, Vec<u8>), ProxyError> {
        let mechanism = binding.mechanism();
        let (client, first) = match &target.credential {
            Credential::Plain(password) => {
                let binding = match binding {
                    ClientChannelBinding::Unsupported => ChannelBinding::unsupported(),
                    ClientChannelBinding::NotOffered => ChannelBinding::unrequested(),
                    ClientChannelBinding::TlsServerEndPoint(hash) => {
                        ChannelBinding::tls_server_end_point(hash)
                    }
                };
                let s = ScramSha256::new(password.as_bytes(), binding);
                let first = s.message().to_vec();
                (ScramClientKind::Password(s), first)
            }
            Credential::ScramKeys(keys) => {
                let (s, first) = ScramKeysClient::new(keys.clone(), binding);
                (ScramClientKind::Keys(s), first)
            }
            _ => return Err(no_credential_for(target, AuthMethod::ScramSha256)),
        };
        let scram = ServerScram {
            mechanism,
            client,
            verified: false,
        };
        Ok((scram, first))
    }

    fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        match &mut self.client {
            ScramClientKind::Password(s) => {
                s.update(data)
                    .map_err(|_| ScramError::Malformed("server-first rejected"))?;
                Ok(s.message().to_vec())
            }
            ScramClientKind::Keys(s) => s.server_first(data),
        }
    }

    fn server_final(&mut self, data: &[u8]) -> Result<(), ScramError> {
        match &mut self.client {
            ScramClientKind::Password(s) => {
                s.finish(data).map_err(|_| ScramError::BadServerSignature)?
            }
            ScramClientKind::Keys(s) => s.server_final(data)?,
        }
        self.verified = true;
        Ok(())
    }
}
