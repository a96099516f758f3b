//! The replay's state and frames on a small hand-made run: two subsets of
//! one service, an ejection, a config push.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_rundir::{CallCounts, CallRow, EventRow, RunWriter, Summary, WindowRow};

use super::{App, Key, Panel, Replay, frame_text, open};

const S: u64 = 1_000_000_000;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshsim-replay-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// 10 windows of 1 s; `shop-v1-0` fails from 3 s and is ejected at 3.5 s
/// for 30 s by `client-0`; 90/10 then 50/50 after a push at 6 s.
fn write_run(dir: &Path) {
    let mut w = RunWriter::create(dir).unwrap();
    for t in 1..=10u64 {
        let v2 = if t > 6 { 50 } else { 10 };
        let bad = t >= 3;
        let ejected = t >= 4;
        for (name, version, n) in [
            ("shop-v1-0", "v1", if ejected { 0 } else { 45 }),
            ("shop-v1-1", "v1", if ejected { 100 - v2 } else { 45 }),
            ("shop-v2-0", "v2", v2),
        ] {
            let errors = if bad && name == "shop-v1-0" { n } else { 0 };
            w.window(&WindowRow {
                time_ns: t * S,
                endpoint: name,
                service: "shop",
                version,
                requests: n,
                successes: n - errors,
                errors,
                latency_ms_p50: 10.0,
                latency_ms_p99: 20.0,
                ejected_by: u32::from(ejected && name == "shop-v1-0"),
                active_requests: 1,
            })
            .unwrap();
        }
        w.call(&CallRow {
            time_ns: t * S,
            source: "fortio",
            host: "shop",
            counts: CallCounts {
                requests: 100,
                successes: if t == 3 { 95 } else { 100 },
                errors_5xx: if t == 3 { 5 } else { 0 },
                ..CallCounts::default()
            },
            latency_ms_p50: 10.0,
            latency_ms_p99: 20.0,
        })
        .unwrap();
    }
    for (t, kind, proxy, endpoint, detail) in [
        (
            3 * S,
            "fault_start",
            "",
            "shop-v1-0",
            "fail status=503 probability=1",
        ),
        (
            3 * S + S / 2,
            "eject",
            "client-0",
            "shop-v1-0",
            "reason=consecutive_5xx duration=30s",
        ),
        (6 * S, "config_push", "", "", "propagation=0s"),
    ] {
        w.event(&EventRow {
            time_ns: t,
            kind,
            proxy,
            endpoint,
            detail,
        })
        .unwrap();
    }
    let summary = Summary {
        experiment: "hand-made".to_owned(),
        seed: 7,
        duration_ns: 10 * S,
        requests: 1000,
        successes: 995,
        ..Summary::default()
    };
    let experiment = r#"
[[destinationRule]]
name = "shop"
host = "shop"
trafficPolicy = { outlierDetection = { consecutive5xxErrors = 5, interval = "10s", baseEjectionTime = "30s", maxEjectionPercent = 50 } }
"#;
    w.finish(&summary, Some(experiment)).unwrap();
}

/// The line of `frame` holding `needle`.
fn row<'a>(frame: &'a str, needle: &str) -> &'a str {
    frame.lines().find(|l| l.contains(needle)).unwrap_or("")
}

fn app(name: &str) -> (App, PathBuf) {
    let dir = temp(name);
    write_run(&dir);
    (App::with_run(Replay::open(&dir).unwrap()), dir)
}

