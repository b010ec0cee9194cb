//! The console's SHOW tables. Column names and order follow PgBouncer's
//! wherever PgBouncer has the command, so exporters and scripts written
//! for it read pgvigil unchanged; SHOW QUERIES uses pg_stat_statements'
//! names.

use std::collections::BTreeMap;
use std::sync::Arc;

use pgvigil_config::{ClientAuth, Config, PoolMode, PoolSettings};
use pgvigil_insight::time::{rfc3339_ms, utc_seconds};
use pgvigil_insight::{Pattern, SortBy};

mod health;

use super::command::Show;
use crate::registry::{now_us, ClientState, ServerState};
use crate::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int,
    Float,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(String),
    Int(i64),
    Float(f64),
    Null,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}
impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Int(n)
    }
}
impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Cell {
    fn from(n: usize) -> Cell {
        Cell::from(n as u64)
    }
}
impl From<f64> for Cell {
    fn from(x: f64) -> Cell {
        Cell::Float(x)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Cell {
        v.map_or(Cell::Null, Into::into)
    }
}

pub(crate) struct Table {
    pub(crate) columns: Vec<(&'static str, Kind)>,
    pub(crate) rows: Vec<Vec<Cell>>,
}

impl Table {
    fn new(columns: &[(&'static str, Kind)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }
}

use Kind::{Float as F, Int as I, Text as T};

/// Builds the table for one SHOW; None for SHOW HELP, which only talks.
pub(crate) fn table(shared: &Shared, what: &Show) -> Option<Table> {
    Some(match what {
        Show::Pools => pools(shared),
        Show::Clients => clients(shared),
        Show::Servers => servers(shared),
        Show::Stats => stats(shared, true, true),
        Show::StatsTotals => stats(shared, true, false),
        Show::StatsAverages => stats(shared, false, true),
        Show::Databases => databases(shared),
        Show::Config => config(&in_force(shared)),
        Show::Version => {
            let mut t = Table::new(&[("version", T)]);
            t.push(vec![version().into()]);
            t
        }
        Show::Users => users(shared),
        Show::Lists => lists(shared),
        Show::Queries => queries(shared),
        Show::Slow => slow(shared),
        Show::NPlusOne => n_plus_one(shared),
        Show::Health => health::health(shared),
        Show::Markers => markers(shared),
        Show::Advice => advice(shared),
        Show::Help => return None,
    })
}

pub(crate) fn version() -> String {
    format!("pgvigil {}", env!("CARGO_PKG_VERSION"))
}

pub(crate) const HELP: &str = "Console usage
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|LISTS
\tSHOW QUERIES|SLOW|N_PLUS_ONE|ADVICE|HEALTH|MARKERS
\tPAUSE [<db>]
\tRESUME [<db>]
\tRELOAD
\tSHUTDOWN";

fn pool_mode(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
    }
}

/// Every pool, auth_query's included, by (database, user).
fn sorted_pools(shared: &Shared) -> Vec<Arc<crate::ServerPool>> {
    shared.all_pools()
}

fn pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", T),
        ("user", T),
        ("cl_active", I),
        ("cl_waiting", I),
        ("cl_active_cancel_req", I),
        ("cl_waiting_cancel_req", I),
        ("sv_active", I),
        ("sv_active_cancel", I),
        ("sv_being_canceled", I),
        ("sv_idle", I),
        ("sv_used", I),
        ("sv_tested", I),
        ("sv_login", I),
        ("maxwait", I),
        ("maxwait_us", I),
        ("pool_mode", T),
        ("cl_pinned", I),
    ]);
    let now = now_us();
    let clients = shared.registry.clients();
    let servers = shared.registry.servers();
    for pool in sorted_pools(shared) {
        let s = pool.snapshot();
        let mine = |db: &str, user: &str| db == &*pool.database && user == &*pool.user;
        let active_servers = servers
            .iter()
            .filter(|e| mine(&e.database, &e.user) && e.state() == ServerState::Active)
            .count();
        let oldest_wait = clients
            .iter()
            .filter(|c| mine(&c.who.database, &c.who.user) && !c.console)
            .filter_map(|c| c.wait_since_us())
            .min()
            .map_or(0, |since| now.saturating_sub(since));
        let waiting = s.waiting.min(s.clients);
        t.push(vec![
            (*pool.database).into(),
            (*pool.user).into(),
            (s.clients - waiting).into(),
            waiting.into(),
            0i64.into(),
            0i64.into(),
            active_servers.into(),
            0i64.into(),
            0i64.into(),
            s.idle.into(),
            0i64.into(),
            0i64.into(),
            s.total.saturating_sub(s.idle + active_servers).into(),
            (oldest_wait / 1_000_000).into(),
            (oldest_wait % 1_000_000).into(),
            pool_mode(pool.mode()).into(),
            s.pinned.into(),
        ]);
    }
    t
}

const CONNECTION_COLUMNS: [(&str, Kind); 22] = [
    ("type", T),
    ("user", T),
    ("database", T),
    ("replication", T),
    ("state", T),
    ("addr", T),
    ("port", I),
    ("local_addr", T),
    ("local_port", I),
    ("connect_time", T),
    ("request_time", T),
    ("wait", I),
    ("wait_us", I),
    ("close_needed", I),
    ("ptr", T),
    ("link", T),
    ("remote_pid", I),
    ("tls", T),
    ("application_name", T),
    ("prepared_statements", I),
    ("id", I),
    ("pinned", T),
];

fn time_us(us: u64) -> String {
    utc_seconds(us / 1000)
}

fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&CONNECTION_COLUMNS);
    let now = now_us();
    for c in shared.registry.clients() {
        let wait = c.wait_since_us().map_or(0, |s| now.saturating_sub(s));
        let state = match c.state() {
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        };
        t.push(vec![
            "C".into(),
            (*c.who.user).into(),
            (*c.who.database).into(),
            "none".into(),
            state.into(),
            c.who.client_addr.to_string().into(),
            i64::from(c.port).into(),
            c.local_addr.map(|a| a.ip.to_string()).into(),
            c.local_addr.map(|a| i64::from(a.port)).into(),
            time_us(c.connect_time_us).into(),
            time_us(c.request_time_us()).into(),
            (wait / 1_000_000).into(),
            (wait % 1_000_000).into(),
            0i64.into(),
            format!("{:x}", c.id.0).into(),
            c.link()
                .map(|s| format!("{:x}", s.0))
                .unwrap_or_default()
                .into(),
            0i64.into(),
            "".into(),
            c.who.application_name.as_str().into(),
            0i64.into(),
            c.id.0.into(),
            crate::client::pin_reasons(c.pinned_bits()).into(),
        ]);
    }
    t
}

fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(&CONNECTION_COLUMNS);
    for s in shared.registry.servers() {
        let state = match s.state() {
            ServerState::Active => "active",
            ServerState::Idle => "idle",
        };
        t.push(vec![
            "S".into(),
            s.user.as_str().into(),
            s.database.as_str().into(),
            "none".into(),
            state.into(),
            s.addr.as_str().into(),
            i64::from(s.port).into(),
            s.local_addr.map(|a| a.ip().to_string()).into(),
            s.local_addr.map(|a| i64::from(a.port())).into(),
            time_us(s.connect_time_us).into(),
            time_us(s.request_time_us()).into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
            format!("{:x}", s.id.0).into(),
            s.link()
                .map(|c| format!("{:x}", c.0))
                .unwrap_or_default()
                .into(),
            i64::from(s.remote_pid).into(),
            "".into(),
            "".into(),
            0i64.into(),
            s.id.0.into(),
            "".into(),
        ]);
    }
    t
}

/// PgBouncer's per-database totals (times in microseconds) and averages
/// per second since start.
fn stats(shared: &Shared, totals: bool, averages: bool) -> Table {
    const TOTALS: [&str; 8] = [
        "total_server_assignment_count",
        "total_xact_count",
        "total_query_count",
        "total_received",
        "total_sent",
        "total_xact_time",
        "total_query_time",
        "total_wait_time",
    ];
    const AVERAGES: [&str; 8] = [
        "avg_server_assignment_count",
        "avg_xact_count",
        "avg_query_count",
        "avg_recv",
        "avg_sent",
        "avg_xact_time",
        "avg_query_time",
        "avg_wait_time",
    ];
    let mut columns = vec![("database", T)];
    if totals {
        columns.extend(TOTALS.iter().map(|c| (*c, I)));
    }
    if averages {
        columns.extend(AVERAGES.iter().map(|c| (*c, I)));
    }
    let mut t = Table::new(&columns);
    let mut per_db: BTreeMap<&str, [u64; 8]> = BTreeMap::new();
    let all = shared.all_pools();
    for pool in &all {
        let p = pool.totals();
        let (_, wait_secs, assignments) = pool.counters.wait.snapshot();
        let sums = per_db.entry(&*pool.database).or_default();
        let add = [
            assignments,
            p.transactions,
            p.queries,
            p.received,
            p.sent,
            p.xact_time_us,
            p.query_time_us,
            (wait_secs * 1e6) as u64,
        ];
        for (s, a) in sums.iter_mut().zip(add) {
            *s += a;
        }
    }
    let uptime = shared.started.elapsed().as_secs().max(1);
    for (db, s) in per_db {
        let mut row: Vec<Cell> = vec![db.into()];
        if totals {
            row.extend(s.iter().map(|&v| Cell::from(v)));
        }
        if averages {
            let per_sec = |v: u64| Cell::from(v / uptime);
            // Times average per transaction / query / assignment, as PgBouncer's.
            let per = |v: u64, n: u64| Cell::from(v.checked_div(n).unwrap_or(0));
            row.extend([
                per_sec(s[0]),
                per_sec(s[1]),
                per_sec(s[2]),
                per_sec(s[3]),
                per_sec(s[4]),
                per(s[5], s[1]),
                per(s[6], s[2]),
                per(s[7], s[0]),
            ]);
        }
        t.push(row);
    }
    t
}

