//! The engine: one proxy's routing, load-balancing, outlier-detection and
//! circuit-breaking state machine.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::affinity::{self, KeyHash};
use crate::balance::{Balancer, Host};
use crate::breaker::{Admission, Breaker, BreakerStats};
use crate::config::{Action, Config, HashKey, HttpRoute, RetryOn, RetryPolicy, format_duration};
use crate::decision::{
    ClusterId, Decision, Delay, EndpointId, EngineEvent, Forward, Outcome, Reject, RejectReason,
    Respond, ResponseFlag, Upstream,
};
use crate::outlier::{Change, Detector, MaxEjectionRule, OutlierStats};
use crate::request::Request;
use crate::rng::{Component, Stream};
use crate::route::{ProxySpec, RouteId, RouteTable};
use crate::time::{MonotonicGuard, Time};

mod generations;
mod inspect;
mod retry;

use generations::{Retired, build_clusters, route_extras, routing_of};

/// The most worker threads an engine models.
pub const MAX_WORKERS: u32 = 1024;

/// Options of an engine beyond its config: Envoy's worker threads, and
/// compatibility modes away from modern Envoy (off by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// The `maxEjectionPercent` rule (default: Envoy ≥ 1.28's strict rule).
    pub max_ejection_rule: MaxEjectionRule,
    /// Envoy's worker threads (`--concurrency`; 0 counts as 1). As in
    /// Envoy, each worker has its own load-balancer state (round-robin
    /// position, least-request choices), while outlier detection and the
    /// circuit breaker's counters are the cluster's, shared by all; a
    /// request says its worker in [`Request::worker`]. At most
    /// [`MAX_WORKERS`].
    pub workers: u32,
}

/// One proxy's view of the mesh: a sidecar's or a gateway's.
///
/// In Istio every proxy keeps its own load-balancer state, outlier detectors
/// and breaker counters, so the simulator gives each modelled proxy its own
/// `Engine`.
///
/// # Calling convention
/// - Inputs (`handle_*`, `admit`, `reconfigure`, …) take `now`, which must
///   never go backwards between calls (checked in debug builds).
/// - A [`Decision::Forward`] is followed by [`Engine::admit`]. If admitted
///   (at once or after [`Engine::dequeue`]), the attempt ends with exactly one
///   [`Engine::handle_response`]; if it overflows, nothing more is reported.
///   A caller without a connection model calls `admit(up, true, false, now)`.
/// - A [`Decision::Delay`] is followed by [`Engine::handle_delayed`] once
///   the delay has passed, or by [`Engine::abandon_delay`] if the request is
///   given up before; a request started with [`Engine::start_request`] ends
///   with [`Engine::finish_request`]. Both hold their route's config
///   generation meanwhile; an earlier generation nobody holds is dropped at
///   the next [`Engine::reconfigure`] (a route id read from a decision stays
///   readable until then), so memory does not grow with pushes.
/// - [`Engine::poll_timeout`] says when to call [`Engine::handle_timeout`]
///   next (the outlier-detection interval ticks).
/// - Drain [`Engine::poll_event`] after each input.
#[derive(Debug)]
pub struct Engine {
    config: Arc<Config>,
    proxy: ProxySpec,
    options: EngineOptions,
    routing: Routing,
    /// The routing of earlier generations that requests still hold (a
    /// delayed request's route, a request's retry state), oldest first;
    /// dropped at the next `reconfigure` once none does.
    retired: Vec<Retired>,
    /// Requests holding the current routing.
    pins: u32,
    clusters: Vec<ClusterState>,
    /// Config generation; `Upstream`s of older generations are found again
    /// by their cluster's and host's uids.
    generation: u32,
    /// Where each cluster and host of the config in force is, by the uid it
    /// keeps across pushes (a cluster: same name; a host: same address in
    /// a cluster that stays). Only live ones: memory does not grow with
    /// the number of pushes.
    cluster_uids: FxHashMap<u32, u32>,
    host_uids: FxHashMap<u32, (u32, u32)>,
    /// The next uid to hand out.
    next_uid: u32,
    next_timeout: Option<Time>,
    rng_weighted: Stream,
    rng_lb: Stream,
    rng_hash: Stream,
    rng_delay: Stream,
    rng_abort: Stream,
    rng_outlier: Stream,
    rng_retry: Stream,
    /// Events not yet polled, each with the time it happened.
    events: VecDeque<(Time, EngineEvent)>,
    guard: MonotonicGuard,
}

