//! Writing a run directory, row by row as the run goes, so memory stays
//! flat in the run's length.

use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use crate::{
    CALLS_COLUMNS, CallRow, EVENTS_COLUMNS, EventRow, SUMMARY_COLUMNS, Summary, TIMESERIES_COLUMNS,
    WindowRow,
};

type Out = BufWriter<File>;

fn to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

fn open(dir: &Path, name: &str, header: &[&str], row: &mut Vec<u8>) -> io::Result<Out> {
    let file = File::create(dir.join(name))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    row.clear();
    for h in header {
        text(row, h);
    }
    end(row);
    out.write_all(row)?;
    Ok(out)
}

/// Streams the rows of one run into its directory: `timeseries.csv`,
/// `calls.csv` and `events.csv` as they come, then `summary.csv` and
/// `experiment.toml` at [`RunWriter::finish`]. Rows are written in the order
/// given (the caller gives them in time order). Writing a row allocates
/// nothing.
///
/// The rows are laid out here rather than by `csv::Writer`, whose per-field
/// state machine and `write!` for numbers were most of a row's cost: the
/// text is byte for byte what `csv::Writer` with its default dialect wrote
/// (`,` between fields, `\n` after a row, a text field quoted only when it
/// holds `,`, `"`, `\r` or `\n`, with `"` doubled; numbers never need
/// quotes). The tests hold the two side by side.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    timeseries: Out,
    calls: Out,
    events: Out,
    /// Scratch: the row being laid out.
    row: Vec<u8>,
}

impl RunWriter {
    /// Creates `dir` (and its parents) and the CSV files with their headers.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut row = Vec::with_capacity(256);
        Ok(Self {
            dir: dir.to_path_buf(),
            timeseries: open(dir, "timeseries.csv", &TIMESERIES_COLUMNS, &mut row)?,
            calls: open(dir, "calls.csv", &CALLS_COLUMNS, &mut row)?,
            events: open(dir, "events.csv", &EVENTS_COLUMNS, &mut row)?,
            row,
        })
    }

    /// The directory written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One `timeseries.csv` row.
    pub fn window(&mut self, r: &WindowRow<&str>) -> io::Result<()> {
        let b = &mut self.row;
        b.clear();
        secs(b, r.time_ns);
        text(b, r.endpoint);
        text(b, r.service);
        text(b, r.version);
        for n in [r.requests, r.successes, r.errors] {
            int(b, n);
        }
        ms(b, r.latency_ms_p50);
        ms(b, r.latency_ms_p99);
        int(b, u64::from(r.ejected_by));
        int(b, u64::from(r.active_requests));
        end(b);
        self.timeseries.write_all(b)
    }

    /// One `calls.csv` row.
    pub fn call(&mut self, r: &CallRow<&str>) -> io::Result<()> {
        let b = &mut self.row;
        let c = &r.counts;
        b.clear();
        secs(b, r.time_ns);
        text(b, r.source);
        text(b, r.host);
        for n in [
            c.requests,
            c.successes,
            c.errors_4xx,
            c.errors_5xx,
            c.overflow,
            c.fault_aborts,
            c.timeouts,
            c.app_timeouts,
        ] {
            int(b, n);
        }
        ms(b, r.latency_ms_p50);
        ms(b, r.latency_ms_p99);
        end(b);
        self.calls.write_all(b)
    }

    /// One `events.csv` row.
    pub fn event(&mut self, r: &EventRow<&str>) -> io::Result<()> {
        let b = &mut self.row;
        b.clear();
        secs(b, r.time_ns);
        for f in [r.kind, r.proxy, r.endpoint, r.detail] {
            text(b, f);
        }
        end(b);
        self.events.write_all(b)
    }

    /// Flushes what was written so far (readers see whole rows).
    pub fn flush(&mut self) -> io::Result<()> {
        self.timeseries.flush()?;
        self.calls.flush()?;
        self.events.flush()
    }

    /// Flushes the streams and writes `summary.csv` (one row) and, when
    /// given, `experiment.toml`.
    pub fn finish(mut self, summary: &Summary, experiment: Option<&str>) -> io::Result<()> {
        self.flush()?;
        write_summary(&self.dir.join("summary.csv"), &[], [(Vec::new(), summary)])?;
        if let Some(text) = experiment {
            std::fs::write(self.dir.join("experiment.toml"), text)?;
        }
        Ok(())
    }
}

