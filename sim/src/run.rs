//! One simulated run: the event loop that drives one engine per modelled
//! proxy against modelled pods, in virtual time.
//!
//! A request's life: an arrival at a client proxy → `handle_request` (route,
//! fault, balancer) → after any injected delay, `admit` (circuit breaker) →
//! the pod serves it (concurrency slots, then a bounded queue) for a sampled
//! latency → the response goes to `handle_response` (outlier detection) →
//! `retry_decision` may schedule a retry after Envoy's back-off, picked by
//! `retry` → the final answer is recorded. Per-try and route timeouts race
//! the pod. Outlier ticks run at the engine's `poll_timeout`.
//!
//! The call graph: a pod whose version declares calls serves a request as a
//! *job*. It makes its calls through its own sidecar (its own engine, so its
//! own outlier detectors and breakers) — in order, or all at once — with the
//! inbound headers it propagates, then spends its own sampled latency, then
//! answers. The job holds the pod's concurrency slot throughout, which is
//! how a slow dependency fills its callers up. A call fails when its final
//! answer is ≥ 500 or the calling app's own timeout fires (the sidecar then
//! resets the upstream request: `Engine::cancel`); unless the call says
//! `onError = "ignore"`, the job stops at once (cancelling the calls still
//! in flight) and the pod answers 500 after its own latency. Pods never
//! learn that their caller gave up: abandoned work runs to its end.
//!
//! Nothing here reads a clock or an ambient RNG: every random draw comes
//! from a stream seeded by the run seed (arrivals, users, each pod's
//! latency and errors, each engine), so a run is a pure function of the
//! experiment and the seed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use mesh_engine::{
    Admission, Decision, Engine, EngineEvent, Outcome, Request, RequestState, ResponseFlag,
    RetryDecision, Time, Upstream,
};
use rand::RngExt as _;
use rand_pcg::Pcg64Mcg;
use rustc_hash::FxHashMap;

use crate::callgraph::{HeaderSet, MAX_CALLS, MAX_DEPTH, MAX_HEADERS};
use crate::metrics::{EventRow, Metrics};
use crate::model::{Action, Mode, Model, hit};
use crate::pools::Pools;
use crate::queue::{Class, EventQueue};

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The `maxEvents` guard was reached with work left.
    #[error(
        "the run reached maxEvents = {0} at t = {1} with events still queued; raise `maxEvents` or shorten `duration`"
    )]
    TooManyEvents(u64, Time),
    /// The thread pool could not be built.
    #[error("cannot start the worker threads: {0}")]
    Threads(String),
    /// The run directory could not be written.
    #[error("{0}: cannot write the run directory: {1}")]
    Write(String, String),
}

/// Kept small (16 bytes): the queue moves events around on every push and pop.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// The next open-loop arrival.
    Arrival,
    /// A closed-loop connection sends its next request.
    Connection { proxy: u32 },
    /// An injected delay is over: route the request now.
    Delayed { slot: u32, attempt: u32 },
    /// A retry's back-off is over: pick its host and send it.
    Retry { slot: u32, attempt: u32 },
    /// A pod finished serving an attempt.
    Served {
        slot: u32,
        attempt: u32,
        pod: u32,
        status: u16,
    },
    /// A crashed pod refused the connection.
    Refused { slot: u32, attempt: u32 },
    /// The per-try timeout of an attempt.
    TryTimeout { slot: u32, attempt: u32 },
    /// The route timeout of a request.
    RouteTimeout { slot: u32, generation: u32 },
    /// A proxy's outlier-detection tick.
    Tick { proxy: u32 },
    /// A timeline action.
    Timeline { index: u32 },
    /// A pushed config reaches a proxy.
    Apply { proxy: u32, index: u32 },
    /// The calling application's timeout of call `call` of a job.
    CallTimeout {
        job: u32,
        generation: u32,
        call: u16,
    },
    /// A local answer (a sidecar's reject or direct response) to call
    /// `call` of a job reaches the application (after any injected delay).
    CallAnswer {
        job: u32,
        generation: u32,
        call: u16,
        status: u16,
        flag: Option<ResponseFlag>,
    },
    /// A metrics window ends.
    Window,
}

/// Who is waiting for a request's answer.
#[derive(Clone, Copy, Debug)]
enum Origin {
    /// The load; `connection`: a closed-loop connection to wake when done;
    /// `user`: the user id index, `u32::MAX` without users.
    Load { connection: bool, user: u32 },
    /// Call `call` of job `job` (of that generation).
    Call {
        job: u32,
        generation: u32,
        call: u16,
    },
}

/// A request in flight (slab slot, reused).
#[derive(Clone, Copy, Debug)]
struct Req<'m> {
    /// Where it goes (kept to route it again after an injected delay).
    authority: &'m str,
    path: &'m str,
    /// An injected delay being waited out before the router runs.
    delay: Option<mesh_engine::Delay>,
    /// Waiting in its proxy's connection pool for a connection.
    pending_conn: bool,
    /// Requests already served by the connection the attempt runs on.
    conn_served: u32,
    live: bool,
    /// Bumped on reuse, so stale route timeouts are ignored.
    generation: u32,
    proxy: u32,
    origin: Origin,
    /// The call-graph edge it is counted under.
    edge: u32,
    /// It has headers (kept in `Run::headers`, for the pod that serves it
    /// to propagate and for routing after an injected delay).
    has_headers: bool,
    /// Calls above it (0 for the load).
    depth: u8,
    start: Time,
    state: Option<RequestState>,
    attempt: u32,
    pod: u32,
    upstream: Option<Upstream>,
    /// The attempt was admitted and has not been reported yet.
    outstanding: bool,
    /// Forwarded, waiting out an injected delay before admission.
    delayed: bool,
    /// A fault delay held it (Envoy's `DI` flag, logged whatever the answer).
    fault_delayed: bool,
    /// Its route's per-try timeout, read once when the router starts.
    per_try: Option<Duration>,
}

/// What `end` needs of a request once its slot is freed.
struct Ended {
    proxy: u32,
    origin: Origin,
    edge: u32,
    start: Time,
    pod: u32,
    fault_delayed: bool,
}

