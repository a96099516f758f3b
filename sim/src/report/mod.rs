//! `meshsim report`: one self-contained HTML file (inline SVG drawn with
//! `plotters`, no script, no network) for a run, sweep or tune directory.
//!
//! **Architecture Invariant:** a report reads directories only through
//! `mesh-rundir` (and, for a tune directory, its own CSV and text outputs),
//! never the simulator's internals, so a `meshproxy --record` directory gets
//! the same pictures as a `meshsim run` directory.

mod charts;
mod run;
mod sweep;
mod tune;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// At most this many points per series in a chart; longer series are
/// bucketed (sums of counts, the highest p99 of the bucket), and the chart
/// says so.
pub const MAX_POINTS: usize = 2000;

/// What `meshsim report` was asked.
#[derive(Debug)]
pub struct Args<'a> {
    /// A run, sweep or tune directory.
    pub dir: &'a Path,
    /// A second run directory to overlay.
    pub compare: Option<&'a Path>,
    /// The HTML file to write (default `DIR/report.html`).
    pub out: Option<&'a Path>,
    /// The summary column a sweep's heatmaps show.
    pub objective: &'a str,
}

/// Writes the report; returns the line to print, or the error (exit 2).
pub fn command(args: &Args<'_>) -> Result<String, String> {
    let (title, body) = if args.dir.join("pareto.csv").is_file() {
        if args.compare.is_some() {
            return Err(format!(
                "{}: --compare takes two run directories; this is a tune directory",
                args.dir.display()
            ));
        }
        tune::body(args.dir)?
    } else if sweep::is_sweep(args.dir) {
        if args.compare.is_some() {
            return Err(format!(
                "{}: --compare takes two run directories; this is a sweep directory",
                args.dir.display()
            ));
        }
        sweep::body(args.dir, args.objective)?
    } else {
        run::body(args.dir, args.compare)?
    };
    let html = page(&title, &body);
    let out: PathBuf = args
        .out
        .map_or_else(|| args.dir.join("report.html"), Path::to_path_buf);
    std::fs::write(&out, &html).map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
    Ok(format!(
        "Report: {} ({} KB)\n",
        out.display(),
        html.len().div_ceil(1024)
    ))
}

/// The page around the body: inline CSS only.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:1260px;margin:10px auto;color:#222}}\
         figure{{margin:16px 0}} figcaption{{font-size:13px;color:#555}}\
         table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}\
         th{{background:#f0f0f0}} td.l,th.l{{text-align:left}} pre{{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}}\
         .worse{{color:#b00}} .better{{color:#070}}\
         </style></head><body>\n<h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

/// HTML escaping of text.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A figure: the SVG and a caption.
pub(crate) fn figure(id: &str, svg: &str, caption: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure id=\"{id}\">\n{svg}\n<figcaption>{}</figcaption></figure>\n",
        esc(caption)
    );
    s
}

/// A table from a header and rows; the first column left-aligned.
pub(crate) fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for (i, h) in header.iter().enumerate() {
        let class = if i == 0 { " class=\"l\"" } else { "" };
        let _ = write!(s, "<th{class}>{}</th>", esc(h));
    }
    s.push_str("</tr>\n");
    for r in rows {
        s.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if i == 0 { " class=\"l\"" } else { "" };
            let _ = write!(s, "<td{class}>{}</td>", esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}
