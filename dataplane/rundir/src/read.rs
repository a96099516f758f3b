//! Reading a run directory back: checked headers and format version, errors
//! that name the file, the line and the column. `timeseries.csv` is indexed
//! by window and parsed one window at a time, so opening a long run with
//! many endpoints is quick.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{
    CALLS_COLUMNS, CallCounts, CallRow, EVENTS_COLUMNS, EventRow, FORMAT_VERSION,
    TIMESERIES_COLUMNS, WindowRow, parse_secs,
};

/// Why a run directory cannot be read. Every message names the file and
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The directory or a file of it is missing or unreadable.
    #[error(
        "{path}: cannot read: {why} (expected a run directory written by `meshsim run`, `meshsim sweep` or `meshproxy --record`)"
    )]
    Io {
        /// The path.
        path: String,
        /// The system's reason.
        why: String,
    },
    /// The header row is not the expected one.
    #[error(
        "{path}: line 1: expected the header `{expected}`, found `{found}` (is this a meshsim run directory?)"
    )]
    Header {
        /// The file.
        path: String,
        /// The expected header.
        expected: String,
        /// The header found.
        found: String,
    },
    /// The directory was written in another format version.
    #[error(
        "{path}: format_version {found} is not supported: this meshsim reads version {FORMAT_VERSION}; re-run the experiment with this version of meshsim"
    )]
    Version {
        /// `summary.csv`.
        path: String,
        /// The version found.
        found: String,
    },
    /// A field does not parse, or a row is malformed.
    #[error("{path}: line {line}: {what}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        what: String,
    },
}

fn io_error(path: &Path, e: &std::io::Error) -> ReadError {
    ReadError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(|e| io_error(path, &e))
}

/// Splits the header line off `bytes` and checks it is `expected`. Returns
/// the offset of the first data line.
fn check_header(path: &Path, bytes: &[u8], expected: &[&str]) -> Result<usize, ReadError> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let found = String::from_utf8_lossy(&bytes[..end]);
    let found = found.trim_end_matches('\r');
    let want = expected.join(",");
    if found != want {
        return Err(ReadError::Header {
            path: path.display().to_string(),
            expected: want,
            found: found.to_owned(),
        });
    }
    Ok((end + 1).min(bytes.len()))
}

/// Parses records of `bytes` (no header), calling `row` with each record and
/// its line number (`first_line` for the first).
fn records(
    path: &Path,
    bytes: &[u8],
    first_line: u64,
    width: usize,
    mut row: impl FnMut(&csv::StringRecord, u64) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rec = csv::StringRecord::new();
    let mut line = first_line;
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                return Err(ReadError::Row {
                    path: path.display().to_string(),
                    line,
                    what: e.to_string(),
                });
            }
        }
        line = first_line + rec.position().map_or(0, |p| p.line() - 1);
        if rec.len() != width {
            return Err(ReadError::Row {
                path: path.display().to_string(),
                line,
                what: format!("expected {width} fields, found {}", rec.len()),
            });
        }
        row(&rec, line)?;
    }
}

/// One field of a record, parsed.
fn field<T: FromStr>(
    path: &Path,
    rec: &csv::StringRecord,
    line: u64,
    columns: &[&str],
    i: usize,
) -> Result<T, ReadError> {
    let s = rec.get(i).unwrap_or("");
    s.parse().map_err(|_| ReadError::Row {
        path: path.display().to_string(),
        line,
        what: format!("column `{}`: expected a number, found `{s}`", columns[i]),
    })
}

fn time_field(
    path: &Path,
    rec: &csv::StringRecord,
    line: u64,
    columns: &[&str],
) -> Result<u64, ReadError> {
    let s = rec.get(0).unwrap_or("");
    parse_secs(s).ok_or_else(|| ReadError::Row {
        path: path.display().to_string(),
        line,
        what: format!(
            "column `{}`: expected seconds such as 12.345678, found `{s}`",
            columns[0]
        ),
    })
}

/// A `summary.csv`: its columns and rows as text (a sweep's has `point` and
/// the swept paths first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryTable {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, one field per column.
    pub rows: Vec<Vec<String>>,
}

