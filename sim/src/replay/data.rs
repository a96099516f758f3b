//! A run directory loaded for replay: what every panel needs, indexed by
//! window. `timeseries.csv` rows are parsed one window at a time (the
//! current one, plus small per-window aggregates kept as they are met), so
//! opening a long run with many endpoints is quick.

use std::path::Path;

use mesh_rundir::{CallCounts, EventRow, ReadError, RunDir, Timeseries, WindowRow};

/// One endpoint (pod) of the run, in `timeseries.csv`'s order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its version (subset).
    pub version: String,
    /// Index into [`Replay::subsets`].
    pub subset: usize,
}

/// One edge of the call graph (`calls.csv`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The caller.
    pub source: String,
    /// The authority called.
    pub host: String,
}

/// What an edge carried in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EdgeWindow {
    /// Counts.
    pub counts: CallCounts,
    /// 99th percentile latency (ms).
    pub latency_ms_p99: f64,
}

/// An ejection of an endpoint by one proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ejection {
    /// The proxy.
    pub proxy: String,
    /// When it started (ns).
    pub start_ns: u64,
    /// Its planned length (ns), from the event's `duration=`.
    pub planned_ns: u64,
    /// When it returned (ns), if it did.
    pub returned_ns: Option<u64>,
}

/// Per-window totals of `timeseries.csv`, kept once computed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowAgg {
    /// Attempts per subset.
    pub per_subset: Vec<u64>,
    /// All attempts.
    pub requests: u64,
    /// Failed attempts.
    pub errors: u64,
    /// The worst endpoint's p99 (ms).
    pub worst_p99_ms: f64,
}

/// A loaded run.
#[derive(Debug)]
pub struct Replay {
    /// The run's name (the experiment's).
    pub name: String,
    /// Its seed, as written.
    pub seed: String,
    /// Length of the run (ns).
    pub duration_ns: u64,
    /// Length of a window (ns).
    pub window_ns: u64,
    /// End of every window (ns).
    pub times: Vec<u64>,
    /// The tuned values, `key=value` (outlier detection, weights, swept values).
    pub tuned: Vec<String>,
    /// Endpoints, as in `timeseries.csv`.
    pub endpoints: Vec<Endpoint>,
    /// (service, version) pairs, in order of first appearance.
    pub subsets: Vec<(String, String)>,
    /// The event log, in time order.
    pub events: Vec<EventRow>,
    /// Window index of each event (the window it falls in).
    pub event_window: Vec<usize>,
    /// Edges of the call graph; edge 0 is the load when there is one.
    pub edges: Vec<Edge>,
    /// `edge_windows[w * edges.len() + e]`.
    edge_windows: Vec<EdgeWindow>,
    /// Ejections per endpoint, in time order.
    pub ejections: Vec<Vec<Ejection>>,
    timeseries: Timeseries,
    aggs: Vec<Option<WindowAgg>>,
    current: Option<(usize, Vec<WindowRow>)>,
}

impl Replay {
    /// Opens and indexes the run directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, ReadError> {
        let run = RunDir::open(dir)?;
        let times: Vec<u64> = run.timeseries.windows.iter().map(|w| w.time_ns).collect();
        let first = run.timeseries.rows(0)?;
        let mut subsets: Vec<(String, String)> = Vec::new();
        let endpoints = first
            .iter()
            .map(|r| {
                let key = (r.service.clone(), r.version.clone());
                let subset = subsets.iter().position(|s| *s == key).unwrap_or_else(|| {
                    subsets.push(key);
                    subsets.len() - 1
                });
                Endpoint {
                    name: r.endpoint.clone(),
                    service: r.service.clone(),
                    version: r.version.clone(),
                    subset,
                }
            })
            .collect::<Vec<_>>();
        let s = &run.summary;
        let name = s.get(0, "experiment").unwrap_or("").to_owned();
        let seed = s.get(0, "seed").unwrap_or("").to_owned();
        let duration_ns = s
            .get(0, "duration_s")
            .and_then(mesh_rundir::parse_secs)
            .unwrap_or_else(|| times.last().copied().unwrap_or(0));
        let window_ns = match times.as_slice() {
            [a, b, ..] => b - a,
            [a] => *a,
            [] => 1_000_000_000,
        }
        .max(1);
        // Edges in order of first appearance; dense per-window table.
        let mut edges: Vec<Edge> = Vec::new();
        for c in &run.calls {
            if !edges
                .iter()
                .any(|e| e.source == c.source && e.host == c.host)
            {
                edges.push(Edge {
                    source: c.source.clone(),
                    host: c.host.clone(),
                });
            }
        }
        let mut edge_windows = vec![EdgeWindow::default(); times.len() * edges.len()];
        for c in &run.calls {
            let (Ok(w), Some(e)) = (
                times.binary_search(&c.time_ns),
                edges
                    .iter()
                    .position(|e| e.source == c.source && e.host == c.host),
            ) else {
                continue;
            };
            edge_windows[w * edges.len() + e] = EdgeWindow {
                counts: c.counts,
                latency_ms_p99: c.latency_ms_p99,
            };
        }
        let event_window = run
            .events
            .iter()
            .map(|e| {
                times
                    .partition_point(|&t| t < e.time_ns)
                    .min(times.len().saturating_sub(1))
            })
            .collect();
        let ejections = ejections(&endpoints, &run.events);
        let mut tuned = swept_values(&run.summary);
        if let Some(text) = &run.experiment {
            tuned.extend(tuned_values(text));
        }
        let n = times.len();
        let mut replay = Self {
            name,
            seed,
            duration_ns,
            window_ns,
            times,
            tuned,
            endpoints,
            subsets,
            events: run.events,
            event_window,
            edges,
            edge_windows,
            ejections,
            timeseries: run.timeseries,
            aggs: vec![None; n],
            current: None,
        };
        replay.current = Some((0, first));
        Ok(replay)
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the run has no window.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The rows of window `w` (parsed now unless it is the current one).
    pub fn rows(&mut self, w: usize) -> Result<&[WindowRow], ReadError> {
        if self.current.as_ref().is_none_or(|(i, _)| *i != w) {
            let rows = self.timeseries.rows(w)?;
            self.current = Some((w, rows));
        }
        Ok(self.current.as_ref().map_or(&[], |(_, r)| r.as_slice()))
    }

