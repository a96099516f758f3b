//! # mesh-rundir
//!
//! The run directory, the one output format of meshsim: written by
//! `meshsim run|sweep` and by `meshproxy --record`, read by `meshsim replay`
//! and by users' own tools. Its row types, column names, writers and readers
//! live here, in one small crate that both the simulator and the proxy use
//! (neither links the other, and the engine stays free of I/O).
//! `docs/run-format.md` documents every column.
//!
//! The counters and the latency histogram behind the files are here too
//! ([`CallCounts::add`], [`Summary::add_answer`], [`Histogram`]), so the
//! simulator and the recorder count and take percentiles the same way.
//!
//! A run directory holds:
//! - `summary.csv`: one row per run ([`Summary`]);
//! - `timeseries.csv`: one row per window per endpoint ([`WindowRow`]);
//! - `calls.csv`: one row per window per edge of the call graph ([`CallRow`]);
//! - `events.csv`: what happened, in time order ([`EventRow`]);
//! - `experiment.toml`: the experiment as run, for provenance (optional).
//!
//! Times are nanoseconds in memory and seconds with microsecond precision in
//! the files (`12.345678`), so a file read back gives the times written.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod events;
mod histogram;
mod read;
mod write;

pub use events::{Overflows, engine_event_detail, engine_event_kind};
pub use histogram::{Histogram, Samples};
use mesh_engine::{ResponseFlag, ResponseFlags};

pub use read::{
    ReadError, RowCounts, RunDir, SummaryTable, Timeseries, TimeseriesWindow, read_calls,
    read_events,
};
pub use write::{RunWriter, write_summary};

/// Version of the run-directory format, in `summary.csv`'s `format_version`.
/// Version 2 added `timeseries.csv`'s `version` column; version 3 the
/// summary's `healthy_ejected_host_seconds`, `eject_delay_s` and
/// `bad_pod_requests` (what `meshsim tune` judges settings on).
pub const FORMAT_VERSION: u32 = 3;

/// Columns of `summary.csv` (after the optional `point` and swept columns).
pub const SUMMARY_COLUMNS: [&str; 22] = [
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
    "healthy_ejected_host_seconds",
    "eject_delay_s",
    "bad_pod_requests",
];

/// Columns of `timeseries.csv`.
pub const TIMESERIES_COLUMNS: [&str; 11] = [
    "time_s",
    "endpoint",
    "service",
    "version",
    "requests",
    "successes",
    "errors",
    "latency_ms_p50",
    "latency_ms_p99",
    "ejected_by",
    "active_requests",
];

/// Columns of `calls.csv`.
pub const CALLS_COLUMNS: [&str; 13] = [
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
];

/// Columns of `events.csv`.
pub const EVENTS_COLUMNS: [&str; 5] = ["time_s", "kind", "proxy", "endpoint", "detail"];

/// One run's totals: a `summary.csv` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The experiment's name (or the recording's).
    pub experiment: String,
    /// The seed of the run (0 for a recording).
    pub seed: u64,
    /// Length of the run, in nanoseconds.
    pub duration_ns: u64,
    /// Requests answered to the client.
    pub requests: u64,
    /// Answers with a status below 400.
    pub successes: u64,
    /// Answers with a 5xx status.
    pub errors_5xx: u64,
    /// Answers with flag `UO`.
    pub overflow: u64,
    /// Answers with flag `FI`.
    pub fault_aborts: u64,
    /// Answers with flag `UT`.
    pub timeouts: u64,
    /// Client-visible latency percentiles, in milliseconds: p50, p90, p99, p99.9.
    pub latency_ms: [f64; 4],
    /// Outlier ejections over all proxies.
    pub ejections: u64,
    /// Sum over ejections of the time ejected, in seconds.
    pub ejected_host_seconds: f64,
    /// Users answered by more than one version of a service.
    pub users_switched_version: u64,
    /// Times a user was answered by another version than the time before.
    pub version_switches: u64,
    /// The part of `ejected_host_seconds` when the ejected pod was healthy
    /// (no fault of the timeline on it): capacity thrown away.
    pub healthy_ejected_host_seconds: f64,
    /// Mean time from a pod going bad to its first ejection (by any proxy),
    /// over the bad episodes of the run; an episode that never saw an
    /// ejection counts until it ended (or the run did). `None`: no pod went bad.
    pub eject_delay_s: Option<f64>,
    /// Requests (attempts, retries included) that reached a pod while it was bad.
    pub bad_pod_requests: u64,
}

impl Summary {
    /// Counts an answer to the client in the totals (`requests`,
    /// `successes`, `errors_5xx` and the flag columns).
    pub fn add_answer(&mut self, status: u16, flags: ResponseFlags) {
        self.requests += 1;
        self.successes += u64::from(status < 400);
        self.errors_5xx += u64::from((500..600).contains(&status));
        self.overflow += u64::from(flags.contains(ResponseFlag::UpstreamOverflow));
        self.fault_aborts += u64::from(flags.contains(ResponseFlag::FaultInjected));
        self.timeouts += u64::from(flags.contains(ResponseFlag::UpstreamRequestTimeout));
    }

