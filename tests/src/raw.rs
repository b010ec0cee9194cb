//! A minimal PostgreSQL wire-protocol client over a plain TCP socket.
//!
//! Used where a driver would hide what a test needs: which authentication
//! request pgvigil sends, or a client that deliberately stops reading.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message.
#[derive(Debug, Clone)]
pub struct Message {
    pub tag: u8,
    pub body: Bytes,
}

impl Message {
    /// For an 'R' message: the authentication request code (0 ok, 3 cleartext, 5 md5, 10 SASL).
    pub fn auth_code(&self) -> Option<i32> {
        (self.tag == b'R' && self.body.len() >= 4)
            .then(|| i32::from_be_bytes([self.body[0], self.body[1], self.body[2], self.body[3]]))
    }

    /// For 'E'/'N' messages: the fields by their one-letter code.
    pub fn error_fields(&self) -> HashMap<u8, String> {
        let mut fields = HashMap::new();
        if self.tag != b'E' && self.tag != b'N' {
            return fields;
        }
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            fields.insert(code, String::from_utf8_lossy(&tail[..end]).into_owned());
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        fields
    }

    /// SQLSTATE of an 'E' message.
    pub fn sqlstate(&self) -> Option<String> {
        self.error_fields().remove(&b'C')
    }

    /// For a ParameterStatus ('S') message: the parameter's name and value.
    pub fn parameter_status(&self) -> Option<(String, String)> {
        if self.tag != b'S' {
            return None;
        }
        let mut parts = self.body.split(|&b| b == 0);
        let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        Some((next(), next()))
    }

    /// SASL mechanisms listed in an AuthenticationSASL (code 10) message.
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        if self.auth_code() != Some(10) {
            return Vec::new();
        }
        self.body[4..]
            .split(|&b| b == 0)
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }
}

/// A raw client connection.
pub struct RawConn {
    stream: TcpStream,
}

impl RawConn {
    pub async fn connect(port: u16) -> Result<RawConn> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("raw TCP connect to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        Ok(RawConn { stream })
    }

    /// Sends a protocol 3.0 StartupMessage with the given parameters.
    pub async fn send_startup(&mut self, params: &[(&str, &str)]) -> Result<()> {
        self.send_startup_version(196608, params).await
    }

    /// A StartupMessage asking for protocol `version` (major << 16 | minor),
    /// as newer clients send for 3.2.
    pub async fn send_startup_version(
        &mut self,
        version: i32,
        params: &[(&str, &str)],
    ) -> Result<()> {
        let mut body = BytesMut::new();
        body.put_i32(version);
        for (k, v) in params {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut msg = BytesMut::with_capacity(body.len() + 4);
        msg.put_i32(body.len() as i32 + 4);
        msg.put_slice(&body);
        self.write(&msg).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .await
            .context("writing to raw connection")
    }

    async fn send_tagged(&mut self, tag: u8, body: &[u8]) -> Result<()> {
        let mut msg = BytesMut::with_capacity(body.len() + 5);
        msg.put_u8(tag);
        msg.put_i32(body.len() as i32 + 4);
        msg.put_slice(body);
        self.write(&msg).await
    }

    /// Any frontend message: `tag` plus `body` (the length is added), for
    /// messages without a helper (FunctionCall) or with non-UTF-8 text.
    pub async fn send_message(&mut self, tag: u8, body: &[u8]) -> Result<()> {
        self.send_tagged(tag, body).await
    }

    /// Simple-protocol Query.
    pub async fn send_query(&mut self, sql: &str) -> Result<()> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send_tagged(b'Q', &body).await
    }

    /// PasswordMessage with a cleartext password.
    pub async fn send_password(&mut self, password: &str) -> Result<()> {
        let mut body = password.as_bytes().to_vec();
        body.push(0);
        self.send_tagged(b'p', &body).await
    }

    /// Terminate.
    pub async fn send_terminate(&mut self) -> Result<()> {
        self.send_tagged(b'X', &[]).await
    }