    /// The rows of window `w` if they are the ones parsed last (see
    /// [`Replay::rows`]); empty otherwise.
    pub fn cached_rows(&self, w: usize) -> &[WindowRow] {
        match &self.current {
            Some((i, rows)) if *i == w => rows,
            _ => &[],
        }
    }

    /// Totals of window `w`, computed once.
    pub fn agg(&mut self, w: usize) -> Result<&WindowAgg, ReadError> {
        if self.aggs.get(w).is_some_and(Option::is_none) {
            let n = self.subsets.len();
            let subset_of: Vec<usize> = self.endpoints.iter().map(|e| e.subset).collect();
            let counts = self.timeseries.counts(w)?;
            let mut a = WindowAgg {
                per_subset: vec![0; n],
                ..WindowAgg::default()
            };
            for (i, r) in counts.iter().enumerate() {
                if let Some(&s) = subset_of.get(i) {
                    a.per_subset[s] += r.requests;
                }
                a.requests += r.requests;
                a.errors += r.errors;
                a.worst_p99_ms = a.worst_p99_ms.max(r.latency_ms_p99);
            }
            self.aggs[w] = Some(a);
        }
        Ok(self
            .aggs
            .get(w)
            .and_then(Option::as_ref)
            .unwrap_or(&EMPTY_AGG))
    }

    /// What edge `e` carried in window `w`.
    pub fn edge(&self, w: usize, e: usize) -> EdgeWindow {
        self.edge_windows
            .get(w * self.edges.len() + e)
            .copied()
            .unwrap_or_default()
    }

    /// What the clients saw in window `w`: (requests, successes, p99 ms),
    /// from the load's edge; `None` without `calls.csv` rows.
    pub fn client(&self, w: usize) -> Option<(u64, u64, f64)> {
        if self.edges.is_empty() {
            return None;
        }
        let e = self.edge(w, 0);
        Some((e.counts.requests, e.counts.successes, e.latency_ms_p99))
    }

    /// Ejections of endpoint `i` that started by `t` (ns).
    pub fn ejection_count(&self, i: usize, t: u64) -> usize {
        self.ejections
            .get(i)
            .map_or(0, |v| v.partition_point(|e| e.start_ns <= t))
    }

    /// If endpoint `i` is ejected by some proxy at `t`: the longest time
    /// left of its ejections (ns, 0 when due back at the next interval).
    pub fn ejected_left(&self, i: usize, t: u64) -> Option<u64> {
        self.ejections
            .get(i)?
            .iter()
            .filter(|e| e.start_ns <= t && e.returned_ns.is_none_or(|r| r > t))
            .map(|e| (e.start_ns + e.planned_ns).saturating_sub(t))
            .max()
    }

    /// Window index of the first window ending at or after `t` (ns).
    pub fn window_at(&self, t: u64) -> usize {
        self.times
            .partition_point(|&x| x < t)
            .min(self.len().saturating_sub(1))
    }
}

static EMPTY_AGG: WindowAgg = WindowAgg {
    per_subset: Vec::new(),
    requests: 0,
    errors: 0,
    worst_p99_ms: 0.0,
};

fn ejections(endpoints: &[Endpoint], events: &[EventRow]) -> Vec<Vec<Ejection>> {
    let mut out: Vec<Vec<Ejection>> = vec![Vec::new(); endpoints.len()];
    // Endpoint names sorted once, for lookups without a hash map.
    let mut by_name: Vec<(&str, usize)> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    by_name.sort_unstable();
    let find = |name: &str| {
        by_name
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|k| by_name[k].1)
    };
    for e in events {
        let Some(i) = find(&e.endpoint) else { continue };
        match e.kind.as_str() {
            "eject" => {
                let planned_ns = e
                    .detail
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("duration="))
                    .and_then(|d| mesh_engine::config::parse_duration(d).ok())
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                out[i].push(Ejection {
                    proxy: e.proxy.clone(),
                    start_ns: e.time_ns,
                    planned_ns,
                    returned_ns: None,
                });
            }
            "return" => {
                if let Some(open) = out[i]
                    .iter_mut()
                    .rev()
                    .find(|x| x.proxy == e.proxy && x.returned_ns.is_none())
                {
                    open.returned_ns = Some(e.time_ns);
                }
            }
            _ => {}
        }
    }
    out
}

