//! The listener side: one task per client connection, speaking HTTP/1.1
//! through a small codec over `httparse`, or HTTP/2 (h2c with prior
//! knowledge) through hyper.
//!
//! HTTP/1.1 requests on a connection are served one after another
//! (pipelined ones wait their turn). A request head is parsed in the
//! connection's read buffer, its header names lower-cased in place, and the
//! request handed to [`forward::handle`] as slices of that buffer; the
//! answer's head and a small body go out in one `write`. What a serious
//! HTTP/1.1 server does is here: `Content-Length` and chunked request
//! bodies, `Expect: 100-continue`, HTTP/1.0 keep-alive, `Connection:
//! close`, size limits (431, 413), malformed requests (400, then close),
//! a header-read timeout (408, then close), a `Date` on every response,
//! and a client that goes away mid-request cancelling it (as Envoy resets
//! the upstream stream).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::{BODY_IDLE, ClientBody};
use crate::forward;
use crate::h1::{self, BodyDecoder, Framing, Piece};
use crate::hdr::{self, push_decimal};
use crate::msg::{Answer, ConnInfo, Headers, Req};
use crate::proxy::{Phase, Shared};

/// The flags of an answer to a request that was not valid HTTP or over
/// the limits: Envoy's `DPE`.
const DPE: mesh_engine::ResponseFlags =
    mesh_engine::ResponseFlags::of(mesh_engine::ResponseFlag::DownstreamProtocolError);

/// Most header lines in a request head.
const MAX_HEADERS: usize = 100;
/// Read buffer growth.
const READ_CHUNK: usize = 8 << 10;
/// Bodies up to this size are copied behind the head, for one `write`.
const INLINE_BODY: usize = 16 << 10;
/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one client connection until it closes, fails, or the proxy
/// stops. While the proxy drains, the next answer closes the connection
/// (HTTP/1.1) or a GOAWAY is sent (HTTP/2); once it stops, an idle
/// connection is closed and a request in progress is answered first.
pub(crate) async fn serve(
    sh: Arc<Shared>,
    li: usize,
    info: ConnInfo,
    mut stream: TcpStream,
    mut phase: watch::Receiver<Phase>,
) {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = Vec::with_capacity(1024);
    // Where the request head's headers lie in `rbuf` (reused).
    let mut spans = Vec::with_capacity(32);
    // The first request's head is due within the header-read timeout of
    // the connection's start; a later one's, of its first byte.
    let mut deadline = Some(Instant::now() + sh.options.header_read_timeout);
    let mut first = true;
    let mut idle = IdleTimer::new(&sh);
    loop {
        let wait = Wait {
            phase: &mut phase,
            idle: &mut idle,
            deadline,
            first,
        };
        let read = read_head(&sh, &mut stream, &mut rbuf, &mut spans, wait);
        let head = match read.await {
            Ok(h) => h,
            Err(End::Quiet) => return,
            Err(End::H2) => {
                let mut info = info;
                info.h2 = true;
                h2::serve(sh, li, info, stream, rbuf, phase).await;
                return;
            }
            Err(End::Answer(status, why)) => {
                let mut a = Answer::local(status, None, why);
                let took = Duration::ZERO;
                forward::account(&sh, li, &Req::unparsed(info), &a, DPE, took);
                let how = Reply {
                    version: Version::H11,
                    head_request: false,
                    close: true,
                };
                let _ = write_answer(&sh, &mut stream, &mut wbuf, &mut a, how).await;
                return;
            }
        };
        first = false;
        let client = Client {
            sh: &sh,
            li,
            info,
            phase: &phase,
        };
        let one = serve_one(client, &mut stream, &mut rbuf, &mut wbuf, &head, &spans);
        // (Once the proxy stops, `read_head` ends an idle connection.)
        match one.await {
            Ok(true) => {}
            _ => return,
        }
        // A later request's clock starts with its first byte; the idle
        // time, with the end of this one.
        deadline = None;
        idle.last_active = sh.recent();
    }
}

