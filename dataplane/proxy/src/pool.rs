//! Upstream connection pools: one per (cluster, endpoint, protocol), as
//! Envoy keeps them, enforcing the cluster's `connectionPool` through the
//! engine's breaker (`admit` / `dequeue` / `may_open_connection`).
//!
//! An HTTP/2 pool ([`HostPool::h2`]) multiplexes: each connection carries
//! up to `maxConcurrentStreams` streams at once and
//! `maxRequestsPerConnection` over its life (then it drains and closes),
//! and a connection is opened only when the open and connecting ones have
//! no stream capacity left for the queue, as Envoy's HTTP/2 pool does
//! (reference §3.2 step 5).
//!
//! An HTTP/1.1 connection serves one request at a time. A request that finds no idle
//! connection waits in the pool's FIFO queue (counted by the engine as a
//! pending request); a connection that becomes free, or a new one that
//! finishes connecting, goes to the first waiter still there. A connect
//! failure fails the first waiter with `ConnectFailure`, as the simulator's
//! refused connection does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mesh_engine::{Time, Upstream};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// An open upstream connection: the socket and its buffers, reused from
/// request to request ([`crate::h1`] speaks HTTP/1.1 over it). It has no
/// task of its own: the request using it does its I/O. Dropping it closes
/// the socket.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Bytes read and not yet parsed (empty between exchanges).
    pub(crate) rbuf: BytesMut,
    /// The request being written.
    pub(crate) wbuf: Vec<u8>,
    /// The connection may not carry another request (closed, failed, or
    /// the upstream said so).
    pub(crate) finished: bool,
    /// Requests it has served.
    pub(crate) served: u32,
    /// When it last became idle.
    pub(crate) idle_since: Time,
    /// The upstream it was opened for (its cluster's breaker counts it).
    pub(crate) up: Upstream,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("served", &self.served)
            .field("idle_since", &self.idle_since)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// A connection just opened.
    pub(crate) fn new(stream: TcpStream, up: Upstream) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            finished: false,
            served: 0,
            idle_since: Time::ZERO,
            up,
        }
    }

    /// Checks the idle connection without waiting: false if the upstream
    /// closed it meanwhile, or sent something unasked (either way it may
    /// not carry a request).
    pub(crate) fn alive(&mut self) -> bool {
        if self.finished {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            _ => {
                self.finished = true;
                false
            }
        }
    }
}

/// The sending half of an upstream HTTP/2 connection (hyper's); its
/// connection task runs apart and ends when the connection closes.
pub(crate) type H2Send = hyper::client::conn::http2::SendRequest<crate::chan::H2Body>;

/// An open upstream HTTP/2 connection of an HTTP/2 pool.
pub(crate) struct H2Conn {
    pub(crate) send: H2Send,
    /// Its number in the pool, for streams to find it again.
    pub(crate) id: u64,
    /// Streams in progress.
    pub(crate) active: u32,
    /// Streams started over its life (`maxRequestsPerConnection`).
    pub(crate) served: u32,
    /// When its last stream ended (or it connected).
    pub(crate) idle_since: Time,
    /// The upstream it was opened for (its cluster's breaker counts it).
    pub(crate) up: Upstream,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("id", &self.id)
            .field("active", &self.active)
            .field("served", &self.served)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl H2Conn {
    /// May start another stream: open, under `max_streams` at once and
    /// under `limit` over its life (0: no limit).
    pub(crate) fn has_capacity(&self, max_streams: u32, limit: u32) -> bool {
        self.active < max_streams && (limit == 0 || self.served < limit) && !self.send.is_closed()
    }

    /// Will never start another stream.
    pub(crate) fn spent(&self, limit: u32) -> bool {
        (limit != 0 && self.served >= limit) || self.send.is_closed()
    }
}

/// A stream granted on an HTTP/2 connection: the request sends on `send`
/// and gives the stream back with [`crate::proxy::Proxy::release_stream`].
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) send: H2Send,
    pub(crate) conn: u64,
}

