//! One listener's proxy: its engine, its counters and each worker's
//! upstream pools, and the shared state of the process (clock, options,
//! config).
//!
//! As in Envoy, the process runs `--concurrency` workers, each a thread
//! with its own event loop, and a client connection lives on one worker.
//! A listener's engine (its routing, outlier detection and circuit
//! breaker counters, and each worker's load-balancer state) is shared by
//! the workers under one lock; its connection pools are the worker's own.
//! The lock is taken only between two `await`s, never across one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mesh_engine::config::{Config, UpstreamProtocol};
use mesh_engine::{Admit, Engine, EngineEvent, Exchange, Time, Upstream};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::config::ListenerSpec;
use crate::connect::{Target, connect, connect_h2};
use crate::log::{AccessLog, now_rfc3339};
use crate::pool::{Conn, Grant, HostPool, Stream, Waiter, usable};
use crate::record::{RecEvent, Recorder};

/// Limits and switches of the process.
#[derive(Clone, Debug)]
pub struct Options {
    /// Access log format.
    pub access_log: AccessLog,
    /// Largest request body accepted (bytes; 413 beyond; `None`: no limit).
    pub max_body_bytes: Option<u64>,
    /// The most of a body held in memory (Envoy's buffer limit): a request
    /// body up to it is kept for retries, a response body up to it is read
    /// before the answer goes on; larger ones stream.
    pub buffer_limit: usize,
    /// Largest total size of request headers (bytes).
    pub max_header_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// How long an HTTP/1.1 client connection may idle between requests
    /// (`None`: forever).
    pub idle_timeout: Option<Duration>,
    /// How long the listeners keep accepting after SIGTERM, answering with
    /// `connection: close` while `/ready` says `DRAINING` (Istio's
    /// `terminationDrainDuration`).
    pub drain_time: Duration,
    /// How long, after the drain time, in-flight requests may still finish.
    pub drain_timeout: Duration,
    /// How often the config file is checked for changes (`None`: never).
    pub watch_interval: Option<Duration>,
    /// Seed of the engines' random streams.
    pub seed: u64,
    /// Where to record the run directory (`--record`), if anywhere.
    pub record: Option<std::path::PathBuf>,
    /// The recording's window.
    pub record_window: Duration,
    /// Worker threads (Envoy's `--concurrency`; at least 1).
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            access_log: AccessLog::Text,
            max_body_bytes: None,
            buffer_limit: 1 << 20,
            max_header_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            drain_time: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            watch_interval: Some(Duration::from_secs(1)),
            seed: 1,
            record: None,
            record_window: Duration::from_secs(1),
            concurrency: 2,
        }
    }
}

/// Where the process is in its life, as Envoy's server states: serving;
/// draining (listeners still accept, every HTTP/1.1 answer says
/// `connection: close`, HTTP/2 connections get a GOAWAY, `/ready` answers
/// 503); stopped (listeners closed, idle connections closed, in-flight
/// requests finishing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    Draining,
    Stopped,
}

/// The process's shared state, seen by every worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: Options,
    start: std::time::Instant,
    /// The latest engine time read (nanoseconds), by any worker.
    last: AtomicU64,
    /// Each listener's proxy, in `[[listener]]` order.
    pub(crate) proxies: Vec<Mutex<Proxy>>,
    /// The config text in force (for `/config_dump`) and its reload counters.
    pub(crate) config_text: Mutex<String>,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    /// False once draining: `/ready` answers 503.
    pub(crate) ready: AtomicBool,
    /// Requests being handled.
    pub(crate) in_flight: AtomicU64,
    /// Client connections of each worker.
    pub(crate) connections: Box<[Connections]>,
    /// Wakes the timer task after a reconfigure.
    pub(crate) timer_wake: tokio::sync::Notify,
    /// The run-directory recorder (`--record`). Lock order: a listener's
    /// proxy (or all of them, in order) before the recorder.
    pub(crate) recorder: Mutex<Option<Recorder>>,
}

/// A worker's client connections: open now, and accepted since the start.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    pub(crate) active: AtomicU64,
    pub(crate) total: AtomicU64,
}

