//! What a tune writes: `points.csv`, `pareto.csv`, `recommended.yaml` and
//! `report.txt`.

use std::fmt::Write as _;
use std::path::Path;

use toml::{Table, Value};

use super::Eval;
use super::score::{Scored, champion, index_of, paired_diff};
use super::search::{Candidate, values_text};
use super::sets_of;
use super::spec::{OBJECTIVES, Spec};
use crate::setpath;

pub(crate) fn csv_err(dir: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: cannot write: {e}", dir.display())
}

pub(crate) fn write_outputs(
    spec: &Spec,
    cands: &[Candidate],
    evals: &[Eval],
    scored: &[Scored],
    sched: &[(usize, u32, Option<u64>)],
    dir: &Path,
) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| csv_err(dir, e))?;
    let value_of = |c: usize, i: usize| -> String {
        match &cands[c].values {
            Some(v) => values_text(&v[i]),
            None => "current".to_owned(),
        }
    };
    // points.csv: every evaluation.
    let mut w = csv::Writer::from_path(dir.join("points.csv")).map_err(|e| csv_err(dir, e))?;
    let mut head: Vec<String> = ["round", "candidate", "scenario", "seed", "duration_s"]
        .map(str::to_owned)
        .to_vec();
    head.extend(spec.params.iter().map(|p| p.path.clone()));
    head.extend(
        [
            "requests",
            "errors_5xx",
            "latency_ms_p99",
            "ejections",
            "ejected_host_seconds",
            "healthy_ejected_host_seconds",
            "eject_delay_s",
            "bad_pod_requests",
            "run_dir",
        ]
        .map(str::to_owned),
    );
    w.write_record(&head).map_err(|e| csv_err(dir, e))?;
    for e in evals {
        let s = &e.summary;
        let mut row = vec![
            e.round.to_string(),
            e.candidate.to_string(),
            spec.scenarios[e.scenario].name.clone(),
            e.seed.to_string(),
            mesh_rundir::secs(e.duration_ns),
        ];
        row.extend((0..spec.params.len()).map(|i| value_of(e.candidate, i)));
        row.extend([
            s.requests.to_string(),
            s.errors_5xx.to_string(),
            format!("{:.3}", s.latency_ms[2]),
            s.ejections.to_string(),
            format!("{:.3}", s.ejected_host_seconds),
            format!("{:.3}", s.healthy_ejected_host_seconds),
            s.eject_delay_s
                .map_or_else(String::new, |d| format!("{d:.3}")),
            s.bad_pod_requests.to_string(),
            e.dir.clone(),
        ]);
        w.write_record(&row).map_err(|e| csv_err(dir, e))?;
    }
    w.flush().map_err(|e| csv_err(dir, e))?;
    // pareto.csv: the last round's candidates, best first, with their rank.
    let mut w = csv::Writer::from_path(dir.join("pareto.csv")).map_err(|e| csv_err(dir, e))?;
    let mut head: Vec<String> = ["order", "candidate", "pareto_rank", "feasible"]
        .map(str::to_owned)
        .to_vec();
    head.extend(spec.params.iter().map(|p| p.path.clone()));
    for o in OBJECTIVES {
        head.push(o.name().to_owned());
        head.push(format!("{}_ci95", o.name()));
    }
    head.extend(["error_rate", "healthy_ejected_share"].map(str::to_owned));
    w.write_record(&head).map_err(|e| csv_err(dir, e))?;
    for (i, s) in scored.iter().enumerate() {
        let mut row = vec![
            i.to_string(),
            s.candidate.to_string(),
            s.rank.to_string(),
            (s.violation == 0.0).to_string(),
        ];
        row.extend((0..spec.params.len()).map(|k| value_of(s.candidate, k)));
        for k in 0..5 {
            row.push(format!("{:.3}", s.mean[k]));
            row.push(format!("{:.3}", s.ci[k]));
        }
        row.push(format!("{:.6}", s.error_rate));
        row.push(format!("{:.6}", s.healthy_share));
        w.write_record(&row).map_err(|e| csv_err(dir, e))?;
    }
    w.flush().map_err(|e| csv_err(dir, e))?;
    // The recommendation and the baseline.
    let first = scored.first().ok_or("no candidate was evaluated")?;
    let base = scored.iter().find(|s| s.candidate == 0).unwrap_or(first);
    let best = champion(spec, scored, base);
    let yaml = recommended_yaml(spec, &cands[best.candidate], best, base)?;
    std::fs::write(dir.join("recommended.yaml"), &yaml).map_err(|e| csv_err(dir, e))?;
    let text = report(spec, cands, scored, best, base, sched, evals.len(), dir);
    std::fs::write(dir.join("report.txt"), &text).map_err(|e| csv_err(dir, e))?;
    Ok(text)
}

