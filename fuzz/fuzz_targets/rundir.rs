#![no_main]
//! The run-directory reader (`meshsim replay`, `report`, `merge`): the
//! input is cut at 0xff bytes into summary.csv, timeseries.csv, calls.csv
//! and events.csv. Errors are fine; a panic is a finding.

use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("meshsim-fuzz-rundir-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let mut parts = data.split(|&b| b == 0xff);
    for name in ["summary.csv", "timeseries.csv", "calls.csv", "events.csv"] {
        std::fs::write(dir.join(name), parts.next().unwrap_or(b"")).unwrap();
    }
    if let Ok(run) = mesh_rundir::RunDir::open(dir) {
        for w in 0..run.timeseries.windows.len() {
            let _ = run.timeseries.rows(w);
        }
    }
});
