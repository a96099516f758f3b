//! End-to-end tests of the `meshsim` binary: exit codes and what a user reads.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{meshsim, repo_root, temp_file, text};

#[test]
fn check_accepts_the_shipped_bookinfo_config() {
    let o = meshsim(&["check", "topologies/bookinfo.toml"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("topologies/bookinfo.toml: ok: 4 services, 11 endpoints"),
        "{out}"
    );
}

#[test]
fn check_rejects_a_bad_field_with_file_line_column_and_path_and_exit_2() {
    let p = temp_file(
        "bad-weight.toml",
        r#"[[service]]
name = "reviews"
port = 9080
endpoints = [{ address = "10.0.0.1:9080", labels = { version = "v1" } }]

[[destinationRule]]
name = "reviews"
host = "reviews"
subsets = [{ name = "v1", labels = { version = "v1" } }]

[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [
  { destination = { host = "reviews", subset = "v1" }, weight = -5 },
  { destination = { host = "reviews", subset = "v1", port = { number = 9090 } }, weight = 50 },
]
"#,
    );
    let o = meshsim(&["check", p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad-weight.toml:16:56: virtualService[reviews].http[0].route[0].weight: expected a weight of 0 or more, found -5"), "{err}");
    assert!(
        err.contains(
            "virtualService[reviews].http[0].route[1].destination.port.number: service \"reviews.default.svc.cluster.local\" has port 9080, not 9090"
        ),
        "{err}"
    );
    assert!(err.contains("2 errors found"), "{err}");
}

#[test]
fn check_accepts_a_subset_no_destination_rule_defines_with_a_warning_and_exit_0() {
    // Istio accepts it (a VirtualService pushed before its DestinationRule);
    // Envoy answers 503 NC.
    let p = temp_file(
        "early-vs.toml",
        r#"[[service]]
name = "reviews"
port = 9080
endpoints = [{ address = "10.0.0.1:9080", labels = { version = "v1" } }]

[[destinationRule]]
name = "reviews"
host = "reviews"
subsets = [{ name = "v1", labels = { version = "v1" } }]

[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [
  { destination = { host = "reviews", subset = "v1" }, weight = 90 },
  { destination = { host = "reviews", subset = "v9" }, weight = 10 },
]
"#,
    );
    let o = meshsim(&["check", p.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains(
            "early-vs.toml:17:39: virtualService[reviews].http[0].route[1].destination.subset: unknown subset \"v9\" of \"reviews.default.svc.cluster.local\": Istio accepts this, but Envoy answers 503 (NC, no cluster found)"
        ),
        "{out}"
    );
    assert!(
        out.contains("define the subset in the host's DestinationRule or fix the name (its DestinationRule \"reviews\" defines v1)"),
        "{out}"
    );
    assert!(out.contains(", 1 warning\n"), "{out}");
}

#[test]
fn check_reports_an_unknown_field_with_its_path() {
    let p = temp_file(
        "typo.toml",
        "[[destinationRule]]\nname = \"r\"\nhost = \"r\"\n[destinationRule.trafficPolicy.outlierDetection]\nconsecutive5xxError = 3\n",
    );
    let o = meshsim(&["check", p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("typo.toml:5:1: destinationRule[r].trafficPolicy.outlierDetection"),
        "{err}"
    );
    assert!(err.contains("unknown field `consecutive5xxError`"), "{err}");
}

#[test]
fn a_missing_file_is_bad_input_not_a_panic() {
    let o = meshsim(&["check", "does/not/exist.toml"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("does/not/exist.toml: cannot read the experiment"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn route_follows_header_routing_and_reports_the_cluster() {
    let o = meshsim(&[
        "route",
        "topologies/bookinfo.toml",
        "--authority",
        "reviews:9080",
        "-H",
        "end-user: jason",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        out,
        "forward route=jason cluster=outbound|9080|v2|reviews.default.svc.cluster.local endpoint=10.1.2.20:9080\n"
    );
}

#[test]
fn route_matches_port_blocks_on_the_gateway_servers_port_or_the_given_one() {
    let p = temp_file(
        "two-ports.toml",
        r#"[[service]]
name = "reviews"
port = 9080
endpoints = [
  { address = "10.0.0.1:9080", labels = { version = "v1" } },
  { address = "10.0.0.2:9080", labels = { version = "v2" } },
]

[[destinationRule]]
name = "reviews"
host = "reviews"
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" } },
]

[[gateway]]
name = "edge"
servers = [
  { port = { number = 80, protocol = "HTTP" }, hosts = ["shop.example.com"] },
  { port = { number = 8080, protocol = "HTTP" }, hosts = ["admin.example.com"] },
]

[[virtualService]]
name = "edge"
hosts = ["shop.example.com", "admin.example.com"]
gateways = ["edge"]
[[virtualService.http]]
name = "on-8080"
match = [{ port = 8080 }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "on-80"
match = [{ port = 80 }]
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#,
    );
    let f = p.to_str().unwrap();
    for (args, route) in [
        (&["--authority", "shop.example.com"][..], "on-80"),
        (&["--authority", "admin.example.com"], "on-8080"),
        (&["--authority", "shop.example.com:8080"], "on-8080"),
        (
            &["--authority", "shop.example.com", "--port", "8080"],
            "on-8080",
        ),
        (
            &["--authority", "admin.example.com", "--port", "80"],
            "on-80",
        ),
    ] {
        let o = meshsim(&[&["route", f, "--gateway", "edge"][..], args].concat());
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            out.starts_with(&format!("forward route={route} ")),
            "{args:?}: {out}"
        );
    }
    let o = meshsim(&[
        "route",
        f,
        "--gateway",
        "edge",
        "--authority",
        "shop.example.com",
        "--port",
        "9999",
    ]);
    assert_eq!(text(&o).0, "reject status=404 flag=NR reason=NoRoute\n");
}

#[test]
fn route_with_many_requests_prints_the_weighted_split_deterministically() {
    let args = [
        "route",
        "topologies/bookinfo.toml",
        "--authority",
        "reviews",
        "-n",
        "10000",
        "--seed",
        "7",
    ];
    let (a, _) = text(&meshsim(&args));
    let (b, _) = text(&meshsim(&args));
    assert_eq!(a, b, "same seed, same output");
    assert!(a.starts_with("10000 requests to reviews/\n"), "{a}");
    assert_eq!(a.lines().count(), 6, "{a}");
}

#[test]
fn route_to_an_unknown_gateway_is_bad_input() {
    let o = meshsim(&[
        "route",
        "topologies/bookinfo.toml",
        "--gateway",
        "nope",
        "--authority",
        "x",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("no gateway \"default/nope\""), "{err}");
}

#[test]
fn no_route_is_a_404_with_flag_nr() {
    let o = meshsim(&[
        "route",
        "topologies/bookinfo.toml",
        "--authority",
        "unknown-host",
    ]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert_eq!(out, "reject status=404 flag=NR reason=NoRoute\n");
}

fn run_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshsim-run-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn run_one_bad_pod_ejects_and_returns_on_envoys_schedule() {
    let dir = run_dir("obp");
    let o = meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("one-bad-pod: seed 1, 300.000s simulated"),
        "{out}"
    );
    let events = std::fs::read_to_string(dir.join("events.csv")).unwrap();
    let rows: Vec<Vec<&str>> = events
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // The pod fails from 60 s; the 5th consecutive 503 ejects it at once.
    assert_eq!(
        rows[0][..4],
        ["60.000000", "fault_start", "", "backend-v1-3"]
    );
    let ejects: Vec<&Vec<&str>> = rows.iter().filter(|r| r[1] == "eject").collect();
    let returns: Vec<&str> = rows
        .iter()
        .filter(|r| r[1] == "return")
        .map(|r| r[0])
        .collect();
    // Ejections last 30 s, 60 s, 90 s, 120 s (multiplier 1, 2, 3, 4), and a
    // host returns only on an interval tick (multiples of 10 s) at or after
    // that: ejected ≈ 60.07 → back at 100; ≈ 100.06 → 170; ≈ 170.05 → 270;
    // the 4th ejection (≈ 270.07, 120 s) outlasts the run.
    let durations: Vec<&str> = ejects.iter().map(|r| r[4]).collect();
    assert_eq!(
        durations,
        [
            "reason=consecutive_5xx duration=30s",
            "reason=consecutive_5xx duration=1m",
            "reason=consecutive_5xx duration=90s",
            "reason=consecutive_5xx duration=2m"
        ]
    );
    assert_eq!(returns, ["100.000000", "170.000000", "270.000000"]);
    for (e, tick) in ejects.iter().zip(["60", "100", "170", "270"]) {
        let t: f64 = e[0].parse().unwrap();
        let tick: f64 = tick.parse().unwrap();
        // Round robin sends every 10th request (about every 10 ms) to the
        // bad pod: 5 failures take about 50 ms plus one latency (~20 ms).
        assert!(t > tick && t < tick + 0.2, "ejected at {t}");
    }
    // Client-visible 503s: per ejection, the 5 that trip the detector plus
    // those already in flight to the pod (about 100 qps × 20 ms ≈ 2): 4 × 7.
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let row: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    let errors: u64 = row[6].parse().unwrap();
    assert!((20..=40).contains(&errors), "{errors} client-visible 503s");
}

#[test]
fn the_same_experiment_and_seed_give_byte_identical_run_directories() {
    let (a, b, c) = (run_dir("det-a"), run_dir("det-b"), run_dir("det-c"));
    for d in [&a, &b] {
        let o = meshsim(&[
            "run",
            "experiments/one-bad-pod.toml",
            "--out",
            d.to_str().unwrap(),
        ]);
        assert!(o.status.success());
    }
    let o = meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--seed",
        "2",
        "--out",
        c.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    for f in [
        "summary.csv",
        "timeseries.csv",
        "events.csv",
        "experiment.toml",
    ] {
        let x = std::fs::read(a.join(f)).unwrap();
        assert_eq!(
            x,
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between identical runs"
        );
    }
    assert_ne!(
        std::fs::read(a.join("timeseries.csv")).unwrap(),
        std::fs::read(c.join("timeseries.csv")).unwrap(),
        "another seed gives another run"
    );
}

#[test]
fn run_rejects_a_bad_experiment_with_the_field_path_and_exit_2() {
    let p = temp_file(
        "bad-experiment.toml",
        "name = \"x\"\nduration = \"10s\"\n[[service]]\nname = \"b\"\nport = 80\n[[service.version]]\nname = \"v1\"\npods = 2\nlatency = { distribution = \"lognormal\" }\n[[client]]\nname = \"c\"\n[load]\nclient = \"nobody\"\nhost = \"b\"\nqps = 10\n",
    );
    let o = meshsim(&["run", p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("service[b].version[v1].latency.median: `lognormal` needs `median`"),
        "{err}"
    );
    assert!(
        err.contains(":13:1: load.client: unknown client \"nobody\""),
        "{err}"
    );
}

#[test]
fn sweep_results_do_not_depend_on_the_thread_count() {
    let (one, two) = (run_dir("sweep-1"), run_dir("sweep-2"));
    for (dir, threads) in [(&one, "1"), (&two, "2")] {
        let o = meshsim(&[
            "sweep",
            "experiments/outlier-tuning.toml",
            "--set",
            "duration=5s",
            "--set",
            "timeline.0.at=1s",
            "--threads",
            threads,
            "--out",
            dir.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            out.contains("64 runs of outlier-tuning; best points by success_rate"),
            "{out}"
        );
    }
    let a = std::fs::read_to_string(one.join("summary.csv")).unwrap();
    assert_eq!(a, std::fs::read_to_string(two.join("summary.csv")).unwrap());
    // 4 × 2 × 2 × 2 points × 2 seeds, plus the header.
    assert_eq!(a.lines().count(), 65);
    assert!(a.starts_with(
        "point,destinationRule.backend.trafficPolicy.outlierDetection.baseEjectionTime,"
    ));
    assert!(one.join("point-0031-seed-2/timeseries.csv").exists());
    // Each point's directory holds that point's experiment, runnable as is:
    // its swept values applied, no [sweep] left.
    let point = one.join("point-0031-seed-2/experiment.toml");
    let resolved = std::fs::read_to_string(&point).unwrap();
    assert!(!resolved.contains("[sweep]"), "{resolved}");
    let o = meshsim(&["check", point.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn set_overrides_a_field_and_pins_a_swept_path() {
    let o = meshsim(&[
        "check",
        "experiments/outlier-tuning.toml",
        "--set",
        "destinationRule.backend.trafficPolicy.outlierDetection.interval=1s",
        "--set",
        "seeds=1",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // interval leaves the sweep: 4 × 2 × 2 points, one seed.
    assert!(
        out.contains("16 run(s) (16 sweep point(s) × 1 seed(s))"),
        "{out}"
    );
    let o = meshsim(&[
        "check",
        "experiments/outlier-tuning.toml",
        "--set",
        "destinationRule.nope.host=x",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains(
            "--set destinationRule.nope.host: at `nope`: no element named \"nope\" (names: backend)"
        ),
        "{err}"
    );
    let o = meshsim(&[
        "check",
        "experiments/one-bad-pod.toml",
        "--set",
        "load.qps=-5",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("load.qps: expected a positive rate, found -5"),
        "{err}"
    );
}

#[test]
fn a_closed_loop_answered_instantly_still_advances_time_and_finishes() {
    // Every request is a local 404 (no route for this host): zero latency.
    let p = temp_file(
        "instant.toml",
        "name = \"instant\"\nduration = \"10ms\"\n[[service]]\nname = \"b\"\nport = 80\n[[service.version]]\nname = \"v1\"\npods = 1\nlatency = { distribution = \"constant\", value = \"1ms\" }\n[[client]]\nname = \"c\"\n[load]\nclient = \"c\"\nhost = \"nowhere\"\nconnections = 2\n",
    );
    let dir = run_dir("instant");
    let o = meshsim(&["run", p.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // 2 connections × one request per microsecond, from 0 to 10 ms inclusive.
    assert!(out.contains("20002 requests"), "{out}");
    assert!(out.contains("Code 404 : "), "{out}");
}

#[test]
fn outlier_tuning_trades_errors_seen_for_healthy_capacity_ejected() {
    // Two points of the sweep, same seed: a trigger-happy detector
    // (consecutive5xxErrors 1) against a lenient one (10), interval 10s,
    // baseEjectionTime 30s, maxEjectionPercent 50.
    let summary = |c: &str| {
        let dir = run_dir(&format!("tuning-{c}"));
        let od = "destinationRule.backend.trafficPolicy.outlierDetection";
        let o = meshsim(&[
            "run",
            "experiments/outlier-tuning.toml",
            "--set",
            "seeds=1",
            "--set",
            &format!("{od}.consecutive5xxErrors={c}"),
            "--set",
            &format!("{od}.interval=10s"),
            "--set",
            &format!("{od}.baseEjectionTime=30s"),
            "--set",
            &format!("{od}.maxEjectionPercent=50"),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o).1);
        let s = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
        let header: Vec<String> = s
            .lines()
            .next()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let row: Vec<String> = s
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        move |name: &str| -> f64 {
            row[header.iter().position(|h| h == name).unwrap()]
                .parse()
                .unwrap()
        }
    };
    let eager = summary("1");
    let lenient = summary("10");
    // The eager detector catches the flaky pod (30 % 503s) at once: far
    // fewer errors reach users...
    assert!(
        eager("errors_5xx") * 2.0 < lenient("errors_5xx"),
        "{} vs {}",
        eager("errors_5xx"),
        lenient("errors_5xx")
    );
    // ...but it also ejects healthy pods on their rare (0.2 %) 503s, and
    // keeps capacity out: more ejections and ejected host-seconds.
    assert!(eager("ejections") > lenient("ejections"));
    assert!(eager("ejected_host_seconds") > lenient("ejected_host_seconds") + 60.0);
}

#[test]
fn topology_and_mesh_can_live_in_their_own_files() {
    let topology = temp_file(
        "parts-topology.toml",
        "[[service]]\nname = \"backend\"\nport = 8080\n[[service.version]]\nname = \"v1\"\npods = 10\nlatency = { distribution = \"lognormal\", median = \"20ms\", sigma = 0.5 }\n[[client]]\nname = \"fortio\"\n",
    );
    let mesh = temp_file(
        "parts-mesh.toml",
        "[[destinationRule]]\nname = \"backend\"\nhost = \"backend\"\n[destinationRule.trafficPolicy.loadBalancer]\nsimple = \"ROUND_ROBIN\"\n[destinationRule.trafficPolicy.outlierDetection]\nconsecutive5xxErrors = 5\ninterval = \"10s\"\nbaseEjectionTime = \"30s\"\nmaxEjectionPercent = 10\n",
    );
    let experiment = temp_file(
        "parts-experiment.toml",
        format!(
            "name = \"one-bad-pod\"\nduration = \"300s\"\nseed = 1\ntopology = \"{}\"\nmesh = \"{}\"\n[load]\nclient = \"fortio\"\nhost = \"backend\"\nqps = 1000\n[[timeline]]\nat = \"60s\"\npod = \"backend-v1-3\"\nfail = {{ status = 503 }}\n",
            topology.file_name().unwrap().to_str().unwrap(),
            mesh.file_name().unwrap().to_str().unwrap()
        ),
    );
    // The same experiment as experiments/one-bad-pod.toml, split in three
    // files: the same run, byte for byte.
    let (split, whole) = (run_dir("parts-split"), run_dir("parts-whole"));
    let o = meshsim(&[
        "run",
        experiment.to_str().unwrap(),
        "--out",
        split.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--out",
        whole.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    for f in ["summary.csv", "timeseries.csv", "events.csv"] {
        assert_eq!(
            std::fs::read(split.join(f)).unwrap(),
            std::fs::read(whole.join(f)).unwrap(),
            "{f}"
        );
    }
    // A mesh file that also defines the registry is refused.
    let bad = temp_file(
        "parts-bad-mesh.toml",
        "[[service]]\nname = \"x\"\nport = 1\n",
    );
    let exp = temp_file(
        "parts-bad.toml",
        "name = \"x\"\nduration = \"1s\"\ntopology = \"parts-topology.toml\"\nmesh = \"parts-bad-mesh.toml\"\n[load]\nclient = \"fortio\"\nhost = \"backend\"\nqps = 10\n",
    );
    let o = meshsim(&["check", exp.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains(
            "parts-bad-mesh.toml:1:3: service: a mesh file included by an experiment must not define [[service]]"
        ),
        "{err}"
    );
    let _ = bad;
}

#[test]
fn a_baseline_run_shows_what_outlier_detection_saves() {
    let dir = std::env::temp_dir().join(format!("meshsim-baseline-{}", std::process::id()));
    let out = dir.join("obp");
    let o = meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--set",
        "duration=120s",
        "--baseline",
        "destinationRule.backend.trafficPolicy.outlierDetection=off",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        stdout.contains("Baseline (destinationRule.backend.trafficPolicy.outlierDetection=off):"),
        "{stdout}"
    );
    // Without outlier detection the bad pod answers a tenth of 60 s of load.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("errors_5xx"))
        .expect(&stdout);
    let cols: Vec<f64> = row
        .split_whitespace()
        .skip(1)
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(
        cols[0] < 100.0 && cols[1] > 5000.0 && (cols[2] - (cols[0] - cols[1])).abs() < 1e-9,
        "{row}"
    );
    assert!(
        out.join("summary.csv").exists() && dir.join("obp-baseline").join("summary.csv").exists()
    );
    let baseline_exp =
        std::fs::read_to_string(dir.join("obp-baseline").join("experiment.toml")).unwrap();
    assert!(!baseline_exp.contains("outlierDetection"), "{baseline_exp}");
}

/// What cannot fit in memory is refused before anything is built, naming
/// the field, with exit 2 (it used to die in the allocator, exit 134); the
/// limit is the machine's memory, or `MESHSIM_MAX_MEMORY`.
#[test]
fn a_run_too_big_for_memory_is_refused_with_the_field_and_exit_2() {
    let out = std::env::temp_dir().join(format!("meshsim-too-big-{}", std::process::id()));
    let out = out.to_str().unwrap();
    let o = meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--set",
        "service.backend.version.v1.pods=100000000",
        "--out",
        out,
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("service[backend].version[v1].pods") && err.contains("memory"),
        "{err}"
    );
    // A billion requests a second keep millions in flight: refused under a
    // 1 GB limit, naming the rate.
    let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "run",
            "experiments/one-bad-pod.toml",
            "--set",
            "load.qps=1e9",
            "--out",
            out,
        ])
        .env("MESHSIM_MAX_MEMORY", "1G")
        .current_dir(repo_root())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("load.qps") && err.contains("MESHSIM_MAX_MEMORY"),
        "{err}"
    );
    // What fits runs: the shipped experiment under the same limit.
    let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "run",
            "experiments/one-bad-pod.toml",
            "--set",
            "duration=2s",
            "--out",
            out,
        ])
        .env("MESHSIM_MAX_MEMORY", "1G")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let _ = std::fs::remove_dir_all(out);
}
