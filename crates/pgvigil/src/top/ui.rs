//! Rendering one frame of `pgvigil top` from an [`App`].

use std::time::Instant;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{App, Extra, Link, Pools, SortKey};

/// Rows of the slow-query and N+1 panels, borders and header included,
/// on a tall terminal; a third of the screen on a short one, so the top
/// queries keep most of it.
const EVENTS_HEIGHT: u16 = 12;
const MIN_EVENTS_HEIGHT: u16 = 6;
/// Most pool rows shown before the top-queries table gets the space.
const MAX_POOL_ROWS: usize = 6;
/// Query text is what a row is about: narrow terminals drop figures
/// before the text gets shorter than this.
const MIN_QUERY_WIDTH: u16 = 36;
/// The same for the slow-query and N+1 panels, which get half the width.
const MIN_EVENT_QUERY_WIDTH: u16 = 18;

pub fn draw(frame: &mut Frame, app: &App, now: Instant) {
    let pool_rows = match &app.pools {
        Pools::Rows(rows) => rows.len().clamp(1, MAX_POOL_ROWS) as u16,
        _ => 1,
    };
    let events_height = (frame.area().height / 3).clamp(MIN_EVENTS_HEIGHT, EVENTS_HEIGHT);
    let [header, queries, pools, events, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(pool_rows + 3),
        Constraint::Length(events_height),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app, now);
    draw_queries(frame, queries, app);
    draw_pools(frame, pools, app);
    let [slow, n_plus_one] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(events);
    draw_slow(frame, slow, app);
    draw_n_plus_one(frame, n_plus_one, app);
    draw_help(frame, help, app);
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn red() -> Style {
    Style::default().fg(Color::Red)
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, now: Instant) {
    let mut spans = vec![
        Span::styled("pgvigil top", bold()),
        Span::raw(format!("  {}  ", app.admin)),
    ];
    match &app.link {
        Link::Connecting => spans.push(Span::styled(
            "connecting...",
            Style::default().fg(Color::Yellow),
        )),
        Link::Up => {
            let ago = app
                .last_ok
                .map(|t| now.saturating_duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            spans.push(Span::styled("up", Style::default().fg(Color::Green)));
            spans.push(Span::raw(format!(
                "  refreshed {ago:.1}s ago, every {}s",
                secs(app.interval.as_secs_f64())
            )));
        }
        Link::Down(message) => spans.push(Span::styled(
            format!(
                "{message} (retrying every {}s)",
                secs(app.interval.as_secs_f64())
            ),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        Link::Refused(code) => spans.push(Span::styled(
            format!("admin API refused (HTTP {code}): check --admin-token"),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
    }
    if let Some(i) = app.insight {
        spans.push(Span::styled(
            format!(
                "  {} fingerprints (max {}, {} evicted)",
                i.fingerprints, i.max_fingerprints, i.evictions
            ),
            dim(),
        ));
    }
    spans.extend(advisor_spans(app));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The advisor's figures for the header: advice by kind and regressions.
/// An advisor that is off says so once, dimmed; regressions are left out
/// when this pgvigil does not count them.
fn advisor_spans(app: &App) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    match &app.advice {
        Extra::Unknown => {}
        Extra::Value(c) if c.total == 0 => spans.push(Span::styled("  no advice", dim())),
        Extra::Value(c) => {
            let kinds: Vec<String> = c
                .by_kind
                .iter()
                .map(|(kind, n)| format!("{n} {}", short_kind(kind)))
                .collect();
            spans.push(Span::styled(
                format!("  advice {}", c.total),
                bold().fg(Color::Yellow),
            ));
            spans.push(Span::styled(
                format!(" ({})", kinds.join(", ")),
                Style::default().fg(Color::Yellow),
            ));
        }
        Extra::Off(_) => spans.push(Span::styled("  advisor off", dim())),
        Extra::Failed(e) => spans.push(Span::styled(
            format!("  advice: {}", e.chars().take(40).collect::<String>()),
            red(),
        )),
    }
    if let Extra::Value(n) = app.regressions {
        let style = if n > 0 {
            red().add_modifier(Modifier::BOLD)
        } else {
            dim()
        };
        let noun = if n == 1 { "regression" } else { "regressions" };
        spans.push(Span::styled(format!("  {n} {noun}"), style));
    }
    spans
}

/// An advice kind of the API in a few letters for the header.
fn short_kind(kind: &str) -> &str {
    match kind {
        "create_index" => "create",
        "unused_index" => "unused",
        "duplicate_index" => "duplicate",
        "invalid_index" => "invalid",
        "fk_without_index" => "unindexed FK",
        other => other,
    }
}

fn secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// A duration in milliseconds, with about four significant digits.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".into();
    }
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.2}")
    } else if ms < 100_000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// Until two refreshes have seen a statement there is no rate: a dash,
/// never a made-up 0.00.
fn fmt_rate(rate: Option<f64>) -> String {
    match rate {
        None => "—".into(),
        Some(r) if r < 10.0 => format!("{r:.2}"),
        Some(r) if r < 1000.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
    }
}

/// Query text on one line: runs of whitespace become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `HH:MM:SS` of an RFC 3339 timestamp, or the text as it came.
fn clock(rfc3339: &str) -> String {
    rfc3339
        .split_once('T')
        .map(|(_, time)| time.chars().take(8).collect())
        .unwrap_or_else(|| rfc3339.to_string())
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Text::from(text).right_aligned())
}

/// Wrapped: an error's advice is at its end.
fn message(frame: &mut Frame, area: Rect, block: Block, text: String, style: Style) {
    frame.render_widget(
        Paragraph::new(Span::styled(text, style))
            .wrap(Wrap { trim: true })
            .block(block),
        area,
    );
}

/// A bordered panel titled in bold.
fn panel(title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), bold()))
}

