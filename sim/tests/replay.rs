//! End-to-end tests of `meshsim replay`: a frame of a known run at a known
//! time (a snapshot), and clear errors for what cannot be replayed.
//!
//! The snapshot is `tests/snapshots/one-bad-pod-75s.txt`; after a deliberate
//! change to the frame, rewrite it with `UPDATE_SNAPSHOTS=1 cargo test -p
//! meshsim --test replay` and review the diff.

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::{meshsim, repo_root};

fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshsim-replay-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_frame_of_one_bad_pod_at_75s_matches_its_snapshot() {
    let dir = run_dir("snapshot");
    let d = dir.to_str().unwrap();
    let o = meshsim(&["run", "experiments/one-bad-pod.toml", "--out", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = meshsim(&["replay", d, "--frame-at", "75s", "--size", "100x22"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let frame = String::from_utf8(o.stdout).unwrap();
    // The headline, whatever the snapshot: the bad pod, ejected at 60.07 s
    // for 30 s, has 15.1 s of its ejection left at 75 s.
    let bad = frame
        .lines()
        .find(|l| l.contains("backend-v1-3"))
        .expect("the bad pod's row");
    assert!(bad.contains(" ej 15.1s "), "{frame}");
    let path = repo_root().join("sim/tests/snapshots/one-bad-pod-75s.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &frame).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        frame,
        want,
        "the frame differs from {}; if the change is deliberate, rerun with UPDATE_SNAPSHOTS=1",
        path.display()
    );
    // The README shows the same frame (its run is the same experiment).
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let body: String = frame.lines().skip(2).map(|l| format!("{l}\n")).collect();
    assert!(
        readme.contains(&body),
        "README.md's replay frame differs from the snapshot: paste it again"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replaying_what_is_not_a_run_directory_is_a_clear_error() {
    let o = meshsim(&["replay", "/nonexistent/run", "--frame-at", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/run: cannot read"),
        "{}",
        stderr(&o)
    );

    // A directory of another format version.
    let dir = run_dir("old");
    let d = dir.to_str().unwrap();
    let o = meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--set",
        "duration=3s",
        "--out",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    std::fs::write(
        dir.join("summary.csv"),
        summary.replacen(&format!("\n{},", mesh_rundir::FORMAT_VERSION), "\n99,", 1),
    )
    .unwrap();
    let o = meshsim(&["replay", d, "--frame-at", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("format_version 99 is not supported"),
        "{}",
        stderr(&o)
    );

    // A corrupt row is named by file and line.
    std::fs::write(dir.join("summary.csv"), summary).unwrap();
    let ts = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    let mut lines: Vec<&str> = ts.lines().collect();
    lines[2] = "1.000000,backend-v1-1,backend,v1,many,0,0,0.000,0.000,0,0";
    std::fs::write(dir.join("timeseries.csv"), lines.join("\n") + "\n").unwrap();
    let o = meshsim(&["replay", d, "--frame-at", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("timeseries.csv: line 3: column `requests`: expected a number, found `many`"),
        "{}",
        stderr(&o)
    );

    // Without a terminal, the interactive replay says what to do.
    std::fs::write(dir.join("timeseries.csv"), ts).unwrap();
    let o = meshsim(&["replay", d]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs a terminal"), "{}", stderr(&o));
    let o = meshsim(&["replay", d, "--frame-at", "1s", "--size", "40x10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("too small"), "{}", stderr(&o));
    std::fs::remove_dir_all(dir).unwrap();
}
