//! Bodies too large to hold: streamed through, piece by piece, with
//! back-pressure (a piece is read only once the one before is written).
//!
//! As Envoy, the proxy keeps a request body in memory up to its buffer
//! limit (`--buffer-limit`), so that a retry can resend it; a larger body
//! is forwarded as it arrives ([`ClientBody`]) and the request is not
//! retried (`Exchange::abandon_retries`, Envoy's retry buffer overflow).
//! A response body up to the limit is read whole before the answer goes
//! out (so a retried attempt leaves its connection reusable); a larger one
//! streams to the client from the upstream connection, which goes back to
//! its pool when the body is over ([`UpstreamBody`]).

use std::collections::VecDeque;
use std::io;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::chan::Feed;
use crate::h1::{self, BodyDecoder, Piece};
use crate::pool::{Conn, Stream};
use crate::proxy::{Shared, spawn_connects};

/// The most read from a socket at once while streaming.
const READ: usize = 64 << 10;

/// Envoy's `stream_idle_timeout` default: a body that stops arriving for
/// this long ends the request (as a closed connection).
pub(crate) const BODY_IDLE: Duration = Duration::from_secs(300);

/// The rest of a client's request body, read as it is forwarded.
pub(crate) struct ClientBody<'a> {
    /// Read already (the part that was buffered, or what came with the
    /// head), sent first.
    prefix: Option<Bytes>,
    /// The whole body's `Content-Length`, when the client sent one.
    length: Option<u64>,
    source: ClientSource<'a>,
    done: bool,
    /// The most the whole body may be (`--max-body-bytes`), and how much
    /// came so far.
    max: Option<u64>,
    seen: u64,
    /// Why reading it failed, once it did.
    failure: Option<h1::Error>,
}

enum ClientSource<'a> {
    /// An HTTP/1.1 client: its socket, the bytes read and not yet
    /// decoded, the body's framing.
    H1 {
        stream: &'a mut TcpStream,
        buf: BytesMut,
        decoder: BodyDecoder,
        eof: bool,
    },
    /// An HTTP/2 client's stream.
    H2(hyper::body::Incoming),
}

impl std::fmt::Debug for ClientBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody")
            .field("length", &self.length)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> ClientBody<'a> {
    /// An HTTP/1.1 client's body: `prefix` decoded already, the rest in
    /// `buf` and on `stream` as `decoder` reads it.
    pub(crate) fn h1(
        prefix: Bytes,
        stream: &'a mut TcpStream,
        buf: BytesMut,
        decoder: BodyDecoder,
    ) -> Self {
        let length = match decoder.framing() {
            h1::Framing::Length(n) => Some(n),
            _ => None,
        };
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            length,
            source: ClientSource::H1 {
                stream,
                buf,
                decoder,
                eof: false,
            },
            done: false,
            max: None,
            seen: 0,
            failure: None,
        }
    }

    /// The same, refusing a body over `max` bytes in all (too large).
    pub(crate) fn with_max(mut self, max: Option<u64>) -> Self {
        self.max = max;
        self.seen = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        self
    }

    /// Why reading the body failed, if it did.
    pub(crate) fn failure(&self) -> Option<h1::Error> {
        self.failure
    }

    /// An HTTP/2 client's body: `prefix` read already, the rest on
    /// `incoming`; `length` its `content-length`, if it sent one.
    pub(crate) fn h2(prefix: Bytes, incoming: hyper::body::Incoming, length: Option<u64>) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            length,
            source: ClientSource::H2(incoming),
            done: false,
            max: None,
            seen: 0,
            failure: None,
        }
    }

    /// The whole body's length, if known before it is read.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    /// The whole body has been read.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// The next piece of the body; `None` once it is over. An error: the
    /// client went away, stalled for [`BODY_IDLE`], or sent a malformed
    /// body.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, h1::Error> {
        if let Some(p) = self.prefix.take() {
            return Ok(Some(p));
        }
        if self.done {
            return Ok(None);
        }
        if let Some(e) = self.failure {
            return Err(e);
        }
        let r = self.read().await;
        match &r {
            Ok(Some(b)) => {
                self.seen += b.len() as u64;
                if self.max.is_some_and(|m| self.seen > m) {
                    self.failure = Some(h1::Error::TooLarge);
                    return Err(h1::Error::TooLarge);
                }
            }
            Ok(None) => self.done = true,
            Err(e) => self.failure = Some(*e),
        }
        r
    }

    async fn read(&mut self) -> Result<Option<Bytes>, h1::Error> {
        let idle = Some(BODY_IDLE);
        match &mut self.source {
            ClientSource::H1 {
                stream,
                buf,
                decoder,
                eof,
            } => next_h1(stream, buf, decoder, eof, idle).await,
            ClientSource::H2(incoming) => next_h2(incoming, idle).await,
        }
    }

    /// The bytes read past the body (an HTTP/1.1 client's next request).
    pub(crate) fn leftover(self) -> BytesMut {
        match self.source {
            ClientSource::H1 { buf, .. } => buf,
            ClientSource::H2(_) => BytesMut::new(),
        }
    }
}

