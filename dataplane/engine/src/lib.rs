//! # mesh-engine
//!
//! The shared engine of meshsim: Istio routing, load balancing and session
//! affinity, behaving as Envoy does when Istio configures it. It is pure and
//! sans-IO: time is an argument (`now`), randomness comes from a seed given at
//! construction, and the engine never sleeps, spawns or touches a socket. The
//! simulator drives it with a virtual clock and the proxy with a real one.
//!
//! ```
//! use std::sync::Arc;
//! use mesh_engine::{Decision, Engine, ProxySpec, Request, Time, config};
//!
//! let toml = r#"
//! [[service]]
//! name = "reviews"
//! port = 9080
//! endpoints = [
//!   { address = "10.0.0.1:9080", labels = { version = "v1" } },
//!   { address = "10.0.0.2:9080", labels = { version = "v2" } },
//! ]
//!
//! [[destinationRule]]
//! name = "reviews"
//! host = "reviews"
//! subsets = [
//!   { name = "v1", labels = { version = "v1" } },
//!   { name = "v2", labels = { version = "v2" } },
//! ]
//!
//! [[virtualService]]
//! name = "reviews"
//! hosts = ["reviews"]
//! [[virtualService.http]]
//! match = [{ headers = { end-user = { exact = "jason" } } }]
//! route = [{ destination = { host = "reviews", subset = "v2" } }]
//! [[virtualService.http]]
//! route = [{ destination = { host = "reviews", subset = "v1" } }]
//! "#;
//! let (config, _warnings) = config::from_toml(toml, Some("mesh.toml")).unwrap();
//! let mut engine = Engine::new(Arc::new(config), ProxySpec::sidecar("default", &[]), 1);
//!
//! let headers = [("end-user", "jason")];
//! let req = Request::get("reviews:9080", "/reviews/1").with_headers(&headers);
//! let Decision::Forward(f) = engine.handle_request(&req, Time::ZERO) else { panic!() };
//! assert_eq!(engine.endpoint_address(f.upstream), "10.0.0.2:9080");
//! ```
//!
//! # Driving the engine
//!
//! A caller owns the clock, the sockets and the timers; the engine owns the
//! decisions. Each request is an [`Exchange`]: the caller feeds it what
//! happened (`handle_*`, `admit`, `dequeue`, `cancel`) with the time and
//! does what it answers ([`Step`], [`Admit`]): forward to a host, queue for
//! a connection, wait out a back-off, answer with a status and Envoy's
//! response flags. The simulator, meshproxy and the engine's tests all
//! drive requests this way. Between requests, run the outlier-detection
//! ticks when [`Engine::poll_timeout`] says and drain
//! [`Engine::poll_event`].
//!
//! ```
//! use std::sync::Arc;
//! use mesh_engine::{
//!     Admit, Engine, EngineEvent, Exchange, Outcome, ProxySpec, Request, Step, Time, config,
//! };
//!
//! // Two endpoints; the first always answers 503. Retries on 5xx, and
//! // outlier detection ejecting after 2 consecutive 5xx.
//! let toml = r#"
//! [[service]]
//! name = "backend"
//! port = 80
//! endpoints = [{ address = "10.0.0.1:80" }, { address = "10.0.0.2:80" }]
//!
//! [[destinationRule]]
//! name = "backend"
//! host = "backend"
//! [destinationRule.trafficPolicy]
//! loadBalancer = { simple = "ROUND_ROBIN" }
//! outlierDetection = { consecutive5xxErrors = 2, interval = "1s", baseEjectionTime = "30s", maxEjectionPercent = 100 }
//!
//! [[virtualService]]
//! name = "backend"
//! hosts = ["backend"]
//! [[virtualService.http]]
//! retries = { attempts = 2, retryOn = "5xx" }
//! route = [{ destination = { host = "backend" } }]
//! "#;
//! let (config, _) = config::from_toml(toml, Some("mesh.toml")).unwrap();
//! let mut engine = Engine::new(Arc::new(config), ProxySpec::sidecar("default", &[]), 1);
//! // What the upstream answers: the caller's world (a socket, or a model).
//! let answer = |address: &str| if address == "10.0.0.1:80" { 503 } else { 200 };
//!
//! let mut now = Time::from_millis(0);
//! let mut ejected = Vec::new();
//! let mut failed_at = Vec::new(); // when the 503s were reported
//! for _ in 0..6 {
//!     now = now + std::time::Duration::from_millis(10);
//!     // Outlier-detection ticks due by now.
//!     if engine.poll_timeout().is_some_and(|t| t <= now) {
//!         engine.handle_timeout(now);
//!     }
//!     let (mut ex, mut step) = Exchange::start(&mut engine, &Request::get("backend", "/"), now);
//!     let final_answer = loop {
//!         match step {
//!             Step::Forward(f) => {
//!                 // No connection model here: a ready connection is always there.
//!                 let Admit::Send { .. } = ex.admit(&mut engine, true, false, now) else {
//!                     panic!("no breaker limits here")
//!                 };
//!                 let status = answer(engine.endpoint_address(f.upstream));
//!                 if status == 503 {
//!                     failed_at.push(now);
//!                 }
//!                 step = ex.handle_response(&mut engine, Outcome::Status(status), now);
//!             }
//!             Step::Backoff { until } => {
//!                 now = until; // a timer, in a real caller
//!                 step = ex.handle_backoff_over(&mut engine, now);
//!             }
//!             Step::Answer(a) => break a,
//!             Step::Delay { .. } | Step::Stale => unreachable!("no fault here"),
//!         }
//!     };
//!     // Every request ends well: a 503 is retried on the other host.
//!     assert_eq!((final_answer.status, final_answer.flags.to_string()), (200, String::new()));
//!     while let Some((at, event)) = engine.poll_event() {
//!         if let EngineEvent::Ejected { upstream, .. } = event {
//!             ejected.push((engine.endpoint_address(upstream).to_owned(), at));
//!         }
//!     }
//! }
//! // The failing host's second consecutive 503 ejected it, at that instant.
//! assert_eq!(ejected, [("10.0.0.1:80".to_owned(), failed_at[1])]);
//! ```
//!
//! The [`Engine`]'s own calls (`handle_request`, `admit`, `handle_response`,
//! `retry_decision`, `retry`, `finish_request`, …) are what an exchange
//! runs; their calling convention is on [`Engine`].
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]

mod affinity;
mod balance;
pub mod breaker;
pub mod config;
mod decision;
mod engine;
pub mod exchange;
mod flags;
pub mod outlier;
mod request;
mod rng;
mod route;
mod time;

#[cfg(test)]
mod tests;

pub use breaker::{Admission, BreakerStats};
pub use decision::{
    ClusterId, Decision, Delay, EjectReason, EndpointId, EngineEvent, Forward, Outcome, Reject,
    RejectReason, ResetReason, Respond, Upstream,
};
pub use engine::{
    ClusterStats, Engine, EngineOptions, MAX_WORKERS, RequestState, RetryDecision, SharedRoutes,
};
pub use exchange::{Admit, Answer, Exchange, Step};
pub use flags::{ENVOY_FLAG_ORDER, ResponseFlag, ResponseFlags};
pub use outlier::{MaxEjectionRule, OutlierStats};
pub use request::Request;
pub use route::{ProxySpec, RouteId};
pub use time::Time;
