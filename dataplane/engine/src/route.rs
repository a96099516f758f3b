//! Route selection: the VirtualService route table of one proxy, and the pure
//! matching of a request against it (reference §5.1–5.2).
//!
//! The table is compiled per proxy, because `gateways`, `sourceLabels` and
//! `sourceNamespace` are config-time selectors in Istio: a match block that
//! does not select this proxy is not emitted at all. Within a virtual host the
//! first matching route wins; a route with k match blocks is k entries in a
//! row (the blocks OR, the fields inside a block AND); nothing after a
//! catch-all is emitted.
//!
//! `port` is a selector too: Istio builds one route table per listener port
//! and drops the blocks that name another port. A sidecar's virtual host of
//! a service is the route table of that service's port, so a block naming
//! another port is dropped when the table is built. A gateway's virtual
//! hosts serve all its server ports, so there a block with `port: P` is
//! compared with the request's port and holds only for requests on P: the
//! same outcome as dropping it from every other port's table, without a
//! copy of the virtual hosts per port (and a `meshproxy` gateway listener
//! need not sit on a Gateway server's port).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::config::{
    Action, Config, HeaderOps, HttpRoute, Match, StrMatch, WeightedDestination, host_matches,
};
use crate::request::{Request, host_of, port_of};

/// Who this proxy is: a sidecar of a workload, or a named gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySpec {
    /// Namespace of the workload (`default` when empty).
    pub namespace: String,
    /// Labels of the workload, for `sourceLabels`.
    pub labels: BTreeMap<String, String>,
    /// `Some("namespace/name")` for a gateway, `None` for a sidecar (`mesh`).
    pub gateway: Option<String>,
}

impl ProxySpec {
    /// A sidecar in `namespace` with `labels`.
    pub fn sidecar(namespace: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            gateway: None,
        }
    }

    /// The gateway `namespace/name`.
    pub fn gateway(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            labels: BTreeMap::new(),
            gateway: Some(format!("{namespace}/{name}")),
        }
    }

    fn context(&self) -> &str {
        self.gateway.as_deref().unwrap_or("mesh")
    }

    fn namespace(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }
}

/// Identifies a route of the table (stable for one config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    /// Position in the route table of `generation`.
    pub(crate) index: u32,
    /// The config generation whose table it belongs to, so a request
    /// routed before a `reconfigure` keeps its route (as Envoy's in-flight
    /// requests keep the route config they started with).
    pub(crate) generation: u32,
}

/// One virtual host: its routes in order.
#[derive(Clone, Debug)]
struct VirtualHost {
    /// (match block or `None` for catch-all, route).
    entries: Vec<(Option<Match>, RouteId)>,
    /// The listener port of its route table: a sidecar's service port; 0
    /// for a gateway's, which serve every server port.
    port: u16,
}

/// The compiled route table of one proxy.
#[derive(Clone, Debug)]
pub(crate) struct RouteTable {
    generation: u32,
    vhosts: Vec<VirtualHost>,
    /// Every route (VirtualService routes and generated default routes).
    routes: Vec<HttpRoute>,
    /// Exact (lowercase) domains and their virtual hosts.
    exact: ExactDomains,
    /// `*.suffix` domains, longest suffix first.
    wildcard: Vec<(Box<str>, u32)>,
    /// A gateway's servers: (port, hosts without their `namespace/`), in
    /// file order; empty for a sidecar.
    servers: Vec<(u16, Vec<String>)>,
}

impl RouteTable {
    pub(crate) fn build(config: &Config, proxy: &ProxySpec, generation: u32) -> Self {
        let mut t = Self {
            generation,
            vhosts: Vec::new(),
            routes: Vec::new(),
            exact: ExactDomains::default(),
            wildcard: Vec::new(),
            servers: gateway_servers(config, proxy),
        };
        let mut exact = FxHashMap::default();
        let ctx = proxy.context();
        // Bound to this proxy (mesh or its gateway) and exported to its namespace.
        let applies = |vs: &crate::config::VirtualService| {
            vs.gateways.iter().any(|g| g == ctx) && vs.visible_to(proxy.namespace())
        };
        if proxy.gateway.is_some() {
            // A gateway serves the hosts of the VirtualServices bound to it.
            for vs in config.virtual_services.iter().filter(|vs| applies(vs)) {
                let vh = t.add_vhost(config, proxy, Some(vs), None);
                for h in &vs.hosts {
                    t.add_domain(&mut exact, h, vh);
                }
            }
        } else {
            // A sidecar has one virtual host per service, with the first
            // VirtualService (in file order) whose hosts cover it, or the
            // default route.
            for (s, svc) in config.services.iter().enumerate() {
                let vs = config
                    .virtual_services
                    .iter()
                    .find(|vs| applies(vs) && vs.hosts.iter().any(|h| host_matches(h, &svc.host)));
                let vh = t.add_vhost(config, proxy, vs, Some(s));
                for d in aliases(&svc.host, &svc.namespace, proxy.namespace()) {
                    t.add_domain(&mut exact, &format!("{d}:{}", svc.port), vh);
                    t.add_domain(&mut exact, &d, vh);
                }
            }
        }
        t.wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        t.exact = ExactDomains::new(exact);
        t
    }

