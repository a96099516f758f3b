//! Istio's validation rules and defaults: file types in, checked types out.
//!
//! Every problem is collected (not just the first) with the path of the field
//! at fault and a message that says what was expected. Things Istio accepts
//! but that are almost always a mistake are [`Warning`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::duration::IstioDuration;
use super::error::{ConfigError, FieldPath};
use super::file as t;
use super::model::{
    Action, ClusterPolicy, ClusterSpec, Config, ConnectionPool, Endpoint, Fault, HashKey,
    HeaderOps, HttpRoute, LbPolicy, Match, OutlierPolicy, Redirect, RetryOn, RetryPolicy, Rewrite,
    Service, StrMatch, UpstreamProtocol, VirtualService, WeightedDestination,
};

/// A problem Istio would accept, reported so the user can look twice.
pub type Warning = ConfigError;

/// Cluster domain suffix of short names.
const DOMAIN_SUFFIX: &str = "svc.cluster.local";
/// Envoy's largest ring.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// RE2 program size limit used for route regexes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Validates a parsed mesh config (Istio's rules; the analyzer's findings
/// are added by [`super::validate`]).
pub(crate) fn rules(source: t::MeshConfig) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
    let mut v = Validator::default();
    let services = v.services(&source);
    let gateways = v.gateways(&source);
    let clusters = v.clusters(&source, &services);
    let virtual_services = v.virtual_services(&source, &services, &clusters, &gateways);
    v.listeners(&source, &gateways);
    if v.errors.is_empty() {
        let config = Config {
            source,
            services,
            clusters,
            virtual_services,
            gateways,
        };
        Ok((config, v.warnings))
    } else {
        Err(v.errors)
    }
}

/// `host` fully qualified relative to `namespace`, as Istio resolves short names.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host.contains('*') {
        host
    } else {
        format!("{host}.{namespace}.{DOMAIN_SUFFIX}")
    }
}

/// Whether a (possibly wildcard) host pattern covers a host.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

fn ns(namespace: &Option<String>) -> String {
    namespace.clone().unwrap_or_else(|| "default".to_owned())
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    /// The name of each service's DestinationRule, if it has one (set by
    /// `clusters`, read by the destinations' checks).
    rule_of: Vec<Option<String>>,
}

