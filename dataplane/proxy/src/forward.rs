//! One downstream request: ask the engine, forward with retries and
//! timeouts as it decides, report every outcome back, answer.
//!
//! The engine calls follow the simulator's protocol (`sim/src/run.rs`):
//! `handle_request` (→ `Delay` → `handle_delayed`), `start_request`, per
//! attempt `admit` (→ queue → `dequeue` or `cancel_pending`) and exactly one
//! `handle_response` per admitted attempt, `retry_decision` after each,
//! `retry` after the back-off, and `finish_request` at the end. A request
//! whose client goes away is cleaned up by [`Flight`]'s `Drop` (`cancel`,
//! as Envoy resets the upstream stream).
//!
//! Requests come as slices of the listener's read buffer ([`Req`]) and
//! answers go back with their headers in wire form ([`Answer`]), whichever
//! protocol the client speaks.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use mesh_engine::config::{Action, HeaderOps, Match, StrMatch};
use mesh_engine::{
    Decision, Forward, Outcome, RequestState, ResponseFlag, RetryDecision, RouteId, Upstream,
};
use tokio::sync::oneshot;

use crate::h1;
use crate::hdr;
use crate::log::Entry;
use crate::msg::{Answer, Req, local_body};
use crate::pool::{Conn, Grant, Stream};
use crate::proxy::{Acquire, Shared, spawn_connects};

/// Handles one request end to end and accounts for it (counters, the
/// recording, the access log); never fails (errors are answers).
pub(crate) async fn handle(sh: &Rc<Shared>, li: usize, req: &Req<'_>) -> Answer {
    let started = sh.now();
    sh.in_flight.set(sh.in_flight.get() + 1);
    let _in_flight = InFlight(sh.clone());
    let answer = route(sh, li, req).await;
    let took = sh.recent().saturating_since(started);
    account(sh, li, req, &answer, &answer.flags, took);
    answer
}

/// Counts, records and logs an answer that took `took`, with `flags`.
pub(crate) fn account(
    sh: &Shared,
    li: usize,
    req: &Req<'_>,
    answer: &Answer,
    flags: &str,
    took: Duration,
) {
    sh.proxy(li).stats.count_response(answer.status, flags);
    sh.record_answer(li, answer.status, flags, took);
    Entry {
        method: req.method,
        path: req.path,
        authority: req.authority,
        status: answer.status,
        flags,
        upstream: answer.upstream.as_deref().unwrap_or(""),
        duration: took,
        attempts: answer.attempts,
    }
    .write(sh.options.access_log);
}

/// Counts a request in flight until dropped.
struct InFlight(Rc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
    }
}

async fn route(sh: &Rc<Shared>, li: usize, req: &Req<'_>) -> Answer {
    // The engine's view of the headers, on the stack for the usual few.
    let mut stack = [("", ""); 32];
    let mut n = 0;
    let mut heap = Vec::new();
    for (k, v) in req.headers.iter() {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        if n < stack.len() {
            stack[n] = (k, v);
            n += 1;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push((k, v));
        }
    }
    let pairs: &[(&str, &str)] = if heap.is_empty() { &stack[..n] } else { &heap };
    let mut ereq = mesh_engine::Request {
        method: req.method,
        scheme: "http",
        authority: req.authority,
        path: req.path,
        headers: pairs,
        port: req.conn.local.port(),
        source: Some(req.conn.remote),
        destination: Some(req.conn.local),
        // One worker thread (see docs/proxy.md).
        worker: 0,
    };
    let mut decision = {
        let mut p = sh.proxy(li);
        let now = sh.recent();
        // The port whose route table applies (`match.port`): a gateway's
        // is the listener's, as a Gateway server's is; a sidecar's is the
        // port of the service called — the authority's, else the
        // service's — not the port this listener happens to use.
        if p.listener.proxy.gateway.is_none() {
            ereq.port = p.engine.destination_port(req.authority).unwrap_or(80);
        }
        let d = p.engine.handle_request(&ereq, now);
        p.drain_events();
        d
    };
    let mut delayed = false;
    if let Decision::Delay(d) = decision {
        // A client that goes away during the delay drops this future: the
        // guard lets the engine know, so the route's generation is freed.
        let held = HeldDelay { sh, li, delay: d };
        tokio::time::sleep(d.delay).await;
        std::mem::forget(held);
        delayed = true;
        let mut p = sh.proxy(li);
        let now = sh.now();
        decision = p.engine.handle_delayed(&ereq, d, now);
        p.drain_events();
    }
    let mut answer = match decision {
        Decision::Forward(f) => forward(sh, li, f, req).await,
        Decision::Reject(r) => {
            let flag = r.flag();
            Answer::local(r.status, Some(flag), local_body(Some(flag)))
        }
        Decision::Respond(r) => respond(sh, li, r.route, r.status, req.path, req.authority),
        Decision::Delay(_) => Answer::local(500, None, "fault delay twice"),
    };
    if delayed {
        answer.add_flag("DI");
    }
    answer
}

