//! The report of one run directory, or two overlaid (`--compare`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use mesh_rundir::RunDir;

use super::charts::{self, HEALTHY, Lane, PALETTE, Series};
use super::{MAX_POINTS, esc, figure, table};

/// At most this many endpoint lanes (in name order), so a run where many
/// pods fail keeps a readable page.
const MAX_LANES: usize = 100;

/// One window of what the client saw.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// End of the window, seconds.
    end_s: f64,
    /// Length of the window, seconds.
    len_s: f64,
    requests: u64,
    successes: u64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
}

fn open(dir: &Path) -> Result<RunDir, String> {
    RunDir::open(dir).map_err(|e| {
        format!("{e}\n(meshsim report takes a run directory, a sweep directory with summary.csv and point-* directories, or a tune directory with pareto.csv)")
    })
}

fn ns_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The client's windows: calls.csv edge 0 (the load), else the sum of the
/// per-endpoint rows of timeseries.csv (a recording may have no calls).
fn windows(run: &RunDir) -> Result<(Vec<Window>, &'static str), String> {
    let mut out: Vec<Window> = Vec::new();
    let mut last = 0u64;
    if let Some(first) = run.calls.first() {
        for c in run
            .calls
            .iter()
            .filter(|c| c.source == first.source && c.host == first.host)
        {
            out.push(Window {
                end_s: ns_s(c.time_ns),
                len_s: ns_s(c.time_ns.saturating_sub(last)),
                requests: c.counts.requests,
                successes: c.counts.successes,
                latency_ms_p50: c.latency_ms_p50,
                latency_ms_p99: c.latency_ms_p99,
            });
            last = c.time_ns;
        }
        return Ok((out, "calls.csv, edge 0 (the load as the client saw it)"));
    }
    for i in 0..run.timeseries.windows.len() {
        let rows = run.timeseries.rows(i).map_err(|e| e.to_string())?;
        let t = run.timeseries.windows[i].time_ns;
        let mut w = Window {
            end_s: ns_s(t),
            len_s: ns_s(t.saturating_sub(last)),
            ..Window::default()
        };
        let mut weighted = 0.0;
        for r in &rows {
            w.requests += r.requests;
            w.successes += r.successes;
            weighted += r.latency_ms_p50 * r.requests as f64;
            w.latency_ms_p99 = w.latency_ms_p99.max(r.latency_ms_p99);
        }
        w.latency_ms_p50 = weighted / w.requests.max(1) as f64;
        out.push(w);
        last = t;
    }
    Ok((
        out,
        "timeseries.csv, summed over endpoints (p50 weighted by requests, p99 the highest endpoint's)",
    ))
}

/// At most `MAX_POINTS` windows: buckets of consecutive windows, counts
/// summed, p50 weighted by requests, p99 the bucket's highest.
fn downsample(ws: &[Window]) -> (Vec<Window>, Option<String>) {
    if ws.len() <= MAX_POINTS {
        return (ws.to_vec(), None);
    }
    let per = ws.len().div_ceil(MAX_POINTS);
    let out: Vec<Window> = ws
        .chunks(per)
        .map(|c| {
            let mut w = Window {
                end_s: c[c.len() - 1].end_s,
                ..Window::default()
            };
            let mut weighted = 0.0;
            for x in c {
                w.len_s += x.len_s;
                w.requests += x.requests;
                w.successes += x.successes;
                weighted += x.latency_ms_p50 * x.requests as f64;
                w.latency_ms_p99 = w.latency_ms_p99.max(x.latency_ms_p99);
            }
            w.latency_ms_p50 = weighted / w.requests.max(1) as f64;
            w
        })
        .collect();
    let note = format!(
        "downsampled: {} windows shown as {} points of {per} windows each (counts summed, p99 the highest of the bucket)",
        ws.len(),
        out.len()
    );
    (out, Some(note))
}

fn success_pct(ws: &[Window]) -> Vec<(f64, f64)> {
    ws.iter()
        .filter(|w| w.requests > 0)
        .map(|w| (w.end_s, 100.0 * w.successes as f64 / w.requests as f64))
        .collect()
}

