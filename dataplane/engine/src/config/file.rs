//! The file format: Istio's objects with Istio's own (camelCase) field names.
//!
//! These types only describe what a file may say. They are turned into checked
//! types by [`super::validate`]; nothing else in the engine reads them. Every
//! struct rejects unknown fields, so a typo (`consecutive5xxError`) is an error
//! with its line and column, not a silently ignored setting.
//!
//! A mesh file has six arrays of tables, each optional:
//! `[[service]]` (the registry: services and their endpoints, what Kubernetes
//! Services and pods are to Istio), `[[virtualService]]`, `[[destinationRule]]`,
//! `[[gateway]]`, `[[serviceEntry]]`, and `[[listener]]` (read by `meshproxy`,
//! checked and otherwise ignored by the engine and the simulator). Istio objects carry `name` and
//! `namespace` (their `metadata`) beside the fields of their `spec`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::IstioDuration;

/// A whole mesh configuration: registry plus Istio objects.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshConfig {
    /// Services and their endpoints (pods).
    #[serde(default)]
    pub service: Vec<ServiceSpec>,
    /// VirtualServices, in priority order for a host bound by several.
    #[serde(default)]
    pub virtual_service: Vec<VirtualService>,
    /// DestinationRules.
    #[serde(default)]
    pub destination_rule: Vec<DestinationRule>,
    /// Gateways.
    #[serde(default)]
    pub gateway: Vec<Gateway>,
    /// ServiceEntries (services outside the registry, such as an external API).
    #[serde(default)]
    pub service_entry: Vec<ServiceEntry>,
    /// Listeners of `meshproxy`. The engine and the simulator check them and
    /// otherwise ignore them, so one file serves `meshsim` and `meshproxy`.
    #[serde(default)]
    pub listener: Vec<Listener>,
}

/// A `meshproxy` listener: where it accepts requests and which proxy it is
/// (the mesh sidecar of a workload, or a named gateway).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    /// `ip:port` to listen on (`127.0.0.1:0` picks a free port).
    pub address: String,
    /// Act as this Istio `Gateway` (`name` or `namespace/name`); absent:
    /// act as the sidecar (`mesh`) of a workload.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Namespace of the proxy (a gateway's, or the sidecar workload's);
    /// `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the sidecar's workload, for `sourceLabels` matches.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A service of the registry (a Kubernetes Service and its ready pods).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Short name, e.g. `reviews`; the host is `reviews.<namespace>.svc.cluster.local`.
    pub name: String,
    /// Namespace, `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The service port.
    pub port: u16,
    /// The endpoints (pods), in order.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

/// One endpoint: a pod address and its labels.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSpec {
    /// `ip:port` (also the key that ring hash and maglev hash).
    pub address: String,
    /// Labels such as `version = "v1"`, selected by DestinationRule subsets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight, 1 when absent.
    #[serde(default)]
    pub weight: Option<u32>,
}

// === VirtualService ===

/// Istio `VirtualService`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualService {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Hosts this rule applies to (short names, FQDNs or `*.suffix` wildcards).
    pub hosts: Vec<String>,
    /// `mesh` and/or gateway names; `["mesh"]` when absent.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes, first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Accepted for compatibility; visibility is not modelled.
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// Istio `HTTPRoute`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    /// Route name, used in logs and stats.
    #[serde(default)]
    pub name: Option<String>,
    /// Match blocks (ORed); absent = catch-all.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// A redirect instead of a destination.
    #[serde(default)]
    pub redirect: Option<HttpRedirect>,
    /// A fixed local response instead of a destination.
    #[serde(default)]
    pub direct_response: Option<HttpDirectResponse>,
    /// URI / authority rewrite before forwarding.
    #[serde(default)]
    pub rewrite: Option<HttpRewrite>,
    /// Whole-request timeout, all retries included; disabled when absent.
    #[serde(default)]
    pub timeout: Option<IstioDuration>,
    /// Retry policy.
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    /// Fault injection (delay, abort).
    #[serde(default)]
    pub fault: Option<HttpFaultInjection>,
    /// Header manipulation.
    #[serde(default)]
    pub headers: Option<Headers>,
    /// **meshsim extension, not Istio**: pick the weighted destination by
    /// consistent hashing of this key instead of at random, so a user stays
    /// on one subset while the weights stay (see `docs/config.md`).
    #[serde(default)]
    pub meshsim_sticky_weights: Option<StickyKey>,
}

