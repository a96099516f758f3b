//! The upstream side's HTTP/1.1 client: one request written in one
//! `write`, the response head parsed with `httparse`, the body read by
//! `Content-Length`, chunked coding or connection close.
//!
//! A pooled connection carries one exchange at a time (no pipelining), so
//! the codec is small: [`parse_head`] and [`BodyDecoder`] work on the
//! connection's read buffer and never panic on what an upstream sends;
//! [`exchange`] drives them over any byte stream. Every failure (a closed
//! or reset connection, a malformed or oversized response, an upgrade) is
//! an [`Error`], which the caller reports as the engine's `Reset` outcome.
//! The forwarded headers are one block in wire form ([`crate::hdr`]),
//! copied once from the read buffer; `Content-Length` bodies are slices of
//! the read buffer, not copies.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::hdr;

/// Why a response could not be read; each is a `Reset` outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The connection ended (EOF or an I/O error) before the response did.
    Closed,
    /// Not a valid HTTP/1.x response (the reason, for tests and logs).
    Malformed(&'static str),
    /// The head or the body is over its limit.
    TooLarge,
    /// `101 Switching Protocols`: upgrades are not proxied.
    Upgrade,
}

/// How the body of a response is delimited (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a `HEAD` request, `204`, `304`.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head (informational `1xx` heads are skipped).
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// The headers to forward, in wire form ([`crate::hdr`]): hop-by-hop
    /// ones removed, and `Content-Length` too unless the response has no
    /// body to measure it by (a `HEAD` request's, a `304`).
    pub(crate) headers: Vec<u8>,
    /// The upstream sent a `Date`.
    pub(crate) date: bool,
    pub(crate) framing: Framing,
    /// The connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

/// Most header lines in a response head.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 64 << 10;
/// Read buffer growth: small responses share one allocation.
const READ_CHUNK: usize = 8 << 10;

/// Parses one response head from the front of `buf`, removing it (and any
/// `1xx` heads before it). `Ok(None)`: incomplete, read more.
/// `head_request`: the request was `HEAD` (the response has no body).
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    max_head: usize,
) -> Result<Option<Head>, Error> {
    loop {
        // Header positions in `buf`: (name start, name end, value start,
        // value end), so the head can be frozen and sliced afterwards.
        // (u32: a head is far below 4 GiB, `max_head` bounds it.)
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let (len, status, minor, count) = {
            let mut raw = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut []);
            let config = httparse::ParserConfig::default();
            // Never past the limit: bytes beyond it cannot change the answer
            // (too large), however the reads split them.
            let view = &buf[..buf.len().min(max_head + 1)];
            let len = match config.parse_response_with_uninit_headers(&mut r, view, &mut raw) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    return if buf.len() > max_head {
                        Err(Error::TooLarge)
                    } else {
                        Ok(None)
                    };
                }
                Err(httparse::Error::TooManyHeaders) => return Err(Error::TooLarge),
                Err(_) => return Err(Error::Malformed("response head")),
            };
            let base = buf.as_ptr() as usize;
            let count = r.headers.len();
            let at = |p: *const u8| u32::try_from(p as usize - base).unwrap_or(u32::MAX);
            for (s, h) in spans.iter_mut().zip(r.headers.iter()) {
                let (name, value) = (at(h.name.as_ptr()), at(h.value.as_ptr()));
                // Each length is below the head's, itself in u32.
                let (nl, vl) = (h.name.len() as u32, h.value.len() as u32);
                *s = (
                    name,
                    name.saturating_add(nl),
                    value,
                    value.saturating_add(vl),
                );
            }
            (len, r.code.unwrap_or(0), r.version.unwrap_or(1), count)
        };
        if len > max_head || u32::try_from(len).is_err() {
            return Err(Error::TooLarge);
        }
        if status == 101 {
            return Err(Error::Upgrade);
        }
        if (100..200).contains(&status) {
            // 100 Continue, 102, 103 Early Hints: the final head follows.
            buf.advance(len);
            continue;
        }
        if !(200..1000).contains(&status) {
            return Err(Error::Malformed("status code"));
        }
        let head = head_from(&buf[..len], &spans[..count], status, minor, head_request);
        buf.advance(len);
        return head.map(Some);
    }
}

