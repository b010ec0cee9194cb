//! The advisor's task: picks the statements that matter, plans them on
//! its own connection, tries candidate indexes with hypopg (or judges the
//! plan alone), and publishes the advice. It runs every `interval` and on
//! demand; it never runs on a client's connection, so a slow or failing
//! EXPLAIN costs clients nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgvigil_config::AdvisorSettings;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::advice::{fingerprint_hex, merge, Advice, AdviceMethod, Finding, Load};
use crate::candidates::{candidates, index_definition, quote_ident, Candidate};
use crate::db::{Connector, Database, DbError};
use crate::plan::{root, summarize};
use crate::state::{bump, AdvisorState, PlanRecord, Sample};

/// A statement as the query statistics see it now.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementStats {
    pub fingerprint: u64,
    /// Normalized text: constants as `$n`.
    pub query: String,
    /// SELECT, INSERT, UPDATE, DELETE, ...
    pub kind: String,
    pub calls: u64,
    pub total_ms: f64,
    pub p95_ms: f64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// Where the advisor learns which statements run and how much they cost
/// (the proxy fills it from query insight).
pub trait Statements: Send + Sync + 'static {
    fn top_by_total_time(&self, limit: usize) -> Vec<StatementStats>;
    fn top_by_p95(&self, limit: usize) -> Vec<StatementStats>;
    fn get(&self, fingerprint: u64) -> Option<StatementStats>;
    /// Databases the fingerprint ran in.
    fn databases(&self, fingerprint: u64) -> Vec<String>;
    fn now_ms(&self) -> u64;
}

/// Without hypopg, a filter is called selective when the scan is
/// estimated to return at most this share of the table's rows: beyond it
/// PostgreSQL would likely keep the sequential scan anyway.
const SELECTIVE_SHARE: f64 = 0.1;

/// Only these are planned: EXPLAIN of anything else (DDL, utility
/// commands, a WITH that may write) is either meaningless or not safe.
const PLANNABLE: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// Exactly `plans_per_minute` EXPLAINs in any 60 seconds: a sliding log
/// rather than a token bucket, whose full bucket plus a minute's refill
/// would allow twice the setting in one minute.
struct RateWindow {
    per_minute: usize,
    taken: VecDeque<Instant>,
}

impl RateWindow {
    fn try_take(&mut self, now: Instant) -> bool {
        while self
            .taken
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.taken.pop_front();
        }
        if self.taken.len() < self.per_minute {
            self.taken.push_back(now);
            true
        } else {
            false
        }
    }
}

pub enum Command {
    /// Run now; the sender hears when the run is over.
    Refresh(oneshot::Sender<()>),
}

#[derive(Debug, thiserror::Error)]
#[error("the advisor is not running")]
pub struct AdvisorStopped;

/// What the admin API and the console hold: the shared state, and a way
/// to make the advisor run now.
#[derive(Clone)]
pub struct AdvisorHandle {
    pub state: Arc<AdvisorState>,
    commands: mpsc::Sender<Command>,
}

impl AdvisorHandle {
    /// Runs the advisor now and returns the advice once the run is over.
    /// A run already under way finishes first.
    pub async fn refresh(&self) -> Result<Vec<Advice>, AdvisorStopped> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Refresh(tx))
            .await
            .map_err(|_| AdvisorStopped)?;
        rx.await.map_err(|_| AdvisorStopped)?;
        Ok(self.state.advice())
    }

    /// Plans this fingerprint first at the next run (for a "fingerprint
    /// crossed a threshold" notification); never blocks.
    pub fn request_plan(&self, fingerprint: u64) {
        self.state.request_plan(fingerprint);
    }
}

pub struct Advisor<C: Connector, S: Statements> {
    connector: C,
    statements: S,
    settings: AdvisorSettings,
    state: Arc<AdvisorState>,
    rate: RateWindow,
    /// The latest evidence per (database, fingerprint); kept between runs
    /// so a fingerprint not re-planned (rate limit) keeps its advice.
    findings: HashMap<(String, u64), Vec<Finding>>,
    next_statement: u64,
    commands: mpsc::Receiver<Command>,
}

/// An advisor and the handle to it; `serve` the advisor in a task.
pub fn advisor<C: Connector, S: Statements>(
    connector: C,
    statements: S,
    settings: AdvisorSettings,
) -> (Advisor<C, S>, AdvisorHandle) {
    let state = Arc::new(AdvisorState::new(
        settings.max_plans,
        settings.max_plan_bytes,
        settings.max_advice,
    ));
    let (tx, rx) = mpsc::channel(16);
    let rate = RateWindow {
        per_minute: settings.plans_per_minute as usize,
        taken: VecDeque::new(),
    };
    (
        Advisor {
            connector,
            statements,
            settings,
            state: state.clone(),
            rate,
            findings: HashMap::new(),
            next_statement: 0,
            commands: rx,
        },
        AdvisorHandle {
            state,
            commands: tx,
        },
    )
}

