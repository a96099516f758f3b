//! Outlier detection, circuit breaking and retries, driven as a proxy drives
//! the engine, with exact virtual times (reference §2, §3, §5.5–5.6).
//!
//! Conventions of the drivers below (reference §9): before anything happens
//! at time `t`, every outlier-detection tick due at or before `t` runs, each
//! at its own time (`k × interval` from `Time::ZERO` for `Engine::new`), so
//! an event is stamped with the tick that produced it. Outlier events from a
//! response are stamped with the response's time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::{SEED, addr, config, engine, mesh, ms, sidecar, vs};
use crate::{
    Admission, Admit, Answer, ClusterId, Decision, EjectReason, Engine, EngineEvent, EngineOptions,
    Exchange, Forward, MaxEjectionRule, Outcome, OutlierStats, RejectReason, Request, RequestState,
    ResetReason, ResponseFlag, RetryDecision, Step, Time, Upstream,
};

// === configs ===

/// The one cluster of [`mesh`].
const CLUSTER: &str = "outbound|80||svc.default.svc.cluster.local";

/// A DestinationRule body with this `outlierDetection` (TOML lines).
fn od(fields: &str) -> String {
    format!("[destinationRule.trafficPolicy.outlierDetection]\n{fields}\n")
}

/// A DestinationRule body with a load balancer and an `outlierDetection`.
fn lb_od(simple: &str, fields: &str) -> String {
    format!(
        "[destinationRule.trafficPolicy]\nloadBalancer = {{ simple = \"{simple}\" }}\n{}",
        od(fields)
    )
}

/// The outlier detection of test 1: 3 × 5xx, 10 s ticks, 30 s base, 100 %.
const OD_3_10_30: &str = r#"consecutive5xxErrors = 3
interval = "10s"
baseEjectionTime = "30s"
maxEjectionPercent = 100"#;

// === time ===

fn s(v: u64) -> Time {
    Time::from_secs(v)
}

fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

// === events ===

/// An engine event with addresses instead of indices.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Ejected(String, EjectReason, Duration),
    Returned(String),
    Panic(bool),
    Overflow(String),
    Config { clusters: u32, routes: u32 },
}

/// An event and the virtual time it happened at.
type Timed = (Time, Ev);

const C5XX: EjectReason = EjectReason::Consecutive5xx;
const GW: EjectReason = EjectReason::ConsecutiveGatewayFailure;
const LOCAL: EjectReason = EjectReason::ConsecutiveLocalOriginFailure;

fn ejected(t: Time, host: &str, reason: EjectReason, d: Duration) -> Timed {
    (t, Ev::Ejected(host.to_owned(), reason, d))
}

fn returned(t: Time, host: &str) -> Timed {
    (t, Ev::Returned(host.to_owned()))
}

/// Drains the engine's events (drained at `t`: none can be later).
fn drain(e: &mut Engine, t: Time, out: &mut Vec<Timed>) {
    while let Some((at, ev)) = e.poll_event() {
        assert!(at <= t, "{ev:?} at {at:?}, drained at {t:?}");
        let ev = match ev {
            EngineEvent::Ejected {
                upstream,
                reason,
                duration,
            } => Ev::Ejected(e.endpoint_address(upstream).to_owned(), reason, duration),
            EngineEvent::Returned { upstream } => {
                Ev::Returned(e.endpoint_address(upstream).to_owned())
            }
            EngineEvent::Panic { in_panic, .. } => Ev::Panic(in_panic),
            EngineEvent::Overflow { upstream } => {
                Ev::Overflow(e.endpoint_address(upstream).to_owned())
            }
            EngineEvent::ConfigApplied { clusters, routes } => Ev::Config { clusters, routes },
        };
        out.push((at, ev));
    }
}

/// Runs every interval tick due at or before `t`, each at its own time.
fn tick_until(e: &mut Engine, t: Time) -> Vec<Timed> {
    let mut out = Vec::new();
    while let Some(tick) = e.poll_timeout().filter(|&p| p <= t) {
        e.handle_timeout(tick);
        drain(e, tick, &mut out);
        assert!(
            e.poll_timeout().is_none_or(|next| next > tick),
            "the timer did not move past {tick}"
        );
    }
    out
}

// === drivers ===

fn cluster(e: &Engine) -> ClusterId {
    e.cluster_by_name(CLUSTER).expect("the svc cluster")
}

/// The upstream of the endpoint with this address, in the current config.
fn up_of(e: &Engine, address: &str) -> Upstream {
    let c = cluster(e);
    (0..e.endpoint_count(c))
        .map(|i| e.upstream(c, u32::try_from(i).unwrap()))
        .find(|&u| e.endpoint_address(u) == address)
        .unwrap_or_else(|| panic!("no endpoint {address}"))
}

fn forward_at(e: &mut Engine, t: Time) -> Forward {
    match e.handle_request(&Request::get("svc", "/"), t) {
        Decision::Forward(f) => f,
        other => panic!("expected a forward at {t}, got {}", e.describe(&other)),
    }
}

/// One request at `t` (after the ticks due), answered at once: 503 if the
/// chosen endpoint is in `bad`, else 200. Returns the endpoint and the events.
fn step(e: &mut Engine, t: Time, bad: &[&str]) -> (String, Vec<Timed>) {
    let mut out = tick_until(e, t);
    let f = forward_at(e, t);
    assert_eq!(e.admit(f.upstream, true, false, t), Admission::Attach);
    let address = e.endpoint_address(f.upstream).to_owned();
    let status = if bad.contains(&address.as_str()) {
        503
    } else {
        200
    };
    e.handle_response(f.upstream, Outcome::Status(status), t);
    drain(e, t, &mut out);
    (address, out)
}

/// At `t` (after the ticks due), requests until one lands on `host`; that
/// one is admitted and left in flight, the others are answered 200.
fn hold(e: &mut Engine, t: Time, host: &str) -> Upstream {
    assert!(tick_until(e, t).is_empty());
    for _ in 0..10_000 {
        let f = forward_at(e, t);
        assert_eq!(e.admit(f.upstream, true, false, t), Admission::Attach);
        if e.endpoint_address(f.upstream) == host {
            return f.upstream;
        }
        e.handle_response(f.upstream, Outcome::Status(200), t);
    }
    panic!("{host} is never chosen at {t}")
}

/// At `t` (after the ticks due), one attempt to `host` that ends with
/// `outcome`; requests that land elsewhere are answered 200. Returns the
/// ticks' events and the response's.
fn send_to(e: &mut Engine, t: Time, host: &str, outcome: Outcome) -> Vec<Timed> {
    let mut out = tick_until(e, t);
    for _ in 0..10_000 {
        let f = forward_at(e, t);
        assert_eq!(e.admit(f.upstream, true, false, t), Admission::Attach);
        let hit = e.endpoint_address(f.upstream) == host;
        let answer = if hit { outcome } else { Outcome::Status(200) };
        e.handle_response(f.upstream, answer, t);
        drain(e, t, &mut out);
        if hit {
            return out;
        }
    }
    panic!("{host} is never chosen at {t}")
}

/// `send_to` with an HTTP status.
fn status_to(e: &mut Engine, t: Time, host: &str, status: u16) -> Vec<Timed> {
    send_to(e, t, host, Outcome::Status(status))
}

/// `n` 503s from `host` at `t`; the events of all of them.
fn fail_n(e: &mut Engine, t: Time, host: &str, n: usize) -> Vec<Timed> {
    (0..n)
        .flat_map(|_| status_to(e, t, host, 503))
        .collect::<Vec<_>>()
}

/// `n` requests at `t` answered 200: how many each endpoint got.
fn spread(e: &mut Engine, t: Time, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (address, events) = step(e, t, &[]);
        assert!(events.is_empty(), "{events:?}");
        *counts.entry(address).or_default() += 1;
    }
    counts
}

fn stats(e: &Engine) -> OutlierStats {
    e.outlier_stats(cluster(e)).expect("a detector")
}

// =====================================================================
// 1. Ejection at the N-th failure, return on the first tick after its time
// =====================================================================

#[test]
fn a_failing_host_is_ejected_at_its_third_failure_and_returns_on_the_first_tick_after_its_time() {
    let mut e = engine(&mesh(4, &od(OD_3_10_30), ""));
    let bad = addr(1);
    let up = up_of(&e, &bad);
    assert_eq!(e.poll_timeout(), Some(s(10)));

    // Failures at 12.0 s and 12.1 s: counted, nothing happens.
    assert_eq!(status_to(&mut e, ms(12_000), &bad, 503), []);
    assert_eq!(status_to(&mut e, ms(12_100), &bad, 503), []);
    assert_eq!(e.ejection(up), None);
    // The third, at 12.2 s, ejects at that very call (not at the next tick).
    assert_eq!(
        status_to(&mut e, ms(12_200), &bad, 503),
        [ejected(ms(12_200), &bad, C5XX, secs(30))]
    );
    assert_eq!(e.ejection(up), Some((ms(12_200), secs(30))));
    assert_eq!(e.ejection_multiplier(up), 1);

    // Its time is over at 42.2 s, but hosts only come back on ticks: the
    // 20, 30 and 40 s ticks pass without an event and no request reaches it.
    let mut t = 12_300;
    while t < 50_000 {
        let (address, events) = step(&mut e, ms(t), &[&bad]);
        assert_eq!(events, [], "at {t} ms");
        assert_ne!(address, bad, "an ejected host got traffic at {t} ms");
        t += 100;
    }
    assert_eq!(e.poll_timeout(), Some(s(50)));
    // The 50 s tick returns it: 37.8 s after its ejection.
    assert_eq!(tick_until(&mut e, s(50)), [returned(s(50), &bad)]);
    assert_eq!(e.ejection(up), None);
    // A host returned on this tick does not decay on it.
    assert_eq!(e.ejection_multiplier(up), 1);

    // Failing again from 50.0 s: multiplier 2, ejected for 60 s.
    assert_eq!(fail_n(&mut e, s(50), &bad, 2), []);
    assert_eq!(
        status_to(&mut e, ms(50_200), &bad, 503),
        [ejected(ms(50_200), &bad, C5XX, secs(60))]
    );
    assert_eq!(e.ejection_multiplier(up), 2);
    // Due at 110.2 s: the 110 s tick is 0.2 s too early, the 120 s one returns it.
    assert_eq!(tick_until(&mut e, ms(119_999)), []);
    assert_eq!(tick_until(&mut e, s(120)), [returned(s(120), &bad)]);

    // A third time: 90 s, due at 210.2 s, back on the 220 s tick.
    assert_eq!(fail_n(&mut e, s(120), &bad, 2), []);
    assert_eq!(
        status_to(&mut e, ms(120_200), &bad, 503),
        [ejected(ms(120_200), &bad, C5XX, secs(90))]
    );
    assert_eq!(tick_until(&mut e, ms(219_999)), []);
    assert_eq!(tick_until(&mut e, s(220)), [returned(s(220), &bad)]);
    assert_eq!(
        stats(&e),
        OutlierStats {
            ejections_enforced_total: 3,
            ejections_enforced: [3, 0, 0],
            ejections_active: 0,
            ejections_overflow: 0,
            ejections_detected: [3, 0, 0],
            ejections_detected_not_enforced: 0,
        }
    );
}

// =====================================================================
// 2. maxEjectionPercent
// =====================================================================

