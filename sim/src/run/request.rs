//! A request's life in a sidecar: the engine's [`Exchange`] decides each
//! step (route, delay, admission, retries, timeouts, the answer and its
//! flags), and this drives it against the modelled world: the slot, the
//! connection pool, the pod, the timers.

use super::*;

impl<'m> Run<'m> {
    pub(super) fn alloc(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        self.reqs.push(Req {
            authority: "",
            path: "",
            conn_served: 0,
            live: false,
            generation: 0,
            proxy: 0,
            origin: Origin::Load {
                connection: false,
                user: None,
                worker: 0,
            },
            edge: 0,
            has_headers: false,
            depth: 0,
            start: Time::ZERO,
            ex: Exchange::default(),
            attempt: 0,
            pod: None,
            worker: 0,
            owner: 0,
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
        let mut user_index = None;
        if l.users > 0 {
            let user = self.rng_users.random_range(0..l.users);
            user_index = Some(user);
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
        // The exchange starts in the slot it will live in (a local answer
        // gives the slot back at once).
        let slot = self.alloc();
        let p = &mut self.proxies[proxy];
        let port = p.edge_ports[edge as usize];
        let table = &self.model.calls.headers;
        let ex = &mut self.reqs[slot as usize].ex;
        let step = with_app_request(table, port, call.to, &call.headers, call.worker, |req| {
            ex.begin(&mut p.engine, req, now)
        });
        match step {
            Step::Forward(f) => {
                self.occupy(now, slot, call);
                self.forwarded(now, slot, f.timeout);
                Some(slot)
            }
            Step::Delay { until } => {
                // The fault filter holds the request; the router runs after.
                self.occupy(now, slot, call);
                let attempt = self.reqs[slot as usize].attempt;
                self.queue
                    .push(until, Class::Traffic, Ev::Delayed { slot, attempt });
                Some(slot)
            }
            Step::Answer(a) => {
                self.free.push(slot);
                self.local_answer(now, (proxy, origin, edge), a.status, a.flags);
                None
            }
            Step::Backoff { .. } | Step::Stale => {
                self.free.push(slot);
                None
            }
        }
    }

    /// Fills `slot` for a request that the sidecar holds or forwards (its
    /// exchange has begun there).
    #[inline(always)]
    pub(super) fn occupy(&mut self, now: Time, slot: u32, call: &Call<'m>) {
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
        r.attempt = r.attempt.wrapping_add(1);
        r.authority = authority;
        r.path = path;
        r.worker = worker;
        r.owner = self.proxies[proxy].pool_base + u32::from(worker);
    }

    /// The router forwarded `slot`: arm its route timeout and send its
    /// first attempt.
    #[inline(always)]
    pub(super) fn forwarded(&mut self, now: Time, slot: u32, timeout: Option<Duration>) {
        let r = &self.reqs[slot as usize];
        if let Some(t) = timeout {
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
        let headers = self.headers_of(slot);
        let r = &mut self.reqs[slot as usize];
        let p = &mut self.proxies[r.proxy as usize];
        let port = p.edge_ports[r.edge as usize];
        let table = &self.model.calls.headers;
        let (to, worker, ex) = ((r.authority, r.path), r.worker, &mut r.ex);
        let step = with_app_request(table, port, to, &headers, worker, |req| {
            ex.handle_delay_over(&mut p.engine, req, now)
        });
        match step {
            Step::Forward(f) => self.forwarded(now, slot, f.timeout),
            Step::Answer(a) => self.end(now, slot, a),
            Step::Delay { .. } | Step::Backoff { .. } | Step::Stale => {}
        }
    }

    /// A sidecar answered a request itself, after `latency`.
    /// `(proxy, origin, edge)`: the sidecar, who waits, the edge counted.
    pub(super) fn local_answer(
        &mut self,
        now: Time,
        (proxy, origin, edge): (usize, Origin, u32),
        status: u16,
        flags: ResponseFlags,
    ) {
        // A sidecar's local answer takes no virtual time.
        match origin {
            Origin::Load {
                connection, worker, ..
            } => {
                self.metrics.edge_answer(edge, status, flags, 0);
                self.metrics.finish_request(status, flags);
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
                    flags,
                },
            ),
        }
    }

    /// Sends the current attempt of `slot` to its upstream's pod.
    pub(super) fn send(&mut self, now: Time, slot: u32) {
        let r = &self.reqs[slot as usize];
        let (p, attempt) = (r.proxy as usize, r.attempt);
        let Some(up) = r.ex.upstream() else { return };
        let pod = self.proxies[p]
            .pods_of
            .get(up.cluster.0 as usize)
            .and_then(|c| c.get(up.endpoint.0 as usize))
            .copied()
            .flatten();
        self.reqs[slot as usize].pod = pod;
        let Some(pod) = pod else {
            let engine = &mut self.proxies[p].engine;
            // An endpoint outside the topology (e.g. a ServiceEntry address
            // with no modelled pod): no connection can be made.
            match self.reqs[slot as usize].ex.admit(engine, true, false, now) {
                Admit::Send { try_deadline } => self.attach(now, slot, 0, try_deadline),
                Admit::Answer(a) => {
                    self.drain(p);
                    self.end(now, slot, a);
                }
                Admit::Queue { .. } | Admit::Stale => {}
            }
            return;
        };
        let owner = self.owner_of(slot);
        let key = self.pools.pool(owner, pod.raw());
        let ready = self.pools.ready(key);
        let empty = self.pools.empty(key);
        let engine = &mut self.proxies[p].engine;
        match self.reqs[slot as usize].ex.admit(engine, ready, empty, now) {
            Admit::Answer(a) => {
                self.drain(p);
                self.end(now, slot, a);
            }
            Admit::Send { try_deadline } => {
                let served = self.pools.take_idle(key).unwrap_or(0);
                self.attach(now, slot, served, try_deadline);
            }
            Admit::Queue { open_connection } => {
                self.pools.wait(key, slot, attempt);
                // As Envoy's pool: a new connection unless the ones being
                // set up will carry every waiting request.
                if open_connection && self.pools.waiting(key) > self.pools.connecting(key) {
                    self.open_connection(now, (p, owner), pod.raw(), up);
                }
            }
            Admit::Stale => {}
        }
    }

    /// Opens a connection in the pool of proxy `p`'s worker `owner` to
    /// `pod`: ready at once (then the pool's queue is served), or after the
    /// pod's `connectTime`. It counts against `maxConnections` from now.
    pub(super) fn open_connection(
        &mut self,
        now: Time,
        (p, owner): (usize, usize),
        pod: u32,
        up: Upstream,
    ) {
        self.proxies[p].engine.connection_opened(up, now);
        let connect = self.model.pods[pod as usize].connect;
        if connect.is_zero() {
            self.connected(now, (p, owner), pod);
            return;
        }
        let key = self.pools.pool(owner, pod);
        self.pools
            .set_connecting(key, self.pools.connecting(key) + 1);
        if let Some(pod) = PodId::new(pod as usize) {
            self.queue.push(
                now + connect,
                Class::Traffic,
                Ev::Connected {
                    proxy: u32::try_from(p).unwrap_or(0),
                    owner: u32::try_from(owner).unwrap_or(0),
                    pod,
                },
            );
        }
    }

    /// A connection of `owner`'s pool to `pod` is ready: it serves the
    /// pool's queue.
    pub(super) fn connected(&mut self, now: Time, (p, owner): (usize, usize), pod: u32) {
        if let Some(key) = self.pools.existing(owner, pod) {
            let connecting = self.pools.connecting(key);
            if connecting > 0 {
                self.pools.set_connecting(key, connecting - 1);
            }
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
            let ex = &self.reqs[slot as usize].ex;
            if !self.current(slot, attempt) || ex.phase() != Phase::Queued {
                // Gone (timed out, cancelled): its breaker slot was freed then.
                self.pools.pop_waiting(key);
                continue;
            }
            let Some(up) = ex.upstream() else {
                return;
            };
            if !self.pools.ready(key) {
                let empty = self.pools.empty(key);
                if self.pools.busy(key) == 0
                    && self.pools.connecting(key) == 0
                    && self.proxies[p].engine.may_open_connection(up, empty, now)
                {
                    self.open_connection(now, (p, owner), pod, up);
                }
                return;
            }
            self.pools.pop_waiting(key);
            let engine = &mut self.proxies[p].engine;
            match self.reqs[slot as usize].ex.dequeue(engine, now) {
                Admit::Send { try_deadline } => {
                    let served = self.pools.take_idle(key).unwrap_or(0);
                    self.attach(now, slot, served, try_deadline);
                }
                Admit::Answer(a) => {
                    self.drain(p);
                    self.end(now, slot, a);
                }
                Admit::Queue { .. } | Admit::Stale => {}
            }
        }
    }

    /// The attempt of `slot` runs on a connection that has served `served`
    /// requests: the per-try timeout starts, and the pod gets it.
    #[inline(always)]
    pub(super) fn attach(&mut self, now: Time, slot: u32, served: u32, try_deadline: Option<Time>) {
        let r = &mut self.reqs[slot as usize];
        r.conn_served = served;
        let (pod, attempt) = (r.pod, r.attempt);
        let owner = self.owner_of(slot);
        if let Some(pod) = pod
            && let Some(key) = self.pools.existing(owner, pod.raw())
        {
            self.pools.set_busy(key, self.pools.busy(key) + 1);
        }
        if let Some(t) = try_deadline {
            self.queue
                .push(t, Class::Traffic, Ev::TryTimeout { slot, attempt });
        }
        let Some(pod) = pod else {
            self.queue
                .push(now, Class::Traffic, Ev::Refused { slot, attempt });
            return;
        };
        let pod = pod.index();
        self.metrics.attempt(pod);
        let pod_state = &mut self.pods[pod];
        if pod_state.mode == Mode::Crashed {
            self.queue
                .push(now, Class::Traffic, Ev::Refused { slot, attempt });
            return;
        }
        let spec = &self.model.pods[pod];
        if pod_state.in_flight < spec.concurrency {
            self.serve(now, pod, slot, attempt);
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
                    pod: None,
                    status: 503,
                },
            );
        }
    }

    /// The connection of `slot`'s attempt is free again: kept (answered, under
    /// `maxRequestsPerConnection`) or closed (reset, refused, or used up).
    #[inline(always)]
    pub(super) fn release_connection(&mut self, now: Time, slot: u32, keep: bool) {
        let r = &self.reqs[slot as usize];
        let (p, pod, conn_served) = (r.proxy as usize, r.pod, r.conn_served);
        let Some(up) = r.ex.upstream() else {
            return;
        };
        let Some(pod) = pod.map(PodId::raw) else {
            return;
        };
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

    #[inline(always)]
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
                pod: PodId::new(pod),
                status,
            },
        );
    }

    #[inline(always)]
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
        let (p, pod, start) = (r.proxy as usize, r.pod, r.start);
        let sent = r.ex.phase() == Phase::Sent;
        let step =
            r.ex.handle_response(&mut self.proxies[p].engine, outcome, now);
        if sent {
            // Answered: the connection goes back to the pool; a reset,
            // refusal or timeout closes it.
            self.release_connection(now, slot, matches!(outcome, Outcome::Status(_)));
            if let Some(pod) = pod {
                let s = match outcome {
                    Outcome::Status(s) => s,
                    _ => 503,
                };
                self.metrics
                    .attempt_result(pod.index(), s, since(start, now));
            }
            self.drain(p);
        }
        match step {
            Step::Backoff { until } => {
                // The retry's host is picked when it fires, after the back-off.
                let r = &mut self.reqs[slot as usize];
                r.attempt = r.attempt.wrapping_add(1);
                let attempt = r.attempt;
                self.queue
                    .push(until, Class::Traffic, Ev::Retry { slot, attempt });
            }
            Step::Answer(a) => self.end(now, slot, a),
            Step::Forward(_) | Step::Delay { .. } | Step::Stale => {}
        }
    }

    pub(super) fn retry(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        let p = r.proxy as usize;
        match r.ex.handle_backoff_over(&mut self.proxies[p].engine, now) {
            Step::Forward(_) => self.send(now, slot),
            Step::Answer(a) => self.end(now, slot, a),
            Step::Delay { .. } | Step::Backoff { .. } | Step::Stale => {}
        }
    }

    pub(super) fn route_timeout(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        let p = r.proxy as usize;
        let sent = r.ex.phase() == Phase::Sent;
        let step = r.ex.handle_route_timeout(&mut self.proxies[p].engine, now);
        if sent {
            // The attempt is reset: its connection closes.
            self.drain(p);
            self.release_connection(now, slot, false);
        }
        if let Step::Answer(a) = step {
            self.end(now, slot, a);
        }
    }

    /// Records the final answer of a request and frees its slot.
    #[inline(always)]
    pub(super) fn end(&mut self, now: Time, slot: u32, a: Answer) {
        let req = &self.reqs[slot as usize];
        let r = Ended {
            proxy: req.proxy,
            origin: req.origin,
            edge: req.edge,
            start: req.start,
            pod: req.pod,
        };
        self.release(slot);
        self.metrics
            .edge_answer(r.edge, a.status, a.flags, since(r.start, now));
        match r.origin {
            Origin::Load {
                connection,
                user,
                worker,
            } => {
                self.metrics.finish_request(a.status, a.flags);
                if let (Some(user), Some(pod)) = (user, r.pod) {
                    self.metrics.user_served(user as usize, pod.index());
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
            } => self.call_done(now, job, generation, call, a.status >= 500),
        }
    }

    /// Frees a request's slot; its pending events become stale.
    #[inline(always)]
    pub(super) fn release(&mut self, slot: u32) {
        let req = &mut self.reqs[slot as usize];
        req.live = false;
        req.attempt = req.attempt.wrapping_add(1);
        self.free.push(slot);
    }

    /// The application behind a request gave up on it (its own timeout, or
    /// a sibling call failed): the sidecar resets the upstream request,
    /// without telling outlier detection. The pod serving it, if any, does
    /// not notice and finishes its work.
    pub(super) fn cancel(&mut self, now: Time, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        if !r.live {
            return;
        }
        let p = r.proxy as usize;
        let sent = r.ex.phase() == Phase::Sent;
        r.ex.cancel(&mut self.proxies[p].engine, now);
        self.drain(p);
        if sent {
            // The sidecar resets the stream: an HTTP/1.1 connection closes.
            self.release_connection(now, slot, false);
        }
        self.release(slot);
    }
}

/// Calls `f` with the request an application sends on an edge: `GET`,
/// plain HTTP, on `port` (the edge's, see `edge_ports`), with `headers`.
fn with_app_request<'t, R>(
    table: &'t crate::callgraph::HeaderTable,
    port: u16,
    (authority, path): (&str, &str),
    headers: &HeaderSet,
    worker: u16,
    f: impl FnOnce(&Request<'_>) -> R,
) -> R {
    let mut pairs: [(&'t str, &'t str); MAX_HEADERS];
    let n;
    let headers: &[(&str, &str)] = if headers.is_empty() {
        &[]
    } else {
        pairs = [("", ""); MAX_HEADERS];
        n = headers.write(table, &mut pairs);
        &pairs[..n]
    };
    f(&app_request(port, authority, path, headers, worker))
}
