//! The engine's own clock type.
//!
//! `Time` is nanoseconds since an epoch the caller chooses (the start of a
//! simulated run, or the moment a proxy started). The engine never reads a
//! clock: every input that depends on time takes `now: Time`, and the engine
//! asserts (in debug builds) that `now` never goes backwards between calls.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: nanoseconds since the caller's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The epoch itself.
    pub const ZERO: Self = Self(0);

    /// A time `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// A time `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis * 1_000_000)
    }

    /// A time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs * 1_000_000_000)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        // Saturate rather than wrap: a duration of "effectively forever"
        // (u64::MAX ns is 584 years) must not turn into a time in the past.
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(nanos))
    }
}

impl Sub for Time {
    type Output = Duration;
    fn sub(self, rhs: Self) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Time {
    /// Seconds with millisecond precision, as the simulator prints times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1_000_000;
        write!(f, "{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// Debug-time guard that time only moves forward, as TigerBeetle's
/// `monotonic_guard` and quinn's "time never goes backwards" rule.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MonotonicGuard {
    last: Time,
}

impl MonotonicGuard {
    pub(crate) fn observe(&mut self, now: Time) {
        debug_assert!(
            now >= self.last,
            "time went backwards: {}ns after {}ns",
            now.as_nanos(),
            self.last.as_nanos()
        );
        if now > self.last {
            self.last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_huge_duration_saturates_instead_of_wrapping() {
        let t = Time::from_secs(1) + Duration::MAX;
        assert_eq!(t.as_nanos(), u64::MAX);
    }

    #[test]
    fn displays_seconds_with_milliseconds() {
        assert_eq!(Time::from_millis(12_345).to_string(), "12.345s");
    }
}