#[test]
fn max_ejection_percent_10_of_10_hosts_ejects_one_and_counts_the_second_as_overflow() {
    let fields = OD_3_10_30.replace("maxEjectionPercent = 100", "maxEjectionPercent = 10");
    let mut e = engine(&mesh(10, &od(&fields), ""));
    let (h1, h2) = (addr(1), addr(2));
    assert_eq!(
        fail_n(&mut e, s(1), &h1, 3),
        [ejected(s(1), &h1, C5XX, secs(30))]
    );
    // 100 × 2 / 10 = 20 % > 10 %: detected, not ejected.
    assert_eq!(fail_n(&mut e, s(2), &h2, 3), []);
    assert_eq!(
        stats(&e),
        OutlierStats {
            ejections_enforced_total: 1,
            ejections_enforced: [1, 0, 0],
            ejections_active: 1,
            ejections_overflow: 1,
            ejections_detected: [2, 0, 0],
            ejections_detected_not_enforced: 0,
        }
    );
    // h2 keeps its traffic; h1 gets none.
    let counts = spread(&mut e, s(3), 1000);
    assert!(!counts.contains_key(&h1), "{counts:?}");
    assert!(counts[&h2] > 0, "{counts:?}");
    // The detection reset h2's counter: 2 more failures do nothing.
    assert_eq!(fail_n(&mut e, s(4), &h2, 2), []);
    // Once h1 is back (ejected at 1 s → the 40 s tick), there is room: h2's
    // next failure is its third in a row and ejects it.
    assert_eq!(tick_until(&mut e, s(40)), [returned(s(40), &h1)]);
    assert_eq!(
        status_to(&mut e, s(41), &h2, 503),
        [ejected(s(41), &h2, C5XX, secs(30))]
    );
}

#[test]
fn the_default_10_percent_never_ejects_in_a_cluster_of_fewer_than_10_hosts() {
    // Envoy ≥ 1.28: 100 × 1 / 9 = 11.1 % > 10 %.
    let mut e = engine(&mesh(9, &od("consecutive5xxErrors = 3"), ""));
    for k in 0..4 {
        for i in 1..=9 {
            assert_eq!(fail_n(&mut e, s(1 + k), &addr(i), 3), []);
        }
    }
    let st = stats(&e);
    assert_eq!(st.ejections_enforced_total, 0);
    assert_eq!(st.ejections_overflow, 36);
    assert_eq!(st.ejections_detected, [36, 0, 0]);
    assert_eq!(spread(&mut e, s(10), 900).len(), 9);
}

/// Fails every host of an `n`-host cluster in turn (one 5xx ejects) and
/// returns how many were ejected.
fn ejectable(n: usize, mep: u32, rule: MaxEjectionRule) -> usize {
    let toml = mesh(
        n,
        &od(&format!(
            "consecutive5xxErrors = 1\nmaxEjectionPercent = {mep}"
        )),
        "",
    );
    let mut e = Engine::with_options(
        Arc::new(config(&toml)),
        sidecar(),
        SEED,
        EngineOptions {
            max_ejection_rule: rule,
            ..EngineOptions::default()
        },
    );
    let mut count = 0;
    for i in 1..=n {
        let events = status_to(&mut e, s(1), &addr(i), 503);
        match events.as_slice() {
            [] => {}
            [(_, Ev::Ejected(h, C5XX, _))] if *h == addr(i) => count += 1,
            other => panic!("{other:?}"),
        }
    }
    let st = stats(&e);
    assert_eq!(st.ejections_enforced_total, count as u64);
    assert_eq!(st.ejections_overflow, (n - count) as u64);
    count
}

#[test]
fn strict_rule_ejects_floor_of_hosts_times_percent_as_in_the_reference_table() {
    // Reference §2.4: hosts × {10, 20, 50, 100} %.
    let table: [(usize, [usize; 4]); 7] = [
        (1, [0, 0, 0, 1]),
        (2, [0, 0, 1, 2]),
        (3, [0, 0, 1, 3]),
        (5, [0, 1, 2, 5]),
        (9, [0, 1, 4, 9]),
        (10, [1, 2, 5, 10]),
        (20, [2, 4, 10, 20]),
    ];
    for (hosts, want) in table {
        for (mep, want) in [10, 20, 50, 100].into_iter().zip(want) {
            assert_eq!(
                ejectable(hosts, mep, MaxEjectionRule::Strict),
                want,
                "{hosts} hosts at {mep} %"
            );
        }
    }
}

#[test]
fn legacy_envoy_126_rule_always_ejects_the_first_host_and_can_overshoot() {
    let legacy = MaxEjectionRule::LegacyEnvoy126;
    // 100 × 0 / 3 < 10: the first is free; 100 × 1 / 3 = 33 ≥ 10 stops the second.
    assert_eq!(ejectable(3, 10, legacy), 1);
    // 0 < 50 and 33.3 < 50: two of three (66 %) ejected at 50 %.
    assert_eq!(ejectable(3, 50, legacy), 2);
    assert_eq!(ejectable(1, 10, legacy), 1);
    assert_eq!(ejectable(9, 10, legacy), 1);
    // The modern rule on the same clusters.
    assert_eq!(ejectable(3, 10, MaxEjectionRule::Strict), 0);
    assert_eq!(ejectable(3, 50, MaxEjectionRule::Strict), 1);
}

// =====================================================================
// 3. Panic threshold (minHealthPercent)
// =====================================================================

const OD_1_PANIC_50: &str = r#"consecutive5xxErrors = 1
interval = "10s"
baseEjectionTime = "30s"
maxEjectionPercent = 100
minHealthPercent = 50"#;

#[test]
fn below_min_health_percent_the_cluster_panics_and_ejected_hosts_get_traffic_again() {
    let mut e = engine(&mesh(4, &lb_od("ROUND_ROBIN", OD_1_PANIC_50), ""));
    let c = cluster(&e);
    let h: Vec<String> = (1..=4).map(addr).collect();
    assert_eq!(
        status_to(&mut e, s(1), &h[0], 503),
        [ejected(s(1), &h[0], C5XX, secs(30))]
    );
    assert_eq!(
        status_to(&mut e, s(1), &h[1], 503),
        [ejected(s(1), &h[1], C5XX, secs(30))]
    );
    // 2 of 4 healthy = 50 %, not below 50 %: no panic, only the healthy two.
    assert!(!e.in_panic(c));
    let counts = spread(&mut e, s(2), 400);
    assert_eq!(
        counts,
        BTreeMap::from([(h[2].clone(), 200), (h[3].clone(), 200)])
    );

    // A third ejection: 25 % < 50 % → panic, announced right after it.
    assert_eq!(
        status_to(&mut e, s(3), &h[2], 503),
        [
            ejected(s(3), &h[2], C5XX, secs(30)),
            (s(3), Ev::Panic(true))
        ]
    );
    assert!(e.in_panic(c));
    assert_eq!(e.cluster_stats(c).lb_healthy_panic, 0);
    // In panic the balancer ignores health: all four, ejected ones included,
    // each pick counted as Envoy's `lb_healthy_panic`.
    let counts = spread(&mut e, s(4), 400);
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|&n| n == 100), "{counts:?}");
    assert_eq!(e.cluster_stats(c).lb_healthy_panic, 400);
    // Ejection bookkeeping continues: the three are still ejected.
    for host in &h[..3] {
        assert!(e.ejection(up_of(&e, host)).is_some());
    }
    // h1, h2 (ejected at 1 s) are due at 31 s, h3 (3 s) at 33 s: all on the
    // 40 s tick, and the panic ends with them.
    assert_eq!(
        tick_until(&mut e, s(40)),
        [
            returned(s(40), &h[0]),
            returned(s(40), &h[1]),
            returned(s(40), &h[2]),
            (s(40), Ev::Panic(false)),
        ]
    );
    assert!(!e.in_panic(c));
}

#[test]
fn without_min_health_percent_every_host_ejected_rejects_503_no_healthy_upstream() {
    // An outlierDetection block sets the panic threshold to minHealthPercent,
    // 0 when unset: panic is off.
    let mut e = engine(&mesh(
        2,
        &od("consecutive5xxErrors = 1\nmaxEjectionPercent = 100"),
        "",
    ));
    let c = cluster(&e);
    assert_eq!(
        status_to(&mut e, s(1), &addr(1), 503),
        [ejected(s(1), &addr(1), C5XX, secs(30))]
    );
    assert_eq!(
        status_to(&mut e, s(1), &addr(2), 503),
        [ejected(s(1), &addr(2), C5XX, secs(30))]
    );
    assert!(!e.in_panic(c));
    let Decision::Reject(r) = e.handle_request(&Request::get("svc", "/"), s(2)) else {
        panic!("forwarded with every host ejected and panic disabled")
    };
    assert_eq!((r.reason, r.status), (RejectReason::NoHealthyUpstream, 503));
    assert_eq!(r.flag(), ResponseFlag::NoHealthyUpstream);
    assert_eq!(r.flag().as_str(), "UH");
    assert_eq!(e.poll_event(), None);
    // Both come back on the 40 s tick, without any panic event.
    assert_eq!(
        tick_until(&mut e, s(40)),
        [returned(s(40), &addr(1)), returned(s(40), &addr(2))]
    );
    assert_eq!(spread(&mut e, s(40), 10).len(), 2);
}

// =====================================================================
// 4. Replays of documented Envoy behaviours (reference §2.1–2.3, §2.9)
// =====================================================================

#[test]
fn a_success_resets_the_consecutive_5xx_counter() {
    let mut e = engine(&mesh(4, &od(OD_3_10_30), ""));
    let h = addr(1);
    assert_eq!(fail_n(&mut e, s(1), &h, 2), []);
    assert_eq!(status_to(&mut e, s(1), &h, 200), []);
    assert_eq!(fail_n(&mut e, s(1), &h, 2), []);
    // 4xx is a success for the detector too.
    assert_eq!(status_to(&mut e, s(1), &h, 404), []);
    assert_eq!(fail_n(&mut e, s(1), &h, 2), []);
    assert_eq!(stats(&e).ejections_detected, [0, 0, 0]);
    // Three in a row do it.
    assert_eq!(
        status_to(&mut e, s(2), &h, 503),
        [ejected(s(2), &h, C5XX, secs(30))]
    );
}

const OD_GW3_5XX5: &str = r#"consecutiveGatewayErrors = 3
consecutive5xxErrors = 5
maxEjectionPercent = 100"#;

#[test]
fn gateway_errors_count_for_both_detectors_and_the_gateway_one_fires_first() {
    let mut e = engine(&mesh(4, &od(OD_GW3_5XX5), ""));
    let h = addr(1);
    assert_eq!(status_to(&mut e, s(1), &h, 502), []);
    assert_eq!(status_to(&mut e, s(1), &h, 504), []);
    assert_eq!(
        status_to(&mut e, s(1), &h, 503),
        [ejected(s(1), &h, GW, secs(30))]
    );
    let st = stats(&e);
    assert_eq!(st.ejections_detected, [0, 1, 0]);
    assert_eq!(st.ejections_enforced_total, 1);
}