fn databases(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", T),
        ("host", T),
        ("port", I),
        ("database", T),
        ("force_user", T),
        ("pool_size", I),
        ("min_pool_size", I),
        ("reserve_pool", I),
        ("server_lifetime", I),
        ("pool_mode", T),
        ("max_connections", I),
        ("current_connections", I),
        ("paused", I),
        ("disabled", I),
    ]);
    let config = &shared.config;
    let all = shared.all_pools();
    for db in config.databases.values() {
        let pools: Vec<_> = all.iter().filter(|p| *p.database == db.name).collect();
        let current: usize = pools.iter().map(|p| p.snapshot().total).sum();
        let paused = !pools.is_empty() && pools.iter().all(|p| p.is_paused());
        let s = pools
            .first()
            .map(|p| p.settings())
            .unwrap_or(db.pool.clone());
        t.push(vec![
            db.name.as_str().into(),
            db.host.as_str().into(),
            i64::from(db.port).into(),
            db.dbname.as_str().into(),
            Cell::Null,
            s.pool_size.into(),
            s.min_pool_size.into(),
            s.max_overflow.into(),
            s.server_lifetime.as_secs().into(),
            pool_mode(s.pool_mode).into(),
            ((s.pool_size + s.max_overflow) * config.users.len()).into(),
            current.into(),
            i64::from(paused).into(),
            0i64.into(),
        ]);
    }
    t
}

fn users(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", T),
        ("pool_mode", T),
        ("max_user_connections", I),
        ("current_connections", I),
    ]);
    let config = &shared.config;
    for user in config.users.values() {
        let current: usize = shared
            .pools
            .values()
            .filter(|p| *p.user == user.name)
            .map(|p| p.snapshot().total)
            .sum();
        t.push(vec![
            user.name.as_str().into(),
            Cell::Null,
            0i64.into(),
            current.into(),
        ]);
    }
    t
}

