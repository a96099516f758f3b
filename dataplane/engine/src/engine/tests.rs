//! The engine end to end: faults, weighted destinations, the balancers
//! as a proxy drives them (request, then response), hashing and
//! cookies, and reconfiguration.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::ResponseFlag;
use crate::tests::{config, engine, forward, pick, pick_subset, subset_of, warnings};

/// reviews with one endpoint per version, subsets v1..v3, plus `extra`.
fn mesh(extra: &str) -> String {
    crate::tests::three_versions(extra)
}

/// A service `svc` with `n` endpoints 10.1.0.1.. (with weights if
/// given) and a DestinationRule with this load balancer.
fn pool(n: usize, weights: Option<&[u32]>, lb: &str) -> String {
    let endpoints: Vec<String> = (0..n)
        .map(|i| match weights {
            Some(w) => format!(
                "  {{ address = \"10.1.0.{}:80\", weight = {} }},",
                i + 1,
                w[i]
            ),
            None => format!("  {{ address = \"10.1.0.{}:80\" }},", i + 1),
        })
        .collect();
    format!(
        r#"
[[service]]
name = "svc"
port = 80
endpoints = [
{}
]

[[destinationRule]]
name = "svc"
host = "svc"
trafficPolicy = {{ loadBalancer = {{ {lb} }} }}
"#,
        endpoints.join("\n")
    )
}

fn all_active(e: &Engine) -> u32 {
    e.clusters
        .iter()
        .flat_map(|c| &c.hosts)
        .map(|h| h.active_requests)
        .sum()
}

fn active_by_address(e: &Engine, cluster: &str) -> BTreeMap<String, u32> {
    let c = e
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .expect("cluster");
    c.hosts
        .iter()
        .map(|h| (h.address.to_string(), h.active_requests))
        .collect()
}

fn tally<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

fn req() -> Request<'static> {
    Request::get("reviews", "/")
}

const JASON: [(&str, &str); 1] = [("end-user", "jason")];

fn fault_vs(fault: &str) -> String {
    mesh(&format!(
        r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
match = [{{ headers = {{ end-user = {{ exact = "jason" }} }} }}]
fault = {fault}
route = [{{ destination = {{ host = "reviews", subset = "v2" }} }}]
[[virtualService.http]]
route = [{{ destination = {{ host = "reviews", subset = "v1" }} }}]
"#
    ))
}

#[test]
fn abort_100_percent_rejects_with_the_status_and_touches_no_endpoint() {
    let mut e = engine(&fault_vs(
        "{ abort = { httpStatus = 503, percentage = { value = 100.0 } } }",
    ));
    // One request in flight elsewhere, to see that nothing else moves.
    let other = forward(&mut e, &req());
    assert_eq!(all_active(&e), 1);
    let jason = req().with_headers(&JASON);
    for _ in 0..1000 {
        let Decision::Reject(r) = e.handle_request(&jason, Time::ZERO) else {
            panic!("not aborted")
        };
        assert_eq!(r.reason, RejectReason::FaultAbort);
        assert_eq!(r.status, 503);
        assert_eq!(r.flag(), ResponseFlag::FaultInjected);
        assert_eq!(r.delay, None);
        assert_eq!(
            e.route(r.route.expect("a route")).unwrap().name,
            "reviews.0"
        );
    }
    assert_eq!(all_active(&e), 1);
    assert_eq!(e.active_requests(other.upstream), 1);
    // Other users are not affected.
    assert_eq!(pick(&mut e, &req()), "10.0.0.1:9080");
}

#[test]
fn abort_without_percentage_never_aborts() {
    let vs = fault_vs("{ abort = { httpStatus = 503 } }");
    let w = warnings(&vs);
    assert!(
        w.iter().any(|w| w
            .to_string()
            .contains("virtualService[reviews].http[0].fault.abort")),
        "{w:?}"
    );
    let mut e = engine(&vs);
    let jason = req().with_headers(&JASON);
    for _ in 0..2000 {
        assert_eq!(pick(&mut e, &jason), "10.0.0.2:9080");
    }
}

#[test]
fn delay_without_percentage_never_delays() {
    let mut e = engine(&fault_vs("{ delay = { fixedDelay = \"7s\" } }"));
    for _ in 0..2000 {
        assert_eq!(forward(&mut e, &req().with_headers(&JASON)).delay, None);
    }
}

#[test]
fn delay_100_percent_forwards_with_the_delay() {
    let mut e = engine(&fault_vs(
        "{ delay = { fixedDelay = \"7s\", percentage = { value = 100.0 } } }",
    ));
    let r = req().with_headers(&JASON);
    let Decision::Delay(d) = e.handle_request(&r, Time::ZERO) else {
        panic!("not delayed")
    };
    assert_eq!(d.delay, Duration::from_secs(7));
    // Envoy's router has not run yet: no host is chosen during the delay.
    assert_eq!(all_active(&e), 0);
    let Decision::Forward(f) = e.handle_delayed(&r, d, Time::from_secs(7)) else {
        panic!("not forwarded after the delay")
    };
    assert_eq!(f.delay, Some(Duration::from_secs(7)));
    assert_eq!(e.endpoint_address(f.upstream), "10.0.0.2:9080");
    assert!(
        e.describe(&Decision::Forward(f))
            .contains("delay=7s flag=DI")
    );
    let Decision::Forward(g) = e.handle_request(&req(), Time::from_secs(7)) else {
        panic!("not forwarded")
    };
    assert_eq!(g.delay, None);
}

