//! Criterion benchmarks of the engine's hot path. Results, machine and
//! command are recorded in BENCHMARKS.md.
//!
//! - `handle_request/*`: one routing + load-balancing decision on a realistic
//!   config (see `support/realistic.rs`), per load balancer.
//! - `request_cycle/*`: the same plus `admit` and `handle_response`.
//! - `observe/100_endpoints`: `handle_response` plus the amortised
//!   `handle_timeout`, for a cluster of 100 endpoints with outlier detection
//!   (1 response per virtual millisecond, interval 10 s, 1 % of responses 503).
// A benchmark measures wall time; the engine itself never reads a clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_engine::{Decision, Engine, Outcome, ProxySpec, Request, Time, config};

#[path = "support/realistic.rs"]
mod realistic;

const POLICIES: [(&str, &str); 4] = [
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
];

fn engine(toml: &str) -> Engine {
    let (cfg, _) = config::from_toml(toml, None).expect("valid config");
    Engine::new(Arc::new(cfg), ProxySpec::sidecar("default", &[]), 1)
}

fn request() -> Request<'static> {
    Request::get("checkout:9080", "/api/v1/items?page=2").with_headers(&realistic::HEADERS)
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle_request");
    for (name, lb) in POLICIES {
        group.bench_function(name, |b| {
            // Built here so that a filtered run builds only what it measures.
            let mut e = engine(&realistic::realistic_config(lb));
            let req = request();
            b.iter(|| black_box(e.handle_request(black_box(&req), Time::ZERO)));
        });
    }
    group.finish();
    let mut group = c.benchmark_group("request_cycle");
    for (name, lb) in POLICIES {
        group.bench_function(name, |b| {
            let mut e = engine(&realistic::realistic_config(lb));
            let req = request();
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

/// 100 endpoints, outlier detection on; the caller answers one request per
/// virtual millisecond.
fn observe_config() -> String {
    let mut s = String::from("[[service]]\nname = \"big\"\nport = 80\nendpoints = [\n");
    for i in 0..100 {
        s.push_str(&format!(
            "  {{ address = \"10.0.{}.{}:80\" }},\n",
            i / 250,
            i % 250
        ));
    }
    s.push_str(
        "]\n[[destinationRule]]\nname = \"big\"\nhost = \"big\"\n\
         [destinationRule.trafficPolicy.outlierDetection]\n\
         consecutive5xxErrors = 5\ninterval = \"10s\"\nbaseEjectionTime = \"30s\"\nmaxEjectionPercent = 10\n",
    );
    s
}

fn observe(c: &mut Criterion) {
    c.bench_function("observe/100_endpoints", |b| {
        let mut e = engine(&observe_config());
        let req = Request::get("big", "/");
        let mut now_ms: u64 = 0;
        let mut n: u64 = 0;
        let mut batch = Vec::with_capacity(1024);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(1024);
                left -= k;
                // Untimed: the requests whose responses are measured.
                batch.clear();
                for _ in 0..k {
                    if let Decision::Forward(f) = e.handle_request(&req, Time::from_millis(now_ms))
                    {
                        let _ = e.admit(f.upstream, true, false, Time::from_millis(now_ms));
                        batch.push(f.upstream);
                    }
                }
                let start = Instant::now();
                for up in &batch {
                    now_ms += 1;
                    n += 1;
                    let now = Time::from_millis(now_ms);
                    if e.poll_timeout().is_some_and(|t| t <= now) {
                        e.handle_timeout(now);
                    }
                    let outcome = if n % 100 == 0 {
                        Outcome::Status(503)
                    } else {
                        Outcome::Status(200)
                    };
                    e.handle_response(*up, outcome, now);
                    while e.poll_event().is_some() {}
                }
                total += start.elapsed();
            }
            total
        });
    });
}

criterion_group!(benches, decisions, observe);
criterion_main!(benches);
