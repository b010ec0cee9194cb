//! Messages a client sends: tags, borrowed views of the ones a proxy reads,
//! and builders for the ones it writes itself (to servers it logs in to,
//! and when it renames prepared statements).

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::FrameError;

pub mod tag {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const TERMINATE: u8 = b'X';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share it.
    pub const PASSWORD: u8 = b'p';
}

/// Which kind of object a Describe or Close names.
pub const TARGET_STATEMENT: u8 = b'S';
pub const TARGET_PORTAL: u8 = b'P';

fn body(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or_default()
}

/// The text of a simple Query, without its terminating NUL.
pub fn query_text(frame: &[u8]) -> Result<&[u8], FrameError> {
    Cursor::new(body(frame), "Query").cstr()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseView<'a> {
    pub statement: &'a [u8],
    pub query: &'a [u8],
    /// The parameter type count and OIDs, kept raw to re-emit verbatim.
    pub param_types: &'a [u8],
}

impl<'a> ParseView<'a> {
    pub fn new(frame: &'a [u8]) -> Result<Self, FrameError> {
        let mut c = Cursor::new(body(frame), "Parse");
        let statement = c.cstr()?;
        let query = c.cstr()?;
        Ok(ParseView {
            statement,
            query,
            param_types: c.rest(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindView<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// Formats, parameter values and result formats, kept raw.
    pub rest: &'a [u8],
}

impl<'a> BindView<'a> {
    pub fn new(frame: &'a [u8]) -> Result<Self, FrameError> {
        let mut c = Cursor::new(body(frame), "Bind");
        let portal = c.cstr()?;
        let statement = c.cstr()?;
        Ok(BindView {
            portal,
            statement,
            rest: c.rest(),
        })
    }
}

/// Describe and Close have the same layout: a target kind and a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetView<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

impl<'a> TargetView<'a> {
    pub fn new(frame: &'a [u8]) -> Result<Self, FrameError> {
        let mut c = Cursor::new(body(frame), "Describe/Close");
        let kind = c.u8()?;
        let name = c.cstr()?;
        Ok(TargetView { kind, name })
    }
}

/// The portal an Execute runs.
pub fn execute_portal(frame: &[u8]) -> Result<&[u8], FrameError> {
    Cursor::new(body(frame), "Execute").cstr()
}

/// Builds a frame: tag, length, then whatever `fill` writes.
pub fn build(tag: u8, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    write_frame(&mut buf, tag, fill);
    buf.freeze()
}

/// Appends a frame to `buf`, patching the length in after `fill` ran.
pub fn write_frame(buf: &mut BytesMut, tag: u8, fill: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_u32(0);
    fill(buf);
    let len = (buf.len() - start - 1) as u32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

pub fn parse(statement: &[u8], query: &[u8], param_types: &[u8]) -> Bytes {
    build(tag::PARSE, |b| {
        put_cstr(b, statement);
        put_cstr(b, query);
        b.put_slice(param_types);
    })
}

/// A frame whose body is `parts` laid end to end, in a buffer of exactly
/// its size: such a buffer becomes `Bytes` without a second allocation
/// for a shared header, which matters for the messages the proxy
/// rewrites once per execution.
fn build_exact(tag: u8, parts: &[&[u8]]) -> Bytes {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let mut v = Vec::with_capacity(5 + body);
    v.push(tag);
    v.extend_from_slice(&((body + 4) as u32).to_be_bytes());
    for p in parts {
        v.extend_from_slice(p);
    }
    Bytes::from(v)
}

/// The same Bind, aimed at a differently named statement.
pub fn bind_renamed(view: &BindView<'_>, statement: &[u8]) -> Bytes {
    build_exact(
        tag::BIND,
        &[view.portal, b"\0", statement, b"\0", view.rest],
    )
}

pub fn describe(kind: u8, name: &[u8]) -> Bytes {
    build_exact(tag::DESCRIBE, &[&[kind], name, b"\0"])
}

pub fn close(kind: u8, name: &[u8]) -> Bytes {
    build(tag::CLOSE, |b| {
        b.put_u8(kind);
        put_cstr(b, name);
    })
}

pub fn query(text: &str) -> Bytes {
    build(tag::QUERY, |b| put_cstr(b, text.as_bytes()))
}

pub fn sync() -> Bytes {
    build(tag::SYNC, |_| {})
}

pub fn terminate() -> Bytes {
    build(tag::TERMINATE, |_| {})
}

pub fn password(secret: &[u8]) -> Bytes {
    build(tag::PASSWORD, |b| put_cstr(b, secret))
}

pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Bytes {
    build(tag::PASSWORD, |b| {
        put_cstr(b, mechanism.as_bytes());
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    })
}

pub fn sasl_response(data: &[u8]) -> Bytes {
    build(tag::PASSWORD, |b| b.put_slice(data))
}

/// A v3 StartupMessage with the given parameters.
pub fn startup_message(params: &[(&str, &str)]) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_u32(0);
    buf.put_i32(crate::startup::PROTOCOL_V3);
    for (k, v) in params {
        put_cstr(&mut buf, k.as_bytes());
        put_cstr(&mut buf, v.as_bytes());
    }
    buf.put_u8(0);
    let len = buf.len() as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// SSLRequest: asks the server to switch to TLS before the startup packet.
pub fn ssl_request() -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&8i32.to_be_bytes());
    b[4..].copy_from_slice(&crate::startup::SSL_REQUEST_CODE.to_be_bytes());
    b
}

pub fn cancel_request(process_id: i32, secret_key: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_u32(16);
    buf.put_i32(crate::startup::CANCEL_REQUEST_CODE);
    buf.put_i32(process_id);
    buf.put_i32(secret_key);
    buf.freeze()
}

/// The body of a SASLInitialResponse: mechanism name and initial data.
pub fn parse_sasl_initial_response(frame: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    let mut c = Cursor::new(body(frame), "SASLInitialResponse");
    let mechanism = c.cstr()?;
    let len = c.i32()?;
    let data = c.rest();
    if len < 0 || len as usize != data.len() {
        return Err(FrameError::Malformed {
            what: "SASLInitialResponse",
        });
    }
    Ok((mechanism, data))
}

/// The body of a PasswordMessage: the password (or md5 hash) text.
pub fn parse_password(frame: &[u8]) -> Result<&[u8], FrameError> {
    Cursor::new(body(frame), "PasswordMessage").cstr()
}

/// The raw body of a SASLResponse.
pub fn sasl_response_data(frame: &[u8]) -> &[u8] {
    body(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_through_its_view() {
        let frame = parse(b"s1", b"SELECT $1", b"\0\x01\0\0\0\x17");
        let view = ParseView::new(&frame).unwrap();
        assert_eq!(view.statement, b"s1");
        assert_eq!(view.query, b"SELECT $1");
        assert_eq!(view.param_types, b"\0\x01\0\0\0\x17");
    }

    #[test]
    fn renamed_bind_keeps_parameters_byte_for_byte() {
        let original = build(tag::BIND, |b| {
            put_cstr(b, b"");
            put_cstr(b, b"client_name");
            b.put_slice(b"\0\0\0\x01\0\0\0\x02\xe9\xff\0\0");
        });
        let view = BindView::new(&original).unwrap();
        let renamed = bind_renamed(&view, b"pgv_1");
        let again = BindView::new(&renamed).unwrap();
        assert_eq!(again.statement, b"pgv_1");
        assert_eq!(again.rest, view.rest);
    }

    #[test]
    fn malformed_parse_is_an_error() {
        let frame = build(tag::PARSE, |b| b.put_slice(b"no terminator"));
        assert!(ParseView::new(&frame).is_err());
    }
}
