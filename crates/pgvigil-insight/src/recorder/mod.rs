//! What one client session tells insight, in the session's own terms:
//! a statement was prepared, bound, begun, completed. The proxy calls in
//! where it already decodes messages (Query, Parse, Bind, Execute, and
//! the replies that complete them) and passes the time; everything else
//! (normalizing, timing, slow rules, N+1 loops, parameter samples) is
//! decided here, without sockets, so it is tested without them.
//!
//! Normalization is cached per runtime thread by SQL text and by shape,
//! and per session by statement name for prepared statements, so a
//! Bind/Execute of a known statement costs a map lookup.

mod bind;
mod normalizer;

use std::sync::Arc;

use pgvigil_sql::{FastMap, NormalizedStatement, StatementKind};

use crate::detections::DetectionLog;
use crate::watch::ParameterSample;
use crate::{
    Detection, Execution, Insight, NPlusOneDetector, Observed, Pattern, SeenBy, SlowContext,
    SlowEvent, StatementInfo,
};
use normalizer::{NORMALIZER, THREAD_REGISTERED};

/// Longest unnamed statement a session keeps the text of (see
/// `Recorder::last_unnamed`).
const LAST_UNNAMED_TEXT: usize = 2048;

type Statements = Arc<[NormalizedStatement]>;
/// A bound portal: its statements, a hash of its parameters, and the
/// Bind's parameter bytes when an operator asked for values
/// (`log_parameters`, `capture_parameters`).
type Portal = (Statements, u64, Option<Arc<[u8]>>);

/// How a statement ended, as the proxy read it from the server's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// CommandComplete, with the rows its tag reports.
    Completed { rows: u64 },
    /// EmptyQueryResponse.
    Empty,
    /// PortalSuspended: an Execute with a row limit stopped; the same
    /// statement goes on with the next Execute.
    Suspended,
    /// ErrorResponse, with its SQLSTATE.
    Failed([u8; 5]),
}

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
    started_ns: u64,
    duration_us: u64,
    rows: u64,
    sqlstate: Option<[u8; 5]>,
    /// Of this execution's text (see `Values`).
    constants_hash: u64,
}

/// A request whose statements are being timed: the proxy keeps it with
/// the request until the replies that complete it arrive.
#[derive(Debug)]
pub struct Tracked {
    statements: Statements,
    values: Values,
    /// Index of the statement the next completion belongs to.
    next: usize,
    params_hash: u64,
    /// The Bind's parameter bytes, only when values were asked for.
    bind: Option<Arc<[u8]>>,
    /// The original text, only when values were asked for.
    raw: Option<Arc<[u8]>>,
    started_ns: u64,
}

/// Who a session is, for slow events and N+1 findings. Shared (`Arc`)
/// with whatever else lists the session, such as the proxy's client
/// registry: every connected client carries it, so it is held once, and
/// the database and user names are the pool's own.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub database: Arc<str>,
    pub user: Arc<str>,
    pub application_name: String,
    pub client_addr: std::net::IpAddr,
}

/// A session's named statements and portals: most sessions have none
/// (drivers use the unnamed ones), and every connected client carries
/// the field, so the tables are made on the first name.
#[derive(Default)]
struct Named {
    statements: FastMap<Vec<u8>, Statements>,
    portals: FastMap<Vec<u8>, Portal>,
}

/// One session's recording state. Times are nanoseconds of a monotonic
/// clock the caller reads (the same clock for every call).
pub struct Recorder {
    insight: Arc<Insight>,
    named: Option<Box<Named>>,
    unnamed: Option<Statements>,
    /// The latest unnamed Parse's text and statements. Drivers send the
    /// same few texts as unnamed statements over and over, and comparing
    /// with the last one costs less than hashing it for the thread's
    /// cache.
    last_unnamed: Option<(Vec<u8>, Statements)>,
    /// The unnamed portal, by far the most used, outside the map.
    unnamed_portal: Option<Portal>,
    caller: u32,
    who: Arc<SessionInfo>,
    detector: NPlusOneDetector,
    in_transaction: bool,
    epoch_ns: u64,
    /// When the previous statement completed: a pipelined statement's
    /// time starts there, not when it was sent.
    last_completion_ns: u64,
    /// `log_parameters || capture_parameters`: keep texts and Bind bytes.
    keep_values: bool,
}

