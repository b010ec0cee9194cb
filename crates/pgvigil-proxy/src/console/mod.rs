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
use futures_util::{SinkExt, StreamExt};
use pgvigil_wire::backend::{self, TransactionStatus};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::{ClientInfo, DefaultClient, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireResult};
use pgwire::messages::data::RowDescription;
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ReadyForQuery,
    TransactionStatus as Status,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::PgWireMessageServerCodec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::client::ConsoleLogin;
use crate::Shared;
use command::{Command, Show};
use show::{Cell, Kind, Table};

type Socket = Framed<TcpStream, PgWireMessageServerCodec<String>>;

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
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    buf: BytesMut,
    login: ConsoleLogin,
) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    if stream.write_all(&welcome(&login)).await.is_err() {
        return;
    }
    let mut parts = FramedParts::new::<PgWireBackendMessage>(
        stream,
        PgWireMessageServerCodec::<String>::new(DefaultClient::new(peer, false)),
    );
    parts.read_buf = buf;
    let mut socket: Socket = Framed::from_parts(parts);
    socket.set_state(PgWireConnectionState::ReadyForQuery);
    let console = Console {
        shared,
        admin: login.admin,
        user: login.user,
    };
    // An extended-protocol request fails once; the rest up to Sync is skipped.
    let mut failed_until_sync = false;
    while let Some(message) = socket.next().await {
        let step = match message {
            Err(e) => {
                let _ = send(&mut socket, vec![fatal(e.to_string())], None).await;
                break;
            }
            Ok(PgWireFrontendMessage::Query(query)) => {
                let command = command::parse(&query.query);
                let shutdown = console.admin && command == Ok(Command::Shutdown);
                let replies = if query.query.trim().trim_matches(';').trim().is_empty() {
                    Vec::new()
                } else {
                    console.run(command).await
                };
                let empty = replies.is_empty();
                let mut messages: Vec<PgWireBackendMessage> = Vec::new();
                if empty {
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
            Ok(
                PgWireFrontendMessage::Parse(_)
                | PgWireFrontendMessage::Bind(_)
                | PgWireFrontendMessage::Describe(_)
                | PgWireFrontendMessage::Execute(_)
                | PgWireFrontendMessage::Close(_),
            ) => {
                if failed_until_sync {
                    Ok(())
                } else {
                    failed_until_sync = true;
                    let e = user_error(
                        "0A000",
                        "the admin console accepts simple queries only (as PgBouncer's does)",
                    );
                    socket
                        .send(PgWireBackendMessage::ErrorResponse(e.into()))
                        .await
                        .map_err(Into::into)
                }
            }
            Ok(PgWireFrontendMessage::Sync(_)) => {
                failed_until_sync = false;
                socket.send(ready()).await.map_err(Into::into)
            }
            Ok(PgWireFrontendMessage::Flush(_)) => socket.flush().await.map_err(Into::into),
            Ok(PgWireFrontendMessage::Terminate(_)) => break,
            Ok(_) => {
                let message = "unexpected message for the admin console".to_string();
                let _ = send(&mut socket, vec![fatal(message)], None).await;
                break;
            }
        };
        if step.is_err() {
            break;
        }
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
        socket.feed(m).await?;
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
                    socket
                        .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                            info,
                        )))
                        .await?;
                }
                Reply::Rows(table) => {
                    for m in rows(table)? {
                        socket.feed(m).await?;
                    }
                    socket
                        .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                            "SHOW".into(),
                        )))
                        .await?;
                }
                Reply::Done(tag) => {
                    socket
                        .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                            tag.into(),
                        )))
                        .await?;
                }
                Reply::Error { code, message } => {
                    socket
                        .feed(PgWireBackendMessage::ErrorResponse(
                            user_error(code, message).into(),
                        ))
                        .await?;
                }
            }
        }
        socket.feed(ready()).await?;
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
fn welcome(login: &ConsoleLogin) -> BytesMut {
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
        ("application_name", login.application_name.as_str()),
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
            .pools
            .values()
            .filter(|p| database.is_none_or(|d| p.database == d))
            .cloned()
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
