//! The simulator allocates nothing per request: running one-bad-pod for
//! 20 s instead of 10 s adds 10,000 requests but only a few hundred
//! allocations (per-window rows, event-log entries), counted with a global
//! counting allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; the only
// addition is an atomic counter bump, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while running the experiment for `duration` (model
/// building excluded), and the requests it answered.
fn run(duration: &str) -> (u64, u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/one-bad-pod.toml");
    let plan =
        meshsim::plan::load(&path, &[("duration".to_owned(), duration.to_owned())], None).unwrap();
    let model = &plan.jobs[0].model;
    let run = meshsim::Run::new(model);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let metrics = run.run().unwrap();
    (
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        metrics.requests,
    )
}

#[test]
fn more_requests_do_not_mean_more_allocations() {
    let (short_allocs, short_requests) = run("10s");
    let (long_allocs, long_requests) = run("20s");
    let extra_requests = long_requests - short_requests;
    let extra_allocs = long_allocs.saturating_sub(short_allocs);
    assert!(extra_requests > 9_000, "{extra_requests}");
    eprintln!("{extra_allocs} more allocations for {extra_requests} more requests");
    // 10 more windows × 10 pods of rows (two strings each), plus growth of
    // the row vector: a few hundred, against 10,000 requests.
    assert!(
        extra_allocs < 1_000,
        "{extra_allocs} allocations for {extra_requests} more requests"
    );
}
