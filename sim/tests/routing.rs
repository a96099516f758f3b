//! Routing facts as a whole run sees them: a destination with no cluster
//! (503 NC) and `port` match blocks, with exact counts from seeded runs.
//!
//! Every number below is virtual time or a count: the same on every
//! machine.

mod common;
use common::{attempts, build, run_model};

/// `reviews` (v1, v2: one pod each, 1 ms), 100 uniform requests per second
/// from one sidecar for `duration`, and `extra` TOML.
fn reviews(duration: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
name = "routing"
duration = "{duration}"
[[service]]
name = "reviews"
port = {port}
[[service.version]]
name = "v1"
pods = 1
latency = {{ distribution = "constant", value = "1ms" }}
[[service.version]]
name = "v2"
pods = 1
latency = {{ distribution = "constant", value = "1ms" }}
[[client]]
name = "fortio"
[load]
client = "fortio"
host = "reviews"
qps = 100
arrivals = "uniform"
{extra}
"#
    )
}

const RULE: &str = r#"
name = "reviews"
host = "reviews"
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" } },
]
"#;

#[test]
fn a_virtual_service_pushed_before_its_destination_rule_gets_503_nc_until_the_rule_arrives() {
    // Requests leave every 10 ms from 10 ms on; the rule is pushed at
    // 995 ms: the 99 requests before it are answered 503 NC by the sidecar
    // without reaching a pod, the 100 from 1,000 ms to 1,990 ms reach v1
    // and are answered 1 ms later; the one sent at 2 s reaches v1 too but
    // is still in flight when the run ends.
    let vs = r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#;
    let extra = format!(
        r#"{vs}
[[timeline]]
at = "995ms"
[timeline.push]
{}
[[timeline.push.destinationRule]]
{RULE}"#,
        vs.replace("[[virtualService", "[[timeline.push.virtualService")
    );
    let (model, warnings) =
        build(&reviews("2s", 9080, &extra)).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains(
            "virtualService[reviews].http[0].route[0].destination.subset: unknown subset \"v1\""
        ),
        "{warnings:#?}"
    );
    let m = run_model(&model);
    assert_eq!(m.requests, 199);
    assert_eq!((m.by_status[503], m.by_status[200]), (99, 100));
    assert_eq!(m.flag("NC"), 99);
    assert_eq!(m.by_flag.len(), 1, "{:?}", m.by_flag);
    // No pod saw the rejected requests.
    let pods = attempts(&m);
    assert_eq!((pods["reviews-v1"], pods["reviews-v2"]), (101, 0));
    let text = meshsim::output::summary_text(&model, &m);
    assert!(text.contains("Code 503 : 99 (49.7 %)\n"), "{text}");
    assert!(text.contains("Flag NC : 99\n"), "{text}");
}

#[test]
fn a_destination_with_a_missing_subset_gets_its_share_of_503_nc() {
    // 90 % v1, 10 % v9 (no such subset): 100 s at 100 qps, 10,000 draws.
    let extra = format!(
        r#"
[[destinationRule]]
{RULE}
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [
  {{ destination = {{ host = "reviews", subset = "v1" }}, weight = 90 }},
  {{ destination = {{ host = "reviews", subset = "v9" }}, weight = 10 }},
]
"#
    );
    let (model, warnings) =
        build(&reviews("100s", 9080, &extra)).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let m = run_model(&model);
    let nc = m.flag("NC");
    assert_eq!(m.by_status[503], nc);
    assert_eq!(m.by_status[200] + nc, m.requests);
    assert!((900..=1_100).contains(&nc), "{nc} of {}", m.requests);
    // Only v1 saw requests: those answered, and the one sent at 100 s,
    // still in flight at the end.
    let pods = attempts(&m);
    assert_eq!(pods["reviews-v1"], m.by_status[200] + 1);
    assert_eq!(pods["reviews-v2"], 0);
}

