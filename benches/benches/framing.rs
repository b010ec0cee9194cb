//! Cost of walking frame headers, what the proxy does for every message it
//! forwards, against the decoding it does only for the few types it reads.
//!
//! `cargo bench -p pgvigil-benches --bench framing`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgvigil_wire::frontend::{self, BindView};
use pgvigil_wire::FrameHeader;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");

    // A pgbench -M prepared round: Bind, Execute, Sync; repeated.
    let bind = frontend::build(b'B', |b| {
        b.extend_from_slice(b"\0P_0\0\0\0\0\x01\0\0\0\x0512345\0\0");
    });
    let execute = frontend::build(b'E', |b| b.extend_from_slice(b"\0\0\0\0\0"));
    let sync = frontend::sync();
    let mut stream = Vec::new();
    for _ in 0..100 {
        stream.extend_from_slice(&bind);
        stream.extend_from_slice(&execute);
        stream.extend_from_slice(&sync);
    }
    g.throughput(Throughput::Elements(300));
    g.bench_function("walk_300_headers", |b| {
        b.iter(|| {
            let buf = black_box(&stream[..]);
            let mut at = 0;
            let mut frames = 0;
            while let Ok(Some(h)) = FrameHeader::peek(&buf[at..], 1 << 20) {
                at += h.frame_len;
                frames += 1;
            }
            frames
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("bind_view", |b| {
        b.iter(|| BindView::new(black_box(&bind)).map(|v| v.statement.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