/// Builds the [`Head`] from the frozen head bytes and the header spans.
fn head_from(
    raw: &[u8],
    spans: &[(u32, u32, u32, u32)],
    status: u16,
    minor: u8,
    head_request: bool,
) -> Result<Head, Error> {
    let mut headers = Vec::with_capacity(raw.len());
    let mut date = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut length: Option<u64> = None;
    let keep_length = head_request || status == 304;
    // Fields the `Connection` header names (rare: allocated only then).
    let mut listed: Vec<&[u8]> = Vec::new();
    for &(ns, ne, vs, ve) in spans {
        let (ns, ne, vs, ve) = (ns as usize, ne as usize, vs as usize, ve as usize);
        let (Some(name), Some(value)) = (raw.get(ns..ne), raw.get(vs..ve)) else {
            return Err(Error::Malformed("header position"));
        };
        // httparse admitted the name (a token) and the value (no CR, LF
        // or NUL), so the line may be written again as it is.
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
            listed.extend(hdr::connection_options(value));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only `chunked`, once: a body in another coding could not be
            // passed on without its (hop-by-hop) `Transfer-Encoding`.
            if transfer_encoding || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Error::Malformed("transfer coding other than chunked"));
            }
            transfer_encoding = true;
            chunked_last = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // `5` or `5, 5` (a repeated field folded); differing values or
            // anything not a number is malformed (RFC 9112 section 6.3).
            for part in value.split(|&b| b == b',') {
                let n =
                    parse_decimal(part.trim_ascii()).ok_or(Error::Malformed("content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::Malformed("content-length"));
                }
                length = Some(n);
            }
            if !keep_length {
                continue;
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            date = true;
        }
        if hdr::is_hop_by_hop(name) {
            continue;
        }
        hdr::push(&mut headers, name, value);
    }
    hdr::remove_named(&mut headers, &listed);
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if transfer_encoding {
        if chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let persistent = if minor == 0 {
        keep_alive_token && !close
    } else {
        !close
    };
    // Both framings at once is a smuggling vector: answer, then close.
    let keep_alive =
        persistent && framing != Framing::UntilClose && !(transfer_encoding && length.is_some());
    Ok(Head {
        status,
        headers,
        date,
        framing,
        keep_alive,
    })
}

/// A decimal number of at most 19 digits.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Where a chunked body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (bytes seen).
    Trailers(usize),
    /// The body is over.
    End,
}

/// What [`BodyDecoder::next`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// The next bytes of the body (taken out of the buffer, not copied).
    Data(Bytes),
    /// Nothing yet: read more.
    More,
    /// The body is over (bytes after it stay in the buffer).
    Done,
}

/// Reads a body from the connection's read buffer, in as many steps as
/// the bytes arrive: whole ([`BodyDecoder::decode`], up to a limit) or
/// piece by piece as it streams through ([`BodyDecoder::next`]).
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    framing: Framing,
    /// `Length`: bytes still to come.
    remaining: u64,
    chunk: Chunk,
    out: BytesMut,
    max: usize,
}

impl BodyDecoder {
    /// A decoder for `framing`, refusing bodies over `max` bytes.
    pub(crate) fn new(framing: Framing, max: usize) -> Self {
        Self {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size,
            out: BytesMut::new(),
            max,
        }
    }

    /// The framing it decodes.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// Consumes what it can of `buf`; the whole body once it is complete
    /// (bytes after it stay in `buf`). `eof`: no more bytes will come.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Bytes>, Error> {
        if let Framing::Length(_) = self.framing
            && self.remaining > (self.max - self.out.len()) as u64
        {
            return Err(Error::TooLarge);
        }
        loop {
            match self.next(buf, eof)? {
                Piece::Data(b) => {
                    if b.len() > self.max - self.out.len() {
                        return Err(Error::TooLarge);
                    }
                    if !self.out.is_empty() {
                        self.out.extend_from_slice(&b);
                    } else if self.remaining == 0 && matches!(self.framing, Framing::Length(_)) {
                        // The usual case: the whole body in one piece.
                        return Ok(Some(b));
                    } else {
                        match b.try_into_mut() {
                            Ok(m) => self.out = m,
                            Err(b) => self.out.extend_from_slice(&b),
                        }
                    }
                }
                Piece::More => return Ok(None),
                Piece::Done => return Ok(Some(self.out.split().freeze())),
            }
        }
    }

    /// The next piece of the body in `buf`, for a body streamed through
    /// (no copy; nothing kept). `eof`: no more bytes will come. A chunk
    /// whose size is over the decoder's limit is too large.
    pub(crate) fn next(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Piece, Error> {
        match self.framing {
            Framing::Empty => Ok(Piece::Done),
            Framing::Length(_) => {
                if self.remaining == 0 {
                    return Ok(Piece::Done);
                }
                if buf.is_empty() {
                    return piece_more(eof);
                }
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.remaining -= take as u64;
                Ok(Piece::Data(buf.split_to(take).freeze()))
            }
            Framing::Chunked => self.next_chunked(buf, eof),
            Framing::UntilClose => {
                if !buf.is_empty() {
                    Ok(Piece::Data(buf.split().freeze()))
                } else if eof {
                    Ok(Piece::Done)
                } else {
                    Ok(Piece::More)
                }
            }
        }
    }

    fn next_chunked(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Piece, Error> {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return piece_more(eof);
                    };
                    let size = parse_chunk_size(&line)?;
                    if size > (self.max - self.out.len()) as u64 {
                        return Err(Error::TooLarge);
                    }
                    self.chunk = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return piece_more(eof);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Piece::Data(buf.split_to(take).freeze()));
                }
                Chunk::DataEnd => {
                    let Some(line) = take_line(buf, 2)? else {
                        return piece_more(eof);
                    };
                    if !line.is_empty() {
                        return Err(Error::Malformed("chunk data longer than its size"));
                    }
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS.saturating_sub(seen))? else {
                        return piece_more(eof);
                    };
                    if line.is_empty() {
                        self.chunk = Chunk::End;
                        return Ok(Piece::Done);
                    }
                    self.chunk = Chunk::Trailers(seen + line.len() + 2);
                }
                Chunk::End => return Ok(Piece::Done),
            }
        }
    }
}

