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

fn with(path: &'static str, headers: &'static [(&'static str, &'static str)]) -> Request<'static> {
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
    let either = r#"{ headers = { end-user = { exact = "jason" } } }, { uri = { prefix = "/b" } }"#;
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
        assert_eq!(e.route(f.route).unwrap().name, "default");
        assert_eq!(
            e.cluster_name(f.upstream.cluster),
            "outbound|9080||reviews.default.svc.cluster.local"
        );
        // The default route keeps Istio's default retry policy.
        assert_eq!(
            e.route(f.route).unwrap().retries,
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
        assert_eq!(a.route(f.route).unwrap().name, "default");
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
        assert_eq!(
            (e.route(r.route).unwrap().name.as_str(), r.status),
            (route, status)
        );
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