/// The route table of one config generation and what the request path
/// precomputes from it.
#[derive(Debug)]
struct Routing {
    generation: u32,
    /// A pure function of (config, proxy, generation): shared by engines
    /// of identical proxies ([`SharedRoutes`]).
    compiled: Arc<Compiled>,
    /// The uid of each cluster of this generation's config.
    cluster_uids: Vec<u32>,
}

/// What a proxy's routing compiles to from a config.
#[derive(Debug)]
struct Compiled {
    table: RouteTable,
    /// Hash keys of each route: one per destination whose cluster hashes
    /// (§4.7), each flagged when equal to the previous one.
    hash_keys: Vec<Vec<(HashKey, bool)>>,
    /// Rendezvous seeds of each route's destinations (sticky-weights extension).
    seeds: Vec<Vec<u64>>,
}

impl Routing {
    fn new(config: &Config, proxy: &ProxySpec, generation: u32) -> Self {
        let table = RouteTable::build(config, proxy, generation);
        let (hash_keys, seeds) = route_extras(config, &table);
        Self {
            generation,
            compiled: Arc::new(Compiled {
                table,
                hash_keys,
                seeds,
            }),
            cluster_uids: Vec::new(),
        }
    }
}

/// An engine's compiled route tables (its first config generation), for
/// engines of identical proxies to share: a simulation of many sidecars
/// that see the same mesh keeps one copy, which stays in the cache.
/// Routing is a pure function of the config and the proxy, so sharing it
/// changes nothing an engine decides.
#[derive(Clone, Debug)]
pub struct SharedRoutes {
    config: Arc<Config>,
    proxy: ProxySpec,
    compiled: Arc<Compiled>,
}

impl SharedRoutes {
    /// The proxy they were compiled for.
    pub fn proxy(&self) -> &ProxySpec {
        &self.proxy
    }
}

/// One cluster's runtime state.
#[derive(Clone, Debug)]
struct ClusterState {
    name: String,
    /// Kept across pushes while the cluster's name stays.
    uid: u32,
    hosts: Vec<Host>,
    /// Each host's uid, kept across pushes while its address stays.
    host_uids: Vec<u32>,
    /// Endpoints the balancer may pick (healthy ones, or all in panic).
    candidates: Vec<u32>,
    /// Worker 0's balancer, inline (the common case of one worker), and
    /// those of the other workers (their kind is the same).
    balancer: Balancer,
    more_balancers: Vec<Balancer>,
    detector: Option<Detector>,
    breaker: Breaker,
    panic_threshold_percent: u32,
    in_panic: bool,
    stats: ClusterStats,
}

/// A cluster's router and load-balancer counters, named as Envoy's
/// `cluster.<name>.*` stats (the breaker's are in [`BreakerStats`], outlier
/// detection's in [`OutlierStats`]). Kept across pushes while the cluster
/// stays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// `lb_healthy_panic`: hosts picked while the cluster was in panic
    /// (too few healthy hosts, so health was ignored).
    pub lb_healthy_panic: u64,
    /// `upstream_rq_retry`: retries decided (each then waits its back-off).
    pub upstream_rq_retry: u64,
    /// `upstream_rq_retry_success`: retried requests that then got an
    /// answer the policy does not retry.
    pub upstream_rq_retry_success: u64,
    /// `upstream_rq_retry_limit_exceeded`: requests whose retries ran out
    /// (`URX`).
    pub upstream_rq_retry_limit_exceeded: u64,
    /// `retry_or_shadow_abandoned`: requests whose body outgrew the buffer
    /// kept for retries, so they were not retried whatever happened.
    pub retry_or_shadow_abandoned: u64,
}