fn lists(shared: &Shared) -> Table {
    let mut t = Table::new(&[("list", T), ("items", I)]);
    let config = &shared.config;
    let clients = shared.registry.clients().len();
    let servers = shared.registry.servers();
    let idle = servers
        .iter()
        .filter(|s| s.state() == ServerState::Idle)
        .count();
    for (name, n) in [
        ("databases", config.databases.len()),
        ("users", config.users.len()),
        ("peers", 0),
        ("pools", shared.all_pools().len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", clients),
        ("login_clients", 0),
        ("free_servers", idle),
        ("used_servers", servers.len() - idle),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ] {
        t.push(vec![name.into(), n.into()]);
    }
    // pgvigil's own: auth_query's look-ups, its cache and the pools it
    // made (every count bounded, every drop counted).
    let aq = shared.auth_query_stats();
    for (name, n) in [
        ("auth_query_lookups", aq.lookups),
        ("auth_query_cache_hits", aq.cache_hits),
        ("auth_query_cache_evictions", aq.cache_evictions),
        ("auth_query_failures", aq.failures),
        ("auth_query_pool_refusals", aq.pool_refusals),
        ("auth_query_cached", aq.cached as u64),
        ("auth_query_pools", aq.dynamic_pools as u64),
    ] {
        t.push(vec![name.into(), (n as i64).into()]);
    }
    t
}

/// The settings in force: what RELOAD changed, and for the rest what
/// pgvigil started with (a changed listen address, say, waits for a
/// restart and is not in force yet).
fn in_force(shared: &Shared) -> Config {
    let live = shared.live_config();
    let mut c = shared.config.clone();
    c.admin_users = live.admin_users.clone();
    c.stats_users = live.stats_users.clone();
    c.pool_defaults = PoolSettings {
        pool_mode: c.pool_defaults.pool_mode,
        ..live.pool_defaults.clone()
    };
    c.client_tls = live.client_tls.clone();
    c.server_tls = live.server_tls.clone();
    c.client_login_timeout = live.client_login_timeout;
    c.shutdown_timeout = live.shutdown_timeout;
    c.auth_user = live.auth_user.clone();
    c.auth_query = live.auth_query.clone();
    c
}

fn config(c: &Config) -> Table {
    let mut t = Table::new(&[("key", T), ("value", T), ("default", T), ("changeable", T)]);
    let p = &c.pool_defaults;
    let defaults = PoolSettings::default();
    let secs = |d: std::time::Duration| format!("{}", d.as_secs_f64());
    let auth = |a: ClientAuth| match a {
        ClientAuth::Trust => "trust",
        ClientAuth::Md5 => "md5",
        ClientAuth::ScramSha256 => "scram-sha-256",
    };
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let rows: Vec<(&str, String, String, bool)> = vec![
        (
            "listen",
            c.listen.to_string(),
            "127.0.0.1:6432".into(),
            false,
        ),
        (
            "admin_listen",
            c.admin_listen.to_string(),
            "127.0.0.1:9930".into(),
            false,
        ),
        (
            "admin_token",
            if c.admin_token.is_some() { "(set)" } else { "" }.into(),
            "".into(),
            false,
        ),
        ("admin_users", c.admin_users.join(","), "".into(), true),
        ("stats_users", c.stats_users.join(","), "".into(), true),
        (
            "client_auth",
            auth(c.client_auth).into(),
            "scram-sha-256".into(),
            false,
        ),
        (
            "max_client_conn",
            c.max_client_conn.to_string(),
            "100".into(),
            false,
        ),
        (
            "max_packet_size",
            c.max_packet_size.to_string(),
            "268435456".into(),
            false,
        ),
        (
            "worker_threads",
            c.worker_threads.to_string(),
            "1".into(),
            false,
        ),
        (
            "pool_mode",
            pool_mode(p.pool_mode).into(),
            "session".into(),
            false,
        ),
        (
            "pool_size",
            p.pool_size.to_string(),
            defaults.pool_size.to_string(),
            true,
        ),
        (
            "min_pool_size",
            p.min_pool_size.to_string(),
            defaults.min_pool_size.to_string(),
            true,
        ),
        (
            "max_overflow",
            p.max_overflow.to_string(),
            defaults.max_overflow.to_string(),
            true,
        ),
        (
            "acquire_timeout",
            secs(p.acquire_timeout),
            secs(defaults.acquire_timeout),
            true,
        ),
        (
            "server_lifetime",
            secs(p.server_lifetime),
            secs(defaults.server_lifetime),
            true,
        ),
        (
            "server_idle_timeout",
            secs(p.server_idle_timeout),
            secs(defaults.server_idle_timeout),
            true,
        ),
        (
            "server_check_delay",
            secs(p.server_check_delay),
            secs(defaults.server_check_delay),
            true,
        ),
        (
            "server_connect_timeout",
            secs(p.server_connect_timeout),
            secs(defaults.server_connect_timeout),
            true,
        ),
        (
            "server_reset_query",
            p.server_reset_query.clone(),
            defaults.server_reset_query.clone(),
            true,
        ),
        (
            "max_prepared_statements",
            p.max_prepared_statements.to_string(),
            defaults.max_prepared_statements.to_string(),
            true,
        ),
        (
            "query_wait_timeout",
            secs(p.acquire_timeout),
            secs(defaults.acquire_timeout),
            true,
        ),
        (
            "query_timeout",
            secs(p.query_timeout),
            secs(defaults.query_timeout),
            true,
        ),
        (
            "idle_transaction_timeout",
            secs(p.idle_transaction_timeout),
            secs(defaults.idle_transaction_timeout),
            true,
        ),
        (
            "client_idle_timeout",
            secs(p.client_idle_timeout),
            secs(defaults.client_idle_timeout),
            true,
        ),
        (
            "transaction_timeout",
            secs(p.transaction_timeout),
            secs(defaults.transaction_timeout),
            true,
        ),
        (
            "client_login_timeout",
            secs(c.client_login_timeout),
            "60".into(),
            true,
        ),
        (
            "shutdown_timeout",
            secs(c.shutdown_timeout),
            "10".into(),
            true,
        ),
        // File paths only: the files' contents never appear here.
        (
            "client_tls_sslmode",
            c.client_tls.sslmode.as_str().into(),
            "disable".into(),
            true,
        ),
        (
            "client_tls_cert_file",
            path(&c.client_tls.cert_file),
            "".into(),
            true,
        ),
        (
            "client_tls_key_file",
            path(&c.client_tls.key_file),
            "".into(),
            true,
        ),
        (
            "client_tls_ca_file",
            path(&c.client_tls.ca_file),
            "".into(),
            true,
        ),
        (
            "server_tls_sslmode",
            c.server_tls.sslmode.as_str().into(),
            "prefer".into(),
            true,
        ),
        (
            "server_tls_ca_file",
            path(&c.server_tls.ca_file),
            "".into(),
            true,
        ),
        (
            "server_require_auth",
            c.server_require_auth.to_setting(),
            "".into(),
            false,
        ),
        (
            "auth_user",
            c.auth_user.clone().unwrap_or_default(),
            "".into(),
            true,
        ),
        (
            "auth_query",
            c.auth_query.clone(),
            pgvigil_config::DEFAULT_AUTH_QUERY.into(),
            true,
        ),
        (
            "analytics",
            if c.insight.analytics { "on" } else { "off" }.into(),
            "on".into(),
            false,
        ),
        (
            "max_fingerprints",
            c.insight.max_fingerprints.to_string(),
            "5000".into(),
            false,
        ),
        (
            "max_query_series",
            c.metrics.max_query_series.to_string(),
            "100".into(),
            false,
        ),
    ];
    for (key, value, default, changeable) in rows {
        t.push(vec![
            key.into(),
            value.into(),
            default.into(),
            if changeable { "yes" } else { "no" }.into(),
        ]);
    }
    t
}

fn queries(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("fingerprint", T),
        ("statement", T),
        ("calls", I),
        ("total_exec_time", F),
        ("mean_exec_time", F),
        ("min_exec_time", F),
        ("max_exec_time", F),
        ("stddev_exec_time", F),
        ("p50_exec_time", F),
        ("p95_exec_time", F),
        ("p99_exec_time", F),
        ("rows", I),
        ("errors", I),
        ("query", T),
    ]);
    if let Some(insight) = &shared.insight {
        let now_ms = now_us() / 1000;
        for r in insight.queries(SortBy::TotalTime, 100, None, now_ms) {
            t.push(vec![
                format!("{:016x}", r.fingerprint).into(),
                r.statement.into(),
                r.calls.into(),
                r.total_ms.into(),
                r.mean_ms.into(),
                r.min_ms.into(),
                r.max_ms.into(),
                r.stddev_ms.into(),
                r.p50_ms.into(),
                r.p95_ms.into(),
                r.p99_ms.into(),
                r.rows.into(),
                r.errors.into(),
                r.query.into(),
            ]);
        }
    }
    t
}