#[test]
fn delay_and_abort_both_hit_reject_with_the_delay_set() {
    let mut e = engine(&fault_vs(
        r#"{ delay = { fixedDelay = "2s", percentage = { value = 100.0 } }, abort = { httpStatus = 500, percentage = { value = 100.0 } } }"#,
    ));
    let rq = req().with_headers(&JASON);
    let Decision::Delay(d) = e.handle_request(&rq, Time::ZERO) else {
        panic!("not delayed")
    };
    // The abort is decided after the delay, as Envoy's fault filter does.
    let Decision::Reject(r) = e.handle_delayed(&rq, d, Time::from_secs(2)) else {
        panic!("not aborted")
    };
    assert_eq!(
        (r.reason, r.status, r.delay),
        (RejectReason::FaultAbort, 500, Some(Duration::from_secs(2)))
    );
    assert_eq!(all_active(&e), 0);
}

#[test]
fn fault_percentages_are_honoured_per_request() {
    let mut e = engine(&fault_vs(
        r#"{ delay = { fixedDelay = "1s", percentage = { value = 30.0 } }, abort = { httpStatus = 500, percentage = { value = 20.0 } } }"#,
    ));
    const N: usize = 20_000;
    let (mut delayed, mut aborted) = (0, 0);
    for _ in 0..N {
        let rq = req().with_headers(&JASON);
        let d = match e.handle_request(&rq, Time::ZERO) {
            Decision::Delay(d) => e.handle_delayed(&rq, d, Time::ZERO),
            other => other,
        };
        match d {
            Decision::Delay(_) => unreachable!(),
            Decision::Reject(r) => {
                aborted += 1;
                delayed += usize::from(r.delay.is_some());
            }
            Decision::Forward(f) => {
                delayed += usize::from(f.delay.is_some());
                let admitted = e.admit(f.upstream, true, false, Time::ZERO);
                assert_eq!(admitted, crate::Admission::Attach);
                e.handle_response(f.upstream, Outcome::Status(200), Time::ZERO);
            }
            Decision::Respond(_) => unreachable!(),
        }
    }
    let share = |n: usize| n as f64 / N as f64;
    assert!((share(delayed) - 0.30).abs() < 0.02, "{delayed}");
    assert!((share(aborted) - 0.20).abs() < 0.02, "{aborted}");
}

fn split(weights: [u32; 3]) -> String {
    mesh(&format!(
        r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [
  {{ destination = {{ host = "reviews", subset = "v1" }}, weight = {} }},
  {{ destination = {{ host = "reviews", subset = "v2" }}, weight = {} }},
  {{ destination = {{ host = "reviews", subset = "v3" }}, weight = {} }},
]
"#,
        weights[0], weights[1], weights[2]
    ))
}

#[test]
fn weighted_split_is_within_one_percent_of_the_weights() {
    const N: usize = 100_000;
    let mut e = engine(&split([60, 30, 10]));
    let counts = tally((0..N).map(|_| pick_subset(&mut e, &req())));
    for (subset, weight) in [("v1", 0.60), ("v2", 0.30), ("v3", 0.10)] {
        let share = counts[subset] as f64 / N as f64;
        assert!((share - weight).abs() < 0.01, "{subset}: {share}");
    }
}

#[test]
fn weight_zero_destinations_are_never_chosen() {
    let mut e = engine(&split([50, 0, 50]));
    let counts = tally((0..10_000).map(|_| pick_subset(&mut e, &req())));
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["v1", "v3"]);
    // Relative weights (Istio ≥ 1.15): 1/0/3.
    let mut e = engine(&split([1, 0, 3]));
    let counts = tally((0..10_000).map(|_| pick_subset(&mut e, &req())));
    assert!(!counts.contains_key("v2"));
    assert!((2_200..=2_800).contains(&counts["v1"]), "{counts:?}");
}

#[test]
fn an_unknown_host_is_rejected_503_no_cluster() {
    let toml = mesh(
        r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "nosuch" } }]
"#,
    );
    assert!(warnings(&toml).iter().any(|w| {
        w.to_string()
            .contains("virtualService[reviews].http[0].route[0].destination.host")
    }),);
    let mut e = engine(&toml);
    let Decision::Reject(r) = e.handle_request(&req(), Time::ZERO) else {
        panic!("routed to a host that does not exist")
    };
    assert_eq!((r.reason, r.status), (RejectReason::NoCluster, 503));
    assert_eq!(r.flag(), ResponseFlag::NoClusterFound);
    assert!(r.route.is_some());
}

/// Answers a forward with a 200.
fn answer(e: &mut Engine, f: &Forward, now: Time) {
    assert_eq!(
        e.admit(f.upstream, true, false, now),
        crate::Admission::Attach
    );
    e.handle_response(f.upstream, Outcome::Status(200), now);
}