impl Recorder {
    pub fn new(insight: Arc<Insight>, who: Arc<SessionInfo>, now_ns: u64) -> Recorder {
        let caller = insight.caller(&who.database, &who.user, &who.application_name);
        let config = insight.config();
        let keep_values = config.log_parameters || config.capture_parameters;
        Recorder {
            insight,
            named: None,
            unnamed: None,
            last_unnamed: None,
            unnamed_portal: None,
            caller,
            who,
            detector: NPlusOneDetector::default(),
            in_transaction: false,
            epoch_ns: now_ns,
            last_completion_ns: now_ns,
            keep_values,
        }
    }

    /// application_name changed (SET application_name, or a reset).
    pub fn set_application_name(&mut self, name: &str) {
        if self.who.application_name != name {
            let mut who = SessionInfo::clone(&self.who);
            who.application_name = name.to_string();
            self.caller = self
                .insight
                .caller(&who.database, &who.user, &who.application_name);
            self.who = Arc::new(who);
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
    /// registered yet (insight tells its watchers about new ones).
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
            if first {
                self.insight.register(Arc::new(StatementInfo {
                    fingerprint: fp,
                    query: s.text.to_string(),
                    kind: s.kind.as_str().into(),
                }));
            }
        }
    }

    /// A simple Query: its statements are timed one after the other.
    #[inline]
    pub fn begin_query(&mut self, text: &[u8], now_ns: u64) -> Option<Tracked> {
        // Values cut each statement's text at its span, so the
        // statements must be this text's own.
        let keep = self.keep_values;
        let (statements, values) = self.normalize_as(text, !keep);
        if statements.is_empty() {
            return None;
        }
        Some(Tracked {
            statements,
            values,
            next: 0,
            params_hash: 0,
            bind: None,
            raw: keep.then(|| Arc::from(text)),
            started_ns: now_ns,
        })
    }

