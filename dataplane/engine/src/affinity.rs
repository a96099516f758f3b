//! Hash keys for consistent hashing and session affinity (reference §4.7),
//! and the sticky-weights extension.
//!
//! The hash function is named and pinned: xxHash64 with seed 0, as Envoy's
//! hash policies and ring use it, so "same user → same pod" holds against a
//! real Envoy with the same endpoints.

use std::io::Write as _;
use std::net::SocketAddr;

use xxhash_rust::xxh64::{Xxh64, xxh64};

use crate::config::HashKey;
use crate::request::Request;
use crate::rng::mix64;

/// The outcome of hashing one key for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyHash {
    /// The key is absent from the request.
    Absent,
    /// The key's hash.
    Hash(u64),
    /// A cookie that Envoy generates and sets on the response: its value
    /// (16 hex digits when printed) and the hash of that text.
    Generated { hash: u64, cookie: u64 },
}

/// Hashes `key` for `req`; generates a cookie value when the cookie is
/// absent and `ttl` is set, as Envoy does.
pub(crate) fn hash_key(key: &HashKey, req: &Request<'_>) -> KeyHash {
    match key {
        HashKey::Header(name) => header_hash(req, name),
        HashKey::Cookie { name, ttl, .. } => match req.cookie(name) {
            Some(v) => KeyHash::Hash(xxh64(v.as_bytes(), 0)),
            None if ttl.is_some() => {
                let cookie = generated_cookie(req.source, req.destination);
                KeyHash::Generated {
                    hash: xxh64(&hex16(cookie), 0),
                    cookie,
                }
            }
            None => KeyHash::Absent,
        },
        HashKey::SourceIp => match req.source {
            Some(addr) => {
                let mut buf = [0u8; 64];
                let n = write_into(&mut buf, |w| write!(w, "{}", addr.ip()));
                KeyHash::Hash(xxh64(&buf[..n], 0))
            }
            None => KeyHash::Absent,
        },
        HashKey::QueryParameter(name) => match req.query_param(name) {
            Some(v) => KeyHash::Hash(xxh64(v.as_bytes(), 0)),
            None => KeyHash::Absent,
        },
    }
}

/// xxHash64 over all values of the header, sorted and concatenated.
fn header_hash(req: &Request<'_>, name: &str) -> KeyHash {
    let mut values: [&str; 8] = [""; 8];
    let mut n = 0;
    for (k, v) in req.headers {
        if crate::request::same_name(k, name) && n < values.len() {
            values[n] = v;
            n += 1;
        }
    }
    match n {
        0 => KeyHash::Absent,
        1 => KeyHash::Hash(xxh64(values[0].as_bytes(), 0)),
        _ => {
            let vals = &mut values[..n];
            vals.sort_unstable();
            let mut h = Xxh64::new(0);
            for v in vals.iter() {
                h.update(v.as_bytes());
            }
            KeyHash::Hash(h.digest())
        }
    }
}

/// Envoy's generated cookie value: xxHash64 of the downstream remote and
/// local addresses as `ip:port` text, so it is stable per connection.
fn generated_cookie(remote: Option<SocketAddr>, local: Option<SocketAddr>) -> u64 {
    let mut buf = [0u8; 128];
    let n = write_into(&mut buf, |w| {
        if let Some(r) = remote {
            write!(w, "{r}")?;
        }
        if let Some(l) = local {
            write!(w, "{l}")?;
        }
        Ok(())
    });
    xxh64(&buf[..n], 0)
}

/// 16 lowercase hex digits, as Envoy prints a generated cookie.
pub(crate) fn hex16(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[usize::try_from((v >> (60 - 4 * i)) & 0xf).unwrap_or(0)];
    }
    out
}