#[test]
fn playing_advances_one_window_per_window_length_times_the_speed() {
    let (mut app, dir) = app("play");
    app.tick(Duration::from_secs(5));
    assert_eq!(app.cursor, 0, "paused: time does not move");
    app.key(Key::Char(' '));
    assert!(app.playing);
    app.tick(Duration::from_millis(999));
    assert_eq!(app.cursor, 0);
    app.tick(Duration::from_millis(1));
    assert_eq!(app.cursor, 1);
    app.key(Key::Char('+'));
    assert_eq!(app.speed(), 2.0);
    app.tick(Duration::from_secs(1));
    assert_eq!(app.cursor, 3);
    app.tick(Duration::from_secs(60));
    assert_eq!(app.cursor, 9, "stops at the last window");
    assert!(!app.playing, "and pauses there");
    app.key(Key::Char(' '));
    assert_eq!(
        (app.cursor, app.playing),
        (0, true),
        "space at the end replays"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn speed_is_bounded_both_ways() {
    let (mut app, dir) = app("speed");
    for _ in 0..20 {
        app.key(Key::Char('-'));
    }
    assert_eq!(app.speed(), 0.25);
    for _ in 0..20 {
        app.key(Key::Char('+'));
    }
    assert_eq!(app.speed(), 128.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn arrows_step_home_end_jump_and_shift_arrows_go_from_event_to_event() {
    let (mut app, dir) = app("seek");
    app.key(Key::Right);
    app.key(Key::Right);
    assert_eq!(app.now_ns(), 3 * S);
    app.key(Key::Left);
    assert_eq!(app.now_ns(), 2 * S);
    app.key(Key::End);
    assert_eq!(app.now_ns(), 10 * S);
    app.key(Key::Right);
    assert_eq!(app.now_ns(), 10 * S, "no window after the last");
    app.key(Key::Home);
    assert_eq!(app.cursor, 0);
    // Events at 3 s (window 3 s), 3.5 s (window 4 s) and 6 s (window 6 s).
    app.key(Key::ShiftRight);
    assert_eq!(app.now_ns(), 3 * S);
    app.key(Key::ShiftRight);
    assert_eq!(app.now_ns(), 4 * S);
    app.key(Key::ShiftRight);
    assert_eq!(app.now_ns(), 6 * S);
    app.key(Key::ShiftRight);
    assert_eq!(app.now_ns(), 6 * S, "no event after the last");
    app.key(Key::ShiftLeft);
    assert_eq!(app.now_ns(), 4 * S);
    app.seek_time(7_500_000_000);
    assert_eq!(
        app.now_ns(),
        8 * S,
        "a time is shown in the window holding it"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_filter_is_typed_after_a_slash_and_cleared_by_esc() {
    let (mut app, dir) = app("filter");
    for k in [Key::Char('/'), Key::Char('v'), Key::Char('2'), Key::Enter] {
        app.key(k);
    }
    assert_eq!(app.filter, "v2");
    assert!(!app.typing);
    let frame = frame_text(&mut app, 100, 30).unwrap();
    assert!(frame.contains("Endpoints 1/3 · filter: v2"), "{frame}");
    assert!(
        frame.contains("shop-v2-0") && !frame.contains("shop-v1-1"),
        "{frame}"
    );
    app.key(Key::Char('q'));
    assert!(app.quit);
    app.quit = false;
    app.key(Key::Esc);
    assert!(app.filter.is_empty());
    app.key(Key::Tab);
    assert_eq!(app.focus, Panel::Events);
    // ↓ scrolls the focused panel; the topology's two lines fit, so the
    // scroll is clamped back when drawn and its caller stays in view.
    app.key(Key::Tab);
    assert_eq!(app.focus, Panel::Topology);
    for _ in 0..5 {
        app.key(Key::Down);
    }
    assert_eq!(app.scroll[2], 5);
    let frame = frame_text(&mut app, 100, 30).unwrap();
    assert_eq!(app.scroll[2], 0);
    assert!(frame.contains("│fortio "), "{frame}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_frame_shows_ejection_time_left_split_events_and_tuned_values() {
    let (mut app, dir) = app("frame");
    app.seek_time(5 * S);
    let frame = frame_text(&mut app, 100, 30).unwrap();
    for want in [
        "hand-made · seed 7 · t=5.0s / 10.0s",
        "shop: 5xx=5 interval=10s base=30s max%=50",
        "shop v1 ",
        " 90%",
        "shop v2 ",
        " 10%",
        "│fortio ",
        "└→ shop 100/s 0.0% err",
        "3.50 eject       client-0 shop-v1-0 reason=consec",
        "Events (3; 2 so far)",
    ] {
        assert!(frame.contains(want), "missing {want:?} in\n{frame}");
    }
    // Ejected at 3.5 s for 30 s: 28.5 s left at 5 s.
    assert!(row(&frame, " shop-v1-0 ").contains(" ej 28.5s "), "{frame}");
    assert!(row(&frame, " shop-v1-1 ").contains(" healthy "), "{frame}");
    app.seek_time(3 * S);
    let frame = frame_text(&mut app, 100, 30).unwrap();
    assert!(row(&frame, " shop-v1-0 ").contains(" failing "), "{frame}");
    assert!(frame.contains("success 95.00%"), "{frame}");
    app.seek_time(8 * S);
    let frame = frame_text(&mut app, 100, 30).unwrap();
    assert!(
        frame.lines().any(|l| l.contains("│shop v2 ▂▂▂▂▂▂▅▅  50%")),
        "{frame}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_small_terminal_gets_a_message_not_a_broken_frame() {
    let (mut app, dir) = app("small");
    let frame = frame_text(&mut app, 50, 10).unwrap();
    assert!(frame.contains("Terminal too small (50×10)"), "{frame}");
    let frame = frame_text(&mut app, 80, 24).unwrap();
    assert!(frame.contains("Endpoints (3)"), "80×24 is enough: {frame}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_opens_with_a_question_mark_and_closes_on_any_key() {
    let (mut app, dir) = app("help");
    app.key(Key::Char('?'));
    let frame = frame_text(&mut app, 100, 30).unwrap();
    assert!(
        frame.contains("⇧← / ⇧→    previous / next event"),
        "{frame}"
    );
    app.key(Key::Right);
    assert!(!app.help);
    assert_eq!(app.cursor, 0, "the key that closes help does nothing else");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_sweep_directory_lists_points_by_objective_and_opens_the_chosen_one() {
    let sweep = temp("sweep");
    for (point, seed) in [(0, 1), (1, 1)] {
        write_run(&sweep.join(format!("point-{point:04}-seed-{seed}")));
    }
    let mk = |point: u64, successes: u64, p99: f64| {
        (
            vec![point.to_string(), format!("{}", point * 5 + 1)],
            Summary {
                experiment: "hand-made".to_owned(),
                seed: 1,
                requests: 100,
                successes,
                latency_ms: [1.0, 2.0, p99, 4.0],
                ..Summary::default()
            },
        )
    };
    let rows = [mk(0, 90, 10.0), mk(1, 99, 30.0)];
    mesh_rundir::write_summary(
        &sweep.join("summary.csv"),
        &["point".to_owned(), "dr.x.consecutive5xxErrors".to_owned()],
        rows.iter().map(|(v, s)| (v.clone(), s)),
    )
    .unwrap();
    let mut app = open(&sweep, None, None).unwrap();
    let p = app.picker.as_ref().unwrap();
    assert_eq!(p.order, [1, 0], "highest success rate first");
    let frame = frame_text(&mut app, 100, 30).unwrap();
    assert!(
        frame.contains("sorted by success_rate (highest first)"),
        "{frame}"
    );
    assert!(frame.contains("consecutive5xxErrors"), "{frame}");
    app.key(Key::Char('s'));
    app.key(Key::Char('s'));
    assert_eq!(
        app.picker.as_ref().unwrap().order,
        [0, 1],
        "lowest p99 first"
    );
    app.key(Key::Down);
    app.key(Key::Enter);
    assert!(app.replay.is_some(), "{:?}", app.status);
    app.key(Key::Esc);
    assert!(app.replay.is_none(), "esc goes back to the points");
    let app = open(&sweep, Some(1), Some(1)).unwrap();
    assert!(app.replay.is_some());
    let e = open(&sweep, Some(7), None).unwrap_err();
    assert!(e.contains("no run of point 7"), "{e}");
    std::fs::remove_dir_all(sweep).unwrap();
}
