//! Property tests for the wire crate: parsers and views never panic on
//! hostile bytes, frame walking over a TCP-like stream of arbitrary chunks
//! recovers every frame exactly, and every builder round-trips through the
//! view that reads it.

use bytes::{BufMut, BytesMut};
use pgvigil_wire::backend::{self, AuthRequest, ErrorFields, Severity, TransactionStatus};
use pgvigil_wire::frame::complete_frames;
use pgvigil_wire::frontend::{self, BindView, ParseView, TargetView};
use pgvigil_wire::startup::{self, InitialPacket, StartupParams, MAX_STARTUP_PACKET};
use pgvigil_wire::{FrameError, FrameHeader, HEADER_LEN};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Arbitrary bytes, NUL included.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Bytes that can sit in a NUL-terminated field: anything but NUL, so
/// non-UTF-8 sequences are common.
fn cstr_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..max)
}

/// Arbitrary UTF-8 text without NUL.
fn cstr_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..max)
        .prop_map(|cs| cs.into_iter().collect())
}

/// A byte biased towards the values the parsers branch on (NUL terminators,
/// field kinds, target kinds), so random bodies reach the deeper paths.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        2 => Just(0u8),
        1 => prop::sample::select(b"SVCMPIET".to_vec()),
    ]
}

/// A frame-shaped input: a tag, a length field that is usually right, an
/// optional 32-bit code the parsers switch on, and a biased body.
fn frameish() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        prop::option::of(prop_oneof![
            prop::sample::select(vec![0i32, 3, 5, 10, 11, 12, -1, i32::MAX, i32::MIN]),
            any::<i32>(),
        ]),
        prop::collection::vec(interesting_byte(), 0..96),
        prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
    )
        .prop_map(|(tag, code, body, length)| {
            let mut payload = Vec::new();
            if let Some(code) = code {
                payload.extend_from_slice(&code.to_be_bytes());
            }
            payload.extend_from_slice(&body);
            let length = length.unwrap_or((payload.len() + 4) as u32);
            let mut frame = vec![tag];
            frame.extend_from_slice(&length.to_be_bytes());
            frame.extend_from_slice(&payload);
            frame
        })
}

/// A startup-shaped packet: length prefix (usually right), one of the known
/// codes or a random one, then a biased body.
fn startupish() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            prop::sample::select(vec![
                startup::PROTOCOL_V3,
                startup::SSL_REQUEST_CODE,
                startup::GSSENC_REQUEST_CODE,
                startup::CANCEL_REQUEST_CODE,
            ]),
            any::<i32>(),
        ],
        prop::collection::vec(interesting_byte(), 0..96),
        prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
    )
        .prop_map(|(code, body, length)| {
            let length = length.unwrap_or((body.len() + 8) as u32);
            let mut p = length.to_be_bytes().to_vec();
            p.extend_from_slice(&code.to_be_bytes());
            p.extend_from_slice(&body);
            p
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![bytes(160), frameish(), startupish()]
}

fn max_frame() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(usize::MAX),
        Just(1usize << 30),
        0usize..200,
        any::<usize>(),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or_default()
}