thread_local! {
    /// The worker this thread runs (0 on the main thread).
    static WORKER: Cell<usize> = const { Cell::new(0) };
    /// Proxies this thread holds locked (a `Drop` that runs meanwhile must
    /// not lock one again).
    static HOLDING: Cell<u32> = const { Cell::new(0) };
    /// The `Date` of responses: (engine second, IMF-fixdate).
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Makes this thread worker `w` (its pools are the proxies' `w`th).
pub(crate) fn set_worker(w: usize) {
    WORKER.with(|c| c.set(w));
}

/// The worker of this thread.
pub(crate) fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// Locks `m`, whatever a panicking holder left (the state stays usable:
/// every update is a whole step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(
        options: Options,
        listeners: &[ListenerSpec],
        mesh: &Arc<Config>,
        text: String,
    ) -> Self {
        let recorder = options.record.as_deref().and_then(|dir| {
            let endpoints = crate::record::endpoints_of(mesh);
            let names = listeners.iter().map(|l| l.address.to_string()).collect();
            match Recorder::create(dir, options.record_window, endpoints, names) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!(
                        "meshproxy: --record {}: cannot create the run directory: {e}; not recording",
                        dir.display()
                    );
                    None
                }
            }
        });
        let workers = options.concurrency.max(1);
        let engine_options = mesh_engine::EngineOptions {
            workers: u32::try_from(workers).unwrap_or(mesh_engine::MAX_WORKERS),
            ..mesh_engine::EngineOptions::default()
        };
        let proxies = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let engine = Engine::with_options(
                    mesh.clone(),
                    l.proxy.clone(),
                    options.seed + i as u64,
                    engine_options,
                );
                let mut p = Proxy::new(l.clone(), engine, workers);
                if recorder.is_some() {
                    p.recorded = Some(Vec::new());
                }
                Mutex::new(p)
            })
            .collect();
        Self {
            options,
            start: std::time::Instant::now(),
            last: AtomicU64::new(0),
            proxies,
            config_text: Mutex::new(text),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            ready: AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            connections: (0..workers).map(|_| Connections::default()).collect(),
            timer_wake: tokio::sync::Notify::new(),
            recorder: Mutex::new(recorder),
        }
    }

    /// Hands `f` the `Date` of a response made now (IMF-fixdate). The
    /// wall clock is read once a second of the engine clock, so a date
    /// may lag up to a second, within the field's resolution.
    pub(crate) fn http_date(&self, f: impl FnOnce(&[u8])) {
        let second = self.recent().as_nanos() / 1_000_000_000;
        DATE.with(|d| {
            let mut d = d.borrow_mut();
            if d.0 != second {
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |t| t.as_secs());
                *d = (second, crate::log::imf_fixdate(unix));
            }
            f(&d.1);
        });
    }

    /// Records an upstream attempt started at `started` (`status` 0: no
    /// status), if recording (the clock is read only then).
    pub(crate) fn record_attempt(&self, address: &str, status: u16, started: Time) {
        if let Some(r) = lock(&self.recorder).as_mut() {
            r.attempt(address, status, self.recent().saturating_since(started));
        }
    }

    /// Records a downstream answer that took `latency`, if recording.
    pub(crate) fn record_answer(
        &self,
        li: usize,
        status: u16,
        flags: mesh_engine::ResponseFlags,
        latency: Duration,
    ) {
        if let Some(r) = lock(&self.recorder).as_mut() {
            r.answer(li, status, flags, latency);
        }
    }

    /// Writes the recording's windows that ended by `now` (with `last`, also
    /// the window in progress).
    pub(crate) fn record_windows(&self, now: Time, last: bool) {
        // The lock order: the proxies, then the recorder.
        let mut proxies: Vec<MutexGuard<'_, Proxy>> = self.proxies.iter().map(lock).collect();
        let mut rec = lock(&self.recorder);
        let Some(r) = rec.as_mut() else { return };
        for p in &mut proxies {
            if let Some(events) = p.recorded.as_mut() {
                for e in events.drain(..) {
                    r.event(e);
                }
            }
        }
        while r.window_end <= now || last {
            let state = r.endpoint_state(proxies.iter().map(|p| &p.engine));
            r.close_window(&state);
            if last || r.failed() {
                break;
            }
        }
    }

    /// Ends the recording: the last window and `summary.csv`.
    pub(crate) fn finish_recording(&self) {
        let now = self.now();
        self.record_windows(now, true);
        let taken = lock(&self.recorder).take();
        if let Some(r) = taken
            && let Err(e) = r.finish(now)
        {
            eprintln!("meshproxy: --record: cannot write summary.csv: {e}");
        }
    }

    /// The time of the event being handled, read by the last [`now`]
    /// (no clock read): what happens in one go after an `await` shares
    /// the time read when it woke.
    ///
    /// [`now`]: Shared::now
    pub(crate) fn recent(&self) -> Time {
        Time::from_nanos(self.last.load(Ordering::Acquire))
    }

    /// The engine clock: nanoseconds since the process started, never
    /// going backwards. Read once per event (a request arriving, an
    /// upstream answering, a timer firing); see [`Shared::recent`].
    ///
    /// The clock is the process's: a worker reads it after it locks a
    /// proxy, so each engine sees its times in order.
    pub(crate) fn now(&self) -> Time {
        let t = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let before = self.last.fetch_max(t, Ordering::AcqRel);
        Time::from_nanos(t.max(before))
    }

    /// The proxy of listener `i`, locked until dropped (never across an
    /// `await`); [`Held::local`] is this worker's view of it.
    pub(crate) fn proxy(&self, i: usize) -> Held<'_> {
        let guard = lock(&self.proxies[i]);
        HOLDING.with(|h| h.set(h.get() + 1));
        Held {
            guard,
            worker: worker(),
        }
    }
}

