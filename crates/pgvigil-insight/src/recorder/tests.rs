use std::sync::Mutex;

use super::*;
use crate::{Crossing, InsightConfig, SortBy, Watcher};

fn recorder(insight: &Arc<Insight>) -> Recorder {
    let session = SessionInfo {
        database: "db".into(),
        user: "app".into(),
        application_name: String::new(),
        client_addr: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    Recorder::new(insight.clone(), Arc::new(session), 0)
}

const DONE: Outcome = Outcome::Completed { rows: 1 };

/// Parse, Bind and Execute of an unnamed statement, and its completion
/// `took_us` later.
fn run_unnamed_for(r: &mut Recorder, sql: &str, bind: &[u8], took_us: u64) {
    r.prepare(b"", sql.as_bytes());
    r.bind(b"", b"", bind);
    let start = r.last_completion_ns + 1_000;
    let mut tracked = r
        .begin_execute(b"", start)
        .expect("the unnamed portal is bound");
    r.complete(&mut tracked, DONE, start + took_us * 1_000);
}

fn run_unnamed(r: &mut Recorder, sql: &str) {
    run_unnamed_for(r, sql, b"\0\0\0\0\0\0", 10);
}

/// A simple Query and its completion `took_us` later.
fn run_query_for(r: &mut Recorder, sql: &str, took_us: u64) {
    let start = r.last_completion_ns + 1_000;
    let mut tracked = r.begin_query(sql.as_bytes(), start).expect("a statement");
    r.complete(&mut tracked, DONE, start + took_us * 1_000);
}

fn run_query(r: &mut Recorder, sql: &str) {
    run_query_for(r, sql, 10);
}

fn calls_by_text(insight: &Insight) -> Vec<(String, u64)> {
    insight.flush(0);
    let mut rows: Vec<_> = insight
        .queries(SortBy::Calls, 10, None, 0)
        .into_iter()
        .map(|r| (r.query, r.calls))
        .collect();
    rows.sort();
    rows
}

#[derive(Default)]
struct Heard {
    new: Mutex<Vec<String>>,
    crossed: Mutex<Vec<(u64, Crossing)>>,
}

impl Watcher for Heard {
    fn new_fingerprint(&self, info: &StatementInfo) {
        self.new.lock().unwrap().push(info.query.clone());
    }
    fn crossed(&self, fingerprint: u64, crossing: Crossing) {
        self.crossed.lock().unwrap().push((fingerprint, crossing));
    }
}

#[test]
fn unnamed_statements_count_under_their_own_text_when_texts_alternate() {
    let insight = Arc::new(Insight::new(InsightConfig::default()));
    let mut r = recorder(&insight);
    for sql in [
        "SELECT 1 FROM alternate_a",
        "SELECT 1 FROM alternate_a",
        "SELECT 2 FROM alternate_b",
        "SELECT 3 FROM alternate_a",
    ] {
        run_unnamed(&mut r, sql);
    }
    assert_eq!(
        calls_by_text(&insight),
        [
            ("SELECT $1 FROM alternate_a".to_string(), 3),
            ("SELECT $1 FROM alternate_b".to_string(), 1)
        ]
    );
}

#[test]
fn watchers_hear_of_a_fingerprint_once_per_insight_for_all_sessions_of_a_thread() {
    let first = Arc::new(Insight::new(InsightConfig::default()));
    let heard = Arc::new(Heard::default());
    first.watch(heard.clone());
    let (mut a, mut b) = (recorder(&first), recorder(&first));
    run_unnamed(&mut a, "SELECT 1 FROM registered_once");
    run_unnamed(&mut b, "SELECT 1 FROM registered_once");
    assert_eq!(
        *heard.new.lock().unwrap(),
        ["SELECT $1 FROM registered_once"]
    );
    // Another insight instance on the same thread knows nothing yet:
    // its text must reach it too.
    let second = Arc::new(Insight::new(InsightConfig::default()));
    let heard_second = Arc::new(Heard::default());
    second.watch(heard_second.clone());
    run_unnamed(&mut recorder(&second), "SELECT 1 FROM registered_once");
    assert_eq!(heard_second.new.lock().unwrap().len(), 1);
    assert_eq!(
        calls_by_text(&second),
        [("SELECT $1 FROM registered_once".to_string(), 1)]
    );
}

#[test]
fn a_threshold_crossing_is_heard_once_at_the_flush_after_it() {
    let insight = Arc::new(Insight::new(InsightConfig {
        watch_slow_us: 50_000,
        watch_total_us: 120_000,
        ..InsightConfig::default()
    }));
    let heard = Arc::new(Heard::default());
    insight.watch(heard.clone());
    let mut r = recorder(&insight);
    run_query_for(&mut r, "SELECT * FROM crossing WHERE id = 1", 10_000);
    insight.flush(0);
    assert!(heard.crossed.lock().unwrap().is_empty());
    for _ in 0..3 {
        run_query_for(&mut r, "SELECT * FROM crossing WHERE id = 2", 60_000);
    }
    assert!(
        heard.crossed.lock().unwrap().is_empty(),
        "not before a flush"
    );
    insight.flush(0);
    let crossed: Vec<Crossing> = heard.crossed.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(
        crossed,
        [
            Crossing::SlowExecution {
                duration_us: 60_000
            },
            Crossing::TotalTime { total_us: 130_000 }
        ]
    );
}

#[test]
fn parameter_samples_are_kept_only_when_asked_for_and_only_for_slow_statements() {
    for capture in [false, true] {
        let insight = Arc::new(Insight::new(InsightConfig {
            capture_parameters: capture,
            watch_slow_us: 50_000,
            ..InsightConfig::default()
        }));
        let mut r = recorder(&insight);
        run_query_for(&mut r, "SELECT * FROM sampled WHERE id = 41", 1_000);
        // The slow one is the second of a string: its own span is kept.
        let mut t = r
            .begin_query(b"SELECT 1; SELECT * FROM sampled WHERE id = 42", 0)
            .unwrap();
        r.complete(&mut t, DONE, 1_000_000);
        r.complete(&mut t, DONE, 91_000_000);
        // No format codes (all text), one value "7".
        let bind = [0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0];
        run_unnamed_for(
            &mut r,
            "SELECT * FROM sampled WHERE code = $1",
            &bind,
            90_000,
        );
        let fps: Vec<u64> = {
            insight.flush(0);
            let mut rows = insight.queries(SortBy::Calls, 10, None, 0);
            rows.sort_by(|a, b| a.query.cmp(&b.query));
            assert_eq!(rows.len(), 3);
            rows.iter().map(|r| r.fingerprint).collect()
        };
        let samples: Vec<_> = fps.iter().filter_map(|fp| insight.sample(*fp)).collect();
        if capture {
            assert_eq!(
                samples,
                [
                    ParameterSample::Bound(vec![Some("7".into())]),
                    ParameterSample::Statement("SELECT * FROM sampled WHERE id = 42".into()),
                ]
            );
        } else {
            assert!(samples.is_empty(), "{samples:?}");
        }
    }
}

/// What the N+1 detector made of a parent SELECT followed by what
/// `lookups` runs, in one session.
fn detected(table: &str, lookups: impl FnOnce(&mut Recorder)) -> Vec<(Pattern, usize)> {
    let insight = Arc::new(Insight::new(InsightConfig::default()));
    let mut r = recorder(&insight);
    run_query(&mut r, &format!("SELECT id FROM {table}_parent"));
    lookups(&mut r);
    r.finish();
    insight
        .detections()
        .into_iter()
        .map(|d| (d.pattern, d.repeats))
        .collect()
}

/// Six lookups with these inline ids, through the simple protocol.
fn lookups_with_inline_ids(table: &str, ids: [u32; 6]) -> Vec<(Pattern, usize)> {
    detected(table, |r| {
        for id in ids {
            run_query(r, &format!("SELECT * FROM {table} WHERE parent_id = {id}"));
        }
    })
}

/// Texts of one shape after the first are answered by the shape's
/// shared example; each must still carry its own constants' hash, or
/// a loop over ids would look like one query retried.
#[test]
fn inline_ids_of_a_shared_shape_keep_their_own_values() {
    let parent = lookups_with_inline_ids("shape_loop", [1, 2, 3, 4, 5, 6]);
    assert!(
        matches!(parent.as_slice(), [(Pattern::NPlusOne { .. }, 6)]),
        "{parent:?}"
    );
    let same = lookups_with_inline_ids("shape_retry", [7; 6]);
    assert!(
        matches!(same.as_slice(), [(Pattern::RepeatedIdentical, 6)]),
        "{same:?}"
    );
}

/// One prepared lookup executed six times with these ids bound as
/// text parameters.
fn lookups_with_bound_ids(table: &str, ids: [u32; 6]) -> Vec<(Pattern, usize)> {
    detected(table, |r| {
        let sql = format!("SELECT * FROM {table} WHERE parent_id = $1");
        r.prepare(b"lookup", sql.as_bytes());
        for id in ids {
            let value = id.to_string();
            // No format codes, one parameter, no result format codes.
            let mut rest = vec![0, 0, 0, 1];
            rest.extend_from_slice(&(value.len() as i32).to_be_bytes());
            rest.extend_from_slice(value.as_bytes());
            rest.extend_from_slice(&[0, 0]);
            r.bind(b"", b"lookup", &rest);
            let start = r.last_completion_ns + 1_000;
            let mut tracked = r.begin_execute(b"", start).expect("the portal is bound");
            r.complete(&mut tracked, DONE, start + 10_000);
        }
    })
}

#[test]
fn bound_parameters_tell_a_loop_from_a_retry() {
    let differing = lookups_with_bound_ids("bound_loop", [11, 12, 13, 14, 15, 16]);
    assert!(
        matches!(differing.as_slice(), [(Pattern::NPlusOne { .. }, 6)]),
        "{differing:?}"
    );
    let same = lookups_with_bound_ids("bound_retry", [9; 6]);
    assert!(
        matches!(same.as_slice(), [(Pattern::RepeatedIdentical, 6)]),
        "{same:?}"
    );
}

#[test]
fn a_pipelined_statement_is_timed_from_the_previous_completion() {
    let insight = Arc::new(Insight::new(InsightConfig::default()));
    let mut r = recorder(&insight);
    // Both sent at t=0; the first completes at 5 ms, the second at 7 ms.
    let mut a = r.begin_query(b"SELECT 1 FROM pipelined_a", 0).unwrap();
    let mut b = r.begin_query(b"SELECT 1 FROM pipelined_b", 0).unwrap();
    r.complete(&mut a, DONE, 5_000_000);
    r.complete(&mut b, DONE, 7_000_000);
    insight.flush(0);
    let mut rows = insight.queries(SortBy::Calls, 10, None, 0);
    rows.sort_by(|x, y| x.query.cmp(&y.query));
    let took: Vec<f64> = rows.iter().map(|r| r.total_ms).collect();
    assert_eq!(took, [5.0, 2.0]);
}

#[test]
fn an_error_skips_the_rest_of_a_multi_statement_string() {
    let insight = Arc::new(Insight::new(InsightConfig::default()));
    let mut r = recorder(&insight);
    let mut t = r
        .begin_query(b"SELECT 1 FROM multi_a; SELECT 1 FROM multi_b", 0)
        .unwrap();
    r.complete(&mut t, Outcome::Failed(*b"42P01"), 1_000);
    r.complete(&mut t, DONE, 2_000);
    insight.flush(0);
    let rows = insight.queries(SortBy::Calls, 10, None, 0);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].query.as_str(), rows[0].errors),
        ("SELECT $1 FROM multi_a", 1)
    );
}