/// What a waiting request is handed; its exchange then admits it
/// (`Exchange::dequeue`, which may still overflow on `maxRequests`).
#[derive(Debug)]
pub(crate) enum Grant {
    /// A connection, marked busy for it.
    Conn(Conn),
    /// A stream on an HTTP/2 connection, counted for it.
    Stream(Stream),
    /// The connection attempt for it failed
    /// (`Exchange::handle_connect_failure`).
    ConnectFailure,
}

/// A request waiting for a connection.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) up: Upstream,
    pub(crate) tx: oneshot::Sender<Grant>,
}

/// Counters of one pool, for `/stats` and `/clusters`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    /// Attempts sent.
    pub(crate) rq_total: u64,
    /// Attempts by status class (index 1–5), index 0: no status (reset,
    /// connect failure, timeout).
    pub(crate) rq_class: [u64; 6],
    /// Connections opened.
    pub(crate) cx_total: u64,
    /// Connection attempts that failed.
    pub(crate) cx_connect_fail: u64,
}

/// The connections of one proxy to one endpoint for one cluster.
#[derive(Debug)]
pub(crate) struct HostPool {
    pub(crate) cluster: Arc<str>,
    pub(crate) address: Arc<str>,
    /// `None` when the endpoint is a `host:port` (a DNS ServiceEntry),
    /// resolved at each connection attempt.
    pub(crate) socket: Option<SocketAddr>,
    /// Speaks HTTP/2 (cleartext, prior knowledge): `h2conns` instead of
    /// `idle`/`busy`. Decided when the pool is indexed.
    pub(crate) h2: bool,
    pub(crate) idle: Vec<Conn>,
    pub(crate) busy: u32,
    pub(crate) connecting: u32,
    pub(crate) waiters: VecDeque<Waiter>,
    pub(crate) stats: PoolStats,
    /// Open HTTP/2 connections, oldest first.
    pub(crate) h2conns: Vec<H2Conn>,
    pub(crate) next_conn: u64,
}

impl HostPool {
    pub(crate) fn new(cluster: Arc<str>, address: Arc<str>, h2: bool) -> Self {
        Self {
            socket: address.parse().ok(),
            cluster,
            address,
            h2,
            idle: Vec::new(),
            busy: 0,
            connecting: 0,
            waiters: VecDeque::new(),
            stats: PoolStats::default(),
            h2conns: Vec::new(),
            next_conn: 0,
        }
    }

    /// No connection at all: idle, busy, connecting or HTTP/2.
    pub(crate) fn is_empty(&self) -> bool {
        self.idle.is_empty() && self.busy == 0 && self.connecting == 0 && self.h2conns.is_empty()
    }

    /// Removes a waiter; false if it was already served.
    pub(crate) fn remove_waiter(&mut self, id: u64) -> bool {
        match self.waiters.iter().position(|w| w.id == id) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Whether an idle connection may still be used.
pub(crate) fn usable(conn: &mut Conn, now: Time, idle_timeout: std::time::Duration) -> bool {
    now.saturating_since(conn.idle_since) < idle_timeout && conn.alive()
}

/// The HTTP/2 limits of a cluster's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct H2Limits {
    /// Streams at once (`maxConcurrentStreams`, at least 1).
    pub(crate) max_streams: u32,
    /// Streams over a connection's life (`maxRequestsPerConnection`, 0: no
    /// limit).
    pub(crate) per_connection: u32,
    pub(crate) idle_timeout: Duration,
}

impl H2Limits {
    pub(crate) fn has_capacity(self, c: &H2Conn) -> bool {
        c.has_capacity(self.max_streams, self.per_connection)
    }

    /// Streams a new connection will carry at once.
    pub(crate) fn streams_per_connection(self) -> u32 {
        match self.per_connection {
            0 => self.max_streams,
            n => n.min(self.max_streams),
        }
    }
}
