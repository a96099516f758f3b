//! Istio's circuit-breaking task in the simulator: the HTTP/1.1 connection
//! pool with maxConnections 1, http1MaxPendingRequests 1 and
//! maxRequestsPerConnection 1, Istio's two sidecar workers (each pools on
//! its own, the breaker's counters are shared) and 0.5 ms to set up each
//! connection: 2 fortio connections overflow now and then, 3 about two
//! thirds of the time, as Istio's doc shows.

use std::path::PathBuf;
use std::process::Command;

fn run(extra: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // One directory per run: tests run in parallel, some with the same
    // arguments.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("meshsim-cb-{}-{n}", std::process::id()));
    let mut args = vec![
        "run",
        "experiments/circuit-breaking.toml",
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(&args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(dir.join("summary.csv")).unwrap()
}

fn column(summary: &str, name: &str) -> f64 {
    let mut lines = summary.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    row[i].parse().unwrap()
}

/// The pure breaker fact, without the connection setup time and with one
/// worker: one request runs, one waits for the connection, so 2 connections
/// fit.
const INSTANT_ONE_WORKER: [&str; 4] = [
    "--set",
    "service.httpbin.version.v1.connectTime=0s",
    "--set",
    "client.fortio.proxyConcurrency=1",
];

#[test]
fn with_instant_connections_two_connections_fit_one_connection_and_one_pending_slot() {
    let s = run(&INSTANT_ONE_WORKER);
    assert_eq!(column(&s, "overflow"), 0.0);
    assert_eq!(column(&s, "errors_5xx"), 0.0);
    // One request at a time on the single connection, the other waiting:
    // about 10 s / 5 ms = 2,000 requests, none lost.
    assert!(column(&s, "requests") > 1_500.0);
}

#[test]
fn two_connections_overflow_now_and_then_as_in_istios_task() {
    // A request that comes while the other waits for its new connection
    // (0.5 ms to set up) finds the one pending slot taken.
    let s = run(&[]);
    let (requests, overflow) = (column(&s, "requests"), column(&s, "overflow"));
    assert!(
        overflow > 0.0 && overflow / requests < 0.2,
        "{overflow} of {requests} overflowed"
    );
    assert_eq!(column(&s, "errors_5xx"), overflow, "every 503 is a UO");
    // Istio's task runs `fortio load -c 2 -qps 0 -n 20`: some of the 20.
    let s = run(&["--set", "load.requests=20"]);
    assert_eq!(column(&s, "requests"), 20.0);
    let overflow = column(&s, "overflow");
    assert!(
        (1.0..=5.0).contains(&overflow),
        "{overflow} of 20 overflowed"
    );
}

#[test]
fn a_third_connection_overflows_about_two_thirds_and_nothing_is_ejected() {
    let s = run(&["--set", "load.connections=3"]);
    let requests = column(&s, "requests");
    let overflow = column(&s, "overflow");
    // Istio's doc: 63 % at -c 3; the share depends on timing.
    assert!(
        (0.5..0.8).contains(&(overflow / requests)),
        "{overflow} of {requests} overflowed"
    );
    assert_eq!(
        column(&s, "errors_5xx"),
        overflow,
        "every 503 is an overflow (UO)"
    );
    // consecutive5xxErrors = 1, yet overflows are never fed to outlier detection.
    assert_eq!(column(&s, "ejections"), 0.0);
}

#[test]
fn fortio_c3_n30_sends_exactly_30_requests_and_about_two_thirds_overflow() {
    // Istio's task runs `fortio load -c 3 -qps 0 -n 30` (its doc: 19 of 30).
    let s = run(&["--set", "load.connections=3", "--set", "load.requests=30"]);
    assert_eq!(column(&s, "requests"), 30.0);
    let overflow = column(&s, "overflow");
    assert!(
        (15.0..=25.0).contains(&overflow),
        "{overflow} of 30 overflowed"
    );
}

#[test]
fn with_two_workers_two_connections_on_two_workers_each_get_a_connection() {
    // With this seed the kernel spreads fortio's 2 connections over both
    // workers: each worker's pool has no connection at all, so each opens
    // one (Envoy's exception to maxConnections): twice the requests of one
    // worker, and with instant connections no overflow.
    let one = run(&INSTANT_ONE_WORKER);
    let two = run(&[
        "--set",
        "service.httpbin.version.v1.connectTime=0s",
        "--seed",
        "1",
    ]);
    assert_eq!(column(&two, "overflow"), 0.0);
    let ratio = column(&two, "requests") / column(&one, "requests");
    assert!(ratio > 1.5, "{ratio}");
}

#[test]
fn with_two_workers_a_third_connection_overflows_less_than_with_one() {
    // Two pools, one pending slot shared by the breaker: the third
    // connection overflows less often than with one worker's single pool.
    let one = run(&[
        "--set",
        "load.connections=3",
        "--set",
        "client.fortio.proxyConcurrency=1",
    ]);
    let two = run(&["--set", "load.connections=3"]);
    let share = |s: &str| column(s, "overflow") / column(s, "requests");
    assert!(
        share(&two) > 0.2 && share(&two) < share(&one),
        "{} vs {}",
        share(&two),
        share(&one)
    );
}

#[test]
fn a_connection_takes_its_connect_time_to_set_up_and_requests_wait_for_it() {
    // One request, constant 10 ms service: 3 ms to connect first, so the
    // client sees 13 ms (within the histogram's 1 %); 10 ms without.
    let once = |connect: &str| {
        let s = run(&[
            "--set",
            "load.requests=1",
            "--set",
            "load.connections=1",
            "--set",
            "service.httpbin.version.v1.latency.distribution=constant",
            "--set",
            "service.httpbin.version.v1.latency.value=10ms",
            "--set",
            &format!("service.httpbin.version.v1.connectTime={connect}"),
        ]);
        column(&s, "latency_ms_p50")
    };
    let (with, without) = (once("3ms"), once("0s"));
    assert!((with - 13.0).abs() <= 0.13, "{with}");
    assert!((without - 10.0).abs() <= 0.1, "{without}");
    // Two requests at t = 0 on one worker: the first waits for the
    // connection being set up in the one pending slot, so the second
    // overflows, exactly once.
    let s = run(&[
        "--set",
        "load.requests=2",
        "--set",
        "client.fortio.proxyConcurrency=1",
    ]);
    assert_eq!(column(&s, "overflow"), 1.0);
}

#[test]
fn a_proxy_concurrency_of_zero_is_refused_with_its_field() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "run",
            "experiments/circuit-breaking.toml",
            "--set",
            "client.fortio.proxyConcurrency=0",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("client[fortio].proxyConcurrency: expected 1 to 64 worker threads, found 0"),
        "{err}"
    );
}
