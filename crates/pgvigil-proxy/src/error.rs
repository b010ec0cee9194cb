//! Errors a session can end with, each mapped to the SQLSTATE a client
//! is told.

use std::io;

use pgvigil_wire::FrameError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("client connection: {0}")]
    ClientIo(#[source] io::Error),
    #[error("server connection lost: {0}")]
    ServerIo(#[source] io::Error),
    #[error("protocol violation: {0}")]
    Protocol(#[from] FrameError),
    #[error("{message}")]
    Client { code: &'static str, message: String },
    #[error("could not connect to server: {0}")]
    Connect(String),
    #[error("server login failed: {message}")]
    ServerLogin { code: String, message: String },
    #[error("timed out after {0:?} waiting for a server connection (acquire_timeout)")]
    AcquireTimeout(std::time::Duration),
    /// A cancel request ended the wait for a server connection.
    #[error("canceling statement due to user request")]
    WaitCancelled,
    #[error("server connection closed unexpectedly")]
    ServerClosed,
}

impl ProxyError {
    pub fn client(code: &'static str, message: impl Into<String>) -> Self {
        ProxyError::Client {
            code,
            message: message.into(),
        }
    }

    /// The SQLSTATE a client sees when this ends its session.
    pub fn sqlstate(&self) -> &str {
        match self {
            ProxyError::ClientIo(_) => "08006",
            ProxyError::ServerIo(_) | ProxyError::ServerClosed => "08006",
            ProxyError::Protocol(_) => "08P01",
            ProxyError::Client { code, .. } => code,
            ProxyError::Connect(_) => "08006",
            ProxyError::ServerLogin { code, .. } => code,
            ProxyError::AcquireTimeout(_) => "53300",
            ProxyError::WaitCancelled => "57014",
        }
    }
}
