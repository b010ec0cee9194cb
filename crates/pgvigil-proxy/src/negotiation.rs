//! The exchange before a client logs in, as plain data: which encryption
//! request is answered how, when TLS starts, when a startup packet may be
//! accepted. `handshake.rs` does the reading and writing; the rules live
//! here, so tests and the fuzz target run them without sockets.

use pgvigil_wire::startup::{self, InitialPacket};

/// What the connection does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer 'N' (no encryption) and read the next packet.
    Decline,
    /// Answer 'S' and run the TLS handshake; bytes that arrived before it
    /// are refused (they were not encrypted).
    StartTls,
    /// A CancelRequest: pass it on and close.
    Cancel { process_id: i32, secret_key: i32 },
    /// The startup packet: go on to authentication, after a
    /// NegotiateProtocolVersion when the client asked for more than 3.0.
    Startup { negotiate_version: bool },
    /// Refuse the connection with this error.
    Refuse { code: &'static str, message: String },
}

#[derive(Debug, Clone)]
pub struct Negotiation {
    tls_offered: bool,
    tls_required: bool,
    encrypted: bool,
    ssl_asked: bool,
    gss_asked: bool,
    /// Some packet has been read: direct TLS is only possible first.
    started: bool,
    /// A startup, cancel or refusal ended the exchange.
    ended: bool,
}

impl Negotiation {
    /// `tls_offered`: a certificate is configured (`client_tls_sslmode` is
    /// not `disable`); `tls_required`: plaintext clients are refused.
    pub fn new(tls_offered: bool, tls_required: bool) -> Negotiation {
        Negotiation {
            tls_offered,
            tls_required,
            encrypted: false,
            ssl_asked: false,
            gss_asked: false,
            started: false,
            ended: false,
        }
    }

    /// Whether a connection opening with a TLS record (PostgreSQL 17's
    /// `sslnegotiation=direct`) is to be accepted.
    pub fn accepts_direct_tls(&self) -> bool {
        self.tls_offered && !self.started && !self.encrypted
    }

    /// The TLS handshake succeeded.
    pub fn tls_started(&mut self) {
        self.encrypted = true;
        self.started = true;
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    pub fn on_packet(&mut self, packet: &InitialPacket) -> Step {
        self.started = true;
        if self.ended {
            return self.refuse("08P01", "the connection's negotiation is over".into());
        }
        match packet {
            InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                let ssl = *packet == InitialPacket::SslRequest;
                let repeated = if ssl { self.ssl_asked } else { self.gss_asked };
                if self.encrypted || repeated {
                    // PostgreSQL reads a repeated request, or one inside
                    // TLS, as a startup packet of an unknown version.
                    let code = if ssl {
                        startup::SSL_REQUEST_CODE
                    } else {
                        startup::GSSENC_REQUEST_CODE
                    };
                    return self.refuse(
                        "08P01",
                        format!(
                            "unsupported frontend protocol {}.{}: server supports 3.0 to 3.0",
                            code >> 16,
                            code & 0xffff
                        ),
                    );
                }
                if ssl {
                    self.ssl_asked = true;
                    if self.tls_offered {
                        return Step::StartTls;
                    }
                } else {
                    // GSS encryption is not offered.
                    self.gss_asked = true;
                }
                Step::Decline
            }
            InitialPacket::Cancel {
                process_id,
                secret_key,
            } => {
                self.ended = true;
                Step::Cancel {
                    process_id: *process_id,
                    secret_key: *secret_key,
                }
            }
            InitialPacket::UnsupportedVersion(v) => self.refuse(
                "0A000",
                format!(
                    "unsupported frontend protocol {}.{}: pgvigil supports 3.0",
                    v >> 16,
                    v & 0xffff
                ),
            ),
            InitialPacket::Startup(params) => {
                if self.tls_required && !self.encrypted {
                    return self.refuse(
                        "28000",
                        "TLS required: client_tls_sslmode requires it, and this connection is not encrypted"
                            .into(),
                    );
                }
                self.ended = true;
                Step::Startup {
                    negotiate_version: params.needs_negotiation(0),
                }
            }
        }
    }