    /// The socket itself, for reads that are not whole messages (the
    /// one-byte answer to SSLRequest).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Arbitrary bytes, for malformed frames and garbage.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.write(bytes).await
    }

    /// Half-closes the connection: the peer reads end-of-file, and a
    /// frame the client left incomplete can never complete.
    pub async fn shutdown_write(&mut self) -> Result<()> {
        self.stream
            .shutdown()
            .await
            .context("shutting down the raw connection's write side")
    }

    /// Reads messages until the peer closes the connection (end-of-file or
    /// reset), for at most `limit`; fails if it is still open then.
    pub async fn read_until_closed(&mut self, limit: Duration) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        let read_all = async {
            loop {
                match self.read_message().await {
                    Ok(msg) => messages.push(msg),
                    Err(_) => return,
                }
            }
        };
        if tokio::time::timeout(limit, read_all).await.is_err() {
            bail!(
                "connection still open {limit:?} later; messages so far: {:?}",
                summarize(&messages)
            );
        }
        Ok(messages)
    }

    /// Reads until the first ErrorResponse (returned) or the end of the
    /// connection (`None`), for at most `limit`.
    pub async fn read_until_error_or_close(&mut self, limit: Duration) -> Result<Option<Message>> {
        let mut seen = Vec::new();
        let read = async {
            loop {
                match self.read_message().await {
                    Ok(msg) if msg.tag == b'E' => return Some(msg),
                    Ok(msg) => seen.push(msg.tag as char),
                    Err(_) => return None,
                }
            }
        };
        match tokio::time::timeout(limit, read).await {
            Ok(outcome) => Ok(outcome),
            Err(_) => bail!("neither an error nor a close within {limit:?}; saw tags {seen:?}"),
        }
    }

    /// Reads exactly one backend message (nothing beyond it).
    pub async fn read_message(&mut self) -> Result<Message> {
        let mut header = [0u8; 5];
        self.stream
            .read_exact(&mut header)
            .await
            .context("reading message header")?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if !(4..=1 << 30).contains(&len) {
            bail!("bad message length {len} for tag {:?}", header[0] as char);
        }
        let mut body = vec![0u8; len as usize - 4];
        self.stream
            .read_exact(&mut body)
            .await
            .context("reading message body")?;
        Ok(Message {
            tag: header[0],
            body: body.into(),
        })
    }

    /// Reads messages up to and including ReadyForQuery; fails on ErrorResponse.
    pub async fn read_until_ready(&mut self) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        loop {
            let msg = self.read_message().await?;
            if msg.tag == b'E' {
                bail!("server error: {:?}", msg.error_fields());
            }
            let done = msg.tag == b'Z';
            messages.push(msg);
            if done {
                return Ok(messages);
            }
        }
    }

    /// Connects and logs in expecting no password request (trust), up to ReadyForQuery.
    pub async fn startup_trust(port: u16, user: &str, db: &str) -> Result<RawConn> {
        let mut conn = RawConn::connect(port).await?;
        conn.send_startup(&[("user", user), ("database", db)])
            .await?;
        let first = conn.read_message().await?;
        match first.auth_code() {
            Some(0) => {}
            _ => bail!(
                "expected AuthenticationOk, got tag {:?} code {:?} {:?}",
                first.tag as char,
                first.auth_code(),
                first.error_fields()
            ),
        }
        conn.read_until_ready().await?;
        Ok(conn)
    }
}

/// Tags and, for errors, SQLSTATE and message: for failure messages.
pub fn summarize(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m.tag {
            b'E' | b'N' => {
                let f = m.error_fields();
                format!(
                    "{} {} {} {}",
                    m.tag as char,
                    f.get(&b'S').map_or("", String::as_str),
                    f.get(&b'C').map_or("", String::as_str),
                    f.get(&b'M').map_or("", String::as_str)
                )
            }
            tag => (tag as char).to_string(),
        })
        .collect()
}

/// Sends a StartupMessage and returns the first message the server answers
/// with (an authentication request or an error).
pub async fn first_reply_to_startup(port: u16, user: &str, db: &str) -> Result<Message> {
    let mut conn = RawConn::connect(port).await?;
    conn.send_startup(&[("user", user), ("database", db)])
        .await?;
    conn.read_message().await
}