/// This thread holds a proxy locked.
pub(crate) fn holding() -> bool {
    HOLDING.with(Cell::get) > 0
}

/// A listener's proxy locked by a worker.
pub(crate) struct Held<'a> {
    guard: MutexGuard<'a, Proxy>,
    worker: usize,
}

impl Held<'_> {
    /// This worker's view: the engine and counters, and its own pools.
    pub(crate) fn local(&mut self) -> Local<'_> {
        self.guard.local(self.worker)
    }

    /// The whole proxy (every worker's pools).
    pub(crate) fn all(&mut self) -> &mut Proxy {
        &mut self.guard
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(h.get().saturating_sub(1)));
    }
}

/// Counters of one proxy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    /// Downstream responses by status and response flags.
    pub(crate) responses: BTreeMap<u16, FxHashMap<mesh_engine::ResponseFlags, u64>>,
    pub(crate) overflow: u64,
    pub(crate) ejections: u64,
    pub(crate) returns: u64,
    pub(crate) retries: u64,
}

impl Stats {
    /// Counts a downstream answer (allocates only for a new combination).
    pub(crate) fn count_response(&mut self, status: u16, flags: mesh_engine::ResponseFlags) {
        *self
            .responses
            .entry(status)
            .or_default()
            .entry(flags)
            .or_default() += 1;
    }
}

/// One listener's proxy: its engine (shared by the workers, as Envoy's
/// cluster state is), its counters, and each worker's connection pools.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) listener: ListenerSpec,
    pub(crate) engine: Engine,
    pub(crate) stats: Stats,
    /// Engine events for the recorder (`Some` when recording).
    pub(crate) recorded: Option<Vec<RecEvent>>,
    /// Each worker's pools.
    workers: Vec<Pools>,
}

/// One worker's connection pools of one listener's proxy.
#[derive(Debug, Default)]
struct Pools {
    pools: Vec<HostPool>,
    /// Pools of each (cluster, endpoint) of the engine's current config:
    /// for a client speaking HTTP/1.1, and one speaking HTTP/2 (the same
    /// pool unless the cluster follows the client's protocol).
    pool_of: Vec<Vec<[usize; 2]>>,
    next_waiter: u64,
    /// Connections the pools want opened (see [`spawn_connects`]).
    connects: Vec<Connect>,
}

/// A worker's view of a listener's proxy: the shared engine and counters,
/// and the worker's own pools.
pub(crate) struct Local<'a> {
    pub(crate) listener: &'a ListenerSpec,
    pub(crate) engine: &'a mut Engine,
    pub(crate) stats: &'a mut Stats,
    recorded: &'a mut Option<Vec<RecEvent>>,
    pub(crate) pools: &'a mut Vec<HostPool>,
    pool_of: &'a mut Vec<Vec<[usize; 2]>>,
    next_waiter: &'a mut u64,
    connects: &'a mut Vec<Connect>,
}

