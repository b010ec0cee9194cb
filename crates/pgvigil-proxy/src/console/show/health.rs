//! SHOW HEALTH: each database's latest health sample, one finding per
//! row (check, subject, value, detail), so a new kind of finding is a new
//! row rather than a new column, and `grep`/`awk` read it as well as psql.

use super::{Cell, Kind, Table};
use crate::Shared;

pub(super) fn health(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Kind::Text),
        ("check", Kind::Text),
        ("subject", Kind::Text),
        ("value", Kind::Float),
        ("detail", Kind::Text),
    ]);
    let Some(board) = &shared.health else {
        return t;
    };
    for s in board.samples() {
        let db = s.database.as_str();
        let mut row = |check: &str, subject: String, value: Option<f64>, detail: String| {
            t.push(vec![
                db.into(),
                check.into(),
                subject.into(),
                Cell::from(value),
                detail.into(),
            ]);
        };
        row("sampled_at", String::new(), None, s.sampled_at.clone());
        row(
            "cache_hit_ratio",
            String::new(),
            s.cache_hit_ratio,
            String::new(),
        );
        row(
            "index_hit_ratio",
            String::new(),
            s.index_hit_ratio,
            String::new(),
        );
        row(
            "database_size_bytes",
            String::new(),
            s.database_size_bytes.map(|b| b as f64),
            String::new(),
        );
        for (state, n) in &s.connections {
            row("connections", state.clone(), Some(*n as f64), String::new());
        }
        for l in &s.long_transactions {
            row(
                "long_transaction",
                l.pid.to_string(),
                Some(l.duration_s),
                format!(
                    "user={} application_name={} state={}{}",
                    l.user.as_deref().unwrap_or(""),
                    l.application_name.as_deref().unwrap_or(""),
                    l.state.as_deref().unwrap_or(""),
                    wait(l.wait_event_type.as_deref(), l.wait_event.as_deref()),
                ),
            );
        }
        for b in &s.blocked {
            let by: Vec<String> = b.blocked_by.iter().map(|p| p.to_string()).collect();
            row(
                "blocked",
                b.pid.to_string(),
                Some(b.waiting_s),
                format!(
                    "blocked_by={} user={} application_name={}{}",
                    by.join(","),
                    b.user.as_deref().unwrap_or(""),
                    b.application_name.as_deref().unwrap_or(""),
                    wait(b.wait_event_type.as_deref(), b.wait_event.as_deref()),
                ),
            );
        }
        for tb in &s.tables {
            row(
                "dead_tuples",
                tb.table.clone(),
                Some(tb.dead_tuples as f64),
                format!(
                    "live_tuples={} bloat_ratio={:.2} last_autovacuum={}{}",
                    tb.live_tuples,
                    tb.bloat_ratio,
                    tb.last_autovacuum.as_deref().unwrap_or("never"),
                    if tb.autovacuum_due {
                        " autovacuum_due"
                    } else {
                        ""
                    }
                ),
            );
        }
        for a in &s.hygiene {
            row(a.kind.as_str(), a.table.clone(), None, a.ddl.clone());
        }
        for e in &s.errors {
            row("error", String::new(), None, e.clone());
        }
    }
    t
}

fn wait(kind: Option<&str>, event: Option<&str>) -> String {
    match (kind, event) {
        (Some(k), Some(e)) => format!(" wait_event={k}:{e}"),
        _ => String::new(),
    }
}