/// The rest of an upstream's response body, streamed to the client. It
/// holds the upstream connection (or HTTP/2 stream), which goes back to
/// its pool when the body is over, or closes if it ends early (dropped).
pub(crate) struct UpstreamBody {
    /// Read already, sent first.
    prefix: VecDeque<Bytes>,
    /// The whole body's length (`Content-Length`), when the upstream said.
    length: Option<u64>,
    /// The route's timeout still runs: past it, the body is cut.
    deadline: Option<tokio::time::Instant>,
    source: UpstreamSource,
    /// Where the connection goes back.
    sh: Arc<Shared>,
    li: usize,
    pool: usize,
    done: bool,
}

enum UpstreamSource {
    H1 {
        conn: Option<Conn>,
        decoder: BodyDecoder,
        eof: bool,
        /// The upstream lets the connection carry another request.
        keep_alive: bool,
    },
    H2 {
        stream: Option<Stream>,
        incoming: hyper::body::Incoming,
    },
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("length", &self.length)
            .field("pool", &self.pool)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Where a streamed response's connection goes back: the proxy, its
/// listener, the pool.
pub(crate) struct Home {
    pub(crate) sh: Arc<Shared>,
    pub(crate) li: usize,
    pub(crate) pool: usize,
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl UpstreamBody {
    /// The rest of an HTTP/1.1 response on `conn`, `prefix` read already.
    pub(crate) fn h1(
        home: Home,
        prefix: VecDeque<Bytes>,
        conn: Conn,
        decoder: BodyDecoder,
        keep_alive: bool,
    ) -> Self {
        let length = match decoder.framing() {
            h1::Framing::Length(n) => Some(n),
            _ => None,
        };
        Self {
            prefix,
            length,
            deadline: home.deadline,
            source: UpstreamSource::H1 {
                conn: Some(conn),
                decoder,
                eof: false,
                keep_alive,
            },
            sh: home.sh,
            li: home.li,
            pool: home.pool,
            done: false,
        }
    }

    /// The rest of an HTTP/2 response on `stream`, `prefix` read already.
    pub(crate) fn h2(
        home: Home,
        prefix: VecDeque<Bytes>,
        stream: Stream,
        incoming: hyper::body::Incoming,
        length: Option<u64>,
    ) -> Self {
        Self {
            prefix,
            length,
            deadline: home.deadline,
            source: UpstreamSource::H2 {
                stream: Some(stream),
                incoming,
            },
            sh: home.sh,
            li: home.li,
            pool: home.pool,
            done: false,
        }
    }

    /// The whole body's length, if the upstream said it.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    /// The next piece; `None` once the body is over (the connection then
    /// goes back to its pool). An error: the upstream closed, reset or
    /// sent a malformed body, or the route's timeout passed.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, h1::Error> {
        if let Some(p) = self.prefix.pop_front() {
            return Ok(Some(p));
        }
        if self.done {
            return Ok(None);
        }
        let deadline = self.deadline;
        let piece = within(deadline, async {
            match &mut self.source {
                UpstreamSource::H1 {
                    conn, decoder, eof, ..
                } => {
                    let Some(conn) = conn.as_mut() else {
                        return Err(h1::Error::Closed);
                    };
                    next_h1(&mut conn.stream, &mut conn.rbuf, decoder, eof, None).await
                }
                UpstreamSource::H2 { incoming, .. } => next_h2(incoming, None).await,
            }
        })
        .await;
        match piece {
            Ok(None) => {
                self.done = true;
                self.give_back();
                Ok(None)
            }
            Ok(Some(b)) => Ok(Some(b)),
            Err(e) => {
                self.give_back();
                Err(e)
            }
        }
    }

