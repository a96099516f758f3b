//! Circuit breaking: the `connectionPool` thresholds of one cluster inside
//! one proxy, and Envoy's admission rules (reference §3).
//!
//! The engine keeps the counters; the caller owns the connections and tells
//! the engine what its pool looks like. Per request:
//!
//! 1. [`crate::Engine::admit`] with whether a ready connection to the chosen
//!    host exists. The answer is `Attach` (send now), `Queue` (wait for a
//!    connection, opening one if told to) or `Overflow` (503 `UO`).
//! 2. A queued request, when a connection becomes ready, goes through
//!    [`crate::Engine::dequeue`], which may still overflow on `max_requests`;
//!    or leaves the queue with [`crate::Engine::cancel_pending`].
//! 3. Connections opened and closed are reported with
//!    [`crate::Engine::connection_opened`] / [`crate::Engine::connection_closed`].
//! 4. An attached request ends with [`crate::Engine::handle_response`].
//!
//! Overflows are never fed to outlier detection (Envoy ≥ 1.26) and never
//! retried.

use crate::config::ConnectionPool;

/// The admission answer for a request to a chosen host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Send on a ready connection now.
    Attach,
    /// Wait for a connection; open a new one if `open_connection`.
    Queue {
        /// Whether the caller should open a new connection for it.
        open_connection: bool,
    },
    /// Refused: answer 503 with flag `UO` and `x-envoy-overloaded: true`.
    Overflow,
}

/// Counters of one cluster (Envoy's `upstream_cx_*`/`upstream_rq_*` and
/// `circuit_breakers.default.*` gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// Open connections.
    pub connections: u32,
    /// Requests waiting for a connection.
    pub pending_requests: u32,
    /// Requests attached to connections.
    pub active_requests: u32,
    /// Retries in flight.
    pub active_retries: u32,
    /// `upstream_cx_overflow`: connections not opened because of `max_connections`.
    pub cx_overflow: u64,
    /// `upstream_rq_pending_overflow`: requests refused (pending or max requests).
    pub rq_pending_overflow: u64,
    /// `upstream_rq_retry_overflow`: retries refused by `max_retries`.
    pub rq_retry_overflow: u64,
}

/// The breaker of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Breaker {
    pub(crate) limits: ConnectionPool,
    pub(crate) stats: BreakerStats,
}

impl Breaker {
    pub(crate) fn new(limits: ConnectionPool) -> Self {
        Self {
            limits,
            stats: BreakerStats::default(),
        }
    }

    /// A new request for a host: `ready` = an idle (HTTP/1.1) or
    /// not-full (HTTP/2) connection to it exists; `pool_empty` = the caller
    /// has no connection at all to that host (ready, busy or connecting).
    pub(crate) fn admit(&mut self, ready: bool, pool_empty: bool) -> Admission {
        if ready {
            return self.attach();
        }
        if self.stats.pending_requests >= self.limits.max_pending_requests {
            self.stats.rq_pending_overflow += 1;
            return Admission::Overflow;
        }
        self.stats.pending_requests += 1;
        let under_limit = self.stats.connections < self.limits.max_connections;
        if !under_limit {
            self.stats.cx_overflow += 1;
        }
        // Envoy opens a connection anyway when the host's pool has none, or
        // the queued request would never be served: `max_connections` is soft.
        Admission::Queue {
            open_connection: under_limit || pool_empty,
        }
    }

    /// A queued request whose connection is ready.
    pub(crate) fn dequeue(&mut self) -> Admission {
        debug_assert!(
            self.stats.pending_requests > 0,
            "dequeue without a pending request"
        );
        self.stats.pending_requests = self.stats.pending_requests.saturating_sub(1);
        self.attach()
    }

    /// A queued request that gave up (timeout, client gone).
    pub(crate) fn cancel_pending(&mut self) {
        debug_assert!(
            self.stats.pending_requests > 0,
            "cancel without a pending request"
        );
        self.stats.pending_requests = self.stats.pending_requests.saturating_sub(1);
    }

    fn attach(&mut self) -> Admission {
        if self.stats.active_requests >= self.limits.max_requests {
            self.stats.rq_pending_overflow += 1;
            return Admission::Overflow;
        }
        self.stats.active_requests += 1;
        Admission::Attach
    }

    /// An attached request finished (response, reset or timeout).
    pub(crate) fn finish(&mut self) {
        debug_assert!(
            self.stats.active_requests > 0,
            "finish without an active request"
        );
        self.stats.active_requests = self.stats.active_requests.saturating_sub(1);
    }

    pub(crate) fn connection_opened(&mut self) {
        self.stats.connections += 1;
    }

    pub(crate) fn connection_closed(&mut self) {
        debug_assert!(
            self.stats.connections > 0,
            "close without an open connection"
        );
        self.stats.connections = self.stats.connections.saturating_sub(1);
    }

    /// Whether a retry may start (`max_retries`); counts it if so.
    pub(crate) fn start_retry(&mut self) -> bool {
        if self.stats.active_retries >= self.limits.max_retries {
            self.stats.rq_retry_overflow += 1;
            return false;
        }
        self.stats.active_retries += 1;
        true
    }

    /// A retry attempt finished.
    pub(crate) fn finish_retry(&mut self) {
        debug_assert!(
            self.stats.active_retries > 0,
            "finish_retry without a retry"
        );
        self.stats.active_retries = self.stats.active_retries.saturating_sub(1);
    }
}
