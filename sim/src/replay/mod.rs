//! `meshsim replay DIR`: an interactive TUI over a run directory, played
//! back like a video of the mesh. Split as ratatui's apps are: `data` (the
//! run, indexed by window), `app` (state and keys, no terminal, no clock),
//! `ui` (one frame from the state) and `terminal` (the loop, the only place
//! with a terminal and a wall clock).

mod app;
mod data;
mod terminal;
mod ui;

use std::path::{Path, PathBuf};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

pub use app::{App, Key, OBJECTIVES, Panel, SPEEDS};
pub use data::{Replay, tuned_values};
pub use ui::MIN_SIZE;

/// Opens `dir`: a run directory, or a sweep directory (its points to pick
/// from; with `point`, that point's run directly, of `seed` or the first).
pub fn open(dir: &Path, point: Option<usize>, seed: Option<u64>) -> Result<App, String> {
    let summary_path = dir.join("summary.csv");
    let is_sweep = !dir.join("timeseries.csv").exists() && summary_path.exists();
    if !is_sweep {
        if point.is_some() {
            return Err(format!(
                "{}: --point needs a sweep directory (from `meshsim sweep`), and this is a run directory",
                dir.display()
            ));
        }
        return Replay::open(dir)
            .map(App::with_run)
            .map_err(|e| e.to_string());
    }
    let table = mesh_rundir::SummaryTable::read(&summary_path).map_err(|e| e.to_string())?;
    if table.column("point").is_none() {
        return Err(format!(
            "{}: no timeseries.csv, and summary.csv has no `point` column: expected a run directory or a sweep directory",
            dir.display()
        ));
    }
    let Some(point) = point else {
        return Ok(App::with_sweep(dir, table));
    };
    let row = (0..table.rows.len()).find(|&r| {
        table.get(r, "point") == Some(point.to_string().as_str())
            && seed.is_none_or(|s| table.get(r, "seed") == Some(s.to_string().as_str()))
    });
    let Some(row) = row else {
        return Err(format!(
            "{}: no run of point {point}{} in summary.csv",
            dir.display(),
            seed.map(|s| format!(" with seed {s}")).unwrap_or_default()
        ));
    };
    let seed = table.get(row, "seed").unwrap_or("");
    let run: PathBuf = dir.join(format!("point-{point:04}-seed-{seed}"));
    let mut app = App::with_sweep(dir, table);
    app.replay = Some(Replay::open(&run).map_err(|e| e.to_string())?);
    Ok(app)
}

/// Draws the replay's frame of `app` (for a terminal of any backend).
pub fn render(frame: &mut ratatui::Frame<'_>, app: &mut App) {
    ui::draw(frame, app);
}

/// Draws one frame of `app` at `width`×`height` and returns it as text,
/// one line per row, trailing spaces trimmed.
pub fn frame_text(app: &mut App, width: u16, height: u16) -> Result<String, String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).map_err(|e| e.to_string())?;
    terminal
        .draw(|f| ui::draw(f, app))
        .map_err(|e| e.to_string())?;
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// Runs the interactive replay in the terminal until `q`.
pub fn run_interactive(app: App) -> Result<(), String> {
    terminal::run(app)
}

#[cfg(test)]
mod tests;