/// The idle timeout of a keep-alive connection between requests, as
/// Envoy's `idle_timeout`, armed lazily: one timer per connection, moved
/// only when it fires early (the connection was busy meanwhile), so a
/// request costs no timer operation and no clock read.
struct IdleTimer {
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the connection last finished a request (engine time).
    last_active: mesh_engine::Time,
}

impl IdleTimer {
    fn new(sh: &Shared) -> Self {
        Self {
            timeout: sh.options.idle_timeout,
            sleep: None,
            last_active: sh.recent(),
        }
    }

    /// Resolves once the connection has been idle for the timeout; never
    /// without one.
    async fn expired(&mut self, sh: &Shared) {
        let Some(timeout) = self.timeout else {
            return std::future::pending().await;
        };
        loop {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            sleep.as_mut().await;
            let idle = sh.now().saturating_since(self.last_active);
            if idle >= timeout {
                return;
            }
            sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + (timeout - idle));
        }
    }
}

/// Why a connection ends before a request is served.
pub(crate) enum End {
    /// The client closed, or the proxy drains while the connection idles.
    Quiet,
    /// An HTTP/2 connection preface: hand the connection to hyper.
    H2,
    /// A request that cannot be served: answer it and close.
    Answer(u16, &'static str),
}

/// Where a parsed request head lies in the read buffer.
pub(crate) struct Head {
    pub(crate) len: usize,
    method: (u32, u32),
    target: (u32, u32),
    /// HTTP/1.x minor version.
    minor: u8,
}

/// (name start, name end, value start, value end) of a header in the
/// read buffer.
pub(crate) type Span = (u32, u32, u32, u32);

/// What waiting for a request head watches: the proxy's phase (an idle
/// connection ends when it stops), the idle timer, the header-read
/// deadline (if the head is due by then), and whether it is the
/// connection's first (which may be the HTTP/2 preface).
struct Wait<'a> {
    phase: &'a mut watch::Receiver<Phase>,
    idle: &'a mut IdleTimer,
    deadline: Option<Instant>,
    first: bool,
}

/// Reads until a whole request head is in `rbuf`, its headers' places in
/// `spans`.
async fn read_head(
    sh: &Shared,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    spans: &mut Vec<Span>,
    wait: Wait<'_>,
) -> Result<Head, End> {
    let Wait {
        phase,
        idle: idle_timer,
        mut deadline,
        first,
    } = wait;
    let max_head = sh.options.max_header_bytes;
    loop {
        if !rbuf.is_empty() {
            if first && H2_PREFACE.starts_with(&rbuf[..rbuf.len().min(H2_PREFACE.len())]) {
                if rbuf.len() >= H2_PREFACE.len() {
                    return Err(End::H2);
                }
            } else if let Some(h) = parse_head(rbuf, max_head, spans)? {
                return Ok(h);
            }
            deadline.get_or_insert_with(|| Instant::now() + sh.options.header_read_timeout);
        }
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_CHUNK);
        }
        // An idle connection (no byte of a request yet) also ends when
        // the proxy stops (it is served while the proxy drains); one in
        // the middle of a head has until its deadline.
        let idle = rbuf.is_empty();
        let read = async {
            match deadline {
                None => stream.read_buf(rbuf).await.map_err(|_| End::Quiet),
                Some(d) => {
                    let d = tokio::time::Instant::from_std(d);
                    match tokio::time::timeout_at(d, stream.read_buf(rbuf)).await {
                        Ok(r) => r.map_err(|_| End::Quiet),
                        Err(_) if idle => Err(End::Quiet),
                        Err(_) => Err(End::Answer(408, "request header read timeout")),
                    }
                }
            }
        };
        let n = if idle {
            let last_active = idle_timer.last_active;
            tokio::select! {
                r = read => r?,
                () = drain_idle(sh, phase, last_active) => return Err(End::Quiet),
                () = idle_timer.expired(sh), if deadline.is_none() => return Err(End::Quiet),
            }
        } else {
            read.await?
        };
        if n == 0 {
            return Err(End::Quiet);
        }
    }
}