fn caption(base: &str, note: Option<&String>) -> String {
    match note {
        Some(n) => format!("{base}; {n}."),
        None => format!("{base}."),
    }
}

fn run_name(run: &RunDir) -> String {
    let name = run.summary.get(0, "experiment").unwrap_or("run");
    format!("{name} ({})", run.dir.display())
}

/// The report of one run, or of two with `compare`.
pub(super) fn body(dir: &Path, compare: Option<&Path>) -> Result<(String, String), String> {
    let run = open(dir)?;
    if let Some(other) = compare {
        let b = open(other)?;
        return Ok((
            format!("meshsim report: {} vs {}", run_name(&run), run_name(&b)),
            compare_body(&run, &b)?,
        ));
    }
    let (ws, source) = windows(&run)?;
    let (ws, note) = downsample(&ws);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<p>Run directory <code>{}</code>. Client series from {}. Time is simulated seconds since the start of the run.</p>",
        esc(&run.dir.display().to_string()),
        esc(source)
    );
    let ok = charts::lines(
        "Client success rate",
        "simulated time (s)",
        "success rate (%)",
        &[Series {
            name: "success rate".to_owned(),
            color: HEALTHY,
            points: success_pct(&ws),
        }],
        Some(y_floor(&success_pct(&ws))),
    )?;
    s.push_str(&figure(
        "chart-success",
        &ok,
        &caption(
            "Share of the client's requests answered below 400, per window",
            note.as_ref(),
        ),
    ));
    let rps: Vec<(f64, f64)> = ws
        .iter()
        .filter(|w| w.len_s > 0.0)
        .map(|w| (w.end_s, w.requests as f64 / w.len_s))
        .collect();
    let rps = charts::lines(
        "Client requests per second",
        "simulated time (s)",
        "requests/s",
        &[Series {
            name: "requests/s".to_owned(),
            color: PALETTE[0],
            points: rps,
        }],
        None,
    )?;
    s.push_str(&figure(
        "chart-rps",
        &rps,
        &caption(
            "Requests answered to the client per simulated second",
            note.as_ref(),
        ),
    ));
    let lat = |f: fn(&Window) -> f64| -> Vec<(f64, f64)> {
        ws.iter()
            .filter(|w| w.requests > 0)
            .map(|w| (w.end_s, f(w)))
            .collect()
    };
    let latency = charts::lines(
        "Client latency",
        "simulated time (s)",
        "latency (ms)",
        &[
            Series {
                name: "p50".to_owned(),
                color: PALETTE[0],
                points: lat(|w| w.latency_ms_p50),
            },
            Series {
                name: "p99".to_owned(),
                color: PALETTE[1],
                points: lat(|w| w.latency_ms_p99),
            },
        ],
        None,
    )?;
    s.push_str(&figure(
        "chart-latency",
        &latency,
        &caption(
            "Client-visible latency percentiles per window",
            note.as_ref(),
        ),
    ));
    let end_s = ws.last().map_or(0.0, |w| w.end_s);
    let (mut lanes, hidden) = lanes(&run, end_s);
    let over = lanes.len().saturating_sub(MAX_LANES);
    lanes.truncate(MAX_LANES);
    if lanes.is_empty() {
        s.push_str(
            "<p>No endpoint failed or was ejected in this run (no fault or ejection events).</p>\n",
        );
    } else {
        let svg = charts::lanes("Endpoints: failing, ejected, returned", &lanes, end_s)?;
        let mut cap = String::from(
            "Per endpoint: red, failing (timeline fault_start to fault_end); dark red, ejected by a proxy (eject to return, one bar per proxy); green tick, returned",
        );
        if hidden > 0 {
            let _ = write!(
                cap,
                "; {hidden} endpoints without fault or ejection not shown"
            );
        }
        if over > 0 {
            let _ = write!(
                cap,
                "; at most {MAX_LANES} lanes: {over} more endpoints with events not shown (events.csv has them)"
            );
        }
        s.push_str(&figure("chart-lanes", &svg, &format!("{cap}.")));
    }
    let (split, split_note) = split(&run)?;
    if split.is_empty() {
        s.push_str("<p>Every service has one version: no split per version to show.</p>\n");
    }
    for (k, (service, series)) in split.iter().enumerate() {
        let svg = charts::stacked(&format!("Requests to {service} per version"), series)?;
        s.push_str(&figure(
            &format!("chart-split-{k}"),
            &svg,
            &caption(
                &format!("Share of the attempts to {service} each version (subset) received, per window (timeseries.csv, retries included)"),
                split_note.as_ref(),
            ),
        ));
    }
    let _ = writeln!(s, "<h2>Summary (summary.csv)</h2>\n{}", summary_table(&run));
    s.push_str(&settings(&run));
    Ok((format!("meshsim report: {}", run_name(&run)), s))
}

