//! Drawing one frame of the replay from the app's state. No terminal here:
//! the same code draws to the real terminal and to ratatui's `TestBackend`
//! (tests, `--frame-at`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, Wrap};

use super::app::{App, OBJECTIVES, Panel};
use super::data::Replay;

/// The smallest terminal the replay draws in.
pub const MIN_SIZE: (u16, u16) = (60, 16);

const GOOD: Color = Color::Green;
const WARN: Color = Color::Yellow;
const BAD: Color = Color::Red;
const DIM: Color = Color::DarkGray;

/// Draws the whole frame.
pub(super) fn draw(f: &mut Frame<'_>, app: &mut App) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let text = format!(
            "Terminal too small ({}×{}): meshsim replay needs at least {}×{}. Enlarge the window, or press q to quit.",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    if app.replay.is_some() {
        draw_run(f, app, area);
    } else {
        draw_picker(f, app, area);
    }
    if app.help {
        draw_help(f, area);
    }
}

fn secs(ns: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let s = ns as f64 / 1e9;
    format!("{s:.1}s")
}

fn draw_run(f: &mut Frame<'_>, app: &mut App, area: Rect) {
    let [header, middle, bottom, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(8),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(area);
    let [table, charts] =
        Layout::horizontal([Constraint::Percentage(64), Constraint::Percentage(36)]).areas(middle);
    let [topology, events] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    draw_header(f, app, header);
    draw_endpoints(f, app, table);
    draw_charts(f, app, charts);
    draw_topology(f, app, topology);
    draw_events(f, app, events);
    draw_footer(f, app, footer);
}

fn draw_header(f: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(r) = &app.replay else { return };
    let state = if app.playing {
        Span::styled("▶ playing", Style::new().fg(GOOD))
    } else {
        Span::styled("⏸ paused", Style::new().fg(WARN))
    };
    let line1 = Line::from(vec![
        Span::styled(r.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · seed {} · ", r.seed)),
        Span::styled(
            format!("t={} / {}", secs(app.now_ns()), secs(r.duration_ns)),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" · window {}/{} · ", app.cursor + 1, r.len())),
        state,
        Span::raw(format!(" {}×", app.speed())),
    ]);
    let tuned = if r.tuned.is_empty() {
        "no outlier detection or weights in the experiment".to_owned()
    } else {
        r.tuned.join(" · ")
    };
    let line2 = Line::styled(tuned, Style::new().fg(Color::Cyan));
    f.render_widget(Paragraph::new(vec![line1, line2]), area);
}

fn focus_block(title: String, focused: bool) -> Block<'static> {
    let b = Block::bordered().title(title);
    if focused {
        b.border_style(Style::new().fg(Color::Cyan))
    } else {
        b
    }
}

