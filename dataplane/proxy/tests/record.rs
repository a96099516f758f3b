//! `--record DIR`: live traffic written as a run directory that the
//! simulator's reader, replay and report open like a simulated run.

mod common;

use common::{Echo, Proxy};

#[test]
fn a_recording_is_a_run_directory_the_replay_opens() {
    let good = Echo::start("good", &[]);
    let bad = Echo::start("bad", &["--status", "503"]);
    let config = common::service(&[(&good, "v1"), (&bad, "v2")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
[destinationRule.trafficPolicy]
loadBalancer = { simple = "ROUND_ROBIN" }
outlierDetection = { consecutive5xxErrors = 2, interval = "100ms", baseEjectionTime = "30s", maxEjectionPercent = 100 }

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
retries = { attempts = 0 }
route = [{ destination = { host = "echo" } }]
"#;
    let dir = common::temp_dir("record").join("run");
    let mut p = Proxy::start(
        &config,
        &[
            "--record",
            dir.to_str().unwrap(),
            "--record-window",
            "200ms",
            "--drain-time",
            "0s",
        ],
    );
    for _ in 0..20 {
        let _ = p.get("/", &[]);
    }
    p.proc.stderr.wait_for(&format!(
        "eject outbound|80||echo.default.svc.cluster.local {}",
        bad.addr
    ));
    // Let a window or two close, then stop: the summary is written at exit.
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.proc.signal("TERM");
    assert!(p.proc.wait_exit().success());

    let run = mesh_rundir::RunDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.summary.get(0, "requests"), Some("20"));
    assert_eq!(run.summary.get(0, "errors_5xx"), Some("2"));
    assert_eq!(run.summary.get(0, "ejections"), Some("1"));
    let eject = run
        .events
        .iter()
        .find(|e| e.kind == "eject")
        .expect("an eject event");
    assert_eq!(eject.endpoint, bad.addr.to_string());
    assert!(
        eject
            .detail
            .starts_with("reason=consecutive_5xx duration=30s"),
        "{}",
        eject.detail
    );
    // Every window has a row per endpoint; the bad one got exactly 2
    // attempts and is ejected from the window of its ejection on.
    let mut bad_requests = 0;
    let mut ejected_seen = false;
    for w in 0..run.timeseries.windows.len() {
        let rows = run.timeseries.rows(w).unwrap();
        assert_eq!(rows.len(), 2);
        let b = rows
            .iter()
            .find(|r| r.endpoint == bad.addr.to_string())
            .unwrap();
        assert_eq!(b.version, "v2");
        assert_eq!(b.service, "echo");
        bad_requests += b.requests;
        ejected_seen |= b.ejected_by == 1;
    }
    assert_eq!(bad_requests, 2);
    assert!(ejected_seen);
    assert!(run.calls.iter().map(|c| c.counts.requests).sum::<u64>() == 20);
    // The simulator's replay opens it and draws a frame.
    let mut app = meshsim::replay::open(&dir, None, None).unwrap_or_else(|e| panic!("{e}"));
    let frame = meshsim::replay::frame_text(&mut app, 120, 40).unwrap();
    assert!(frame.contains(&bad.addr.to_string()), "{frame}");
    // And `meshsim report` draws it: the client's series and the ejected
    // endpoint's lane.
    let html = dir.join("report.html");
    meshsim::report::command(&meshsim::report::Args {
        dir: &dir,
        compare: None,
        out: Some(&html),
        objective: "errors_5xx",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let html = std::fs::read_to_string(&html).unwrap();
    for id in ["chart-success", "chart-rps", "chart-latency", "chart-lanes"] {
        assert!(html.contains(&format!("<figure id=\"{id}\">")), "{id}");
    }
    assert!(html.contains("a recording"), "no experiment.toml, said so");
}