/// A y range for a success rate: from a little below the lowest value.
fn y_floor(pts: &[(f64, f64)]) -> (f64, f64) {
    let lo = pts.iter().map(|p| p.1).fold(100.0, f64::min);
    let lo = if lo >= 99.0 {
        98.0
    } else {
        (lo - (100.0 - lo) * 0.1).floor().max(0.0)
    };
    (lo, 100.5)
}

/// Lanes of the endpoints that failed or were ejected, in name order; the
/// number of other endpoints.
fn lanes(run: &RunDir, end_s: f64) -> (Vec<Lane>, usize) {
    let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
    let mut fault_from: BTreeMap<String, f64> = BTreeMap::new();
    let mut eject_from: BTreeMap<(String, String), f64> = BTreeMap::new();
    for e in &run.events {
        let t = ns_s(e.time_ns);
        let lane = || Lane {
            name: e.endpoint.clone(),
            ..Lane::default()
        };
        match e.kind.as_str() {
            "fault_start" => {
                lanes.entry(e.endpoint.clone()).or_insert_with(lane);
                fault_from.entry(e.endpoint.clone()).or_insert(t);
            }
            "fault_end" => {
                if let Some(from) = fault_from.remove(&e.endpoint) {
                    lanes
                        .entry(e.endpoint.clone())
                        .or_insert_with(lane)
                        .failing
                        .push((from, t));
                }
            }
            "eject" => {
                lanes.entry(e.endpoint.clone()).or_insert_with(lane);
                eject_from.insert((e.proxy.clone(), e.endpoint.clone()), t);
            }
            "return" => {
                let l = lanes.entry(e.endpoint.clone()).or_insert_with(lane);
                l.returned.push(t);
                if let Some(from) = eject_from.remove(&(e.proxy.clone(), e.endpoint.clone())) {
                    l.ejected.push((from, t));
                }
            }
            _ => {}
        }
    }
    for (ep, from) in fault_from {
        if let Some(l) = lanes.get_mut(&ep) {
            l.failing.push((from, end_s));
        }
    }
    for ((_, ep), from) in eject_from {
        if let Some(l) = lanes.get_mut(&ep) {
            l.ejected.push((from, end_s));
        }
    }
    let total = run.timeseries.rows(0).map(|r| r.len()).unwrap_or(0);
    let with_events = lanes.len();
    (
        lanes.into_values().collect(),
        total.saturating_sub(with_events),
    )
}

/// For each service with more than one version: the share of its attempts
/// each version received per window (downsampled by sums).
/// Per service: its name and one share series per version.
type Split = Vec<(String, Vec<Series>)>;

