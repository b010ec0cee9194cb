//! `pgvigil top`: a terminal live view of a running pgvigil, fed by its admin
//! JSON API.
//!
//! * this module: the view's state ([`App`]) and key handling, pure and
//!   unit-tested, plus the event loop that ties them to the terminal;
//! * [`api`]: fetching (a background thread polls the API and hands
//!   [`api::Snapshot`]s to the event loop, so the keyboard never waits on the network);
//! * [`ui`]: rendering a frame from an [`App`].

pub(crate) mod api;
mod ui;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use api::{ApiClient, FetchError, PoolsFetch, Snapshot};

/// `pgvigil top` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    /// Admin listener of the pgvigil to watch (host:port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9930")]
    pub admin: String,
    /// Bearer token for the admin API, if the watched pgvigil requires one.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PGVIGIL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Statements fetched per refresh (the screen shows as many as fit).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub limit: usize,
}

fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0.1 and 3600"
        )),
    }
}

/// The order of the top-queries table; each has a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    TotalTime,
    Calls,
    Mean,
    P95,
    Errors,
}

impl SortKey {
    pub const ALL: [SortKey; 5] = [
        SortKey::TotalTime,
        SortKey::Calls,
        SortKey::Mean,
        SortKey::P95,
        SortKey::Errors,
    ];

    /// The key that selects this order.
    pub fn key(self) -> char {
        match self {
            SortKey::TotalTime => 't',
            SortKey::Calls => 'c',
            SortKey::Mean => 'm',
            SortKey::P95 => 'p',
            SortKey::Errors => 'e',
        }
    }

    pub fn from_key(c: char) -> Option<SortKey> {
        SortKey::ALL
            .into_iter()
            .find(|s| s.key() == c.to_ascii_lowercase())
    }

    /// The `sort=` value of `/api/queries`.
    pub fn api_name(self) -> &'static str {
        match self {
            SortKey::TotalTime => "total_time",
            SortKey::Calls => "calls",
            SortKey::Mean => "mean",
            SortKey::P95 => "p95",
            SortKey::Errors => "errors",
        }
    }

    /// As shown on screen.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::TotalTime => "total time",
            SortKey::Calls => "calls",
            SortKey::Mean => "mean",
            SortKey::P95 => "p95",
            SortKey::Errors => "errors",
        }
    }

    fn value(self, row: &QueryRow) -> f64 {
        match self {
            SortKey::TotalTime => row.total_ms,
            SortKey::Calls => row.calls as f64,
            SortKey::Mean => row.mean_ms,
            SortKey::P95 => row.p95_ms,
            SortKey::Errors => row.errors as f64,
        }
    }
}

/// One statement of `/api/queries`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRow {
    pub fingerprint: String,
    pub query: String,
    pub statement: String,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    /// Calls per second between the last two refreshes; `None` until there
    /// are two refreshes that both saw this statement.
    pub calls_per_sec: Option<f64>,
}

/// One pool of `/api/pools`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub pool_mode: String,
    pub pool_size: u64,
    pub active: u64,
    pub idle: u64,
    pub overflow: u64,
    pub waiting: u64,
    pub clients: u64,
    /// 0.0 to 1.0.
    pub utilization: f64,
}

/// One event of `/api/slow`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowRow {
    pub at: String,
    pub rule: String,
    pub query: String,
    pub duration_ms: f64,
    pub database: String,
    pub user: String,
    pub application_name: String,
}

/// One detection of `/api/n-plus-one`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRow {
    pub kind: String,
    pub query: String,
    pub parent_query: String,
    pub repeats: u64,
    pub occurrences: u64,
    pub last_seen: String,
    pub suggestion: String,
}

/// From `/api/insight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insight {
    pub fingerprints: u64,
    pub max_fingerprints: u64,
    pub evictions: u64,
}

