//! `meshsim report` end to end: a run, two runs compared, a sweep and a tune
//! directory give one HTML file whose charts are well-formed SVG with the
//! expected series; bad input is exit 2; and, when a `chromium` binary is
//! on PATH, the page loads in headless Chromium.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{fresh_path, meshsim};

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every `<svg …>…</svg>` of the page, checked well-formed.
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(a) = rest.find("<svg") {
        let b = rest[a..].find("</svg>").expect("every <svg> is closed") + a + "</svg>".len();
        let svg = &rest[a..b];
        if let Err(e) = well_formed(svg) {
            panic!("not well-formed XML: {e}\n{}", &svg[..svg.len().min(400)]);
        }
        out.push(svg);
        rest = &rest[b..];
    }
    out
}

/// A small XML well-formedness check: tags nest and close, attribute values
/// are quoted, and text has no raw `<` or bare `&`.
fn well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut i = 0;
    let b = xml.as_bytes();
    while i < b.len() {
        match b[i] {
            b'<' => {
                let end = xml[i..].find('>').ok_or("unclosed tag")? + i;
                let tag = &xml[i + 1..end];
                if tag.starts_with("!--") {
                    let close = xml[i..].find("-->").ok_or("unclosed comment")? + i;
                    i = close + 3;
                    continue;
                }
                if tag.matches('"').count() % 2 != 0 {
                    return Err(format!("unbalanced quotes in <{tag}>"));
                }
                if let Some(name) = tag.strip_prefix('/') {
                    let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                    if open != name.trim() {
                        return Err(format!("<{open}> closed by </{name}>"));
                    }
                } else if !tag.ends_with('/') {
                    let name = tag.split_whitespace().next().ok_or("empty tag")?;
                    stack.push(name);
                }
                i = end + 1;
            }
            b'&' => {
                let semi = xml[i..].find(';').ok_or("bare &")? + i;
                let entity = &xml[i + 1..semi];
                let known = ["lt", "gt", "amp", "quot", "apos"].contains(&entity)
                    || entity.starts_with('#');
                if !known {
                    return Err(format!("unknown entity &{entity};"));
                }
                i = semi + 1;
            }
            _ => i += 1,
        }
    }
    match stack.pop() {
        None => Ok(()),
        Some(open) => Err(format!("<{open}> never closed")),
    }
}

/// The text elements of an SVG, trimmed.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..t.find("</text>")?];
            Some(
                body.trim()
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            )
        })
        .collect()
}

fn has_text(svg: &str, want: &str) -> bool {
    texts(svg).iter().any(|t| t == want)
}

/// The figure with this id: its SVG.
fn chart<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("<figure id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let rest = &html[at..];
    &rest[rest.find("<svg").unwrap()..rest.find("</svg>").unwrap()]
}

fn one_bad_pod(out: &Path) {
    ok(&meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--set",
        "duration=20s",
        "--set",
        "timeline.0.at=5s",
        "--out",
        s(out),
    ]));
}

#[test]
fn a_run_report_has_each_chart_as_well_formed_svg_with_its_series() {
    let dir = fresh_path("run");
    one_bad_pod(&dir);
    let html_path = dir.join("r.html");
    ok(&meshsim(&["report", s(&dir), "-o", s(&html_path)]));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(!html.contains("http://") || html.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svgs(&html).len() >= 4);
    assert!(has_text(chart(&html, "chart-success"), "success rate"));
    assert!(has_text(chart(&html, "chart-rps"), "requests/s"));
    let lat = chart(&html, "chart-latency");
    assert!(
        has_text(lat, "p50") && has_text(lat, "p99"),
        "latency legend"
    );
    let lanes = chart(&html, "chart-lanes");
    assert!(has_text(lanes, "backend-v1-3"), "the bad pod has a lane");
    assert!(has_text(lanes, "failing (timeline fault)") && has_text(lanes, "healthy"));
    assert!(has_text(lanes, "ejected (per proxy; darker: more proxies)"));
    assert!(html.contains("simulated time (s)"));
    assert!(
        html.contains("consecutive5xxErrors = 5"),
        "the DestinationRule settings"
    );
    assert!(
        html.contains("<td class=\"l\">errors_5xx</td>"),
        "the summary table"
    );
}