/// A relation the plan names, resolved in the database.
#[derive(Debug, Clone)]
struct Table {
    schema: String,
    name: String,
    /// pg_class.reltuples: 0 or less when never analyzed (unknown).
    rows: f64,
    /// Leading columns of valid indexes: (column, index is partial).
    leading: Vec<(String, bool)>,
}

impl Table {
    /// An index leading with the candidate's first column already serves
    /// it (or most of it): proposing another would be a near-duplicate.
    fn covers(&self, c: &Candidate) -> bool {
        let Some(first) = c.columns.first() else {
            return true;
        };
        self.leading
            .iter()
            .any(|(col, partial)| col == first && (!partial || c.predicate.is_some()))
    }
}

/// One database's connection for one run, with what was learned of it.
struct Session<D: Database> {
    database: String,
    db: D,
    version: u32,
    hypopg: Option<bool>,
    tables: HashMap<String, Option<Table>>,
}

impl<C: Connector, S: Statements> Advisor<C, S> {
    /// Runs every `interval` (the first time one interval after start, so
    /// a starting proxy does no extra work) and whenever asked.
    pub async fn serve(mut self) {
        let interval = self.settings.interval.max(Duration::from_secs(1));
        let mut next = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    self.run_once().await;
                    next = tokio::time::Instant::now() + interval;
                }
                cmd = self.commands.recv() => match cmd {
                    None => return,
                    Some(Command::Refresh(done)) => {
                        self.run_once().await;
                        let _ = done.send(());
                    }
                },
            }
        }
    }

    fn chosen(&self) -> BTreeMap<String, Vec<StatementStats>> {
        let s = &self.statements;
        let mut list: Vec<StatementStats> = self
            .state
            .take_requests()
            .into_iter()
            .filter_map(|fp| s.get(fp))
            .collect();
        list.extend(s.top_by_total_time(self.settings.plan_top_n));
        let p95_ms = self.settings.plan_p95.as_secs_f64() * 1000.0;
        list.extend(
            s.top_by_p95(self.settings.max_plans)
                .into_iter()
                .filter(|r| r.p95_ms >= p95_ms),
        );
        let mut seen = BTreeSet::new();
        list.retain(|r| seen.insert(r.fingerprint) && PLANNABLE.contains(&r.kind.as_str()));
        let mut by_db: BTreeMap<String, Vec<StatementStats>> = BTreeMap::new();
        for r in list {
            for db in s.databases(r.fingerprint) {
                by_db.entry(db).or_default().push(r.clone());
            }
        }
        by_db
    }

    /// One pass: plan what matters, refresh the advice.
    pub async fn run_once(&mut self) {
        bump(&self.state.counters.runs);
        let mut by_db = self.chosen();
        // Every database is visited, even when none of its statements is
        // planned: advice goes once the index exists, and per-database
        // producers (index hygiene) get their turn.
        for db in self.connector.databases() {
            by_db.entry(db).or_default();
        }
        for (db, _) in self.findings.keys() {
            by_db.entry(db.clone()).or_default();
        }
        for (database, list) in by_db {
            let db = match self.connector.connect(&database).await {
                Ok(db) => db,
                Err(e) => {
                    bump(&self.state.counters.run_errors);
                    tracing::warn!(database = %database, "advisor: cannot connect: {e}");
                    continue;
                }
            };
            let mut session = Session {
                database: database.clone(),
                db,
                version: 0,
                hypopg: None,
                tables: HashMap::new(),
            };
            session.version = match session
                .db
                .query("SELECT current_setting('server_version_num')", &[])
                .await
            {
                Ok(rows) => first_cell(&rows).and_then(|v| v.parse().ok()).unwrap_or(0),
                Err(e) => {
                    bump(&self.state.counters.run_errors);
                    tracing::warn!(database = %database, "advisor: cannot read the server version: {}", describe(&e));
                    continue;
                }
            };
            for stats in list {
                self.advise_statement(&mut session, &stats).await;
            }
            self.prune_existing(&mut session).await;
        }
        let statements = &self.statements;
        let now = statements.now_ms();
        let all: Vec<Finding> = self.findings.values().flatten().cloned().collect();
        let advice = merge(&all, |fp| {
            let s = statements.get(fp)?;
            let hours = (now.saturating_sub(s.first_seen_ms)).max(60_000) as f64 / 3_600_000.0;
            Some(Load {
                calls: s.calls,
                total_ms: s.total_ms,
                calls_per_hour: s.calls as f64 / hours,
            })
        });
        self.findings
            .retain(|(_, fp), _| statements.get(*fp).is_some());
        self.state.set_create_index(advice);
    }

    fn take_token(&mut self) -> bool {
        if self.rate.try_take(Instant::now()) {
            true
        } else {
            bump(&self.state.counters.plans_rate_limited);
            false
        }
    }

    async fn advise_statement(&mut self, session: &mut Session<C::Db>, stats: &StatementStats) {
        let fp = stats.fingerprint;
        let key = (session.database.clone(), fp);
        let sample = if self.settings.capture_parameters {
            self.state.sample(fp)
        } else {
            None
        };
        let (query, originals) = plannable(&stats.query);
        // The sample's values for the placeholders left, in their new order.
        let sample = sample.map(|s| Sample {
            params: originals
                .iter()
                .map(|o| s.params.get(o.wrapping_sub(1)).cloned().flatten())
                .collect(),
        });
        // ANALYZE with NULLs for every parameter would measure nothing.
        let analyze = self.settings.explain_analyze && sample.is_some();
        if !self.take_token() {
            return;
        }
        let text = match self
            .explain(session, &query, sample.as_ref(), analyze)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                bump(&self.state.counters.plans_failed);
                tracing::warn!(
                    fingerprint = %fingerprint_hex(fp),
                    database = %session.database,
                    "advisor: EXPLAIN failed: {}",
                    describe(&e)
                );
                return;
            }
        };
        let Ok(mut plan) = serde_json::from_str::<Value>(&text) else {
            bump(&self.state.counters.plans_failed);
            return;
        };
        // A sample's values are printed in the plan's expressions; they
        // stay in memory only.
        let text = if sample.is_some() {
            crate::plan::redact_constants(&mut plan);
            plan.to_string()
        } else {
            text
        };
        let Some(summary) = summarize(&plan) else {
            bump(&self.state.counters.plans_failed);
            return;
        };
        bump(&self.state.counters.plans_taken);
        let cost_before = summary.total_cost;
        self.state.store_plan(PlanRecord {
            fingerprint: fp,
            database: session.database.clone(),
            taken_at_ms: self.statements.now_ms(),
            generic: sample.is_none(),
            analyze,
            plan: text,
            summary,
        });

        let mut usable: Vec<(Table, Candidate)> = Vec::new();
        for c in candidates(&plan) {
            if let Some(t) = self.table(session, &c.relation).await {
                if !t.covers(&c) {
                    usable.push((t, c));
                }
            }
        }
        if usable.is_empty() {
            self.findings.remove(&key);
            return;
        }
        let database = session.database.clone();
        let finding = |t: &Table, c: &Candidate, method, after| Finding {
            database: database.clone(),
            schema: t.schema.clone(),
            table: t.name.clone(),
            columns: c.columns.clone(),
            predicate: c.predicate.clone(),
            method,
            cost_before,
            cost_after: after,
            fingerprint: fp,
        };
        if !self.hypopg(session).await {
            // Without an estimate of the index, only the textbook case: a
            // filter on the column that keeps a small share of the table.
            // The fullest such candidate (equality, range, sort columns).
            let pick = usable.iter().find(|(t, c)| {
                c.from_filter && (t.rows <= 0.0 || c.scan_rows <= t.rows * SELECTIVE_SHARE)
            });
            match pick {
                Some((t, c)) => {
                    let f = finding(t, c, AdviceMethod::Heuristic, None);
                    self.findings.insert(key, vec![f]);
                }
                None => {
                    self.findings.remove(&key);
                }
            }
            return;
        }
        let mut best: Option<(f64, usize)> = None;
        let mut tried = 0;
        for (i, (t, c)) in usable.iter().enumerate() {
            if !self.take_token() {
                break;
            }
            tried += 1;
            bump(&self.state.counters.hypothetical_plans);
            match self
                .hypothetical_cost(session, t, c, &query, sample.as_ref())
                .await
            {
                Ok(cost) => {
                    let better = match best {
                        None => true,
                        Some((b, j)) => {
                            cost < b * 0.99
                                || (cost <= b * 1.01 && c.columns.len() < usable[j].1.columns.len())
                        }
                    };
                    if better {
                        best = Some((cost, i));
                    }
                }
                Err(e) => {
                    bump(&self.state.counters.plans_failed);
                    tracing::warn!(
                        fingerprint = %fingerprint_hex(fp),
                        database = %session.database,
                        "advisor: hypothetical index plan failed: {}",
                        describe(&e)
                    );
                }
            }
        }
        if tried == 0 {
            // Nothing could be tried this time: keep what was known.
            return;
        }
        let improvement = |after: f64| {
            if cost_before > 0.0 {
                1.0 - after / cost_before
            } else {
                0.0
            }
        };
        match best {
            Some((after, i)) if improvement(after) >= self.settings.min_improvement => {
                let (t, c) = &usable[i];
                let f = finding(t, c, AdviceMethod::Hypopg, Some(after));
                self.findings.insert(key, vec![f]);
            }
            _ => {
                self.findings.remove(&key);
            }
        }
    }

    /// Drops evidence for indexes that exist now (created since), so
    /// the advice goes away without waiting for a re-plan.
    async fn prune_existing(&mut self, session: &mut Session<C::Db>) {
        let keys: Vec<(String, u64)> = self
            .findings
            .keys()
            .filter(|(db, _)| *db == session.database)
            .cloned()
            .collect();
        for key in keys {
            let Some(list) = self.findings.get(&key).cloned() else {
                continue;
            };
            let mut kept = Vec::new();
            for f in list {
                let c = Candidate {
                    relation: f.table.clone(),
                    columns: f.columns.clone(),
                    predicate: f.predicate.clone(),
                    from_filter: true,
                    scan_rows: 0.0,
                };
                let qualified = format!("{}.{}", quote_ident(&f.schema), quote_ident(&f.table));
                match self.table(session, &qualified).await {
                    Some(t) if !t.covers(&c) => kept.push(f),
                    _ => {}
                }
            }
            if kept.is_empty() {
                self.findings.remove(&key);
            } else {
                self.findings.insert(key, kept);
            }
        }
    }

    /// Resolves a relation name as the plan gives it (unqualified, or
    /// already quoted and qualified) and reads its indexes' leading
    /// columns; cached for the run.
    async fn table(&mut self, session: &mut Session<C::Db>, relation: &str) -> Option<Table> {
        if let Some(t) = session.tables.get(relation) {
            return t.clone();
        }
        let name = if relation.contains('.') || relation.starts_with('"') {
            relation.to_string()
        } else {
            quote_ident(relation)
        };
        let found = async {
            let rows = session
                .db
                .query(
                    "SELECT c.oid::text, n.nspname, c.relname, c.reltuples::text \
                     FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = pg_catalog.to_regclass($1)",
                    &[Some(&name)],
                )
                .await
                .ok()?;
            let row = rows.first()?;
            let (oid, schema, table) = (
                row.first()?.clone()?,
                row.get(1)?.clone()?,
                row.get(2)?.clone()?,
            );
            let rows = row
                .get(3)
                .cloned()
                .flatten()
                .and_then(|r| r.parse::<f64>().ok())
                .unwrap_or(0.0);
            let idx = session
                .db
                .query(
                    "SELECT a.attname, (i.indpred IS NOT NULL)::text FROM pg_catalog.pg_index i \
                     JOIN pg_catalog.pg_attribute a \
                       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                     WHERE i.indrelid = $1::oid AND i.indisvalid",
                    &[Some(&oid)],
                )
                .await
                .ok()?;
            let leading = idx
                .into_iter()
                .filter_map(|r| {
                    let col = r.first()?.clone()?;
                    let partial = r.get(1)?.as_deref() == Some("true");
                    Some((col, partial))
                })
                .collect();
            Some(Table {
                schema,
                name: table,
                rows,
                leading,
            })
        }
        .await;
        session.tables.insert(relation.to_string(), found.clone());
        found
    }

    /// Whether hypopg can be used in this database: created there, or
    /// available and `create_extension` allows creating it.
    async fn hypopg(&self, session: &mut Session<C::Db>) -> bool {
        if let Some(h) = session.hypopg {
            return h;
        }
        let db = &mut session.db;
        let present = matches!(
            db.query("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'hypopg'", &[]).await,
            Ok(rows) if !rows.is_empty()
        );
        let usable = present
            || (self.settings.create_extension
                && matches!(
                    db.query(
                        "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'",
                        &[]
                    )
                    .await,
                    Ok(rows) if !rows.is_empty()
                )
                && match db.query("CREATE EXTENSION IF NOT EXISTS hypopg", &[]).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(
                            database = %session.database,
                            "advisor: CREATE EXTENSION hypopg failed: {}",
                            describe(&e)
                        );
                        false
                    }
                });
        session.hypopg = Some(usable);
        usable
    }

    async fn hypothetical_cost(
        &mut self,
        session: &mut Session<C::Db>,
        t: &Table,
        c: &Candidate,
        query: &str,
        sample: Option<&Sample>,
    ) -> Result<f64, DbError> {
        let def = index_definition(&t.schema, &t.name, &c.columns, c.predicate.as_deref());
        session
            .db
            .query(
                "SELECT indexrelid FROM hypopg_create_index($1)",
                &[Some(&def)],
            )
            .await?;
        let planned = self.explain(session, query, sample, false).await;
        let reset = session.db.query("SELECT hypopg_reset()", &[]).await;
        let text = planned?;
        reset?;
        let plan: Value = serde_json::from_str(&text)
            .map_err(|_| DbError::Connection("EXPLAIN output is not JSON".into()))?;
        root(&plan)
            .and_then(|r| r.get("Total Cost"))
            .and_then(Value::as_f64)
            .ok_or_else(|| DbError::Connection("EXPLAIN output has no cost".into()))
    }

    /// `EXPLAIN (FORMAT JSON)` of a normalized statement: with the
    /// sample's values bound when there is one, else a generic plan
    /// (GENERIC_PLAN on 16+, a prepared statement forced generic on
    /// older servers). ANALYZE runs inside a transaction that is rolled
    /// back, whatever the statement.
    async fn explain(
        &mut self,
        session: &mut Session<C::Db>,
        query: &str,
        sample: Option<&Sample>,
        analyze: bool,
    ) -> Result<String, DbError> {
        let db = &mut session.db;
        if let Some(sample) = sample {
            let params: Vec<Option<&str>> = sample.params.iter().map(|p| p.as_deref()).collect();
            let opts = if analyze {
                "ANALYZE, FORMAT JSON"
            } else {
                "FORMAT JSON"
            };
            let sql = format!("EXPLAIN ({opts}) {query}");
            if !analyze {
                return db.query(&sql, &params).await.map(|r| joined(&r));
            }
            db.query("BEGIN", &[]).await?;
            let out = db.query(&sql, &params).await;
            let rollback = db.query("ROLLBACK", &[]).await;
            let out = out?;
            rollback?;
            return Ok(joined(&out));
        }
        if session.version >= 160_000 {
            let sql = format!("EXPLAIN (GENERIC_PLAN, FORMAT JSON) {query}");
            return db.query(&sql, &[]).await.map(|r| joined(&r));
        }
        self.next_statement += 1;
        let name = format!("pgvigil_advisor_{}", self.next_statement);
        db.query(&format!("PREPARE {name} AS {query}"), &[]).await?;
        let nulls = vec!["NULL"; param_count(query)].join(", ");
        let execute = if nulls.is_empty() {
            format!("EXPLAIN (FORMAT JSON) EXECUTE {name}")
        } else {
            format!("EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})")
        };
        let set = db
            .query("SET plan_cache_mode = force_generic_plan", &[])
            .await;
        let out = match set {
            Ok(_) => db.query(&execute, &[]).await,
            Err(e) => Err(e),
        };
        let reset = db.query("RESET plan_cache_mode", &[]).await;
        let dealloc = db.query(&format!("DEALLOCATE {name}"), &[]).await;
        let out = out?;
        reset?;
        dealloc?;
        Ok(joined(&out))
    }
}

