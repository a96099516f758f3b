//! The analyzer: findings about a valid config that is probably not what
//! its author meant, each with a code, a severity and a fix.
//!
//! One table of rules ([`RULES`]). Istio's analyzer codes are used where
//! Istio has one (`IST0101` ReferencedResourceNotFound, `IST0109`
//! ConflictingMeshGatewayVirtualServiceHosts, `IST0131`
//! VirtualServiceIneffectiveMatch, `IST0173` DestinationRuleSubsetNotSelectPods);
//! `MSH…` codes are for what only a resilience simulator sees (outlier
//! detection that can never eject, retries and timeouts that contradict
//! each other). The validator's own warnings carry codes from the same table.
//!
//! Findings are [`Warning`]s with `code` set; their severity comes from the
//! table ([`severity`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::duration::format_duration;
use super::error::FieldPath;
use super::model::{Config, RetryOn};
use super::validate::{Warning, fqdn, host_matches};

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something to know; the config does what it says.
    Info,
    /// Accepted by Istio, but almost certainly not what was meant.
    Warning,
    /// Rejected, or broken at run time.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// One rule of the analyzer.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// `IST…` (Istio's code) or `MSH…` (ours).
    pub code: &'static str,
    /// Istio-style name of the rule.
    pub name: &'static str,
    /// Severity of its findings.
    pub severity: Severity,
    /// What it finds.
    pub summary: &'static str,
}

const fn rule(
    code: &'static str,
    name: &'static str,
    severity: Severity,
    summary: &'static str,
) -> Rule {
    Rule {
        code,
        name,
        severity,
        summary,
    }
}

/// Every rule, by code.
pub const RULES: &[Rule] = &[
    rule(
        "IST0101",
        "ReferencedResourceNotFound",
        Severity::Warning,
        "a route's destination host or subset does not exist: Envoy answers 503 NC",
    ),
    rule(
        "IST0109",
        "ConflictingMeshGatewayVirtualServiceHosts",
        Severity::Error,
        "two VirtualServices bind the same host on the mesh: only the first is used",
    ),
    rule(
        "IST0131",
        "VirtualServiceIneffectiveMatch",
        Severity::Warning,
        "an http route can never match: an earlier one matches every request",
    ),
    rule(
        "IST0173",
        "DestinationRuleSubsetNotSelectPods",
        Severity::Warning,
        "a subset's labels select no endpoint of its service",
    ),
    rule(
        "MSH0001",
        "OutlierEjectionNeverAllowed",
        Severity::Warning,
        "maxEjectionPercent is below one host of the cluster: Envoy (≥ 1.28) never ejects anyone",
    ),
    rule(
        "MSH0002",
        "GatewayErrorsOnly",
        Severity::Info,
        "only consecutiveGatewayErrors is set: 500 is not a gateway error",
    ),
    rule(
        "MSH0003",
        "RetriesOn5xxWithOutlierDetection",
        Severity::Info,
        "retries on 5xx towards a cluster with outlier detection",
    ),
    rule(
        "MSH0004",
        "EjectionShorterThanInterval",
        Severity::Warning,
        "baseEjectionTime is shorter than interval: hosts return only on an interval tick",
    ),
    rule(
        "MSH0005",
        "TimeoutShorterThanRetries",
        Severity::Warning,
        "the route timeout ends before perTryTimeout × tries",
    ),
    rule(
        "MSH0006",
        "WeightsNotHundred",
        Severity::Warning,
        "route weights do not add up to 100",
    ),
    rule(
        "MSH0007",
        "DeprecatedConsecutiveErrors",
        Severity::Warning,
        "consecutiveErrors is ignored since Istio 1.7",
    ),
    rule(
        "MSH0008",
        "LocalOriginWithoutSplit",
        Severity::Warning,
        "consecutiveLocalOriginFailures without splitExternalLocalOriginErrors",
    ),
    rule(
        "MSH0009",
        "NoHttpRoutes",
        Severity::Warning,
        "a VirtualService with no http routes answers 404 NR",
    ),
    rule(
        "MSH0010",
        "FaultWithoutPercentage",
        Severity::Warning,
        "a fault without percentage applies to 0 % of requests",
    ),
    rule(
        "MSH0011",
        "DestinationRuleHostNotFound",
        Severity::Warning,
        "no service matches a DestinationRule's host",
    ),
    rule(
        "MSH0012",
        "ConflictingDestinationRules",
        Severity::Warning,
        "a second DestinationRule for a host is ignored",
    ),
    rule(
        "MSH0013",
        "MatchPortNotOnService",
        Severity::Warning,
        "a match block's port is no port of the routed hosts: it never matches",
    ),
    rule(
        "MSH0014",
        "UnmodelledField",
        Severity::Warning,
        "an Istio field meshsim does not model is ignored",
    ),
];

