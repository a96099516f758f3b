//! What a run will need in memory, estimated from the experiment before
//! anything is built, so that an experiment too big for the machine is
//! refused with the field to change (exit 2) instead of dying in the
//! allocator halfway (`memory allocation of 5 GB failed`, exit 134).
//!
//! The estimate is a sum of per-item costs measured on the release build
//! (see BENCHMARKS.md, "Memory estimate"): per pod (its state, its window
//! latencies, its name), per pair of proxy and endpoint (each proxy's
//! engine holds every endpoint; the simulator a pool slot), and per request
//! in flight (Little's law: arrival rate × mean latency, slowed as the
//! timeline slows pods), and per timer a request leaves queued (its route
//! and per-try timeouts fire long after most answers). It errs high; only
//! what cannot fit is refused.

use std::path::Path;

use mesh_engine::config::FieldPath;

use crate::experiment::{ExperimentFile, LatencyModel};

/// Bytes of one pod: its state, its window's latencies (up to 16 KiB one
/// by one, then a 21 KiB histogram), names.
const POD: u64 = 40 * 1024;
/// Bytes of one endpoint in one proxy's engine, plus the pool slot.
const PROXY_ENDPOINT: u64 = 160;
/// Bytes one request in flight can take at the peak: its slot in the
/// simulator's request slab, its headers' slot, its free-list entry and its
/// two events in the queue, each three times over (a vector doubles, and
/// the old copy lives while the new one is filled). A test in `run.rs`
/// keeps it at least that. (It was 840, without the headers' slab and the
/// queue's doubling: `load.qps=1e9` passed the estimate and was killed
/// for want of memory at 24 GB.)
pub(crate) const IN_FLIGHT: u64 = 1_280;
/// Bytes of one timer event waiting in the queue after its request ended
/// (a 32-byte entry, three times over as the queue's vectors double).
const TIMER: u64 = 96;
/// Bytes of one user of the load (last version seen, switched or not).
const USER: u64 = 8;
/// The rest: the program, tables, buffers.
const BASE: u64 = 16 << 20;

/// The part of the estimate one field of the experiment is responsible for.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The field, as `--set` writes it.
    pub field: String,
    /// The field, as errors locate it.
    pub path: FieldPath,
    /// Its value, as written.
    pub value: String,
    /// Bytes this field brings.
    pub bytes: u64,
    /// What each unit of it costs, for the message.
    pub unit: &'static str,
}

/// A run's estimated memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Bytes in all.
    pub bytes: u64,
    /// The fields that make it, largest first.
    pub parts: Vec<Part>,
}