/// Writes a `summary.csv`: `prefix` names the columns before the standard
/// ones (`point` and the swept paths of a sweep; none for one run), and
/// every row gives its prefix values and its summary.
pub fn write_summary<'a>(
    path: &Path,
    prefix: &[String],
    rows: impl IntoIterator<Item = (Vec<String>, &'a Summary)>,
) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut w = csv::Writer::from_path(path).map_err(to_io)?;
    let header = prefix
        .iter()
        .map(String::as_str)
        .chain(SUMMARY_COLUMNS.iter().copied());
    w.write_record(header).map_err(to_io)?;
    for (mut values, summary) in rows {
        values.extend(summary.record());
        w.write_record(&values).map_err(to_io)?;
    }
    w.flush()
}

// Each field is appended with a `,` after it; `end` turns the last `,`
// into the row's `\n`. A row has at least one field (the time), so an empty
// text field is never alone in its row, the one case where `csv::Writer`
// writes `""` for it.

/// Ends the row laid out in `b`.
fn end(b: &mut [u8]) {
    if let Some(last) = b.last_mut() {
        *last = b'\n';
    }
}

/// A text field, quoted as `csv::Writer` quotes it by default: only when it
/// holds a `,`, a `"`, a `\r` or a `\n`, and then with every `"` doubled.
#[inline(always)]
fn text(b: &mut Vec<u8>, s: &str) {
    let s = s.as_bytes();
    if needs_quotes(s) {
        b.push(b'"');
        for (i, part) in s.split(|&c| c == b'"').enumerate() {
            if i > 0 {
                b.extend_from_slice(b"\"\"");
            }
            b.extend_from_slice(part);
        }
        b.push(b'"');
    } else {
        b.extend_from_slice(s);
    }
    b.push(b',');
}

/// Whether `s` holds a byte that makes csv quote a field.
#[inline(always)]
fn needs_quotes(s: &[u8]) -> bool {
    let special = |c: &u8| matches!(c, b',' | b'"' | b'\r' | b'\n');
    // Eight bytes at a time: the four special bytes are all below `-`, and
    // names (pods, services, hosts) hold none, so a word with no byte below
    // `-` is passed over with a few operations and only the others are
    // looked at byte by byte. (`x - 0x2d…` & `!x` & `0x80…` is non-zero
    // exactly when some byte of `x` is below 0x2d.)
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if x.wrapping_sub(ONES * 0x2d) & !x & (ONES * 0x80) != 0 && w.iter().any(special) {
            return true;
        }
    }
    words.remainder().iter().any(special)
}

/// An integer field: `n` in decimal, the text of `{n}`.
#[inline(always)]
fn int(b: &mut Vec<u8>, n: u64) {
    digits(b, n, b',');
}

/// `n` in decimal, the text of `{n}`, and then the byte `then`.
#[inline(always)]
fn digits(b: &mut Vec<u8>, n: u64, then: u8) {
    // The digits are laid at the front of a 21-byte block (u64::MAX has 20
    // digits), `then` after them, the whole block appended (a copy of known
    // length, no call) and the rest cut off.
    let len = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    let mut buf = [then; 21];
    fill(&mut buf[..len], n);
    let start = b.len();
    b.extend_from_slice(&buf);
    b.truncate(start + len + 1);
}

/// `n`'s last `W` decimal digits, zeros in front: the text of `{n:0W$}` for
/// `n < 10^W`.
#[inline(always)]
fn padded<const W: usize>(b: &mut Vec<u8>, n: u64) {
    let mut buf = [b'0'; W];
    fill(&mut buf, n);
    b.extend_from_slice(&buf);
}

/// Two decimal digits for each number below 100: `00`, `01`, … `99`.
const PAIRS: [u8; 200] = {
    let mut t = [0; 200];
    let mut i = 0;
    while i < 100 {
        #[allow(clippy::cast_possible_truncation)]
        let (tens, ones) = ((i / 10) as u8, (i % 10) as u8);
        t[2 * i] = b'0' + tens;
        t[2 * i + 1] = b'0' + ones;
        i += 1;
    }
    t
};