/// A request waiting out an injected delay; dropped (the client went
/// away) before the delay ends, it abandons the delay in the engine.
struct HeldDelay<'a> {
    sh: &'a Rc<Shared>,
    li: usize,
    delay: mesh_engine::Delay,
}

impl Drop for HeldDelay<'_> {
    fn drop(&mut self) {
        let mut p = self.sh.proxy(self.li);
        let now = self.sh.now();
        p.engine.abandon_delay(self.delay, now);
    }
}

/// A redirect or direct response of a route.
fn respond(
    sh: &Rc<Shared>,
    li: usize,
    route: RouteId,
    status: u16,
    path: &str,
    authority: &str,
) -> Answer {
    let p = sh.proxy(li);
    let mut a = Answer::local(status, None, "");
    let Some(route) = p.engine.route(route) else {
        let flag = Some(ResponseFlag::NoRouteFound);
        return Answer::local(404, flag, local_body(flag));
    };
    match &route.action {
        Action::Redirect(r) => {
            let scheme = r.scheme.as_deref().unwrap_or("http");
            let host = r
                .authority
                .as_deref()
                .unwrap_or_else(|| host_only(authority));
            let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
            let uri = r.uri.as_deref().unwrap_or(path);
            let location = format!("{scheme}://{host}{port}{uri}");
            if hdr::valid_value(location.as_bytes()) {
                hdr::push(&mut a.headers, b"location", location.as_bytes());
            }
            a.body = Bytes::new();
        }
        Action::DirectResponse { body, .. } => {
            a.body = Bytes::from(body.clone().unwrap_or_default());
        }
        Action::Route(_) => {}
    }
    a
}

/// `host:port` → `host` (`[v6]:port` → `[v6]`).
fn host_only(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i)
            if authority[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && (!authority[..i].contains(':') || authority[..i].ends_with(']')) =>
        {
            &authority[..i]
        }
        _ => authority,
    }
}

/// Where an attempt stands, for cleanup when it is cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not admitted (or already reported).
    Idle,
    /// Queued for a connection (waiter id).
    Pending(u64),
    /// Admitted and sent: exactly one `handle_response` (or `cancel`) owed.
    Outstanding,
}

/// A forwarded request's state across its attempts. Dropping it (the
/// client went away, or the request ended) settles what the engine is owed.
struct Flight {
    sh: Rc<Shared>,
    li: usize,
    state: RequestState,
    up: Upstream,
    pool: usize,
    phase: Phase,
    rx: Option<oneshot::Receiver<Grant>>,
    conn: Option<Conn>,
    /// The HTTP/2 stream of the attempt in progress (instead of `conn`).
    stream: Option<Stream>,
    /// The client speaks HTTP/2 (which pool a cluster that follows the
    /// client's protocol uses).
    client_h2: bool,
    /// When the attempt in progress started (for the recorder).
    attempt_started: mesh_engine::Time,
}

