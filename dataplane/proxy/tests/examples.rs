//! Every shipped example runs: the quick-start script end to end, and its
//! config in the engine as the simulator uses it.

use std::path::{Path, PathBuf};
use std::process::Command;

use mesh_engine::{Decision, Engine, ProxySpec, Request, Time};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn the_quickstart_script_runs_and_exits_0() {
    let bin = Path::new(env!("CARGO_BIN_EXE_meshproxy")).parent().unwrap();
    let out = Command::new("bash")
        .arg(examples().join("quickstart.sh"))
        .env("MESH_BIN", bin)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("quickstart: ok"), "{stdout}");
    assert!(stdout.contains("200 echo-v2"), "{stdout}");
    assert!(stdout.contains("/failed_outlier_check"), "{stdout}");
}

#[test]
fn every_example_config_loads_in_the_proxy_and_routes_in_the_engine() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        n += 1;
        let loaded =
            mesh_proxy::config::load(std::slice::from_ref(&path)).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let mut engine = Engine::new(loaded.mesh.clone(), ProxySpec::sidecar("default", &[]), 1);
        let mut v2 = 0;
        for _ in 0..1000 {
            let d = engine.handle_request(&Request::get("echo", "/"), Time::ZERO);
            let Decision::Forward(f) = d else {
                panic!("{}: {}", path.display(), engine.describe(&d))
            };
            if engine.endpoint_address(f.upstream) == "127.0.0.1:18083" {
                v2 += 1;
            }
            engine.cancel(f.upstream, false, Time::ZERO);
        }
        // 90/10: about 100 of 1000 go to v2.
        assert!((50..=150).contains(&v2), "{}: {v2}", path.display());
    }
    assert!(n >= 1);
}
