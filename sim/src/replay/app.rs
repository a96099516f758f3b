//! The replay's state and what each key does: no terminal, no clock (the
//! terminal loop passes the elapsed time to [`App::tick`]), so it is tested
//! directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_rundir::{ReadError, SummaryTable};

use super::data::Replay;

/// A key, as the app understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character.
    Char(char),
    /// ←.
    Left,
    /// →.
    Right,
    /// Shift+←.
    ShiftLeft,
    /// Shift+→.
    ShiftRight,
    /// ↑.
    Up,
    /// ↓.
    Down,
    /// Home.
    Home,
    /// End.
    End,
    /// Tab.
    Tab,
    /// Enter.
    Enter,
    /// Esc.
    Esc,
    /// Backspace.
    Backspace,
}

/// The panel that ↑/↓ scroll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    /// The per-endpoint table.
    Endpoints,
    /// The event log.
    Events,
    /// The topology.
    Topology,
}

/// Playback speeds, as multiples of real time.
pub const SPEEDS: [f64; 10] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
const DEFAULT_SPEED: usize = 2;

/// The objectives a sweep's points can be sorted by, and whether higher is
/// better.
pub const OBJECTIVES: [(&str, bool); 4] = [
    ("success_rate", true),
    ("errors_5xx", false),
    ("latency_ms_p99", false),
    ("ejected_host_seconds", false),
];

/// A sweep directory's points, to pick one to replay.
#[derive(Debug)]
pub struct Picker {
    /// The sweep directory.
    pub dir: PathBuf,
    /// Its `summary.csv`.
    pub table: SummaryTable,
    /// Row indices in display order.
    pub order: Vec<usize>,
    /// Index into [`OBJECTIVES`].
    pub objective: usize,
    /// Selected position in `order`.
    pub selected: usize,
}

impl Picker {
    fn sort(&mut self) {
        let (name, higher) = OBJECTIVES[self.objective];
        let col = self.table.column(name);
        let value = |r: usize| -> f64 {
            col.and_then(|c| self.table.rows[r][c].parse().ok())
                .unwrap_or(f64::NAN)
        };
        let mut order: Vec<usize> = (0..self.table.rows.len()).collect();
        order.sort_by(|&a, &b| {
            let o = value(a).total_cmp(&value(b));
            (if higher { o.reverse() } else { o }).then(a.cmp(&b))
        });
        self.order = order;
        self.selected = 0;
    }

    /// The run directory of the selected row.
    pub fn selected_dir(&self) -> Option<PathBuf> {
        let r = *self.order.get(self.selected)?;
        let point: usize = self.table.get(r, "point")?.parse().ok()?;
        let seed = self.table.get(r, "seed")?;
        Some(self.dir.join(format!("point-{point:04}-seed-{seed}")))
    }
}

/// Everything the replay shows and where it is.
#[derive(Debug)]
pub struct App {
    /// The run being replayed (none while picking a sweep point).
    pub replay: Option<Replay>,
    /// The sweep's points, when a sweep directory was opened.
    pub picker: Option<Picker>,
    /// Current window.
    pub cursor: usize,
    /// Playing or paused.
    pub playing: bool,
    /// Index into [`SPEEDS`].
    pub speed: usize,
    /// Real time played but not yet a whole window.
    carry: Duration,
    /// The panel ↑/↓ scroll.
    pub focus: Panel,
    /// Scroll offsets of the endpoint table, the event log (relative to
    /// the cursor) and the topology.
    pub scroll: [usize; 3],
    /// Endpoint filter (substring of name, service or version).
    pub filter: String,
    /// Typing the filter.
    pub typing: bool,
    /// Help shown.
    pub help: bool,
    /// The last error (shown in the footer).
    pub status: Option<String>,
    /// Quit asked.
    pub quit: bool,
}

impl App {
    /// An app over one run.
    pub fn with_run(replay: Replay) -> Self {
        let mut app = Self::empty();
        app.replay = Some(replay);
        app
    }

    /// An app over a sweep: pick a point first.
    pub fn with_sweep(dir: &Path, table: SummaryTable) -> Self {
        let mut picker = Picker {
            dir: dir.to_path_buf(),
            table,
            order: Vec::new(),
            objective: 0,
            selected: 0,
        };
        picker.sort();
        let mut app = Self::empty();
        app.picker = Some(picker);
        app
    }

    fn empty() -> Self {
        Self {
            replay: None,
            picker: None,
            cursor: 0,
            playing: false,
            speed: DEFAULT_SPEED,
            carry: Duration::ZERO,
            focus: Panel::Endpoints,
            scroll: [0, 0, 0],
            filter: String::new(),
            typing: false,
            help: false,
            status: None,
            quit: false,
        }
    }

