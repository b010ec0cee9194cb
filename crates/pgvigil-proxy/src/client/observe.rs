//! What one session tells query insight: each statement's fingerprint,
//! duration, rows and outcome, its slow executions, and its N+1 loops.
//!
//! The session calls in at the points where it already decodes messages
//! (Query, Parse, Bind, Execute, and the replies that complete them), so
//! observing adds no decoding of its own beyond CommandComplete tags.
//! Normalization is cached per runtime thread by SQL text and by shape,
//! and per session by statement name for prepared statements, so a
//! Bind/Execute of a known statement costs a map lookup.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pgvigil_insight::{
    Execution, Insight, NPlusOneDetector, Observed, Pattern, SeenBy, SlowContext, SlowEvent,
    StatementInfo,
};
use pgvigil_sql::{NormalizeCache, NormalizedStatement, ShapeCache, StatementKind};
use pgvigil_wire::backend::{self, tag as be, TransactionStatus};
use tokio::sync::mpsc;

use crate::clock::MonoTime;
use crate::prepared::{FastHash, FastMap};

/// Distinct SQL texts each thread keeps normalized, for all its sessions:
/// each entry holds the text and its normalized form (~400 bytes). Texts
/// with inline literals are all distinct and are not kept (the shape
/// cache answers them).
const THREAD_TEXTS: usize = 2048;
/// Fingerprints each thread remembers having registered with insight.
const THREAD_REGISTERED: usize = 16384;
/// Statement shapes (texts that differ only in literal values) each
/// thread keeps normalized, for all its sessions: about 1 KiB each.
const THREAD_SHAPES: usize = 512;
/// Longest unnamed statement a session keeps the text of (see
/// `Observer::last_unnamed`).
const LAST_UNNAMED_TEXT: usize = 2048;

/// The normalization caches of one runtime thread.
struct ThreadNormalizer {
    /// Texts seen before, by any session of the thread: a thousand
    /// sessions running the same ORM statements share one entry each,
    /// which stays warm in the CPU's caches, where a cache per session
    /// held a copy per session.
    texts: NormalizeCache,
    /// An app that inlines values sends a new text per query, and
    /// normalizing it from its shape costs a lex and a compare instead of
    /// a full pass.
    shapes: ShapeCache,
    /// Fingerprints whose text insight already has: registering costs a
    /// lookup in a shared map and a copy of the text. One set for the
    /// thread's sessions, so it stays warm where a set per session went
    /// cold between two of its statements (and took up to 64 KiB each).
    registered: HashSet<u64, FastHash>,
    /// The insight instance (`Insight::id`) `registered` is about.
    registered_with: u64,
    /// Constants hashes of the latest text answered by a shape's example
    /// (`NormalizeCache::get_or_normalize_example`), kept for its buffer.
    hashes: Vec<u64>,
}

thread_local! {
    /// Shared by the sessions of a runtime thread, so no lock.
    static NORMALIZER: RefCell<ThreadNormalizer> = RefCell::new(ThreadNormalizer {
        texts: NormalizeCache::new(THREAD_TEXTS),
        shapes: ShapeCache::new(THREAD_SHAPES).without_constant_places(),
        registered: HashSet::default(),
        registered_with: 0,
        hashes: Vec::new(),
    });
}

type Statements = Arc<[NormalizedStatement]>;
/// A bound portal: its statements, a hash of its parameters, and the
/// parameters themselves when `log_parameters` is on.
type Portal = (Statements, u64, Option<String>);

/// A new fingerprint's normalized text, for the lint worker: the raw
/// text would hand literals (passwords in `ALTER ROLE`) to a parser that
/// may log what it parses.
pub(crate) type LintJob = (u64, String);

/// The constants hashes of a tracked text whose statements are a shape's
/// example (`ShapeCache::known_example`): the example's own hashes are
/// another text's. Apps that inline values send a new text per query,
/// and sharing the example costs less than building a result for each.
#[derive(Debug)]
enum Values {
    /// The statements' own hashes are this text's.
    Own,
    One(u64),
    Many(Box<[u64]>),
}

