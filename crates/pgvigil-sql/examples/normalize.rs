//! Prints what pgvigil makes of SQL text, one line per statement:
//! fingerprint, kind, normalized text, constants and tags.
//!
//! `cargo run -p pgvigil-sql --example normalize -- "SELECT * FROM t WHERE id IN (1, 2)"`
//! (or the SQL on standard input).

use std::io::Read;

fn main() {
    let mut sql: Vec<u8> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_encoded_bytes())
        .collect::<Vec<_>>()
        .join(&b' ');
    if sql.is_empty() {
        if let Err(e) = std::io::stdin().read_to_end(&mut sql) {
            eprintln!("reading standard input: {e}");
            std::process::exit(1);
        }
    }
    for s in pgvigil_sql::normalize(&sql) {
        let constants: Vec<String> = s
            .constants
            .iter()
            .map(|r| String::from_utf8_lossy(sql.get(r.clone()).unwrap_or_default()).into_owned())
            .collect();
        println!(
            "{} {:<16} {}\n    constants={constants:?} tags={:?} span={:?}",
            s.fingerprint, s.kind, s.text, s.tags, s.span
        );
    }
}