    /// A Parse.
    pub fn prepare(&mut self, name: &[u8], query: &[u8]) {
        if !name.is_empty() {
            let statements = self.normalize(query);
            let named = self.named.get_or_insert_with(Box::default);
            named.statements.insert(name.to_vec(), statements);
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

    /// A Bind; `rest` is the message after the portal and statement names.
    pub fn bind(&mut self, portal: &[u8], statement: &[u8], rest: &[u8]) {
        let statements = if statement.is_empty() {
            self.unnamed.clone()
        } else {
            self.named
                .as_ref()
                .and_then(|n| n.statements.get(statement).cloned())
        };
        let Some(statements) = statements else {
            return;
        };
        let kept = self.keep_values.then(|| Arc::from(rest));
        let entry = (statements, bind::params_hash(rest), kept);
        if portal.is_empty() {
            self.unnamed_portal = Some(entry);
        } else {
            let named = self.named.get_or_insert_with(Box::default);
            named.portals.insert(portal.to_vec(), entry);
        }
    }

    /// A Close of a prepared statement.
    pub fn close_statement(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else if let Some(named) = &mut self.named {
            named.statements.remove(name);
        }
    }

    /// DISCARD ALL / DEALLOCATE ALL, or the session's statements were
    /// otherwise dropped.
    pub fn forget_statements(&mut self) {
        self.named = None;
        self.unnamed = None;
        self.unnamed_portal = None;
    }

    /// An Execute of a bound portal.
    #[inline]
    pub fn begin_execute(&mut self, portal: &[u8], now_ns: u64) -> Option<Tracked> {
        let (statements, params_hash, bind) = if portal.is_empty() {
            self.unnamed_portal.as_ref()?
        } else {
            self.named.as_ref()?.portals.get(portal)?
        };
        Some(Tracked {
            statements: statements.clone(),
            values: Values::Own,
            next: 0,
            params_hash: *params_hash,
            bind: bind.clone(),
            raw: None,
            started_ns: now_ns,
        })
    }

    /// A reply completed the next statement of `tracked`.
    pub fn complete(&mut self, tracked: &mut Tracked, outcome: Outcome, now_ns: u64) {
        let (rows, sqlstate) = match outcome {
            Outcome::Completed { rows } => (rows, None),
            Outcome::Empty | Outcome::Suspended => (0, None),
            Outcome::Failed(code) => (0, Some(code)),
        };
        let at = tracked.next;
        if at >= tracked.statements.len() {
            return;
        }
        let started_ns = tracked.started_ns.max(self.last_completion_ns);
        let duration_us = now_ns.saturating_sub(started_ns) / 1_000;
        self.last_completion_ns = now_ns;
        tracked.started_ns = now_ns;
        // After an error PostgreSQL skips the rest of a multi-statement
        // string; a portal's later completions (PortalSuspended then
        // CommandComplete) belong to the same statement.
        if sqlstate.is_some() {
            tracked.next = tracked.statements.len();
        } else if outcome != Outcome::Suspended && tracked.statements.len() > 1 {
            tracked.next += 1;
        }
        let tracked = &*tracked;
        let statement = &tracked.statements[at];
        let constants_hash = tracked.values.of(at, statement);
        let completed = Completed {
            started_ns,
            duration_us,
            rows,
            sqlstate,
            constants_hash,
        };
        self.record(statement, tracked, completed);
    }

    fn record(&mut self, s: &NormalizedStatement, tracked: &Tracked, done: Completed) {
        let Completed {
            started_ns,
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
        let config = self.insight.config();
        // Before/after markers: DDL and a change of the app's version tag.
        if matches!(s.kind, StatementKind::Ddl(_)) || !s.tags.is_empty() {
            let now_ms = (config.wall_clock_ms)();
            let ok = sqlstate.is_none();
            self.insight
                .note_statement(s.kind.as_str(), &s.text, &s.tags, ok, now_ms);
        }
        if config.slow_rules.could_be_slow(duration_us) {
            self.check_slow(s, tracked, duration_us);
        }
        if config.capture_parameters && duration_us >= config.watch_slow_us {
            self.insight
                .keep_sample(fingerprint, || sample_of(s, tracked));
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
            started_us: started_ns.saturating_sub(self.epoch_ns) / 1_000,
            duration_us,
            in_transaction_before: before,
            in_transaction_after: after,
        };
        let found = self.detector.observe(&observed, &config.n_plus_one);
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
            database: &self.who.database,
            user: &self.who.user,
            application_name: &self.who.application_name,
            query: &s.text,
        };
        let config = self.insight.config();
        let Some(rule) = config.slow_rules.classify(duration_us, &context) else {
            return;
        };
        let parameters = if config.log_parameters {
            tracked.bind.as_deref().map(bind::render).or_else(|| {
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
            at_ms: (config.wall_clock_ms)(),
            rule: rule.to_string(),
            fingerprint: s.fingerprint.0,
            query: s.text.to_string(),
            duration_us,
            database: self.who.database.to_string(),
            user: self.who.user.to_string(),
            application_name: self.who.application_name.clone(),
            client_addr: self.who.client_addr.to_string(),
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

    fn report(&self, found: Vec<Detection>, tags: &[(String, String)]) {
        if found.is_empty() {
            return;
        }
        let seen = SeenBy {
            caller: self.caller,
            tags: tags.to_vec(),
            now_ms: (self.insight.config().wall_clock_ms)(),
        };
        for d in &found {
            let (pattern, parent) = match d.pattern {
                Pattern::NPlusOne { parent } => ("n_plus_one", format!("{parent:016x}")),
                Pattern::RepeatedIdentical => ("repeated_identical", String::new()),
            };
            let more = match self.insight.report_detection(d, &seen) {
                DetectionLog::Quiet => continue,
                DetectionLog::First => 1,
                DetectionLog::Again { more } => more,
            };
            tracing::info!(
                target: "pgvigil::n_plus_one",
                pattern,
                fingerprint = %format!("{:016x}", d.child),
                parent_fingerprint = %parent,
                occurrences_since_last_line = more,
                repeats = d.repeats,
                total_ms = d.total_us as f64 / 1000.0,
                database = %self.who.database,
                user = %self.who.user,
                application_name = %self.who.application_name,
                "repeated query pattern"
            );
        }
    }

    /// ReadyForQuery carries the authoritative transaction state.
    pub fn ready(&mut self, in_transaction: bool) {
        self.in_transaction = in_transaction;
    }

    /// The session ended: the last unit of work is complete.
    pub fn finish(&mut self) {
        let found = self.detector.finish_unit(&self.insight.config().n_plus_one);
        self.report(found, &[]);
    }
}

/// A statement's values as the client sent them: its own text for the
/// simple protocol (one statement of a multi-statement string), its
/// bound values for the extended one.
fn sample_of(s: &NormalizedStatement, tracked: &Tracked) -> Option<ParameterSample> {
    if let Some(rest) = &tracked.bind {
        return bind::text_values(rest).map(ParameterSample::Bound);
    }
    let raw = tracked.raw.as_ref()?.get(s.span.clone())?;
    Some(ParameterSample::Statement(
        String::from_utf8_lossy(raw).into_owned(),
    ))
}

#[cfg(test)]
mod tests;