    fn refuse(&mut self, code: &'static str, message: String) -> Step {
        self.ended = true;
        Step::Refuse { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgvigil_wire::startup::StartupParams;

    fn startup() -> InitialPacket {
        InitialPacket::Startup(StartupParams::default())
    }

    fn refused(step: &Step) -> Option<&'static str> {
        match step {
            Step::Refuse { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn each_mode_answers_encryption_requests_as_postgresql_would() {
        // (TLS offered, TLS required, packets, what the last one does)
        let ssl = InitialPacket::SslRequest;
        let gss = InitialPacket::GssEncRequest;
        let cases: Vec<(bool, bool, Vec<InitialPacket>, Option<&str>)> = vec![
            (false, false, vec![ssl.clone(), startup()], None),
            (true, false, vec![startup()], None),
            (true, true, vec![startup()], Some("28000")),
            (false, false, vec![ssl.clone(), ssl.clone()], Some("08P01")),
            (false, false, vec![gss.clone(), gss.clone()], Some("08P01")),
            (
                false,
                false,
                vec![gss.clone(), ssl.clone(), startup()],
                None,
            ),
            (true, true, vec![gss.clone(), startup()], Some("28000")),
            (
                false,
                false,
                vec![InitialPacket::UnsupportedVersion(0x0002_0000)],
                Some("0A000"),
            ),
        ];
        for (i, (offered, required, packets, want)) in cases.into_iter().enumerate() {
            let mut n = Negotiation::new(offered, required);
            let mut last = Step::Decline;
            for p in &packets {
                last = n.on_packet(p);
            }
            assert_eq!(refused(&last), want, "case {i}: {last:?}");
        }
    }

    #[test]
    fn tls_starts_once_and_then_a_startup_is_accepted_under_require() {
        let mut n = Negotiation::new(true, true);
        assert_eq!(n.on_packet(&InitialPacket::SslRequest), Step::StartTls);
        n.tls_started();
        assert_eq!(
            n.on_packet(&startup()),
            Step::Startup {
                negotiate_version: false
            }
        );
        // Nothing is accepted after the exchange is over.
        assert!(refused(&n.on_packet(&startup())).is_some());
    }

    #[test]
    fn an_ssl_request_inside_tls_is_refused() {
        let mut n = Negotiation::new(true, false);
        assert!(n.accepts_direct_tls());
        n.tls_started();
        assert!(!n.accepts_direct_tls());
        assert_eq!(
            refused(&n.on_packet(&InitialPacket::SslRequest)),
            Some("08P01")
        );
    }

    #[test]
    fn direct_tls_only_as_the_first_thing_and_only_when_offered() {
        assert!(!Negotiation::new(false, false).accepts_direct_tls());
        let mut n = Negotiation::new(true, false);
        n.on_packet(&InitialPacket::GssEncRequest);
        assert!(!n.accepts_direct_tls());
    }

    proptest::proptest! {
        /// Whatever packets a client sends, in any order: TLS is started
        /// at most once and only when offered, and no startup is
        /// accepted in plaintext when TLS is required.
        #[test]
        fn no_sequence_of_packets_gets_around_the_rules(
            offered in proptest::prelude::any::<bool>(),
            required in proptest::prelude::any::<bool>(),
            kinds in proptest::collection::vec(0u8..5, 0..8),
        ) {
            let required = offered && required;
            let mut n = Negotiation::new(offered, required);
            let mut tls_starts = 0;
            for k in kinds {
                let packet = match k {
                    0 => InitialPacket::SslRequest,
                    1 => InitialPacket::GssEncRequest,
                    2 => InitialPacket::Cancel { process_id: 1, secret_key: 2 },
                    3 => InitialPacket::UnsupportedVersion(0x0004_0000),
                    _ => startup(),
                };
                match n.on_packet(&packet) {
                    Step::StartTls => {
                        tls_starts += 1;
                        proptest::prop_assert!(offered);
                        n.tls_started();
                    }
                    Step::Startup { .. } => {
                        proptest::prop_assert!(!required || n.is_encrypted());
                    }
                    _ => {}
                }
            }
            proptest::prop_assert!(tls_starts <= 1);
        }
    }
}