impl Flight {
    /// The attempt in progress is cut by a route or per-try timeout: report
    /// `Timeout` for an admitted attempt (its connection closes), or leave
    /// the queue.
    fn timed_out(&mut self) {
        let sh = self.sh.clone();
        let mut p = sh.proxy(self.li);
        let now = sh.now();
        match self.phase {
            Phase::Idle => {}
            Phase::Pending(_) => self.leave_queue(&mut p, now, true),
            Phase::Outstanding => {
                p.engine
                    .handle_response(self.up, mesh_engine::Outcome::Timeout, now);
                p.pools[self.pool].stats.rq_class[0] += 1;
                sh.record_attempt(&p.pools[self.pool].address, 0, self.attempt_started);
                if let Some(c) = self.conn.take() {
                    p.release(self.pool, c, false, now);
                }
                if let Some(s) = self.stream.take() {
                    p.release_stream(self.pool, &s, true, now);
                }
            }
        }
        self.phase = Phase::Idle;
        p.drain_events();
        drop(p);
        spawn_connects(&sh, self.li);
    }

    /// Leaves the connection queue; a grant already sent is settled.
    /// `report`: a granted failed connect reports `ConnectFailure` (a
    /// timeout) rather than being silently cancelled (a client gone).
    fn leave_queue(&mut self, p: &mut crate::proxy::Proxy, now: mesh_engine::Time, report: bool) {
        let Phase::Pending(id) = self.phase else {
            return;
        };
        if p.pools[self.pool].remove_waiter(id) {
            p.engine.cancel_pending(self.up, now);
        } else if let Some(mut rx) = self.rx.take() {
            match rx.try_recv() {
                Ok(Grant::Conn(c)) => {
                    p.engine.cancel(self.up, true, now);
                    p.put_back(self.pool, c, now);
                }
                Ok(Grant::Stream(s)) => {
                    p.engine.cancel(self.up, true, now);
                    p.release_stream(self.pool, &s, false, now);
                }
                Ok(Grant::ConnectFailure) if report => {
                    p.engine
                        .handle_response(self.up, mesh_engine::Outcome::ConnectFailure, now);
                }
                Ok(Grant::ConnectFailure) => p.engine.cancel(self.up, true, now),
                _ => {}
            }
        }
        self.rx = None;
        self.phase = Phase::Idle;
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let sh = self.sh.clone();
        let Ok(mut p) = sh.proxies[self.li].try_borrow_mut() else {
            return;
        };
        let now = if self.phase == Phase::Idle {
            // The request ended with its last event: no new clock read.
            sh.recent()
        } else {
            sh.now()
        };
        match self.phase {
            Phase::Idle => {}
            Phase::Pending(_) => self.leave_queue(&mut p, now, false),
            Phase::Outstanding => {
                // Envoy resets the upstream stream; outlier detection is
                // not told (the host did nothing wrong).
                p.engine.cancel(self.up, true, now);
                if let Some(c) = self.conn.take() {
                    p.release(self.pool, c, false, now);
                }
                if let Some(s) = self.stream.take() {
                    p.release_stream(self.pool, &s, true, now);
                }
            }
        }
        p.engine.finish_request(&mut self.state, now);
        p.drain_events();
        drop(p);
        spawn_connects(&sh, self.li);
    }
}

/// How one attempt ended.
enum AttemptEnd {
    /// The breaker refused it (503 `UO`); nothing to report.
    Overflow,
    /// An upstream answer (reported).
    Response(Answer),
    /// A local-origin failure (reported).
    Failed(Outcome),
    /// The upstream went away or answered nonsense (reported as
    /// [`Outcome::Reset`]).
    Reset(Reset),
}

/// Why an attempt got no whole response, as Envoy's stream reset reasons
/// (`Router::Filter::onUpstreamReset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// The connection closed (FIN or RST) first: Envoy's
    /// `ConnectionTermination`, 503 `UC` — an HTTP/1.1 upstream, or a whole
    /// HTTP/2 connection, that goes away.
    Termination,
    /// The upstream reset the HTTP/2 stream: `RemoteReset`, 503 `UR`.
    Remote,
    /// Not a valid response (or over the proxy's limits): `ProtocolError`,
    /// 502 `UPE`.
    Protocol,
}

impl Reset {
    fn reason(self) -> mesh_engine::ResetReason {
        match self {
            Self::Termination => mesh_engine::ResetReason::ConnectionTermination,
            Self::Remote => mesh_engine::ResetReason::RemoteReset,
            Self::Protocol => mesh_engine::ResetReason::ProtocolError,
        }
    }