impl Proxy {
    fn new(listener: ListenerSpec, engine: Engine, workers: usize) -> Self {
        let mut p = Self {
            listener,
            engine,
            stats: Stats::default(),
            recorded: None,
            workers: (0..workers.max(1)).map(|_| Pools::default()).collect(),
        };
        for w in &mut p.workers {
            w.index(&p.engine);
        }
        p
    }

    /// Worker `w`'s view (the last worker's for a larger `w`).
    pub(crate) fn local(&mut self, w: usize) -> Local<'_> {
        let last = self.workers.len() - 1;
        let pools = &mut self.workers[w.min(last)];
        Local {
            listener: &self.listener,
            engine: &mut self.engine,
            stats: &mut self.stats,
            recorded: &mut self.recorded,
            pools: &mut pools.pools,
            pool_of: &mut pools.pool_of,
            next_waiter: &mut pools.next_waiter,
            connects: &mut pools.connects,
        }
    }

    /// The counters of an upstream's pools, summed over the workers (and,
    /// when the cluster follows the client's protocol, its two pools).
    pub(crate) fn endpoint_stats(&self, up: Upstream) -> crate::pool::PoolStats {
        let mut s = crate::pool::PoolStats::default();
        for w in &self.workers {
            let [a, b] = w.pool_of[up.cluster.0 as usize][up.endpoint.0 as usize];
            let pools: &[usize] = if a == b { &[a] } else { &[a, b] };
            for &i in pools {
                let t = w.pools[i].stats;
                s.rq_total += t.rq_total;
                for (x, y) in s.rq_class.iter_mut().zip(t.rq_class) {
                    *x += y;
                }
                s.cx_total += t.cx_total;
                s.cx_connect_fail += t.cx_connect_fail;
            }
        }
        s
    }

    /// Applies a new config, keeping outlier state and every worker's pools.
    pub(crate) fn reconfigure(&mut self, mesh: Arc<Config>, now: Time) {
        self.engine.reconfigure(mesh, now);
        for w in &mut self.workers {
            w.index(&self.engine);
        }
        self.local(0).drain_events();
    }
}

impl Pools {
    /// Maps the engine's current (cluster, endpoint) pairs to pools, keeping
    /// the pools (and their connections) of pairs that stay. A pool speaks
    /// HTTP/1.1 or HTTP/2 as its cluster's `connectionPool.protocol` says;
    /// a cluster that follows the client's protocol has one of each.
    fn index(&mut self, engine: &Engine) {
        let mut by_key: FxHashMap<(Arc<str>, Arc<str>, bool), usize> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.cluster.clone(), p.address.clone(), p.h2), i))
            .collect();
        let mut pool_of = Vec::with_capacity(engine.cluster_count());
        for c in 0..engine.cluster_count() {
            let id = mesh_engine::ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            let cluster: Arc<str> = Arc::from(engine.cluster_name(id));
            let mut row = Vec::with_capacity(engine.endpoint_count(id));
            for e in 0..engine.endpoint_count(id) {
                let up = engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                let address: Arc<str> = Arc::from(engine.endpoint_address(up));
                let protocol = engine
                    .connection_pool(up)
                    .map_or(UpstreamProtocol::Http1, |c| c.protocol);
                let h2 = match protocol {
                    UpstreamProtocol::Http1 => [false, false],
                    UpstreamProtocol::Http2 => [true, true],
                    UpstreamProtocol::Downstream => [false, true],
                };
                let mut pair = [0; 2];
                for (slot, h2) in pair.iter_mut().zip(h2) {
                    let key = (cluster.clone(), address.clone(), h2);
                    *slot = *by_key.entry(key).or_insert_with(|| {
                        self.pools
                            .push(HostPool::new(cluster.clone(), address.clone(), h2));
                        self.pools.len() - 1
                    });
                }
                row.push(pair);
            }
            pool_of.push(row);
        }
        self.pool_of = pool_of;
    }
}

