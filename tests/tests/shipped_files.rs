//! Every shipped topology validates, and routes as its comments say.

use std::path::PathBuf;
use std::sync::Arc;

use mesh_engine::config;
use mesh_engine::{Decision, Engine, ProxySpec, Request, Time};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load(path: &PathBuf) -> config::Config {
    let text = std::fs::read_to_string(path).unwrap();
    match config::from_toml(&text, Some(&path.display().to_string())) {
        Ok((cfg, warnings)) => {
            assert!(
                warnings.is_empty(),
                "{}: unexpected warnings: {warnings:?}",
                path.display()
            );
            cfg
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_shipped_topology_validates_and_routes_every_service() {
    let files = shipped("topologies");
    assert!(!files.is_empty());
    for path in &files {
        let cfg = Arc::new(load(path));
        let mut engine = Engine::new(cfg.clone(), ProxySpec::sidecar("default", &[]), 1);
        for svc in &cfg.services {
            let d = engine.handle_request(&Request::get(&svc.host, "/"), Time::ZERO);
            assert!(
                matches!(d, Decision::Forward(_)),
                "{}: {} → {}",
                path.display(),
                svc.host,
                engine.describe(&d)
            );
        }
    }
}

#[test]
fn bookinfo_gateway_serves_productpage_and_nothing_else() {
    let cfg = Arc::new(load(&root().join("topologies/bookinfo.toml")));
    let mut gw = Engine::new(cfg, ProxySpec::gateway("default", "bookinfo-gateway"), 1);
    let d = gw.handle_request(
        &Request::get("bookinfo.example.com", "/productpage"),
        Time::ZERO,
    );
    let Decision::Forward(f) = d else {
        panic!("{}", gw.describe(&d))
    };
    assert_eq!(gw.endpoint_address(f.upstream), "10.1.0.10:9080");
    let d = gw.handle_request(&Request::get("bookinfo.example.com", "/admin"), Time::ZERO);
    assert!(
        matches!(d, Decision::Reject(r) if r.status == 404),
        "{}",
        gw.describe(&d)
    );
}

#[test]
fn sticky_canary_keeps_each_user_on_one_subset() {
    let cfg = Arc::new(load(&root().join("topologies/sticky-canary.toml")));
    let mut engine = Engine::new(cfg, ProxySpec::sidecar("default", &[]), 1);
    let mut canary_users = 0;
    for user in 0..2000 {
        let id = format!("user-{user}");
        let headers = [("x-user", id.as_str())];
        let req = Request::get("checkout", "/").with_headers(&headers);
        let mut first = None;
        for _ in 0..5 {
            let Decision::Forward(f) = engine.handle_request(&req, Time::ZERO) else {
                panic!()
            };
            let name = engine.cluster_name(f.upstream.cluster).to_owned();
            let addr = engine.endpoint_address(f.upstream).to_owned();
            let admitted = engine.admit(f.upstream, true, false, Time::ZERO);
            assert_eq!(admitted, mesh_engine::Admission::Attach);
            engine.handle_response(f.upstream, mesh_engine::Outcome::Status(200), Time::ZERO);
            match &first {
                None => first = Some((name, addr)),
                Some(prev) => assert_eq!(prev, &(name, addr), "{id} moved"),
            }
        }
        if first.unwrap().0.contains("|canary|") {
            canary_users += 1;
        }
    }
    // 10 % of 2000 users: binomial sd ≈ 13.4, so ±60 is over 4 sd.
    assert!(
        (140..=260).contains(&canary_users),
        "{canary_users} canary users"
    );
}

#[test]
fn every_shipped_experiment_validates_and_runs() {
    // The experiments, and the Istio tasks written as YAML (experiments/istio).
    let mut files = shipped("experiments");
    files.extend(shipped("experiments/istio"));
    assert!(files.len() > 6);
    for path in &files {
        let name = path.display().to_string();
        // As `meshsim run` loads it: included topology and mesh files too.
        let plan = meshsim::plan::load(path, &[], None).unwrap_or_else(|e| panic!("{e}"));
        assert!(plan.warnings.is_empty(), "{name}: {:?}", plan.warnings);
        let metrics = meshsim::Run::new(&plan.jobs[0].model)
            .run()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(metrics.requests > 0, "{name}: no request completed");
    }
}