impl Values {
    fn from_hashes(hashes: &[u64]) -> Self {
        match hashes {
            [] => Values::Own,
            [one] => Values::One(*one),
            many => Values::Many(many.into()),
        }
    }

    /// The constants hash of statement `i`, which is `s`.
    fn of(&self, i: usize, s: &NormalizedStatement) -> u64 {
        match self {
            Values::One(h) if i == 0 => *h,
            Values::Many(h) => h.get(i).copied().unwrap_or(s.constants_hash),
            _ => s.constants_hash,
        }
    }
}

/// One statement of a tracked request, completed.
struct Completed {
    started: MonoTime,
    duration_us: u64,
    rows: u64,
    sqlstate: Option<[u8; 5]>,
    /// Of this execution's text (see `Values`).
    constants_hash: u64,
}

/// A request whose statements are being timed.
#[derive(Debug)]
pub(crate) struct Tracked {
    statements: Statements,
    values: Values,
    /// Index of the statement the next completion belongs to.
    next: usize,
    params_hash: u64,
    /// Bind parameters, only when `log_parameters` is on.
    parameters: Option<String>,
    /// The original text, only when `log_parameters` is on.
    raw: Option<Arc<[u8]>>,
    started: MonoTime,
}

pub(crate) struct Observer {
    insight: Arc<Insight>,
    lint: mpsc::Sender<LintJob>,
    named: FastMap<Vec<u8>, Statements>,
    unnamed: Option<Statements>,
    /// The latest unnamed Parse's text and statements. Drivers send the
    /// same few texts as unnamed statements over and over, and comparing
    /// with the last one costs less than hashing it for the thread's
    /// cache.
    last_unnamed: Option<(Vec<u8>, Statements)>,
    /// The unnamed portal, by far the most used, outside the map.
    unnamed_portal: Option<Portal>,
    portals: FastMap<Vec<u8>, Portal>,
    caller: u32,
    database: Arc<str>,
    user: Arc<str>,
    application_name: String,
    client_addr: String,
    detector: NPlusOneDetector,
    in_transaction: bool,
    epoch: MonoTime,
    /// When the previous statement completed: a pipelined statement's
    /// time starts there, not when it was sent.
    last_completion: MonoTime,
}

impl Observer {
    pub(crate) fn new(
        insight: Arc<Insight>,
        lint: mpsc::Sender<LintJob>,
        database: &str,
        user: &str,
        application_name: &str,
        client_addr: String,
    ) -> Observer {
        let caller = insight.caller(database, user, application_name);
        let detector = NPlusOneDetector::new(insight.config().n_plus_one);
        let now = MonoTime::now();
        Observer {
            insight,
            lint,
            named: FastMap::default(),
            unnamed: None,
            last_unnamed: None,
            unnamed_portal: None,
            portals: FastMap::default(),
            caller,
            database: database.into(),
            user: user.into(),
            application_name: application_name.to_string(),
            client_addr,
            detector,
            in_transaction: false,
            epoch: now,
            last_completion: now,
        }
    }

    /// application_name changed (SET application_name, or a reset).
    pub(crate) fn set_application_name(&mut self, name: &str) {
        if self.application_name != name {
            self.application_name = name.to_string();
            self.caller = self
                .insight
                .caller(&self.database, &self.user, &self.application_name);
        }
    }

    fn normalize(&mut self, sql: &[u8]) -> Statements {
        self.normalize_as(sql, false).0
    }