#[test]
fn a_500_resets_the_gateway_counter_but_counts_as_a_5xx() {
    let mut e = engine(&mesh(4, &od(OD_GW3_5XX5), ""));
    let h = addr(1);
    // gateway 1, 2, 0, 1, 2 — 5xx 1, 2, 3, 4, 5.
    for status in [503, 503, 500, 503] {
        assert_eq!(status_to(&mut e, s(1), &h, status), [], "{status}");
    }
    assert_eq!(
        status_to(&mut e, s(1), &h, 503),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
    assert_eq!(stats(&e).ejections_detected, [1, 0, 0]);
}

#[test]
fn a_host_already_ejected_is_not_ejected_again_and_its_return_resets_the_counters() {
    let mut e = engine(&mesh(4, &od(OD_3_10_30), ""));
    let h = addr(1);
    // Six requests in flight to h at 1 s.
    let in_flight: Vec<Upstream> = (0..6).map(|_| hold(&mut e, s(1), &h)).collect();
    let mut events = Vec::new();
    for up in &in_flight[..3] {
        e.handle_response(*up, Outcome::Status(503), s(2));
        drain(&mut e, s(2), &mut events);
    }
    assert_eq!(events, [ejected(s(2), &h, C5XX, secs(30))]);
    // The other three fail while it is ejected: their results are still
    // counted (the counter reaches 3 again), but nothing fires: no event,
    // no detection.
    for up in &in_flight[3..] {
        e.handle_response(*up, Outcome::Status(503), s(3));
    }
    assert_eq!(e.poll_event(), None);
    assert_eq!(stats(&e).ejections_detected, [1, 0, 0]);
    assert_eq!(stats(&e).ejections_enforced_total, 1);
    assert_eq!(e.active_requests(in_flight[0]), 0);
    // Back on the 40 s tick (due at 32 s), with its counters at 0: it takes
    // three new failures to eject it. Had the return not reset the counter
    // (at 3 and climbing), it could never again equal 3.
    assert_eq!(tick_until(&mut e, s(40)), [returned(s(40), &h)]);
    assert_eq!(fail_n(&mut e, s(41), &h, 2), []);
    assert_eq!(
        status_to(&mut e, s(41), &h, 503),
        [ejected(s(41), &h, C5XX, secs(60))]
    );
}

#[test]
fn unset_consecutive_gateway_errors_detects_at_5_without_enforcing_while_5xx_at_5_ejects() {
    // Only consecutive5xxErrors unset too: both at 5; gateway enforcement 0.
    let mut e = engine(&mesh(4, &od("maxEjectionPercent = 100"), ""));
    let h = addr(1);
    assert_eq!(fail_n(&mut e, s(1), &h, 4), []);
    // The fifth 503: the gateway detector fires first (detected, not
    // enforced), then the 5xx detector ejects.
    assert_eq!(
        status_to(&mut e, s(1), &h, 503),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
    assert_eq!(
        stats(&e),
        OutlierStats {
            ejections_enforced_total: 1,
            ejections_enforced: [1, 0, 0],
            ejections_active: 1,
            ejections_overflow: 0,
            ejections_detected: [1, 1, 0],
            ejections_detected_not_enforced: 1,
        }
    );

    // With the 5xx detector at 7, the gateway detection at 5 is all there is
    // until the seventh.
    let mut e = engine(&mesh(
        4,
        &od("consecutive5xxErrors = 7\nmaxEjectionPercent = 100"),
        "",
    ));
    assert_eq!(fail_n(&mut e, s(1), &h, 6), []);
    let st = stats(&e);
    assert_eq!(st.ejections_detected, [0, 1, 0]);
    assert_eq!(st.ejections_detected_not_enforced, 1);
    assert_eq!(st.ejections_enforced_total, 0);
    assert_eq!(
        status_to(&mut e, s(1), &h, 503),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
}

#[test]
fn consecutive_5xx_errors_0_disables_the_5xx_detector() {
    let mut e = engine(&mesh(
        4,
        &od("consecutive5xxErrors = 0\nmaxEjectionPercent = 100"),
        "",
    ));
    let h = addr(1);
    for _ in 0..50 {
        assert_eq!(status_to(&mut e, s(1), &h, 500), []);
    }
    assert_eq!(stats(&e).ejections_detected, [0, 0, 0]);
    // 503s: the (unset) gateway detector fires at every 5th, never enforced.
    assert_eq!(fail_n(&mut e, s(1), &h, 50), []);
    let st = stats(&e);
    assert_eq!(st.ejections_detected, [0, 10, 0]);
    assert_eq!(st.ejections_detected_not_enforced, 10);
    assert_eq!(st.ejections_enforced_total, 0);
}

#[test]
fn without_split_a_connect_failure_or_reset_counts_as_503_and_a_timeout_as_504() {
    // Only gateway errors (502–504) feed the gateway detector; 5xx at 100.
    let fields =
        "consecutiveGatewayErrors = 3\nconsecutive5xxErrors = 100\nmaxEjectionPercent = 100";
    let mut e = engine(&mesh(4, &od(fields), ""));
    let h = addr(1);
    assert_eq!(send_to(&mut e, s(1), &h, Outcome::ConnectFailure), []);
    assert_eq!(
        send_to(
            &mut e,
            s(1),
            &h,
            Outcome::Reset(ResetReason::ConnectionTermination)
        ),
        []
    );
    assert_eq!(
        send_to(&mut e, s(1), &h, Outcome::Timeout),
        [ejected(s(1), &h, GW, secs(30))]
    );
    // And they are 5xx: three of them meet a 5xx threshold of 3.
    let mut e = engine(&mesh(4, &od(OD_3_10_30), ""));
    assert_eq!(send_to(&mut e, s(1), &h, Outcome::Timeout), []);
    assert_eq!(send_to(&mut e, s(1), &h, Outcome::ConnectFailure), []);
    assert_eq!(
        send_to(
            &mut e,
            s(1),
            &h,
            Outcome::Reset(ResetReason::ConnectionTermination)
        ),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
}

const OD_SPLIT: &str = r#"splitExternalLocalOriginErrors = true
consecutiveLocalOriginFailures = 2
consecutive5xxErrors = 2
maxEjectionPercent = 100"#;

#[test]
fn split_mode_ejects_on_consecutive_local_origin_failures() {
    let mut e = engine(&mesh(4, &od(OD_SPLIT), ""));
    let h = addr(1);
    assert_eq!(send_to(&mut e, s(1), &h, Outcome::ConnectFailure), []);
    assert_eq!(
        send_to(&mut e, s(1), &h, Outcome::ConnectFailure),
        [ejected(s(1), &h, LOCAL, secs(30))]
    );
    assert_eq!(stats(&e).ejections_detected, [0, 0, 1]);
    // Connect failures do not feed the 5xx counter in split mode.
    let h2 = addr(2);
    assert_eq!(status_to(&mut e, s(2), &h2, 503), []);
    assert_eq!(send_to(&mut e, s(2), &h2, Outcome::ConnectFailure), []);
    // … and a response (the connection was made) resets the local counter:
    // 503 → 5xx 2 ejects, by the 5xx detector.
    assert_eq!(
        status_to(&mut e, s(2), &h2, 503),
        [ejected(s(2), &h2, C5XX, secs(30))]
    );
}

#[test]
fn split_mode_a_timeout_neither_counts_nor_resets_the_5xx_counter() {
    let mut e = engine(&mesh(4, &od(OD_SPLIT), ""));
    let h = addr(1);
    assert_eq!(status_to(&mut e, s(1), &h, 503), []);
    // Not a 504 here: the 5xx counter stays at 1 …
    assert_eq!(send_to(&mut e, s(1), &h, Outcome::Timeout), []);
    // … so the next 503 makes 2 (had the timeout reset it: 1; counted it: 2 already).
    assert_eq!(
        status_to(&mut e, s(1), &h, 503),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
    // The same sequence without split mode ejects at the timeout (a 504).
    let fields = OD_SPLIT.replace("splitExternalLocalOriginErrors = true", "");
    let mut e = engine(&mesh(4, &od(&fields), ""));
    assert_eq!(status_to(&mut e, s(1), &h, 503), []);
    assert_eq!(
        send_to(&mut e, s(1), &h, Outcome::Timeout),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
}

#[test]
fn split_mode_timeouts_on_established_connections_never_reach_the_local_threshold() {
    // [derived] The HTTP router reports a local-origin connect success when
    // the pool is ready (reference §2.1), so each attempt that timed out
    // after its connection was made counts 1 after a reset: two in a row
    // never make 2. Connect failures (no connection) do.
    let mut e = engine(&mesh(4, &od(OD_SPLIT), ""));
    let h = addr(1);
    for _ in 0..5 {
        assert_eq!(send_to(&mut e, s(1), &h, Outcome::Timeout), []);
        assert_eq!(
            send_to(
                &mut e,
                s(1),
                &h,
                Outcome::Reset(ResetReason::ConnectionTermination)
            ),
            []
        );
    }
    assert_eq!(stats(&e).ejections_detected, [0, 0, 0]);
    assert_eq!(
        send_to(&mut e, s(1), &h, Outcome::ConnectFailure),
        [ejected(s(1), &h, LOCAL, secs(30))]
    );
}

// =====================================================================
// 5. Multiplier: growth, decay, cap (reference §2.4–2.5)
// =====================================================================

#[test]
fn ejection_time_backoff_replays_envoys_eject_time_backoff_test() {
    // Base 10 s, interval 10 s: ticks at 10, 20, …
    let fields = r#"consecutive5xxErrors = 1
interval = "10s"
baseEjectionTime = "10s"
maxEjectionPercent = 100"#;
    let mut e = engine(&mesh(2, &od(fields), ""));
    let h = addr(1);
    let up = up_of(&e, &h);
    let mult = |e: &Engine| e.ejection_multiplier(up);
    assert_eq!(mult(&e), 0);

    // Ejected at 0 → 10 s → back at 10.
    assert_eq!(
        status_to(&mut e, s(0), &h, 503),
        [ejected(s(0), &h, C5XX, secs(10))]
    );
    assert_eq!(tick_until(&mut e, s(10)), [returned(s(10), &h)]);
    assert_eq!(mult(&e), 1);
    // Ejected again at 10 (after the tick) → 20 s → back at 30.
    assert_eq!(
        status_to(&mut e, s(10), &h, 503),
        [ejected(s(10), &h, C5XX, secs(20))]
    );
    assert_eq!(tick_until(&mut e, s(29)), []);
    assert_eq!(tick_until(&mut e, s(30)), [returned(s(30), &h)]);
    // Ejected at 30 → 30 s → back at 60.
    assert_eq!(
        status_to(&mut e, s(30), &h, 503),
        [ejected(s(30), &h, C5XX, secs(30))]
    );
    assert_eq!(tick_until(&mut e, s(59)), []);
    assert_eq!(tick_until(&mut e, s(60)), [returned(s(60), &h)]);
    assert_eq!(mult(&e), 3);
    // Healthy ticks at 70 and 80: 3 → 2 → 1.
    assert_eq!(tick_until(&mut e, s(70)), []);
    assert_eq!(mult(&e), 2);
    assert_eq!(tick_until(&mut e, s(80)), []);
    assert_eq!(mult(&e), 1);
    // Ejected at 80 → multiplier 2 → 20 s → back at 100.
    assert_eq!(
        status_to(&mut e, s(80), &h, 503),
        [ejected(s(80), &h, C5XX, secs(20))]
    );
    assert_eq!(mult(&e), 2);
    assert_eq!(tick_until(&mut e, s(99)), []);
    assert_eq!(tick_until(&mut e, s(100)), [returned(s(100), &h)]);
    // Two more healthy ticks: 2 → 1 → 0, and it stays at 0.
    assert_eq!(tick_until(&mut e, s(110)), []);
    assert_eq!(mult(&e), 1);
    assert_eq!(tick_until(&mut e, s(120)), []);
    assert_eq!(mult(&e), 0);
    assert_eq!(tick_until(&mut e, s(600)), []);
    assert_eq!(mult(&e), 0);
    // So the ejection at 610 lasts the base 10 s again.
    assert_eq!(
        status_to(&mut e, s(610), &h, 503),
        [ejected(s(610), &h, C5XX, secs(10))]
    );
    assert_eq!(tick_until(&mut e, s(620)), [returned(s(620), &h)]);
}

#[test]
fn ejection_time_is_capped_at_max_of_300s_and_the_base() {
    // base 3 m: 180 s, then min(360, 300) = 300 s, then 300 s, 300 s.
    let fields = r#"consecutive5xxErrors = 1
interval = "10s"
baseEjectionTime = "3m"
maxEjectionPercent = 100"#;
    let mut e = engine(&mesh(2, &od(fields), ""));
    let h = addr(1);
    let up = up_of(&e, &h);
    let mut t = 1;
    for (want, back, mult) in [(180, 190, 1), (300, 490, 2), (300, 790, 3), (300, 1090, 3)] {
        assert_eq!(
            status_to(&mut e, s(t), &h, 503),
            [ejected(s(t), &h, C5XX, secs(want))],
            "ejected at {t}"
        );
        // The multiplier climbs to max/base + 1 = 3 at most (backoff ×
        // base < max + base).
        assert_eq!(e.ejection_multiplier(up), mult);
        assert_eq!(tick_until(&mut e, s(back - 1)), []);
        assert_eq!(tick_until(&mut e, s(back)), [returned(s(back), &h)]);
        t = back;
    }

    // A base above 300 s is the max itself: every ejection lasts the base.
    let fields = fields.replace("\"3m\"", "\"400s\"");
    let mut e = engine(&mesh(2, &od(&fields), ""));
    assert_eq!(
        status_to(&mut e, s(1), &h, 503),
        [ejected(s(1), &h, C5XX, secs(400))]
    );
    assert_eq!(tick_until(&mut e, s(410)), [returned(s(410), &h)]);
    assert_eq!(
        status_to(&mut e, s(410), &h, 503),
        [ejected(s(410), &h, C5XX, secs(400))]
    );
}

// =====================================================================
// 6. Timing exactness
// =====================================================================

#[test]
fn a_host_whose_elapsed_time_exactly_equals_its_duration_returns_on_that_tick() {
    let mut e = engine(&mesh(
        4,
        &od("consecutive5xxErrors = 1\nmaxEjectionPercent = 100"),
        "",
    ));
    let (h1, h2) = (addr(1), addr(2));
    // Exactly on the 10 s tick (the tick runs first), and 1 ns later.
    assert_eq!(
        status_to(&mut e, s(10), &h1, 503),
        [ejected(s(10), &h1, C5XX, secs(30))]
    );
    let later = Time::from_nanos(s(10).as_nanos() + 1);
    assert_eq!(
        status_to(&mut e, later, &h2, 503),
        [ejected(later, &h2, C5XX, secs(30))]
    );
    // 40 s − 10 s = 30 s ≤ 30 s: h1 returns at 40; h2 misses it by 1 ns.
    assert_eq!(tick_until(&mut e, s(40)), [returned(s(40), &h1)]);
    assert_eq!(tick_until(&mut e, s(50)), [returned(s(50), &h2)]);
}

#[test]
fn poll_timeout_is_the_next_multiple_of_the_interval() {
    let mut e = engine(&mesh(2, &od(OD_3_10_30), ""));
    assert_eq!(e.poll_timeout(), Some(s(10)));
    e.handle_timeout(ms(9_999));
    assert_eq!(e.poll_timeout(), Some(s(10)));
    e.handle_timeout(s(10));
    assert_eq!(e.poll_timeout(), Some(s(20)));
    // A late call runs every tick due (20 and 30) and lands on the grid.
    e.handle_timeout(ms(35_000));
    assert_eq!(e.poll_timeout(), Some(s(40)));
    assert_eq!(e.poll_event(), None);

    let mut e = engine(&mesh(2, &od("interval = \"7s\""), ""));
    assert_eq!(e.poll_timeout(), Some(s(7)));
    e.handle_timeout(s(7));
    assert_eq!(e.poll_timeout(), Some(s(14)));

    // No outlierDetection anywhere: no detector, no timer.
    let mut e = engine(&mesh(2, "", ""));
    assert_eq!(e.poll_timeout(), None);
    e.handle_timeout(s(100));
    assert_eq!(e.poll_event(), None);
    assert_eq!(e.outlier_stats(cluster(&e)), None);
}

#[test]
fn nothing_happens_between_ticks_and_a_late_call_returns_hosts_as_of_their_tick() {
    let mut e = engine(&mesh(4, &od(OD_3_10_30), ""));
    let h = addr(1);
    let up = up_of(&e, &h);
    assert_eq!(
        fail_n(&mut e, ms(12_200), &h, 3),
        [ejected(ms(12_200), &h, C5XX, secs(30))]
    );
    // Calls between ticks (even when not due) change nothing.
    let mut t = ms(12_300);
    while t < s(50) {
        let before = e.poll_timeout();
        e.handle_timeout(t);
        assert_eq!(e.poll_event(), None, "at {t}");
        let due = before.is_some_and(|p| p <= t);
        assert_eq!(e.poll_timeout() == before, !due, "at {t}");
        assert!(e.ejection(up).is_some());
        t = t + Duration::from_millis(700);
    }

    // One late call at 55 s for a host ejected at 1 s (due 31 s): ticks 10
    // … 50 all run, the host returns as of the 40 s tick, and the 50 s tick
    // (10 s later) already decays its multiplier from 1 to 0.
    let mut e = engine(&mesh(4, &od(OD_3_10_30), ""));
    assert_eq!(
        fail_n(&mut e, s(1), &h, 3),
        [ejected(s(1), &h, C5XX, secs(30))]
    );
    assert_eq!(e.ejection_multiplier(up), 1);
    e.handle_timeout(s(55));
    let mut events = Vec::new();
    drain(&mut e, s(55), &mut events);
    assert_eq!(events, [returned(s(55), &h)]);
    assert_eq!(e.ejection_multiplier(up), 0);
    assert_eq!(e.poll_timeout(), Some(s(60)));
}

// =====================================================================
// 7. Circuit breaking (reference §3)
// =====================================================================

/// Istio's circuit-breaking task: httpbin with one connection, one pending
/// request, one request per connection, and its outlier detection.
const CB_TASK: &str = r#"[destinationRule.trafficPolicy]
connectionPool = { tcp = { maxConnections = 1 }, http = { http1MaxPendingRequests = 1, maxRequestsPerConnection = 1 } }
[destinationRule.trafficPolicy.outlierDetection]
consecutive5xxErrors = 1
interval = "1s"
baseEjectionTime = "3m"
maxEjectionPercent = 100
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    /// A caller sends its next request.
    Send(usize),
    /// A connection finished connecting.
    Ready(u64),
    /// The response on a connection arrives.
    Done(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    Connecting,
    Idle,
    /// Carrying a request of this caller (its exchange in `exchanges`).
    Busy(usize),
}

/// A fortio-like load (`-c callers -n requests`) through one proxy worker's
/// HTTP/1.1 connection pool to a one-host cluster, as a discrete-event
/// simulation: each caller sends its next request as soon as it has an
/// answer (after `think`); connections take `connect` to open and the host
/// `service` to answer; `maxRequestsPerConnection: 1` closes each
/// connection after its response.
struct FortioRun {
    e: Engine,
    cluster: ClusterId,
    max_connections: usize,
    connect: Duration,
    service: Duration,
    think: Duration,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// Callers' requests queued for a connection, with their exchanges.
    pending: VecDeque<(usize, Exchange)>,
    /// The exchange of the request on each busy connection.
    exchanges: BTreeMap<u64, Exchange>,
    queue: BinaryHeap<Reverse<(Time, u64, SimEvent)>>,
    seq: u64,
    to_send: usize,
    ok: usize,
    overflowed: usize,
    events: Vec<Timed>,
}

impl FortioRun {
    fn new(toml: &str, callers: usize, requests: usize) -> Self {
        let e = engine(toml);
        let cluster = cluster(&e);
        let mut run = Self {
            e,
            cluster,
            max_connections: 1,
            connect: Duration::from_millis(1),
            service: Duration::from_millis(10),
            think: Duration::from_millis(2),
            conns: BTreeMap::new(),
            next_conn: 0,
            pending: VecDeque::new(),
            exchanges: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            to_send: requests,
            ok: 0,
            overflowed: 0,
            events: Vec::new(),
        };
        for c in 0..callers {
            run.at(Time::ZERO, SimEvent::Send(c));
        }
        run
    }

    fn at(&mut self, t: Time, ev: SimEvent) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn open(&mut self, t: Time) {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, Conn::Connecting);
        self.e
            .connection_opened(self.e.upstream(self.cluster, 0), t);
        self.at(t + self.connect, SimEvent::Ready(id));
    }

    fn run(mut self) -> Self {
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            let ticks = tick_until(&mut self.e, t);
            self.events.extend(ticks);
            match ev {
                SimEvent::Send(caller) => self.send(caller, t),
                SimEvent::Ready(id) => {
                    self.conns.insert(id, Conn::Idle);
                    self.serve_pending(id, t);
                }
                SimEvent::Done(id) => {
                    let (Some(Conn::Busy(caller)), Some(mut ex)) =
                        (self.conns.remove(&id), self.exchanges.remove(&id))
                    else {
                        panic!("response on a connection that is not busy")
                    };
                    let step = ex.handle_response(&mut self.e, Outcome::Status(200), t);
                    assert!(
                        matches!(step, Step::Answer(a) if a.status == 200),
                        "{step:?}"
                    );
                    self.ok += 1;
                    self.at(t + self.think, SimEvent::Send(caller));
                    // maxRequestsPerConnection 1: no keep-alive.
                    self.e
                        .connection_closed(self.e.upstream(self.cluster, 0), t);
                    // The pool opens a connection for requests still waiting.
                    let connecting = self
                        .conns
                        .values()
                        .filter(|c| **c == Conn::Connecting)
                        .count();
                    if self.pending.len() > connecting
                        && (self.conns.len() < self.max_connections || self.conns.is_empty())
                    {
                        self.open(t);
                    }
                }
            }
            drain(&mut self.e, t, &mut self.events);
        }
        self
    }

    fn send(&mut self, caller: usize, t: Time) {
        if self.to_send == 0 {
            return;
        }
        self.to_send -= 1;
        let (mut ex, step) = Exchange::start(&mut self.e, &Request::get("svc", "/"), t);
        assert!(matches!(step, Step::Forward(_)), "{step:?}");
        let idle = self
            .conns
            .iter()
            .find(|(_, c)| **c == Conn::Idle)
            .map(|(id, _)| *id);
        let pool_empty = self.conns.is_empty();
        match ex.admit(&mut self.e, idle.is_some(), pool_empty, t) {
            Admit::Send { .. } => {
                let id = idle.expect("attached without a ready connection");
                self.conns.insert(id, Conn::Busy(caller));
                self.exchanges.insert(id, ex);
                self.at(t + self.service, SimEvent::Done(id));
            }
            Admit::Queue { open_connection } => {
                self.pending.push_back((caller, ex));
                if open_connection {
                    self.open(t);
                }
            }
            Admit::Answer(a) => self.overflow(caller, a, t),
            Admit::Stale => panic!("a forwarded request is admissible"),
        }
    }

    /// A local 503 UO, at once; the caller sends its next request.
    fn overflow(&mut self, caller: usize, a: Answer, t: Time) {
        assert_eq!((a.status, a.flags.to_string().as_str()), (503, "UO"));
        self.overflowed += 1;
        self.at(t + self.think, SimEvent::Send(caller));
    }

    fn serve_pending(&mut self, id: u64, t: Time) {
        while self.conns.get(&id) == Some(&Conn::Idle) {
            let Some((caller, mut ex)) = self.pending.pop_front() else {
                return;
            };
            match ex.dequeue(&mut self.e, t) {
                Admit::Send { .. } => {
                    self.conns.insert(id, Conn::Busy(caller));
                    self.exchanges.insert(id, ex);
                    self.at(t + self.service, SimEvent::Done(id));
                }
                Admit::Answer(a) => self.overflow(caller, a, t),
                Admit::Queue { .. } | Admit::Stale => panic!("dequeue never queues"),
            }
        }
    }
}

#[test]
fn istio_circuit_breaking_task_three_concurrent_callers_overflow_one_caller_never_does() {
    let toml = mesh(1, CB_TASK, "");

    // One at a time (fortio -c 1 -n 20): every request gets its connection.
    let one = FortioRun::new(&toml, 1, 20).run();
    assert_eq!((one.ok, one.overflowed), (20, 0));
    let st = one.e.breaker_stats(one.cluster);
    assert_eq!(st.rq_pending_overflow, 0);
    assert!(one.events.is_empty(), "{:?}", one.events);

    // Three at once (fortio -c 3 -n 30): the single pending slot overflows.
    let three = FortioRun::new(&toml, 3, 30).run();
    assert_eq!(three.ok + three.overflowed, 30);
    assert!(three.overflowed > 0 && three.ok > 0);
    let st = three.e.breaker_stats(three.cluster);
    assert_eq!(st.rq_pending_overflow, three.overflowed as u64);
    assert!(st.cx_overflow > 0, "{st:?}");
    let overflow_events: Vec<&Timed> = three
        .events
        .iter()
        .filter(|(_, ev)| *ev == Ev::Overflow(addr(1)))
        .collect();
    assert_eq!(overflow_events.len(), three.overflowed);
    // Overflows are local: never counted by outlier detection, even at
    // consecutive5xxErrors 1.
    assert!(
        three
            .events
            .iter()
            .all(|(_, ev)| matches!(ev, Ev::Overflow(_)))
    );
    assert_eq!(stats(&three.e), OutlierStats::default());
    // Everything finished: nothing left in the breaker.
    for run in [&one, &three] {
        let st = run.e.breaker_stats(run.cluster);
        assert_eq!(
            (st.connections, st.pending_requests, st.active_requests),
            (0, 0, 0)
        );
        assert_eq!(run.e.active_requests(up_of(&run.e, &addr(1))), 0);
    }
    eprintln!(
        "circuit-breaking task: -c 1: {} ok / {} UO; -c 3: {} ok / {} UO, cx_overflow {}",
        one.ok, one.overflowed, three.ok, three.overflowed, st.cx_overflow
    );
}

#[test]
fn overflows_never_count_towards_ejection() {
    let mut e = engine(&mesh(1, CB_TASK, ""));
    let c = cluster(&e);
    // One request queued for its connection, then 100 overflow.
    let first = forward_at(&mut e, s(1));
    assert_eq!(
        e.admit(first.upstream, false, true, s(1)),
        Admission::Queue {
            open_connection: true
        }
    );
    e.connection_opened(e.upstream(c, 0), s(1));
    for _ in 0..100 {
        let f = forward_at(&mut e, s(1));
        assert_eq!(e.admit(f.upstream, false, false, s(1)), Admission::Overflow);
    }
    let mut events = Vec::new();
    drain(&mut e, s(1), &mut events);
    assert_eq!(events.len(), 100);
    assert!(events.iter().all(|(_, ev)| *ev == Ev::Overflow(addr(1))));
    assert_eq!(e.breaker_stats(c).rq_pending_overflow, 100);
    assert_eq!(stats(&e), OutlierStats::default());
    assert_eq!(e.ejection(first.upstream), None);
    // Only the one admitted request is in flight.
    assert_eq!(e.active_requests(first.upstream), 1);
    assert_eq!(e.dequeue(first.upstream, s(1)), Admission::Attach);
    // …and a real 503 from the host does eject it (consecutive5xxErrors 1).
    e.handle_response(first.upstream, Outcome::Status(503), s(2));
    drain(&mut e, s(2), &mut events);
    assert_eq!(events[100..], [ejected(s(2), &addr(1), C5XX, secs(180))]);
}

#[test]
fn a_cancelled_attempt_frees_its_slot_and_is_never_an_outlier_failure() {
    let dr = format!(
        "[destinationRule.trafficPolicy]\nconnectionPool = {{ http = {{ http2MaxRequests = 1 }} }}\n{}",
        od("consecutive5xxErrors = 1\ninterval = \"10s\"\nbaseEjectionTime = \"30s\"")
    );
    let mut e = engine(&mesh(1, &dr, ""));
    let c = cluster(&e);
    // Admitted, then the caller gives up: slot and active count are freed.
    let a = forward_at(&mut e, s(1));
    assert_eq!(e.admit(a.upstream, true, false, s(1)), Admission::Attach);
    e.cancel(a.upstream, true, ms(1_100));
    assert_eq!(e.breaker_stats(c).active_requests, 0);
    assert_eq!(e.active_requests(a.upstream), 0);
    // Forwarded but not admitted yet (an injected delay): only the active count.
    let b = forward_at(&mut e, s(2));
    assert_eq!(e.active_requests(b.upstream), 1);
    e.cancel(b.upstream, false, s(2));
    assert_eq!(e.active_requests(b.upstream), 0);
    assert_eq!(e.breaker_stats(c).active_requests, 0);
    // Nothing reached outlier detection: no ejection, and the next request fits.
    let mut events = Vec::new();
    drain(&mut e, s(2), &mut events);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats(&e), OutlierStats::default());
    let f = forward_at(&mut e, s(3));
    assert_eq!(e.admit(f.upstream, true, false, s(3)), Admission::Attach);
}

#[test]
fn http2_max_requests_overflows_at_attach_including_a_dequeued_request() {
    let dr =
        "[destinationRule.trafficPolicy]\nconnectionPool = { http = { http2MaxRequests = 1 } }";
    let mut e = engine(&mesh(2, dr, ""));
    let c = cluster(&e);
    let t = s(1);
    // A on a ready connection: attached (1 of 1).
    let a = forward_at(&mut e, t);
    assert_eq!(e.admit(a.upstream, true, false, t), Admission::Attach);
    // B on a ready connection: refused at attach.
    let b = forward_at(&mut e, t);
    assert_eq!(e.admit(b.upstream, true, false, t), Admission::Overflow);
    // C waits for a new connection (limits on connections and pending are
    // Istio's "unlimited"), then overflows when it is dequeued.
    let cc = forward_at(&mut e, t);
    assert_eq!(
        e.admit(cc.upstream, false, false, t),
        Admission::Queue {
            open_connection: true
        }
    );
    e.connection_opened(e.upstream(c, 0), t);
    assert_eq!(e.breaker_stats(c).pending_requests, 1);
    assert_eq!(e.dequeue(cc.upstream, ms(1_005)), Admission::Overflow);
    let st = e.breaker_stats(c);
    assert_eq!(st.rq_pending_overflow, 2);
    assert_eq!((st.pending_requests, st.active_requests), (0, 1));
    let mut events = Vec::new();
    drain(&mut e, ms(1_005), &mut events);
    // Each overflow at its own time: B's at admission, C's at dequeue.
    assert_eq!(
        events,
        [
            (t, Ev::Overflow(e.endpoint_address(b.upstream).to_owned())),
            (
                ms(1_005),
                Ev::Overflow(e.endpoint_address(cc.upstream).to_owned())
            )
        ]
    );
    // Only A is in flight; once it is answered, a new request fits again.
    let in_flight: u32 = (1..=2)
        .map(|i| e.active_requests(up_of(&e, &addr(i))))
        .sum();
    assert_eq!(in_flight, 1);
    e.handle_response(a.upstream, Outcome::Status(200), s(2));
    let d = forward_at(&mut e, s(2));
    assert_eq!(e.admit(d.upstream, true, false, s(2)), Admission::Attach);
    e.handle_response(d.upstream, Outcome::Status(200), s(2));
    e.connection_closed(e.upstream(c, 0), s(2));
    let st = e.breaker_stats(c);
    assert_eq!(
        (st.connections, st.pending_requests, st.active_requests),
        (0, 0, 0)
    );
}

/// One step of the breaker property test; indices pick among what exists,
/// and `ready`/`pool_empty` describe the caller's pool for the admission a
/// step makes (a new request, or the retry of a failed one).
#[derive(Clone, Debug)]
enum Op {
    Request {
        ready: bool,
        pool_empty: bool,
    },
    Dequeue(usize),
    Cancel(usize),
    Respond {
        i: usize,
        status: u16,
        ready: bool,
        pool_empty: bool,
    },
    Open,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(ready, pool_empty)| Op::Request { ready, pool_empty }),
        2 => any::<usize>().prop_map(Op::Dequeue),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), prop::sample::select(vec![200u16, 503, 500, 0]), any::<bool>(), any::<bool>())
            .prop_map(|(i, status, ready, pool_empty)| Op::Respond { i, status, ready, pool_empty }),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
    ]
}

