//! The first packet a client sends, and the `options` it may carry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgvigil_wire::backend;
use pgvigil_wire::startup::{self, InitialPacket, MAX_STARTUP_PACKET, PROTOCOL_OPTION_PREFIX};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = startup::initial_packet_len(data) {
        assert!((8..=MAX_STARTUP_PACKET).contains(&len));
    }
    if let Ok(InitialPacket::Startup(params)) = startup::parse_initial_packet(data) {
        for (name, value) in &params.params {
            assert!(!name.is_empty());
            assert!(!name.contains('\0') && !value.contains('\0'));
            assert!(!name.starts_with(PROTOCOL_OPTION_PREFIX));
        }
        // The reply the handshake would build must frame whatever came in.
        let options: Vec<&str> = params.protocol_options.iter().map(String::as_str).collect();
        let reply = backend::negotiate_protocol_version(0, &options);
        assert_eq!(reply[0], b'v');
        let len = u32::from_be_bytes([reply[1], reply[2], reply[3], reply[4]]) as usize;
        assert_eq!(len + 1, reply.len());
        if let Some(options) = params.get("options") {
            let _ = startup::parse_options(options);
        }
    }
    // The options parser on its own, over any text.
    let text = String::from_utf8_lossy(data);
    for (name, _) in startup::parse_options(&text) {
        assert!(!name.contains('-'));
    }
});