impl Local<'_> {
    /// The pool of an upstream just handed out by the engine (current
    /// generation), for a client speaking HTTP/2 (`client_h2`) or not.
    pub(crate) fn pool_for(&self, up: Upstream, client_h2: bool) -> usize {
        self.pool_of[up.cluster.0 as usize][up.endpoint.0 as usize][usize::from(client_h2)]
    }

    /// The connections this worker's pools want opened.
    pub(crate) fn take_connects(&mut self) -> Vec<Connect> {
        std::mem::take(self.connects)
    }

    /// Admission of the forwarded attempt of `ex` in pool `pool`: the
    /// exchange asks the engine, given what the pool has.
    pub(crate) fn acquire(&mut self, pool: usize, ex: &mut Exchange, now: Time) -> Acquire {
        let Some(up) = ex.upstream() else {
            return Acquire::Stale;
        };
        if self.pools[pool].h2 {
            let out = self.acquire_h2(pool, ex, up, now);
            self.drain_events();
            return out;
        }
        let idle_timeout = self.idle_timeout(up);
        self.close_unusable_last(pool, idle_timeout, now);
        let p = &self.pools[pool];
        let ready = !p.idle.is_empty();
        let empty = p.is_empty();
        let out = match ex.admit(self.engine, ready, empty, now) {
            Admit::Send { try_deadline } => {
                let p = &mut self.pools[pool];
                match p.idle.pop() {
                    Some(c) => {
                        p.busy += 1;
                        Acquire::Ready(c, try_deadline)
                    }
                    // Not reachable: `ready` said an idle one exists.
                    None => Acquire::Stale,
                }
            }
            Admit::Queue { open_connection } => {
                let (id, rx) = self.enqueue(pool, up);
                if open_connection {
                    self.open(pool, up, now);
                }
                Acquire::Wait(id, rx)
            }
            Admit::Answer(a) => Acquire::Answer(a),
            Admit::Stale => Acquire::Stale,
        };
        self.drain_events();
        out
    }

    /// Puts a request for `up` at the end of pool `pool`'s queue: its
    /// waiter id and where its grant will come.
    fn enqueue(&mut self, pool: usize, up: Upstream) -> (u64, oneshot::Receiver<Grant>) {
        let (tx, rx) = oneshot::channel();
        *self.next_waiter += 1;
        let id = *self.next_waiter;
        self.pools[pool].waiters.push_back(Waiter { id, up, tx });
        (id, rx)
    }

    fn idle_timeout(&self, up: Upstream) -> Duration {
        self.engine
            .connection_pool(up)
            .map_or(Duration::from_secs(3600), |c| c.idle_timeout)
    }

    /// Closes the idle connections next in line (the pool hands out the
    /// last one) while they are closed or idle for too long; the others
    /// wait for [`Proxy::sweep_idle`].
    fn close_unusable_last(&mut self, pool: usize, idle_timeout: Duration, now: Time) {
        let p = &mut self.pools[pool];
        while let Some(c) = p.idle.last_mut() {
            if usable(c, now, idle_timeout) {
                break;
            }
            if let Some(c) = p.idle.pop() {
                self.engine.connection_closed(c.up, now);
            }
        }
    }

    /// Closes idle connections that are closed or idle for too long.
    fn close_unusable(&mut self, pool: usize, idle_timeout: Duration, now: Time) {
        let p = &mut self.pools[pool];
        let mut i = 0;
        while i < p.idle.len() {
            if usable(&mut p.idle[i], now, idle_timeout) {
                i += 1;
            } else {
                let c = p.idle.swap_remove(i);
                self.engine.connection_closed(c.up, now);
                drop(c);
            }
        }
    }

    /// Closes expired idle connections of every pool (the timer task calls
    /// this about once a second).
    pub(crate) fn sweep_idle(&mut self, now: Time) {
        for i in 0..self.pools.len() {
            if self.pools[i].h2 {
                if let Some(up) = self.pools[i].h2conns.first().map(|c| c.up) {
                    let l = self.h2_limits(up);
                    self.close_spent_h2(i, l, now);
                }
                continue;
            }
            let Some(up) = self.pools[i].idle.first().map(|c| c.up) else {
                continue;
            };
            let t = self.idle_timeout(up);
            self.close_unusable(i, t, now);
        }
    }

    /// Starts a connection for pool `pool`'s queue.
    fn open(&mut self, pool: usize, up: Upstream, now: Time) {
        self.engine.connection_opened(up, now);
        let p = &mut self.pools[pool];
        p.connecting += 1;
        p.stats.cx_total += 1;
        let connect_timeout = self
            .engine
            .connection_pool(up)
            .map_or(Duration::from_secs(10), |c| c.connect_timeout);
        let target = match p.socket {
            Some(s) => Target::Socket(s),
            None => Target::Name(p.address.clone()),
        };
        let h2 = p.h2;
        self.connects.push(Connect {
            pool,
            up,
            target,
            connect_timeout,
            h2,
        });
    }

    /// A connection finished connecting (or failed to).
    pub(crate) fn connected(&mut self, pool: usize, up: Upstream, conn: Option<Conn>, now: Time) {
        let p = &mut self.pools[pool];
        p.connecting = p.connecting.saturating_sub(1);
        match conn {
            Some(mut c) => {
                c.idle_since = now;
                p.idle.push(c);
            }
            None => {
                p.stats.cx_connect_fail += 1;
                self.engine.connection_closed(up, now);
                // The first waiter's connection failed.
                self.fail_first_waiter(pool, now);
            }
        }
        self.pump(pool, now);
    }

    /// The connection meant for the first waiter failed: its exchange
    /// takes the failure. False if no request waits.
    fn fail_first_waiter(&mut self, pool: usize, now: Time) -> bool {
        let Some(w) = self.pools[pool].waiters.pop_front() else {
            return false;
        };
        if w.tx.send(Grant::ConnectFailure).is_err() {
            // Its request is gone without leaving the queue.
            self.engine.cancel_pending(w.up, now);
        }
        true
    }

    /// An attempt is over with its connection: keep it idle (answered, not
    /// closing, under `maxRequestsPerConnection`) or close it.
    pub(crate) fn release(&mut self, pool: usize, mut conn: Conn, keep: bool, now: Time) {
        let limit = self
            .engine
            .connection_pool(conn.up)
            .map_or(0, |c| c.max_requests_per_connection);
        conn.served += 1;
        let keep = keep && (limit == 0 || conn.served < limit) && !conn.finished;
        let p = &mut self.pools[pool];
        p.busy = p.busy.saturating_sub(1);
        if keep {
            conn.idle_since = now;
            p.idle.push(conn);
        } else {
            self.engine.connection_closed(conn.up, now);
            drop(conn);
        }
        self.pump(pool, now);
    }

    /// Puts back a connection granted to a request that left before using it.
    pub(crate) fn put_back(&mut self, pool: usize, conn: Conn, now: Time) {
        let p = &mut self.pools[pool];
        p.busy = p.busy.saturating_sub(1);
        p.idle.push(conn);
        self.pump(pool, now);
    }

    /// Gives idle connections to waiting requests in order; opens one if
    /// requests wait and nothing else will serve them.
    pub(crate) fn pump(&mut self, pool: usize, now: Time) {
        if self.pools[pool].h2 {
            self.pump_h2(pool, now);
            self.drain_events();
            return;
        }
        while let Some(up) = self.pools[pool].waiters.front().map(|w| w.up) {
            let idle_timeout = self.idle_timeout(up);
            self.close_unusable_last(pool, idle_timeout, now);
            let p = &mut self.pools[pool];
            if p.idle.is_empty() {
                if p.busy == 0 && p.connecting == 0 {
                    let empty = p.is_empty();
                    if self.engine.may_open_connection(up, empty, now) {
                        self.open(pool, up, now);
                    }
                }
                break;
            }
            let Some(w) = p.waiters.pop_front() else {
                break;
            };
            // The request's exchange admits it (or overflows) when it
            // takes the connection.
            let Some(c) = p.idle.pop() else { break };
            p.busy += 1;
            if let Err(Grant::Conn(c)) = w.tx.send(Grant::Conn(c)) {
                // The request left without taking it off the queue.
                self.engine.cancel_pending(w.up, now);
                let p = &mut self.pools[pool];
                p.busy = p.busy.saturating_sub(1);
                p.idle.push(c);
            }
        }
        self.drain_events();
    }

    /// Drains the engine's events into counters, the log and the recorder.
    pub(crate) fn drain_events(&mut self) {
        while let Some((now, ev)) = self.engine.poll_event() {
            if self.recorded.is_some() {
                self.record_event(&ev, now);
            }
            match ev {
                EngineEvent::Ejected {
                    upstream,
                    reason,
                    duration,
                } => {
                    self.stats.ejections += 1;
                    eprintln!(
                        "{} meshproxy: eject {} {} reason={} duration_ms={} at={now}",
                        now_rfc3339(),
                        self.engine.cluster_name(upstream.cluster),
                        self.engine.endpoint_address(upstream),
                        reason.as_str(),
                        duration.as_millis()
                    );
                }
                EngineEvent::Returned { upstream } => {
                    self.stats.returns += 1;
                    eprintln!(
                        "{} meshproxy: return {} {} at={now}",
                        now_rfc3339(),
                        self.engine.cluster_name(upstream.cluster),
                        self.engine.endpoint_address(upstream),
                    );
                }
                EngineEvent::Overflow { .. } => self.stats.overflow += 1,
                EngineEvent::Panic { cluster, in_panic } => eprintln!(
                    "{} meshproxy: cluster {} panic={in_panic}",
                    now_rfc3339(),
                    self.engine.cluster_name(cluster)
                ),
                EngineEvent::ConfigApplied { clusters, routes } => eprintln!(
                    "{} meshproxy: config applied on {} ({clusters} clusters, {routes} routes)",
                    now_rfc3339(),
                    self.listener.address
                ),
            }
        }
    }
}