impl ClusterState {
    /// A host picked by `worker`'s balancer (worker 0's for an unknown one).
    #[inline]
    fn pick(&mut self, worker: usize, hash: u64, attempt: u32, rng: &mut Stream) -> Option<u32> {
        let balancer = match worker.checked_sub(1) {
            Some(i) if i < self.more_balancers.len() => &mut self.more_balancers[i],
            _ => &mut self.balancer,
        };
        balancer.pick(&self.hosts, &self.candidates, hash, attempt, rng)
    }

    /// Recomputes the candidates from health and the panic threshold
    /// (reference §2.10) and rebuilds the balancer. Returns whether the
    /// panic state changed.
    fn refresh(&mut self) -> bool {
        let total = self.hosts.len();
        self.candidates.clear();
        for i in 0..total {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            if !self.detector.as_ref().is_some_and(|d| d.is_ejected(i)) {
                self.candidates.push(i);
            }
        }
        let healthy = self.candidates.len() as u64;
        let threshold = u64::from(self.panic_threshold_percent);
        let panic = total > 0 && 100 * healthy < threshold * total as u64;
        if panic {
            self.candidates.clear();
            self.candidates
                .extend(0..u32::try_from(total).unwrap_or(u32::MAX));
        }
        self.balancer.rebuild(&self.hosts, &self.candidates);
        for b in &mut self.more_balancers {
            b.rebuild(&self.hosts, &self.candidates);
        }
        let changed = panic != self.in_panic;
        self.in_panic = panic;
        changed
    }
}

/// The router state of one request across its attempts, owned by the caller
/// (plain data, no allocation). Neither `Copy` nor `Clone`: a request has
/// one state, and [`Engine::finish_request`] lets go of what it holds once.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestState {
    /// The route.
    pub route: RouteId,
    /// The upstream of the latest attempt.
    pub upstream: Upstream,
    /// When the router started (after any injected delay).
    pub started: Time,
    /// Retries made so far.
    pub retries: u32,
    /// The worker whose balancer picks the retries' hosts.
    worker: u32,
    destination: u32,
    hash: Option<u64>,
    /// Uids of the hosts tried (they survive a push, indices may not).
    tried: [u32; MAX_TRACKED_HOSTS],
    tried_len: u8,
    retry_in_flight: bool,
    /// The state holds its route's generation until `finish_request`.
    pinned: bool,
}

/// Hosts remembered for the `previous_hosts` retry predicate.
const MAX_TRACKED_HOSTS: usize = 8;

impl RequestState {
    fn tried(&self, host_uid: u32) -> bool {
        self.tried[..usize::from(self.tried_len)].contains(&host_uid)
    }

    fn remember(&mut self, host_uid: u32) {
        if usize::from(self.tried_len) < MAX_TRACKED_HOSTS {
            self.tried[usize::from(self.tried_len)] = host_uid;
            self.tried_len += 1;
        } else {
            self.tried.rotate_left(1);
            self.tried[MAX_TRACKED_HOSTS - 1] = host_uid;
        }
    }
}

/// Whether to retry an attempt that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum RetryDecision {
    /// Retry after this back-off; then call [`Engine::retry`].
    Retry {
        /// Envoy's jittered exponential back-off.
        backoff: Duration,
    },
    /// Do not retry: return this attempt's result downstream, with `flag`.
    Done {
        /// `URX` when retries ran out, `UO` when `maxRetries` refused one,
        /// `UT` when the route timeout has passed, `None` when the policy
        /// does not retry this outcome.
        flag: Option<ResponseFlag>,
    },
}

impl Engine {
    /// A new engine for `proxy`, with all its random streams derived from
    /// `seed`. Outlier-detection ticks start at `Time::ZERO`.
    pub fn new(config: Arc<Config>, proxy: ProxySpec, seed: u64) -> Self {
        Self::with_options(config, proxy, seed, EngineOptions::default())
    }

