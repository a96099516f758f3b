//! How much one row of a run directory costs to write: `window` (one
//! `timeseries.csv` row, 1,000 of them per simulated second with 1,000
//! pods), `call` and `event`. A plain driver, no harness: it prints the
//! wall time per row, and under callgrind
//! (`valgrind --tool=callgrind --toggle-collect='*RunWriter*window*' …`)
//! gives the instructions per row.
//!
//! `cargo bench -p mesh-rundir --bench rows [-- ROWS]`
// A benchmark measures wall time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant;

use mesh_rundir::{CallCounts, CallRow, EventRow, RunWriter, WindowRow};

const PODS: [(&str, &str, &str); 4] = [
    ("reviews-v1-7f9c6d5b8-x2k4p", "reviews", "v1"),
    ("reviews-v2-5d8f7c9b6-q9z7m", "reviews", "v2"),
    ("ratings-v1-6b7d9c8f5-h3j8n", "ratings", "v1"),
    ("productpage-v1-8c5d7b9f6-w4t2r", "productpage", "v1"),
];

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("mesh-rundir-bench-{}", std::process::id()));
    let mut w = RunWriter::create(&dir).expect("create run dir");

    let start = Instant::now();
    for i in 0..rows {
        let (endpoint, service, version) = PODS[(i % 4) as usize];
        #[allow(clippy::cast_precision_loss)]
        let row = WindowRow {
            time_ns: (i / 1000 + 1) * 1_000_000_000,
            endpoint,
            service,
            version,
            requests: 100 + i % 900,
            successes: 95 + i % 900,
            errors: i % 6,
            latency_ms_p50: (2_000 + i % 10_000) as f64 / 1000.0,
            latency_ms_p99: (40_000 + i % 100_000) as f64 / 1000.0,
            ejected_by: u32::from(i % 50 == 0),
            active_requests: (i % 37) as u32,
        };
        w.window(black_box(&row)).expect("window");
    }
    report("window", rows, start);

    let start = Instant::now();
    for i in 0..rows {
        let (source, host, _) = PODS[(i % 4) as usize];
        #[allow(clippy::cast_precision_loss)]
        let row = CallRow {
            time_ns: 1_000_000 * i + 123_456,
            source,
            host,
            counts: CallCounts {
                requests: 1_000 + i % 9_000,
                successes: 990 + i % 9_000,
                errors_4xx: i % 3,
                errors_5xx: i % 7,
                overflow: 0,
                fault_aborts: i % 2,
                timeouts: 0,
                app_timeouts: i % 5,
            },
            latency_ms_p50: (3_000 + i % 10_000) as f64 / 1000.0,
            latency_ms_p99: (50_000 + i % 100_000) as f64 / 1000.0,
        };
        w.call(black_box(&row)).expect("call");
    }
    report("call", rows, start);

    let start = Instant::now();
    for i in 0..rows {
        let (proxy, _, _) = PODS[(i % 4) as usize];
        let row = EventRow {
            time_ns: 1_000_000 * i + 987_654,
            kind: if i % 2 == 0 { "eject" } else { "uneject" },
            proxy,
            endpoint: "10.0.3.17:9080",
            detail: "consecutive 5xx: 5, ejection time 30s",
        };
        w.event(black_box(&row)).expect("event");
    }
    report("event", rows, start);

    w.flush().expect("flush");
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

#[allow(clippy::cast_precision_loss)]
fn report(what: &str, rows: u64, start: Instant) {
    let ns = start.elapsed().as_nanos() as f64 / rows as f64;
    println!("{what:>6}: {ns:7.1} ns/row ({rows} rows)");
}
