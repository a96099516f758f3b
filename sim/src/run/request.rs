//! A request's life in a sidecar: the decision, the slot, the connection
//! pool, the pod, the attempt's outcome, retries, timeouts and the final
//! answer (the protocol that issue 14 makes one engine state machine).

use super::*;

impl<'m> Run<'m> {
    pub(super) fn alloc(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        self.reqs.push(Req {
            authority: "",
            path: "",
            delay: None,
            pending_conn: false,
            conn_served: 0,
            live: false,
            generation: 0,
            proxy: 0,
            origin: Origin::Load {
                connection: false,
                user: u32::MAX,
                worker: 0,
            },
            edge: 0,
            has_headers: false,
            depth: 0,
            start: Time::ZERO,
            state: None,
            attempt: 0,
            pod: 0,
            upstream: None,
            outstanding: false,
            delayed: false,
            fault_delayed: false,
            per_try: None,
            worker: 0,
        });
        self.headers.push(HeaderSet::EMPTY);
        u32::try_from(self.reqs.len() - 1).unwrap_or(u32::MAX)
    }

    /// The headers of the request in `slot`.
    pub(super) fn headers_of(&self, slot: u32) -> HeaderSet {
        if self.reqs[slot as usize].has_headers {
            self.headers[slot as usize]
        } else {
            HeaderSet::EMPTY
        }
    }

    /// A request of the load from `proxy`, on its `worker`.
    pub(super) fn start_request(&mut self, now: Time, proxy: usize, connection: bool, worker: u16) {
        if self.sent >= self.model.load.requests {
            return;
        }
        self.sent += 1;
        let m = self.model;
        let l = &m.load;
        let c = &m.calls;
        let mut headers = c.load_headers;
        let mut user_index = u32::MAX;
        if l.users > 0 {
            let user = self.rng_users.random_range(0..l.users);
            user_index = user;
            if let Some(h) = c.user_header {
                headers.set(h, user);
            }
            if let Some(h) = c.user_cookie {
                headers.set(h, c.users + user);
            }
        }
        self.request(
            now,
            &Call {
                proxy,
                worker,
                origin: Origin::Load {
                    connection,
                    user: user_index,
                    worker,
                },
                edge: 0,
                to: (&l.host, &l.path),
                headers,
                depth: 0,
            },
        );
    }

    /// A new request from the application behind `call.proxy`: the sidecar
    /// routes it. Returns its slot if it was forwarded; a local answer goes
    /// to its origin (now, or after an injected delay).
    pub(super) fn request(&mut self, now: Time, call: &Call<'m>) -> Option<u32> {
        let Call {
            proxy,
            origin,
            edge,
            ..
        } = *call;
        let decision = self.decide(
            now,
            (proxy, call.worker),
            edge,
            call.to,
            &call.headers,
            None,
        );
        match decision {
            Decision::Forward(f) => {
                let slot = self.occupy(now, call);
                self.forwarded(now, slot, f);
                Some(slot)
            }
            Decision::Delay(d) => {
                // The fault filter holds the request; the router runs after.
                let slot = self.occupy(now, call);
                let r = &mut self.reqs[slot as usize];
                r.delay = Some(d);
                r.delayed = true;
                r.fault_delayed = true;
                let attempt = r.attempt;
                self.queue
                    .push(now + d.delay, Class::Traffic, Ev::Delayed { slot, attempt });
                Some(slot)
            }
            Decision::Reject(r) => {
                self.local_answer(now, (proxy, origin, edge), r.status, Some(r.flag()));
                None
            }
            Decision::Respond(r) => {
                self.local_answer(now, (proxy, origin, edge), r.status, None);
                None
            }
        }
    }

    /// The sidecar's decision for a request of the application on `edge`
    /// (`delayed`: the router runs after an injected delay).
    pub(super) fn decide(
        &mut self,
        now: Time,
        (proxy, worker): (usize, u16),
        edge: u32,
        (authority, path): (&str, &str),
        headers: &HeaderSet,
        delayed: Option<mesh_engine::Delay>,
    ) -> Decision {
        let table = &self.model.calls.headers;
        let p = &mut self.proxies[proxy];
        let port = p.edge_ports[edge as usize];
        let mut pairs: [(&str, &str); MAX_HEADERS];
        let n;
        let headers: &[(&str, &str)] = if headers.is_empty() {
            &[]
        } else {
            pairs = [("", ""); MAX_HEADERS];
            n = headers.write(table, &mut pairs);
            &pairs[..n]
        };
        let req = app_request(port, authority, path, headers, worker);
        match delayed {
            None => p.engine.handle_request(&req, now),
            Some(d) => p.engine.handle_delayed(&req, d, now),
        }
    }

