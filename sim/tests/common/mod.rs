//! Helpers shared by the simulator's end-to-end tests: the `meshsim`
//! binary run from the repository, temporary files, and experiments built
//! and run in process. Each test file uses some of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use meshsim::Model;
use meshsim::metrics::Metrics;

/// The repository's root (experiments, topologies and docs are there).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the `meshsim` binary in the repository's root, with no stdin.
pub(crate) fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("meshsim runs")
}

/// A command's stdout and stderr as text.
pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A path of this test process's own, `name`, with nothing there yet
/// (what an earlier run left is removed).
pub(crate) fn fresh_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("meshsim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}

/// An empty directory of this test process's own.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let d = fresh_path(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file `name` holding `body`, in this test process's own directory.
pub(crate) fn temp_file(name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// An experiment's model from its text, with its warnings; or its errors.
pub(crate) fn build(text: &str) -> Result<(Model, Vec<String>), Vec<String>> {
    let file = meshsim::experiment::parse(text, None).map_err(|e| vec![e.to_string()])?;
    match Model::build(&file, None) {
        Ok((m, w)) => Ok((m, w.iter().map(ToString::to_string).collect())),
        Err(e) => Err(e.iter().map(ToString::to_string).collect()),
    }
}

/// Runs a model to its end.
pub(crate) fn run_model(model: &Model) -> Metrics {
    meshsim::Run::new(model).run().expect("the run completes")
}

/// Builds and runs an experiment's text; panics with its errors.
pub(crate) fn run_text(text: &str) -> Metrics {
    let (model, _) = build(text).unwrap_or_else(|e| panic!("{e:#?}"));
    run_model(&model)
}

/// Attempts each workload's pods received over the run (a pod's name
/// without its `-N` suffix is its workload).
pub(crate) fn attempts(m: &Metrics) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for w in &m.windows {
        let workload = w.endpoint.rsplit_once('-').unwrap().0.to_owned();
        *by.entry(workload).or_default() += w.requests;
    }
    by
}