/// A VirtualService for reviews whose first route takes only the requests
/// on `port` (to v2), and the rest to v1.
fn port_routes(port: u16) -> String {
    format!(
        r#"
[[destinationRule]]
{RULE}
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
match = [{{ port = {port} }}]
route = [{{ destination = {{ host = "reviews", subset = "v2" }} }}]
[[virtualService.http]]
route = [{{ destination = {{ host = "reviews", subset = "v1" }} }}]
"#
    )
}

#[test]
fn a_port_block_for_another_port_than_the_services_takes_no_traffic() {
    // reviews listens on 8080; 100 requests in 1 s (10 ms to 1,000 ms, the
    // last one still in flight at the end).
    let (model, warnings) =
        build(&reviews("1s", 8080, &port_routes(9080))).unwrap_or_else(|e| panic!("{e:#?}"));
    // The analyzer says so before anything runs (MSH0013).
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("virtualService[reviews].http[0].match[0].port: port 9080 is no port of the routed service (8080)"),
        "{warnings:#?}"
    );
    let m = run_model(&model);
    let pods = attempts(&m);
    assert_eq!((pods["reviews-v1"], pods["reviews-v2"]), (100, 0));
    assert_eq!((m.requests, m.by_status[200]), (99, 99));
    // The same block naming the service's port takes all of it.
    let (model, _) =
        build(&reviews("1s", 8080, &port_routes(8080))).unwrap_or_else(|e| panic!("{e:#?}"));
    let pods = attempts(&run_model(&model));
    assert_eq!((pods["reviews-v1"], pods["reviews-v2"]), (0, 100));
}

/// A gateway `edge` with servers on 80 (`shop.example.com`) and 8080
/// (`admin.example.com`), routing port 8080 to v2 and port 80 to v1, and a
/// load of 100 requests in 1 s to `host` through it.
fn edge(host: &str) -> String {
    format!(
        r#"
name = "edge"
duration = "1s"
[[service]]
name = "reviews"
port = 9080
[[service.version]]
name = "v1"
pods = 1
latency = {{ distribution = "constant", value = "1ms" }}
[[service.version]]
name = "v2"
pods = 1
latency = {{ distribution = "constant", value = "1ms" }}
[[client]]
name = "ingress"
gateway = "edge"
[load]
client = "ingress"
host = "{host}"
qps = 100
arrivals = "uniform"
[[gateway]]
name = "edge"
servers = [
  {{ port = {{ number = 80, protocol = "HTTP" }}, hosts = ["shop.example.com"] }},
  {{ port = {{ number = 8080, protocol = "HTTP" }}, hosts = ["admin.example.com"] }},
]
[[destinationRule]]
{RULE}
[[virtualService]]
name = "edge"
hosts = ["shop.example.com", "admin.example.com"]
gateways = ["edge"]
[[virtualService.http]]
match = [{{ port = 8080 }}]
route = [{{ destination = {{ host = "reviews", subset = "v2" }} }}]
[[virtualService.http]]
match = [{{ port = 80 }}]
route = [{{ destination = {{ host = "reviews", subset = "v1" }} }}]
"#
    )
}

#[test]
fn a_gateway_with_two_server_ports_routes_each_by_the_port_the_request_arrives_on() {
    // The port is the server's whose hosts cover the authority, or the
    // authority's own.
    for (host, v1, v2) in [
        ("shop.example.com", 100, 0),
        ("admin.example.com", 0, 100),
        ("shop.example.com:8080", 0, 100),
        ("admin.example.com:80", 100, 0),
    ] {
        let (model, warnings) = build(&edge(host)).unwrap_or_else(|e| panic!("{e:#?}"));
        assert!(warnings.is_empty(), "{warnings:#?}");
        let m = run_model(&model);
        let pods = attempts(&m);
        assert_eq!((pods["reviews-v1"], pods["reviews-v2"]), (v1, v2), "{host}");
        assert_eq!(m.by_status[200], 99, "{host}");
    }
}