    /// Takes a slot for a request that the sidecar holds or forwards.
    pub(super) fn occupy(&mut self, now: Time, call: &Call<'m>) -> u32 {
        let Call {
            proxy,
            worker,
            origin,
            edge,
            to: (authority, path),
            depth,
            ..
        } = *call;
        let headers = &call.headers;
        let slot = self.alloc();
        let r = &mut self.reqs[slot as usize];
        r.live = true;
        r.generation = r.generation.wrapping_add(1);
        r.proxy = u32::try_from(proxy).unwrap_or(0);
        r.origin = origin;
        r.edge = edge;
        r.has_headers = !headers.is_empty();
        if r.has_headers {
            self.headers[slot as usize] = *headers;
        }
        r.depth = depth;
        r.start = now;
        r.state = None;
        r.attempt = r.attempt.wrapping_add(1);
        r.upstream = None;
        r.outstanding = false;
        r.delayed = false;
        r.fault_delayed = false;
        r.per_try = None;
        r.delay = None;
        r.pending_conn = false;
        r.authority = authority;
        r.path = path;
        r.worker = worker;
        slot
    }

    /// The router forwarded `slot`: start its router state, its route
    /// timeout, and send its first attempt.
    pub(super) fn forwarded(&mut self, now: Time, slot: u32, f: mesh_engine::Forward) {
        let proxy = self.reqs[slot as usize].proxy as usize;
        let engine = &mut self.proxies[proxy].engine;
        let state = engine.start_request(&f, now);
        let per_try = engine
            .route(state.route)
            .and_then(|r| r.retries.as_ref())
            .and_then(|rp| rp.per_try_timeout);
        let r = &mut self.reqs[slot as usize];
        r.per_try = per_try;
        r.state = Some(state);
        r.upstream = Some(f.upstream);
        r.delayed = false;
        r.delay = None;
        if let Some(t) = f.timeout {
            let generation = r.generation;
            self.queue.push(
                now + t,
                Class::Traffic,
                Ev::RouteTimeout { slot, generation },
            );
        }
        self.send(now, slot);
    }

    /// An injected delay is over: the router runs now (abort, weighted
    /// cluster, host), as in Envoy.
    pub(super) fn after_delay(&mut self, now: Time, slot: u32) {
        let r = &self.reqs[slot as usize];
        let Some(d) = r.delay else { return };
        let (proxy, edge, to) = ((r.proxy as usize, r.worker), r.edge, (r.authority, r.path));
        let headers = self.headers_of(slot);
        match self.decide(now, proxy, edge, to, &headers, Some(d)) {
            Decision::Forward(f) => self.forwarded(now, slot, f),
            Decision::Reject(rj) => self.end(now, slot, rj.status, Some(rj.flag().as_str())),
            Decision::Respond(rs) => self.end(now, slot, rs.status, None),
            Decision::Delay(_) => self.end(now, slot, 500, None),
        }
    }

    /// A sidecar answered a request itself, after `latency`.
    /// `(proxy, origin, edge)`: the sidecar, who waits, the edge counted.
    pub(super) fn local_answer(
        &mut self,
        now: Time,
        (proxy, origin, edge): (usize, Origin, u32),
        status: u16,
        flag: Option<ResponseFlag>,
    ) {
        // A sidecar's local answer takes no virtual time.
        match origin {
            Origin::Load {
                connection, worker, ..
            } => {
                let flag = flag.map(ResponseFlag::as_str);
                self.metrics.edge_answer(edge, status, flag, 0);
                self.metrics.finish_request(now, 0, status, flag);
                if connection {
                    self.queue.push(
                        next_send(now, now, self.model.load.turnaround),
                        Class::Traffic,
                        Ev::Connection {
                            proxy: u32::try_from(proxy).unwrap_or(0),
                            worker: u32::from(worker),
                        },
                    );
                }
            }
            Origin::Call {
                job,
                generation,
                call,
            } => self.queue.push(
                now,
                Class::Traffic,
                Ev::CallAnswer {
                    job,
                    generation,
                    call,
                    status,
                    flag,
                },
            ),
        }
    }