    /// As [`Engine::new`], with compatibility options.
    pub fn with_options(
        config: Arc<Config>,
        proxy: ProxySpec,
        seed: u64,
        options: EngineOptions,
    ) -> Self {
        Self::build(config, proxy, seed, options, None)
    }

    /// As [`Engine::with_options`], sharing the route tables `routes` of
    /// another engine when they were compiled from the same config (the
    /// same `Arc`) for an equal proxy; otherwise compiling its own.
    pub fn with_shared_routes(
        config: Arc<Config>,
        proxy: ProxySpec,
        seed: u64,
        options: EngineOptions,
        routes: &SharedRoutes,
    ) -> Self {
        let shared = (Arc::ptr_eq(&config, &routes.config) && proxy == routes.proxy)
            .then(|| routes.compiled.clone());
        Self::build(config, proxy, seed, options, shared)
    }

    /// This engine's route tables of its first config generation, for
    /// [`Engine::with_shared_routes`]; `None` after a reconfigure.
    pub fn shared_routes(&self) -> Option<SharedRoutes> {
        (self.routing.generation == 0).then(|| SharedRoutes {
            config: self.config.clone(),
            proxy: self.proxy.clone(),
            compiled: self.routing.compiled.clone(),
        })
    }

    fn build(
        config: Arc<Config>,
        proxy: ProxySpec,
        seed: u64,
        options: EngineOptions,
        compiled: Option<Arc<Compiled>>,
    ) -> Self {
        let mut rng_lb = Stream::new(seed, Component::LoadBalancer);
        let routing = match compiled {
            Some(compiled) => Routing {
                generation: 0,
                compiled,
                cluster_uids: Vec::new(),
            },
            None => Routing::new(&config, &proxy, 0),
        };
        let clusters = build_clusters(&config, &mut rng_lb, options, Time::ZERO);
        let mut engine = Self {
            config,
            proxy,
            options,
            routing,
            retired: Vec::new(),
            pins: 0,
            clusters,
            generation: 0,
            cluster_uids: FxHashMap::default(),
            host_uids: FxHashMap::default(),
            next_uid: 0,
            next_timeout: None,
            rng_weighted: Stream::new(seed, Component::WeightedCluster),
            rng_lb,
            rng_hash: Stream::new(seed, Component::HashFallback),
            rng_delay: Stream::new(seed, Component::FaultDelay),
            rng_abort: Stream::new(seed, Component::FaultAbort),
            rng_outlier: Stream::new(seed, Component::Outlier),
            rng_retry: Stream::new(seed, Component::Retry),
            events: VecDeque::new(),
            guard: MonotonicGuard::default(),
        };
        engine.next_timeout = engine.compute_next_timeout();
        engine.index_uids();
        engine
    }

    /// Decides what to do with a request. Allocates nothing in steady state.
    pub fn handle_request(&mut self, req: &Request<'_>, now: Time) -> Decision {
        self.guard.observe(now);
        let Some(route_id) = self.routing.compiled.table.select(req) else {
            return Decision::Reject(Reject {
                reason: RejectReason::NoRoute,
                status: 404,
                route: None,
                delay: None,
            });
        };
        let route = self.routing.compiled.table.route(route_id);
        match &route.action {
            Action::Route(_) => {}
            Action::Redirect(r) => {
                return Decision::Respond(Respond {
                    route: route_id,
                    status: r.code,
                });
            }
            Action::DirectResponse { status, .. } => {
                return Decision::Respond(Respond {
                    route: route_id,
                    status: *status,
                });
            }
        };
        // The fault filter runs before the router: a delay hits first, and
        // the router (abort check, weighted cluster, host) runs only after
        // it, in `handle_delayed`.
        if let Some((d, ppm)) = route.fault.delay
            && self.rng_delay.hit_ppm(ppm)
        {
            self.pins += 1;
            return Decision::Delay(Delay {
                route: route_id,
                delay: d,
            });
        }
        self.route_to_upstream(route_id, req, None)
    }

