//! Durations as Istio writes them: `100ms`, `1.5s`, `10s`, `3m`, `1h`, `1h30m`.
//!
//! Istio reads `google.protobuf.Duration` fields through Go's duration syntax:
//! one or more decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`, `s`,
//! `m`, `h`). We accept exactly that, with no sign (Istio forbids negative
//! durations everywhere the engine uses them).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A duration read from a config file, remembering how it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioDuration {
    /// The parsed value.
    pub value: Duration,
    /// The text as written, for error messages and config dumps.
    pub text: String,
}

impl IstioDuration {
    /// The parsed duration.
    pub fn get(&self) -> Duration {
        self.value
    }
}

/// Parses Go/Istio duration text. Returns what was wrong on failure.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("an empty duration".into());
    }
    if s.starts_with('-') {
        return Err("a negative duration".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("a number without a unit in `{text}`"))?;
        if num_len == 0 {
            return Err(format!("a unit without a number in `{text}`"));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(format!(
                    "an unknown unit `{other}` in `{text}` (use ns, us, ms, s, m or h)"
                ));
            }
        };
        total +=
            scaled(num, unit_nanos).ok_or_else(|| format!("a malformed number in `{text}`"))?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| format!("`{text}` is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// `num` (decimal, maybe with a fraction) times `unit_nanos`, exactly.
fn scaled(num: &str, unit_nanos: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = int_val.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac.bytes() {
        scale /= 10;
        total += u128::from(digit - b'0') * scale;
    }
    Some(total)
}

/// Formats a duration the way Istio users write it (`30s`, `100ms`, `1.5s`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos % 3_600_000_000_000 == 0 {
        return format!("{}h", nanos / 3_600_000_000_000);
    }
    if nanos % 60_000_000_000 == 0 {
        return format!("{}m", nanos / 60_000_000_000);
    }
    if nanos % 1_000_000_000 == 0 {
        return format!("{}s", nanos / 1_000_000_000);
    }
    if nanos % 1_000_000 == 0 {
        return format!("{}ms", nanos / 1_000_000);
    }
    if nanos % 1_000 == 0 {
        return format!("{}us", nanos / 1_000);
    }
    format!("{nanos}ns")
}

impl<'de> Deserialize<'de> for IstioDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IstioDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration string such as \"100ms\", \"1.5s\", \"10s\", \"3m\" or \"1h\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IstioDuration, E> {
                parse_duration(v)
                    .map(|value| IstioDuration {
                        value,
                        text: v.to_owned(),
                    })
                    .map_err(|why| {
                        E::custom(format!(
                            "expected a duration such as \"100ms\", \"10s\" or \"3m\", found {why}"
                        ))
                    })
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_istio_users_write() {
        let cases = [
            ("100ms", 100_000_000u64),
            ("1.5s", 1_500_000_000),
            ("10s", 10_000_000_000),
            ("3m", 180_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("250us", 250_000),
            ("0s", 0),
            ("0", 0),
            (".5s", 500_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_negative_unitless_and_unknown_units() {
        for bad in ["-1s", "10", "10x", "s", "", "1..2s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_back_to_the_shortest_unit() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(180)), "3m");
    }
}
