//! The engine: one proxy's routing and load-balancing state machine.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::affinity::{self, KeyHash};
use crate::balance::{Balancer, Host};
use crate::config::{Action, Config, HashKey, HttpRoute, format_duration};
use crate::decision::{
    ClusterId, Decision, EndpointId, EngineEvent, Forward, Outcome, Reject, RejectReason, Respond,
    Upstream,
};
use crate::request::Request;
use crate::rng::{Component, Stream};
use crate::route::{ProxySpec, RouteId, RouteTable};
use crate::time::{MonotonicGuard, Time};

/// One proxy's view of the mesh: a sidecar's or a gateway's.
///
/// In Istio every proxy keeps its own load-balancer state (and, with the
/// resilience part, its own outlier detectors and breaker counters), so the
/// simulator gives each modelled proxy its own `Engine`.
///
/// # Calling convention
/// - Inputs (`handle_request`, `handle_response`, `reconfigure`) take `now`,
///   which must never go backwards between calls (checked in debug builds).
/// - Every [`Decision::Forward`] must be answered by exactly one
///   [`Engine::handle_response`] with its `upstream`, or the endpoint's
///   active-request count (which `LEAST_REQUEST` reads) leaks.
/// - Drain [`Engine::poll_event`] after each input.
#[derive(Debug)]
pub struct Engine {
    config: Arc<Config>,
    proxy: ProxySpec,
    table: RouteTable,
    clusters: Vec<ClusterState>,
    /// Hash keys of each route: one per destination whose cluster hashes (§4.7).
    route_hash_keys: Vec<Vec<HashKey>>,
    /// Rendezvous seeds of each route's destinations (sticky-weights extension).
    route_seeds: Vec<Vec<u64>>,
    rng_weighted: Stream,
    rng_lb: Stream,
    rng_hash: Stream,
    rng_delay: Stream,
    rng_abort: Stream,
    events: VecDeque<EngineEvent>,
    guard: MonotonicGuard,
}

/// One cluster's runtime state.
#[derive(Clone, Debug)]
struct ClusterState {
    name: String,
    hosts: Vec<Host>,
    /// Endpoints the balancer may pick (healthy ones, or all in panic).
    candidates: Vec<u32>,
    balancer: Balancer,
}

impl Engine {
    /// A new engine for `proxy`, with all its random streams derived from `seed`.
    pub fn new(config: Arc<Config>, proxy: ProxySpec, seed: u64) -> Self {
        let mut rng_lb = Stream::new(seed, Component::LoadBalancer);
        let table = RouteTable::build(&config, &proxy);
        let clusters = build_clusters(&config, &mut rng_lb);
        let (route_hash_keys, route_seeds) = route_extras(&config, &table);
        Self {
            config,
            proxy,
            table,
            clusters,
            route_hash_keys,
            route_seeds,
            rng_weighted: Stream::new(seed, Component::WeightedCluster),
            rng_lb,
            rng_hash: Stream::new(seed, Component::HashFallback),
            rng_delay: Stream::new(seed, Component::FaultDelay),
            rng_abort: Stream::new(seed, Component::FaultAbort),
            events: VecDeque::new(),
            guard: MonotonicGuard::default(),
        }
    }