/// The key of the sticky-weights extension (one of the fields).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StickyKey {
    /// Hash this request header.
    #[serde(default)]
    pub http_header_name: Option<String>,
    /// Hash this cookie.
    #[serde(default)]
    pub http_cookie_name: Option<String>,
    /// Hash the downstream source IP.
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    /// Hash this query parameter.
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
}

/// Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (or none,
/// which for headers and query parameters means "present").
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StringMatch {
    /// Whole value equals.
    #[serde(default)]
    pub exact: Option<String>,
    /// Value starts with.
    #[serde(default)]
    pub prefix: Option<String>,
    /// RE2 regex over the whole value.
    #[serde(default)]
    pub regex: Option<String>,
}

/// Istio `HTTPMatchRequest`: all its fields must hold.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Match name, used in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Path (query string excluded).
    #[serde(default)]
    pub uri: Option<StringMatch>,
    /// `:scheme`.
    #[serde(default)]
    pub scheme: Option<StringMatch>,
    /// `:method`.
    #[serde(default)]
    pub method: Option<StringMatch>,
    /// `:authority` (Host).
    #[serde(default)]
    pub authority: Option<StringMatch>,
    /// Request headers (lowercase names).
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Destination port of the request.
    #[serde(default)]
    pub port: Option<u16>,
    /// Labels the calling workload must have.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this block applies to (overrides the VirtualService's).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameters.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive `uri` exact/prefix match.
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Headers that must be absent or not match.
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the calling workload.
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// Istio `HTTPRouteDestination`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where to send.
    pub destination: Destination,
    /// Relative weight (ignored for a single destination).
    #[serde(default)]
    pub weight: Option<i64>,
    /// Header manipulation for this destination.
    #[serde(default)]
    pub headers: Option<Headers>,
}

/// Istio `Destination`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    /// Service host (short name or FQDN).
    pub host: String,
    /// DestinationRule subset name.
    #[serde(default)]
    pub subset: Option<String>,
    /// Port selector.
    #[serde(default)]
    pub port: Option<PortSelector>,
}

/// Istio `PortSelector`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSelector {
    /// Port number.
    pub number: u16,
}

/// Istio `HTTPRedirect`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRedirect {
    /// New path.
    #[serde(default)]
    pub uri: Option<String>,
    /// New authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// New port.
    #[serde(default)]
    pub port: Option<u16>,
    /// New scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Status code, 301 when absent.
    #[serde(default)]
    pub redirect_code: Option<u16>,
}

/// Istio `HTTPDirectResponse`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpDirectResponse {
    /// Status code.
    pub status: u16,
    /// Body.
    #[serde(default)]
    pub body: Option<HttpBody>,
}

/// Istio `HTTPBody` (string form only).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpBody {
    /// Body text.
    pub string: String,
}

/// Istio `HTTPRewrite`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRewrite {
    /// Replaces the matched prefix (or the whole path for exact matches).
    #[serde(default)]
    pub uri: Option<String>,
    /// Replaces the Host/authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// Regex substitution on the path.
    #[serde(default)]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// Istio `RegexRewrite`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Replacement, with `\1`-style groups.
    pub rewrite: String,
}

/// Istio `HTTPRetry`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries (0 disables retries).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Timeout of each attempt.
    #[serde(default)]
    pub per_try_timeout: Option<IstioDuration>,
    /// Comma-separated Envoy retry conditions and status codes.
    #[serde(default)]
    pub retry_on: Option<String>,
    /// Retry in other localities.
    #[serde(default)]
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously attempted hosts.
    #[serde(default)]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base back-off interval (25ms when absent).
    #[serde(default)]
    pub backoff: Option<IstioDuration>,
}

/// Istio `HTTPFaultInjection`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    /// Local reply instead of forwarding ("suspend traffic").
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

