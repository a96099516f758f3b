//! One downstream request: its engine [`Exchange`] decides each step (the
//! route, a fault delay, admission, retries and back-offs, the route
//! timeout, the answer and its flags) and this does the I/O: pooled
//! connections, HTTP/2 streams, timers. The simulator drives the same
//! `Exchange`. A request whose client goes away is cleaned up by
//! [`Flight`]'s `Drop` (`Exchange::cancel`, as Envoy resets the upstream
//! stream).
//!
//! Requests come as slices of the listener's read buffer ([`Req`]) and
//! answers go back with their headers in wire form ([`Answer`]), whichever
//! protocol the client speaks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mesh_engine::config::{Action, HeaderOps, Match, StrMatch};
use mesh_engine::exchange::Phase;
use mesh_engine::{Admit, Exchange, Forward, Outcome, ResponseFlag, ResponseFlags, RouteId, Step};
use tokio::sync::oneshot;

use crate::body::{ClientBody, Home, UpstreamBody};
use crate::chan::H2Body;
use crate::h1;
use crate::hdr;
use crate::log::Entry;
use crate::msg::{Answer, Req, local_body};
use crate::pool::{Conn, Grant, Stream};
use crate::proxy::{Acquire, Local, Shared, spawn_connects};
use upstream::{Reply, Reset, Rest, exchange, exchange_h2};

/// Handles one request end to end and accounts for it (counters, the
/// recording, the access log); never fails (errors are answers).
pub(crate) async fn handle(sh: &Arc<Shared>, li: usize, req: &Req<'_, '_>) -> Answer {
    let started = sh.now();
    sh.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(sh.clone());
    let answer = route(sh, li, req).await;
    let took = sh.recent().saturating_since(started);
    account(sh, li, req, &answer, answer.flags, took);
    answer
}

/// Counts, records and logs an answer that took `took`, with `flags`.
pub(crate) fn account(
    sh: &Shared,
    li: usize,
    req: &Req<'_, '_>,
    answer: &Answer,
    flags: ResponseFlags,
    took: Duration,
) {
    sh.proxy(li)
        .local()
        .stats
        .count_response(answer.status, flags);
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
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn route(sh: &Arc<Shared>, li: usize, req: &Req<'_, '_>) -> Answer {
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
        // The worker this connection lives on (its balancer).
        worker: u32::try_from(crate::proxy::worker()).unwrap_or(0),
    };
    let mut flight = Flight {
        sh: sh.clone(),
        li,
        ex: Exchange::default(),
        pool: 0,
        waiter: None,
        rx: None,
        conn: None,
        stream: None,
        client_h2: req.conn.h2,
        attempt_started: sh.recent(),
        deadline: None,
    };
    let mut step = {
        let mut held = sh.proxy(li);
        let mut p = held.local();
        let now = sh.recent();
        // The port whose route table applies (`match.port`): a gateway's
        // is the listener's, as a Gateway server's is; a sidecar's is the
        // port of the service called — the authority's, else the
        // service's — not the port this listener happens to use.
        if p.listener.proxy.gateway.is_none() {
            ereq.port = p.engine.destination_port(req.authority).unwrap_or(80);
        }
        let (ex, step) = Exchange::start(p.engine, &ereq, now);
        flight.ex = ex;
        p.drain_events();
        step
    };
    if let Step::Delay { until } = step {
        // A client that goes away during the delay drops this future: the
        // flight's `Drop` lets the engine know, so the route is freed.
        tokio::time::sleep(until.saturating_since(sh.recent())).await;
        let mut held = sh.proxy(li);
        let mut p = held.local();
        let now = sh.now();
        step = flight.ex.handle_delay_over(p.engine, &ereq, now);
        p.drain_events();
    }
    match step {
        Step::Forward(f) => forward(&mut flight, f, req).await,
        Step::Answer(a) => local_answer(sh, li, &a, req),
        Step::Delay { .. } | Step::Backoff { .. } | Step::Stale => {
            Answer::local(500, None, local_body(None))
        }
    }
}

