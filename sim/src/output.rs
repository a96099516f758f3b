//! The run directory: `summary.csv`, `timeseries.csv`, `events.csv` and a
//! copy of the experiment (see `docs/run-format.md`), plus the fortio-like
//! summary printed by `meshsim run`.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::metrics::{Metrics, ms};
use crate::model::Model;

/// Version of the run-directory format, in `summary.csv`.
pub const FORMAT_VERSION: u32 = 1;

fn secs(t: mesh_engine::Time) -> String {
    let ns = t.as_nanos();
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000)
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        return "0.000000".to_owned();
    }
    #[allow(clippy::cast_precision_loss)]
    let r = a as f64 / b as f64;
    format!("{r:.6}")
}

/// Columns of `summary.csv`.
pub const SUMMARY_COLUMNS: [&str; 19] = [
    "format_version",
    "experiment",
    "seed",
    "duration_s",
    "requests",
    "successes",
    "errors_5xx",
    "overflow",
    "fault_aborts",
    "timeouts",
    "success_rate",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_ms_p999",
    "ejections",
    "ejected_host_seconds",
    "users_switched_version",
    "version_switches",
];

/// One `summary.csv` row.
pub fn summary_record(model: &Model, metrics: &Metrics) -> Vec<String> {
    let l = &metrics.latency;
    #[allow(clippy::cast_precision_loss)]
    let ejected_s = metrics.ejected_host_ns as f64 / 1e9;
    vec![
        FORMAT_VERSION.to_string(),
        model.name.clone(),
        model.seed.to_string(),
        secs(model.duration),
        metrics.requests.to_string(),
        metrics.successes().to_string(),
        metrics.errors_5xx().to_string(),
        metrics.flag("UO").to_string(),
        metrics.flag("FI").to_string(),
        metrics.flag("UT").to_string(),
        ratio(metrics.successes(), metrics.requests),
        format!("{:.3}", ms(l.quantile_us(0.5))),
        format!("{:.3}", ms(l.quantile_us(0.9))),
        format!("{:.3}", ms(l.quantile_us(0.99))),
        format!("{:.3}", ms(l.quantile_us(0.999))),
        metrics.ejections.to_string(),
        format!("{ejected_s:.3}"),
        metrics.users_switched_version.to_string(),
        metrics.version_switches.to_string(),
    ]
}

/// Writes the run directory (creating it).
pub fn write_run_dir(
    dir: &Path,
    model: &Model,
    metrics: &Metrics,
    experiment_text: &str,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let to_io = |e: csv::Error| io::Error::other(e.to_string());
    let mut w = csv::Writer::from_path(dir.join("summary.csv")).map_err(to_io)?;
    w.write_record(SUMMARY_COLUMNS).map_err(to_io)?;
    w.write_record(summary_record(model, metrics))
        .map_err(to_io)?;
    w.flush()?;
    let mut w = csv::Writer::from_path(dir.join("timeseries.csv")).map_err(to_io)?;
    w.write_record([
        "time_s",
        "endpoint",
        "service",
        "requests",
        "successes",
        "errors",
        "latency_ms_p50",
        "latency_ms_p99",
        "ejected_by",
        "active_requests",
    ])
    .map_err(to_io)?;
    for r in &metrics.windows {
        w.write_record([
            secs(r.time),
            r.endpoint.clone(),
            r.service.clone(),
            r.requests.to_string(),
            r.successes.to_string(),
            r.errors.to_string(),
            format!("{:.3}", r.latency_ms_p50),
            format!("{:.3}", r.latency_ms_p99),
            r.ejected_by.to_string(),
            r.active_requests.to_string(),
        ])
        .map_err(to_io)?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(dir.join("events.csv")).map_err(to_io)?;
    w.write_record(["time_s", "kind", "proxy", "endpoint", "detail"])
        .map_err(to_io)?;
    for e in &metrics.events {
        w.write_record([
            secs(e.time),
            e.kind.to_owned(),
            e.proxy.clone(),
            e.endpoint.clone(),
            e.detail.clone(),
        ])
        .map_err(to_io)?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(dir.join("calls.csv")).map_err(to_io)?;
    w.write_record([
        "time_s",
        "source",
        "host",
        "requests",
        "successes",
        "errors_4xx",
        "errors_5xx",
        "overflow",
        "fault_aborts",
        "timeouts",
        "app_timeouts",
        "latency_ms_p50",
        "latency_ms_p99",
    ])
    .map_err(to_io)?;
    for r in &metrics.call_windows {
        let e = &metrics.edges[r.edge];
        let c = &r.counts;
        w.write_record([
            secs(r.time),
            e.source.clone(),
            e.host.clone(),
            c.requests.to_string(),
            c.successes.to_string(),
            c.errors_4xx.to_string(),
            c.errors_5xx.to_string(),
            c.overflow.to_string(),
            c.fault_aborts.to_string(),
            c.timeouts.to_string(),
            c.app_timeouts.to_string(),
            format!("{:.3}", r.latency_ms_p50),
            format!("{:.3}", r.latency_ms_p99),
        ])
        .map_err(to_io)?;
    }
    w.flush()?;
    std::fs::write(dir.join("experiment.toml"), experiment_text)?;
    Ok(())
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