/// `part` is a sub-slice of `whole` (views borrow, they never copy).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fn assert_within(part: &[u8], whole: &[u8], what: &str) {
    assert!(within(part, whole), "{what} does not borrow from its input");
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Calls every public function that takes raw bytes, checking the
/// structural facts each successful answer must satisfy.
fn exercise_everything(buf: &[u8], max: usize) {
    // Framing.
    let _ = FrameHeader::peek(buf, max);
    if let Ok((headers, used)) = complete_frames(buf, max) {
        assert!(used <= buf.len());
        assert_eq!(headers.iter().map(|h| h.frame_len).sum::<usize>(), used);
        assert!(headers.iter().all(|h| h.frame_len >= HEADER_LEN));
    }

    // Startup.
    if let Ok(Some(len)) = startup::initial_packet_len(buf) {
        assert!((8..=MAX_STARTUP_PACKET).contains(&len));
        assert_eq!(len, be_u32(buf) as usize);
    }
    if let Ok(InitialPacket::Startup(params)) = startup::parse_initial_packet(buf) {
        for (k, v) in &params.params {
            assert!(!k.is_empty(), "empty name ends the parameter list");
            assert!(!k.contains('\0') && !v.contains('\0'));
            assert!(
                !k.starts_with("_pq_."),
                "protocol options are not parameters"
            );
        }
        assert!(params
            .protocol_options
            .iter()
            .all(|o| o.starts_with("_pq_.") && !o.contains('\0')));
        assert_eq!(be_u32(&buf[4..]) >> 16, 3, "only 3.x is a StartupMessage");
        if let Some(options) = params.get("options") {
            let _ = startup::parse_options(options);
        }
    }
    let _ = startup::parse_options(&String::from_utf8_lossy(buf));

    // Frontend views.
    let b = body(buf);
    if let Ok(text) = frontend::query_text(buf) {
        assert_within(text, b, "query text");
        assert!(!text.contains(&0));
    }
    if let Ok(v) = ParseView::new(buf) {
        assert_within(v.statement, b, "Parse statement");
        assert_within(v.query, b, "Parse query");
        assert_within(v.param_types, b, "Parse param types");
        assert_eq!(
            v.statement.len() + v.query.len() + v.param_types.len() + 2,
            b.len()
        );
        let rebuilt = frontend::parse(v.statement, v.query, v.param_types);
        assert_eq!(body(&rebuilt), b, "Parse rebuilt from its view differs");
    }
    if let Ok(v) = BindView::new(buf) {
        assert_within(v.portal, b, "Bind portal");
        assert_within(v.statement, b, "Bind statement");
        assert_within(v.rest, b, "Bind rest");
        assert_eq!(
            v.portal.len() + v.statement.len() + v.rest.len() + 2,
            b.len()
        );
        let same = frontend::bind_renamed(&v, v.statement);
        assert_eq!(body(&same), b, "Bind renamed to its own name differs");
    }
    if let Ok(v) = TargetView::new(buf) {
        assert_within(v.name, b, "Describe/Close name");
        assert_eq!(b[0], v.kind);
    }
    if let Ok(portal) = frontend::execute_portal(buf) {
        assert_within(portal, b, "Execute portal");
    }
    if let Ok((mechanism, data)) = frontend::parse_sasl_initial_response(buf) {
        assert_within(mechanism, b, "SASL mechanism");
        assert_within(data, b, "SASL data");
        assert_eq!(mechanism.len() + 1 + 4 + data.len(), b.len());
    }
    if let Ok(pw) = frontend::parse_password(buf) {
        assert_within(pw, b, "password");
    }
    assert_eq!(frontend::sasl_response_data(buf), b);

    // Backend views.
    if let Ok(status) = backend::ready_for_query_status(buf) {
        assert_eq!(status.as_byte(), b[0]);
    }
    if let Ok((name, value)) = backend::parameter_status(buf) {
        assert_within(name, b, "parameter name");
        assert_within(value, b, "parameter value");
    }
    if let Ok((pid, key)) = backend::backend_key_data(buf) {
        assert_eq!(pid as u32, be_u32(b));
        assert_eq!(key as u32, be_u32(&b[4..]));
    }
    if let Ok(tag) = backend::command_tag(buf) {
        assert_within(tag, b, "command tag");
    }
    if let Ok(f) = backend::error_fields(buf) {
        assert_within(f.severity, b, "severity");
        assert_within(f.code, b, "code");
        assert_within(f.message, b, "message");
    }
    match backend::auth_request(buf) {
        Ok(AuthRequest::Md5 { salt }) => assert_eq!(&salt, &b[4..8]),
        Ok(AuthRequest::Sasl { mechanisms }) => {
            assert!(mechanisms.iter().all(|m| !m.is_empty() && within(m, b)))
        }
        Ok(AuthRequest::SaslContinue { data }) | Ok(AuthRequest::SaslFinal { data }) => {
            assert_eq!(data, &b[4..])
        }
        Ok(AuthRequest::Unsupported(code)) => {
            assert!(![0, 3, 5, 10, 11, 12].contains(&code))
        }
        _ => {}
    }
}

/// The reader loop a proxy runs over a socket: append whatever arrived,
/// then peel off every complete frame at the front of the buffer.
fn drain_frames(
    buf: &mut BytesMut,
    max: usize,
    out: &mut Vec<(FrameHeader, Vec<u8>)>,
) -> Result<(), FrameError> {
    while let Some(h) = FrameHeader::peek(buf, max)? {
        if buf.len() < h.frame_len {
            break;
        }
        let frame = buf.split_to(h.frame_len);
        out.push((h, frame.to_vec()));
    }
    Ok(())
}