fn draw_endpoints(f: &mut Frame<'_>, app: &mut App, area: Rect) {
    let now = app.now_ns();
    let cursor = app.cursor;
    let filter = app.filter.to_lowercase();
    let focused = app.focus == Panel::Endpoints;
    let Some(r) = &mut app.replay else { return };
    let window_s = {
        #[allow(clippy::cast_precision_loss)]
        let w = r.window_ns as f64 / 1e9;
        w
    };
    if let Err(e) = r.rows(cursor) {
        app.status = Some(e.to_string());
    }
    let Some(r) = &app.replay else { return };
    let rows = r.cached_rows(cursor);
    // The active-requests column when there is room for it.
    let wide = area.width >= 56;
    // What the table lists: a heading per subset, then its endpoints. Only
    // the visible part is formatted (a run may have thousands).
    enum Item {
        Subset(usize),
        Endpoint(usize),
    }
    let mut items: Vec<Item> = Vec::new();
    let mut last_subset = usize::MAX;
    for (i, e) in r.endpoints.iter().enumerate() {
        if !filter.is_empty()
            && ![&e.name, &e.service, &e.version]
                .iter()
                .any(|s| s.to_lowercase().contains(&filter))
        {
            continue;
        }
        if e.subset != last_subset {
            last_subset = e.subset;
            items.push(Item::Subset(i));
        }
        items.push(Item::Endpoint(i));
    }
    let shown = items
        .iter()
        .filter(|x| matches!(x, Item::Endpoint(_)))
        .count();
    let visible = usize::from(area.height.saturating_sub(3));
    app.scroll[0] = app.scroll[0].min(items.len().saturating_sub(visible));
    let mut lines: Vec<Row<'_>> = Vec::new();
    for item in items.iter().skip(app.scroll[0]).take(visible) {
        let i = match *item {
            Item::Subset(i) => {
                let e = &r.endpoints[i];
                lines.push(
                    Row::new(vec![Cell::from(format!("{} {}", e.service, e.version))])
                        .style(Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan)),
                );
                continue;
            }
            Item::Endpoint(i) => i,
        };
        let e = &r.endpoints[i];
        let Some(row) = rows.get(i) else { continue };
        let (state, color) = match r.ejected_left(i, now) {
            Some(0) => ("ej due".to_owned(), BAD),
            Some(left) => (format!("ej {}", secs(left)), BAD),
            None if row.requests > 0 && row.errors * 2 >= row.requests => {
                ("failing".to_owned(), BAD)
            }
            None if row.errors > 0 => ("errors".to_owned(), WARN),
            None if row.requests == 0 => ("idle".to_owned(), DIM),
            None => ("healthy".to_owned(), GOOD),
        };
        #[allow(clippy::cast_precision_loss)]
        let rps = row.requests as f64 / window_s;
        let mut cells = vec![
            Cell::from(format!(" {}", e.name)),
            Cell::from(state).style(Style::new().fg(color)),
            Cell::from(format!("{rps:.0}")),
            Cell::from(row.errors.to_string()).style(if row.errors > 0 {
                Style::new().fg(BAD)
            } else {
                Style::new()
            }),
            Cell::from(format!("{:.1}", row.latency_ms_p99)),
            Cell::from(r.ejection_count(i, now).to_string()),
        ];
        if wide {
            cells.push(Cell::from(row.active_requests.to_string()));
        }
        lines.push(Row::new(cells));
    }
    let title = if app.filter.is_empty() && !app.typing {
        format!(" Endpoints ({}) ", r.endpoints.len())
    } else {
        format!(
            " Endpoints {shown}/{} · filter: {}{} ",
            r.endpoints.len(),
            app.filter,
            if app.typing { "▏" } else { "" }
        )
    };
    let names = ["endpoint", "state", "rps", "err", "p99ms", "ej", "act"];
    let mut widths = vec![
        Constraint::Min(12),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(3),
        Constraint::Length(4),
    ];
    let columns = if wide { 7 } else { 6 };
    widths.truncate(columns);
    let header =
        Row::new(names[..columns].to_vec()).style(Style::new().add_modifier(Modifier::UNDERLINED));
    let table = Table::new(lines, widths)
        .header(header)
        .column_spacing(1)
        .block(focus_block(title, focused));
    f.render_widget(table, area);
}

