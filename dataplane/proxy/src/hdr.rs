//! Header blocks in wire form: `name: value\r\n` lines, names in lower
//! case, as they go out on an HTTP/1.1 connection.
//!
//! Both sides of the proxy speak HTTP/1.1 through their own codecs, so a
//! response's headers travel from the upstream's read buffer to the
//! client's write buffer as one block of bytes, copied once, with no map
//! built per request. The rare edits (a route's header operations) parse
//! the block and write it again.

/// Headers of one connection, never forwarded (RFC 9110 section 7.6.1).
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authenticate",
];

/// Whether `name` (any case) is a hop-by-hop header.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// The field names a `Connection` value lists besides `close` and
/// `keep-alive`: hop-by-hop too, never forwarded (RFC 9110 section 7.6.1).
pub(crate) fn connection_options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"close")
                && !t.eq_ignore_ascii_case(b"keep-alive")
        })
}

/// Removes every field of the block named in `names` (any case).
pub(crate) fn remove_named(block: &mut Vec<u8>, names: &[&[u8]]) {
    if names.is_empty() {
        return;
    }
    let mut kept = Vec::with_capacity(block.len());
    for (n, v) in lines(block) {
        if !names.iter().any(|x| n.eq_ignore_ascii_case(x)) {
            push(&mut kept, n, v);
        }
    }
    *block = kept;
}

/// Appends `name: value\r\n`, the name in lower case.
pub(crate) fn push(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.reserve(name.len() + value.len() + 4);
    block.extend(name.iter().map(u8::to_ascii_lowercase));
    block.extend_from_slice(b": ");
    block.extend_from_slice(value);
    block.extend_from_slice(b"\r\n");
}

/// The (name, value) pairs of a block written by [`push`].
pub(crate) fn lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii_start()))
    })
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The first value of `name` (lower case) in the block.
#[cfg(test)]
pub(crate) fn get<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    lines(block)
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v)
}

/// A valid field value to write: no CR, LF or NUL (RFC 9110 section 5.5).
pub(crate) fn valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// A valid field name: a non-empty token (RFC 9110 section 5.1).
pub(crate) fn valid_name(n: &[u8]) -> bool {
    !n.is_empty()
        && n.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A route's header operations on a block, in Istio's order: `set`
/// replaces every field of the name, `add` appends one, `remove` drops
/// every field of the name. Invalid names or values are skipped.
pub(crate) fn apply(
    block: &mut Vec<u8>,
    set: &[(String, String)],
    add: &[(String, String)],
    remove: &[String],
) {
    if set.is_empty() && add.is_empty() && remove.is_empty() {
        return;
    }
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = lines(block)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    let valid = |k: &str, v: &str| valid_name(k.as_bytes()) && valid_value(v.as_bytes());
    for (k, v) in set {
        if !valid(k, v) {
            continue;
        }
        let k = k.to_ascii_lowercase().into_bytes();
        match fields.iter().position(|(n, _)| *n == k) {
            Some(i) => {
                fields[i].1 = v.clone().into_bytes();
                let mut j = i + 1;
                while j < fields.len() {
                    if fields[j].0 == k {
                        fields.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => fields.push((k, v.clone().into_bytes())),
        }
    }
    for (k, v) in add {
        if valid(k, v) {
            fields.push((k.to_ascii_lowercase().into_bytes(), v.clone().into_bytes()));
        }
    }
    for k in remove {
        let k = k.to_ascii_lowercase();
        fields.retain(|(n, _)| *n != k.as_bytes());
    }
    block.clear();
    for (n, v) in &fields {
        push(block, n, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, v) in pairs {
            push(&mut b, n.as_bytes(), v.as_bytes());
        }
        b
    }

    #[test]
    fn names_are_written_in_lower_case_and_read_back_in_order() {
        let b = block(&[("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")]);
        assert_eq!(b, b"content-type: text/plain\r\nx-a: 1\r\nx-a: 2\r\n");
        let got: Vec<_> = lines(&b).collect();
        assert_eq!(
            got,
            vec![
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"x-a", b"1"),
                (b"x-a", b"2")
            ]
        );
        assert_eq!(get(&b, "x-a"), Some(&b"1"[..]));
        assert_eq!(get(&b, "x-b"), None);
    }

    #[test]
    fn set_replaces_every_field_add_appends_and_remove_drops_all() {
        let mut b = block(&[("x-a", "1"), ("x-b", "2"), ("x-a", "3"), ("x-c", "4")]);
        apply(
            &mut b,
            &[("X-A".into(), "new".into()), ("x-d".into(), "5".into())],
            &[("x-b".into(), "6".into())],
            &["X-C".into()],
        );
        assert_eq!(
            b,
            block(&[("x-a", "new"), ("x-b", "2"), ("x-d", "5"), ("x-b", "6")])
        );
    }

    #[test]
    fn invalid_names_and_values_are_not_written() {
        let mut b = Vec::new();
        apply(
            &mut b,
            &[
                ("bad name".into(), "v".into()),
                ("x-ok".into(), "a\r\nb".into()),
            ],
            &[("x-fine".into(), "v".into())],
            &[],
        );
        assert_eq!(b, block(&[("x-fine", "v")]));
    }

    #[test]
    fn fields_a_connection_header_names_are_removed() {
        let names: Vec<&[u8]> = connection_options(b"keep-alive, X-Hop ,close,,te").collect();
        assert_eq!(names, vec![&b"X-Hop"[..], b"te"]);
        let mut b = block(&[("x-hop", "1"), ("x-keep", "2"), ("X-HOP", "3")]);
        remove_named(&mut b, &names);
        assert_eq!(b, block(&[("x-keep", "2")]));
    }

    #[test]
    fn hop_by_hop_names_match_in_any_case() {
        assert!(is_hop_by_hop(b"Connection"));
        assert!(is_hop_by_hop(b"transfer-encoding"));
        assert!(!is_hop_by_hop(b"content-length"));
    }
}