fn joined(rows: &[crate::db::Row]) -> String {
    rows.iter()
        .filter_map(|r| r.first().cloned().flatten())
        .collect::<Vec<_>>()
        .join("\n")
}

fn first_cell(rows: &[crate::db::Row]) -> Option<String> {
    rows.first()?.first()?.clone()
}

/// An error for the log: the SQLSTATE only, since a server's message
/// can quote the statement's values.
fn describe(e: &DbError) -> String {
    match e {
        DbError::Server { code, .. } => format!("SQLSTATE {code}"),
        DbError::Connection(_) => "connection lost or refused".to_string(),
    }
}

/// The normalized text as PostgreSQL can plan it. pgvigil's normalization
/// shows a collapsed list by its first element followed by `, ...`
/// (`IN ($1, ...)`, `VALUES ($1, $2), ...`): the `, ...` goes, and the
/// placeholders left are renumbered `$1..$k` in order, since a gap in the
/// numbers is an error to PREPARE ("could not determine data type").
/// Also returns, for each new number, the original one (to pick a
/// sample's values).
pub(crate) fn plannable(query: &str) -> (String, Vec<usize>) {
    let mut stripped = String::with_capacity(query.len());
    let mut quote: Option<char> = None;
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        if quote.is_none() && rest.starts_with(", ...") {
            rest = &rest[", ...".len()..];
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {}
        }
        stripped.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let mut originals: Vec<usize> = Vec::new();
    let mut out = String::with_capacity(stripped.len());
    let mut quote: Option<char> = None;
    let mut chars = stripped.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                let original: usize = n.parse().unwrap_or(0);
                let new = match originals.iter().position(|o| *o == original) {
                    Some(i) => i + 1,
                    None => {
                        originals.push(original);
                        originals.len()
                    }
                };
                out.push('$');
                out.push_str(&new.to_string());
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    (out, originals)
}

