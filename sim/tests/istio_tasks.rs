//! The Istio documentation tasks, written as Kubernetes YAML in our own
//! words (`experiments/istio/`), loaded as a user would (`mesh = [...]`),
//! with the behaviour each task shows asserted through the simulator.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meshsim::metrics::Metrics;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../experiments/istio")
        .join(name)
}

/// Loads an experiment through the same path as `meshsim run` (included
/// files, `--set`), expects no warning, and runs its first job.
fn run(name: &str, sets: &[(&str, &str)]) -> Metrics {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let plan = meshsim::plan::load(&path(name), &sets, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.warnings.is_empty(), "{name}: {:#?}", plan.warnings);
    meshsim::Run::new(&plan.jobs[0].model)
        .run()
        .expect("the run completes")
}

/// Requests received per workload (`<service>-<version>`), for the windows
/// whose end time (the time a window row carries) is in `[from, to)` s.
fn received(m: &Metrics, from: u64, to: u64) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for w in m
        .windows
        .iter()
        .filter(|w| (from * 1_000_000_000..to * 1_000_000_000).contains(&w.time_ns))
    {
        let workload = w.endpoint.rsplit_once('-').unwrap().0.to_owned();
        *by.entry(workload).or_default() += w.requests;
    }
    by
}

fn get(by: &BTreeMap<String, u64>, k: &str) -> u64 {
    by.get(k).copied().unwrap_or(0)
}

/// Call totals of `source -> host` over the windows ending in `[from, to)` s.
fn calls(m: &Metrics, source: &str, host: &str, from: u64, to: u64) -> mesh_rundir::CallCounts {
    let mut c = mesh_rundir::CallCounts::default();
    for r in m.call_windows.iter().filter(|r| {
        r.source == source
            && r.host == host
            && (from * 1_000_000_000..to * 1_000_000_000).contains(&r.time_ns)
    }) {
        c.requests += r.counts.requests;
        c.successes += r.counts.successes;
        c.errors_5xx += r.counts.errors_5xx;
        c.fault_aborts += r.counts.fault_aborts;
        c.timeouts += r.counts.timeouts;
        c.app_timeouts += r.counts.app_timeouts;
    }
    c
}

#[test]
fn request_routing_sends_jason_to_reviews_v2_and_everyone_else_to_v1() {
    let anonymous = received(&run("request-routing.toml", &[]), 0, 21);
    assert!(get(&anonymous, "reviews-v1") > 1900, "{anonymous:?}");
    assert_eq!(
        get(&anonymous, "reviews-v2") + get(&anonymous, "reviews-v3"),
        0
    );
    assert_eq!(
        get(&anonymous, "ratings-v1"),
        0,
        "reviews v1 never calls ratings"
    );
    // The header name in another case still matches (names are
    // case-insensitive); every reviews request of jason's calls ratings.
    let jason = received(
        &run(
            "request-routing.toml",
            &[("load.headers.End-User", "jason")],
        ),
        0,
        21,
    );
    assert_eq!(
        get(&jason, "reviews-v1") + get(&jason, "reviews-v3"),
        0,
        "{jason:?}"
    );
    assert!(get(&jason, "reviews-v2") > 1900, "{jason:?}");
    assert_eq!(get(&jason, "ratings-v1"), get(&jason, "reviews-v2"));
    // Values are exact: `Jason` is somebody else.
    let other = received(
        &run(
            "request-routing.toml",
            &[("load.headers.end-user", "Jason")],
        ),
        0,
        21,
    );
    assert_eq!(get(&other, "reviews-v2"), 0, "{other:?}");
}