/// Header cells: bold labels.
/// The pools table's columns, in order.
const POOL_COLUMNS: [&str; 9] = [
    "database/user",
    "mode",
    "size",
    "active",
    "idle",
    "overflow",
    "waiting",
    "clients",
    "util",
];

fn header_cells(labels: &[&'static str]) -> Vec<Cell<'static>> {
    labels
        .iter()
        .map(|h| Cell::from(*h).style(bold()))
        .collect()
}

/// A column of a table that fits itself to the terminal's width.
#[derive(Debug, Clone, Copy)]
struct Col {
    /// Cells, header included (its sort mark too), so nothing is cut.
    width: u16,
    /// Columns go least important first when they do not all fit.
    priority: u8,
}

impl Col {
    const fn new(width: u16, priority: u8) -> Col {
        Col { width, priority }
    }
}

/// The flexible column (query text): kept always, at least `min` wide,
/// given whatever the others leave.
const fn flex(min: u16) -> Col {
    Col::new(min, u8::MAX)
}

/// Which columns fit in `available` cells (one cell between columns),
/// dropping the least important (the rightmost of equals) until the rest
/// do. Squeezing every column instead cuts headers to "tal ms" and leaves
/// the query a few characters.
fn fit_columns(cols: &[Col], available: u16) -> Vec<bool> {
    let mut keep = vec![true; cols.len()];
    // Each column and the cell after it, but for the last.
    let cost = |c: &Col| u32::from(c.width) + 1;
    let mut need = cols.iter().map(cost).sum::<u32>().saturating_sub(1);
    while need > u32::from(available) {
        let Some(drop) = (0..cols.len())
            .filter(|&i| keep[i] && cols[i].priority < u8::MAX)
            .min_by_key(|&i| (cols[i].priority, std::cmp::Reverse(i)))
        else {
            break;
        };
        keep[drop] = false;
        need = need.saturating_sub(cost(&cols[drop]));
    }
    keep
}

/// The constraints of the kept columns: fixed widths, the flexible one fills.
fn constraints(cols: &[Col], keep: &[bool]) -> Vec<Constraint> {
    cols.iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| {
            if c.priority == u8::MAX {
                Constraint::Fill(1)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect()
}

/// The kept cells of a row.
fn kept<T>(cells: Vec<T>, keep: &[bool]) -> Vec<T> {
    cells
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| c)
        .collect()
}

/// Inside a bordered panel.
fn inner_width(area: Rect) -> u16 {
    area.width.saturating_sub(2)
}

/// `rows` as a table in `block`, under `header`, with only the columns of
/// `cols` that fit the panel (see [`fit_columns`]).
fn render_fitted<'a>(
    frame: &mut Frame,
    area: Rect,
    block: Block<'a>,
    cols: &[Col],
    header: Vec<Cell<'a>>,
    rows: impl IntoIterator<Item = Vec<Cell<'a>>>,
    row_height: u16,
) {
    let keep = fit_columns(cols, inner_width(area));
    let rows = rows
        .into_iter()
        .map(|cells| Row::new(kept(cells, &keep)).height(row_height));
    let table = Table::new(rows, constraints(cols, &keep))
        .header(Row::new(kept(header, &keep)))
        .block(block);
    frame.render_widget(table, area);
}

/// A panel titled `title` listing `items`, one row each: the error in red if
/// fetching them failed, "none" dimmed if there are none. Columns that do
/// not fit the panel are left out (see [`render_fitted`]).
fn draw_list<T>(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    items: &Result<Vec<T>, String>,
    columns: &[(&'static str, Col)],
    row: impl Fn(&T) -> Vec<Cell<'static>>,
    row_height: u16,
) {
    let headers: Vec<&'static str> = columns.iter().map(|(h, _)| *h).collect();
    let cols: Vec<Col> = columns.iter().map(|(_, c)| *c).collect();
    let block = panel(title);
    match items {
        Err(e) => message(frame, area, block, e.clone(), red()),
        Ok(items) if items.is_empty() => message(frame, area, block, "none".into(), dim()),
        Ok(items) => render_fitted(
            frame,
            area,
            block,
            &cols,
            header_cells(&headers),
            items.iter().map(row),
            row_height,
        ),
    }
}

fn draw_queries(frame: &mut Frame, area: Rect, app: &App) {
    let title = Line::from(vec![
        Span::styled(" Top queries ", bold()),
        Span::styled(
            format!("(sort: {}) ", app.sort.label()),
            Style::default().fg(Color::Cyan),
        ),
    ]);
    let block = Block::default().borders(Borders::ALL).title(title);
    if let Some(err) = &app.queries_error {
        return message(frame, area, block, err.clone(), red());
    }
    if app.queries.is_empty() {
        let text = match app.link {
            Link::Connecting => "waiting for the first refresh...",
            Link::Down(_) if app.last_ok.is_none() => "no data yet",
            _ => "no statements recorded yet",
        };
        return message(frame, area, block, text.into(), dim());
    }
    let sorted = |label: &str, key: SortKey| {
        let text = if app.sort == key {
            format!("{label}▼")
        } else {
            label.to_string()
        };
        let style = if app.sort == key {
            bold().fg(Color::Cyan)
        } else {
            bold()
        };
        Cell::from(Text::from(text).right_aligned()).style(style)
    };
    // The sorted column stays longest; then total time and the rate.
    let rank = |key: SortKey, otherwise: u8| if app.sort == key { 200 } else { otherwise };
    let cols = [
        Col::new(7, 150),
        Col::new(8, rank(SortKey::Calls, 100)),
        Col::new(9, rank(SortKey::TotalTime, 140)),
        Col::new(8, rank(SortKey::Mean, 110)),
        Col::new(7, rank(SortKey::P95, 120)),
        Col::new(7, rank(SortKey::Errors, 90)),
        Col::new(8, 80),
        flex(MIN_QUERY_WIDTH),
    ];
    let header = vec![
        Cell::from(Text::from("calls/s").right_aligned()).style(bold()),
        sorted("calls", SortKey::Calls),
        sorted("total ms", SortKey::TotalTime),
        sorted("mean ms", SortKey::Mean),
        sorted("p95 ms", SortKey::P95),
        sorted("errors", SortKey::Errors),
        Cell::from(Text::from("rows").right_aligned()).style(bold()),
        Cell::from("query").style(bold()),
    ];
    let rows = app.queries.iter().map(|q| {
        let errors = right(q.errors.to_string());
        let errors = if q.errors > 0 {
            errors.style(red())
        } else {
            errors
        };
        vec![
            right(fmt_rate(q.calls_per_sec)),
            right(q.calls.to_string()),
            right(fmt_ms(q.total_ms)),
            right(fmt_ms(q.mean_ms)),
            right(fmt_ms(q.p95_ms)),
            errors,
            right(q.rows.to_string()),
            Cell::from(one_line(&q.query)),
        ]
    });
    render_fitted(frame, area, block, &cols, header, rows, 1);
}

fn draw_pools(frame: &mut Frame, area: Rect, app: &App) {
    let block = panel("Pools");
    let rows = match &app.pools {
        Pools::Unknown => return message(frame, area, block, "-".into(), dim()),
        Pools::NotServed => {
            return message(
                frame,
                area,
                block,
                "not served by this pgvigil (no /api/pools)".into(),
                dim(),
            )
        }
        Pools::Failed(e) => return message(frame, area, block, e.clone(), red()),
        Pools::Rows(rows) if rows.is_empty() => {
            return message(frame, area, block, "no pools".into(), dim())
        }
        Pools::Rows(rows) => rows,
    };
    let cols = [
        flex(12),
        Col::new(11, 60),
        Col::new(4, 70),
        Col::new(6, 100),
        Col::new(4, 50),
        Col::new(8, 30),
        Col::new(7, 90),
        Col::new(7, 40),
        Col::new(4, 110),
    ];
    let header = header_cells(&POOL_COLUMNS);
    let body = rows.iter().take(MAX_POOL_ROWS).map(|p| {
        let util = format!("{:.0}%", p.utilization * 100.0);
        let util_style = if p.utilization >= 0.9 {
            red()
        } else {
            Style::default()
        };
        let waiting_style = if p.waiting > 0 {
            red()
        } else {
            Style::default()
        };
        vec![
            Cell::from(format!("{}/{}", p.database, p.user)),
            Cell::from(p.pool_mode.clone()),
            Cell::from(p.pool_size.to_string()),
            Cell::from(p.active.to_string()),
            Cell::from(p.idle.to_string()),
            Cell::from(p.overflow.to_string()),
            Cell::from(p.waiting.to_string()).style(waiting_style),
            Cell::from(p.clients.to_string()),
            Cell::from(util).style(util_style),
        ]
    });
    render_fitted(frame, area, block, &cols, header, body, 1);
}

fn draw_slow(frame: &mut Frame, area: Rect, app: &App) {
    let columns = [
        ("at", Col::new(8, 80)),
        ("ms", Col::new(9, 90)),
        ("db/user", Col::new(14, 50)),
        ("query", flex(MIN_EVENT_QUERY_WIDTH)),
    ];
    draw_list(
        frame,
        area,
        "Latest slow queries (UTC)",
        &app.slow,
        &columns,
        |e| {
            vec![
                Cell::from(clock(&e.at)),
                right(fmt_ms(e.duration_ms)),
                Cell::from(format!("{}/{}", e.database, e.user)),
                Cell::from(one_line(&e.query)),
            ]
        },
        1,
    );
}

fn draw_n_plus_one(frame: &mut Frame, area: Rect, app: &App) {
    let columns = [
        ("kind", Col::new(6, 90)),
        ("repeats", Col::new(7, 80)),
        ("seen", Col::new(14, 50)),
        ("query", flex(MIN_EVENT_QUERY_WIDTH)),
    ];
    draw_list(
        frame,
        area,
        "N+1 and repeated queries",
        &app.detections,
        &columns,
        |d| {
            let kind = match d.kind.as_str() {
                "n_plus_one" => "N+1".to_string(),
                "repeated_identical" => "repeat".to_string(),
                other => other.to_string(),
            };
            let mut detail = Vec::new();
            if !d.parent_query.is_empty() {
                detail.push(format!("after: {}", one_line(&d.parent_query)));
            }
            if !d.suggestion.is_empty() {
                detail.push(one_line(&d.suggestion));
            }
            let text = Text::from(vec![
                Line::from(one_line(&d.query)),
                Line::styled(format!("  {}", detail.join(" | ")), dim()),
            ]);
            vec![
                Cell::from(kind),
                right(d.repeats.to_string()),
                Cell::from(format!("{}x {}", d.occurrences, clock(&d.last_seen))),
                Cell::from(text),
            ]
        },
        2,
    );
}

fn draw_help(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = vec![Span::styled("sort: ", dim())];
    for key in SortKey::ALL {
        let style = if key == app.sort {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!("{}", key.key()), bold()));
        spans.push(Span::styled(format!(" {}", key.label()), style));
        spans.push(Span::raw("  "));
    }
    spans.push(Span::styled("r", bold()));
    spans.push(Span::raw(" refresh  "));
    spans.push(Span::styled("q", bold()));
    spans.push(Span::raw(" quit"));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::{AdviceCounts, QueryRow, SlowRow};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Duration;

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app, Instant::now())).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn renders_rows_and_the_sort_order() {
        let mut app = App::new("127.0.0.1:9930", SortKey::Calls, Duration::from_secs(1));
        app.link = Link::Up;
        app.last_ok = Some(Instant::now());
        app.queries = vec![QueryRow {
            fingerprint: "0a".into(),
            query: "SELECT *\n  FROM accounts WHERE id = $1".into(),
            statement: "SELECT".into(),
            calls: 1234,
            errors: 0,
            rows: 1234,
            total_ms: 56.5,
            mean_ms: 0.0458,
            p95_ms: 0.091,
            calls_per_sec: Some(12.5),
        }];
        app.pools = Pools::NotServed;
        app.slow = Ok(vec![SlowRow {
            at: "2026-01-02T03:04:05.678Z".into(),
            rule: "duration".into(),
            query: "SELECT pg_sleep($1)".into(),
            duration_ms: 612.25,
            database: "appdb".into(),
            user: "app".into(),
            application_name: String::new(),
        }]);
        let text = screen(&app, 160, 40);
        assert!(text.contains("(sort: calls)"), "{text}");
        assert!(text.contains("calls▼"), "{text}");
        assert!(
            text.contains("SELECT * FROM accounts WHERE id = $1"),
            "{text}"
        );
        assert!(text.contains("12.5"), "{text}");
        assert!(text.contains("not served by this pgvigil"), "{text}");
        assert!(text.contains("03:04:05"), "{text}");
        assert!(text.contains("612.25"), "{text}");
        assert!(text.contains("q quit"), "{text}");
    }

    #[test]
    fn tiny_and_down_screens_do_not_panic() {
        let mut app = App::new("127.0.0.1:1", SortKey::TotalTime, Duration::from_secs(1));
        app.link = Link::Down("cannot reach 127.0.0.1:1: Connection refused".into());
        for (w, h) in [(1, 1), (20, 5), (80, 24)] {
            screen(&app, w, h);
        }
        assert!(screen(&app, 120, 30).contains("cannot reach 127.0.0.1:1"));
    }

    #[test]
    fn header_shows_advice_by_kind_and_regressions() {
        let mut app = App::new("127.0.0.1:9930", SortKey::TotalTime, Duration::from_secs(1));
        app.link = Link::Up;
        app.last_ok = Some(Instant::now());
        app.advice = Extra::Value(AdviceCounts {
            total: 4,
            by_kind: vec![
                ("create_index".into(), 2),
                ("unused_index".into(), 1),
                ("fk_without_index".into(), 1),
            ],
        });
        app.regressions = Extra::Value(2);
        let header = screen(&app, 160, 30)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(
            header.contains("advice 4 (2 create, 1 unused, 1 unindexed FK)"),
            "{header}"
        );
        assert!(header.contains("2 regressions"), "{header}");

        app.advice = Extra::Off("the advisor is off".into());
        app.regressions = Extra::Off("not served".into());
        let header = screen(&app, 160, 30)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(header.contains("advisor off"), "{header}");
        assert!(!header.contains("regression"), "{header}");

        app.advice = Extra::Value(AdviceCounts::default());
        let header = screen(&app, 160, 30)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(header.contains("no advice"), "{header}");
    }

    /// A live-looking view: long statements, one pool, slow events and an
    /// N+1 detection, rates known or not.
    fn busy_app(rates: bool) -> App {
        let mut app = App::new("127.0.0.1:9930", SortKey::TotalTime, Duration::from_secs(1));
        app.link = Link::Up;
        app.last_ok = Some(Instant::now());
        app.queries = (0..12)
            .map(|i| QueryRow {
                fingerprint: format!("{i:02}"),
                query: format!(
                    "SELECT o.id, o.amount, o.created_at FROM orders_{i} o JOIN customers c ON c.id = o.customer_id WHERE c.region = $1"
                ),
                statement: "SELECT".into(),
                calls: 123_456 - i,
                errors: 3,
                rows: 9_876_543,
                total_ms: 98_765.4 - i as f64,
                mean_ms: 0.8,
                p95_ms: 2.5,
                calls_per_sec: rates.then_some(412.5),
            })
            .collect();
        app.pools = Pools::Rows(vec![crate::top::PoolRow {
            database: "appdb".into(),
            user: "app".into(),
            pool_mode: "transaction".into(),
            pool_size: 10,
            active: 1,
            idle: 2,
            overflow: 0,
            waiting: 0,
            clients: 3,
            utilization: 0.1,
        }]);
        app.slow = Ok(vec![SlowRow {
            at: "2026-01-02T21:04:05.678Z".into(),
            rule: "duration".into(),
            query: "SELECT pg_sleep($1) FROM generate_series($2, $3)".into(),
            duration_ms: 612.25,
            database: "appdb".into(),
            user: "app".into(),
            application_name: String::new(),
        }]);
        app.detections = Ok(vec![crate::top::DetectionRow {
            kind: "n_plus_one".into(),
            query: "SELECT id, title FROM books WHERE author_id = $1".into(),
            parent_query: "SELECT id FROM authors".into(),
            repeats: 20,
            occurrences: 3,
            last_seen: "2026-01-02T21:04:06.000Z".into(),
            suggestion: "load them in one query".into(),
        }]);
        app
    }

    /// The line holding `needle` (the first).
    fn line<'a>(screen: &'a str, needle: &str) -> &'a str {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{screen}"))
    }

    /// Every word of a header line is one of `labels`' words: a header
    /// cut to fit ("tal ms", "activ") is not.
    fn assert_whole_words(header: &str, labels: &[&str], screen: &str) {
        let words: Vec<&str> = labels.iter().flat_map(|l| l.split(' ')).collect();
        for word in header.split(|c: char| c.is_whitespace() || c == '│' || c == '▼') {
            if word.is_empty() {
                continue;
            }
            assert!(
                words.contains(&word),
                "header word {word:?} is not whole in {header:?}\n{screen}"
            );
        }
    }

    /// `line` holds every one of `labels`.
    fn assert_shows(line: &str, labels: &[&str], screen: &str) {
        for label in labels {
            assert!(
                line.contains(label),
                "{label:?} missing from {line:?}\n{screen}"
            );
        }
    }

    const QUERY_LABELS: [&str; 8] = [
        "calls/s", "calls", "total ms", "mean ms", "p95 ms", "errors", "rows", "query",
    ];

    #[test]
    fn at_80x24_headers_are_whole_and_the_query_gets_the_room() {
        let app = busy_app(true);
        let text = screen(&app, 80, 24);
        let header = line(&text, "query");
        assert_whole_words(header, &QUERY_LABELS, &text);
        assert_shows(
            header,
            &["calls/s", "total ms▼", "mean ms", "p95 ms", "query"],
            &text,
        );
        // The low-priority figures made room: 40 characters of each query.
        let row = line(&text, "SELECT o.id");
        assert!(
            row.contains("SELECT o.id, o.amount, o.created_at FROM"),
            "query text cut short: {row:?}\n{text}"
        );
        assert!(row.contains("412"), "calls/s shown: {row:?}");
        // Several statements, not three.
        assert!(text.matches("SELECT o.id").count() >= 5, "{text}");

        let pools = line(&text, "database/user");
        assert_whole_words(pools, &super::POOL_COLUMNS, &text);
        assert_shows(pools, &super::POOL_COLUMNS, &text);
        assert!(line(&text, "appdb/app").contains("transaction"), "{text}");

        // The half-width panels keep their query text readable too.
        let slow = line(&text, "pg_sleep");
        assert!(slow.contains("SELECT pg_sleep($1)"), "{slow:?}\n{text}");
        assert!(slow.contains("612.25"), "{slow:?}");
        let n1 = line(&text, "SELECT id, title FROM");
        assert!(n1.contains("N+1"), "{n1:?}\n{text}");
        assert!(
            text.lines().last().is_some_and(|l| l.contains("q quit")),
            "{text}"
        );
    }

    #[test]
    fn the_sorted_column_stays_at_80_columns() {
        let mut app = busy_app(true);
        app.sort = SortKey::Errors;
        let text = screen(&app, 80, 24);
        let header = line(&text, "query");
        assert!(header.contains("errors▼"), "{header:?}\n{text}");
        assert_whole_words(header, &QUERY_LABELS, &text);
    }

    #[test]
    fn at_120x40_every_column_is_shown() {
        let app = busy_app(true);
        let text = screen(&app, 120, 40);
        let header = line(&text, "query");
        assert_whole_words(header, &QUERY_LABELS, &text);
        assert_shows(header, &QUERY_LABELS, &text);
        let row = line(&text, "SELECT o.id");
        assert!(
            row.contains("SELECT o.id, o.amount, o.created_at FROM orders_0 o JOIN"),
            "{row:?}\n{text}"
        );
        let slow = line(&text, "pg_sleep");
        assert!(
            slow.contains("appdb/app") && slow.contains("21:04:05"),
            "{slow:?}\n{text}"
        );
        assert_whole_words(line(&text, "database/user"), &super::POOL_COLUMNS, &text);
    }

    #[test]
    fn the_first_frame_shows_no_rate_rather_than_zero() {
        let app = busy_app(false);
        for (w, h) in [(80, 24), (120, 40)] {
            let text = screen(&app, w, h);
            let row = line(&text, "SELECT o.id");
            let first = row
                .trim_start_matches(['│', ' '])
                .split_whitespace()
                .next()
                .unwrap_or("");
            assert_eq!(first, "—", "calls/s before two refreshes: {row:?}\n{text}");
            assert!(!text.contains("0.00"), "{text}");
        }
    }

    #[test]
    fn a_refused_token_is_said_in_the_header_not_up() {
        let mut app = busy_app(true);
        app.link = Link::Refused(401);
        app.last_ok = None;
        app.queries.clear();
        app.queries_error = Some(
            "the admin API refused the request (HTTP 401): give its token with --admin-token"
                .into(),
        );
        for (w, h) in [(80, 24), (120, 40)] {
            let text = screen(&app, w, h);
            let header = text.lines().next().unwrap_or("");
            assert!(header.contains("refused (HTTP 401)"), "{header:?}");
            assert!(!header.contains(" up "), "{header:?}");
        }
    }

    #[test]
    fn columns_go_least_important_first() {
        let cols = [Col::new(5, 10), Col::new(5, 30), Col::new(5, 20), flex(10)];
        // All: 5+5+5+10 and three gaps.
        assert_eq!(fit_columns(&cols, 28), [true, true, true, true]);
        assert_eq!(fit_columns(&cols, 27), [false, true, true, true]);
        assert_eq!(fit_columns(&cols, 21), [false, true, false, true]);
        assert_eq!(fit_columns(&cols, 15), [false, false, false, true]);
        // Never the flexible one, however narrow.
        assert_eq!(fit_columns(&cols, 3), [false, false, false, true]);
        // Equals: the rightmost goes first.
        let even = [Col::new(4, 1), Col::new(4, 1), flex(4)];
        assert_eq!(fit_columns(&even, 9), [true, false, true]);
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_ms(0.0458), "0.046");
        assert_eq!(fmt_ms(56.5), "56.50");
        assert_eq!(fmt_ms(1234.56), "1234.6");
        assert_eq!(fmt_ms(f64::NAN), "-");
        assert_eq!(fmt_rate(None), "—");
        assert_eq!(fmt_rate(Some(1500.2)), "1500");
        assert_eq!(clock("garbage"), "garbage");
    }
}
