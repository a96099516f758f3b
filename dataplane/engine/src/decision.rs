//! What the engine answers and what it reports: plain values, the
//! vocabulary of the proxy's access log, the simulator's counters and the
//! run directory's CSV.

use std::time::Duration;

pub(crate) use crate::flags::ResponseFlag;
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

/// What happened to a forwarded request, reported back by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers with this status.
    Status(u16),
    /// The connection could not be established (refused, connect timeout).
    ConnectFailure,
    /// The attempt got no whole response: the stream was reset, for this
    /// reason.
    Reset(ResetReason),
    /// A route or per-try timeout fired.
    Timeout,
}

/// Why an attempt got no whole response, as Envoy's stream reset reasons
/// (`Http::StreamResetReason`, as `Router::Filter::onUpstreamReset` maps
/// them to an answer). Outlier detection counts all of them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// The connection closed (FIN or RST) before the response was whole:
    /// `ConnectionTermination`, 503 `UC` (an HTTP/1.1 upstream, or a whole
    /// HTTP/2 connection, that goes away).
    ConnectionTermination,
    /// The upstream reset the HTTP/2 stream (`RST_STREAM`): `RemoteReset`,
    /// 503 `UR`.
    RemoteReset,
    /// The response was not valid HTTP (or over the proxy's limits):
    /// `ProtocolError`, 502 `UPE`.
    ProtocolError,
}

impl Outcome {
    /// The answer downstream when this outcome is final: the upstream's
    /// status, or Envoy's local reply — 504 `UT` for a timeout, 503 `UF`
    /// for a connect failure, 503 `UC` / `UR` or 502 `UPE` for a reset.
    pub fn answer(self) -> (u16, Option<ResponseFlag>) {
        match self {
            Self::Status(s) => (s, None),
            Self::Timeout => (504, Some(ResponseFlag::UpstreamRequestTimeout)),
            Self::ConnectFailure => (503, Some(ResponseFlag::UpstreamConnectionFailure)),
            Self::Reset(ResetReason::ConnectionTermination) => {
                (503, Some(ResponseFlag::UpstreamConnectionTermination))
            }
            Self::Reset(ResetReason::RemoteReset) => (503, Some(ResponseFlag::UpstreamRemoteReset)),
            Self::Reset(ResetReason::ProtocolError) => {
                (502, Some(ResponseFlag::UpstreamProtocolError))
            }
        }
    }
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
