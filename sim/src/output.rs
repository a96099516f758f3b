//! The run directory (its format lives in `mesh-rundir`; see
//! `docs/run-format.md`), plus the fortio-like summary printed by
//! `meshsim run`.

use std::fmt::Write as _;
use std::io;

use crate::metrics::{Metrics, ms};
use crate::model::Model;

/// Writes what a streamed run still owes its directory: `summary.csv` and
/// the experiment as run. Nothing when the run kept its rows in memory.
pub fn finish_run_dir(
    model: &Model,
    metrics: &mut Metrics,
    experiment_text: &str,
) -> io::Result<()> {
    match metrics.take_writer() {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(w)) => w.finish(&metrics.summary(model), Some(experiment_text)),
    }
}

/// A fortio-like summary of a run.
pub fn summary_text(model: &Model, metrics: &Metrics) -> String {
    let mut out = String::new();
    let total = metrics.requests;
    #[allow(clippy::cast_precision_loss)]
    let qps = total as f64 / (model.duration.as_nanos() as f64 / 1e9);
    let _ = writeln!(
        out,
        "{}: seed {}, {} simulated, {total} requests ({qps:.1} qps)",
        model.name, model.seed, model.duration
    );
    for (code, &n) in metrics.by_status.iter().enumerate() {
        if n > 0 {
            #[allow(clippy::cast_precision_loss)]
            let pct = 100.0 * n as f64 / total.max(1) as f64;
            let _ = writeln!(out, "Code {code} : {n} ({pct:.1} %)");
        }
    }
    for (flag, n) in &metrics.by_flag {
        let _ = writeln!(out, "Flag {flag} : {n}");
    }
    let l = &metrics.latency;
    let _ = writeln!(
        out,
        "# target 50% {:.3} ms, 90% {:.3} ms, 99% {:.3} ms, 99.9% {:.3} ms",
        ms(l.quantile_us(0.5)),
        ms(l.quantile_us(0.9)),
        ms(l.quantile_us(0.99)),
        ms(l.quantile_us(0.999))
    );
    #[allow(clippy::cast_precision_loss)]
    let ejected_s = metrics.ejected_host_ns as f64 / 1e9;
    let _ = writeln!(
        out,
        "Ejections: {}, ejected host-seconds: {ejected_s:.1}",
        metrics.ejections
    );
    // The calls between services, one line per edge (the load is above).
    for (e, c) in metrics.edges.iter().zip(&metrics.edge_totals).skip(1) {
        let _ = write!(
            out,
            "Calls {} -> {}: {} requests, {} ok, {} 4xx, {} 5xx",
            e.source, e.host, c.requests, c.successes, c.errors_4xx, c.errors_5xx
        );
        for (name, n) in [
            ("UO", c.overflow),
            ("FI", c.fault_aborts),
            ("UT", c.timeouts),
            ("app timeouts", c.app_timeouts),
        ] {
            if n > 0 {
                let _ = write!(out, ", {name} {n}");
            }
        }
        out.push('\n');
    }
    out
}