    fn flag(self) -> ResponseFlag {
        match self {
            Self::Termination => ResponseFlag::UpstreamConnectionTermination,
            Self::Remote => ResponseFlag::UpstreamRemoteReset,
            Self::Protocol => ResponseFlag::UpstreamProtocolError,
        }
    }

    fn status(self) -> u16 {
        match self {
            Self::Protocol => 502,
            Self::Termination | Self::Remote => 503,
        }
    }
}

async fn forward(sh: &Rc<Shared>, li: usize, f: Forward, req: &Req<'_>) -> Answer {
    let (flight, set_cookie, per_try, template) = {
        let mut p = sh.proxy(li);
        let now = sh.recent();
        let state = p.engine.start_request(&f, now);
        let Some(route) = p.engine.route(f.route) else {
            // Not reached: the state just started holds its route.
            let flag = Some(ResponseFlag::NoRouteFound);
            return Answer::local(404, flag, local_body(flag));
        };
        let per_try = route.retries.as_ref().and_then(|r| r.per_try_timeout);
        let dest_ops = match &route.action {
            Action::Route(ds) => ds
                .get(f.destination as usize)
                .map(|d| d.headers.clone())
                .unwrap_or_default(),
            _ => HeaderOps::default(),
        };
        let template = Template::new(req, route, &dest_ops);
        let flight = Flight {
            sh: sh.clone(),
            li,
            state,
            up: f.upstream,
            pool: p.pool_for(f.upstream, req.conn.h2),
            phase: Phase::Idle,
            rx: None,
            conn: None,
            stream: None,
            client_h2: req.conn.h2,
            attempt_started: now,
        };
        (flight, p.engine.set_cookie_header(&f), per_try, template)
    };
    let mut flight = flight;
    let attempts = std::cell::Cell::new(0u32);
    let run = attempts_loop(&mut flight, per_try, &template, &attempts);
    let mut answer = match f.timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(a) => a,
            Err(_) => {
                flight.timed_out();
                let flag = Some(ResponseFlag::UpstreamRequestTimeout);
                Answer::local(504, flag, local_body(flag))
            }
        },
        None => run.await,
    };
    answer.attempts = attempts.get();
    {
        let p = sh.proxy(li);
        answer.upstream = Some(p.pools[flight.pool].address.clone());
    }
    if let Some(c) = set_cookie
        && hdr::valid_value(c.as_bytes())
    {
        hdr::push(&mut answer.headers, b"set-cookie", c.as_bytes());
    }
    template.response_ops(&mut answer.headers);
    drop(flight);
    answer
}

async fn attempts_loop(
    flight: &mut Flight,
    per_try: Option<Duration>,
    template: &Template<'_>,
    attempts: &std::cell::Cell<u32>,
) -> Answer {
    let sh = flight.sh.clone();
    let li = flight.li;
    loop {
        attempts.set(attempts.get() + 1);
        let end = match per_try {
            Some(t) => {
                match tokio::time::timeout(t, attempt(flight, template, attempts.get())).await {
                    Ok(e) => e,
                    Err(_) => {
                        flight.timed_out();
                        AttemptEnd::Failed(Outcome::Timeout)
                    }
                }
            }
            None => attempt(flight, template, attempts.get()).await,
        };
        let outcome = match &end {
            AttemptEnd::Overflow => {
                let flag = Some(ResponseFlag::UpstreamOverflow);
                return Answer::local(503, flag, local_body(flag));
            }
            AttemptEnd::Response(r) => Outcome::Status(r.status),
            AttemptEnd::Failed(o) => *o,
            AttemptEnd::Reset(r) => Outcome::Reset(r.reason()),
        };
        let decision = {
            let mut p = sh.proxy(li);
            let now = sh.recent();
            p.engine.retry_decision(&mut flight.state, outcome, now)
        };
        match decision {
            RetryDecision::Retry { backoff } => {
                sh.proxy(li).stats.retries += 1;
                tokio::time::sleep(backoff).await;
                let d = {
                    let mut p = sh.proxy(li);
                    let now = sh.now();
                    let d = p.engine.retry(&mut flight.state, now);
                    p.drain_events();
                    if let Decision::Forward(f) = d {
                        flight.up = f.upstream;
                        flight.pool = p.pool_for(f.upstream, flight.client_h2);
                    }
                    d
                };
                if !matches!(d, Decision::Forward(_)) {
                    let flag = Some(ResponseFlag::NoHealthyUpstream);
                    return Answer::local(503, flag, local_body(flag));
                }
            }
            RetryDecision::Done { flag } => {
                let (status, own) = match (&end, outcome) {
                    (AttemptEnd::Reset(r), _) => (r.status(), Some(r.flag())),
                    (_, Outcome::Timeout) => (504, Some(ResponseFlag::UpstreamRequestTimeout)),
                    (_, Outcome::ConnectFailure) => {
                        (503, Some(ResponseFlag::UpstreamConnectionFailure))
                    }
                    _ => (503, None),
                };
                let mut a = match end {
                    AttemptEnd::Response(r) => r,
                    _ => Answer::local(status, own, local_body(own)),
                };
                for f in [own, flag].into_iter().flatten() {
                    a.add_flag(f.as_str());
                }
                return a;
            }
        }
    }
}

