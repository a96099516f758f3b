//! Architecture invariants, checked as tests (see ARCHITECTURE.md):
//! the engine and the simulator depend on neither tokio nor hyper, and the
//! engine reads no clock and no ambient randomness.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every package in the normal (non-dev) dependency tree of `package`.
fn dependency_names(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn engine_and_simulator_depend_on_neither_tokio_nor_hyper() {
    // mio is banned from the engine (a sign of an event loop); the
    // simulator's replay TUI reads terminal events through crossterm, which
    // uses mio, so for meshsim the ban is on the async stack itself.
    for (package, banned) in [
        (
            "mesh-engine",
            &["tokio", "hyper", "hyper-util", "h2", "mio"][..],
        ),
        ("meshsim", &["tokio", "hyper", "hyper-util", "h2"][..]),
        (
            "mesh-rundir",
            &["tokio", "hyper", "hyper-util", "h2", "mio"][..],
        ),
    ] {
        let deps = dependency_names(package);
        assert!(
            deps.iter().any(|d| d == package),
            "{package} not found in its own tree: {deps:?}"
        );
        for banned in banned {
            assert!(
                !deps.iter().any(|d| d == *banned),
                "{package} depends on {banned}"
            );
        }
    }
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn engine_and_simulator_read_no_clock_and_no_ambient_randomness() {
    let banned = [
        "Instant::now",
        "SystemTime::now",
        "thread_rng",
        "rand::rng()",
        "rand::random",
        "OsRng",
    ];
    let mut files = Vec::new();
    rust_sources(&root().join("dataplane/engine/src"), &mut files);
    rust_sources(&root().join("sim/src"), &mut files);
    assert!(files.len() > 5);
    // The one exception: the replay TUI's terminal loop paces playback with
    // the wall clock; it reads a finished run and never touches results.
    let pacing = root().join("sim/src/replay/terminal.rs");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for b in banned {
            if f == pacing && b == "Instant::now" {
                continue;
            }
            assert!(!text.contains(b), "{} uses {b}", f.display());
        }
    }
}

#[test]
fn engine_and_simulator_deny_clocks_and_random_maps_through_clippy() {
    for krate in ["dataplane/engine", "sim"] {
        let clippy = std::fs::read_to_string(root().join(krate).join("clippy.toml")).unwrap();
        for banned in [
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::collections::HashMap",
            "std::collections::HashSet",
        ] {
            assert!(
                clippy.contains(&format!("\"{banned}\"")),
                "{krate}/clippy.toml does not ban {banned}"
            );
        }
    }
    let lib = std::fs::read_to_string(root().join("dataplane/engine/src/lib.rs")).unwrap();
    assert!(lib.contains("#![deny(clippy::disallowed_methods, clippy::disallowed_types)]"));
    assert!(lib.contains("#![forbid(unsafe_code)]"));
}
