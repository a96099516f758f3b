//! The access log: one line per downstream request, on stdout, as text or
//! JSON (or off).
//!
//! Text: `[TIME] "METHOD PATH" STATUS FLAGS UPSTREAM DURATION_MS ATTEMPTS "AUTHORITY"`,
//! with `-` for an empty field, as Envoy's default format writes them:
//!
//! ```text
//! [2026-11-27T23:40:01.123Z] "GET /reviews/1" 503 UO - 0.112 1 "reviews"
//! ```
//!
//! JSON: one object per line with the keys `time`, `method`, `path`,
//! `authority`, `status`, `flags`, `upstream`, `duration_ms`, `attempts`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;

/// Access log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log.
    Off,
    /// Envoy-like text.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for AccessLog {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("expected off, text or json, found \"{s}\"")),
        }
    }
}

/// One request's line.
#[derive(Clone, Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) authority: &'a str,
    pub(crate) status: u16,
    /// Envoy response flags (written comma-separated, `-` for none).
    pub(crate) flags: mesh_engine::ResponseFlags,
    /// The upstream of the last attempt; empty for none.
    pub(crate) upstream: &'a str,
    pub(crate) duration: std::time::Duration,
    pub(crate) attempts: u32,
}

impl Entry<'_> {
    /// The line, without newline.
    pub(crate) fn format(&self, format: AccessLog, time: &str) -> String {
        let ms = self.duration.as_secs_f64() * 1000.0;
        let mut s = String::with_capacity(160);
        let mut buf = [0; 48];
        let flags = self.flags.write_to(&mut buf);
        match format {
            AccessLog::Off => {}
            AccessLog::Text => {
                let dash = |v: &str| {
                    if v.is_empty() {
                        "-".to_owned()
                    } else {
                        v.to_owned()
                    }
                };
                let _ = write!(
                    s,
                    "[{time}] \"{} {}\" {} {} {} {ms:.3} {} \"{}\"",
                    dash(self.method),
                    dash(self.path),
                    self.status,
                    dash(flags),
                    dash(self.upstream),
                    self.attempts,
                    self.authority
                );
            }
            AccessLog::Json => {
                s.push_str("{\"time\":");
                json_str(&mut s, time);
                s.push_str(",\"method\":");
                json_str(&mut s, self.method);
                s.push_str(",\"path\":");
                json_str(&mut s, self.path);
                s.push_str(",\"authority\":");
                json_str(&mut s, self.authority);
                let _ = write!(s, ",\"status\":{},\"flags\":", self.status);
                json_str(&mut s, flags);
                s.push_str(",\"upstream\":");
                json_str(&mut s, self.upstream);
                let _ = write!(
                    s,
                    ",\"duration_ms\":{ms:.3},\"attempts\":{}}}",
                    self.attempts
                );
            }
        }
        s
    }

    /// Writes the line to stdout.
    pub(crate) fn write(&self, format: AccessLog) {
        if format == AccessLog::Off {
            return;
        }
        let mut line = self.format(format, &now_rfc3339());
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// A JSON string literal.
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The wall-clock time as `2026-11-27T23:40:01.123Z` (UTC).
pub(crate) fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let (y, m, d) = civil(secs);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a Unix time, by Howard Hinnant's days-to-civil
/// algorithm.
fn civil(secs: u64) -> (i64, i64, i64) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An HTTP `Date` (IMF-fixdate, RFC 9110 section 5.6.7) of a Unix time:
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = civil(secs);
    let rem = secs % 86_400;
    let text = format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(secs / 86_400 % 7) as usize],
        MONTHS[(m - 1).clamp(0, 11) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let mut out = [b' '; 29];
    let n = text.len().min(29);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &imf_fixdate(1_795_824_000),
            b"Sat, 28 Nov 2026 00:00:00 GMT"
        );
    }

    fn entry() -> Entry<'static> {
        Entry {
            method: "GET",
            path: "/a?\"q\"",
            authority: "echo",
            status: 503,
            flags: mesh_engine::ResponseFlags::of(mesh_engine::ResponseFlag::UpstreamOverflow),
            upstream: "",
            duration: std::time::Duration::from_micros(1500),
            attempts: 1,
        }
    }

    #[test]
    fn text_lines_are_envoy_like_with_dashes_for_empty_fields() {
        assert_eq!(
            entry().format(AccessLog::Text, "T"),
            "[T] \"GET /a?\"q\"\" 503 UO - 1.500 1 \"echo\""
        );
    }

    #[test]
    fn json_lines_escape_strings() {
        assert_eq!(
            entry().format(AccessLog::Json, "T"),
            "{\"time\":\"T\",\"method\":\"GET\",\"path\":\"/a?\\\"q\\\"\",\"authority\":\"echo\",\"status\":503,\"flags\":\"UO\",\"upstream\":\"\",\"duration_ms\":1.500,\"attempts\":1}"
        );
    }

    #[test]
    fn times_are_utc_civil_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_210_096, 7), "2024-02-29T12:34:56.007Z");
    }
}