/// A request of the property test: its latest attempt, its router state,
/// and whether a retry of it holds a `maxRetries` slot.
#[derive(Debug)]
struct Flight {
    up: Upstream,
    state: RequestState,
    retrying: bool,
}

/// The engine and what the caller knows is really pending, attached, open.
struct BreakerModel {
    e: Engine,
    pending: Vec<Flight>,
    active: Vec<Flight>,
    conns: u32,
    overflows: u64,
    retry_overflows: u64,
}

impl BreakerModel {
    fn admit(&mut self, fl: Flight, ready: bool, pool_empty: bool, now: Time) {
        match self.e.admit(fl.up, ready, pool_empty, now) {
            Admission::Attach => self.active.push(fl),
            Admission::Queue { .. } => self.pending.push(fl),
            Admission::Overflow => {
                self.overflows += 1;
                self.end(fl, now);
            }
        }
    }

    /// The request is over without another router decision.
    fn end(&mut self, mut fl: Flight, now: Time) {
        self.e.finish_request(&mut fl.state, now);
    }

    fn respond(
        &mut self,
        mut fl: Flight,
        outcome: Outcome,
        ready: bool,
        pool_empty: bool,
        now: Time,
    ) {
        self.e.handle_response(fl.up, outcome, now);
        fl.retrying = false;
        match self.e.retry_decision(&mut fl.state, outcome, now) {
            RetryDecision::Retry { .. } => {
                fl.retrying = true;
                match self.e.retry(&mut fl.state, now) {
                    Decision::Forward(f) => {
                        fl.up = f.upstream;
                        self.admit(fl, ready, pool_empty, now);
                    }
                    _ => self.end(fl, now),
                }
            }
            RetryDecision::Done { flag } => {
                if flag == Some(ResponseFlag::UpstreamOverflow) {
                    self.retry_overflows += 1;
                }
            }
        }
    }

