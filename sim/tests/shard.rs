//! Sharded sweeps end to end: `meshsim sweep --shard K/N` run as N separate
//! processes, merged by `meshsim merge`, give byte for byte the directory
//! of one `meshsim sweep`; a shard killed halfway and run again alone gives
//! the same; a missing, repeated or foreign shard is refused (exit 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::meshsim;

const EXPERIMENT: &str = "experiments/outlier-tuning.toml";
/// Short runs: the sweep's 32 points × 2 seeds in a few seconds.
const SHORT: &str = "duration=5s";

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshsim-shard-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (k, v) in &ta {
        assert!(v == &tb[k], "{} differs", k.display());
    }
}

fn shard(k: usize, n: usize, out: &Path, extra: &[&str]) -> Output {
    let spec = format!("{k}/{n}");
    let mut args = vec![
        "sweep",
        EXPERIMENT,
        "--set",
        SHORT,
        "--shard",
        &spec,
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    meshsim(&args)
}

fn merge(dirs: &[PathBuf], out: &Path) -> Output {
    let mut args = vec!["merge"];
    args.extend(dirs.iter().map(|d| s(d)));
    args.extend(["--out", s(out)]);
    meshsim(&args)
}

#[test]
fn n_shards_merged_equal_one_sweep_byte_for_byte() {
    let root = scratch("equal");
    let whole = root.join("whole");
    ok(&meshsim(&[
        "sweep",
        EXPERIMENT,
        "--set",
        SHORT,
        "--out",
        s(&whole),
    ]));
    // 64 runs: 70 shards leave some empty.
    for n in [1, 2, 3, 7, 70] {
        let dirs: Vec<PathBuf> = (0..n).map(|k| root.join(format!("n{n}-s{k}"))).collect();
        // Separate processes, as a cluster would run them (two at a time).
        for pair in dirs.chunks(2).enumerate() {
            let (i, chunk) = pair;
            let children: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(j, d)| {
                    let spec = format!("{}/{n}", 2 * i + j);
                    Command::new(env!("CARGO_BIN_EXE_meshsim"))
                        .args([
                            "sweep",
                            EXPERIMENT,
                            "--set",
                            SHORT,
                            "--shard",
                            &spec,
                            "--out",
                            s(d),
                        ])
                        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
                        .output()
                })
                .collect();
            for c in children {
                ok(&c.unwrap());
            }
        }
        // In any order.
        let mut shuffled = dirs.clone();
        shuffled.reverse();
        let merged = root.join(format!("merged-{n}"));
        ok(&merge(&shuffled, &merged));
        assert_same_tree(&whole, &merged);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_shard_killed_halfway_and_run_again_alone_gives_the_same_merge() {
    let root = scratch("killed");
    let whole = root.join("whole");
    ok(&meshsim(&[
        "sweep",
        EXPERIMENT,
        "--set",
        SHORT,
        "--out",
        s(&whole),
    ]));
    let dirs: Vec<PathBuf> = (0..3).map(|k| root.join(format!("s{k}"))).collect();
    ok(&shard(0, 3, &dirs[0], &[]));
    ok(&shard(2, 3, &dirs[2], &[]));
    // Shard 1 is killed while it runs (or just after it finished: either
    // way it is run again below).
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "sweep",
            EXPERIMENT,
            "--set",
            SHORT,
            "--shard",
            "1/3",
            "--out",
            s(&dirs[1]),
        ])
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let _ = child.kill();
    let _ = child.wait();
    // A shard that did not finish has no shard.toml: merge names it.
    let _ = std::fs::remove_file(dirs[1].join("shard.toml"));
    let o = merge(&dirs, &root.join("refused"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(s(&dirs[1])) && err.contains("not a finished shard"),
        "{err}"
    );
    // Run again alone, into the same directory.
    ok(&shard(1, 3, &dirs[1], &[]));
    let merged = root.join("merged");
    ok(&merge(&dirs, &merged));
    assert_same_tree(&whole, &merged);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_missing_repeated_or_foreign_shard_is_refused_by_name() {
    let root = scratch("refused");
    let dirs: Vec<PathBuf> = (0..3).map(|k| root.join(format!("s{k}"))).collect();
    for (k, d) in dirs.iter().enumerate() {
        ok(&shard(k, 3, d, &[]));
    }
    let refused = |o: Output, needles: &[&str]| {
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        for n in needles {
            assert!(err.contains(n), "{n} not in: {err}");
        }
    };
    // Missing: shard 1 of 3.
    refused(
        merge(&[dirs[0].clone(), dirs[2].clone()], &root.join("m1")),
        &["shards missing: 1/3"],
    );
    // Repeated.
    refused(
        merge(
            &[dirs[0].clone(), dirs[1].clone(), dirs[0].clone()],
            &root.join("m2"),
        ),
        &["given twice", s(&dirs[0])],
    );
    // Foreign: the same shard of another experiment (a different --set).
    let foreign = root.join("foreign");
    let spec = "1/3";
    ok(&meshsim(&[
        "sweep",
        EXPERIMENT,
        "--set",
        "duration=6s",
        "--shard",
        spec,
        "--out",
        s(&foreign),
    ]));
    refused(
        merge(
            &[dirs[0].clone(), foreign.clone(), dirs[2].clone()],
            &root.join("m3"),
        ),
        &["another experiment", s(&foreign)],
    );
    // Of another shard count.
    let other = root.join("other-count");
    ok(&shard(1, 4, &other, &[]));
    refused(
        merge(
            &[dirs[0].clone(), other.clone(), dirs[2].clone()],
            &root.join("m4"),
        ),
        &["shard count", s(&other)],
    );
    // Not a shard at all.
    refused(
        merge(&[dirs[0].clone(), root.clone()], &root.join("m5")),
        &["not a finished shard"],
    );
    // A bad --shard.
    let o = shard(3, 3, &root.join("bad"), &[]);
    refused(o, &["0 <= K < N"]);
    let _ = std::fs::remove_dir_all(&root);
}

const TUNE: &str = "sim/tests/data/tune-synthetic.toml";

/// `meshsim tune --shard K/N`: N processes sharing one output directory,
/// meeting after each round of the successive halving, write byte for byte
/// the directory of one `meshsim tune`.
#[test]
fn a_tune_in_shards_sharing_a_directory_equals_one_tune() {
    let root = scratch("tune");
    let out = root.join("out");
    ok(&meshsim(&["tune", TUNE, "--out", s(&out)]));
    let whole = root.join("whole");
    std::fs::rename(&out, &whole).unwrap();
    for n in [2, 3] {
        let children: Vec<_> = (0..n)
            .map(|k| {
                let spec = format!("{k}/{n}");
                Command::new(env!("CARGO_BIN_EXE_meshsim"))
                    .args(["tune", TUNE, "--shard", &spec, "--out", s(&out)])
                    .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        assert_same_tree(&whole, &out);
        std::fs::remove_dir_all(&out).unwrap();
    }
    // A shard whose peers never come says which after --shard-wait.
    let o = meshsim(&[
        "tune",
        TUNE,
        "--shard",
        "1/3",
        "--shard-wait",
        "1",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shards not done: 0/3, 2/3"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
