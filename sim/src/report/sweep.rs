//! The report of a sweep directory: heatmaps of an objective for each pair
//! of swept parameters (a line with one), and the best points.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use mesh_rundir::SummaryTable;

use super::{charts, esc, figure, table};

/// A sweep directory has a summary.csv whose first column is `point`.
pub(super) fn is_sweep(dir: &Path) -> bool {
    std::fs::read(dir.join("summary.csv")).is_ok_and(|b| b.starts_with(b"point,"))
}

/// The last segment of a swept path, for axes.
fn short(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

struct Point {
    values: Vec<String>,
    objective: Vec<f64>,
}

impl Point {
    fn mean(&self) -> f64 {
        self.objective.iter().sum::<f64>() / self.objective.len().max(1) as f64
    }
}

pub(super) fn body(dir: &Path, objective: &str) -> Result<(String, String), String> {
    let path = dir.join("summary.csv");
    let summary = SummaryTable::read(&path).map_err(|e| e.to_string())?;
    let end = summary
        .column("format_version")
        .unwrap_or(summary.columns.len());
    let params: Vec<String> = summary.columns[1..end].to_vec();
    let Some(oc) = summary.column(objective).filter(|&c| c >= end) else {
        return Err(format!(
            "--objective {objective}: not a column of {} (use a numeric summary column such as errors_5xx, success_rate, latency_ms_p99, ejected_host_seconds, healthy_ejected_host_seconds)",
            path.display()
        ));
    };
    let higher_is_better = objective == "success_rate";
    let mut points: BTreeMap<u64, Point> = BTreeMap::new();
    for (i, row) in summary.rows.iter().enumerate() {
        let bad = |what: &str| format!("{}: line {}: {what}", path.display(), i + 2);
        let p: u64 = row[0]
            .parse()
            .map_err(|_| bad("column `point`: expected a number"))?;
        let v: f64 = row[oc].parse().map_err(|_| {
            bad(&format!(
                "column `{objective}`: expected a number, found `{}`",
                row[oc]
            ))
        })?;
        points
            .entry(p)
            .or_insert_with(|| Point {
                values: row[1..end].to_vec(),
                objective: Vec::new(),
            })
            .objective
            .push(v);
    }
    // Each parameter's values in order of first appearance.
    let mut levels: Vec<Vec<String>> = vec![Vec::new(); params.len()];
    for p in points.values() {
        for (k, v) in p.values.iter().enumerate() {
            if !levels[k].contains(v) {
                levels[k].push(v.clone());
            }
        }
    }
    let seeds = points
        .values()
        .map(|p| p.objective.len())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<p>Sweep directory <code>{}</code>: {} points × up to {seeds} seeds; objective <b>{}</b> ({}), mean over seeds.</p>",
        esc(&dir.display().to_string()),
        points.len(),
        esc(objective),
        if higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        }
    );
    match params.len() {
        0 => s.push_str("<p>No swept parameter in summary.csv.</p>\n"),
        1 => {
            let vals: Vec<f64> = levels[0]
                .iter()
                .map(|l| mean_where(&points, &[(0, l)]).unwrap_or(0.0))
                .collect();
            let svg = charts::category_line(
                &format!("{objective} by {}", short(&params[0])),
                (short(&params[0]), &levels[0]),
                objective,
                &vals,
            )?;
            s.push_str(&figure(
                "chart-sweep-line",
                &svg,
                &format!(
                    "{objective} (mean over seeds) for each value of {}.",
                    params[0]
                ),
            ));
        }
        _ => {
            for a in 0..params.len() {
                for b in a + 1..params.len() {
                    let cells: Vec<Vec<Option<f64>>> = levels[a]
                        .iter()
                        .map(|x| {
                            levels[b]
                                .iter()
                                .map(|y| mean_where(&points, &[(a, x), (b, y)]))
                                .collect()
                        })
                        .collect();
                    let svg = charts::heatmap(
                        &format!("{objective}: {} × {}", short(&params[a]), short(&params[b])),
                        (short(&params[a]), &levels[a]),
                        (short(&params[b]), &levels[b]),
                        &cells,
                        higher_is_better,
                    )?;
                    s.push_str(&figure(
                        &format!("chart-heatmap-{a}-{b}"),
                        &svg,
                        &format!(
                            "{objective}, mean over seeds and over the other swept parameters, for {} (x) × {} (y); green best, red worst.",
                            params[a], params[b]
                        ),
                    ));
                }
            }
        }
    }
    let mut best: Vec<(&u64, &Point)> = points.iter().collect();
    best.sort_by(|x, y| {
        let o = x.1.mean().total_cmp(&y.1.mean());
        if higher_is_better { o.reverse() } else { o }.then(x.0.cmp(y.0))
    });
    let mut header = vec!["point".to_owned(), format!("{objective} (mean)")];
    header.extend(params.iter().map(|p| short(p).to_owned()));
    let rows: Vec<Vec<String>> = best
        .iter()
        .take(10)
        .map(|(n, p)| {
            let mut r = vec![n.to_string(), charts::fmt_num(p.mean())];
            r.extend(p.values.iter().cloned());
            r
        })
        .collect();
    let _ = writeln!(
        s,
        "<h2>Best points by {}</h2>\n{}",
        esc(objective),
        table(&header, &rows)
    );
    let _ = writeln!(
        s,
        "<p>Each point's runs are in <code>point-NNNN-seed-S/</code>: <code>meshsim report</code> on one of them draws its run.</p>"
    );
    Ok((format!("meshsim report: sweep {}", dir.display()), s))
}

/// Mean of the point means whose values match every `(parameter, value)`.
fn mean_where(points: &BTreeMap<u64, Point>, want: &[(usize, &String)]) -> Option<f64> {
    let means: Vec<f64> = points
        .values()
        .filter(|p| want.iter().all(|(k, v)| &p.values[*k] == *v))
        .map(Point::mean)
        .collect();
    (!means.is_empty()).then(|| means.iter().sum::<f64>() / means.len() as f64)
}
