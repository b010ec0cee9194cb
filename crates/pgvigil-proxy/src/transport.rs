//! One stream type for both legs, plain or TLS.
//!
//! The forwarding loop, the login and the console all read and write a
//! `Transport` and never ask which kind it is. Plain sockets keep their
//! zero-copy path: a queue of forwarded frames leaves in one vectored
//! `send`. Through TLS the same queue is encrypted into rustls' buffer in
//! one call and leaves as one write of all its records.
//!
//! Writes are non-blocking (`try_write_vectored`): the session flushes
//! what the socket takes and waits for writability only when something
//! is left, in its own buffer or (TLS) in rustls'.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use pgvigil_wire::FrameHeader;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::error::ProxyError;
use tokio::net::{TcpStream, UnixStream};

pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A client's connection, pgvigil the TLS server.
    TlsIn(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A connection to PostgreSQL, pgvigil the TLS client.
    TlsOut(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A host that names a socket directory rather than a machine.
pub(crate) fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

/// The socket file PostgreSQL listens on in `dir` for `port`.
pub(crate) fn socket_path(dir: &str, port: u16) -> String {
    format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/'))
}

impl Transport {
    /// A plain connection to PostgreSQL: TCP (`TCP_NODELAY`), or its Unix
    /// socket when the host is a directory, as libpq and PgBouncer read
    /// `host`.
    pub(crate) async fn connect(host: &str, port: u16) -> io::Result<Transport> {
        if is_socket_dir(host) {
            return Ok(Transport::Unix(
                UnixStream::connect(socket_path(host, port)).await?,
            ));
        }
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(Transport::Tcp(stream))
    }

    #[inline]
    /// Reads until `buf` starts with one whole frame from a client and
    /// splits it off; None at the end of the stream. The header is checked
    /// (length at least 4, at most `max_frame`) before anything waits for
    /// the body, and the buffer grows by what arrives, not by what a
    /// header declares.
    pub(crate) async fn read_client_frame(
        &mut self,
        buf: &mut BytesMut,
        max_frame: usize,
    ) -> Result<Option<BytesMut>, ProxyError> {
        loop {
            if let Some(h) = FrameHeader::peek(buf, max_frame)? {
                if buf.len() >= h.frame_len {
                    return Ok(Some(buf.split_to(h.frame_len)));
                }
            }
            buf.reserve(8 * 1024);
            if self.read_buf(buf).await.map_err(ProxyError::ClientIo)? == 0 {
                return Ok(None);
            }
        }
    }

    #[inline]
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Transport::TlsIn(_) | Transport::TlsOut(_))
    }

    /// Encrypted, or never leaving the machine.
    pub(crate) fn is_secure(&self) -> bool {
        !matches!(self, Transport::Tcp(_))
    }

    /// The `tls-server-end-point` hash of the server's certificate, for
    /// channel binding on a TLS connection to PostgreSQL.
    pub(crate) fn peer_end_point(&self) -> Option<Vec<u8>> {
        let Transport::TlsOut(s) = self else {
            return None;
        };
        let cert = s.get_ref().1.peer_certificates()?.first()?;
        crate::tls::tls_server_end_point(cert.as_ref()).filter(|h| !h.is_empty())
    }

    #[inline]
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Unix(_) => None,
            Transport::TlsIn(s) => Some(s.get_ref().0),
            Transport::TlsOut(s) => Some(s.get_ref().0),
        }
    }

    /// The local end, for SHOW CLIENTS / SERVERS; none for a Unix socket.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp().and_then(|s| s.local_addr().ok())
    }

    /// Readiness of the socket under any TLS: an idle connection that
    /// became readable has closed or said something unasked.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Unix(s) => s.poll_read_ready(cx),
            _ => match self.tcp() {
                Some(s) => s.poll_read_ready(cx),
                None => Poll::Ready(Ok(())),
            },
        }
    }

    #[inline]
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(s) => s.poll_write_ready(cx),
            Transport::Unix(s) => s.poll_write_ready(cx),
            Transport::TlsIn(s) => s.get_ref().0.poll_write_ready(cx),
            Transport::TlsOut(s) => s.get_ref().0.poll_write_ready(cx),
        }
    }

    /// Probes an idle connection with a one-byte read of the raw socket.
    /// Whatever arrives (data, EOF) means the connection is unusable, so
    /// consuming a TLS record's first byte does no harm.
    pub(crate) fn probe_raw(&self) -> io::Result<usize> {
        let mut probe = [0u8; 1];
        match self {
            Transport::Unix(s) => s.try_read(&mut probe),
            _ => match self.tcp() {
                Some(s) => s.try_read(&mut probe),
                None => Ok(0),
            },
        }
    }

    /// Plaintext TLS has decrypted but nobody read yet (or a TLS error
    /// waiting to be reported): the socket's readiness says nothing
    /// about it.
    pub(crate) fn has_buffered_input(&mut self) -> bool {
        let state = match self {
            Transport::TlsIn(s) => s.get_mut().1.process_new_packets(),
            Transport::TlsOut(s) => s.get_mut().1.process_new_packets(),
            _ => return false,
        };
        state.map_or(true, |st| {
            st.plaintext_bytes_to_read() > 0 || st.peer_has_closed()
        })
    }

    /// Bytes rustls has encrypted but the socket has not taken yet.
    #[inline]
    pub(crate) fn has_pending_output(&self) -> bool {
        match self {
            Transport::TlsIn(s) => s.get_ref().1.wants_write(),
            Transport::TlsOut(s) => s.get_ref().1.wants_write(),
            _ => false,
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes
    /// nothing. Through TLS, accepted bytes may wait in rustls' buffer
    /// (`has_pending_output`) until `try_flush_tls`.
    #[inline]
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.try_write(buf),
            Transport::Unix(s) => s.try_write(buf),
            _ => self.try_write_vectored(&[IoSlice::new(buf)]),
        }
    }

    #[inline]
    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.try_write_vectored(bufs),
            Transport::Unix(s) => s.try_write_vectored(bufs),
            _ => {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(self).poll_write_vectored(&mut cx, bufs) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Pushes rustls' buffered records to the socket without waiting.
    /// Returns whether nothing is left.
    #[inline]
    pub(crate) fn try_flush_tls(&mut self) -> io::Result<bool> {
        if !self.is_tls() || !self.has_pending_output() {
            return Ok(true);
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(false),
        }
    }
}

impl AsyncRead for Transport {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::TlsIn(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Transport::TlsIn(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::TlsIn(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
            Transport::TlsIn(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Transport::TlsIn(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_host_names_postgresql_socket_file() {
        assert!(is_socket_dir("/var/run/postgresql"));
        assert!(!is_socket_dir("db.internal"));
        assert!(!is_socket_dir("127.0.0.1"));
        assert_eq!(
            socket_path("/var/run/postgresql/", 5433),
            "/var/run/postgresql/.s.PGSQL.5433"
        );
        assert_eq!(socket_path("/tmp", 5432), "/tmp/.s.PGSQL.5432");
    }
}
