//! The request as the engine sees it: borrowed views, nothing owned, so
//! asking for a decision allocates nothing.

use std::net::SocketAddr;

/// An HTTP request arriving at the proxy.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `:method`, e.g. `GET`.
    pub method: &'a str,
    /// `:scheme`, `http` or `https`.
    pub scheme: &'a str,
    /// `:authority` / Host, maybe with `:port`.
    pub authority: &'a str,
    /// `:path`, with the query string if any.
    pub path: &'a str,
    /// Request headers (names in any case).
    pub headers: &'a [(&'a str, &'a str)],
    /// The destination port the caller used, i.e. the listener port whose
    /// route table applies (Istio builds one per port): for a sidecar, the
    /// port of the service called (the authority's port, else the
    /// service's port: [`crate::Engine::destination_port`]); for a gateway,
    /// the server port the request arrived on. A match block with `port: P`
    /// holds only for requests on P. 0 means unknown, for callers of the
    /// engine's API only (the simulator and the proxy always give it): a
    /// sidecar then takes the port of the service's table, and for a gateway
    /// no `port` block holds.
    pub port: u16,
    /// Downstream remote address (the caller), for `useSourceIp` and cookies.
    pub source: Option<SocketAddr>,
    /// Downstream local address (the original destination), for generated
    /// cookies and `PASSTHROUGH`.
    pub destination: Option<SocketAddr>,
    /// The Envoy worker thread that handles the request (the one that
    /// accepted its connection), below [`crate::EngineOptions::workers`]:
    /// each worker has its own load-balancer state.
    pub worker: u32,
}

impl<'a> Request<'a> {
    /// A plain `GET http://authority/path` with no headers.
    pub fn get(authority: &'a str, path: &'a str) -> Self {
        Self {
            method: "GET",
            scheme: "http",
            authority,
            path,
            headers: &[],
            port: 0,
            source: None,
            destination: None,
            worker: 0,
        }
    }

    /// The same request with these headers.
    #[must_use]
    pub fn with_headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }

    /// The same request on this worker.
    #[must_use]
    pub fn on_worker(mut self, worker: u32) -> Self {
        self.worker = worker;
        self
    }

    /// The same request from this source address.
    #[must_use]
    pub fn with_source(mut self, source: SocketAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The first value of a header whose lowercase name is `lower`.
    pub(crate) fn header_lower(&self, lower: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| same_name(n, lower))
            .map(|(_, v)| *v)
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &'a str {
        // HTTP request paths carry no fragment (clients strip `#...`), so
        // only `?` ends the path. A plain loop beats memchr on short paths.
        match self.path.bytes().position(|b| b == b'?') {
            Some(i) => &self.path[..i],
            None => self.path,
        }
    }

    /// The first value of a query parameter (raw, not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        let q = self.path.split_once('?')?.1;
        let q = q.split('#').next().unwrap_or(q);
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The value of a cookie, unquoted, from any `cookie` header.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k.trim() == name).then(|| {
                    let v = v.trim();
                    v.strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .unwrap_or(v)
                })
            })
    }

    /// The authority's host, without port.
    pub fn host(&self) -> &'a str {
        host_of(self.authority)
    }
}

/// Whether header name `a` (any case) is `lower` (lowercase). A plain loop:
/// names are short, and a libc `memcmp` call costs more than the compare.
pub(crate) fn same_name(a: &str, lower: &str) -> bool {
    a.len() == lower.len()
        && a.bytes()
            .zip(lower.bytes())
            .all(|(x, y)| x.to_ascii_lowercase() == y)
}

/// `host:port` → `host`, also for `[v6]:port`.
pub(crate) fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.bytes().rposition(|b| b == b':') {
        Some(i) if authority.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) => &authority[..i],
        _ => authority,
    }
}

/// The port an authority names (`host:9080`, `[v6]:9080`), if any.
pub(crate) fn port_of(authority: &str) -> Option<u16> {
    let rest = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1,
        None => authority,
    };
    let (_, port) = rest.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_query_params_and_hosts() {
        let headers = [("Cookie", "a=1; user=\"u42\""), ("x-id", "7")];
        let r = Request::get("reviews:9080", "/p?x=1&y=two#frag").with_headers(&headers);
        assert_eq!(r.cookie("user"), Some("u42"));
        assert_eq!(r.cookie("b"), None);
        assert_eq!(r.query_param("y"), Some("two"));
        assert_eq!(r.query_param("z"), None);
        assert_eq!(r.path_only(), "/p");
        assert_eq!(r.host(), "reviews");
        assert_eq!(r.header("X-ID"), Some("7"));
        assert_eq!(host_of("[::1]:80"), "::1");
    }

    #[test]
    fn the_port_of_an_authority_is_its_digits_after_the_last_colon() {
        assert_eq!(port_of("reviews:9080"), Some(9080));
        assert_eq!(port_of("[::1]:80"), Some(80));
        for none in [
            "reviews",
            "reviews:",
            "reviews:x1",
            "reviews:70000",
            "reviews:0",
            "[::1]",
        ] {
            assert_eq!(port_of(none), None, "{none}");
        }
    }
}
