//! `normalize` on arbitrary bytes: it must never panic, and what it returns
//! must describe the input (spans and constants inside it, in order).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgvigil_sql::{normalize, Fingerprint, NormalizeCache};

fuzz_target!(|data: &[u8]| {
    let statements = normalize(data);
    let mut last_end = 0;
    for s in &statements {
        assert!(s.span.start >= last_end, "statements overlap");
        assert!(s.span.start < s.span.end && s.span.end <= data.len());
        let mut last_constant = s.span.start;
        for c in &s.constants {
            assert!(c.start >= last_constant && c.start < c.end && c.end <= s.span.end);
            last_constant = c.end;
        }
        assert!(!s.text.is_empty());
        let printed = s.fingerprint.to_string();
        assert_eq!(printed.parse::<Fingerprint>().ok(), Some(s.fingerprint));
        last_end = s.span.end;
    }
    // Deterministic, and the cache hands back the same result.
    assert_eq!(normalize(data), statements);
    let mut cache = NormalizeCache::new(2);
    assert_eq!(&*cache.get_or_normalize(data), &statements[..]);
    assert_eq!(&*cache.get_or_normalize(data), &statements[..]);
});
