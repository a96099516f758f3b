#![no_main]
//! The mesh config readers: TOML (the first byte even) straight from text,
//! Istio YAML (odd) through the loader the simulator and the proxy use
//! (parse, manifests, merge, validation, the analyzer). Errors are fine;
//! a panic is a finding.

use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("meshsim-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if first % 2 == 0 {
        let _ = mesh_engine::config::from_toml(text, Some("fuzz.toml"));
    } else {
        let path = scratch().join("fuzz.yaml");
        std::fs::write(&path, text).unwrap();
        let _ = mesh_engine::config::source::load(&[path]);
    }
});
