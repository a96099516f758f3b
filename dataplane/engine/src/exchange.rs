//! One downstream request's conversation with the engine, as Envoy's router
//! filter holds it: the decision, an injected delay, each attempt's
//! admission (attach, queue, overflow), its outcome, the retry policy's
//! verdict and back-off, the retry's host, the route and per-try timeouts,
//! and the final answer with its status and response flags.
//!
//! [`Exchange`] is sans-IO like the engine: the caller owns the clock, the
//! connections and the timers, feeds what happened (`handle_*`, `admit`,
//! `dequeue`, `cancel`) with the time, and does what the returned [`Step`]
//! or [`Admit`] says. The simulator, meshproxy and the engine's own tests
//! all drive requests through it, so the three cannot disagree on the
//! sequence, the statuses or the flags.
//!
//! ```text
//! start ──► Delay ─(handle_delay_over)─► Forward ─(admit)─► Send ─(handle_response)─► Answer
//!   │                                       ▲        │                                  │
//!   └────────► Answer (local reply)         │        ├─► Queue ─(dequeue)─► Send        │
//!                                           │        └─► Answer (UO)                    ▼
//!                                           └──────(handle_backoff_over)◄──────── Backoff
//! ```
//! The route timeout (armed at the first [`Step::Forward`], for its
//! `timeout`) ends the request in any phase with
//! [`Exchange::handle_route_timeout`]; a per-try timeout (armed at
//! [`Admit::Send`]) is the outcome [`Outcome::Timeout`]; a downstream that
//! goes away calls [`Exchange::cancel`].

use std::time::Duration;

use crate::breaker::Admission;
use crate::decision::{Decision, Delay, Forward, Outcome, Upstream};
use crate::engine::{Engine, RequestState, RetryDecision};
use crate::flags::{ResponseFlag, ResponseFlags};
use crate::request::Request;
use crate::route::RouteId;
use crate::time::Time;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting out an injected delay (the router has not run).
    Delayed,
    /// An attempt was forwarded: [`Exchange::admit`] is owed.
    Admitting,
    /// Queued in the connection pool: [`Exchange::dequeue`] when a
    /// connection is ready.
    Queued,
    /// On a connection: exactly one outcome ([`Exchange::handle_response`]) is owed.
    Sent,
    /// Waiting out a retry's back-off.
    BackingOff,
    /// Answered or cancelled: nothing more.
    Done,
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// A fault delay hit (`DI`): call [`Exchange::handle_delay_over`] at
    /// `until`.
    Delay {
        /// When the delay is over.
        until: Time,
    },
    /// Send an attempt (the first, or a retry) to `forward.upstream`: look
    /// at the connection pool for that host and call [`Exchange::admit`].
    /// On the first one ([`Exchange::attempts`] is 1), arm the route
    /// timeout: `forward.timeout` from now (the router starts after any
    /// injected delay).
    Forward(Forward),
    /// The attempt failed and will be retried: call
    /// [`Exchange::handle_backoff_over`] at `until`.
    Backoff {
        /// When the back-off is over.
        until: Time,
    },
    /// Answer downstream; the exchange is over.
    Answer(Answer),
    /// Nothing to do: the call did not apply in this phase (a timer that
    /// lost a race).
    Stale,
}

/// What to do with an attempt after admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Admit {
    /// Send it on the ready connection; its per-try timeout fires at
    /// `try_deadline` (Envoy starts it when the pool hands out the
    /// connection), then report [`Outcome::Timeout`].
    Send {
        /// The per-try timeout, if the route has one.
        try_deadline: Option<Time>,
    },
    /// Wait in the pool's queue (open a connection first if told to), then
    /// [`Exchange::dequeue`].
    Queue {
        /// Open a connection for the queue.
        open_connection: bool,
    },
    /// The circuit breaker refused it (503 `UO`, never retried); the
    /// exchange is over.
    Answer(Answer),
    /// Nothing to do (not in a phase that admits).
    Stale,
}