/// Mean of a latency model in seconds (0 when it cannot be told).
fn mean_secs(l: &LatencyModel) -> f64 {
    let s = |d: &Option<mesh_engine::config::IstioDuration>| {
        d.as_ref().map_or(0.0, |d| d.value.as_secs_f64())
    };
    match l.distribution.as_str() {
        "constant" => s(&l.value),
        "exponential" | "normal" => s(&l.mean),
        "lognormal" => {
            let sigma = l.sigma.unwrap_or(0.5);
            s(&l.median) * libm::exp(sigma * sigma / 2.0)
        }
        "uniform" => (s(&l.min) + s(&l.max)) / 2.0,
        "pareto" => {
            let shape = l.shape.unwrap_or(2.0);
            if shape > 1.0 {
                s(&l.scale) * shape / (shape - 1.0)
            } else {
                // Infinite mean: count ten scales.
                s(&l.scale) * 10.0
            }
        }
        _ => 0.0,
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn bytes_of(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.min(u64::MAX as f64) as u64
    } else if x > 0.0 {
        u64::MAX
    } else {
        0
    }
}

/// Seconds a request's timer events can outlive it: the longest route
/// `timeout` plus the longest `perTryTimeout` of the experiment's
/// VirtualServices (0 when none is set), at most the run's duration.
fn lingering_timers_secs(f: &ExperimentFile) -> f64 {
    let secs = |d: &Option<mesh_engine::config::IstioDuration>| {
        d.as_ref().map_or(0.0, |d| d.value.as_secs_f64())
    };
    let routes = || f.virtual_service.iter().flat_map(|vs| &vs.http);
    let route = routes().map(|r| secs(&r.timeout)).fold(0.0, f64::max);
    let per_try = routes()
        .filter_map(|r| r.retries.as_ref())
        .map(|t| secs(&t.per_try_timeout))
        .fold(0.0, f64::max);
    (route + per_try).min(f.duration.value.as_secs_f64())
}

/// Estimates what running `f` needs.
pub fn estimate(f: &ExperimentFile) -> Estimate {
    let mut parts = Vec::new();
    let root = FieldPath::root();
    let mut pods: u64 = 0;
    let mut slowest = 0.0f64;
    let mut sidecars: u64 = 0;
    for (si, s) in f.service.iter().enumerate() {
        for (vi, v) in s.version.iter().enumerate() {
            let n = u64::from(v.pods);
            pods += n;
            slowest = slowest.max(mean_secs(&v.latency));
            if v.call.as_ref().is_some_and(|c| !c.is_empty()) || !s.call.is_empty() {
                // Each worker holds its own balancer and pools.
                // (Capped as the model refuses more than 64.)
                sidecars += n * u64::from(s.proxy_concurrency.unwrap_or(2).clamp(1, 64));
            }
            parts.push(Part {
                field: format!("service.{}.version.{}.pods", s.name, v.name),
                path: root
                    .key("service")
                    .named(si, &s.name)
                    .key("version")
                    .named(vi, &v.name)
                    .key("pods"),
                value: v.pods.to_string(),
                bytes: n.saturating_mul(POD),
                unit: "per pod",
            });
        }
    }
    for (ci, c) in f.client.iter().enumerate() {
        let n = u64::from(c.pods.unwrap_or(1));
        // Each worker holds its own balancer and pools.
        let workers = u64::from(c.proxy_concurrency.unwrap_or(2).clamp(1, 64));
        parts.push(Part {
            field: format!("client.{}.pods", c.name),
            path: root.key("client").named(ci, &c.name).key("pods"),
            value: n.to_string(),
            bytes: n
                .saturating_mul(workers)
                .saturating_mul(pods)
                .saturating_mul(PROXY_ENDPOINT),
            unit: "per proxy (and worker) for each pod of the mesh",
        });
    }
    // Every proxy holds every endpoint: pods × proxies, counted here for
    // the sidecars (client proxies are counted above).
    if sidecars > 0 {
        parts.push(Part {
            field: "service.*.version.*.pods (sidecar workers of pods that make calls)".to_owned(),
            path: root.key("service"),
            value: sidecars.to_string(),
            bytes: sidecars.saturating_mul(pods).saturating_mul(PROXY_ENDPOINT),
            unit: "per sidecar for each pod of the mesh",
        });
    }
    let slow = f
        .timeline
        .iter()
        .filter_map(|t| t.slow.as_ref().map(|s| s.factor))
        .fold(1.0f64, f64::max);
    if let Some(qps) = f.load.qps {
        let in_flight = qps * slowest * slow;
        // A request's route and per-try timeout events stay queued until
        // they fire, long after most answers: qps × those timeouts more.
        let timers = qps * lingering_timers_secs(f);
        parts.push(Part {
            field: "load.qps".to_owned(),
            path: root.key("load").key("qps"),
            value: format!("{qps}"),
            bytes: bytes_of(in_flight * IN_FLIGHT as f64 + timers * TIMER as f64),
            unit: "per request in flight (qps × mean latency) and per timer pending (qps × the longest route and per-try timeouts)",
        });
    }
    if let Some(c) = f.load.connections {
        parts.push(Part {
            field: "load.connections".to_owned(),
            path: root.key("load").key("connections"),
            value: c.to_string(),
            bytes: u64::from(c).saturating_mul(IN_FLIGHT),
            unit: "per connection",
        });
    }
    if let Some(u) = f.load.users {
        parts.push(Part {
            field: "load.users".to_owned(),
            path: root.key("load").key("users"),
            value: u.to_string(),
            bytes: u64::from(u).saturating_mul(USER),
            unit: "per user",
        });
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    let bytes = parts
        .iter()
        .fold(BASE, |acc, p| acc.saturating_add(p.bytes));
    Estimate { bytes, parts }
}

/// The memory a run may use: `MESHSIM_MAX_MEMORY` (bytes, or with a
/// `K`/`M`/`G`/`T` suffix) if set, else what the machine has — its
/// physical memory, or its cgroup's limit when lower. `None` when it
/// cannot be told (then nothing is refused).
pub fn limit() -> Option<(u64, &'static str)> {
    if let Ok(v) = std::env::var("MESHSIM_MAX_MEMORY") {
        return parse_size(&v).map(|b| (b, "MESHSIM_MAX_MEMORY"));
    }
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        })?;
    let cgroup = std::fs::read_to_string(Path::new("/sys/fs/cgroup/memory.max"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    Some(match cgroup {
        Some(c) if c < total => (c, "the container's memory limit"),
        _ => (total, "this machine's memory"),
    })
}

/// `512M`, `8G`, `1073741824`: bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Human bytes: `1.5 GB`.
pub fn human(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let x = b as f64;
    if x >= 1e12 {
        format!("{:.1} TB", x / 1e12)
    } else if x >= 1e9 {
        format!("{:.1} GB", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.0} MB", x / 1e6)
    } else {
        format!("{:.0} kB", x / 1e3)
    }
}

/// The message when `e` does not fit in `limit`, naming the field that
/// weighs most; `None` when it fits.
pub fn check(e: &Estimate, limit: u64, source: &str) -> Option<(FieldPath, String)> {
    if e.bytes <= limit {
        return None;
    }
    let top = e.parts.first()?;
    Some((
        top.path.clone(),
        format!(
            "`{}` = {}: the run would need about {} of memory ({} of it from this field, {}), more than the {} available ({}); lower it, or run with MESHSIM_MAX_MEMORY set if the estimate is wrong",
            top.field,
            top.value,
            human(e.bytes),
            human(top.bytes),
            top.unit,
            human(limit),
            source,
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(text: &str) -> ExperimentFile {
        toml::from_str(text).unwrap()
    }

    const BASE_EXPERIMENT: &str = r#"
name = "t"
duration = "10s"
[[service]]
name = "backend"
port = 8080
[[service.version]]
name = "v1"
pods = 10
latency = { distribution = "lognormal", median = "20ms", sigma = 0.5 }
[[client]]
name = "fortio"
[load]
client = "fortio"
host = "backend"
qps = 1000
"#;

    #[test]
    fn a_small_experiment_fits_in_a_small_machine() {
        let e = estimate(&experiment(BASE_EXPERIMENT));
        assert!(e.bytes < 64 << 20, "{}", e.bytes);
        assert_eq!(check(&e, 64 << 20, "test"), None);
    }

    #[test]
    fn a_hundred_million_pods_are_refused_naming_the_pods() {
        let text = BASE_EXPERIMENT.replace("pods = 10", "pods = 100000000");
        let e = estimate(&experiment(&text));
        let (field, msg) = check(&e, 24 << 30, "this machine's memory").unwrap();
        assert_eq!(field.to_string(), "service[backend].version[v1].pods");
        assert!(msg.contains("100000000") && msg.contains("TB"), "{msg}");
    }

    #[test]
    fn a_billion_qps_is_refused_naming_the_rate() {
        let text = BASE_EXPERIMENT.replace("qps = 1000", "qps = 1e9");
        let e = estimate(&experiment(&text));
        let (field, msg) = check(&e, 4 << 30, "this machine's memory").unwrap();
        assert_eq!(field.to_string(), "load.qps");
        assert!(msg.contains("qps × mean latency"), "{msg}");
    }

    #[test]
    fn route_and_per_try_timeouts_count_the_timers_they_keep_queued() {
        let plain = estimate(&experiment(BASE_EXPERIMENT)).bytes;
        let text = format!(
            "{BASE_EXPERIMENT}{}",
            r#"
[[virtualService]]
name = "backend"
hosts = ["backend"]
[[virtualService.http]]
timeout = "60s"
retries = { attempts = 2, perTryTimeout = "10s" }
"#
        );
        let timed = estimate(&experiment(&text)).bytes;
        // 1,000 qps × 70 s of timers × 96 bytes, but the run lasts 10 s.
        assert_eq!(timed - plain, 1_000 * 10 * TIMER);
        let long = estimate(&experiment(
            &text.replace("\"10s\"\n[[service]]", "\"300s\"\n[[service]]"),
        ));
        assert_eq!(long.bytes - plain, 1_000 * 70 * TIMER);
    }

    #[test]
    fn sizes_read_with_suffixes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("lots"), None);
    }
}