    /// Continues a request after its injected delay ([`Decision::Delay`]):
    /// the abort check, the weighted cluster and the host are decided now,
    /// as Envoy's router runs only when the fault filter's delay has passed.
    /// The route is the one chosen before the delay, even if a
    /// `reconfigure` happened meanwhile.
    ///
    /// The delay held its route's config generation; this lets go of it
    /// (the route stays readable until the next `reconfigure`). A request
    /// given up during its delay calls [`Engine::abandon_delay`] instead.
    pub fn handle_delayed(&mut self, req: &Request<'_>, delay: Delay, now: Time) -> Decision {
        self.guard.observe(now);
        self.unpin(delay.route.generation);
        self.route_to_upstream(delay.route, req, Some(delay.delay))
    }

    /// A request given up during its injected delay (the client went
    /// away): lets go of its route's config generation.
    pub fn abandon_delay(&mut self, delay: Delay, now: Time) {
        self.guard.observe(now);
        self.unpin(delay.route.generation);
    }

    /// Abort, weighted destination, hash and host for a routed request.
    fn route_to_upstream(
        &mut self,
        route_id: RouteId,
        req: &Request<'_>,
        delay: Option<Duration>,
    ) -> Decision {
        let Some(routing) = routing_of(&self.routing, &self.retired, route_id) else {
            // Its generation was dropped: a caller that did not hold it.
            return Decision::Reject(Reject {
                reason: RejectReason::NoRoute,
                status: 404,
                route: None,
                delay,
            });
        };
        let route = routing.compiled.table.route(route_id);
        let Action::Route(destinations) = &route.action else {
            return Decision::Respond(Respond {
                route: route_id,
                status: match &route.action {
                    Action::Redirect(r) => r.code,
                    Action::DirectResponse { status, .. } => *status,
                    Action::Route(_) => 503,
                },
            });
        };
        if let Some((status, ppm)) = route.fault.abort
            && self.rng_abort.hit_ppm(ppm)
        {
            return Decision::Reject(Reject {
                reason: RejectReason::FaultAbort,
                status,
                route: Some(route_id),
                delay,
            });
        }
        let timeout = route.timeout;
        // The weighted cluster: drawn at random per request (Envoy), or by
        // the sticky-weights extension's rendezvous hash when its key is there.
        let chosen = if destinations.len() == 1 {
            0
        } else {
            let sticky =
                route
                    .sticky_weights
                    .as_ref()
                    .and_then(|k| match affinity::hash_key(k, req) {
                        KeyHash::Hash(h) | KeyHash::Generated { hash: h, .. } => Some(h),
                        KeyHash::Absent => None,
                    });
            match sticky {
                Some(h) => {
                    let seeds = &routing.compiled.seeds[route_id.index as usize];
                    affinity::rendezvous(
                        h,
                        seeds.iter().zip(destinations).map(|(s, d)| (*s, d.weight)),
                    )
                    .unwrap_or(0)
                }
                None => pick_weighted(
                    destinations.iter().map(|d| d.weight),
                    &mut self.rng_weighted,
                ),
            }
        };
        // The route's cluster index is in its own config generation. A
        // destination without a cluster (an unknown host, or a subset no
        // DestinationRule defines) answers 503 NC; Envoy's router looks the
        // cluster up by name when it runs, so for a route of an earlier
        // generation (a request held by a fault delay across a push) a
        // cluster the push added is found.
        let d = &destinations[chosen];
        let cluster_index = match d.cluster {
            Some(c) if route_id.generation == self.generation => Some(c),
            Some(c) => routing
                .cluster_uids
                .get(c)
                .and_then(|uid| self.cluster_uids.get(uid))
                .map(|&c| c as usize),
            None if route_id.generation != self.generation => {
                let config = &self.config;
                config
                    .clusters
                    .iter()
                    .position(|c| c.subset == d.subset && config.services[c.service].host == d.host)
            }
            None => None,
        };
        let Some(cluster_index) = cluster_index.filter(|&c| c < self.clusters.len()) else {
            return Decision::Reject(Reject {
                reason: RejectReason::NoCluster,
                status: 503,
                route: Some(route_id),
                delay,
            });
        };
        let cluster = &mut self.clusters[cluster_index];
        let mut hash = None;
        let mut set_cookie = None;
        // An unknown worker picks on worker 0's balancer, and says so.
        let worker = if (req.worker as usize) <= cluster.more_balancers.len() {
            req.worker as usize
        } else {
            0
        };
        if cluster.balancer.is_hash_based() {
            // Istio writes one policy per destination, usually all the same
            // key: hash each distinct key once, fold it once per policy.
            let mut last = KeyHash::Absent;
            for (key, same_as_previous) in &routing.compiled.hash_keys[route_id.index as usize] {
                let kh = if *same_as_previous {
                    last
                } else {
                    affinity::hash_key(key, req)
                };
                last = kh;
                match kh {
                    KeyHash::Absent => {}
                    KeyHash::Hash(h) => hash = Some(affinity::combine(hash, h)),
                    KeyHash::Generated { hash: h, cookie } => {
                        hash = Some(affinity::combine(hash, h));
                        set_cookie.get_or_insert(cookie);
                    }
                }
            }
        }
        let endpoint = if matches!(cluster.balancer, Balancer::Passthrough) {
            passthrough(cluster, req)
        } else {
            // No hash key in the request: a random hash, so no affinity (§4.7).
            let h = match hash {
                Some(h) => h,
                None if cluster.balancer.is_hash_based() => self.rng_hash.next_u64(),
                None => 0,
            };
            cluster.pick(worker, h, 0, &mut self.rng_lb)
        };
        let Some(endpoint) = endpoint else {
            return Decision::Reject(Reject {
                reason: RejectReason::NoHealthyUpstream,
                status: 503,
                route: Some(route_id),
                delay,
            });
        };
        cluster.stats.lb_healthy_panic += u64::from(cluster.in_panic);
        cluster.hosts[endpoint as usize].active_requests += 1;
        let upstream = Upstream {
            cluster: ClusterId(u32::try_from(cluster_index).unwrap_or(u32::MAX)),
            endpoint: EndpointId(endpoint),
            generation: self.generation,
            cluster_uid: cluster.uid,
            host_uid: cluster.host_uids[endpoint as usize],
        };
        Decision::Forward(Forward {
            route: route_id,
            upstream,
            destination: u32::try_from(chosen).unwrap_or(u32::MAX),
            delay,
            timeout,
            hash,
            set_cookie,
            worker: u32::try_from(worker).unwrap_or(0),
        })
    }