/// One attempt: admission, connection, request, whole response.
async fn attempt(flight: &mut Flight, template: &Template<'_>, n: u32) -> AttemptEnd {
    let sh = flight.sh.clone();
    let li = flight.li;
    // An attempt starts with the event that led to it (the request, or
    // the end of a retry's back-off): no new clock read.
    flight.attempt_started = sh.recent();
    let acq = {
        let mut p = sh.proxy(li);
        let now = sh.recent();
        p.acquire(flight.pool, flight.up, now)
    };
    spawn_connects(&sh, li);
    let conn = match acq {
        Acquire::Overflow => return AttemptEnd::Overflow,
        Acquire::Ready(c) => c,
        Acquire::Stream(s) => return attempt_h2(flight, template, n, s).await,
        Acquire::Wait(id, rx) => {
            flight.phase = Phase::Pending(id);
            flight.rx = Some(rx);
            let g = match flight.rx.as_mut() {
                Some(rx) => rx.await,
                None => return AttemptEnd::Overflow,
            };
            flight.rx = None;
            flight.phase = Phase::Idle;
            match g {
                Ok(Grant::Conn(c)) => c,
                Ok(Grant::Stream(s)) => return attempt_h2(flight, template, n, s).await,
                Ok(Grant::Overflow) => return AttemptEnd::Overflow,
                Err(_) => {
                    // The pool dropped the request without an answer (not
                    // expected): it leaves the queue as a failed connect.
                    let mut p = sh.proxy(li);
                    let now = sh.now();
                    p.engine.cancel_pending(flight.up, now);
                    p.drain_events();
                    return AttemptEnd::Failed(Outcome::ConnectFailure);
                }
                Ok(Grant::ConnectFailure) => {
                    let mut p = sh.proxy(li);
                    let now = sh.now();
                    p.engine
                        .handle_response(flight.up, Outcome::ConnectFailure, now);
                    p.pools[flight.pool].stats.rq_class[0] += 1;
                    sh.record_attempt(&p.pools[flight.pool].address, 0, flight.attempt_started);
                    p.drain_events();
                    return AttemptEnd::Failed(Outcome::ConnectFailure);
                }
            }
        }
    };
    flight.phase = Phase::Outstanding;
    flight.conn = Some(conn);
    let limits = h1::Limits {
        max_head: sh.options.max_header_bytes,
        max_body: sh.options.max_body_bytes,
    };
    let result = {
        let Some(c) = flight.conn.as_mut() else {
            return AttemptEnd::Reset(Reset::Termination);
        };
        exchange(c, template, n, limits).await
    };
    let mut p = sh.proxy(li);
    let now = sh.now();
    let answered = result.is_ok();
    let end = report(&sh, &mut p, flight, result, now);
    if let Some(c) = flight.conn.take() {
        // Kept if answered and not marked finished by the exchange.
        p.release(flight.pool, c, answered, now);
    }
    flight.phase = Phase::Idle;
    p.drain_events();
    drop(p);
    spawn_connects(&sh, li);
    end
}