fn split(run: &RunDir) -> Result<(Split, Option<String>), String> {
    let ts = &run.timeseries;
    let n = ts.windows.len();
    let per = n.div_ceil(MAX_POINTS).max(1);
    let buckets = n.div_ceil(per);
    let mut by: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let mut xs = vec![0.0; buckets];
    for i in 0..n {
        let b = i / per;
        xs[b] = ns_s(ts.windows[i].time_ns);
        for r in ts.rows(i).map_err(|e| e.to_string())? {
            by.entry((r.service, r.version))
                .or_insert_with(|| vec![0; buckets])[b] += r.requests;
        }
    }
    let mut out: Vec<(String, Vec<Series>)> = Vec::new();
    let services: Vec<String> = by
        .keys()
        .map(|k| k.0.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for service in services {
        let versions: Vec<(&String, &Vec<u64>)> = by
            .iter()
            .filter(|(k, _)| k.0 == service)
            .map(|(k, v)| (&k.1, v))
            .collect();
        if versions.len() < 2 {
            continue;
        }
        let totals: Vec<u64> = (0..buckets)
            .map(|b| versions.iter().map(|v| v.1[b]).sum())
            .collect();
        let series = versions
            .iter()
            .enumerate()
            .map(|(k, (version, v))| Series {
                name: format!("{service} {version}"),
                color: PALETTE[k % PALETTE.len()],
                points: (0..buckets)
                    .map(|b| (xs[b], 100.0 * v[b] as f64 / totals[b].max(1) as f64))
                    .collect(),
            })
            .collect();
        out.push((service, series));
    }
    let note = (per > 1).then(|| {
        format!("downsampled: {n} windows shown as {buckets} points of {per} windows each")
    });
    Ok((out, note))
}

/// summary.csv as a two-column table (one row per figure).
fn summary_table(run: &RunDir) -> String {
    let rows: Vec<Vec<String>> = run
        .summary
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                c.clone(),
                run.summary.rows[0].get(i).cloned().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["figure".to_owned(), "value".to_owned()], &rows)
}

/// The key settings: the DestinationRule sections of experiment.toml, and
/// the whole file folded.
fn settings(run: &RunDir) -> String {
    let Some(exp) = &run.experiment else {
        return "<p>No experiment.toml in this directory (a recording): no settings to show.</p>\n"
            .to_owned();
    };
    let mut keep = String::new();
    let mut head = String::new();
    let mut in_dr = false;
    let mut in_top = true;
    for line in exp.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_dr = t.contains("destinationRule") || t.contains("DestinationRule");
            in_top = false;
        }
        if in_dr {
            keep.push_str(line);
            keep.push('\n');
        } else if in_top
            && ["name", "duration", "seed", "window"]
                .iter()
                .any(|k| t.starts_with(k))
        {
            head.push_str(line);
            head.push('\n');
        }
    }
    if !keep.is_empty() {
        keep.insert_str(0, &head);
    }
    let mut s = String::from("<h2>Key settings</h2>\n");
    if keep.is_empty() {
        s.push_str("<p>experiment.toml has no DestinationRule (no outlier detection, no traffic policy).</p>\n");
    } else {
        let _ = writeln!(
            s,
            "<p>DestinationRules of experiment.toml (trafficPolicy, outlierDetection):</p><pre>{}</pre>",
            esc(&keep)
        );
    }
    let _ = writeln!(
        s,
        "<details><summary>experiment.toml</summary><pre>{}</pre></details>",
        esc(exp)
    );
    s
}