/// The final answer downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Envoy's response flags of the request.
    pub flags: ResponseFlags,
    /// The status is the upstream's own response: its headers and body go
    /// downstream. Otherwise the proxy answers locally.
    pub from_upstream: bool,
    /// For a local reply, the flag that explains it (the text of Envoy's
    /// local reply, `x-envoy-overloaded` for `UO`); `None` for a route's
    /// direct response or redirect.
    pub cause: Option<ResponseFlag>,
    /// The route that matched, if one did (a direct response's body, a
    /// redirect's location).
    pub route: Option<RouteId>,
}

/// One request's router state across its attempts (see the module docs).
/// Plain data, no allocation; owned by the caller. Not `Clone`: it holds
/// engine resources (its route's config generation, a retry slot) that
/// exactly one of [`Step::Answer`], [`Admit::Answer`],
/// [`Exchange::handle_route_timeout`] or [`Exchange::cancel`] lets go of.
#[derive(Debug)]
pub struct Exchange {
    phase: Phase,
    /// The injected delay being waited out.
    delay: Option<Delay>,
    /// The router's retry state, once forwarded.
    state: Option<RequestState>,
    per_try: Option<Duration>,
    attempts: u32,
    flags: ResponseFlags,
    /// The body outgrew the retry buffer: no retry.
    retries_abandoned: bool,
}

/// An exchange that is over (holds nothing): a placeholder for a slot.
impl Default for Exchange {
    fn default() -> Self {
        Self {
            phase: Phase::Done,
            delay: None,
            state: None,
            per_try: None,
            attempts: 0,
            flags: ResponseFlags::NONE,
            retries_abandoned: false,
        }
    }
}

impl Exchange {
    /// A request arrives: the engine routes it (or holds it for an
    /// injected delay, or answers it locally).
    pub fn start(engine: &mut Engine, req: &Request<'_>, now: Time) -> (Self, Step) {
        let mut ex = Self::default();
        let step = ex.begin(engine, req, now);
        (ex, step)
    }

    /// [`Exchange::start`] in place: `self`, an exchange that is over (a
    /// reused slot), becomes the new request's. A caller that keeps its
    /// exchanges in slots saves moving one per request.
    pub fn begin(&mut self, engine: &mut Engine, req: &Request<'_>, now: Time) -> Step {
        debug_assert_eq!(self.phase, Phase::Done, "an exchange in progress");
        *self = Self::default();
        match engine.handle_request(req, now) {
            Decision::Delay(d) => {
                self.phase = Phase::Delayed;
                self.delay = Some(d);
                self.flags.insert(ResponseFlag::DelayInjected);
                Step::Delay {
                    until: now + d.delay,
                }
            }
            d => self.decided(engine, d, now),
        }
    }

    /// The injected delay is over: the router runs now (abort, weighted
    /// cluster, host), as Envoy's router runs after the fault filter.
    /// `req` is the same request as at [`Exchange::start`].
    pub fn handle_delay_over(&mut self, engine: &mut Engine, req: &Request<'_>, now: Time) -> Step {
        let (Phase::Delayed, Some(d)) = (self.phase, self.delay) else {
            return Step::Stale;
        };
        let decision = engine.handle_delayed(req, d, now);
        self.decided(engine, decision, now)
    }

    fn decided(&mut self, engine: &mut Engine, decision: Decision, now: Time) -> Step {
        match decision {
            Decision::Forward(f) => {
                let state = engine.start_request(&f, now);
                self.per_try = engine
                    .route(state.route)
                    .and_then(|r| r.retries.as_ref())
                    .and_then(|p| p.per_try_timeout);
                self.state = Some(state);
                self.attempts = 1;
                self.phase = Phase::Admitting;
                Step::Forward(f)
            }
            Decision::Reject(r) => Step::Answer(Answer {
                route: r.route,
                ..self.local(r.status, Some(r.flag()))
            }),
            Decision::Respond(r) => Step::Answer(Answer {
                route: Some(r.route),
                ..self.local(r.status, None)
            }),
            // The engine never delays twice.
            Decision::Delay(_) => Step::Answer(self.local(500, None)),
        }
    }