/// Reports an admitted attempt's end to the engine, the pool's counters
/// and the recording: the upstream's answer, or (`Err`) a reset.
fn report(
    sh: &Shared,
    p: &mut crate::proxy::Proxy,
    flight: &Flight,
    result: Result<Answer, Reset>,
    now: mesh_engine::Time,
) -> AttemptEnd {
    let stats = &mut p.pools[flight.pool].stats;
    stats.rq_total += 1;
    let (status, end) = match result {
        Ok(resp) => (resp.status, AttemptEnd::Response(resp)),
        Err(r) => (0, AttemptEnd::Reset(r)),
    };
    stats.rq_class[usize::from(status / 100).min(5)] += 1;
    sh.record_attempt(
        &p.pools[flight.pool].address,
        status,
        flight.attempt_started,
    );
    let outcome = match &end {
        AttemptEnd::Failed(o) => *o,
        AttemptEnd::Reset(r) => Outcome::Reset(r.reason()),
        _ => Outcome::Status(status),
    };
    p.engine.handle_response(flight.up, outcome, now);
    end
}

/// The rest of an attempt on an HTTP/2 stream: the request, the whole
/// response, the outcome reported as for HTTP/1.1 (a stream reset, GOAWAY
/// or connection error is `Reset`).
async fn attempt_h2(
    flight: &mut Flight,
    template: &Template<'_>,
    n: u32,
    stream: Stream,
) -> AttemptEnd {
    let sh = flight.sh.clone();
    let li = flight.li;
    flight.phase = Phase::Outstanding;
    let mut send = stream.send.clone();
    flight.stream = Some(stream);
    let max_body = sh.options.max_body_bytes;
    let result = match template.h2_request(n) {
        Ok(req) => exchange_h2(&mut send, req, max_body).await,
        Err(()) => Err(Reset::Protocol),
    };
    drop(send);
    let mut p = sh.proxy(li);
    let now = sh.now();
    let end = report(&sh, &mut p, flight, result, now);
    if let Some(s) = flight.stream.take() {
        p.release_stream(flight.pool, &s, true, now);
    }
    flight.phase = Phase::Idle;
    p.drain_events();
    drop(p);
    spawn_connects(&sh, li);
    end
}

/// Sends a request on an HTTP/2 connection and reads the whole response
/// into an [`Answer`] (headers in wire form, hop-by-hop ones and the
/// length dropped).
async fn exchange_h2(
    send: &mut crate::pool::H2Send,
    req: hyper::Request<http_body_util::Full<Bytes>>,
    max_body: usize,
) -> Result<Answer, Reset> {
    use http_body_util::BodyExt as _;
    let resp = send.send_request(req).await.map_err(|e| h2_reset(&e))?;
    let (parts, body) = resp.into_parts();
    let mut headers = Vec::with_capacity(256);
    let mut date = false;
    for (k, v) in &parts.headers {
        let k = k.as_str();
        if k == "content-length" || hdr::is_hop_by_hop(k.as_bytes()) {
            continue;
        }
        date |= k == "date";
        hdr::push(&mut headers, k.as_bytes(), v.as_bytes());
    }
    let body = http_body_util::Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| match e.downcast_ref::<hyper::Error>() {
            Some(e) => h2_reset(e),
            None => Reset::Protocol,
        })?
        .to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers,
        date,
        body,
        flags: String::new(),
        upstream: None,
        attempts: 0,
    })
}

/// Why an HTTP/2 exchange failed, as Envoy's codec tells its router: the
/// upstream reset the stream (`RST_STREAM`: `RemoteReset`, `UR`); the
/// connection went away (closed, an I/O error, the peer's GOAWAY:
/// `ConnectionTermination`, `UC`); anything else is this side's protocol
/// error (`UPE`).
fn h2_reset(e: &hyper::Error) -> Reset {
    if e.is_canceled() || e.is_closed() {
        return Reset::Termination;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<h2::Error>() {
            return if h.is_io() || (h.is_go_away() && h.is_remote()) {
                Reset::Termination
            } else if h.is_reset() && h.is_remote() {
                Reset::Remote
            } else {
                Reset::Protocol
            };
        }
        if s.is::<std::io::Error>() {
            return Reset::Termination;
        }
        source = s.source();
    }
    Reset::Remote
}