/// Fills `buf` with the last `buf.len()` decimal digits of `n`, two at a
/// time.
#[inline(always)]
fn fill(buf: &mut [u8], mut n: u64) {
    let mut i = buf.len();
    while i >= 2 {
        #[allow(clippy::cast_possible_truncation)]
        let p = (n % 100) as usize * 2;
        n /= 100;
        buf[i - 2..i].copy_from_slice(&PAIRS[p..p + 2]);
        i -= 2;
    }
    if i == 1 {
        #[allow(clippy::cast_possible_truncation)]
        let d = (n % 10) as u8;
        buf[0] = b'0' + d;
    }
}

/// A time field: nanoseconds as seconds with six decimals (whole
/// microseconds, truncated), the text of
/// `{}.{:06}` of `ns / 1_000_000_000` and `ns % 1_000_000_000 / 1_000`.
#[inline(always)]
fn secs(b: &mut Vec<u8>, ns: u64) {
    digits(b, ns / 1_000_000_000, b'.');
    padded::<6>(b, (ns % 1_000_000_000) / 1_000);
    b.push(b',');
}

/// A latency field: milliseconds with three decimals.
#[inline(always)]
fn ms(b: &mut Vec<u8>, v: f64) {
    // A whole number of microseconds (what the simulator's histograms give)
    // is written with integer arithmetic: the same text as `{v:.3}`, since
    // `v` is then the double nearest to `us / 1000`. (One exception kept
    // from before: -0.0 is written `0.000` where `{v:.3}` gives `-0.000`.)
    // `us` is `(v * 1000.0).round() as u64` (as before, to the bit, for
    // every `v`), with the rounding done here: `round` is a call into libm
    // on this target. The fraction `x - t` is exact below 2^53, `x` is
    // whole above, and `as u64` saturates (NaN gives 0) as before.
    let x = v * 1000.0;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let us = {
        let t = x as u64;
        if x - t as f64 >= 0.5 {
            t.saturating_add(1)
        } else {
            t
        }
    };
    #[allow(clippy::cast_precision_loss)]
    let exact = v >= 0.0 && us < (1 << 53) && us as f64 / 1000.0 == v;
    if exact {
        digits(b, us / 1000, b'.');
        padded::<3>(b, us % 1000);
    } else {
        ms_by_format(b, v);
    }
    b.push(b',');
}