/// Splits `stream` at the given cut points (deduplicated, sorted).
fn chunks<'a>(stream: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

fn build_stream(frames: &[(u8, Vec<u8>)]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let built: Vec<Vec<u8>> = frames
        .iter()
        .map(|(tag, body)| frontend::build(*tag, |b| b.put_slice(body)).to_vec())
        .collect();
    let stream = built.concat();
    (built, stream)
}

fn frames_strategy() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (
            any::<u8>(),
            prop_oneof![3 => bytes(64), 1 => bytes(2048), 1 => Just(Vec::new())],
        ),
        0..16,
    )
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// (a) Nothing panics on arbitrary bytes
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn no_function_panics_on_arbitrary_bytes(buf in any_input(), max in max_frame()) {
        exercise_everything(&buf, max);
        // Every prefix too: a parser must cope with a frame cut short.
        for end in 0..buf.len().min(24) {
            exercise_everything(&buf[..end], max);
        }
    }

    #[test]
    fn parse_options_never_panics(s in any::<String>()) {
        for (name, _) in startup::parse_options(&s) {
            prop_assert!(!name.contains('-'), "dashes in names become underscores");
        }
    }
}

// ---------------------------------------------------------------------------
// (b) Framing over a chunked stream
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn chunked_stream_yields_exactly_the_frames_sent(
        frames in frames_strategy(),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        let (built, stream) = build_stream(&frames);
        // The tightest limit that must still accept every frame.
        let max = built.iter().map(Vec::len).max().unwrap_or(HEADER_LEN);

        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in chunks(&stream, &cuts) {
            buf.extend_from_slice(chunk);
            drain_frames(&mut buf, max, &mut got).expect("valid frames rejected");
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(got.len(), frames.len());
        for ((h, raw), ((tag, body), sent)) in got.iter().zip(frames.iter().zip(&built)) {
            prop_assert_eq!(h.tag, *tag);
            prop_assert_eq!(h.body_len(), body.len());
            prop_assert_eq!(h.frame_len, sent.len());
            prop_assert_eq!(raw, sent);
            prop_assert_eq!(&raw[HEADER_LEN..], &body[..]);
        }
    }

    #[test]
    fn complete_frames_over_chunks_agrees_with_the_frames_sent(
        frames in frames_strategy(),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        let (built, stream) = build_stream(&frames);
        let mut buf: Vec<u8> = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for chunk in chunks(&stream, &cuts) {
            buf.extend_from_slice(chunk);
            let (headers, used) = complete_frames(&buf, usize::MAX).unwrap();
            let mut at = 0;
            for h in &headers {
                got.push(buf[at..at + h.frame_len].to_vec());
                at += h.frame_len;
            }
            prop_assert_eq!(at, used);
            // What is left is a proper prefix of the next frame sent.
            let rest = &buf[used..];
            if let Some(next) = built.get(got.len()) {
                prop_assert!(rest.len() < next.len() && next.starts_with(rest));
            } else {
                prop_assert!(rest.is_empty());
            }
            buf.drain(..used);
        }
        prop_assert_eq!(got, built);
    }

    #[test]
    fn byte_at_a_time_yields_exactly_the_frames_sent(frames in frames_strategy()) {
        let (built, stream) = build_stream(&frames);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &byte in &stream {
            buf.put_u8(byte);
            drain_frames(&mut buf, usize::MAX, &mut got).unwrap();
        }
        prop_assert!(buf.is_empty());
        let raws: Vec<Vec<u8>> = got.into_iter().map(|(_, raw)| raw).collect();
        prop_assert_eq!(raws, built);
    }

    #[test]
    fn limit_one_below_a_frame_stops_exactly_there(
        frames in frames_strategy(),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        let (built, stream) = build_stream(&frames);
        let Some(largest) = built.iter().map(Vec::len).max() else {
            return Ok(());
        };
        let max = largest - 1;
        let first_too_big = built.iter().position(|f| f.len() > max).unwrap();

        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut error = None;
        for chunk in chunks(&stream, &cuts) {
            buf.extend_from_slice(chunk);
            if let Err(e) = drain_frames(&mut buf, max, &mut got) {
                error = Some(e);
                break;
            }
        }
        // Every frame before the oversized one came through; the oversized
        // one was refused from its header alone.
        prop_assert_eq!(got.len(), first_too_big);
        prop_assert_eq!(
            error,
            Some(FrameError::TooLarge {
                tag: frames[first_too_big].0 as char,
                size: largest,
                limit: max,
            })
        );
    }
}