impl Local<'_> {
    fn record_event(&mut self, ev: &EngineEvent, now: Time) {
        let e = &*self.engine;
        let mut detail = mesh_rundir::engine_event_detail(ev);
        let endpoint = match ev {
            EngineEvent::Ejected { upstream, .. } | EngineEvent::Returned { upstream } => {
                // An address can be in several clusters (a subset's and
                // the service's): the recording names the cluster too.
                if !detail.is_empty() {
                    detail.push(' ');
                }
                detail.push_str("cluster=");
                detail.push_str(e.cluster_name(upstream.cluster));
                e.endpoint_address(*upstream).to_owned()
            }
            EngineEvent::Overflow { upstream } => e.cluster_name(upstream.cluster).to_owned(),
            EngineEvent::Panic { cluster, .. } => e.cluster_name(*cluster).to_owned(),
            EngineEvent::ConfigApplied { .. } => String::new(),
        };
        let row = RecEvent {
            time: now,
            kind: mesh_rundir::engine_event_kind(ev),
            proxy: self.listener.address.to_string(),
            endpoint,
            detail,
        };
        if let Some(v) = self.recorded.as_mut() {
            v.push(row);
        }
    }
}

mod h2;

/// The answer to an attempt's admission.
#[derive(Debug)]
pub(crate) enum Acquire {
    /// An idle connection, attached; the per-try deadline.
    Ready(Conn, Option<Time>),
    /// A stream on an HTTP/2 connection, attached; the per-try deadline.
    Stream(Stream, Option<Time>),
    /// Queued: wait for the grant, then the exchange's `dequeue`.
    Wait(u64, oneshot::Receiver<Grant>),
    /// The breaker refused it (503 `UO`).
    Answer(mesh_engine::Answer),
    /// Not admissible (not reached).
    Stale,
}

