//! The deployment files are well formed and consistent with the binary:
//! the Kubernetes manifests parse as YAML with the expected objects, the
//! config inside the ConfigMap is accepted by meshproxy's loader, and every
//! flag the Dockerfile, the manifests and the systemd unit pass exists.
//! (Nothing here runs a cluster or a container.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts each `--flag` in `args` is one of meshproxy's.
fn flags_exist(what: &str, args: &[String]) {
    let help = help();
    let flags: Vec<&String> = args.iter().filter(|a| a.starts_with("--")).collect();
    assert!(!flags.is_empty(), "{what}: no flags in {args:?}");
    for f in flags {
        assert!(
            help.contains(&format!("{f} ")),
            "{what}: meshproxy has no {f}"
        );
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*k],
    })
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("no string at {path:?}"))
}

#[test]
fn the_kubernetes_manifests_parse_and_hold_a_valid_config() {
    let text = std::fs::read_to_string(deploy().join("kubernetes/meshproxy.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| s(d, &["kind"])).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service"]);
    let (cm, dep, svc) = (&docs[0], &docs[1], &docs[2]);

    // The ConfigMap's mesh config is accepted as meshproxy reads it.
    let mesh = s(cm, &["data", "mesh.toml"]);
    let loaded = mesh_proxy::config::parse(mesh, Path::new("configmap/mesh.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.listeners[0].address.port(), 8080);
    assert_eq!(loaded.listeners[0].role(), "gateway default/ingress");

    // The Deployment mounts it, probes /ready on the admin port, and
    // passes only flags meshproxy has.
    let c = get(dep, &["spec", "template", "spec", "containers", "0"]);
    let probe = get(c, &["readinessProbe", "httpGet"]);
    assert_eq!(s(probe, &["path"]), "/ready");
    let port_name = s(probe, &["port"]);
    let ports = get(c, &["ports"]).as_sequence().unwrap();
    let admin = ports
        .iter()
        .find(|p| s(p, &["name"]) == port_name)
        .expect("the probe's port is declared");
    let args: Vec<String> = get(c, &["args"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    flags_exist("Deployment args", &args);
    let admin_arg = &args[args.iter().position(|a| a == "--admin").unwrap() + 1];
    assert!(admin_arg.ends_with(&format!(":{}", admin["containerPort"].as_u64().unwrap())));
    let config_arg = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    let mount = s(c, &["volumeMounts", "0", "mountPath"]);
    // The directory, not a file in it: the kubelet swaps it atomically.
    assert_eq!(config_arg, mount);

    // A rollout: preStop, then the drain time, then the drain timeout, all
    // within the grace period.
    let seconds = |flag: &str| {
        let v = &args[args.iter().position(|a| a == flag).unwrap() + 1];
        mesh_engine::config::parse_duration(v).unwrap().as_secs()
    };
    let pre_stop = get(c, &["lifecycle", "preStop", "sleep", "seconds"])
        .as_u64()
        .expect("a preStop sleep");
    let grace = get(
        dep,
        &["spec", "template", "spec", "terminationGracePeriodSeconds"],
    )
    .as_u64()
    .unwrap();
    assert!(
        pre_stop + seconds("--drain-time") + seconds("--drain-timeout") < grace,
        "the grace period ({grace} s) must cover preStop, drain time and drain timeout"
    );
    assert_eq!(
        s(
            dep,
            &[
                "spec",
                "template",
                "spec",
                "volumes",
                "0",
                "configMap",
                "name"
            ]
        ),
        s(cm, &["metadata", "name"])
    );
    let listener_port = ports.iter().find(|p| s(p, &["name"]) == "http").unwrap();
    assert_eq!(listener_port["containerPort"].as_u64(), Some(8080));

    // Selectors agree.
    let app = s(dep, &["spec", "template", "metadata", "labels", "app"]);
    assert_eq!(s(dep, &["spec", "selector", "matchLabels", "app"]), app);
    assert_eq!(s(svc, &["spec", "selector", "app"]), app);
    assert_eq!(s(svc, &["spec", "ports", "0", "targetPort"]), "http");
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_meshproxy_with_real_flags() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(froms, 2, "a build stage and a runtime stage");
    assert!(text.contains("cargo build --release --locked -p mesh-proxy"));
    let cmd = text.lines().find(|l| l.starts_with("CMD ")).unwrap();
    let args: Vec<String> = cmd
        .trim_start_matches("CMD ")
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .collect();
    flags_exist("Dockerfile CMD", &args);
    // The config directory, where the container example is mounted.
    let config = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    assert_eq!(config, "/etc/meshproxy");
    assert!(text.contains("deploy/container:/etc/meshproxy"));
}

#[test]
fn the_container_example_listens_on_all_interfaces_and_loads_as_a_directory() {
    let loaded =
        mesh_proxy::config::load(&[deploy().join("container")]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.listeners.len(), 1);
    assert!(loaded.listeners[0].address.ip().is_unspecified());
    assert_eq!(loaded.listeners[0].address.port(), 8080);
}

#[test]
fn the_systemd_unit_runs_meshproxy_with_real_flags_and_reloads_with_sighup() {
    let text = std::fs::read_to_string(deploy().join("systemd/meshproxy.service")).unwrap();
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(text.lines().any(|l| l == section), "{section}");
    }
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    assert!(args[0].ends_with("/meshproxy"));
    flags_exist("ExecStart", &args);
    assert!(text.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(text.contains("RestartPreventExitStatus=2"));
}