/// The proxy's own answer for an exchange that ended without an upstream
/// response: a route's redirect or direct response, or Envoy's local
/// reply for the flag that explains it; with all the request's flags.
fn local_answer(sh: &Arc<Shared>, li: usize, a: &mesh_engine::Answer, req: &Req<'_, '_>) -> Answer {
    match (a.cause, a.route) {
        (None, Some(route)) => {
            let mut answer = respond(sh, li, route, a.status, req.path, req.authority);
            answer.flags = a.flags;
            answer
        }
        _ => local_reply(a),
    }
}

/// Envoy's local reply for the flag that explains `a`, with its flags.
fn local_reply(a: &mesh_engine::Answer) -> Answer {
    let mut answer = Answer::local(a.status, a.cause, local_body(a.cause));
    answer.flags = a.flags;
    answer
}

/// A redirect or direct response of a route.
fn respond(
    sh: &Arc<Shared>,
    li: usize,
    route: RouteId,
    status: u16,
    path: &str,
    authority: &str,
) -> Answer {
    let mut held = sh.proxy(li);
    let p = held.local();
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

/// A request's exchange and the transport it holds: a place in a pool's
/// queue, a connection or an HTTP/2 stream. Dropping it (the client went
/// away, or the request ended) settles what the engine and the pool are
/// owed.
struct Flight {
    sh: Arc<Shared>,
    li: usize,
    ex: Exchange,
    /// The pool of the latest attempt's host.
    pool: usize,
    /// Queued in the pool with this waiter id, the grant coming on `rx`.
    waiter: Option<u64>,
    rx: Option<oneshot::Receiver<Grant>>,
    conn: Option<Conn>,
    /// The HTTP/2 stream of the attempt in progress (instead of `conn`).
    stream: Option<Stream>,
    /// The client speaks HTTP/2 (which pool a cluster that follows the
    /// client's protocol uses).
    client_h2: bool,
    /// When the attempt in progress started (for the recorder).
    attempt_started: mesh_engine::Time,
    /// When the route's timeout ends, if it has one (a streamed response
    /// body is cut there).
    deadline: Option<tokio::time::Instant>,
}

impl Flight {
    /// Gives back what the attempt in progress holds: its place in the
    /// queue (or the grant already sent for it), or its connection or
    /// stream (`reset`: the attempt was sent and is cut short, so an
    /// HTTP/1.1 connection closes).
    fn give_back(&mut self, p: &mut Local<'_>, now: mesh_engine::Time, reset: bool) {
        if let Some(id) = self.waiter.take()
            && !p.pools[self.pool].remove_waiter(id)
            && let Some(mut rx) = self.rx.take()
        {
            match rx.try_recv() {
                Ok(Grant::Conn(c)) => p.put_back(self.pool, c, now),
                Ok(Grant::Stream(s)) => p.release_stream(self.pool, &s, false, now),
                _ => {}
            }
        }
        self.rx = None;
        if let Some(c) = self.conn.take() {
            p.release(self.pool, c, !reset, now);
        }
        if let Some(s) = self.stream.take() {
            p.release_stream(self.pool, &s, true, now);
        }
    }

    /// Counts and records an attempt that got no status (a timeout).
    fn count_failed_attempt(&self, p: &mut Local<'_>) {
        p.pools[self.pool].stats.rq_class[0] += 1;
        self.sh
            .record_attempt(&p.pools[self.pool].address, 0, self.attempt_started);
    }

    /// The route timeout fired: 504 `UT`; an attempt on a connection is
    /// reset (its connection closes), a queued one leaves the queue.
    fn route_timed_out(&mut self) -> Answer {
        let sh = self.sh.clone();
        let mut held = sh.proxy(self.li);
        let mut p = held.local();
        let now = sh.now();
        let sent = self.ex.phase() == Phase::Sent;
        let step = self.ex.handle_route_timeout(p.engine, now);
        if sent {
            self.count_failed_attempt(&mut p);
        }
        self.give_back(&mut p, now, true);
        p.drain_events();
        drop(held);
        spawn_connects(&sh, self.li);
        match step {
            Step::Answer(a) => local_reply(&a),
            _ => {
                let flag = Some(ResponseFlag::UpstreamRequestTimeout);
                Answer::local(504, flag, local_body(flag))
            }
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let holds = self.conn.is_some() || self.stream.is_some() || self.waiter.is_some();
        if self.ex.phase() == Phase::Done && !holds {
            return;
        }
        if crate::proxy::holding() {
            // Dropped inside a locked section (this thread holds a proxy):
            // settled just after, by a task of this worker.
            let rest = Flight {
                sh: self.sh.clone(),
                li: self.li,
                ex: std::mem::take(&mut self.ex),
                pool: self.pool,
                waiter: self.waiter.take(),
                rx: self.rx.take(),
                conn: self.conn.take(),
                stream: self.stream.take(),
                client_h2: self.client_h2,
                attempt_started: self.attempt_started,
                deadline: self.deadline,
            };
            tokio::task::spawn_local(async move { drop(rest) });
            return;
        }
        let sh = self.sh.clone();
        let mut held = sh.proxy(self.li);
        let mut p = held.local();
        let now = sh.now();
        // Envoy resets the upstream stream; outlier detection is not told
        // (the host did nothing wrong).
        self.ex.cancel(p.engine, now);
        self.give_back(&mut p, now, true);
        p.drain_events();
        drop(held);
        spawn_connects(&sh, self.li);
    }
}

async fn forward(flight: &mut Flight, f: Forward, req: &Req<'_, '_>) -> Answer {
    let sh = flight.sh.clone();
    let li = flight.li;
    let (set_cookie, template) = {
        let mut held = sh.proxy(li);
        let p = held.local();
        let Some(route) = p.engine.route(f.route) else {
            // Not reached: the exchange just started holds its route.
            let flag = Some(ResponseFlag::NoRouteFound);
            return Answer::local(404, flag, local_body(flag));
        };
        let dest_ops = match &route.action {
            Action::Route(ds) => ds
                .get(f.destination as usize)
                .map(|d| d.headers.clone())
                .unwrap_or_default(),
            _ => HeaderOps::default(),
        };
        let template = Template::new(req, route, &dest_ops);
        flight.pool = p.pool_for(f.upstream, req.conn.h2);
        (p.engine.set_cookie_header(&f), template)
    };
    flight.deadline = f.timeout.map(|t| tokio::time::Instant::now() + t);
    let run = attempts_loop(flight, &template);
    let mut answer = match f.timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(a) => a,
            Err(_) => flight.route_timed_out(),
        },
        None => run.await,
    };
    answer.attempts = flight.ex.attempts();
    answer.upstream = Some(sh.proxy(li).local().pools[flight.pool].address.clone());
    if let Some(c) = set_cookie
        && hdr::valid_value(c.as_bytes())
    {
        hdr::push(&mut answer.headers, b"set-cookie", c.as_bytes());
    }
    template.response_ops(&mut answer.headers);
    answer
}

