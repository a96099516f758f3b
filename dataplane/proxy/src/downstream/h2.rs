//! HTTP/2 clients (cleartext, prior knowledge), served by hyper: the same
//! [`forward::handle`] as HTTP/1.1, the same header limits, bodies read
//! whole up to the buffer limit or streamed beyond it.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{DPE, MAX_HEADERS};
use crate::body::{BODY_IDLE, ClientBody, feed_upstream};
use crate::chan::{ChannelBody, H2Body};
use crate::forward;
use crate::h1;
use crate::hdr;
use crate::msg::{Answer, ConnInfo, Headers, Req};
use crate::proxy::{Phase, Shared};
use crate::rt::LocalExec;

/// Serves an HTTP/2 connection (prior knowledge) with hyper; `read` holds
/// the bytes already read from it (the preface, maybe more).
pub(super) async fn serve(
    sh: Arc<Shared>,
    li: usize,
    info: ConnInfo,
    stream: TcpStream,
    read: BytesMut,
    mut phase: watch::Receiver<Phase>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        // Room above `--max-header-bytes` (h2 counts 32 bytes more per
        // field), so that `handle_h2` answers an oversized request 431
        // itself and logs it; beyond this h2 answers 431 on its own.
        // (At least the 32 bytes per field of 100 fields and the pseudo
        // headers above the limit, for a small `--max-header-bytes`.)
        .max_header_list_size(
            u32::try_from(
                (sh.options.max_header_bytes.saturating_mul(4))
                    .max(sh.options.max_header_bytes + 32 * (MAX_HEADERS + 8)),
            )
            .unwrap_or(u32::MAX),
        );
    // A connection opened while the proxy drains is told to go away after
    // its first answer, as Envoy's drain closes on a response; one opened
    // before, as soon as the drain starts.
    let answered = Rc::new(tokio::sync::Notify::new());
    let opened_draining = *phase.borrow() != Phase::Serving;
    let first_answer = answered.clone();
    let service = hyper::service::service_fn(move |req| {
        let sh = sh.clone();
        let answered = answered.clone();
        async move {
            let r = handle(sh, li, info, req).await;
            answered.notify_one();
            Ok::<_, Infallible>(r)
        }
    });
    let io = hyper_util::rt::TokioIo::new(Prefixed {
        read: read.freeze(),
        stream,
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let go_away = async {
        if opened_draining {
            tokio::select! {
                () = first_answer.notified() => {}
                _ = phase.wait_for(|p| *p == Phase::Stopped) => {}
            }
        } else {
            let _ = phase.wait_for(|p| *p != Phase::Serving).await;
        }
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = go_away => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One HTTP/2 request: the same [`forward::handle`] as HTTP/1.1.
async fn handle(
    sh: Arc<Shared>,
    li: usize,
    info: ConnInfo,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<H2Body> {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get("host").and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    // HTTP/2 clients may split `cookie` into crumbs, one field each; they
    // are joined with "; " into one field (RFC 9113 section 8.2.3), as
    // Envoy's codec does, before the limits and before an HTTP/1.1
    // upstream sees them.
    let mut cookie = Vec::new();
    let mut crumbs = parts.headers.get_all(hyper::header::COOKIE).iter();
    let joined = crumbs.next().is_some() && crumbs.next().is_some();
    if joined {
        for (i, v) in parts
            .headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .enumerate()
        {
            if i > 0 {
                cookie.extend_from_slice(b"; ");
            }
            cookie.extend_from_slice(v.as_bytes());
        }
    }
    let mut headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .filter(|(k, _)| !(joined && *k == hyper::header::COOKIE))
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    if joined {
        headers.push(("cookie", &cookie));
    }
    // The limits of an HTTP/1.1 head, as Envoy applies one
    // `max_request_headers_kb` and `max_request_headers_count` to both
    // protocols: more than 100 fields, or more than `--max-header-bytes`
    // of names and values (Envoy's header-map byte size), get 431.
    // The request line's parts count as in an HTTP/1.1 head (`:method`,
    // `:path`, `:authority`, `:scheme`).
    let pseudo = method.len() + path.len() + authority.len() + "http".len();
    let head_bytes: usize = pseudo
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let too_large = headers.len() > MAX_HEADERS || head_bytes > sh.options.max_header_bytes;
    let max_body = sh.options.max_body_bytes;
    let length = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| h1::parse_decimal(v.as_bytes()));
    // The body, read whole up to the buffer limit; beyond it, it streams.
    let read = if too_large {
        Err((431, "request header fields too large"))
    } else if length.is_some_and(|n| max_body.is_some_and(|m| n > m)) {
        Err((413, "request body too large"))
    } else {
        read_h2_body(body, sh.options.buffer_limit, max_body).await
    };
    let mut answer = match read {
        Ok((whole, rest)) => {
            let client = rest.map(|rest| {
                RefCell::new(Some(
                    ClientBody::h2(whole.clone(), rest, length).with_max(max_body),
                ))
            });
            let req = Req {
                method,
                path,
                authority,
                headers: Headers::Pairs(&headers),
                body: if client.is_some() { &[] } else { &whole },
                stream: client.as_ref(),
                conn: info,
                connection_options: false,
            };
            forward::handle(&sh, li, &req).await
        }
        Err((status, why)) => {
            let a = Answer::local(status, None, why);
            let req = Req {
                method,
                path,
                authority,
                headers: Headers::Pairs(&headers),
                body: &[],
                stream: None,
                conn: info,
                connection_options: false,
            };
            forward::account(&sh, li, &req, &a, DPE, Duration::ZERO);
            a
        }
    };
    // A streamed response body goes on through a channel, fed by a task
    // of this worker as the client's flow control allows.
    let body = match answer.stream.take() {
        Some(up) => {
            let (feed, channel) = ChannelBody::new(up.length());
            feed_upstream(*up, feed);
            H2Body::Right(channel)
        }
        None => H2Body::Left(Full::new(answer.body.clone())),
    };
    let mut r = hyper::Response::new(body);
    *r.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    let h = r.headers_mut();
    for (k, v) in hdr::lines(&answer.headers) {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k),
            hyper::header::HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    r
}

/// An HTTP/2 client's request body read up to `buffer` bytes: whole, or
/// what was read and the rest of the stream. `Err`: the status and reason
/// of a refusal (over `max`, a reset or stalled stream).
async fn read_h2_body(
    mut body: hyper::body::Incoming,
    buffer: usize,
    max: Option<u64>,
) -> Result<(Bytes, Option<hyper::body::Incoming>), (u16, &'static str)> {
    let mut got = BytesMut::new();
    loop {
        match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Err(_) | Ok(Some(Err(_))) => return Err((400, "bad request body")),
            Ok(None) => return Ok((got.freeze(), None)),
            Ok(Some(Ok(f))) => {
                let Ok(d) = f.into_data() else { continue };
                if max.is_some_and(|m| (got.len() + d.len()) as u64 > m) {
                    return Err((413, "request body too large"));
                }
                got.extend_from_slice(&d);
                if got.len() > buffer {
                    return Ok((got.freeze(), Some(body)));
                }
            }
        }
    }
}

/// A connection with bytes already read from it put back in front.
struct Prefixed {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