impl Validator {
    fn err(&mut self, path: FieldPath, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(path, msg));
    }

    /// A warning with its analyzer code (see the analyzer's table of rules).
    fn warn(&mut self, code: &'static str, path: FieldPath, msg: impl Into<String>) {
        self.warnings
            .push(ConfigError::new(path, msg).with_code(code));
    }

    /// A duration that Istio requires to be at least 1 ms.
    fn positive(&mut self, d: &Option<IstioDuration>, path: FieldPath) -> Option<Duration> {
        let d = d.as_ref()?;
        if d.value < Duration::from_millis(1) {
            self.err(
                path,
                format!(
                    "expected a duration of at least 1ms, found \"{}\"; Istio rejects zero and sub-millisecond values here",
                    d.text
                ),
            );
            return None;
        }
        Some(d.value)
    }

    // === registry ===

    fn services(&mut self, src: &t::MeshConfig) -> Vec<Service> {
        let mut out: Vec<Service> = Vec::new();
        let mut seen: BTreeMap<String, FieldPath> = BTreeMap::new();
        for (i, s) in src.service.iter().enumerate() {
            let path = FieldPath::root().key("service").named(i, &s.name);
            let namespace = ns(&s.namespace);
            if !valid_dns_label(&s.name) {
                self.err(
                    path.key("name"),
                    format!(
                        "expected a DNS label (lowercase letters, digits, '-'), found \"{}\"",
                        s.name
                    ),
                );
            }
            let host = fqdn(&s.name, &namespace);
            if let Some(first) = seen.get(&host) {
                self.err(path.key("name"), format!("duplicate service \"{host}\": already defined at {first}; give each service one [[service]] table"));
                continue;
            }
            seen.insert(host.clone(), path.clone());
            let mut endpoints = Vec::with_capacity(s.endpoints.len());
            let mut addresses = BTreeSet::new();
            for (j, e) in s.endpoints.iter().enumerate() {
                let ep = path.key("endpoints").index(j);
                if e.address.parse::<SocketAddr>().is_err() {
                    self.err(ep.key("address"), format!("expected an \"ip:port\" address such as \"10.0.0.1:9080\", found \"{}\"", e.address));
                }
                if !addresses.insert(e.address.clone()) {
                    self.err(
                        ep.key("address"),
                        format!(
                            "duplicate endpoint address \"{}\" in service \"{}\"",
                            e.address, s.name
                        ),
                    );
                }
                let weight = e.weight.unwrap_or(1);
                if weight == 0 {
                    self.err(
                        ep.key("weight"),
                        "expected an endpoint weight of at least 1 (omit it for 1)",
                    );
                }
                endpoints.push(Endpoint {
                    address: e.address.clone(),
                    labels: e.labels.clone(),
                    weight: weight.max(1),
                });
            }
            out.push(Service {
                host,
                namespace,
                port: s.port,
                endpoints,
                external: false,
                http2: false,
            });
        }
        for (i, se) in src.service_entry.iter().enumerate() {
            let path = FieldPath::root().key("serviceEntry").named(i, &se.name);
            let namespace = ns(&se.namespace);
            let external = match se.location.as_deref() {
                None | Some("MESH_EXTERNAL") => true,
                Some("MESH_INTERNAL") => false,
                Some(other) => {
                    self.err(
                        path.key("location"),
                        format!("expected MESH_EXTERNAL or MESH_INTERNAL, found \"{other}\""),
                    );
                    true
                }
            };
            if let Some(r) = se.resolution.as_deref()
                && !matches!(r, "NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN")
            {
                self.err(
                    path.key("resolution"),
                    format!("expected NONE, STATIC, DNS or DNS_ROUND_ROBIN, found \"{r}\""),
                );
            }
            let Some(port) = se.ports.first() else {
                self.err(path.key("ports"), "expected at least one port, e.g. ports = [{ number = 443, name = \"https\", protocol = \"TLS\" }]");
                continue;
            };
            if se.hosts.is_empty() {
                self.err(path.key("hosts"), "expected at least one host");
            }
            // Istio's `protocol.Parse` (case-insensitive) and `IsHTTP2`.
            let http2 = port.protocol.as_deref().is_some_and(|p| {
                ["HTTP2", "GRPC", "GRPC-WEB"]
                    .iter()
                    .any(|h| p.eq_ignore_ascii_case(h))
            });
            for (h, host) in se.hosts.iter().enumerate() {
                let host = fqdn(host, &namespace);
                if let Some(first) = seen.get(&host) {
                    self.err(
                        path.key("hosts").index(h),
                        format!("duplicate host \"{host}\": already defined at {first}"),
                    );
                    continue;
                }
                seen.insert(host.clone(), path.clone());
                let endpoints = se
                    .endpoints
                    .iter()
                    .map(|e| {
                        let p = port.name.as_ref().and_then(|n| e.ports.get(n)).copied();
                        let p = p.or(port.target_port).unwrap_or(port.number);
                        Endpoint {
                            address: if e.address.contains(':') && !e.address.contains('.') {
                                format!("[{}]:{p}", e.address)
                            } else {
                                format!("{}:{p}", e.address)
                            },
                            labels: e.labels.clone(),
                            weight: e.weight.unwrap_or(1).max(1),
                        }
                    })
                    .collect();
                out.push(Service {
                    host,
                    namespace: namespace.clone(),
                    port: port.number,
                    endpoints,
                    external,
                    http2,
                });
            }
        }
        out
    }

    fn gateways(&mut self, src: &t::MeshConfig) -> Vec<String> {
        let mut out = Vec::new();
        for (i, g) in src.gateway.iter().enumerate() {
            let path = FieldPath::root().key("gateway").named(i, &g.name);
            let name = format!("{}/{}", ns(&g.namespace), g.name);
            if out.contains(&name) {
                self.err(path.key("name"), format!("duplicate gateway \"{name}\""));
            }
            if g.servers.is_empty() {
                self.err(path.key("servers"), "expected at least one server");
            }
            for (j, s) in g.servers.iter().enumerate() {
                if s.hosts.is_empty() {
                    self.err(
                        path.key("servers").index(j).key("hosts"),
                        "expected at least one host (\"*\" for any)",
                    );
                }
            }
            out.push(name);
        }
        out
    }

    /// `meshproxy` listeners: an `ip:port` each, no address twice, and a
    /// gateway that exists.
    fn listeners(&mut self, src: &t::MeshConfig, gateways: &[String]) {
        let mut seen = BTreeSet::new();
        for (i, l) in src.listener.iter().enumerate() {
            let path = FieldPath::root().key("listener").index(i);
            match l.address.parse::<std::net::SocketAddr>() {
                Ok(a) if a.port() != 0 && !seen.insert(a) => self.err(
                    path.key("address"),
                    format!("duplicate listener address \"{}\"", l.address),
                ),
                Ok(_) => {}
                Err(_) => self.err(
                    path.key("address"),
                    format!(
                        "expected an ip:port such as \"127.0.0.1:8080\", found \"{}\"",
                        l.address
                    ),
                ),
            }
            if let Some(g) = &l.gateway {
                let name = if g.contains('/') {
                    g.clone()
                } else {
                    format!("{}/{g}", ns(&l.namespace))
                };
                if !gateways.contains(&name) {
                    self.err(
                        path.key("gateway"),
                        format!(
                            "no [[gateway]] named \"{name}\"; declare it, or drop `gateway` to act as the mesh sidecar"
                        ),
                    );
                }
            }
        }
    }

    // === DestinationRules and clusters ===

    fn clusters(&mut self, src: &t::MeshConfig, services: &[Service]) -> Vec<ClusterSpec> {
        // The DestinationRule of each service: an exact host beats a wildcard;
        // among equals the first one in the file wins (Istio: the oldest),
        // and later rules for the same host in the same namespace are merged
        // into it as Istio's `mergeDestinationRule` does: their subsets (by
        // new name) appended, their top-level policy used only if the first
        // has none.
        let mut rules: Vec<Option<usize>> = vec![None; services.len()];
        let mut merged: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
        let mut names = BTreeSet::new();
        for (i, dr) in src.destination_rule.iter().enumerate() {
            let path = FieldPath::root().key("destinationRule").named(i, &dr.name);
            let namespace = ns(&dr.namespace);
            if !names.insert((namespace.clone(), dr.name.clone())) {
                self.err(
                    path.key("name"),
                    format!(
                        "duplicate DestinationRule name \"{}\" in namespace \"{namespace}\"",
                        dr.name
                    ),
                );
            }
            self.check_dr(dr, &path);
            let host = fqdn(&dr.host, &namespace);
            let mut matched = false;
            for (s, svc) in services.iter().enumerate() {
                if !host_matches(&host, &svc.host) {
                    continue;
                }
                matched = true;
                match rules[s] {
                    None => rules[s] = Some(i),
                    Some(prev) => {
                        let p = &src.destination_rule[prev];
                        let prev_ns = ns(&p.namespace);
                        let prev_host = fqdn(&p.host, &prev_ns);
                        if prev_host == host && prev_ns == namespace {
                            merged[s].push(i);
                        } else if prev_host == svc.host || host != svc.host {
                            self.warn("MSH0012", path.key("host"), format!("service \"{}\" already has DestinationRule \"{}\" (namespace {prev_ns}); this one is ignored for it: Istio picks one by the calling proxy's namespace, meshsim keeps the first for every proxy", svc.host, p.name));
                        } else {
                            rules[s] = Some(i);
                            merged[s].clear();
                        }
                    }
                }
            }
            if !matched {
                self.warn(
                    "MSH0011",
                    path.key("host"),
                    format!("no service matches host \"{host}\"; the rule has no effect"),
                );
            }
        }
        self.rule_of = rules
            .iter()
            .map(|r| r.map(|i| src.destination_rule[i].name.clone()))
            .collect();
        let mut out = Vec::new();
        for (s, svc) in services.iter().enumerate() {
            let dr = rules[s].map(|i| &src.destination_rule[i]);
            let extra: Vec<&t::DestinationRule> = merged[s]
                .iter()
                .map(|&i| &src.destination_rule[i])
                .collect();
            let top = dr
                .into_iter()
                .chain(extra.iter().copied())
                .find_map(|d| d.traffic_policy.as_ref());
            out.push(ClusterSpec {
                name: format!("outbound|{}||{}", svc.port, svc.host),
                service: s,
                subset: None,
                endpoints: (0..svc.endpoints.len()).collect(),
                policy: self.merge_policy(top, None, svc.port, svc.http2),
            });
            let Some(dr) = dr else { continue };
            let mut subsets: Vec<&t::Subset> = dr.subsets.iter().collect();
            for (d, i) in extra.iter().zip(&merged[s]) {
                for (j, sub) in d.subsets.iter().enumerate() {
                    if subsets.iter().any(|x| x.name == sub.name) {
                        self.warn(
                            "MSH0012",
                            FieldPath::root()
                                .key("destinationRule")
                                .named(*i, &d.name)
                                .key("subsets")
                                .named(j, &sub.name),
                            format!(
                                "subset \"{}\" of \"{}\" is already defined by DestinationRule \"{}\": Istio merges the two rules and keeps the first definition",
                                sub.name, svc.host, dr.name
                            ),
                        );
                    } else {
                        subsets.push(sub);
                    }
                }
            }
            for sub in subsets {
                let endpoints = (0..svc.endpoints.len())
                    .filter(|&e| {
                        sub.labels
                            .iter()
                            .all(|(k, v)| svc.endpoints[e].labels.get(k) == Some(v))
                    })
                    .collect();
                out.push(ClusterSpec {
                    name: format!("outbound|{}|{}|{}", svc.port, sub.name, svc.host),
                    service: s,
                    subset: Some(sub.name.clone()),
                    endpoints,
                    policy: self.merge_policy(
                        top,
                        sub.traffic_policy.as_ref(),
                        svc.port,
                        svc.http2,
                    ),
                });
            }
        }
        out
    }

    fn check_dr(&mut self, dr: &t::DestinationRule, path: &FieldPath) {
        if dr.host.is_empty() {
            self.err(
                path.key("host"),
                "expected a host such as \"reviews\" or \"reviews.default.svc.cluster.local\"",
            );
        }
        if let Some(tp) = &dr.traffic_policy {
            self.check_policy(tp, &path.key("trafficPolicy"));
        }
        let mut subset_names = BTreeSet::new();
        for (j, sub) in dr.subsets.iter().enumerate() {
            let sp = path.key("subsets").named(j, &sub.name);
            if !valid_dns_label(&sub.name) {
                self.err(
                    sp.key("name"),
                    format!(
                        "expected a DNS label as subset name, found \"{}\"",
                        sub.name
                    ),
                );
            }
            if !subset_names.insert(sub.name.clone()) {
                self.err(
                    sp.key("name"),
                    format!("duplicate subset name \"{}\"", sub.name),
                );
            }
            if let Some(tp) = &sub.traffic_policy {
                self.check_policy(tp, &sp.key("trafficPolicy"));
            }
        }
    }

    fn check_policy(&mut self, tp: &t::TrafficPolicy, path: &FieldPath) {
        self.check_blocks(
            tp.load_balancer.as_ref(),
            tp.connection_pool.as_ref(),
            tp.outlier_detection.as_ref(),
            path,
        );
        let mut ports = BTreeSet::new();
        for (i, pl) in tp.port_level_settings.iter().enumerate() {
            let pp = path.key("portLevelSettings").index(i);
            if !ports.insert(pl.port.number) {
                self.err(
                    pp.key("port").key("number"),
                    format!("duplicate port {} in portLevelSettings", pl.port.number),
                );
            }
            self.check_blocks(
                pl.load_balancer.as_ref(),
                pl.connection_pool.as_ref(),
                pl.outlier_detection.as_ref(),
                &pp,
            );
        }
    }

    fn check_blocks(
        &mut self,
        lb: Option<&t::LoadBalancerSettings>,
        cp: Option<&t::ConnectionPoolSettings>,
        od: Option<&t::OutlierDetection>,
        path: &FieldPath,
    ) {
        if let Some(lb) = lb {
            self.lb_policy(lb, &path.key("loadBalancer"));
        }
        if let Some(cp) = cp {
            let cpp = path.key("connectionPool");
            if let Some(tcp) = &cp.tcp {
                self.positive(&tcp.connect_timeout, cpp.key("tcp").key("connectTimeout"));
                self.positive(&tcp.idle_timeout, cpp.key("tcp").key("idleTimeout"));
                self.positive(
                    &tcp.max_connection_duration,
                    cpp.key("tcp").key("maxConnectionDuration"),
                );
            }
            if let Some(http) = &cp.http {
                self.positive(&http.idle_timeout, cpp.key("http").key("idleTimeout"));
                if let Some(p) = http.h2_upgrade_policy.as_deref()
                    && !H2_UPGRADE_POLICIES.contains(&p)
                {
                    self.err(
                        cpp.key("http").key("h2UpgradePolicy"),
                        format!("expected DEFAULT, DO_NOT_UPGRADE or UPGRADE, found \"{p}\""),
                    );
                }
            }
        }
        if let Some(od) = od {
            let op = path.key("outlierDetection");
            self.positive(&od.interval, op.key("interval"));
            self.positive(&od.base_ejection_time, op.key("baseEjectionTime"));
            for (field, value) in [
                ("maxEjectionPercent", od.max_ejection_percent),
                ("minHealthPercent", od.min_health_percent),
            ] {
                if let Some(v) = value
                    && v > 100
                {
                    self.err(
                        op.key(field),
                        format!("expected a percentage from 0 to 100, found {v}"),
                    );
                }
            }
            if od.consecutive_errors.is_some() {
                self.warn("MSH0007", op.key("consecutiveErrors"), "deprecated and ignored since Istio 1.7; use consecutive5xxErrors or consecutiveGatewayErrors");
            }
            if od.consecutive_local_origin_failures.is_some()
                && od.split_external_local_origin_errors != Some(true)
            {
                self.warn(
                    "MSH0008",
                    op.key("consecutiveLocalOriginFailures"),
                    "has no effect unless splitExternalLocalOriginErrors = true",
                );
            }
        }
    }

    /// Load-balancer block → (policy, hash key). Records errors.
    fn lb_policy(
        &mut self,
        lb: &t::LoadBalancerSettings,
        path: &FieldPath,
    ) -> (LbPolicy, Option<HashKey>) {
        if lb.simple.is_some() && lb.consistent_hash.is_some() {
            self.err(path.clone(), "expected either `simple` or `consistentHash`, not both (they are one Istio `lbPolicy`)");
        }
        if let Some(ch) = &lb.consistent_hash {
            let chp = path.key("consistentHash");
            let key = self.hash_key(
                ch.http_header_name.as_deref(),
                ch.http_cookie
                    .as_ref()
                    .map(|c| (c.name.as_str(), c.path.clone(), c.ttl.clone())),
                ch.use_source_ip,
                ch.http_query_parameter_name.as_deref(),
                &chp,
            );
            if ch.ring_hash.is_some() && ch.maglev.is_some() {
                self.err(
                    chp.clone(),
                    "expected either `ringHash` or `maglev`, not both",
                );
            }
            let policy = if let Some(m) = &ch.maglev {
                let size = m.table_size.unwrap_or(65_537);
                if !is_prime(size) || size >= 5_000_011 {
                    self.err(chp.key("maglev").key("tableSize"), format!("expected a prime number below 5000011 (Envoy's default is 65537), found {size}"));
                }
                LbPolicy::Maglev { table_size: size }
            } else {
                let size = ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .unwrap_or(1024);
                if size == 0 || size > MAX_RING_SIZE {
                    let field = if ch.ring_hash.is_some() {
                        chp.key("ringHash").key("minimumRingSize")
                    } else {
                        chp.key("minimumRingSize")
                    };
                    self.err(
                        field,
                        format!("expected a ring size from 1 to {MAX_RING_SIZE}, found {size}"),
                    );
                }
                LbPolicy::RingHash {
                    minimum_ring_size: size.clamp(1, MAX_RING_SIZE),
                }
            };
            return (policy, key);
        }
        let policy = match lb.simple.as_deref() {
            None | Some("UNSPECIFIED" | "LEAST_REQUEST" | "LEAST_CONN") => LbPolicy::LeastRequest,
            Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
            Some("RANDOM") => LbPolicy::Random,
            Some("PASSTHROUGH") => LbPolicy::Passthrough,
            Some(other) => {
                self.err(path.key("simple"), format!("expected one of UNSPECIFIED, LEAST_REQUEST, LEAST_CONN, ROUND_ROBIN, RANDOM, PASSTHROUGH, found \"{other}\""));
                LbPolicy::LeastRequest
            }
        };
        (policy, None)
    }

    fn hash_key(
        &mut self,
        header: Option<&str>,
        cookie: Option<(&str, Option<String>, Option<IstioDuration>)>,
        source_ip: Option<bool>,
        query: Option<&str>,
        path: &FieldPath,
    ) -> Option<HashKey> {
        let set = usize::from(header.is_some())
            + usize::from(cookie.is_some())
            + usize::from(source_ip == Some(true))
            + usize::from(query.is_some());
        if set != 1 {
            self.err(path.clone(), format!("expected exactly one hash key (httpHeaderName, httpCookie, useSourceIp = true or httpQueryParameterName), found {set}"));
            return None;
        }
        if let Some(h) = header {
            if h.is_empty() {
                self.err(path.key("httpHeaderName"), "expected a header name");
            }
            return Some(HashKey::Header(h.to_ascii_lowercase()));
        }
        if let Some((name, cpath, ttl)) = cookie {
            if name.is_empty() {
                self.err(path.key("httpCookie").key("name"), "expected a cookie name");
            }
            return Some(HashKey::Cookie {
                name: name.to_owned(),
                path: cpath,
                ttl: ttl.map(|d| d.value),
            });
        }
        if source_ip == Some(true) {
            return Some(HashKey::SourceIp);
        }
        query.map(|q| HashKey::QueryParameter(q.to_owned()))
    }

    /// The policy of one cluster: the rule's blocks, replaced per port, then
    /// replaced block by block by the subset's (reference §1, [MERGE]).
    /// `http2`: the service port's protocol is HTTP/2.
    fn merge_policy(
        &mut self,
        top: Option<&t::TrafficPolicy>,
        subset: Option<&t::TrafficPolicy>,
        port: u16,
        http2: bool,
    ) -> ClusterPolicy {
        type Blocks<'a> = (
            Option<&'a t::LoadBalancerSettings>,
            Option<&'a t::ConnectionPoolSettings>,
            Option<&'a t::OutlierDetection>,
        );
        fn blocks(tp: &t::TrafficPolicy, port: u16) -> Blocks<'_> {
            match tp
                .port_level_settings
                .iter()
                .find(|p| p.port.number == port)
            {
                Some(p) => (
                    p.load_balancer.as_ref(),
                    p.connection_pool.as_ref(),
                    p.outlier_detection.as_ref(),
                ),
                None => (
                    tp.load_balancer.as_ref(),
                    tp.connection_pool.as_ref(),
                    tp.outlier_detection.as_ref(),
                ),
            }
        }
        let (mut lb, mut cp, mut od) = top.map_or((None, None, None), |tp| blocks(tp, port));
        if let Some(sub) = subset {
            let (slb, scp, sod) = blocks(sub, port);
            lb = slb.or(lb);
            cp = scp.or(cp);
            od = sod.or(od);
        }
        // Errors of these blocks were reported by `check_policy` with their
        // real paths; this pass only resolves values, so it reports nothing.
        let mut quiet = Validator::default();
        let (lb, hash) = lb.map_or((LbPolicy::LeastRequest, None), |lb| {
            quiet.lb_policy(lb, &FieldPath::root())
        });
        let outlier = od.map(outlier_policy);
        ClusterPolicy {
            lb,
            hash,
            connection_pool: ConnectionPool {
                protocol: upstream_protocol(http2, cp.and_then(|c| c.http.as_ref())),
                ..cp.map(connection_pool).unwrap_or_default()
            },
            panic_threshold_percent: match od {
                Some(od) => od.min_health_percent.unwrap_or(0).min(100),
                None => 50,
            },
            outlier,
        }
    }

    // === VirtualServices ===

    fn virtual_services(
        &mut self,
        src: &t::MeshConfig,
        services: &[Service],
        clusters: &[ClusterSpec],
        gateways: &[String],
    ) -> Vec<VirtualService> {
        let mut out = Vec::new();
        let mut names = BTreeSet::new();
        for (i, vs) in src.virtual_service.iter().enumerate() {
            let path = FieldPath::root().key("virtualService").named(i, &vs.name);
            let namespace = ns(&vs.namespace);
            if !names.insert((namespace.clone(), vs.name.clone())) {
                self.err(
                    path.key("name"),
                    format!(
                        "duplicate VirtualService name \"{}\" in namespace \"{namespace}\"",
                        vs.name
                    ),
                );
            }
            if vs.hosts.is_empty() {
                self.err(
                    path.key("hosts"),
                    "expected at least one host, e.g. hosts = [\"reviews\"]",
                );
            }
            let hosts: Vec<String> = vs.hosts.iter().map(|h| fqdn(h, &namespace)).collect();
            for (h, host) in hosts.iter().enumerate() {
                if host.contains('*')
                    && !(host == "*" || (host.starts_with("*.") && !host[1..].contains('*')))
                {
                    self.err(
                        path.key("hosts").index(h),
                        format!("expected a wildcard only as a leading \"*.\", found \"{host}\""),
                    );
                }
            }
            let vs_gateways =
                self.gateway_refs(&vs.gateways, &namespace, gateways, &path.key("gateways"));
            if vs.http.is_empty() {
                self.warn(
                    "MSH0009",
                    path.key("http"),
                    "no http routes: requests for these hosts get 404 (NR)",
                );
            }
            let mut http = Vec::new();
            let mut after_catch_all = false;
            for (j, r) in vs.http.iter().enumerate() {
                let rp = path.key("http").index(j);
                if after_catch_all {
                    self.warn("IST0131", rp.clone(), "unreachable: an earlier route matches every request, and Istio emits nothing after it");
                }
                let route = self.http_route(
                    r, &rp, &vs.name, j, &namespace, services, clusters, gateways,
                );
                if route.matches.is_empty() {
                    after_catch_all = true;
                }
                http.push(route);
            }
            let export_to = self.export_to(&vs.export_to, &path.key("exportTo"));
            out.push(VirtualService {
                name: vs.name.clone(),
                namespace,
                hosts,
                gateways: vs_gateways,
                http,
                export_to,
            });
        }
        out
    }

    /// Istio's `exportTo`: `*` (everywhere, the default), `.` (the object's
    /// namespace), `~` (nowhere) or namespace names; `*` and `~` stand alone.
    fn export_to(&mut self, values: &[String], path: &FieldPath) -> Vec<String> {
        for (i, v) in values.iter().enumerate() {
            let ok = matches!(v.as_str(), "*" | "." | "~") || valid_dns_label(v);
            if !ok {
                self.err(
                    path.index(i),
                    format!("expected \"*\", \".\", \"~\" or a namespace name, found \"{v}\""),
                );
            }
        }
        if values.len() > 1 && values.iter().any(|v| v == "*" || v == "~") {
            self.err(
                path.clone(),
                "\"*\" and \"~\" must stand alone: exportTo = [\"*\"] exports everywhere, [\"~\"] nowhere",
            );
        }
        values.to_vec()
    }

    fn gateway_refs(
        &mut self,
        refs: &[String],
        namespace: &str,
        known: &[String],
        path: &FieldPath,
    ) -> Vec<String> {
        if refs.is_empty() {
            return vec!["mesh".to_owned()];
        }
        let mut out = Vec::new();
        for (i, g) in refs.iter().enumerate() {
            if g == "mesh" {
                out.push(g.clone());
                continue;
            }
            let full = if g.contains('/') {
                g.clone()
            } else {
                format!("{namespace}/{g}")
            };
            if !known.contains(&full) {
                self.err(path.index(i), format!("unknown gateway \"{g}\": expected \"mesh\" or the name of a [[gateway]] ({})", if known.is_empty() { "none defined".to_owned() } else { known.join(", ") }));
            }
            out.push(full);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn http_route(
        &mut self,
        r: &t::HttpRoute,
        path: &FieldPath,
        vs_name: &str,
        index: usize,
        namespace: &str,
        services: &[Service],
        clusters: &[ClusterSpec],
        gateways: &[String],
    ) -> HttpRoute {
        let mut matches = Vec::new();
        for (k, m) in r.matches.iter().enumerate() {
            matches.push(self.match_block(m, &path.key("match").index(k), namespace, gateways));
        }
        let actions = usize::from(!r.route.is_empty())
            + usize::from(r.redirect.is_some())
            + usize::from(r.direct_response.is_some());
        if actions != 1 {
            self.err(path.clone(), format!("expected exactly one of `route`, `redirect` or `directResponse`, found {actions}"));
        }
        let single_hash = r.route.len() == 1;
        let action = if let Some(rd) = &r.redirect {
            let code = rd.redirect_code.unwrap_or(301);
            if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                self.err(
                    path.key("redirect").key("redirectCode"),
                    format!("expected 301, 302, 303, 307 or 308, found {code}"),
                );
            }
            if r.rewrite.is_some() {
                self.err(
                    path.key("rewrite"),
                    "a redirect cannot be combined with a rewrite",
                );
            }
            Action::Redirect(Redirect {
                uri: rd.uri.clone(),
                authority: rd.authority.clone(),
                port: rd.port,
                scheme: rd.scheme.clone(),
                code,
            })
        } else if let Some(dr) = &r.direct_response {
            if !(200..600).contains(&dr.status) {
                self.err(
                    path.key("directResponse").key("status"),
                    format!(
                        "expected an HTTP status from 200 to 599, found {}",
                        dr.status
                    ),
                );
            }
            Action::DirectResponse {
                status: dr.status,
                body: dr.body.as_ref().map(|b| b.string.clone()),
            }
        } else {
            Action::Route(self.destinations(
                &r.route,
                &path.key("route"),
                namespace,
                services,
                clusters,
            ))
        };
        let uses_hash = match &action {
            Action::Route(ds) => ds
                .iter()
                .any(|d| d.cluster.is_some_and(|c| clusters[c].policy.hash.is_some())),
            _ => false,
        };
        let timeout = r.timeout.as_ref().map(|d| d.value).filter(|d| !d.is_zero());
        let retries = self.retries(
            r.retries.as_ref(),
            &path.key("retries"),
            single_hash && uses_hash,
        );
        let fault = self.fault(r.fault.as_ref(), &path.key("fault"));
        let headers = self.header_ops(r.headers.as_ref(), &path.key("headers"));
        let rewrite = r.rewrite.as_ref().map(|rw| Rewrite {
            uri: rw.uri.clone(),
            authority: rw.authority.clone(),
            uri_regex: rw.uri_regex_rewrite.as_ref().and_then(|rr| {
                self.regex(
                    &rr.pattern,
                    &path.key("rewrite").key("uriRegexRewrite").key("match"),
                    false,
                )
                .map(|re| (re, rr.rewrite.clone()))
            }),
        });
        let sticky_weights = r.meshsim_sticky_weights.as_ref().and_then(|s| {
            self.hash_key(
                s.http_header_name.as_deref(),
                s.http_cookie_name.as_deref().map(|n| (n, None, None)),
                s.use_source_ip,
                s.http_query_parameter_name.as_deref(),
                &path.key("meshsimStickyWeights"),
            )
        });
        HttpRoute {
            name: r
                .name
                .clone()
                .unwrap_or_else(|| format!("{vs_name}.{index}")),
            matches,
            action,
            timeout,
            retries,
            fault,
            headers,
            rewrite,
            sticky_weights,
        }
    }

    fn destinations(
        &mut self,
        route: &[t::HttpRouteDestination],
        path: &FieldPath,
        namespace: &str,
        services: &[Service],
        clusters: &[ClusterSpec],
    ) -> Vec<WeightedDestination> {
        let mut out = Vec::new();
        let mut total: i64 = 0;
        for (k, d) in route.iter().enumerate() {
            let dp = path.index(k);
            let w = d.weight.unwrap_or(0);
            if w < 0 {
                self.err(
                    dp.key("weight"),
                    format!("expected a weight of 0 or more, found {w}"),
                );
            }
            total += w.max(0);
            let host = fqdn(&d.destination.host, namespace);
            let service = services.iter().position(|s| s.host == host);
            let cluster = match (service, &d.destination.subset) {
                (None, _) => {
                    self.warn("IST0101", dp.key("destination").key("host"), format!("no service \"{host}\" in the registry: requests routed here get 503 (NC)"));
                    None
                }
                (Some(s), None) => clusters
                    .iter()
                    .position(|c| c.service == s && c.subset.is_none()),
                (Some(s), Some(sub)) => {
                    let found = clusters
                        .iter()
                        .position(|c| c.service == s && c.subset.as_deref() == Some(sub.as_str()));
                    if found.is_none() {
                        // Istio accepts it ("VirtualService pushed before
                        // its DestinationRule"); Envoy has no such cluster.
                        let known: Vec<&str> = clusters
                            .iter()
                            .filter(|c| c.service == s)
                            .filter_map(|c| c.subset.as_deref())
                            .collect();
                        let defined = match (
                            self.rule_of.get(s).and_then(Option::as_deref),
                            known.is_empty(),
                        ) {
                            (None, _) => format!("\"{host}\" has no DestinationRule"),
                            (Some(dr), true) => {
                                format!("its DestinationRule \"{dr}\" defines no subsets")
                            }
                            (Some(dr), false) => {
                                format!("its DestinationRule \"{dr}\" defines {}", known.join(", "))
                            }
                        };
                        self.warn(
                            "IST0101",
                            dp.key("destination").key("subset"),
                            format!(
                                "unknown subset \"{sub}\" of \"{host}\": Istio accepts this, but Envoy answers 503 (NC, no cluster found) to the requests routed here, without contacting any host; define the subset in the host's DestinationRule or fix the name ({defined})"
                            ),
                        );
                    }
                    found
                }
            };
            if let (Some(s), Some(p)) = (service, &d.destination.port)
                && services[s].port != p.number
            {
                self.err(
                    dp.key("destination").key("port").key("number"),
                    format!(
                        "service \"{host}\" has port {}, not {}",
                        services[s].port, p.number
                    ),
                );
            }
            let headers = self.header_ops(d.headers.as_ref(), &dp.key("headers"));
            out.push(WeightedDestination {
                host,
                subset: d.destination.subset.clone(),
                port: d.destination.port.as_ref().map(|p| p.number),
                weight: u32::try_from(w.max(0)).unwrap_or(u32::MAX),
                cluster,
                headers,
            });
        }
        if route.len() == 1 {
            // One destination: Envoy's plain `cluster`, the weight is ignored.
            out[0].weight = 1;
            return out;
        }
        if route.len() > 1 {
            if total == 0 {
                self.err(
                    path.clone(),
                    "expected the weights of several destinations to add up to more than 0",
                );
            } else if total != 100 {
                self.warn("MSH0006", path.clone(), format!("weights add up to {total}, not 100: Istio 1.15+ treats them as relative (weight/{total}); Istio 1.14 and older reject this"));
            }
            out.retain(|d| d.weight > 0);
        }
        out
    }

    fn match_block(
        &mut self,
        m: &t::HttpMatchRequest,
        path: &FieldPath,
        namespace: &str,
        gateways: &[String],
    ) -> Match {
        let whole = |v: &mut Self, sm: &Option<t::StringMatch>, field: &str| {
            sm.as_ref()
                .and_then(|sm| v.string_match(sm, &path.key(field), false))
        };
        let uri = whole(self, &m.uri, "uri");
        let scheme = whole(self, &m.scheme, "scheme");
        let method = whole(self, &m.method, "method");
        let authority = whole(self, &m.authority, "authority");
        let named =
            |v: &mut Self, map: &BTreeMap<String, t::StringMatch>, field: &str, header: bool| {
                let mut out = Vec::new();
                for (name, sm) in map {
                    let p = path.key(field).key(name);
                    if header && name.chars().any(|c| c.is_ascii_uppercase()) {
                        v.err(
                            p.clone(),
                            format!("expected a lowercase header name, found \"{name}\""),
                        );
                    }
                    if name.is_empty() {
                        v.err(p.clone(), "expected a non-empty name");
                    }
                    if let Some(x) = v.string_match(sm, &p, true) {
                        out.push((name.to_ascii_lowercase(), x));
                    }
                }
                out
            };
        let headers = named(self, &m.headers, "headers", true);
        let without_headers = named(self, &m.without_headers, "withoutHeaders", true);
        for (name, sm) in &m.query_params {
            if sm.prefix.is_some() {
                self.err(
                    path.key("queryParams").key(name).key("prefix"),
                    "prefix matching is not supported for queryParams (Istio); use exact or regex",
                );
            }
        }
        let query_params = named(self, &m.query_params, "queryParams", false);
        let gws = if m.gateways.is_empty() {
            Vec::new()
        } else {
            self.gateway_refs(&m.gateways, namespace, gateways, &path.key("gateways"))
        };
        Match {
            uri,
            ignore_uri_case: m.ignore_uri_case,
            scheme,
            method,
            authority,
            headers,
            without_headers,
            query_params,
            port: m.port,
            source_labels: m.source_labels.clone(),
            gateways: gws,
            source_namespace: m.source_namespace.clone(),
        }
    }

    /// `empty_is_present`: for headers and query parameters, `{}` means "present".
    fn string_match(
        &mut self,
        sm: &t::StringMatch,
        path: &FieldPath,
        empty_is_present: bool,
    ) -> Option<StrMatch> {
        let set = usize::from(sm.exact.is_some())
            + usize::from(sm.prefix.is_some())
            + usize::from(sm.regex.is_some());
        match set {
            0 if empty_is_present => Some(StrMatch::Present),
            0 => {
                self.err(path.clone(), "expected one of `exact`, `prefix` or `regex`");
                None
            }
            1 => {
                if let Some(e) = &sm.exact {
                    Some(StrMatch::Exact(e.clone()))
                } else if let Some(p) = &sm.prefix {
                    Some(StrMatch::Prefix(p.clone()))
                } else {
                    let re = sm.regex.as_deref().unwrap_or_default();
                    if empty_is_present && re == "*" {
                        return Some(StrMatch::Present);
                    }
                    self.regex(re, &path.key("regex"), true)
                        .map(StrMatch::Regex)
                }
            }
            _ => {
                self.err(
                    path.clone(),
                    "expected only one of `exact`, `prefix` or `regex`",
                );
                None
            }
        }
    }

    /// Compiles an RE2-syntax regex; `anchored` = must match the whole value.
    fn regex(&mut self, re: &str, path: &FieldPath, anchored: bool) -> Option<Regex> {
        let pattern = if anchored {
            format!("^(?:{re})$")
        } else {
            re.to_owned()
        };
        match RegexBuilder::new(&pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let why = e.to_string();
                let last = why
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("invalid")
                    .trim()
                    .to_owned();
                self.err(
                    path.clone(),
                    format!("expected an RE2 regular expression, \"{re}\" is not one: {last}"),
                );
                None
            }
        }
    }

    fn retries(
        &mut self,
        r: Option<&t::HttpRetry>,
        path: &FieldPath,
        single_hash_destination: bool,
    ) -> Option<RetryPolicy> {
        let default_on = DEFAULT_RETRY_ON;
        let Some(r) = r else {
            return default_retry_policy(!single_hash_destination);
        };
        let per_try_timeout = self.positive(&r.per_try_timeout, path.key("perTryTimeout"));
        let backoff = self
            .positive(&r.backoff, path.key("backoff"))
            .unwrap_or(Duration::from_millis(25));
        let (retry_on, codes) = match r.retry_on.as_deref() {
            None | Some("") => (default_on, Vec::new()),
            Some(text) => self.retry_on(text, &path.key("retryOn")),
        };
        let attempts = r.attempts.unwrap_or(0);
        if attempts == 0 {
            // Istio: attempts 0 (or unset) = retries disabled.
            return None;
        }
        Some(RetryPolicy {
            num_retries: attempts,
            retry_on,
            retriable_status_codes: codes,
            per_try_timeout,
            backoff_base: backoff,
            backoff_max: backoff * 10,
            host_selection_retry_max_attempts: 5,
            previous_hosts: match r.retry_ignore_previous_hosts {
                Some(v) => v,
                None => !single_hash_destination,
            },
        })
    }

    fn retry_on(&mut self, text: &str, path: &FieldPath) -> (RetryOn, Vec<u16>) {
        let mut bits = 0;
        let mut codes = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(code) = item.parse::<u16>() {
                if !(100..600).contains(&code) {
                    self.err(
                        path.clone(),
                        format!("expected an HTTP status code from 100 to 599, found {code}"),
                    );
                }
                codes.push(code);
                bits |= RetryOn::RETRIABLE_STATUS_CODES;
            } else if let Some((_, bit)) = RetryOn::NAMES.iter().find(|(n, _)| *n == item) {
                bits |= bit;
            } else {
                let names: Vec<&str> = RetryOn::NAMES.iter().map(|(n, _)| *n).collect();
                self.err(
                    path.clone(),
                    format!(
                        "unknown retry condition \"{item}\": expected status codes or {}",
                        names.join(", ")
                    ),
                );
            }
        }
        (RetryOn(bits), codes)
    }

    fn fault(&mut self, f: Option<&t::HttpFaultInjection>, path: &FieldPath) -> Fault {
        let Some(f) = f else { return Fault::default() };
        let mut out = Fault::default();
        if let Some(d) = &f.delay {
            let dp = path.key("delay");
            if d.fixed_delay.is_none() {
                self.err(dp.key("fixedDelay"), "expected a fixedDelay such as \"5s\"");
            }
            let delay = self.positive(&d.fixed_delay, dp.key("fixedDelay"));
            let ppm = match (&d.percentage, d.percent) {
                (Some(p), _) => self.percent(p, &dp.key("percentage")),
                (None, Some(p)) if p <= 100 => p * 10_000,
                (None, Some(p)) => {
                    self.err(
                        dp.key("percent"),
                        format!("expected a percentage from 0 to 100, found {p}"),
                    );
                    0
                }
                (None, None) => {
                    self.warn("MSH0010", dp.clone(), "no `percentage`: Istio delays 0% of requests; add percentage = { value = 100.0 }");
                    0
                }
            };
            out.delay = delay.map(|d| (d, ppm));
        }
        if let Some(a) = &f.abort {
            let ap = path.key("abort");
            let status = match a.http_status {
                Some(s) if (200..600).contains(&s) => s,
                Some(s) => {
                    self.err(
                        ap.key("httpStatus"),
                        format!("expected an HTTP status from 200 to 599, found {s}"),
                    );
                    s
                }
                None => {
                    self.err(ap.key("httpStatus"), "expected an httpStatus such as 503");
                    503
                }
            };
            let ppm = match &a.percentage {
                Some(p) => self.percent(p, &ap.key("percentage")),
                None => {
                    self.warn("MSH0010", ap.clone(), "no `percentage`: Istio aborts 0% of requests; add percentage = { value = 100.0 }");
                    0
                }
            };
            out.abort = Some((status, ppm));
        }
        if f.delay.is_none() && f.abort.is_none() {
            self.err(path.clone(), "expected `delay` or `abort`");
        }
        out
    }

    /// A percentage as parts per million, as Istio sends it to Envoy.
    fn percent(&mut self, p: &t::Percent, path: &FieldPath) -> u32 {
        if !(0.0..=100.0).contains(&p.value) || p.value.is_nan() {
            self.err(
                path.key("value"),
                format!("expected a percentage from 0.0 to 100.0, found {}", p.value),
            );
            return 0;
        }
        // Go's uint32(value * 10000) truncates, and so does `as`.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ppm = (p.value * 10_000.0) as u32;
        ppm
    }

    fn header_ops(&mut self, h: Option<&t::Headers>, path: &FieldPath) -> HeaderOps {
        let Some(h) = h else {
            return HeaderOps::default();
        };
        let mut out = HeaderOps::default();
        let pairs = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect::<Vec<_>>()
        };
        if let Some(r) = &h.request {
            out.request_set = pairs(&r.set);
            out.request_add = pairs(&r.add);
            out.request_remove = r.remove.iter().map(|s| s.to_ascii_lowercase()).collect();
        }
        if let Some(r) = &h.response {
            out.response_set = pairs(&r.set);
            out.response_add = pairs(&r.add);
            out.response_remove = r.remove.iter().map(|s| s.to_ascii_lowercase()).collect();
        }
        for (name, _) in out
            .request_set
            .iter()
            .chain(&out.request_add)
            .chain(&out.response_set)
            .chain(&out.response_add)
        {
            if name.is_empty()
                || name.contains(|c: char| c.is_whitespace() || c == ':' && !name.starts_with(':'))
            {
                self.err(
                    path.clone(),
                    format!("expected valid header names, found \"{name}\""),
                );
            }
        }
        out
    }
}

