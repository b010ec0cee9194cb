//! Rendering one frame of `pgvigil top` from an [`App`].

use std::time::Instant;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{App, Extra, Link, Pools, SortKey};

/// Rows of the slow-query and N+1 panels, borders and header included.
const EVENTS_HEIGHT: u16 = 12;
/// Most pool rows shown before the top-queries table gets the space.
const MAX_POOL_ROWS: usize = 6;

pub fn draw(frame: &mut Frame, app: &App, now: Instant) {
    let pool_rows = match &app.pools {
        Pools::Rows(rows) => rows.len().clamp(1, MAX_POOL_ROWS) as u16,
        _ => 1,
    };
    let [header, queries, pools, events, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(pool_rows + 3),
        Constraint::Length(EVENTS_HEIGHT),
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

fn fmt_rate(rate: Option<f64>) -> String {
    match rate {
        None => "-".into(),
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

fn message(frame: &mut Frame, area: Rect, block: Block, text: String, style: Style) {
    frame.render_widget(Paragraph::new(Span::styled(text, style)).block(block), area);
}

/// A bordered panel titled in bold.
fn panel(title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), bold()))
}

/// A header row of bold labels.
fn header_row(labels: &[&'static str]) -> Row<'static> {
    Row::new(labels.iter().map(|h| Cell::from(*h).style(bold())))
}

/// `rows` as a table in `block`, under `header`.
fn render_table<'a>(
    frame: &mut Frame,
    area: Rect,
    block: Block<'a>,
    header: Row<'a>,
    rows: impl IntoIterator<Item = Row<'a>>,
    widths: impl IntoIterator<Item = Constraint>,
) {
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// A panel titled `title` listing `items`, one row each: the error in red if
/// fetching them failed, "none" dimmed if there are none.
fn draw_list<T>(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    items: &Result<Vec<T>, String>,
    headers: &[&'static str],
    widths: impl IntoIterator<Item = Constraint>,
    row: impl Fn(&T) -> Row<'static>,
) {
    let block = panel(title);
    match items {
        Err(e) => message(frame, area, block, e.clone(), red()),
        Ok(items) if items.is_empty() => message(frame, area, block, "none".into(), dim()),
        Ok(items) => render_table(
            frame,
            area,
            block,
            header_row(headers),
            items.iter().map(row),
            widths,
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
    let header = Row::new(vec![
        Cell::from(Text::from("calls/s").right_aligned()).style(bold()),
        sorted("calls", SortKey::Calls),
        sorted("total ms", SortKey::TotalTime),
        sorted("mean ms", SortKey::Mean),
        sorted("p95 ms", SortKey::P95),
        sorted("errors", SortKey::Errors),
        Cell::from(Text::from("rows").right_aligned()).style(bold()),
        Cell::from("query").style(bold()),
    ]);
    let rows = app.queries.iter().map(|q| {
        let errors = right(q.errors.to_string());
        let errors = if q.errors > 0 {
            errors.style(red())
        } else {
            errors
        };
        Row::new(vec![
            right(fmt_rate(q.calls_per_sec)),
            right(q.calls.to_string()),
            right(fmt_ms(q.total_ms)),
            right(fmt_ms(q.mean_ms)),
            right(fmt_ms(q.p95_ms)),
            errors,
            right(q.rows.to_string()),
            Cell::from(one_line(&q.query)),
        ])
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Min(20),
    ];
    render_table(frame, area, block, header, rows, widths);
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
    let header = header_row(&[
        "database", "user", "mode", "size", "active", "idle", "overflow", "waiting", "clients",
        "util",
    ]);
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
        Row::new(vec![
            Cell::from(p.database.clone()),
            Cell::from(p.user.clone()),
            Cell::from(p.pool_mode.clone()),
            Cell::from(p.pool_size.to_string()),
            Cell::from(p.active.to_string()),
            Cell::from(p.idle.to_string()),
            Cell::from(p.overflow.to_string()),
            Cell::from(p.waiting.to_string()).style(waiting_style),
            Cell::from(p.clients.to_string()),
            Cell::from(util).style(util_style),
        ])
    });
    let widths = [
        Constraint::Length(20),
        Constraint::Length(20),
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(5),
    ];
    render_table(frame, area, block, header, body, widths);
}

fn draw_slow(frame: &mut Frame, area: Rect, app: &App) {
    let widths = [
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    draw_list(
        frame,
        area,
        "Latest slow queries",
        &app.slow,
        &["at", "ms", "db/user", "query"],
        widths,
        |e| {
            Row::new(vec![
                Cell::from(clock(&e.at)),
                right(fmt_ms(e.duration_ms)),
                Cell::from(format!("{}/{}", e.database, e.user)),
                Cell::from(one_line(&e.query)),
            ])
        },
    );
}

fn draw_n_plus_one(frame: &mut Frame, area: Rect, app: &App) {
    let widths = [
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    draw_list(
        frame,
        area,
        "N+1 and repeated queries",
        &app.detections,
        &["kind", "repeats", "seen", "query"],
        widths,
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
            Row::new(vec![
                Cell::from(kind),
                right(d.repeats.to_string()),
                Cell::from(format!("{}x {}", d.occurrences, clock(&d.last_seen))),
                Cell::from(text),
            ])
            .height(2)
        },
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

    #[test]
    fn number_formats() {
        assert_eq!(fmt_ms(0.0458), "0.046");
        assert_eq!(fmt_ms(56.5), "56.50");
        assert_eq!(fmt_ms(1234.56), "1234.6");
        assert_eq!(fmt_ms(f64::NAN), "-");
        assert_eq!(fmt_rate(None), "-");
        assert_eq!(fmt_rate(Some(1500.2)), "1500");
        assert_eq!(clock("garbage"), "garbage");
    }
}