    /// `normalize`, or with `example` a shape's example and the text's
    /// own constants hashes (see `Values`): for texts whose statements'
    /// spans and constants' places are never read.
    fn normalize_as(&mut self, sql: &[u8], example: bool) -> (Statements, Values) {
        let (statements, values, unregistered) = NORMALIZER.with(|n| {
            let n = &mut *n.borrow_mut();
            if n.registered_with != self.insight.id() {
                n.registered.clear();
                n.registered_with = self.insight.id();
            }
            let (statements, values) = if example {
                let statements =
                    n.texts
                        .get_or_normalize_example(sql, &mut n.shapes, &mut n.hashes);
                (statements, Values::from_hashes(&n.hashes))
            } else {
                let statements = n.texts.get_or_normalize_with(sql, &mut n.shapes);
                (statements, Values::Own)
            };
            let unregistered = statements
                .iter()
                .any(|s| !n.registered.contains(&s.fingerprint.0));
            (statements, values, unregistered)
        });
        if unregistered {
            self.register(&statements);
        }
        (statements, values)
    }

    /// Tells insight the texts of fingerprints this thread has not
    /// registered yet; a fingerprint new to insight is queued for lint.
    fn register(&self, statements: &[NormalizedStatement]) {
        for s in statements {
            let fp = s.fingerprint.0;
            let first = NORMALIZER.with(|n| {
                let registered = &mut n.borrow_mut().registered;
                if registered.len() >= THREAD_REGISTERED {
                    registered.clear();
                }
                registered.insert(fp)
            });
            if !first {
                continue;
            }
            let info = Arc::new(StatementInfo {
                fingerprint: fp,
                query: s.text.to_string(),
                kind: s.kind.as_str().to_string(),
            });
            if self.insight.register(info) {
                // Lint is best effort: a full queue only loses the lint.
                let job = (fp, s.text.to_string());
                if self.lint.try_send(job).is_err() {
                    self.insight.count_lint_dropped();
                }
            }
        }
    }

    pub(crate) fn track_query(&mut self, text: &[u8]) -> Option<Tracked> {
        // Logging parameters cuts each statement's text at its span, so
        // the statements must be this text's own.
        let log = self.insight.config().log_parameters;
        let (statements, values) = self.normalize_as(text, !log);
        if statements.is_empty() {
            return None;
        }
        Some(Tracked {
            statements,
            values,
            next: 0,
            params_hash: 0,
            parameters: None,
            raw: log.then(|| Arc::from(text)),
            started: MonoTime::now(),
        })
    }

    pub(crate) fn on_parse(&mut self, name: &[u8], query: &[u8]) {
        if !name.is_empty() {
            let statements = self.normalize(query);
            self.named.insert(name.to_vec(), statements);
            return;
        }
        if let Some((text, statements)) = &self.last_unnamed {
            if text.as_slice() == query {
                self.unnamed = Some(statements.clone());
                return;
            }
        }
        let statements = self.normalize(query);
        if query.len() <= LAST_UNNAMED_TEXT {
            let (text, kept) = self
                .last_unnamed
                .get_or_insert_with(|| (Vec::new(), statements.clone()));
            text.clear();
            text.extend_from_slice(query);
            *kept = statements.clone();
        } else {
            self.last_unnamed = None;
        }
        self.unnamed = Some(statements);
    }

    pub(crate) fn on_bind(&mut self, portal: &[u8], statement: &[u8], rest: &[u8]) {
        let statements = if statement.is_empty() {
            self.unnamed.clone()
        } else {
            self.named.get(statement).cloned()
        };
        let Some(statements) = statements else {
            return;
        };
        let parameters = self
            .insight
            .config()
            .log_parameters
            .then(|| render_bind_parameters(rest));
        let entry = (statements, params_hash(rest), parameters);
        if portal.is_empty() {
            self.unnamed_portal = Some(entry);
        } else {
            self.portals.insert(portal.to_vec(), entry);
        }
    }

    pub(crate) fn on_close_statement(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }

    pub(crate) fn forget_statements(&mut self) {
        self.named.clear();
        self.unnamed = None;
        self.unnamed_portal = None;
        self.portals.clear();
    }