#[test]
fn fault_injection_delays_jason_past_productpage_s_timeout_then_aborts_his_ratings() {
    let m = run("fault-injection.toml", &[]);
    // Delay (pushed away at 10 s): each ratings call of jason's waits 7 s,
    // so productpage gives up on reviews at its own 3 s timeout.
    let before = calls(&m, "productpage-v1", "reviews", 0, 11);
    assert!(before.requests > 120, "{before:?}");
    assert_eq!(before.app_timeouts, before.requests, "{before:?}");
    assert_eq!(calls(&m, "reviews-v2", "ratings", 0, 11).fault_aborts, 0);
    let delayed: Vec<f64> = m
        .call_windows
        .iter()
        .filter(|r| r.source == "reviews-v2" && r.time_ns < 11_000_000_000 && r.counts.requests > 0)
        .map(|r| r.latency_ms_p50)
        .collect();
    assert!(
        !delayed.is_empty() && delayed.iter().all(|&ms| ms >= 7000.0),
        "{delayed:?}"
    );
    // Abort: from the push on, every ratings call of his is FI at once (the
    // delayed calls made before it complete by 17 s).
    let after = calls(&m, "reviews-v2", "ratings", 18, 21);
    assert!(after.requests > 40, "{after:?}");
    assert_eq!(after.fault_aborts, after.requests, "{after:?}");
    let page = calls(&m, "productpage-v1", "reviews", 18, 21);
    assert_eq!(page.successes, page.requests, "{page:?}");
    // Bookinfo shows the page without the failed part: no 5xx to the client.
    assert_eq!(m.errors_5xx(), 0);
    // Half of the pages (the delay phase's) took productpage's 3 s; the
    // abort phase's took milliseconds.
    assert!(m.latency.quantile_us(0.6) >= 3_000_000);
    assert!(m.latency.quantile_us(0.3) < 100_000);
}

#[test]
fn traffic_shifting_splits_reviews_50_50_then_moves_everything_to_v3() {
    let m = run("traffic-shifting.toml", &[]);
    let first = received(&m, 0, 11);
    let (v1, v3) = (get(&first, "reviews-v1"), get(&first, "reviews-v3"));
    #[allow(clippy::cast_precision_loss)]
    let share = v3 as f64 / (v1 + v3) as f64;
    assert!((0.45..0.55).contains(&share), "v3 share {share}: {first:?}");
    assert_eq!(get(&first, "reviews-v2"), 0);
    let then = received(&m, 12, 21);
    assert_eq!(
        get(&then, "reviews-v1") + get(&then, "reviews-v2"),
        0,
        "{then:?}"
    );
    assert!(get(&then, "reviews-v3") > 1700, "{then:?}");
}

#[test]
fn circuit_breaking_from_yaml_is_the_same_run_as_from_toml_request_for_request() {
    let sets = [("load.connections", "3")];
    let yaml = run("circuit-breaking.toml", &sets);
    let toml_plan = meshsim::plan::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../experiments/circuit-breaking.toml"),
        &[("load.connections".to_owned(), "3".to_owned())],
        None,
    )
    .unwrap();
    let toml = meshsim::Run::new(&toml_plan.jobs[0].model).run().unwrap();
    assert!(
        yaml.flag("UO") > 0,
        "three connections overflow one + one pending"
    );
    assert_eq!(yaml.requests, toml.requests);
    assert_eq!(yaml.by_status, toml.by_status);
    assert_eq!(yaml.by_flag, toml.by_flag);
    assert_eq!(yaml.windows, toml.windows);
    assert_eq!(yaml.events.len(), toml.events.len());
}

#[test]
fn egress_times_out_at_3s_then_suspended_calls_never_leave_the_sidecar() {
    let m = run("egress.toml", &[]);
    let before = calls(&m, "sleep-v1", "httpbin.org", 0, 11);
    assert!(before.requests > 100, "{before:?}");
    assert_eq!(before.timeouts, before.requests, "{before:?}");
    let after = calls(&m, "sleep-v1", "httpbin.org", 14, 21);
    assert!(after.requests > 100, "{after:?}");
    assert_eq!(after.fault_aborts, after.requests, "{after:?}");
    // Whatever reached httpbin.org before the push is done by 16 s; nothing after.
    assert_eq!(get(&received(&m, 16, 21), "httpbin-ext-v1"), 0);
    assert_eq!(
        m.flag("UT") + m.flag("FI"),
        0,
        "the client sees sleep's own 500s"
    );
    assert_eq!(m.errors_5xx(), m.requests);
}

#[test]
fn ingress_gateway_serves_productpage_and_canaries_reviews_at_10_percent() {
    let m = run("ingress-canary.toml", &[]);
    assert_eq!(m.errors_5xx(), 0);
    assert!(m.successes() > 3900);
    let by = received(&m, 0, 21);
    let (v1, v2) = (get(&by, "reviews-v1"), get(&by, "reviews-v2"));
    #[allow(clippy::cast_precision_loss)]
    let share = v2 as f64 / (v1 + v2) as f64;
    assert!((0.08..0.12).contains(&share), "v2 share {share}: {by:?}");
    let other = run("ingress-canary.toml", &[("load.path", "/other")]);
    assert_eq!(other.flag("NR"), other.requests);
}