/// From `/api/advice`: how much advice the advisor has, by kind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdviceCounts {
    pub total: u64,
    /// (kind as the API names it, count), create_index first.
    pub by_kind: Vec<(String, u64)>,
}

/// An endpoint not every pgvigil serves (the advisor's): its figures, or
/// that it is off here, or why fetching it failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra<T> {
    /// No refresh yet.
    Unknown,
    Value(T),
    /// 404 or 503: not served by this pgvigil, or not now; the API's message.
    Off(String),
    Failed(String),
}

/// Whether the last refresh reached pgvigil.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// No refresh finished yet.
    Connecting,
    Up,
    /// The message to show, e.g. "cannot reach 127.0.0.1:9930: Connection refused".
    Down(String),
    /// pgvigil answered but refused the request (401 or 403: no token, or
    /// the wrong one): reachable, yet nothing it shows is live, so the
    /// header must not say "up". The HTTP status.
    Refused(u16),
}

/// The pools panel.
#[derive(Debug, Clone, PartialEq)]
pub enum Pools {
    Unknown,
    Rows(Vec<PoolRow>),
    /// This pgvigil has no `/api/pools`.
    NotServed,
    Failed(String),
}

/// What a key press asks of the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// Fetch now (with the current sort order).
    Refresh,
    Quit,
}

/// Shorter than this between two refreshes (a refresh forced by a key
/// press), a calls/s figure would be mostly noise: the previous figures and
/// baseline are kept instead.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(500);

/// The whole state of the view.
#[derive(Debug, Clone)]
pub struct App {
    pub admin: String,
    pub interval: Duration,
    pub sort: SortKey,
    pub link: Link,
    /// When data last arrived.
    pub last_ok: Option<Instant>,
    pub queries: Vec<QueryRow>,
    /// Why `/api/queries` gave nothing (e.g. analytics are off), if it did.
    pub queries_error: Option<String>,
    pub pools: Pools,
    pub slow: Result<Vec<SlowRow>, String>,
    pub detections: Result<Vec<DetectionRow>, String>,
    pub insight: Option<Insight>,
    pub advice: Extra<AdviceCounts>,
    pub regressions: Extra<u64>,
    /// `calls` per fingerprint at `baseline_at`, for calls/s.
    baseline: HashMap<String, u64>,
    baseline_at: Option<Instant>,
}

impl App {
    pub fn new(admin: &str, sort: SortKey, interval: Duration) -> App {
        App {
            admin: admin.to_string(),
            interval,
            sort,
            link: Link::Connecting,
            last_ok: None,
            queries: Vec::new(),
            queries_error: None,
            pools: Pools::Unknown,
            slow: Ok(Vec::new()),
            detections: Ok(Vec::new()),
            insight: None,
            advice: Extra::Unknown,
            regressions: Extra::Unknown,
            baseline: HashMap::new(),
            baseline_at: None,
        }
    }

    /// Takes in one refresh.
    pub fn apply(&mut self, snap: Snapshot) {
        if let Err(FetchError::Unreachable(why)) = &snap.queries {
            // Keep the last data on screen; rates restart after reconnecting.
            self.link = Link::Down(format!("cannot reach {}: {why}", self.admin));
            self.forget_rates();
            return;
        }
        if let Err(FetchError::Status(code @ (401 | 403), _)) = &snap.queries {
            self.link = Link::Refused(*code);
            self.no_queries(format!(
                "the admin API refused the request (HTTP {code}): give its token with \
                 --admin-token or $PGVIGIL_ADMIN_TOKEN"
            ));
            return;
        }
        self.link = Link::Up;
        self.last_ok = Some(snap.at);
        match snap.queries {
            Ok(rows) => {
                self.queries = self.with_rates(rows, snap.at);
                self.queries_error = None;
                sort_rows(&mut self.queries, self.sort);
            }
            Err(e) => self.no_queries(e.to_string()),
        }
        self.pools = match snap.pools {
            PoolsFetch::Rows(rows) => Pools::Rows(rows),
            PoolsFetch::NotServed => Pools::NotServed,
            PoolsFetch::Failed(e) => Pools::Failed(e.to_string()),
        };
        self.slow = snap.slow.map_err(|e| e.to_string());
        self.detections = snap.detections.map_err(|e| e.to_string());
        self.insight = snap.insight.ok();
        self.advice = snap.advice;
        self.regressions = snap.regressions;
    }