/// The rule of a code.
pub fn rule_of(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

/// Severity of a warning: its rule's, or `Warning` without a code.
pub fn severity(w: &Warning) -> Severity {
    w.code
        .and_then(rule_of)
        .map_or(Severity::Warning, |r| r.severity)
}

fn finding(code: &'static str, path: FieldPath, message: String) -> Warning {
    Warning::new(path, message).with_code(code)
}

fn d(x: Duration) -> String {
    format_duration(x)
}

/// The analyzer's own findings on a validated config.
pub fn analyze(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    outlier(config, &mut out);
    routes(config, &mut out);
    export_to(config, &mut out);
    // A rule-level block shared by several subset clusters is reported once.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|w| seen.insert((w.code, w.path.to_string(), w.message.clone())));
    out
}

fn namespace(ns: &Option<String>) -> &str {
    ns.as_deref().unwrap_or("default")
}

/// Outlier-detection rules, per DestinationRule block (rule or subset).
fn outlier(config: &Config, out: &mut Vec<Warning>) {
    let src = &config.source;
    for (i, dr) in src.destination_rule.iter().enumerate() {
        let path = FieldPath::root().key("destinationRule").named(i, &dr.name);
        let host = fqdn(&dr.host, namespace(&dr.namespace));
        let Some(service) = config.services.iter().position(|s| s.host == host) else {
            continue;
        };
        let rule_od = dr
            .traffic_policy
            .as_ref()
            .and_then(|p| p.outlier_detection.as_ref());
        // Each cluster of the service: its detector is the subset's block, or the rule's.
        for c in config.clusters.iter().filter(|c| c.service == service) {
            let (od, od_path) = match &c.subset {
                Some(name) => {
                    let Some((j, sub)) =
                        dr.subsets.iter().enumerate().find(|(_, s)| &s.name == name)
                    else {
                        continue;
                    };
                    match sub
                        .traffic_policy
                        .as_ref()
                        .and_then(|p| p.outlier_detection.as_ref())
                    {
                        Some(od) => (
                            od,
                            path.key("subsets")
                                .named(j, &sub.name)
                                .key("trafficPolicy")
                                .key("outlierDetection"),
                        ),
                        None => match rule_od {
                            Some(od) => (od, path.key("trafficPolicy").key("outlierDetection")),
                            None => continue,
                        },
                    }
                }
                None => match rule_od {
                    Some(od) => (od, path.key("trafficPolicy").key("outlierDetection")),
                    None => continue,
                },
            };
            let Some(policy) = &c.policy.outlier else {
                continue;
            };
            let n = c.endpoints.len() as u32;
            let mep = policy.max_ejection_percent.min(100);
            if n > 0 && u64::from(mep) * u64::from(n) < 100 {
                let smallest = 100u32.div_ceil(n);
                let what = c.subset.as_deref().map_or_else(
                    || format!("\"{}\"", dr.host),
                    |s| format!("subset \"{s}\" of \"{}\"", dr.host),
                );
                out.push(finding(
                    "MSH0001",
                    od_path.key("maxEjectionPercent"),
                    format!(
                        "maxEjectionPercent {mep}{} is below one host of {what} ({n} endpoint{}): Envoy ≥ 1.28 ejects a host only if the ejected share stays ≤ {mep} %, so it never ejects anyone; fix: set maxEjectionPercent: {smallest} or more",
                        if od.max_ejection_percent.is_none() { " (Istio's default)" } else { "" },
                        if n == 1 { "" } else { "s" },
                    ),
                ));
            }
            if policy.base_ejection_time < policy.interval {
                out.push(finding(
                    "MSH0004",
                    od_path.key("baseEjectionTime"),
                    format!(
                        "baseEjectionTime {} is shorter than interval {}: an ejected host returns on the first interval tick after its ejection time, so it stays out anywhere from {} to {} — the interval, not baseEjectionTime, decides; fix: set baseEjectionTime ≥ interval, or shorten interval",
                        d(policy.base_ejection_time),
                        d(policy.interval),
                        d(policy.base_ejection_time),
                        d(policy.base_ejection_time + policy.interval)
                    ),
                ));
            }
            let gateway_only = od.consecutive_gateway_errors.is_some_and(|n| n > 0)
                && od.consecutive_5xx_errors.is_none();
            if gateway_only {
                out.push(finding(
                    "MSH0002",
                    od_path.key("consecutiveGatewayErrors"),
                    format!(
                        "only consecutiveGatewayErrors is set: it counts 502, 503 and 504; a 500 is not a gateway error and counts only towards consecutive5xxErrors, which stays at Istio's default {}; fix: set consecutive5xxErrors too if 500s should eject sooner",
                        policy.consecutive_5xx
                    ),
                ));
            }
        }
    }
    // Subsets that select nothing.
    for (i, dr) in src.destination_rule.iter().enumerate() {
        let host = fqdn(&dr.host, namespace(&dr.namespace));
        let Some(svc) = config.services.iter().find(|s| s.host == host) else {
            continue;
        };
        if svc.endpoints.is_empty() {
            continue;
        }
        for (j, sub) in dr.subsets.iter().enumerate() {
            let selects = svc
                .endpoints
                .iter()
                .any(|e| sub.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)));
            if !selects {
                out.push(finding(
                    "IST0173",
                    FieldPath::root()
                        .key("destinationRule")
                        .named(i, &dr.name)
                        .key("subsets")
                        .named(j, &sub.name)
                        .key("labels"),
                    format!(
                        "subset \"{}\" selects no endpoint of \"{}\": requests routed to it get 503 (UH); fix: match the labels of the pods (e.g. version)",
                        sub.name, dr.host
                    ),
                ));
            }
        }
    }
}