/// A connection to start, handed from the (synchronous) pool to the async
/// world: the caller of a pool method spawns these with [`spawn_connects`].
#[derive(Debug)]
pub(crate) struct Connect {
    pool: usize,
    up: Upstream,
    target: Target,
    connect_timeout: Duration,
    /// Speak HTTP/2 (prior knowledge) once connected.
    h2: bool,
}

/// Spawns the connection attempts proxy `li`'s pools of this worker asked
/// for. Call after any pool method, once the proxy is no longer locked.
pub(crate) fn spawn_connects(sh: &Arc<Shared>, li: usize) {
    let todo = sh.proxy(li).local().take_connects();
    for c in todo {
        let sh = sh.clone();
        tokio::task::spawn_local(async move {
            if c.h2 {
                let max_head = sh.options.max_header_bytes;
                let send = connect_h2(c.target, c.connect_timeout, max_head).await;
                let mut p = sh.proxy(li);
                let now = sh.now();
                p.local().connected_h2(c.pool, c.up, send, now);
            } else {
                let conn = connect(c.target, c.connect_timeout, c.up).await;
                let mut p = sh.proxy(li);
                let now = sh.now();
                p.local().connected(c.pool, c.up, conn, now);
            }
            spawn_connects(&sh, li);
        });
    }
}
