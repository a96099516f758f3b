//! Writing a run directory, row by row as the run goes, so memory stays
//! flat in the run's length.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::{
    CALLS_COLUMNS, CallRow, EVENTS_COLUMNS, EventRow, SUMMARY_COLUMNS, Summary, TIMESERIES_COLUMNS,
    WindowRow,
};

type Csv = csv::Writer<BufWriter<File>>;

fn to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

fn open(dir: &Path, name: &str, header: &[&str]) -> io::Result<Csv> {
    let file = File::create(dir.join(name))?;
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, file));
    w.write_record(header).map_err(to_io)?;
    Ok(w)
}

/// Streams the rows of one run into its directory: `timeseries.csv`,
/// `calls.csv` and `events.csv` as they come, then `summary.csv` and
/// `experiment.toml` at [`RunWriter::finish`]. Rows are written in the order
/// given (the caller gives them in time order). Writing a row allocates
/// nothing.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    timeseries: Csv,
    calls: Csv,
    events: Csv,
    /// Scratch for formatting numbers.
    buf: String,
}

impl RunWriter {
    /// Creates `dir` (and its parents) and the CSV files with their headers.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            timeseries: open(dir, "timeseries.csv", &TIMESERIES_COLUMNS)?,
            calls: open(dir, "calls.csv", &CALLS_COLUMNS)?,
            events: open(dir, "events.csv", &EVENTS_COLUMNS)?,
            buf: String::with_capacity(64),
        })
    }

    /// The directory written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One `timeseries.csv` row.
    pub fn window(&mut self, r: &WindowRow<&str>) -> io::Result<()> {
        let w = &mut self.timeseries;
        let b = &mut self.buf;
        field_secs(w, b, r.time_ns)?;
        w.write_field(r.endpoint).map_err(to_io)?;
        w.write_field(r.service).map_err(to_io)?;
        w.write_field(r.version).map_err(to_io)?;
        for n in [r.requests, r.successes, r.errors] {
            field_int(w, b, n)?;
        }
        field_ms(w, b, r.latency_ms_p50)?;
        field_ms(w, b, r.latency_ms_p99)?;
        field_int(w, b, u64::from(r.ejected_by))?;
        field_int(w, b, u64::from(r.active_requests))?;
        w.write_record(None::<&[u8]>).map_err(to_io)
    }

    /// One `calls.csv` row.
    pub fn call(&mut self, r: &CallRow<&str>) -> io::Result<()> {
        let w = &mut self.calls;
        let b = &mut self.buf;
        let c = &r.counts;
        field_secs(w, b, r.time_ns)?;
        w.write_field(r.source).map_err(to_io)?;
        w.write_field(r.host).map_err(to_io)?;
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
            field_int(w, b, n)?;
        }
        field_ms(w, b, r.latency_ms_p50)?;
        field_ms(w, b, r.latency_ms_p99)?;
        w.write_record(None::<&[u8]>).map_err(to_io)
    }

    /// One `events.csv` row.
    pub fn event(&mut self, r: &EventRow<&str>) -> io::Result<()> {
        let w = &mut self.events;
        field_secs(w, &mut self.buf, r.time_ns)?;
        for f in [r.kind, r.proxy, r.endpoint, r.detail] {
            w.write_field(f).map_err(to_io)?;
        }
        w.write_record(None::<&[u8]>).map_err(to_io)
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

fn field_secs<W: io::Write>(w: &mut csv::Writer<W>, b: &mut String, ns: u64) -> io::Result<()> {
    b.clear();
    let _ = write!(
        b,
        "{}.{:06}",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    );
    w.write_field(b.as_bytes()).map_err(to_io)
}

fn field_int<W: io::Write>(w: &mut csv::Writer<W>, b: &mut String, n: u64) -> io::Result<()> {
    b.clear();
    let _ = write!(b, "{n}");
    w.write_field(b.as_bytes()).map_err(to_io)
}

fn field_ms<W: io::Write>(w: &mut csv::Writer<W>, b: &mut String, v: f64) -> io::Result<()> {
    b.clear();
    // A whole number of microseconds (what the simulator's histograms give)
    // is written with integer arithmetic: the same text as `{v:.3}`, since
    // `v` is then the double nearest to `us / 1000`, a fifth of the cost.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let us = (v * 1000.0).round() as u64;
    #[allow(clippy::cast_precision_loss)]
    let exact = v >= 0.0 && us < (1 << 53) && us as f64 / 1000.0 == v;
    if exact {
        let _ = write!(b, "{}.{:03}", us / 1000, us % 1000);
    } else {
        let _ = write!(b, "{v:.3}");
    }
    w.write_field(b.as_bytes()).map_err(to_io)
}

#[cfg(test)]
mod tests {
    #[test]
    fn milliseconds_are_written_as_format_would() {
        let mut b = String::new();
        for us in (0..200_000u64)
            .step_by(7)
            .chain([999_999, 1_000_000, 123_456_789])
        {
            #[allow(clippy::cast_precision_loss)]
            let v = us as f64 / 1000.0;
            let mut w = csv::Writer::from_writer(Vec::new());
            super::field_ms(&mut w, &mut b, v).unwrap();
            assert_eq!(b, format!("{v:.3}"), "{us} µs");
        }
        for v in [0.0005, 1.2345, 2.0004999, 1e-9, 12.3456] {
            let mut w = csv::Writer::from_writer(Vec::new());
            super::field_ms(&mut w, &mut b, v).unwrap();
            assert_eq!(b, format!("{v:.3}"), "{v}");
        }
    }
}
