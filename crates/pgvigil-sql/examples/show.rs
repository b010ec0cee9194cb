fn main() {
    let sql = std::env::args().nth(1).unwrap_or_default();
    for s in pgvigil_sql::normalize(sql.as_bytes()) {
        println!(
            "{} {:?} {:?} consts={:?} tags={:?} span={:?}",
            s.fingerprint,
            s.kind.as_str(),
            s.text,
            s.constants
                .iter()
                .map(|r| &sql[r.clone()])
                .collect::<Vec<_>>(),
            s.tags,
            s.span
        );
    }
}