/// Bodies up to this size go out in the same `write` as the head.
const INLINE_BODY: usize = 64 << 10;

/// Sends attempt `n` of the request on a connection and reads the whole
/// response. A connection that may not carry another request afterwards
/// (the upstream closes it, HTTP/1.0, bytes after the response, any
/// error) is marked finished, so the pool closes it.
async fn exchange(
    conn: &mut Conn,
    template: &Template<'_>,
    n: u32,
    limits: h1::Limits,
) -> Result<Answer, Reset> {
    conn.wbuf.clear();
    template.write_head(n, &mut conn.wbuf);
    let inline = template.body.len() <= INLINE_BODY;
    if inline {
        conn.wbuf.extend_from_slice(template.body);
    }
    let result = h1::exchange(
        &mut conn.stream,
        &mut conn.rbuf,
        &conn.wbuf,
        (!inline).then_some(template.body),
        template.head_request,
        limits,
    )
    .await;
    if conn.wbuf.capacity() > INLINE_BODY * 2 {
        conn.wbuf = Vec::new();
    }
    let (head, body) = match result {
        Ok(r) => r,
        Err(e) => {
            conn.finished = true;
            return Err(match e {
                h1::Error::Closed => Reset::Termination,
                h1::Error::Malformed(_) | h1::Error::TooLarge | h1::Error::Upgrade => {
                    Reset::Protocol
                }
            });
        }
    };
    if !head.keep_alive || !conn.rbuf.is_empty() {
        conn.finished = true;
    }
    Ok(Answer {
        status: head.status,
        headers: head.headers,
        date: head.date,
        body,
        flags: String::new(),
        upstream: None,
        attempts: 0,
    })
}

/// Headers never copied from the request to the upstream: hop-by-hop
/// ones, and those the proxy writes itself.
fn skipped(name: &str) -> bool {
    name == "content-length"
        || name == "expect"
        || name == "x-envoy-attempt-count"
        || hdr::is_hop_by_hop(name.as_bytes())
}

/// The upstream request of every attempt, built once.
struct Template<'a> {
    /// Request line and headers, without `x-envoy-attempt-count` and the
    /// blank line that ends the head.
    head: Vec<u8>,
    body: &'a [u8],
    /// A `HEAD` request: the response has no body whatever it says.
    head_request: bool,
    response_ops: Vec<HeaderOps>,
}

impl<'a> Template<'a> {
    fn new(req: &Req<'a>, route: &mesh_engine::config::HttpRoute, dest: &HeaderOps) -> Self {
        let rewritten = route
            .rewrite
            .as_ref()
            .map(|rw| rewrite_path(req.path, &route.matches, rw));
        let target = match &rewritten {
            Some(t) if hdr::valid_value(t.as_bytes()) && !t.contains(' ') => t.as_str(),
            Some(_) => "/",
            None => req.path,
        };
        let mut head = Vec::with_capacity(512);
        for part in [req.method, " ", target, " HTTP/1.1\r\n"] {
            head.extend_from_slice(part.as_bytes());
        }
        // HTTP/1.1 upstreams need `Host`: the rewritten authority, or the
        // request's (an HTTP/2 request carries it as `:authority`).
        let host = route
            .rewrite
            .as_ref()
            .and_then(|rw| rw.authority.as_deref());
        let ops = [&route.headers, dest];
        // Fields the client's `Connection` header names are hop-by-hop too.
        let listed: Vec<&[u8]> = if req.connection_options {
            req.headers
                .iter()
                .filter(|(k, _)| *k == "connection")
                .flat_map(|(_, v)| hdr::connection_options(v))
                .collect()
        } else {
            Vec::new()
        };
        let edits = ops.iter().any(|o| {
            !o.request_set.is_empty() || !o.request_add.is_empty() || !o.request_remove.is_empty()
        });
        // The request's headers as they come (no map built), then `Host`
        // and `X-Forwarded-For`; with header operations, edited as a block.
        let mut block = Vec::new();
        let out = if edits { &mut block } else { &mut head };
        // Earlier hops' `X-Forwarded-For` lines, joined in order.
        let mut xff = Vec::with_capacity(48);
        for (k, v) in req.headers.iter() {
            if !listed.is_empty() && listed.iter().any(|x| k.as_bytes().eq_ignore_ascii_case(x)) {
                continue;
            }
            if k == "x-forwarded-for" {
                xff.extend_from_slice(v);
                xff.extend_from_slice(b", ");
                continue;
            }
            // `Host` is written once below, from the authority the request
            // was routed by (RFC 9112 section 3.2.2), never the client's.
            if k != "host" && !skipped(k) {
                hdr::push(out, k.as_bytes(), v);
            }
        }
        let h = host.unwrap_or(req.authority);
        if hdr::valid_value(h.as_bytes()) {
            hdr::push(out, b"host", h.as_bytes());
        }
        xff.extend_from_slice(req.conn.remote_ip());
        hdr::push(out, b"x-forwarded-for", &xff);
        if edits {
            for o in ops {
                hdr::apply(
                    &mut block,
                    &o.request_set,
                    &o.request_add,
                    &o.request_remove,
                );
            }
            head.extend_from_slice(&block);
        }
        // The body is whole: its length goes out as `content-length`, also
        // `0` for the methods that define content (RFC 9110 section 8.6).
        if !req.body.is_empty() || matches!(req.method, "POST" | "PUT" | "PATCH") {
            head.extend_from_slice(b"content-length: ");
            crate::hdr::push_decimal(&mut head, req.body.len());
            head.extend_from_slice(b"\r\n");
        }
        Self {
            head,
            body: req.body,
            head_request: req.method == "HEAD",
            response_ops: [&route.headers, dest]
                .into_iter()
                .filter(|o| **o != HeaderOps::default())
                .cloned()
                .collect(),
        }
    }