/// Istio's default `retryOn`.
const DEFAULT_RETRY_ON: RetryOn = RetryOn(
    RetryOn::CONNECT_FAILURE
        | RetryOn::REFUSED_STREAM
        | RetryOn::UNAVAILABLE
        | RetryOn::CANCELLED
        | RetryOn::RETRIABLE_STATUS_CODES,
);

/// Istio's default retry policy when a route sets no `retries` (reference
/// §5.6, Istio ≥ 1.24: 2 retries on connect-failure, refused-stream,
/// unavailable, cancelled and retriable-status-codes with no codes, so plain
/// 503s are not retried). `previous_hosts` is off only for a
/// single-destination route whose destination uses consistent hashing.
pub fn default_retry_policy(previous_hosts: bool) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        num_retries: 2,
        retry_on: DEFAULT_RETRY_ON,
        retriable_status_codes: Vec::new(),
        per_try_timeout: None,
        backoff_base: Duration::from_millis(25),
        backoff_max: Duration::from_millis(250),
        host_selection_retry_max_attempts: 5,
        previous_hosts,
    })
}

/// Istio's `ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy` values.
const H2_UPGRADE_POLICIES: [&str; 3] = ["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"];

/// The protocol Istio has Envoy speak to a cluster's endpoints. Its cluster
/// builder applies `useClientProtocol` (use the downstream protocol), then
/// `h2UpgradePolicy` (`UPGRADE` sets HTTP/2, replacing it; `DEFAULT` means
/// the mesh-wide `h2UpgradePolicy`, whose default, `DO_NOT_UPGRADE`, is the
/// only one modelled), then the port's protocol (`HTTP2`/`GRPC` set HTTP/2,
/// replacing either): `pilot/pkg/networking/core/cluster_traffic_policy.go`
/// (`applyConnectionPool`, `shouldH2Upgrade`) and `cluster_builder.go`
/// (`setUpstreamProtocol`, `setH2Options`).
fn upstream_protocol(port_http2: bool, http: Option<&t::HttpSettings>) -> UpstreamProtocol {
    let upgrade = http.and_then(|h| h.h2_upgrade_policy.as_deref()) == Some("UPGRADE");
    if port_http2 || upgrade {
        UpstreamProtocol::Http2
    } else if http.and_then(|h| h.use_client_protocol) == Some(true) {
        UpstreamProtocol::Downstream
    } else {
        UpstreamProtocol::Http1
    }
}