fn draw_charts(f: &mut Frame<'_>, app: &mut App, area: Rect) {
    let block = Block::bordered().title(" Clients ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = usize::from(inner.width);
    let cursor = app.cursor;
    let Some(r) = &mut app.replay else { return };
    // What clients saw: the load's edge of calls.csv; without one, the sum
    // over endpoints.
    #[allow(clippy::cast_precision_loss)]
    let window_s = r.window_ns as f64 / 1e9;
    let mut agg_error = None;
    let client = |r: &mut Replay, w: usize| -> (u64, u64, f64) {
        r.client(w).unwrap_or_else(|| match r.agg(w) {
            Ok(a) => (a.requests, a.requests - a.errors, a.worst_p99_ms),
            Err(_) => (0, 0, 0.0),
        })
    };
    let mut failed = Vec::new();
    let mut rps = Vec::new();
    let mut p99 = Vec::new();
    let start = (cursor + 1).saturating_sub(width);
    for w in start..=cursor {
        let (n, ok, l) = client(r, w);
        failed.push(n - ok.min(n));
        rps.push(n);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        p99.push((l * 1000.0) as u64);
    }
    let failed_max = failed.iter().copied().max().unwrap_or(0);
    let (n, ok, l) = client(r, cursor);
    #[allow(clippy::cast_precision_loss)]
    let rate = if n == 0 {
        100.0
    } else {
        100.0 * ok as f64 / n as f64
    };
    #[allow(clippy::cast_precision_loss)]
    let now_rps = n as f64 / window_s;
    let split_rows = split_lines(r, cursor, width, &mut agg_error);
    let split_height = u16::try_from(split_rows.len()).unwrap_or(u16::MAX);
    // Three labelled sparklines share what the split leaves.
    let spark = (inner.height.saturating_sub(3 + split_height) / 3).max(1);
    let [a, b, c, d, e, g, h] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(spark),
        Constraint::Length(1),
        Constraint::Length(spark),
        Constraint::Length(1),
        Constraint::Length(spark),
        Constraint::Min(0),
    ])
    .areas(inner);
    let rate_color = if rate >= 99.9 {
        GOOD
    } else if rate >= 99.0 {
        WARN
    } else {
        BAD
    };
    f.render_widget(
        Line::from(vec![
            Span::styled(format!("success {rate:.2}%"), Style::new().fg(rate_color)),
            Span::styled(" · bars: failed", Style::new().fg(DIM)),
        ]),
        a,
    );
    f.render_widget(
        Sparkline::default()
            .data(failed)
            .max(failed_max.max(1))
            .style(Style::new().fg(BAD)),
        b,
    );
    f.render_widget(Line::from(format!("rps {now_rps:.0}")), c);
    f.render_widget(
        Sparkline::default()
            .data(rps)
            .style(Style::new().fg(Color::Blue)),
        d,
    );
    f.render_widget(Line::from(format!("p99 {l:.1} ms")), e);
    f.render_widget(
        Sparkline::default()
            .data(p99)
            .style(Style::new().fg(Color::Magenta)),
        g,
    );
    f.render_widget(Paragraph::new(split_rows), h);
    if let Some(e) = agg_error {
        app.status = Some(e);
    }
}

/// The traffic split per subset in the current window, for services with
/// more than one subset: a bar and a share per subset.
fn split_lines(
    r: &mut Replay,
    w: usize,
    width: usize,
    error: &mut Option<String>,
) -> Vec<Line<'static>> {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let mut lines = vec![Line::styled(
        "split per subset (share over time)",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let services: Vec<String> = {
        let mut s: Vec<String> = r.subsets.iter().map(|(s, _)| s.clone()).collect();
        s.dedup();
        s
    };
    let groups: Vec<(String, Vec<usize>)> = services
        .into_iter()
        .map(|service| {
            let idx = (0..r.subsets.len())
                .filter(|&i| r.subsets[i].0 == service)
                .collect::<Vec<_>>();
            (service, idx)
        })
        .filter(|(_, idx)| idx.len() > 1)
        .collect();
    if groups.is_empty() {
        lines.push(Line::styled(
            "(one subset per service)",
            Style::new().fg(DIM),
        ));
        return lines;
    }
    let subsets = &r.subsets;
    let label_width = groups
        .iter()
        .flat_map(|(s, idx)| idx.iter().map(move |&i| s.len() + 1 + subsets[i].1.len()))
        .max()
        .unwrap_or(0);
    let history = width.saturating_sub(label_width + 6).max(4);
    // Attempts per subset in the last `history` windows up to `w`.
    let first = (w + 1).saturating_sub(history);
    let mut per_window: Vec<Vec<u64>> = Vec::with_capacity(history);
    for x in first..=w {
        match r.agg(x) {
            Ok(a) => per_window.push(a.per_subset.clone()),
            Err(e) => {
                *error = Some(e.to_string());
                return lines;
            }
        }
    }
    for (service, idx) in &groups {
        for &i in idx {
            let share_at = |counts: &Vec<u64>| -> Option<f64> {
                let total: u64 = idx
                    .iter()
                    .map(|&k| counts.get(k).copied().unwrap_or(0))
                    .sum();
                #[allow(clippy::cast_precision_loss)]
                let share = counts.get(i).copied().unwrap_or(0) as f64 / total as f64;
                (total > 0).then_some(share)
            };
            let spark: String = per_window
                .iter()
                .map(|c| {
                    share_at(c).map_or(' ', |share| {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let level = (share * 7.0).round() as usize;
                        LEVELS[level.min(7)]
                    })
                })
                .collect();
            let now = per_window.last().and_then(share_at).unwrap_or(0.0);
            let label = format!("{service} {}", r.subsets[i].1);
            lines.push(Line::from(vec![
                Span::raw(format!("{label:<label_width$} ")),
                Span::styled(spark, Style::new().fg(Color::Cyan)),
                Span::raw(format!(" {:>3.0}%", now * 100.0)),
            ]));
        }
    }
    lines
}

