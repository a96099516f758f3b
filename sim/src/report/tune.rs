//! The report of a tune directory: the last round's candidates on
//! errors_5xx × healthy_ejected_host_seconds, Pareto rank 0 highlighted and
//! the recommendation marked, and the per-scenario text of report.txt.

use std::fmt::Write as _;
use std::path::Path;

use super::charts::{self, Dot};
use super::{esc, figure, table};

/// `Some(n)` for "Recommended: candidate n", `Some(0)` for "keep the current
/// settings" (candidate 0 is the current settings), else None.
fn recommended(report: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.starts_with("Recommended:"))?;
    if line.contains("keep the current settings") {
        return Some(0);
    }
    let rest = line.split("candidate ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub(super) fn body(dir: &Path) -> Result<(String, String), String> {
    let pareto = dir.join("pareto.csv");
    let report_path = dir.join("report.txt");
    let report = std::fs::read_to_string(&report_path).map_err(|e| {
        format!(
            "{}: cannot read: {e} (a tune directory has report.txt beside pareto.csv)",
            report_path.display()
        )
    })?;
    let mut r =
        csv::Reader::from_path(&pareto).map_err(|e| format!("{}: {e}", pareto.display()))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| format!("{}: line 1: {e}", pareto.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "{}: line 1: no column `{name}` (is this a `meshsim tune` directory?)",
                pareto.display()
            )
        })
    };
    let (cc, rc, fc, ec, hc) = (
        col("candidate")?,
        col("pareto_rank")?,
        col("feasible")?,
        col("errors_5xx")?,
        col("healthy_ejected_host_seconds")?,
    );
    let chosen = recommended(&report);
    let first_value = fc + 1;
    let last_value = ec;
    let mut dots: Vec<Dot> = Vec::new();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: line {}: {e}", pareto.display(), i + 2))?;
        let num = |c: usize| -> Result<f64, String> {
            rec.get(c).and_then(|v| v.parse().ok()).ok_or_else(|| {
                format!(
                    "{}: line {}: column `{}`: expected a number",
                    pareto.display(),
                    i + 2,
                    header[c]
                )
            })
        };
        let cand = num(cc)? as u64;
        let rank = num(rc)? as u64;
        let class = if Some(cand) == chosen {
            2
        } else {
            u8::from(rank == 0)
        };
        let label = if cand == 0 {
            "0 (current)".to_owned()
        } else {
            cand.to_string()
        };
        dots.push((num(ec)?, num(hc)?, label, class));
        let settings: Vec<String> = (first_value..last_value)
            .map(|c| {
                format!(
                    "{}={}",
                    header[c].rsplit('.').next().unwrap_or(""),
                    rec.get(c).unwrap_or("")
                )
            })
            .collect();
        rows.push(vec![
            cand.to_string(),
            rank.to_string(),
            rec.get(fc).unwrap_or("").to_owned(),
            rec.get(ec).unwrap_or("").to_owned(),
            rec.get(hc).unwrap_or("").to_owned(),
            settings.join(" "),
        ]);
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<p>Tune directory <code>{}</code>: the last round's {} candidates (pareto.csv), means over its seeds.</p>",
        esc(&dir.display().to_string()),
        dots.len()
    );
    let svg = charts::scatter(
        "Last round: errors vs healthy capacity thrown away",
        "errors_5xx (answers, mean over seeds)",
        "healthy_ejected_host_seconds (s)",
        &dots,
    )?;
    let rec = match chosen {
        Some(0) => "the recommendation is to keep the current settings (candidate 0)".to_owned(),
        Some(n) => format!("recommended: candidate {n}"),
        None => "report.txt names no recommendation".to_owned(),
    };
    s.push_str(&figure(
        "chart-tune",
        &svg,
        &format!("Each dot a candidate, labelled by number; blue, Pareto rank 0; red, {rec}. Lower left is better on both."),
    ));
    let head: Vec<String> = [
        "candidate",
        "pareto_rank",
        "feasible",
        "errors_5xx",
        "healthy_ejected_host_seconds",
        "settings",
    ]
    .iter()
    .map(|h| (*h).to_owned())
    .collect();
    let _ = writeln!(
        s,
        "<h2>Candidates (pareto.csv, best first)</h2>\n{}",
        table(&head, &rows)
    );
    let from = report.find("\nRecommended:").map_or(0, |i| i + 1);
    let _ = writeln!(
        s,
        "<h2>Recommendation and per-scenario comparison (report.txt)</h2>\n<pre>{}</pre>",
        esc(report[from..].trim_end())
    );
    Ok((format!("meshsim report: tune {}", dir.display()), s))
}

#[cfg(test)]
mod tests {
    use super::recommended;

    #[test]
    fn recommendation_is_read_from_the_report() {
        assert_eq!(
            recommended("x\n\nRecommended: candidate 191 — a=1\n"),
            Some(191)
        );
        assert_eq!(
            recommended("Recommended: keep the current settings — no"),
            Some(0)
        );
        assert_eq!(recommended("nothing"), None);
    }
}