    /// Gives the connection (or stream) back to its pool: kept if the body
    /// ended as the upstream framed it and the upstream allows, else
    /// closed.
    fn give_back(&mut self) {
        let done = self.done;
        let (conn, stream) = match &mut self.source {
            UpstreamSource::H1 {
                conn, keep_alive, ..
            } => {
                let c = conn.take().map(|mut c| {
                    if !(done && *keep_alive && c.rbuf.is_empty()) {
                        c.finished = true;
                    }
                    c
                });
                (c, None)
            }
            UpstreamSource::H2 { stream, .. } => (None, stream.take()),
        };
        if conn.is_none() && stream.is_none() {
            return;
        }
        let (sh, li, pool) = (self.sh.clone(), self.li, self.pool);
        let release = move |sh: &Arc<Shared>| {
            let mut held = sh.proxy(li);
            let now = sh.now();
            let mut p = held.local();
            if let Some(c) = conn {
                let keep = !c.finished;
                p.release(pool, c, keep, now);
            }
            if let Some(s) = &stream {
                p.release_stream(pool, s, true, now);
            }
            drop(held);
            spawn_connects(sh, li);
        };
        if crate::proxy::holding() {
            // Dropped inside a locked section: give it back just after.
            tokio::task::spawn_local(async move { release(&sh) });
        } else {
            release(&sh);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// The next piece of an HTTP/1.1 body: from `buf`, reading `stream` into
/// it as needed (each read given up after `idle`, as a closed
/// connection); `None` once the body is over.
async fn next_h1(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut BodyDecoder,
    eof: &mut bool,
    idle: Option<Duration>,
) -> Result<Option<Bytes>, h1::Error> {
    loop {
        match decoder.next(buf, *eof)? {
            Piece::Data(b) => return Ok(Some(b)),
            Piece::Done => return Ok(None),
            Piece::More => {
                if buf.capacity() - buf.len() < READ / 4 {
                    buf.reserve(READ);
                }
                let read = async { stream.read_buf(buf).await.map_err(|_| h1::Error::Closed) };
                let n = match idle {
                    Some(t) => tokio::time::timeout(t, read)
                        .await
                        .map_err(|_| h1::Error::Closed)??,
                    None => read.await?,
                };
                *eof = n == 0;
            }
        }
    }
}

/// The next data of an HTTP/2 stream's body (trailers and empty frames
/// skipped; each wait given up after `idle`); `None` once it is over.
async fn next_h2(
    incoming: &mut hyper::body::Incoming,
    idle: Option<Duration>,
) -> Result<Option<Bytes>, h1::Error> {
    loop {
        let frame = match idle {
            Some(t) => tokio::time::timeout(t, incoming.frame())
                .await
                .map_err(|_| h1::Error::Closed)?,
            None => incoming.frame().await,
        };
        match frame {
            None => return Ok(None),
            Some(Err(_)) => return Err(h1::Error::Closed),
            Some(Ok(f)) => {
                if let Ok(b) = f.into_data()
                    && !b.is_empty()
                {
                    return Ok(Some(b));
                }
            }
        }
    }
}

/// `fut`'s output, or a closed body if `deadline` passes first.
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    fut: impl std::future::Future<Output = Result<T, h1::Error>>,
) -> Result<T, h1::Error> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut)
            .await
            .unwrap_or(Err(h1::Error::Closed)),
        None => fut.await,
    }
}

/// Feeds a streamed response body into an HTTP/2 client's stream, on a
/// task of this worker; the client's flow control holds it back.
pub(crate) fn feed_upstream(mut body: UpstreamBody, feed: Feed) {
    tokio::task::spawn_local(async move {
        loop {
            match body.next().await {
                Ok(Some(b)) => {
                    if feed.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    let _ = feed
                        .send(Err(io::Error::other("upstream body ended early")))
                        .await;
                    return;
                }
            }
        }
    });
}

/// Why sending a streamed request body stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The client's body failed (gone, stalled, malformed, too large).
    Client,
    /// The upstream connection failed.
    Upstream,
}

/// Writes `head` to an HTTP/1.1 upstream, then the client's body as it
/// reads it, each piece as a chunk when `chunked`, then the last chunk.
pub(crate) async fn send_h1<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: &[u8],
    body: &mut ClientBody<'_>,
    chunked: bool,
) -> Result<(), SendError> {
    let up = |_| SendError::Upstream;
    io.write_all(head).await.map_err(up)?;
    let mut size = Vec::with_capacity(20);
    loop {
        match body.next().await {
            Ok(Some(piece)) => {
                if chunked {
                    size.clear();
                    let _ = write!(size, "{:x}\r\n", piece.len());
                    io.write_all(&size).await.map_err(up)?;
                }
                io.write_all(&piece).await.map_err(up)?;
                if chunked {
                    io.write_all(b"\r\n").await.map_err(up)?;
                }
            }
            Ok(None) => {
                if chunked {
                    io.write_all(b"0\r\n\r\n").await.map_err(up)?;
                }
                return Ok(());
            }
            Err(_) => return Err(SendError::Client),
        }
    }
}

/// Feeds a client's body into an HTTP/2 upstream stream's channel as it
/// reads it. `Err`: the client's body failed (the stream is reset).
pub(crate) async fn feed_client(body: &mut ClientBody<'_>, feed: Feed) -> Result<(), ()> {
    loop {
        match body.next().await {
            Ok(Some(b)) => {
                if feed.send(Ok(b)).await.is_err() {
                    // The stream is over (the upstream answered or reset).
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(_) => {
                let _ = feed.send(Err(io::Error::other("client body failed"))).await;
                return Err(());
            }
        }
    }
}