impl SummaryTable {
    /// Reads and checks a `summary.csv`: the standard columns are there and
    /// every row has this crate's format version.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        let bytes = read_bytes(path)?;
        let mut r = csv::ReaderBuilder::new().from_reader(&bytes[..]);
        let bad = |line: u64, what: String| ReadError::Row {
            path: path.display().to_string(),
            line,
            what,
        };
        let columns: Vec<String> = r
            .headers()
            .map_err(|e| bad(1, e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let missing: Vec<&str> = crate::SUMMARY_COLUMNS
            .iter()
            .copied()
            .filter(|c| !columns.iter().any(|k| k == c))
            .collect();
        if !missing.is_empty() {
            return Err(ReadError::Header {
                path: path.display().to_string(),
                expected: format!("columns including {}", crate::SUMMARY_COLUMNS.join(",")),
                found: columns.join(","),
            });
        }
        let mut rows = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| bad(i as u64 + 2, e.to_string()))?;
            if rec.len() != columns.len() {
                return Err(bad(
                    i as u64 + 2,
                    format!("expected {} fields, found {}", columns.len(), rec.len()),
                ));
            }
            rows.push(rec.iter().map(str::to_owned).collect::<Vec<_>>());
        }
        let table = Self { columns, rows };
        let v = table.column("format_version").unwrap_or(0);
        if let Some(row) = table
            .rows
            .iter()
            .find(|r| r[v] != FORMAT_VERSION.to_string())
        {
            return Err(ReadError::Version {
                path: path.display().to_string(),
                found: row[v].clone(),
            });
        }
        if table.rows.is_empty() {
            return Err(bad(2, "expected at least one row".to_owned()));
        }
        Ok(table)
    }

    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// A field of a row, by column name.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let c = self.column(column)?;
        self.rows.get(row)?.get(c).map(String::as_str)
    }
}

/// One window of `timeseries.csv`: its end time and where its rows are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeseriesWindow {
    /// End of the window, in nanoseconds.
    pub time_ns: u64,
    bytes: Range<usize>,
    first_line: u64,
}

/// `timeseries.csv`, indexed by window: [`Timeseries::rows`] parses one
/// window's rows when asked.
#[derive(Debug)]
pub struct Timeseries {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The windows, in time order.
    pub windows: Vec<TimeseriesWindow>,
}

impl Timeseries {
    /// Reads the file, checks its header and indexes its windows (rows must
    /// come in time order, as meshsim writes them).
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let bytes = read_bytes(path)?;
        let mut at = check_header(path, &bytes, &TIMESERIES_COLUMNS)?;
        let start = at;
        let mut windows: Vec<TimeseriesWindow> = Vec::new();
        let mut line = 2u64;
        let mut current: &[u8] = b"";
        // Line starts come from memchr (vectorised); a row belongs to the
        // current window when it starts with the window's `time_s` and a
        // comma, which is a short compare per row.
        let mut ends = memchr::memchr_iter(b'\n', &bytes[at..]).map(|n| n + 1);
        while at < bytes.len() {
            let len = ends
                .next()
                .map_or(bytes.len() - at, |end| end - (at - start));
            let row = &bytes[at..at + len];
            let same = !current.is_empty()
                && row.len() > current.len()
                && row.starts_with(current)
                && row[current.len()] == b',';
            if !same {
                let time = row.split(|&b| b == b',').next().unwrap_or(b"");
                let text = String::from_utf8_lossy(time);
                let Some(t) = parse_secs(text.trim_end()) else {
                    return Err(ReadError::Row {
                        path: path.display().to_string(),
                        line,
                        what: format!(
                            "column `time_s`: expected seconds such as 12.345678, found `{}`",
                            text.trim_end()
                        ),
                    });
                };
                if let Some(last) = windows.last_mut() {
                    if t <= last.time_ns {
                        return Err(ReadError::Row {
                            path: path.display().to_string(),
                            line,
                            what: format!(
                                "rows are not in time order ({} after {})",
                                crate::secs(t),
                                crate::secs(last.time_ns)
                            ),
                        });
                    }
                    last.bytes.end = at;
                }
                windows.push(TimeseriesWindow {
                    time_ns: t,
                    bytes: at..bytes.len(),
                    first_line: line,
                });
                current = time;
            }
            at += len;
            line += 1;
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            windows,
        })
    }

    /// The rows of window `i` (empty when out of range).
    pub fn rows(&self, i: usize) -> Result<Vec<WindowRow>, ReadError> {
        let Some(w) = self.windows.get(i) else {
            return Ok(Vec::new());
        };
        let path = &self.path;
        let c = &TIMESERIES_COLUMNS[..];
        let mut out = Vec::new();
        records(
            path,
            &self.bytes[w.bytes.clone()],
            w.first_line,
            c.len(),
            |r, line| {
                out.push(WindowRow {
                    time_ns: time_field(path, r, line, c)?,
                    endpoint: r[1].to_owned(),
                    service: r[2].to_owned(),
                    version: r[3].to_owned(),
                    requests: field(path, r, line, c, 4)?,
                    successes: field(path, r, line, c, 5)?,
                    errors: field(path, r, line, c, 6)?,
                    latency_ms_p50: field(path, r, line, c, 7)?,
                    latency_ms_p99: field(path, r, line, c, 8)?,
                    ejected_by: field(path, r, line, c, 9)?,
                    active_requests: field(path, r, line, c, 10)?,
                });
                Ok(())
            },
        )?;
        Ok(out)
    }
}