/// A pod serving one attempt of a request by making its calls (slab slot,
/// reused). Pods without calls need no job.
#[derive(Clone, Copy, Debug)]
struct Job {
    live: bool,
    /// Bumped on reuse, so stale call events are ignored.
    generation: u32,
    pod: u32,
    /// The attempt it answers.
    slot: u32,
    attempt: u32,
    workload: u32,
    /// The inbound request's headers.
    headers: HeaderSet,
    /// Depth of the calls it makes.
    depth: u8,
    /// Calls started so far (the next one to start, in sequential mode).
    next: u16,
    /// Bit `i`: call `i` is in flight.
    pending: u32,
    /// The request slot of each call in flight (`u32::MAX`: answered locally).
    reqs: [u32; MAX_CALLS],
    failed: bool,
    /// The pod's own latency and answer, drawn when it started serving.
    ns: u64,
    status: u16,
}

struct Pod {
    mode: Mode,
    in_flight: u32,
    waiting: VecDeque<(u32, u32)>,
    rng: Pcg64Mcg,
}

struct Proxy {
    engine: Engine,
    /// (cluster, endpoint) → pod index.
    pods_of: Vec<Vec<u32>>,
    /// The destination port of each call-graph edge's authority through
    /// this proxy (see `edge_ports`); recomputed when a push reaches it.
    edge_ports: Vec<u16>,
    tick_at: Option<Time>,
}

/// A run in progress.
pub struct Run<'m> {
    model: &'m Model,
    queue: EventQueue<Ev>,
    proxies: Vec<Proxy>,
    pods: Vec<Pod>,
    reqs: Vec<Req<'m>>,
    /// The headers of each request slot that has any (most have none: kept
    /// apart, the slot stays small).
    headers: Vec<HeaderSet>,
    /// HTTP/1.1 connection pools, one per (proxy, pod) that ever talked.
    pools: Pools,
    free: Vec<u32>,
    jobs: Vec<Job>,
    free_jobs: Vec<u32>,
    rng_arrivals: Pcg64Mcg,
    rng_users: Pcg64Mcg,
    qps: f64,
    next_proxy: usize,
    pushes: Vec<Arc<mesh_engine::config::Config>>,
    /// Metrics of the run.
    pub metrics: Metrics,
    events: u64,
    /// Requests of the load sent so far (`load.requests` caps it).
    sent: u64,
}

