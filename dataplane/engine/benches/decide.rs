//! `handle_request` + `handle_response` on a realistic config (see
//! `realistic.rs`), for round robin and consistent hash. Results and the
//! command are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_engine::{Decision, Engine, Outcome, ProxySpec, Request, Time, config};

#[path = "support/realistic.rs"]
mod realistic;

fn engine(lb: &str) -> Engine {
    let (cfg, _) = config::from_toml(&realistic::realistic_config(lb), None).expect("valid config");
    Engine::new(Arc::new(cfg), ProxySpec::sidecar("default", &[]), 1)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle_request");
    for (name, lb) in [
        ("round_robin", "simple = \"ROUND_ROBIN\""),
        ("least_request", "simple = \"LEAST_REQUEST\""),
        (
            "ring_hash_header",
            "consistentHash = { httpHeaderName = \"x-user\" }",
        ),
        (
            "maglev_header",
            "consistentHash = { httpHeaderName = \"x-user\", maglev = { tableSize = 65537 } }",
        ),
    ] {
        let mut e = engine(lb);
        let req =
            Request::get("checkout:9080", "/api/v1/items?page=2").with_headers(&realistic::HEADERS);
        group.bench_function(name, |b| {
            b.iter(|| {
                let d = e.handle_request(black_box(&req), Time::ZERO);
                if let Decision::Forward(f) = d {
                    let _ = e.admit(f.upstream, true, false, Time::ZERO);
                    e.handle_response(f.upstream, Outcome::Status(200), Time::ZERO);
                }
                black_box(d)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
