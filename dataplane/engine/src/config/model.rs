//! Checked config: what the engine runs on.
//!
//! Built only by [`super::validate`], so every value here has passed Istio's
//! validation rules and carries Istio's defaults. Hosts are fully qualified,
//! regexes are compiled, durations are `Duration`s, and each cluster's policy
//! is already merged block by block (DestinationRule, subset, port level).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use super::file::MeshConfig;

/// A validated mesh configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file as read, for config dumps and provenance.
    pub source: MeshConfig,
    /// Every service (registry and ServiceEntry hosts), in file order.
    pub services: Vec<Service>,
    /// Every Envoy cluster: one per service without subset, plus one per
    /// DestinationRule subset, each with its merged policy.
    pub clusters: Vec<ClusterSpec>,
    /// VirtualServices in file order.
    pub virtual_services: Vec<VirtualService>,
    /// Gateway names (`namespace/name`).
    pub gateways: Vec<String>,
}

/// A service: a host with a port and endpoints.
#[derive(Clone, Debug)]
pub struct Service {
    /// Fully qualified host, e.g. `reviews.default.svc.cluster.local`.
    pub host: String,
    /// Namespace.
    pub namespace: String,
    /// Service port.
    pub port: u16,
    /// Endpoints, in file order.
    pub endpoints: Vec<Endpoint>,
    /// True for a `MESH_EXTERNAL` ServiceEntry.
    pub external: bool,
    /// The port's protocol is HTTP/2 (`HTTP2`, `GRPC` or `GRPC-WEB`, any
    /// case): a ServiceEntry's `ports[0].protocol`. Registry services have
    /// no port protocol in the file: HTTP.
    pub http2: bool,
}

/// An endpoint of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `ip:port` (or `host:port` for a DNS ServiceEntry).
    pub address: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (≥ 1).
    pub weight: u32,
}

/// One Envoy cluster `outbound|port|subset|host`.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Istio's cluster name.
    pub name: String,
    /// Index into [`Config::services`].
    pub service: usize,
    /// Subset name, if any.
    pub subset: Option<String>,
    /// Indices into the service's endpoints selected by the subset labels.
    pub endpoints: Vec<usize>,
    /// Merged policy.
    pub policy: ClusterPolicy,
}

/// The merged traffic policy of one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterPolicy {
    /// Load balancer.
    pub lb: LbPolicy,
    /// Hash key when `lb` is hash based.
    pub hash: Option<HashKey>,
    /// Circuit-breaker thresholds and connection settings.
    pub connection_pool: ConnectionPool,
    /// Outlier detection; `None` = no detector at all.
    pub outlier: Option<OutlierPolicy>,
    /// Envoy `healthy_panic_threshold` in percent (0 disables panic).
    pub panic_threshold_percent: u32,
}

/// Load-balancing algorithm of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    /// Istio's default.
    LeastRequest,
    /// Envoy's round robin (EDF when weights differ).
    RoundRobin,
    /// Uniformly random.
    Random,
    /// Forward to the original destination address.
    Passthrough,
    /// Ketama ring of xxHash64 entries.
    RingHash {
        /// Minimum ring entries.
        minimum_ring_size: u64,
    },
    /// Maglev lookup table.
    Maglev {
        /// Prime table size.
        table_size: u64,
    },
}

/// What a consistent hash (or the sticky-weights extension) hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// All values of a request header.
    Header(String),
    /// A cookie, generated when absent and `ttl` is set.
    Cookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        path: Option<String>,
        /// `None`: never generate; `Some(0)`: session cookie.
        ttl: Option<Duration>,
    },
    /// The downstream source IP.
    SourceIp,
    /// The first value of a query parameter.
    QueryParameter(String),
}

/// `connectionPool` with Istio's defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionPool {
    /// `tcp.maxConnections` (2³²−1 when unset).
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests` (2³²−1 when unset).
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests` (2³²−1 when unset).
    pub max_requests: u32,
    /// `http.maxRetries` (2³²−1 when unset).
    pub max_retries: u32,
    /// `http.maxRequestsPerConnection` (0 = unlimited).
    pub max_requests_per_connection: u32,
    /// `tcp.connectTimeout` (10 s).
    pub connect_timeout: Duration,
    /// `http.idleTimeout`, else `tcp.idleTimeout` (1 h).
    pub idle_timeout: Duration,
    /// The protocol spoken to the endpoints (HTTP/1.1 unless the port or
    /// the rule says otherwise).
    pub protocol: UpstreamProtocol,
    /// `http.maxConcurrentStreams`: streams per HTTP/2 connection (Envoy's
    /// default, 1024 since Envoy 1.36, when unset).
    pub max_concurrent_streams: u32,
}