fn slow(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("at", T),
        ("rule", T),
        ("fingerprint", T),
        ("duration_ms", F),
        ("database", T),
        ("user", T),
        ("application_name", T),
        ("client_addr", T),
        ("query", T),
    ]);
    if let Some(insight) = &shared.insight {
        for e in insight.slow_events(100) {
            t.push(vec![
                rfc3339_ms(e.at_ms).into(),
                e.rule.into(),
                format!("{:016x}", e.fingerprint).into(),
                (e.duration_us as f64 / 1000.0).into(),
                e.database.into(),
                e.user.into(),
                e.application_name.into(),
                e.client_addr.into(),
                e.query.into(),
            ]);
        }
    }
    t
}

fn n_plus_one(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("fingerprint", T),
        ("parent_fingerprint", T),
        ("kind", T),
        ("repeats", I),
        ("occurrences", I),
        ("total_ms", F),
        ("last_seen", T),
        ("database", T),
        ("user", T),
        ("application_name", T),
        ("query", T),
        ("parent_query", T),
        ("suggestion", T),
    ]);
    if let Some(insight) = &shared.insight {
        for d in insight.detections() {
            let (kind, parent) = match d.pattern {
                Pattern::NPlusOne { parent } => ("n_plus_one", Some(format!("{parent:016x}"))),
                Pattern::RepeatedIdentical => ("repeated_identical", None),
            };
            t.push(vec![
                format!("{:016x}", d.child).into(),
                parent.into(),
                kind.into(),
                d.repeats.into(),
                d.occurrences.into(),
                d.total_ms.into(),
                rfc3339_ms(d.last_seen_ms).into(),
                d.caller.database.as_str().into(),
                d.caller.user.as_str().into(),
                d.caller.application_name.as_str().into(),
                d.child_query.into(),
                d.parent_query.into(),
                d.suggestion.into(),
            ]);
        }
    }
    t
}

