//! The deployment files of sharded sweeps (deploy/) are well formed and
//! consistent with each other and with the binary: the Kubernetes manifests
//! parse as YAML with the expected objects, the Indexed Job runs as many
//! shards as its `--shard K/N` says and the merge Job merges exactly those,
//! the experiment inside the ConfigMap is accepted by `meshsim check`, the
//! Slurm array and its merge agree on N, and every flag the Dockerfile, the
//! manifests and the sbatch scripts pass to `meshsim sweep` / `meshsim merge`
//! exists in that command's `--help`. (Nothing here runs a cluster, a
//! scheduler or a container.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `meshsim SUBCOMMAND --help`, which must exist.
fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`meshsim {subcommand} --help` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `--flag`s (of `--flag` or `--flag=value`) in `args` that
/// `meshsim SUBCOMMAND --help` does not list, as "WHAT: --flag".
fn missing_flags(what: &str, subcommand: &str, args: &[String]) -> Vec<String> {
    let help = help(subcommand);
    args.iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap())
        .filter(|f| !help.contains(&format!("{f} ")))
        .map(|f| format!("{what}: {f}"))
        .collect()
}

/// Asserts `meshsim SUBCOMMAND` takes every flag of the invocations, and
/// that there are some in each file of `files`.
fn flags_exist(subcommand: &str, files: &[&str], found: &[(String, Vec<String>)]) {
    for file in files {
        assert!(
            found
                .iter()
                .any(|(f, args)| f == file && args.iter().any(|a| a.starts_with("--"))),
            "{file}: no `meshsim {subcommand}` with flags"
        );
    }
    let missing: Vec<String> = found
        .iter()
        .flat_map(|(file, args)| missing_flags(file, subcommand, args))
        .collect();
    assert!(
        missing.is_empty(),
        "`meshsim {subcommand}` has no such flag:\n{}",
        missing.join("\n")
    );
}

/// Shell words of a line: split on blanks, quotes dropped (the files use no
/// quoted blanks), comment markers of the line's start removed.
fn words(line: &str) -> Vec<String> {
    line.trim_start()
        .trim_start_matches('#')
        .split_whitespace()
        .map(|w| w.replace(['"', '\''], ""))
        .collect()
}

/// Every invocation of `meshsim SUBCOMMAND` in a text (commands, or
/// examples in comments; `\` continuations joined): the words after the
/// subcommand, up to the end of the shell command.
fn invocations(text: &str, subcommand: &str) -> Vec<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        let (line, next_continues) = match line.trim_end().strip_suffix('\\') {
            Some(l) => (l, true),
            None => (line, false),
        };
        match lines.last_mut() {
            Some(last) if continued => {
                last.push(' ');
                last.push_str(line.trim_start().trim_start_matches('#'));
            }
            _ => lines.push(line.to_owned()),
        }
        continued = next_continues;
    }
    let mut found = Vec::new();
    for line in &lines {
        let w = words(line);
        for i in 1..w.len() {
            let program = &w[i - 1];
            let is_meshsim = program == "meshsim"
                || program.ends_with("/meshsim")
                || program.starts_with("meshsim:");
            if is_meshsim && w[i] == subcommand {
                let args = w[i + 1..]
                    .iter()
                    .take_while(|a| !matches!(a.as_str(), ";" | "&&" | "||" | "|"))
                    .cloned()
                    .collect();
                found.push(args);
            }
        }
    }
    found
}

/// The value after `flag` in `args`.
fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{flag} without a value in {args:?}"))
}

/// N of `--shard INDEX/N`, with INDEX as expected.
fn shard_count(args: &[String], index: &str) -> u64 {
    let shard = value_of(args, "--shard");
    let (k, n) = shard
        .split_once('/')
        .unwrap_or_else(|| panic!("--shard {shard}: expected K/N"));
    assert_eq!(k, index, "--shard {shard}");
    n.parse().unwrap_or_else(|_| panic!("--shard {shard}: N"))
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

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect()
}

const MANIFESTS: &str = "deploy/kubernetes/sweep-job.yaml";

fn manifests() -> Vec<Value> {
    let text = read(MANIFESTS);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .collect()
}

/// The mount path of the volume, in container `c`, backed by the
/// PersistentVolumeClaim or ConfigMap `name` in `pod`.
fn mount_of(pod: &Value, c: &Value, source: &str, name: &str) -> String {
    let volumes = get(pod, &["volumes"]).as_sequence().unwrap();
    let volume = volumes
        .iter()
        .find(|v| {
            let key = if source == "configMap" {
                "name"
            } else {
                "claimName"
            };
            v[source][key].as_str() == Some(name)
        })
        .unwrap_or_else(|| panic!("no {source} volume {name}"));
    let mounts = get(c, &["volumeMounts"]).as_sequence().unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap_or_else(|| panic!("{source} {name} is not mounted"));
    s(mount, &["mountPath"]).to_owned()
}