// ---------------------------------------------------------------------------
// (c) Builders round-trip through their views
// ---------------------------------------------------------------------------

/// A builder's output is one well-formed frame: the header's length covers
/// exactly the bytes written.
fn assert_one_frame(frame: &[u8], tag: u8) {
    let h = FrameHeader::peek(frame, usize::MAX).unwrap().unwrap();
    assert_eq!(h.tag, tag);
    assert_eq!(h.frame_len, frame.len());
}

#[derive(Debug, Clone)]
struct RawField {
    kind: u8,
    value: Vec<u8>,
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_round_trips(
        statement in cstr_bytes(64),
        query in cstr_bytes(256),
        param_types in bytes(64),
    ) {
        let frame = frontend::parse(&statement, &query, &param_types);
        assert_one_frame(&frame, frontend::tag::PARSE);
        let v = ParseView::new(&frame).unwrap();
        prop_assert_eq!(v.statement, &statement[..]);
        prop_assert_eq!(v.query, &query[..]);
        prop_assert_eq!(v.param_types, &param_types[..]);
    }

    #[test]
    fn renamed_bind_keeps_everything_but_the_name(
        portal in cstr_bytes(32),
        statement in cstr_bytes(32),
        rest in bytes(512),
        renamed in cstr_bytes(32),
    ) {
        let original = frontend::build(frontend::tag::BIND, |b| {
            b.put_slice(&portal);
            b.put_u8(0);
            b.put_slice(&statement);
            b.put_u8(0);
            b.put_slice(&rest);
        });
        let view = BindView::new(&original).unwrap();
        prop_assert_eq!(view.portal, &portal[..]);
        prop_assert_eq!(view.statement, &statement[..]);
        prop_assert_eq!(view.rest, &rest[..]);

        let frame = frontend::bind_renamed(&view, &renamed);
        assert_one_frame(&frame, frontend::tag::BIND);
        let again = BindView::new(&frame).unwrap();
        prop_assert_eq!(again.portal, &portal[..]);
        prop_assert_eq!(again.statement, &renamed[..]);
        prop_assert_eq!(again.rest, &rest[..]);
        prop_assert_eq!(frame.len(), original.len() - statement.len() + renamed.len());
    }

    #[test]
    fn describe_and_close_round_trip(kind in any::<u8>(), name in cstr_bytes(64)) {
        let d = frontend::describe(kind, &name);
        assert_one_frame(&d, frontend::tag::DESCRIBE);
        prop_assert_eq!(TargetView::new(&d).unwrap(), TargetView { kind, name: &name });
        let c = frontend::close(kind, &name);
        assert_one_frame(&c, frontend::tag::CLOSE);
        prop_assert_eq!(TargetView::new(&c).unwrap(), TargetView { kind, name: &name });
    }

    #[test]
    fn simple_frontend_messages_round_trip(
        text in cstr_string(128),
        secret in cstr_bytes(64),
        mechanism in cstr_string(32),
        data in bytes(128),
    ) {
        let q = frontend::query(&text);
        assert_one_frame(&q, frontend::tag::QUERY);
        prop_assert_eq!(frontend::query_text(&q).unwrap(), text.as_bytes());

        let p = frontend::password(&secret);
        assert_one_frame(&p, frontend::tag::PASSWORD);
        prop_assert_eq!(frontend::parse_password(&p).unwrap(), &secret[..]);

        let s = frontend::sasl_initial_response(&mechanism, &data);
        assert_one_frame(&s, frontend::tag::PASSWORD);
        let (m, d) = frontend::parse_sasl_initial_response(&s).unwrap();
        prop_assert_eq!(m, mechanism.as_bytes());
        prop_assert_eq!(d, &data[..]);

        let r = frontend::sasl_response(&data);
        assert_one_frame(&r, frontend::tag::PASSWORD);
        prop_assert_eq!(frontend::sasl_response_data(&r), &data[..]);
    }