    /// Sends the current attempt of `slot` to its upstream's pod.
    pub(super) fn send(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        r.delayed = false;
        let (p, attempt) = (r.proxy as usize, r.attempt);
        let Some(up) = r.upstream else { return };
        let pod = self.proxies[p]
            .pods_of
            .get(up.cluster.0 as usize)
            .and_then(|c| c.get(up.endpoint.0 as usize))
            .copied()
            .unwrap_or(u32::MAX);
        self.reqs[slot as usize].pod = pod;
        if pod == u32::MAX {
            // An endpoint outside the topology (e.g. a ServiceEntry address
            // with no modelled pod): no connection can be made.
            if self.proxies[p].engine.admit(up, true, false, now) == Admission::Overflow {
                self.drain(p);
                self.end(
                    now,
                    slot,
                    503,
                    Some(ResponseFlag::UpstreamOverflow.as_str()),
                );
                return;
            }
            self.attach(now, slot, 0);
            return;
        }
        let owner = self.owner_of(slot);
        let key = self.pools.pool(owner, pod);
        let ready = self.pools.ready(key);
        let empty = self.pools.empty(key);
        match self.proxies[p].engine.admit(up, ready, empty, now) {
            Admission::Overflow => {
                self.drain(p);
                self.end(
                    now,
                    slot,
                    503,
                    Some(ResponseFlag::UpstreamOverflow.as_str()),
                );
            }
            Admission::Attach => {
                let served = self.pools.take_idle(key).unwrap_or(0);
                self.attach(now, slot, served);
            }
            Admission::Queue { open_connection } => {
                self.reqs[slot as usize].pending_conn = true;
                self.pools.wait(key, slot, attempt);
                if open_connection {
                    self.open_connection(now, (p, owner), pod, up);
                }
            }
        }
    }

    /// Opens a connection (ready at once) in the pool of proxy `p`'s worker
    /// `owner` to `pod`, and serves the pool's queue.
    pub(super) fn open_connection(
        &mut self,
        now: Time,
        (p, owner): (usize, usize),
        pod: u32,
        up: Upstream,
    ) {
        self.proxies[p].engine.connection_opened(up, now);
        if let Some(key) = self.pools.existing(owner, pod) {
            self.pools.put_idle(key, 0);
        }
        self.pump(now, (p, owner), pod);
    }

    /// Gives idle connections to waiting requests, in order; opens a
    /// connection if requests wait and none is idle or busy enough to come back.
    pub(super) fn pump(&mut self, now: Time, (p, owner): (usize, usize), pod: u32) {
        let key = self.pools.pool(owner, pod);
        loop {
            let Some((slot, attempt)) = self.pools.first_waiting(key) else {
                return;
            };
            if !self.current(slot, attempt) || !self.reqs[slot as usize].pending_conn {
                // Gone (timed out, cancelled): its breaker slot was freed then.
                self.pools.pop_waiting(key);
                continue;
            }
            let Some(up) = self.reqs[slot as usize].upstream else {
                return;
            };
            if !self.pools.ready(key) {
                let empty = self.pools.empty(key);
                if self.pools.busy(key) == 0
                    && self.proxies[p].engine.may_open_connection(up, empty, now)
                {
                    self.open_connection(now, (p, owner), pod, up);
                }
                return;
            }
            self.pools.pop_waiting(key);
            self.reqs[slot as usize].pending_conn = false;
            match self.proxies[p].engine.dequeue(up, now) {
                Admission::Attach => {
                    let served = self.pools.take_idle(key).unwrap_or(0);
                    self.attach(now, slot, served);
                }
                _ => {
                    self.drain(p);
                    self.end(
                        now,
                        slot,
                        503,
                        Some(ResponseFlag::UpstreamOverflow.as_str()),
                    );
                }
            }
        }
    }

