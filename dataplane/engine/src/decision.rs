//! What the engine answers and what it reports: plain values, the
//! vocabulary of the proxy's access log, the simulator's counters and the
//! run directory's CSV.

use std::fmt;

use std::time::Duration;

use crate::route::RouteId;

/// Index of a cluster in the engine's current config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u32);

/// Index of an endpoint within its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u32);

/// The endpoint a request was sent to. It stays valid across
/// `reconfigure`: the engine finds the endpoint's new place by its uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Upstream {
    /// The cluster (in the config of `generation`).
    pub cluster: ClusterId,
    /// The endpoint in that cluster.
    pub endpoint: EndpointId,
    /// The config generation it was handed out in.
    pub(crate) generation: u32,
    /// The cluster's and the host's uids, kept across pushes.
    pub(crate) cluster_uid: u32,
    pub(crate) host_uid: u32,
}

/// The engine's answer to a request. Never an error: every failure is a
/// [`Reject`] with Envoy's status and response flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Forward to an upstream endpoint.
    Forward(Forward),
    /// A fault delay hit: wait `delay`, then call
    /// [`crate::Engine::handle_delayed`], which routes the request then (as
    /// Envoy's router runs after the fault filter's delay).
    Delay(Delay),
    /// Answer locally with an error.
    Reject(Reject),
    /// Answer locally as the route says (redirect or direct response); the
    /// caller reads the details from [`crate::Engine::route`].
    Respond(Respond),
}

/// Forward the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The route that matched (header operations, rewrite, retry policy).
    pub route: RouteId,
    /// Where to send it.
    pub upstream: Upstream,
    /// Which of the route's weighted destinations was drawn (its index in
    /// the route's `route` list): whose header operations apply, even when
    /// two destinations share a cluster. Retries keep it.
    pub destination: u32,
    /// The injected delay this request has already waited (response flag
    /// DI), if any; informational, not to be waited again.
    pub delay: Option<Duration>,
    /// Whole-request timeout, all retries included; `None` = disabled.
    pub timeout: Option<Duration>,
    /// The request hash used by a hash-based balancer, if any.
    pub hash: Option<u64>,
    /// A generated affinity cookie to set on the response, if any; format it
    /// with [`crate::Engine::set_cookie_header`].
    pub set_cookie: Option<u64>,
    /// The worker that handles the request (its retries pick on it too).
    pub worker: u32,
}

/// Answer locally with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Why.
    pub reason: RejectReason,
    /// HTTP status of the local reply.
    pub status: u16,
    /// The route that matched, if one did.
    pub route: Option<RouteId>,
    /// The injected delay that preceded this reply (a delay and then an
    /// abort both hit), if any; informational, already waited.
    pub delay: Option<Duration>,
}

impl Reject {
    /// Envoy's response flag for this reply.
    pub fn flag(&self) -> ResponseFlag {
        self.reason.flag()
    }
}

/// Wait out an injected delay, then call [`crate::Engine::handle_delayed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delay {
    /// The route that matched (kept across a `reconfigure` during the delay).
    pub route: RouteId,
    /// How long to wait (response flag DI).
    pub delay: Duration,
}

/// Answer locally with the route's redirect or direct response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Respond {
    /// The route.
    pub route: RouteId,
    /// HTTP status.
    pub status: u16,
}

/// Why a request was answered locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// No route matched (404, NR).
    NoRoute,
    /// The route's cluster does not exist (503, NC).
    NoCluster,
    /// No endpoint to send to (503, UH).
    NoHealthyUpstream,
    /// A fault abort hit (configured status, FI).
    FaultAbort,
}

impl RejectReason {
    /// Envoy's response flag.
    pub fn flag(self) -> ResponseFlag {
        match self {
            Self::NoRoute => ResponseFlag::NoRouteFound,
            Self::NoCluster => ResponseFlag::NoClusterFound,
            Self::NoHealthyUpstream => ResponseFlag::NoHealthyUpstream,
            Self::FaultAbort => ResponseFlag::FaultInjected,
        }
    }
}

