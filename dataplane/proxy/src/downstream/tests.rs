//! The listener side's parsing and limits.

use super::*;

fn parsed(s: &str) -> Result<Option<(Head, BytesMut, Vec<Span>)>, u16> {
    let mut b = BytesMut::from(s.as_bytes());
    let mut spans = Vec::new();
    match parse_head(&mut b, 1024, &mut spans) {
        Ok(h) => Ok(h.map(|h| (h, b, spans))),
        Err(End::Answer(s, _)) => Err(s),
        Err(_) => Err(0),
    }
}

fn framing(s: &str) -> Result<Framing, u16> {
    let (h, b, spans) = parsed(s).unwrap().unwrap();
    match meta(&b, &h, &spans) {
        Ok(m) => Ok(m.framing),
        Err(End::Answer(s, _)) => Err(s),
        Err(_) => Err(0),
    }
}

#[test]
fn a_head_is_parsed_in_place_with_names_lower_cased() {
    let (h, b, spans) = parsed("GET /a?b=1 HTTP/1.1\r\nHost: echo\r\nX-User: Ann\r\n\r\nrest")
        .unwrap()
        .unwrap();
    assert_eq!(h.len, b.len() - 4);
    assert_eq!(&b[h.target.0 as usize..h.target.1 as usize], b"/a?b=1");
    let names: Vec<&[u8]> = spans
        .iter()
        .map(|&(s, e, ..)| &b[s as usize..e as usize])
        .collect();
    assert_eq!(names, vec![&b"host"[..], b"x-user"]);
    let (_, _, vs, ve) = spans[1];
    assert_eq!(&b[vs as usize..ve as usize], b"Ann");
}

#[test]
fn partial_heads_wait_and_oversized_or_malformed_ones_are_refused() {
    assert!(parsed("GET / HTTP/1.1\r\nHost: ec").unwrap().is_none());
    let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(parsed(&big).err(), Some(431));
    let long_partial = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(2000));
    assert_eq!(parsed(&long_partial).err(), Some(431));
    assert_eq!(parsed("THIS IS NOT HTTP\r\n\r\n").err(), Some(400));
}

#[test]
fn body_framing_follows_rfc_9112() {
    assert_eq!(framing("GET / HTTP/1.1\r\n\r\n"), Ok(Framing::Empty));
    assert_eq!(
        framing("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
        Ok(Framing::Length(5))
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
        Ok(Framing::Length(5))
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
        Ok(Framing::Chunked)
    );
    // Codings the proxy cannot decode, or chunked twice: 501.
    for te in ["gzip, chunked", "chunked, chunked", "gzip"] {
        let req = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(framing(&req), Err(501), "{te}");
    }
    assert_eq!(
        framing(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        Err(501)
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
        Err(400)
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        Err(400)
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
        Err(400)
    );
}

#[test]
fn targets_in_absolute_form_carry_their_authority() {
    assert_eq!(split_target("/p?q", "echo"), ("echo", "/p?q"));
    assert_eq!(
        split_target("http://reviews:9080/r/1", "x"),
        ("reviews:9080", "/r/1")
    );
    assert_eq!(split_target("HTTP://reviews", "x"), ("reviews", "/"));
    assert_eq!(split_target("http://reviews?a", "x"), ("reviews", "/"));
    // Not ASCII where a scheme would end: origin form, no panic.
    assert_eq!(split_target("/abcdeéx", "echo"), ("echo", "/abcdeéx"));
}

#[test]
fn decimals_are_written_like_display() {
    for n in [0, 7, 10, 4096, usize::MAX] {
        let mut out = Vec::new();
        push_decimal(&mut out, n);
        assert_eq!(out, n.to_string().into_bytes());
    }
}

#[test]
fn status_codes_are_three_digits() {
    assert_eq!(&itoa3(200), b"200");
    assert_eq!(&itoa3(503), b"503");
    assert_eq!(&itoa3(99), b"099");
}