fn compare_body(a: &RunDir, b: &RunDir) -> Result<String, String> {
    let (wa, _) = windows(a)?;
    let (wb, _) = windows(b)?;
    let (wa, na) = downsample(&wa);
    let (wb, nb) = downsample(&wb);
    let note = na.or(nb);
    let (an, bn) = (
        format!("A: {}", a.summary.get(0, "experiment").unwrap_or("run")),
        format!("B: {}", b.summary.get(0, "experiment").unwrap_or("run")),
    );
    let (an, bn) = if an[3..] == bn[3..] {
        (
            format!("A: {}", a.dir.display()),
            format!("B: {}", b.dir.display()),
        )
    } else {
        (an, bn)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<p>A = <code>{}</code>, B = <code>{}</code>. Time is simulated seconds since the start of each run.</p>",
        esc(&a.dir.display().to_string()),
        esc(&b.dir.display().to_string())
    );
    let (sa, sb) = (success_pct(&wa), success_pct(&wb));
    let lo = y_floor(&sa).0.min(y_floor(&sb).0);
    let ok = charts::lines(
        "Client success rate, A and B",
        "simulated time (s)",
        "success rate (%)",
        &[
            Series {
                name: an.clone(),
                color: PALETTE[0],
                points: sa,
            },
            Series {
                name: bn.clone(),
                color: PALETTE[1],
                points: sb,
            },
        ],
        Some((lo, 100.5)),
    )?;
    s.push_str(&figure(
        "chart-compare-success",
        &ok,
        &caption("Success rate per window of both runs", note.as_ref()),
    ));
    let p99 = |ws: &[Window]| -> Vec<(f64, f64)> {
        ws.iter()
            .filter(|w| w.requests > 0)
            .map(|w| (w.end_s, w.latency_ms_p99))
            .collect()
    };
    let lat = charts::lines(
        "Client p99 latency, A and B",
        "simulated time (s)",
        "p99 latency (ms)",
        &[
            Series {
                name: an,
                color: PALETTE[0],
                points: p99(&wa),
            },
            Series {
                name: bn,
                color: PALETTE[1],
                points: p99(&wb),
            },
        ],
        None,
    )?;
    s.push_str(&figure(
        "chart-compare-p99",
        &lat,
        &caption("p99 latency per window of both runs", note.as_ref()),
    ));
    let mut rows = Vec::new();
    for (i, c) in a.summary.columns.iter().enumerate() {
        let va = a.summary.rows[0].get(i).cloned().unwrap_or_default();
        let vb = b.summary.get(0, c).unwrap_or("").to_owned();
        let diff = match (va.parse::<f64>(), vb.parse::<f64>()) {
            (Ok(x), Ok(y)) if c != "format_version" && c != "seed" => {
                let d = y - x;
                let pct = if x != 0.0 {
                    format!(" ({:+.1} %)", 100.0 * d / x.abs())
                } else {
                    String::new()
                };
                format!("{}{pct}", signed(d))
            }
            _ if va == vb => "same".to_owned(),
            _ => "differs".to_owned(),
        };
        rows.push(vec![c.clone(), va, vb, diff]);
    }
    let _ = writeln!(
        s,
        "<h2>Summary, A and B</h2>\n{}",
        table(
            &[
                "figure".to_owned(),
                "A".to_owned(),
                "B".to_owned(),
                "B − A".to_owned()
            ],
            &rows
        )
    );
    s.push_str("<h2>A</h2>\n");
    s.push_str(&settings(a));
    s.push_str("<h2>B</h2>\n");
    s.push_str(&settings(b));
    Ok(s)
}

fn signed(d: f64) -> String {
    let t = charts::fmt_num(d.abs());
    if d < 0.0 {
        format!("−{t}")
    } else {
        format!("+{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_POINTS, Window, downsample};

    fn window(i: usize, requests: u64, p99: f64) -> Window {
        Window {
            end_s: (i + 1) as f64,
            len_s: 1.0,
            requests,
            successes: requests - 1,
            latency_ms_p50: 10.0,
            latency_ms_p99: p99,
        }
    }

    #[test]
    fn short_series_are_drawn_as_they_are() {
        let ws: Vec<Window> = (0..MAX_POINTS).map(|i| window(i, 10, 50.0)).collect();
        let (out, note) = downsample(&ws);
        assert_eq!(out.len(), MAX_POINTS);
        assert!(note.is_none());
    }

    #[test]
    fn long_series_sum_counts_and_keep_the_highest_p99_per_bucket() {
        let ws: Vec<Window> = (0..3600)
            .map(|i| window(i, 10, if i == 7 { 900.0 } else { 50.0 }))
            .collect();
        let (out, note) = downsample(&ws);
        assert_eq!(out.len(), 1800);
        assert_eq!(out[3].requests, 20);
        assert_eq!(out[3].successes, 18);
        assert_eq!(out[3].len_s, 2.0);
        assert_eq!(out[3].end_s, 8.0);
        assert_eq!(out[3].latency_ms_p99, 900.0);
        assert_eq!(out[4].latency_ms_p99, 50.0);
        assert_eq!(
            note.as_deref(),
            Some(
                "downsampled: 3600 windows shown as 1800 points of 2 windows each (counts summed, p99 the highest of the bucket)"
            )
        );
    }
}
