//! Messages a server sends: tags, the few fields a proxy reads, and builders
//! for the messages pgvigil itself sends to clients.

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::frontend::{build, write_frame};
use crate::FrameError;

pub mod tag {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const NO_DATA: u8 = b'n';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TransactionStatus {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'I' => Some(TransactionStatus::Idle),
            b'T' => Some(TransactionStatus::InTransaction),
            b'E' => Some(TransactionStatus::Failed),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

fn body(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or_default()
}

pub fn ready_for_query_status(frame: &[u8]) -> Result<TransactionStatus, FrameError> {
    let b = Cursor::new(body(frame), "ReadyForQuery").u8()?;
    TransactionStatus::from_byte(b).ok_or(FrameError::Malformed {
        what: "ReadyForQuery",
    })
}

pub fn parameter_status(frame: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    let mut c = Cursor::new(body(frame), "ParameterStatus");
    Ok((c.cstr()?, c.cstr()?))
}

pub fn backend_key_data(frame: &[u8]) -> Result<(i32, i32), FrameError> {
    let mut c = Cursor::new(body(frame), "BackendKeyData");
    Ok((c.i32()?, c.i32()?))
}

/// The command tag of a CommandComplete, e.g. `SELECT 1` or `INSERT 0 5`.
pub fn command_tag(frame: &[u8]) -> Result<&[u8], FrameError> {
    Cursor::new(body(frame), "CommandComplete").cstr()
}

/// The fields of an ErrorResponse or NoticeResponse a proxy acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: &'a [u8],
    pub code: &'a [u8],
    pub message: &'a [u8],
}

pub fn error_fields(frame: &[u8]) -> Result<ErrorFields<'_>, FrameError> {
    let mut c = Cursor::new(body(frame), "ErrorResponse");
    let mut fields = ErrorFields::default();
    loop {
        let kind = c.u8()?;
        if kind == 0 {
            return Ok(fields);
        }
        let value = c.cstr()?;
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
    }
}

/// An authentication request from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<&'a [u8]> },
    SaslContinue { data: &'a [u8] },
    SaslFinal { data: &'a [u8] },
    Unsupported(i32),
}

pub fn auth_request(frame: &[u8]) -> Result<AuthRequest<'_>, FrameError> {
    let mut c = Cursor::new(body(frame), "Authentication");
    let code = c.i32()?;
    Ok(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            let rest = c.rest();
            let salt: [u8; 4] =
                rest.get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(FrameError::Malformed {
                        what: "AuthenticationMD5Password",
                    })?;
            AuthRequest::Md5 { salt }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = c.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue { data: c.rest() },
        12 => AuthRequest::SaslFinal { data: c.rest() },
        other => AuthRequest::Unsupported(other),
    })
}

pub fn auth_ok() -> Bytes {
    build(tag::AUTHENTICATION, |b| b.put_i32(0))
}

pub fn auth_cleartext() -> Bytes {
    build(tag::AUTHENTICATION, |b| b.put_i32(3))
}

pub fn auth_md5(salt: [u8; 4]) -> Bytes {
    build(tag::AUTHENTICATION, |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    })
}

pub fn auth_sasl(mechanisms: &[&str]) -> Bytes {
    build(tag::AUTHENTICATION, |b| {
        b.put_i32(10);
        for m in mechanisms {
            b.put_slice(m.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    })
}

pub fn auth_sasl_continue(data: &[u8]) -> Bytes {
    build(tag::AUTHENTICATION, |b| {
        b.put_i32(11);
        b.put_slice(data);
    })
}

pub fn auth_sasl_final(data: &[u8]) -> Bytes {
    build(tag::AUTHENTICATION, |b| {
        b.put_i32(12);
        b.put_slice(data);
    })
}

pub fn write_parameter_status(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    write_frame(buf, tag::PARAMETER_STATUS, |b| {
        b.put_slice(name);
        b.put_u8(0);
        b.put_slice(value);
        b.put_u8(0);
    });
}

pub fn backend_key_data_message(process_id: i32, secret_key: i32) -> Bytes {
    build(tag::BACKEND_KEY_DATA, |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    })
}

/// NegotiateProtocolVersion: the client asked for a newer minor version
/// or for protocol options, and goes on with 3.`newest_minor` without
/// `unsupported`. The version field is the whole version code (major << 16
/// | minor), as PostgreSQL sends it and libpq checks it, although the
/// protocol documentation calls it the minor version.
pub fn negotiate_protocol_version(newest_minor: u16, unsupported: &[&str]) -> Bytes {
    build(tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32((3 << 16) | i32::from(newest_minor));
        b.put_i32(unsupported.len() as i32);
        for name in unsupported {
            b.put_slice(name.as_bytes());
            b.put_u8(0);
        }
    })
}

