//! The first packet a client sends, and the `options` it may carry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgvigil_wire::startup::{self, InitialPacket, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = startup::initial_packet_len(data) {
        assert!((8..=MAX_STARTUP_PACKET).contains(&len));
    }
    if let Ok(InitialPacket::Startup(params)) = startup::parse_initial_packet(data) {
        for (name, value) in &params.params {
            assert!(!name.is_empty());
            assert!(!name.contains('\0') && !value.contains('\0'));
        }
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