/// Markers, newest first, each with its one-line before/after summary.
fn markers(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("id", I),
        ("at", T),
        ("kind", T),
        ("name", T),
        ("statement", T),
        ("objects", T),
        ("fingerprints", I),
        ("summary", T),
    ]);
    if let Some(insight) = &shared.insight {
        for m in insight.markers() {
            let summary = insight.marker(m.id).map(|r| r.summary);
            t.push(vec![
                m.id.into(),
                rfc3339_ms(m.at_ms).into(),
                m.kind.as_str().into(),
                m.name.into(),
                m.statement.into(),
                m.objects.join(", ").into(),
                m.fingerprints.into(),
                summary.into(),
            ]);
        }
    }
    t
}

/// GET /api/advice as rows: helped fingerprints joined with commas.
fn advice(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("kind", T),
        ("database", T),
        ("table", T),
        ("columns", T),
        ("ddl", T),
        ("cost_before", F),
        ("cost_after", F),
        ("improvement", F),
        ("saved_ms_per_hour", F),
        ("fingerprints", T),
        ("method", T),
        ("reason", T),
    ]);
    if let Some(advisor) = shared.advisor.get() {
        for a in advisor.state.advice() {
            let fingerprints: Vec<&str> = a
                .fingerprints
                .iter()
                .map(|f| f.fingerprint.as_str())
                .collect();
            t.push(vec![
                a.kind.as_str().into(),
                a.database.into(),
                a.table.into(),
                a.columns.join(", ").into(),
                a.ddl.into(),
                a.cost_before.into(),
                a.cost_after.into(),
                a.improvement.into(),
                a.saved_ms_per_hour.into(),
                fingerprints.join(",").into(),
                match a.method {
                    pgvigil_advisor::AdviceMethod::Hypopg => "hypopg",
                    pgvigil_advisor::AdviceMethod::Heuristic => "heuristic",
                }
                .into(),
                a.reason.into(),
            ]);
        }
    }
    t
}