/// `exportTo` is modelled for VirtualServices (which proxies see them);
/// a DestinationRule's or ServiceEntry's applies to every proxy here.
fn export_to(config: &Config, out: &mut Vec<Warning>) {
    let restricted = |e: &[String]| !e.is_empty() && e.iter().any(|x| x != "*");
    let src = &config.source;
    for (i, dr) in src.destination_rule.iter().enumerate() {
        if restricted(&dr.export_to) {
            out.push(finding(
                "MSH0014",
                FieldPath::root().key("destinationRule").named(i, &dr.name).key("exportTo"),
                "a DestinationRule's exportTo is not modelled by meshsim: the rule applies to every proxy of the simulation; fix: none needed unless proxies outside these namespaces matter".to_owned(),
            ));
        }
    }
    for (i, se) in src.service_entry.iter().enumerate() {
        if restricted(&se.export_to) {
            out.push(finding(
                "MSH0014",
                FieldPath::root().key("serviceEntry").named(i, &se.name).key("exportTo"),
                "a ServiceEntry's exportTo is not modelled by meshsim: the entry is seen by every proxy of the simulation; fix: none needed unless proxies outside these namespaces matter".to_owned(),
            ));
        }
    }
}

/// Route rules: retries against outlier detection and timeouts, duplicate
/// hosts, ports.
fn routes(config: &Config, out: &mut Vec<Warning>) {
    let src = &config.source;
    let mut bound: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for (i, vs) in src.virtual_service.iter().enumerate() {
        let path = FieldPath::root().key("virtualService").named(i, &vs.name);
        let ns = namespace(&vs.namespace);
        let on_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
        if on_mesh {
            for (h, host) in vs.hosts.iter().enumerate() {
                let full = fqdn(host, ns);
                if let Some((first, name)) = bound.get(&full) {
                    out.push(finding(
                        "IST0109",
                        path.key("hosts").index(h),
                        format!(
                            "host \"{host}\" is also bound on the mesh by VirtualService \"{name}\" (virtualService[{first}]): sidecars use only one VirtualService per host; fix: merge the two into one VirtualService"
                        ),
                    ));
                } else {
                    bound.insert(full, (i, &vs.name));
                }
            }
        }
        let checked = config.virtual_services.get(i).filter(|v| v.name == vs.name);
        // Ports of the services the VirtualService is for.
        let ports: Vec<u16> = config
            .services
            .iter()
            .filter(|s| vs.hosts.iter().any(|h| host_matches(&fqdn(h, ns), &s.host)))
            .map(|s| s.port)
            .collect();
        for (r, http) in vs.http.iter().enumerate() {
            let rp = path.key("http").index(r);
            for (m, block) in http.matches.iter().enumerate() {
                if let Some(port) = block.port
                    && on_mesh
                    && block.gateways.is_empty()
                    && vs.gateways.is_empty()
                    && !ports.is_empty()
                    && !ports.contains(&port)
                {
                    out.push(finding(
                        "MSH0013",
                        rp.key("match").index(m).key("port"),
                        format!(
                            "port {port} is no port of the routed service{} ({}): Istio drops this match block from every route table, so it never matches; fix: use the service port",
                            if ports.len() == 1 { "" } else { "s" },
                            ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            let Some(route) = checked.and_then(|v| v.http.get(r)) else {
                continue;
            };
            let Some(retry) = &route.retries else {
                continue;
            };
            if retry.num_retries == 0 {
                continue;
            }
            let tries = retry.num_retries.saturating_add(1);
            if let (Some(timeout), Some(per_try)) = (route.timeout, retry.per_try_timeout)
                && let Some(all) = per_try.checked_mul(tries)
                && timeout < all
            {
                out.push(finding(
                    "MSH0005",
                    rp.key("timeout"),
                    format!(
                        "timeout {} ends before perTryTimeout {} × {tries} tries (1 + attempts {}) = {}: the last tries are cut short and the client sees 504 (UT); fix: raise timeout to {} or lower attempts",
                        d(timeout),
                        d(per_try),
                        retry.num_retries,
                        d(all),
                        d(all)
                    ),
                ));
            }
            let on_5xx = retry.retry_on.0 & (RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR) != 0;
            if !on_5xx {
                continue;
            }
            let with_od = http.route.iter().any(|dst| {
                let host = fqdn(&dst.destination.host, ns);
                config.clusters.iter().any(|c| {
                    config
                        .services
                        .get(c.service)
                        .is_some_and(|s| s.host == host)
                        && c.subset == dst.destination.subset
                        && c.policy.outlier.is_some()
                })
            });
            if with_od {
                let retry_path = http
                    .retries
                    .as_ref()
                    .map_or_else(|| rp.clone(), |_| rp.key("retries").key("retryOn"));
                out.push(finding(
                    "MSH0003",
                    retry_path,
                    format!(
                        "retries on 5xx ({} attempts) towards a cluster with outlier detection: a failing pod's errors are retried on other pods (clients see fewer 5xx) while each failed try still counts towards its ejection, and every retry adds load during a blip; fix: keep it if intended; measure both with `meshsim sweep`",
                        retry.num_retries
                    ),
                ));
            }
        }
    }
}

/// The rule table as text, one rule a line (`meshsim check --rules`).
pub fn rules_text() -> String {
    let mut s = String::new();
    for r in RULES {
        s.push_str(&format!(
            "{}  {:<8} {:<44} {}\n",
            r.code, r.severity, r.name, r.summary
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;

    const REGISTRY: &str = r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [
  { address = "10.0.0.1:9080", labels = { version = "v1" } },
  { address = "10.0.0.2:9080", labels = { version = "v1" } },
  { address = "10.0.0.3:9080", labels = { version = "v2" } },
  { address = "10.0.0.4:9080", labels = { version = "v2" } },
]
[[service]]
name = "ratings"
port = 9080
endpoints = [{ address = "10.0.1.1:9080", labels = { version = "v1" } }]
"#;

    const VS: &str = "[[virtualService]]\nname = \"reviews\"\nhosts = [\"reviews\"]\n";
    const DR: &str = "[[destinationRule]]\nname = \"reviews\"\nhost = \"reviews\"\n";
    const ROUTE: &str =
        "[[virtualService.http]]\nroute = [{ destination = { host = \"reviews\" } }]\n";

    fn codes(objects: &str) -> Vec<&'static str> {
        let text = format!("{REGISTRY}\n{objects}");
        let (_, warnings) =
            from_toml(&text, Some("t.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        warnings.iter().filter_map(|w| w.code).collect()
    }

    /// (code, an input that triggers it, a near-identical one that does not).
    fn cases() -> Vec<(&'static str, String, String)> {
        let od =
            |body: &str| format!("{DR}[destinationRule.trafficPolicy.outlierDetection]\n{body}\n");
        let retry = |timeout: &str, with_od: bool| {
            format!(
                "{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\" }} }}]\ntimeout = \"{timeout}\"\nretries = {{ attempts = 2, perTryTimeout = \"500ms\", retryOn = \"5xx\" }}\n{}",
                if with_od {
                    od("maxEjectionPercent = 50")
                } else {
                    String::new()
                }
            )
        };
        let subsets = "subsets = [{ name = \"v1\", labels = { version = \"v1\" } }, { name = \"v2\", labels = { version = \"v2\" } }]\n";
        vec![
            (
                "IST0101",
                format!(
                    "{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"nosuch\" }} }}]\n"
                ),
                format!("{VS}{ROUTE}"),
            ),
            (
                "IST0101",
                format!(
                    "{DR}subsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}]\n{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\", subset = \"v9\" }} }}]\n"
                ),
                format!(
                    "{DR}subsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}]\n{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\", subset = \"v1\" }} }}]\n"
                ),
            ),
            (
                "IST0109",
                format!(
                    "{VS}{ROUTE}[[virtualService]]\nname = \"reviews-2\"\nhosts = [\"reviews\"]\n{ROUTE}"
                ),
                format!(
                    "{VS}{ROUTE}[[virtualService]]\nname = \"ratings\"\nhosts = [\"ratings\"]\n[[virtualService.http]]\nroute = [{{ destination = {{ host = \"ratings\" }} }}]\n"
                ),
            ),
            (
                "IST0131",
                format!("{VS}{ROUTE}{ROUTE}"),
                format!(
                    "{VS}[[virtualService.http]]\nmatch = [{{ uri = {{ prefix = \"/a\" }} }}]\nroute = [{{ destination = {{ host = \"reviews\" }} }}]\n{ROUTE}"
                ),
            ),
            (
                "IST0173",
                format!("{DR}subsets = [{{ name = \"v9\", labels = {{ version = \"v9\" }} }}]\n"),
                format!("{DR}{subsets}"),
            ),
            (
                "MSH0001",
                od("consecutive5xxErrors = 1"),
                od("consecutive5xxErrors = 1\nmaxEjectionPercent = 25"),
            ),
            (
                "MSH0002",
                od("consecutiveGatewayErrors = 1\nmaxEjectionPercent = 50"),
                od(
                    "consecutiveGatewayErrors = 1\nconsecutive5xxErrors = 1\nmaxEjectionPercent = 50",
                ),
            ),
            ("MSH0003", retry("5s", true), retry("5s", false)),
            (
                "MSH0004",
                od("interval = \"10s\"\nbaseEjectionTime = \"5s\"\nmaxEjectionPercent = 50"),
                od("interval = \"10s\"\nbaseEjectionTime = \"30s\"\nmaxEjectionPercent = 50"),
            ),
            ("MSH0005", retry("1s", false), retry("1500ms", false)),
            (
                "MSH0006",
                format!(
                    "{DR}{subsets}{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\", subset = \"v1\" }}, weight = 50 }}, {{ destination = {{ host = \"reviews\", subset = \"v2\" }}, weight = 40 }}]\n"
                ),
                format!(
                    "{DR}{subsets}{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\", subset = \"v1\" }}, weight = 50 }}, {{ destination = {{ host = \"reviews\", subset = \"v2\" }}, weight = 50 }}]\n"
                ),
            ),
            (
                "MSH0007",
                od("consecutiveErrors = 5\nmaxEjectionPercent = 50"),
                od("consecutive5xxErrors = 5\nmaxEjectionPercent = 50"),
            ),
            (
                "MSH0008",
                od("consecutiveLocalOriginFailures = 3\nmaxEjectionPercent = 50"),
                od(
                    "consecutiveLocalOriginFailures = 3\nsplitExternalLocalOriginErrors = true\nmaxEjectionPercent = 50",
                ),
            ),
            ("MSH0009", VS.to_owned(), format!("{VS}{ROUTE}")),
            (
                "MSH0010",
                format!("{VS}{ROUTE}fault = {{ abort = {{ httpStatus = 503 }} }}\n"),
                format!(
                    "{VS}{ROUTE}fault = {{ abort = {{ httpStatus = 503, percentage = {{ value = 100 }} }} }}\n"
                ),
            ),
            (
                "MSH0011",
                "[[destinationRule]]\nname = \"x\"\nhost = \"nosuch\"\n".to_owned(),
                DR.to_owned(),
            ),
            (
                "MSH0012",
                format!(
                    "{DR}subsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}]\n[[destinationRule]]\nname = \"reviews-2\"\nhost = \"reviews\"\nsubsets = [{{ name = \"v1\", labels = {{ version = \"v2\" }} }}]\n"
                ),
                format!(
                    "{DR}subsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}]\n[[destinationRule]]\nname = \"reviews-2\"\nhost = \"reviews\"\nsubsets = [{{ name = \"v2\", labels = {{ version = \"v2\" }} }}]\n"
                ),
            ),
            (
                "MSH0014",
                format!("{DR}exportTo = [\".\"]\n"),
                format!("{DR}exportTo = [\"*\"]\n"),
            ),
            (
                "MSH0013",
                format!(
                    "{VS}[[virtualService.http]]\nmatch = [{{ port = 9999 }}]\nroute = [{{ destination = {{ host = \"reviews\" }} }}]\n{ROUTE}"
                ),
                format!(
                    "{VS}[[virtualService.http]]\nmatch = [{{ port = 9080 }}]\nroute = [{{ destination = {{ host = \"reviews\" }} }}]\n{ROUTE}"
                ),
            ),
        ]
    }

    #[test]
    fn destination_rules_for_one_host_merge_as_istio_merges_them() {
        // v1 and its policy in one rule, v2 in another: both subsets exist,
        // the first rule's top-level policy applies to every cluster.
        let text = format!(
            "{REGISTRY}\n{DR}subsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}]\ntrafficPolicy = {{ loadBalancer = {{ simple = \"RANDOM\" }} }}\n[[destinationRule]]\nname = \"reviews-v2\"\nhost = \"reviews\"\nsubsets = [{{ name = \"v2\", labels = {{ version = \"v2\" }} }}]\ntrafficPolicy = {{ loadBalancer = {{ simple = \"ROUND_ROBIN\" }} }}\n{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\", subset = \"v2\" }} }}]\n"
        );
        let (c, w) = from_toml(&text, Some("t.toml")).unwrap();
        assert!(
            w.iter()
                .all(|w| w.code != Some("IST0101") && w.code != Some("MSH0012")),
            "{w:#?}"
        );
        let v2 = c
            .clusters
            .iter()
            .find(|c| c.subset.as_deref() == Some("v2"))
            .expect("v2 cluster");
        assert_eq!(v2.endpoints.len(), 2);
        assert_eq!(v2.policy.lb, crate::config::LbPolicy::Random);
    }

    #[test]
    fn huge_retry_figures_do_not_overflow_the_timeout_rule() {
        let text = format!(
            "{VS}[[virtualService.http]]\nroute = [{{ destination = {{ host = \"reviews\" }} }}]\ntimeout = \"1s\"\nretries = {{ attempts = 4294967295, perTryTimeout = \"5000000h\" }}\n"
        );
        // No panic; the rule is skipped when the product overflows.
        let _ = codes(&text);
    }

    #[test]
    fn every_rule_fires_on_its_bad_input_and_not_on_the_good_one() {
        for (code, bad, good) in cases() {
            assert!(
                codes(&bad).contains(&code),
                "{code} not found in:\n{bad}\n{:?}",
                codes(&bad)
            );
            assert!(!codes(&good).contains(&code), "{code} found in:\n{good}");
        }
    }

    #[test]
    fn every_rule_of_the_table_has_a_case_except_the_yaml_reader_s() {
        let tested: Vec<&str> = cases().iter().map(|c| c.0).collect();
        for r in RULES {
            assert!(
                tested.contains(&r.code) || r.code == "MSH0014",
                "no case for {}",
                r.code
            );
        }
    }

    #[test]
    fn the_smallest_max_ejection_percent_that_ejects_one_host_is_named() {
        let text = format!(
            "{REGISTRY}\n{DR}subsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}]\n[destinationRule.trafficPolicy.outlierDetection]\nconsecutive5xxErrors = 1\n"
        );
        let (_, w) = from_toml(&text, Some("t.toml")).unwrap();
        let msgs: Vec<String> = w
            .iter()
            .filter(|w| w.code == Some("MSH0001"))
            .map(ToString::to_string)
            .collect();
        // The whole service (4 endpoints) needs 25 %, the v1 subset (2) 50 %.
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs[0].contains("(4 endpoints)")
                && msgs[0].contains("set maxEjectionPercent: 25 or more"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("subset \"v1\"")
                && msgs[1].contains("set maxEjectionPercent: 50 or more"),
            "{}",
            msgs[1]
        );
        assert!(
            msgs[0].starts_with(
                "t.toml:20:1: destinationRule[reviews].trafficPolicy.outlierDetection"
            ),
            "{}",
            msgs[0]
        );
    }
}