    /// Adds a domain of virtual host `vh`; the first virtual host to claim
    /// a domain keeps it.
    fn add_domain(&mut self, exact: &mut FxHashMap<Box<[u8]>, u32>, domain: &str, vh: u32) {
        let d = domain.to_ascii_lowercase();
        if let Some(suffix) = d.strip_prefix('*') {
            if !self.wildcard.iter().any(|(s, _)| **s == *suffix) {
                self.wildcard.push((suffix.into(), vh));
            }
        } else {
            exact.entry(d.into_bytes().into_boxed_slice()).or_insert(vh);
        }
    }

    fn add_vhost(
        &mut self,
        config: &Config,
        proxy: &ProxySpec,
        vs: Option<&crate::config::VirtualService>,
        service: Option<usize>,
    ) -> u32 {
        let mut entries = Vec::new();
        // A sidecar's virtual host is the route table of its service's port.
        let port = service.map_or(0, |s| config.services[s].port);
        match vs {
            Some(vs) => {
                'routes: for r in &vs.http {
                    let id = RouteId {
                        index: u32::try_from(self.routes.len()).unwrap_or(u32::MAX),
                        generation: self.generation,
                    };
                    let mut emitted = false;
                    if r.matches.is_empty() {
                        entries.push((None, id));
                        self.routes.push(r.clone());
                        break 'routes;
                    }
                    let mut catch_all = false;
                    for m in &r.matches {
                        if !selects(m, proxy) || port != 0 && m.port.is_some_and(|p| p != port) {
                            continue;
                        }
                        emitted = true;
                        if has_request_conditions(m) {
                            entries.push((Some(m.clone()), id));
                        } else {
                            entries.push((None, id));
                            catch_all = true;
                            break;
                        }
                    }
                    if emitted {
                        self.routes.push(r.clone());
                    }
                    if catch_all {
                        break 'routes;
                    }
                }
            }
            None => {
                let s = service.unwrap_or(0);
                let svc = &config.services[s];
                let cluster = config
                    .clusters
                    .iter()
                    .position(|c| c.service == s && c.subset.is_none());
                let id = RouteId {
                    index: u32::try_from(self.routes.len()).unwrap_or(u32::MAX),
                    generation: self.generation,
                };
                self.routes.push(HttpRoute {
                    name: "default".to_owned(),
                    matches: Vec::new(),
                    action: Action::Route(vec![WeightedDestination {
                        host: svc.host.clone(),
                        subset: None,
                        port: Some(svc.port),
                        weight: 1,
                        cluster,
                        headers: HeaderOps::default(),
                    }]),
                    timeout: None,
                    // Istio's default policy, previous-hosts predicate kept on
                    // the default route even with consistent hash (§4.7).
                    retries: crate::config::default_retry_policy(true),
                    fault: crate::config::Fault::default(),
                    headers: HeaderOps::default(),
                    rewrite: None,
                    sticky_weights: None,
                });
                entries.push((None, id));
            }
        }
        self.vhosts.push(VirtualHost { entries, port });
        u32::try_from(self.vhosts.len() - 1).unwrap_or(u32::MAX)
    }

    /// The route for a request: `None` when no virtual host or no route matches (404 NR).
    pub(crate) fn select(&self, req: &Request<'_>) -> Option<RouteId> {
        let vh = &self.vhosts[self.vhost_of(req.authority)? as usize];
        // An unknown port (0) is the port of the virtual host's table: a
        // sidecar's service port; for a gateway no `port` block holds.
        let port = if req.port == 0 { vh.port } else { req.port };
        vh.entries
            .iter()
            .find(|(m, _)| m.as_ref().is_none_or(|m| matches(m, req, port)))
            .map(|(_, id)| *id)
    }

    /// The virtual host an authority names.
    fn vhost_of(&self, authority: &str) -> Option<u32> {
        // Fast path: the authority exactly as sent (`reviews:9080` is a
        // domain too, as in Istio's virtual hosts); otherwise without port
        // and lowercased.
        match self.exact.get(authority.as_bytes()) {
            Some(vh) => Some(vh),
            None => self.vhost_for(host_of(authority)),
        }
    }

    /// The port a caller of this proxy uses for `authority`: the port the
    /// authority names; otherwise, for a sidecar, the port of the service
    /// whose virtual host it names, and for a gateway the port of its
    /// first server whose hosts cover it (or of its first server). `None`
    /// when none of these applies (a sidecar and an unknown host).
    pub(crate) fn destination_port(&self, authority: &str) -> Option<u16> {
        if let Some(p) = port_of(authority) {
            return Some(p);
        }
        if self.servers.is_empty() {
            let vh = self.vhost_of(authority)?;
            return Some(self.vhosts[vh as usize].port).filter(|&p| p != 0);
        }
        let host = host_of(authority);
        self.servers
            .iter()
            .find(|(_, hosts)| {
                hosts
                    .iter()
                    .any(|h| host_matches(h, host) || h.eq_ignore_ascii_case(host))
            })
            .or(self.servers.first())
            .map(|(p, _)| *p)
    }

    /// The virtual host of a host (without port): exact, lowercased, then
    /// wildcard. Out of line: [`Self::vhost_of`] finds most authorities as
    /// sent.
    #[inline(never)]
    fn vhost_for(&self, host: &str) -> Option<u32> {
        // Hosts are nearly always lowercase already: look them up as they
        // are, and lowercase into a stack buffer only when needed.
        let mut buf = [0u8; 128];
        let lower: &[u8] = if !host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.as_bytes()
        } else if host.len() <= buf.len() {
            let b = &mut buf[..host.len()];
            b.copy_from_slice(host.as_bytes());
            b.make_ascii_lowercase();
            b
        } else {
            return None;
        };
        if let Some(vh) = self.exact.get(lower) {
            return Some(vh);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| lower.len() > suffix.len() && lower.ends_with(suffix.as_bytes()))
            .map(|(_, vh)| *vh)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(s, _)| s.is_empty())
                    .map(|(_, vh)| *vh)
            })
    }

    pub(crate) fn route(&self, id: RouteId) -> &HttpRoute {
        &self.routes[id.index as usize]
    }

    pub(crate) fn routes(&self) -> &[HttpRoute] {
        &self.routes
    }
}

