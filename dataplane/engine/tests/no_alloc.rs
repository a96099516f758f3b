//! The hot path allocates nothing: after warm-up, `handle_request` and
//! `handle_response` on the realistic config make zero heap allocations,
//! for every load balancer. Counted with a global counting allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use mesh_engine::{Decision, Engine, Outcome, ProxySpec, Request, Time, config};

#[path = "../benches/support/realistic.rs"]
mod realistic;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the only
// addition is a thread-local counter bump, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_state_decisions_allocate_nothing() {
    for lb in [
        "simple = \"ROUND_ROBIN\"",
        "simple = \"LEAST_REQUEST\"",
        "simple = \"RANDOM\"",
        "consistentHash = { httpHeaderName = \"x-user\" }",
        "consistentHash = { useSourceIp = true, maglev = { tableSize = 65537 } }",
        "consistentHash = { httpCookie = { name = \"s\", ttl = \"0s\" } }",
    ] {
        let (cfg, _) = config::from_toml(&realistic::realistic_config(lb), None).unwrap();
        let mut e = Engine::new(Arc::new(cfg), ProxySpec::sidecar("default", &[]), 1);
        let miss = Request::get("checkout:9080", "/api/v1/items?page=2")
            .with_headers(&realistic::HEADERS)
            .with_source("10.9.0.1:40000".parse().unwrap());
        let hit_headers = [("x-user", "beta-7")];
        let hit = Request::get("reviews", "/api/v2/x").with_headers(&hit_headers);
        let mut now = 0u64;
        let mut run = |e: &mut Engine, n: usize| {
            for i in 0..n {
                now += 1_000;
                let req = if i % 3 == 0 { &hit } else { &miss };
                // What the simulator and the proxy ask first: the port.
                let req = &Request {
                    port: e.destination_port(req.authority).unwrap_or(80),
                    ..*req
                };
                let d = e.handle_request(req, Time::from_nanos(now));
                let Decision::Forward(f) = d else {
                    panic!("{}", e.describe(&d))
                };
                let admitted = e.admit(f.upstream, true, false, Time::from_nanos(now));
                assert_eq!(admitted, mesh_engine::Admission::Attach);
                e.handle_response(f.upstream, Outcome::Status(200), Time::from_nanos(now));
            }
        };
        run(&mut e, 1000);
        let before = allocations();
        run(&mut e, 10_000);
        let made = allocations() - before;
        assert_eq!(made, 0, "{lb}: {made} allocations in 10,000 decisions");
    }
}
