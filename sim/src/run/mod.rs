//! One simulated run: the event loop that drives one engine per modelled
//! proxy against modelled pods, in virtual time.
//!
//! A request's life is a `mesh_engine::Exchange` (the engine's request
//! protocol, the same one meshproxy runs): an arrival at a client proxy
//! starts it (route, fault, balancer) → after any injected delay, `admit`
//! (circuit breaker) with the state of the proxy's connection pool → the
//! pod serves it (concurrency slots, then a bounded queue) for a sampled
//! latency → `handle_response` (outlier detection, then the retry policy)
//! may schedule a retry after Envoy's back-off → the final answer, with
//! its status and flags, is recorded. Per-try and route timeouts race the
//! pod. Outlier ticks run at the engine's `poll_timeout`.
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

use mesh_engine::exchange::Phase;
use mesh_engine::{
    Admit, Answer, Engine, EngineEvent, Exchange, Outcome, Request, ResponseFlags, Step, Time,
    Upstream,
};
use rand::RngExt as _;
use rand_pcg::Pcg64Mcg;
use rustc_hash::FxHashMap;

use crate::callgraph::{HeaderSet, MAX_CALLS, MAX_DEPTH, MAX_HEADERS};
use crate::metrics::{EventRow, Metrics};
use crate::model::{Action, Mode, Model, hit};
use crate::pools::Pools;
use crate::queue::{Class, EventQueue};

mod events;
mod jobs;
mod request;

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
    Connection { proxy: u32, worker: u32 },
    /// An injected delay is over: route the request now.
    Delayed { slot: u32, attempt: u32 },
    /// A retry's back-off is over: pick its host and send it.
    Retry { slot: u32, attempt: u32 },
    /// A pod finished serving an attempt (`None`: a pod whose queue was
    /// full answered at once, holding no slot).
    Served {
        slot: u32,
        attempt: u32,
        pod: Option<PodId>,
        status: u16,
    },
    /// A crashed pod refused the connection.
    Refused { slot: u32, attempt: u32 },
    /// A connection of proxy worker `owner`'s pool to `pod` is set up.
    Connected { proxy: u32, owner: u32, pod: PodId },
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
        flags: ResponseFlags,
    },
    /// A metrics window ends.
    Window,
}

/// A modelled pod: its index in `Model::pods`, kept as index + 1 so that
/// `Option<PodId>` (no pod: an address outside the topology) is four
/// bytes, as the events need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodId(std::num::NonZeroU32);

impl PodId {
    fn new(index: usize) -> Option<Self> {
        u32::try_from(index + 1)
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .map(Self)
    }

    /// Its index in `Model::pods` (and `Run::pods`).
    fn index(self) -> usize {
        self.raw() as usize
    }

    /// Its index, as the connection pools key pods.
    fn raw(self) -> u32 {
        self.0.get() - 1
    }
}

/// Who is waiting for a request's answer.
#[derive(Clone, Copy, Debug)]
enum Origin {
    /// The load; `connection`: a closed-loop connection to wake when done;
    /// `user`: the user's index, when the load has users.
    Load {
        connection: bool,
        user: Option<u32>,
        /// The proxy's worker that accepted its connection.
        worker: u16,
    },
    /// Call `call` of job `job` (of that generation).
    Call {
        job: u32,
        generation: u32,
        call: u16,
    },
}

/// A request an application sends through its sidecar.
#[derive(Clone, Copy, Debug)]
struct Call<'m> {
    /// The sidecar (or client proxy) it goes through.
    proxy: usize,
    /// The proxy's worker that handles it.
    worker: u16,
    /// Who waits for its answer.
    origin: Origin,
    /// The call-graph edge it is counted under.
    edge: u32,
    /// Authority and path.
    to: (&'m str, &'m str),
    headers: HeaderSet,
    /// Calls above it (0 for the load).
    depth: u8,
}