/// How long a keep-alive connection may sit idle while the proxy drains.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Resolves when an idle connection must close because of the drain: once
/// it has been idle for [`DRAIN_IDLE`] while the proxy drains — the
/// listeners still accept then, so a client that reconnects is served — or
/// at once when the proxy stops. Never while the proxy serves.
async fn drain_idle(
    sh: &Shared,
    phase: &mut watch::Receiver<Phase>,
    last_active: mesh_engine::Time,
) {
    let _ = phase.wait_for(|p| *p != Phase::Serving).await;
    if *phase.borrow() == Phase::Stopped {
        return;
    }
    let idle = sh.now().saturating_since(last_active);
    tokio::select! {
        () = tokio::time::sleep(DRAIN_IDLE.saturating_sub(idle)) => {}
        _ = phase.wait_for(|p| *p == Phase::Stopped) => {}
    }
}

/// Parses a request head at the front of `rbuf`; `Ok(None)`: incomplete.
/// Header names are lower-cased in place.
pub(crate) fn parse_head(
    rbuf: &mut BytesMut,
    max_head: usize,
    spans: &mut Vec<Span>,
) -> Result<Option<Head>, End> {
    let mut raw = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut []);
    let base = rbuf.as_ptr() as usize;
    let at = |p: *const u8| u32::try_from(p as usize - base).unwrap_or(u32::MAX);
    let head = match httparse::ParserConfig::default()
        // Never past the limit: what lies beyond cannot change the answer
        // (431), whether the bytes came in one read or many.
        .parse_request_with_uninit_headers(&mut r, &rbuf[..rbuf.len().min(max_head + 1)], &mut raw)
    {
        Ok(httparse::Status::Complete(len)) => {
            if len > max_head || u32::try_from(len).is_err() {
                return Err(End::Answer(431, "request header fields too large"));
            }
            let span = |s: &str| (at(s.as_ptr()), at(s.as_ptr()) + s.len() as u32);
            let (Some(method), Some(target)) = (r.method, r.path) else {
                return Err(End::Answer(400, "bad request"));
            };
            spans.clear();
            spans.extend(r.headers.iter().map(|h| {
                // Each length is below the head's, itself in u32.
                let (n, v) = (at(h.name.as_ptr()), at(h.value.as_ptr()));
                (n, n + h.name.len() as u32, v, v + h.value.len() as u32)
            }));
            Head {
                len,
                method: span(method),
                target: span(target),
                minor: r.version.unwrap_or(1),
            }
        }
        Ok(httparse::Status::Partial) if rbuf.len() > max_head => {
            return Err(End::Answer(431, "request header fields too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(End::Answer(431, "request header fields too large"));
        }
        Err(_) => return Err(End::Answer(400, "bad request")),
    };
    for &(ns, ne, ..) in spans.iter() {
        rbuf[ns as usize..ne as usize].make_ascii_lowercase();
    }
    Ok(Some(head))
}

/// What a request head says about its body and its connection.
pub(crate) struct Meta {
    pub(crate) framing: Framing,
    close: bool,
    keep_alive_token: bool,
    expect_continue: bool,
    /// `Connection` names more hop-by-hop fields.
    connection_options: bool,
    /// `Host` fields.
    hosts: u32,
}

/// What the access log can tell of a request refused after its head was
/// read: its method, target and `Host`, as Envoy logs `"POST /upload" 413`.
pub(crate) fn refused<'a>(
    rbuf: &'a [u8],
    head: &Head,
    spans: &[Span],
    conn: ConnInfo,
) -> Req<'a, 'a> {
    let text =
        |(a, b): (u32, u32)| std::str::from_utf8(&rbuf[a as usize..b as usize]).unwrap_or("");
    let authority = spans
        .iter()
        .find(|s| rbuf[s.0 as usize..s.1 as usize].eq_ignore_ascii_case(b"host"))
        .map_or("", |s| text((s.2, s.3)));
    Req {
        method: text(head.method),
        path: text(head.target),
        authority,
        ..Req::unparsed(conn)
    }
}