    /// The row's fields, in [`SUMMARY_COLUMNS`] order.
    pub fn record(&self) -> Vec<String> {
        vec![
            FORMAT_VERSION.to_string(),
            self.experiment.clone(),
            self.seed.to_string(),
            secs(self.duration_ns),
            self.requests.to_string(),
            self.successes.to_string(),
            self.errors_5xx.to_string(),
            self.overflow.to_string(),
            self.fault_aborts.to_string(),
            self.timeouts.to_string(),
            ratio(self.successes, self.requests),
            format!("{:.3}", self.latency_ms[0]),
            format!("{:.3}", self.latency_ms[1]),
            format!("{:.3}", self.latency_ms[2]),
            format!("{:.3}", self.latency_ms[3]),
            self.ejections.to_string(),
            format!("{:.3}", self.ejected_host_seconds),
            self.users_switched_version.to_string(),
            self.version_switches.to_string(),
            format!("{:.3}", self.healthy_ejected_host_seconds),
            self.eject_delay_s
                .map_or_else(String::new, |d| format!("{d:.3}")),
            self.bad_pod_requests.to_string(),
        ]
    }
}

/// One endpoint in one window: a `timeseries.csv` row. `S` is `&str` to
/// write and `String` when read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowRow<S = String> {
    /// End of the window, in nanoseconds since the start of the run.
    pub time_ns: u64,
    /// The endpoint (pod name).
    pub endpoint: S,
    /// Its service.
    pub service: S,
    /// Its version (the `version` label; empty when it has none).
    pub version: S,
    /// Attempts sent to it in the window (retries included).
    pub requests: u64,
    /// Attempts answered below 500.
    pub successes: u64,
    /// Attempts that failed: 5xx, refused connections, timeouts.
    pub errors: u64,
    /// Median attempt latency, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile attempt latency, in milliseconds.
    pub latency_ms_p99: f64,
    /// Proxies that had it ejected at the end of the window.
    pub ejected_by: u32,
    /// Requests in service or queued at it at the end of the window.
    pub active_requests: u32,
}

/// Counts on one edge of the call graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Answers received, plus calls the application gave up on.
    pub requests: u64,
    /// Answers below 400.
    pub successes: u64,
    /// Answers 400–499.
    pub errors_4xx: u64,
    /// Answers 500–599, local replies included.
    pub errors_5xx: u64,
    /// Answers with flag `UO`.
    pub overflow: u64,
    /// Answers with flag `FI`.
    pub fault_aborts: u64,
    /// Answers with flag `UT`.
    pub timeouts: u64,
    /// Calls the application gave up on.
    pub app_timeouts: u64,
}

impl CallCounts {
    /// Counts an answer the caller received: its status class, and the
    /// flags the columns count (`UO`, `FI`, `UT`, alone or among others).
    pub fn add(&mut self, status: u16, flags: ResponseFlags) {
        self.requests += 1;
        match status {
            0..=399 => self.successes += 1,
            400..=499 => self.errors_4xx += 1,
            _ => self.errors_5xx += 1,
        }
        self.overflow += u64::from(flags.contains(ResponseFlag::UpstreamOverflow));
        self.fault_aborts += u64::from(flags.contains(ResponseFlag::FaultInjected));
        self.timeouts += u64::from(flags.contains(ResponseFlag::UpstreamRequestTimeout));
    }

    /// Adds `other`'s counts (a window's, into a run's totals).
    pub fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.errors_4xx += other.errors_4xx;
        self.errors_5xx += other.errors_5xx;
        self.overflow += other.overflow;
        self.fault_aborts += other.fault_aborts;
        self.timeouts += other.timeouts;
        self.app_timeouts += other.app_timeouts;
    }
}

/// One edge of the call graph in one window: a `calls.csv` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallRow<S = String> {
    /// End of the window, in nanoseconds.
    pub time_ns: u64,
    /// The calling client or workload.
    pub source: S,
    /// The authority called.
    pub host: S,
    /// What happened on the edge in the window.
    pub counts: CallCounts,
    /// Median latency the caller saw, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile latency the caller saw, in milliseconds.
    pub latency_ms_p99: f64,
}

/// Something that happened: an `events.csv` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventRow<S = String> {
    /// When, in nanoseconds.
    pub time_ns: u64,
    /// `eject`, `return`, `overflow`, `config_push`, `fault_start`, …
    pub kind: S,
    /// The proxy it happened in (empty for world events).
    pub proxy: S,
    /// The endpoint or cluster concerned.
    pub endpoint: S,
    /// `key=value` pairs separated by spaces.
    pub detail: S,
}

/// Nanoseconds as seconds with microsecond precision: `12.345678`.
pub fn secs(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000)
}

/// Parses [`secs`]' format (and plain seconds, `12` or `12.5`) exactly, to
/// nanoseconds. `None` when it is not a non-negative decimal number.
pub fn parse_secs(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = int.parse().ok()?;
    let mut nanos: u64 = 0;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        nanos = nanos * 10 + d;
    }
    whole.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// `a / b` with six decimals (`0.000000` when `b` is 0).
pub fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        return "0.000000".to_owned();
    }
    #[allow(clippy::cast_precision_loss)]
    let r = a as f64 / b as f64;
    format!("{r:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_at_microsecond_precision() {
        for ns in [0, 1_000, 12_345_678_000, 3_600_000_000_000] {
            assert_eq!(parse_secs(&secs(ns)), Some(ns));
        }
        assert_eq!(secs(12_345_678_999), "12.345678");
        assert_eq!(parse_secs("75"), Some(75_000_000_000));
        assert_eq!(parse_secs("0.5"), Some(500_000_000));
    }

    #[test]
    fn seconds_reject_what_is_not_a_decimal_number() {
        for bad in ["", ".5", "-1", "1e3", "1.2.3", "1.0000000001", "x"] {
            assert_eq!(parse_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn summary_record_has_a_field_per_column() {
        let s = Summary {
            requests: 4,
            successes: 3,
            ..Summary::default()
        };
        let r = s.record();
        assert_eq!(r.len(), SUMMARY_COLUMNS.len());
        assert_eq!(r[0], FORMAT_VERSION.to_string());
        assert_eq!(r[10], "0.750000");
    }
}
