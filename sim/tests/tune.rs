//! `meshsim tune` end to end: a synthetic tune whose best setting is known
//! analytically, determinism across thread counts, a recommendation that
//! `meshsim check` accepts and that `meshsim run --scenario --set`
//! reproduces exactly, and bad `[tune]` input.

use std::path::{Path, PathBuf};

mod common;
use common::{fresh_path, meshsim, text};

const SYNTH: &str = "sim/tests/data/tune-synthetic.toml";
const C5XX: &str = "destinationRule.api.trafficPolicy.outlierDetection.consecutive5xxErrors";
const INTERVAL: &str = "destinationRule.api.trafficPolicy.outlierDetection.interval";

fn tune(out: &Path, threads: &str) -> String {
    let o = meshsim(&[
        "tune",
        SYNTH,
        "--out",
        out.to_str().unwrap(),
        "--threads",
        threads,
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    stdout
}

#[test]
fn the_tuner_finds_the_analytic_best_and_the_same_bytes_on_any_thread_count() {
    let one = fresh_path("one");
    let report = tune(&one, "1");
    // consecutive5xxErrors = k + 1 = 4 (3 consecutive 503s of the blip must
    // not eject), and the smallest interval (the recovered pod back soonest).
    assert!(report.contains("Recommended: candidate"), "{report}");
    let rec = std::fs::read_to_string(one.join("recommended.yaml")).unwrap();
    assert!(rec.contains("      consecutive5xxErrors: 4\n"), "{rec}");
    assert!(rec.contains("      interval: 1s\n"), "{rec}");
    assert!(
        rec.contains("apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"),
        "{rec}"
    );
    // The exact figures of the analysis: 4 + 6 client errors, and 4 s of the
    // hard scenario's recovered pod ejected (back on the 17 s tick).
    let pareto = std::fs::read_to_string(one.join("pareto.csv")).unwrap();
    let best: Vec<&str> = pareto.lines().nth(1).unwrap().split(',').collect();
    let head: Vec<&str> = pareto.lines().next().unwrap().split(',').collect();
    let col = |name: &str| best[head.iter().position(|h| *h == name).unwrap()];
    assert_eq!((col(C5XX), col(INTERVAL)), ("4", "1s"), "{pareto}");
    assert_eq!(col("errors_5xx"), "10.000", "{pareto}");
    assert_eq!(col("feasible"), "true");
    assert_eq!(col("healthy_ejected_host_seconds"), "4.000", "{pareto}");
    // Two threads: the same bytes.
    let two = fresh_path("two");
    let report2 = tune(&two, "2");
    assert_eq!(
        report.replace(one.to_str().unwrap(), "D"),
        report2.replace(two.to_str().unwrap(), "D")
    );
    for f in ["pareto.csv", "points.csv", "recommended.yaml"] {
        assert_eq!(
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(two.join(f)).unwrap(),
            "{f} differs between 1 and 2 threads"
        );
    }
    // `meshsim check` accepts the recommendation...
    let o = meshsim(&["check", one.join("recommended.yaml").to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    // ...and a run of one scenario with its values reproduces its row exactly.
    let points = std::fs::read_to_string(one.join("points.csv")).unwrap();
    let phead: Vec<&str> = points.lines().next().unwrap().split(',').collect();
    let pcol =
        |row: &[&str], name: &str| row[phead.iter().position(|h| *h == name).unwrap()].to_owned();
    let last_round = points
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| {
            pcol(r, C5XX) == "4"
                && pcol(r, INTERVAL) == "1s"
                && pcol(r, "scenario") == "synthetic/hard"
        })
        .last()
        .unwrap();
    let run_dir = fresh_path("repro");
    let o = meshsim(&[
        "run",
        SYNTH,
        "--scenario",
        "hard",
        "--seed",
        &pcol(&last_round, "seed"),
        "--set",
        &format!("{C5XX}=4"),
        "--set",
        &format!("{INTERVAL}=1s"),
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let summary = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    let sh: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let sr: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    let scol = |name: &str| sr[sh.iter().position(|h| *h == name).unwrap()].to_owned();
    for c in [
        "requests",
        "errors_5xx",
        "ejections",
        "healthy_ejected_host_seconds",
        "eject_delay_s",
        "bad_pod_requests",
    ] {
        assert_eq!(scol(c), pcol(&last_round, c), "{c}");
    }
    // The evaluated run directories are replayable.
    let dir = one.join(pcol(&last_round, "run_dir"));
    let o = meshsim(&["replay", dir.to_str().unwrap(), "--frame-at", "12s"]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn bad_tune_input_names_the_field_and_exits_2() {
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tune-synthetic.toml"),
    )
    .unwrap();
    let space_line = format!("\"{C5XX}\" = {{ values = [1, 2, 3, 4, 5, 6] }}");
    assert!(base.contains(&space_line));
    let cases = [
        (format!("\"{C5XX}\" = {{ values = [] }}"), "expected a non-empty list"),
        (format!("\"{C5XX}\" = {{ min = 9, max = 2 }}"), "min 9 is above max 2"),
        ("\"destinationRule.nosuch.trafficPolicy.outlierDetection.interval\" = { min = \"1s\", max = \"2s\" }".to_owned(), "tune.space.\"destinationRule.nosuch.trafficPolicy.outlierDetection.interval\""),
        ("\"destinationRule.api.trafficPolicy.loadBalancer.simple\" = { min = 1, max = 3 }".to_owned(), "is not a number"),
        (format!("\"{C5XX}\" = {{ min = 1 }}"), "expected both min and max"),
        (format!("\"{C5XX}\" = {{ min = \"1s\", max = 3 }}"), "both numbers or both durations"),
    ];
    for (i, (line, expected)) in cases.iter().enumerate() {
        let p =
            std::env::temp_dir().join(format!("meshsim-tune-bad-{}-{i}.toml", std::process::id()));
        std::fs::write(&p, base.replace(&space_line, line)).unwrap();
        let o = meshsim(&[
            "tune",
            p.to_str().unwrap(),
            "--out",
            fresh_path("bad").to_str().unwrap(),
        ]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{line}: {err}");
        assert!(
            err.contains(expected),
            "{line}: expected `{expected}` in {err}"
        );
        assert!(err.contains(&p.display().to_string()), "{err}");
    }
    // `meshsim check` reads [tune] as tune does.
    let o = meshsim(&["check", SYNTH]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(
        text(&o)
            .0
            .contains("ok: tune of 2 fields over 2 scenarios, 24 candidates, 2 seeds"),
        "{}",
        text(&o).0
    );
    let p = std::env::temp_dir().join(format!("meshsim-tune-check-{}.toml", std::process::id()));
    std::fs::write(
        &p,
        base.replace(&space_line, &format!("\"{C5XX}\" = {{ min = 9, max = 2 }}")),
    )
    .unwrap();
    let o = meshsim(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("min 9 is above max 2"),
        "{}",
        text(&o).1
    );
    // An experiment without [tune] says what to add.
    let o = meshsim(&["tune", "experiments/one-bad-pod.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no [tune] table"), "{}", text(&o).1);
}

#[test]
fn the_shipped_tune_runs_end_to_end_on_a_short_budget() {
    // Five scenarios, two candidates (the current settings and one), one
    // seed, 40 s: every scenario's timeline is read, built and run.
    let out = fresh_path("shipped");
    let o = meshsim(&[
        "tune",
        "experiments/tune-outlier.toml",
        "--budget",
        "1",
        "--seeds",
        "1",
        "--set",
        "duration=40s",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (report, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for s in [
        "hard-failure",
        "partial-failure",
        "blip",
        "slow-pod",
        "near-capacity",
    ] {
        assert!(report.contains(&format!("tune-outlier/{s}")), "{report}");
    }
    assert!(
        std::fs::read_to_string(out.join("recommended.yaml"))
            .unwrap()
            .contains("kind: DestinationRule")
    );
}