/// A request in flight (slab slot, reused).
#[derive(Debug)]
struct Req<'m> {
    /// Where it goes (kept to route it again after an injected delay).
    authority: &'m str,
    path: &'m str,
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
    /// Its conversation with its proxy's engine: phase, router state,
    /// attempts, flags.
    ex: Exchange,
    /// Bumped with every attempt and on release, so stale events are
    /// ignored.
    attempt: u32,
    /// The pod serving its latest attempt (`None`: outside the topology).
    pod: Option<PodId>,
    /// The proxy's worker that handles it (whose connection pools it uses).
    worker: u16,
    /// That worker's connection-pool owner (see `Proxy::pool_base`).
    owner: u32,
}

/// What `end` needs of a request once its slot is freed.
struct Ended {
    proxy: u32,
    origin: Origin,
    edge: u32,
    start: Time,
    pod: Option<PodId>,
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
    /// The request slot of each call in flight (`None`: answered locally).
    reqs: [Option<u32>; MAX_CALLS],
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
    /// Envoy worker threads, and the first of their connection pools'
    /// owners (one per worker) in `Run::pools`.
    workers: u32,
    pool_base: u32,
    /// (cluster, endpoint) → its pod (`None`: an address outside the
    /// topology, e.g. a ServiceEntry's).
    pods_of: Vec<Vec<Option<PodId>>>,
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
    /// Which worker accepts a connection (drawn only for proxies with
    /// more than one, as the kernel spreads `SO_REUSEPORT` accepts).
    rng_workers: Pcg64Mcg,
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

fn pods_of(engine: &Engine, index: &FxHashMap<&str, u32>) -> Vec<Vec<Option<PodId>>> {
    (0..engine.cluster_count())
        .map(|c| {
            let id = mesh_engine::ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            (0..engine.endpoint_count(id))
                .map(|e| {
                    let up = engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                    index
                        .get(engine.endpoint_address(up))
                        .and_then(|&i| PodId::new(i as usize))
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
        let mut owners = 0u32;
        // Proxies that see the mesh alike (the same spec) share one copy of
        // their route tables: it stays in the cache across their requests.
        let mut routes: Vec<mesh_engine::SharedRoutes> = Vec::new();
        let proxies = model
            .proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let seed = seed ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
                let options = mesh_engine::EngineOptions {
                    workers: p.workers,
                    ..mesh_engine::EngineOptions::default()
                };
                let config = model.config.clone();
                let engine = match routes.iter().find(|r| r.proxy() == &p.spec) {
                    Some(r) => Engine::with_shared_routes(config, p.spec.clone(), seed, options, r),
                    None => {
                        let e = Engine::with_options(config, p.spec.clone(), seed, options);
                        routes.extend(e.shared_routes());
                        e
                    }
                };
                let pods_of = pods_of(&engine, &index);
                let edge_ports = edge_ports(&engine, &model.calls.edges);
                let pool_base = owners;
                owners += p.workers.max(1);
                Proxy {
                    engine,
                    workers: p.workers.max(1),
                    pool_base,
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
            pools: Pools::new(owners as usize, model.pods.len()),
            free: Vec::new(),
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            rng_arrivals: stream(seed, 1, 0),
            rng_users: stream(seed, 2, 0),
            rng_workers: stream(seed, 4, 0),
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
                .push_lone(Time::from_nanos(first), Class::Traffic, Ev::Arrival);
        }
        if let Some(c) = m.load.connections {
            let n = m.load.proxies.len().max(1);
            for i in 0..c {
                let proxy = m.load.proxies.start + (i as usize % n);
                // The worker that accepts this connection keeps it.
                let worker = self.pick_worker(proxy);
                self.queue.push(
                    Time::ZERO,
                    Class::Traffic,
                    Ev::Connection {
                        proxy: u32::try_from(proxy).unwrap_or(0),
                        worker: u32::from(worker),
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

    /// The worker of `proxy` that accepts a new connection: drawn at
    /// random, as the kernel spreads a `SO_REUSEPORT` listener's accepts
    /// (0, and no draw, with one worker).
    fn pick_worker(&mut self, proxy: usize) -> u16 {
        match self.proxies[proxy].workers {
            0 | 1 => 0,
            n => u16::try_from(self.rng_workers.random_range(0..n)).unwrap_or(0),
        }
    }

    /// The connection-pool owner of `slot`'s request: its proxy's worker.
    #[inline]
    fn owner_of(&self, slot: u32) -> usize {
        self.reqs[slot as usize].owner as usize
    }

    /// Nanoseconds to the next open-loop arrival.
    fn interarrival(&mut self) -> u64 {
        let per_sec = self.qps.max(1e-9);
        let secs = if self.model.load.uniform {
            1.0 / per_sec
        } else {
            // Exponential inter-arrival times: a Poisson process, by
            // inversion. libm's pure-Rust `log`: the platform's may differ
            // in the last bit between machines, and runs must not. (The
            // ziggurat of `sample` would be cheaper, but every run's
            // arrivals, and with them every shipped result, would move.)
            let u: f64 = self.rng_arrivals.random::<f64>();
            -libm::log(1.0 - u) / per_sec
        };
        u64::try_from(Duration::from_secs_f64(secs).as_nanos()).unwrap_or(u64::MAX)
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
                    // In turn (a counter kept below n: no division).
                    let proxy = self.model.load.proxies.start + self.next_proxy;
                    self.next_proxy += 1;
                    if self.next_proxy >= n {
                        self.next_proxy = 0;
                    }
                    let worker = self.pick_worker(proxy);
                    self.start_request(now, proxy, false, worker);
                }
                let next = now.as_nanos().saturating_add(self.interarrival());
                self.queue
                    .push_lone(Time::from_nanos(next), Class::Traffic, Ev::Arrival);
            }
            Ev::Connection { proxy, worker } => {
                self.start_request(now, proxy as usize, true, worker as u16);
            }
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
                if let Some(pod) = pod {
                    self.pod_done(now, pod.index());
                }
                if self.current(slot, attempt) {
                    self.attempt_done(now, slot, Outcome::Status(status));
                }
            }
            Ev::Connected { proxy, owner, pod } => {
                self.connected(now, (proxy as usize, owner as usize), pod.raw());
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
                let r = &self.reqs[slot as usize];
                if r.live && r.generation == generation {
                    self.route_timeout(now, slot);
                }
            }
            Ev::Tick { proxy } => {
                let p = proxy as usize;
                if self.proxies[p].tick_at == Some(now) {
                    self.proxies[p].tick_at = None;
                    self.proxies[p].engine.handle_timeout(now);
                    self.drain(p);
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
                self.drain(p);
                self.arm_tick(p);
            }
            Ev::CallTimeout {
                job,
                generation,
                call,
            } => {
                if let Some(j) = self.job(job, generation, call) {
                    if let Some(slot) = j.reqs[usize::from(call)] {
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
                flags,
            } => {
                if let Some(j) = self.job(job, generation, call) {
                    let spec =
                        &self.model.calls.workloads[j.workload as usize].calls[usize::from(call)];
                    // A sidecar's local answer takes no virtual time.
                    self.metrics.edge_answer(spec.edge, status, flags, 0);
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
    worker: u16,
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
        worker: u32::from(worker),
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
        // Its slot, its headers' slot and its free-list entry, and its two
        // queued events (a 32-byte entry each), each three times over: a
        // vector doubles, and the old copy lives while the new is filled.
        let slot = std::mem::size_of::<super::Req<'static>>()
            + std::mem::size_of::<crate::callgraph::HeaderSet>()
            + std::mem::size_of::<u32>();
        let peak = 3 * (slot as u64 + 2 * 32);
        assert!(peak <= crate::budget::IN_FLIGHT, "{peak}");
    }
}
