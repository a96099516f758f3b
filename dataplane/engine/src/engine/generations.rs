//! Config generations: `reconfigure` keeps a request's route and cluster
//! valid across a push. Clusters and hosts carry uids across pushes, so an
//! `Upstream` of any generation is found in the current state without a
//! history of remaps; the routing of an earlier generation is kept only
//! while a request holds it (a delayed request's route, a request's retry
//! state), so memory stays bounded however often the config is pushed.

use super::*;

/// The routing of an earlier generation, and how many requests hold it.
#[derive(Debug)]
pub(super) struct Retired {
    pub(super) routing: Routing,
    pub(super) pins: u32,
}

impl Engine {
    /// Applies a new config, as istiod pushing to this proxy. Clusters and
    /// endpoints that still exist (same cluster name, same address) keep
    /// their state: active requests, breaker counters, and — if the cluster
    /// still has `outlierDetection` — ejections, counters and multipliers.
    /// `Upstream`s handed out before stay valid (found by uid); the routing
    /// of an earlier generation that no request holds any more is dropped.
    pub fn reconfigure(&mut self, config: Arc<Config>, now: Time) {
        self.guard.observe(now);
        let routing = Routing::new(&config, &self.proxy, self.generation + 1);
        let mut clusters = build_clusters(&config, &mut self.rng_lb, self.options, now);
        let old: FxHashMap<&str, usize> = self
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        for (ci, c) in clusters.iter_mut().enumerate() {
            let Some(&pi) = old.get(c.name.as_str()) else {
                continue;
            };
            let prev = &self.clusters[pi];
            c.uid = prev.uid;
            let mut same = Vec::new();
            for (ni, h) in c.hosts.iter_mut().enumerate() {
                if let Some(oi) = prev.hosts.iter().position(|p| p.address == h.address) {
                    h.active_requests = prev.hosts[oi].active_requests;
                    c.host_uids[ni] = prev.host_uids[oi];
                    same.push((ni, oi));
                }
            }
            c.balancer.carry_state(&prev.balancer);
            for (b, pb) in c.more_balancers.iter_mut().zip(&prev.more_balancers) {
                b.carry_state(pb);
            }
            c.breaker.stats = prev.breaker.stats;
            c.stats = prev.stats;
            if let (Some(d), Some(pd)) = (&mut c.detector, &prev.detector) {
                d.carry(pd, same.into_iter());
            }
            c.in_panic = prev.in_panic;
            if c.refresh() {
                self.events.push_back((
                    now,
                    EngineEvent::Panic {
                        cluster: ClusterId(u32::try_from(ci).unwrap_or(u32::MAX)),
                        in_panic: c.in_panic,
                    },
                ));
            }
        }
        self.events.push_back((
            now,
            EngineEvent::ConfigApplied {
                clusters: u32::try_from(clusters.len()).unwrap_or(u32::MAX),
                routes: u32::try_from(routing.compiled.table.routes().len()).unwrap_or(u32::MAX),
            },
        ));
        self.generation += 1;
        self.config = config;
        let previous = std::mem::replace(&mut self.routing, routing);
        self.retired.push(Retired {
            routing: previous,
            pins: std::mem::take(&mut self.pins),
        });
        self.retired.retain(|r| r.pins > 0);
        self.clusters = clusters;
        self.index_uids();
        self.next_timeout = self.compute_next_timeout();
    }

    /// Gives uids to the clusters and hosts that have none (new ones) and
    /// indexes every live one; the current routing learns its clusters'.
    pub(super) fn index_uids(&mut self) {
        self.cluster_uids.clear();
        self.host_uids.clear();
        let mut fresh = || {
            self.next_uid += 1;
            self.next_uid
        };
        for c in &mut self.clusters {
            if c.uid == 0 {
                c.uid = fresh();
            }
            for u in &mut c.host_uids {
                if *u == 0 {
                    *u = fresh();
                }
            }
        }
        let at = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        for (ci, c) in self.clusters.iter().enumerate() {
            self.cluster_uids.insert(c.uid, at(ci));
            for (ei, &u) in c.host_uids.iter().enumerate() {
                self.host_uids.insert(u, (at(ci), at(ei)));
            }
        }
        self.routing.cluster_uids = self.clusters.iter().map(|c| c.uid).collect();
    }

    /// Config generations whose routing is kept: the current one and those
    /// requests still hold.
    pub fn retained_generations(&self) -> usize {
        1 + self.retired.len()
    }

    /// A request holds the routing of `generation`.
    #[inline]
    pub(super) fn pin(&mut self, generation: u32) {
        if generation == self.generation {
            self.pins += 1;
        } else {
            self.pin_retired(generation, true);
        }
    }

    /// A request lets go of the routing of `generation` (dropped at the
    /// next `reconfigure` if no other holds it).
    #[inline]
    pub(super) fn unpin(&mut self, generation: u32) {
        if generation == self.generation {
            debug_assert!(
                self.pins > 0,
                "generation {generation} let go more than held"
            );
            self.pins = self.pins.saturating_sub(1);
        } else {
            self.pin_retired(generation, false);
        }
    }