/// The protocol of a cluster's upstream connections, as Istio configures
/// Envoy's `HttpProtocolOptions.upstream_protocol_options`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (Envoy's default).
    #[default]
    Http1,
    /// HTTP/2 (`explicit_http_config.http2_protocol_options`): a service
    /// port of protocol `HTTP2` or `GRPC`, or `h2UpgradePolicy: UPGRADE`.
    Http2,
    /// The client's protocol (`use_downstream_protocol_config`):
    /// `useClientProtocol: true`.
    Downstream,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        Self {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
            max_requests_per_connection: 0,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            protocol: UpstreamProtocol::Http1,
            max_concurrent_streams: 1024,
        }
    }
}

/// `outlierDetection` as Envoy ends up configured by Istio (§2.9 of the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// `consecutive_5xx`.
    pub consecutive_5xx: u32,
    /// `enforcing_consecutive_5xx` (percent).
    pub enforcing_consecutive_5xx: u32,
    /// `consecutive_gateway_failure`.
    pub consecutive_gateway_failure: u32,
    /// `enforcing_consecutive_gateway_failure` (percent; 0 unless set in Istio).
    pub enforcing_consecutive_gateway_failure: u32,
    /// `consecutive_local_origin_failure` (split mode only).
    pub consecutive_local_origin_failure: u32,
    /// `enforcing_consecutive_local_origin_failure` (percent).
    pub enforcing_consecutive_local_origin_failure: u32,
    /// `split_external_local_origin_errors`.
    pub split_external_local_origin_errors: bool,
    /// `interval`.
    pub interval: Duration,
    /// `base_ejection_time`.
    pub base_ejection_time: Duration,
    /// `max_ejection_time` = max(300 s, base), as Istio never sets it.
    pub max_ejection_time: Duration,
    /// `max_ejection_percent`.
    pub max_ejection_percent: u32,
}

/// A VirtualService, checked.
#[derive(Clone, Debug)]
pub struct VirtualService {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Hosts, fully qualified (wildcards kept).
    pub hosts: Vec<String>,
    /// Gateways as `namespace/name`, or `mesh`.
    pub gateways: Vec<String>,
    /// HTTP routes in order.
    pub http: Vec<HttpRoute>,
    /// Istio's `exportTo` as written (empty: everywhere).
    pub export_to: Vec<String>,
}

impl VirtualService {
    /// Whether proxies in `namespace` see this VirtualService (`exportTo`).
    pub fn visible_to(&self, namespace: &str) -> bool {
        self.export_to.is_empty()
            || self
                .export_to
                .iter()
                .any(|e| e == "*" || e == namespace || (e == "." && self.namespace == namespace))
    }
}

/// An HTTP route, checked.
#[derive(Clone, Debug)]
pub struct HttpRoute {
    /// Route name (or `<vs>.<index>` when unnamed).
    pub name: String,
    /// Match blocks (ORed); empty = catch-all.
    pub matches: Vec<Match>,
    /// What to do.
    pub action: Action,
    /// Whole-request timeout; `None` = disabled (Istio's default).
    pub timeout: Option<Duration>,
    /// Retry policy handed to the caller; `None` = no retries.
    pub retries: Option<RetryPolicy>,
    /// Fault injection.
    pub fault: Fault,
    /// Route-level header operations.
    pub headers: HeaderOps,
    /// Rewrite before forwarding.
    pub rewrite: Option<Rewrite>,
    /// meshsim extension: sticky weighted destination choice.
    pub sticky_weights: Option<HashKey>,
}

/// One match block: every present condition must hold.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// Path condition (query excluded).
    pub uri: Option<StrMatch>,
    /// Case-insensitive exact/prefix path.
    pub ignore_uri_case: bool,
    /// `:scheme`.
    pub scheme: Option<StrMatch>,
    /// `:method`.
    pub method: Option<StrMatch>,
    /// `:authority`.
    pub authority: Option<StrMatch>,
    /// Header conditions (lowercase names).
    pub headers: Vec<(String, StrMatch)>,
    /// Negated header conditions.
    pub without_headers: Vec<(String, StrMatch)>,
    /// Query parameter conditions.
    pub query_params: Vec<(String, StrMatch)>,
    /// Destination port.
    pub port: Option<u16>,
    /// Config-time: labels the calling proxy must have.
    pub source_labels: BTreeMap<String, String>,
    /// Config-time: gateways (`namespace/name` or `mesh`), overriding the VirtualService's.
    pub gateways: Vec<String>,
    /// Config-time: namespace of the calling proxy.
    pub source_namespace: Option<String>,
}