    /// The attempt of `slot` runs on a connection that has served `served`
    /// requests: the per-try timeout starts, and the pod gets it.
    pub(super) fn attach(&mut self, now: Time, slot: u32, served: u32) {
        let r = &mut self.reqs[slot as usize];
        r.outstanding = true;
        r.conn_served = served;
        let (pod, attempt, per_try) = (r.pod, r.attempt, r.per_try);
        let owner = self.owner_of(slot);
        if pod != u32::MAX
            && let Some(key) = self.pools.existing(owner, pod)
        {
            self.pools.set_busy(key, self.pools.busy(key) + 1);
        }
        if let Some(per_try) = per_try {
            self.queue.push(
                now + per_try,
                Class::Traffic,
                Ev::TryTimeout { slot, attempt },
            );
        }
        if pod == u32::MAX {
            self.queue
                .push(now, Class::Traffic, Ev::Refused { slot, attempt });
            return;
        }
        self.metrics.attempt(pod as usize);
        let pod_state = &mut self.pods[pod as usize];
        if pod_state.mode == Mode::Crashed {
            self.queue
                .push(now, Class::Traffic, Ev::Refused { slot, attempt });
            return;
        }
        let spec = &self.model.pods[pod as usize];
        if pod_state.in_flight < spec.concurrency {
            self.serve(now, pod as usize, slot, attempt);
        } else if (pod_state.waiting.len() as u64) < u64::from(spec.queue) {
            pod_state.waiting.push_back((slot, attempt));
        } else {
            // The pod's own queue is full: it answers 503 at once.
            self.queue.push(
                now,
                Class::Traffic,
                Ev::Served {
                    slot,
                    attempt,
                    pod: u32::MAX,
                    status: 503,
                },
            );
        }
    }

    /// The connection of `slot`'s attempt is free again: kept (answered, under
    /// `maxRequestsPerConnection`) or closed (reset, refused, or used up).
    pub(super) fn release_connection(&mut self, now: Time, slot: u32, keep: bool) {
        let r = &self.reqs[slot as usize];
        let (p, pod, conn_served) = (r.proxy as usize, r.pod, r.conn_served);
        let Some(up) = r.upstream else {
            return;
        };
        if pod == u32::MAX {
            return;
        }
        let limit = self.proxies[p]
            .engine
            .connection_pool(up)
            .map_or(0, |c| c.max_requests_per_connection);
        let served = conn_served + 1;
        let keep = keep && (limit == 0 || served < limit);
        let owner = self.owner_of(slot);
        if let Some(key) = self.pools.existing(owner, pod) {
            self.pools
                .set_busy(key, self.pools.busy(key).saturating_sub(1));
            if keep {
                self.pools.put_idle(key, served);
            }
        }
        if !keep {
            self.proxies[p].engine.connection_closed(up, now);
        }
        self.pump(now, (p, owner), pod);
    }