#[test]
fn a_subset_no_destination_rule_defines_is_drawn_by_weight_and_answered_503_no_cluster() {
    // 90 % to v1, 10 % to `second`; v9 is in no DestinationRule.
    let split_to = |second: &str| {
        mesh(&format!(
            r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [
  {{ destination = {{ host = "reviews", subset = "v1" }}, weight = 90 }},
  {{ destination = {{ host = "reviews", subset = "{second}" }}, weight = 10 }},
]
"#
        ))
    };
    assert_eq!(warnings(&split_to("v9")).len(), 1);
    // The same seed draws the same destinations: the request that the
    // engine with v3 sends to v3 is the one the engine without v9
    // answers 503 NC, without a host, a breaker slot or an event.
    let (mut missing, mut present) = (engine(&split_to("v9")), engine(&split_to("v3")));
    let mut nc = 0;
    for _ in 0..10_000 {
        let a = missing.handle_request(&req(), Time::ZERO);
        let b = present.handle_request(&req(), Time::ZERO);
        match (a, b) {
            (Decision::Reject(r), Decision::Forward(f)) => {
                assert_eq!((r.reason, r.status), (RejectReason::NoCluster, 503));
                assert_eq!(r.flag(), ResponseFlag::NoClusterFound);
                assert_eq!(r.delay, None);
                assert_eq!(missing.route(r.route.unwrap()).unwrap().name, "reviews.0");
                assert_eq!(subset_of(present.cluster_name(f.upstream.cluster)), "v3");
                answer(&mut present, &f, Time::ZERO);
                nc += 1;
            }
            (Decision::Forward(fa), Decision::Forward(fb)) => {
                assert_eq!(subset_of(missing.cluster_name(fa.upstream.cluster)), "v1");
                assert_eq!(subset_of(present.cluster_name(fb.upstream.cluster)), "v1");
                answer(&mut missing, &fa, Time::ZERO);
                answer(&mut present, &fb, Time::ZERO);
            }
            (a, b) => panic!("{} / {}", missing.describe(&a), present.describe(&b)),
        }
    }
    assert!((900..=1_100).contains(&nc), "{nc} of 10000 answered NC");
    assert_eq!(all_active(&missing), 0);
    assert_eq!(missing.poll_event(), None);
}

#[test]
fn a_virtual_service_pushed_before_its_destination_rule_answers_503_nc_until_the_rule_arrives() {
    // Every request is held 1 s by a fault delay, so one request is
    // held across the push.
    let vs = r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
fault = { delay = { fixedDelay = "1s", percentage = { value = 100.0 } } }
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#;
    let with_rule = mesh(vs);
    // The same config without its DestinationRule (the last table
    // before the VirtualService, ending with the subsets' `]`).
    let (head, tail) = with_rule.split_once("[[destinationRule]]").unwrap();
    let early = format!("{head}{}", tail.split_once("\n]\n").unwrap().1);
    assert!(!early.contains("destinationRule"), "{early}");
    let mut e = engine(&early);
    let held = |e: &mut Engine, at: Time| match e.handle_request(&req(), at) {
        Decision::Delay(d) => {
            assert_eq!(d.delay, Duration::from_secs(1));
            d
        }
        other => panic!("{}", e.describe(&other)),
    };
    // Before the push: 503 NC once the delay is over.
    let d = held(&mut e, Time::ZERO);
    let Decision::Reject(r) = e.handle_delayed(&req(), d, Time::from_secs(1)) else {
        panic!("routed to a subset that does not exist")
    };
    assert_eq!((r.reason, r.status), (RejectReason::NoCluster, 503));
    assert_eq!(r.delay, Some(Duration::from_secs(1)));
    // Held at 9.5 s, the DestinationRule arrives at 10 s, the delay ends
    // at 10.5 s: Envoy's router finds the cluster by name.
    let d = held(&mut e, Time::from_millis(9_500));
    e.reconfigure(Arc::new(config(&with_rule)), Time::from_secs(10));
    assert_eq!(
        e.poll_event(),
        Some((
            Time::from_secs(10),
            EngineEvent::ConfigApplied {
                clusters: 4,
                routes: 1
            }
        ))
    );
    let f = match e.handle_delayed(&req(), d, Time::from_millis(10_500)) {
        Decision::Forward(f) => f,
        other => panic!("{}", e.describe(&other)),
    };
    assert_eq!(
        e.cluster_name(f.upstream.cluster),
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    answer(&mut e, &f, Time::from_millis(10_500));
    // A request routed after the push goes to v1 too.
    let d = held(&mut e, Time::from_millis(10_500));
    let f = match e.handle_delayed(&req(), d, Time::from_millis(11_500)) {
        Decision::Forward(f) => f,
        other => panic!("{}", e.describe(&other)),
    };
    assert_eq!(e.endpoint_address(f.upstream), "10.0.0.1:9080");
    answer(&mut e, &f, Time::from_millis(11_500));
    assert_eq!(all_active(&e), 0);
}

#[test]
fn a_subset_without_endpoints_is_rejected_503_no_healthy_upstream() {
    // Subset v3 selects version v9, which no endpoint has.
    let toml = mesh(
        r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "reviews", subset = "v3" } }]
