//! `meshsim check` on the user's own Istio YAML, as the analyzer CI runs:
//! findings with codes and locations, JSON, `--fail-on`, and bad input of
//! every kind giving a clear error and exit 2, never a panic.

use std::path::PathBuf;

mod common;
use common::{meshsim, temp_file, text};

/// A registry for the Bookinfo tasks' manifests (TOML, beside the YAML).
const REGISTRY: &str = r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [
  { address = "10.0.0.1:9080", labels = { version = "v1" } },
  { address = "10.0.0.2:9080", labels = { version = "v2" } },
  { address = "10.0.0.3:9080", labels = { version = "v3" } },
]
[[service]]
name = "ratings"
port = 9080
endpoints = [{ address = "10.0.1.1:9080", labels = { version = "v1" } }]
[[service]]
name = "productpage"
port = 9080
endpoints = [{ address = "10.0.2.1:9080", labels = { version = "v1" } }]
[[service]]
name = "details"
port = 9080
endpoints = [{ address = "10.0.3.1:9080", labels = { version = "v1" } }]
"#;

#[test]
fn a_directory_of_istio_yaml_is_one_config_and_its_findings_carry_codes_and_lines() {
    let registry = temp_file("registry.toml", REGISTRY.as_bytes());
    let o = meshsim(&[
        "check",
        registry.to_str().unwrap(),
        "experiments/istio/destination-rules.yaml",
        "experiments/istio/request-routing/",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("experiments/istio/request-routing/: ok: 4 services, 6 endpoints, 10 clusters, 2 VirtualServices, 4 DestinationRules"),
        "{out}"
    );
    assert!(
        !out.contains("warning[") && out.ends_with("0 warnings\n"),
        "{out}"
    );
}

#[test]
fn json_output_and_fail_on_warning_for_ci() {
    let bad = temp_file(
        "od.yaml",
        b"apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection:\n      consecutive5xxErrors: 3\n",
    );
    let registry = temp_file("registry-od.toml", REGISTRY.as_bytes());
    let (r, b) = (registry.to_str().unwrap(), bad.to_str().unwrap());
    // A warning alone passes by default.
    let o = meshsim(&["check", r, b]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("warning[MSH0001]: ")
            && out.contains("od.yaml:9:5: destinationRule[reviews].trafficPolicy.outlierDetection.maxEjectionPercent")
            && out.contains("fix: set maxEjectionPercent: 34 or more"),
        "{out}"
    );
    // CI asks for JSON and stricter failure.
    let o = meshsim(&["check", r, b, "--output", "json", "--fail-on", "warning"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(out.starts_with("{\"findings\": ["), "{out}");
    assert!(
        out.contains("\"severity\": \"warning\", \"code\": \"MSH0001\", \"object\": \"destinationRule[reviews]\""),
        "{out}"
    );
    assert!(out.contains("\"line\": 9, \"column\": 5"), "{out}");
    assert!(
        out.contains("\"fix\": \"set maxEjectionPercent: 34 or more\""),
        "{out}"
    );
    assert!(
        out.contains("\"counts\": {\"error\": 0, \"warning\": 1"),
        "{out}"
    );
    assert!(
        err.contains("1 finding at or above --fail-on warning"),
        "{err}"
    );
}

#[test]
fn the_rules_table_lists_every_code() {
    let (out, _) = text(&meshsim(&["check", "--rules"]));
    for code in [
        "IST0101", "IST0109", "IST0131", "IST0173", "MSH0001", "MSH0005",
    ] {
        assert!(out.contains(code), "{out}");
    }
}

/// Bad input of every kind: exit 2, the file named, never a panic.
#[test]
fn hostile_yaml_gets_a_clear_error_never_a_panic() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dup.yaml", b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nkind: Gateway\n".to_vec(), "dup.yaml:3:1: duplicate key `kind` (first at line 2)"),
        ("tabs.yaml", b"apiVersion: v1\nkind: List\nitems:\n\t- a\n".to_vec(), "tabs.yaml:4:"),
        ("bomb.yaml", bomb.into_bytes(), "aliases expand to more than"),
        ("binary.yaml", vec![0xff, 0xfe, 0x00, 0x01, 0x89, 0x50], "binary.yaml: not a text file (invalid UTF-8)"),
        ("scalar.yaml", b"just a string\n".to_vec(), "scalar.yaml:1:1: expected a Kubernetes object"),
        ("nokind.yaml", b"apiVersion: v1\nmetadata: {}\n".to_vec(), "expected a Kubernetes object with `kind`"),
        ("noname.yaml", b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {}\nspec: {hosts: [a]}\n".to_vec(), "VirtualService: expected metadata.name"),
        ("badspec.yaml", b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: [1, 2]\n".to_vec(), "spec: expected a mapping, found a list"),
        ("unclosed.yaml", b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a\n".to_vec(), "unclosed.yaml:"),
    ];
    for (name, body, expected) in cases {
        let p = temp_file(name, &body);
        let o = meshsim(&["check", p.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out}\n{err}");
        assert!(
            err.contains(expected),
            "{name}: expected `{expected}` in:\n{err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn anchors_and_aliases_in_a_manifest_are_read_like_kubectl_reads_them() {
    let p = temp_file(
        "anchors.yaml",
        b"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: &v1 {version: v1}\n  - name: v1-again\n    labels: *v1\n",
    );
    let registry = temp_file("registry-anchors.toml", REGISTRY.as_bytes());
    let o = meshsim(&["check", registry.to_str().unwrap(), p.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("1 DestinationRules"), "{out}");
}

#[test]
fn a_10_mb_manifest_file_is_read_in_one_go() {
    // 10 MB of VirtualServices: one per host, each with a few routes.
    let mut body = String::with_capacity(10_500_000);
    let mut i = 0;
    while body.len() < 10_000_000 {
        body.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs-{i}\nspec:\n  hosts:\n  - host-{i}.example.com\n  http:\n  - match:\n    - uri:\n        prefix: /a\n    route:\n    - destination:\n        host: reviews\n  - route:\n    - destination:\n        host: reviews\n"
        ));
        i += 1;
    }
    let p = temp_file("big.yaml", body.as_bytes());
    let registry = temp_file("registry-big.toml", REGISTRY.as_bytes());
    let o = meshsim(&["check", registry.to_str().unwrap(), p.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains(&format!("{i} VirtualServices")),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
}

#[test]
fn an_experiment_is_checked_as_an_experiment() {
    let empty = temp_file("empty.toml", b"\n");
    let o = meshsim(&["check", empty.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("empty.toml: the file is empty: expected an experiment"),
        "{err}"
    );
    let typo = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../experiments/one-bad-pod.toml"),
    )
    .unwrap()
    .replace("[load]", "[lod]");
    let lod = temp_file("lod.toml", typo.as_bytes());
    let o = meshsim(&["check", lod.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("lod: unknown field `lod`, expected one of `name`"),
        "{err}"
    );
}

#[test]
fn route_reads_the_registry_beside_a_directory_of_istio_yaml() {
    let registry = temp_file("registry-route.toml", REGISTRY.as_bytes());
    let r = registry.to_str().unwrap();
    let ask = |user: &str| {
        let o = meshsim(&[
            "route",
            r,
            "experiments/istio/destination-rules.yaml",
            "experiments/istio/request-routing/",
            "--authority",
            "reviews:9080",
            "-H",
            &format!("end-user: {user}"),
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        out
    };
    assert!(ask("jason").contains("cluster=outbound|9080|v2|reviews.default.svc.cluster.local"));
    assert!(ask("kim").contains("cluster=outbound|9080|v1|reviews.default.svc.cluster.local"));
}
