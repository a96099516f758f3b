//! VirtualServices: hosts, gateways and `exportTo`, HTTP routes, matches,
//! destinations, retries, faults and header operations.

use super::*;

impl Validator {
    pub(super) fn virtual_services(
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
    pub(super) fn export_to(&mut self, values: &[String], path: &FieldPath) -> Vec<String> {
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

    pub(super) fn gateway_refs(
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
    pub(super) fn http_route(
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

    pub(super) fn destinations(
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

    pub(super) fn match_block(
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
    pub(super) fn string_match(
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
    pub(super) fn regex(&mut self, re: &str, path: &FieldPath, anchored: bool) -> Option<Regex> {
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

    pub(super) fn retries(
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

    pub(super) fn retry_on(&mut self, text: &str, path: &FieldPath) -> (RetryOn, Vec<u16>) {
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

    pub(super) fn fault(&mut self, f: Option<&t::HttpFaultInjection>, path: &FieldPath) -> Fault {
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
    pub(super) fn percent(&mut self, p: &t::Percent, path: &FieldPath) -> u32 {
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

    pub(super) fn header_ops(&mut self, h: Option<&t::Headers>, path: &FieldPath) -> HeaderOps {
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
pub(super) const DEFAULT_RETRY_ON: RetryOn = RetryOn(
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
