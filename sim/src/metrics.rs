//! Metrics gathered online: totals per status and response flag, a latency
//! histogram, per-window per-pod series, and the event log. Recording a
//! request allocates nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_engine::{ResponseFlags, Time};
use rustc_hash::FxHashMap;

use mesh_rundir::{CallCounts, CallRow, Histogram, RunWriter, Samples, WindowRow};

use crate::model::Model;

/// One row of `events.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    /// When.
    pub time: Time,
    /// `eject`, `return`, `config_push`, `config_applied`, `fault_start`,
    /// `fault_end`, `overflow`, `panic_start`, `panic_end`, `load_change`.
    pub kind: &'static str,
    /// The proxy it happened in (empty for world events).
    pub proxy: String,
    /// The endpoint (pod name) or cluster concerned.
    pub endpoint: String,
    /// Details, `key=value` separated by spaces.
    pub detail: String,
}

/// Answers on one edge of the call graph (the load, or a call a workload
/// makes): what the calling application saw.
pub type EdgeCounts = CallCounts;

/// Whether Envoy's comma-separated flags `all` (`UT,URX`) include `f`.
fn has_flag(all: &str, f: &str) -> bool {
    all == f || all.split(',').any(|x| x == f)
}

#[derive(Default)]
struct EdgeWindow {
    counts: EdgeCounts,
    latency: Histogram,
}

#[derive(Default)]
struct PodWindow {
    requests: u64,
    successes: u64,
    errors: u64,
    /// One value per attempt, kept as its bucket: a pod's window is
    /// touched at one place per attempt (many pods, few attempts each).
    latency: Samples,
}

/// All metrics of one run.
pub struct Metrics {
    /// Final answers recorded.
    pub requests: u64,
    /// Final answers by status (index = status code).
    pub by_status: Vec<u64>,
    /// Final answers by their Envoy response flags, as the access log
    /// prints them (`UT,DI`).
    pub by_flag: BTreeMap<String, u64>,
    /// Latency of final answers (the load edge's windows, merged as each
    /// closes: complete once the run is over).
    pub latency: Histogram,
    /// The answer counters of `summary.csv` (requests, successes, 5xx,
    /// flag columns), counted as the proxy's recorder counts them.
    totals: mesh_rundir::Summary,
    /// Ejections (over all proxies).
    pub ejections: u64,
    /// Sum over ejections of the time ejected, in nanoseconds.
    pub ejected_host_ns: u128,
    /// The part of it when the ejected pod was healthy, in nanoseconds.
    pub healthy_ejected_ns: u128,
    /// Attempts that reached a pod while it was bad.
    pub bad_pod_requests: u64,
    /// Per bad episode: the time to its first ejection (or to its end).
    pub eject_delays_ns: Vec<u64>,
    /// Bad episodes of each pod, from the timeline.
    health: Vec<Health>,
    /// Closed windows, when kept in memory (see [`Metrics::stream_to`]).
    pub windows: Vec<WindowRow>,
    /// Event log, when kept in memory, in time order.
    pub events: Vec<EventRow>,
    /// The edges of the call graph: 0 is the load, then every call of
    /// every version (see [`crate::Edge`]).
    pub edges: Vec<crate::Edge>,
    /// Totals per edge over the run (its windows' counts, added as each
    /// closes: complete once the run is over).
    pub edge_totals: Vec<EdgeCounts>,
    /// Closed windows of every edge, when kept in memory.
    pub call_windows: Vec<CallRow>,
    edge_windows: Vec<EdgeWindow>,
    /// Users (of the load) who were served by more than one version of a
    /// service over the run: the "flips" of sticky sessions.
    pub users_switched_version: u64,
    /// Times any user was served by another version than the last time.
    pub version_switches: u64,
    /// Last version (index into the (service, version) pairs) per user.
    user_version: Vec<u32>,
    user_switched: Vec<bool>,
    /// (service, version) index of each pod.
    pod_version: Vec<u32>,
    pods: Vec<PodWindow>,
    pod_names: Vec<String>,
    pod_services: Vec<String>,
    pod_versions: Vec<String>,
    /// Where closed windows and events go; in memory when `None`.
    writer: Option<RunWriter>,
    /// The first error writing them (the run goes on; reported at the end).
    write_error: Option<std::io::Error>,
    /// Events of the current window: sorted and written when it closes.
    pending: Vec<EventRow>,
    ejected_by: Vec<u32>,
    /// Open ejections per (proxy, pod), oldest first (a proxy can eject one
    /// pod in two clusters: a subset's and the service's).
    eject_since: FxHashMap<(usize, usize), Vec<Time>>,
    /// This window's overflows, one event per proxy and cluster.
    overflows: mesh_rundir::Overflows,
    window: Duration,
}