    /// Circuit-breaker admission of a forwarded request (see [`crate::breaker`]).
    ///
    /// `ready`: a ready connection to the host exists; `pool_empty`: the
    /// caller has no connection at all to it. An overflow is final: answer
    /// 503 `UO` with `x-envoy-overloaded: true`; it is never retried and never
    /// counted by outlier detection.
    #[inline]
    pub fn admit(
        &mut self,
        upstream: Upstream,
        ready: bool,
        pool_empty: bool,
        now: Time,
    ) -> Admission {
        self.guard.observe(now);
        let Some((c, e)) = self.resolve(upstream) else {
            return Admission::Overflow;
        };
        let a = self.clusters[c].breaker.admit(ready, pool_empty);
        if a == Admission::Overflow {
            self.overflowed(c, Some(e), upstream, now);
        }
        a
    }

    /// A queued request's connection is ready: attach it, or overflow on
    /// `maxRequests` (`http2MaxRequests`).
    pub fn dequeue(&mut self, upstream: Upstream, now: Time) -> Admission {
        self.guard.observe(now);
        let Some((c, e)) = self.locate(upstream) else {
            return Admission::Overflow;
        };
        let a = self.clusters[c].breaker.dequeue();
        if a == Admission::Overflow {
            self.overflowed(c, e, upstream, now);
        }
        a
    }

