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
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]

mod affinity;
mod balance;
pub mod breaker;
pub mod config;
mod decision;
mod engine;
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
    RejectReason, Respond, ResponseFlag, Upstream,
};
pub use engine::{ClusterStats, Engine, EngineOptions, RequestState, RetryDecision};
pub use outlier::{MaxEjectionRule, OutlierStats};
pub use request::Request;
pub use route::{ProxySpec, RouteId};
pub use time::Time;