/// Envoy's access-log response flags (the ones the engine produces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResponseFlag {
    /// NR.
    NoRouteFound,
    /// NC.
    NoClusterFound,
    /// UH.
    NoHealthyUpstream,
    /// FI.
    FaultInjected,
    /// DI.
    DelayInjected,
    /// UO: circuit-breaker overflow.
    UpstreamOverflow,
    /// URX: retries exhausted.
    UpstreamRetryLimitExceeded,
    /// UT: route timeout.
    UpstreamRequestTimeout,
    /// UF: upstream connection failure.
    UpstreamConnectionFailure,
    /// UR: the upstream reset the stream (an HTTP/2 `RST_STREAM`).
    UpstreamRemoteReset,
    /// UC: the upstream connection closed (FIN or RST) before the response
    /// was complete — Envoy's `ConnectionTermination` reset reason, what an
    /// HTTP/1.1 upstream that goes away gives.
    UpstreamConnectionTermination,
    /// UPE: the upstream's response was not valid HTTP (502).
    UpstreamProtocolError,
}

impl ResponseFlag {
    /// The short form Envoy logs (`NR`, `UH`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRouteFound => "NR",
            Self::NoClusterFound => "NC",
            Self::NoHealthyUpstream => "UH",
            Self::FaultInjected => "FI",
            Self::DelayInjected => "DI",
            Self::UpstreamOverflow => "UO",
            Self::UpstreamRetryLimitExceeded => "URX",
            Self::UpstreamRequestTimeout => "UT",
            Self::UpstreamConnectionFailure => "UF",
            Self::UpstreamRemoteReset => "UR",
            Self::UpstreamConnectionTermination => "UC",
            Self::UpstreamProtocolError => "UPE",
        }
    }
}

/// Envoy's short response flags in the order its access log prints them
/// (the bit order of `StreamInfo::ResponseFlag`: `UT` before `UF`, `DI`
/// before `URX`, …), the ones meshsim and meshproxy log among them.
pub const ENVOY_FLAG_ORDER: [&str; 15] = [
    "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "DC", "URX", "DPE", "UPE", "NC",
];

/// Where a short flag goes in Envoy's access-log order (unknown ones last).
pub fn envoy_flag_rank(flag: &str) -> usize {
    ENVOY_FLAG_ORDER
        .iter()
        .position(|f| *f == flag)
        .unwrap_or(ENVOY_FLAG_ORDER.len())
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a forwarded request, reported back by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers with this status.
    Status(u16),
    /// The connection could not be established (refused, connect timeout).
    ConnectFailure,
    /// The upstream reset the stream.
    Reset,
    /// A route or per-try timeout fired.
    Timeout,
}

/// Something that changed inside the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// Outlier detection ejected a host (at the instant of the failing result).
    Ejected {
        /// The host.
        upstream: Upstream,
        /// The detector that fired.
        reason: EjectReason,
        /// This ejection's time: `min(base × multiplier, max)`; the host
        /// returns at the first interval tick at or after it has passed.
        duration: Duration,
    },
    /// An ejected host returned (on an interval tick).
    Returned {
        /// The host.
        upstream: Upstream,
    },
    /// A request overflowed the circuit breaker (503 `UO`).
    Overflow {
        /// The host it was meant for.
        upstream: Upstream,
    },
    /// A cluster's load balancer entered or left panic (it then ignores health).
    Panic {
        /// The cluster.
        cluster: ClusterId,
        /// Whether it is in panic now.
        in_panic: bool,
    },
    /// A new config took effect (`reconfigure`).
    ConfigApplied {
        /// Clusters in the new config.
        clusters: u32,
        /// Routes in this proxy's new route table.
        routes: u32,
    },
}

/// Which detector fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EjectReason {
    /// `consecutive5xxErrors`.
    Consecutive5xx,
    /// `consecutiveGatewayErrors` (502, 503, 504).
    ConsecutiveGatewayFailure,
    /// `consecutiveLocalOriginFailures` (split mode).
    ConsecutiveLocalOriginFailure,
}

impl EjectReason {
    /// Envoy's stat suffix (`ejections_enforced_consecutive_5xx`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consecutive5xx => "consecutive_5xx",
            Self::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Self::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
        }
    }
}
