//! Config generations: `reconfigure` keeps a request's route and cluster
//! valid across a push (the retired routing tables, the endpoint and cluster
//! remaps), and finds an upstream of any generation in the current state.

use super::*;

impl Engine {
    /// Applies a new config, as istiod pushing to this proxy. Clusters and
    /// endpoints that still exist (same cluster name, same address) keep
    /// their state: active requests, breaker counters, and — if the cluster
    /// still has `outlierDetection` — ejections, counters and multipliers.
    /// `Upstream`s handed out before stay valid (they are remapped).
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
        let mut cluster_remap = vec![None; self.clusters.len()];
        let mut remap: Remap = self
            .clusters
            .iter()
            .map(|c| vec![None; c.hosts.len()])
            .collect();
        for (ci, c) in clusters.iter_mut().enumerate() {
            let Some(&pi) = old.get(c.name.as_str()) else {
                continue;
            };
            cluster_remap[pi] = Some(u32::try_from(ci).unwrap_or(u32::MAX));
            let prev = &self.clusters[pi];
            let mut same = Vec::new();
            for (ni, h) in c.hosts.iter_mut().enumerate() {
                if let Some(oi) = prev.hosts.iter().position(|p| p.address == h.address) {
                    h.active_requests = prev.hosts[oi].active_requests;
                    same.push((ni, oi));
                    remap[pi][oi] = Some((
                        u32::try_from(ci).unwrap_or(u32::MAX),
                        u32::try_from(ni).unwrap_or(u32::MAX),
                    ));
                }
            }
            c.balancer.carry_state(&prev.balancer);
            c.breaker.stats = prev.breaker.stats;
            if let (Some(d), Some(pd)) = (&mut c.detector, &prev.detector) {
                d.carry(pd, same.into_iter());
            }
            c.in_panic = prev.in_panic;
            if c.refresh() {
                self.events.push_back(EngineEvent::Panic {
                    cluster: ClusterId(u32::try_from(ci).unwrap_or(u32::MAX)),
                    in_panic: c.in_panic,
                });
            }
        }
        self.events.push_back(EngineEvent::ConfigApplied {
            clusters: u32::try_from(clusters.len()).unwrap_or(u32::MAX),
            routes: u32::try_from(routing.table.routes().len()).unwrap_or(u32::MAX),
        });
        self.remaps.push(remap);
        self.cluster_remaps.push(cluster_remap);
        self.generation += 1;
        self.config = config;
        self.retired
            .push(std::mem::replace(&mut self.routing, routing));
        self.clusters = clusters;
        self.next_timeout = self.compute_next_timeout();
    }

    /// The current (cluster, endpoint) indices of an upstream handed out in
    /// any generation, or `None` if it no longer exists.
    #[inline]
    pub(super) fn resolve(&self, up: Upstream) -> Option<(usize, usize)> {
        // Nearly every upstream is of the current generation: no remap.
        let (c, e) = if up.generation == self.generation {
            (up.cluster.0, up.endpoint.0)
        } else {
            self.remap(up)?
        };
        let (c, e) = (c as usize, e as usize);
        (c < self.clusters.len() && e < self.clusters[c].hosts.len()).then_some((c, e))
    }

    /// An upstream's (cluster, endpoint) of an earlier generation, carried
    /// through each later generation's remap; `None` if it left.
    #[cold]
    pub(super) fn remap(&self, up: Upstream) -> Option<(u32, u32)> {
        let (mut c, mut e) = (up.cluster.0, up.endpoint.0);
        for g in up.generation..self.generation {
            (c, e) = (*self
                .remaps
                .get(g as usize)?
                .get(c as usize)?
                .get(e as usize)?)?;
        }
        Some((c, e))
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
        let mut c = up.cluster.0;
        for g in up.generation..self.generation {
            c = (*self.cluster_remaps.get(g as usize)?.get(c as usize)?)?;
        }
        let c = c as usize;
        (c < self.clusters.len()).then_some(c)
    }
}

/// A cluster index of config generation `from`, in generation `to`.
pub(super) fn current_cluster(
    remaps: &[Vec<Option<u32>>],
    from: u32,
    to: u32,
    mut c: usize,
) -> Option<usize> {
    for g in from..to {
        c = (*remaps.get(g as usize)?.get(c)?)? as usize;
    }
    Some(c)
}

/// The routing a route id belongs to (current or retired). Field-level
/// borrows, so callers may still mutate the clusters.
pub(super) fn routing_of<'a>(
    current: &'a Routing,
    retired: &'a [Routing],
    id: RouteId,
) -> &'a Routing {
    retired.get(id.generation as usize).unwrap_or(current)
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
                candidates: Vec::with_capacity(hosts.len()),
                balancer: Balancer::new(spec.policy.lb, rng),
                hosts,
                detector,
                breaker: Breaker::new(spec.policy.connection_pool),
                panic_threshold_percent: spec.policy.panic_threshold_percent,
                in_panic: false,
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
