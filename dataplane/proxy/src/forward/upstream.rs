//! One attempt's I/O with an upstream: the request (its body whole, or
//! streamed as the client sends it) and the response, read whole up to the
//! buffer limit, over a pooled HTTP/1.1 connection or an HTTP/2 stream;
//! every failure a [`Reset`] with Envoy's reason.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use mesh_engine::ResponseFlags;

use super::Template;
use crate::body::{ClientBody, SendError, feed_client, send_h1};
use crate::chan::{ChannelBody, H2Body};
use crate::h1;
use crate::hdr;
use crate::msg::Answer;
use crate::pool::Conn;

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
    /// The client's streamed body failed: the downstream's doing, never
    /// reported to the engine as an outcome (the exchange is cancelled).
    Client,
}

impl Reset {
    pub(super) fn reason(self) -> mesh_engine::ResetReason {
        match self {
            Self::Client => mesh_engine::ResetReason::ConnectionTermination,
            Self::Termination => mesh_engine::ResetReason::ConnectionTermination,
            Self::Remote => mesh_engine::ResetReason::RemoteReset,
            Self::Protocol => mesh_engine::ResetReason::ProtocolError,
        }
    }
}

/// An upstream's response and, when its body outgrew the buffer, what
/// reads the rest.
pub(super) struct Reply {
    pub(super) answer: Answer,
    pub(super) rest: Option<Rest>,
}

/// The unread rest of a response body.
pub(super) enum Rest {
    /// HTTP/1.1: read so far, the decoder, the upstream lets the
    /// connection carry another request.
    H1(VecDeque<Bytes>, h1::BodyDecoder, bool),
    /// HTTP/2: read so far, the stream's body, its `content-length`.
    H2(VecDeque<Bytes>, hyper::body::Incoming, Option<u64>),
}

/// Sends attempt `n` on an HTTP/2 connection (its body whole, or
/// `streamed` through a channel as the client sends it) and reads the
/// response into an [`Answer`] (headers in wire form, hop-by-hop ones and
/// the length dropped), its body up to `buffer` bytes.
pub(super) async fn exchange_h2(
    send: &mut crate::pool::H2Send,
    template: &Template<'_, '_>,
    n: u32,
    buffer: usize,
    streamed: Option<&mut ClientBody<'_>>,
) -> Result<Reply, Reset> {
    let resp = match streamed {
        None => {
            let whole = http_body_util::Full::new(Bytes::copy_from_slice(template.body));
            let req = template
                .h2_request(n, H2Body::Left(whole))
                .map_err(|()| Reset::Protocol)?;
            send.send_request(req).await.map_err(|e| h2_reset(&e))?
        }
        Some(body) => {
            let (feed, channel) = ChannelBody::new(body.length());
            let req = template
                .h2_request(n, H2Body::Right(channel))
                .map_err(|()| Reset::Protocol)?;
            let pump = feed_client(body, feed);
            let (resp, pumped) = tokio::join!(send.send_request(req), pump);
            if pumped.is_err() {
                return Err(Reset::Client);
            }
            resp.map_err(|e| h2_reset(&e))?
        }
    };
    let (parts, mut incoming) = resp.into_parts();
    let mut headers = Vec::with_capacity(256);
    let mut date = false;
    let mut length = None;
    for (k, v) in &parts.headers {
        let k = k.as_str();
        if k == "content-length" {
            length = h1::parse_decimal(v.as_bytes());
            continue;
        }
        if hdr::is_hop_by_hop(k.as_bytes()) {
            continue;
        }
        date |= k == "date";
        hdr::push(&mut headers, k.as_bytes(), v.as_bytes());
    }
    let mut answer = Answer {
        status: parts.status.as_u16(),
        headers,
        date,
        body: Bytes::new(),
        flags: ResponseFlags::NONE,
        upstream: None,
        attempts: 0,
        stream: None,
    };
    let mut joined = BytesMut::new();
    loop {
        use http_body_util::BodyExt as _;
        match incoming.frame().await {
            None => {
                answer.body = joined.freeze();
                return Ok(Reply { answer, rest: None });
            }
            Some(Err(e)) => return Err(h2_reset(&e)),
            Some(Ok(f)) => {
                let Ok(b) = f.into_data() else { continue };
                if joined.len() + b.len() > buffer {
                    let mut prefix = VecDeque::with_capacity(2);
                    if !joined.is_empty() {
                        prefix.push_back(joined.freeze());
                    }
                    prefix.push_back(b);
                    return Ok(Reply {
                        answer,
                        rest: Some(Rest::H2(prefix, incoming, length)),
                    });
                }
                joined.extend_from_slice(&b);
            }
        }
    }
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

/// Sends attempt `n` of the request on a connection (its body whole, or
/// `streamed` as the client sends it) and reads the response, its body up
/// to the buffer limit. A connection that may not carry another request
/// afterwards (the upstream closes it, HTTP/1.0, bytes after the response,
/// any error) is marked finished, so the pool closes it.
pub(super) async fn exchange(
    conn: &mut Conn,
    template: &Template<'_, '_>,
    n: u32,
    limits: h1::Limits,
    streamed: Option<&mut ClientBody<'_>>,
) -> Result<Reply, Reset> {
    conn.wbuf.clear();
    template.write_head(n, &mut conn.wbuf);
    let result = match streamed {
        // The head, then the client's body as it comes, then the answer.
        Some(body) => match send_h1(&mut conn.stream, &conn.wbuf, body, template.chunked).await {
            Ok(()) => {
                h1::read_response(
                    &mut conn.stream,
                    &mut conn.rbuf,
                    template.head_request,
                    limits,
                )
                .await
            }
            Err(SendError::Client) => {
                conn.finished = true;
                return Err(Reset::Client);
            }
            Err(SendError::Upstream) => Err(h1::Error::Closed),
        },
        None => {
            let inline = template.body.len() <= INLINE_BODY;
            if inline {
                conn.wbuf.extend_from_slice(template.body);
            }
            h1::exchange(
                &mut conn.stream,
                &mut conn.rbuf,
                &conn.wbuf,
                (!inline).then_some(template.body),
                template.head_request,
                limits,
            )
            .await
        }
    };
    if conn.wbuf.capacity() > INLINE_BODY * 2 {
        conn.wbuf = Vec::new();
    }
    let r = match result {
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
    let rest = match r.rest {
        Some((prefix, decoder)) => Some(Rest::H1(prefix, decoder, r.head.keep_alive)),
        None => {
            if !r.head.keep_alive || !conn.rbuf.is_empty() {
                conn.finished = true;
            }
            None
        }
    };
    Ok(Reply {
        answer: Answer {
            status: r.head.status,
            headers: r.head.headers,
            date: r.head.date,
            body: r.body,
            flags: ResponseFlags::NONE,
            upstream: None,
            attempts: 0,
            stream: None,
        },
        rest,
    })
}