/// The attempts of a forwarded request, with the back-offs between them,
/// as its exchange says, to the answer.
async fn attempts_loop(flight: &mut Flight, template: &Template<'_, '_>) -> Answer {
    let sh = flight.sh.clone();
    let li = flight.li;
    loop {
        let (step, response) = attempt(flight, template).await;
        let step = match step {
            Step::Backoff { until } => {
                sh.proxy(li).local().stats.retries += 1;
                tokio::time::sleep(until.saturating_since(sh.recent())).await;
                let mut held = sh.proxy(li);
                let mut p = held.local();
                let now = sh.now();
                let step = flight.ex.handle_backoff_over(p.engine, now);
                p.drain_events();
                if let Step::Forward(f) = step {
                    flight.pool = p.pool_for(f.upstream, flight.client_h2);
                    continue;
                }
                step
            }
            step => step,
        };
        return match (step, response) {
            (Step::Answer(a), Some(mut r)) if a.from_upstream => {
                r.flags = a.flags;
                r
            }
            (Step::Answer(a), _) => local_reply(&a),
            // The client's streamed body failed.
            (Step::Stale, Some(r)) => r,
            _ => Answer::local(500, None, local_body(None)),
        };
    }
}

/// One attempt: admission, a connection (at once, or after waiting in the
/// pool's queue), the request and the whole response under the per-try
/// timeout; what the exchange says next, with the upstream's response.
async fn attempt(flight: &mut Flight, template: &Template<'_, '_>) -> (Step, Option<Answer>) {
    let sh = flight.sh.clone();
    let li = flight.li;
    // An attempt starts with the event that led to it (the request, or
    // the end of a retry's back-off): no new clock read.
    flight.attempt_started = sh.recent();
    let acq = {
        let mut held = sh.proxy(li);
        let now = sh.recent();
        let mut p = held.local();
        if template.stream.is_some() {
            // The body is too large to keep for a retry: this attempt is
            // the last (Envoy's retry buffer overflow).
            flight.ex.abandon_retries(p.engine, now);
        }
        p.acquire(flight.pool, &mut flight.ex, now)
    };
    spawn_connects(&sh, li);
    let try_deadline = match acq {
        Acquire::Ready(c, t) => {
            flight.conn = Some(c);
            t
        }
        Acquire::Stream(s, t) => {
            flight.stream = Some(s);
            t
        }
        Acquire::Answer(a) => return (Step::Answer(a), None),
        Acquire::Stale => return (Step::Stale, None),
        Acquire::Wait(id, rx) => {
            flight.waiter = Some(id);
            flight.rx = Some(rx);
            let g = match flight.rx.as_mut() {
                Some(rx) => rx.await,
                None => return (Step::Stale, None),
            };
            flight.waiter = None;
            flight.rx = None;
            let mut held = sh.proxy(li);
            let mut p = held.local();
            let now = sh.now();
            let admitted = match g {
                Ok(Grant::Conn(c)) => {
                    flight.conn = Some(c);
                    flight.ex.dequeue(p.engine, now)
                }
                Ok(Grant::Stream(s)) => {
                    flight.stream = Some(s);
                    flight.ex.dequeue(p.engine, now)
                }
                // The pool's connection for it failed (or, not expected,
                // the pool dropped it): a connect failure.
                Ok(Grant::ConnectFailure) | Err(_) => {
                    let step = flight.ex.handle_connect_failure(p.engine, now);
                    let overflowed = matches!(
                        step,
                        Step::Answer(a) if a.cause == Some(ResponseFlag::UpstreamOverflow)
                    );
                    if !overflowed {
                        flight.count_failed_attempt(&mut p);
                    }
                    p.drain_events();
                    return (step, None);
                }
            };
            match admitted {
                Admit::Send { try_deadline } => {
                    p.drain_events();
                    try_deadline
                }
                other => {
                    // Overflowed on `maxRequests`: the connection or stream
                    // goes back unused.
                    if let Some(c) = flight.conn.take() {
                        p.put_back(flight.pool, c, now);
                    }
                    if let Some(s) = flight.stream.take() {
                        p.release_stream(flight.pool, &s, false, now);
                    }
                    p.drain_events();
                    drop(held);
                    spawn_connects(&sh, li);
                    return match other {
                        Admit::Answer(a) => (Step::Answer(a), None),
                        _ => (Step::Stale, None),
                    };
                }
            }
        }
    };
    let n = flight.ex.attempts();
    // Envoy starts the per-try timeout when the pool hands out the
    // connection.
    let per_try = try_deadline.map(|t| t.saturating_since(sh.recent()));
    // A body too large to keep goes up with this attempt as it is read.
    let mut streamed = template.stream.and_then(|cell| cell.borrow_mut().take());
    let result = if let Some(c) = flight.conn.as_mut() {
        let limits = h1::Limits {
            max_head: sh.options.max_header_bytes,
            buffer: sh.options.buffer_limit,
        };
        within(per_try, exchange(c, template, n, limits, streamed.as_mut())).await
    } else if let Some(s) = flight.stream.as_ref() {
        let mut send = s.send.clone();
        let buffer = sh.options.buffer_limit;
        within(
            per_try,
            exchange_h2(&mut send, template, n, buffer, streamed.as_mut()),
        )
        .await
    } else {
        return (Step::Stale, None);
    };
    // Why a streamed body failed, if it did (over `--max-body-bytes`: 413).
    let body_failure = streamed.as_ref().and_then(ClientBody::failure);
    if let (Some(cell), Some(b)) = (template.stream, streamed) {
        *cell.borrow_mut() = Some(b);
    }
    let mut held = sh.proxy(li);
    let mut p = held.local();
    let now = sh.now();
    let (step, reply, keep) = match result {
        Some(Err(Reset::Client)) => {
            // The client's streamed body failed: the request is over and
            // the upstream is not to blame (Envoy resets the stream).
            flight.ex.cancel(p.engine, now);
            flight.give_back(&mut p, now, true);
            p.drain_events();
            drop(held);
            spawn_connects(&sh, li);
            let mut a = if body_failure == Some(h1::Error::TooLarge) {
                Answer::local(413, None, "request body too large")
            } else {
                Answer::local(400, None, "bad request body")
            };
            a.flags = ResponseFlags::of(ResponseFlag::DownstreamProtocolError);
            return (Step::Stale, Some(a));
        }
        Some(result) => {
            let answered = result.is_ok();
            let (step, reply) = report(&sh, &mut p, flight, result, now);
            // A connection is kept if answered and not marked finished by
            // the exchange.
            (step, reply, answered)
        }
        None => {
            // The per-try timeout: the attempt is reset.
            let step = flight.ex.handle_response(p.engine, Outcome::Timeout, now);
            flight.count_failed_attempt(&mut p);
            (step, None, false)
        }
    };
    let response = reply.map(|r| {
        let final_answer = matches!(step, Step::Answer(a) if a.from_upstream);
        streaming(flight, r, final_answer)
    });
    if let Some(c) = flight.conn.take() {
        p.release(flight.pool, c, keep, now);
    }
    if let Some(s) = flight.stream.take() {
        p.release_stream(flight.pool, &s, true, now);
    }
    p.drain_events();
    drop(held);
    spawn_connects(&sh, li);
    (step, response)
}