fn stream(seed: u64, a: u64, b: u64) -> Pcg64Mcg {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = || {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    Pcg64Mcg::new((u128::from(next()) << 64) | u128::from(next()))
}

fn pods_of(engine: &Engine, index: &FxHashMap<&str, u32>) -> Vec<Vec<u32>> {
    (0..engine.cluster_count())
        .map(|c| {
            let id = mesh_engine::ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            (0..engine.endpoint_count(id))
                .map(|e| {
                    let up = engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                    index
                        .get(engine.endpoint_address(up))
                        .copied()
                        .unwrap_or(u32::MAX)
                })
                .collect()
        })
        .collect()
}

impl<'m> Run<'m> {
    /// Sets up a run of `model`.
    pub fn new(model: &'m Model) -> Self {
        let seed = model.seed;
        let index: FxHashMap<&str, u32> = model
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| (p.address.as_str(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let proxies = model
            .proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let engine = Engine::new(
                    model.config.clone(),
                    p.spec.clone(),
                    seed ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
                );
                let pods_of = pods_of(&engine, &index);
                let edge_ports = edge_ports(&engine, &model.calls.edges);
                Proxy {
                    engine,
                    pods_of,
                    edge_ports,
                    tick_at: None,
                }
            })
            .collect();
        let pods = model
            .pods
            .iter()
            .enumerate()
            .map(|(i, _)| Pod {
                mode: Mode::Normal,
                in_flight: 0,
                waiting: VecDeque::new(),
                rng: stream(seed, 3, i as u64),
            })
            .collect();
        let pushes = model
            .timeline
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Push { config, .. } => Some(config.clone()),
                _ => None,
            })
            .collect();
        Self {
            model,
            queue: EventQueue::new(),
            proxies,
            pods,
            reqs: Vec::new(),
            headers: Vec::new(),
            pools: Pools::new(model.proxies.len(), model.pods.len()),
            free: Vec::new(),
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            rng_arrivals: stream(seed, 1, 0),
            rng_users: stream(seed, 2, 0),
            qps: model.load.qps.unwrap_or(0.0),
            next_proxy: 0,
            pushes,
            metrics: Metrics::new(model),
            events: 0,
            sent: 0,
        }
    }

    /// Streams closed windows and events to `writer` as the run goes
    /// (memory flat in the run's length) instead of keeping them in
    /// [`Metrics`]; finish the directory with
    /// [`crate::output::finish_run_dir`].
    #[must_use]
    pub fn record_to(mut self, writer: mesh_rundir::RunWriter) -> Self {
        self.metrics.stream_to(writer);
        self
    }

    /// Runs to `duration`; in-flight requests at the end are not counted.
    pub fn run(mut self) -> Result<Metrics, RunError> {
        let m = self.model;
        if m.load.qps.is_some() {
            let first = self.interarrival();
            self.queue
                .push_lone(Time::ZERO + first, Class::Traffic, Ev::Arrival);
        }
        if let Some(c) = m.load.connections {
            let n = m.load.proxies.len().max(1);
            for i in 0..c {
                let proxy = m.load.proxies.start + (i as usize % n);
                self.queue.push(
                    Time::ZERO,
                    Class::Traffic,
                    Ev::Connection {
                        proxy: u32::try_from(proxy).unwrap_or(0),
                    },
                );
            }
        }
        for (i, (t, _)) in m.timeline.iter().enumerate() {
            self.queue.push(
                *t,
                Class::Timer,
                Ev::Timeline {
                    index: u32::try_from(i).unwrap_or(0),
                },
            );
        }
        for p in 0..self.proxies.len() {
            self.arm_tick(p);
        }
        self.queue
            .push(Time::ZERO + m.window, Class::Timer, Ev::Window);
        while let Some((now, ev)) = self.queue.pop() {
            if now > m.duration {
                break;
            }
            self.events += 1;
            if self.events > m.max_events {
                return Err(RunError::TooManyEvents(m.max_events, now));
            }
            self.handle(now, ev);
        }
        self.metrics.finish(m.duration, &self.pods_in_flight());
        Ok(self.metrics)
    }

    /// Requests in service or queued at each pod (queued ones whose caller
    /// gave up are not counted: the pod drops them when their turn comes).
    fn pods_in_flight(&self) -> Vec<u32> {
        self.pods
            .iter()
            .map(|p| {
                let queued = p
                    .waiting
                    .iter()
                    .filter(|&&(slot, attempt)| self.current(slot, attempt))
                    .count();
                p.in_flight + u32::try_from(queued).unwrap_or(u32::MAX)
            })
            .collect()
    }

    fn interarrival(&mut self) -> Duration {
        let per_sec = self.qps.max(1e-9);
        let secs = if self.model.load.uniform {
            1.0 / per_sec
        } else {
            // Exponential inter-arrival times: a Poisson process.
            let u: f64 = self.rng_arrivals.random::<f64>();
            // libm's pure-Rust `log`: the platform's may differ in the last
            // bit between CPUs, and runs must be identical on any machine.
            -libm::log(1.0 - u) / per_sec
        };
        Duration::from_secs_f64(secs)
    }

    fn arm_tick(&mut self, p: usize) {
        let next = self.proxies[p].engine.poll_timeout();
        if let Some(t) = next
            && self.proxies[p].tick_at != Some(t)
        {
            self.proxies[p].tick_at = Some(t);
            self.queue.push(
                t,
                Class::Timer,
                Ev::Tick {
                    proxy: u32::try_from(p).unwrap_or(0),
                },
            );
        }
    }

    fn handle(&mut self, now: Time, ev: Ev) {
        match ev {
            Ev::Arrival => {
                if self.sent >= self.model.load.requests {
                    return;
                }
                let n = self.model.load.proxies.len();
                if n > 0 {
                    let proxy = self.model.load.proxies.start + self.next_proxy % n;
                    self.next_proxy += 1;
                    self.start_request(now, proxy, false);
                }
                let next = self.interarrival();
                self.queue
                    .push_lone(now + next, Class::Traffic, Ev::Arrival);
            }
            Ev::Connection { proxy } => self.start_request(now, proxy as usize, true),
            Ev::Delayed { slot, attempt } => {
                if self.current(slot, attempt) {
                    self.after_delay(now, slot);
                }
            }
            Ev::Retry { slot, attempt } => {
                if self.current(slot, attempt) {
                    self.retry(now, slot);
                }
            }
            Ev::Served {
                slot,
                attempt,
                pod,
                status,
            } => {
                self.pod_done(now, pod as usize);
                if self.current(slot, attempt) {
                    self.attempt_done(now, slot, Outcome::Status(status));
                }
            }
            Ev::Refused { slot, attempt } => {
                if self.current(slot, attempt) {
                    self.attempt_done(now, slot, Outcome::ConnectFailure);
                }
            }
            Ev::TryTimeout { slot, attempt } => {
                if self.current(slot, attempt) {
                    self.attempt_done(now, slot, Outcome::Timeout);
                }
            }
            Ev::RouteTimeout { slot, generation } => {
                let r = self.reqs[slot as usize];
                if r.live && r.generation == generation {
                    self.route_timeout(now, slot);
                }
            }
            Ev::Tick { proxy } => {
                let p = proxy as usize;
                if self.proxies[p].tick_at == Some(now) {
                    self.proxies[p].tick_at = None;
                    self.proxies[p].engine.handle_timeout(now);
                    self.drain(now, p);
                    self.arm_tick(p);
                }
            }
            Ev::Timeline { index } => self.timeline(now, index as usize),
            Ev::Apply { proxy, index } => {
                let p = proxy as usize;
                let config = self.pushes[index as usize].clone();
                self.proxies[p].engine.reconfigure(config, now);
                let idx: FxHashMap<&str, u32> = self
                    .model
                    .pods
                    .iter()
                    .enumerate()
                    .map(|(i, pod)| (pod.address.as_str(), u32::try_from(i).unwrap_or(u32::MAX)))
                    .collect();
                self.proxies[p].pods_of = pods_of(&self.proxies[p].engine, &idx);
                self.proxies[p].edge_ports =
                    edge_ports(&self.proxies[p].engine, &self.model.calls.edges);
                self.drain(now, p);
                self.arm_tick(p);
            }
            Ev::CallTimeout {
                job,
                generation,
                call,
            } => {
                if let Some(j) = self.job(job, generation, call) {
                    let slot = j.reqs[usize::from(call)];
                    if slot != u32::MAX {
                        self.cancel(now, slot);
                    }
                    let spec =
                        &self.model.calls.workloads[j.workload as usize].calls[usize::from(call)];
                    self.metrics
                        .edge_app_timeout(spec.edge, spec.timeout.unwrap_or_default());
                    self.call_done(now, job, generation, call, true);
                }
            }
            Ev::CallAnswer {
                job,
                generation,
                call,
                status,
                flag,
            } => {
                if let Some(j) = self.job(job, generation, call) {
                    let spec =
                        &self.model.calls.workloads[j.workload as usize].calls[usize::from(call)];
                    // A sidecar's local answer takes no virtual time.
                    self.metrics
                        .edge_answer(spec.edge, status, flag.map(ResponseFlag::as_str), 0);
                    self.call_done(now, job, generation, call, status >= 500);
                }
            }
            Ev::Window => {
                let in_flight = self.pods_in_flight();
                self.metrics.close_window(now, &in_flight);
                self.queue
                    .push(now + self.model.window, Class::Timer, Ev::Window);
            }
        }
    }

    fn current(&self, slot: u32, attempt: u32) -> bool {
        let r = &self.reqs[slot as usize];
        r.live && r.attempt == attempt
    }

    fn timeline(&mut self, now: Time, index: usize) {
        match &self.model.timeline[index].1 {
            Action::Pod { pod, mode } => {
                self.pods[*pod].mode = *mode;
                self.metrics
                    .pod_health(now, *pod, !matches!(mode, Mode::Normal));
                let (kind, detail) = match mode {
                    Mode::Normal => ("fault_end", "recover".to_owned()),
                    Mode::Fail { status, ppm } => (
                        "fault_start",
                        format!("fail status={status} probability={}", f64::from(*ppm) / 1e6),
                    ),
                    Mode::Slow { factor } => ("fault_start", format!("slow factor={factor}")),
                    Mode::Crashed => ("fault_start", "crash".to_owned()),
                };
                self.metrics.event(EventRow {
                    time: now,
                    kind,
                    proxy: String::new(),
                    endpoint: self.model.pods[*pod].name.clone(),
                    detail,
                });
            }
            Action::Qps(q) => {
                self.qps = *q;
                self.metrics.event(EventRow {
                    time: now,
                    kind: "load_change",
                    proxy: String::new(),
                    endpoint: String::new(),
                    detail: format!("qps={q}"),
                });
            }
            Action::Push { propagation, .. } => {
                let push_index = self.model.timeline[..index]
                    .iter()
                    .filter(|(_, a)| matches!(a, Action::Push { .. }))
                    .count();
                self.metrics.event(EventRow {
                    time: now,
                    kind: "config_push",
                    proxy: String::new(),
                    endpoint: String::new(),
                    detail: format!(
                        "propagation={}",
                        mesh_engine::config::format_duration(*propagation)
                    ),
                });
                for p in 0..self.proxies.len() {
                    self.queue.push(
                        now + *propagation,
                        Class::Timer,
                        Ev::Apply {
                            proxy: u32::try_from(p).unwrap_or(0),
                            index: u32::try_from(push_index).unwrap_or(0),
                        },
                    );
                }
            }
        }
    }

    fn alloc(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        self.reqs.push(Req {
            authority: "",
            path: "",
            delay: None,
            pending_conn: false,
            conn_served: 0,
            live: false,
            generation: 0,
            proxy: 0,
            origin: Origin::Load {
                connection: false,
                user: u32::MAX,
            },
            edge: 0,
            has_headers: false,
            depth: 0,
            start: Time::ZERO,
            state: None,
            attempt: 0,
            pod: 0,
            upstream: None,
            outstanding: false,
            delayed: false,
            fault_delayed: false,
            per_try: None,
        });
        self.headers.push(HeaderSet::EMPTY);
        u32::try_from(self.reqs.len() - 1).unwrap_or(u32::MAX)
    }

    /// The headers of the request in `slot`.
    fn headers_of(&self, slot: u32) -> HeaderSet {
        if self.reqs[slot as usize].has_headers {
            self.headers[slot as usize]
        } else {
            HeaderSet::EMPTY
        }
    }

    /// A request of the load from `proxy`.
    fn start_request(&mut self, now: Time, proxy: usize, connection: bool) {
        if self.sent >= self.model.load.requests {
            return;
        }
        self.sent += 1;
        let m = self.model;
        let l = &m.load;
        let c = &m.calls;
        let mut headers = c.load_headers;
        let mut user_index = u32::MAX;
        if l.users > 0 {
            let user = self.rng_users.random_range(0..l.users);
            user_index = user;
            if let Some(h) = c.user_header {
                headers.set(h, user);
            }
            if let Some(h) = c.user_cookie {
                headers.set(h, c.users + user);
            }
        }
        self.request(
            now,
            proxy,
            Origin::Load {
                connection,
                user: user_index,
            },
            0,
            (&l.host, &l.path),
            headers,
            0,
        );
    }

    /// A new request from the application behind `proxy`: the sidecar
    /// routes it. Returns its slot if it was forwarded; a local answer goes
    /// to its origin (now, or after an injected delay).
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        now: Time,
        proxy: usize,
        origin: Origin,
        edge: u32,
        (authority, path): (&'m str, &'m str),
        headers: HeaderSet,
        depth: u8,
    ) -> Option<u32> {
        let decision = self.decide(now, proxy, edge, (authority, path), &headers, None);
        match decision {
            Decision::Forward(f) => {
                let slot = self.occupy(now, proxy, origin, edge, (authority, path), headers, depth);
                self.forwarded(now, slot, f);
                Some(slot)
            }
            Decision::Delay(d) => {
                // The fault filter holds the request; the router runs after.
                let slot = self.occupy(now, proxy, origin, edge, (authority, path), headers, depth);
                let r = &mut self.reqs[slot as usize];
                r.delay = Some(d);
                r.delayed = true;
                r.fault_delayed = true;
                let attempt = r.attempt;
                self.queue
                    .push(now + d.delay, Class::Traffic, Ev::Delayed { slot, attempt });
                Some(slot)
            }
            Decision::Reject(r) => {
                self.local_answer(now, proxy, origin, edge, r.status, Some(r.flag()));
                None
            }
            Decision::Respond(r) => {
                self.local_answer(now, proxy, origin, edge, r.status, None);
                None
            }
        }
    }

    /// The sidecar's decision for a request of the application on `edge`
    /// (`delayed`: the router runs after an injected delay).
    fn decide(
        &mut self,
        now: Time,
        proxy: usize,
        edge: u32,
        (authority, path): (&str, &str),
        headers: &HeaderSet,
        delayed: Option<mesh_engine::Delay>,
    ) -> Decision {
        let table = &self.model.calls.headers;
        let p = &mut self.proxies[proxy];
        let port = p.edge_ports[edge as usize];
        let mut pairs: [(&str, &str); MAX_HEADERS];
        let n;
        let headers: &[(&str, &str)] = if headers.is_empty() {
            &[]
        } else {
            pairs = [("", ""); MAX_HEADERS];
            n = headers.write(table, &mut pairs);
            &pairs[..n]
        };
        let req = app_request(port, authority, path, headers);
        match delayed {
            None => p.engine.handle_request(&req, now),
            Some(d) => p.engine.handle_delayed(&req, d, now),
        }
    }

    /// Takes a slot for a request that the sidecar holds or forwards.
    #[allow(clippy::too_many_arguments)]
    fn occupy(
        &mut self,
        now: Time,
        proxy: usize,
        origin: Origin,
        edge: u32,
        (authority, path): (&'m str, &'m str),
        headers: HeaderSet,
        depth: u8,
    ) -> u32 {
        let slot = self.alloc();
        let r = &mut self.reqs[slot as usize];
        r.live = true;
        r.generation = r.generation.wrapping_add(1);
        r.proxy = u32::try_from(proxy).unwrap_or(0);
        r.origin = origin;
        r.edge = edge;
        r.has_headers = !headers.is_empty();
        if r.has_headers {
            self.headers[slot as usize] = headers;
        }
        r.depth = depth;
        r.start = now;
        r.state = None;
        r.attempt = r.attempt.wrapping_add(1);
        r.upstream = None;
        r.outstanding = false;
        r.delayed = false;
        r.fault_delayed = false;
        r.per_try = None;
        r.delay = None;
        r.pending_conn = false;
        r.authority = authority;
        r.path = path;
        slot
    }

    /// The router forwarded `slot`: start its router state, its route
    /// timeout, and send its first attempt.
    fn forwarded(&mut self, now: Time, slot: u32, f: mesh_engine::Forward) {
        let proxy = self.reqs[slot as usize].proxy as usize;
        let engine = &mut self.proxies[proxy].engine;
        let state = engine.start_request(&f, now);
        let per_try = engine
            .route(state.route)
            .retries
            .as_ref()
            .and_then(|rp| rp.per_try_timeout);
        let r = &mut self.reqs[slot as usize];
        r.per_try = per_try;
        r.state = Some(state);
        r.upstream = Some(f.upstream);
        r.delayed = false;
        r.delay = None;
        if let Some(t) = f.timeout {
            let generation = r.generation;
            self.queue.push(
                now + t,
                Class::Traffic,
                Ev::RouteTimeout { slot, generation },
            );
        }
        self.send(now, slot);
    }

    /// An injected delay is over: the router runs now (abort, weighted
    /// cluster, host), as in Envoy.
    fn after_delay(&mut self, now: Time, slot: u32) {
        let r = &self.reqs[slot as usize];
        let Some(d) = r.delay else { return };
        let (proxy, edge, to) = (r.proxy as usize, r.edge, (r.authority, r.path));
        let headers = self.headers_of(slot);
        match self.decide(now, proxy, edge, to, &headers, Some(d)) {
            Decision::Forward(f) => self.forwarded(now, slot, f),
            Decision::Reject(rj) => self.end(now, slot, rj.status, Some(rj.flag().as_str())),
            Decision::Respond(rs) => self.end(now, slot, rs.status, None),
            Decision::Delay(_) => self.end(now, slot, 500, None),
        }
    }

    /// A sidecar answered a request itself, after `latency`.
    #[allow(clippy::too_many_arguments)]
    fn local_answer(
        &mut self,
        now: Time,
        proxy: usize,
        origin: Origin,
        edge: u32,
        status: u16,
        flag: Option<ResponseFlag>,
    ) {
        // A sidecar's local answer takes no virtual time.
        match origin {
            Origin::Load { connection, .. } => {
                let flag = flag.map(ResponseFlag::as_str);
                self.metrics.edge_answer(edge, status, flag, 0);
                self.metrics.finish_request(now, 0, status, flag);
                if connection {
                    self.queue.push(
                        next_send(now, now, self.model.load.turnaround),
                        Class::Traffic,
                        Ev::Connection {
                            proxy: u32::try_from(proxy).unwrap_or(0),
                        },
                    );
                }
            }
            Origin::Call {
                job,
                generation,
                call,
            } => self.queue.push(
                now,
                Class::Traffic,
                Ev::CallAnswer {
                    job,
                    generation,
                    call,
                    status,
                    flag,
                },
            ),
        }
    }

    /// Sends the current attempt of `slot` to its upstream's pod.
    fn send(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        r.delayed = false;
        let (p, attempt) = (r.proxy as usize, r.attempt);
        let Some(up) = r.upstream else { return };
        let pod = self.proxies[p]
            .pods_of
            .get(up.cluster.0 as usize)
            .and_then(|c| c.get(up.endpoint.0 as usize))
            .copied()
            .unwrap_or(u32::MAX);
        self.reqs[slot as usize].pod = pod;
        if pod == u32::MAX {
            // An endpoint outside the topology (e.g. a ServiceEntry address
            // with no modelled pod): no connection can be made.
            if self.proxies[p].engine.admit(up, true, false, now) == Admission::Overflow {
                self.drain(now, p);
                self.end(
                    now,
                    slot,
                    503,
                    Some(ResponseFlag::UpstreamOverflow.as_str()),
                );
                return;
            }
            self.attach(now, slot, 0);
            return;
        }
        let key = self.pools.pool(p, pod);
        let ready = self.pools.ready(key);
        let empty = self.pools.empty(key);
        match self.proxies[p].engine.admit(up, ready, empty, now) {
            Admission::Overflow => {
                self.drain(now, p);
                self.end(
                    now,
                    slot,
                    503,
                    Some(ResponseFlag::UpstreamOverflow.as_str()),
                );
            }
            Admission::Attach => {
                let served = self.pools.take_idle(key).unwrap_or(0);
                self.attach(now, slot, served);
            }
            Admission::Queue { open_connection } => {
                self.reqs[slot as usize].pending_conn = true;
                self.pools.wait(key, slot, attempt);
                if open_connection {
                    self.open_connection(now, p, pod, up);
                }
            }
        }
    }

    /// Opens a connection (ready at once) and serves the pool's queue.
    fn open_connection(&mut self, now: Time, p: usize, pod: u32, up: Upstream) {
        self.proxies[p].engine.connection_opened(up, now);
        if let Some(key) = self.pools.existing(p, pod) {
            self.pools.put_idle(key, 0);
        }
        self.pump(now, p, pod);
    }

    /// Gives idle connections to waiting requests, in order; opens a
    /// connection if requests wait and none is idle or busy enough to come back.
    fn pump(&mut self, now: Time, p: usize, pod: u32) {
        let key = self.pools.pool(p, pod);
        loop {
            let Some((slot, attempt)) = self.pools.first_waiting(key) else {
                return;
            };
            if !self.current(slot, attempt) || !self.reqs[slot as usize].pending_conn {
                // Gone (timed out, cancelled): its breaker slot was freed then.
                self.pools.pop_waiting(key);
                continue;
            }
            let Some(up) = self.reqs[slot as usize].upstream else {
                return;
            };
            if !self.pools.ready(key) {
                let empty = self.pools.empty(key);
                if self.pools.busy(key) == 0
                    && self.proxies[p].engine.may_open_connection(up, empty, now)
                {
                    self.open_connection(now, p, pod, up);
                }
                return;
            }
            self.pools.pop_waiting(key);
            self.reqs[slot as usize].pending_conn = false;
            match self.proxies[p].engine.dequeue(up, now) {
                Admission::Attach => {
                    let served = self.pools.take_idle(key).unwrap_or(0);
                    self.attach(now, slot, served);
                }
                _ => {
                    self.drain(now, p);
                    self.end(
                        now,
                        slot,
                        503,
                        Some(ResponseFlag::UpstreamOverflow.as_str()),
                    );
                }
            }
        }
    }

    /// The attempt of `slot` runs on a connection that has served `served`
    /// requests: the per-try timeout starts, and the pod gets it.
    fn attach(&mut self, now: Time, slot: u32, served: u32) {
        let r = &mut self.reqs[slot as usize];
        r.outstanding = true;
        r.conn_served = served;
        let (p, pod, attempt, per_try) = (r.proxy as usize, r.pod, r.attempt, r.per_try);
        if pod != u32::MAX
            && let Some(key) = self.pools.existing(p, pod)
        {
            self.pools.set_busy(key, self.pools.busy(key) + 1);
        }
        if let Some(per_try) = per_try {
            self.queue.push(
                now + per_try,
                Class::Traffic,
                Ev::TryTimeout { slot, attempt },
            );
        }
        if pod == u32::MAX {
            self.queue
                .push(now, Class::Traffic, Ev::Refused { slot, attempt });
            return;
        }
        self.metrics.attempt(pod as usize);
        let pod_state = &mut self.pods[pod as usize];
        if pod_state.mode == Mode::Crashed {
            self.queue
                .push(now, Class::Traffic, Ev::Refused { slot, attempt });
            return;
        }
        let spec = &self.model.pods[pod as usize];
        if pod_state.in_flight < spec.concurrency {
            self.serve(now, pod as usize, slot, attempt);
        } else if (pod_state.waiting.len() as u64) < u64::from(spec.queue) {
            pod_state.waiting.push_back((slot, attempt));
        } else {
            // The pod's own queue is full: it answers 503 at once.
            self.queue.push(
                now,
                Class::Traffic,
                Ev::Served {
                    slot,
                    attempt,
                    pod: u32::MAX,
                    status: 503,
                },
            );
        }
    }

    /// The connection of `slot`'s attempt is free again: kept (answered, under
    /// `maxRequestsPerConnection`) or closed (reset, refused, or used up).
    fn release_connection(&mut self, now: Time, slot: u32, keep: bool) {
        let r = &self.reqs[slot as usize];
        let (p, pod, conn_served) = (r.proxy as usize, r.pod, r.conn_served);
        let Some(up) = r.upstream else {
            return;
        };
        if pod == u32::MAX {
            return;
        }
        let limit = self.proxies[p]
            .engine
            .connection_pool(up)
            .map_or(0, |c| c.max_requests_per_connection);
        let served = conn_served + 1;
        let keep = keep && (limit == 0 || served < limit);
        if let Some(key) = self.pools.existing(p, pod) {
            self.pools
                .set_busy(key, self.pools.busy(key).saturating_sub(1));
            if keep {
                self.pools.put_idle(key, served);
            }
        }
        if !keep {
            self.proxies[p].engine.connection_closed(up, now);
        }
        self.pump(now, p, pod);
    }

    fn serve(&mut self, now: Time, pod: usize, slot: u32, attempt: u32) {
        let spec = &self.model.pods[pod];
        let state = &mut self.pods[pod];
        state.in_flight += 1;
        let mut ns = spec.latency.sample_ns(&mut state.rng);
        let status = match state.mode {
            Mode::Fail { status, ppm } if hit(&mut state.rng, ppm) => status,
            Mode::Slow { factor } => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                {
                    ns = (ns as f64 * factor) as u64;
                }
                if hit(&mut state.rng, spec.error_ppm) {
                    spec.error_status
                } else {
                    200
                }
            }
            _ => {
                if hit(&mut state.rng, spec.error_ppm) {
                    spec.error_status
                } else {
                    200
                }
            }
        };
        if let Some(workload) = spec.workload {
            self.start_job(now, pod, slot, attempt, workload, ns, status);
            return;
        }
        self.queue.push(
            Time::from_nanos(now.as_nanos().saturating_add(ns)),
            Class::Traffic,
            Ev::Served {
                slot,
                attempt,
                pod: u32::try_from(pod).unwrap_or(u32::MAX),
                status,
            },
        );
    }

    fn pod_done(&mut self, now: Time, pod: usize) {
        let Some(state) = self.pods.get_mut(pod) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        // The next waiting request that is still wanted takes the slot.
        while let Some((slot, attempt)) = self.pods[pod].waiting.pop_front() {
            if self.current(slot, attempt) {
                self.serve(now, pod, slot, attempt);
                break;
            }
        }
    }

    fn attempt_done(&mut self, now: Time, slot: u32, outcome: Outcome) {
        let r = &mut self.reqs[slot as usize];
        let (p, pod, start, attempt) = (r.proxy as usize, r.pod, r.start, r.attempt);
        let Some(up) = r.upstream else { return };
        if r.outstanding {
            r.outstanding = false;
            self.proxies[p].engine.handle_response(up, outcome, now);
            // Answered: the connection goes back to the pool; a reset,
            // refusal or timeout closes it.
            self.release_connection(now, slot, matches!(outcome, Outcome::Status(_)));
            if pod != u32::MAX {
                let s = match outcome {
                    Outcome::Status(s) => s,
                    _ => 503,
                };
                self.metrics
                    .attempt_result(pod as usize, s, since(start, now));
            }
            self.drain(now, p);
        }
        let Some(state) = self.reqs[slot as usize].state.as_mut() else {
            return;
        };
        let decision = self.proxies[p].engine.retry_decision(state, outcome, now);
        let status = match outcome {
            Outcome::Status(s) => s,
            Outcome::Timeout => 504,
            Outcome::ConnectFailure | Outcome::Reset => 503,
        };
        match decision {
            RetryDecision::Retry { backoff } => {
                // The retry's host is picked when it fires, after the back-off.
                let attempt = attempt.wrapping_add(1);
                self.reqs[slot as usize].attempt = attempt;
                self.queue
                    .push(now + backoff, Class::Traffic, Ev::Retry { slot, attempt });
            }
            RetryDecision::Done { flag } => {
                let flag = flag.map(ResponseFlag::as_str).or(match outcome {
                    Outcome::Timeout => Some("UT"),
                    Outcome::ConnectFailure => Some("UF"),
                    Outcome::Reset => Some("UR"),
                    Outcome::Status(_) => None,
                });
                self.end(now, slot, status, flag);
            }
        }
    }

    fn retry(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        let p = r.proxy as usize;
        let Some(state) = r.state.as_mut() else {
            return;
        };
        let d = self.proxies[p].engine.retry(state, now);
        match d {
            Decision::Forward(f) => {
                self.reqs[slot as usize].upstream = Some(f.upstream);
                self.send(now, slot);
            }
            _ => self.end(now, slot, 503, Some("UH")),
        }
    }

    fn route_timeout(&mut self, now: Time, slot: u32) {
        let r = self.reqs[slot as usize];
        let p = r.proxy as usize;
        if r.outstanding
            && let Some(up) = r.upstream
        {
            self.reqs[slot as usize].outstanding = false;
            self.proxies[p]
                .engine
                .handle_response(up, Outcome::Timeout, now);
            self.drain(now, p);
            self.release_connection(now, slot, false);
        } else if r.pending_conn
            && let Some(up) = r.upstream
        {
            self.reqs[slot as usize].pending_conn = false;
            self.proxies[p].engine.cancel_pending(up, now);
        }
        self.end(now, slot, 504, Some("UT"));
    }

    /// Records the final answer of a request and frees its slot.
    fn end(&mut self, now: Time, slot: u32, status: u16, flag: Option<&'static str>) {
        let req = &mut self.reqs[slot as usize];
        let p = req.proxy as usize;
        if let Some(state) = req.state.as_mut() {
            self.proxies[p].engine.finish_request(state, now);
        }
        let r = Ended {
            proxy: req.proxy,
            origin: req.origin,
            edge: req.edge,
            start: req.start,
            pod: req.pod,
            fault_delayed: req.fault_delayed,
        };
        self.release(slot);
        self.metrics
            .edge_answer(r.edge, status, flag, since(r.start, now));
        match r.origin {
            Origin::Load { connection, user } => {
                self.metrics
                    .finish_request(now, since(r.start, now), status, flag);
                if r.fault_delayed {
                    // Envoy logs `DI` beside any other flag (`DI,UT`).
                    self.metrics.flag_also("DI");
                }
                if user != u32::MAX && r.pod != u32::MAX {
                    self.metrics.user_served(user as usize, r.pod as usize);
                }
                if connection {
                    self.queue.push(
                        next_send(r.start, now, self.model.load.turnaround),
                        Class::Traffic,
                        Ev::Connection { proxy: r.proxy },
                    );
                }
            }
            Origin::Call {
                job,
                generation,
                call,
            } => self.call_done(now, job, generation, call, status >= 500),
        }
    }

    /// Frees a request's slot; its pending events become stale.
    fn release(&mut self, slot: u32) {
        let req = &mut self.reqs[slot as usize];
        req.live = false;
        req.state = None;
        req.attempt = req.attempt.wrapping_add(1);
        self.free.push(slot);
    }

    /// The application behind a request gave up on it (its own timeout, or
    /// a sibling call failed): the sidecar resets the upstream request,
    /// without telling outlier detection. The pod serving it, if any, does
    /// not notice and finishes its work.
    fn cancel(&mut self, now: Time, slot: u32) {
        let r = self.reqs[slot as usize];
        if !r.live {
            return;
        }
        let p = r.proxy as usize;
        if let Some(up) = r.upstream {
            if r.pending_conn {
                self.reqs[slot as usize].pending_conn = false;
                self.proxies[p].engine.cancel_pending(up, now);
            } else if r.outstanding || r.delayed {
                self.proxies[p].engine.cancel(up, r.outstanding, now);
            }
        }
        if let Some(mut state) = r.state {
            self.proxies[p].engine.finish_request(&mut state, now);
        }
        self.drain(now, p);
        if r.outstanding {
            // The sidecar resets the stream: an HTTP/1.1 connection closes.
            self.reqs[slot as usize].outstanding = false;
            self.release_connection(now, slot, false);
        }
        self.release(slot);
    }

    // === jobs: pods making their calls ===

    /// Job `job` if it is live, of `generation`, and call `call` is in flight.
    fn job(&self, job: u32, generation: u32, call: u16) -> Option<Job> {
        let j = self.jobs.get(job as usize)?;
        (j.live && j.generation == generation && j.pending & (1 << call) != 0).then_some(*j)
    }

    /// A pod starts serving `slot`'s attempt by making its calls; its own
    /// latency `ns` and answer `status` were drawn already.
    #[allow(clippy::too_many_arguments)]
    fn start_job(
        &mut self,
        now: Time,
        pod: usize,
        slot: u32,
        attempt: u32,
        workload: u32,
        ns: u64,
        status: u16,
    ) {
        let inbound = self.reqs[slot as usize];
        let id = match self.free_jobs.pop() {
            Some(id) => id,
            None => {
                self.jobs.push(Job {
                    live: false,
                    generation: 0,
                    pod: 0,
                    slot: 0,
                    attempt: 0,
                    workload: 0,
                    headers: HeaderSet::EMPTY,
                    depth: 0,
                    next: 0,
                    pending: 0,
                    reqs: [u32::MAX; MAX_CALLS],
                    failed: false,
                    ns: 0,
                    status: 0,
                });
                u32::try_from(self.jobs.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let inbound_headers = self.headers_of(slot);
        let j = &mut self.jobs[id as usize];
        *j = Job {
            live: true,
            generation: j.generation.wrapping_add(1),
            pod: u32::try_from(pod).unwrap_or(u32::MAX),
            slot,
            attempt,
            workload,
            headers: inbound_headers,
            depth: inbound.depth.saturating_add(1),
            next: 0,
            pending: 0,
            reqs: [u32::MAX; MAX_CALLS],
            failed: false,
            ns,
            status,
        };
        let generation = j.generation;
        let w = &self.model.calls.workloads[workload as usize];
        let n = if w.parallel { w.calls.len() } else { 1 };
        for call in 0..n {
            // A call can fail at once (a breaker overflow) and end the job.
            let j = self.jobs[id as usize];
            if !j.live || j.generation != generation {
                break;
            }
            self.start_call(now, id, u16::try_from(call).unwrap_or(0));
        }
    }

    /// Job `id` makes call `call` through its pod's sidecar.
    fn start_call(&mut self, now: Time, id: u32, call: u16) {
        let m = self.model;
        let j = &mut self.jobs[id as usize];
        let (generation, depth) = (j.generation, j.depth);
        j.pending |= 1 << call;
        j.next = call + 1;
        let spec = &m.calls.workloads[j.workload as usize].calls[usize::from(call)];
        let headers = spec.outbound(&j.headers);
        let pod = j.pod as usize;
        if let Some(t) = spec.timeout {
            self.queue.push(
                now + t,
                Class::Traffic,
                Ev::CallTimeout {
                    job: id,
                    generation,
                    call,
                },
            );
        }
        let origin = Origin::Call {
            job: id,
            generation,
            call,
        };
        let proxy = m.pods[pod].proxy.map(|p| p as usize);
        let Some(proxy) = proxy.filter(|_| depth <= MAX_DEPTH) else {
            // Too deep: a loop through the routes. Refused, 508 Loop Detected.
            self.local_answer(now, 0, origin, spec.edge, 508, None);
            return;
        };
        let slot = self.request(
            now,
            proxy,
            origin,
            spec.edge,
            (&spec.host, &spec.path),
            headers,
            depth,
        );
        // Unless it was already answered (an overflow ends it at once).
        if let Some(slot) = slot
            && self.job(id, generation, call).is_some()
        {
            self.jobs[id as usize].reqs[usize::from(call)] = slot;
        }
    }

    /// Call `call` of job `id` ended: `failed` if its answer was ≥ 500 or the
    /// application's timeout fired.
    fn call_done(&mut self, now: Time, id: u32, generation: u32, call: u16, failed: bool) {
        let Some(mut j) = self.job(id, generation, call) else {
            return;
        };
        j.pending &= !(1 << call);
        j.reqs[usize::from(call)] = u32::MAX;
        let w = &self.model.calls.workloads[j.workload as usize];
        let n = u16::try_from(w.calls.len()).unwrap_or(0);
        if failed && !w.calls[usize::from(call)].ignore_errors {
            // Fail fast: give up on the calls still in flight.
            j.failed = true;
            let reqs = j.reqs;
            j.pending = 0;
            self.jobs[id as usize] = j;
            for slot in reqs {
                if slot != u32::MAX {
                    self.cancel(now, slot);
                }
            }
            self.finish_job(now, id);
            return;
        }
        self.jobs[id as usize] = j;
        if !w.parallel && j.next < n {
            self.start_call(now, id, j.next);
        } else if j.next >= n && j.pending == 0 {
            self.finish_job(now, id);
        }
    }

    /// The calls are done: the pod spends its own latency and answers (500
    /// if a call failed).
    fn finish_job(&mut self, now: Time, id: u32) {
        let j = &mut self.jobs[id as usize];
        j.live = false;
        let j = *j;
        self.free_jobs.push(id);
        self.queue.push(
            now + Duration::from_nanos(j.ns),
            Class::Traffic,
            Ev::Served {
                slot: j.slot,
                attempt: j.attempt,
                pod: j.pod,
                status: if j.failed { 500 } else { j.status },
            },
        );
    }

    /// Moves the engine's events into the event log and counters.
    fn drain(&mut self, now: Time, p: usize) {
        while let Some(ev) = self.proxies[p].engine.poll_event() {
            let engine = &self.proxies[p].engine;
            let proxy = &self.model.proxies[p].name;
            match ev {
                EngineEvent::Ejected {
                    upstream,
                    reason,
                    duration,
                } => {
                    let pod = self.pod_of(p, upstream);
                    self.metrics.ejected(now, p, pod);
                    self.metrics.event(EventRow {
                        time: now,
                        kind: "eject",
                        proxy: proxy.clone(),
                        endpoint: self.pod_name(pod, engine.endpoint_address(upstream)),
                        detail: format!(
                            "reason={} duration={}",
                            reason.as_str(),
                            mesh_engine::config::format_duration(duration)
                        ),
                    });
                }
                EngineEvent::Returned { upstream } => {
                    let pod = self.pod_of(p, upstream);
                    self.metrics.returned(now, p, pod);
                    self.metrics.event(EventRow {
                        time: now,
                        kind: "return",
                        proxy: proxy.clone(),
                        endpoint: self.pod_name(pod, engine.endpoint_address(upstream)),
                        detail: String::new(),
                    });
                }
                EngineEvent::Overflow { upstream } => {
                    let cluster = engine.cluster_name(upstream.cluster);
                    self.metrics.overflow(now, proxy, cluster);
                }
                EngineEvent::Panic { cluster, in_panic } => {
                    self.metrics.event(EventRow {
                        time: now,
                        kind: if in_panic { "panic_start" } else { "panic_end" },
                        proxy: proxy.clone(),
                        endpoint: engine.cluster_name(cluster).to_owned(),
                        detail: String::new(),
                    });
                }
                EngineEvent::ConfigApplied { clusters, routes } => {
                    self.metrics.event(EventRow {
                        time: now,
                        kind: "config_applied",
                        proxy: proxy.clone(),
                        endpoint: String::new(),
                        detail: format!("clusters={clusters} routes={routes}"),
                    });
                }
            }
        }
    }

    fn pod_of(&self, p: usize, up: Upstream) -> Option<usize> {
        let addr = self.proxies[p].engine.endpoint_address(up);
        self.model.pods.iter().position(|pod| pod.address == addr)
    }

    fn pod_name(&self, pod: Option<usize>, address: &str) -> String {
        pod.map_or_else(|| address.to_owned(), |i| self.model.pods[i].name.clone())
    }
}

/// The destination port of each edge's authority through the proxy of
/// `engine`: the port the caller uses — the authority's, else the called
/// service's (a sidecar) or the gateway server's; 80, HTTP's own, for a
/// host the proxy does not know. Computed once per config, not per request.
fn edge_ports(engine: &Engine, edges: &[crate::Edge]) -> Vec<u16> {
    edges
        .iter()
        .map(|e| engine.destination_port(&e.host).unwrap_or(80))
        .collect()
}

/// A request as the applications of a run send it: `GET`, plain HTTP, on
/// `port` (the edge's, from [`edge_ports`]).
fn app_request<'a>(
    port: u16,
    authority: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
) -> Request<'a> {
    Request {
        method: "GET",
        scheme: "http",
        authority,
        path,
        headers,
        port,
        source: None,
        destination: None,
    }
}

/// Nanoseconds from `start` to `now`.
fn since(start: Time, now: Time) -> u64 {
    now.as_nanos().saturating_sub(start.as_nanos())
}

/// When a closed-loop connection sends its next request: `turnaround`
/// after the answer, and never at the very instant the previous request
/// started. A local reply (no route, a 100 % abort, an overflow) takes zero
/// virtual time, and a connection answered instantly forever would never let
/// the clock move; one microsecond stands for the client's own turnaround
/// when none is configured.
fn next_send(started: Time, answered: Time, turnaround: Duration) -> Time {
    let next = answered + turnaround;
    if next > started {
        next
    } else {
        started + Duration::from_micros(1)
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<super::Ev>() <= 16);
    }

    #[test]
    fn the_memory_estimate_covers_a_request_in_flight() {
        // The slot three times over (the slab doubling) and two events.
        let peak = 3 * std::mem::size_of::<super::Req<'static>>() as u64 + 2 * 32;
        assert!(peak <= crate::budget::IN_FLIGHT, "{peak}");
    }
}