    /// Admission of the forwarded attempt by the circuit breaker, given
    /// the caller's pool for its host: `ready`, a connection is free;
    /// `pool_empty`, the caller has no connection at all to the host.
    pub fn admit(
        &mut self,
        engine: &mut Engine,
        ready: bool,
        pool_empty: bool,
        now: Time,
    ) -> Admit {
        let (Phase::Admitting, Some(up)) = (self.phase, self.upstream()) else {
            return Admit::Stale;
        };
        match engine.admit(up, ready, pool_empty, now) {
            Admission::Attach => self.sent(now),
            Admission::Queue { open_connection } => {
                self.phase = Phase::Queued;
                Admit::Queue { open_connection }
            }
            Admission::Overflow => Admit::Answer(self.overflowed(engine, now)),
        }
    }

    /// A connection is ready for the queued attempt: attach it, or
    /// overflow on `maxRequests` (`http2MaxRequests`).
    pub fn dequeue(&mut self, engine: &mut Engine, now: Time) -> Admit {
        let (Phase::Queued, Some(up)) = (self.phase, self.upstream()) else {
            return Admit::Stale;
        };
        match engine.dequeue(up, now) {
            Admission::Attach => self.sent(now),
            _ => Admit::Answer(self.overflowed(engine, now)),
        }
    }

    fn sent(&mut self, now: Time) -> Admit {
        self.phase = Phase::Sent;
        Admit::Send {
            try_deadline: self.per_try.map(|t| now + t),
        }
    }

    fn overflowed(&mut self, engine: &mut Engine, now: Time) -> Answer {
        self.finish(engine, now);
        self.local(503, Some(ResponseFlag::UpstreamOverflow))
    }

    /// The connection opened for the queued attempt failed: the attempt
    /// takes it (or overflows on `maxRequests`) and fails with
    /// [`Outcome::ConnectFailure`], as Envoy's pool fails the stream it
    /// connected for.
    pub fn handle_connect_failure(&mut self, engine: &mut Engine, now: Time) -> Step {
        match self.dequeue(engine, now) {
            Admit::Send { .. } => self.handle_response(engine, Outcome::ConnectFailure, now),
            Admit::Answer(a) => Step::Answer(a),
            Admit::Queue { .. } | Admit::Stale => Step::Stale,
        }
    }

    /// The attempt on a connection ended with `outcome` (a response, a
    /// reset, a refused connection, its per-try timeout): outlier
    /// detection hears of it, then the retry policy decides.
    pub fn handle_response(&mut self, engine: &mut Engine, outcome: Outcome, now: Time) -> Step {
        if self.phase != Phase::Sent {
            return Step::Stale;
        }
        let Some(state) = self.state.as_mut() else {
            return Step::Stale;
        };
        engine.handle_response(state.upstream, outcome, now);
        let decision = if self.retries_abandoned {
            RetryDecision::Done { flag: None }
        } else {
            engine.retry_decision(state, outcome, now)
        };
        match decision {
            RetryDecision::Retry { backoff } => {
                self.phase = Phase::BackingOff;
                Step::Backoff {
                    until: now + backoff,
                }
            }
            RetryDecision::Done { flag } => {
                // The attempt's own flag, then the retry policy's, as
                // Envoy's router sets both (`UT,URX` when per-try timeouts
                // use up the retries).
                let (status, own) = outcome.answer();
                self.finish(engine, now);
                self.flags.insert_opt(own);
                self.flags.insert_opt(flag);
                Step::Answer(Answer {
                    status,
                    flags: self.flags,
                    from_upstream: matches!(outcome, Outcome::Status(_)),
                    cause: own,
                    route: self.route(),
                })
            }
        }
    }