/// The call graph in the current window, one tree per caller (the load's
/// client first), each edge with its rate and error rate, coloured by
/// health as in Kiali's graph.
fn draw_topology(f: &mut Frame<'_>, app: &mut App, area: Rect) {
    let Some(r) = &app.replay else { return };
    #[allow(clippy::cast_precision_loss)]
    let window_s = r.window_ns as f64 / 1e9;
    // Sources in order of first appearance, each with its edges.
    let mut sources: Vec<(&str, Vec<usize>)> = Vec::new();
    for (e, edge) in r.edges.iter().enumerate() {
        match sources.iter_mut().find(|(s, _)| *s == edge.source) {
            Some((_, v)) => v.push(e),
            None => sources.push((edge.source.as_str(), vec![e])),
        }
    }
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (source, edges) in &sources {
        lines.push(Line::styled(
            (*source).to_owned(),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        for (k, &e) in edges.iter().enumerate() {
            let c = r.edge(app.cursor, e).counts;
            let failed = c.requests - c.successes.min(c.requests);
            #[allow(clippy::cast_precision_loss)]
            let err = if c.requests == 0 {
                0.0
            } else {
                100.0 * failed as f64 / c.requests as f64
            };
            let color = if c.requests == 0 {
                DIM
            } else if err == 0.0 {
                GOOD
            } else if err < 1.0 {
                WARN
            } else {
                BAD
            };
            #[allow(clippy::cast_precision_loss)]
            let rps = c.requests as f64 / window_s;
            let branch = if k + 1 == edges.len() {
                "└→ "
            } else {
                "├→ "
            };
            lines.push(Line::from(vec![
                Span::styled(branch, Style::new().fg(DIM)),
                Span::styled(r.edges[e].host.clone(), Style::new().fg(color)),
                Span::raw(format!(" {rps:.0}/s ")),
                Span::styled(format!("{err:.1}% err"), Style::new().fg(color)),
            ]));
        }
    }
    if lines.is_empty() {
        lines.push(Line::styled("no calls.csv edges", Style::new().fg(DIM)));
    }
    let visible = usize::from(area.height.saturating_sub(2));
    app.scroll[2] = app.scroll[2].min(lines.len().saturating_sub(visible));
    let lines: Vec<Line<'_>> = lines.into_iter().skip(app.scroll[2]).collect();
    f.render_widget(
        Paragraph::new(lines).block(focus_block(
            " Topology ".to_owned(),
            app.focus == Panel::Topology,
        )),
        area,
    );
}

fn event_color(kind: &str) -> Color {
    match kind {
        "eject" | "fault_start" | "overflow" | "panic_start" => BAD,
        "return" | "fault_end" | "panic_end" => GOOD,
        _ => Color::Cyan,
    }
}

fn draw_events(f: &mut Frame<'_>, app: &mut App, area: Rect) {
    let Some(r) = &app.replay else { return };
    let height = usize::from(area.height.saturating_sub(2));
    // The events up to the cursor end at the panel's middle; later ones
    // are dimmed below them. ↑/↓ scroll back.
    let past = r.event_window.partition_point(|&w| w <= app.cursor);
    let back = (height / 2).max(1) + app.scroll[1];
    let start = past.saturating_sub(back);
    if past < back {
        app.scroll[1] = app.scroll[1].min(past.saturating_sub((height / 2).max(1)));
    }
    let lines: Vec<Line<'_>> = r
        .events
        .iter()
        .enumerate()
        .skip(start)
        .take(height)
        .map(|(k, e)| {
            let future = k >= past;
            let base = if future {
                Style::new().fg(DIM)
            } else if k + 1 == past {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            #[allow(clippy::cast_precision_loss)]
            let t = e.time_ns as f64 / 1e9;
            Line::from(vec![
                Span::styled(format!("{t:>8.2} "), base),
                Span::styled(
                    format!("{:<12}", e.kind),
                    if future {
                        base
                    } else {
                        base.fg(event_color(&e.kind))
                    },
                ),
                Span::styled(format!("{} {} {}", e.proxy, e.endpoint, e.detail), base),
            ])
        })
        .collect();
    let title = format!(" Events ({}; {} so far) ", r.events.len(), past);
    f.render_widget(
        Paragraph::new(lines).block(focus_block(title, app.focus == Panel::Events)),
        area,
    );
}

fn draw_footer(f: &mut Frame<'_>, app: &App, area: Rect) {
    let line = match &app.status {
        Some(e) => Line::styled(e.clone(), Style::new().fg(BAD)),
        None => Line::styled(
            "space play · ←/→ step · ⇧←/→ event · +/- speed · home/end · tab panel · / filter · ? help · q quit",
            Style::new().fg(DIM),
        ),
    };
    f.render_widget(line, area);
}

fn draw_picker(f: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(p) = &app.picker else { return };
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    let (objective, higher) = OBJECTIVES[p.objective];
    f.render_widget(
        Line::from(vec![
            Span::styled(
                format!("Sweep {}", p.dir.display()),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                " · {} runs · sorted by {objective} ({} first)",
                p.table.rows.len(),
                if higher { "highest" } else { "lowest" }
            )),
        ]),
        header,
    );
    let end = p.table.column("format_version").unwrap_or(0);
    let mut columns: Vec<usize> = (0..end).collect();
    columns.push(p.table.column("seed").unwrap_or(0));
    for (name, _) in OBJECTIVES {
        if let Some(c) = p.table.column(name) {
            columns.push(c);
        }
    }
    let short = |c: &str| c.rsplit('.').next().unwrap_or(c).to_owned();
    let head = Row::new(columns.iter().map(|&c| short(&p.table.columns[c])))
        .style(Style::new().add_modifier(Modifier::UNDERLINED));
    let visible = usize::from(body.height.saturating_sub(3)).max(1);
    let first = p.selected.saturating_sub(visible - 1);
    let rows: Vec<Row<'_>> = p
        .order
        .iter()
        .enumerate()
        .skip(first)
        .take(visible)
        .map(|(k, &r)| {
            let row = Row::new(columns.iter().map(|&c| p.table.rows[r][c].clone()));
            if k == p.selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|&c| {
            let w = short(&p.table.columns[c]).len().max(6);
            Constraint::Length(u16::try_from(w).unwrap_or(12))
        })
        .collect();
    f.render_widget(
        Table::new(rows, widths)
            .header(head)
            .block(Block::bordered().title(" Points ")),
        body,
    );
    let line = match &app.status {
        Some(e) => Line::styled(e.clone(), Style::new().fg(BAD)),
        None => Line::styled(
            "↑/↓ select · enter replay · s sort by next objective · esc (in a run) back here · q quit",
            Style::new().fg(DIM),
        ),
    };
    f.render_widget(line, footer);
}

const HELP: &str = "\
space      play / pause (at the end: from the start)
← / →      one window back / forward
⇧← / ⇧→    previous / next event
+ / -      faster / slower (0.25× … 128× real time)
home / end first / last window
tab        next panel (endpoints, events, topology)
↑ / ↓      scroll the panel
/          filter endpoints (enter keeps, esc clears)
esc        back to the sweep's points
q          quit

States: healthy, errors (some 5xx), failing (≥ 50 % errors),
ej T (ejected by at least one proxy, T left of its ejection time;
ej due = waiting for the next interval), idle (no request).
Columns: rps (attempts per second), err (failed attempts in the
window), p99 of the attempts (ms), ej (ejections so far), act
(active requests at the window's end; on wide terminals).
Any key closes this help.";

fn draw_help(f: &mut Frame<'_>, area: Rect) {
    let w = area.width.min(70);
    let h = area.height.min(18);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(HELP).block(Block::bordered().title(" Help ")),
        rect,
    );
}