/// Incomplete: wait for more bytes, unless none will come.
fn piece_more(eof: bool) -> Result<Piece, Error> {
    if eof {
        Err(Error::Closed)
    } else {
        Ok(Piece::More)
    }
}

/// Removes one line (LF or CRLF ended) from the front of `buf` and returns
/// it without its end; `None` if no line end came yet. A line longer than
/// `max` is malformed.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, Error> {
    match buf.iter().take(max + 2).position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1).freeze();
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > max + 1 => Err(Error::Malformed("line too long")),
        None => Ok(None),
    }
}

/// `1a;ext=v` → 26: hex digits (at most 16), then optional extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Malformed("chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(Error::Malformed("chunk size"));
    }
    let mut n = 0u64;
    for &b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        n = (n << 4) | u64::from(d);
    }
    Ok(n)
}

/// Limits of one exchange.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_head: usize,
    /// The most of a response body read before the answer goes on: a
    /// larger body streams ([`Response::rest`]).
    pub(crate) buffer: usize,
}

/// A response read up to the buffer limit.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) head: Head,
    /// The whole body (empty when it streams).
    pub(crate) body: Bytes,
    /// The body went past the buffer limit: what was read of it, and the
    /// decoder that reads the rest from the connection.
    pub(crate) rest: Option<(VecDeque<Bytes>, BodyDecoder)>,
}

/// Writes `request` (then `body`, if the caller kept it apart) and reads
/// the response: see [`read_response`].
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    request: &[u8],
    body: Option<&[u8]>,
    head_request: bool,
    limits: Limits,
) -> Result<Response, Error> {
    io.write_all(request).await.map_err(|_| Error::Closed)?;
    if let Some(b) = body {
        io.write_all(b).await.map_err(|_| Error::Closed)?;
    }
    read_response(io, rbuf, head_request, limits).await
}

/// Reads a response: the head, and the body up to `limits.buffer`
/// (beyond it, the rest is left to stream). Bytes after a whole response
/// stay in `rbuf` (an upstream that sent them is not to be trusted with
/// another request).
pub(crate) async fn read_response<S: AsyncRead + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    head_request: bool,
    limits: Limits,
) -> Result<Response, Error> {
    let head = loop {
        if let Some(h) = parse_head(rbuf, head_request, limits.max_head)? {
            break h;
        }
        if fill(io, rbuf).await? == 0 {
            return Err(Error::Closed);
        }
    };
    let mut decoder = BodyDecoder::new(head.framing, usize::MAX);
    // The body in one piece (no copy), or copied together.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut total = 0usize;
    let mut eof = false;
    loop {
        match decoder.next(rbuf, eof)? {
            Piece::Data(b) => {
                total = total.saturating_add(b.len());
                if total > limits.buffer {
                    let mut prefix = VecDeque::with_capacity(2);
                    if let Some(f) = first.take() {
                        prefix.push_back(f);
                    } else if !joined.is_empty() {
                        prefix.push_back(joined.split().freeze());
                    }
                    prefix.push_back(b);
                    return Ok(Response {
                        head,
                        body: Bytes::new(),
                        rest: Some((prefix, decoder)),
                    });
                }
                match first.take() {
                    None if joined.is_empty() => first = Some(b),
                    None => joined.extend_from_slice(&b),
                    Some(f) => {
                        joined.reserve(f.len() + b.len());
                        joined.extend_from_slice(&f);
                        joined.extend_from_slice(&b);
                    }
                }
            }
            Piece::More => eof = fill(io, rbuf).await? == 0,
            Piece::Done => {
                let body = first.unwrap_or_else(|| joined.freeze());
                return Ok(Response {
                    head,
                    body,
                    rest: None,
                });
            }
        }
    }
}

