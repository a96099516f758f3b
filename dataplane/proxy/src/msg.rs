//! The messages between the proxy's two sides: a downstream request as
//! slices of the listener's read buffer ([`Req`]), the connection it came on
//! ([`ConnInfo`]), and the answer that goes back with its headers in wire
//! form ([`Answer`]), whichever protocol the client speaks.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use mesh_engine::{ResponseFlag, ResponseFlags};

use crate::body::{ClientBody, UpstreamBody};
use crate::hdr;

/// The downstream connection a request came on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
    /// The client speaks HTTP/2 (for `useClientProtocol`).
    pub(crate) h2: bool,
    /// The client's IP as text, for `X-Forwarded-For`, formatted once.
    remote_ip: ([u8; 46], u8),
}

impl ConnInfo {
    pub(crate) fn new(remote: SocketAddr, local: SocketAddr) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; 46];
        let mut w = &mut buf[..];
        // An IP address is at most 45 characters: it fits.
        let _ = write!(w, "{}", remote.ip());
        let len = 46 - w.len();
        Self {
            remote,
            local,
            h2: false,
            remote_ip: (buf, len as u8),
        }
    }

    pub(crate) fn remote_ip(&self) -> &[u8] {
        &self.remote_ip.0[..usize::from(self.remote_ip.1)]
    }
}

/// A downstream request, whole, as slices of where it was read.
#[derive(Debug)]
pub(crate) struct Req<'a, 'b> {
    pub(crate) method: &'a str,
    /// Path and query.
    pub(crate) path: &'a str,
    pub(crate) authority: &'a str,
    /// Names in lower case, in the order received.
    pub(crate) headers: Headers<'a>,
    /// The body, when it was read whole (within `--buffer-limit`).
    pub(crate) body: &'a [u8],
    /// Or the body, streamed: taken by the attempt that forwards it.
    pub(crate) stream: Option<&'a RefCell<Option<ClientBody<'b>>>>,
    pub(crate) conn: ConnInfo,
    /// A `Connection` header names more hop-by-hop fields (HTTP/1.1 only).
    pub(crate) connection_options: bool,
}

impl Req<'_, '_> {
    /// A request too malformed to have a method or a path (for the log).
    pub(crate) fn unparsed(conn: ConnInfo) -> Self {
        Self {
            method: "",
            path: "",
            authority: "",
            headers: Headers::Pairs(&[]),
            body: &[],
            stream: None,
            conn,
            connection_options: false,
        }
    }
}

/// A request's headers: where an HTTP/1.1 head lies in its read buffer,
/// or pairs (HTTP/2, through hyper).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Headers<'a> {
    /// The buffer and each header's (name start, name end, value start,
    /// value end) in it; names already in lower case.
    Spans(&'a [u8], &'a [(u32, u32, u32, u32)]),
    /// (name, value) pairs, names in lower case.
    Pairs(&'a [(&'a str, &'a [u8])]),
}

impl<'a> Headers<'a> {
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let n = match self {
            Self::Spans(_, s) => s.len(),
            Self::Pairs(p) => p.len(),
        };
        (0..n).map(move |i| match self {
            Self::Spans(buf, spans) => {
                let (ns, ne, vs, ve) = spans[i];
                let name = buf.get(ns as usize..ne as usize).unwrap_or_default();
                (
                    std::str::from_utf8(name).unwrap_or(""),
                    buf.get(vs as usize..ve as usize).unwrap_or_default(),
                )
            }
            Self::Pairs(p) => p[i],
        })
    }
}

/// The answer to a request, before it is logged and written.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Headers in wire form ([`crate::hdr`]), hop-by-hop ones and the
    /// body's length excluded.
    pub(crate) headers: Vec<u8>,
    /// `headers` has a `Date`.
    pub(crate) date: bool,
    pub(crate) body: Bytes,
    /// Envoy's response flags.
    pub(crate) flags: ResponseFlags,
    pub(crate) upstream: Option<Arc<str>>,
    pub(crate) attempts: u32,
    /// The rest of a body too large to hold, streamed from the upstream
    /// after `body` (the part read already).
    pub(crate) stream: Option<Box<UpstreamBody>>,
}

impl Answer {
    /// A local reply: `body` as plain text, with Envoy's
    /// `x-envoy-overloaded` on an overflow.
    pub(crate) fn local(status: u16, flag: Option<ResponseFlag>, body: &str) -> Self {
        let mut headers = Vec::with_capacity(64);
        hdr::push(&mut headers, b"content-type", b"text/plain");
        if flag == Some(ResponseFlag::UpstreamOverflow) {
            hdr::push(&mut headers, b"x-envoy-overloaded", b"true");
        }
        Self {
            status,
            headers,
            date: false,
            body: Bytes::from(format!("{body}\n")),
            flags: flag.map_or(ResponseFlags::NONE, ResponseFlags::of),
            upstream: None,
            attempts: 0,
            stream: None,
        }
    }
}

/// The text of a local reply, as Envoy words them.
pub(crate) fn local_body(flag: Option<ResponseFlag>) -> &'static str {
    match flag {
        Some(ResponseFlag::NoRouteFound) => "no route",
        Some(ResponseFlag::NoClusterFound) => "no cluster",
        Some(ResponseFlag::NoHealthyUpstream) => "no healthy upstream",
        Some(ResponseFlag::FaultInjected) => "fault filter abort",
        Some(ResponseFlag::UpstreamOverflow) => {
            "upstream connect error or disconnect/reset before headers. reset reason: overflow"
        }
        Some(ResponseFlag::UpstreamRequestTimeout) => "upstream request timeout",
        Some(ResponseFlag::UpstreamConnectionFailure) => {
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
        }
        Some(ResponseFlag::UpstreamRemoteReset) => {
            "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
        }
        Some(ResponseFlag::UpstreamConnectionTermination) => {
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        }
        Some(ResponseFlag::UpstreamProtocolError) => {
            "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
        }
        _ => "local reply",
    }
}