    /// The retry's back-off is over: the engine picks its host (503 `UH`
    /// when the cluster has none).
    pub fn handle_backoff_over(&mut self, engine: &mut Engine, now: Time) -> Step {
        if self.phase != Phase::BackingOff {
            return Step::Stale;
        }
        let Some(state) = self.state.as_mut() else {
            return Step::Stale;
        };
        match engine.retry(state, now) {
            Decision::Forward(f) => {
                self.attempts += 1;
                self.phase = Phase::Admitting;
                Step::Forward(f)
            }
            _ => {
                self.finish(engine, now);
                Step::Answer(self.local(503, Some(ResponseFlag::NoHealthyUpstream)))
            }
        }
    }

    /// The route timeout fired: 504 `UT`, whatever the phase. An attempt on
    /// a connection is reported as [`Outcome::Timeout`] (the caller resets
    /// it: an HTTP/1.1 connection closes); a queued one leaves the queue.
    pub fn handle_route_timeout(&mut self, engine: &mut Engine, now: Time) -> Step {
        if matches!(self.phase, Phase::Done | Phase::Delayed) {
            return Step::Stale;
        }
        if let Some(up) = self.upstream() {
            match self.phase {
                Phase::Sent => engine.handle_response(up, Outcome::Timeout, now),
                Phase::Queued => engine.cancel_pending(up, now),
                Phase::Admitting => engine.cancel(up, false, now),
                _ => {}
            }
        }
        self.finish(engine, now);
        Step::Answer(self.local(504, Some(ResponseFlag::UpstreamRequestTimeout)))
    }

    /// The downstream went away (or the calling application gave up):
    /// Envoy resets the upstream stream. Outlier detection is not told —
    /// the host did nothing wrong. The caller closes an HTTP/1.1
    /// connection the attempt was on. Idempotent.
    pub fn cancel(&mut self, engine: &mut Engine, now: Time) {
        match (self.phase, self.upstream()) {
            (Phase::Queued, Some(up)) => engine.cancel_pending(up, now),
            (Phase::Sent, Some(up)) => engine.cancel(up, true, now),
            (Phase::Admitting, Some(up)) => engine.cancel(up, false, now),
            _ => {}
        }
        if self.phase == Phase::Delayed
            && let Some(d) = self.delay
        {
            engine.abandon_delay(d, now);
        }
        self.finish(engine, now);
    }

    fn finish(&mut self, engine: &mut Engine, now: Time) {
        if let Some(state) = self.state.as_mut() {
            engine.finish_request(state, now);
        }
        self.phase = Phase::Done;
    }

    fn local(&mut self, status: u16, cause: Option<ResponseFlag>) -> Answer {
        self.phase = Phase::Done;
        self.flags.insert_opt(cause);
        Answer {
            status,
            flags: self.flags,
            from_upstream: false,
            cause,
            route: self.route(),
        }
    }

    /// The request's body outgrew the buffer kept to resend it, as Envoy's
    /// router stops buffering past its buffer limit: the attempt in
    /// progress is the last, whatever its outcome (no `URX` either). Call
    /// once the body is being streamed; counts `retry_or_shadow_abandoned`.
    pub fn abandon_retries(&mut self, engine: &mut Engine, now: Time) {
        if self.retries_abandoned {
            return;
        }
        self.retries_abandoned = true;
        if let Some(state) = &self.state {
            engine.abandon_retries(state, now);
        }
    }

    /// Where the request stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The upstream of the latest attempt, once forwarded.
    pub fn upstream(&self) -> Option<Upstream> {
        self.state.as_ref().map(|s| s.upstream)
    }

    /// The route of a forwarded or delayed request.
    pub fn route(&self) -> Option<RouteId> {
        match (&self.state, self.delay) {
            (Some(s), _) => Some(s.route),
            (None, Some(d)) => Some(d.route),
            (None, None) => None,
        }
    }

    /// Attempts made so far (Envoy's `x-envoy-attempt-count` of the
    /// latest).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The flags so far (`DI` once a delay was injected).
    pub fn flags(&self) -> ResponseFlags {
        self.flags
    }
}

#[cfg(test)]
mod tests;
