//! Entry points for the fuzz targets in `fuzz/` (`cargo fuzz`): the
//! HTTP/1.1 codecs as the proxy runs them, on arbitrary bytes. Not an API;
//! each function must return, whatever the input, without panicking, and
//! the response and chunked decoders must decide the same whether the
//! bytes come whole or split in reads.

use bytes::BytesMut;

use crate::downstream;
use crate::h1::{self, BodyDecoder, Framing};
use crate::msg::ConnInfo;

/// A request as the listener reads it: head, what the head says of the
/// body and connection, the chunked body if any, and the access-log view
/// of a refused request.
pub fn request(data: &[u8]) {
    let mut rbuf = BytesMut::from(data);
    let mut spans = Vec::new();
    let Ok(Some(head)) = downstream::parse_head(&mut rbuf, 64 << 10, &mut spans) else {
        return;
    };
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let _ = downstream::refused(&rbuf, &head, &spans, ConnInfo::new(any, any));
    let Ok(meta) = downstream::meta(&rbuf, &head, &spans) else {
        return;
    };
    if meta.framing == Framing::Chunked {
        let mut rest = rbuf.split_off(head.len);
        let _ = BodyDecoder::new(Framing::Chunked, 1 << 20).decode(&mut rest, true);
    }
}

/// What one way of reading a response ended with (the error's kind, or
/// the status and body).
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Closed,
    Malformed,
    TooLarge,
    Upgrade,
    Answer(u16, bytes::Bytes),
}

fn kind(e: &h1::Error) -> Read {
    match e {
        h1::Error::Closed => Read::Closed,
        h1::Error::Malformed(_) => Read::Malformed,
        h1::Error::TooLarge => Read::TooLarge,
        h1::Error::Upgrade => Read::Upgrade,
    }
}

/// Reads a response from `data` in reads of `step` bytes, as
/// `h1::exchange` reads one from a connection that then closes.
fn read_response(data: &[u8], step: usize, head_request: bool) -> Read {
    const MAX_HEAD: usize = 16 << 10;
    const MAX_BODY: usize = 64 << 10;
    let mut reads = data.chunks(step.max(1));
    let mut buf = BytesMut::new();
    let head = loop {
        match h1::parse_head(&mut buf, head_request, MAX_HEAD) {
            Ok(Some(h)) => break h,
            Ok(None) => match reads.next() {
                Some(r) => buf.extend_from_slice(r),
                None => return Read::Closed,
            },
            Err(e) => return kind(&e),
        }
    };
    let mut decoder = BodyDecoder::new(head.framing, MAX_BODY);
    let mut eof = false;
    loop {
        match decoder.decode(&mut buf, eof) {
            Ok(Some(body)) => return Read::Answer(head.status, body),
            Ok(None) if eof => return Read::Closed,
            Ok(None) => match reads.next() {
                Some(r) => buf.extend_from_slice(r),
                None => eof = true,
            },
            Err(e) => return kind(&e),
        }
    }
}

/// An upstream response, read whole and in reads of a size the first byte
/// chooses: both must end the same way.
pub fn response(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let head_request = first & 0x80 != 0;
    let step = usize::from(first & 0x7f) + 1;
    let whole = read_response(data, data.len(), head_request);
    let split = read_response(data, step, head_request);
    assert_eq!(whole, split, "reads of {step} bytes decide otherwise");
}

/// A chunked body, decoded whole and in reads of a size the first byte
/// chooses: both must end the same way.
pub fn chunked(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(first) + 1;
    let decode = |step: usize| {
        let mut decoder = BodyDecoder::new(Framing::Chunked, 64 << 10);
        let mut buf = BytesMut::new();
        let mut reads = data.chunks(step);
        let mut fed = 0;
        loop {
            let next = reads.next();
            if let Some(r) = next {
                buf.extend_from_slice(r);
                fed += r.len();
            }
            match decoder.decode(&mut buf, next.is_none()) {
                // The body, and how many bytes it took (what follows it
                // is left for the next message).
                Ok(Some(body)) => return Ok((body, fed - buf.len())),
                Ok(None) if next.is_none() => return Err(Read::Closed),
                Ok(None) => {}
                Err(e) => return Err(kind(&e)),
            }
        }
    };
    let (whole, split) = (decode(data.len().max(1)), decode(step));
    assert_eq!(whole, split, "reads of {step} bytes decide otherwise");
    // Streamed piece by piece (no limit), the pieces make the same body.
    let streamed = || {
        let mut decoder = BodyDecoder::new(Framing::Chunked, usize::MAX);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut reads = data.chunks(step);
        let mut fed = 0;
        loop {
            let next = reads.next();
            if let Some(r) = next {
                buf.extend_from_slice(r);
                fed += r.len();
            }
            loop {
                match decoder.next(&mut buf, next.is_none()) {
                    Ok(h1::Piece::Data(b)) => out.extend_from_slice(&b),
                    Ok(h1::Piece::More) => break,
                    Ok(h1::Piece::Done) => {
                        return Ok((bytes::Bytes::from(out), fed - buf.len()));
                    }
                    Err(e) => return Err(kind(&e)),
                }
            }
        }
    };
    if whole != Err(Read::TooLarge) {
        assert_eq!(whole, streamed(), "streamed in reads of {step} bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_entry_points_take_the_seed_messages_and_garbage() {
        for r in [
            &b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n"[..],
            b"POST /c HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"\x00\xff GET",
            b"",
        ] {
            request(r);
        }
        for r in [
            &b"\x03HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"\x0aHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"\x85HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            b"\x01HTTP/1.1 2x0 what\r\n\r\n",
            b"",
        ] {
            response(r);
        }
        chunked(b"\x025;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n");
        chunked(b"");
    }

    /// A head over the limit is too large however it is read, even when a
    /// bad byte lies past the limit (parsed whole, it used to be called
    /// malformed; read in pieces, too large).
    #[test]
    fn a_head_over_the_limit_is_too_large_read_whole_or_in_pieces() {
        let mut data = vec![99u8];
        data.extend_from_slice(b"HTTP/1.1 200 OK\r\nx: ");
        data.extend(std::iter::repeat_n(b'a', 17_000));
        data.extend_from_slice(b"\x7f\r\n\r\n");
        response(&data);
        assert_eq!(read_response(&data[1..], data.len(), false), Read::TooLarge);
    }

    /// The fuzzer's first finding was the harness's: a chunked body read
    /// in small pieces leaves fewer bytes behind it *in the buffer* than
    /// one read whole, as the rest was never read. Bytes taken, not bytes
    /// left, are what must agree.
    #[test]
    fn a_chunked_body_takes_the_same_bytes_read_whole_or_in_pieces() {
        chunked(b"\x05A\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        for step in 1..=20 {
            let mut data = vec![step - 1];
            data.extend_from_slice(b"3\r\nabc\r\n0\r\n\r\nNEXT");
            chunked(&data);
        }
    }
}
