//! Read-only views of an engine for its callers: config, clusters and
//! endpoints, ejections and counters, and a decision in words.

use super::*;

impl Engine {
    /// The config in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Who this proxy is.
    pub fn proxy(&self) -> &ProxySpec {
        &self.proxy
    }

    /// The destination port ([`Request::port`]) a caller of this proxy uses
    /// for `authority`: the port the authority names; else, for a sidecar,
    /// the port of the service it names; for a gateway, the port of the
    /// first server whose hosts cover it (or of the first server). `None`
    /// for a sidecar and a host it does not know. Allocates nothing.
    pub fn destination_port(&self, authority: &str) -> Option<u16> {
        self.routing.compiled.table.destination_port(authority)
    }

    /// A route (header operations, rewrite, retries…) of the current
    /// table, or of an earlier one while a request holds it or until the
    /// next `reconfigure`; `None` after.
    pub fn route(&self, id: RouteId) -> Option<&HttpRoute> {
        routing_of(&self.routing, &self.retired, id).map(|r| r.compiled.table.route(id))
    }

    /// Istio's name of a cluster, e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub fn cluster_name(&self, id: ClusterId) -> &str {
        &self.clusters[id.0 as usize].name
    }

    /// Number of clusters.
    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// Number of endpoints of a cluster.
    pub fn endpoint_count(&self, id: ClusterId) -> usize {
        self.clusters[id.0 as usize].hosts.len()
    }

    /// The address of an upstream endpoint (`"?"` if it no longer exists).
    pub fn endpoint_address(&self, upstream: Upstream) -> &str {
        match self.resolve(upstream) {
            Some((c, e)) => &self.clusters[c].hosts[e].address,
            None => "?",
        }
    }

    /// Requests in flight from this proxy to an endpoint.
    pub fn active_requests(&self, upstream: Upstream) -> u32 {
        self.resolve(upstream)
            .map_or(0, |(c, e)| self.clusters[c].hosts[e].active_requests)
    }

    /// Whether an endpoint is ejected by outlier detection, and if so since
    /// when and for how long (its current ejection time).
    pub fn ejection(&self, upstream: Upstream) -> Option<(Time, Duration)> {
        let (c, e) = self.resolve(upstream)?;
        self.clusters[c]
            .detector
            .as_ref()?
            .ejection(u32::try_from(e).ok()?)
    }

    /// The ejection-time multiplier of an endpoint (0 without a detector).
    pub fn ejection_multiplier(&self, upstream: Upstream) -> u32 {
        self.resolve(upstream)
            .and_then(|(c, e)| {
                Some(
                    self.clusters[c]
                        .detector
                        .as_ref()?
                        .multiplier(u32::try_from(e).ok()?),
                )
            })
            .unwrap_or(0)
    }

    /// Whether a cluster's load balancer is in panic (ignoring health).
    pub fn in_panic(&self, id: ClusterId) -> bool {
        self.clusters[id.0 as usize].in_panic
    }

    /// Circuit-breaker counters of a cluster.
    pub fn breaker_stats(&self, id: ClusterId) -> BreakerStats {
        self.clusters[id.0 as usize].breaker.stats
    }

    /// Router and load-balancer counters of a cluster (retries, panic).
    pub fn cluster_stats(&self, id: ClusterId) -> ClusterStats {
        self.clusters[id.0 as usize].stats
    }

    /// Outlier-detection counters of a cluster, if it has a detector.
    pub fn outlier_stats(&self, id: ClusterId) -> Option<OutlierStats> {
        self.clusters[id.0 as usize]
            .detector
            .as_ref()
            .map(|d| OutlierStats {
                ejections_active: d.ejected,
                ..d.stats
            })
    }

    /// The upstream of endpoint `index` of cluster `id`, in this generation.
    pub fn upstream(&self, id: ClusterId, index: u32) -> Upstream {
        let c = &self.clusters[id.0 as usize];
        Upstream {
            cluster: id,
            endpoint: EndpointId(index),
            generation: self.generation,
            cluster_uid: c.uid,
            host_uid: c.host_uids[index as usize],
        }
    }

    /// The cluster with this Istio name, if any.
    pub fn cluster_by_name(&self, name: &str) -> Option<ClusterId> {
        self.clusters
            .iter()
            .position(|c| c.name == name)
            .map(|i| ClusterId(u32::try_from(i).unwrap_or(u32::MAX)))
    }

    /// The `Set-Cookie` value for a forward that generated an affinity
    /// cookie, as Envoy writes it: `name="<16 hex>"; Max-Age=N; Path=p; HttpOnly`.
    pub fn set_cookie_header(&self, forward: &Forward) -> Option<String> {
        let value = forward.set_cookie?;
        let (name, path, ttl) = routing_of(&self.routing, &self.retired, forward.route)?
            .compiled
            .hash_keys[forward.route.index as usize]
            .iter()
            .find_map(|(k, _)| match k {
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

    fn route_name(&self, id: RouteId) -> &str {
        self.route(id).map_or("?", |r| r.name.as_str())
    }

    /// A one-line description of a decision, for CLIs and logs.
    pub fn describe(&self, decision: &Decision) -> String {
        match decision {
            Decision::Forward(f) => {
                let mut s = format!(
                    "forward route={} cluster={} endpoint={}",
                    self.route_name(f.route),
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
                    s.push_str(&format!(" route={}", self.route_name(route)));
                }
                if let Some(d) = r.delay {
                    s.push_str(&format!(" delay={}", format_duration(d)));
                }
                s
            }
            Decision::Delay(d) => format!(
                "delay {} flag=DI route={} (then handle_delayed)",
                format_duration(d.delay),
                self.route_name(d.route)
            ),
            Decision::Respond(r) => format!(
                "respond status={} route={}",
                r.status,
                self.route_name(r.route)
            ),
        }
    }
}
