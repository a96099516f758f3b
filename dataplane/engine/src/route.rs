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
mod tests {
    //! Route selection, table by table: one table per match kind and per
    //! precedence rule (reference §5.1–5.2).

    use super::*;
    use crate::tests::{config, engine, engine_for, pick, sidecar};
    use crate::{Decision, RejectReason, ResponseFlag, Time};

    /// reviews (v1, v2) in `default`, ratings in `other`, and a gateway.
    const MESH: &str = r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [
  { address = "10.0.0.1:9080", labels = { version = "v1" } },
  { address = "10.0.0.2:9080", labels = { version = "v2" } },
]

[[service]]
name = "ratings"
namespace = "other"
port = 9080
endpoints = [{ address = "10.0.1.1:9080" }]

[[destinationRule]]
name = "reviews"
host = "reviews"
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" } },
]

[[gateway]]
name = "gw"
servers = [{ port = { number = 80, protocol = "HTTP" }, hosts = ["*"] }]
"#;

    fn mesh(vs: &str) -> String {
        format!("{MESH}\n{vs}")
    }

    /// The name of the route `proxy` selects for `req`, or `None` (404 NR).
    fn route_for(toml: &str, proxy: &ProxySpec, req: &Request<'_>) -> Option<String> {
        let table = RouteTable::build(&config(toml), proxy, 0);
        table.select(req).map(|id| table.route(id).name.clone())
    }

    /// The names of the VirtualService routes emitted for `proxy`, in
    /// order (the generated default routes of other services left out).
    fn emitted(toml: &str, proxy: &ProxySpec) -> Vec<String> {
        RouteTable::build(&config(toml), proxy, 0)
            .routes()
            .iter()
            .filter(|r| r.name != "default")
            .map(|r| r.name.clone())
            .collect()
    }

    fn get(path: &'static str) -> Request<'static> {
        Request::get("reviews:9080", path)
    }

    fn with(
        path: &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> Request<'static> {
        get(path).with_headers(headers)
    }

    /// Checks each row: does a route whose only match block is `block`
    /// take the request?
    fn check(rows: &[(&str, Request<'static>, bool)]) {
        for (block, req, want) in rows {
            let toml = mesh(&format!(
                r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "hit"
match = [{block}]
route = [{{ destination = {{ host = "reviews", subset = "v1" }} }}]
"#
            ));
            let got = route_for(&toml, &sidecar(), req).is_some();
            assert_eq!(
                got, *want,
                "match {block} against {} {} {:?} port {}",
                req.method, req.path, req.headers, req.port
            );
        }
    }

    #[test]
    fn uri_exact_prefix_and_regex() {
        check(&[
            // exact: the whole path, query string removed; case-sensitive.
            (r#"{ uri = { exact = "/api" } }"#, get("/api"), true),
            (r#"{ uri = { exact = "/api" } }"#, get("/api?x=1"), true),
            (r#"{ uri = { exact = "/api" } }"#, get("/api/"), false),
            (r#"{ uri = { exact = "/api" } }"#, get("/apix"), false),
            (r#"{ uri = { exact = "/api" } }"#, get("/API"), false),
            // prefix: a plain string prefix, so /api also takes /apix.
            (r#"{ uri = { prefix = "/api" } }"#, get("/api"), true),
            (r#"{ uri = { prefix = "/api" } }"#, get("/api/v1"), true),
            (r#"{ uri = { prefix = "/api" } }"#, get("/apix"), true),
            (r#"{ uri = { prefix = "/api" } }"#, get("/ap"), false),
            (r#"{ uri = { prefix = "/api" } }"#, get("/v1/api"), false),
            (r#"{ uri = { prefix = "/api" } }"#, get("/API"), false),
            // regex: RE2 over the whole path, query string removed.
            (
                r#"{ uri = { regex = "/api/[0-9]+" } }"#,
                get("/api/12"),
                true,
            ),
            (
                r#"{ uri = { regex = "/api/[0-9]+" } }"#,
                get("/api/12?q=a"),
                true,
            ),
            (
                r#"{ uri = { regex = "/api/[0-9]+" } }"#,
                get("/api/12/x"),
                false,
            ),
            (
                r#"{ uri = { regex = "/api/[0-9]+" } }"#,
                get("/x/api/12"),
                false,
            ),
            (
                r#"{ uri = { regex = "/api/[0-9]+" } }"#,
                get("/api/"),
                false,
            ),
            (r#"{ uri = { regex = "/a|/b" } }"#, get("/b"), true),
            (r#"{ uri = { regex = "/a|/b" } }"#, get("/ab"), false),
        ]);
    }

    #[test]
    fn header_regex_must_match_the_whole_value() {
        check(&[
            (
                r#"{ headers = { x-ver = { regex = "v[0-9]" } } }"#,
                with("/", &[("x-ver", "v2")]),
                true,
            ),
            (
                r#"{ headers = { x-ver = { regex = "v[0-9]" } } }"#,
                with("/", &[("x-ver", "v2x")]),
                false,
            ),
            (
                r#"{ headers = { x-ver = { regex = "v[0-9]" } } }"#,
                with("/", &[("x-ver", "xv2")]),
                false,
            ),
            (
                r#"{ headers = { x-ver = { regex = "a|b" } } }"#,
                with("/", &[("x-ver", "ab")]),
                false,
            ),
        ]);
    }

    #[test]
    fn ignore_uri_case_applies_to_exact_and_prefix_not_regex() {
        check(&[
            (
                r#"{ uri = { exact = "/Api" }, ignoreUriCase = true }"#,
                get("/aPI"),
                true,
            ),
            (
                r#"{ uri = { exact = "/Api" }, ignoreUriCase = true }"#,
                get("/aPIx"),
                false,
            ),
            (
                r#"{ uri = { prefix = "/Api" }, ignoreUriCase = true }"#,
                get("/API/v1"),
                true,
            ),
            (
                r#"{ uri = { prefix = "/Api" }, ignoreUriCase = true }"#,
                get("/Ap"),
                false,
            ),
            (
                r#"{ uri = { prefix = "/Api" }, ignoreUriCase = false }"#,
                get("/api"),
                false,
            ),
            (
                r#"{ uri = { regex = "/api" }, ignoreUriCase = true }"#,
                get("/api"),
                true,
            ),
            (
                r#"{ uri = { regex = "/api" }, ignoreUriCase = true }"#,
                get("/API"),
                false,
            ),
            // Case-insensitive regex is written with (?i).
            (r#"{ uri = { regex = "(?i)/api" } }"#, get("/API"), true),
        ]);
    }

    #[test]
    fn scheme_method_and_authority_are_case_sensitive_string_matches() {
        let post = Request {
            method: "POST",
            ..get("/")
        };
        let lower_post = Request {
            method: "post",
            ..get("/")
        };
        let head = Request {
            method: "HEAD",
            ..get("/")
        };
        let https = Request {
            scheme: "https",
            ..get("/")
        };
        let by_fqdn = Request::get("reviews.default.svc.cluster.local", "/");
        check(&[
            (r#"{ scheme = { exact = "https" } }"#, https, true),
            (r#"{ scheme = { exact = "https" } }"#, get("/"), false),
            (r#"{ method = { exact = "POST" } }"#, post, true),
            (r#"{ method = { exact = "POST" } }"#, get("/"), false),
            (r#"{ method = { exact = "POST" } }"#, lower_post, false),
            (r#"{ method = { prefix = "PO" } }"#, post, true),
            (r#"{ method = { regex = "GET|HEAD" } }"#, head, true),
            (r#"{ method = { regex = "GET|HEAD" } }"#, post, false),
            // :authority is the raw Host header, port included.
            (
                r#"{ authority = { exact = "reviews:9080" } }"#,
                get("/"),
                true,
            ),
            (r#"{ authority = { exact = "reviews" } }"#, get("/"), false),
            (r#"{ authority = { prefix = "reviews" } }"#, get("/"), true),
            (
                r#"{ authority = { regex = "reviews(:[0-9]+)?" } }"#,
                get("/"),
                true,
            ),
            (
                r#"{ authority = { prefix = "reviews.default" } }"#,
                by_fqdn,
                true,
            ),
            (
                r#"{ authority = { exact = "reviews:9080" } }"#,
                by_fqdn,
                false,
            ),
        ]);
    }

    #[test]
    fn headers_exact_prefix_regex_and_present() {
        check(&[
            (
                r#"{ headers = { end-user = { exact = "jason" } } }"#,
                with("/", &[("end-user", "jason")]),
                true,
            ),
            // Request header names compare case-insensitively; values do not.
            (
                r#"{ headers = { end-user = { exact = "jason" } } }"#,
                with("/", &[("End-User", "jason")]),
                true,
            ),
            (
                r#"{ headers = { end-user = { exact = "jason" } } }"#,
                with("/", &[("end-user", "Jason")]),
                false,
            ),
            (
                r#"{ headers = { end-user = { exact = "jason" } } }"#,
                with("/", &[("end-user", "jason2")]),
                false,
            ),
            (
                r#"{ headers = { end-user = { exact = "jason" } } }"#,
                get("/"),
                false,
            ),
            (
                r#"{ headers = { x-ver = { prefix = "v2" } } }"#,
                with("/", &[("x-ver", "v2.1")]),
                true,
            ),
            (
                r#"{ headers = { x-ver = { prefix = "v2" } } }"#,
                with("/", &[("x-ver", "v1")]),
                false,
            ),
            (
                r#"{ headers = { x-ver = { prefix = "v2" } } }"#,
                get("/"),
                false,
            ),
            (
                r#"{ headers = { x-ver = { regex = "v[12]" } } }"#,
                with("/", &[("x-ver", "v1")]),
                true,
            ),
            (
                r#"{ headers = { x-ver = { regex = "v[12]" } } }"#,
                get("/"),
                false,
            ),
            // `{}` and the regex "*" mean: present, any value (even empty).
            (
                r#"{ headers = { x-debug = {} } }"#,
                with("/", &[("x-debug", "")]),
                true,
            ),
            (
                r#"{ headers = { x-debug = {} } }"#,
                with("/", &[("x-debug", "1")]),
                true,
            ),
            (r#"{ headers = { x-debug = {} } }"#, get("/"), false),
            (
                r#"{ headers = { x-debug = { regex = "*" } } }"#,
                with("/", &[("x-debug", "1")]),
                true,
            ),
            (
                r#"{ headers = { x-debug = { regex = "*" } } }"#,
                get("/"),
                false,
            ),
        ]);
    }

    #[test]
    fn without_headers_pass_when_absent_or_not_matching() {
        check(&[
            (
                r#"{ withoutHeaders = { end-user = { exact = "jason" } } }"#,
                get("/"),
                true,
            ),
            (
                r#"{ withoutHeaders = { end-user = { exact = "jason" } } }"#,
                with("/", &[("end-user", "bob")]),
                true,
            ),
            (
                r#"{ withoutHeaders = { end-user = { exact = "jason" } } }"#,
                with("/", &[("end-user", "jason")]),
                false,
            ),
            (
                r#"{ withoutHeaders = { end-user = { prefix = "ja" } } }"#,
                with("/", &[("end-user", "jack")]),
                false,
            ),
            // `{}`: the header must be absent.
            (r#"{ withoutHeaders = { x-debug = {} } }"#, get("/"), true),
            (
                r#"{ withoutHeaders = { x-debug = {} } }"#,
                with("/", &[("x-debug", "")]),
                false,
            ),
            (
                r#"{ withoutHeaders = { x-debug = {} } }"#,
                with("/", &[("x-debug", "1")]),
                false,
            ),
            // Istio sets treat_missing_header_as_empty: an absent header is
            // "", which this regex matches, so the negation fails.
            (
                r#"{ withoutHeaders = { x-ver = { regex = ".*" } } }"#,
                get("/"),
                false,
            ),
            (
                r#"{ withoutHeaders = { x-ver = { regex = "v[0-9]" } } }"#,
                get("/"),
                true,
            ),
            // Combined with a positive condition in the same block (AND).
            (
                r#"{ headers = { end-user = {} }, withoutHeaders = { end-user = { exact = "jason" } } }"#,
                with("/", &[("end-user", "bob")]),
                true,
            ),
            (
                r#"{ headers = { end-user = {} }, withoutHeaders = { end-user = { exact = "jason" } } }"#,
                get("/"),
                false,
            ),
        ]);
    }

    #[test]
    fn query_params_exact_regex_and_present() {
        check(&[
            (
                r#"{ queryParams = { page = { exact = "2" } } }"#,
                get("/p?page=2"),
                true,
            ),
            (
                r#"{ queryParams = { page = { exact = "2" } } }"#,
                get("/p?x=1&page=2"),
                true,
            ),
            (
                r#"{ queryParams = { page = { exact = "2" } } }"#,
                get("/p?page=22"),
                false,
            ),
            (
                r#"{ queryParams = { page = { exact = "2" } } }"#,
                get("/p"),
                false,
            ),
            (
                r#"{ queryParams = { page = { exact = "2" } } }"#,
                get("/p?pages=2"),
                false,
            ),
            (
                r#"{ queryParams = { page = { regex = "[0-9]+" } } }"#,
                get("/p?page=12"),
                true,
            ),
            (
                r#"{ queryParams = { page = { regex = "[0-9]+" } } }"#,
                get("/p?page=1a"),
                false,
            ),
            (r#"{ queryParams = { page = {} } }"#, get("/p?page"), true),
            (r#"{ queryParams = { page = {} } }"#, get("/p?page="), true),
            (
                r#"{ queryParams = { page = {} } }"#,
                get("/p?pages=1"),
                false,
            ),
            // The query string is not part of the uri match.
            (
                r#"{ uri = { exact = "/p" }, queryParams = { page = {} } }"#,
                get("/p?page=1"),
                true,
            ),
        ]);
    }

    #[test]
    fn a_sidecar_port_block_holds_only_on_the_port_of_the_service() {
        // reviews is on 9080: its virtual host is the 9080 route table.
        let on = |port| Request { port, ..get("/") };
        let on_a = |port| Request { port, ..get("/a") };
        check(&[
            ("{ port = 9080 }", on(9080), true),
            ("{ port = 9080 }", on(9081), false),
            // Unknown (engine API callers only): the port of the table.
            ("{ port = 9080 }", on(0), true),
            // A block for another port is not in the 9080 table at all.
            ("{ port = 8080 }", on(8080), false),
            ("{ port = 8080 }", on(9080), false),
            ("{ port = 8080 }", on(0), false),
            // The port ANDs with the other fields of its block.
            (
                r#"{ port = 9080, uri = { prefix = "/a" } }"#,
                on_a(9080),
                true,
            ),
            (
                r#"{ port = 9080, uri = { prefix = "/a" } }"#,
                on(9080),
                false,
            ),
            (
                r#"{ port = 8080, uri = { prefix = "/a" } }"#,
                on_a(9080),
                false,
            ),
        ]);
    }

    #[test]
    fn a_port_block_for_another_port_takes_no_traffic_and_one_for_the_service_port_takes_all() {
        let toml = |port: u16| {
            mesh(&format!(
                r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "only-{port}"
match = [{{ port = {port} }}]
route = [{{ destination = {{ host = "reviews", subset = "v2" }} }}]
[[virtualService.http]]
name = "rest"
route = [{{ destination = {{ host = "reviews", subset = "v1" }} }}]
"#
            ))
        };
        // reviews is on 9080: the 8080 block is not emitted for it.
        assert_eq!(emitted(&toml(8080), &sidecar()), ["rest"]);
        assert_eq!(emitted(&toml(9080), &sidecar()), ["only-9080", "rest"]);
        for port in [0, 9080] {
            let req = Request {
                port,
                ..Request::get("reviews", "/")
            };
            assert_eq!(
                route_for(&toml(8080), &sidecar(), &req).as_deref(),
                Some("rest")
            );
            assert_eq!(
                route_for(&toml(9080), &sidecar(), &req).as_deref(),
                Some("only-9080")
            );
        }
    }

    /// Gateway `edge` with two servers, 80 and 8080, and one VirtualService
    /// routing each port to its own subset.
    const TWO_PORTS: &str = r#"
[[gateway]]
name = "edge"
servers = [
  { port = { number = 80, protocol = "HTTP" }, hosts = ["shop.example.com"] },
  { port = { number = 8080, protocol = "HTTP" }, hosts = ["default/admin.example.com"] },
]

[[virtualService]]
name = "edge"
hosts = ["shop.example.com", "admin.example.com"]
gateways = ["edge"]
[[virtualService.http]]
name = "on-8080"
match = [{ port = 8080 }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "on-80"
match = [{ port = 80 }]
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#;

    #[test]
    fn a_gateway_with_two_server_ports_routes_each_by_its_port() {
        let toml = mesh(TWO_PORTS);
        let edge = ProxySpec::gateway("default", "edge");
        assert_eq!(emitted(&toml, &edge), ["on-8080", "on-80"]);
        for (authority, port, want) in [
            ("shop.example.com", 80, Some("on-80")),
            ("shop.example.com", 8080, Some("on-8080")),
            ("admin.example.com", 8080, Some("on-8080")),
            ("admin.example.com:8080", 80, Some("on-80")),
            // No server on 9999, and an unknown port names none.
            ("shop.example.com", 9999, None),
            ("shop.example.com", 0, None),
        ] {
            let req = Request {
                port,
                ..Request::get(authority, "/")
            };
            assert_eq!(
                route_for(&toml, &edge, &req).as_deref(),
                want,
                "{authority} on {port}"
            );
        }
        let mut e = engine_for(&toml, edge);
        let on = |port| Request {
            port,
            ..Request::get("shop.example.com", "/")
        };
        assert_eq!(pick(&mut e, &on(80)), "10.0.0.1:9080");
        assert_eq!(pick(&mut e, &on(8080)), "10.0.0.2:9080");
        let Decision::Reject(r) = e.handle_request(&on(0), Time::ZERO) else {
            panic!("no port block holds on an unknown port")
        };
        assert_eq!(r.flag(), ResponseFlag::NoRouteFound);
    }

    #[test]
    fn the_destination_port_is_the_authoritys_else_the_services_or_the_gateway_servers() {
        let toml = mesh(TWO_PORTS);
        let e = engine(&toml);
        for (authority, want) in [
            ("reviews", Some(9080)),
            ("reviews:1234", Some(1234)),
            ("ratings.other", Some(9080)),
            ("REVIEWS.default.svc.cluster.local", Some(9080)),
            ("nowhere", None),
            ("nowhere:80", Some(80)),
        ] {
            assert_eq!(e.destination_port(authority), want, "{authority}");
        }
        let e = engine_for(&toml, ProxySpec::gateway("default", "edge"));
        for (authority, want) in [
            ("shop.example.com", Some(80)),
            ("admin.example.com", Some(8080)),
            ("Admin.Example.com", Some(8080)),
            ("shop.example.com:8080", Some(8080)),
            // No server names it: the first server.
            ("elsewhere.com", Some(80)),
        ] {
            assert_eq!(e.destination_port(authority), want, "{authority}");
        }
    }

    #[test]
    fn match_blocks_or_and_fields_in_one_block_and() {
        let either =
            r#"{ headers = { end-user = { exact = "jason" } } }, { uri = { prefix = "/b" } }"#;
        let both = r#"{ headers = { end-user = { exact = "jason" } }, uri = { prefix = "/b" } }"#;
        let both_headers = r#"{ headers = { a = { exact = "1" }, b = { exact = "2" } } }"#;
        check(&[
            (either, with("/a", &[("end-user", "jason")]), true),
            (either, get("/b"), true),
            (either, with("/b", &[("end-user", "jason")]), true),
            (either, get("/a"), false),
            (both, with("/b", &[("end-user", "jason")]), true),
            (both, with("/a", &[("end-user", "jason")]), false),
            (both, get("/b"), false),
            (both_headers, with("/", &[("a", "1"), ("b", "2")]), true),
            (both_headers, with("/", &[("a", "1")]), false),
            (both_headers, with("/", &[("b", "2"), ("a", "1")]), true),
        ]);
    }

    /// Three routes: jason → v2, prefix /api → v1, then a catch-all, then
    /// one that can never be reached.
    const ORDERED: &str = r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "jason"
match = [{ headers = { end-user = { exact = "jason" } } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "api"
match = [{ uri = { prefix = "/api" } }, { headers = { end-user = { exact = "jason" } } }]
route = [{ destination = { host = "reviews", subset = "v1" } }]
[[virtualService.http]]
name = "all"
route = [{ destination = { host = "reviews", subset = "v1" } }]
[[virtualService.http]]
name = "never"
match = [{ uri = { prefix = "/" } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
"#;

    #[test]
    fn first_matching_route_wins() {
        let toml = mesh(ORDERED);
        let rows = [
            (with("/api", &[("end-user", "jason")]), "jason"),
            (with("/", &[("end-user", "jason")]), "jason"),
            (get("/api/v1"), "api"),
            (get("/other"), "all"),
            (with("/", &[("end-user", "bob")]), "all"),
        ];
        for (req, want) in rows {
            assert_eq!(
                route_for(&toml, &sidecar(), &req).as_deref(),
                Some(want),
                "{} {:?}",
                req.path,
                req.headers
            );
        }
    }

    #[test]
    fn a_route_without_match_is_a_catch_all_and_nothing_after_it_is_reachable() {
        let toml = mesh(ORDERED);
        assert_eq!(emitted(&toml, &sidecar()), ["jason", "api", "all"]);
        // A match block with only config-time selectors (or nothing at
        // all) is a catch-all too: later blocks and routes are not emitted.
        let toml = mesh(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "selected"
match = [{ sourceLabels = { app = "productpage" } }, { uri = { prefix = "/x" } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "rest"
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#,
        );
        let pp = ProxySpec::sidecar("default", &[("app", "productpage")]);
        assert_eq!(emitted(&toml, &pp), ["selected"]);
        assert_eq!(
            route_for(&toml, &pp, &get("/y")).as_deref(),
            Some("selected")
        );
        // For another workload the first block is not emitted; the second is.
        assert_eq!(emitted(&toml, &sidecar()), ["selected", "rest"]);
        assert_eq!(
            route_for(&toml, &sidecar(), &get("/x")).as_deref(),
            Some("selected")
        );
        assert_eq!(
            route_for(&toml, &sidecar(), &get("/y")).as_deref(),
            Some("rest")
        );
    }

    #[test]
    fn no_route_matched_is_rejected_404_no_route() {
        let mut e = engine(&mesh(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
match = [{ uri = { prefix = "/api" } }]
route = [{ destination = { host = "reviews" } }]
"#,
        ));
        for req in [get("/"), Request::get("nosuch", "/api")] {
            let Decision::Reject(r) = e.handle_request(&req, Time::ZERO) else {
                panic!("{} {} should not be routed", req.authority, req.path);
            };
            assert_eq!(r.reason, RejectReason::NoRoute);
            assert_eq!(r.status, 404);
            assert_eq!(r.flag(), ResponseFlag::NoRouteFound);
            assert_eq!(r.route, None);
            assert_eq!(r.delay, None);
        }
        assert!(pick(&mut e, &get("/api")).starts_with("10.0.0."));
    }

    #[test]
    fn export_to_limits_which_namespaces_see_a_virtual_service() {
        // A VirtualService of `other` for ratings, exported as written.
        let vs = |export: &str| {
            mesh(&format!(
                "[[virtualService]]\nname = \"ratings\"\nnamespace = \"other\"\nhosts = [\"ratings\"]\n{export}\n[[virtualService.http]]\nname = \"ratings-route\"\nroute = [{{ destination = {{ host = \"ratings\" }} }}]\n"
            ))
        };
        let req = Request::get("ratings.other:9080", "/");
        let from = |ns: &str| ProxySpec::sidecar(ns, &[]);
        let rows: [(&str, &str, &str); 8] = [
            ("", "default", "ratings-route"),
            ("exportTo = [\"*\"]", "default", "ratings-route"),
            ("exportTo = [\".\"]", "other", "ratings-route"),
            // Not exported here: the sidecar uses the default route.
            ("exportTo = [\".\"]", "default", "default"),
            ("exportTo = [\"default\"]", "default", "ratings-route"),
            ("exportTo = [\"default\"]", "other", "default"),
            ("exportTo = [\"~\"]", "other", "default"),
            ("exportTo = [\".\", \"shop\"]", "shop", "ratings-route"),
        ];
        for (export, ns, want) in rows {
            assert_eq!(
                route_for(&vs(export), &from(ns), &req).as_deref(),
                Some(want),
                "{export} seen from {ns}"
            );
        }
        // `*` and `~` stand alone; values are namespaces.
        for bad in [
            "exportTo = [\"*\", \"shop\"]",
            "exportTo = [\"Not A Namespace\"]",
        ] {
            let e = crate::config::from_toml(&vs(bad), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("virtualService[ratings].exportTo"), "{e}");
        }
    }

    #[test]
    fn a_sidecar_resolves_the_names_of_services_in_its_namespace() {
        let toml = mesh(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "reviews-route"
route = [{ destination = { host = "reviews" } }]
"#,
        );
        let rows: [(&str, Option<&str>); 14] = [
            ("reviews", Some("reviews-route")),
            ("reviews:9080", Some("reviews-route")),
            ("reviews.default", Some("reviews-route")),
            ("reviews.default:9080", Some("reviews-route")),
            ("reviews.default.svc", Some("reviews-route")),
            ("reviews.default.svc.cluster.local", Some("reviews-route")),
            (
                "reviews.default.svc.cluster.local:9080",
                Some("reviews-route"),
            ),
            ("REVIEWS", Some("reviews-route")),
            (
                "Reviews.Default.SVC.cluster.local:9080",
                Some("reviews-route"),
            ),
            // ratings lives in `other`: its short name does not resolve here.
            ("ratings", None),
            ("ratings.other", Some("default")),
            ("ratings.other.svc.cluster.local:9080", Some("default")),
            ("reviews.other", None),
            ("nosuch", None),
        ];
        for (authority, want) in rows {
            assert_eq!(
                route_for(&toml, &sidecar(), &Request::get(authority, "/")).as_deref(),
                want,
                "{authority}"
            );
        }
        // From a sidecar in `other`, it is the other way round.
        let other = ProxySpec::sidecar("other", &[]);
        for (authority, want) in [
            ("ratings", Some("default")),
            ("reviews", None),
            ("reviews.default", Some("reviews-route")),
        ] {
            assert_eq!(
                route_for(&toml, &other, &Request::get(authority, "/")).as_deref(),
                want,
                "{authority} from namespace other"
            );
        }
    }

    /// reviews for the mesh; a wildcard and an exact host on the gateway.
    const GATEWAY_VS: &str = r#"
[[virtualService]]
name = "shop"
hosts = ["*.example.com"]
gateways = ["gw"]
[[virtualService.http]]
name = "shop"
route = [{ destination = { host = "reviews", subset = "v2" } }]

[[virtualService]]
name = "api"
hosts = ["api.example.com"]
gateways = ["gw"]
[[virtualService.http]]
name = "api"
route = [{ destination = { host = "reviews", subset = "v1" } }]

[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "mesh"
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#;

    #[test]
    fn a_gateway_sees_only_virtual_services_bound_to_it() {
        let toml = mesh(GATEWAY_VS);
        let gw = ProxySpec::gateway("default", "gw");
        for (authority, want) in [
            ("shop.example.com", Some("shop")),
            ("SHOP.example.com:80", Some("shop")),
            ("a.b.example.com", Some("shop")),
            ("api.example.com", Some("api")),
            ("example.com", None),
            ("reviews", None),
            ("reviews.default.svc.cluster.local", None),
        ] {
            assert_eq!(
                route_for(&toml, &gw, &Request::get(authority, "/")).as_deref(),
                want,
                "{authority} at the gateway"
            );
        }
        assert_eq!(emitted(&toml, &gw), ["shop", "api"]);
        let mut e = engine_for(&toml, gw);
        assert_eq!(
            pick(&mut e, &Request::get("www.example.com", "/")),
            "10.0.0.2:9080"
        );
        assert_eq!(
            pick(&mut e, &Request::get("api.example.com", "/")),
            "10.0.0.1:9080"
        );
        // Another gateway sees none of them.
        let other = ProxySpec::gateway("default", "other-gw");
        assert!(emitted(&toml, &other).is_empty());
        assert_eq!(
            route_for(&toml, &other, &Request::get("shop.example.com", "/")),
            None
        );
    }

    #[test]
    fn a_sidecar_ignores_virtual_services_bound_only_to_a_gateway() {
        let toml = mesh(GATEWAY_VS);
        assert_eq!(
            route_for(&toml, &sidecar(), &Request::get("reviews", "/")).as_deref(),
            Some("mesh")
        );
        assert_eq!(
            route_for(&toml, &sidecar(), &Request::get("shop.example.com", "/")),
            None
        );
        // A VirtualService for reviews bound only to the gateway, even first
        // in the file, leaves the sidecar on the default route.
        let toml = mesh(
            r#"
[[virtualService]]
name = "reviews-at-the-edge"
hosts = ["reviews"]
gateways = ["gw"]
[[virtualService.http]]
name = "edge"
route = [{ destination = { host = "reviews", subset = "v2" } }]
"#,
        );
        assert_eq!(
            route_for(&toml, &sidecar(), &Request::get("reviews", "/")).as_deref(),
            Some("default")
        );
        let gw = ProxySpec::gateway("default", "gw");
        assert_eq!(
            route_for(
                &toml,
                &gw,
                &Request::get("reviews.default.svc.cluster.local", "/")
            )
            .as_deref(),
            Some("edge")
        );
    }

    #[test]
    fn source_labels_and_match_gateways_are_config_time_selectors() {
        let toml = mesh(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews", "reviews.example.com"]
gateways = ["gw", "mesh"]
[[virtualService.http]]
name = "at-gateway"
match = [{ gateways = ["gw"], uri = { prefix = "/" } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "from-productpage"
match = [{ sourceLabels = { app = "productpage" }, headers = { end-user = {} } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "from-test"
match = [{ sourceNamespace = "test", uri = { prefix = "/" } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
name = "rest"
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#,
        );
        let gw = ProxySpec::gateway("default", "gw");
        let pp = ProxySpec::sidecar("default", &[("app", "productpage"), ("version", "v1")]);
        let test_ns = ProxySpec::sidecar("test", &[("app", "productpage")]);
        assert_eq!(emitted(&toml, &gw), ["at-gateway", "rest"]);
        assert_eq!(emitted(&toml, &sidecar()), ["rest"]);
        assert_eq!(emitted(&toml, &pp), ["from-productpage", "rest"]);
        assert_eq!(
            emitted(&toml, &test_ns),
            ["from-productpage", "from-test", "rest"]
        );

        let jason = with("/", &[("end-user", "jason")]);
        assert_eq!(
            route_for(&toml, &gw, &Request::get("reviews.example.com", "/")).as_deref(),
            Some("at-gateway")
        );
        assert_eq!(
            route_for(&toml, &pp, &jason).as_deref(),
            Some("from-productpage")
        );
        assert_eq!(route_for(&toml, &pp, &get("/")).as_deref(), Some("rest"));
        assert_eq!(
            route_for(&toml, &sidecar(), &jason).as_deref(),
            Some("rest")
        );
        let ratings = Request::get("reviews.default", "/");
        assert_eq!(
            route_for(&toml, &test_ns, &ratings).as_deref(),
            Some("from-test")
        );
    }

    #[test]
    fn no_virtual_service_routes_to_all_endpoints_of_the_service() {
        // reviews has a DestinationRule with subsets but no VirtualService.
        let mut e = engine(MESH);
        let mut seen = BTreeMap::new();
        for _ in 0..200 {
            let f = crate::tests::forward(&mut e, &get("/"));
            assert_eq!(e.route(f.route).name, "default");
            assert_eq!(
                e.cluster_name(f.upstream.cluster),
                "outbound|9080||reviews.default.svc.cluster.local"
            );
            // The default route keeps Istio's default retry policy.
            assert_eq!(
                e.route(f.route).retries,
                crate::config::default_retry_policy(true)
            );
            assert_eq!(f.timeout, None);
            *seen
                .entry(e.endpoint_address(f.upstream).to_owned())
                .or_insert(0) += 1;
            assert_eq!(
                e.admit(f.upstream, true, false, Time::ZERO),
                crate::Admission::Attach
            );
            e.handle_response(f.upstream, crate::Outcome::Status(200), Time::ZERO);
        }
        assert_eq!(
            seen.keys().map(String::as_str).collect::<Vec<_>>(),
            ["10.0.0.1:9080", "10.0.0.2:9080"]
        );
    }

    #[test]
    fn a_config_with_all_virtual_services_and_destination_rules_removed_routes_like_the_default() {
        let full = config(&mesh(
            r#"
[[destinationRule]]
name = "ratings"
host = "ratings.other.svc.cluster.local"
trafficPolicy = { loadBalancer = { simple = "ROUND_ROBIN" } }

[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
match = [{ headers = { end-user = { exact = "jason" } } }]
fault = { abort = { httpStatus = 500, percentage = { value = 100.0 } } }
route = [{ destination = { host = "reviews", subset = "v2" } }]
[[virtualService.http]]
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#,
        ));
        let mut stripped = full.source.clone();
        stripped.virtual_service.clear();
        stripped.destination_rule.clear();
        let (stripped, _) = crate::config::validate(stripped).expect("still valid");
        let registry_only = MESH
            .split("[[destinationRule]]")
            .next()
            .expect("the services come first");
        let mut a = crate::Engine::new(std::sync::Arc::new(stripped), sidecar(), 3);
        let mut b = crate::Engine::new(std::sync::Arc::new(config(registry_only)), sidecar(), 3);
        let jason = [("end-user", "jason")];
        for i in 0..300 {
            let req = match i % 3 {
                0 => Request::get("reviews", "/").with_headers(&jason),
                1 => Request::get("reviews.default:9080", "/x"),
                _ => Request::get("ratings.other", "/"),
            };
            let (da, db) = (
                a.handle_request(&req, Time::ZERO),
                b.handle_request(&req, Time::ZERO),
            );
            assert_eq!(a.describe(&da), b.describe(&db));
            let Decision::Forward(f) = da else {
                panic!("{}", a.describe(&da))
            };
            assert_eq!(a.route(f.route).name, "default");
            if let Decision::Forward(g) = db {
                assert_eq!(
                    b.admit(g.upstream, true, false, Time::ZERO),
                    crate::Admission::Attach
                );
                b.handle_response(g.upstream, crate::Outcome::Status(200), Time::ZERO);
            }
            assert_eq!(
                a.admit(f.upstream, true, false, Time::ZERO),
                crate::Admission::Attach
            );
            a.handle_response(f.upstream, crate::Outcome::Status(200), Time::ZERO);
        }
    }

    #[test]
    fn a_redirect_or_direct_response_answers_locally() {
        let mut e = engine(&mesh(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
name = "moved"
match = [{ uri = { prefix = "/old" } }]
redirect = { uri = "/new" }
[[virtualService.http]]
name = "teapot"
directResponse = { status = 418 }
"#,
        ));
        for (path, route, status) in [("/old/x", "moved", 301), ("/", "teapot", 418)] {
            let Decision::Respond(r) = e.handle_request(&get(path), Time::ZERO) else {
                panic!("{path}")
            };
            assert_eq!((e.route(r.route).name.as_str(), r.status), (route, status));
        }
    }

    #[test]
    fn exact_domains_are_found_by_length_or_hashed_alike() {
        // Up to `MAX_SCAN` domains of one length are compared in turn; one
        // more and the table is hashed. Either way each domain finds its
        // virtual host, and nothing else matches.
        for same_length in [ExactDomains::MAX_SCAN, ExactDomains::MAX_SCAN + 1] {
            let mut map = FxHashMap::default();
            let mut domains = vec!["a".to_owned(), "reviews:9080".to_owned()];
            domains.extend((0..same_length).map(|i| format!("svc-{i}")));
            for (vh, d) in domains.iter().enumerate() {
                map.insert(d.as_bytes().into(), u32::try_from(vh).unwrap());
            }
            let exact = ExactDomains::new(map);
            assert_eq!(
                matches!(exact, ExactDomains::Hashed(_)),
                same_length > ExactDomains::MAX_SCAN
            );
            for (vh, d) in domains.iter().enumerate() {
                assert_eq!(exact.get(d.as_bytes()), Some(u32::try_from(vh).unwrap()));
            }
            for miss in ["", "b", "svc-9", "svc-00", "reviews:9081", "reviews:90800"] {
                assert_eq!(exact.get(miss.as_bytes()), None, "{miss}");
            }
        }
        assert_eq!(ExactDomains::default().get(b""), None);
        assert_eq!(ExactDomains::new(FxHashMap::default()).get(b"x"), None);
    }
}