/// Istio `HTTPFaultInjection.Delay`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultDelay {
    /// The delay.
    #[serde(default)]
    pub fixed_delay: Option<IstioDuration>,
    /// Share of requests delayed; **0 % when absent**, as in Istio.
    #[serde(default)]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage, used only when `percentage` is absent.
    #[serde(default)]
    pub percent: Option<u32>,
}

/// Istio `HTTPFaultInjection.Abort`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultAbort {
    /// Status code of the local reply.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Share of requests aborted; **0 % when absent**, as in Istio.
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// Istio `Percent`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Percent {
    /// 0.0 to 100.0.
    pub value: f64,
}

/// Istio `Headers`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Headers {
    /// Operations on the request headers.
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    /// Operations on the response headers.
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}

/// Istio `Headers.HeaderOperations`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderOperations {
    /// Overwrite or add.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

// === DestinationRule ===

/// Istio `DestinationRule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationRule {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The service host it applies to.
    pub host: String,
    /// Policy for the whole service.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets (versions) selected by labels.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Accepted for compatibility; visibility is not modelled.
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// Istio `Subset`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subset {
    /// Subset name, referenced by `destination.subset`.
    pub name: String,
    /// Endpoint labels that select the subset.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Block-by-block override of the rule's policy.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Istio `TrafficPolicy`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Load balancer.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Circuit-breaker limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Passive health checking.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Per-port replacements of the three blocks above.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// Istio `TrafficPolicy.PortTrafficPolicy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// The port these settings apply to.
    pub port: PortSelector,
    /// Load balancer.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Circuit-breaker limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Passive health checking.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Istio `LoadBalancerSettings`: `simple` or `consistentHash`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// `UNSPECIFIED`, `LEAST_REQUEST` (Istio's default), `LEAST_CONN`
    /// (alias), `ROUND_ROBIN`, `RANDOM` or `PASSTHROUGH`.
    #[serde(default)]
    pub simple: Option<String>,
    /// Hash-based load balancing (session affinity).
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHashLb>,
}

/// Istio `ConsistentHashLB`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash this request header.
    #[serde(default)]
    pub http_header_name: Option<String>,
    /// Hash this cookie (generated when absent and a `ttl` is set).
    #[serde(default)]
    pub http_cookie: Option<HttpCookie>,
    /// Hash the source IP.
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    /// Hash this query parameter.
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash (the default algorithm).
    #[serde(default)]
    pub ring_hash: Option<RingHashSettings>,
    /// Maglev.
    #[serde(default)]
    pub maglev: Option<MaglevSettings>,
    /// Deprecated ring size, used when `ringHash` is absent.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// Istio `ConsistentHashLB.HTTPCookie`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie path.
    #[serde(default)]
    pub path: Option<String>,
    /// Lifetime of a generated cookie; `0s` = session cookie; absent = never generate.
    #[serde(default)]
    pub ttl: Option<IstioDuration>,
}

/// Istio `ConsistentHashLB.RingHash`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingHashSettings {
    /// Minimum ring entries (1024 when absent).
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// Istio `ConsistentHashLB.MagLev`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MaglevSettings {
    /// Lookup table size, a prime (65537 when absent).
    #[serde(default)]
    pub table_size: Option<u64>,
}

/// Istio `ConnectionPoolSettings`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

/// Istio `ConnectionPoolSettings.TCPSettings`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpSettings {
    /// Max upstream connections of the cluster.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Connect timeout (10s when absent).
    #[serde(default)]
    pub connect_timeout: Option<IstioDuration>,
    /// Max lifetime of a connection.
    #[serde(default)]
    pub max_connection_duration: Option<IstioDuration>,
    /// Idle timeout of a TCP connection.
    #[serde(default)]
    pub idle_timeout: Option<IstioDuration>,
}