/// The answer of a reply. When the body streams on and this is the final
/// answer, the attempt's connection (or stream) goes along with it, to go
/// back to its pool at the body's end; when the attempt is retried
/// instead, its connection closes (the rest is never read).
fn streaming(flight: &mut Flight, r: Reply, final_answer: bool) -> Answer {
    let Reply { mut answer, rest } = r;
    let Some(rest) = rest else {
        return answer;
    };
    if !final_answer {
        if let Some(c) = flight.conn.as_mut() {
            c.finished = true;
        }
        return answer;
    }
    let home = || Home {
        sh: flight.sh.clone(),
        li: flight.li,
        pool: flight.pool,
        deadline: flight.deadline,
    };
    match rest {
        Rest::H1(prefix, decoder, keep_alive) => {
            if let Some(c) = flight.conn.take() {
                let body = UpstreamBody::h1(home(), prefix, c, decoder, keep_alive);
                answer.stream = Some(Box::new(body));
            }
        }
        Rest::H2(prefix, incoming, length) => {
            if let Some(s) = flight.stream.take() {
                let body = UpstreamBody::h2(home(), prefix, s, incoming, length);
                answer.stream = Some(Box::new(body));
            }
        }
    }
    answer
}

/// `fut`'s output, or `None` if `limit` passes first.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// Reports an attempt's end to its exchange, the pool's counters and the
/// recording: the upstream's answer, or (`Err`) a reset.
fn report(
    sh: &Shared,
    p: &mut Local<'_>,
    flight: &mut Flight,
    result: Result<Reply, Reset>,
    now: mesh_engine::Time,
) -> (Step, Option<Reply>) {
    let stats = &mut p.pools[flight.pool].stats;
    stats.rq_total += 1;
    let (status, outcome) = match &result {
        Ok(r) => (r.answer.status, Outcome::Status(r.answer.status)),
        Err(r) => (0, Outcome::Reset(r.reason())),
    };
    stats.rq_class[usize::from(status / 100).min(5)] += 1;
    sh.record_attempt(
        &p.pools[flight.pool].address,
        status,
        flight.attempt_started,
    );
    let step = flight.ex.handle_response(p.engine, outcome, now);
    (step, result.ok())
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
struct Template<'a, 'b> {
    /// Request line and headers, without `x-envoy-attempt-count` and the
    /// blank line that ends the head.
    head: Vec<u8>,
    body: &'a [u8],
    /// Or the body, streamed by the (only) attempt.
    stream: Option<&'a std::cell::RefCell<Option<ClientBody<'b>>>>,
    /// The streamed body goes in chunked coding (its length unknown).
    chunked: bool,
    /// A `HEAD` request: the response has no body whatever it says.
    head_request: bool,
    response_ops: Vec<HeaderOps>,
}

impl<'a, 'b> Template<'a, 'b> {
    fn new(req: &Req<'a, 'b>, route: &mesh_engine::config::HttpRoute, dest: &HeaderOps) -> Self {
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
        // A whole body's length goes out as `content-length`, also `0` for
        // the methods that define content (RFC 9110 section 8.6); a
        // streamed one keeps the client's length, or goes chunked.
        let streamed_length = req
            .stream
            .map(|cell| cell.borrow().as_ref().and_then(ClientBody::length));
        let chunked = matches!(streamed_length, Some(None));
        match streamed_length {
            Some(Some(n)) => {
                head.extend_from_slice(b"content-length: ");
                crate::hdr::push_decimal(&mut head, usize::try_from(n).unwrap_or(usize::MAX));
                head.extend_from_slice(b"\r\n");
            }
            Some(None) => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            None if !req.body.is_empty() || matches!(req.method, "POST" | "PUT" | "PATCH") => {
                head.extend_from_slice(b"content-length: ");
                crate::hdr::push_decimal(&mut head, req.body.len());
                head.extend_from_slice(b"\r\n");
            }
            None => {}
        }
        Self {
            head,
            body: req.body,
            stream: req.stream,
            chunked,
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

    /// Attempt `attempt` as an HTTP/2 request with `body`: the same head
    /// (its `Host` becomes the `:authority`; no `transfer-encoding`).
    fn h2_request(&self, attempt: u32, body: H2Body) -> Result<hyper::Request<H2Body>, ()> {
        let end = self.head.windows(2).position(|w| w == b"\r\n").ok_or(())?;
        let line = std::str::from_utf8(&self.head[..end]).map_err(|_| ())?;
        let mut words = line.split(' ');
        let (method, target) = (words.next().ok_or(())?, words.next().ok_or(())?);
        let mut b = hyper::Request::builder().method(method);
        let mut authority: &[u8] = b"";
        for (k, v) in hdr::lines(&self.head[end + 2..]) {
            if k == b"host" {
                authority = v;
            } else if k != b"transfer-encoding" {
                b = b.header(k, v);
            }
        }
        let authority = std::str::from_utf8(authority).map_err(|_| ())?;
        b.uri(format!("http://{authority}{target}"))
            .header("x-envoy-attempt-count", attempt)
            .body(body)
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

mod upstream;

#[cfg(test)]
mod tests;
