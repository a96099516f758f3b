//! Test support shared by the unit tests of several modules, and the tests
//! that span modules (the sticky-weights extension, end to end).

mod resilience;
mod sticky;

use std::sync::Arc;

use crate::config::{self, Config, Warning};
use crate::{Decision, Engine, Forward, Outcome, ProxySpec, Request, Time};

/// The file name test configs are read as; error messages start with it.
pub(crate) const FILE: &str = "t.toml";

/// The engine seed of every test engine (tests must not depend on its value).
pub(crate) const SEED: u64 = 7;

/// A validated config; panics with every error when it is invalid.
pub(crate) fn config(toml: &str) -> Config {
    match config::from_toml(toml, Some(FILE)) {
        Ok((c, _)) => c,
        Err(e) => panic!("invalid test config:\n{e}\n---\n{toml}"),
    }
}

/// The warnings of a valid config.
pub(crate) fn warnings(toml: &str) -> Vec<Warning> {
    match config::from_toml(toml, Some(FILE)) {
        Ok((_, w)) => w,
        Err(e) => panic!("invalid test config:\n{e}\n---\n{toml}"),
    }
}

/// A sidecar in namespace `default` without labels.
pub(crate) fn sidecar() -> ProxySpec {
    ProxySpec::sidecar("default", &[])
}

/// An engine for a default sidecar.
pub(crate) fn engine(toml: &str) -> Engine {
    engine_for(toml, sidecar())
}

/// An engine for `proxy`.
pub(crate) fn engine_for(toml: &str, proxy: ProxySpec) -> Engine {
    Engine::new(Arc::new(config(toml)), proxy, SEED)
}

/// The forward decided for `req`, left unanswered (its endpoint keeps one
/// more active request). Panics on any other decision.
pub(crate) fn forward(e: &mut Engine, req: &Request<'_>) -> Forward {
    match e.handle_request(req, Time::ZERO) {
        Decision::Forward(f) => f,
        other => panic!("expected a forward, got {}", e.describe(&other)),
    }
}

/// Forwards `req`, answers it with a 200, and returns the endpoint address.
pub(crate) fn pick(e: &mut Engine, req: &Request<'_>) -> String {
    let f = forward(e, req);
    let admitted = e.admit(f.upstream, true, false, Time::ZERO);
    assert_eq!(admitted, crate::Admission::Attach);
    e.handle_response(f.upstream, Outcome::Status(200), Time::ZERO);
    e.endpoint_address(f.upstream).to_owned()
}

/// Forwards `req`, answers it, and returns the subset of the chosen cluster
/// (`""` for the cluster without subset).
pub(crate) fn pick_subset(e: &mut Engine, req: &Request<'_>) -> String {
    let f = forward(e, req);
    let admitted = e.admit(f.upstream, true, false, Time::ZERO);
    assert_eq!(admitted, crate::Admission::Attach);
    e.handle_response(f.upstream, Outcome::Status(200), Time::ZERO);
    subset_of(e.cluster_name(f.upstream.cluster)).to_owned()
}

/// `outbound|9080|v1|reviews...` → `v1`.
pub(crate) fn subset_of(cluster_name: &str) -> &str {
    cluster_name.split('|').nth(2).unwrap_or("")
}

/// Service `reviews` with one endpoint per version (10.0.0.1–3:9080) and a
/// DestinationRule with subsets v1, v2, v3; then `extra` (more objects).
pub(crate) fn three_versions(extra: &str) -> String {
    format!(
        r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [
  {{ address = "10.0.0.1:9080", labels = {{ version = "v1" }} }},
  {{ address = "10.0.0.2:9080", labels = {{ version = "v2" }} }},
  {{ address = "10.0.0.3:9080", labels = {{ version = "v3" }} }},
]

[[destinationRule]]
name = "reviews"
host = "reviews"
subsets = [
  {{ name = "v1", labels = {{ version = "v1" }} }},
  {{ name = "v2", labels = {{ version = "v2" }} }},
  {{ name = "v3", labels = {{ version = "v3" }} }},
]
{extra}
"#
    )
}

#[test]
fn a_forward_names_the_drawn_destination_even_when_two_share_a_cluster() {
    // Two destinations of one subset, told apart only by their header
    // operations: the forward says which was drawn, a retry keeps it.
    let mut e = engine(&three_versions(
        r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
retries = { attempts = 1, retryOn = "5xx" }
route = [
  { destination = { host = "reviews", subset = "v1" }, weight = 30, headers = { request = { set = { "x-d" = "a" } } } },
  { destination = { host = "reviews", subset = "v1" }, weight = 70, headers = { request = { set = { "x-d" = "b" } } } },
]
"#,
    ));
    let mut drawn = [0u32; 2];
    let mut retried = 0;
    for _ in 0..1000 {
        let f = forward(&mut e, &Request::get("reviews", "/"));
        drawn[f.destination as usize] += 1;
        let mut state = e.start_request(&f, Time::ZERO);
        assert_eq!(
            e.admit(f.upstream, true, false, Time::ZERO),
            crate::Admission::Attach
        );
        e.handle_response(f.upstream, Outcome::Status(503), Time::ZERO);
        match e.retry_decision(&mut state, Outcome::Status(503), Time::ZERO) {
            crate::RetryDecision::Retry { .. } => match e.retry(&mut state, Time::ZERO) {
                Decision::Forward(r) => {
                    assert_eq!(r.destination, f.destination);
                    retried += 1;
                    assert_eq!(
                        e.admit(r.upstream, true, false, Time::ZERO),
                        crate::Admission::Attach
                    );
                    e.handle_response(r.upstream, Outcome::Status(200), Time::ZERO);
                    let done = e.retry_decision(&mut state, Outcome::Status(200), Time::ZERO);
                    assert!(matches!(done, crate::RetryDecision::Done { .. }));
                }
                other => panic!("expected a retry forward, got {}", e.describe(&other)),
            },
            crate::RetryDecision::Done { .. } => e.finish_request(&mut state, Time::ZERO),
        }
    }
    // 30/70 of 1,000 draws, within 5 sigma (sigma ≈ 14.5).
    assert!((228..=372).contains(&drawn[0]), "{drawn:?}");
    // Every first attempt's 503 was retried (`retryOn = "5xx"`).
    assert_eq!(retried, 1000);
}

/// The address of endpoint `i` (1-based) of [`mesh`].
pub(crate) fn addr(i: usize) -> String {
    format!("10.1.0.{i}:80")
}

/// Service `svc` with endpoints 10.1.0.1..=n, a DestinationRule whose body
/// (TOML after `host = "svc"`) is `dr`, then `extra` (VirtualServices).
pub(crate) fn mesh(n: usize, dr: &str, extra: &str) -> String {
    let endpoints: String = (1..=n)
        .map(|i| format!("  {{ address = \"{}\" }},\n", addr(i)))
        .collect();
    format!(
        r#"
[[service]]
name = "svc"
port = 80
endpoints = [
{endpoints}]

[[destinationRule]]
name = "svc"
host = "svc"
{dr}
{extra}
"#
    )
}

/// A VirtualService for svc whose only route has these extra fields.
pub(crate) fn vs(route_fields: &str) -> String {
    format!(
        r#"
[[virtualService]]
name = "svc"
hosts = ["svc"]
[[virtualService.http]]
route = [{{ destination = {{ host = "svc" }} }}]
{route_fields}
"#
    )
}

/// `v` milliseconds after the start.
pub(crate) fn ms(v: u64) -> Time {
    Time::from_millis(v)
}