/// The swept values of a sweep point's summary (`point` and the columns
/// before `format_version`), as `path=value`.
fn swept_values(summary: &mesh_rundir::SummaryTable) -> Vec<String> {
    let end = summary.column("format_version").unwrap_or(0);
    summary.columns[..end]
        .iter()
        .enumerate()
        .filter(|(_, c)| *c != "point")
        .filter_map(|(i, c)| Some(format!("{c}={}", summary.rows.first()?.get(i)?)))
        .collect()
}

/// What a user tunes, read from the experiment: each DestinationRule's
/// outlier detection and each VirtualService route's weights.
pub fn tuned_values(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let list = |key: &str| {
        table
            .get(key)
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for dr in list("destinationRule") {
        let host = dr.get("host").and_then(toml::Value::as_str).unwrap_or("?");
        let Some(od) = dr
            .get("trafficPolicy")
            .and_then(|t| t.get("outlierDetection"))
            .and_then(toml::Value::as_table)
        else {
            continue;
        };
        let mut parts = Vec::new();
        for (key, short) in [
            ("consecutive5xxErrors", "5xx"),
            ("consecutiveGatewayErrors", "gw"),
            ("interval", "interval"),
            ("baseEjectionTime", "base"),
            ("maxEjectionPercent", "max%"),
        ] {
            if let Some(v) = od.get(key) {
                parts.push(format!("{short}={}", crate::plan::value_text(v)));
            }
        }
        out.push(format!("{host}: {}", parts.join(" ")));
    }
    for vs in list("virtualService") {
        let Some(http) = vs.get("http").and_then(toml::Value::as_array) else {
            continue;
        };
        for route in http {
            let Some(dests) = route.get("route").and_then(toml::Value::as_array) else {
                continue;
            };
            if dests.len() < 2 {
                continue;
            }
            let split: Vec<String> = dests
                .iter()
                .map(|d| {
                    let dest = d.get("destination");
                    let host = dest
                        .and_then(|x| x.get("host"))
                        .and_then(toml::Value::as_str)
                        .unwrap_or("?");
                    let subset = dest
                        .and_then(|x| x.get("subset"))
                        .and_then(toml::Value::as_str)
                        .unwrap_or("");
                    let w = d
                        .get("weight")
                        .and_then(toml::Value::as_integer)
                        .unwrap_or(0);
                    if subset.is_empty() {
                        format!("{host} {w}")
                    } else {
                        format!("{subset} {w}")
                    }
                })
                .collect();
            let host = dests[0]
                .get("destination")
                .and_then(|x| x.get("host"))
                .and_then(toml::Value::as_str)
                .unwrap_or("?");
            out.push(format!("{host}: {}", split.join("/")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuned_values_name_outlier_settings_and_weights() {
        let t = r#"
[[destinationRule]]
name = "r"
host = "reviews"
trafficPolicy = { outlierDetection = { consecutive5xxErrors = 5, interval = "10s", baseEjectionTime = "30s", maxEjectionPercent = 10 } }
[[virtualService]]
name = "r"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "reviews", subset = "v1" }, weight = 90 }, { destination = { host = "reviews", subset = "v2" }, weight = 10 }]
"#;
        assert_eq!(
            tuned_values(t),
            [
                "reviews: 5xx=5 interval=10s base=30s max%=10",
                "reviews: v1 90/v2 10"
            ]
        );
    }

    #[test]
    fn an_ejection_lasts_until_its_proxy_returns_the_endpoint() {
        let endpoints = vec![Endpoint {
            name: "p".to_owned(),
            service: "s".to_owned(),
            version: "v1".to_owned(),
            subset: 0,
        }];
        let ev = |t: u64, kind: &str, proxy: &str, detail: &str| EventRow {
            time_ns: t * 1_000_000_000,
            kind: kind.to_owned(),
            proxy: proxy.to_owned(),
            endpoint: "p".to_owned(),
            detail: detail.to_owned(),
        };
        let events = [
            ev(60, "eject", "a", "reason=consecutive_5xx duration=30s"),
            ev(61, "eject", "b", "reason=consecutive_5xx duration=30s"),
            ev(100, "return", "a", ""),
        ];
        let e = ejections(&endpoints, &events);
        assert_eq!(e[0].len(), 2);
        assert_eq!(e[0][0].returned_ns, Some(100_000_000_000));
        assert_eq!(e[0][1].returned_ns, None);
        assert_eq!(e[0][1].planned_ns, 30_000_000_000);
    }
}