    pub(crate) fn track_execute(&mut self, portal: &[u8]) -> Option<Tracked> {
        let (statements, params_hash, parameters) = if portal.is_empty() {
            self.unnamed_portal.as_ref()?
        } else {
            self.portals.get(portal)?
        };
        Some(Tracked {
            statements: statements.clone(),
            values: Values::Own,
            next: 0,
            params_hash: *params_hash,
            parameters: parameters.clone(),
            raw: None,
            started: MonoTime::now(),
        })
    }

    /// A reply arrived for a tracked request. Returns nothing; records
    /// each statement it completes.
    pub(crate) fn on_reply(&mut self, tracked: &mut Tracked, tag: u8, frame: Option<&[u8]>) {
        let (rows, sqlstate) = match tag {
            be::COMMAND_COMPLETE => (frame.map_or(0, rows_of), None),
            be::EMPTY_QUERY_RESPONSE | be::PORTAL_SUSPENDED => (0, None),
            be::ERROR_RESPONSE => {
                let code = frame
                    .and_then(|f| backend::error_fields(f).ok())
                    .and_then(|f| <[u8; 5]>::try_from(f.code).ok())
                    .unwrap_or(*b"XX000");
                (0, Some(code))
            }
            _ => return,
        };
        let at = tracked.next;
        if at >= tracked.statements.len() {
            return;
        }
        let now = MonoTime::now();
        let started = tracked.started.max(self.last_completion);
        let duration_us = now.micros_since(started);
        self.last_completion = now;
        tracked.started = now;
        // After an error PostgreSQL skips the rest of a multi-statement
        // string; a portal's later completions (PortalSuspended then
        // CommandComplete) belong to the same statement.
        if sqlstate.is_some() {
            tracked.next = tracked.statements.len();
        } else if tag != be::PORTAL_SUSPENDED && tracked.statements.len() > 1 {
            tracked.next += 1;
        }
        let tracked = &*tracked;
        let statement = &tracked.statements[at];
        let constants_hash = tracked.values.of(at, statement);
        let completed = Completed {
            started,
            duration_us,
            rows,
            sqlstate,
            constants_hash,
        };
        self.record(statement, tracked, completed);
    }

    fn record(&mut self, s: &NormalizedStatement, tracked: &Tracked, done: Completed) {
        let Completed {
            started,
            duration_us,
            rows,
            sqlstate,
            constants_hash,
        } = done;
        let fingerprint = s.fingerprint.0;
        self.insight.record(Execution {
            fingerprint,
            duration_us,
            rows,
            sqlstate,
            caller: self.caller,
        });
        if matches!(s.kind, StatementKind::Ddl(_)) || !s.tags.is_empty() {
            let kind = s.kind.as_str();
            let ok = sqlstate.is_none();
            self.insight
                .note_statement(kind, &s.text, &s.tags, ok, unix_ms());
        }
        let rules = &self.insight.config().slow_rules;
        if rules.could_be_slow(duration_us) {
            self.check_slow(s, tracked, duration_us);
        }
        let before = self.in_transaction;
        let after = match s.kind {
            StatementKind::Transaction("BEGIN" | "START TRANSACTION") => true,
            StatementKind::Transaction("COMMIT" | "ROLLBACK") => false,
            _ => before,
        };
        self.in_transaction = after;
        let params_hash = if tracked.params_hash != 0 {
            tracked.params_hash
        } else {
            constants_hash
        };
        let observed = Observed {
            fingerprint,
            is_select: s.kind == StatementKind::Select,
            params_hash,
            started_us: started.micros_since(self.epoch),
            duration_us,
            in_transaction_before: before,
            in_transaction_after: after,
        };
        let found = self.detector.observe(&observed);
        self.report(found, &s.tags);
    }

