//! Route selection: the VirtualService route table of one proxy, and the pure
//! matching of a request against it (reference §5.1–5.2).
//!
//! The table is compiled per proxy, because `gateways`, `sourceLabels` and
//! `sourceNamespace` are config-time selectors in Istio: a match block that
//! does not select this proxy is not emitted at all. Within a virtual host the
//! first matching route wins; a route with k match blocks is k entries in a
//! row (the blocks OR, the fields inside a block AND); nothing after a
//! catch-all is emitted.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::config::{
    Action, Config, HeaderOps, HttpRoute, Match, StrMatch, WeightedDestination, host_matches,
};
use crate::request::{Request, host_of};

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
pub struct RouteId(pub(crate) u32);

/// One virtual host: its routes in order.
#[derive(Clone, Debug)]
struct VirtualHost {
    /// (match block or `None` for catch-all, route).
    entries: Vec<(Option<Match>, RouteId)>,
}

/// The compiled route table of one proxy.
#[derive(Clone, Debug)]
pub(crate) struct RouteTable {
    vhosts: Vec<VirtualHost>,
    /// Every route (VirtualService routes and generated default routes).
    routes: Vec<HttpRoute>,
    /// Destination cluster of each route destination, or `None` (NC).
    exact: FxHashMap<Box<str>, u32>,
    /// `*.suffix` domains, longest suffix first.
    wildcard: Vec<(Box<str>, u32)>,
}

impl RouteTable {
    pub(crate) fn build(config: &Config, proxy: &ProxySpec) -> Self {
        let mut t = Self {
            vhosts: Vec::new(),
            routes: Vec::new(),
            exact: FxHashMap::default(),
            wildcard: Vec::new(),
        };
        let ctx = proxy.context();
        let applies = |gws: &[String]| gws.iter().any(|g| g == ctx);
        if proxy.gateway.is_some() {
            // A gateway serves the hosts of the VirtualServices bound to it.
            for vs in config
                .virtual_services
                .iter()
                .filter(|vs| applies(&vs.gateways))
            {
                let vh = t.add_vhost(config, proxy, Some(vs), None);
                for h in &vs.hosts {
                    t.add_domain(h, vh);
                }
            }
        } else {
            // A sidecar has one virtual host per service, with the first
            // VirtualService (in file order) whose hosts cover it, or the
            // default route.
            for (s, svc) in config.services.iter().enumerate() {
                let vs = config.virtual_services.iter().find(|vs| {
                    applies(&vs.gateways) && vs.hosts.iter().any(|h| host_matches(h, &svc.host))
                });
                let vh = t.add_vhost(config, proxy, vs, Some(s));
                for d in aliases(&svc.host, &svc.namespace, proxy.namespace()) {
                    t.add_domain(&d, vh);
                }
            }
        }
        t.wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        t
    }

    fn add_domain(&mut self, domain: &str, vh: u32) {
        let d = domain.to_ascii_lowercase();
        if let Some(suffix) = d.strip_prefix('*') {
            if !self.wildcard.iter().any(|(s, _)| **s == *suffix) {
                self.wildcard.push((suffix.into(), vh));
            }
        } else {
            self.exact.entry(d.into_boxed_str()).or_insert(vh);
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
        match vs {
            Some(vs) => {
                'routes: for r in &vs.http {
                    let id = RouteId(u32::try_from(self.routes.len()).unwrap_or(u32::MAX));
                    let mut emitted = false;
                    if r.matches.is_empty() {
                        entries.push((None, id));
                        self.routes.push(r.clone());
                        break 'routes;
                    }
                    let mut catch_all = false;
                    for m in &r.matches {
                        if !selects(m, proxy) {
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
                let id = RouteId(u32::try_from(self.routes.len()).unwrap_or(u32::MAX));
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
        self.vhosts.push(VirtualHost { entries });
        u32::try_from(self.vhosts.len() - 1).unwrap_or(u32::MAX)
    }

    /// The route for a request: `None` when no virtual host or no route matches (404 NR).
    pub(crate) fn select(&self, req: &Request<'_>) -> Option<RouteId> {
        let vh = self.vhost_for(host_of(req.authority))?;
        self.vhosts[vh as usize]
            .entries
            .iter()
            .find(|(m, _)| m.as_ref().is_none_or(|m| matches(m, req)))
            .map(|(_, id)| *id)
    }

    fn vhost_for(&self, host: &str) -> Option<u32> {
        let mut buf = [0u8; 256];
        let lower: &str = if host.len() <= buf.len() {
            let b = &mut buf[..host.len()];
            b.copy_from_slice(host.as_bytes());
            b.make_ascii_lowercase();
            std::str::from_utf8(b).ok()?
        } else {
            return None;
        };
        if let Some(&vh) = self.exact.get(lower) {
            return Some(vh);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| lower.len() > suffix.len() && lower.ends_with(&**suffix))
            .map(|(_, vh)| *vh)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(s, _)| s.is_empty())
                    .map(|(_, vh)| *vh)
            })
    }

    pub(crate) fn route(&self, id: RouteId) -> &HttpRoute {
        &self.routes[id.0 as usize]
    }

    pub(crate) fn routes(&self) -> &[HttpRoute] {
        &self.routes
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

/// Whether every request-time condition of the block holds.
pub(crate) fn matches(m: &Match, req: &Request<'_>) -> bool {
    if let Some(uri) = &m.uri
        && !uri_matches(uri, req.path_only(), m.ignore_uri_case)
    {
        return false;
    }
    if let Some(p) = m.port
        && req.port != 0
        && p != req.port
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
        .any(|(name, sm)| !value_matches(sm, req.header(name)))
    {
        return false;
    }
    // Absent, or present and not matching (Istio sets
    // `treat_missing_header_as_empty` for value matchers).
    if m.without_headers
        .iter()
        .any(|(name, sm)| match (sm, req.header(name)) {
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

fn uri_matches(sm: &StrMatch, path: &str, ignore_case: bool) -> bool {
    match sm {
        StrMatch::Exact(e) if ignore_case => path.eq_ignore_ascii_case(e),
        StrMatch::Prefix(p) if ignore_case => {
            path.len() >= p.len()
                && path.is_char_boundary(p.len())
                && path[..p.len()].eq_ignore_ascii_case(p)
        }
        // `ignoreUriCase` does not apply to regex (Istio).
        other => value_matches(other, Some(path)),
    }
}
