//! The canary-gateway experiment: the split follows the weights, and the
//! push changes it at the moment it reaches the gateway, not before.

use std::collections::BTreeMap;
use std::process::Command;

mod common;
use common::repo_root;

#[test]
fn canary_split_is_90_10_then_50_50_from_when_the_push_reaches_the_gateway() {
    let dir = std::env::temp_dir().join(format!("meshsim-canary-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "run",
            "experiments/canary-gateway.toml",
            "--out",
            dir.to_str().unwrap(),
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events = std::fs::read_to_string(dir.join("events.csv")).unwrap();
    assert!(
        events.contains("\n60.000000,config_push,,,propagation=2s\n"),
        "{events}"
    );
    assert!(
        events.contains("\n62.000000,config_applied,ingress-0,,"),
        "{events}"
    );
    // Requests per version in (t0, t1], from timeseries.csv (1 s windows).
    let ts = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    let split = |t0: f64, t1: f64| {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for line in ts.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let t: f64 = f[0].parse().unwrap();
            if t > t0 && t <= t1 {
                let version = f[3].to_owned();
                *by.entry(version).or_default() += f[4].parse::<u64>().unwrap();
            }
        }
        let total: u64 = by.values().sum();
        #[allow(clippy::cast_precision_loss)]
        let v2 = by.get("v2").copied().unwrap_or(0) as f64 / total as f64;
        (total, v2)
    };
    // 2,000 qps × 60 s = 120,000 draws: the binomial standard deviation of
    // the v2 share is about 0.1 %, so ±1 % is ten of them.
    let (before, v2_before) = split(0.0, 60.0);
    assert!(before > 110_000);
    assert!(
        (v2_before - 0.10).abs() < 0.01,
        "v2 share before the push: {v2_before}"
    );
    // Between the push and its arrival (60–62 s) the gateway still splits 90/10.
    let (_, v2_between) = split(60.0, 62.0);
    assert!(
        (v2_between - 0.10).abs() < 0.03,
        "v2 share before the config arrives: {v2_between}"
    );
    let (_, v2_after) = split(62.0, 120.0);
    assert!((v2_after - 0.50).abs() < 0.01, "v2 share after: {v2_after}");
}