/// A pod's bad episodes: from a fault of the timeline (fail, slow, crash)
/// to its `recover`.
#[derive(Default)]
struct Health {
    /// (start, end) of each episode; the last may be open.
    episodes: Vec<(Time, Option<Time>)>,
    /// Whether the open episode has seen an ejection.
    ejected: bool,
}

impl Health {
    fn open(&self) -> Option<Time> {
        match self.episodes.last() {
            Some((start, None)) => Some(*start),
            _ => None,
        }
    }

    /// Nanoseconds of `[from, to)` when the pod was bad.
    fn bad_ns(&self, from: Time, to: Time) -> u128 {
        self.episodes
            .iter()
            .map(|&(s, e)| {
                let (s, e) = (s.max(from), e.unwrap_or(to).min(to));
                if e > s { (e - s).as_nanos() } else { 0 }
            })
            .sum()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(model: &Model) -> Self {
        let n = model.pods.len();
        let mut versions: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        let pod_version = model
            .pods
            .iter()
            .map(|p| {
                let next = u32::try_from(versions.len()).unwrap_or(u32::MAX);
                *versions
                    .entry((p.service.as_str(), p.version.as_str()))
                    .or_insert(next)
            })
            .collect();
        let users = model.load.users as usize;
        Self {
            users_switched_version: 0,
            version_switches: 0,
            user_version: vec![u32::MAX; users],
            user_switched: vec![false; users],
            pod_version,
            requests: 0,
            by_status: vec![0; 600],
            by_flag: BTreeMap::new(),
            latency: Histogram::default(),
            totals: mesh_rundir::Summary::default(),
            ejections: 0,
            ejected_host_ns: 0,
            healthy_ejected_ns: 0,
            bad_pod_requests: 0,
            eject_delays_ns: Vec::new(),
            health: (0..n).map(|_| Health::default()).collect(),
            windows: Vec::new(),
            events: Vec::new(),
            edges: model.calls.edges.clone(),
            edge_totals: vec![EdgeCounts::default(); model.calls.edges.len()],
            call_windows: Vec::new(),
            edge_windows: (0..model.calls.edges.len())
                .map(|_| EdgeWindow::default())
                .collect(),
            pods: (0..n).map(|_| PodWindow::default()).collect(),
            pod_names: model.pods.iter().map(|p| p.name.clone()).collect(),
            pod_services: model.pods.iter().map(|p| p.service.clone()).collect(),
            pod_versions: model.pods.iter().map(|p| p.version.clone()).collect(),
            writer: None,
            write_error: None,
            pending: Vec::new(),
            ejected_by: vec![0; n],
            eject_since: FxHashMap::default(),
            overflows: mesh_rundir::Overflows::default(),
            window: model.window,
        }
    }

    /// A final answer of the load. (Its latency is the load edge's, edge
    /// 0, recorded by [`Metrics::edge_answer`]: each window's joins
    /// `latency` when it closes.)
    #[inline(always)]
    pub(crate) fn finish_request(&mut self, status: u16, flags: ResponseFlags) {
        self.requests += 1;
        self.totals.add_answer(status, flags);
        if let Some(c) = self.by_status.get_mut(usize::from(status)) {
            *c += 1;
        }
        if !flags.is_empty() {
            // Envoy's form (`UT,DI`); a new key allocates once.
            let mut buf = [0; 48];
            let key = flags.write_to(&mut buf);
            match self.by_flag.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    self.by_flag.insert(key.to_owned(), 1);
                }
            }
        }
    }

    /// An answer on `edge` reached the calling application.
    #[inline(always)]
    pub(crate) fn edge_answer(
        &mut self,
        edge: u32,
        status: u16,
        flags: ResponseFlags,
        latency_ns: u64,
    ) {
        // Counted in the window; the window's counts join the edge's totals
        // when it closes.
        let w = &mut self.edge_windows[edge as usize];
        w.counts.add(status, flags);
        w.latency.record_us(latency_ns / 1_000);
    }

    /// The calling application gave up on a call on `edge` after `latency`.
    pub(crate) fn edge_app_timeout(&mut self, edge: u32, latency: Duration) {
        let w = &mut self.edge_windows[edge as usize];
        w.counts.requests += 1;
        w.counts.app_timeouts += 1;
        w.latency
            .record_us(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// A user's request was answered by `pod` (the last attempt's).
    pub(crate) fn user_served(&mut self, user: usize, pod: usize) {
        let v = self.pod_version[pod];
        let Some(last) = self.user_version.get_mut(user) else {
            return;
        };
        if *last != u32::MAX && *last != v {
            self.version_switches += 1;
            if !self.user_switched[user] {
                self.user_switched[user] = true;
                self.users_switched_version += 1;
            }
        }
        *last = v;
    }

    #[inline(always)]
    pub(crate) fn attempt(&mut self, pod: usize) {
        self.pods[pod].requests += 1;
        if self.health[pod].open().is_some() {
            self.bad_pod_requests += 1;
        }
    }

    /// A fault of the timeline starts (`bad`) or ends on a pod.
    pub(crate) fn pod_health(&mut self, now: Time, pod: usize, bad: bool) {
        let h = &mut self.health[pod];
        match (h.open(), bad) {
            (None, true) => {
                h.episodes.push((now, None));
                // Already out (a false positive before it went bad): no delay.
                h.ejected = self.ejected_by[pod] > 0;
                if h.ejected {
                    self.eject_delays_ns.push(0);
                }
            }
            (Some(start), false) => {
                if let Some(last) = h.episodes.last_mut() {
                    last.1 = Some(now);
                }
                if !h.ejected {
                    self.eject_delays_ns
                        .push(u64::try_from((now - start).as_nanos()).unwrap_or(u64::MAX));
                }
            }
            _ => {}
        }
    }

    /// Closes an ejection of `pod` that lasted `[since, until)`.
    fn ejection_over(&mut self, pod: usize, since: Time, until: Time) {
        let total = (until - since).as_nanos();
        self.ejected_host_ns += total;
        self.healthy_ejected_ns += total - self.health[pod].bad_ns(since, until);
    }

    #[inline(always)]
    pub(crate) fn attempt_result(&mut self, pod: usize, status: u16, latency_ns: u64) {
        let w = &mut self.pods[pod];
        if status < 500 {
            w.successes += 1;
        } else {
            w.errors += 1;
        }
        w.latency.record_us(latency_ns / 1_000);
    }

    pub(crate) fn ejected(&mut self, now: Time, proxy: usize, pod: Option<usize>) {
        self.ejections += 1;
        if let Some(pod) = pod {
            self.ejected_by[pod] += 1;
            self.eject_since.entry((proxy, pod)).or_default().push(now);
            let h = &mut self.health[pod];
            if let Some(start) = h.open()
                && !h.ejected
            {
                h.ejected = true;
                self.eject_delays_ns
                    .push(u64::try_from((now - start).as_nanos()).unwrap_or(u64::MAX));
            }
        }
    }

    pub(crate) fn returned(&mut self, now: Time, proxy: usize, pod: Option<usize>) {
        if let Some(pod) = pod {
            self.ejected_by[pod] = self.ejected_by[pod].saturating_sub(1);
            let since = self
                .eject_since
                .get_mut(&(proxy, pod))
                .filter(|v| !v.is_empty())
                .map(|v| v.remove(0));
            if let Some(since) = since {
                self.ejection_over(pod, since, now);
            }
        }
    }

    pub(crate) fn overflow(&mut self, now: Time, proxy: &str, cluster: &str) {
        self.overflows.add(now.as_nanos(), proxy, cluster);
    }

    pub(crate) fn event(&mut self, row: EventRow) {
        self.pending.push(row);
    }

    /// Writes closed windows and events to `writer` as the run goes, rather
    /// than keeping them: memory stays flat in the run's length.
    pub(crate) fn stream_to(&mut self, writer: RunWriter) {
        self.writer = Some(writer);
    }

    /// The stream's writer back, with the first write error if any.
    pub(crate) fn take_writer(&mut self) -> Option<Result<RunWriter, std::io::Error>> {
        let w = self.writer.take()?;
        Some(match self.write_error.take() {
            Some(e) => Err(e),
            None => Ok(w),
        })
    }

    fn keep(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.write_error.get_or_insert(e);
        }
    }

    /// Writes (or keeps) this window's events, in time order.
    fn flush_events(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|e| e.time);
        if let Some(w) = &mut self.writer {
            let mut r = Ok(());
            for e in &pending {
                if r.is_ok() {
                    r = w.event(&mesh_rundir::EventRow {
                        time_ns: e.time.as_nanos(),
                        kind: e.kind,
                        proxy: &e.proxy,
                        endpoint: &e.endpoint,
                        detail: &e.detail,
                    });
                }
            }
            self.keep(r);
            pending.clear();
            self.pending = pending;
        } else {
            self.events.append(&mut pending);
            self.pending = pending;
        }
    }

    pub(crate) fn close_window(&mut self, now: Time, in_flight: &[u32]) {
        let mut result = Ok(());
        for (i, w) in self.pods.iter_mut().enumerate() {
            let [p50, p99] = w.latency.quantiles_us([0.5, 0.99]);
            let row = WindowRow {
                time_ns: now.as_nanos(),
                endpoint: self.pod_names[i].as_str(),
                service: self.pod_services[i].as_str(),
                version: self.pod_versions[i].as_str(),
                requests: w.requests,
                successes: w.successes,
                errors: w.errors,
                latency_ms_p50: ms(p50),
                latency_ms_p99: ms(p99),
                ejected_by: self.ejected_by[i],
                active_requests: in_flight.get(i).copied().unwrap_or(0),
            };
            match &mut self.writer {
                Some(out) => {
                    if result.is_ok() {
                        result = out.window(&row);
                    }
                }
                None => self.windows.push(WindowRow {
                    time_ns: row.time_ns,
                    endpoint: row.endpoint.to_owned(),
                    service: row.service.to_owned(),
                    version: row.version.to_owned(),
                    requests: row.requests,
                    successes: row.successes,
                    errors: row.errors,
                    latency_ms_p50: row.latency_ms_p50,
                    latency_ms_p99: row.latency_ms_p99,
                    ejected_by: row.ejected_by,
                    active_requests: row.active_requests,
                }),
            }
            w.requests = 0;
            w.successes = 0;
            w.errors = 0;
            w.latency.clear();
        }
        for (edge, w) in self.edge_windows.iter_mut().enumerate() {
            let e = &self.edges[edge];
            let [p50, p99] = w.latency.quantiles_us([0.5, 0.99]);
            let row = CallRow {
                time_ns: now.as_nanos(),
                source: e.source.as_str(),
                host: e.host.as_str(),
                counts: w.counts,
                latency_ms_p50: ms(p50),
                latency_ms_p99: ms(p99),
            };
            match &mut self.writer {
                Some(out) => {
                    if result.is_ok() {
                        result = out.call(&row);
                    }
                }
                None => self.call_windows.push(CallRow {
                    time_ns: row.time_ns,
                    source: row.source.to_owned(),
                    host: row.host.to_owned(),
                    counts: row.counts,
                    latency_ms_p50: row.latency_ms_p50,
                    latency_ms_p99: row.latency_ms_p99,
                }),
            }
            self.edge_totals[edge].merge(&w.counts);
            if edge == 0 {
                // The load's answers: the run's latency.
                self.latency.merge(&w.latency);
            }
            w.counts = EdgeCounts::default();
            w.latency.clear();
        }
        self.keep(result);
        for (first, proxy, cluster, detail) in self.overflows.take(self.window) {
            self.pending.push(EventRow {
                time: Time::from_nanos(first),
                kind: "overflow",
                proxy,
                endpoint: cluster,
                detail,
            });
        }
        self.flush_events();
    }

    pub(crate) fn finish(&mut self, end: Time, in_flight: &[u32]) {
        if self.pods.iter().any(|w| w.requests > 0)
            || self.edge_windows.iter().any(|w| w.counts.requests > 0)
            || !self.overflows.is_empty()
        {
            self.close_window(end, in_flight);
        }
        // Sums: the map's order does not matter.
        for ((_, pod), open) in std::mem::take(&mut self.eject_since) {
            for since in open {
                self.ejection_over(pod, since, end);
            }
        }
        for pod in 0..self.health.len() {
            self.pod_health(end, pod, false);
        }
        self.flush_events();
    }

    /// The run's totals, as a `summary.csv` row.
    pub fn summary(&self, model: &Model) -> mesh_rundir::Summary {
        let l = &self.latency;
        #[allow(clippy::cast_precision_loss)]
        let ejected_host_seconds = self.ejected_host_ns as f64 / 1e9;
        #[allow(clippy::cast_precision_loss)]
        mesh_rundir::Summary {
            experiment: model.name.clone(),
            seed: model.seed,
            duration_ns: model.duration.as_nanos(),
            latency_ms: [0.5, 0.9, 0.99, 0.999].map(|q| ms(l.quantile_us(q))),
            ejections: self.ejections,
            ejected_host_seconds,
            users_switched_version: self.users_switched_version,
            version_switches: self.version_switches,
            healthy_ejected_host_seconds: self.healthy_ejected_ns as f64 / 1e9,
            eject_delay_s: (!self.eject_delays_ns.is_empty()).then(|| {
                let sum: u128 = self.eject_delays_ns.iter().map(|&d| u128::from(d)).sum();
                sum as f64 / self.eject_delays_ns.len() as f64 / 1e9
            }),
            bad_pod_requests: self.bad_pod_requests,
            ..self.totals.clone()
        }
    }

    /// Final answers with a status below 400.
    pub fn successes(&self) -> u64 {
        self.totals.successes
    }

    /// Final answers with a 5xx status.
    pub fn errors_5xx(&self) -> u64 {
        self.totals.errors_5xx
    }

    /// Answers with this response flag.
    pub fn flag(&self, f: &str) -> u64 {
        self.by_flag
            .iter()
            .filter(|(all, _)| has_flag(all, f))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Microseconds as milliseconds.
pub(crate) fn ms(us: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64 / 1000.0;
    v
}