pub fn ready_for_query(status: TransactionStatus) -> Bytes {
    build(tag::READY_FOR_QUERY, |b| b.put_u8(status.as_byte()))
}

pub fn parse_complete() -> Bytes {
    build(tag::PARSE_COMPLETE, |_| {})
}

pub fn close_complete() -> Bytes {
    build(tag::CLOSE_COMPLETE, |_| {})
}

pub fn command_complete(command_tag: &str) -> Bytes {
    build(tag::COMMAND_COMPLETE, |b| {
        b.put_slice(command_tag.as_bytes());
        b.put_u8(0);
    })
}

/// Severity of an error or notice pgvigil raises itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// A NoticeResponse with severity WARNING: something the client should
/// know that did not fail its statement.
pub fn warning_notice(code: &str, message: &str) -> Bytes {
    build(tag::NOTICE_RESPONSE, |b| {
        for (kind, value) in [
            (b'S', "WARNING"),
            (b'V', "WARNING"),
            (b'C', code),
            (b'M', message),
        ] {
            b.put_u8(kind);
            b.put_slice(value.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    })
}

/// An ErrorResponse in PostgreSQL's layout, so clients show it as usual.
pub fn error_response(severity: Severity, code: &str, message: &str) -> Bytes {
    error_response_with(severity, code, message, &[])
}

/// The same with more fields (e.g. `b'R'`, the server routine), for errors
/// that must read exactly like PostgreSQL's own: some drivers branch on
/// them.
pub fn error_response_with(
    severity: Severity,
    code: &str,
    message: &str,
    extra: &[(u8, &str)],
) -> Bytes {
    build(tag::ERROR_RESPONSE, |b| {
        let base = [
            (b'S', severity.as_str()),
            (b'V', severity.as_str()),
            (b'C', code),
            (b'M', message),
        ];
        for (kind, value) in base.iter().chain(extra) {
            b.put_u8(*kind);
            b.put_slice(value.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_round_trips() {
        let frame = error_response(Severity::Fatal, "28P01", "password authentication failed");
        let f = error_fields(&frame).unwrap();
        assert_eq!(f.severity, b"FATAL");
        assert_eq!(f.code, b"28P01");
        assert_eq!(f.message, b"password authentication failed");
    }

    #[test]
    fn sasl_request_lists_mechanisms() {
        let frame = auth_sasl(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]);
        assert_eq!(
            auth_request(&frame).unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec![b"SCRAM-SHA-256".as_slice(), b"SCRAM-SHA-256-PLUS"]
            }
        );
    }

    #[test]
    fn ready_for_query_reports_status() {
        let frame = ready_for_query(TransactionStatus::InTransaction);
        assert_eq!(
            ready_for_query_status(&frame).unwrap(),
            TransactionStatus::InTransaction
        );
    }

    #[test]
    fn negotiate_protocol_version_is_framed_as_postgresql_sends_it() {
        let frame = negotiate_protocol_version(0, &["_pq_.a", "_pq_.bc"]);
        let mut expected = vec![b'v'];
        let body: &[u8] = b"\0\x03\0\0\0\0\0\x02_pq_.a\0_pq_.bc\0";
        expected.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        expected.extend_from_slice(body);
        assert_eq!(&frame[..], &expected[..]);
        let none = negotiate_protocol_version(2, &[]);
        assert_eq!(&none[..], b"v\0\0\0\x0c\0\x03\0\x02\0\0\0\0");
    }
}