/// The objects that hold the tuned fields, with the recommended values, as
/// kubectl-applyable Istio YAML.
pub(crate) fn recommended_yaml(
    spec: &Spec,
    c: &Candidate,
    best: &Scored,
    base: &Scored,
) -> Result<String, String> {
    let first = &spec.scenarios[0];
    let mut t = first.base.clone();
    for (p, v) in sets_of(spec, c) {
        setpath::set(&mut t, &p, v).map_err(|e| e.to_string())?;
    }
    // Keep only the objects a tuned path points into.
    let mut mesh = Table::new();
    for p in &spec.params {
        let mut segs = p.path.split('.');
        let (Some(array), Some(name)) = (segs.next(), segs.next()) else {
            continue;
        };
        let Some(Value::Array(items)) = t.get(array) else {
            continue;
        };
        let Some(obj) = items
            .iter()
            .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| items.get(i)))
        else {
            continue;
        };
        let list = mesh
            .entry(array.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(l) = list
            && !l.contains(obj)
        {
            l.push(obj.clone());
        }
    }
    let written = mesh_engine::config::yaml_out::write_mesh(
        &mesh,
        mesh_engine::config::yaml_out::Extensions::Drop,
    );
    let mut head = String::from("# Recommended by `meshsim tune`: kubectl apply -f this file.\n");
    let _ = writeln!(
        head,
        "# Tuned: {}",
        spec.params
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, p) in spec.params.iter().enumerate() {
        let now = c
            .values
            .as_ref()
            .map_or_else(|| "unchanged".to_owned(), |v| values_text(&v[i]));
        let was = setpath::get(&first.base, &p.path)
            .map_or_else(|| "Istio's default".to_owned(), values_text);
        let _ = writeln!(head, "#   {} = {now} (was {was})", p.path);
    }
    let _ = writeln!(
        head,
        "# Over all scenarios: {:.1} client 5xx (current {:.1}), {:.1} healthy host-seconds ejected (current {:.1}), worst p99 {:.1} ms (current {:.1}).",
        best.mean[0], base.mean[0], best.mean[2], base.mean[2], best.mean[1], base.mean[1]
    );
    Ok(head + &written.text)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
    spec: &Spec,
    cands: &[Candidate],
    scored: &[Scored],
    best: &Scored,
    base: &Scored,
    sched: &[(usize, u32, Option<u64>)],
    runs: usize,
    dir: &Path,
) -> String {
    let mut s = String::new();
    let n_scen = spec.scenarios.len();
    let full_cost: usize = (cands.len()) * n_scen * spec.seeds as usize;
    let _ = writeln!(
        s,
        "tune {}: {} candidates × {} scenarios; {} rounds ({}); {} runs (every candidate at full length over {} seeds would be {})",
        spec.name,
        cands.len(),
        n_scen,
        sched.len(),
        sched
            .iter()
            .map(|(k, seeds, d)| format!(
                "{k} × {seeds} seed{} × {}",
                if *seeds == 1 { "" } else { "s" },
                d.map_or_else(
                    || "full".to_owned(),
                    |d| mesh_engine::config::format_duration(std::time::Duration::from_nanos(d))
                )
            ))
            .collect::<Vec<_>>()
            .join(" → "),
        runs,
        spec.seeds,
        full_cost
    );
    let name = |c: usize| -> String {
        match &cands[c].values {
            None => "current".to_owned(),
            Some(v) => spec
                .params
                .iter()
                .zip(v)
                .map(|(p, v)| {
                    format!(
                        "{}={}",
                        p.path.rsplit('.').next().unwrap_or(&p.path),
                        values_text(v)
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    };
    let _ = writeln!(
        s,
        "\nPareto front (last round, mean ± 95 % CI over {} seeds; best first):",
        spec.seeds
    );
    let _ = writeln!(
        s,
        "  {:>4} {:>4}  {:>14} {:>14} {:>16} {:>12} {:>10}  settings",
        "cand", "feas", "5xx", "p99 ms", "healthy ej. s", "eject s", "bad reqs"
    );
    for sc in scored
        .iter()
        .filter(|x| x.rank == 0 || x.candidate == best.candidate || x.candidate == 0)
    {
        let _ = writeln!(
            s,
            "  {:>4} {:>4}  {:>14} {:>14} {:>16} {:>12} {:>10.0}  {}",
            sc.candidate,
            if sc.violation == 0.0 { "yes" } else { "no" },
            format!("{:.1}±{:.1}", sc.mean[0], sc.ci[0]),
            format!("{:.1}±{:.1}", sc.mean[1], sc.ci[1]),
            format!("{:.1}±{:.1}", sc.mean[2], sc.ci[2]),
            format!("{:.2}±{:.2}", sc.mean[3], sc.ci[3]),
            sc.mean[4],
            name(sc.candidate)
        );
    }
    if best.candidate == 0 {
        let _ = writeln!(
            s,
            "\nRecommended: keep the current settings — no candidate meets the constraints and does better beyond the noise of {} seeds (--seeds N with more seeds separates closer candidates)",
            spec.seeds
        );
    } else {
        let _ = writeln!(
            s,
            "\nRecommended: candidate {} — {}",
            best.candidate,
            name(best.candidate)
        );
    }
    if best.violation > 0.0 {
        let _ = writeln!(
            s,
            "  (no candidate meets every constraint: this one comes closest; widen the space or relax the constraints)"
        );
    }
    if best.candidate != base.candidate {
        // Paired over the same seeds (common random numbers): the difference
        // per seed, not the difference of two noisy means.
        let _ = writeln!(
            s,
            "Against the current settings, paired over the same {} seeds (95 %):",
            spec.seeds
        );
        for o in &spec.prefer {
            let (m, h) = paired_diff(best, base, index_of(*o));
            let verdict = if best.per_seed.len() < 2 {
                "one seed: no interval"
            } else if m + h < 0.0 {
                "better"
            } else if m - h > 0.0 {
                "worse"
            } else {
                "not distinguishable from the current settings"
            };
            let _ = writeln!(s, "  {:<30} {:+.2} ± {:.2}  {verdict}", o.name(), m, h);
        }
    }
    let _ = writeln!(s, "Per scenario, current → recommended (mean over seeds):");
    for (i, sc) in spec.scenarios.iter().enumerate() {
        let (c, r) = (base.per_scenario[i], best.per_scenario[i]);
        let pair = |a: String, b: String| format!("{a:>9} → {b:<9}");
        let line = format!(
            "  {:<28} 5xx {}  healthy ejected {}  p99 {}",
            sc.name,
            pair(format!("{:.1}", c[0]), format!("{:.1}", r[0])),
            pair(format!("{:.1}s", c[2]), format!("{:.1}s", r[2])),
            pair(format!("{:.1}ms", c[1]), format!("{:.1}ms", r[1])),
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let _ = writeln!(
        s,
        "\nTune directory: {} (recommended.yaml, pareto.csv, points.csv, report.txt, runs/ replayable with meshsim replay)",
        dir.display()
    );
    s
}
