//! Istio's validation rules and defaults: file types in, checked types out.
//!
//! Every problem is collected (not just the first) with the path of the field
//! at fault and a message that says what was expected. Things Istio accepts
//! but that are almost always a mistake are [`Warning`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::duration::IstioDuration;
use super::error::{ConfigError, FieldPath};
use super::file as t;
use super::model::{
    Action, ClusterPolicy, ClusterSpec, Config, ConnectionPool, Endpoint, Fault, HashKey,
    HeaderOps, HttpRoute, LbPolicy, Match, OutlierPolicy, Redirect, RetryOn, RetryPolicy, Rewrite,
    Service, StrMatch, UpstreamProtocol, VirtualService, WeightedDestination,
};

mod destination_rule;
mod registry;
#[cfg(test)]
mod tests;
mod virtual_service;

pub use virtual_service::default_retry_policy;

/// A problem Istio would accept, reported so the user can look twice.
pub type Warning = ConfigError;

/// Cluster domain suffix of short names.
const DOMAIN_SUFFIX: &str = "svc.cluster.local";
/// Envoy's largest ring.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// RE2 program size limit used for route regexes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Validates a parsed mesh config (Istio's rules; the analyzer's findings
/// are added by [`super::validate`]).
pub(crate) fn rules(source: t::MeshConfig) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
    let mut v = Validator::default();
    let services = v.services(&source);
    let gateways = v.gateways(&source);
    let clusters = v.clusters(&source, &services);
    let virtual_services = v.virtual_services(&source, &services, &clusters, &gateways);
    v.listeners(&source, &gateways);
    if v.errors.is_empty() {
        let config = Config {
            source,
            services,
            clusters,
            virtual_services,
            gateways,
        };
        Ok((config, v.warnings))
    } else {
        Err(v.errors)
    }
}

/// `host` fully qualified relative to `namespace`, as Istio resolves short names.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host.contains('*') {
        host
    } else {
        format!("{host}.{namespace}.{DOMAIN_SUFFIX}")
    }
}

/// Whether a (possibly wildcard) host pattern covers a host.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

fn ns(namespace: &Option<String>) -> String {
    namespace.clone().unwrap_or_else(|| "default".to_owned())
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    /// The name of each service's DestinationRule, if it has one (set by
    /// `clusters`, read by the destinations' checks).
    rule_of: Vec<Option<String>>,
}

impl Validator {
    fn err(&mut self, path: FieldPath, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(path, msg));
    }

    /// A warning with its analyzer code (see the analyzer's table of rules).
    fn warn(&mut self, code: &'static str, path: FieldPath, msg: impl Into<String>) {
        self.warnings
            .push(ConfigError::new(path, msg).with_code(code));
    }

    /// A duration that Istio requires to be at least 1 ms.
    fn positive(&mut self, d: &Option<IstioDuration>, path: FieldPath) -> Option<Duration> {
        let d = d.as_ref()?;
        if d.value < Duration::from_millis(1) {
            self.err(
                path,
                format!(
                    "expected a duration of at least 1ms, found \"{}\"; Istio rejects zero and sub-millisecond values here",
                    d.text
                ),
            );
            return None;
        }
        Some(d.value)
    }
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}