/// The highest `$n` outside quotes: a generic plan binds that many NULLs.
pub(crate) fn param_count(query: &str) -> usize {
    let mut max = 0;
    let mut quote: Option<char> = None;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                if let Ok(n) = n.parse::<usize>() {
                    max = max.max(n);
                }
            }
            None => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use crate::db::Row;

    /// What the fake server was sent, and how it is set up.
    #[derive(Default)]
    struct Server {
        version: &'static str,
        hypopg: bool,
        /// A hypothetical index is in place.
        hypothetical: bool,
        /// Overrides the fixture's estimated rows out of the scan.
        scan_rows: Option<f64>,
        sent: Vec<(String, Vec<Option<String>>)>,
    }

    type Shared = Arc<Mutex<Server>>;

    struct FakeDb(Shared);

    fn row(cells: &[&str]) -> Row {
        cells.iter().map(|c| Some(c.to_string())).collect()
    }

    impl Database for FakeDb {
        async fn query(&mut self, sql: &str, params: &[Option<&str>]) -> Result<Vec<Row>, DbError> {
            let mut s = self.0.lock().unwrap();
            s.sent.push((
                sql.to_string(),
                params.iter().map(|p| p.map(str::to_string)).collect(),
            ));
            let plan = |cost: f64| {
                let mut v: Value =
                    serde_json::from_str(include_str!("fixtures/generic_seq_scan.json")).unwrap();
                v[0]["Plan"]["Total Cost"] = cost.into();
                if let Some(rows) = s.scan_rows {
                    v[0]["Plan"]["Plans"][0]["Plan Rows"] = rows.into();
                }
                if cost < 100.0 {
                    v[0]["Plan"] = serde_json::json!({"Node Type": "Index Scan",
                        "Relation Name": "orders", "Alias": "orders", "Total Cost": cost});
                }
                vec![row(&[&v.to_string()])]
            };
            Ok(match sql {
                s_ if s_.starts_with("SELECT current_setting") => vec![row(&[s.version])],
                s_ if s_.contains("pg_extension") => {
                    if s.hypopg {
                        vec![row(&["1"])]
                    } else {
                        vec![]
                    }
                }
                s_ if s_.contains("pg_available_extensions") => vec![],
                s_ if s_.contains("to_regclass") => {
                    vec![row(&["16384", "public", "orders", "300000"])]
                }
                s_ if s_.contains("pg_index") => vec![],
                s_ if s_.contains("hypopg_create_index") => {
                    s.hypothetical = true;
                    vec![row(&["1"])]
                }
                s_ if s_.contains("hypopg_reset") => {
                    s.hypothetical = false;
                    vec![row(&[""])]
                }
                s_ if s_.starts_with("EXPLAIN") => {
                    plan(if s.hypothetical { 42.0 } else { 5445.88 })
                }
                _ => vec![],
            })
        }
    }

    struct FakeConnector(Shared);

    impl Connector for FakeConnector {
        type Db = FakeDb;
        fn databases(&self) -> Vec<String> {
            vec!["app".into()]
        }
        async fn connect(&self, _database: &str) -> Result<FakeDb, DbError> {
            Ok(FakeDb(self.0.clone()))
        }
    }

    struct OneStatement(StatementStats);

    impl Statements for OneStatement {
        fn top_by_total_time(&self, _limit: usize) -> Vec<StatementStats> {
            vec![self.0.clone()]
        }
        fn top_by_p95(&self, _limit: usize) -> Vec<StatementStats> {
            vec![]
        }
        fn get(&self, fingerprint: u64) -> Option<StatementStats> {
            (fingerprint == self.0.fingerprint).then(|| self.0.clone())
        }
        fn databases(&self, _fingerprint: u64) -> Vec<String> {
            vec!["app".into()]
        }
        fn now_ms(&self) -> u64 {
            3_600_000
        }
    }

    const QUERY: &str = "SELECT id FROM orders WHERE customer_id = $1";

    fn setup(
        version: &'static str,
        hypopg: bool,
        kind: &str,
        settings: AdvisorSettings,
    ) -> (Advisor<FakeConnector, OneStatement>, AdvisorHandle, Shared) {
        let server: Shared = Arc::new(Mutex::new(Server {
            version,
            hypopg,
            ..Server::default()
        }));
        let stats = StatementStats {
            fingerprint: 0xabc,
            query: QUERY.into(),
            kind: kind.into(),
            calls: 100,
            total_ms: 5000.0,
            p95_ms: 60.0,
            first_seen_ms: 0,
            last_seen_ms: 3_600_000,
        };
        let (a, h) = advisor(FakeConnector(server.clone()), OneStatement(stats), settings);
        (a, h, server)
    }

    fn sent(server: &Shared) -> Vec<String> {
        server
            .lock()
            .unwrap()
            .sent
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn position(sent: &[String], prefix: &str) -> usize {
        sent.iter()
            .position(|s| s.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {sent:#?}"))
    }

    #[tokio::test]
    async fn on_15_a_generic_plan_is_a_prepared_statement_forced_generic_then_deallocated() {
        let (mut a, h, server) = setup("150004", false, "SELECT", AdvisorSettings::default());
        a.run_once().await;
        let sent = sent(&server);
        let prepare = position(&sent, "PREPARE pgvigil_advisor_1 AS SELECT id FROM orders");
        let set = position(&sent, "SET plan_cache_mode = force_generic_plan");
        let explain = position(
            &sent,
            "EXPLAIN (FORMAT JSON) EXECUTE pgvigil_advisor_1(NULL)",
        );
        let reset = position(&sent, "RESET plan_cache_mode");
        let dealloc = position(&sent, "DEALLOCATE pgvigil_advisor_1");
        assert!(prepare < set && set < explain && explain < reset && reset < dealloc);
        assert!(!sent.iter().any(|s| s.contains("GENERIC_PLAN")));
        let plan = h.state.plan(0xabc).expect("plan kept");
        assert!(plan.generic && !plan.analyze);
        // No hypopg: the heuristic's advice, saying so.
        let advice = h.state.advice();
        assert_eq!(advice.len(), 1);
        assert_eq!(advice[0].method, AdviceMethod::Heuristic);
        assert_eq!(advice[0].columns, ["customer_id"]);
    }

    #[tokio::test]
    async fn without_hypopg_a_filter_keeping_much_of_the_table_gets_no_advice() {
        let (mut a, h, server) = setup("150004", false, "SELECT", AdvisorSettings::default());
        // 20% of 300k rows: an index would likely not be used.
        server.lock().unwrap().scan_rows = Some(60_000.0);
        a.run_once().await;
        assert!(h.state.advice().is_empty(), "{:?}", h.state.advice());
        // 1%: the textbook case.
        server.lock().unwrap().scan_rows = Some(3_000.0);
        a.run_once().await;
        assert_eq!(h.state.advice().len(), 1);
    }

    #[tokio::test]
    async fn on_16_the_generic_plan_option_is_used() {
        let (mut a, _h, server) = setup("160002", false, "SELECT", AdvisorSettings::default());
        a.run_once().await;
        let sent = sent(&server);
        position(
            &sent,
            &format!("EXPLAIN (GENERIC_PLAN, FORMAT JSON) {QUERY}"),
        );
        assert!(!sent.iter().any(|s| s.starts_with("PREPARE")));
    }

    #[tokio::test]
    async fn analyze_runs_only_with_a_sample_bound_as_parameters_and_is_rolled_back() {
        let settings = AdvisorSettings {
            capture_parameters: true,
            explain_analyze: true,
            ..AdvisorSettings::default()
        };
        let (mut a, h, server) = setup("150004", false, "UPDATE", settings);
        // Without a sample: a generic plan, no ANALYZE.
        a.run_once().await;
        assert!(!sent(&server).iter().any(|s| s.contains("ANALYZE")));
        h.state.set_sampler(Arc::new(|_| {
            Some(Sample {
                params: vec![Some("42".into())],
            })
        }));
        server.lock().unwrap().sent.clear();
        a.run_once().await;
        let log = server.lock().unwrap().sent.clone();
        let sent: Vec<String> = log.iter().map(|(s, _)| s.clone()).collect();
        let begin = position(&sent, "BEGIN");
        let explain = position(&sent, &format!("EXPLAIN (ANALYZE, FORMAT JSON) {QUERY}"));
        let rollback = position(&sent, "ROLLBACK");
        assert!(begin < explain && explain < rollback);
        assert_eq!(log[explain].1, vec![Some("42".to_string())]);
        let plan = h.state.plan(0xabc).unwrap();
        assert!(plan.analyze && !plan.generic);
    }

    #[tokio::test]
    async fn with_hypopg_the_index_is_recommended_from_the_cost_drop_and_reset_after() {
        let (mut a, h, server) = setup("150004", true, "SELECT", AdvisorSettings::default());
        a.run_once().await;
        let sent = sent(&server);
        let create = position(&sent, "SELECT indexrelid FROM hypopg_create_index");
        let reset = position(&sent, "SELECT hypopg_reset()");
        assert!(create < reset);
        let def = &server.lock().unwrap().sent[create].1;
        assert_eq!(
            def,
            &vec![Some("CREATE INDEX ON orders (customer_id)".to_string())]
        );
        let advice = h.state.advice();
        assert_eq!(advice.len(), 1, "{advice:?}");
        let a0 = &advice[0];
        assert_eq!(a0.method, AdviceMethod::Hypopg);
        assert_eq!(a0.cost_before, Some(5445.88));
        assert_eq!(a0.cost_after, Some(42.0));
        assert!(a0.improvement.unwrap() > 0.99);
        // 100 calls over one hour, 50 ms each, ~99% saved.
        let saved = a0.saved_ms_per_hour.unwrap();
        assert!((saved - 100.0 * 50.0 * (1.0 - 42.0 / 5445.88)).abs() < 1e-6);
        let c = h.state.counters();
        assert_eq!((c.plans_taken, c.hypothetical_plans), (1, 1));
    }

    #[tokio::test]
    async fn improvement_below_min_improvement_gives_no_advice() {
        let settings = AdvisorSettings {
            min_improvement: 0.999,
            ..AdvisorSettings::default()
        };
        let (mut a, h, _server) = setup("150004", true, "SELECT", settings);
        a.run_once().await;
        assert!(h.state.advice().is_empty());
    }

    #[tokio::test]
    async fn ddl_utility_and_with_statements_are_never_planned() {
        for kind in ["CREATE", "WITH", "UNKNOWN", "MERGE"] {
            let (mut a, h, server) = setup("150004", true, kind, AdvisorSettings::default());
            a.run_once().await;
            let sent = sent(&server);
            assert!(
                !sent
                    .iter()
                    .any(|s| s.starts_with("EXPLAIN") || s.starts_with("PREPARE")),
                "{kind}: {sent:?}"
            );
            assert_eq!(h.state.counters().plans_taken, 0);
        }
    }

    #[test]
    fn collapsed_lists_are_planned_as_one_element_with_placeholders_renumbered() {
        let (q, originals) =
            plannable("SELECT * FROM t WHERE a IN ($1, ...) AND b = $4 AND c = '$9, ...'");
        assert_eq!(
            q,
            "SELECT * FROM t WHERE a IN ($1) AND b = $2 AND c = '$9, ...'"
        );
        assert_eq!(originals, [1, 4]);
        let (q, _) = plannable("INSERT INTO t (a, b) VALUES ($1, $2), ...");
        assert_eq!(q, "INSERT INTO t (a, b) VALUES ($1, $2)");
        let (q, originals) = plannable(QUERY);
        assert_eq!((q.as_str(), originals.as_slice()), (QUERY, &[1][..]));
    }

    #[test]
    fn param_count_is_the_highest_placeholder_outside_quotes() {
        assert_eq!(
            param_count("SELECT * FROM t WHERE a = $1 AND b IN ($3, $2)"),
            3
        );
        assert_eq!(param_count("SELECT '$9' FROM t WHERE a = $1"), 1);
        assert_eq!(param_count("SELECT 1"), 0);
    }

    #[test]
    fn rate_window_never_allows_more_than_the_setting_in_any_minute() {
        let mut w = RateWindow {
            per_minute: 3,
            taken: VecDeque::new(),
        };
        let t0 = Instant::now();
        let allowed = (0..10).filter(|_| w.try_take(t0)).count();
        assert_eq!(allowed, 3);
        assert!(!w.try_take(t0 + Duration::from_secs(59)));
        assert!(w.try_take(t0 + Duration::from_secs(60)));
        assert!(w.try_take(t0 + Duration::from_secs(61)));
        assert!(w.try_take(t0 + Duration::from_secs(61)));
        assert!(!w.try_take(t0 + Duration::from_secs(61)));
    }
}