    /// A queued request gave up before a connection was ready.
    pub fn cancel_pending(&mut self, upstream: Upstream, now: Time) {
        self.guard.observe(now);
        if let Some((c, e)) = self.locate(upstream) {
            self.clusters[c].breaker.cancel_pending();
            if let Some(e) = e {
                let h = &mut self.clusters[c].hosts[e];
                h.active_requests = h.active_requests.saturating_sub(1);
            }
        }
    }

    fn overflowed(&mut self, c: usize, e: Option<usize>, upstream: Upstream, now: Time) {
        if let Some(e) = e {
            let h = &mut self.clusters[c].hosts[e];
            h.active_requests = h.active_requests.saturating_sub(1);
        }
        self.events
            .push_back((now, EngineEvent::Overflow { upstream }));
    }

    /// Whether the caller may open another connection to `upstream` for
    /// requests waiting in its pool: under `maxConnections`, or — Envoy's
    /// exception that keeps a queue from starving — when the caller has no
    /// connection at all to that host (`pool_empty`). A refusal counts as
    /// `upstream_cx_overflow`.
    pub fn may_open_connection(&mut self, upstream: Upstream, pool_empty: bool, now: Time) -> bool {
        self.guard.observe(now);
        let Some((c, _)) = self.locate(upstream) else {
            return false;
        };
        let b = &mut self.clusters[c].breaker;
        if b.stats.connections < b.limits.max_connections {
            return true;
        }
        b.stats.cx_overflow += 1;
        pool_empty
    }

    /// The `connectionPool` settings of an upstream's cluster.
    #[inline]
    pub fn connection_pool(&self, upstream: Upstream) -> Option<crate::config::ConnectionPool> {
        self.cluster_of(upstream)
            .map(|c| self.clusters[c].breaker.limits)
    }

    /// The caller opened a connection to `upstream` (counts against the
    /// cluster's `maxConnections`).
    pub fn connection_opened(&mut self, upstream: Upstream, now: Time) {
        self.guard.observe(now);
        if let Some((c, _)) = self.locate(upstream) {
            self.clusters[c].breaker.connection_opened();
        }
    }

    /// A connection to `upstream` closed. An upstream from before a
    /// `reconfigure` is counted against its cluster's new place.
    pub fn connection_closed(&mut self, upstream: Upstream, now: Time) {
        self.guard.observe(now);
        if let Some((c, _)) = self.locate(upstream) {
            self.clusters[c].breaker.connection_closed();
        }
    }

    /// Takes the outcome of an admitted attempt: frees its breaker slot and
    /// active-request count, and feeds outlier detection, which may eject
    /// the host at once (an [`EngineEvent::Ejected`]). Allocates nothing.
    pub fn handle_response(&mut self, upstream: Upstream, outcome: Outcome, now: Time) {
        self.guard.observe(now);
        let Some((c, e)) = self.resolve(upstream) else {
            // The endpoint left in a reconfigure: its cluster's slot is freed.
            if let Some(c) = self.locate_cluster(upstream) {
                self.clusters[c].breaker.finish();
            }
            return;
        };
        let cluster = &mut self.clusters[c];
        let host = &mut cluster.hosts[e];
        debug_assert!(
            host.active_requests > 0,
            "response without a request to {}",
            host.address
        );
        host.active_requests = host.active_requests.saturating_sub(1);
        cluster.breaker.finish();
        let Some(detector) = &mut cluster.detector else {
            return;
        };
        let endpoint = u32::try_from(e).unwrap_or(u32::MAX);
        if let Some(Change::Ejected {
            reason, duration, ..
        }) = detector.report(endpoint, outcome, now, &mut self.rng_outlier)
        {
            let panic_changed = cluster.refresh();
            let cluster_id = ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            self.events.push_back((
                now,
                EngineEvent::Ejected {
                    upstream: Upstream {
                        cluster: cluster_id,
                        endpoint: EndpointId(endpoint),
                        generation: self.generation,
                        cluster_uid: cluster.uid,
                        host_uid: cluster.host_uids[e],
                    },
                    reason,
                    duration,
                },
            ));
            if panic_changed {
                let in_panic = self.clusters[c].in_panic;
                self.events.push_back((
                    now,
                    EngineEvent::Panic {
                        cluster: cluster_id,
                        in_panic,
                    },
                ));
            }
        }
    }

