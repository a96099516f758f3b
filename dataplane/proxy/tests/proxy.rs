//! meshproxy end to end: the real binaries over loopback, against meshecho.
//! No timing asserts: waits are generous and only bound how long a test may
//! take to see what must happen.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Echo, Proxy, destination_rule, get, raw, service};

fn vs(http: &str) -> String {
    format!("\n[[virtualService]]\nname = \"echo\"\nhosts = [\"echo\"]\n{http}\n")
}

fn two_versions() -> (Echo, Echo) {
    (Echo::start("v1", &[]), Echo::start("v2", &[]))
}

#[test]
fn header_match_routes_to_its_subset() {
    let (a, b) = two_versions();
    let config = service(&[(&a, "v1"), (&b, "v2")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
match = [{ headers = { x-canary = { exact = "yes" } } }]
route = [{ destination = { host = "echo", subset = "v2" } }]
[[virtualService.http]]
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let p = Proxy::start(&config, &[]);
    for _ in 0..5 {
        assert_eq!(p.get("/", &[("x-canary", "yes")]).echo(), "v2");
        assert_eq!(p.get("/", &[("x-canary", "no")]).echo(), "v1");
        assert_eq!(p.get("/", &[]).echo(), "v1");
    }
}

#[test]
fn uri_prefix_routes_and_unknown_hosts_get_404_nr() {
    let (a, b) = two_versions();
    let config = service(&[(&a, "v1"), (&b, "v2")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
match = [{ uri = { prefix = "/api" } }]
route = [{ destination = { host = "echo", subset = "v2" } }]
[[virtualService.http]]
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let p = Proxy::start(&config, &[]);
    assert_eq!(p.get("/api/users", &[]).echo(), "v2");
    assert_eq!(
        p.get("/apix", &[]).echo(),
        "v2",
        "prefix is a plain string prefix"
    );
    assert_eq!(p.get("/web", &[]).echo(), "v1");
    let r = p.get("/", &[("Host", "nowhere")]);
    assert_eq!(r.status, 404);
    p.proc.stdout.wait_for("\"GET /\" 404 NR");
}

#[test]
fn weighted_split_is_honoured_over_many_requests() {
    let (a, b) = two_versions();
    let config = service(&[(&a, "v1"), (&b, "v2")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
route = [
  { destination = { host = "echo", subset = "v1" }, weight = 80 },
  { destination = { host = "echo", subset = "v2" }, weight = 20 },
]
"#);
    let p = Proxy::start(&config, &["--access-log", "off"]);
    let mut counts = BTreeMap::new();
    for _ in 0..400 {
        *counts.entry(p.get("/", &[]).echo().to_owned()).or_insert(0) += 1;
    }
    // 320 expected, standard deviation 8: ±40 is five deviations.
    let v1 = counts.get("v1").copied().unwrap_or(0);
    assert!((280..=360).contains(&v1), "{counts:?}");
    assert_eq!(counts.values().sum::<i32>(), 400, "{counts:?}");
}

const SUSPENDED: &str = r#"
[[virtualService.http]]
fault = { abort = { httpStatus = 503, percentage = { value = 100.0 } } }
route = [{ destination = { host = "echo", subset = "v1" } }]
"#;

const OPEN: &str = r#"
[[virtualService.http]]
route = [{ destination = { host = "echo", subset = "v1" } }]
"#;

#[test]
fn a_full_fault_abort_suspends_traffic_until_a_reload_removes_it() {
    let a = Echo::start("v1", &[]);
    let base = service(&[(&a, "v1")]) + &destination_rule("");
    let p = Proxy::start(&(base.clone() + &vs(SUSPENDED)), &[]);
    for _ in 0..5 {
        let r = p.get("/", &[]);
        assert_eq!(r.status, 503);
        assert_eq!(r.echo(), "-", "no upstream request");
    }
    p.proc.stdout.wait_for("503 FI - ");
    p.rewrite(&(base + &vs(OPEN)));
    p.eventually("the reload lifts the fault", || {
        p.get("/", &[]).status == 200
    });
    assert_eq!(p.get("/", &[]).echo(), "v1");
}

#[test]
fn a_subset_no_destination_rule_defines_gets_503_nc_until_a_reload_defines_it() {
    // The VirtualService arrives before the subset it names: Istio accepts
    // it, Envoy answers 503 NC without contacting a host.
    let (a, b) = (Echo::start("v1", &[]), Echo::start("v3", &[]));
    let routes = vs(r#"
[[virtualService.http]]
match = [{ uri = { prefix = "/canary" } }]
route = [{ destination = { host = "echo", subset = "v3" } }]
[[virtualService.http]]
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let base = service(&[(&a, "v1"), (&b, "v3")]);
    let p = Proxy::start(&(base.clone() + &destination_rule("") + &routes), &[]);
    for _ in 0..3 {
        let r = p.get("/canary", &[]);
        assert_eq!(r.status, 503);
        assert_eq!(r.echo(), "-", "no upstream request");
        assert_eq!(r.body, "no cluster\n");
        assert_eq!(p.get("/", &[]).echo(), "v1");
    }
    p.proc.stdout.wait_for("\"GET /canary\" 503 NC - ");
    // The DestinationRule gains v3.
    let rule = destination_rule("").replace(
        "{ name = \"v2\", labels = { version = \"v2\" } }",
        "{ name = \"v3\", labels = { version = \"v3\" } }",
    );
    p.rewrite(&(base + &rule + &routes));
    p.eventually("the reload defines the subset", || {
        p.get("/canary", &[]).status == 200
    });
    assert_eq!(p.get("/canary", &[]).echo(), "v3");
}

#[test]
fn a_sidecar_matches_port_blocks_against_the_services_port_not_its_listeners() {
    // echo is on port 80; the proxy listens on an ephemeral port.
    let (a, b) = two_versions();
    let port_to_v2 = |port: u16| {
        service(&[(&a, "v1"), (&b, "v2")])
            + &destination_rule("")
            + &vs(&format!(
                r#"
[[virtualService.http]]
match = [{{ port = {port} }}]
route = [{{ destination = {{ host = "echo", subset = "v2" }} }}]
[[virtualService.http]]
route = [{{ destination = {{ host = "echo", subset = "v1" }} }}]
"#
            ))
    };
    let p = Proxy::start(&port_to_v2(80), &["--access-log", "off"]);
    assert_ne!(p.addr.port(), 80);
    for host in ["echo", "echo:80"] {
        assert_eq!(p.get("/", &[("Host", host)]).echo(), "v2", "{host}");
    }
    // A block for a port echo does not have takes nothing.
    p.rewrite(&port_to_v2(9080));
    p.eventually("the reload drops the port-80 block", || {
        p.get("/", &[]).echo() == "v1"
    });
    for _ in 0..5 {
        assert_eq!(p.get("/", &[]).echo(), "v1");
    }
}

#[test]
fn a_bad_config_is_refused_and_the_old_one_keeps_serving() {
    let (a, b) = two_versions();
    let base = service(&[(&a, "v1"), (&b, "v2")]) + &destination_rule("");
    let to = |s: &str| {
        vs(&format!(
            "[[virtualService.http]]\nroute = [{{ destination = {{ host = \"echo\", subset = \"{s}\" }} }}]\n"
        ))
    };
    let p = Proxy::start(&(base.clone() + &to("v1")), &[]);
    assert_eq!(p.get("/", &[]).echo(), "v1");
    // A good change applies.
    p.rewrite(&(base.clone() + &to("v2")));
    p.eventually("v2 after reload", || p.get("/", &[]).echo() == "v2");
    // A bad one (a regex RE2 refuses) is refused with file, line and
    // field; v2 keeps serving.
    p.rewrite(
        &(base.clone()
            + &vs(r#"
[[virtualService.http]]
match = [{ uri = { regex = "(" } }]
route = [{ destination = { host = "echo", subset = "v1" } }]
"#)),
    );
    let line = p.proc.stderr.wait_for("config reload refused");
    assert!(line.contains("config reload refused"), "{line}");
    p.proc
        .stderr
        .wait_for("virtualService[echo].http[0].match[0].uri.regex");
    for _ in 0..5 {
        assert_eq!(p.get("/", &[]).echo(), "v2");
    }
    assert!(
        p.admin("/stats")
            .body
            .contains("meshproxy_config_reloads_total{result=\"refused\"} 1"),
        "{}",
        p.admin("/stats").body
    );
}

#[test]
fn sighup_reloads_the_config() {
    let (a, b) = two_versions();
    let base = service(&[(&a, "v1"), (&b, "v2")]) + &destination_rule("");
    let to = |s: &str| {
        vs(&format!(
            "[[virtualService.http]]\nroute = [{{ destination = {{ host = \"echo\", subset = \"{s}\" }} }}]\n"
        ))
    };
    let dir = common::temp_dir("hup");
    let path = dir.join("mesh.toml");
    std::fs::write(&path, base.clone() + &to("v1")).unwrap();
    // File watching off: only SIGHUP reloads.
    let p = Proxy::start_file(path.clone(), &["--watch-interval", "0s"]);
    assert_eq!(p.get("/", &[]).echo(), "v1");
    std::fs::write(&path, base + &to("v2")).unwrap();
    p.proc.signal("HUP");
    p.eventually("v2 after SIGHUP", || p.get("/", &[]).echo() == "v2");
}

/// Reloads while requests are in flight across them (1 s each) keep only
/// the config generations those requests hold; once they end, the next
/// reload leaves one.
#[test]
fn reloads_under_load_keep_only_the_generations_requests_hold() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--watch-interval", "0s"]);
    let addr = p.addr;
    let slow: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/?delay=1s", &[])))
        .collect();
    p.eventually("three in flight", || {
        p.admin("/stats")
            .body
            .contains("meshproxy_downstream_rq_active 3")
    });
    let reloads = |want: u64| {
        p.eventually("the reload applied", || {
            p.admin("/stats").body.contains(&format!(
                "meshproxy_config_reloads_total{{result=\"ok\"}} {want}"
            ))
        })
    };
    for i in 1..=50 {
        p.proc.signal("HUP");
        reloads(i);
        assert_eq!(p.get("/", &[]).status, 200);
    }
    let gauge = format!("meshproxy_config_generations{{listener=\"{addr}\"}}");
    // The slow requests hold the first generation: it and the current one.
    assert!(stat(&p, &gauge) <= 2, "{}", p.admin("/stats").body);
    for h in slow {
        assert_eq!(h.join().unwrap().status, 200);
    }
    p.proc.signal("HUP");
    reloads(51);
    assert_eq!(stat(&p, &gauge), 1);
}

#[test]
fn consistent_hash_keeps_a_user_on_one_endpoint_and_issues_cookies() {
    let e: Vec<Echo> = (0..3).map(|i| Echo::start(&format!("e{i}"), &[])).collect();
    let config = service(&[(&e[0], "v1"), (&e[1], "v1"), (&e[2], "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { loadBalancer = { consistentHash = { httpHeaderName = "x-user" } } }
"#;
    let p = Proxy::start(&config, &[]);
    let mut seen = std::collections::BTreeSet::new();
    for u in 0..12 {
        let user = format!("user-{u}");
        let first = p.get("/", &[("x-user", &user)]).echo().to_owned();
        for _ in 0..4 {
            assert_eq!(p.get("/", &[("x-user", &user)]).echo(), first, "{user}");
        }
        seen.insert(first);
    }
    assert!(seen.len() >= 2, "12 users all on one endpoint: {seen:?}");

    // A cookie policy with a ttl: the proxy issues the cookie, and a client
    // that sends it back stays.
    let cookie = service(&[(&e[0], "v1"), (&e[1], "v1"), (&e[2], "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { loadBalancer = { consistentHash = { httpCookie = { name = "sticky", ttl = "60s", path = "/" } } } }
"#;
    let p = Proxy::start(&cookie, &[]);
    let r = p.get("/", &[]);
    let set = r.header("set-cookie").expect("a Set-Cookie").to_owned();
    assert!(set.starts_with("sticky=\""), "{set}");
    assert!(
        set.contains("Max-Age=60") && set.contains("Path=/"),
        "{set}"
    );
    let value = set.split(';').next().unwrap().to_owned();
    let first = p.get("/", &[("Cookie", &value)]).echo().to_owned();
    for _ in 0..5 {
        let r = p.get("/", &[("Cookie", &value)]);
        assert_eq!(r.echo(), first);
        assert!(r.header("set-cookie").is_none(), "cookie set again");
    }
}

#[test]
fn a_bad_endpoint_is_ejected_after_consecutive_5xx_and_returns_after_its_time() {
    let good1 = Echo::start("good1", &[]);
    let good2 = Echo::start("good2", &[]);
    let bad = Echo::start("bad", &["--status", "503"]);
    let config = service(&[(&good1, "v1"), (&bad, "v1"), (&good2, "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
[destinationRule.trafficPolicy]
loadBalancer = { simple = "ROUND_ROBIN" }
outlierDetection = { consecutive5xxErrors = 3, interval = "100ms", baseEjectionTime = "200ms", maxEjectionPercent = 100 }

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
route = [{ destination = { host = "echo" } }]
retries = { attempts = 0 }
"#;
    let p = Proxy::start(&config, &[]);
    let cluster = "outbound|80||echo";
    let mut errors = 0;
    let mut sent = 0;
    while errors < 3 {
        let r = p.get("/", &[]);
        if r.status == 503 {
            assert_eq!(r.echo(), "bad");
            errors += 1;
        }
        sent += 1;
        assert!(sent < 100, "the bad endpoint never answered three times");
    }
    // The third consecutive 503 ejected it, at once.
    p.proc.stderr.wait_for(&format!(
        "eject outbound|80||echo.default.svc.cluster.local {}",
        bad.addr
    ));
    assert_eq!(p.cluster_field(cluster, bad.addr, "rq_total"), "3");
    // While it stays ejected, it gets nothing.
    for _ in 0..10 {
        let ejected = p.cluster_field(cluster, bad.addr, "health_flags") == "/failed_outlier_check";
        let r = p.get("/", &[]);
        if ejected && p.cluster_field(cluster, bad.addr, "health_flags") == "/failed_outlier_check"
        {
            assert_eq!(r.status, 200);
            assert_eq!(p.cluster_field(cluster, bad.addr, "rq_total"), "3");
        }
    }
    // It returns on an interval tick after its ejection time...
    p.proc.stderr.wait_for(&format!(
        "return outbound|80||echo.default.svc.cluster.local {}",
        bad.addr
    ));
    // ...and gets traffic again (and, still bad, is ejected again).
    p.eventually("the returned endpoint gets requests", || {
        let _ = p.get("/", &[]);
        p.cluster_field(cluster, bad.addr, "rq_total") != "3"
    });
    assert!(
        p.admin("/stats")
            .body
            .contains("meshproxy_outlier_ejections_total")
    );
}

#[test]
fn the_circuit_breaker_overflows_under_concurrency_with_503_uo() {
    let slow = Echo::start("slow", &[]);
    let config = service(&[(&slow, "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { connectionPool = { tcp = { maxConnections = 1 }, http = { http1MaxPendingRequests = 1, maxRequestsPerConnection = 0 } } }
"#;
    let p = Proxy::start(&config, &[]);
    let addr = p.addr;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                get(addr, "/?delay=500ms", &[])
            })
        })
        .collect();
    let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let overflow: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(ok >= 1, "{answers:?}");
    assert!(!overflow.is_empty(), "no overflow: {answers:?}");
    assert_eq!(ok + overflow.len(), 10, "{answers:?}");
    for r in overflow {
        assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
    }
    p.proc.stdout.wait_for(" 503 UO ");
    assert!(
        p.admin("/stats")
            .body
            .contains("meshproxy_upstream_rq_overflow_total")
    );
}

#[test]
fn retries_reach_another_host() {
    let good = Echo::start("good", &[]);
    let bad = Echo::start("bad", &["--status", "503"]);
    let config = service(&[(&good, "v1"), (&bad, "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { loadBalancer = { simple = "ROUND_ROBIN" } }

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
route = [{ destination = { host = "echo" } }]
retries = { attempts = 3, retryOn = "5xx" }
"#;
    let p = Proxy::start(&config, &[]);
    for _ in 0..10 {
        let r = p.get("/", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.echo(), "good");
    }
    // Some requests went to the bad host first and were retried.
    p.proc.stdout.wait_for(" 2 \"echo\"");
    let tried_bad: u64 = p
        .cluster_field("outbound|80||echo", bad.addr, "rq_total")
        .parse()
        .unwrap();
    assert_ne!(tried_bad, 0);
    // Each attempt to the bad host was retried, and each retry succeeded.
    let cluster = format!(
        "{{listener=\"{}\",cluster=\"outbound|80||echo.default.svc.cluster.local\"}}",
        p.addr
    );
    assert_eq!(
        stat(
            &p,
            &format!("meshproxy_cluster_upstream_rq_retry_total{cluster}")
        ),
        tried_bad
    );
    assert_eq!(
        stat(
            &p,
            &format!("meshproxy_cluster_upstream_rq_retry_success_total{cluster}")
        ),
        tried_bad
    );
}

#[test]
fn a_route_timeout_answers_504_ut_and_leaves_fast_requests_alone() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
timeout = "300ms"
retries = { attempts = 0 }
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let p = Proxy::start(&config, &[]);
    let r = p.get("/?delay=5s", &[]);
    assert_eq!(r.status, 504);
    assert!(r.body.contains("upstream request timeout"), "{}", r.body);
    p.proc.stdout.wait_for(" 504 UT ");
    assert_eq!(p.get("/", &[]).status, 200);
    // The timed-out attempt's slot was freed.
    p.eventually("no request left active", || {
        p.admin("/stats")
            .body
            .contains("meshproxy_downstream_rq_active 0")
    });
}

#[test]
fn admin_endpoints_answer() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")]);
    let p = Proxy::start(&config, &[]);
    assert_eq!(p.get("/", &[]).status, 200);
    let ready = p.admin("/ready");
    assert_eq!((ready.status, ready.body.trim()), (200, "LIVE"));
    let stats = p.admin("/stats").body;
    assert!(
        stats.contains("meshproxy_downstream_rq_total{listener=")
            && stats.contains("status=\"200\""),
        "{stats}"
    );
    assert!(
        stats.contains(&format!("endpoint=\"{}\",class=\"2xx\"}} 1", a.addr)),
        "{stats}"
    );
    let clusters = p.admin("/clusters").body;
    assert!(
        clusters.contains(&format!(
            "outbound|80||echo.default.svc.cluster.local::{}::health_flags::healthy",
            a.addr
        )),
        "{clusters}"
    );
    assert_eq!(
        p.admin("/config_dump").body,
        std::fs::read_to_string(&p.config).unwrap()
    );
    assert_eq!(p.admin("/nope").status, 404);
    strict_prometheus(&stats);
}

/// Checks Prometheus text exposition strictly: every sample's family has a
/// `# HELP` and a `# TYPE` (counter or gauge) before it, a family's samples
/// are together, labels are `name="value"` pairs, values are numbers.
fn strict_prometheus(text: &str) {
    use std::collections::BTreeSet;
    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut done = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
            if let Some(prev) = current.replace(name.to_owned()) {
                done.insert(prev);
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line: {line:?}"
        );
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(typed.contains(name), "untyped family: {line}");
        assert!(!done.contains(name), "family {name} split: {line}");
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample out of its family: {line}"
        );
        let rest = &line[name_end..];
        let value = if let Some(labels) = rest.strip_prefix('{') {
            let close = labels.rfind('}').unwrap();
            for pair in labels[..close].split("\",") {
                let (k, v) = pair.split_once("=\"").expect(line);
                assert!(
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(!v.trim_end_matches('"').contains('\n'), "{line}");
            }
            labels[close + 1..].trim()
        } else {
            rest.trim()
        };
        value.parse::<f64>().expect(line);
    }
    assert!(!typed.is_empty());
}

/// A request refused after its head was read keeps its method, path and
/// authority in the access log, as Envoy logs `"POST /upload" 413 ... DPE`.
#[test]
fn a_refused_request_keeps_its_method_path_and_authority_in_the_access_log() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(
        &service(&[(&a, "v1")]),
        &["--access-log", "json", "--max-body-bytes", "10"],
    );
    let r = raw(
        p.addr,
        b"POST /upload HTTP/1.1\r\nHost: echo\r\nContent-Length: 100\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    let line = p.proc.stdout.wait_for("\"status\":413");
    for want in [
        "\"method\":\"POST\"",
        "\"path\":\"/upload\"",
        "\"authority\":\"echo\"",
        "\"flags\":\"DPE\"",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
}

#[test]
fn malformed_requests_get_400_and_do_not_disturb_other_connections() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &[]);
    let r = raw(p.addr, b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(r.status, 400);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: echo\r\nx-big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let r = raw(p.addr, huge.as_bytes());
    assert!(r.status == 431 || r.status == 400, "{}", r.status);
    assert_eq!(p.get("/", &[]).status, 200);
}

#[test]
fn slow_clients_are_cut_by_the_header_read_timeout() {
    use std::io::{Read, Write};
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--header-read-timeout", "200ms"]);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: ec").unwrap();
    let mut buf = Vec::new();
    // The proxy closes the connection (possibly with a 408) instead of
    // waiting forever.
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(p.get("/", &[]).status, 200);
}

#[test]
fn bad_config_files_exit_2_naming_file_line_and_field() {
    let dir = common::temp_dir("bad");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{ address = \"127.0.0.1:1\" }]\n\n[[destinationRule]]\nname = \"echo\"\nhost = \"echo\"\ntrafficPolicy = { outlierDetection = { interval = \"soon\" } }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:12:"), "{err}");
    assert!(err.contains("outlierDetection"), "{err}");

    std::fs::write(&path, "[[service]]\nname = \"echo\"\nport = 80\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[[listener]]"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .arg("--config")
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml: cannot read"));
}

#[test]
fn an_unreachable_endpoint_is_a_503_uf_connect_failure() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{port}\" }}]\n"
    );
    let p = Proxy::start(&config, &[]);
    let r = p.get("/", &[]);
    assert_eq!(r.status, 503);
    p.proc.stdout.wait_for(" 503 UF");
    let _ = Duration::ZERO;
}

#[test]
fn meshecho_answers_as_asked() {
    let e = Echo::start("e", &[]);
    let r = get(e.addr, "/?status=418&size=5&header=X-Test:ok", &[]);
    assert_eq!(r.status, 418);
    assert_eq!(r.body, "xxxxx");
    assert_eq!(r.header("x-test"), Some("ok"));
    assert_eq!(r.echo(), "e");
    assert_eq!(get(e.addr, "/?status=nope", &[]).status, 400);
    let late = Echo::start("late", &["--status", "503", "--after", "0s"]);
    assert_eq!(get(late.addr, "/", &[]).status, 503);
    assert_eq!(get(late.addr, "/?status=200", &[]).status, 200);
}

#[test]
fn a_fault_delay_holds_the_request_then_forwards_it_with_flag_di() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
fault = { delay = { fixedDelay = "100ms", percentage = { value = 100.0 } } }
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let p = Proxy::start(&config, &[]);
    let r = p.get("/", &[]);
    assert_eq!((r.status, r.echo()), (200, "v1"));
    p.proc.stdout.wait_for(" 200 DI ");
}

#[test]
fn sticky_weights_keep_each_user_on_one_version() {
    let (a, b) = two_versions();
    let config = service(&[(&a, "v1"), (&b, "v2")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
meshsimStickyWeights = { httpHeaderName = "x-user" }
route = [
  { destination = { host = "echo", subset = "v1" }, weight = 50 },
  { destination = { host = "echo", subset = "v2" }, weight = 50 },
]
"#);
    let p = Proxy::start(&config, &["--access-log", "off"]);
    let mut versions = std::collections::BTreeSet::new();
    for u in 0..16 {
        let user = format!("u{u}");
        let first = p.get("/", &[("x-user", &user)]).echo().to_owned();
        for _ in 0..3 {
            assert_eq!(
                p.get("/", &[("x-user", &user)]).echo(),
                first,
                "{user} flipped"
            );
        }
        versions.insert(first);
    }
    assert_eq!(
        versions.len(),
        2,
        "16 users all on one version: {versions:?}"
    );
}

#[test]
fn h2c_prior_knowledge_requests_are_served() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &[]);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "-H",
            "Host: echo",
            &format!("http://{}/", p.addr),
        ])
        .output()
        .expect("curl runs (apt-get install curl)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
}

/// HTTP/2 clients meet the limits of HTTP/1.1 ones: too many header
/// fields, or too many bytes of them, get 431 from the proxy itself (never
/// forwarded), with an access-log line, on a connection that stays usable.
#[test]
fn http2_requests_with_too_many_or_too_large_headers_get_431_from_the_proxy_and_a_log_line() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--access-log", "json"]);
    let many: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("x-h-{i}"), "v".to_owned()))
        .collect();
    let big = vec![("x-big".to_owned(), "b".repeat(100 << 10))];
    // One connection: each refused request, then one that passes on it.
    let statuses = h2_requests(
        p.addr,
        vec![
            ("/many", many),
            ("/after", Vec::new()),
            ("/big", big),
            ("/after", Vec::new()),
        ],
    );
    assert_eq!(statuses, [431, 200, 431, 200]);
    for name in ["many", "big"] {
        let line = p.proc.stdout.wait_for(&format!("\"path\":\"/{name}\""));
        for want in ["\"status\":431", "\"flags\":\"DPE\"", "\"method\":\"GET\""] {
            assert!(line.contains(want), "{want} not in {line}");
        }
    }
    // Nothing reached the upstream but the two requests after.
    let upstream = format!(
        "meshproxy_upstream_rq_total{{listener=\"{}\",cluster=\"outbound|80||echo.default.svc.cluster.local\",endpoint=\"{}\",class=\"2xx\"}}",
        p.addr, a.addr
    );
    assert_eq!(stat(&p, &upstream), 2);
}

/// An HTTP/2 client's cookie crumbs (one field per cookie) reach an
/// HTTP/1.1 upstream as one `cookie` field joined with "; " (RFC 9113
/// section 8.2.3), as Envoy forwards them.
#[test]
fn http2_cookie_crumbs_reach_an_http1_upstream_as_one_cookie_field() {
    let (up, heads) = scripted_upstream();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{up}\" }}]\n"
    );
    let p = Proxy::start(&config, &[]);
    let crumbs = vec![
        ("cookie".to_owned(), "a=1".to_owned()),
        ("x-keep".to_owned(), "k".to_owned()),
        ("cookie".to_owned(), "b=2".to_owned()),
    ];
    assert_eq!(h2_requests(p.addr, vec![("/crumbs", crumbs)]), [200]);
    let heads = heads.lock().unwrap();
    let h = heads
        .iter()
        .find(|h| h.starts_with("GET /crumbs HTTP/1.1\r\n"))
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(h.matches("\r\ncookie:").count(), 1, "{h}");
    assert!(h.contains("\r\ncookie: a=1; b=2\r\n"), "{h}");
    assert!(h.contains("\r\nx-keep: k\r\n"), "{h}");
}

/// `GET`s with these extra headers on one h2c connection (hyper's client):
/// the statuses.
fn h2_requests(
    addr: std::net::SocketAddr,
    requests: Vec<(&str, Vec<(String, String)>)>,
) -> Vec<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut statuses = Vec::new();
        for (path, headers) in requests {
            let mut req = hyper::Request::get(format!("http://echo{path}"));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let req = req
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let r = send
                .send_request(req)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            statuses.push(r.status().as_u16());
        }
        statuses
    })
}

fn stat(p: &Proxy, metric_prefix: &str) -> u64 {
    let body = p.admin("/stats").body;
    body.lines()
        .find(|l| l.starts_with(metric_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric_prefix} in:\n{body}"))
}

#[test]
fn connections_are_reused_up_to_max_requests_per_connection_and_closed_when_idle() {
    let a = Echo::start("v1", &[]);
    let reuse = service(&[(&a, "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { connectionPool = { http = { maxRequestsPerConnection = 3, idleTimeout = "1s" } } }
"#;
    // One worker: its pool (each worker has its own, as in Envoy).
    let p = Proxy::start(&reuse, &["--concurrency", "1"]);
    for _ in 0..9 {
        assert_eq!(p.get("/", &[]).status, 200);
    }
    // Nine sequential requests, three per connection.
    let cx = format!(
        "meshproxy_upstream_cx_total{{listener=\"{}\",cluster=\"outbound|80||echo.default.svc.cluster.local\",endpoint=\"{}\"}}",
        p.addr, a.addr
    );
    assert_eq!(stat(&p, &cx), 3);
    // A tenth request opens a fourth connection, which stays open idle...
    assert_eq!(p.get("/", &[]).status, 200);
    assert_eq!(stat(&p, &cx), 4);
    let active = format!(
        "meshproxy_cluster_cx_active{{listener=\"{}\",cluster=\"outbound|80||echo.default.svc.cluster.local\"}}",
        p.addr
    );
    assert_eq!(stat(&p, &active), 1);
    // ...until its idle timeout.
    p.eventually("the idle connection closes", || stat(&p, &active) == 0);
}

#[test]
fn an_upstream_that_closes_after_answering_is_not_a_reset() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &[]);
    for _ in 0..5 {
        let r = p.get("/?close=true", &[]);
        assert_eq!((r.status, r.echo()), (200, "v1"));
    }
    // Each answer closed its connection: five were opened.
    let cx = format!(
        "meshproxy_upstream_cx_total{{listener=\"{}\",cluster=\"outbound|80||echo.default.svc.cluster.local\",endpoint=\"{}\"}}",
        p.addr, a.addr
    );
    assert_eq!(stat(&p, &cx), 5);
    assert_eq!(p.get("/", &[]).status, 200);
}

#[test]
fn per_try_timeouts_are_retried_then_answered_504_ut_urx() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")])
        + &destination_rule("")
        + &vs(r#"
[[virtualService.http]]
retries = { attempts = 2, perTryTimeout = "200ms", retryOn = "5xx" }
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let p = Proxy::start(&config, &[]);
    let r = p.get("/?delay=10s", &[]);
    assert_eq!(r.status, 504);
    // Three attempts, each cut by its per-try timeout.
    p.proc.stdout.wait_for(" 504 UT,URX ");
    p.proc.stdout.wait_for(" 3 \"echo\"");
    assert_eq!(p.get("/", &[]).status, 200);
}

#[test]
fn a_per_try_timeout_starts_when_the_attempt_gets_its_connection() {
    // One connection: the second of two concurrent requests waits ~300 ms
    // for it, then takes ~300 ms on it. Its per-try timeout (400 ms) runs
    // only on the connection, as Envoy's starts at `onPoolReady`, so
    // neither request is cut or retried.
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")])
        + &destination_rule(
            r#"trafficPolicy = { connectionPool = { tcp = { maxConnections = 1 } } }"#,
        )
        + &vs(r#"
[[virtualService.http]]
retries = { attempts = 1, perTryTimeout = "400ms", retryOn = "5xx" }
route = [{ destination = { host = "echo", subset = "v1" } }]
"#);
    let p = Proxy::start(&config, &[]);
    let addr = p.addr;
    let callers: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(addr, "/?delay=300ms", &[]).status))
        .collect();
    let statuses: Vec<u16> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses, [200, 200]);
    // One attempt each, no flag.
    p.eventually("both answers logged", || {
        p.proc.stdout.count(" 200 - ") == 2
    });
    assert_eq!(
        p.proc.stdout.count(" 1 \"echo\""),
        2,
        "{:?}",
        p.proc.stdout.all()
    );
}

#[test]
fn the_json_access_log_has_one_object_per_request() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--access-log", "json"]);
    assert_eq!(p.get("/j?x=1", &[]).status, 200);
    let line = p.proc.stdout.wait_for("\"path\":\"/j?x=1\"");
    assert!(
        line.starts_with("{\"time\":\"") && line.ends_with('}'),
        "{line}"
    );
    assert!(line.contains("\"method\":\"GET\""), "{line}");
    assert!(line.contains("\"status\":200,\"flags\":\"\""), "{line}");
    assert!(
        line.contains(&format!("\"upstream\":\"{}\"", a.addr)),
        "{line}"
    );
    assert!(line.contains("\"attempts\":1}"), "{line}");
}

/// A scripted HTTP/1.1 upstream on a raw socket: answers each request by
/// its path (`/chunked`, `/http10`, `/garbage`, `/body` echoing the
/// request body) and records each request head it read.
fn scripted_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + length {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf[end + 4..end + 4 + length].to_vec();
                    buf.drain(..end + 4 + length);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    seen.lock().unwrap().push(head);
                    let (answer, close): (Vec<u8>, bool) = match path.as_str() {
                        "/chunked" => (
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
                            false,
                        ),
                        "/http10" => (b"HTTP/1.0 200 OK\r\n\r\nold".to_vec(), true),
                        "/listed" => (
                            b"HTTP/1.1 200 OK\r\nX-Up-Hop: 1\r\nConnection: x-up-hop\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                            false,
                        ),
                        "/garbage" => (b"HTTP/1.1 2x0 what\r\n\r\n".to_vec(), true),
                        // Closes without a byte of answer (FIN).
                        "/vanish" => (Vec::new(), true),
                        _ => {
                            let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                            a.extend_from_slice(&body);
                            (a, false)
                        }
                    };
                    if s.write_all(&answer).is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[test]
fn chunked_http_1_0_and_garbage_upstream_answers_are_framed_or_refused() {
    let (up, heads) = scripted_upstream();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{up}\" }}]\n{}",
        vs(
            "[[virtualService.http]]\nretries = { attempts = 0 }\nroute = [{ destination = { host = \"echo\" } }]"
        )
    );
    let p = Proxy::start(&config, &[]);
    let r = p.get("/chunked", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"));
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    let r = p.get("/http10", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "old"));
    let r = raw(
        p.addr,
        b"POST /body HTTP/1.1\r\nHost: echo\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "payload"));
    // A malformed answer is Envoy's protocol error: 502 UPE, and the proxy
    // serves on.
    let r = p.get("/garbage", &[]);
    assert_eq!(r.status, 502);
    assert!(
        r.body.trim_end().ends_with("reset reason: protocol error"),
        "{r:?}"
    );
    p.proc.stdout.wait_for("\"GET /garbage\" 502 UPE");
    // An upstream that closes its connection before any byte of answer is
    // Envoy's connection termination: 503 UC (HTTP/1.1 gives no RST_STREAM
    // to be a remote reset, UR).
    let r = p.get("/vanish", &[]);
    assert_eq!(r.status, 503);
    assert!(
        r.body
            .trim_end()
            .ends_with("reset reason: connection termination"),
        "{r:?}"
    );
    p.proc.stdout.wait_for("\"GET /vanish\" 503 UC");
    let r = p.get("/chunked", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"));
    // Every request went out with its attempt count and one length.
    let heads = heads.lock().unwrap();
    assert!(
        heads.iter().all(|h| h.contains("x-envoy-attempt-count: 1")),
        "{heads:?}"
    );
    let post = heads.iter().find(|h| h.starts_with("POST")).unwrap();
    assert_eq!(post.matches("content-length").count(), 1, "{post}");
}

#[test]
fn upstream_requests_carry_host_forwarded_for_and_the_route_header_operations() {
    let (up, heads) = scripted_upstream();
    let endpoints = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{up}\" }}]\n"
    );
    let plain = Proxy::start(&endpoints, &[]);
    let r = plain.get(
        "/plain?q=1",
        &[
            ("X-Keep", "k"),
            ("Keep-Alive", "timeout=5"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    );
    assert_eq!(r.status, 200);
    let ops = format!(
        "{endpoints}{}",
        vs(
            "[[virtualService.http]]\nheaders = { request = { set = { \"x-route\" = \"r1\" }, remove = [\"x-drop\"] } }\nroute = [{ destination = { host = \"echo\" } }]"
        )
    );
    let with_ops = Proxy::start(&ops, &[]);
    let r = with_ops.get("/ops", &[("X-Drop", "d"), ("X-Keep", "k")]);
    assert_eq!(r.status, 200);
    let heads = heads.lock().unwrap();
    let find = |prefix: &str| -> String {
        let h = heads.iter().find(|h| h.starts_with(prefix)).unwrap();
        h.to_ascii_lowercase()
    };
    // Without header operations: the request's own headers, hop-by-hop
    // ones removed, the client's address appended to X-Forwarded-For.
    let h = find("GET /plain?q=1 HTTP/1.1\r\n");
    assert!(h.contains("\r\nhost: echo\r\n"), "{h}");
    assert!(h.contains("\r\nx-keep: k\r\n"), "{h}");
    assert!(
        h.contains("\r\nx-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
        "{h}"
    );
    assert!(
        !h.contains("keep-alive") && !h.contains("connection"),
        "{h}"
    );
    // With them: set and removed as the route says.
    let h = find("GET /ops HTTP/1.1\r\n");
    assert!(h.contains("\r\nx-route: r1\r\n"), "{h}");
    assert!(h.contains("\r\nx-keep: k\r\n"), "{h}");
    assert!(!h.contains("x-drop"), "{h}");
    assert!(h.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{h}");
    assert!(h.contains("\r\nhost: echo\r\n"), "{h}");
}

/// Reads one response (head and `Content-Length` body) from a keep-alive
/// connection: (head, body).
fn read_response(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    common::read_response(s, buf).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_listener_serves_pipelined_chunked_continued_and_http_1_0_requests() {
    use std::io::{Read, Write};
    let (up, heads) = scripted_upstream();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{up}\" }}]\n"
    );
    let p = Proxy::start(&config, &[]);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut buf = Vec::new();
    // Two requests in one write: two answers, in order, each with a Date.
    s.write_all(
        b"POST /1 HTTP/1.1\r\nHost: echo\r\nContent-Length: 3\r\n\r\none\
          POST /2 HTTP/1.1\r\nHost: echo\r\nContent-Length: 3\r\n\r\ntwo",
    )
    .unwrap();
    for want in ["one", "two"] {
        let (head, body) = read_response(&mut s, &mut buf);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("\r\ndate: "), "{head}");
        assert_eq!(body, want);
    }
    // A chunked body goes upstream whole, with its length.
    s.write_all(
        b"POST /chunked-in HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s, &mut buf).1, "abcdefg");
    // Expect: 100-continue is answered before the body is sent.
    s.write_all(
        b"PUT /c HTTP/1.1\r\nHost: echo\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .unwrap();
    let (head, _) = read_response(&mut s, &mut buf);
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    s.write_all(b"body").unwrap();
    assert_eq!(read_response(&mut s, &mut buf).1, "body");
    // Both framings at once is refused, and the connection closed.
    s.write_all(
        b"POST /x HTTP/1.1\r\nHost: echo\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .unwrap();
    let (head, _) = read_response(&mut s, &mut buf);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0);
    let heads = heads.lock().unwrap();
    let chunked = heads
        .iter()
        .find(|h| h.starts_with("POST /chunked-in"))
        .unwrap();
    assert!(chunked.contains("content-length: 7"), "{chunked}");
    assert!(
        !chunked.to_ascii_lowercase().contains("transfer-encoding"),
        "{chunked}"
    );
    drop(heads);

    // HTTP/1.0: kept alive only when asked, and told so.
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET /a HTTP/1.0\r\nHost: echo\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, &mut buf);
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nconnection: keep-alive"),
        "{head}"
    );
    s.write_all(b"GET /b HTTP/1.0\r\nHost: echo\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, &mut buf);
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{head}"
    );
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0);
}

/// The `echo` service on `a` with a DestinationRule (no subsets) whose
/// `connectionPool.http` has these fields.
fn http_pool(a: &Echo, http: &str) -> String {
    service(&[(a, "v1")])
        + &format!(
            "\n[[destinationRule]]\nname = \"echo\"\nhost = \"echo\"\ntrafficPolicy = {{ connectionPool = {{ http = {{ {http} }} }} }}\n"
        )
}

/// An upstream that resets a request before answering, as Envoy's router
/// answers each reset reason: over HTTP/1.1 the connection closes, a
/// connection termination (503 `UC`); over HTTP/2 the stream is reset,
/// a remote reset (503 `UR`).
#[test]
fn an_upstream_reset_is_uc_over_http_1_1_and_ur_over_http_2() {
    let a = Echo::start("v1", &[]);
    let no_retry = vs(
        "[[virtualService.http]]\nretries = { attempts = 0 }\nroute = [{ destination = { host = \"echo\" } }]",
    );
    for (policy, flag, reason) in [
        (
            r#"h2UpgradePolicy = "DO_NOT_UPGRADE""#,
            "UC",
            "connection termination",
        ),
        (r#"h2UpgradePolicy = "UPGRADE""#, "UR", "remote reset"),
    ] {
        let p = Proxy::start(&(http_pool(&a, policy) + &no_retry), &[]);
        let r = p.get("/?reset=true", &[]);
        assert_eq!(r.status, 503, "{policy}: {r:?}");
        assert!(r.body.trim_end().ends_with(reason), "{policy}: {r:?}");
        p.proc
            .stdout
            .wait_for(&format!("\"GET /?reset=true\" 503 {flag} "));
        // The pool serves on.
        assert_eq!(p.get("/", &[]).status, 200);
    }
}

/// The value of `metric` for the `echo` service's cluster (the first line
/// of it with all of `labels`).
fn echo_stat(p: &Proxy, metric: &str, labels: &str) -> u64 {
    let body = p.admin("/stats").body;
    let cluster = "cluster=\"outbound|80||echo.default.svc.cluster.local\"";
    body.lines()
        .find(|l| l.starts_with(metric) && l.contains(cluster) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} {labels} in:\n{body}"))
}

/// `meshproxy_upstream_cx_total` of the `echo` service's cluster.
fn cx_total(p: &Proxy) -> u64 {
    echo_stat(p, "meshproxy_upstream_cx_total{", "")
}

/// `GET path` from `n` clients at once; their statuses and protocols.
fn concurrently(p: &Proxy, n: usize, path: &str) -> Vec<(u16, String)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let r = p.get(path, &[]);
                    let proto = r.header("x-meshecho-proto").unwrap_or("-").to_owned();
                    (r.status, proto)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn upstreams_are_spoken_to_in_http1_unless_the_rule_upgrades() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &[]);
    let r = p.get("/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-meshecho-proto"), Some("HTTP/1.1"));
    let p = Proxy::start(&http_pool(&a, r#"h2UpgradePolicy = "DO_NOT_UPGRADE""#), &[]);
    assert_eq!(p.get("/", &[]).header("x-meshecho-proto"), Some("HTTP/1.1"));
    let p = Proxy::start(&http_pool(&a, r#"h2UpgradePolicy = "UPGRADE""#), &[]);
    let r = p.get("/?status=418&header=x-a:b", &[]);
    assert_eq!(r.status, 418);
    assert_eq!(r.header("x-meshecho-proto"), Some("HTTP/2"));
    assert_eq!(r.echo(), "v1");
    assert_eq!(r.header("x-a"), Some("b"));
    assert!(r.header("date").is_some(), "{r:?}");
    // The request body goes up and comes back (meshecho echoes it).
    let body = "hello over h2";
    let r = raw(
        p.addr,
        format!(
            "POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!((r.status, r.body.as_str()), (200, body));
}

#[test]
fn concurrent_requests_share_one_http2_upstream_connection() {
    let a = Echo::start("v1", &[]);
    // One worker: its pool (each worker has its own, as in Envoy).
    let p = Proxy::start(
        &http_pool(&a, r#"h2UpgradePolicy = "UPGRADE""#),
        &["--concurrency", "1"],
    );
    let got = concurrently(&p, 16, "/?delay=500ms");
    assert!(
        got.iter().all(|(s, proto)| *s == 200 && proto == "HTTP/2"),
        "{got:?}"
    );
    assert_eq!(cx_total(&p), 1);
}

#[test]
fn http2_connections_open_only_when_the_others_have_no_stream_left() {
    let a = Echo::start("v1", &[]);
    // Two streams at once per connection: six requests at once need three.
    let p = Proxy::start(
        &http_pool(
            &a,
            r#"h2UpgradePolicy = "UPGRADE", maxConcurrentStreams = 2"#,
        ),
        &["--concurrency", "1"],
    );
    let got = concurrently(&p, 6, "/?delay=1s");
    assert!(got.iter().all(|(s, _)| *s == 200), "{got:?}");
    assert_eq!(cx_total(&p), 3);
    // maxRequestsPerConnection counts streams over a connection's life.
    let p = Proxy::start(
        &http_pool(
            &a,
            r#"h2UpgradePolicy = "UPGRADE", maxRequestsPerConnection = 2"#,
        ),
        &["--concurrency", "1"],
    );
    for _ in 0..5 {
        assert_eq!(p.get("/", &[]).header("x-meshecho-proto"), Some("HTTP/2"));
    }
    assert_eq!(cx_total(&p), 3);
}

#[test]
fn use_client_protocol_follows_the_client() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&http_pool(&a, "useClientProtocol = true"), &[]);
    assert_eq!(p.get("/", &[]).header("x-meshecho-proto"), Some("HTTP/1.1"));
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Host: echo",
            &format!("http://{}/", p.addr),
        ])
        .output()
        .expect("curl runs (apt-get install curl)");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("x-meshecho-proto: http/2\r\n"), "{head}");
    assert_eq!(p.get("/", &[]).header("x-meshecho-proto"), Some("HTTP/1.1"));
    // One connection of each protocol, counted together.
    assert_eq!(cx_total(&p), 2);
}

#[test]
fn an_upstream_closing_its_http2_connection_is_a_connection_termination() {
    // An upstream that accepts and closes at once, whatever it is sent.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{addr}\" }}]\n\n[[destinationRule]]\nname = \"echo\"\nhost = \"echo\"\ntrafficPolicy = {{ connectionPool = {{ http = {{ h2UpgradePolicy = \"UPGRADE\" }} }} }}\n"
    );
    let p = Proxy::start(&config, &[]);
    let r = p.get("/", &[]);
    // The whole connection went away, not one stream: Envoy's
    // ConnectionTermination, 503 UC.
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("connection termination"), "{r:?}");
    let failed = echo_stat(&p, "meshproxy_upstream_rq_total{", "class=\"failed\"");
    assert!(failed >= 1);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    use std::io::{Read, Write};
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--idle-timeout", "1s"]);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut buf = Vec::new();
    // Busy for 2 s (a request every 100 ms): the connection stays open
    // past its idle timeout.
    let start = std::time::Instant::now();
    let mut answered;
    loop {
        s.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
            .unwrap();
        let (head, _) = read_response(&mut s, &mut buf);
        // The proxy finished this request before this instant.
        answered = std::time::Instant::now();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        if start.elapsed() >= Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Then idle: the proxy closes it, a second after its last answer (no
    // answer on close, as Envoy's idle timeout), never before.
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert!(
        answered.elapsed() >= Duration::from_millis(900),
        "closed {:?} after the last answer",
        answered.elapsed()
    );
}

#[test]
fn fields_named_by_connection_are_not_forwarded_either_way() {
    let (up, heads) = scripted_upstream();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{up}\" }}]\n"
    );
    let p = Proxy::start(&config, &[]);
    let r = raw(
        p.addr,
        b"GET /listed HTTP/1.1\r\nHost: echo\r\nX-Hop: h\r\nX-Stay: s\r\nConnection: close, X-Hop\r\n\r\n",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    // RFC 9110 section 7.6.1: the upstream's `Connection: x-up-hop` makes
    // X-Up-Hop hop-by-hop, and the client's makes X-Hop so.
    assert_eq!(r.header("x-up-hop"), None, "{r:?}");
    assert_eq!(r.header("x-kept"), Some("2"), "{r:?}");
    let heads = heads.lock().unwrap();
    let h = heads.iter().find(|h| h.starts_with("GET /listed")).unwrap();
    let h = h.to_ascii_lowercase();
    assert!(!h.contains("x-hop"), "{h}");
    assert!(h.contains("\r\nx-stay: s\r\n"), "{h}");
    assert!(h.contains("\r\nhost: echo\r\n"), "{h}");
}

#[test]
fn requests_the_proxy_must_not_route_are_refused_and_hosts_are_the_routed_authority() {
    let (up, heads) = scripted_upstream();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [{{ address = \"{up}\" }}]\n"
    );
    let p = Proxy::start(&config, &[]);
    let status = |req: &[u8]| raw(p.addr, req).status;
    // RFC 9112 section 3.2: one Host, required in HTTP/1.1.
    assert_eq!(status(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), 400);
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: echo\r\nHost: other\r\nConnection: close\r\n\r\n"),
        400
    );
    // Codings other than chunked: 501; tunnels: 405.
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"),
        501
    );
    assert_eq!(
        status(b"CONNECT echo:443 HTTP/1.1\r\nHost: echo:443\r\nConnection: close\r\n\r\n"),
        405
    );
    // Absolute form: routed by, and sent with, the target's authority.
    let r = raw(
        p.addr,
        b"GET http://echo/abs HTTP/1.1\r\nHost: elsewhere\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let heads = heads.lock().unwrap();
    let h = heads.iter().find(|h| h.starts_with("GET /abs ")).unwrap();
    let h = h.to_ascii_lowercase();
    assert_eq!(h.matches("\r\nhost: ").count(), 1, "{h}");
    assert!(h.contains("\r\nhost: echo\r\n"), "{h}");
    assert!(
        h.contains("\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 127.0.0.1\r\n"),
        "{h}"
    );
    assert!(!h.contains("expect"), "{h}");
    drop(heads);
    // A target that is not ASCII is routed like any other (no panic).
    let e = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&e, "v1")]), &[]);
    let r = raw(
        p.addr,
        "GET /abcdeéx HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n".as_bytes(),
    );
    assert_eq!(r.status, 200);
}

/// `--concurrency 2`: client connections are spread over the two workers
/// (the one with the fewest open, ties in turn), and each worker has its
/// own upstream connection pool, as each Envoy worker has: sixteen
/// concurrent requests on sixteen connections open one HTTP/2 upstream
/// connection per worker.
#[test]
fn each_worker_serves_half_the_connections_with_its_own_pool() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(
        &http_pool(&a, r#"h2UpgradePolicy = "UPGRADE""#),
        &["--concurrency", "2"],
    );
    let got = concurrently(&p, 16, "/?delay=500ms");
    assert!(
        got.iter().all(|(s, proto)| *s == 200 && proto == "HTTP/2"),
        "{got:?}"
    );
    assert_eq!(stat(&p, "meshproxy_downstream_cx_total{worker=\"0\"}"), 8);
    assert_eq!(stat(&p, "meshproxy_downstream_cx_total{worker=\"1\"}"), 8);
    assert_eq!(cx_total(&p), 2);
}

/// Outlier detection is the cluster's, shared by the workers (Envoy's):
/// consecutive 5xx count across them. With `consecutive5xxErrors = 4`,
/// four sequential requests, each on a new connection and so on
/// alternate workers (two each), eject the endpoint at the fourth; a
/// detector per worker would have seen two.
#[test]
fn outlier_detection_counts_the_errors_of_every_worker() {
    let bad = Echo::start("bad", &["--status", "503"]);
    let good = Echo::start("good", &[]);
    let config = service(&[(&bad, "v1"), (&good, "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
[destinationRule.trafficPolicy]
loadBalancer = { simple = "ROUND_ROBIN" }
outlierDetection = { consecutive5xxErrors = 4, interval = "10s", baseEjectionTime = "30s", maxEjectionPercent = 100 }

[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
retries = { attempts = 0 }
route = [{ destination = { host = "echo" } }]
"#;
    let p = Proxy::start(&config, &["--concurrency", "2"]);
    let cluster = "outbound|80||echo.default.svc.cluster.local";
    let mut errors = 0;
    while errors < 4 {
        assert_eq!(
            p.cluster_field(cluster, bad.addr, "health_flags"),
            "healthy",
            "after {errors} errors"
        );
        if p.get("/", &[]).status == 503 {
            errors += 1;
        }
    }
    assert_eq!(
        p.cluster_field(cluster, bad.addr, "health_flags"),
        "/failed_outlier_check"
    );
    let w0 = stat(&p, "meshproxy_downstream_cx_total{worker=\"0\"}");
    let w1 = stat(&p, "meshproxy_downstream_cx_total{worker=\"1\"}");
    assert!(w0 >= 2 && w1 >= 2, "connections per worker: {w0}, {w1}");
    assert_eq!(stat(&p, "meshproxy_outlier_ejections_total"), 1);
}
