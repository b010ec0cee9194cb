//! The packets a connection may open with. They have no tag byte: just a
//! length and a 32-bit code, which is either a protocol version or one of
//! the special request codes.

use crate::cursor::Cursor;
use crate::FrameError;

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
/// A CancelRequest is always this long: length, code, process id, key.
pub const CANCEL_REQUEST_LEN: usize = 16;
pub const PROTOCOL_V3: i32 = 196608;

/// Startup packets are small; PostgreSQL itself refuses ones above 10000.
pub const MAX_STARTUP_PACKET: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPacket {
    SslRequest,
    GssEncRequest,
    Cancel { process_id: i32, secret_key: i32 },
    Startup(StartupParams),
    UnsupportedVersion(i32),
}

/// Parameters from a StartupMessage, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams {
    pub params: Vec<(String, String)>,
    /// The minor protocol version asked for (3.x): newer clients (libpq 18
    /// with `max_protocol_version`) ask for more than 3.0 and go on with
    /// whatever NegotiateProtocolVersion offers them.
    pub minor_version: u16,
    /// Names of the `_pq_.` protocol options sent, kept out of `params`:
    /// they are requests to the protocol layer, not settings, and an
    /// unsupported one must be reported back, not applied.
    pub protocol_options: Vec<String>,
}

impl StartupParams {
    /// The value of a parameter; the last one wins when repeated, as in
    /// PostgreSQL.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client must be told, with NegotiateProtocolVersion,
    /// that it gets 3.`newest_minor` and none of its protocol options
    /// (what PostgreSQL does, given that pgvigil supports no option).
    pub fn needs_negotiation(&self, newest_minor: u16) -> bool {
        self.minor_version > newest_minor || !self.protocol_options.is_empty()
    }
}

/// Prefix of the startup options that belong to the protocol.
pub const PROTOCOL_OPTION_PREFIX: &str = "_pq_.";

/// Length of the initial packet at the start of `buf`, once its 4-byte
/// length prefix has arrived.
pub fn initial_packet_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(FrameError::Malformed {
            what: "startup packet length",
        });
    }
    Ok(Some(len))
}

/// Parses a complete initial packet (length prefix included).
pub fn parse_initial_packet(packet: &[u8]) -> Result<InitialPacket, FrameError> {
    let mut c = Cursor::new(packet.get(4..).unwrap_or_default(), "startup");
    let code = c.i32()?;
    match code {
        SSL_REQUEST_CODE => Ok(InitialPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(InitialPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            let process_id = c.i32()?;
            let secret_key = c.i32()?;
            Ok(InitialPacket::Cancel {
                process_id,
                secret_key,
            })
        }
        // Any 3.x, as PostgreSQL: the minor version is negotiated down.
        _ if code >> 16 == PROTOCOL_V3 >> 16 => {
            let mut params = Vec::new();
            let mut protocol_options = Vec::new();
            loop {
                let name = c.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = c.cstr()?;
                let name = String::from_utf8_lossy(name).into_owned();
                if name.starts_with(PROTOCOL_OPTION_PREFIX) {
                    protocol_options.push(name);
                } else {
                    params.push((name, String::from_utf8_lossy(value).into_owned()));
                }
            }
            Ok(InitialPacket::Startup(StartupParams {
                params,
                minor_version: (code & 0xffff) as u16,
                protocol_options,
            }))
        }
        other => Ok(InitialPacket::UnsupportedVersion(other)),
    }
}

/// Parses the `options` startup parameter's `-c name=value` and
/// `--name=value` switches, which PostgreSQL applies as settings.
/// Backslash escapes a space inside a value, as libpq documents.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut iter = words.into_iter();
    while let Some(w) = iter.next() {
        let setting = if w == "-c" {
            iter.next()
        } else if let Some(s) = w.strip_prefix("-c") {
            Some(s.to_string())
        } else {
            w.strip_prefix("--").map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((name.replace('-', "_"), value.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn startup_parameters_keep_order_and_values() {
        let p = packet(PROTOCOL_V3, b"user\0app\0database\0appdb\0\0");
        let InitialPacket::Startup(params) = parse_initial_packet(&p).unwrap() else {
            panic!("not a startup message");
        };
        assert_eq!(params.get("user"), Some("app"));
        assert_eq!(params.get("database"), Some("appdb"));
    }

    #[test]
    fn special_requests_are_recognised() {
        assert_eq!(
            parse_initial_packet(&packet(SSL_REQUEST_CODE, b"")).unwrap(),
            InitialPacket::SslRequest
        );
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse_initial_packet(&packet(CANCEL_REQUEST_CODE, &body)).unwrap(),
            InitialPacket::Cancel {
                process_id: 7,
                secret_key: 9
            }
        );
    }

    #[test]
    fn protocol_3_2_startup_is_accepted_with_its_minor_version() {
        let p = packet(PROTOCOL_V3 | 2, b"user\0app\0\0");
        let InitialPacket::Startup(params) = parse_initial_packet(&p).unwrap() else {
            panic!("3.2 should be a startup message");
        };
        assert_eq!(params.minor_version, 2);
        assert_eq!(params.get("user"), Some("app"));
        assert!(params.needs_negotiation(0));
        assert!(!params.needs_negotiation(2));
    }

    #[test]
    fn protocol_options_are_listed_not_taken_as_parameters() {
        let p = packet(
            PROTOCOL_V3,
            b"_pq_.test_protocol_negotiation\0x\0user\0app\0_pq_.other\0\0\0",
        );
        let InitialPacket::Startup(params) = parse_initial_packet(&p).unwrap() else {
            panic!("not a startup message");
        };
        assert_eq!(params.params, vec![("user".to_string(), "app".to_string())]);
        assert_eq!(
            params.protocol_options,
            ["_pq_.test_protocol_negotiation", "_pq_.other"]
        );
        assert_eq!(params.minor_version, 0);
        assert!(params.needs_negotiation(0));
    }

    #[test]
    fn plain_3_0_startup_needs_no_negotiation() {
        let p = packet(PROTOCOL_V3, b"user\0app\0\0");
        let InitialPacket::Startup(params) = parse_initial_packet(&p).unwrap() else {
            panic!("not a startup message");
        };
        assert!(!params.needs_negotiation(0));
    }

    #[test]
    fn other_major_versions_stay_unsupported() {
        for code in [2 << 16, 4 << 16, (4 << 16) | 2, 0] {
            assert_eq!(
                parse_initial_packet(&packet(code, b"user\0app\0\0")).unwrap(),
                InitialPacket::UnsupportedVersion(code)
            );
        }
    }

    #[test]
    fn truncated_startup_is_malformed_not_a_panic() {
        let p = packet(PROTOCOL_V3, b"user\0app");
        assert!(parse_initial_packet(&p).is_err());
    }

    #[test]
    fn options_switches_become_settings() {
        assert_eq!(
            parse_options("-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB"),
            vec![
                ("search_path".to_string(), "a,b".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
                ("work_mem".to_string(), "64MB".to_string()),
            ]
        );
        assert_eq!(
            parse_options(r"-c application_name=my\ app"),
            vec![("application_name".to_string(), "my app".to_string())]
        );
    }
}