"#,
    )
    .replace(
        r#"{ name = "v3", labels = { version = "v3" } },"#,
        r#"{ name = "v3", labels = { version = "v9" } },"#,
    );
    let mut e = engine(&toml);
    let Decision::Reject(r) = e.handle_request(&req(), Time::ZERO) else {
        panic!("an empty subset cannot forward")
    };
    assert_eq!((r.reason, r.status), (RejectReason::NoHealthyUpstream, 503));
    assert_eq!(r.flag(), ResponseFlag::NoHealthyUpstream);
}

#[test]
fn round_robin_gives_each_endpoint_exactly_k_of_k_times_n() {
    let mut e = engine(&pool(4, None, "simple = \"ROUND_ROBIN\""));
    let r = Request::get("svc", "/");
    for k in [1, 25] {
        let counts = tally((0..4 * k).map(|_| pick(&mut e, &r)));
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|&c| c == k), "{counts:?}");
    }
}

#[test]
fn round_robin_with_endpoint_weights_is_proportional_over_each_edf_cycle() {
    let weights = [1, 2, 3, 4];
    let mut e = engine(&pool(4, Some(&weights), "simple = \"ROUND_ROBIN\""));
    let r = Request::get("svc", "/");
    let cycle: u32 = weights.iter().sum();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for cycles in 1..=20 {
        for _ in 0..cycle {
            *counts.entry(pick(&mut e, &r)).or_default() += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let got = counts
                .get(&format!("10.1.0.{}:80", i + 1))
                .copied()
                .unwrap_or(0);
            assert!(got.abs_diff(w * cycles) <= 1, "cycle {cycles}: {counts:?}");
        }
    }
}

#[test]
fn least_request_chooses_the_idle_endpoint_three_times_in_four() {
    // Istio's default policy. Load one endpoint with requests that are
    // never answered; then answer every measured request at once, so
    // the loads stay (busy, 0). P2C draws twice with replacement and
    // keeps the strictly less loaded: the busy endpoint wins only if
    // both draws hit it, 1/2 · 1/2 = 1/4; the idle one 3/4.
    let mut e = engine(&pool(2, None, "simple = \"LEAST_REQUEST\""));
    let r = Request::get("svc", "/");
    let busy = forward(&mut e, &r).upstream;
    for _ in 0..200 {
        let f = forward(&mut e, &r);
        if f.upstream != busy {
            let admitted = e.admit(f.upstream, true, false, Time::ZERO);
            assert_eq!(admitted, crate::Admission::Attach);
            e.handle_response(f.upstream, Outcome::Status(200), Time::ZERO);
        }
    }
    assert!(e.active_requests(busy) > 1);
    let busy_address = e.endpoint_address(busy).to_owned();
    const DRAWS: usize = 10_000;
    let to_busy = (0..DRAWS)
        .filter(|_| pick(&mut e, &r) == busy_address)
        .count();
    let share = to_busy as f64 / DRAWS as f64;
    // σ = sqrt(0.25 · 0.75 / 10,000) ≈ 0.0043; the bounds are ±7σ.
    assert!((0.22..=0.28).contains(&share), "busy share {share}");
}

const HEADER_RING: &str =
    "consistentHash = { httpHeaderName = \"x-user\", ringHash = { minimumRingSize = 1024 } }";
const HEADER_MAGLEV: &str =
    "consistentHash = { httpHeaderName = \"x-user\", maglev = { tableSize = 65537 } }";

fn user_pick(e: &mut Engine, user: &str) -> String {
    let h = [("x-user", user)];
    pick(e, &Request::get("svc", "/").with_headers(&h))
}

#[test]
fn consistent_hash_sends_the_same_key_to_the_same_endpoint() {
    for lb in [
        HEADER_RING,
        HEADER_MAGLEV,
        "consistentHash = { httpHeaderName = \"x-user\" }",
    ] {
        let mut e = engine(&pool(5, None, lb));
        let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
        let first: Vec<String> = users.iter().map(|u| user_pick(&mut e, u)).collect();
        for _ in 0..3 {
            for (u, want) in users.iter().zip(&first).rev() {
                assert_eq!(&user_pick(&mut e, u), want, "{lb}: {u}");
            }
        }
        // A second engine (another proxy, another seed) agrees: the
        // placement depends only on the key and the endpoints.
        let mut other = Engine::new(
            Arc::new(config(&pool(5, None, lb))),
            ProxySpec::sidecar("default", &[]),
            99,
        );
        for (u, want) in users.iter().zip(&first) {
            assert_eq!(&user_pick(&mut other, u), want);
        }
        assert_eq!(tally(first.iter()).len(), 5, "{lb}");
    }
}

#[test]
fn consistent_hash_without_the_key_places_at_random() {
    let mut e = engine(&pool(5, None, HEADER_RING));
    let r = Request::get("svc", "/");
    let f = forward(&mut e, &r);
    assert_eq!(f.hash, None);
    let counts = tally((0..1000).map(|_| pick(&mut e, &r)));
    assert_eq!(counts.len(), 5, "{counts:?}");
}