/// The numbers of one `timeseries.csv` row that per-window totals need.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowCounts {
    /// Attempts.
    pub requests: u64,
    /// Failed attempts.
    pub errors: u64,
    /// 99th percentile latency (ms).
    pub latency_ms_p99: f64,
}

impl Timeseries {
    /// The counts of window `i`'s rows, in row order: what per-window totals
    /// need, read without building the rows' strings (a quoted field falls
    /// back to the full parser).
    pub fn counts(&self, i: usize) -> Result<Vec<RowCounts>, ReadError> {
        let Some(w) = self.windows.get(i) else {
            return Ok(Vec::new());
        };
        let bytes = &self.bytes[w.bytes.clone()];
        if bytes.contains(&b'"') {
            return Ok(self
                .rows(i)?
                .iter()
                .map(|r| RowCounts {
                    requests: r.requests,
                    errors: r.errors,
                    latency_ms_p99: r.latency_ms_p99,
                })
                .collect());
        }
        let mut out = Vec::with_capacity(bytes.len() / 48);
        let mut from = 0;
        for k in 0.. {
            if from >= bytes.len() {
                break;
            }
            let end = memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |n| from + n);
            let line = &bytes[from..end];
            from = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let not_a_number = |col: usize, f: &[u8]| ReadError::Row {
                path: self.path.display().to_string(),
                line: w.first_line + k,
                what: format!(
                    "column `{}`: expected a number, found `{}`",
                    TIMESERIES_COLUMNS[col],
                    String::from_utf8_lossy(f)
                ),
            };
            let mut fields = line.split(|&b| b == b',');
            // Columns 4 (requests), 6 (errors) and 8 (latency_ms_p99).
            let requests = fields.nth(4).unwrap_or(b"");
            let errors = fields.nth(1).unwrap_or(b"");
            let p99 = fields.nth(1).unwrap_or(b"");
            out.push(RowCounts {
                requests: digits(requests).ok_or_else(|| not_a_number(4, requests))?,
                errors: digits(errors).ok_or_else(|| not_a_number(6, errors))?,
                latency_ms_p99: std::str::from_utf8(p99)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| not_a_number(8, p99))?,
            });
        }
        Ok(out)
    }
}