/// One read into `rbuf`, growing it by a chunk when nearly full.
async fn fill<S: AsyncRead + Unpin>(io: &mut S, rbuf: &mut BytesMut) -> Result<usize, Error> {
    if rbuf.capacity() - rbuf.len() < 1024 {
        rbuf.reserve(READ_CHUNK);
    }
    io.read_buf(rbuf).await.map_err(|_| Error::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(s: &str) -> BytesMut {
        BytesMut::from(s.as_bytes())
    }

    fn head(s: &str) -> Result<Option<Head>, Error> {
        parse_head(&mut buf(s), false, 64 << 10)
    }

    /// Head and body of a response held whole in `s`; what is left after.
    fn whole(s: &str, head_request: bool) -> Result<(Head, Bytes, BytesMut), Error> {
        let mut b = buf(s);
        let h = parse_head(&mut b, head_request, 64 << 10)?.ok_or(Error::Closed)?;
        let body = BodyDecoder::new(h.framing, 1 << 20)
            .decode(&mut b, false)?
            .ok_or(Error::Closed)?;
        Ok((h, body, b))
    }

    #[test]
    fn a_content_length_body_is_read_and_the_connection_kept() {
        let (h, body, rest) = whole(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Name: e1\r\n\r\nhello",
            false,
        )
        .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers, b"x-name: e1\r\n");
        assert_eq!(&body[..], b"hello");
        assert!(rest.is_empty());
    }

    #[test]
    fn a_chunked_body_is_decoded_and_its_trailers_dropped() {
        let (h, body, rest) = whole(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        assert!(h.headers.is_empty());
        assert_eq!(&body[..], b"hello, world");
        assert!(rest.is_empty());
    }

    #[test]
    fn a_chunked_body_arriving_byte_by_byte_is_decoded() {
        let wire = b"1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        let mut d = BodyDecoder::new(Framing::Chunked, 1 << 20);
        let mut b = BytesMut::new();
        let mut got = None;
        for (i, &byte) in wire.iter().enumerate() {
            b.extend_from_slice(&[byte]);
            match d.decode(&mut b, false).unwrap() {
                Some(body) => {
                    assert_eq!(i, wire.len() - 1, "complete only at the last byte");
                    got = Some(body);
                }
                None => assert!(i < wire.len() - 1),
            }
        }
        assert_eq!(&got.unwrap()[..], b"abcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn a_content_length_body_in_pieces_is_joined() {
        let mut d = BodyDecoder::new(Framing::Length(6), 1 << 20);
        let mut b = buf("abc");
        assert_eq!(d.decode(&mut b, false).unwrap(), None);
        assert!(b.is_empty());
        b.extend_from_slice(b"defNEXT");
        assert_eq!(&d.decode(&mut b, false).unwrap().unwrap()[..], b"abcdef");
        assert_eq!(&b[..], b"NEXT");
    }

    #[test]
    fn responses_without_a_body_end_at_their_head() {
        for (s, head_request) in [
            ("HTTP/1.1 204 No Content\r\n\r\n", false),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true),
        ] {
            let (h, body, rest) = whole(s, head_request).unwrap();
            assert_eq!(h.framing, Framing::Empty, "{s}");
            assert!(body.is_empty());
            assert!(rest.is_empty());
            assert!(h.keep_alive);
        }
    }

    #[test]
    fn informational_heads_are_skipped_and_101_refused() {
        let (h, body, _) = whole(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
             HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            false,
        )
        .unwrap();
        assert_eq!(h.status, 201);
        assert!(hdr::get(&h.headers, "link").is_none());
        assert_eq!(&body[..], b"ok");
        assert_eq!(
            head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n").unwrap_err(),
            Error::Upgrade
        );
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(head("").unwrap().is_none());
    }

    #[test]
    fn a_head_over_the_limit_is_refused() {
        let big = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(100));
        assert_eq!(
            parse_head(&mut buf(&big), false, 64).unwrap_err(),
            Error::TooLarge
        );
    }

    #[test]
    fn connection_close_is_seen_in_any_case() {
        let (h, ..) = whole(
            "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!h.keep_alive);
        assert!(hdr::get(&h.headers, "connection").is_none());
    }

    #[test]
    fn http_1_0_keeps_the_connection_only_when_asked() {
        let (h, ..) = whole("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
        let (h, ..) = whole(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn a_body_without_length_runs_until_close() {
        let mut b = buf("HTTP/1.1 200 OK\r\n\r\nsome");
        let h = parse_head(&mut b, false, 1 << 10).unwrap().unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
        let mut d = BodyDecoder::new(h.framing, 1 << 20);
        assert_eq!(d.decode(&mut b, false).unwrap(), None);
        b.extend_from_slice(b" more");
        assert_eq!(&d.decode(&mut b, true).unwrap().unwrap()[..], b"some more");
    }

    #[test]
    fn a_truncated_body_is_a_closed_connection() {
        let mut d = BodyDecoder::new(Framing::Length(10), 1 << 20);
        assert_eq!(
            d.decode(&mut buf("short"), true).unwrap_err(),
            Error::Closed
        );
        let mut d = BodyDecoder::new(Framing::Chunked, 1 << 20);
        assert_eq!(
            d.decode(&mut buf("5\r\nab"), true).unwrap_err(),
            Error::Closed
        );
    }

    #[test]
    fn pipelined_leftovers_stay_in_the_buffer() {
        let (_, body, rest) = whole(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
            false,
        )
        .unwrap();
        assert_eq!(&body[..], b"ok");
        assert_eq!(&rest[..], b"HTTP/1.1 200 OK\r\n");
        let (_, body, rest) = whole(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nextra",
            false,
        )
        .unwrap();
        assert_eq!(&body[..], b"ok");
        assert_eq!(&rest[..], b"extra");
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let bad = [
            "HTTP/2 200 OK\r\n\r\n",
            "hello\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ];
        for s in bad {
            assert!(
                matches!(head(s), Err(Error::Malformed(_))),
                "{s:?}: {:?}",
                head(s)
            );
        }
        for body in [
            "zz\r\nhello\r\n0\r\n\r\n",
            "\r\n",
            "fffffffffffffffff\r\n",
            "2\r\nhello\r\n0\r\n\r\n",
            "5 x\r\nhello\r\n",
        ] {
            let mut d = BodyDecoder::new(Framing::Chunked, 1 << 20);
            assert!(
                matches!(d.decode(&mut buf(body), false), Err(Error::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let mut d = BodyDecoder::new(Framing::Length(11), 10);
        assert_eq!(d.decode(&mut buf(""), false).unwrap_err(), Error::TooLarge);
        let mut d = BodyDecoder::new(Framing::Chunked, 10);
        assert_eq!(
            d.decode(&mut buf("6\r\nabcdef\r\n6\r\n"), false)
                .unwrap_err(),
            Error::TooLarge
        );
        let mut d = BodyDecoder::new(Framing::UntilClose, 3);
        assert_eq!(
            d.decode(&mut buf("abcd"), false).unwrap_err(),
            Error::TooLarge
        );
    }

    #[test]
    fn both_framings_at_once_use_chunked_and_close_the_connection() {
        let (h, body, _) = whole(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(&body[..], b"ok");
        assert!(!h.keep_alive);
    }

    #[test]
    fn an_exchange_writes_once_and_reads_a_response_split_across_reads() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64);
            let upstream = async {
                let mut got = vec![0u8; 18];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
                for part in [
                    "HTTP/1.1 200 OK\r\nTransfer-",
                    "Encoding: chunked\r\n\r\n3\r",
                    "\nabc\r\n0\r\n\r\n",
                ] {
                    server.write_all(part.as_bytes()).await.unwrap();
                    tokio::task::yield_now().await;
                }
                server
            };
            let mut rbuf = BytesMut::new();
            let limits = Limits {
                max_head: 1 << 10,
                buffer: 1 << 10,
            };
            let (r, _server) = tokio::join!(
                exchange(
                    &mut client,
                    &mut rbuf,
                    b"GET / HTTP/1.1\r\n\r\n",
                    None,
                    false,
                    limits
                ),
                upstream
            );
            let r = r.unwrap();
            assert_eq!(r.head.status, 200);
            assert_eq!(&r.body[..], b"abc");
            assert!(r.rest.is_none());
            assert!(rbuf.is_empty());
        });
    }

    #[test]
    fn an_upstream_closing_mid_response_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(1024);
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await
                .unwrap();
            drop(server);
            let mut rbuf = BytesMut::new();
            let limits = Limits {
                max_head: 1 << 10,
                buffer: 1 << 10,
            };
            let r = exchange(&mut client, &mut rbuf, b"", None, false, limits).await;
            assert_eq!(r.unwrap_err(), Error::Closed);
        });
    }
}