#[test]
fn the_kubernetes_manifests_run_n_shards_and_merge_exactly_those() {
    let docs = manifests();
    let kinds: Vec<&str> = docs.iter().map(|d| s(d, &["kind"])).collect();
    assert_eq!(kinds, ["ConfigMap", "PersistentVolumeClaim", "Job", "Job"]);
    let (cm, pvc, sweep, merge) = (&docs[0], &docs[1], &docs[2], &docs[3]);
    let names: Vec<&str> = docs.iter().map(|d| s(d, &["metadata", "name"])).collect();
    assert_eq!(
        names,
        [
            "meshsim-experiment",
            "meshsim-results",
            "meshsim-sweep",
            "meshsim-merge"
        ]
    );
    let claim = s(pvc, &["metadata", "name"]);
    assert_eq!(
        strings(get(pvc, &["spec", "accessModes"])),
        ["ReadWriteMany"]
    );

    // The sweep: an Indexed Job of N pods, pod K running shard K of N.
    let spec = get(sweep, &["spec"]);
    assert_eq!(s(spec, &["completionMode"]), "Indexed");
    let pod = get(spec, &["template", "spec"]);
    assert_eq!(s(pod, &["restartPolicy"]), "Never");
    assert!(
        spec["backoffLimitPerIndex"].is_u64() || spec["backoffLimit"].is_u64(),
        "a retry limit"
    );
    let c = get(pod, &["containers", "0"]);
    assert_eq!(strings(&c["command"]), ["sh", "-c"]);
    let script = strings(&c["args"]);
    assert_eq!(script.len(), 1, "one shell command: {script:?}");
    let runs = invocations(&script[0], "sweep");
    assert_eq!(runs.len(), 1, "one meshsim sweep in {script:?}");
    let args = &runs[0];
    let n = shard_count(args, "$JOB_COMPLETION_INDEX");
    assert!(n >= 2, "{n} shards");
    assert_eq!(spec["completions"].as_u64(), Some(n), "completions");
    assert_eq!(spec["parallelism"].as_u64(), Some(n), "parallelism");
    // It reads the ConfigMap's experiment and writes its shard on the volume.
    let key = cm["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    let experiment_dir = mount_of(pod, c, "configMap", s(cm, &["metadata", "name"]));
    assert_eq!(args[0], format!("{experiment_dir}/{key}"));
    let results = mount_of(pod, c, "persistentVolumeClaim", claim);
    assert_eq!(
        value_of(args, "--out"),
        format!("{results}/shard-$JOB_COMPLETION_INDEX")
    );
    // As many threads as CPUs.
    let threads = value_of(args, "--threads");
    assert_eq!(s(c, &["resources", "limits", "cpu"]), threads);
    assert_eq!(s(c, &["resources", "requests", "cpu"]), threads);

    // The merge: waits for the N shard.toml, then merges the N shards.
    let pod = get(merge, &["spec", "template", "spec"]);
    assert_eq!(s(pod, &["restartPolicy"]), "Never");
    let shards: Vec<String> = (0..n).map(|k| format!("{results}/shard-{k}")).collect();
    let init = get(pod, &["initContainers", "0"]);
    assert_eq!(mount_of(pod, init, "persistentVolumeClaim", claim), results);
    let wait = strings(&init["args"]).join(" ");
    let indexes: Vec<String> = (0..n).map(|k| k.to_string()).collect();
    assert!(
        wait.contains(&format!("for k in {}; do", indexes.join(" ")))
            && wait.contains(&format!("{results}/shard-$k/shard.toml")),
        "the init container waits for the {n} shard.toml: {wait}"
    );
    let c = get(pod, &["containers", "0"]);
    assert!(
        c.get("command").is_none(),
        "the image's ENTRYPOINT, meshsim"
    );
    assert_eq!(mount_of(pod, c, "persistentVolumeClaim", claim), results);
    let args = strings(&c["args"]);
    assert_eq!(args[0], "merge");
    let out_at = args.iter().position(|a| a == "--out").expect("--out");
    let mut dirs: Vec<String> = args[1..out_at].to_vec();
    dirs.extend(args[out_at + 2..].iter().cloned());
    assert_eq!(dirs, shards, "the merged shards");
    assert_eq!(value_of(&args, "--out"), format!("{results}/merged"));
}

#[test]
fn the_configmap_experiment_is_accepted_by_meshsim_check() {
    let docs = manifests();
    let experiment = s(&docs[0], &["data", "experiment.toml"]);
    // The copy of experiments/outlier-tuning.toml it says it is (comments aside).
    let parsed: toml::Table = toml::from_str(experiment).expect("valid TOML");
    let shipped: toml::Table = toml::from_str(&read("experiments/outlier-tuning.toml")).unwrap();
    assert_eq!(parsed, shipped, "the ConfigMap's experiment has drifted");
    assert!(parsed.contains_key("sweep"), "a sweep to shard");

    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-configmap-experiment.toml");
    std::fs::write(&path, experiment).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .arg("check")
        .arg(&path)
        .args(["--fail-on", "warning"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshsim check: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // At least one run per shard: points × seeds.
    let points: usize = parsed["sweep"]
        .as_table()
        .unwrap()
        .values()
        .map(|v| v.as_array().expect("a list of values").len())
        .product();
    let seeds = parsed.get("seeds").map_or(1, |s| s.as_integer().unwrap());
    let runs = u64::try_from(points).unwrap() * u64::try_from(seeds).unwrap();
    let docs_args = strings(get(
        &docs[2],
        &["spec", "template", "spec", "containers", "0", "args"],
    ));
    let n = shard_count(
        &invocations(&docs_args[0], "sweep")[0],
        "$JOB_COMPLETION_INDEX",
    );
    assert!(runs >= n, "{runs} runs for {n} shards");
}

#[test]
fn the_slurm_array_runs_n_shards_and_the_merge_merges_exactly_those() {
    let sweep = read("deploy/slurm/sweep.sbatch");
    let array = sweep
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array="))
        .expect("#SBATCH --array=");
    let last: u64 = array
        .strip_prefix("0-")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("--array={array}: expected 0-(N-1)"));
    let cpus = sweep
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --cpus-per-task="))
        .expect("#SBATCH --cpus-per-task=");
    assert!(cpus.parse::<u32>().is_ok_and(|c| c >= 1), "{cpus}");
    // The command, not the examples of the comments.
    let commands: Vec<&str> = sweep.lines().filter(|l| !l.starts_with('#')).collect();
    let runs = invocations(&commands.join("\n"), "sweep");
    assert_eq!(runs.len(), 1, "one meshsim sweep");
    let args = &runs[0];
    let n = shard_count(args, "$SLURM_ARRAY_TASK_ID");
    assert_eq!(last + 1, n, "--array=0-{last} for {n} shards");
    assert_eq!(value_of(args, "--threads"), "$SLURM_CPUS_PER_TASK");
    assert_eq!(
        value_of(args, "--out"),
        "results/shard-$SLURM_ARRAY_TASK_ID"
    );
    assert!(
        sweep.contains("sbatch --dependency=afterok:") && sweep.contains("merge.sbatch"),
        "says how to submit the merge"
    );

    let merge = read("deploy/slurm/merge.sbatch");
    let commands: Vec<&str> = merge.lines().filter(|l| !l.starts_with('#')).collect();
    let runs = invocations(&commands.join("\n"), "merge");
    assert_eq!(runs.len(), 1, "one meshsim merge");
    let args = &runs[0];
    let out_at = args.iter().position(|a| a == "--out").expect("--out");
    let mut dirs: Vec<String> = args[..out_at].to_vec();
    dirs.extend(args[out_at + 2..].iter().cloned());
    let shards: Vec<String> = (0..n).map(|k| format!("results/shard-{k}")).collect();
    assert_eq!(dirs, shards, "the merged shards");
}

#[test]
fn the_dockerfile_builds_meshsim_and_runs_it_unprivileged() {
    let text = read("deploy/Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        froms,
        [
            "FROM rust:1.95-bookworm AS build",
            "FROM debian:bookworm-slim"
        ]
    );
    assert!(text.contains("RUN cargo build --release --locked -p meshsim\n"));
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("USER");
    assert_ne!(user, "root");
    assert_ne!(user, "0");
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/meshsim\"]"));
    let ignore = read(".dockerignore");
    for excluded in ["target/", "runs/", ".git"] {
        assert!(
            ignore.lines().any(|l| l == excluded),
            ".dockerignore: {excluded}"
        );
    }
}