#[test]
fn removing_one_of_ten_endpoints_remaps_about_a_tenth_of_the_keys_on_a_ring() {
    // Ring hash over N = 10 equal hosts: ceil(1024/10) = 103 entries
    // each. Without one host, 9 hosts get ceil(1024/9) = 114 each.
    // - Keys of the removed host (≈ 1/N = 10 %) must all move.
    // - Every survivor gains 11 entries (99 new entries in a ring of
    //   1026), and a key whose arc now ends at a new entry of another
    //   host moves too: at most ≈ 99/1026 ≈ 9.6 % of the ring, less the
    //   new entries that land next to their own host.
    // Total ≈ 10 % + up to ≈ 9 %, so between 5 % and 25 % moved, with
    // margin for the sampling noise of 10,000 keys (σ ≈ 0.4 %).
    const KEYS: usize = 10_000;
    let before = pool(10, None, HEADER_RING);
    let after = before.replace("  { address = \"10.1.0.4:80\" },\n", "");
    assert_ne!(before, after);
    let (mut e1, mut e2) = (engine(&before), engine(&after));
    let mut moved = 0;
    let mut on_removed = 0;
    for i in 0..KEYS {
        let u = format!("user-{i}");
        let (a, b) = (user_pick(&mut e1, &u), user_pick(&mut e2, &u));
        assert_ne!(b, "10.1.0.4:80");
        if a == "10.1.0.4:80" {
            on_removed += 1;
            assert_ne!(a, b, "keys on the removed host must move");
        }
        if a != b {
            moved += 1;
        }
    }
    let share = |n: usize| n as f64 / KEYS as f64;
    assert!((0.05..=0.15).contains(&share(on_removed)), "{on_removed}");
    assert!((0.05..=0.25).contains(&share(moved)), "{moved} moved");
    assert!(share(moved - on_removed) < 0.12, "{moved} / {on_removed}");
}

fn cookie_mesh(cookie: &str) -> String {
    pool(
        5,
        None,
        &format!("consistentHash = {{ httpCookie = {cookie} }}"),
    )
}

/// A request on one downstream connection (the generated cookie is
/// derived from its two addresses).
fn from_client<'a>(headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request {
        source: Some("10.9.0.1:40000".parse().unwrap()),
        destination: Some("10.96.0.10:80".parse().unwrap()),
        ..Request::get("svc", "/")
    }
    .with_headers(headers)
}

fn is_hex16(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn a_cookie_with_a_ttl_is_generated_and_set_when_absent() {
    let mut e = engine(&cookie_mesh(
        r#"{ name = "session", path = "/", ttl = "3600s" }"#,
    ));
    let f = forward(&mut e, &from_client(&[]));
    assert!(f.set_cookie.is_some());
    let header = e.set_cookie_header(&f).expect("a Set-Cookie");
    let value = header
        .strip_prefix("session=\"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(v, rest)| {
            assert_eq!(rest, "; Max-Age=3600; Path=/; HttpOnly");
            v.to_owned()
        })
        .unwrap_or_else(|| panic!("{header}"));
    assert!(is_hex16(&value), "{header}");
    assert!(
        e.describe(&Decision::Forward(f))
            .contains("set-cookie=session=")
    );
    // The same connection gets the same cookie (and endpoint).
    let again = forward(&mut e, &from_client(&[]));
    assert_eq!(again.set_cookie, f.set_cookie);
    assert_eq!(again.upstream, f.upstream);
    // Sent back, the cookie hashes to the same value: same endpoint,
    // and no new cookie.
    let cookie = format!("session=\"{value}\"");
    let headers = [("cookie", cookie.as_str())];
    let back = forward(&mut e, &from_client(&headers));
    assert_eq!(back.set_cookie, None);
    assert_eq!(back.hash, f.hash);
    assert_eq!(back.upstream, f.upstream);
}