/// A string condition.
#[derive(Clone, Debug)]
pub enum StrMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// RE2 full match (compiled anchored).
    Regex(Regex),
    /// Present, any value (`{}` or regex `*`).
    Present,
}

/// What a route does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Forward to one of the weighted destinations.
    Route(Vec<WeightedDestination>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    DirectResponse {
        /// Status.
        status: u16,
        /// Body.
        body: Option<String>,
    },
}

/// A destination with its weight (weight-0 entries are dropped).
#[derive(Clone, Debug)]
pub struct WeightedDestination {
    /// Fully qualified host.
    pub host: String,
    /// Subset.
    pub subset: Option<String>,
    /// Port, when given.
    pub port: Option<u16>,
    /// Relative weight (> 0; 1 for a single destination).
    pub weight: u32,
    /// Index into [`Config::clusters`]; `None` when the host is unknown (503 NC).
    pub cluster: Option<usize>,
    /// Header operations of this destination.
    pub headers: HeaderOps,
}

/// A redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// New path.
    pub uri: Option<String>,
    /// New authority.
    pub authority: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New scheme.
    pub scheme: Option<String>,
    /// Status code (301 by default).
    pub code: u16,
}

/// A rewrite.
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// Replacement of the matched prefix.
    pub uri: Option<String>,
    /// New authority.
    pub authority: Option<String>,
    /// Regex substitution on the path.
    pub uri_regex: Option<(Regex, String)>,
}

/// Header operations, as Istio applies them after routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Request: overwrite or add.
    pub request_set: Vec<(String, String)>,
    /// Request: append.
    pub request_add: Vec<(String, String)>,
    /// Request: remove.
    pub request_remove: Vec<String>,
    /// Response: overwrite or add.
    pub response_set: Vec<(String, String)>,
    /// Response: append.
    pub response_add: Vec<(String, String)>,
    /// Response: remove.
    pub response_remove: Vec<String>,
}

/// Fault injection of one route. Percentages are parts per million, as Istio
/// sends them to Envoy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// Delay and its share.
    pub delay: Option<(Duration, u32)>,
    /// Abort status and its share.
    pub abort: Option<(u16, u32)>,
}

/// Retry policy (Envoy's, as Istio writes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub num_retries: u32,
    /// Conditions.
    pub retry_on: RetryOn,
    /// Status codes retried under `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Timeout of each attempt.
    pub per_try_timeout: Option<Duration>,
    /// Back-off base (25 ms).
    pub backoff_base: Duration,
    /// Back-off cap (10 × base).
    pub backoff_max: Duration,
    /// Re-picks to avoid previously tried hosts (5).
    pub host_selection_retry_max_attempts: u32,
    /// Whether the `previous_hosts` predicate is on.
    pub previous_hosts: bool,
}

/// Envoy `retry_on` conditions as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// Any 5xx, reset, connect failure or per-try timeout.
    pub const FIVE_XX: u32 = 1 << 0;
    /// 502/503/504 and resets.
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// Resets (incl. per-try timeouts).
    pub const RESET: u32 = 1 << 2;
    /// Connect failures.
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    /// 409.
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 1 << 5;
    /// Codes in `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;
    /// Matching response headers.
    pub const RETRIABLE_HEADERS: u32 = 1 << 7;
    /// Reset before the request was sent.
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 8;
    /// Envoy rate limited.
    pub const ENVOY_RATELIMITED: u32 = 1 << 9;
    /// gRPC cancelled.
    pub const CANCELLED: u32 = 1 << 10;
    /// gRPC deadline-exceeded.
    pub const DEADLINE_EXCEEDED: u32 = 1 << 11;
    /// gRPC internal.
    pub const INTERNAL: u32 = 1 << 12;
    /// gRPC resource-exhausted.
    pub const RESOURCE_EXHAUSTED: u32 = 1 << 13;
    /// gRPC unavailable.
    pub const UNAVAILABLE: u32 = 1 << 14;

    /// Names as they appear in `retryOn`, with their bits.
    pub const NAMES: [(&'static str, u32); 15] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("retriable-headers", Self::RETRIABLE_HEADERS),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        ("envoy-ratelimited", Self::ENVOY_RATELIMITED),
        ("cancelled", Self::CANCELLED),
        ("deadline-exceeded", Self::DEADLINE_EXCEEDED),
        ("internal", Self::INTERNAL),
        ("resource-exhausted", Self::RESOURCE_EXHAUSTED),
        ("unavailable", Self::UNAVAILABLE),
    ];

    /// Whether every bit of `flag` is set.
    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }
}