fn write_into(
    buf: &mut [u8],
    f: impl FnOnce(&mut std::io::Cursor<&mut [u8]>) -> std::io::Result<()>,
) -> usize {
    let mut cursor = std::io::Cursor::new(buf);
    // A full buffer truncates the text; addresses fit in 128 bytes.
    let _ = f(&mut cursor);
    usize::try_from(cursor.position()).unwrap_or(0)
}

/// Envoy's combination of several hash policies: `rotl1(h) XOR next`.
pub(crate) fn combine(prev: Option<u64>, next: u64) -> u64 {
    match prev {
        Some(h) => h.rotate_left(1) ^ next,
        None => next,
    }
}

/// **Extension** (not Envoy): the weighted destination for a key, by weighted
/// rendezvous hashing.
///
/// Each destination `i` scores `-ln(u_i) / w_i`, with `u_i` in (0, 1) derived
/// from the key hash and the destination's own seed; the lowest score wins.
/// This is an exponential race, so destination `i` wins for a share
/// `w_i / Σw` of keys; a key's winner changes only if its own weights change;
/// and raising one weight moves keys only *to* that destination, for any
/// number of destinations (cumulative ranges would shuffle keys between the
/// others).
pub(crate) fn rendezvous(
    key_hash: u64,
    destinations: impl Iterator<Item = (u64, u32)>,
) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, (seed, weight)) in destinations.enumerate() {
        if weight == 0 {
            continue;
        }
        let x = mix64(key_hash ^ seed);
        #[allow(clippy::cast_precision_loss)]
        let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        // libm's pure-Rust `log`, not the platform's: glibc picks an FMA or
        // a non-FMA code path by CPU, and a last-bit difference would move
        // a key on another machine.
        let score = -libm::log(u) / f64::from(weight);
        if best.is_none_or(|(b, _)| score < b) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The per-destination seed of the rendezvous: a hash of its identity.
pub(crate) fn destination_seed(host: &str, subset: Option<&str>) -> u64 {
    let mut h = Xxh64::new(0x6d65_7368_7369_6d00);
    h.update(host.as_bytes());
    h.update(b"|");
    h.update(subset.unwrap_or("").as_bytes());
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex16_prints_sixteen_lowercase_digits() {
        assert_eq!(&hex16(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&hex16(0xff), b"00000000000000ff");
    }

    #[test]
    fn header_values_hash_sorted_and_concatenated() {
        let a = [("x-user", "b"), ("x-user", "a")];
        let b = [("x-user", "ab")];
        let ha = hash_key(
            &HashKey::Header("x-user".into()),
            &Request::get("h", "/").with_headers(&a),
        );
        let hb = hash_key(
            &HashKey::Header("x-user".into()),
            &Request::get("h", "/").with_headers(&b),
        );
        assert_eq!(ha, hb);
    }

    #[test]
    fn a_missing_cookie_is_generated_only_with_a_ttl() {
        let with_ttl = HashKey::Cookie {
            name: "s".into(),
            path: None,
            ttl: Some(std::time::Duration::ZERO),
        };
        let without = HashKey::Cookie {
            name: "s".into(),
            path: None,
            ttl: None,
        };
        let req = Request::get("h", "/").with_source("10.0.0.9:5555".parse().unwrap());
        assert!(matches!(
            hash_key(&with_ttl, &req),
            KeyHash::Generated { .. }
        ));
        assert_eq!(hash_key(&without, &req), KeyHash::Absent);
    }

    #[test]
    fn source_ip_hash_ignores_the_port() {
        let a = Request::get("h", "/").with_source("10.1.2.3:1000".parse().unwrap());
        let b = Request::get("h", "/").with_source("10.1.2.3:2000".parse().unwrap());
        assert_eq!(
            hash_key(&HashKey::SourceIp, &a),
            hash_key(&HashKey::SourceIp, &b)
        );
        assert_eq!(
            hash_key(&HashKey::SourceIp, &a),
            KeyHash::Hash(xxh64(b"10.1.2.3", 0))
        );
    }
}