    #[test]
    fn error_response_round_trips(
        fatal in any::<bool>(),
        code in cstr_string(8),
        message in cstr_string(256),
    ) {
        let severity = if fatal { Severity::Fatal } else { Severity::Error };
        let frame = backend::error_response(severity, &code, &message);
        assert_one_frame(&frame, backend::tag::ERROR_RESPONSE);
        prop_assert_eq!(
            backend::error_fields(&frame).unwrap(),
            ErrorFields {
                severity: if fatal { b"FATAL" } else { b"ERROR" },
                code: code.as_bytes(),
                message: message.as_bytes(),
            }
        );
    }

    /// Server-built ErrorResponses: fields in any order, unknown kinds,
    /// non-UTF-8 values, with or without the non-localised `V`.
    #[test]
    fn error_fields_read_any_server_error(
        fields in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(b"SVCM".to_vec()),
                    1u8..=255,
                ],
                // Real servers never send an empty field.
                prop::collection::vec(1u8..=255, 1..48),
            )
                .prop_map(|(kind, value)| RawField { kind, value }),
            0..12,
        ),
    ) {
        let frame = frontend::build(backend::tag::ERROR_RESPONSE, |b| {
            for f in &fields {
                b.put_u8(f.kind);
                b.put_slice(&f.value);
                b.put_u8(0);
            }
            b.put_u8(0);
        });
        let got = backend::error_fields(&frame).unwrap();

        let last = |kind: u8| {
            fields.iter().rev().find(|f| f.kind == kind).map(|f| &f.value[..])
        };
        // `V` (never translated) wins over `S`; without a `V`, the first `S`.
        let severity = last(b'V')
            .or_else(|| fields.iter().find(|f| f.kind == b'S').map(|f| &f.value[..]))
            .unwrap_or_default();
        prop_assert_eq!(got.severity, severity);
        prop_assert_eq!(got.code, last(b'C').unwrap_or_default());
        prop_assert_eq!(got.message, last(b'M').unwrap_or_default());
    }

    #[test]
    fn parameter_status_round_trips(
        params in prop::collection::vec((cstr_bytes(32), cstr_bytes(64)), 1..8),
    ) {
        // Several in one buffer, as a server sends them at login.
        let mut buf = BytesMut::new();
        for (name, value) in &params {
            backend::write_parameter_status(&mut buf, name, value);
        }
        let (headers, used) = complete_frames(&buf, usize::MAX).unwrap();
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(headers.len(), params.len());
        let mut at = 0;
        for (h, (name, value)) in headers.iter().zip(&params) {
            prop_assert_eq!(h.tag, backend::tag::PARAMETER_STATUS);
            let frame = &buf[at..at + h.frame_len];
            let (n, v) = backend::parameter_status(frame).unwrap();
            prop_assert_eq!(n, &name[..]);
            prop_assert_eq!(v, &value[..]);
            at += h.frame_len;
        }
    }

    #[test]
    fn authentication_messages_round_trip(
        salt in any::<[u8; 4]>(),
        mechanisms in prop::collection::vec(
            cstr_string(24).prop_filter("an empty name ends the list", |m| !m.is_empty()),
            0..4,
        ),
        data in bytes(128),
        pid in any::<i32>(),
        key in any::<i32>(),
        command in cstr_string(32),
    ) {
        let ok = backend::auth_ok();
        prop_assert_eq!(backend::auth_request(&ok).unwrap(), AuthRequest::Ok);
        let cleartext = backend::auth_cleartext();
        prop_assert_eq!(backend::auth_request(&cleartext).unwrap(), AuthRequest::Cleartext);
        let md5 = backend::auth_md5(salt);
        prop_assert_eq!(backend::auth_request(&md5).unwrap(), AuthRequest::Md5 { salt });
        let names: Vec<&str> = mechanisms.iter().map(String::as_str).collect();
        let sasl = backend::auth_sasl(&names);
        assert_one_frame(&sasl, backend::tag::AUTHENTICATION);
        prop_assert_eq!(
            backend::auth_request(&sasl).unwrap(),
            AuthRequest::Sasl { mechanisms: names.iter().map(|m| m.as_bytes()).collect() }
        );
        let cont = backend::auth_sasl_continue(&data);
        prop_assert_eq!(
            backend::auth_request(&cont).unwrap(),
            AuthRequest::SaslContinue { data: &data }
        );
        let fin = backend::auth_sasl_final(&data);
        prop_assert_eq!(
            backend::auth_request(&fin).unwrap(),
            AuthRequest::SaslFinal { data: &data }
        );
        let k = backend::backend_key_data_message(pid, key);
        assert_one_frame(&k, backend::tag::BACKEND_KEY_DATA);
        prop_assert_eq!(backend::backend_key_data(&k).unwrap(), (pid, key));
        for status in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            let z = backend::ready_for_query(status);
            prop_assert_eq!(backend::ready_for_query_status(&z).unwrap(), status);
        }
        let c = backend::command_complete(&command);
        assert_one_frame(&c, backend::tag::COMMAND_COMPLETE);
        prop_assert_eq!(backend::command_tag(&c).unwrap(), command.as_bytes());
    }

    #[test]
    fn startup_message_round_trips(
        params in prop::collection::vec(
            (
                cstr_string(24).prop_filter("an empty name ends the list", |k| !k.is_empty()),
                cstr_string(64),
            ),
            0..12,
        ),
    ) {
        let refs: Vec<(&str, &str)> =
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let packet = frontend::startup_message(&refs);
        prop_assert_eq!(be_u32(&packet) as usize, packet.len());
        match startup::initial_packet_len(&packet) {
            Ok(Some(len)) => prop_assert_eq!(len, packet.len()),
            Err(_) => prop_assert!(packet.len() > MAX_STARTUP_PACKET),
            Ok(None) => prop_assert!(false, "length prefix not read"),
        }
        prop_assert_eq!(
            startup::parse_initial_packet(&packet).unwrap(),
            InitialPacket::Startup(StartupParams { params: params.clone(), ..StartupParams::default() })
        );
    }

    #[test]
    fn any_3_x_startup_parses_and_protocol_options_are_set_apart(
        minor in any::<u16>(),
        params in prop::collection::vec(
            (
                prop_oneof![
                    cstr_string(24),
                    cstr_string(12).prop_map(|k| format!("_pq_.{k}")),
                ]
                .prop_filter("an empty name ends the list", |k| !k.is_empty()),
                cstr_string(64),
            ),
            0..12,
        ),
    ) {
        let mut packet = vec![0u8; 4];
        packet.extend_from_slice(&(startup::PROTOCOL_V3 | i32::from(minor)).to_be_bytes());
        for (k, v) in &params {
            packet.extend_from_slice(k.as_bytes());
            packet.push(0);
            packet.extend_from_slice(v.as_bytes());
            packet.push(0);
        }
        packet.push(0);
        let len = (packet.len() as u32).to_be_bytes();
        packet[..4].copy_from_slice(&len);
        let (options, plain): (Vec<_>, Vec<_>) =
            params.into_iter().partition(|(k, _)| k.starts_with("_pq_."));
        let parsed = startup::parse_initial_packet(&packet).unwrap();
        prop_assert_eq!(
            parsed,
            InitialPacket::Startup(StartupParams {
                params: plain,
                minor_version: minor,
                protocol_options: options.into_iter().map(|(k, _)| k).collect(),
            })
        );
    }

    #[test]
    fn cancel_request_round_trips(pid in any::<i32>(), key in any::<i32>()) {
        let packet = frontend::cancel_request(pid, key);
        prop_assert_eq!(startup::initial_packet_len(&packet).unwrap(), Some(packet.len()));
        prop_assert_eq!(
            startup::parse_initial_packet(&packet).unwrap(),
            InitialPacket::Cancel { process_id: pid, secret_key: key }
        );
    }
}

