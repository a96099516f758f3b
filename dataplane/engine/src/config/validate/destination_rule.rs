//! DestinationRules: clusters and subsets, traffic policies (load balancer,
//! connection pool, outlier detection, TLS), merged per host as Istio does.

use super::*;

impl Validator {
    pub(super) fn clusters(
        &mut self,
        src: &t::MeshConfig,
        services: &[Service],
    ) -> Vec<ClusterSpec> {
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

    pub(super) fn check_dr(&mut self, dr: &t::DestinationRule, path: &FieldPath) {
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

    pub(super) fn check_policy(&mut self, tp: &t::TrafficPolicy, path: &FieldPath) {
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

    pub(super) fn check_blocks(
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
            if let Some(env) = &od.meshsim_envoy {
                let ep = op.key("meshsimEnvoy");
                for (field, value) in [
                    ("enforcingConsecutive5xx", env.enforcing_consecutive_5xx),
                    (
                        "enforcingConsecutiveGatewayFailure",
                        env.enforcing_consecutive_gateway_failure,
                    ),
                    (
                        "enforcingConsecutiveLocalOriginFailure",
                        env.enforcing_consecutive_local_origin_failure,
                    ),
                ] {
                    if let Some(v) = value
                        && v > 100
                    {
                        self.err(
                            ep.key(field),
                            format!("expected a percentage from 0 to 100, found {v}"),
                        );
                    }
                }
                self.positive(&env.max_ejection_time, ep.key("maxEjectionTime"));
                let base = od
                    .base_ejection_time
                    .as_ref()
                    .map_or(Duration::from_secs(30), |d| d.value);
                if let Some(max) = &env.max_ejection_time
                    && max.value < base
                {
                    self.err(
                        ep.key("maxEjectionTime"),
                        format!(
                            "expected at least baseEjectionTime ({}), found {} (Envoy refuses a cluster whose max_ejection_time is below its base_ejection_time)",
                            crate::config::format_duration(base),
                            crate::config::format_duration(max.value)
                        ),
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
    pub(super) fn lb_policy(
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

    pub(super) fn hash_key(
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
    pub(super) fn merge_policy(
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
}

/// Istio's `ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy` values.
pub(super) const H2_UPGRADE_POLICIES: [&str; 3] = ["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"];

/// The protocol Istio has Envoy speak to a cluster's endpoints. Its cluster
/// builder applies `useClientProtocol` (use the downstream protocol), then
/// `h2UpgradePolicy` (`UPGRADE` sets HTTP/2, replacing it; `DEFAULT` means
/// the mesh-wide `h2UpgradePolicy`, whose default, `DO_NOT_UPGRADE`, is the
/// only one modelled), then the port's protocol (`HTTP2`/`GRPC` set HTTP/2,
/// replacing either): `pilot/pkg/networking/core/cluster_traffic_policy.go`
/// (`applyConnectionPool`, `shouldH2Upgrade`) and `cluster_builder.go`
/// (`setUpstreamProtocol`, `setH2Options`).
pub(super) fn upstream_protocol(
    port_http2: bool,
    http: Option<&t::HttpSettings>,
) -> UpstreamProtocol {
    let upgrade = http.and_then(|h| h.h2_upgrade_policy.as_deref()) == Some("UPGRADE");
    if port_http2 || upgrade {
        UpstreamProtocol::Http2
    } else if http.and_then(|h| h.use_client_protocol) == Some(true) {
        UpstreamProtocol::Downstream
    } else {
        UpstreamProtocol::Http1
    }
}

pub(super) fn connection_pool(cp: &t::ConnectionPoolSettings) -> ConnectionPool {
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
pub(super) fn outlier_policy(od: &t::OutlierDetection) -> OutlierPolicy {
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
    // The meshsimEnvoy extension: Envoy's fields Istio cannot set.
    let env = od.meshsim_envoy.clone().unwrap_or_default();
    OutlierPolicy {
        consecutive_5xx: c5xx,
        enforcing_consecutive_5xx: env.enforcing_consecutive_5xx.unwrap_or(e5xx),
        consecutive_gateway_failure: cgw,
        enforcing_consecutive_gateway_failure: env
            .enforcing_consecutive_gateway_failure
            .unwrap_or(egw),
        consecutive_local_origin_failure: clocal,
        enforcing_consecutive_local_origin_failure: env
            .enforcing_consecutive_local_origin_failure
            .unwrap_or(100),
        split_external_local_origin_errors: od.split_external_local_origin_errors.unwrap_or(false),
        interval: od
            .interval
            .as_ref()
            .map_or(Duration::from_secs(10), |d| d.value),
        base_ejection_time: base,
        max_ejection_time: env
            .max_ejection_time
            .map_or(base.max(Duration::from_secs(300)), |d| d.value),
        max_ejection_percent: od
            .max_ejection_percent
            .filter(|&p| p > 0)
            .unwrap_or(10)
            .min(100),
    }
}