/// The exact domains of a route table, each with its virtual host.
#[derive(Clone, Debug)]
enum ExactDomains {
    /// Grouped by length: a lookup compares the authority with the few
    /// domains of its length (one to a handful: a service's aliases all
    /// differ in length), which costs less than hashing it.
    ByLength {
        /// (domain, virtual host), ordered by length.
        domains: Vec<(Box<[u8]>, u32)>,
        /// `domains[starts[n]..starts[n + 1]]` are the domains of length n.
        starts: Vec<u32>,
    },
    /// Hashed, when some length has more than [`Self::MAX_SCAN`] domains.
    Hashed(FxHashMap<Box<[u8]>, u32>),
}

impl Default for ExactDomains {
    fn default() -> Self {
        Self::ByLength {
            domains: Vec::new(),
            starts: Vec::new(),
        }
    }
}

impl ExactDomains {
    /// The most domains of one length a lookup compares in turn.
    const MAX_SCAN: usize = 4;

    fn new(map: FxHashMap<Box<[u8]>, u32>) -> Self {
        let mut domains: Vec<(Box<[u8]>, u32)> =
            map.iter().map(|(d, vh)| (d.clone(), *vh)).collect();
        domains.sort_unstable_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        let longest = domains.last().map_or(0, |(d, _)| d.len());
        let mut starts = Vec::with_capacity(longest + 2);
        let mut i = 0;
        for n in 0..=longest + 1 {
            let start = i;
            while i < domains.len() && domains[i].0.len() == n {
                i += 1;
            }
            if i - start > Self::MAX_SCAN {
                return Self::Hashed(map);
            }
            starts.push(u32::try_from(start).unwrap_or(u32::MAX));
        }
        Self::ByLength { domains, starts }
    }

    /// The virtual host of an exact domain.
    #[inline]
    fn get(&self, domain: &[u8]) -> Option<u32> {
        match self {
            Self::ByLength { domains, starts } => {
                let n = domain.len();
                let (&lo, &hi) = (starts.get(n)?, starts.get(n + 1)?);
                domains[lo as usize..hi as usize]
                    .iter()
                    .find(|(d, _)| **d == *domain)
                    .map(|(_, vh)| *vh)
            }
            Self::Hashed(map) => Self::hashed_get(map, domain),
        }
    }

    /// Out of line, so that a lookup by length saves no registers.
    #[inline(never)]
    fn hashed_get(map: &FxHashMap<Box<[u8]>, u32>, domain: &[u8]) -> Option<u32> {
        map.get(domain).copied()
    }
}