// ---------------------------------------------------------------------------
// (d) parse_options
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Form {
    /// `-c name=value`
    Separate,
    /// `-cname=value`
    Joined,
    /// `--name=value`
    Long,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![Just(Form::Separate), Just(Form::Joined), Just(Form::Long)]
}

fn write_setting(out: &mut String, form: Form, name: &str, value: &str) {
    match form {
        Form::Separate => out.push_str("-c "),
        Form::Joined => out.push_str("-c"),
        Form::Long => out.push_str("--"),
    }
    out.push_str(name);
    out.push('=');
    out.push_str(value);
}

/// Runs of whitespace between words, not only single spaces.
fn separator() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec![' ', '\t', '\n', '\r']), 1..4)
        .prop_map(|cs| cs.into_iter().collect())
}

fn plain_chars(exclude: &'static [char]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        any::<char>().prop_filter("plain", move |c| {
            !c.is_whitespace() && *c != '\\' && !exclude.contains(c)
        }),
        0..16,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

/// Backslash-escapes every whitespace character and backslash.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_whitespace() || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn options_round_trip(
        settings in prop::collection::vec(
            (form(), plain_chars(&['=']), plain_chars(&[]), separator()),
            0..8,
        ),
        // Words that are not switches are ignored.
        noise in prop::collection::vec(("[a-z0-9_=.]{1,8}", separator()), 0..3),
        lead in "[ \t]{0,2}",
    ) {
        let mut options = lead;
        for (word, sep) in &noise {
            options.push_str(word);
            options.push_str(sep);
        }
        let mut expected = Vec::new();
        for (form, name, value, sep) in &settings {
            write_setting(&mut options, *form, name, value);
            options.push_str(sep);
            expected.push((name.replace('-', "_"), value.clone()));
        }
        prop_assert_eq!(startup::parse_options(&options), expected);
    }

    #[test]
    fn escaped_options_round_trip(
        settings in prop::collection::vec(
            (
                form(),
                prop::collection::vec(any::<char>().prop_filter("no =", |c| *c != '='), 0..12)
                    .prop_map(|cs| cs.into_iter().collect::<String>()),
                any::<String>(),
            ),
            0..6,
        ),
    ) {
        let mut options = String::new();
        let mut expected = Vec::new();
        for (form, name, value) in &settings {
            write_setting(&mut options, *form, &escape(name), &escape(value));
            options.push(' ');
            expected.push((name.replace('-', "_"), value.clone()));
        }
        prop_assert_eq!(startup::parse_options(&options), expected);
    }
}

