//! End-to-end tests of `meshsim export` and `meshsim import`: the real
//! binary, its files read back through the engine, and the experiments it
//! writes run.

use std::path::Path;

use mesh_engine::config::yaml;

mod common;
use common::{meshsim, repo_root, temp_dir, text};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The (kind, name) of every object of a YAML text, through the engine's reader.
fn objects(yaml_text: &str) -> Vec<(&'static str, String)> {
    let m = yaml::read(yaml_text, "exported.yaml").unwrap_or_else(|e| panic!("{e:?}"));
    assert!(m.others.is_empty());
    m.objects
        .iter()
        .map(|o| {
            (
                o.array,
                o.table["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn export_writes_the_canary_experiment_as_istio_yaml_the_engine_reads_back() {
    let o = meshsim(&["export", "experiments/canary-gateway.toml"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("apiVersion: networking.istio.io/v1\nkind: VirtualService\n"));
    assert_eq!(
        objects(&out),
        [
            ("virtualService", "shop".to_owned()),
            ("destinationRule", "web".to_owned()),
            ("gateway", "shop-gateway".to_owned()),
        ]
    );
    assert!(out.contains("      weight: 90\n"), "{out}");
    assert!(
        err.contains("the timeline pushes a new mesh config at 60s"),
        "{err}"
    );
}

#[test]
fn export_applies_set_as_run_does() {
    let o = meshsim(&[
        "export",
        "experiments/canary-gateway.toml",
        "--set",
        "virtualService.shop.http.0.route.0.weight=70",
        "--set",
        "virtualService.shop.http.0.route.1.weight=30",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("      weight: 70\n"), "{out}");
    assert!(out.contains("      weight: 30\n"), "{out}");
    assert!(!out.contains("weight: 90"), "{out}");
}

#[test]
fn exported_yaml_used_as_the_mesh_runs_exactly_as_the_original() {
    let dir = temp_dir("same-run");
    let yaml_file = dir.join("canary.yaml");
    let o = meshsim(&[
        "export",
        "experiments/canary-gateway.toml",
        "-o",
        s(&yaml_file),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    // The experiment without its inline Istio objects, reading the YAML.
    let original =
        std::fs::read_to_string(repo_root().join("experiments/canary-gateway.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&original).unwrap();
    for a in [
        "virtualService",
        "destinationRule",
        "gateway",
        "serviceEntry",
    ] {
        table.remove(a);
    }
    table.insert(
        "mesh".to_owned(),
        toml::Value::String("canary.yaml".to_owned()),
    );
    let exp = dir.join("canary.toml");
    std::fs::write(&exp, toml::to_string(&table).unwrap()).unwrap();
    let o = meshsim(&["check", s(&exp)]);
    assert!(o.status.success(), "{}", text(&o).1);
    let run = |file: &str, out: &Path| {
        let o = meshsim(&["run", file, "--set", "duration=5s", "--out", s(out)]);
        assert!(o.status.success(), "{}", text(&o).1);
        std::fs::read_to_string(out.join("summary.csv")).unwrap()
    };
    let a = run("experiments/canary-gateway.toml", &dir.join("run-a"));
    let b = run(s(&exp), &dir.join("run-b"));
    assert_eq!(a, b);
}

#[test]
fn export_of_a_run_directory_is_the_experiment_as_it_ran() {
    let dir = temp_dir("run-dir");
    let run_dir = dir.join("run");
    let set = "virtualService.shop.http.0.route.0.weight=75";
    let o = meshsim(&[
        "run",
        "experiments/canary-gateway.toml",
        "--set",
        "duration=2s",
        "--set",
        set,
        "--out",
        s(&run_dir),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let from_dir = meshsim(&["export", s(&run_dir)]);
    assert!(from_dir.status.success(), "{}", text(&from_dir).1);
    let from_file = meshsim(&["export", "experiments/canary-gateway.toml", "--set", set]);
    assert_eq!(text(&from_dir).0, text(&from_file).0);
    assert!(text(&from_dir).0.contains("weight: 75"));
}

#[test]
fn export_of_a_directory_without_experiment_is_exit_2() {
    let dir = temp_dir("empty");
    let o = meshsim(&["export", s(&dir)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("a directory without experiment.toml"));
}

#[test]
fn import_of_the_bookinfo_dump_runs_with_no_edit() {
    let dir = temp_dir("import-bookinfo");
    let exp = dir.join("bookinfo.toml");
    let o = meshsim(&["import", "tests/data/kubectl-bookinfo.yaml", "-o", s(&exp)]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("4 service(s)"), "{out}");
    assert!(
        err.contains("skipped Service kube-system/kube-dns"),
        "{err}"
    );
    let written = std::fs::read_to_string(&exp).unwrap();
    // reviews: v1 × 3, v2 × 2, v3 × 1, from the Deployments' replicas.
    assert!(
        written.contains("name = \"reviews\"\nport = 9080\n[[service.version]]\n# Deployment reviews-v1: 3 replica(s)\nname = \"v1\"\npods = 3\n"),
        "{written}"
    );
    assert!(written.contains("name = \"v3\"\npods = 1\n"), "{written}");
    // ratings has no `replicas`: 1 pod.
    assert!(
        written.contains("# Deployment ratings-v1: 1 replica(s)"),
        "{written}"
    );
    assert!(written.contains("\nhost = \"reviews\"\n"), "{written}");
    assert!(!written.contains("name = \"kubernetes\""), "{written}");
    // The Istio objects stay in the user's file.
    let mesh_line = written.lines().find(|l| l.starts_with("mesh = ")).unwrap();
    assert!(mesh_line.contains("kubectl-bookinfo.yaml"), "{mesh_line}");
    let o = meshsim(&[
        "run",
        s(&exp),
        "--set",
        "duration=5s",
        "--out",
        s(&dir.join("run")),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("Code 200"), "{out}");
}

#[test]
fn import_to_stdout_references_the_dump_relative_to_the_current_directory() {
    let o = meshsim(&["import", "tests/data/kubectl-bookinfo.yaml"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("mesh = [\"tests/data/kubectl-bookinfo.yaml\"]"),
        "{out}"
    );
}

#[test]
fn import_says_what_another_namespace_means_and_still_runs() {
    let dir = temp_dir("import-ns");
    let dump = dir.join("shop.yaml");
    std::fs::write(
        &dump,
        "\
apiVersion: v1
kind: Service
metadata:
  name: cart
  namespace: shop
spec:
  ports:
  - port: 8080
  selector:
    app: cart
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cart
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels:
      app: cart
  template:
    metadata:
      labels:
        app: cart
---
apiVersion: v1
kind: Service
metadata:
  name: legacy
  namespace: shop
spec:
  ports:
  - port: 80
  selector:
    app: nothing-runs-this
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: cart
  namespace: shop
spec:
  host: cart
",
    )
    .unwrap();
    let exp = dir.join("shop.toml");
    let o = meshsim(&["import", s(&dump), "-o", s(&exp)]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let written = std::fs::read_to_string(&exp).unwrap();
    assert!(
        written.contains("# LIMITATION: simulated in namespace default"),
        "{written}"
    );
    assert!(
        written.contains("# LIMITATION: destinationRule cart in namespace shop"),
        "{written}"
    );
    // No `version` label: v1; two replicas.
    assert!(
        written.contains("no `version` label: named v1"),
        "{written}"
    );
    assert!(written.contains("name = \"v1\"\npods = 2\n"), "{written}");
    // legacy: no workload → 1 pod v1, said so.
    assert!(
        written.contains("no Deployment or StatefulSet"),
        "{written}"
    );
    assert!(err.contains("namespace shop"), "{err}");
    let o = meshsim(&[
        "run",
        s(&exp),
        "--set",
        "duration=2s",
        "--out",
        s(&dir.join("run")),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
}

#[test]
fn import_errors_name_the_file_and_line_and_exit_2() {
    let dir = temp_dir("import-errors");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "items:\n- kind: Service\n  metadata: [\n").unwrap();
    let o = meshsim(&["import", s(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(err.contains("bad.yaml:"), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");

    let none = dir.join("no-service.yaml");
    std::fs::write(
        &none,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n",
    )
    .unwrap();
    let o = meshsim(&["import", s(&none)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("no-service.yaml: no Kubernetes Service"),
        "{}",
        text(&o).1
    );

    let o = meshsim(&["import", s(&dir.join("missing.yaml"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("missing.yaml: cannot read"),
        "{}",
        text(&o).1
    );

    let port = dir.join("port.yaml");
    std::fs::write(
        &port,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: http\n",
    )
    .unwrap();
    let o = meshsim(&["import", s(&port)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("port.yaml:7:11: Service web: spec.ports[0].port: expected a port number"),
        "{}",
        text(&o).1
    );
}
