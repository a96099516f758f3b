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
            &format!("expected an \"ip:port\" address such as \"10.0.0.1:9080\", found \"{bad}\""),
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

/// The `meshsimEnvoy` extension sets Envoy's outlier fields Istio cannot
/// (enforcement percentages, `max_ejection_time`) through validation;
/// absent fields keep what Istio gives Envoy.
#[test]
fn the_meshsim_envoy_extension_sets_envoy_outlier_fields_istio_cannot() {
    let toml = policy(
        r#"[destinationRule.trafficPolicy.outlierDetection]
consecutive5xxErrors = 3
baseEjectionTime = "10s"
meshsimEnvoy = { enforcingConsecutive5xx = 40, maxEjectionTime = "60s" }"#,
    );
    let (c, _) = from_toml(&toml, Some(FILE)).unwrap();
    let od = c.clusters[0].policy.outlier.expect("an outlier detector");
    assert_eq!(od.enforcing_consecutive_5xx, 40);
    assert_eq!(od.max_ejection_time, Duration::from_secs(60));
    // Istio's values where the extension is silent.
    assert_eq!(od.enforcing_consecutive_gateway_failure, 0);
    assert_eq!(od.enforcing_consecutive_local_origin_failure, 100);
    let (c, _) = from_toml(
        &policy(
            r#"[destinationRule.trafficPolicy.outlierDetection]
baseEjectionTime = "10s""#,
        ),
        Some(FILE),
    )
    .unwrap();
    let od = c.clusters[0].policy.outlier.unwrap();
    assert_eq!(
        (od.enforcing_consecutive_5xx, od.max_ejection_time),
        (100, Duration::from_secs(300))
    );
}

#[test]
fn the_meshsim_envoy_extension_refuses_what_envoy_refuses() {
    let toml = policy(
        r#"[destinationRule.trafficPolicy.outlierDetection]
baseEjectionTime = "2m"
meshsimEnvoy = { enforcingConsecutiveGatewayFailure = 101, maxEjectionTime = "1m" }"#,
    );
    let err = from_toml(&toml, Some(FILE)).unwrap_err().to_string();
    for want in [
        "destinationRule[reviews].trafficPolicy.outlierDetection.meshsimEnvoy.enforcingConsecutiveGatewayFailure: expected a percentage from 0 to 100, found 101",
        "destinationRule[reviews].trafficPolicy.outlierDetection.meshsimEnvoy.maxEjectionTime: expected at least baseEjectionTime (2m), found 1m",
    ] {
        assert!(err.contains(want), "{want}\nnot in:\n{err}");
    }
}
