//! The admin console: `psql -p 6432 -U admin pgvigil` talks to pgvigil
//! itself, as `psql ... pgbouncer` talks to PgBouncer.
//!
//! Login (and its authentication) is the proxy's own, shared with pool
//! clients; after it the connection is a small PostgreSQL server built on
//! pgwire, whose framing and row encoding suit a console (owned Strings
//! cost nothing here) though not the forwarding path. Like PgBouncer's
//! console it speaks the simple query protocol only, and tags SHOW results
//! `SHOW` as PgBouncer does.

mod command;
mod show;

use std::sync::Arc;

use bytes::BytesMut;
use pgvigil_wire::backend::{self, TransactionStatus};
use pgvigil_wire::frontend::{self, tag as fe};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireResult};
use pgwire::messages::data::RowDescription;
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ReadyForQuery,
    TransactionStatus as Status,
};
use pgwire::messages::PgWireBackendMessage;
use tokio::io::AsyncWriteExt;

use crate::error::ProxyError;
use crate::handshake::{Authenticated, Destination};
use crate::transport::Transport;
use crate::Shared;
use command::{Command, Show};
use show::{Cell, Kind, Table};

/// What a command answers, in order, before ReadyForQuery.
enum Reply {
    Notice {
        severity: &'static str,
        code: &'static str,
        message: String,
    },
    Rows(Table),
    Done(&'static str),
    Error {
        code: &'static str,
        message: String,
    },
}

/// Runs one console session after login.
///
/// Frames are read with the same checks as the pooled path (length at
/// least 4, at most `max_packet_size`) before anything looks inside them,
/// and the few message types the console handles are read with
/// pgvigil-wire's views; pgwire only encodes the replies.
pub(crate) async fn serve(shared: Arc<Shared>, login: Authenticated) {
    let admin = matches!(login.destination, Destination::Console { admin: true });
    let welcome = welcome(login.application_name());
    let Authenticated {
        transport,
        mut buf,
        user,
        ..
    } = login;
    let mut socket = Socket {
        transport,
        out: BytesMut::with_capacity(4096),
    };
    socket.out.extend_from_slice(&welcome);
    if socket.flush().await.is_err() {
        return;
    }
    let max_frame = shared.config.max_packet_size;
    let console = Console {
        shared,
        admin,
        user,
    };
    // An extended-protocol request fails once; the rest up to Sync is skipped.
    let mut failed_until_sync = false;
    loop {
        let frame = match socket
            .transport
            .read_client_frame(&mut buf, max_frame)
            .await
        {
            Ok(Some(frame)) => frame,
            // The client went away: nobody to tell.
            Ok(None) | Err(ProxyError::ClientIo(_)) => break,
            Err(e) => {
                let _ = send(&mut socket, vec![fatal(e.to_string())], None).await;
                break;
            }
        };
        let step = match frame[0] {
            fe::QUERY => {
                let text = match frontend::query_text(&frame) {
                    Ok(text) => String::from_utf8_lossy(text).into_owned(),
                    Err(e) => {
                        let _ = send(&mut socket, vec![fatal(e.to_string())], None).await;
                        break;
                    }
                };
                let command = command::parse(&text);
                let shutdown = console.admin && command == Ok(Command::Shutdown);
                let replies = if text.trim().trim_matches(';').trim().is_empty() {
                    Vec::new()
                } else {
                    console.run(command).await
                };
                let mut messages: Vec<PgWireBackendMessage> = Vec::new();
                if replies.is_empty() {
                    messages.push(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ));
                }
                let sent = send(&mut socket, messages, Some(replies)).await;
                if shutdown {
                    break;
                }
                sent
            }
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {
                if failed_until_sync {
                    Ok(())
                } else {
                    failed_until_sync = true;
                    let e = user_error(
                        "0A000",
                        "the admin console accepts simple queries only (as PgBouncer's does)",
                    );
                    let error = PgWireBackendMessage::ErrorResponse(e.into());
                    send(&mut socket, vec![error], None).await
                }
            }
            fe::SYNC => {
                failed_until_sync = false;
                send(&mut socket, vec![ready()], None).await
            }
            fe::FLUSH => socket.flush().await.map_err(Into::into),
            fe::TERMINATE => break,
            tag => {
                let message = format!("invalid frontend message type {tag}");
                let _ = send(&mut socket, vec![fatal(message)], None).await;
                break;
            }
        };
        if step.is_err() {
            break;
        }
    }
}

/// The console's connection: replies are encoded into `out` and written
/// in one go.
struct Socket {
    transport: Transport,
    out: BytesMut,
}

impl Socket {
    fn feed(&mut self, message: PgWireBackendMessage) -> PgWireResult<()> {
        message.encode(&mut self.out)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let out = self.out.split();
        self.transport.write_all(&out).await?;
        self.transport.flush().await
    }
}

fn ready() -> PgWireBackendMessage {
    PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(Status::Idle))
}

fn fatal(message: String) -> PgWireBackendMessage {
    let info = ErrorInfo::new("FATAL".into(), "08P01".into(), message);
    PgWireBackendMessage::ErrorResponse(ErrorResponse::from(info))
}

/// Writes `first`, then the replies' messages and ReadyForQuery (when
/// there are replies, i.e. a query was answered), in one flush.
async fn send(
    socket: &mut Socket,
    first: Vec<PgWireBackendMessage>,
    replies: Option<Vec<Reply>>,
) -> PgWireResult<()> {
    for m in first {
        socket.feed(m)?;
    }
    if let Some(replies) = replies {
        for reply in replies {
            match reply {
                Reply::Notice {
                    severity,
                    code,
                    message,
                } => {
                    let info = ErrorInfo::new(severity.into(), code.into(), message);
                    socket.feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                        info,
                    )))?;
                }
                Reply::Rows(table) => {
                    for m in rows(table)? {
                        socket.feed(m)?;
                    }
                    socket.feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                        "SHOW".into(),
                    )))?;
                }
                Reply::Done(tag) => {
                    socket.feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                        tag.into(),
                    )))?;
                }
                Reply::Error { code, message } => {
                    socket.feed(PgWireBackendMessage::ErrorResponse(
                        user_error(code, message).into(),
                    ))?;
                }
            }
        }
        socket.feed(ready())?;
    }
    socket.flush().await?;
    Ok(())
}