    /// Writes attempt `attempt`'s head into `out`.
    fn write_head(&self, attempt: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"x-envoy-attempt-count: ");
        crate::hdr::push_decimal(out, attempt as usize);
        out.extend_from_slice(b"\r\n\r\n");
    }

    /// Attempt `attempt` as an HTTP/2 request: the same head (its `Host`
    /// becomes the `:authority`), the body copied once per attempt.
    fn h2_request(&self, attempt: u32) -> Result<hyper::Request<http_body_util::Full<Bytes>>, ()> {
        let end = self.head.windows(2).position(|w| w == b"\r\n").ok_or(())?;
        let line = std::str::from_utf8(&self.head[..end]).map_err(|_| ())?;
        let mut words = line.split(' ');
        let (method, target) = (words.next().ok_or(())?, words.next().ok_or(())?);
        let mut b = hyper::Request::builder().method(method);
        let mut authority: &[u8] = b"";
        for (k, v) in hdr::lines(&self.head[end + 2..]) {
            if k == b"host" {
                authority = v;
            } else {
                b = b.header(k, v);
            }
        }
        let authority = std::str::from_utf8(authority).map_err(|_| ())?;
        b.uri(format!("http://{authority}{target}"))
            .header("x-envoy-attempt-count", attempt)
            .body(http_body_util::Full::new(Bytes::copy_from_slice(self.body)))
            .map_err(|_| ())
    }

    fn response_ops(&self, h: &mut Vec<u8>) {
        for ops in &self.response_ops {
            hdr::apply(
                h,
                &ops.response_set,
                &ops.response_add,
                &ops.response_remove,
            );
        }
    }
}

/// Istio's `rewrite`: `uriRegexRewrite` substitutes on the path; `uri`
/// replaces the prefix the route matched (or the whole path when it matched
/// otherwise).
fn rewrite_path(path: &str, matches: &[Match], rw: &mesh_engine::config::Rewrite) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out = if let Some((re, with)) = &rw.uri_regex {
        re.replace_all(p, with.as_str()).into_owned()
    } else if let Some(new) = &rw.uri {
        let prefix = matches.iter().find_map(|m| match &m.uri {
            Some(StrMatch::Prefix(pre)) if p.starts_with(pre.as_str()) => Some(pre.len()),
            _ => None,
        });
        match prefix {
            Some(n) => format!("{new}{}", &p[n..]),
            None => new.clone(),
        }
    } else {
        p.to_owned()
    };
    if let Some(q) = q {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests;