    pub(super) fn serve(&mut self, now: Time, pod: usize, slot: u32, attempt: u32) {
        let spec = &self.model.pods[pod];
        let state = &mut self.pods[pod];
        state.in_flight += 1;
        let mut ns = spec.latency.sample_ns(&mut state.rng);
        let status = match state.mode {
            Mode::Fail { status, ppm } if hit(&mut state.rng, ppm) => status,
            Mode::Slow { factor } => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                {
                    ns = (ns as f64 * factor) as u64;
                }
                if hit(&mut state.rng, spec.error_ppm) {
                    spec.error_status
                } else {
                    200
                }
            }
            _ => {
                if hit(&mut state.rng, spec.error_ppm) {
                    spec.error_status
                } else {
                    200
                }
            }
        };
        if let Some(workload) = spec.workload {
            self.start_job(now, pod, (slot, attempt), workload, (ns, status));
            return;
        }
        self.queue.push(
            Time::from_nanos(now.as_nanos().saturating_add(ns)),
            Class::Traffic,
            Ev::Served {
                slot,
                attempt,
                pod: u32::try_from(pod).unwrap_or(u32::MAX),
                status,
            },
        );
    }

    pub(super) fn pod_done(&mut self, now: Time, pod: usize) {
        let Some(state) = self.pods.get_mut(pod) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        // The next waiting request that is still wanted takes the slot.
        while let Some((slot, attempt)) = self.pods[pod].waiting.pop_front() {
            if self.current(slot, attempt) {
                self.serve(now, pod, slot, attempt);
                break;
            }
        }
    }

    pub(super) fn attempt_done(&mut self, now: Time, slot: u32, outcome: Outcome) {
        let r = &mut self.reqs[slot as usize];
        let (p, pod, start, attempt) = (r.proxy as usize, r.pod, r.start, r.attempt);
        let Some(up) = r.upstream else { return };
        if r.outstanding {
            r.outstanding = false;
            self.proxies[p].engine.handle_response(up, outcome, now);
            // Answered: the connection goes back to the pool; a reset,
            // refusal or timeout closes it.
            self.release_connection(now, slot, matches!(outcome, Outcome::Status(_)));
            if pod != u32::MAX {
                let s = match outcome {
                    Outcome::Status(s) => s,
                    _ => 503,
                };
                self.metrics
                    .attempt_result(pod as usize, s, since(start, now));
            }
            self.drain(p);
        }
        let Some(state) = self.reqs[slot as usize].state.as_mut() else {
            return;
        };
        let decision = self.proxies[p].engine.retry_decision(state, outcome, now);
        let status = match outcome {
            Outcome::Status(s) => s,
            Outcome::Timeout => 504,
            Outcome::ConnectFailure | Outcome::Reset(_) => 503,
        };
        match decision {
            RetryDecision::Retry { backoff } => {
                // The retry's host is picked when it fires, after the back-off.
                let attempt = attempt.wrapping_add(1);
                self.reqs[slot as usize].attempt = attempt;
                self.queue
                    .push(now + backoff, Class::Traffic, Ev::Retry { slot, attempt });
            }
            RetryDecision::Done { flag } => {
                // The attempt's own flag, then the retry policy's, as
                // Envoy's router sets both (`UT,URX` when per-try timeouts
                // use up the retries).
                let own = match outcome {
                    Outcome::Timeout => Some("UT"),
                    Outcome::ConnectFailure => Some("UF"),
                    // (The simulated pods never reset; an HTTP/1.1 upstream that went
                    // away would be a connection termination, as in the proxy.)
                    Outcome::Reset(_) => Some("UC"),
                    Outcome::Status(_) => None,
                };
                let flag = both_flags(own, flag.map(ResponseFlag::as_str));
                self.end(now, slot, status, flag);
            }
        }
    }

    pub(super) fn retry(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        let p = r.proxy as usize;
        let Some(state) = r.state.as_mut() else {
            return;
        };
        let d = self.proxies[p].engine.retry(state, now);
        match d {
            Decision::Forward(f) => {
                self.reqs[slot as usize].upstream = Some(f.upstream);
                self.send(now, slot);
            }
            _ => self.end(now, slot, 503, Some("UH")),
        }
    }

    pub(super) fn route_timeout(&mut self, now: Time, slot: u32) {
        let r = self.reqs[slot as usize].flags();
        let p = r.proxy as usize;
        if r.outstanding
            && let Some(up) = r.upstream
        {
            self.reqs[slot as usize].outstanding = false;
            self.proxies[p]
                .engine
                .handle_response(up, Outcome::Timeout, now);
            self.drain(p);
            self.release_connection(now, slot, false);
        } else if r.pending_conn
            && let Some(up) = r.upstream
        {
            self.reqs[slot as usize].pending_conn = false;
            self.proxies[p].engine.cancel_pending(up, now);
        }
        self.end(now, slot, 504, Some("UT"));
    }

    /// Records the final answer of a request and frees its slot.
    pub(super) fn end(&mut self, now: Time, slot: u32, status: u16, flag: Option<&'static str>) {
        let req = &mut self.reqs[slot as usize];
        let p = req.proxy as usize;
        if let Some(state) = req.state.as_mut() {
            self.proxies[p].engine.finish_request(state, now);
        }
        let r = Ended {
            proxy: req.proxy,
            origin: req.origin,
            edge: req.edge,
            start: req.start,
            pod: req.pod,
            fault_delayed: req.fault_delayed,
        };
        self.release(slot);
        self.metrics
            .edge_answer(r.edge, status, flag, since(r.start, now));
        match r.origin {
            Origin::Load {
                connection,
                user,
                worker,
            } => {
                self.metrics
                    .finish_request(now, since(r.start, now), status, flag);
                if r.fault_delayed {
                    // Envoy logs `DI` beside any other flag (`UT,DI`).
                    self.metrics.flag_also("DI");
                }
                if user != u32::MAX && r.pod != u32::MAX {
                    self.metrics.user_served(user as usize, r.pod as usize);
                }
                if connection {
                    self.queue.push(
                        next_send(r.start, now, self.model.load.turnaround),
                        Class::Traffic,
                        Ev::Connection {
                            proxy: r.proxy,
                            worker: u32::from(worker),
                        },
                    );
                }
            }
            Origin::Call {
                job,
                generation,
                call,
            } => self.call_done(now, job, generation, call, status >= 500),
        }
    }

    /// Frees a request's slot; its pending events become stale.
    pub(super) fn release(&mut self, slot: u32) {
        let req = &mut self.reqs[slot as usize];
        req.live = false;
        req.state = None;
        req.attempt = req.attempt.wrapping_add(1);
        self.free.push(slot);
    }

    /// The application behind a request gave up on it (its own timeout, or
    /// a sibling call failed): the sidecar resets the upstream request,
    /// without telling outlier detection. The pod serving it, if any, does
    /// not notice and finishes its work.
    pub(super) fn cancel(&mut self, now: Time, slot: u32) {
        let r = self.reqs[slot as usize].flags();
        if !r.live {
            return;
        }
        let p = r.proxy as usize;
        if let Some(up) = r.upstream {
            if r.pending_conn {
                self.reqs[slot as usize].pending_conn = false;
                self.proxies[p].engine.cancel_pending(up, now);
            } else if r.outstanding || r.delayed {
                self.proxies[p].engine.cancel(up, r.outstanding, now);
            }
        }
        if let Some(state) = self.reqs[slot as usize].state.as_mut() {
            self.proxies[p].engine.finish_request(state, now);
        }
        if r.upstream.is_none()
            && let Some(d) = r.delay
        {
            // Given up during its injected delay: the route is let go.
            self.proxies[p].engine.abandon_delay(d, now);
        }
        self.drain(p);
        if r.outstanding {
            // The sidecar resets the stream: an HTTP/1.1 connection closes.
            self.reqs[slot as usize].outstanding = false;
            self.release_connection(now, slot, false);
        }
        self.release(slot);
    }
}

