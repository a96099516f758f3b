//! Envoy's response flags: one flag ([`ResponseFlag`]) and the set an
//! answer carries ([`ResponseFlags`]), printed as Envoy's access log
//! prints `%RESPONSE_FLAGS%` — short names, comma-separated, in the bit
//! order of `StreamInfo::ResponseFlag` (`UT,URX`, `UT,DI`), `-` for none.
//! The simulator's counters, the proxy's access log and its stats all
//! print them through this one type.

use std::fmt;

/// Envoy's access-log response flags (the ones meshsim and meshproxy
/// produce), declared in Envoy's bit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ResponseFlag {
    /// UH: no healthy upstream host.
    NoHealthyUpstream,
    /// UT: upstream request timeout (route or per-try).
    UpstreamRequestTimeout,
    /// LR: the connection was reset locally.
    LocalReset,
    /// UR: the upstream reset the stream (an HTTP/2 `RST_STREAM`).
    UpstreamRemoteReset,
    /// UF: upstream connection failure.
    UpstreamConnectionFailure,
    /// UC: the upstream connection closed (FIN or RST) before the response
    /// was complete — Envoy's `ConnectionTermination` reset reason, what an
    /// HTTP/1.1 upstream that goes away gives.
    UpstreamConnectionTermination,
    /// UO: circuit-breaker overflow.
    UpstreamOverflow,
    /// NR: no route.
    NoRouteFound,
    /// DI: a fault delay was injected.
    DelayInjected,
    /// FI: a fault abort was injected.
    FaultInjected,
    /// DC: the downstream connection closed.
    DownstreamConnectionTermination,
    /// URX: retries (or connect attempts) exhausted.
    UpstreamRetryLimitExceeded,
    /// DPE: the downstream request was not valid HTTP (or over limits).
    DownstreamProtocolError,
    /// UPE: the upstream's response was not valid HTTP (502).
    UpstreamProtocolError,
    /// NC: the route's cluster does not exist.
    NoClusterFound,
}

impl ResponseFlag {
    /// Every flag, in Envoy's order.
    pub const ALL: [ResponseFlag; 15] = [
        Self::NoHealthyUpstream,
        Self::UpstreamRequestTimeout,
        Self::LocalReset,
        Self::UpstreamRemoteReset,
        Self::UpstreamConnectionFailure,
        Self::UpstreamConnectionTermination,
        Self::UpstreamOverflow,
        Self::NoRouteFound,
        Self::DelayInjected,
        Self::FaultInjected,
        Self::DownstreamConnectionTermination,
        Self::UpstreamRetryLimitExceeded,
        Self::DownstreamProtocolError,
        Self::UpstreamProtocolError,
        Self::NoClusterFound,
    ];

    /// The short form Envoy logs (`NR`, `UH`, …).
    pub const fn as_str(self) -> &'static str {
        ENVOY_FLAG_ORDER[self as usize]
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Envoy's short response flags in the order its access log prints them
/// (the bit order of `StreamInfo::ResponseFlag`: `UT` before `UF`, `DI`
/// before `URX`, …), the ones meshsim and meshproxy log among them.
pub const ENVOY_FLAG_ORDER: [&str; 15] = [
    "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "DC", "URX", "DPE", "UPE", "NC",
];

/// The response flags of one answer: a set, iterated and printed in
/// Envoy's order whatever order they were added in. Plain data (two
/// bytes), so counting answers by flags allocates nothing.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u16);

impl ResponseFlags {
    /// No flag.
    pub const NONE: Self = Self(0);

    /// The set of one flag.
    #[must_use]
    pub const fn of(flag: ResponseFlag) -> Self {
        Self(1 << flag as u16)
    }

    /// The set with `flag` added.
    #[must_use]
    pub const fn with(self, flag: ResponseFlag) -> Self {
        Self(self.0 | 1 << flag as u16)
    }

    /// Adds `flag`.
    pub fn insert(&mut self, flag: ResponseFlag) {
        *self = self.with(flag);
    }

    /// Adds a flag if there is one.
    pub fn insert_opt(&mut self, flag: Option<ResponseFlag>) {
        if let Some(f) = flag {
            self.insert(f);
        }
    }

    /// Whether `flag` is in the set.
    pub const fn contains(self, flag: ResponseFlag) -> bool {
        self.0 & (1 << flag as u16) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags, in Envoy's order.
    pub fn iter(self) -> impl Iterator<Item = ResponseFlag> {
        ResponseFlag::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }

    /// Writes the comma-separated form into `buf` and returns it (empty
    /// for no flag; at most 47 bytes, every flag included).
    pub fn write_to(self, buf: &mut [u8; 48]) -> &str {
        let mut n = 0;
        for f in self.iter() {
            if n > 0 {
                buf[n] = b',';
                n += 1;
            }
            let s = f.as_str().as_bytes();
            buf[n..n + s.len()].copy_from_slice(s);
            n += s.len();
        }
        // Only ASCII names were written.
        std::str::from_utf8(&buf[..n]).unwrap_or("")
    }
}

/// The comma-separated form, empty for no flag (Envoy prints `-`; the
/// access log writes that itself).
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 48];
        f.write_str(self.write_to(&mut buf))
    }
}

impl fmt::Debug for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseFlags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_in_envoys_order_whatever_order_they_were_added_in() {
        let mut f = ResponseFlags::NONE;
        for flag in [
            ResponseFlag::UpstreamRetryLimitExceeded,
            ResponseFlag::DelayInjected,
            ResponseFlag::UpstreamConnectionFailure,
            ResponseFlag::UpstreamRequestTimeout,
        ] {
            f.insert(flag);
        }
        assert_eq!(f.to_string(), "UT,UF,DI,URX");
        f.insert(ResponseFlag::DelayInjected);
        assert_eq!(f.to_string(), "UT,UF,DI,URX");
        assert_eq!(ResponseFlags::NONE.to_string(), "");
        assert_eq!(
            ResponseFlags::of(ResponseFlag::UpstreamRequestTimeout)
                .with(ResponseFlag::UpstreamRetryLimitExceeded)
                .to_string(),
            "UT,URX"
        );
    }

    #[test]
    fn every_flag_has_its_place_in_envoys_order_and_all_fit_the_buffer() {
        for (i, f) in ResponseFlag::ALL.into_iter().enumerate() {
            assert_eq!(f as usize, i);
            assert_eq!(ENVOY_FLAG_ORDER[i], f.as_str());
        }
        let mut all = ResponseFlags::NONE;
        for f in ResponseFlag::ALL {
            all.insert(f);
        }
        let text = all.to_string();
        assert_eq!(text, ENVOY_FLAG_ORDER.join(","));
        assert!(text.len() <= 47);
    }
}
