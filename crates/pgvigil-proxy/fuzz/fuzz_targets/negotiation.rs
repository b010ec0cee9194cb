//! The pre-login exchange fed a client's whole byte stream: initial
//! packets are cut and parsed as the handshake does and run through the
//! negotiation rules. Whatever arrives: no panic, TLS starts at most once
//! and only when offered, and no startup is accepted in plaintext when
//! TLS is required.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgvigil_proxy::negotiation::{Negotiation, Step};
use pgvigil_wire::startup::{initial_packet_len, parse_initial_packet};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let offered = flags & 1 == 1;
    let required = offered && flags & 2 == 2;
    let mut rules = Negotiation::new(offered, required);
    let mut tls_starts = 0;
    while let Ok(Some(len)) = initial_packet_len(rest) {
        let Some(packet) = rest.get(..len) else {
            return;
        };
        rest = &rest[len..];
        let Ok(packet) = parse_initial_packet(packet) else {
            return;
        };
        match rules.on_packet(&packet) {
            Step::StartTls => {
                tls_starts += 1;
                assert!(offered && tls_starts == 1);
                rules.tls_started();
            }
            Step::Startup { .. } => assert!(!required || rules.is_encrypted()),
            Step::Refuse { .. } | Step::Cancel { .. } => return,
            Step::Decline => {}
        }
    }
});