    /// Playback speed, as a multiple of real time.
    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }

    /// Current time (the end of the current window), in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.replay
            .as_ref()
            .and_then(|r| r.times.get(self.cursor).copied())
            .unwrap_or(0)
    }

    /// Moves to window `w` (clamped).
    pub fn seek(&mut self, w: usize) {
        let n = self.replay.as_ref().map_or(0, Replay::len);
        self.cursor = w.min(n.saturating_sub(1));
        self.carry = Duration::ZERO;
    }

    /// Moves to the window holding time `t` (ns).
    pub fn seek_time(&mut self, t: u64) {
        let w = self.replay.as_ref().map_or(0, |r| r.window_at(t));
        self.seek(w);
    }

    /// Lets `elapsed` real time pass: plays windows at the current speed,
    /// pausing at the end.
    pub fn tick(&mut self, elapsed: Duration) {
        let Some(r) = &self.replay else { return };
        if !self.playing {
            return;
        }
        let window = Duration::from_nanos(r.window_ns);
        self.carry += elapsed.mul_f64(self.speed());
        while self.carry >= window {
            self.carry -= window;
            if self.cursor + 1 >= r.len() {
                self.playing = false;
                self.carry = Duration::ZERO;
                return;
            }
            self.cursor += 1;
        }
    }

    /// The window of the next event after the current window.
    fn next_event(&self) -> Option<usize> {
        let r = self.replay.as_ref()?;
        let k = r.event_window.partition_point(|&w| w <= self.cursor);
        r.event_window.get(k).copied()
    }

    /// The window of the last event before the current window.
    fn previous_event(&self) -> Option<usize> {
        let r = self.replay.as_ref()?;
        let k = r.event_window.partition_point(|&w| w < self.cursor);
        k.checked_sub(1).map(|k| r.event_window[k])
    }

    /// Handles a key.
    pub fn key(&mut self, k: Key) {
        if self.typing {
            match k {
                Key::Char(c) => self.filter.push(c),
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Enter => self.typing = false,
                Key::Esc => {
                    self.filter.clear();
                    self.typing = false;
                }
                _ => {}
            }
            self.scroll[0] = 0;
            return;
        }
        if self.help {
            self.help = false;
            if k == Key::Char('q') {
                self.quit = true;
            }
            return;
        }
        match k {
            Key::Char('q') => self.quit = true,
            Key::Char('?') => self.help = true,
            _ if self.replay.is_none() => self.picker_key(k),
            Key::Esc if self.picker.is_some() => {
                self.replay = None;
                self.playing = false;
            }
            Key::Char(' ') => {
                let at_end = self
                    .replay
                    .as_ref()
                    .is_some_and(|r| self.cursor + 1 >= r.len());
                if at_end && !self.playing {
                    self.seek(0);
                }
                self.playing = !self.playing;
            }
            Key::Left => self.seek(self.cursor.saturating_sub(1)),
            Key::Right => self.seek(self.cursor + 1),
            Key::ShiftLeft => {
                if let Some(w) = self.previous_event() {
                    self.seek(w);
                }
            }
            Key::ShiftRight => {
                if let Some(w) = self.next_event() {
                    self.seek(w);
                }
            }
            Key::Home => self.seek(0),
            Key::End => self.seek(usize::MAX),
            Key::Char('+' | '=') => self.speed = (self.speed + 1).min(SPEEDS.len() - 1),
            Key::Char('-' | '_') => self.speed = self.speed.saturating_sub(1),
            Key::Tab => {
                self.focus = match self.focus {
                    Panel::Endpoints => Panel::Events,
                    Panel::Events => Panel::Topology,
                    Panel::Topology => Panel::Endpoints,
                };
            }
            Key::Char('/') => {
                self.typing = true;
                self.filter.clear();
            }
            Key::Esc => self.filter.clear(),
            Key::Up => self.scroll_by(-1),
            Key::Down => self.scroll_by(1),
            _ => {}
        }
    }

    fn scroll_by(&mut self, d: isize) {
        let i = match self.focus {
            Panel::Endpoints => 0,
            Panel::Events => 1,
            Panel::Topology => 2,
        };
        self.scroll[i] = self.scroll[i].saturating_add_signed(d);
    }

    fn picker_key(&mut self, k: Key) {
        let Some(p) = &mut self.picker else { return };
        match k {
            Key::Up => p.selected = p.selected.saturating_sub(1),
            Key::Down => p.selected = (p.selected + 1).min(p.order.len().saturating_sub(1)),
            Key::Home => p.selected = 0,
            Key::End => p.selected = p.order.len().saturating_sub(1),
            Key::Char('s') => {
                p.objective = (p.objective + 1) % OBJECTIVES.len();
                p.sort();
            }
            Key::Enter => {
                if let Some(dir) = p.selected_dir() {
                    match Replay::open(&dir) {
                        Ok(r) => {
                            self.replay = Some(r);
                            self.cursor = 0;
                            self.carry = Duration::ZERO;
                            self.status = None;
                        }
                        Err(e) => self.status = Some(e.to_string()),
                    }
                }
            }
            _ => {}
        }
    }

    /// Records an error to show (reading a window can fail mid-replay).
    pub fn error(&mut self, e: &ReadError) {
        self.status = Some(e.to_string());
    }
}