    /// Decides what to do with a request. Allocates nothing in steady state.
    pub fn handle_request(&mut self, req: &Request<'_>, now: Time) -> Decision {
        self.guard.observe(now);
        let Some(route_id) = self.table.select(req) else {
            return Decision::Reject(Reject {
                reason: RejectReason::NoRoute,
                status: 404,
                route: None,
                delay: None,
            });
        };
        let route = self.table.route(route_id);
        let destinations = match &route.action {
            Action::Route(d) => d,
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
        // The fault filter runs before the router: delay, then abort.
        let delay = match route.fault.delay {
            Some((d, ppm)) if self.rng_delay.hit_ppm(ppm) => Some(d),
            _ => None,
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
                    let seeds = &self.route_seeds[route_id.0 as usize];
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
        let Some(cluster_index) = destinations[chosen].cluster else {
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
        if cluster.balancer.is_hash_based() {
            for key in &self.route_hash_keys[route_id.0 as usize] {
                match affinity::hash_key(key, req) {
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
            let h = hash.unwrap_or_else(|| {
                if cluster.balancer.is_hash_based() {
                    self.rng_hash.next_u64()
                } else {
                    0
                }
            });
            cluster
                .balancer
                .pick(&cluster.hosts, &cluster.candidates, h, &mut self.rng_lb)
        };
        let Some(endpoint) = endpoint else {
            return Decision::Reject(Reject {
                reason: RejectReason::NoHealthyUpstream,
                status: 503,
                route: Some(route_id),
                delay,
            });
        };
        cluster.hosts[endpoint as usize].active_requests += 1;
        let upstream = Upstream {
            cluster: ClusterId(u32::try_from(cluster_index).unwrap_or(u32::MAX)),
            endpoint: EndpointId(endpoint),
        };
        Decision::Forward(Forward {
            route: route_id,
            upstream,
            delay,
            timeout,
            hash,
            set_cookie,
        })
    }

    /// Takes the outcome of a forwarded request.
    pub fn handle_response(&mut self, upstream: Upstream, outcome: Outcome, now: Time) {
        self.guard.observe(now);
        let _ = outcome;
        if let Some(host) = self
            .clusters
            .get_mut(upstream.cluster.0 as usize)
            .and_then(|c| c.hosts.get_mut(upstream.endpoint.0 as usize))
        {
            debug_assert!(
                host.active_requests > 0,
                "response without a request to {}",
                host.address
            );
            host.active_requests = host.active_requests.saturating_sub(1);
        }
    }

    /// Applies a new config, as istiod pushing to this proxy. Endpoints that
    /// still exist (same cluster name, same address) keep their state.
    pub fn reconfigure(&mut self, config: Arc<Config>, now: Time) {
        self.guard.observe(now);
        let table = RouteTable::build(&config, &self.proxy);
        let mut clusters = build_clusters(&config, &mut self.rng_lb);
        let old: FxHashMap<&str, &ClusterState> =
            self.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
        for c in &mut clusters {
            let Some(prev) = old.get(c.name.as_str()) else {
                continue;
            };
            for h in &mut c.hosts {
                if let Some(p) = prev.hosts.iter().find(|p| p.address == h.address) {
                    h.active_requests = p.active_requests;
                }
            }
            c.balancer.carry_state(&prev.balancer);
        }
        let (route_hash_keys, route_seeds) = route_extras(&config, &table);
        self.events.push_back(EngineEvent::ConfigApplied {
            clusters: u32::try_from(clusters.len()).unwrap_or(u32::MAX),
            routes: u32::try_from(table.routes().len()).unwrap_or(u32::MAX),
        });
        self.config = config;
        self.table = table;
        self.clusters = clusters;
        self.route_hash_keys = route_hash_keys;
        self.route_seeds = route_seeds;
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    // === getters ===

    /// The config in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Who this proxy is.
    pub fn proxy(&self) -> &ProxySpec {
        &self.proxy
    }

    /// A route of the current table (header operations, rewrite, retries…).
    pub fn route(&self, id: RouteId) -> &HttpRoute {
        self.table.route(id)
    }

    /// Istio's name of a cluster, e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub fn cluster_name(&self, id: ClusterId) -> &str {
        &self.clusters[id.0 as usize].name
    }

    /// Number of clusters.
    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// The address of an upstream endpoint.
    pub fn endpoint_address(&self, upstream: Upstream) -> &str {
        &self.clusters[upstream.cluster.0 as usize].hosts[upstream.endpoint.0 as usize].address
    }

    /// Requests in flight from this proxy to an endpoint.
    pub fn active_requests(&self, upstream: Upstream) -> u32 {
        self.clusters[upstream.cluster.0 as usize].hosts[upstream.endpoint.0 as usize]
            .active_requests
    }

    /// The `Set-Cookie` value for a forward that generated an affinity
    /// cookie, as Envoy writes it: `name="<16 hex>"; Max-Age=N; Path=p; HttpOnly`.
    pub fn set_cookie_header(&self, forward: &Forward) -> Option<String> {
        let value = forward.set_cookie?;
        let (name, path, ttl) = self.route_hash_keys[forward.route.0 as usize]
            .iter()
            .find_map(|k| match k {
                HashKey::Cookie {
                    name,
                    path,
                    ttl: Some(ttl),
                } => Some((name, path, *ttl)),
                _ => None,
            })?;
        let hex = affinity::hex16(value);
        let mut out = format!("{name}=\"{}\"", String::from_utf8_lossy(&hex));
        if !ttl.is_zero() {
            out.push_str(&format!("; Max-Age={}", ttl.as_secs()));
        }
        if let Some(p) = path {
            out.push_str(&format!("; Path={p}"));
        }
        out.push_str("; HttpOnly");
        Some(out)
    }

    /// A one-line description of a decision, for CLIs and logs.
    pub fn describe(&self, decision: &Decision) -> String {
        match decision {
            Decision::Forward(f) => {
                let mut s = format!(
                    "forward route={} cluster={} endpoint={}",
                    self.route(f.route).name,
                    self.cluster_name(f.upstream.cluster),
                    self.endpoint_address(f.upstream)
                );
                if let Some(d) = f.delay {
                    s.push_str(&format!(" delay={} flag=DI", format_duration(d)));
                }
                if let Some(t) = f.timeout {
                    s.push_str(&format!(" timeout={}", format_duration(t)));
                }
                if let Some(c) = self.set_cookie_header(f) {
                    s.push_str(&format!(" set-cookie={c}"));
                }
                s
            }
            Decision::Reject(r) => {
                let mut s = format!(
                    "reject status={} flag={} reason={:?}",
                    r.status,
                    r.flag(),
                    r.reason
                );
                if let Some(route) = r.route {
                    s.push_str(&format!(" route={}", self.route(route).name));
                }
                if let Some(d) = r.delay {
                    s.push_str(&format!(" delay={}", format_duration(d)));
                }
                s
            }
            Decision::Respond(r) => format!(
                "respond status={} route={}",
                r.status,
                self.route(r.route).name
            ),
        }
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

fn build_clusters(config: &Config, rng: &mut Stream) -> Vec<ClusterState> {
    config
        .clusters
        .iter()
        .map(|spec| {
            let svc = &config.services[spec.service];
            let hosts: Vec<Host> = spec
                .endpoints
                .iter()
                .map(|&e| Host {
                    address: svc.endpoints[e].address.clone().into_boxed_str(),
                    weight: svc.endpoints[e].weight,
                    active_requests: 0,
                })
                .collect();
            let candidates: Vec<u32> =
                (0..u32::try_from(hosts.len()).unwrap_or(u32::MAX)).collect();
            let mut balancer = Balancer::new(spec.policy.lb, rng);
            balancer.rebuild(&hosts, &candidates);
            ClusterState {
                name: spec.name.clone(),
                hosts,
                candidates,
                balancer,
            }
        })
        .collect()
}

fn route_extras(config: &Config, table: &RouteTable) -> (Vec<Vec<HashKey>>, Vec<Vec<u64>>) {
    table
        .routes()
        .iter()
        .map(|r| match &r.action {
            Action::Route(ds) => (
                ds.iter()
                    .filter_map(|d| {
                        d.cluster
                            .and_then(|c| config.clusters[c].policy.hash.clone())
                    })
                    .collect(),
                ds.iter()
                    .map(|d| affinity::destination_seed(&d.host, d.subset.as_deref()))
                    .collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        })
        .unzip()
}
