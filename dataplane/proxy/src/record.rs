//! `--record DIR`: the run directory (`docs/run-format.md`) from live
//! traffic, written through `mesh-rundir` exactly as the simulator writes
//! it, so `meshsim replay DIR` and users' tools read a real proxy as they
//! read a simulated one.
//!
//! - `timeseries.csv`: per window, one row per endpoint of the config the
//!   proxy started with (address as its name, service, `version` label):
//!   attempts, successes, errors, attempt latency p50/p99, how many
//!   listeners have it ejected, attempts in flight.
//! - `calls.csv`: per window, one row per listener (source `downstream`,
//!   host the listener address): what clients were answered.
//! - `events.csv`: ejections, returns, applied configs, and overflows (one
//!   row per listener and cluster per window, `count=N`), as the simulator
//!   writes them.
//! - `summary.csv` when the proxy stops: totals, latency percentiles of the
//!   answers, ejections and ejected host-seconds (`seed` 0, and no user
//!   version-switch counts: the proxy does not know users).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Duration;

use mesh_engine::ResponseFlags;
use mesh_engine::Time;
use mesh_rundir::{
    CallCounts, CallRow, EventRow, Histogram, Overflows, RunWriter, Summary, WindowRow,
};
use rustc_hash::FxHashMap;

/// An event waiting for its window to be written.
#[derive(Clone, Debug)]
pub(crate) struct RecEvent {
    pub(crate) time: Time,
    pub(crate) kind: &'static str,
    pub(crate) proxy: String,
    pub(crate) endpoint: String,
    pub(crate) detail: String,
}

#[derive(Clone, Debug, Default)]
struct EndpointWindow {
    requests: u64,
    successes: u64,
    errors: u64,
    latency: Histogram,
}

#[derive(Clone, Debug, Default)]
struct EdgeWindow {
    counts: CallCounts,
    latency: Histogram,
}

/// The recorder of a running proxy.
#[derive(Debug)]
pub(crate) struct Recorder {
    writer: RunWriter,
    window: Duration,
    /// End of the current window.
    pub(crate) window_end: Time,
    /// (address, service, version) of each recorded endpoint.
    endpoints: Vec<(String, String, String)>,
    index: FxHashMap<String, usize>,
    windows: Vec<EndpointWindow>,
    edges: Vec<(String, EdgeWindow)>,
    events: Vec<RecEvent>,
    /// This window's overflows per (listener, cluster).
    overflows: Overflows,
    summary: Summary,
    answers: Histogram,
    /// When each (listener, cluster, endpoint) was ejected, while it is.
    ejected_since: BTreeMap<(String, String, String), Time>,
    ejected_ns: u128,
    error: Option<io::Error>,
}