pub(crate) fn meta(rbuf: &[u8], head: &Head, spans: &[Span]) -> Result<Meta, End> {
    let mut m = Meta {
        framing: Framing::Empty,
        close: false,
        keep_alive_token: false,
        expect_continue: false,
        connection_options: false,
        hosts: 0,
    };
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for &(ns, ne, vs, ve) in spans {
        let name = &rbuf[ns as usize..ne as usize];
        let value = &rbuf[vs as usize..ve as usize];
        match name {
            b"content-length" => {
                for part in value.split(|&b| b == b',') {
                    let n = h1::parse_decimal(part.trim_ascii())
                        .ok_or(End::Answer(400, "bad content-length"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(End::Answer(400, "bad content-length"));
                    }
                    length = Some(n);
                }
            }
            b"transfer-encoding" => {
                // Only `chunked`, once: the proxy decodes no other coding
                // (RFC 9112 section 6.1: 501).
                let only_chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                if !only_chunked || chunked.is_some() {
                    return Err(End::Answer(501, "transfer coding not implemented"));
                }
                chunked = Some(true);
            }
            b"host" => m.hosts += 1,
            b"connection" => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    m.close |= token.eq_ignore_ascii_case(b"close");
                    m.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
                m.connection_options |= hdr::connection_options(value).next().is_some();
            }
            b"expect" => m.expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
    }
    m.framing = match (chunked, length) {
        // Both framings at once is a smuggling vector; a final coding
        // other than chunked leaves the length unknown (RFC 9112 6.3).
        (Some(_), Some(_)) | (Some(false), None) => {
            return Err(End::Answer(400, "bad transfer-encoding"));
        }
        (Some(true), None) => Framing::Chunked,
        (None, Some(0) | None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    if head.minor == 0 && m.framing == Framing::Chunked {
        return Err(End::Answer(400, "chunked HTTP/1.0 request"));
    }
    Ok(m)
}

/// The HTTP version of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    H10,
    H11,
}

/// Who a client connection is: the proxy and listener it came to, its
/// addresses, and the proxy's phase.
#[derive(Clone, Copy)]
struct Client<'a> {
    sh: &'a Arc<Shared>,
    li: usize,
    info: ConnInfo,
    phase: &'a watch::Receiver<Phase>,
}

/// Serves the request whose head is parsed: reads its body, forwards it,
/// writes the answer. `Ok(true)`: the connection may carry another
/// request.
async fn serve_one(
    client: Client<'_>,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    head: &Head,
    spans: &[Span],
) -> io::Result<bool> {
    let Client {
        sh,
        li,
        info,
        phase,
    } = client;
    let fail = |status, why| (Answer::local(status, None, why), DPE);
    let is_connect = &rbuf[head.method.0 as usize..head.method.1 as usize] == b"CONNECT";
    let early = match meta(rbuf, head, spans) {
        // RFC 9112 section 3.2: exactly one Host (HTTP/1.1 must send it).
        Ok(m) if m.hosts > 1 || (m.hosts == 0 && head.minor != 0) => {
            Err(fail(400, "missing or repeated host"))
        }
        // Tunnels are not proxied (Envoy needs an upgrade config for them).
        Ok(_) if is_connect => Err(fail(405, "CONNECT is not supported")),
        Ok(m) => Ok(m),
        Err(End::Answer(s, why)) => Err(fail(s, why)),
        Err(_) => Err(fail(400, "bad request")),
    };
    let m = match early {
        Ok(m) => m,
        Err((a, flags)) => {
            let req = refused(rbuf, head, spans, info);
            forward::account(sh, li, &req, &a, flags, Duration::ZERO);
            let mut a = a;
            let how = Reply {
                version: Version::H11,
                head_request: false,
                close: true,
            };
            write_answer(sh, stream, wbuf, &mut a, how).await?;
            return Ok(false);
        }
    };
    let version = if head.minor == 0 {
        Version::H10
    } else {
        Version::H11
    };
    let persistent = match version {
        Version::H10 => m.keep_alive_token && !m.close,
        Version::H11 => !m.close,
    };
    let method_is_head = &rbuf[head.method.0 as usize..head.method.1 as usize] == b"HEAD";
    let max_body = sh.options.max_body_bytes;
    let buffer = sh.options.buffer_limit;
    let too_large = |n: u64| max_body.is_some_and(|m| n > m);

    // The body: in the buffer behind the head, or read until it is; or,
    // beyond the buffer limit, streamed up as it comes (`Streamed`).
    let mut decoded: Option<Bytes> = None;
    let mut streamed: Option<(Bytes, BytesMut, BodyDecoder)> = None;
    let mut refusal: Option<(u16, &str)> = None;
    let body_end = match m.framing {
        Framing::Empty | Framing::UntilClose => head.len,
        Framing::Length(n) if too_large(n) => {
            refusal = Some((413, "request body too large"));
            head.len
        }
        Framing::Length(n) if n > buffer as u64 => {
            if rbuf.len() == head.len && m.expect_continue && version == Version::H11 {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            let rest = rbuf.split_off(head.len);
            let decoder = BodyDecoder::new(Framing::Length(n), usize::MAX);
            streamed = Some((Bytes::new(), rest, decoder));
            head.len
        }
        Framing::Length(n) => {
            // At most the buffer limit, so it fits.
            let end = head.len + n as usize;
            if rbuf.len() < end && m.expect_continue && version == Version::H11 {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            while rbuf.len() < end {
                rbuf.reserve((end - rbuf.len()).min(1 << 20));
                if read_body(stream, rbuf).await? == 0 {
                    return Ok(false);
                }
            }
            end
        }
        Framing::Chunked => {
            let mut rest = rbuf.split_off(head.len);
            if m.expect_continue && rest.is_empty() {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            let mut decoder = BodyDecoder::new(Framing::Chunked, usize::MAX);
            let mut got = BytesMut::new();
            loop {
                match decoder.next(&mut rest, false) {
                    Ok(Piece::Data(b)) => {
                        let n = got.len() + b.len();
                        if too_large(n as u64) {
                            refusal = Some((413, "request body too large"));
                            break;
                        }
                        got.extend_from_slice(&b);
                        if n > buffer {
                            streamed = Some((got.split().freeze(), rest.split(), decoder));
                            break;
                        }
                    }
                    Ok(Piece::Done) => {
                        decoded = Some(got.split().freeze());
                        break;
                    }
                    Ok(Piece::More) => {
                        if rest.capacity() - rest.len() < 1024 {
                            rest.reserve(READ_CHUNK);
                        }
                        if read_body(stream, &mut rest).await? == 0 {
                            return Ok(false);
                        }
                    }
                    Err(_) => {
                        refusal = Some((400, "bad request body"));
                        break;
                    }
                }
            }
            // What follows the body (a pipelined request) goes back.
            rbuf.unsplit(rest);
            head.len
        }
    };
    if let Some((status, why)) = refusal {
        let mut a = Answer::local(status, None, why);
        let req = refused(rbuf, head, spans, info);
        forward::account(sh, li, &req, &a, DPE, Duration::ZERO);
        let how = Reply {
            version,
            head_request: method_is_head,
            close: true,
        };
        write_answer(sh, stream, wbuf, &mut a, how).await?;
        return Ok(false);
    }

    // The request, as slices of the buffer.
    let text =
        |(s, e): (u32, u32)| std::str::from_utf8(&rbuf[s as usize..e as usize]).unwrap_or("");
    let method = text(head.method);
    let target = text(head.target);
    let headers = Headers::Spans(rbuf, spans);
    let host = headers
        .iter()
        .find(|(k, _)| *k == "host")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .unwrap_or("");
    let (authority, path) = split_target(target, host);
    let body: &[u8] = match &decoded {
        Some(b) => b,
        None => &rbuf[head.len..body_end],
    };
    // The answer; whether the request's body was read to its end; the
    // bytes read past it (the next request's).
    let (mut answer, whole, after) = if let Some((prefix, rest, decoder)) = streamed {
        // A body beyond the buffer limit goes up as the client sends it;
        // the client is not watched meanwhile (its body is being read).
        let body = ClientBody::h1(prefix, stream, rest, decoder).with_max(max_body);
        let client = RefCell::new(Some(body));
        let req = Req {
            method,
            path,
            authority,
            headers,
            body: &[],
            stream: Some(&client),
            conn: info,
            connection_options: m.connection_options,
        };
        let answer = forward::handle(sh, li, &req).await;
        let client = client.into_inner();
        let whole = client.as_ref().is_some_and(ClientBody::done);
        let leftover = client.map(ClientBody::leftover).unwrap_or_default();
        (answer, whole, leftover)
    } else {
        let req = Req {
            method,
            path,
            authority,
            headers,
            body,
            stream: None,
            conn: info,
            connection_options: m.connection_options,
        };
        // Forward it, watching the client: one that goes away cancels the
        // request; bytes it sends meanwhile (a pipelined request) are kept.
        let mut early_bytes = BytesMut::new();
        let answer = {
            let fut = forward::handle(sh, li, &req);
            tokio::pin!(fut);
            let mut watching = true;
            loop {
                tokio::select! {
                    biased;
                    a = &mut fut => break Some(a),
                    r = stream.readable(), if watching => {
                        if r.is_err() {
                            break None;
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.try_read(&mut chunk) {
                            Ok(0) => break None,
                            Ok(k) => {
                                early_bytes.extend_from_slice(&chunk[..k]);
                                watching = early_bytes.len() < sh.options.max_header_bytes;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => break None,
                        }
                    }
                }
            }
        };
        let Some(answer) = answer else {
            return Ok(false);
        };
        (answer, true, early_bytes)
    };
    // A body not read to its end (a local reply, a failed attempt) leaves
    // the connection out of step: it closes.
    let close = !whole || !persistent || *phase.borrow() != Phase::Serving;
    let how = Reply {
        version,
        head_request: method_is_head,
        close,
    };
    write_answer(sh, stream, wbuf, &mut answer, how).await?;
    rbuf.advance(body_end);
    rbuf.extend_from_slice(&after);
    Ok(!close)
}

/// One read of a request body, cut (as a closed connection) after
/// [`BODY_IDLE`] without a byte.
async fn read_body(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    match tokio::time::timeout(BODY_IDLE, stream.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Ok(0),
    }
}

/// `(authority, path)` of a request target: absolute form
/// (`http://host/p`) carries its authority; origin form takes `Host`.
fn split_target<'a>(target: &'a str, host: &'a str) -> (&'a str, &'a str) {
    for scheme in ["http://", "https://"] {
        let prefix = target.as_bytes().get(..scheme.len());
        if target.len() > scheme.len()
            && prefix.is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            let rest = &target[scheme.len()..];
            return match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
                Some(i) => (&rest[..i], "/"),
                None => (rest, "/"),
            };
        }
    }
    (host, target)
}

/// How an answer goes out: the client's HTTP version, whether it asked
/// `HEAD` (no body), whether the connection closes after it.
#[derive(Clone, Copy)]
struct Reply {
    version: Version,
    head_request: bool,
    close: bool,
}

/// Writes `answer` as an HTTP/1.x response; `close`: say so and end the
/// connection afterwards. A streamed body follows as the upstream sends
/// it: with its length, or in chunked coding (HTTP/1.0: until close).
async fn write_answer(
    sh: &Shared,
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    a: &mut Answer,
    how: Reply,
) -> io::Result<()> {
    let Reply {
        version,
        head_request,
        close,
    } = how;
    let bodiless = a.status == 204 || a.status == 304 || a.status < 200;
    let send_body = !bodiless && !head_request;
    let mut upstream_body = a.stream.take().filter(|_| send_body);
    // A streamed body of unknown length: chunked to HTTP/1.1, delimited by
    // the close to HTTP/1.0.
    let unknown = upstream_body.as_ref().is_some_and(|b| b.length().is_none());
    let close = close || (unknown && version == Version::H10);
    let chunked = unknown && !close;
    wbuf.clear();
    let status = hyper::StatusCode::from_u16(a.status).ok();
    let reason = status.and_then(|s| s.canonical_reason()).unwrap_or("");
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    wbuf.extend_from_slice(itoa3(a.status).as_slice());
    wbuf.push(b' ');
    wbuf.extend_from_slice(reason.as_bytes());
    wbuf.extend_from_slice(b"\r\n");
    wbuf.extend_from_slice(&a.headers);
    if !a.date {
        wbuf.extend_from_slice(b"date: ");
        sh.http_date(|d| wbuf.extend_from_slice(d));
        wbuf.extend_from_slice(b"\r\n");
    }
    if close {
        wbuf.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::H10 {
        wbuf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    // A `HEAD` answer from upstream keeps the length it announced, if any
    // (its body is not there to measure); a local one has its own.
    let from_upstream_head = head_request && a.upstream.is_some() && a.attempts > 0;
    if chunked {
        wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !(bodiless || from_upstream_head || unknown) {
        let length = match &upstream_body {
            Some(b) => b.length().unwrap_or(0),
            None => a.body.len() as u64,
        };
        wbuf.extend_from_slice(b"content-length: ");
        push_decimal(wbuf, usize::try_from(length).unwrap_or(usize::MAX));
        wbuf.extend_from_slice(b"\r\n");
    }
    wbuf.extend_from_slice(b"\r\n");
    if let Some(body) = upstream_body.as_mut() {
        stream.write_all(wbuf).await?;
        stream_body(stream, body, chunked, wbuf).await?;
    } else if send_body && a.body.len() <= INLINE_BODY {
        wbuf.extend_from_slice(&a.body);
        stream.write_all(wbuf).await?;
    } else {
        stream.write_all(wbuf).await?;
        if send_body {
            stream.write_all(&a.body).await?;
        }
    }
    if wbuf.capacity() > 4 * INLINE_BODY {
        *wbuf = Vec::with_capacity(1024);
    }
    if close {
        let _ = stream.shutdown().await;
        linger(stream).await;
    }
    Ok(())
}

/// Copies a streamed response body to the client piece by piece (each
/// written before the next is read), in chunks when `chunked`. An
/// upstream that fails mid-body ends the client's connection without the
/// body's end, so the client sees it cut.
async fn stream_body(
    stream: &mut TcpStream,
    body: &mut crate::body::UpstreamBody,
    chunked: bool,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    use std::io::Write as _;
    loop {
        match body.next().await {
            Ok(Some(piece)) => {
                if chunked {
                    scratch.clear();
                    let _ = write!(scratch, "{:x}\r\n", piece.len());
                    stream.write_all(scratch).await?;
                    stream.write_all(&piece).await?;
                    stream.write_all(b"\r\n").await?;
                } else {
                    stream.write_all(&piece).await?;
                }
            }
            Ok(None) => {
                if chunked {
                    stream.write_all(b"0\r\n\r\n").await?;
                }
                return Ok(());
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "upstream body ended early",
                ));
            }
        }
    }
}

/// After the last answer on a connection, reads and drops what the client
/// is still sending (a body the answer refused, say) for a moment, so that
/// closing with unread bytes does not reset the connection before the
/// client has read the answer (a "lingering close", as nginx and hyper
/// do).
async fn linger(stream: &mut TcpStream) {
    const LINGER: Duration = Duration::from_millis(500);
    const MAX: usize = 256 << 10;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut seen = 0;
    while seen < MAX {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => seen += n,
            _ => return,
        }
    }
}

/// A status code's three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

mod h2;

#[cfg(test)]
mod tests;
