//! The sticky-sessions experiments: plain Envoy flips users between the
//! weighted versions; the `meshsimStickyWeights` extension keeps each user on
//! one version while honouring the weights.

use std::path::PathBuf;
use std::process::Command;

fn run(experiment: &str) -> (Vec<String>, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("meshsim-{experiment}-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "run",
            &format!("experiments/{experiment}.toml"),
            "--out",
            dir.to_str().unwrap(),
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(header.len(), row.len());
    let named = header
        .iter()
        .zip(&row)
        .map(|(h, v)| format!("{h}={v}"))
        .collect();
    (
        named,
        std::fs::read_to_string(dir.join("timeseries.csv")).unwrap(),
    )
}

fn field(named: &[String], name: &str) -> u64 {
    named
        .iter()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {named:?}"))
        .parse()
        .unwrap()
}

fn v2_share(timeseries: &str) -> f64 {
    let (mut v2, mut all) = (0u64, 0u64);
    for line in timeseries.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let n: u64 = f[4].parse().unwrap();
        all += n;
        if f[3] == "v2" {
            v2 += n;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let share = v2 as f64 / all as f64;
    share
}

#[test]
fn plain_envoy_flips_most_users_between_the_weighted_versions() {
    let (summary, ts) = run("sticky-sessions");
    // 200 qps × 60 s over 500 users ≈ 24 requests per user, each drawing
    // v1 with 0.9: a user never switches with probability 0.9^24 + 0.1^24
    // ≈ 8 %, so about 460 of 500 switch (binomial sd ≈ 6).
    let switched = field(&summary, "users_switched_version");
    assert!((420..=490).contains(&switched), "{switched} users switched");
    assert!(field(&summary, "version_switches") > 1_000);
    assert!(
        (v2_share(&ts) - 0.10).abs() < 0.02,
        "v2 share {}",
        v2_share(&ts)
    );
}

#[test]
fn the_sticky_weights_extension_keeps_every_user_on_one_version_and_the_split() {
    let (summary, ts) = run("sticky-sessions-extension");
    assert_eq!(field(&summary, "users_switched_version"), 0);
    assert_eq!(field(&summary, "version_switches"), 0);
    // About 10 % of the 500 users land on v2 (binomial sd ≈ 1.3 %), and with
    // them about 10 % of the requests.
    let share = v2_share(&ts);
    assert!((share - 0.10).abs() < 0.04, "v2 share {share}");
}