    /// No statement list, and why; rates start over with the next one.
    fn no_queries(&mut self, why: String) {
        self.queries.clear();
        self.queries_error = Some(why);
        self.forget_rates();
    }

    fn forget_rates(&mut self) {
        self.baseline.clear();
        self.baseline_at = None;
    }

    /// Fills in calls/s from the difference to the previous refresh and
    /// makes `rows` the next baseline.
    fn with_rates(&mut self, mut rows: Vec<QueryRow>, at: Instant) -> Vec<QueryRow> {
        let window = self.baseline_at.map(|b| at.saturating_duration_since(b));
        if window.is_some_and(|w| w < MIN_RATE_WINDOW) {
            let previous: HashMap<&str, Option<f64>> = self
                .queries
                .iter()
                .map(|q| (q.fingerprint.as_str(), q.calls_per_sec))
                .collect();
            for row in &mut rows {
                row.calls_per_sec = previous.get(row.fingerprint.as_str()).copied().flatten();
            }
            return rows;
        }
        if let Some(window) = window {
            let secs = window.as_secs_f64();
            for row in &mut rows {
                row.calls_per_sec = self
                    .baseline
                    .get(&row.fingerprint)
                    // Fewer calls than before: statistics were reset or the
                    // fingerprint was evicted and came back; no honest rate.
                    .filter(|before| **before <= row.calls)
                    .map(|before| (row.calls - before) as f64 / secs);
            }
        }
        self.baseline = rows
            .iter()
            .map(|r| (r.fingerprint.clone(), r.calls))
            .collect();
        self.baseline_at = Some(at);
        rows
    }

    /// Handles one key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('r') | KeyCode::Char('R') => Action::Refresh,
            KeyCode::Char(c) => match SortKey::from_key(c) {
                Some(sort) => {
                    let changed = sort != self.sort;
                    self.sort = sort;
                    sort_rows(&mut self.queries, sort);
                    if changed {
                        Action::Refresh
                    } else {
                        Action::None
                    }
                }
                None => Action::None,
            },
            _ => Action::None,
        }
    }
}