/// An attempt's own flag and the retry decision's in Envoy's access-log
/// order (`mesh_engine::ENVOY_FLAG_ORDER`), as one static string (`UT,URX`,
/// `UT,UF`); one of them alone when the other is absent or the same.
fn both_flags(own: Option<&'static str>, retry: Option<&'static str>) -> Option<&'static str> {
    Some(match (own, retry) {
        (None, None) => return None,
        (Some(f), None) | (None, Some(f)) => f,
        (Some(a), Some(b)) if a == b => a,
        (Some("UT"), Some("URX")) => "UT,URX",
        (Some("UF"), Some("URX")) => "UF,URX",
        (Some("UC"), Some("URX")) => "UC,URX",
        (Some("UT"), Some("UO")) => "UT,UO",
        (Some("UF"), Some("UO")) => "UF,UO",
        (Some("UC"), Some("UO")) => "UC,UO",
        (Some("UF"), Some("UT")) => "UT,UF",
        (Some("UC"), Some("UT")) => "UT,UC",
        (Some(_), Some(b)) => b,
    })
}

#[cfg(test)]
mod flag_tests {
    use super::both_flags;

    #[test]
    fn an_attempt_flag_and_a_retry_flag_are_logged_together_in_envoys_order() {
        assert_eq!(both_flags(Some("UT"), Some("URX")), Some("UT,URX"));
        assert_eq!(both_flags(Some("UF"), Some("UO")), Some("UF,UO"));
        assert_eq!(both_flags(Some("UT"), Some("UT")), Some("UT"));
        assert_eq!(both_flags(Some("UF"), Some("UT")), Some("UT,UF"));
        // Every pair is in Envoy's order.
        for own in ["UT", "UF", "UC"] {
            for retry in ["URX", "UO", "UT"] {
                let both = both_flags(Some(own), Some(retry)).unwrap();
                let ranks: Vec<usize> = both.split(',').map(mesh_engine::envoy_flag_rank).collect();
                assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{both}");
            }
        }
        assert_eq!(both_flags(None, Some("URX")), Some("URX"));
        assert_eq!(both_flags(Some("UT"), None), Some("UT"));
        assert_eq!(both_flags(None, None), None);
    }
}