    fn check_slow(&self, s: &NormalizedStatement, tracked: &Tracked, duration_us: u64) {
        let tables = self
            .insight
            .annotation(s.fingerprint.0)
            .map(|a| a.tables.clone())
            .unwrap_or_default();
        let context = SlowContext {
            fingerprint: s.fingerprint.0,
            statement: s.kind.as_str(),
            tables: &tables,
            database: &self.database,
            user: &self.user,
            application_name: &self.application_name,
            query: &s.text,
        };
        let Some(rule) = self
            .insight
            .config()
            .slow_rules
            .classify(duration_us, &context)
        else {
            return;
        };
        let parameters = if self.insight.config().log_parameters {
            tracked.parameters.clone().or_else(|| {
                tracked
                    .raw
                    .as_ref()
                    .and_then(|raw| raw.get(s.span.clone()))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
        } else {
            None
        };
        let event = SlowEvent {
            at_ms: unix_ms(),
            rule: rule.to_string(),
            fingerprint: s.fingerprint.0,
            query: s.text.to_string(),
            duration_us,
            database: self.database.to_string(),
            user: self.user.to_string(),
            application_name: self.application_name.clone(),
            client_addr: self.client_addr.clone(),
            tags: s.tags.clone(),
            parameters,
        };
        tracing::warn!(
            target: "pgvigil::slow_query",
            rule = %event.rule,
            fingerprint = %s.fingerprint,
            duration_ms = duration_us as f64 / 1000.0,
            database = %event.database,
            user = %event.user,
            application_name = %event.application_name,
            client_addr = %event.client_addr,
            tags = ?event.tags,
            query = %event.query,
            parameters = ?event.parameters,
            "slow query"
        );
        self.insight.report_slow(event);
    }

    fn report(&self, found: Vec<pgvigil_insight::Detection>, tags: &[(String, String)]) {
        if found.is_empty() {
            return;
        }
        let seen = SeenBy {
            caller: self.caller,
            tags: tags.to_vec(),
            now_ms: unix_ms(),
        };
        for d in &found {
            let (pattern, parent) = match d.pattern {
                Pattern::NPlusOne { parent } => ("n_plus_one", format!("{parent:016x}")),
                Pattern::RepeatedIdentical => ("repeated_identical", String::new()),
            };
            tracing::info!(
                target: "pgvigil::n_plus_one",
                pattern,
                fingerprint = %format!("{:016x}", d.child),
                parent_fingerprint = %parent,
                repeats = d.repeats,
                total_ms = d.total_us as f64 / 1000.0,
                database = %self.database,
                user = %self.user,
                application_name = %self.application_name,
                "repeated query pattern"
            );
            self.insight.report_detection(d, &seen);
        }
    }

    /// ReadyForQuery carries the authoritative transaction state.
    pub(crate) fn on_ready(&mut self, status: TransactionStatus) {
        self.in_transaction = status != TransactionStatus::Idle;
    }

    /// The session ended: the last unit of work is complete.
    pub(crate) fn finish(&mut self) {
        let found = self.detector.finish_unit();
        self.report(found, &[]);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Hash of a Bind's parameter bytes; never 0, which stands for "no
/// parameters, use the constants' hash".
fn params_hash(bytes: &[u8]) -> u64 {
    pgvigil_sql::bytes_hash(bytes) | 1
}

/// Rows from a command tag: the last number of `SELECT 5`, `INSERT 0 5`,
/// `UPDATE 5`, `COPY 5`...; 0 for tags without one.
fn rows_of(frame: &[u8]) -> u64 {
    let Ok(tag) = backend::command_tag(frame) else {
        return 0;
    };
    let last = tag.rsplit(|&b| b == b' ').next().unwrap_or_default();
    // Digits only, as PostgreSQL writes them; up to 19 cannot overflow.
    if last.is_empty() || !last.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    if last.len() > 19 {
        return std::str::from_utf8(last)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
    }
    last.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
}

/// Bind parameters as `$1 = '...'` text, for operators who opted in with
/// `log_parameters`; binary values are shown as hex.
fn render_bind_parameters(rest: &[u8]) -> String {
    fn i16_at(b: &[u8], at: usize) -> Option<i16> {
        Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    fn i32_at(b: &[u8], at: usize) -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    let render = || -> Option<String> {
        let nformats = i16_at(rest, 0)?.max(0) as usize;
        let formats: Vec<i16> = (0..nformats)
            .map(|i| i16_at(rest, 2 + 2 * i))
            .collect::<Option<_>>()?;
        let mut at = 2 + 2 * nformats;
        let nparams = i16_at(rest, at)?.max(0) as usize;
        at += 2;
        let mut out = Vec::with_capacity(nparams);
        for i in 0..nparams {
            let len = i32_at(rest, at)?;
            at += 4;
            let format = match formats.len() {
                0 => 0,
                1 => formats[0],
                _ => *formats.get(i)?,
            };
            let value = if len < 0 {
                "NULL".to_string()
            } else {
                let bytes = rest.get(at..at + len as usize)?;
                at += len as usize;
                if format == 0 {
                    format!("'{}'", String::from_utf8_lossy(bytes).replace('\'', "''"))
                } else {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    format!("'\\x{hex}'")
                }
            };
            out.push(format!("${} = {value}", i + 1));
        }
        Some(out.join(", "))
    };
    render().unwrap_or_else(|| "(unreadable parameters)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgvigil_insight::{InsightConfig, SortBy};

    fn observer(insight: &Arc<Insight>) -> (Observer, mpsc::Receiver<LintJob>) {
        let (lint, jobs) = mpsc::channel(64);
        let o = Observer::new(insight.clone(), lint, "db", "app", "", "127.0.0.1".into());
        (o, jobs)
    }

    /// Parse, Bind and Execute of an unnamed statement, and its completion.
    fn run_unnamed(o: &mut Observer, sql: &str) {
        o.on_parse(b"", sql.as_bytes());
        o.on_bind(b"", b"", b"\0\0\0\0\0\0");
        let mut tracked = o.track_execute(b"").expect("the unnamed portal is bound");
        let done = backend::command_complete("SELECT 1");
        o.on_reply(&mut tracked, be::COMMAND_COMPLETE, Some(&done));
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

    #[test]
    fn unnamed_statements_count_under_their_own_text_when_texts_alternate() {
        let insight = Arc::new(Insight::new(InsightConfig::default()));
        let (mut o, _jobs) = observer(&insight);
        for sql in [
            "SELECT 1 FROM alternate_a",
            "SELECT 1 FROM alternate_a",
            "SELECT 2 FROM alternate_b",
            "SELECT 3 FROM alternate_a",
        ] {
            run_unnamed(&mut o, sql);
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
    fn a_thread_registers_a_fingerprint_once_per_insight_for_all_its_sessions() {
        let first = Arc::new(Insight::new(InsightConfig::default()));
        let (mut a, mut a_jobs) = observer(&first);
        let (mut b, mut b_jobs) = observer(&first);
        run_unnamed(&mut a, "SELECT 1 FROM registered_once");
        run_unnamed(&mut b, "SELECT 1 FROM registered_once");
        let linted = |jobs: &mut mpsc::Receiver<LintJob>| {
            std::iter::from_fn(|| jobs.try_recv().ok()).count()
        };
        assert_eq!(linted(&mut a_jobs) + linted(&mut b_jobs), 1);
        // Another insight instance on the same thread knows nothing yet:
        // its text must reach it too.
        let second = Arc::new(Insight::new(InsightConfig::default()));
        let (mut c, mut c_jobs) = observer(&second);
        run_unnamed(&mut c, "SELECT 1 FROM registered_once");
        assert_eq!(linted(&mut c_jobs), 1);
        assert_eq!(
            calls_by_text(&second),
            [("SELECT $1 FROM registered_once".to_string(), 1)]
        );
    }

    /// A simple Query and its completion.
    fn run_query(o: &mut Observer, sql: &str) {
        let mut tracked = o.track_query(sql.as_bytes()).expect("a statement");
        let done = backend::command_complete("SELECT 1");
        o.on_reply(&mut tracked, be::COMMAND_COMPLETE, Some(&done));
    }

    /// What the N+1 detector made of a parent SELECT followed by what
    /// `lookups` runs, in one session.
    fn detected(table: &str, lookups: impl FnOnce(&mut Observer)) -> Vec<(Pattern, usize)> {
        let insight = Arc::new(Insight::new(InsightConfig::default()));
        let (mut o, _jobs) = observer(&insight);
        run_query(&mut o, &format!("SELECT id FROM {table}_parent"));
        lookups(&mut o);
        o.finish();
        insight
            .detections()
            .into_iter()
            .map(|d| (d.pattern, d.repeats))
            .collect()
    }

    /// Six lookups with these inline ids, through the simple protocol.
    fn lookups_with_inline_ids(table: &str, ids: [u32; 6]) -> Vec<(Pattern, usize)> {
        detected(table, |o| {
            for id in ids {
                run_query(o, &format!("SELECT * FROM {table} WHERE parent_id = {id}"));
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
        detected(table, |o| {
            let sql = format!("SELECT * FROM {table} WHERE parent_id = $1");
            o.on_parse(b"lookup", sql.as_bytes());
            for id in ids {
                let value = id.to_string();
                // No format codes, one parameter, no result format codes.
                let mut rest = vec![0, 0, 0, 1];
                rest.extend_from_slice(&(value.len() as i32).to_be_bytes());
                rest.extend_from_slice(value.as_bytes());
                rest.extend_from_slice(&[0, 0]);
                o.on_bind(b"", b"lookup", &rest);
                let mut tracked = o.track_execute(b"").expect("the portal is bound");
                let done = backend::command_complete("SELECT 1");
                o.on_reply(&mut tracked, be::COMMAND_COMPLETE, Some(&done));
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
    fn rows_come_from_the_last_number_of_the_tag() {
        assert_eq!(rows_of(&backend::command_complete("SELECT 12")), 12);
        assert_eq!(rows_of(&backend::command_complete("INSERT 0 3")), 3);
        assert_eq!(rows_of(&backend::command_complete("CREATE TABLE")), 0);
        assert_eq!(rows_of(&backend::command_complete("SELECT 0")), 0);
        assert_eq!(
            rows_of(&backend::command_complete("SELECT 18446744073709551615")),
            u64::MAX
        );
        assert_eq!(
            rows_of(&backend::command_complete("SELECT 18446744073709551616")),
            0
        );
        assert_eq!(
            rows_of(&backend::command_complete("COPY 1234567890123456789")),
            1_234_567_890_123_456_789
        );
    }

    #[test]
    fn bind_parameters_render_text_binary_and_null() {
        let mut rest = Vec::new();
        rest.extend_from_slice(&3i16.to_be_bytes());
        rest.extend_from_slice(&0i16.to_be_bytes());
        rest.extend_from_slice(&1i16.to_be_bytes());
        rest.extend_from_slice(&0i16.to_be_bytes());
        rest.extend_from_slice(&3i16.to_be_bytes());
        rest.extend_from_slice(&4i32.to_be_bytes());
        rest.extend_from_slice(b"it's");
        rest.extend_from_slice(&2i32.to_be_bytes());
        rest.extend_from_slice(&[0xde, 0xad]);
        rest.extend_from_slice(&(-1i32).to_be_bytes());
        rest.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(
            render_bind_parameters(&rest),
            "$1 = 'it''s', $2 = '\\xdead', $3 = NULL"
        );
        assert_eq!(render_bind_parameters(b"\x00"), "(unreadable parameters)");
    }
}