fn connection_pool(cp: &t::ConnectionPoolSettings) -> ConnectionPool {
    let d = ConnectionPool::default();
    // Istio: 0 cannot be expressed for these limits; it reads as unset.
    let limit = |v: Option<u32>| v.filter(|&v| v > 0).unwrap_or(u32::MAX);
    let tcp = cp.tcp.as_ref();
    let http = cp.http.as_ref();
    ConnectionPool {
        max_connections: limit(tcp.and_then(|t| t.max_connections)),
        max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
        max_requests: limit(http.and_then(|h| h.http2_max_requests)),
        max_retries: limit(http.and_then(|h| h.max_retries)),
        max_requests_per_connection: http
            .and_then(|h| h.max_requests_per_connection)
            .unwrap_or(0),
        connect_timeout: tcp
            .and_then(|t| t.connect_timeout.as_ref())
            .map_or(d.connect_timeout, |x| x.value),
        idle_timeout: http
            .and_then(|h| h.idle_timeout.as_ref())
            .or(tcp.and_then(|t| t.idle_timeout.as_ref()))
            .map_or(d.idle_timeout, |x| x.value),
        protocol: d.protocol,
        max_concurrent_streams: http
            .and_then(|h| h.max_concurrent_streams)
            .filter(|&n| n > 0)
            .unwrap_or(d.max_concurrent_streams),
    }
}