/// Istio `ConnectionPoolSettings.HTTPSettings`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpSettings {
    /// Max requests waiting for a connection.
    #[serde(default)]
    pub http1_max_pending_requests: Option<u32>,
    /// Max active requests (HTTP/1.1 too).
    #[serde(default)]
    pub http2_max_requests: Option<u32>,
    /// Requests per connection before it closes (0 = unlimited).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    /// Max retries in flight.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Idle timeout of an upstream HTTP connection.
    #[serde(default)]
    pub idle_timeout: Option<IstioDuration>,
    /// HTTP/2 streams per connection.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// `DEFAULT` (the mesh default: do not upgrade), `DO_NOT_UPGRADE` or
    /// `UPGRADE` (speak HTTP/2 to the upstream).
    #[serde(default)]
    pub h2_upgrade_policy: Option<String>,
    /// Speak to the upstream the protocol the client spoke.
    #[serde(default)]
    pub use_client_protocol: Option<bool>,
}

/// Istio `OutlierDetection`. Istio copies only the fields that are set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Deprecated; ignored by Istio since 1.7 (a warning is given).
    #[serde(default)]
    pub consecutive_errors: Option<u32>,
    /// Consecutive 5xx before ejection (5 when absent; 0 disables).
    #[serde(default, rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Consecutive 502/503/504 before ejection (detected at 5 but not enforced when absent).
    #[serde(default)]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive local-origin failures (split mode only).
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Count connect failures, resets and timeouts apart from HTTP codes.
    #[serde(default)]
    pub split_external_local_origin_errors: Option<bool>,
    /// Time between ejection sweeps (10s when absent).
    #[serde(default)]
    pub interval: Option<IstioDuration>,
    /// Minimum ejection time (30s when absent).
    #[serde(default)]
    pub base_ejection_time: Option<IstioDuration>,
    /// Max share of the cluster's hosts ejected at once (10 when absent).
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
    /// Panic threshold; 0 when absent (panic disabled).
    #[serde(default)]
    pub min_health_percent: Option<u32>,
    /// **meshsim extension, not Istio**: Envoy's `outlier_detection` fields
    /// that Istio's API cannot set (see `docs/config.md`).
    #[serde(default)]
    pub meshsim_envoy: Option<EnvoyOutlier>,
}

/// Envoy's own outlier-detection settings, beyond Istio's API: what an
/// `EnvoyFilter` patching the cluster would set. Absent fields keep what
/// Istio gives Envoy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvoyOutlier {
    /// `enforcing_consecutive_5xx` (percent; Istio: 100, or 0 when
    /// `consecutive5xxErrors` is 0).
    #[serde(default, rename = "enforcingConsecutive5xx")]
    pub enforcing_consecutive_5xx: Option<u32>,
    /// `enforcing_consecutive_gateway_failure` (percent; Istio: 100 when
    /// `consecutiveGatewayErrors` is set, else 0).
    #[serde(default)]
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    /// `enforcing_consecutive_local_origin_failure` (percent; 100).
    #[serde(default)]
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
    /// `max_ejection_time` (Envoy: 300 s, or the base ejection time if
    /// longer); at least `baseEjectionTime`.
    #[serde(default)]
    pub max_ejection_time: Option<IstioDuration>,
}

// === Gateway and ServiceEntry ===

/// Istio `Gateway`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gateway {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the gateway workload.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Listeners.
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// Istio `Server`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    /// Listener port.
    pub port: Port,
    /// Hosts exposed on this port.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Server name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Istio `Port`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    /// Port number.
    pub number: u16,
    /// Protocol (`HTTP`, `HTTP2`, `GRPC`, `HTTPS`, `TCP`, …).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Port name.
    #[serde(default)]
    pub name: Option<String>,
    /// Target port on the endpoints.
    #[serde(default)]
    pub target_port: Option<u16>,
}

/// Istio `ServiceEntry`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntry {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Hosts (FQDNs) of the entry.
    pub hosts: Vec<String>,
    /// Ports; the first one is the service port.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// `MESH_EXTERNAL` (default) or `MESH_INTERNAL`.
    #[serde(default)]
    pub location: Option<String>,
    /// `NONE`, `STATIC` or `DNS`.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Endpoints (`address` without port uses the service port).
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    /// Accepted for compatibility; visibility is not modelled.
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// Istio `WorkloadEntry` inside a ServiceEntry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// IP or host name.
    pub address: String,
    /// Port per port name.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Weight.
    #[serde(default)]
    pub weight: Option<u32>,
}
