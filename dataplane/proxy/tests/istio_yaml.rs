//! `meshproxy --config mesh.toml --config istio/`: the listeners and the
//! registry in TOML, the Istio objects as the user keeps them (Kubernetes
//! YAML), reloaded when a manifest changes.

mod common;

use std::process::Command;

use common::{Echo, Proc, service, temp_dir};

const ISTIO: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
spec:
  host: echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
spec:
  hosts:
  - echo
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: echo
        subset: v2
  - route:
    - destination:
        host: echo
        subset: v1
";

#[test]
fn routes_from_istio_yaml_beside_a_toml_registry_and_reloads_a_changed_manifest() {
    let (a, b) = (Echo::start("v1", &[]), Echo::start("v2", &[]));
    let dir = temp_dir("istio-yaml");
    let registry = dir.join("mesh.toml");
    std::fs::write(&registry, service(&[(&a, "v1"), (&b, "v2")])).unwrap();
    let istio = dir.join("istio");
    std::fs::create_dir_all(&istio).unwrap();
    std::fs::write(istio.join("reviews.yaml"), ISTIO).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshproxy"));
    cmd.arg("--config")
        .arg(&registry)
        .arg("--config")
        .arg(&istio)
        .args(["--watch-interval", "100ms"]);
    let proc = Proc::spawn(cmd);
    let line = proc.stdout.wait_for("meshproxy listening on ");
    let addr = line.split(' ').nth(3).unwrap().parse().expect("listener");
    for _ in 0..3 {
        assert_eq!(
            common::get(addr, "/", &[("end-user", "jason")]).echo(),
            "v2"
        );
        assert_eq!(common::get(addr, "/", &[]).echo(), "v1");
    }
    // Everyone to v2: a changed manifest in the directory is picked up.
    let tmp = istio.join("reviews.tmp");
    std::fs::write(
        &tmp,
        ISTIO.replace("        subset: v1\n", "        subset: v2\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, istio.join("reviews.yaml")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while common::get(addr, "/", &[]).echo() != "v2" {
        assert!(
            std::time::Instant::now() < deadline,
            "the changed manifest was not applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_typo_in_a_manifest_is_refused_at_start_with_file_line_and_field() {
    let a = Echo::start("v1", &[]);
    let dir = temp_dir("istio-typo");
    let registry = dir.join("mesh.toml");
    std::fs::write(&registry, service(&[(&a, "v1")])).unwrap();
    let istio = dir.join("istio.yaml");
    std::fs::write(&istio, ISTIO.replace("  hosts:\n", "  hostz:\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .arg("--config")
        .arg(&registry)
        .arg("--config")
        .arg(&istio)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("istio.yaml:20:3: virtualService[echo].hostz: unknown field `hostz`"),
        "{err}"
    );
}