/// The names a sidecar answers to for a service (reference: Istio's virtual
/// host domains): the FQDN, `name.ns.svc`, `name.ns`, and `name` when the
/// service is in the proxy's namespace.
fn aliases(host: &str, service_ns: &str, proxy_ns: &str) -> Vec<String> {
    let mut out = vec![host.to_owned()];
    let suffix = format!(".{service_ns}.svc.cluster.local");
    if let Some(name) = host.strip_suffix(&suffix) {
        out.push(format!("{name}.{service_ns}.svc"));
        out.push(format!("{name}.{service_ns}"));
        if service_ns == proxy_ns {
            out.push(name.to_owned());
        }
    }
    out
}

/// The servers of the gateway `proxy` is, as (port, hosts without their
/// `namespace/` prefix, lowercased); empty for a sidecar.
fn gateway_servers(config: &Config, proxy: &ProxySpec) -> Vec<(u16, Vec<String>)> {
    let Some(name) = &proxy.gateway else {
        return Vec::new();
    };
    config
        .source
        .gateway
        .iter()
        .filter(|g| {
            let ns = g.namespace.as_deref().unwrap_or("default");
            name.strip_prefix(ns)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|n| n == g.name)
        })
        .take(1)
        .flat_map(|g| &g.servers)
        .map(|s| {
            let hosts = s
                .hosts
                .iter()
                .map(|h| h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h))
                .map(str::to_ascii_lowercase)
                .collect();
            (s.port.number, hosts)
        })
        .collect()
}

/// Config-time selectors of a match block (reference §5.1).
fn selects(m: &Match, proxy: &ProxySpec) -> bool {
    (m.gateways.is_empty() || m.gateways.iter().any(|g| g == proxy.context()))
        && m.source_labels
            .iter()
            .all(|(k, v)| proxy.labels.get(k) == Some(v))
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns == proxy.namespace())
}

fn has_request_conditions(m: &Match) -> bool {
    m.uri.is_some()
        || m.scheme.is_some()
        || m.method.is_some()
        || m.authority.is_some()
        || !m.headers.is_empty()
        || !m.without_headers.is_empty()
        || !m.query_params.is_empty()
        || m.port.is_some()
}

/// Whether every request-time condition of the block holds for `req`
/// arriving on `port`. Out of line, so that [`RouteTable::select`] over
/// catch-all entries stays small.
#[inline(never)]
pub(crate) fn matches(m: &Match, req: &Request<'_>, port: u16) -> bool {
    if m.port.is_some_and(|p| p != port) {
        return false;
    }
    if let Some(uri) = &m.uri
        && !uri_matches(uri, req, m.ignore_uri_case)
    {
        return false;
    }
    let fixed = [
        (&m.scheme, req.scheme),
        (&m.method, req.method),
        (&m.authority, req.authority),
    ];
    if fixed
        .iter()
        .any(|(sm, v)| sm.as_ref().is_some_and(|sm| !value_matches(sm, Some(v))))
    {
        return false;
    }
    if m.headers
        .iter()
        .any(|(name, sm)| !value_matches(sm, req.header_lower(name)))
    {
        return false;
    }
    // Absent, or present and not matching (Istio sets
    // `treat_missing_header_as_empty` for value matchers).
    if m.without_headers
        .iter()
        .any(|(name, sm)| match (sm, req.header_lower(name)) {
            (StrMatch::Present, v) => v.is_some(),
            (sm, v) => value_matches(sm, Some(v.unwrap_or(""))),
        })
    {
        return false;
    }
    m.query_params
        .iter()
        .all(|(name, sm)| value_matches(sm, req.query_param(name)))
}

fn value_matches(sm: &StrMatch, value: Option<&str>) -> bool {
    let Some(v) = value else { return false };
    match sm {
        StrMatch::Exact(e) => v == e,
        StrMatch::Prefix(p) => v.starts_with(p.as_str()),
        StrMatch::Regex(re) => re.is_match(v),
        StrMatch::Present => true,
    }
}

fn uri_matches(sm: &StrMatch, req: &Request<'_>, ignore_case: bool) -> bool {
    match sm {
        // Envoy's `prefix` matches the beginning of `:path`, query included;
        // `path` (exact) and `safe_regex` match it with the query removed.
        StrMatch::Prefix(p) => {
            let path = req.path.as_bytes();
            path.len() >= p.len()
                && if ignore_case {
                    path[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                } else {
                    &path[..p.len()] == p.as_bytes()
                }
        }
        StrMatch::Exact(e) if ignore_case => req.path_only().eq_ignore_ascii_case(e),
        // `ignoreUriCase` does not apply to regex (Istio).
        other => value_matches(other, Some(req.path_only())),
    }
}

#[cfg(test)]
mod tests;