    /// The downstream gave up on a forwarded request before its attempt was
    /// answered (the calling application timed out or closed the
    /// connection): Envoy resets the upstream stream. `admitted`: the
    /// attempt was attached by [`Engine::admit`] or [`Engine::dequeue`]
    /// (false while it still waits out an injected delay, before
    /// admission). Frees the breaker slot (if admitted) and the host's
    /// active-request count; outlier detection is not told, as the host did
    /// nothing wrong. Use [`Engine::cancel_pending`] for a request queued
    /// for a connection, and [`Engine::finish_request`] for the retry state.
    pub fn cancel(&mut self, upstream: Upstream, admitted: bool, now: Time) {
        self.guard.observe(now);
        let Some((c, e)) = self.locate(upstream) else {
            return;
        };
        let cluster = &mut self.clusters[c];
        if admitted {
            cluster.breaker.finish();
        }
        if let Some(e) = e {
            let h = &mut cluster.hosts[e];
            h.active_requests = h.active_requests.saturating_sub(1);
        }
    }

    /// When [`Engine::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_timeout
    }

    /// Runs the outlier-detection ticks due at or before `now`: returns
    /// ejected hosts whose time has passed and decays multipliers.
    pub fn handle_timeout(&mut self, now: Time) {
        self.guard.observe(now);
        if self.next_timeout.is_none_or(|t| t > now) {
            return;
        }
        let generation = self.generation;
        for (c, cluster) in self.clusters.iter_mut().enumerate() {
            let Some(detector) = &mut cluster.detector else {
                continue;
            };
            if detector.next_tick > now {
                continue;
            }
            let cluster_id = ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            let mut returned = false;
            let events = &mut self.events;
            let (cluster_uid, host_uids) = (cluster.uid, &cluster.host_uids);
            detector.handle_timeout(now, &mut |change| {
                if let Change::Returned { host } = change {
                    returned = true;
                    events.push_back((
                        now,
                        EngineEvent::Returned {
                            upstream: Upstream {
                                cluster: cluster_id,
                                endpoint: EndpointId(host),
                                generation,
                                cluster_uid,
                                host_uid: host_uids[host as usize],
                            },
                        },
                    ));
                }
            });
            if returned && cluster.refresh() {
                self.events.push_back((
                    now,
                    EngineEvent::Panic {
                        cluster: cluster_id,
                        in_panic: cluster.in_panic,
                    },
                ));
            }
        }
        self.next_timeout = self.compute_next_timeout();
    }

    fn compute_next_timeout(&self) -> Option<Time> {
        self.clusters
            .iter()
            .filter_map(|c| c.detector.as_ref().map(|d| d.next_tick))
            .min()
    }

    /// The next event, if any, with when it happened (the `now` of the
    /// input that caused it).
    #[inline]
    pub fn poll_event(&mut self) -> Option<(Time, EngineEvent)> {
        self.events.pop_front()
    }
}

/// Envoy's weighted-cluster draw: `v = random % total`, then the cluster
/// whose half-open interval `[start, start + w)` holds `v` (reference §5.4).
fn pick_weighted(weights: impl Iterator<Item = u32> + Clone, rng: &mut Stream) -> usize {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return 0;
    }
    let mut v = rng.modulo(total);
    for (i, w) in weights.enumerate() {
        if v < u64::from(w) {
            return i;
        }
        v -= u64::from(w);
    }
    0
}

fn passthrough(cluster: &ClusterState, req: &Request<'_>) -> Option<u32> {
    let dst = req.destination?;
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    std::io::Write::write_fmt(&mut cursor, format_args!("{dst}")).ok()?;
    let n = usize::try_from(cursor.position()).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    cluster
        .candidates
        .iter()
        .copied()
        .find(|&c| &*cluster.hosts[c as usize].address == text)
}

#[cfg(test)]
mod tests;