// ---------------------------------------------------------------------------
// (e) FrameHeader::peek
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn peek_follows_the_length_field(
        tag in any::<u8>(),
        length in prop_oneof![0u32..16, any::<u32>(), Just(u32::MAX)],
        tail in bytes(8),
        max in max_frame(),
    ) {
        let mut buf = vec![tag];
        buf.extend_from_slice(&length.to_be_bytes());
        buf.extend_from_slice(&tail);
        let got = FrameHeader::peek(&buf, max);
        let frame_len = length as u64 + 1;
        if length < 4 {
            prop_assert_eq!(got, Err(FrameError::BadLength { tag: tag as char, length }));
        } else if frame_len > max as u64 {
            prop_assert_eq!(
                got,
                Err(FrameError::TooLarge { tag: tag as char, size: frame_len as usize, limit: max })
            );
        } else {
            let h = got.unwrap().unwrap();
            prop_assert_eq!(h.tag, tag);
            prop_assert_eq!(h.frame_len as u64, frame_len);
            prop_assert!(h.frame_len >= HEADER_LEN);
            prop_assert!(h.frame_len <= max);
            prop_assert_eq!(h.body_len(), length as usize - 4);
        }
        // Fewer than five bytes is never an answer either way.
        for end in 0..HEADER_LEN {
            prop_assert_eq!(FrameHeader::peek(&buf[..end], max), Ok(None));
        }
    }

    #[test]
    fn peek_on_arbitrary_bytes(buf in bytes(16), max in max_frame()) {
        match FrameHeader::peek(&buf, max) {
            Ok(None) => prop_assert!(buf.len() < HEADER_LEN),
            Ok(Some(h)) => {
                prop_assert!(h.frame_len >= HEADER_LEN);
                prop_assert!(h.frame_len <= max);
                prop_assert_eq!(h.tag, buf[0]);
                prop_assert_eq!(h.frame_len, be_u32(&buf[1..]) as usize + 1);
            }
            Err(FrameError::BadLength { length, .. }) => {
                prop_assert!(length < 4);
                prop_assert_eq!(length, be_u32(&buf[1..]));
            }
            Err(FrameError::TooLarge { size, limit, .. }) => {
                prop_assert!(size > limit);
                prop_assert_eq!(limit, max);
                prop_assert!(be_u32(&buf[1..]) >= 4);
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}