/// `{v:.3}`: digits, `-`, `.`, `NaN` or `inf`, never quoted.
#[cold]
#[inline(never)]
fn ms_by_format(b: &mut Vec<u8>, v: f64) {
    let _ = write!(b, "{v:.3}");
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::{digits, fill, ms, padded, secs, text};
    use crate::{
        CALLS_COLUMNS, CallCounts, CallRow, EVENTS_COLUMNS, EventRow, RunWriter,
        TIMESERIES_COLUMNS, WindowRow,
    };

    /// A reproducible stream of u64 (splitmix64).
    struct Mix(u64);
    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// A value of random magnitude: every digit count is as likely.
        fn any(&mut self) -> u64 {
            let n = self.next();
            n >> (n % 64)
        }
    }

    /// Numbers around every power of ten, and some of any size.
    fn numbers() -> Vec<u64> {
        let mut v: Vec<u64> = (0..=10_000).collect();
        let mut p = 1u64;
        while let Some(q) = p.checked_mul(10) {
            p = q;
            v.extend([
                p - 1,
                p,
                p + 1,
                p.saturating_mul(2) - 1,
                p.saturating_mul(5),
            ]);
        }
        v.extend([
            u64::from(u32::MAX),
            u64::MAX,
            u64::MAX - 1,
            999_999_999,
            1_000_000_000,
            1 << 53,
        ]);
        let mut m = Mix(1);
        v.extend((0..100_000).map(|_| m.any()));
        v
    }

    // What the writer did before it laid rows out itself: `csv::Writer`
    // with `write!` for the numbers. The new text is held against it.

    fn old_secs(w: &mut csv::Writer<Vec<u8>>, ns: u64) {
        let s = format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000);
        w.write_field(s).unwrap();
    }

    fn old_int(w: &mut csv::Writer<Vec<u8>>, n: u64) {
        w.write_field(format!("{n}")).unwrap();
    }

    fn old_ms_text(v: f64) -> String {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let us = (v * 1000.0).round() as u64;
        #[allow(clippy::cast_precision_loss)]
        let exact = v >= 0.0 && us < (1 << 53) && us as f64 / 1000.0 == v;
        if exact {
            format!("{}.{:03}", us / 1000, us % 1000)
        } else {
            format!("{v:.3}")
        }
    }

    fn old_ms(w: &mut csv::Writer<Vec<u8>>, v: f64) {
        w.write_field(old_ms_text(v)).unwrap();
    }

    fn old_window(w: &mut csv::Writer<Vec<u8>>, r: &WindowRow<&str>) {
        old_secs(w, r.time_ns);
        for f in [r.endpoint, r.service, r.version] {
            w.write_field(f).unwrap();
        }
        for n in [r.requests, r.successes, r.errors] {
            old_int(w, n);
        }
        old_ms(w, r.latency_ms_p50);
        old_ms(w, r.latency_ms_p99);
        old_int(w, u64::from(r.ejected_by));
        old_int(w, u64::from(r.active_requests));
        w.write_record(None::<&[u8]>).unwrap();
    }

    fn old_call(w: &mut csv::Writer<Vec<u8>>, r: &CallRow<&str>) {
        let c = &r.counts;
        old_secs(w, r.time_ns);
        w.write_field(r.source).unwrap();
        w.write_field(r.host).unwrap();
        for n in [
            c.requests,
            c.successes,
            c.errors_4xx,
            c.errors_5xx,
            c.overflow,
            c.fault_aborts,
            c.timeouts,
            c.app_timeouts,
        ] {
            old_int(w, n);
        }
        old_ms(w, r.latency_ms_p50);
        old_ms(w, r.latency_ms_p99);
        w.write_record(None::<&[u8]>).unwrap();
    }

    fn old_event(w: &mut csv::Writer<Vec<u8>>, r: &EventRow<&str>) {
        old_secs(w, r.time_ns);
        for f in [r.kind, r.proxy, r.endpoint, r.detail] {
            w.write_field(f).unwrap();
        }
        w.write_record(None::<&[u8]>).unwrap();
    }

    fn old_file(header: &[&str], rows: impl FnOnce(&mut csv::Writer<Vec<u8>>)) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(header).unwrap();
        rows(&mut w);
        w.into_inner().unwrap()
    }

    #[test]
    fn integers_are_written_as_format_would() {
        let mut b = Vec::new();
        for n in numbers() {
            b.clear();
            digits(&mut b, n, b'|');
            assert_eq!(b, format!("{n}|").as_bytes(), "{n}");
        }
    }

    #[test]
    fn zero_padded_digits_are_written_as_format_would() {
        let mut m = Mix(2);
        for width in 1..=20 {
            let limit = 10u64.checked_pow(u32::try_from(width).unwrap());
            let limit = limit.unwrap_or(u64::MAX);
            for n in (0..2_000)
                .chain([limit / 10 - 1, limit / 10, limit - 1, u64::MAX])
                .chain((0..2_000).map(|_| m.next() % limit))
                .filter(|&n| n < limit || width == 20)
            {
                let mut b = vec![0; width];
                fill(&mut b, n);
                assert_eq!(b, format!("{n:0width$}").as_bytes(), "{n} in {width}");
            }
        }
        for n in [0, 7, 42, 999, 123_456, 999_999] {
            let mut b = Vec::new();
            padded::<6>(&mut b, n);
            padded::<3>(&mut b, n % 1000);
            assert_eq!(b, format!("{n:06}{:03}", n % 1000).as_bytes(), "{n}");
        }
    }

    #[test]
    fn seconds_are_written_as_format_would() {
        let mut b = Vec::new();
        let mut cases = numbers();
        for s in [0, 1, 9, 10, 999, 1_000, 18_446_744_072] {
            for sub in [0, 999, 1_000, 1_999, 999_999, 1_000_000, 999_999_999] {
                cases.push(s * 1_000_000_000 + sub);
            }
        }
        for ns in cases {
            b.clear();
            secs(&mut b, ns);
            let want = format!(
                "{}.{:06},",
                ns / 1_000_000_000,
                (ns % 1_000_000_000) / 1_000
            );
            assert_eq!(b, want.as_bytes(), "{ns} ns");
        }
    }

    #[test]
    fn milliseconds_are_written_as_format_would() {
        let mut b = Vec::new();
        let mut m = Mix(3);
        for us in (0..200_000u64)
            .step_by(7)
            .chain([999, 1_000, 999_999, 1_000_000, 123_456_789, (1 << 53) - 1])
            .chain((0..100_000).map(|_| m.any() >> 11))
        {
            #[allow(clippy::cast_precision_loss)]
            let v = us as f64 / 1000.0;
            b.clear();
            ms(&mut b, v);
            assert_eq!(b, format!("{v:.3},").as_bytes(), "{us} µs");
        }
        for v in [0.0005, 1.2345, 2.0004999, 1e-9, 12.3456, -1.5, -2.0] {
            b.clear();
            ms(&mut b, v);
            assert_eq!(b, format!("{v:.3},").as_bytes(), "{v}");
        }
    }

    #[test]
    fn milliseconds_are_written_as_before_for_any_double() {
        let mut b = Vec::new();
        let mut m = Mix(4);
        #[allow(clippy::cast_precision_loss)]
        let odd = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e300,
            ((1u64 << 53) - 1) as f64 / 1000.0,
            (1u64 << 53) as f64 / 1000.0,
            1e16,
        ];
        let doubles: Vec<f64> = (0..100_000).map(|_| f64::from_bits(m.next())).collect();
        #[allow(clippy::cast_precision_loss)]
        let ratios: Vec<f64> = (0..100_000)
            .map(|_| (m.any() >> 8) as f64 / (1 + m.next() % 10_000) as f64)
            .collect();
        for v in odd.into_iter().chain(doubles).chain(ratios) {
            b.clear();
            ms(&mut b, v);
            assert_eq!(b, format!("{},", old_ms_text(v)).as_bytes(), "{v:e}");
        }
    }

    /// Text fields, plain and needing quotes, short and past csv's 8-byte
    /// stride.
    const TEXTS: [&str; 24] = [
        "",
        "a",
        "reviews-v1-7f9c6d5b8-x2k4p",
        "10.0.3.17:9080",
        "a,b",
        ",",
        "\"",
        "\"\"",
        "say \"hi\"",
        "line\nbreak",
        "cr\rhere",
        "\r\n",
        " spaced ",
        "tab\there",
        "ünïcödé, ✓",
        "#comment",
        "'single'",
        "\\back\\slash",
        "12345678,",
        "1234567,8",
        "12345678901234567\"",
        "semi;colon",
        "NaN",
        "-0.000",
    ];

    #[test]
    fn text_fields_are_quoted_as_csv_quotes_them() {
        for t in TEXTS {
            for first in [true, false] {
                let mut w = csv::Writer::from_writer(Vec::new());
                if !first {
                    w.write_field("x").unwrap();
                }
                w.write_field(t).unwrap();
                w.write_field("y").unwrap();
                w.write_record(None::<&[u8]>).unwrap();
                let want = w.into_inner().unwrap();

                let mut b = Vec::new();
                if !first {
                    text(&mut b, "x");
                }
                text(&mut b, t);
                text(&mut b, "y");
                super::end(&mut b);
                assert_eq!(b, want, "{t:?}");
            }
        }
    }

    #[test]
    fn random_text_fields_are_quoted_as_csv_quotes_them() {
        // Every special byte at every place in words and tails, among bytes
        // just above and below `-` and some past ASCII.
        let alphabet = [
            ",", "\"", "\r", "\n", "-", ".", "+", " ", "\t", "\0", "a", "Z", "0", "~", "é", "✓",
        ];
        let mut m = Mix(6);
        for _ in 0..20_000 {
            let len = usize::try_from(m.next() % 40).unwrap();
            let t: String = (0..len)
                .map(|_| alphabet[usize::try_from(m.next() % 16).unwrap()])
                .collect();
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["x", &t, "y"]).unwrap();
            let want = w.into_inner().unwrap();
            let mut b = Vec::new();
            for f in ["x", &t, "y"] {
                text(&mut b, f);
            }
            super::end(&mut b);
            assert_eq!(b, want, "{t:?}");
        }
    }

    #[test]
    fn run_files_are_what_csv_writer_wrote() {
        let dir = std::env::temp_dir().join(format!("mesh-rundir-{}-bytes", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut m = Mix(5);
        let mut windows = Vec::new();
        let mut calls = Vec::new();
        let mut events = Vec::new();
        for i in 0..3_000usize {
            let t = |m: &mut Mix| TEXTS[usize::try_from(m.next() % 24).unwrap()];
            #[allow(clippy::cast_precision_loss)]
            let lat = |m: &mut Mix| match m.next() % 4 {
                0 => f64::from_bits(m.next()),
                1 => (m.any() >> 11) as f64 / 1000.0,
                2 => (m.next() % 1_000_000) as f64 / 1000.0,
                _ => [0.0, -0.0, f64::NAN, 0.0005, 1.2345][i % 5],
            };
            let n = |m: &mut Mix| if i % 3 == 0 { m.any() } else { m.next() % 1000 };
            let time_ns = if i % 2 == 0 {
                m.any()
            } else {
                m.next() % 10_000_000_000_000
            };
            windows.push(WindowRow {
                time_ns,
                endpoint: t(&mut m),
                service: t(&mut m),
                version: t(&mut m),
                requests: n(&mut m),
                successes: n(&mut m),
                errors: n(&mut m),
                latency_ms_p50: lat(&mut m),
                latency_ms_p99: lat(&mut m),
                ejected_by: u32::try_from(m.any() >> 32).unwrap(),
                active_requests: if i == 7 {
                    u32::MAX
                } else {
                    u32::try_from(m.next() % 100).unwrap()
                },
            });
            calls.push(CallRow {
                time_ns,
                source: t(&mut m),
                host: t(&mut m),
                counts: CallCounts {
                    requests: n(&mut m),
                    successes: n(&mut m),
                    errors_4xx: n(&mut m),
                    errors_5xx: n(&mut m),
                    overflow: n(&mut m),
                    fault_aborts: n(&mut m),
                    timeouts: n(&mut m),
                    app_timeouts: n(&mut m),
                },
                latency_ms_p50: lat(&mut m),
                latency_ms_p99: lat(&mut m),
            });
            events.push(EventRow {
                time_ns,
                kind: t(&mut m),
                proxy: t(&mut m),
                endpoint: t(&mut m),
                detail: t(&mut m),
            });
        }

        let mut w = RunWriter::create(&dir).unwrap();
        for r in &windows {
            w.window(r).unwrap();
        }
        for r in &calls {
            w.call(r).unwrap();
        }
        for r in &events {
            w.event(r).unwrap();
        }
        w.flush().unwrap();
        drop(w);

        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let want = old_file(&TIMESERIES_COLUMNS, |w| {
            windows.iter().for_each(|r| old_window(w, r))
        });
        assert_eq!(read("timeseries.csv"), want, "timeseries.csv");
        let want = old_file(&CALLS_COLUMNS, |w| {
            calls.iter().for_each(|r| old_call(w, r))
        });
        assert_eq!(read("calls.csv"), want, "calls.csv");
        let want = old_file(&EVENTS_COLUMNS, |w| {
            events.iter().for_each(|r| old_event(w, r))
        });
        assert_eq!(read("events.csv"), want, "events.csv");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_run_has_its_headers() {
        let dir = std::env::temp_dir().join(format!("mesh-rundir-{}-headers", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        drop(RunWriter::create(&dir).unwrap());
        for (name, header) in [
            ("timeseries.csv", &TIMESERIES_COLUMNS[..]),
            ("calls.csv", &CALLS_COLUMNS[..]),
            ("events.csv", &EVENTS_COLUMNS[..]),
        ] {
            let mut want = String::new();
            let _ = writeln!(want, "{}", header.join(","));
            assert_eq!(
                std::fs::read_to_string(dir.join(name)).unwrap(),
                want,
                "{name}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