/// Every `meshsim SUBCOMMAND` of the deployment files, as (file, args).
fn deploy_invocations(subcommand: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for file in [
        "deploy/Dockerfile",
        MANIFESTS,
        "deploy/slurm/sweep.sbatch",
        "deploy/slurm/merge.sbatch",
    ] {
        for args in invocations(&read(file), subcommand) {
            found.push((file.to_owned(), args));
        }
    }
    found
}

// Fails until `meshsim sweep --shard` exists (issue 17).
#[test]
fn every_flag_passed_to_meshsim_sweep_exists() {
    let found = deploy_invocations("sweep");
    let files = ["deploy/Dockerfile", MANIFESTS, "deploy/slurm/sweep.sbatch"];
    flags_exist("sweep", &files, &found);
}

// Fails until `meshsim merge` exists (issue 17).
#[test]
fn every_flag_passed_to_meshsim_merge_exists() {
    let mut found = deploy_invocations("merge");
    // The merge Job's args go to the image's ENTRYPOINT, meshsim.
    let docs = manifests();
    let args = strings(get(
        &docs[3],
        &["spec", "template", "spec", "containers", "0", "args"],
    ));
    assert_eq!(args[0], "merge");
    let job = format!("{MANIFESTS}, Job meshsim-merge");
    found.push((job.clone(), args[1..].to_vec()));
    flags_exist("merge", &[&job, "deploy/slurm/merge.sbatch"], &found);
}