/// A non-negative decimal integer, without building a string.
fn digits(f: &[u8]) -> Option<u64> {
    if f.is_empty() || f.len() > 19 {
        return None;
    }
    f.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// A run directory, opened.
#[derive(Debug)]
pub struct RunDir {
    /// The directory.
    pub dir: PathBuf,
    /// `summary.csv` (one row for a run).
    pub summary: SummaryTable,
    /// `timeseries.csv`, indexed.
    pub timeseries: Timeseries,
    /// `calls.csv`.
    pub calls: Vec<CallRow>,
    /// `events.csv`.
    pub events: Vec<EventRow>,
    /// `experiment.toml`, when there is one.
    pub experiment: Option<String>,
}

impl RunDir {
    /// Opens the run directory `dir`, checking every file's header and the
    /// format version.
    pub fn open(dir: &Path) -> Result<Self, ReadError> {
        if !dir.is_dir() {
            return Err(ReadError::Io {
                path: dir.display().to_string(),
                why: "not a directory".to_owned(),
            });
        }
        let summary = SummaryTable::read(&dir.join("summary.csv"))?;
        let timeseries = Timeseries::open(&dir.join("timeseries.csv"))?;
        let calls = read_calls(&dir.join("calls.csv"))?;
        let events = read_events(&dir.join("events.csv"))?;
        let exp = dir.join("experiment.toml");
        let experiment = if exp.exists() {
            Some(std::fs::read_to_string(&exp).map_err(|e| io_error(&exp, &e))?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            summary,
            timeseries,
            calls,
            events,
            experiment,
        })
    }
}

/// Reads a `calls.csv`.
pub fn read_calls(path: &Path) -> Result<Vec<CallRow>, ReadError> {
    let bytes = read_bytes(path)?;
    let at = check_header(path, &bytes, &CALLS_COLUMNS)?;
    let c = &CALLS_COLUMNS[..];
    let mut out = Vec::new();
    records(path, &bytes[at..], 2, c.len(), |r, line| {
        out.push(CallRow {
            time_ns: time_field(path, r, line, c)?,
            source: r[1].to_owned(),
            host: r[2].to_owned(),
            counts: CallCounts {
                requests: field(path, r, line, c, 3)?,
                successes: field(path, r, line, c, 4)?,
                errors_4xx: field(path, r, line, c, 5)?,
                errors_5xx: field(path, r, line, c, 6)?,
                overflow: field(path, r, line, c, 7)?,
                fault_aborts: field(path, r, line, c, 8)?,
                timeouts: field(path, r, line, c, 9)?,
                app_timeouts: field(path, r, line, c, 10)?,
            },
            latency_ms_p50: field(path, r, line, c, 11)?,
            latency_ms_p99: field(path, r, line, c, 12)?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads an `events.csv`.
pub fn read_events(path: &Path) -> Result<Vec<EventRow>, ReadError> {
    let bytes = read_bytes(path)?;
    let at = check_header(path, &bytes, &EVENTS_COLUMNS)?;
    let c = &EVENTS_COLUMNS[..];
    let mut out = Vec::new();
    records(path, &bytes[at..], 2, c.len(), |r, line| {
        out.push(EventRow {
            time_ns: time_field(path, r, line, c)?,
            kind: r[1].to_owned(),
            proxy: r[2].to_owned(),
            endpoint: r[3].to_owned(),
            detail: r[4].to_owned(),
        });
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunWriter, Summary};

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mesh-rundir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn window(t: u64, endpoint: &str, requests: u64) -> WindowRow<&str> {
        WindowRow {
            time_ns: t,
            endpoint,
            service: "reviews",
            version: "v1",
            requests,
            successes: requests,
            errors: 0,
            latency_ms_p50: 20.0,
            latency_ms_p99: 41.5,
            ejected_by: 0,
            active_requests: 2,
        }
    }

    #[test]
    fn a_written_run_reads_back_row_for_row() {
        let dir = temp("roundtrip");
        let mut w = RunWriter::create(&dir).unwrap();
        for t in 1..=3u64 {
            for (i, e) in ["reviews-v1-0", "reviews-v1-1"].iter().enumerate() {
                w.window(&window(t * 1_000_000_000, e, t * 10 + i as u64))
                    .unwrap();
            }
        }
        w.event(&EventRow {
            time_ns: 1_500_000,
            kind: "eject",
            proxy: "client-0",
            endpoint: "reviews-v1-0",
            detail: "reason=consecutive_5xx, quoted",
        })
        .unwrap();
        w.call(&CallRow {
            time_ns: 1_000_000_000,
            source: "client",
            host: "reviews",
            counts: CallCounts {
                requests: 7,
                ..CallCounts::default()
            },
            latency_ms_p50: 1.0,
            latency_ms_p99: 2.0,
        })
        .unwrap();
        let summary = Summary {
            experiment: "t".to_owned(),
            requests: 7,
            ..Summary::default()
        };
        w.finish(&summary, Some("name = \"t\"\n")).unwrap();

        let run = RunDir::open(&dir).unwrap();
        assert_eq!(run.summary.get(0, "requests"), Some("7"));
        assert_eq!(run.timeseries.windows.len(), 3);
        assert_eq!(run.timeseries.windows[2].time_ns, 3_000_000_000);
        let rows = run.timeseries.rows(1).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].endpoint, "reviews-v1-1");
        assert_eq!(rows[1].requests, 21);
        assert!((rows[1].latency_ms_p99 - 41.5).abs() < 1e-9);
        assert_eq!(run.events[0].detail, "reason=consecutive_5xx, quoted");
        assert_eq!(run.events[0].time_ns, 1_500_000);
        assert_eq!(run.calls[0].counts.requests, 7);
        assert_eq!(run.experiment.as_deref(), Some("name = \"t\"\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_number_is_reported_with_file_line_and_column() {
        let dir = temp("badnum");
        let w = RunWriter::create(&dir).unwrap();
        w.finish(&Summary::default(), None).unwrap();
        let header = TIMESERIES_COLUMNS.join(",");
        std::fs::write(
            dir.join("timeseries.csv"),
            format!(
                "{header}\n1.000000,a,s,v1,1,1,0,1.0,2.0,0,0\n2.000000,a,s,v1,x,1,0,1.0,2.0,0,0\n"
            ),
        )
        .unwrap();
        let ts = Timeseries::open(&dir.join("timeseries.csv")).unwrap();
        let e = ts.counts(1).unwrap_err().to_string();
        assert!(
            e.ends_with("timeseries.csv: line 3: column `requests`: expected a number, found `x`"),
            "{e}"
        );
        let e = ts.rows(1).unwrap_err().to_string();
        assert!(
            e.ends_with("timeseries.csv: line 3: column `requests`: expected a number, found `x`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_format_version_is_refused_with_what_to_do() {
        let dir = temp("version");
        let w = RunWriter::create(&dir).unwrap();
        w.finish(&Summary::default(), None).unwrap();
        let s = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
        let s = s.replacen(&format!("\n{FORMAT_VERSION},"), "\n1,", 1);
        std::fs::write(dir.join("summary.csv"), s).unwrap();
        let e = RunDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains("format_version 1 is not supported"), "{e}");
        assert!(e.contains("re-run"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_or_foreign_file_is_a_clear_error() {
        let e = RunDir::open(Path::new("/nonexistent/run"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/run: cannot read: not a directory"),
            "{e}"
        );
        let dir = temp("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("summary.csv"), "a,b\n1,2\n").unwrap();
        let e = RunDir::open(&dir).unwrap_err().to_string();
        assert!(
            e.contains("summary.csv: line 1: expected the header"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_equal_the_full_rows_numbers() {
        let dir = temp("counts");
        let mut w = RunWriter::create(&dir).unwrap();
        for t in 1..=2u64 {
            for (i, e) in ["a", "b", "c"].iter().enumerate() {
                let mut row = window(t * 1_000_000_000, e, t * 10 + i as u64);
                row.errors = i as u64;
                row.latency_ms_p99 = 1.5 * i as f64;
                w.window(&row).unwrap();
            }
        }
        w.finish(&Summary::default(), None).unwrap();
        let ts = Timeseries::open(&dir.join("timeseries.csv")).unwrap();
        for i in 0..2 {
            let full: Vec<RowCounts> = ts
                .rows(i)
                .unwrap()
                .iter()
                .map(|r| RowCounts {
                    requests: r.requests,
                    errors: r.errors,
                    latency_ms_p99: r.latency_ms_p99,
                })
                .collect();
            assert_eq!(ts.counts(i).unwrap(), full);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn windows_out_of_time_order_are_refused() {
        let dir = temp("order");
        std::fs::create_dir_all(&dir).unwrap();
        let header = TIMESERIES_COLUMNS.join(",");
        let p = dir.join("timeseries.csv");
        std::fs::write(
            &p,
            format!(
                "{header}\n2.000000,a,s,v1,1,1,0,1.0,2.0,0,0\n1.000000,a,s,v1,1,1,0,1.0,2.0,0,0\n"
            ),
        )
        .unwrap();
        let e = Timeseries::open(&p).unwrap_err().to_string();
        assert!(e.contains("line 3: rows are not in time order"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