#[test]
fn a_cookie_with_ttl_zero_is_a_session_cookie() {
    let mut e = engine(&cookie_mesh(r#"{ name = "s", path = "/", ttl = "0s" }"#));
    let f = forward(&mut e, &from_client(&[]));
    let header = e.set_cookie_header(&f).expect("a Set-Cookie");
    assert!(header.starts_with("s=\""), "{header}");
    assert!(header.ends_with("\"; Path=/; HttpOnly"), "{header}");
    assert!(!header.contains("Max-Age"), "{header}");
    // Without a path there is no Path attribute.
    let mut e = engine(&cookie_mesh(r#"{ name = "s", ttl = "10s" }"#));
    let f = forward(&mut e, &from_client(&[]));
    let header = e.set_cookie_header(&f).unwrap();
    assert!(header.ends_with("\"; Max-Age=10; HttpOnly"), "{header}");
}

#[test]
fn a_cookie_without_ttl_is_never_generated_and_placement_is_random() {
    let mut e = engine(&cookie_mesh(r#"{ name = "session" }"#));
    let f = forward(&mut e, &from_client(&[]));
    assert_eq!((f.set_cookie, f.hash), (None, None));
    assert_eq!(e.set_cookie_header(&f), None);
    let counts = tally((0..500).map(|_| pick(&mut e, &from_client(&[]))));
    assert_eq!(counts.len(), 5, "{counts:?}");
    // With the cookie, placement is sticky again.
    let with = from_client(&[("cookie", "session=abc")]);
    let first = pick(&mut e, &with);
    assert!((0..50).all(|_| pick(&mut e, &with) == first));
}

#[test]
fn reconfigure_emits_config_applied_and_keeps_active_counts_of_endpoints_that_stay() {
    let before = pool(3, None, "simple = \"ROUND_ROBIN\"");
    let mut e = engine(&before);
    let r = Request::get("svc", "/");
    // Two requests in flight to every endpoint, never answered.
    for _ in 0..6 {
        let _ = forward(&mut e, &r);
    }
    let cluster = "outbound|80||svc.default.svc.cluster.local";
    assert_eq!(
        active_by_address(&e, cluster).values().collect::<Vec<_>>(),
        [&2, &2, &2]
    );
    assert_eq!(e.poll_event(), None);

    // 10.1.0.2 leaves, 10.1.0.9 arrives, and a VirtualService appears.
    let after = before.replace(
        "  { address = \"10.1.0.2:80\" },",
        "  { address = \"10.1.0.9:80\" },",
    ) + r#"
[[virtualService]]
name = "svc"
hosts = ["svc"]
[[virtualService.http]]
route = [{ destination = { host = "svc" } }]
"#;
    let now = Time::from_secs(5);
    e.reconfigure(Arc::new(config(&after)), now);
    assert_eq!(
        e.poll_event(),
        Some((
            now,
            EngineEvent::ConfigApplied {
                clusters: 1,
                routes: 1
            }
        ))
    );
    assert_eq!(e.poll_event(), None);
    let active = active_by_address(&e, cluster);
    assert_eq!(active["10.1.0.1:80"], 2);
    assert_eq!(active["10.1.0.3:80"], 2);
    assert_eq!(active["10.1.0.9:80"], 0);
    assert!(!active.contains_key("10.1.0.2:80"));
    // The new config is in force.
    let Decision::Forward(f) = e.handle_request(&r, now) else {
        panic!()
    };
    assert_eq!(e.route(f.route).unwrap().name, "svc.0");
    assert_eq!(e.config().virtual_services.len(), 1);
}

/// A config of `svc` (3 endpoints, the third one changing with `round`)
/// whose `/slow` route is delayed and whose routes retry 5xx.
fn churning(round: usize) -> Arc<Config> {
    let base = pool(3, None, "simple = \"ROUND_ROBIN\"");
    let text = base.replace(
        "  { address = \"10.1.0.3:80\" },",
        &format!("  {{ address = \"10.1.1.{}:80\" }},", round % 4),
    ) + r#"
[[virtualService]]
name = "svc"
hosts = ["svc"]
[[virtualService.http]]
match = [{ uri = { prefix = "/slow" } }]
fault = { delay = { fixedDelay = "1s", percentage = { value = 100 } } }
retries = { attempts = 2, retryOn = "5xx" }
route = [{ destination = { host = "svc" } }]
[[virtualService.http]]
retries = { attempts = 2, retryOn = "5xx" }
route = [{ destination = { host = "svc" } }]
"#;
    Arc::new(config(&text))
}

/// 10,000 pushes with requests in flight across them (forwarded, retried,
/// delayed, abandoned in their delay): the engine keeps only the routing
/// of generations a request still holds, and every request still ends
/// cleanly — no active request, breaker slot or retry left over.
#[test]
fn ten_thousand_pushes_under_load_keep_the_retained_generations_bounded() {
    let configs: Vec<Arc<Config>> = (0..4).map(churning).collect();
    let mut e = Engine::new(configs[0].clone(), ProxySpec::default(), 7);
    let (fast, slow) = (Request::get("svc", "/"), Request::get("svc", "/slow"));
    // In flight: forwarded requests with their state; delayed requests.
    let mut flying: VecDeque<(Forward, RequestState)> = VecDeque::new();
    let mut delayed: VecDeque<Delay> = VecDeque::new();
    let mut most = 0;
    for round in 1..=10_000usize {
        let now = Time::from_millis(round as u64 * 10);
        e.reconfigure(configs[round % 4].clone(), now);
        most = most.max(e.retained_generations());
        // A new request, and one delayed every other push.
        if let Decision::Forward(f) = e.handle_request(&fast, now) {
            assert_eq!(
                e.admit(f.upstream, true, false, now),
                crate::Admission::Attach
            );
            let s = e.start_request(&f, now);
            flying.push_back((f, s));
        }
        if round % 2 == 0 {
            let Decision::Delay(d) = e.handle_request(&slow, now) else {
                panic!("the /slow route delays every request")
            };
            delayed.push_back(d);
        }
        // A delay ends after 3 pushes (every fifth is given up instead).
        if delayed.len() > 3 {
            let d = delayed.pop_front().unwrap();
            if round % 5 == 0 {
                e.abandon_delay(d, now);
            } else if let Decision::Forward(f) = e.handle_delayed(&slow, d, now) {
                assert_eq!(
                    e.admit(f.upstream, true, false, now),
                    crate::Admission::Attach
                );
                let s = e.start_request(&f, now);
                flying.push_back((f, s));
            }
        }
        // The oldest requests answer, 4 staying in flight: a 503 retried
        // once, then a 200 on the retry.
        while flying.len() > 4 {
            let (f, mut s) = flying.pop_front().unwrap();
            e.handle_response(s.upstream, Outcome::Status(503), now);
            if let RetryDecision::Retry { .. } = e.retry_decision(&mut s, Outcome::Status(503), now)
                && let Decision::Forward(r) = e.retry(&mut s, now)
            {
                assert_eq!(
                    e.admit(r.upstream, true, false, now),
                    crate::Admission::Attach
                );
                e.handle_response(r.upstream, Outcome::Status(200), now);
                let _ = e.retry_decision(&mut s, Outcome::Status(200), now);
            }
            e.finish_request(&mut s, now);
            let _ = f;
        }
        while e.poll_event().is_some() {}
    }
    // Requests live over at most ~5 pushes: so many generations, never
    // the 10,000 pushed.
    assert!(most <= 8, "{most} generations retained");
    // Everything ends; the next push drops every earlier routing.
    let now = Time::from_secs(1000);
    for (_, mut s) in flying.drain(..) {
        e.handle_response(s.upstream, Outcome::Status(200), now);
        let _ = e.retry_decision(&mut s, Outcome::Status(200), now);
        e.finish_request(&mut s, now);
    }
    for d in delayed.drain(..) {
        e.abandon_delay(d, now);
    }
    e.reconfigure(configs[0].clone(), now);
    assert_eq!(e.retained_generations(), 1);
    assert_eq!(all_active(&e), 0);
    let c = e
        .cluster_by_name("outbound|80||svc.default.svc.cluster.local")
        .unwrap();
    let b = e.breaker_stats(c);
    assert_eq!((b.active_requests, b.active_retries), (0, 0), "{b:?}");
}

/// A request delayed across pushes still routes by the route it matched,
/// to the cluster of the config in force; its generation is kept until the
/// request finishes, then dropped at the next push.
#[test]
fn a_request_held_across_pushes_keeps_its_route_until_it_finishes() {
    let a = churning(0);
    let mut e = Engine::new(a.clone(), ProxySpec::default(), 3);
    let slow = Request::get("svc", "/slow");
    let Decision::Delay(d) = e.handle_request(&slow, Time::ZERO) else {
        panic!()
    };
    for round in 1..=20 {
        e.reconfigure(churning(round), Time::from_millis(round as u64));
    }
    // Held by the delay: its generation and the current one.
    assert_eq!(e.retained_generations(), 2);
    let now = Time::from_secs(1);
    let Decision::Forward(f) = e.handle_delayed(&slow, d, now) else {
        panic!()
    };
    assert_eq!(e.route(f.route).unwrap().name, "svc.0");
    assert_eq!(
        e.admit(f.upstream, true, false, now),
        crate::Admission::Attach
    );
    let mut s = e.start_request(&f, now);
    // The delay let go, the state holds: still two until it finishes.
    e.reconfigure(churning(21), now);
    assert_eq!(e.retained_generations(), 2);
    e.handle_response(s.upstream, Outcome::Status(503), now);
    assert!(matches!(
        e.retry_decision(&mut s, Outcome::Status(503), now),
        RetryDecision::Retry { .. }
    ));
    e.finish_request(&mut s, now);
    e.reconfigure(churning(22), now);
    assert_eq!(e.retained_generations(), 1);
}

/// Envoy's retry counters: `upstream_rq_retry` per retry decided,
/// `upstream_rq_retry_limit_exceeded` when they run out (URX),
/// `upstream_rq_retry_success` when a retried request gets an answer the
/// policy keeps.
#[test]
fn retries_are_counted_as_envoy_counts_them() {
    let mut e = Engine::new(churning(0), ProxySpec::default(), 5);
    let r = Request::get("svc", "/");
    let now = Time::ZERO;
    // One attempt's answer: the decision that follows it.
    let run = |e: &mut Engine, answers: &[u16]| {
        let Decision::Forward(f) = e.handle_request(&r, now) else {
            panic!()
        };
        let mut s = e.start_request(&f, now);
        let mut up = f.upstream;
        let mut last = None;
        for &status in answers {
            assert_eq!(e.admit(up, true, false, now), crate::Admission::Attach);
            e.handle_response(up, Outcome::Status(status), now);
            match e.retry_decision(&mut s, Outcome::Status(status), now) {
                RetryDecision::Retry { .. } => {
                    let Decision::Forward(next) = e.retry(&mut s, now) else {
                        panic!()
                    };
                    up = next.upstream;
                }
                RetryDecision::Done { flag } => last = Some(flag),
            }
        }
        e.finish_request(&mut s, now);
        last.expect("the request ended")
    };
    let c = e
        .cluster_by_name("outbound|80||svc.default.svc.cluster.local")
        .unwrap();
    // Two retries (attempts = 2), all 503: retries run out.
    assert_eq!(
        run(&mut e, &[503, 503, 503]),
        Some(ResponseFlag::UpstreamRetryLimitExceeded)
    );
    // A 503 retried once, then a 200.
    assert_eq!(run(&mut e, &[503, 200]), None);
    // No retry at all.
    assert_eq!(run(&mut e, &[200]), None);
    assert_eq!(
        e.cluster_stats(c),
        ClusterStats {
            lb_healthy_panic: 0,
            upstream_rq_retry: 3,
            upstream_rq_retry_success: 1,
            upstream_rq_retry_limit_exceeded: 1,
            retry_or_shadow_abandoned: 0,
        }
    );
}

/// Envoy's workers: each has its own round-robin position, while outlier
/// detection and the circuit breaker are the cluster's, shared by all.
#[test]
fn workers_balance_on_their_own_and_share_outlier_detection_and_the_breaker() {
    let mesh = pool(3, None, "simple = \"ROUND_ROBIN\"").replace(
        "trafficPolicy = { loadBalancer = { simple = \"ROUND_ROBIN\" } }",
        "trafficPolicy = { loadBalancer = { simple = \"ROUND_ROBIN\" }, connectionPool = { http = { http2MaxRequests = 1 } }, outlierDetection = { consecutive5xxErrors = 2, maxEjectionPercent = 100 } }",
    );
    let options = EngineOptions {
        workers: 2,
        ..EngineOptions::default()
    };
    let mut e = Engine::with_options(Arc::new(config(&mesh)), ProxySpec::default(), 9, options);
    let now = Time::ZERO;
    let pick = |e: &mut Engine, worker: u32| {
        let r = Request::get("svc", "/").on_worker(worker);
        let Decision::Forward(f) = e.handle_request(&r, now) else {
            panic!()
        };
        e.cancel(f.upstream, false, now);
        (e.endpoint_address(f.upstream).to_owned(), f.worker)
    };
    // Worker 0 goes round its own robin whatever worker 1 does in between:
    // the very picks of an engine with one worker (a shared robin would
    // skip a host at every interleaved pick).
    let mut solo = Engine::with_options(
        Arc::new(config(&mesh)),
        ProxySpec::default(),
        9,
        EngineOptions::default(),
    );
    let alone: Vec<_> = (0..6).map(|_| pick(&mut solo, 0).0).collect();
    let interleaved: Vec<_> = (0..6)
        .map(|_| {
            let (host, w) = pick(&mut e, 0);
            assert_eq!((w, pick(&mut e, 1).1), (0, 1));
            host
        })
        .collect();
    assert_eq!(interleaved, alone);
    // An unknown worker picks as worker 0, and says so.
    assert_eq!(pick(&mut e, 7).1, 0);
    // One breaker: worker 1 overflows while worker 0's request is active.
    let r0 = Request::get("svc", "/").on_worker(0);
    let r1 = Request::get("svc", "/").on_worker(1);
    let Decision::Forward(a) = e.handle_request(&r0, now) else {
        panic!()
    };
    assert_eq!(
        e.admit(a.upstream, true, false, now),
        crate::Admission::Attach
    );
    let Decision::Forward(b) = e.handle_request(&r1, now) else {
        panic!()
    };
    assert_eq!(
        e.admit(b.upstream, true, false, now),
        crate::Admission::Overflow
    );
    e.handle_response(a.upstream, Outcome::Status(503), now);
    while e.poll_event().is_some() {}
    // One detector: a host's second consecutive 503, seen by the other
    // worker, ejects it.
    let host = a.upstream;
    let second = loop {
        let Decision::Forward(f) = e.handle_request(&r1, now) else {
            panic!()
        };
        if f.upstream == host {
            break f;
        }
        e.cancel(f.upstream, false, now);
    };
    assert_eq!(
        e.admit(second.upstream, true, false, now),
        crate::Admission::Attach
    );
    e.handle_response(second.upstream, Outcome::Status(503), now);
    assert!(matches!(
        e.poll_event(),
        Some((_, EngineEvent::Ejected { upstream, .. })) if upstream == host
    ));
}

/// Engines of equal proxies built on the same config share one copy of
/// their route tables, and decide exactly as an engine with its own; an
/// engine of another proxy, or of another config, compiles its own.
#[test]
fn engines_sharing_route_tables_decide_as_engines_with_their_own() {
    let toml = crate::tests::mesh(3, "", &crate::tests::vs(""));
    let cfg = Arc::new(config(&toml));
    let own = Engine::new(cfg.clone(), crate::tests::sidecar(), 7);
    let routes = own.shared_routes().expect("a new engine's routes");
    let mut own = own;
    let mut shared = Engine::with_shared_routes(
        cfg.clone(),
        crate::tests::sidecar(),
        7,
        EngineOptions::default(),
        &routes,
    );
    assert!(Arc::ptr_eq(&own.routing.compiled, &shared.routing.compiled));
    for i in 0..30u64 {
        let now = Time::from_nanos(i * 1_000_000);
        let a = own.handle_request(&req(), now);
        let b = shared.handle_request(&req(), now);
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "request {i}");
    }
    let other = ProxySpec {
        namespace: "elsewhere".into(),
        ..crate::tests::sidecar()
    };
    let e = Engine::with_shared_routes(cfg, other, 7, EngineOptions::default(), &routes);
    assert!(!Arc::ptr_eq(&e.routing.compiled, &routes.compiled));
    let e = Engine::with_shared_routes(
        Arc::new(config(&toml)),
        crate::tests::sidecar(),
        7,
        EngineOptions::default(),
        &routes,
    );
    assert!(!Arc::ptr_eq(&e.routing.compiled, &routes.compiled));
}
