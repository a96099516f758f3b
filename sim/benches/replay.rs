//! The replay's cost on a big run: opening it (to the first frame) and one
//! step + redraw, on a 1-hour run with 1,000 endpoints (3,600 windows,
//! 3.6 M `timeseries.csv` rows), drawn to ratatui's `TestBackend` at
//! 120×40 (the terminal's own output is not timed).
//!
//! `cargo bench -p meshsim --bench replay`; the run is simulated once into
//! `target/bench-replay-hour` (a few seconds) and reused.

use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meshsim::replay::{App, Key, Replay};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Simulates `experiment` with `sets` once into `target/<name>` (reused
/// by later benches) and returns the run directory.
fn simulated(name: &str, experiment: &str, sets: &[(&str, &str)]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target").join(name);
    if dir.join("summary.csv").exists() {
        return dir;
    }
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let plan =
        meshsim::plan::load(&root.join(experiment), &sets, None).expect("the experiment loads");
    let out = |_: usize, _: &meshsim::plan::Job| dir.clone();
    meshsim::plan::execute(&plan.jobs[..1], 1, Some(&out), &|| {}).expect("the run completes");
    dir
}

/// One-bad-pod with 1,000 pods for an hour.
fn hour_run() -> PathBuf {
    simulated(
        "bench-replay-hour",
        "experiments/one-bad-pod.toml",
        &[
            ("service.backend.version.v1.pods", "1000"),
            ("load.qps", "2000"),
            ("duration", "3600s"),
        ],
    )
}

fn open(dir: &Path) -> App {
    App::with_run(Replay::open(dir).expect("the run opens"))
}

fn bench(c: &mut Criterion) {
    let dir = hour_run();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut g = c.benchmark_group("replay_1h_1000_endpoints");
    g.sample_size(10);
    g.bench_function("open_to_first_frame", |b| {
        b.iter(|| {
            let mut app = open(&dir);
            terminal
                .draw(|f| meshsim::replay::render(f, &mut app))
                .unwrap();
        });
    });
    g.finish();
    let mut app = open(&dir);
    app.seek(1800);
    let mut g = c.benchmark_group("replay_1h_1000_endpoints");
    g.bench_function("step_and_redraw", |b| {
        b.iter(|| {
            app.key(Key::Right);
            if app.cursor + 1 >= 3600 {
                app.key(Key::Home);
            }
            terminal
                .draw(|f| meshsim::replay::render(f, &mut app))
                .unwrap();
        });
    });
    g.bench_function("redraw_same_window", |b| {
        b.iter(|| {
            terminal
                .draw(|f| meshsim::replay::render(f, &mut app))
                .unwrap();
        });
    });
    g.finish();
}

/// A canary of 1,000 endpoints (800 v1, 200 v2) for an hour: the split
/// panel's share history parses the windows it shows.
fn canary_run() -> PathBuf {
    simulated(
        "bench-replay-canary",
        "experiments/canary-gateway.toml",
        &[
            ("service.web.version.v1.pods", "800"),
            ("service.web.version.v2.pods", "200"),
            ("duration", "3600s"),
            ("load.qps", "1000"),
        ],
    )
}

fn bench_split(c: &mut Criterion) {
    let dir = canary_run();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut g = c.benchmark_group("replay_1h_canary_1000_endpoints");
    g.sample_size(10);
    g.bench_function("open_to_first_frame", |b| {
        b.iter(|| {
            let mut app = open(&dir);
            terminal
                .draw(|f| meshsim::replay::render(f, &mut app))
                .unwrap();
        });
    });
    let mut app = open(&dir);
    app.seek(1800);
    g.bench_function("step_and_redraw", |b| {
        b.iter(|| {
            app.key(Key::Right);
            if app.cursor + 1 >= 3600 {
                app.key(Key::Home);
            }
            terminal
                .draw(|f| meshsim::replay::render(f, &mut app))
                .unwrap();
        });
    });
    // A jump to a window whose neighbours were never drawn: the share
    // history of the split panel is parsed afresh (the opening is not timed).
    g.bench_function("jump_and_redraw_cold", |b| {
        let mut at = 100;
        b.iter_batched(
            || open(&dir),
            |mut app| {
                at = (at + 997) % 3500;
                app.seek(at);
                terminal
                    .draw(|f| meshsim::replay::render(f, &mut app))
                    .unwrap();
                // Returned, so that freeing its 221 MB is not timed.
                app
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench, bench_split);
criterion_main!(benches);
