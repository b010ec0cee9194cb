//! Walks frames over arbitrary bytes, the way the proxy walks a client or
//! server stream, and runs every view on each complete frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgvigil_wire::backend::{self, AuthRequest};
use pgvigil_wire::frame::complete_frames;
use pgvigil_wire::frontend::{self, BindView, ParseView, TargetView};
use pgvigil_wire::{FrameHeader, HEADER_LEN};

/// Generous enough to accept anything the fuzzer can build, small enough
/// that the limit check is exercised too.
const MAX_FRAME: usize = 1 << 16;

fn views(frame: &[u8]) {
    let body = &frame[HEADER_LEN..];

    let _ = frontend::query_text(frame);
    if let Ok(v) = ParseView::new(frame) {
        let rebuilt = frontend::parse(v.statement, v.query, v.param_types);
        assert_eq!(&rebuilt[HEADER_LEN..], body);
    }
    if let Ok(v) = BindView::new(frame) {
        let renamed = frontend::bind_renamed(&v, b"pgv_1");
        let again = BindView::new(&renamed).expect("renamed Bind must parse");
        assert_eq!(again.portal, v.portal);
        assert_eq!(again.statement, b"pgv_1");
        assert_eq!(again.rest, v.rest);
    }
    if let Ok(v) = TargetView::new(frame) {
        let rebuilt = frontend::describe(v.kind, v.name);
        assert_eq!(TargetView::new(&rebuilt), Ok(v));
    }
    let _ = frontend::execute_portal(frame);
    let _ = frontend::parse_sasl_initial_response(frame);
    let _ = frontend::parse_password(frame);
    assert_eq!(frontend::sasl_response_data(frame), body);

    let _ = backend::ready_for_query_status(frame);
    let _ = backend::parameter_status(frame);
    let _ = backend::backend_key_data(frame);
    let _ = backend::command_tag(frame);
    let _ = backend::error_fields(frame);
    if let Ok(AuthRequest::Sasl { mechanisms }) = backend::auth_request(frame) {
        assert!(mechanisms.iter().all(|m| !m.is_empty()));
    }
}

fuzz_target!(|data: &[u8]| {
    // Incremental walk with peek, as a socket reader does.
    let mut at = 0;
    let mut walked = Vec::new();
    loop {
        match FrameHeader::peek(&data[at..], MAX_FRAME) {
            Ok(Some(h)) => {
                assert!(h.frame_len >= HEADER_LEN && h.frame_len <= MAX_FRAME);
                if data.len() - at < h.frame_len {
                    break;
                }
                let frame = &data[at..at + h.frame_len];
                assert_eq!(frame[0], h.tag);
                views(frame);
                walked.push(h);
                at += h.frame_len;
            }
            Ok(None) | Err(_) => break,
        }
    }

    // complete_frames must agree with the walk whenever it succeeds.
    if let Ok((headers, used)) = complete_frames(data, MAX_FRAME) {
        assert_eq!(headers, walked);
        assert_eq!(used, at);
    }

    // Views must also cope with input that is not a whole frame.
    if data.len() >= HEADER_LEN {
        views(data);
    }
    for end in 0..data.len().min(HEADER_LEN) {
        let _ = FrameHeader::peek(&data[..end], MAX_FRAME);
        let _ = ParseView::new(&data[..end]);
        let _ = backend::auth_request(&data[..end]);
    }
});
