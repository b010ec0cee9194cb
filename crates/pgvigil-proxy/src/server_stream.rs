//! The socket to PostgreSQL: TCP, or a Unix-domain socket when the host
//! is a directory (`host = "/var/run/postgresql"`), as libpq and PgBouncer
//! read it.
//!
//! A pooler on the database's own host should use the Unix socket: it
//! skips the TCP stack on every message. With pgbench -S through
//! PgBouncer on a 2-core machine, a Unix-socket upstream gave about 15%
//! more transactions per second than 127.0.0.1 (BENCHMARKS.md).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

pub(crate) enum ServerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A host that names a socket directory rather than a machine.
pub(crate) fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

/// The socket file PostgreSQL listens on in `dir` for `port`.
pub(crate) fn socket_path(dir: &str, port: u16) -> String {
    format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/'))
}

impl ServerStream {
    pub(crate) async fn connect(host: &str, port: u16) -> io::Result<ServerStream> {
        if is_socket_dir(host) {
            return Ok(ServerStream::Unix(
                UnixStream::connect(socket_path(host, port)).await?,
            ));
        }
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(ServerStream::Tcp(stream))
    }

    /// The local end, for SHOW SERVERS; none for a Unix socket.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            ServerStream::Tcp(s) => s.local_addr().ok(),
            ServerStream::Unix(_) => None,
        }
    }

    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ServerStream::Tcp(s) => s.poll_read_ready(cx),
            ServerStream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ServerStream::Tcp(s) => s.poll_write_ready(cx),
            ServerStream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ServerStream::Tcp(s) => s.try_read(buf),
            ServerStream::Unix(s) => s.try_read(buf),
        }
    }
}

/// Sockets written to without waiting, from an [`crate::outqueue::OutQueue`].
pub(crate) trait TryWrite {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl TryWrite for TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }
}

impl TryWrite for ServerStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ServerStream::Tcp(s) => s.try_write(buf),
            ServerStream::Unix(s) => s.try_write(buf),
        }
    }
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            ServerStream::Tcp(s) => s.try_write_vectored(bufs),
            ServerStream::Unix(s) => s.try_write_vectored(bufs),
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
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