/// Istio's translation of `outlierDetection` (reference §2.9): only fields
/// that are set are copied; Envoy's defaults fill the rest.
fn outlier_policy(od: &t::OutlierDetection) -> OutlierPolicy {
    let (c5xx, e5xx) = match od.consecutive_5xx_errors {
        Some(0) => (0, 0),
        Some(n) => (n, 100),
        None => (5, 100),
    };
    let (cgw, egw) = match od.consecutive_gateway_errors {
        Some(0) => (0, 0),
        Some(n) => (n, 100),
        None => (5, 0),
    };
    let clocal = od
        .consecutive_local_origin_failures
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let base = od
        .base_ejection_time
        .as_ref()
        .map_or(Duration::from_secs(30), |d| d.value);
    OutlierPolicy {
        consecutive_5xx: c5xx,
        enforcing_consecutive_5xx: e5xx,
        consecutive_gateway_failure: cgw,
        enforcing_consecutive_gateway_failure: egw,
        consecutive_local_origin_failure: clocal,
        enforcing_consecutive_local_origin_failure: 100,
        split_external_local_origin_errors: od.split_external_local_origin_errors.unwrap_or(false),
        interval: od
            .interval
            .as_ref()
            .map_or(Duration::from_secs(10), |d| d.value),
        base_ejection_time: base,
        max_ejection_time: base.max(Duration::from_secs(300)),
        max_ejection_percent: od
            .max_ejection_percent
            .filter(|&p| p > 0)
            .unwrap_or(10)
            .min(100),
    }
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    //! Every rejected config names the file, line:column and the path of the
    //! field at fault, and says what was expected.

    use super::*;
    use crate::config::from_toml;
    use crate::tests::FILE;

    /// reviews with v1 and v2, and its DestinationRule.
    const BASE: &str = r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [
  { address = "10.0.0.1:9080", labels = { version = "v1" } },
  { address = "10.0.0.2:9080", labels = { version = "v2" } },
]

[[destinationRule]]
name = "reviews"
host = "reviews"
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" } },
]
"#;

    fn with(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    /// reviews with a DestinationRule whose `trafficPolicy` has these lines.
    fn policy(lines: &str) -> String {
        format!(
            r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [{{ address = "10.0.0.1:9080" }}]

[[destinationRule]]
name = "reviews"
host = "reviews"
[destinationRule.trafficPolicy]
{lines}
"#
        )
    }

    /// A VirtualService for reviews whose first http route has these lines.
    fn route(lines: &str) -> String {
        with(&format!(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
{lines}
"#
        ))
    }

    /// `t.toml:LINE:COL` of the start of `needle`, which must be unique.
    fn at(toml: &str, needle: &str) -> String {
        assert_eq!(
            toml.matches(needle).count(),
            1,
            "needle {needle:?} not unique"
        );
        let before = &toml[..toml.find(needle).unwrap()];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{FILE}:{line}:{column}")
    }

    fn error_lines(toml: &str) -> Vec<String> {
        match from_toml(toml, Some(FILE)) {
            Ok(_) => panic!("accepted:\n{toml}"),
            Err(e) => {
                let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
                assert_eq!(e.to_string(), lines.join("\n"));
                lines
            }
        }
    }

    /// Asserts an error `t.toml:L:C: <path>: …<what>…`, where L:C is where
    /// `needle` starts.
    fn assert_error(toml: &str, needle: &str, path: &str, what: &str) {
        let want = format!("{}: {path}: ", at(toml, needle));
        let errors = error_lines(toml);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&want) && e.contains(what)),
            "wanted `{want}…{what}…` among:\n{}",
            errors.join("\n")
        );
    }

    #[test]
    fn the_base_config_is_valid() {
        let (c, w) = from_toml(BASE, Some(FILE)).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.clusters.len(), 3);
    }

    #[test]
    fn listeners_are_accepted_and_left_to_the_proxy() {
        let toml = with(
            r#"
[[listener]]
address = "127.0.0.1:15001"
namespace = "default"
labels = { app = "productpage" }
"#,
        );
        let (c, w) = from_toml(&toml, Some(FILE)).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.source.listener[0].address, "127.0.0.1:15001");
        assert_eq!(c.clusters.len(), 3);
    }

    #[test]
    fn a_listener_address_must_be_ip_and_port() {
        let toml = with("[[listener]]\naddress = \"localhost:80\"\n");
        assert_error(
            &toml,
            "address = \"localhost",
            "listener[0].address",
            "expected an ip:port",
        );
    }

    #[test]
    fn a_listener_gateway_must_exist() {
        let toml = with("[[listener]]\naddress = \"127.0.0.1:8080\"\ngateway = \"ingress\"\n");
        assert_error(
            &toml,
            "gateway = ",
            "listener[0].gateway",
            "no [[gateway]] named \"default/ingress\"",
        );
    }

    #[test]
    fn weights_all_zero_are_rejected_at_the_route() {
        let toml = route(
            r#"route = [{ destination = { host = "reviews", subset = "v1" }, weight = 0 }, { destination = { host = "reviews", subset = "v2" }, weight = 0 }]"#,
        );
        assert_error(
            &toml,
            "[{ destination",
            "virtualService[reviews].http[0].route",
            "add up to more than 0",
        );
    }

    #[test]
    fn a_negative_weight_is_rejected_at_its_field() {
        let toml = route(
            r#"match = [{ uri = { prefix = "/a" } }]
route = [{ destination = { host = "reviews", subset = "v1" } }]
[[virtualService.http]]
route = [
  { destination = { host = "reviews", subset = "v1" }, weight = -10 },
  { destination = { host = "reviews", subset = "v2" }, weight = 110 },
]"#,
        );
        assert_error(
            &toml,
            "weight = -10",
            "virtualService[reviews].http[1].route[0].weight",
            "expected a weight of 0 or more, found -10",
        );
    }

    /// The warnings of an accepted config, as printed.
    fn warning_lines(toml: &str) -> Vec<String> {
        match from_toml(toml, Some(FILE)) {
            Ok((_, w)) => w.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("rejected:\n{e}\n---\n{toml}"),
        }
    }

    #[test]
    fn an_unknown_subset_is_accepted_with_a_warning_that_lists_the_known_ones() {
        // Istio accepts a VirtualService whose subset no DestinationRule
        // defines (it is pushed before its rule); Envoy answers 503 NC.
        let toml = route(r#"route = [{ destination = { host = "reviews", subset = "v9" } }]"#);
        let want = format!(
            "{}: virtualService[reviews].http[0].route[0].destination.subset: unknown subset \"v9\" of \"reviews.default.svc.cluster.local\": Istio accepts this, but Envoy answers 503 (NC, no cluster found) to the requests routed here, without contacting any host; define the subset in the host's DestinationRule or fix the name (its DestinationRule \"reviews\" defines v1, v2)",
            at(&toml, r#"subset = "v9""#)
        );
        assert_eq!(warning_lines(&toml), [want]);
        // The route keeps the destination, without a cluster.
        let (config, _) = from_toml(&toml, Some(FILE)).expect("accepted");
        let Action::Route(ds) = &config.virtual_services[0].http[0].action else {
            panic!("a route action")
        };
        assert_eq!(ds[0].subset.as_deref(), Some("v9"));
        assert_eq!(ds[0].cluster, None);
    }

    #[test]
    fn an_unknown_subset_warning_says_when_the_host_has_no_rule_or_no_subsets() {
        let vs = r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#;
        let no_rule = format!(
            r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [{{ address = "10.0.0.1:9080", labels = {{ version = "v1" }} }}]
{vs}"#
        );
        let lines = warning_lines(&no_rule);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with(
                "fix the name (\"reviews.default.svc.cluster.local\" has no DestinationRule)"
            ),
            "{lines:?}"
        );
        let no_subsets = policy(r#"loadBalancer = { simple = "RANDOM" }"#) + vs;
        let lines = warning_lines(&no_subsets);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with("fix the name (its DestinationRule \"reviews\" defines no subsets)"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_bad_regex_is_rejected_with_the_regex_field() {
        let toml = route(
            r#"match = [{ headers = { end-user = { regex = "(" } } }]
route = [{ destination = { host = "reviews" } }]"#,
        );
        assert_error(
            &toml,
            r#"regex = "(""#,
            "virtualService[reviews].http[0].match[0].headers.end-user.regex",
            "expected an RE2 regular expression, \"(\" is not one",
        );
        let toml = route(
            r#"match = [{ uri = { prefix = "/" } }, { uri = { regex = "[a-" } }]
route = [{ destination = { host = "reviews" } }]"#,
        );
        assert_error(
            &toml,
            r#"regex = "[a-""#,
            "virtualService[reviews].http[0].match[1].uri.regex",
            "RE2",
        );
    }

    #[test]
    fn zero_and_sub_millisecond_durations_are_rejected() {
        let toml = policy(
            r#"outlierDetection = { interval = "0s", baseEjectionTime = "0.5ms" }
connectionPool = { tcp = { connectTimeout = "0ms" } }"#,
        );
        let errors = error_lines(&toml);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_error(
            &toml,
            r#"interval = "0s""#,
            "destinationRule[reviews].trafficPolicy.outlierDetection.interval",
            "expected a duration of at least 1ms, found \"0s\"",
        );
        assert_error(
            &toml,
            r#"baseEjectionTime = "0.5ms""#,
            "destinationRule[reviews].trafficPolicy.outlierDetection.baseEjectionTime",
            "found \"0.5ms\"",
        );
        assert_error(
            &toml,
            r#"connectTimeout = "0ms""#,
            "destinationRule[reviews].trafficPolicy.connectionPool.tcp.connectTimeout",
            "at least 1ms",
        );
        let toml = route(
            r#"retries = { attempts = 2, perTryTimeout = "900us" }
fault = { delay = { fixedDelay = "0s", percentage = { value = 1.0 } } }
route = [{ destination = { host = "reviews" } }]"#,
        );
        assert_error(
            &toml,
            r#"perTryTimeout = "900us""#,
            "virtualService[reviews].http[0].retries.perTryTimeout",
            "at least 1ms",
        );
        assert_error(
            &toml,
            r#"fixedDelay = "0s""#,
            "virtualService[reviews].http[0].fault.delay.fixedDelay",
            "at least 1ms",
        );
    }

    #[test]
    fn a_malformed_duration_is_a_parse_error_with_path_and_position() {
        let toml = policy(
            r#"[destinationRule.trafficPolicy.outlierDetection]
interval = "10x""#,
        );
        let errors = error_lines(&toml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_error(
            &toml,
            r#""10x""#,
            "destinationRule[reviews].trafficPolicy.outlierDetection.interval",
            "expected a duration such as \"100ms\", \"10s\" or \"3m\", found an unknown unit `x` in `10x`",
        );
    }

    #[test]
    fn an_unknown_field_is_a_parse_error_with_path_and_position() {
        let toml = policy(
            r#"[destinationRule.trafficPolicy.outlierDetection]
consecutive5xxError = 3"#,
        );
        assert_error(
            &toml,
            "consecutive5xxError = 3",
            "destinationRule[reviews].trafficPolicy.outlierDetection.consecutive5xxError",
            "unknown field `consecutive5xxError`, expected one of",
        );
        assert!(error_lines(&toml)[0].contains("`consecutive5xxErrors`"));
        // In an inline table of an array of tables too.
        let toml = route(r#"route = [{ destination = { host = "reviews" }, wieght = 3 }]"#);
        assert_error(
            &toml,
            "wieght = 3",
            "virtualService[reviews].http[0].route[0].wieght",
            "unknown field `wieght`, expected one of `destination`, `weight`, `headers`",
        );
    }

    #[test]
    fn a_duplicate_virtual_service_name_is_rejected_at_the_second() {
        let toml = with(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "reviews" } }]

[[virtualService]]
name = "reviews" # again
hosts = ["reviews.default.svc.cluster.local"]
[[virtualService.http]]
route = [{ destination = { host = "reviews" } }]
"#,
        );
        assert_error(
            &toml,
            "name = \"reviews\" # again",
            "virtualService[reviews].name",
            "duplicate VirtualService name \"reviews\" in namespace \"default\"",
        );
        // The same name in another namespace is another object.
        let ok = toml.replace(
            "name = \"reviews\" # again",
            "name = \"reviews\"\nnamespace = \"other\"",
        );
        assert!(from_toml(&ok, Some(FILE)).is_ok());
    }

    #[test]
    fn a_duplicate_subset_name_is_rejected() {
        let toml = BASE.replace(
            r#"{ name = "v2", labels = { version = "v2" } }"#,
            r#"{ name = "v1", labels = { version = "v2" } }"#,
        );
        assert_error(
            &toml,
            r#"name = "v1", labels = { version = "v2" }"#,
            "destinationRule[reviews].subsets[v1].name",
            "duplicate subset name \"v1\"",
        );
    }

    #[test]
    fn simple_and_consistent_hash_together_are_rejected() {
        let toml = policy(
            r#"loadBalancer = { simple = "ROUND_ROBIN", consistentHash = { httpHeaderName = "x-user" } }"#,
        );
        assert_error(
            &toml,
            r#"{ simple = "ROUND_ROBIN""#,
            "destinationRule[reviews].trafficPolicy.loadBalancer",
            "expected either `simple` or `consistentHash`, not both",
        );
    }

    #[test]
    fn an_unknown_load_balancer_name_is_rejected_with_the_known_ones() {
        let toml = policy(r#"loadBalancer = { simple = "ROUND_ROBINN" }"#);
        assert_error(
            &toml,
            r#"simple = "ROUND_ROBINN""#,
            "destinationRule[reviews].trafficPolicy.loadBalancer.simple",
            "expected one of UNSPECIFIED, LEAST_REQUEST, LEAST_CONN, ROUND_ROBIN, RANDOM, PASSTHROUGH, found \"ROUND_ROBINN\"",
        );
        // In a subset's policy, the path names the subset.
        let toml = BASE.replace(
            r#"{ name = "v2", labels = { version = "v2" } }"#,
            r#"{ name = "v2", labels = { version = "v2" }, trafficPolicy = { loadBalancer = { simple = "FASTEST" } } }"#,
        );
        assert_error(
            &toml,
            r#"simple = "FASTEST""#,
            "destinationRule[reviews].subsets[v2].trafficPolicy.loadBalancer.simple",
            "found \"FASTEST\"",
        );
    }

    #[test]
    fn a_consistent_hash_needs_exactly_one_key_and_a_valid_table() {
        let toml = policy(
            r#"loadBalancer = { consistentHash = { httpHeaderName = "x-user", useSourceIp = true } }"#,
        );
        assert_error(
            &toml,
            "{ httpHeaderName",
            "destinationRule[reviews].trafficPolicy.loadBalancer.consistentHash",
            "expected exactly one hash key",
        );
        let toml = policy(
            r#"loadBalancer = { consistentHash = { httpHeaderName = "x-user", maglev = { tableSize = 65536 } } }"#,
        );
        assert_error(
            &toml,
            "tableSize = 65536",
            "destinationRule[reviews].trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "expected a prime number below 5000011",
        );
        let toml = policy(
            r#"loadBalancer = { consistentHash = { httpHeaderName = "x-user", ringHash = { minimumRingSize = 0 } } }"#,
        );
        assert_error(
            &toml,
            "minimumRingSize = 0",
            "destinationRule[reviews].trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize",
            "expected a ring size from 1 to 8388608",
        );
    }

    #[test]
    fn max_ejection_percent_above_100_is_rejected() {
        let toml = policy(
            r#"[destinationRule.trafficPolicy.outlierDetection]
consecutive5xxErrors = 3
maxEjectionPercent = 101"#,
        );
        assert_error(
            &toml,
            "maxEjectionPercent = 101",
            "destinationRule[reviews].trafficPolicy.outlierDetection.maxEjectionPercent",
            "expected a percentage from 0 to 100, found 101",
        );
    }

    #[test]
    fn an_abort_status_below_200_is_rejected() {
        let toml = route(
            r#"fault = { abort = { httpStatus = 99, percentage = { value = 100.0 } } }
route = [{ destination = { host = "reviews" } }]"#,
        );
        assert_error(
            &toml,
            "httpStatus = 99",
            "virtualService[reviews].http[0].fault.abort.httpStatus",
            "expected an HTTP status from 200 to 599, found 99",
        );
    }

    #[test]
    fn an_unknown_retry_condition_is_rejected_with_the_known_ones() {
        let toml = route(
            r#"retries = { attempts = 3, retryOn = "5xx,gateway-eror,503" }
route = [{ destination = { host = "reviews" } }]"#,
        );
        assert_error(
            &toml,
            "retryOn = ",
            "virtualService[reviews].http[0].retries.retryOn",
            "unknown retry condition \"gateway-eror\": expected status codes or 5xx, gateway-error",
        );
    }

    #[test]
    fn an_unknown_gateway_reference_is_rejected() {
        let toml = with(
            r#"
[[gateway]]
name = "gw"
servers = [{ port = { number = 80 }, hosts = ["*"] }]

[[virtualService]]
name = "reviews"
hosts = ["reviews"]
gateways = ["mesh", "nosuch"]
[[virtualService.http]]
match = [{ gateways = ["other/gw"] }]
route = [{ destination = { host = "reviews" } }]
"#,
        );
        assert_error(
            &toml,
            r#""nosuch""#,
            "virtualService[reviews].gateways[1]",
            "unknown gateway \"nosuch\": expected \"mesh\" or the name of a [[gateway]] (default/gw)",
        );
        assert_error(
            &toml,
            r#""other/gw""#,
            "virtualService[reviews].http[0].match[0].gateways[0]",
            "unknown gateway \"other/gw\"",
        );
        // Both short and namespaced names of a defined gateway are fine.
        let ok = toml
            .replace(r#""nosuch""#, r#""gw""#)
            .replace(r#""other/gw""#, r#""default/gw""#);
        assert!(from_toml(&ok, Some(FILE)).is_ok());
    }

    #[test]
    fn an_endpoint_address_must_be_ip_and_port() {
        for bad in [
            "10.0.0.2",
            "reviews-v2:9080",
            "10.0.0.2:http",
            "10.0.0.2:70000",
        ] {
            let toml = BASE.replace("\"10.0.0.2:9080\"", &format!("\"{bad}\""));
            assert_error(
                &toml,
                &format!("address = \"{bad}\""),
                "service[reviews].endpoints[1].address",
                &format!(
                    "expected an \"ip:port\" address such as \"10.0.0.1:9080\", found \"{bad}\""
                ),
            );
        }
        // IPv6 in brackets is an ip:port.
        let toml = BASE.replace("\"10.0.0.2:9080\"", "\"[fd00::2]:9080\"");
        assert!(from_toml(&toml, Some(FILE)).is_ok());
    }

    #[test]
    fn weights_not_adding_up_to_100_are_accepted_as_relative_with_a_warning() {
        let toml = route(
            r#"route = [{ destination = { host = "reviews", subset = "v1" }, weight = 50 }, { destination = { host = "reviews", subset = "v2" }, weight = 40 }]"#,
        );
        let (config, warnings) = from_toml(&toml, Some(FILE)).expect("accepted");
        let want = format!(
            "{}: virtualService[reviews].http[0].route: weights add up to 90, not 100",
            at(&toml, "[{ destination")
        );
        assert!(
            warnings.iter().any(|w| w.to_string().starts_with(&want)),
            "{warnings:?}"
        );
        let Action::Route(ds) = &config.virtual_services[0].http[0].action else {
            panic!()
        };
        assert_eq!(ds.iter().map(|d| d.weight).collect::<Vec<_>>(), [50, 40]);
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let toml = route(
            r#"match = [{ headers = { end-user = { regex = "(" } } }]
fault = { abort = { httpStatus = 99, percentage = { value = 100.0 } } }
route = [
  { destination = { host = "reviews", subset = "v1" }, weight = -1 },
  { destination = { host = "reviews", subset = "v2" }, weight = 101 },
]"#,
        );
        let errors = error_lines(&toml);
        assert_eq!(errors.len(), 3, "{errors:?}");
        for path in [
            ".match[0].headers.end-user.regex",
            ".fault.abort.httpStatus",
            ".route[0].weight",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(path)),
                "{path}: {errors:?}"
            );
        }
    }

    #[test]
    fn without_a_file_name_errors_start_with_line_and_column() {
        let toml = policy(r#"loadBalancer = { simple = "ROUND_ROBINN" }"#);
        let err = from_toml(&toml, None).unwrap_err().to_string();
        let loc = at(&toml, "simple = \"ROUND_ROBINN\"");
        let loc = loc.strip_prefix("t.toml:").unwrap();
        assert!(
            err.starts_with(&format!(
                "{loc}: destinationRule[reviews].trafficPolicy.loadBalancer.simple: "
            )),
            "{err}"
        );
    }

    #[test]
    fn istio_defaults_are_applied() {
        let toml = policy(
            r#"[destinationRule.trafficPolicy.outlierDetection]
consecutive5xxErrors = 7"#,
        );
        let (c, _) = from_toml(&toml, Some(FILE)).unwrap();
        let p = &c.clusters[0].policy;
        assert_eq!(p.lb, LbPolicy::LeastRequest);
        let od = p.outlier.expect("an outlier detector");
        assert_eq!((od.consecutive_5xx, od.enforcing_consecutive_5xx), (7, 100));
        assert_eq!(od.interval, Duration::from_secs(10));
        assert_eq!(od.base_ejection_time, Duration::from_secs(30));
        assert_eq!(od.max_ejection_percent, 10);
        assert_eq!(p.panic_threshold_percent, 0);
        let (c, _) = from_toml(
            &policy(r#"loadBalancer = { consistentHash = { httpHeaderName = "X-User" } }"#),
            Some(FILE),
        )
        .unwrap();
        assert_eq!(
            c.clusters[0].policy.lb,
            LbPolicy::RingHash {
                minimum_ring_size: 1024
            }
        );
        assert_eq!(
            c.clusters[0].policy.hash,
            Some(HashKey::Header("x-user".into()))
        );
    }

    /// The upstream protocol of each cluster of `toml`, in order.
    fn protocols(toml: &str) -> Vec<(UpstreamProtocol, u32)> {
        let (c, w) = from_toml(toml, Some(FILE)).unwrap();
        // The registry here has no version labels: only the subsets' finding.
        assert!(w.iter().all(|w| w.code == Some("IST0173")), "{w:?}");
        c.clusters
            .iter()
            .map(|c| {
                let cp = c.policy.connection_pool;
                (cp.protocol, cp.max_concurrent_streams)
            })
            .collect()
    }

    #[test]
    fn upstreams_speak_http1_unless_the_rule_upgrades_or_follows_the_client() {
        use UpstreamProtocol::{Downstream, Http1, Http2};
        assert_eq!(protocols(BASE), vec![(Http1, 1024); 3]);
        for (http, want) in [
            (r#"h2UpgradePolicy = "DEFAULT""#, Http1),
            (r#"h2UpgradePolicy = "DO_NOT_UPGRADE""#, Http1),
            (r#"h2UpgradePolicy = "UPGRADE""#, Http2),
            ("useClientProtocol = false", Http1),
            ("useClientProtocol = true", Downstream),
            // Istio's cluster builder applies the upgrade after the client
            // protocol, and the upgrade replaces it.
            (
                r#"useClientProtocol = true, h2UpgradePolicy = "UPGRADE""#,
                Http2,
            ),
            (
                r#"useClientProtocol = true, h2UpgradePolicy = "DO_NOT_UPGRADE""#,
                Downstream,
            ),
        ] {
            let toml = policy(&format!("connectionPool = {{ http = {{ {http} }} }}"));
            assert_eq!(protocols(&toml), vec![(want, 1024)], "{http}");
        }
        let toml = policy(
            r#"connectionPool = { http = { h2UpgradePolicy = "UPGRADE", maxConcurrentStreams = 7 } }"#,
        );
        assert_eq!(protocols(&toml), vec![(Http2, 7)]);
        // A subset's own connectionPool replaces the rule's whole block.
        let toml = policy(
            r#"connectionPool = { http = { h2UpgradePolicy = "UPGRADE" } }
[[destinationRule.subsets]]
name = "v1"
labels = { version = "v1" }
[[destinationRule.subsets]]
name = "v2"
labels = { version = "v2" }
trafficPolicy = { connectionPool = { tcp = { maxConnections = 5 } } }
"#,
        );
        assert_eq!(
            protocols(&toml)
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>(),
            vec![Http2, Http2, Http1]
        );
    }

    #[test]
    fn service_entry_ports_of_protocol_http2_or_grpc_speak_http2() {
        use UpstreamProtocol::{Downstream, Http1, Http2};
        let entry = |protocol: &str, http: &str| {
            format!(
                r#"
[[serviceEntry]]
name = "api"
hosts = ["api.example.com"]
ports = [{{ number = 8080, name = "p", {protocol} }}]
resolution = "STATIC"
endpoints = [{{ address = "10.0.0.9" }}]

[[destinationRule]]
name = "api"
host = "api.example.com"
trafficPolicy = {{ connectionPool = {{ http = {{ {http} }} }} }}
"#
            )
        };
        for (protocol, http, want) in [
            (r#"protocol = "HTTP2""#, "", Http2),
            (r#"protocol = "grpc""#, "", Http2),
            (r#"protocol = "GRPC-WEB""#, "", Http2),
            (r#"protocol = "HTTP""#, "", Http1),
            ("", "", Http1),
            // DO_NOT_UPGRADE keeps a port's own HTTP/2, and the port's
            // protocol is applied after the client's.
            (
                r#"protocol = "HTTP2""#,
                r#"h2UpgradePolicy = "DO_NOT_UPGRADE""#,
                Http2,
            ),
            (r#"protocol = "GRPC""#, "useClientProtocol = true", Http2),
            (
                r#"protocol = "HTTP""#,
                "useClientProtocol = true",
                Downstream,
            ),
        ] {
            let toml = entry(protocol, http);
            assert_eq!(protocols(&toml), vec![(want, 1024)], "{protocol} {http}");
        }
    }

    #[test]
    fn a_bad_h2_upgrade_policy_is_rejected_with_its_path() {
        let toml = policy(r#"connectionPool = { http = { h2UpgradePolicy = "upgrade" } }"#);
        assert_error(
            &toml,
            r#"h2UpgradePolicy = "upgrade""#,
            "destinationRule[reviews].trafficPolicy.connectionPool.http.h2UpgradePolicy",
            "expected DEFAULT, DO_NOT_UPGRADE or UPGRADE, found \"upgrade\"",
        );
        let toml = with(
            r#"[destinationRule.trafficPolicy]
portLevelSettings = [{ port = { number = 9080 }, connectionPool = { http = { h2UpgradePolicy = "H2" } } }]
"#,
        );
        assert_error(
            &toml,
            r#"h2UpgradePolicy = "H2""#,
            "destinationRule[reviews].trafficPolicy.portLevelSettings[0].connectionPool.http.h2UpgradePolicy",
            "found \"H2\"",
        );
        let toml = policy(r#"connectionPool = { http = { useClientProtocol = "yes" } }"#);
        assert_error(
            &toml,
            r#""yes""#,
            "destinationRule[reviews].trafficPolicy.connectionPool.http.useClientProtocol",
            "boolean",
        );
    }

    #[test]
    fn a_query_param_prefix_is_rejected_as_istio_does() {
        let src = "[[service]]\nname = \"r\"\nport = 80\n[[virtualService]]\nname = \"r\"\nhosts = [\"r\"]\n[[virtualService.http]]\nmatch = [{ queryParams = { page = { prefix = \"2\" } } }]\nroute = [{ destination = { host = \"r\" } }]\n";
        let err = crate::config::from_toml(src, Some("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("virtualService[r].http[0].match[0].queryParams.page.prefix: prefix matching is not supported"), "{err}");
    }
}
