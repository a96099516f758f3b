//! One engine, two backends: each scenario runs through the simulator
//! (`meshsim`, virtual time) and through the real proxy against meshecho
//! upstreams scripted the same way, and the two are compared on what
//! matters — which endpoint is ejected and returned, in what order and for
//! how long; the split per subset; where headers route; which answers
//! overflow — never on wall-clock timings.
//!
//! A scenario is written once: its pods (name, version, always-503 or
//! healthy) and its Istio objects (TOML). The simulator gets an experiment
//! built from it; the proxy gets the same objects with the meshecho
//! addresses.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Echo, PATIENCE, Proxy};
use mesh_engine::config::parse_duration;

/// A pod of the service `echo`: `echo-<version>-<index>`.
struct Pod {
    version: &'static str,
    bad: bool,
}

/// A healthy pod of `version`.
fn good(version: &'static str) -> Pod {
    Pod {
        version,
        bad: false,
    }
}

/// A pod of `version` that answers 503.
fn bad(version: &'static str) -> Pod {
    Pod { version, bad: true }
}

struct Scenario {
    pods: Vec<Pod>,
    /// DestinationRule and VirtualService tables for host `echo`.
    istio: &'static str,
}

impl Scenario {
    fn pod_names(&self) -> Vec<String> {
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        self.pods
            .iter()
            .map(|p| {
                let i = per.entry(p.version).or_insert(0);
                *i += 1;
                format!("echo-{}-{}", p.version, *i - 1)
            })
            .collect()
    }