/// Largest first by `sort`; ties by total time, then fingerprint, so the
/// order is stable between refreshes.
pub fn sort_rows(rows: &mut [QueryRow], sort: SortKey) {
    rows.sort_by(|a, b| {
        sort.value(b)
            .total_cmp(&sort.value(a))
            .then_with(|| b.total_ms.total_cmp(&a.total_ms))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
}

/// Runs the view until `q` or Ctrl-C.
pub fn run(args: TopArgs) -> ExitCode {
    if !std::io::stdout().is_terminal() {
        eprintln!("pgvigil top: standard output is not a terminal");
        return ExitCode::from(2);
    }
    let interval = Duration::from_secs_f64(args.interval);
    let client = ApiClient::new(
        &args.admin,
        args.admin_token.clone(),
        Duration::from_secs(2),
    );
    let mut app = App::new(client.addr(), SortKey::TotalTime, interval);
    let (sort_tx, snapshots) = spawn_fetcher(client, app.sort, interval, args.limit.max(1));
    let mut terminal = match init_terminal() {
        Ok(t) => t,
        Err(e) => {
            restore_terminal();
            eprintln!("pgvigil top: cannot set up the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = event_loop(&mut terminal, &mut app, &sort_tx, &snapshots);
    restore_terminal();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgvigil top: {e}");
            ExitCode::FAILURE
        }
    }
}

type Term = ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>;

fn event_loop(
    terminal: &mut Term,
    app: &mut App,
    sort_tx: &mpsc::Sender<SortKey>,
    snapshots: &mpsc::Receiver<Snapshot>,
) -> std::io::Result<()> {
    loop {
        loop {
            match snapshots.try_recv() {
                Ok(snap) => app.apply(snap),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(std::io::Error::other("the fetching thread stopped"));
                }
            }
        }
        terminal.draw(|frame| ui::draw(frame, app, Instant::now()))?;
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        if let Event::Key(key) = event::read()? {
            match app.handle_key(key) {
                Action::Quit => return Ok(()),
                Action::Refresh => {
                    let _ = sort_tx.send(app.sort);
                }
                Action::None => {}
            }
        }
    }
}

/// Polls the API every `interval` on its own thread, and at once when a sort
/// order arrives on the returned sender. Ends when either channel end is dropped.
fn spawn_fetcher(
    client: ApiClient,
    mut sort: SortKey,
    interval: Duration,
    limit: usize,
) -> (mpsc::Sender<SortKey>, mpsc::Receiver<Snapshot>) {
    let (sort_tx, sort_rx) = mpsc::channel::<SortKey>();
    let (snap_tx, snap_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("top-fetch".into())
        .spawn(move || loop {
            if snap_tx.send(client.snapshot(sort, limit, 50)).is_err() {
                return;
            }
            match sort_rx.recv_timeout(interval) {
                Ok(s) => sort = sort_rx.try_iter().last().unwrap_or(s),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        })
        .expect("spawning the fetching thread");
    (sort_tx, snap_rx)
}

/// Raw mode and the alternate screen; a panic hook puts the terminal back
/// before the panic message is printed.
fn init_terminal() -> std::io::Result<Term> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    crossterm::terminal::enable_raw_mode()?;
    crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen)?;
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    terminal.hide_cursor()?;
    terminal.clear()?;
    Ok(terminal)
}

/// Leaves raw mode and the alternate screen and shows the cursor; safe to
/// call more than once.
fn restore_terminal() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fp: &str, calls: u64, total_ms: f64) -> QueryRow {
        QueryRow {
            fingerprint: fp.to_string(),
            query: format!("SELECT {fp}"),
            statement: "SELECT".into(),
            calls,
            errors: 0,
            rows: 0,
            total_ms,
            mean_ms: if calls == 0 {
                0.0
            } else {
                total_ms / calls as f64
            },
            p95_ms: 0.0,
            calls_per_sec: None,
        }
    }

    fn snapshot(at: Instant, rows: Vec<QueryRow>) -> Snapshot {
        Snapshot {
            at,
            queries: Ok(rows),
            pools: PoolsFetch::NotServed,
            slow: Ok(Vec::new()),
            detections: Ok(Vec::new()),
            insight: Ok(Insight {
                fingerprints: 2,
                max_fingerprints: 5000,
                evictions: 0,
            }),
            advice: Extra::Off("the advisor is off".into()),
            regressions: Extra::Off("not served".into()),
        }
    }

    fn press(app: &mut App, c: char) -> Action {
        app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn order(app: &App) -> Vec<&str> {
        app.queries.iter().map(|q| q.fingerprint.as_str()).collect()
    }

    #[test]
    fn sort_keys_reorder_and_ask_for_a_refresh() {
        let mut app = App::new("127.0.0.1:9930", SortKey::TotalTime, Duration::from_secs(1));
        let mut slow = row("a", 2, 100.0);
        slow.p95_ms = 80.0;
        let mut busy = row("b", 50, 10.0);
        busy.errors = 3;
        busy.p95_ms = 0.5;
        app.apply(snapshot(Instant::now(), vec![busy, slow]));
        assert_eq!(order(&app), ["a", "b"], "sorted by total time on arrival");

        assert_eq!(press(&mut app, 'c'), Action::Refresh);
        assert_eq!(app.sort, SortKey::Calls);
        assert_eq!(order(&app), ["b", "a"]);
        assert_eq!(press(&mut app, 'c'), Action::None, "same order: no refetch");

        assert_eq!(press(&mut app, 'm'), Action::Refresh);
        assert_eq!(order(&app), ["a", "b"]);
        assert_eq!(press(&mut app, 'e'), Action::Refresh);
        assert_eq!(order(&app), ["b", "a"]);
        assert_eq!(press(&mut app, 'P'), Action::Refresh);
        assert_eq!(app.sort, SortKey::P95);
        assert_eq!(order(&app), ["a", "b"]);
        assert_eq!(press(&mut app, 't'), Action::Refresh);
        assert_eq!(app.sort, SortKey::TotalTime);

        assert_eq!(press(&mut app, 'x'), Action::None);
        assert_eq!(press(&mut app, 'r'), Action::Refresh);
    }

    #[test]
    fn quit_keys() {
        let mut app = App::new("x", SortKey::TotalTime, Duration::from_secs(1));
        assert_eq!(press(&mut app, 'q'), Action::Quit);
        assert_eq!(
            app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(
            app.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
            Action::Quit
        );
        assert_eq!(app.sort, SortKey::TotalTime, "Ctrl-C is not the calls sort");
    }

    #[test]
    fn ties_keep_a_stable_order() {
        let mut rows = vec![row("b", 1, 1.0), row("a", 1, 1.0), row("c", 1, 2.0)];
        sort_rows(&mut rows, SortKey::Calls);
        let fps: Vec<_> = rows.iter().map(|r| r.fingerprint.as_str()).collect();
        assert_eq!(fps, ["c", "a", "b"]);
    }

    #[test]
    fn calls_per_second_from_two_refreshes() {
        let mut app = App::new("x", SortKey::Calls, Duration::from_secs(1));
        let t0 = Instant::now();
        app.apply(snapshot(t0, vec![row("a", 10, 1.0), row("b", 5, 1.0)]));
        assert!(app.queries.iter().all(|q| q.calls_per_sec.is_none()));

        let t1 = t0 + Duration::from_secs(2);
        app.apply(snapshot(
            t1,
            vec![row("a", 30, 2.0), row("b", 5, 1.0), row("new", 4, 1.0)],
        ));
        let rate = |app: &App, fp: &str| {
            app.queries
                .iter()
                .find(|q| q.fingerprint == fp)
                .unwrap()
                .calls_per_sec
        };
        assert_eq!(rate(&app, "a"), Some(10.0));
        assert_eq!(rate(&app, "b"), Some(0.0));
        assert_eq!(rate(&app, "new"), None, "first sighting has no rate");

        // A refresh forced by a key 100 ms later keeps the previous figures.
        let t2 = t1 + Duration::from_millis(100);
        app.apply(snapshot(t2, vec![row("a", 31, 2.0), row("b", 5, 1.0)]));
        assert_eq!(rate(&app, "a"), Some(10.0));

        // Counted from the last real baseline (t1), not from t2.
        let t3 = t1 + Duration::from_secs(1);
        app.apply(snapshot(t3, vec![row("a", 35, 2.0), row("b", 7, 1.0)]));
        assert_eq!(rate(&app, "a"), Some(5.0));
        assert_eq!(rate(&app, "b"), Some(2.0));

        // Statistics reset: fewer calls than before gives no rate.
        let t4 = t3 + Duration::from_secs(1);
        app.apply(snapshot(t4, vec![row("a", 1, 0.1)]));
        assert_eq!(rate(&app, "a"), None);
    }

    #[test]
    fn unreachable_keeps_data_and_says_so() {
        let mut app = App::new("127.0.0.1:9930", SortKey::TotalTime, Duration::from_secs(1));
        let t0 = Instant::now();
        app.apply(snapshot(t0, vec![row("a", 10, 1.0)]));
        assert_eq!(app.link, Link::Up);
        assert_eq!(app.pools, Pools::NotServed);

        let mut down = snapshot(t0 + Duration::from_secs(1), Vec::new());
        down.queries = Err(FetchError::Unreachable("Connection refused".into()));
        app.apply(down);
        assert_eq!(
            app.link,
            Link::Down("cannot reach 127.0.0.1:9930: Connection refused".into())
        );
        assert_eq!(order(&app), ["a"], "last data stays on screen");

        // Back up: no rate across the outage.
        app.apply(snapshot(
            t0 + Duration::from_secs(3),
            vec![row("a", 20, 1.0)],
        ));
        assert_eq!(app.link, Link::Up);
        assert_eq!(app.queries[0].calls_per_sec, None);
    }

    #[test]
    fn a_refused_token_is_not_up() {
        let mut app = App::new("127.0.0.1:9930", SortKey::TotalTime, Duration::from_secs(1));
        let t0 = Instant::now();
        let mut snap = snapshot(t0, Vec::new());
        snap.queries = Err(FetchError::Status(
            401,
            "missing or wrong admin token: send Authorization: Bearer <admin_token>".into(),
        ));
        app.apply(snap);
        assert_eq!(app.link, Link::Refused(401));
        assert_eq!(app.last_ok, None, "nothing arrived");
        assert!(app
            .queries_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 401") && e.contains("--admin-token")));

        // With the right token again: up.
        app.apply(snapshot(
            t0 + Duration::from_secs(1),
            vec![row("a", 1, 1.0)],
        ));
        assert_eq!(app.link, Link::Up);
        assert_eq!(app.queries_error, None);
    }

    #[test]
    fn api_errors_are_shown_not_fatal() {
        let mut app = App::new("x", SortKey::TotalTime, Duration::from_secs(1));
        let mut snap = snapshot(Instant::now(), Vec::new());
        snap.queries = Err(FetchError::Status(
            404,
            "query analytics are off (analytics = false)".into(),
        ));
        snap.pools =
            PoolsFetch::Failed(FetchError::Malformed("/api/pools: no `pools` array".into()));
        snap.slow = Err(FetchError::Status(
            401,
            "missing or wrong admin token".into(),
        ));
        app.apply(snap);
        assert_eq!(app.link, Link::Up);
        assert_eq!(
            app.queries_error.as_deref(),
            Some("HTTP 404: query analytics are off (analytics = false)")
        );
        assert!(matches!(app.pools, Pools::Failed(_)));
        assert!(app.slow.is_err());
    }

    #[test]
    fn advice_and_regressions_follow_each_refresh_and_keep_through_an_outage() {
        let mut app = App::new("x", SortKey::TotalTime, Duration::from_secs(1));
        assert_eq!(app.advice, Extra::Unknown);
        let t0 = Instant::now();
        let mut snap = snapshot(t0, Vec::new());
        snap.advice = Extra::Value(AdviceCounts {
            total: 3,
            by_kind: vec![("create_index".into(), 2), ("unused_index".into(), 1)],
        });
        snap.regressions = Extra::Value(4);
        app.apply(snap);
        assert!(matches!(&app.advice, Extra::Value(c) if c.total == 3));
        assert_eq!(app.regressions, Extra::Value(4));

        let mut down = snapshot(t0 + Duration::from_secs(1), Vec::new());
        down.queries = Err(FetchError::Unreachable("Connection refused".into()));
        app.apply(down);
        assert_eq!(
            app.regressions,
            Extra::Value(4),
            "last figures stay on screen"
        );

        app.apply(snapshot(t0 + Duration::from_secs(2), Vec::new()));
        assert_eq!(app.advice, Extra::Off("the advisor is off".into()));
    }

    #[test]
    fn interval_bounds() {
        assert_eq!(parse_interval("1.5"), Ok(1.5));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