    /// Holds (`hold`) or lets go of an earlier generation's routing.
    #[cold]
    fn pin_retired(&mut self, generation: u32, hold: bool) {
        let Some(r) = self
            .retired
            .iter_mut()
            .find(|r| r.routing.generation == generation)
        else {
            return;
        };
        if hold {
            r.pins += 1;
        } else {
            debug_assert!(r.pins > 0, "generation {generation} let go more than held");
            r.pins = r.pins.saturating_sub(1);
        }
    }

    /// The current (cluster, endpoint) indices of an upstream handed out in
    /// any generation, or `None` if it no longer exists.
    #[inline]
    pub(super) fn resolve(&self, up: Upstream) -> Option<(usize, usize)> {
        // Nearly every upstream is of the current generation.
        let (c, e) = if up.generation == self.generation {
            (up.cluster.0, up.endpoint.0)
        } else {
            self.relocate(up)?
        };
        let (c, e) = (c as usize, e as usize);
        (c < self.clusters.len() && e < self.clusters[c].hosts.len()).then_some((c, e))
    }

    /// An upstream of an earlier generation, found by its host's uid.
    #[cold]
    fn relocate(&self, up: Upstream) -> Option<(u32, u32)> {
        self.host_uids.get(&up.host_uid).copied()
    }

    /// The current cluster of an upstream handed out in any generation, and
    /// its endpoint if that still exists; `None` if the cluster is gone.
    #[inline]
    pub(super) fn locate(&self, up: Upstream) -> Option<(usize, Option<usize>)> {
        match self.resolve(up) {
            Some((c, e)) => Some((c, Some(e))),
            None => self.locate_cluster(up).map(|c| (c, None)),
        }
    }

    /// The current cluster of an upstream handed out in any generation;
    /// `None` if the cluster is gone.
    #[inline]
    pub(super) fn cluster_of(&self, up: Upstream) -> Option<usize> {
        match self.resolve(up) {
            Some((c, _)) => Some(c),
            None => self.locate_cluster(up),
        }
    }

    /// The current cluster of an upstream whose endpoint is gone.
    #[cold]
    pub(super) fn locate_cluster(&self, up: Upstream) -> Option<usize> {
        let c = if up.generation == self.generation {
            up.cluster.0
        } else {
            *self.cluster_uids.get(&up.cluster_uid)?
        } as usize;
        (c < self.clusters.len()).then_some(c)
    }
}

/// The routing a route id belongs to: the current one, or an earlier one
/// still held; `None` once dropped. Field-level borrows, so callers may
/// still mutate the clusters.
pub(super) fn routing_of<'a>(
    current: &'a Routing,
    retired: &'a [Retired],
    id: RouteId,
) -> Option<&'a Routing> {
    if id.generation == current.generation {
        return Some(current);
    }
    retired
        .iter()
        .map(|r| &r.routing)
        .find(|r| r.generation == id.generation)
}

pub(super) fn build_clusters(
    config: &Config,
    rng: &mut Stream,
    options: EngineOptions,
    now: Time,
) -> Vec<ClusterState> {
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
            let detector = spec
                .policy
                .outlier
                .map(|p| Detector::new(p, options.max_ejection_rule, hosts.len(), now));
            let mut c = ClusterState {
                name: spec.name.clone(),
                uid: 0,
                host_uids: vec![0; hosts.len()],
                candidates: Vec::with_capacity(hosts.len()),
                // Worker 0's first: one worker draws what it always drew.
                balancer: Balancer::new(spec.policy.lb, rng),
                more_balancers: (1..options.workers.clamp(1, MAX_WORKERS))
                    .map(|_| Balancer::new(spec.policy.lb, rng))
                    .collect(),
                hosts,
                detector,
                breaker: Breaker::new(spec.policy.connection_pool),
                panic_threshold_percent: spec.policy.panic_threshold_percent,
                in_panic: false,
                stats: ClusterStats::default(),
            };
            c.refresh();
            c
        })
        .collect()
}

type RouteExtras = (Vec<Vec<(HashKey, bool)>>, Vec<Vec<u64>>);

pub(super) fn route_extras(config: &Config, table: &RouteTable) -> RouteExtras {
    table
        .routes()
        .iter()
        .map(|r| match &r.action {
            Action::Route(ds) => (
                {
                    let keys: Vec<HashKey> = ds
                        .iter()
                        .filter_map(|d| {
                            d.cluster
                                .and_then(|c| config.clusters[c].policy.hash.clone())
                        })
                        .collect();
                    keys.iter()
                        .enumerate()
                        .map(|(i, k)| (k.clone(), i > 0 && keys[i - 1] == *k))
                        .collect()
                },
                ds.iter()
                    .map(|d| affinity::destination_seed(&d.host, d.subset.as_deref()))
                    .collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        })
        .unzip()
}