    fn retrying(&self) -> usize {
        self.pending
            .iter()
            .chain(&self.active)
            .filter(|f| f.retrying)
            .count()
    }
}

fn take(v: &mut Vec<Flight>, i: usize) -> Option<Flight> {
    (!v.is_empty()).then(|| v.remove(i % v.len()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the order of admissions, dequeues, cancellations, responses
    /// (with the retries they cause) and connection events, the breaker's
    /// gauges equal what is really pending, attached, retrying and open (so
    /// never below zero), overflows are counted once each, and when
    /// everything has finished every gauge is back to 0: nothing leaks.
    #[test]
    fn breaker_gauges_match_reality_and_return_to_zero(ops in prop::collection::vec(op(), 1..120)) {
        let dr = r#"[destinationRule.trafficPolicy]
connectionPool = { tcp = { maxConnections = 2 }, http = { http1MaxPendingRequests = 2, http2MaxRequests = 3, maxRetries = 1 } }
[destinationRule.trafficPolicy.outlierDetection]
consecutive5xxErrors = 2
maxEjectionPercent = 50
"#;
        let e = engine(&mesh(2, dr, &vs(r#"retries = { attempts = 2, retryOn = "5xx" }"#)));
        let c = cluster(&e);
        let mut m = BreakerModel {
            e,
            pending: Vec::new(),
            active: Vec::new(),
            conns: 0,
            overflows: 0,
            retry_overflows: 0,
        };
        let mut t = 0;
        for op in ops {
            t += 10;
            let now = ms(t);
            let _ = tick_until(&mut m.e, now);
            match op {
                Op::Request { ready, pool_empty } => {
                    let f = forward_at(&mut m.e, now);
                    let state = m.e.start_request(&f, now);
                    m.admit(Flight { up: f.upstream, state, retrying: false }, ready, pool_empty, now);
                }
                Op::Dequeue(i) => if let Some(fl) = take(&mut m.pending, i) {
                    match m.e.dequeue(fl.up, now) {
                        Admission::Attach => m.active.push(fl),
                        Admission::Overflow => {
                            m.overflows += 1;
                            m.end(fl, now);
                        }
                        Admission::Queue { .. } => prop_assert!(false, "dequeue queued"),
                    }
                },
                Op::Cancel(i) => if let Some(fl) = take(&mut m.pending, i) {
                    m.e.cancel_pending(fl.up, now);
                    m.end(fl, now);
                },
                Op::Respond { i, status, ready, pool_empty } => if let Some(fl) = take(&mut m.active, i) {
                    let outcome = if status == 0 { Outcome::Reset(ResetReason::ConnectionTermination) } else { Outcome::Status(status) };
                    m.respond(fl, outcome, ready, pool_empty, now);
                },
                Op::Open => {
                    m.conns += 1;
                    m.e.connection_opened(m.e.upstream(c, 0), now);
                }
                Op::Close => if m.conns > 0 {
                    m.conns -= 1;
                    m.e.connection_closed(m.e.upstream(c, 0), now);
                },
            }
            while m.e.poll_event().is_some() {}
            let st = m.e.breaker_stats(c);
            prop_assert_eq!(st.pending_requests as usize, m.pending.len());
            prop_assert_eq!(st.active_requests as usize, m.active.len());
            prop_assert_eq!(st.active_retries as usize, m.retrying());
            prop_assert_eq!(st.connections, m.conns);
            prop_assert_eq!(st.rq_pending_overflow, m.overflows);
            prop_assert_eq!(st.rq_retry_overflow, m.retry_overflows);
            // Each endpoint's in-flight count covers its pending and attached requests.
            let per_host: u32 = (1..=2).map(|i| m.e.active_requests(up_of(&m.e, &addr(i)))).sum();
            prop_assert_eq!(per_host as usize, m.pending.len() + m.active.len());
        }
        // Finish everything: dequeue (or overflow) what waits, answer what
        // is attached with a success, close every connection.
        let end = ms(t + 10);
        while let Some(fl) = m.pending.pop() {
            if m.e.dequeue(fl.up, end) == Admission::Attach {
                m.active.push(fl);
            } else {
                m.end(fl, end);
            }
        }
        while let Some(fl) = m.active.pop() {
            m.respond(fl, Outcome::Status(200), true, false, end);
        }
        for _ in 0..m.conns {
            m.e.connection_closed(m.e.upstream(c, 0), end);
        }
        let st = m.e.breaker_stats(c);
        prop_assert_eq!((st.connections, st.pending_requests, st.active_requests, st.active_retries), (0, 0, 0, 0));
        for i in 1..=2 {
            prop_assert_eq!(m.e.active_requests(up_of(&m.e, &addr(i))), 0);
        }
    }
}

// =====================================================================
// 8. Retries (reference §5.5–5.6)
// =====================================================================

/// What happened to one request across its attempts.
#[derive(Debug)]
struct Trace {
    /// The endpoint of each attempt.
    hosts: Vec<String>,
    /// The back-off before each retry.
    backoffs: Vec<Duration>,
    /// The final flag (`None`: the policy did not retry the last outcome).
    flag: Option<ResponseFlag>,
    /// When the last attempt ended.
    end: Time,
}

/// One request from `t`: each attempt is answered at once by
/// `answer(attempt, endpoint)`; retries wait their back-off. The router's
/// decision is asked after every attempt, successes included.
fn request(e: &mut Engine, t: Time, mut answer: impl FnMut(usize, &str) -> Outcome) -> Trace {
    let mut now = t;
    let mut f = forward_at(e, now);
    let mut state = e.start_request(&f, now);
    let mut trace = Trace {
        hosts: Vec::new(),
        backoffs: Vec::new(),
        flag: None,
        end: now,
    };
    loop {
        assert_eq!(e.admit(f.upstream, true, false, now), Admission::Attach);
        let host = e.endpoint_address(f.upstream).to_owned();
        let outcome = answer(trace.hosts.len(), &host);
        trace.hosts.push(host);
        e.handle_response(f.upstream, outcome, now);
        match e.retry_decision(&mut state, outcome, now) {
            RetryDecision::Retry { backoff } => {
                trace.backoffs.push(backoff);
                now = now + backoff;
                f = match e.retry(&mut state, now) {
                    Decision::Forward(f) => f,
                    other => panic!("retry: {}", e.describe(&other)),
                };
            }
            RetryDecision::Done { flag } => {
                trace.flag = flag;
                trace.end = now;
                assert_eq!(state.retries as usize, trace.backoffs.len());
                return trace;
            }
        }
    }
}

/// A 3-endpoint round-robin svc with a VirtualService route with `fields`.
fn retry_mesh(fields: &str) -> String {
    mesh(
        3,
        "[destinationRule.trafficPolicy]\nloadBalancer = { simple = \"ROUND_ROBIN\" }",
        &vs(fields),
    )
}

fn always(outcome: Outcome) -> impl FnMut(usize, &str) -> Outcome {
    move |_, _| outcome
}

#[test]
fn istio_default_retries_do_not_retry_a_503_but_retry_a_connect_failure_twice() {
    // No `retries` on the route (and no VirtualService at all): Istio ≥ 1.24's
    // default, 2 retries on connect-failure, refused-stream, … and no codes.
    for toml in [retry_mesh(""), mesh(3, "", "")] {
        let mut e = engine(&toml);
        let trace = request(&mut e, s(1), always(Outcome::Status(503)));
        assert_eq!((trace.hosts.len(), trace.flag), (1, None));
        let trace = request(&mut e, s(2), always(Outcome::ConnectFailure));
        assert_eq!(trace.hosts.len(), 3);
        assert_eq!(trace.flag, Some(ResponseFlag::UpstreamRetryLimitExceeded));
        assert_eq!(trace.flag.unwrap().as_str(), "URX");
        // Resets and per-try timeouts are not in the default retryOn either.
        for outcome in [
            Outcome::Reset(ResetReason::ConnectionTermination),
            Outcome::Timeout,
        ] {
            let trace = request(&mut e, s(3), always(outcome));
            assert_eq!((trace.hosts.len(), trace.flag), (1, None), "{outcome:?}");
        }
        // A connect failure, then a success: done, no flag.
        let trace = request(&mut e, s(4), |i, _| {
            if i == 0 {
                Outcome::ConnectFailure
            } else {
                Outcome::Status(200)
            }
        });
        assert_eq!((trace.hosts.len(), trace.flag), (2, None));
        assert_eq!(e.breaker_stats(cluster(&e)).active_retries, 0);
    }
}

#[test]
fn retry_on_5xx_retries_a_503_three_times_then_gives_up_with_urx() {
    let mut e = engine(&retry_mesh(
        r#"retries = { attempts = 3, retryOn = "5xx" }"#,
    ));
    let trace = request(&mut e, s(1), always(Outcome::Status(503)));
    assert_eq!(trace.hosts.len(), 4);
    assert_eq!(trace.flag, Some(ResponseFlag::UpstreamRetryLimitExceeded));
    // 5xx also covers no response at all.
    let mut t = trace.end;
    for outcome in [
        Outcome::Status(500),
        Outcome::ConnectFailure,
        Outcome::Reset(ResetReason::ConnectionTermination),
        Outcome::Timeout,
    ] {
        let trace = request(&mut e, t, always(outcome));
        assert_eq!(trace.hosts.len(), 4, "{outcome:?}");
        t = trace.end;
    }
    // Not a 4xx.
    let trace = request(&mut e, t, always(Outcome::Status(429)));
    assert_eq!((trace.hosts.len(), trace.flag), (1, None));
}

#[test]
fn retry_backoffs_are_full_jitter_exponential_and_capped_at_ten_times_the_base() {
    // Envoy's JitteredExponentialBackOffStrategy: retry k waits uniformly in
    // [0, interval_k), the interval doubling from 25 ms while under 250/2:
    // [0, 25), [0, 50), [0, 100), [0, 200), then [0, 250).
    let mut e = engine(&retry_mesh(
        r#"retries = { attempts = 5, retryOn = "5xx" }"#,
    ));
    let bounds = [25u64, 50, 100, 200, 250];
    let mut max = [0u64; 5];
    let mut sum = [0u64; 5];
    const N: u64 = 2_000;
    let mut t = s(1);
    for _ in 0..N {
        let trace = request(&mut e, t, always(Outcome::Status(503)));
        assert_eq!(trace.backoffs.len(), 5);
        for (k, b) in trace.backoffs.iter().enumerate() {
            let b = u64::try_from(b.as_millis()).unwrap();
            assert!(b < bounds[k], "retry {}: {b} ms", k + 1);
            max[k] = max[k].max(b);
            sum[k] += b;
        }
        t = trace.end + Duration::from_secs(1);
    }
    for k in 0..5 {
        // The whole range is used, and the mean is about half of it.
        assert!(
            max[k] + 5 >= bounds[k] - 1,
            "retry {}: max {}",
            k + 1,
            max[k]
        );
        let mean = sum[k] as f64 / N as f64;
        let half = (bounds[k] - 1) as f64 / 2.0;
        assert!(
            (mean - half).abs() < 0.1 * half,
            "retry {}: mean {mean}",
            k + 1
        );
    }
    // A custom base scales it: backoff = "100ms" → [0, 100), [0, 200).
    let mut e = engine(&retry_mesh(
        r#"retries = { attempts = 2, retryOn = "5xx", backoff = "100ms" }"#,
    ));
    for i in 0..200 {
        let trace = request(&mut e, s(1 + i), always(Outcome::Status(503)));
        assert!(trace.backoffs[0] < Duration::from_millis(100));
        assert!(trace.backoffs[1] < Duration::from_millis(200));
    }
}

#[test]
fn retry_on_gateway_error_does_not_retry_a_500() {
    let mut e = engine(&retry_mesh(
        r#"retries = { attempts = 3, retryOn = "gateway-error" }"#,
    ));
    let trace = request(&mut e, s(1), always(Outcome::Status(500)));
    assert_eq!((trace.hosts.len(), trace.flag), (1, None));
    for (i, status) in [502, 503, 504].into_iter().enumerate() {
        let trace = request(&mut e, s(2 + i as u64), always(Outcome::Status(status)));
        assert_eq!(trace.hosts.len(), 4, "{status}");
    }
    let trace = request(
        &mut e,
        s(5),
        always(Outcome::Reset(ResetReason::ConnectionTermination)),
    );
    assert_eq!(trace.hosts.len(), 4);
}

#[test]
fn retriable_status_codes_retries_exactly_the_listed_codes() {
    for retry_on in ["retriable-status-codes,503", "503"] {
        let mut e = engine(&retry_mesh(&format!(
            r#"retries = {{ attempts = 2, retryOn = "{retry_on}" }}"#
        )));
        let trace = request(&mut e, s(1), always(Outcome::Status(503)));
        assert_eq!(trace.hosts.len(), 3, "{retry_on}");
        assert_eq!(trace.flag, Some(ResponseFlag::UpstreamRetryLimitExceeded));
        for outcome in [
            Outcome::Status(502),
            Outcome::Status(500),
            Outcome::ConnectFailure,
            Outcome::Reset(ResetReason::ConnectionTermination),
        ] {
            let trace = request(&mut e, s(2), always(outcome));
            assert_eq!(
                (trace.hosts.len(), trace.flag),
                (1, None),
                "{retry_on}: {outcome:?}"
            );
        }
    }
}

#[test]
fn no_retry_once_the_route_timeout_has_passed() {
    let mut e = engine(&retry_mesh(
        "retries = { attempts = 3, retryOn = \"5xx\" }\ntimeout = \"2s\"",
    ));
    let t0 = s(10);
    let f = forward_at(&mut e, t0);
    assert_eq!(f.timeout, Some(secs(2)));
    let mut state = e.start_request(&f, t0);
    assert_eq!(e.admit(f.upstream, true, false, t0), Admission::Attach);
    // The first attempt fails at 1.9 s: retried.
    let t1 = t0 + Duration::from_millis(1_900);
    e.handle_response(f.upstream, Outcome::Status(503), t1);
    let RetryDecision::Retry { backoff } = e.retry_decision(&mut state, Outcome::Status(503), t1)
    else {
        panic!("not retried before the route timeout")
    };
    let Decision::Forward(f2) = e.retry(&mut state, t1 + backoff) else {
        panic!()
    };
    assert_eq!(
        e.admit(f2.upstream, true, false, t1 + backoff),
        Admission::Attach
    );
    // The route timeout fires at exactly 2 s: the attempt is reset and the
    // request ends 504 UT, not retried.
    let t2 = t0 + secs(2);
    e.handle_response(f2.upstream, Outcome::Timeout, t2);
    assert_eq!(
        e.retry_decision(&mut state, Outcome::Timeout, t2),
        RetryDecision::Done {
            flag: Some(ResponseFlag::UpstreamRequestTimeout)
        }
    );
    assert_eq!(ResponseFlag::UpstreamRequestTimeout.as_str(), "UT");
    assert_eq!(state.retries, 1);
    assert_eq!(e.breaker_stats(cluster(&e)).active_retries, 0);
}

#[test]
fn max_retries_1_refuses_a_second_concurrent_retry_with_uo() {
    let dr = r#"[destinationRule.trafficPolicy]
loadBalancer = { simple = "ROUND_ROBIN" }
connectionPool = { http = { maxRetries = 1 } }"#;
    let mut e = engine(&mesh(
        3,
        dr,
        &vs(r#"retries = { attempts = 3, retryOn = "5xx" }"#),
    ));
    let c = cluster(&e);
    let t = s(1);
    let (a, b) = (forward_at(&mut e, t), forward_at(&mut e, t));
    let (mut sa, mut sb) = (e.start_request(&a, t), e.start_request(&b, t));
    for f in [&a, &b] {
        assert_eq!(e.admit(f.upstream, true, false, t), Admission::Attach);
        e.handle_response(f.upstream, Outcome::Status(503), t);
    }
    let RetryDecision::Retry { backoff } = e.retry_decision(&mut sa, Outcome::Status(503), t)
    else {
        panic!("the first retry fits")
    };
    assert_eq!(
        e.retry_decision(&mut sb, Outcome::Status(503), t),
        RetryDecision::Done {
            flag: Some(ResponseFlag::UpstreamOverflow)
        }
    );
    let st = e.breaker_stats(c);
    assert_eq!((st.active_retries, st.rq_retry_overflow), (1, 1));
    // A's retry succeeds: its slot is free again once the router hears of it.
    let ta = t + backoff;
    let Decision::Forward(a2) = e.retry(&mut sa, ta) else {
        panic!()
    };
    assert_eq!(e.admit(a2.upstream, true, false, ta), Admission::Attach);
    e.handle_response(a2.upstream, Outcome::Status(200), ta);
    assert_eq!(
        e.retry_decision(&mut sa, Outcome::Status(200), ta),
        RetryDecision::Done { flag: None }
    );
    assert_eq!(e.breaker_stats(c).active_retries, 0);
    // So a later request may retry again.
    let trace = request(&mut e, s(2), |i, _| {
        if i == 0 {
            Outcome::Status(503)
        } else {
            Outcome::Status(200)
        }
    });
    assert_eq!((trace.hosts.len(), trace.flag), (2, None));
    let st = e.breaker_stats(c);
    assert_eq!((st.active_retries, st.rq_retry_overflow), (0, 1));
}

#[test]
fn a_request_that_ends_during_a_retry_releases_its_retry_slot() {
    // A retry that never reports (its attempt overflowed, found no host, or
    // the route timeout fired during the back-off) must not keep its
    // maxRetries slot: Envoy frees it when the request ends.
    let dr = r#"[destinationRule.trafficPolicy]
connectionPool = { http = { maxRetries = 1, http2MaxRequests = 1 } }"#;
    let mut e = engine(&mesh(
        2,
        dr,
        &vs(r#"retries = { attempts = 3, retryOn = "5xx" }"#),
    ));
    let c = cluster(&e);
    let t = s(1);
    let a = forward_at(&mut e, t);
    let mut sa: RequestState = e.start_request(&a, t);
    assert_eq!(e.admit(a.upstream, true, false, t), Admission::Attach);
    e.handle_response(a.upstream, Outcome::Status(503), t);
    assert!(matches!(
        e.retry_decision(&mut sa, Outcome::Status(503), t),
        RetryDecision::Retry { .. }
    ));
    // Another request holds the only active-request slot; A's retry overflows.
    let other = forward_at(&mut e, t);
    assert_eq!(e.admit(other.upstream, true, false, t), Admission::Attach);
    let Decision::Forward(a2) = e.retry(&mut sa, ms(1_100)) else {
        panic!()
    };
    assert_eq!(
        e.admit(a2.upstream, true, false, ms(1_100)),
        Admission::Overflow
    );
    assert_eq!(e.breaker_stats(c).active_retries, 1);
    e.finish_request(&mut sa, ms(1_100));
    e.finish_request(&mut sa, ms(1_100)); // idempotent
    let st = e.breaker_stats(c);
    assert_eq!((st.active_retries, st.active_requests), (0, 1));
    e.handle_response(other.upstream, Outcome::Status(200), ms(1_200));
    assert_eq!(e.breaker_stats(c).active_requests, 0);
}

#[test]
fn a_retry_avoids_the_hosts_already_tried() {
    // 3 hosts, 2 retries, every attempt fails. With the previous_hosts
    // predicate the balancer re-picks up to 5 times
    // (host_selection_retry_max_attempts) and then keeps its last pick.
    const N: usize = 600;
    for lb in ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"] {
        for predicate in [true, false] {
            let fields = format!(
                r#"retries = {{ attempts = 2, retryOn = "5xx", retryIgnorePreviousHosts = {predicate} }}"#
            );
            let mut e = engine(&mesh(
                3,
                &format!("[destinationRule.trafficPolicy]\nloadBalancer = {{ simple = \"{lb}\" }}"),
                &vs(&fields),
            ));
            // first retry on the failed host; second retry on either tried host.
            let (mut again, mut either) = (0, 0);
            let mut t = s(1);
            for _ in 0..N {
                let trace = request(&mut e, t, always(Outcome::Status(503)));
                t = trace.end + secs(1);
                let h = &trace.hosts;
                assert_eq!(h.len(), 3);
                again += usize::from(h[1] == h[0]);
                either += usize::from(h[2] == h[0] || h[2] == h[1]);
            }
            let label = format!("{lb}, previous_hosts {predicate}: {again} / {either} of {N}");
            match (lb, predicate) {
                // Round robin moves on by itself: never a tried host.
                ("ROUND_ROBIN", _) => assert_eq!((again, either), (0, 0), "{label}"),
                // Uniform picks (P2C between idle hosts is the first draw):
                // the failed host comes back with probability (1/3)^6 ≈ 0.14 %,
                // a tried one on the second retry with (2/3)^6 ≈ 8.8 %.
                (_, true) => {
                    assert!(again <= 5, "{label}");
                    assert!((20..=90).contains(&either), "{label}");
                }
                // Without the predicate, independent uniform picks: 1/3, and
                // 2/3 · 2/3 + 1/3 · 1/3 = 5/9 (≈ 333 of 600).
                (_, false) => {
                    assert!((150..=250).contains(&again), "{label}");
                    assert!((280..=390).contains(&either), "{label}");
                }
            }
        }
    }
}

#[test]
fn a_retry_of_a_consistent_hash_route_goes_back_to_the_same_host() {
    // Reference §4.7: a single-destination VirtualService route whose
    // destination hashes has no previous_hosts predicate, so the retry
    // hashes to the same host; with retryIgnorePreviousHosts it moves.
    for hash in [
        "consistentHash = { httpHeaderName = \"x-user\" }",
        "consistentHash = { httpHeaderName = \"x-user\", maglev = { tableSize = 65537 } }",
    ] {
        for (fields, same) in [
            (r#"retries = { attempts = 2, retryOn = "5xx" }"#, true),
            (
                r#"retries = { attempts = 2, retryOn = "5xx", retryIgnorePreviousHosts = true }"#,
                false,
            ),
        ] {
            let dr = format!("[destinationRule.trafficPolicy]\nloadBalancer = {{ {hash} }}");
            let mut e = engine(&mesh(5, &dr, &vs(fields)));
            for i in 0..100 {
                let user = format!("user-{i}");
                let headers = [("x-user", user.as_str())];
                let req = Request::get("svc", "/").with_headers(&headers);
                let now = s(1 + i);
                let Decision::Forward(f) = e.handle_request(&req, now) else {
                    panic!()
                };
                let mut state = e.start_request(&f, now);
                let mut hosts = vec![e.endpoint_address(f.upstream).to_owned()];
                let mut up = f.upstream;
                loop {
                    assert_eq!(e.admit(up, true, false, now), Admission::Attach);
                    e.handle_response(up, Outcome::Status(503), now);
                    match e.retry_decision(&mut state, Outcome::Status(503), now) {
                        RetryDecision::Retry { .. } => {
                            let Decision::Forward(f) = e.retry(&mut state, now) else {
                                panic!()
                            };
                            up = f.upstream;
                            hosts.push(e.endpoint_address(up).to_owned());
                        }
                        RetryDecision::Done { .. } => break,
                    }
                }
                assert_eq!(hosts.len(), 3);
                if same {
                    assert!(
                        hosts.iter().all(|h| *h == hosts[0]),
                        "{hash} {user}: {hosts:?}"
                    );
                } else {
                    assert_ne!(hosts[1], hosts[0], "{hash} {user}: {hosts:?}");
                }
            }
        }
    }
}

// =====================================================================
// 9. Reconfiguration
// =====================================================================

const OD_1_10_30: &str = r#"consecutive5xxErrors = 1
interval = "10s"
baseEjectionTime = "30s"
maxEjectionPercent = 100"#;

#[test]
fn deleting_the_virtual_service_keeps_ejections_and_their_schedule() {
    let with_vs = mesh(4, &od(OD_1_10_30), &vs(""));
    let without_vs = mesh(4, &od(OD_1_10_30), "");
    let mut e = engine(&with_vs);
    let h = addr(1);
    assert_eq!(
        status_to(&mut e, s(5), &h, 503),
        [ejected(s(5), &h, C5XX, secs(30))]
    );
    // "Delete traffic routing": the VirtualService goes, the rule stays.
    e.reconfigure(Arc::new(config(&without_vs)), s(7));
    let mut events = Vec::new();
    drain(&mut e, s(7), &mut events);
    assert_eq!(
        events,
        [(
            s(7),
            Ev::Config {
                clusters: 1,
                routes: 1
            }
        )]
    );
    let up = up_of(&e, &h);
    assert_eq!(e.ejection(up), Some((s(5), secs(30))));
    assert_eq!(e.ejection_multiplier(up), 1);
    assert_eq!(e.poll_timeout(), Some(s(10)));
    let counts = spread(&mut e, s(8), 300);
    assert!(!counts.contains_key(&h), "{counts:?}");
    // Due at 35 s: back on the 40 s tick, as before the push.
    assert_eq!(tick_until(&mut e, s(39)), []);
    assert_eq!(tick_until(&mut e, s(40)), [returned(s(40), &h)]);
    assert_eq!(stats(&e).ejections_enforced_total, 1);
}

#[test]
fn an_upstream_from_before_a_reconfigure_is_answered_after_it_when_indices_shifted() {
    let before = mesh(4, &od(OD_1_10_30), "");
    // 10.1.0.1 leaves: 10.1.0.3 moves from index 2 to index 1.
    let after = before.replace("  { address = \"10.1.0.1:80\" },\n", "");
    assert_ne!(before, after);
    let mut e = engine(&before);
    let c = cluster(&e);
    let (h1, h3) = (addr(1), addr(3));
    let to_h3 = hold(&mut e, s(1), &h3);
    let to_h1 = hold(&mut e, s(1), &h1);
    assert_eq!(e.breaker_stats(c).active_requests, 2);
    e.reconfigure(Arc::new(config(&after)), s(2));
    let _ = e.poll_event();
    assert_eq!(up_of(&e, &h3).endpoint.0, 1);
    assert_eq!(e.endpoint_address(to_h3), h3);
    assert_eq!(e.active_requests(to_h3), 1);
    assert_eq!(e.endpoint_address(to_h1), "?");
    // The answer lands on 10.1.0.3, wherever it now is, and ejects it.
    e.handle_response(to_h3, Outcome::Status(503), s(3));
    let mut events = Vec::new();
    drain(&mut e, s(3), &mut events);
    assert_eq!(events, [ejected(s(3), &h3, C5XX, secs(30))]);
    assert_eq!(e.active_requests(to_h3), 0);
    assert_eq!(e.ejection(up_of(&e, &h3)), Some((s(3), secs(30))));
    for other in [addr(2), addr(4)] {
        assert_eq!(e.ejection(up_of(&e, &other)), None);
    }
    // The request to the endpoint that left still ends: no panic, no
    // outlier effect, and the cluster's breaker no longer counts it.
    e.handle_response(to_h1, Outcome::Status(503), s(3));
    assert_eq!(e.poll_event(), None);
    let st = e.breaker_stats(c);
    assert_eq!((st.active_requests, st.pending_requests), (0, 0));
    // Traffic goes to the two healthy survivors only.
    let counts = spread(&mut e, s(4), 200);
    assert_eq!(counts.keys().collect::<Vec<_>>(), [&addr(2), &addr(4)]);
}

/// At `t`, requests until one is routed to `host`; that forward is
/// returned un-admitted, the others are admitted and answered 200.
fn forward_to(e: &mut Engine, t: Time, host: &str) -> Forward {
    for _ in 0..10_000 {
        let f = forward_at(e, t);
        if e.endpoint_address(f.upstream) == host {
            return f;
        }
        assert_eq!(e.admit(f.upstream, true, false, t), Admission::Attach);
        e.handle_response(f.upstream, Outcome::Status(200), t);
    }
    panic!("{host} is never chosen at {t}")
}

#[test]
fn requests_queued_or_retrying_for_an_endpoint_that_left_still_free_their_breaker_slots() {
    let dr = r#"[destinationRule.trafficPolicy]
loadBalancer = { simple = "ROUND_ROBIN" }
connectionPool = { http = { maxRetries = 1 } }"#;
    let before = mesh(3, dr, &vs(r#"retries = { attempts = 2, retryOn = "5xx" }"#));
    let after = before.replace("  { address = \"10.1.0.1:80\" },\n", "");
    let mut e = engine(&before);
    let c = cluster(&e);
    let (h1, t) = (addr(1), s(1));
    // Two requests wait for a connection to 10.1.0.1, one is attached to it.
    let q1 = forward_to(&mut e, t, &h1);
    assert_eq!(
        e.admit(q1.upstream, false, true, t),
        Admission::Queue {
            open_connection: true
        }
    );
    let q2 = forward_to(&mut e, t, &h1);
    assert!(matches!(
        e.admit(q2.upstream, false, false, t),
        Admission::Queue { .. }
    ));
    let r = forward_to(&mut e, t, &h1);
    let mut state = e.start_request(&r, t);
    assert_eq!(e.admit(r.upstream, true, false, t), Admission::Attach);
    let st = e.breaker_stats(c);
    assert_eq!((st.pending_requests, st.active_requests), (2, 1));

    // 10.1.0.1 leaves the service.
    e.reconfigure(Arc::new(config(&after)), s(2));
    let _ = e.poll_event();
    let t = s(3);
    e.cancel_pending(q1.upstream, t);
    assert_eq!(e.dequeue(q2.upstream, t), Admission::Attach);
    e.handle_response(q2.upstream, Outcome::Status(200), t);
    e.handle_response(r.upstream, Outcome::Status(503), t);
    let st = e.breaker_stats(c);
    assert_eq!((st.pending_requests, st.active_requests), (0, 0));
    // The failed attempt is still retried, within the same cluster.
    let RetryDecision::Retry { backoff } = e.retry_decision(&mut state, Outcome::Status(503), t)
    else {
        panic!("not retried because its endpoint left")
    };
    let Decision::Forward(f) = e.retry(&mut state, t + backoff) else {
        panic!()
    };
    assert_ne!(e.endpoint_address(f.upstream), h1);
    assert_eq!(e.breaker_stats(c).active_retries, 1);
    assert_eq!(
        e.admit(f.upstream, true, false, t + backoff),
        Admission::Attach
    );
    e.handle_response(f.upstream, Outcome::Status(200), t + backoff);
    assert_eq!(
        e.retry_decision(&mut state, Outcome::Status(200), t + backoff),
        RetryDecision::Done { flag: None }
    );
    let st = e.breaker_stats(c);
    assert_eq!(
        (st.pending_requests, st.active_requests, st.active_retries),
        (0, 0, 0)
    );
}

#[test]
fn removing_the_outlier_detection_block_returns_every_host_to_the_balancer() {
    let with = mesh(4, &od(OD_1_10_30), "");
    let without = mesh(4, "", "");
    let mut e = engine(&with);
    let h = addr(1);
    assert_eq!(
        status_to(&mut e, s(5), &h, 503),
        [ejected(s(5), &h, C5XX, secs(30))]
    );
    e.reconfigure(Arc::new(config(&without)), s(6));
    let mut events = Vec::new();
    drain(&mut e, s(6), &mut events);
    // No detector: no Returned event, no timer, no ejection, no stats.
    assert_eq!(
        events,
        [(
            s(6),
            Ev::Config {
                clusters: 1,
                routes: 1
            }
        )]
    );
    assert_eq!(e.poll_timeout(), None);
    assert_eq!(e.ejection(up_of(&e, &h)), None);
    assert_eq!(e.outlier_stats(cluster(&e)), None);
    assert_eq!(spread(&mut e, s(7), 400).len(), 4);
    // And failures no longer eject anyone.
    assert_eq!(fail_n(&mut e, s(8), &h, 20), []);
}

#[test]
fn a_request_routed_before_a_push_keeps_its_route_and_retry_policy() {
    let vs = r#"
[[virtualService]]
name = "svc"
hosts = ["svc"]
[[virtualService.http]]
name = "api"
match = [{ uri = { prefix = "/api" } }]
route = [{ destination = { host = "svc" } }]
retries = { attempts = 3, retryOn = "5xx" }
[[virtualService.http]]
name = "rest"
route = [{ destination = { host = "svc" } }]
"#;
    let mut e = engine(&mesh(3, "", vs));
    let d = e.handle_request(&Request::get("svc", "/api/x"), s(1));
    let Decision::Forward(f) = d else {
        panic!("{}", e.describe(&d))
    };
    assert_eq!(e.admit(f.upstream, true, false, s(1)), Admission::Attach);
    let mut state = e.start_request(&f, s(1));
    // The VirtualService is deleted: one default route is left.
    e.reconfigure(Arc::new(config(&mesh(3, "", ""))), s(2));
    assert_eq!(
        e.route(f.route).unwrap().name,
        "api",
        "the old route is still readable"
    );
    e.handle_response(f.upstream, Outcome::Status(503), s(2));
    for retry in 1..=3 {
        let RetryDecision::Retry { .. } = e.retry_decision(&mut state, Outcome::Status(503), s(2))
        else {
            panic!("retry {retry} of the old policy (3 attempts on 5xx) must be made");
        };
        let Decision::Forward(g) = e.retry(&mut state, s(2)) else {
            panic!()
        };
        assert_eq!(e.admit(g.upstream, true, false, s(2)), Admission::Attach);
        e.handle_response(g.upstream, Outcome::Status(503), s(2));
    }
    assert_eq!(
        e.retry_decision(&mut state, Outcome::Status(503), s(2)),
        RetryDecision::Done {
            flag: Some(ResponseFlag::UpstreamRetryLimitExceeded)
        }
    );
    // A new request gets the new (default) route.
    let Decision::Forward(n) = e.handle_request(&Request::get("svc", "/api/x"), s(3)) else {
        panic!()
    };
    assert_eq!(e.route(n.route).unwrap().name, "default");
}

#[test]
fn a_connection_opened_before_a_push_is_closed_against_its_cluster_after_clusters_move() {
    let two = |first: &str, second: &str| {
        format!(
            "[[service]]\nname = \"{first}\"\nport = 80\nendpoints = [{{ address = \"10.2.0.1:80\" }}]\n\
             [[service]]\nname = \"{second}\"\nport = 80\nendpoints = [{{ address = \"10.3.0.1:80\" }}]\n"
        )
    };
    let mut e = engine(&two("a", "b"));
    let Decision::Forward(f) = e.handle_request(&Request::get("b", "/"), s(1)) else {
        panic!()
    };
    e.connection_opened(f.upstream, s(1));
    let b_before = e
        .cluster_by_name("outbound|80||b.default.svc.cluster.local")
        .unwrap();
    assert_eq!(e.breaker_stats(b_before).connections, 1);
    // The push lists the services the other way round: cluster indices swap.
    e.reconfigure(Arc::new(config(&two("b", "a"))), s(2));
    let b = e
        .cluster_by_name("outbound|80||b.default.svc.cluster.local")
        .unwrap();
    let a = e
        .cluster_by_name("outbound|80||a.default.svc.cluster.local")
        .unwrap();
    assert_ne!(b, b_before);
    assert_eq!(
        e.breaker_stats(b).connections,
        1,
        "the count moved with the cluster"
    );
    e.connection_closed(f.upstream, s(3));
    assert_eq!(e.breaker_stats(b).connections, 0);
    assert_eq!(e.breaker_stats(a).connections, 0);
}
