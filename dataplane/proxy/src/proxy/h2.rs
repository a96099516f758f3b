//! A worker's HTTP/2 upstream pools: streams on shared connections, up to
//! `maxConcurrentStreams` at once and `maxRequestsPerConnection` over a
//! connection's life; a connection opened only when the others (open or
//! connecting) have no stream left for the queue, as Envoy's HTTP/2 pool.

use mesh_engine::{Admit, Exchange, Time, Upstream};

use super::{Acquire, Local};
use crate::pool::{Grant, H2Conn, H2Limits, H2Send, Stream};

impl Local<'_> {
    /// `maxConcurrentStreams`, `maxRequestsPerConnection` and the idle
    /// timeout of an upstream's cluster.
    pub(super) fn h2_limits(&self, up: Upstream) -> H2Limits {
        let d = mesh_engine::config::ConnectionPool::default();
        let c = self.engine.connection_pool(up).unwrap_or(d);
        H2Limits {
            max_streams: c.max_concurrent_streams.max(1),
            per_connection: c.max_requests_per_connection,
            idle_timeout: c.idle_timeout,
        }
    }

    /// Admission of an attempt to `up` in HTTP/2 pool `pool`: `ready` when
    /// a connection has a free stream. A queued request opens a connection
    /// (if the breaker allows) only when the connections being set up will
    /// not carry the whole queue.
    pub(super) fn acquire_h2(
        &mut self,
        pool: usize,
        ex: &mut Exchange,
        up: Upstream,
        now: Time,
    ) -> Acquire {
        let l = self.h2_limits(up);
        self.close_spent_h2(pool, l, now);
        let p = &self.pools[pool];
        let ready = p.h2conns.iter().any(|c| l.has_capacity(c));
        let empty = p.is_empty();
        match ex.admit(self.engine, ready, empty, now) {
            Admit::Send { try_deadline } => match self.take_stream(pool, l) {
                Some(s) => Acquire::Stream(s, try_deadline),
                // Not reachable: `ready` said a connection has room.
                None => Acquire::Stale,
            },
            Admit::Queue { open_connection } => {
                let (id, rx) = self.enqueue(pool, up);
                let p = &self.pools[pool];
                let coming = u64::from(p.connecting) * u64::from(l.streams_per_connection());
                if open_connection && p.waiters.len() as u64 > coming {
                    self.open(pool, up, now);
                }
                Acquire::Wait(id, rx)
            }
            Admit::Answer(a) => Acquire::Answer(a),
            Admit::Stale => Acquire::Stale,
        }
    }

    /// Starts a stream on the oldest connection with room.
    pub(super) fn take_stream(&mut self, pool: usize, l: H2Limits) -> Option<Stream> {
        let c = self.pools[pool]
            .h2conns
            .iter_mut()
            .find(|c| l.has_capacity(c))?;
        c.active += 1;
        c.served += 1;
        Some(Stream {
            send: c.send.clone(),
            conn: c.id,
        })
    }

    /// Closes the HTTP/2 connections without streams that will carry no
    /// more (closed by the upstream, or at `maxRequestsPerConnection`) or
    /// have been idle for the idle timeout.
    pub(super) fn close_spent_h2(&mut self, pool: usize, l: H2Limits, now: Time) {
        let mut i = 0;
        while i < self.pools[pool].h2conns.len() {
            let c = &self.pools[pool].h2conns[i];
            if c.active == 0
                && (c.spent(l.per_connection)
                    || now.saturating_since(c.idle_since) >= l.idle_timeout)
            {
                let c = self.pools[pool].h2conns.remove(i);
                self.engine.connection_closed(c.up, now);
            } else {
                i += 1;
            }
        }
    }

    /// A stream is over (`used`: it was sent; otherwise it is as if never
    /// granted). A connection that will carry no more closes with its last
    /// stream.
    pub(crate) fn release_stream(&mut self, pool: usize, stream: &Stream, used: bool, now: Time) {
        let p = &mut self.pools[pool];
        if let Some(i) = p.h2conns.iter().position(|c| c.id == stream.conn) {
            let c = &mut p.h2conns[i];
            c.active = c.active.saturating_sub(1);
            if !used {
                c.served = c.served.saturating_sub(1);
            }
            if c.active == 0 {
                c.idle_since = now;
                let up = c.up;
                let l = self.h2_limits(up);
                if self.pools[pool].h2conns[i].spent(l.per_connection) {
                    self.pools[pool].h2conns.remove(i);
                    self.engine.connection_closed(up, now);
                }
            }
        }
        self.pump(pool, now);
    }

    /// Gives streams to waiting requests in order; opens a connection if
    /// requests wait and nothing open or connecting will serve them.
    pub(super) fn pump_h2(&mut self, pool: usize, now: Time) {
        while let Some(up) = self.pools[pool].waiters.front().map(|w| w.up) {
            let l = self.h2_limits(up);
            self.close_spent_h2(pool, l, now);
            let p = &self.pools[pool];
            if !p.h2conns.iter().any(|c| l.has_capacity(c)) {
                let live = p.h2conns.iter().any(|c| !c.spent(l.per_connection));
                if p.connecting == 0 && !live {
                    let empty = p.is_empty();
                    if self.engine.may_open_connection(up, empty, now) {
                        self.open(pool, up, now);
                    }
                }
                break;
            }
            let Some(w) = self.pools[pool].waiters.pop_front() else {
                break;
            };
            let Some(s) = self.take_stream(pool, l) else {
                break;
            };
            if let Err(Grant::Stream(s)) = w.tx.send(Grant::Stream(s)) {
                // The request left without taking it off the queue.
                self.engine.cancel_pending(w.up, now);
                self.untake_stream(pool, &s);
            }
        }
    }

    /// Gives back a stream that was never used.
    pub(super) fn untake_stream(&mut self, pool: usize, s: &Stream) {
        let p = &mut self.pools[pool];
        if let Some(c) = p.h2conns.iter_mut().find(|c| c.id == s.conn) {
            c.active = c.active.saturating_sub(1);
            c.served = c.served.saturating_sub(1);
        }
    }

    /// An HTTP/2 connection finished its handshake (or failed to connect:
    /// the requests it was to carry, beyond what the other connections
    /// being set up will, fail with `ConnectFailure`).
    pub(crate) fn connected_h2(
        &mut self,
        pool: usize,
        up: Upstream,
        send: Option<H2Send>,
        now: Time,
    ) {
        let l = self.h2_limits(up);
        let p = &mut self.pools[pool];
        p.connecting = p.connecting.saturating_sub(1);
        match send {
            Some(send) => {
                p.next_conn += 1;
                let id = p.next_conn;
                p.h2conns.push(H2Conn {
                    send,
                    id,
                    active: 0,
                    served: 0,
                    idle_since: now,
                    up,
                });
                // The first waiter gets a stream on it even if the upstream
                // closed it meanwhile (its request then fails as `Reset`),
                // as an HTTP/1.1 connection is handed out unchecked: a pool
                // never reconnects in a loop for a request.
                if let Some(w) = self.pools[pool].waiters.pop_front() {
                    // The connection just pushed is the last one.
                    let p = &mut self.pools[pool];
                    let g = p.h2conns.last_mut().map(|c| {
                        c.active += 1;
                        c.served += 1;
                        Grant::Stream(Stream {
                            send: c.send.clone(),
                            conn: c.id,
                        })
                    });
                    match g {
                        Some(g) => {
                            if let Err(Grant::Stream(s)) = w.tx.send(g) {
                                self.engine.cancel_pending(w.up, now);
                                self.untake_stream(pool, &s);
                            }
                        }
                        None => self.pools[pool].waiters.push_front(w),
                    }
                }
            }
            None => {
                p.stats.cx_connect_fail += 1;
                self.engine.connection_closed(up, now);
                let per = l.streams_per_connection() as usize;
                let p = &self.pools[pool];
                let coming = p.connecting as usize * per;
                let failed = p.waiters.len().saturating_sub(coming).min(per);
                for _ in 0..failed {
                    if !self.fail_first_waiter(pool, now) {
                        break;
                    }
                }
            }
        }
        self.pump(pool, now);
    }
}
