//! The server side of a client's SCRAM login, fed whatever a client may
//! send: the SASLInitialResponse data (gs2 header, with or without
//! channel binding) and the client-final message. It may refuse, never
//! panic, and never accept a proof it did not check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgvigil_proxy::scram::{ScramExchange, ScramVerifier};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (first, last) = rest.split_at(split);
    let last = last.get(1..).unwrap_or_default();
    let verifier = ScramVerifier::from_password("fuzz");
    let binding = [7u8; 32];
    let offered = (flags & 1 == 1).then_some(&binding[..]);
    let plus = flags & 2 == 2;
    if let Ok((exchange, _server_first)) =
        ScramExchange::start_bound(&verifier, first, b"server-nonce", offered, plus)
    {
        // Without the password no proof can be right.
        assert!(exchange.finish_with_keys(last).is_err());
    }
});