impl Recorder {
    /// Creates the run directory. `endpoints`: (address, service, version)
    /// of every endpoint to record; `listeners`: their addresses.
    pub(crate) fn create(
        dir: &Path,
        window: Duration,
        endpoints: Vec<(String, String, String)>,
        listeners: Vec<String>,
    ) -> io::Result<Self> {
        let writer = RunWriter::create(dir)?;
        let index = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.0.clone(), i))
            .collect();
        Ok(Self {
            writer,
            window,
            window_end: Time::ZERO + window,
            windows: vec![EndpointWindow::default(); endpoints.len()],
            endpoints,
            index,
            edges: listeners
                .into_iter()
                .map(|l| (l, EdgeWindow::default()))
                .collect(),
            events: Vec::new(),
            overflows: Overflows::default(),
            summary: Summary {
                experiment: "meshproxy-record".to_owned(),
                ..Summary::default()
            },
            answers: Histogram::default(),
            ejected_since: BTreeMap::new(),
            ejected_ns: 0,
            error: None,
        })
    }

    /// An upstream attempt ended: `status` 0 for no status.
    pub(crate) fn attempt(&mut self, address: &str, status: u16, latency: Duration) {
        let Some(&i) = self.index.get(address) else {
            return;
        };
        let w = &mut self.windows[i];
        w.requests += 1;
        if status != 0 && status < 500 {
            w.successes += 1;
        } else {
            w.errors += 1;
        }
        w.latency.record_us(micros(latency));
    }

    /// A downstream answer on listener `li`.
    pub(crate) fn answer(
        &mut self,
        li: usize,
        status: u16,
        flags: ResponseFlags,
        latency: Duration,
    ) {
        self.summary.add_answer(status, flags);
        let us = micros(latency);
        self.answers.record_us(us);
        if let Some((_, e)) = self.edges.get_mut(li) {
            e.counts.add(status, flags);
            e.latency.record_us(us);
        }
    }

    /// An engine event of listener `proxy`.
    pub(crate) fn event(&mut self, e: RecEvent) {
        match e.kind {
            "overflow" => {
                self.overflows.add(e.time.as_nanos(), &e.proxy, &e.endpoint);
                return;
            }
            "eject" => {
                self.summary.ejections += 1;
                self.ejected_since.insert(
                    (e.proxy.clone(), e.detail_cluster(), e.endpoint.clone()),
                    e.time,
                );
            }
            "return" => {
                if let Some(t) = self.ejected_since.remove(&(
                    e.proxy.clone(),
                    e.detail_cluster(),
                    e.endpoint.clone(),
                )) {
                    self.ejected_ns += u128::from((e.time - t).as_nanos() as u64);
                }
            }
            _ => {}
        }
        self.events.push(e);
    }

    /// Writes the window ending at `window_end` with the endpoints' state
    /// (`ejected_by`, `active_requests` per endpoint index) and starts the
    /// next one.
    pub(crate) fn close_window(&mut self, state: &[(u32, u32)]) {
        let t = self.window_end;
        let mut events = std::mem::take(&mut self.events);
        for (first, proxy, cluster, detail) in self.overflows.take(self.window) {
            events.push(RecEvent {
                time: Time::from_nanos(first),
                kind: "overflow",
                proxy,
                endpoint: cluster,
                detail,
            });
        }
        events.sort_by_key(|e| e.time);
        let mut result = Ok(());
        for e in &events {
            result = result.and_then(|()| {
                self.writer.event(&EventRow {
                    time_ns: e.time.as_nanos(),
                    kind: e.kind,
                    proxy: &e.proxy,
                    endpoint: &e.endpoint,
                    detail: &e.detail,
                })
            });
        }
        for (i, (address, service, version)) in self.endpoints.iter().enumerate() {
            let w = &mut self.windows[i];
            let [p50, p99] = w.latency.quantiles_us([0.5, 0.99]).map(ms);
            w.latency.clear();
            let (ejected_by, active) = state.get(i).copied().unwrap_or((0, 0));
            result = result.and_then(|()| {
                self.writer.window(&WindowRow {
                    time_ns: t.as_nanos(),
                    endpoint: address.as_str(),
                    service: service.as_str(),
                    version: version.as_str(),
                    requests: w.requests,
                    successes: w.successes,
                    errors: w.errors,
                    latency_ms_p50: p50,
                    latency_ms_p99: p99,
                    ejected_by,
                    active_requests: active,
                })
            });
            w.requests = 0;
            w.successes = 0;
            w.errors = 0;
        }
        for (listener, e) in &mut self.edges {
            let [p50, p99] = e.latency.quantiles_us([0.5, 0.99]).map(ms);
            e.latency.clear();
            let counts = std::mem::take(&mut e.counts);
            result = result.and_then(|()| {
                self.writer.call(&CallRow {
                    time_ns: t.as_nanos(),
                    source: "downstream",
                    host: listener.as_str(),
                    counts,
                    latency_ms_p50: p50,
                    latency_ms_p99: p99,
                })
            });
        }
        result = result.and_then(|()| self.writer.flush());
        if let Err(e) = result
            && self.error.is_none()
        {
            eprintln!(
                "meshproxy: --record {}: cannot write: {e}; recording stops",
                self.writer.dir().display()
            );
            self.error = Some(e);
        }
        self.window_end = t + self.window;
    }

    /// (`ejected_by`, `active_requests`) of each recorded endpoint now.
    pub(crate) fn endpoint_state<E: std::ops::Deref<Target = mesh_engine::Engine>>(
        &self,
        engines: impl IntoIterator<Item = E>,
    ) -> Vec<(u32, u32)> {
        let mut state = vec![(0u32, 0u32); self.endpoints.len()];
        for engine in engines {
            let engine = &*engine;
            let mut ejected = vec![false; self.endpoints.len()];
            for c in 0..engine.cluster_count() {
                let id = mesh_engine::ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
                for e in 0..engine.endpoint_count(id) {
                    let up = engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                    let Some(&i) = self.index.get(engine.endpoint_address(up)) else {
                        continue;
                    };
                    ejected[i] |= engine.ejection(up).is_some();
                    state[i].1 += engine.active_requests(up);
                }
            }
            for (i, e) in ejected.into_iter().enumerate() {
                state[i].0 += u32::from(e);
            }
        }
        state
    }

    /// Whether writing failed (recording stopped).
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Writes `summary.csv` at `now` (the end of the recording).
    pub(crate) fn finish(mut self, now: Time) -> io::Result<()> {
        for t in self.ejected_since.values() {
            self.ejected_ns += u128::from((now - *t).as_nanos() as u64);
        }
        let s = &mut self.summary;
        s.duration_ns = now.as_nanos();
        s.latency_ms = self.answers.quantiles_us([0.5, 0.9, 0.99, 0.999]).map(ms);
        #[allow(clippy::cast_precision_loss)]
        {
            s.ejected_host_seconds = self.ejected_ns as f64 / 1e9;
        }
        let summary = self.summary.clone();
        self.writer.finish(&summary, None)
    }
}

impl RecEvent {
    /// The cluster an eject/return event names (in `detail` as `cluster=`).
    fn detail_cluster(&self) -> String {
        self.detail
            .split(' ')
            .find_map(|kv| kv.strip_prefix("cluster="))
            .unwrap_or("")
            .to_owned()
    }
}

/// (address, service, version) of every endpoint of the config's
/// services, once each, in file order: the recording's endpoints.
pub(crate) fn endpoints_of(mesh: &mesh_engine::config::Config) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for s in &mesh.services {
        let service = s.host.split('.').next().unwrap_or(&s.host).to_owned();
        for e in &s.endpoints {
            if out.iter().any(|o| o.0 == e.address) {
                continue;
            }
            let version = e.labels.get("version").cloned().unwrap_or_default();
            out.push((e.address.clone(), service.clone(), version));
        }
    }
    out
}

/// A duration in whole microseconds, as the histograms count.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds as milliseconds.
fn ms(us: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64 / 1000.0;
    v
}
