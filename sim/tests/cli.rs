//! End-to-end tests of the `meshsim` binary: exit codes and what a user reads.

use std::path::PathBuf;
use std::process::{Command, Output};

fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("meshsim runs")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn temp_file(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

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
  { destination = { host = "reviews", subset = "v9" }, weight = 50 },
]
"#,
    );
    let o = meshsim(&["check", p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad-weight.toml:16:56: virtualService[reviews].http[0].route[0].weight: expected a weight of 0 or more, found -5"), "{err}");
    assert!(
        err.contains(
            "virtualService[reviews].http[0].route[1].destination.subset: unknown subset \"v9\""
        ),
        "{err}"
    );
    assert!(err.contains("2 errors found"), "{err}");
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
        err.contains("does/not/exist.toml: cannot read the mesh config"),
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