#[test]
fn a_comparison_overlays_both_runs_and_gives_every_difference() {
    let a = fresh_path("cmp-a");
    let b = fresh_path("cmp-b");
    one_bad_pod(&a);
    ok(&meshsim(&[
        "run",
        "experiments/one-bad-pod.toml",
        "--set",
        "duration=20s",
        "--set",
        "timeline.0.at=5s",
        "--set",
        "destinationRule.backend.trafficPolicy.outlierDetection.consecutive5xxErrors=1",
        "--out",
        s(&b),
    ]));
    let out = a.join("cmp.html");
    ok(&meshsim(&[
        "report",
        s(&a),
        "--compare",
        s(&b),
        "-o",
        s(&out),
    ]));
    let html = std::fs::read_to_string(&out).unwrap();
    svgs(&html);
    for id in ["chart-compare-success", "chart-compare-p99"] {
        let c = chart(&html, id);
        assert!(c.contains("A: ") && c.contains("B: "), "{id} has both runs");
    }
    assert!(html.contains("B − A"));
    assert!(html.contains("<td class=\"l\">ejections</td>"));
}

#[test]
fn a_sweep_report_has_a_heatmap_and_the_best_points() {
    let dir = fresh_path("sweep");
    ok(&meshsim(&[
        "sweep",
        "sim/tests/data/report-sweep.toml",
        "--threads",
        "1",
        "--out",
        s(&dir),
    ]));
    ok(&meshsim(&["report", s(&dir)]));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    svgs(&html);
    let h = chart(&html, "chart-heatmap-0-1");
    assert!(h.contains("baseEjectionTime") && h.contains("consecutive5xxErrors"));
    assert!(
        has_text(h, "30s") && has_text(h, "5s"),
        "the swept values label the axes"
    );
    assert!(html.contains("Best points by errors_5xx"));
    // One swept parameter: a line, not a heatmap (the second swept column
    // dropped from a copy of summary.csv).
    let one = fresh_path("sweep-one");
    std::fs::create_dir_all(&one).unwrap();
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let dropped: String = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(2);
            f.join(",") + "\n"
        })
        .collect();
    std::fs::write(one.join("summary.csv"), dropped).unwrap();
    ok(&meshsim(&[
        "report",
        s(&one),
        "--objective",
        "success_rate",
    ]));
    let html = std::fs::read_to_string(one.join("report.html")).unwrap();
    svgs(&html);
    let line = chart(&html, "chart-sweep-line");
    assert!(has_text(line, "30s") && has_text(line, "success_rate"));
    assert!(!html.contains("chart-heatmap"));
    let o = meshsim(&["report", s(&dir), "--objective", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--objective nope"));
}

#[test]
fn a_tune_report_marks_the_recommendation_and_quotes_the_scenarios() {
    let dir = fresh_path("tune");
    ok(&meshsim(&[
        "tune",
        "sim/tests/data/tune-synthetic.toml",
        "--budget",
        "4",
        "--seeds",
        "1",
        "--threads",
        "1",
        "--out",
        s(&dir),
    ]));
    ok(&meshsim(&["report", s(&dir)]));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    svgs(&html);
    let c = chart(&html, "chart-tune");
    assert!(has_text(c, "Pareto rank 0") && has_text(c, "recommended"));
    assert!(c.contains("healthy_ejected_host_seconds"));
    assert!(html.contains("Per scenario, current → recommended"));
}

#[test]
fn a_directory_that_is_not_a_run_is_bad_input() {
    let dir = fresh_path("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let o = meshsim(&["report", s(&dir)]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("summary.csv") && err.contains("run directory"),
        "{err}"
    );
    let o = meshsim(&["report", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn headless_chromium_loads_the_report() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("skipped: no chromium on PATH (.ci/run installs it)");
        return;
    };
    let dir = fresh_path("chromium");
    one_bad_pod(&dir);
    let html = dir.join("r.html");
    ok(&meshsim(&["report", s(&dir), "-o", s(&html)]));
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &format!("file://{}", html.display()),
        ])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&o.stdout);
    let expected = svgs(&std::fs::read_to_string(&html).unwrap()).len();
    assert_eq!(dom.matches("<svg").count(), expected, "every chart parsed");
    assert!(dom.contains("chart-lanes"));
}