/// RowDescription and DataRows for a table, all columns in text format.
fn rows(table: Table) -> PgWireResult<Vec<PgWireBackendMessage>> {
    let fields: Vec<FieldInfo> = table
        .columns
        .iter()
        .map(|(name, kind)| {
            let ty = match kind {
                Kind::Text => Type::TEXT,
                Kind::Int => Type::INT8,
                Kind::Float => Type::FLOAT8,
            };
            FieldInfo::new((*name).to_string(), None, None, ty, FieldFormat::Text)
        })
        .collect();
    let mut out = vec![PgWireBackendMessage::RowDescription(RowDescription::new(
        fields.iter().map(Into::into).collect(),
    ))];
    let mut encoder = DataRowEncoder::new(Arc::new(fields));
    for row in table.rows {
        for cell in row {
            match cell {
                Cell::Text(s) => encoder.encode_field(&Some(s))?,
                Cell::Int(n) => encoder.encode_field(&Some(n))?,
                Cell::Float(x) => encoder.encode_field(&Some(x))?,
                Cell::Null => encoder.encode_field(&None::<String>)?,
            }
        }
        out.push(PgWireBackendMessage::DataRow(encoder.take_row()));
    }
    Ok(out)
}

/// AuthenticationOk, the parameters psql and drivers expect, a
/// BackendKeyData (cancel requests for it are ignored) and ReadyForQuery.
fn welcome(application_name: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(&backend::auth_ok());
    let version = format!("15.0 ({})", show::version());
    for (name, value) in [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
        ("application_name", application_name),
    ] {
        backend::write_parameter_status(&mut out, name.as_bytes(), value.as_bytes());
    }
    let key: [i32; 2] = rand::random();
    out.extend_from_slice(&backend::backend_key_data_message(key[0], key[1]));
    out.extend_from_slice(&backend::ready_for_query(TransactionStatus::Idle));
    out
}

fn reply_error(code: &'static str, message: impl Into<String>) -> Reply {
    Reply::Error {
        code,
        message: message.into(),
    }
}

fn user_error(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), code.into(), message.into())
}

struct Console {
    shared: Arc<Shared>,
    admin: bool,
    user: String,
}

impl Console {
    /// Which pools a PAUSE or RESUME applies to.
    fn pools_of(&self, database: Option<&str>) -> Result<Vec<Arc<crate::ServerPool>>, Reply> {
        let pools: Vec<_> = self
            .shared
            .all_pools()
            .into_iter()
            .filter(|p| database.is_none_or(|d| &*p.database == d))
            .collect();
        match database {
            Some(db) if pools.is_empty() => Err(reply_error(
                "3D000",
                format!("database \"{db}\" does not exist (not configured in pgvigil)"),
            )),
            _ => Ok(pools),
        }
    }

    async fn run(&self, command: Result<Command, command::ParseError>) -> Vec<Reply> {
        let command = match command {
            Ok(c) => c,
            Err(e) => return vec![reply_error("42601", e.0)],
        };
        if !self.admin && !command.read_only() {
            return vec![reply_error(
                "42501",
                format!(
                    "user \"{}\" may only run SHOW commands: list it in admin_users to run others",
                    self.user
                ),
            )];
        }
        match command {
            Command::Show(Show::Help) => vec![
                Reply::Notice {
                    severity: "NOTICE",
                    code: "00000",
                    message: show::HELP.to_string(),
                },
                Reply::Done("SHOW"),
            ],
            Command::Show(what) => match show::table(&self.shared, &what) {
                Some(table) => vec![Reply::Rows(table)],
                None => vec![Reply::Done("SHOW")],
            },
            Command::Ignored(tag) => vec![Reply::Done(tag)],
            Command::Pause(db) => {
                let pools = match self.pools_of(db.as_deref()) {
                    Ok(p) => p,
                    Err(e) => return vec![e],
                };
                tracing::info!(database = db.as_deref().unwrap_or("*"), user = %self.user, "PAUSE");
                futures_util::future::join_all(pools.iter().map(|p| p.pause())).await;
                vec![Reply::Done("PAUSE")]
            }
            Command::Resume(db) => {
                let pools = match self.pools_of(db.as_deref()) {
                    Ok(p) => p,
                    Err(e) => return vec![e],
                };
                tracing::info!(database = db.as_deref().unwrap_or("*"), user = %self.user, "RESUME");
                for p in pools {
                    p.resume();
                }
                vec![Reply::Done("RESUME")]
            }
            Command::Reload => match self.shared.reload() {
                Ok(warnings) => {
                    let mut replies: Vec<Reply> = warnings
                        .into_iter()
                        .map(|message| Reply::Notice {
                            severity: "WARNING",
                            code: "01000",
                            message,
                        })
                        .collect();
                    replies.push(Reply::Done("RELOAD"));
                    replies
                }
                Err(e) => vec![reply_error(
                    "F0000",
                    format!("RELOAD failed, nothing changed: {e}"),
                )],
            },
            Command::Shutdown => {
                tracing::info!(user = %self.user, "SHUTDOWN from the admin console");
                self.shared.shutdown.notify_one();
                vec![Reply::Done("SHUTDOWN")]
            }
        }
    }
}