    fn versions(&self) -> Vec<&'static str> {
        let mut v: Vec<&str> = self.pods.iter().map(|p| p.version).collect();
        v.dedup();
        v
    }

    /// The simulator's experiment: pods with a constant latency, a
    /// closed-loop load of `connections` from one client, bad pods failing
    /// from the start.
    fn experiment(
        &self,
        connections: u32,
        requests: u64,
        load_extra: &str,
        latency: &str,
    ) -> String {
        let mut s = String::from(
            "name = \"conformance\"\nduration = \"600s\"\nseed = 1\nwindow = \"1s\"\n\n[[service]]\nname = \"echo\"\nport = 80\n",
        );
        for v in self.versions() {
            let n = self.pods.iter().filter(|p| p.version == v).count();
            s += &format!(
                "[[service.version]]\nname = \"{v}\"\npods = {n}\nlatency = {{ distribution = \"constant\", value = \"{latency}\" }}\n"
            );
        }
        s += &format!(
            "\n[[client]]\nname = \"load\"\n# Two worker threads, as meshproxy and Istio's sidecars by default.\nproxyConcurrency = 2\n\n[load]\nclient = \"load\"\nhost = \"echo\"\nconnections = {connections}\nrequests = {requests}\n{load_extra}\n"
        );
        for (p, name) in self.pods.iter().zip(self.pod_names()) {
            if p.bad {
                s += &format!(
                    "\n[[timeline]]\nat = \"0s\"\npod = \"{name}\"\nfail = {{ status = 503 }}\n"
                );
            }
        }
        s + self.istio
    }

    fn simulate(
        &self,
        connections: u32,
        requests: u64,
        load_extra: &str,
        latency: &str,
    ) -> meshsim::metrics::Metrics {
        self.simulate_with_summary(connections, requests, load_extra, latency)
            .0
    }

    /// As `simulate`, with the run's `summary.csv` row.
    fn simulate_with_summary(
        &self,
        connections: u32,
        requests: u64,
        load_extra: &str,
        latency: &str,
    ) -> (meshsim::metrics::Metrics, mesh_rundir::Summary) {
        let text = self.experiment(connections, requests, load_extra, latency);
        let file = meshsim::experiment::parse(&text, Some("conformance.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (model, _) =
            meshsim::Model::build(&file, None).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let m = meshsim::Run::new(&model).run().expect("the run completes");
        let summary = m.summary(&model);
        (m, summary)
    }

    /// The proxy in front of meshecho pods, recording (`--record`), sent
    /// `requests` GETs of `path` one after the other, then stopped: its
    /// run directory.
    fn record(&self, requests: u64, path: &str) -> mesh_rundir::RunDir {
        let (_echoes, config) = self.upstreams();
        let dir = common::temp_dir("conformance-record").join("run");
        let mut p = Proxy::start(
            &config,
            &[
                "--access-log",
                "off",
                "--record",
                dir.to_str().unwrap(),
                "--drain-time",
                "0s",
            ],
        );
        for _ in 0..requests {
            let _ = p.get(path, &[]);
        }
        p.proc.signal("TERM");
        assert!(p.proc.wait_exit().success());
        mesh_rundir::RunDir::open(&dir).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The `summary.csv` columns that count answers and ejections (the others
/// are times and latencies, or the simulator's own: users, bad pods).
const COUNTED: [&str; 8] = [
    "requests",
    "successes",
    "errors_5xx",
    "overflow",
    "fault_aborts",
    "timeouts",
    "success_rate",
    "ejections",
];

/// A simulated run and a recording agree on every counted summary column
/// and on the kinds and details of the engines' events, in order.
fn assert_same_run(
    sim: &(meshsim::metrics::Metrics, mesh_rundir::Summary),
    rec: &mesh_rundir::RunDir,
) {
    let row = sim.1.record();
    for c in COUNTED {
        let i = mesh_rundir::SUMMARY_COLUMNS
            .iter()
            .position(|n| *n == c)
            .unwrap();
        assert_eq!(
            rec.summary.get(0, c),
            Some(row[i].as_str()),
            "summary column {c}"
        );
    }
    // The engines' events (the simulator also logs its timeline's).
    let world = ["fault_start", "fault_end", "load_change", "config_push"];
    let sim_events: Vec<(&str, &str)> = sim
        .0
        .events
        .iter()
        .filter(|e| !world.contains(&e.kind))
        .map(|e| (e.kind, e.detail.as_str()))
        .collect();
    let rec_events: Vec<(&str, &str)> = rec
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(sim_events, rec_events, "events");
}

impl Scenario {
    /// The meshecho pods (named as the simulator names them, the bad ones
    /// answering 503) and the proxy's config in front of them.
    fn upstreams(&self) -> (Vec<Echo>, String) {
        let names = self.pod_names();
        let echoes: Vec<Echo> = self
            .pods
            .iter()
            .zip(&names)
            .map(|(p, n)| Echo::start(n, if p.bad { &["--status", "503"] } else { &[] }))
            .collect();
        let eps: Vec<(&Echo, &str)> = echoes
            .iter()
            .zip(&self.pods)
            .map(|(e, p)| (e, p.version))
            .collect();
        let config = common::service(&eps) + self.istio;
        (echoes, config)
    }

    /// The meshecho pods (named as the simulator names them) and a proxy.
    fn start(&self) -> (Vec<Echo>, Proxy) {
        let (echoes, config) = self.upstreams();
        let proxy = Proxy::start(&config, &["--access-log", "off"]);
        (echoes, proxy)
    }
}

/// Requests per version in the simulator's windows.
fn sim_split(m: &meshsim::metrics::Metrics) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for w in &m.windows {
        *by.entry(w.version.clone()).or_insert(0) += w.requests;
    }
    by.retain(|_, n| *n > 0);
    by
}

/// The simulator's eject/return events as (kind, pod, ejection time).
fn sim_events(m: &meshsim::metrics::Metrics) -> Vec<(String, String, Option<Duration>)> {
    m.events
        .iter()
        .filter(|e| e.kind == "eject" || e.kind == "return")
        .map(|e| {
            let d = e
                .detail
                .split(' ')
                .find_map(|kv| kv.strip_prefix("duration="))
                .map(|d| parse_duration(d).unwrap());
            (e.kind.to_owned(), e.endpoint.clone(), d)
        })
        .collect()
}

/// The proxy's eject/return log lines as (kind, pod, ejection time).
fn proxy_events(p: &Proxy, echoes: &[Echo]) -> Vec<(String, String, Option<Duration>)> {
    p.proc
        .stderr
        .all()
        .iter()
        .filter_map(|l| {
            let rest = l.split("meshproxy: ").nth(1)?;
            let mut f = rest.split(' ');
            let kind = f.next()?;
            if kind != "eject" && kind != "return" {
                return None;
            }
            let _cluster = f.next()?;
            let addr = f.next()?;
            let name = echoes
                .iter()
                .find(|e| e.addr.to_string() == addr)?
                .name
                .clone();
            let d = f
                .find_map(|kv| kv.strip_prefix("duration_ms="))
                .map(|ms| Duration::from_millis(ms.parse().unwrap()));
            Some((kind.to_owned(), name, d))
        })
        .collect()
}

#[test]
fn one_bad_endpoint_is_ejected_and_returned_in_the_same_order_for_the_same_times() {
    let s = Scenario {
        pods: vec![good("v1"), bad("v1"), good("v1")],
        istio: r#"
[[destinationRule]]
name = "echo"
host = "echo"
[destinationRule.trafficPolicy]
loadBalancer = { simple = "ROUND_ROBIN" }
outlierDetection = { consecutive5xxErrors = 3, interval = "200ms", baseEjectionTime = "300ms", maxEjectionPercent = 100 }

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
retries = { attempts = 0 }
route = [{ destination = { host = "echo" } }]
"#,
    };
    // Simulator: one connection, 1 ms per request, 2,000 requests (2 s).
    // The bad pod gets every third request, so it is ejected again a few
    // milliseconds after each return: well before the next interval tick
    // would lower its multiplier, in both backends.
    let sim = sim_events(&s.simulate(1, 2000, "", "1ms"));
    // Proxy: the same sequential load until it has seen two ejections and
    // two returns (or the patience runs out).
    let (echoes, p) = s.start();
    let start = Instant::now();
    let mut real = Vec::new();
    while start.elapsed() < PATIENCE {
        for _ in 0..10 {
            let _ = p.get("/", &[]);
        }
        real = proxy_events(&p, &echoes);
        if real.len() >= 4 {
            break;
        }
    }
    // The bad pod alone is ejected, then returned, then ejected again for
    // twice as long (the multiplier), in both.
    let first4 =
        |e: &[(String, String, Option<Duration>)]| e.iter().take(4).cloned().collect::<Vec<_>>();
    assert!(sim.len() >= 4, "simulator: {sim:?}");
    assert_eq!(first4(&real), first4(&sim), "proxy vs simulator");
    assert_eq!(sim[0].0, "eject");
    assert_eq!(sim[0].1, "echo-v1-1");
    assert_eq!(sim[0].2, Some(Duration::from_millis(300)));
    assert_eq!(sim[2].2, Some(Duration::from_millis(600)));
    assert!(sim.iter().chain(&real).all(|e| e.1 == "echo-v1-1"));
}

const WEIGHTED: &str = r#"
[[destinationRule]]
name = "echo"
host = "echo"
subsets = [{ name = "v1", labels = { version = "v1" } }, { name = "v2", labels = { version = "v2" } }]

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
match = [{ headers = { x-canary = { exact = "yes" } } }]
route = [{ destination = { host = "echo", subset = "v2" } }]
[[virtualService.http]]
route = [
  { destination = { host = "echo", subset = "v1" }, weight = 75 },
  { destination = { host = "echo", subset = "v2" }, weight = 25 },
]
"#;

fn two_versions() -> Scenario {
    Scenario {
        pods: vec![good("v1"), good("v2")],
        istio: WEIGHTED,
    }
}

#[test]
fn the_weighted_split_is_the_same_within_statistical_bounds() {
    let s = two_versions();
    let n = 400u64;
    let sim = sim_split(&s.simulate(1, n, "", "1ms"));
    let (_echoes, p) = s.start();
    let mut real: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..n {
        let name = p.get("/", &[]).echo().to_owned();
        let version = name.split('-').nth(1).unwrap_or("?").to_owned();
        *real.entry(version).or_insert(0) += 1;
    }
    // 300 of 400 expected on v1, standard deviation about 8.7: each within
    // five deviations of the weights, so within ten of each other.
    for (who, split) in [("simulator", &sim), ("proxy", &real)] {
        let v1 = split.get("v1").copied().unwrap_or(0);
        assert_eq!(split.values().sum::<u64>(), n, "{who}: {split:?}");
        assert!((257..=343).contains(&v1), "{who}: {split:?}");
    }
}

#[test]
fn header_routing_sends_the_same_requests_to_the_same_version() {
    let s = two_versions();
    let with = sim_split(&s.simulate(1, 50, "headers = { x-canary = \"yes\" }", "1ms"));
    let without = sim_split(&s.simulate(1, 50, "headers = { x-canary = \"no\" }", "1ms"));
    assert_eq!(with, BTreeMap::from([("v2".to_owned(), 50)]));
    assert_eq!(without.len(), 2, "{without:?}");
    let (_echoes, p) = s.start();
    for _ in 0..20 {
        assert_eq!(p.get("/", &[("x-canary", "yes")]).echo(), "echo-v2-0");
    }
}

#[test]
fn the_circuit_breaker_overflows_with_503_uo_and_never_ejects_in_both() {
    let s = Scenario {
        pods: vec![good("v1")],
        istio: r#"
[[destinationRule]]
name = "echo"
host = "echo"
[destinationRule.trafficPolicy]
connectionPool = { tcp = { maxConnections = 1 }, http = { http1MaxPendingRequests = 1 } }
outlierDetection = { consecutive5xxErrors = 1, interval = "1s", baseEjectionTime = "30s", maxEjectionPercent = 100 }
"#,
    };
    // Simulator: four connections against one pending slot and, with two
    // workers, up to two upstream connections (`maxConnections` is the
    // cluster's, but a worker's pool with no connection may always open
    // one, as Envoy's), 50 ms per request.
    let m = s.simulate(4, 80, "path = \"/?delay=50ms\"", "50ms");
    let overflow = m.by_flag.get("UO").copied().unwrap_or(0);
    assert!(overflow > 0, "simulator: no overflow");
    assert_eq!(
        m.errors_5xx(),
        overflow,
        "simulator: every 5xx is an overflow"
    );
    assert_eq!(m.ejections, 0, "simulator: an overflow ejected");
    // Proxy: four clients in parallel, 20 requests each.
    let (_echoes, p) = s.start();
    let addr = p.addr;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| common::get(addr, "/?delay=50ms", &[]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let uo: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(!uo.is_empty(), "proxy: no overflow");
    assert!(
        uo.iter()
            .all(|r| r.header("x-envoy-overloaded") == Some("true"))
    );
    assert!(answers.iter().all(|r| r.status == 200 || r.status == 503));
    assert!(
        !p.proc.stderr.text().contains(" eject "),
        "proxy: an overflow ejected:\n{}",
        p.proc.stderr.text()
    );
}

/// Per-try timeouts that use up the retries: both answer 504 and log
/// Envoy's two flags, `UT,URX`, so both count the request in `timeouts`.
#[test]
fn per_try_timeouts_that_use_up_the_retries_are_504_ut_urx_in_both() {
    let s = Scenario {
        pods: vec![good("v1")],
        istio: r#"
[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
retries = { attempts = 2, perTryTimeout = "50ms", retryOn = "5xx" }
route = [{ destination = { host = "echo" } }]
"#,
    };
    // Simulator: every attempt takes 200 ms, past its 50 ms.
    let m = s.simulate(1, 10, "", "200ms");
    assert_eq!(m.requests, 10);
    assert_eq!(m.by_status[504], 10);
    assert_eq!(m.by_flag.get("UT,URX"), Some(&10), "{:?}", m.by_flag);
    assert_eq!(m.flag("UT"), 10, "timeouts");
    // Proxy: the upstream answers after 200 ms too.
    // Both, one summary: the same counted columns and events.
    let sim = s.simulate_with_summary(1, 5, "", "200ms");
    assert_same_run(&sim, &s.record(5, "/?delay=200ms"));
    let (_echoes, p) = s.start();
    for _ in 0..3 {
        assert_eq!(p.get("/?delay=200ms", &[]).status, 504);
    }
    let stats = p.admin("/stats").body;
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("meshproxy_downstream_rq_total{")
                && l.contains("status=\"504\",flags=\"UT,URX\"")
                && l.ends_with(" 3")),
        "{stats}"
    );
}

/// A retry that succeeds on another host: every answer is a 200 in both,
/// with no flag, the failing host's 503s hidden by the retry.
#[test]
fn a_retry_that_succeeds_on_another_host_is_a_plain_200_in_both() {
    let s = Scenario {
        pods: vec![bad("v1"), good("v1")],
        istio: r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { loadBalancer = { simple = "ROUND_ROBIN" } }

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
retries = { attempts = 2, retryOn = "5xx" }
route = [{ destination = { host = "echo" } }]
"#,
    };
    let m = s.simulate(1, 40, "", "5ms");
    assert_eq!((m.requests, m.by_status[200]), (40, 40));
    assert!(m.by_flag.is_empty(), "{:?}", m.by_flag);
    let sim = s.simulate_with_summary(1, 20, "", "5ms");
    assert_same_run(&sim, &s.record(20, "/"));
    let (_echoes, p) = s.start();
    for _ in 0..20 {
        assert_eq!(p.get("/", &[]).status, 200);
    }
    let stats = p.admin("/stats").body;
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("meshproxy_downstream_rq_total{")
                && l.contains("status=\"200\",flags=\"-\"")
                && l.ends_with(" 20")),
        "{stats}"
    ); // Round robin sent about half the first attempts to the failing pod:
    // retried on the other.
    let retried = stats
        .lines()
        .find(|l| l.starts_with("meshproxy_cluster_upstream_rq_retry_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(retried >= 5, "{stats}");
}
