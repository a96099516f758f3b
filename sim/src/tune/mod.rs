//! `meshsim tune`: which outlier-detection settings (and weights) to deploy,
//! judged over several scenarios at once, with the trade-offs shown.
//!
//! ```text
//! experiments ──[tune]──▶ space, scenarios, constraints, preference
//!   ──space-filling design (or the whole grid when it fits the budget)──▶ candidates
//!   ──successive halving: short runs and one seed first, the best third on,
//!     the last round at full length over every seed──▶ evaluations
//!   ──▶ points.csv, pareto.csv, recommended.yaml, report.txt
//! ```
//!
//! Every evaluation is an ordinary deterministic run of the simulator (the
//! engine in the loop, nothing bypassed). Every candidate of a round runs
//! the same seeds (common random numbers: the same arrivals and pod
//! behaviour), so differences between candidates are the settings', not
//! noise. Results are collected in job order: the same inputs give the same
//! bytes whatever the thread count.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::experiment::ExperimentFile;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::plan::{self, Job};

mod output;
mod score;
mod search;
mod shards;
mod spec;

use output::write_outputs;
use score::{Scored, index_of, order, score};
use search::{Candidate, candidates, values_text};
pub use spec::{OBJECTIVES, Objective};
use spec::{Scenario, Spec, spec};

use crate::setpath;

/// What `meshsim tune` was asked.
#[derive(Debug)]
pub struct Args<'a> {
    /// Experiments: the first has the `[tune]` table; each one (or each of
    /// its `[[tune.scenario]]`) is a scenario.
    pub files: &'a [PathBuf],
    /// Candidates to evaluate (overrides `tune.budget`).
    pub budget: Option<usize>,
    /// Seeds of the final round (overrides `tune.seeds`).
    pub seeds: Option<u32>,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Output directory (default `runs/<name>-tune`).
    pub out: Option<&'a Path>,
    /// `--set` overrides, applied to every experiment before the tune's.
    pub sets: &'a [(String, String)],
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// No halving: every candidate at full length over every seed (to check
    /// what the halving chose, at its full cost).
    pub full: bool,
    /// Run as shard K of N sharing `out` with the others (see `shards`).
    pub shard: Option<crate::shard::Shard>,
    /// How long a shard waits for the others at the end of a round.
    pub shard_wait: std::time::Duration,
}

/// For `meshsim check`: the `[tune]` of an experiment checked as `tune`
/// reads it (space, scenarios, constraints), with a line saying what it
/// would search.
pub fn check(path: &Path, sets: &[(String, String)]) -> Result<String, String> {
    let files = [path.to_path_buf()];
    let args = Args {
        files: &files,
        budget: None,
        seeds: None,
        threads: 1,
        out: None,
        sets,
        progress: false,
        full: false,
        shard: None,
        shard_wait: std::time::Duration::ZERO,
    };
    let spec = spec(&args)?;
    Ok(format!(
        "{}: ok: tune of {} field{} over {} scenario{}, {} candidates, {} seeds\n",
        path.display(),
        spec.params.len(),
        if spec.params.len() == 1 { "" } else { "s" },
        spec.scenarios.len(),
        if spec.scenarios.len() == 1 { "" } else { "s" },
        spec.budget,
        spec.seeds
    ))
}

// === runs ===

/// The experiment of `scenario` with `values` set, its duration cut to
/// `duration_ns` when given, as a checked model for `seed`.
pub(crate) fn model_of(
    scenario: &Scenario,
    sets: &[(String, Value)],
    duration_ns: Option<u64>,
    seed: u64,
) -> Result<(Model, String), String> {
    let mut t = scenario.base.clone();
    for (p, v) in sets {
        setpath::set(&mut t, p, v.clone()).map_err(|e| e.to_string())?;
    }
    if let Some(ns) = duration_ns {
        t.insert(
            "duration".to_owned(),
            Value::String(mesh_engine::config::format_duration(
                std::time::Duration::from_nanos(ns),
            )),
        );
    }
    t.insert(
        "seed".to_owned(),
        Value::Integer(i64::try_from(seed).unwrap_or(i64::MAX)),
    );
    let text = toml::to_string(&t).map_err(|e| e.to_string())?;
    let f: ExperimentFile = t
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_owned())?;
    let (m, _) = Model::build(&f, Some(seed)).map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((m, text))
}

pub(crate) fn sets_of(spec: &Spec, c: &Candidate) -> Vec<(String, Value)> {
    let Some(values) = &c.values else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (p, v) in spec.params.iter().zip(values) {
        out.push((p.path.clone(), v.clone()));
        if let (Some(comp), Some(x)) = (&p.complement, v.as_integer()) {
            out.push((comp.clone(), Value::Integer(100 - x)));
        }
    }
    out
}

/// The scenario's full duration and pods, for shares.
pub(crate) fn scenario_size(s: &Scenario) -> (u64, usize) {
    let f: Option<ExperimentFile> = s.base.clone().try_into().ok();
    let d = f.as_ref().map_or(0, |f| {
        u64::try_from(f.duration.value.as_nanos()).unwrap_or(u64::MAX)
    });
    let pods = f.map_or(0, |f| {
        f.service
            .iter()
            .filter(|s| s.external != Some(true))
            .flat_map(|s| s.version.iter().map(|v| v.pods as usize))
            .sum()
    });
    (d, pods)
}

/// When the timeline's last event happens in a scenario, in ns.
pub(crate) fn last_event_ns(s: &Scenario) -> u64 {
    let f: Option<ExperimentFile> = s.base.clone().try_into().ok();
    f.map_or(0, |f| {
        f.timeline
            .iter()
            .map(|e| u64::try_from(e.at.value.as_nanos()).unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0)
    })
}

/// One evaluation: a candidate in a scenario for a seed, in a round.
#[derive(Clone, Debug)]
pub(crate) struct Eval {
    pub(crate) round: usize,
    pub(crate) candidate: usize,
    pub(crate) scenario: usize,
    pub(crate) seed: u64,
    pub(crate) duration_ns: u64,
    /// The scenario's own length (shares are of the full run's capacity).
    pub(crate) full_ns: u64,
    pub(crate) summary: mesh_rundir::Summary,
    pub(crate) pods: usize,
    /// Proxies of the run: each ejects on its own.
    pub(crate) proxies: usize,
    pub(crate) dir: String,
}

/// The rounds: (candidates kept, seeds, duration in ns) per round.
fn schedule(spec: &Spec, n: usize) -> Vec<(usize, u32, Option<u64>)> {
    let full = spec
        .scenarios
        .iter()
        .map(|s| scenario_size(s).0)
        .max()
        .unwrap_or(0);
    // Early rounds are cut, but never before the scenarios' last event has
    // had time to show its effect (twice its time), nor below minDuration.
    let floor = spec
        .scenarios
        .iter()
        .map(last_event_ns)
        .max()
        .unwrap_or(0)
        .saturating_mul(2)
        .max(spec.min_duration_ns);
    let final_size = 10.min(n);
    let mut sizes = vec![n];
    while *sizes.last().unwrap_or(&1) > final_size {
        let next = sizes
            .last()
            .unwrap_or(&1)
            .div_ceil(spec.eta)
            .max(final_size);
        sizes.push(next);
    }
    let rounds = sizes.len();
    sizes
        .into_iter()
        .enumerate()
        .map(|(r, size)| {
            if r + 1 == rounds {
                (size, spec.seeds, None)
            } else {
                let shrink = (spec.eta as u64)
                    .saturating_pow(u32::try_from(rounds - 1 - r).unwrap_or(u32::MAX));
                let d = (full / shrink.max(1)).max(floor).min(full);
                (size, 1, if d < full { Some(d) } else { None })
            }
        })
        .collect()
}

/// Runs the tune; returns the text to print.
pub fn tune(args: &Args<'_>) -> Result<String, String> {
    let spec = spec(args)?;
    let cands = candidates(&spec);
    let dir = args.out.map_or_else(
        || PathBuf::from("runs").join(format!("{}-tune", spec.name)),
        Path::to_path_buf,
    );
    let sched = if args.full {
        vec![(cands.len(), spec.seeds, None)]
    } else {
        schedule(&spec, cands.len())
    };
    // Total runs, for the bar: each round's survivors × scenarios × seeds,
    // plus the baseline in the last round if it did not survive.
    let n_scen = spec.scenarios.len();
    let total: usize = sched
        .iter()
        .map(|(k, s, _)| k * n_scen * *s as usize)
        .sum::<usize>()
        + n_scen * spec.seeds as usize;
    let bar = if args.progress {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} runs, {elapsed}, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut alive: Vec<usize> = (0..cands.len()).collect();
    let mut evals: Vec<Eval> = Vec::new();
    let mut final_scored = Vec::new();
    let sizes: Vec<(usize, u64)> = spec
        .scenarios
        .iter()
        .map(|s| (scenario_size(s).1, scenario_size(s).0))
        .collect();
    for (round, &(keep, seeds, duration)) in sched.iter().enumerate() {
        alive.truncate(keep);
        let last = round + 1 == sched.len();
        if last && !alive.contains(&0) {
            alive.push(0);
        }
        // The jobs of this round, candidate-major.
        let mut jobs = Vec::new();
        let mut meta = Vec::new();
        for &c in &alive {
            let sets = sets_of(&spec, &cands[c]);
            for (si, s) in spec.scenarios.iter().enumerate() {
                for k in 0..seeds {
                    let seed = spec.first_seed + u64::from(k);
                    // Cut only scenarios longer than the round's length.
                    let own = sizes[si].1;
                    let cut = duration.filter(|d| *d < own);
                    let (model, text) = model_of(s, &sets, cut, seed)
                        .map_err(|e| format!("candidate {c} in scenario {}: {e}", s.name))?;
                    let values = sets
                        .iter()
                        .map(|(p, v)| (p.clone(), values_text(v)))
                        .collect();
                    let proxies = model.proxies.len();
                    jobs.push(Job {
                        index: jobs.len(),
                        point: c,
                        values,
                        model,
                        text,
                    });
                    meta.push((c, si, seed, cut.unwrap_or(own), proxies));
                }
            }
        }
        // The scenario's index keeps two names with `/` and `-` apart.
        let run_dir = |job_index: usize| {
            let (c, si, seed, _, _) = meta[job_index];
            format!(
                "runs/r{round}-c{c:04}-s{si}-{}-seed-{seed}",
                spec.scenarios[si].name.replace('/', "-")
            )
        };
        let out_dir = |i: usize, _: &Job| dir.join(run_dir(i));
        let summaries: Vec<mesh_rundir::Summary> = match args.shard {
            None => {
                let results: Vec<Metrics> =
                    plan::execute(&jobs, args.threads, Some(&out_dir), &|| bar.inc(1))
                        .map_err(|e| format!("{}: {e}", args.files[0].display()))?;
                jobs.iter()
                    .zip(&results)
                    .map(|(job, m)| m.summary(&job.model))
                    .collect()
            }
            Some(shard) => {
                let costs: Vec<f64> = jobs
                    .iter()
                    .map(|j| crate::shard::model_cost(&j.model))
                    .collect();
                let mine: Vec<usize> = crate::shard::assign_costs(&costs, shard.count)
                    .into_iter()
                    .enumerate()
                    .filter(|&(_, s)| s == shard.index)
                    .map(|(i, _)| i)
                    .collect();
                let results =
                    plan::execute_some(&jobs, &mine, args.threads, Some(&out_dir), &|| {
                        bar.inc(1);
                    })
                    .map_err(|e| format!("{}: {e}", args.files[0].display()))?;
                let rows: Vec<(usize, mesh_rundir::Summary)> = mine
                    .iter()
                    .zip(&results)
                    .map(|(&i, m)| (i, m.summary(&jobs[i].model)))
                    .collect();
                let round_id = round_id(&jobs);
                shards::publish(&dir, round, &round_id, shard, &rows)?;
                if last && shard.index != 0 {
                    bar.finish_and_clear();
                    return Ok(format!(
                        "Shard {}/{} of the tune of {}: every round done; shard 0 writes the results to {}\n",
                        shard.index,
                        shard.count,
                        spec.name,
                        dir.display()
                    ));
                }
                shards::gather(&dir, round, &round_id, shard, jobs.len(), args.shard_wait)?
            }
        };
        for (i, (job, summary)) in jobs.iter().zip(summaries).enumerate() {
            let _ = job;
            let (c, si, seed, ran_ns, proxies) = meta[i];
            evals.push(Eval {
                round,
                candidate: c,
                scenario: si,
                seed,
                duration_ns: ran_ns,
                full_ns: sizes[si].1,
                summary,
                pods: sizes[si].0,
                proxies,
                dir: run_dir(i),
            });
        }
        let mut scored: Vec<Scored> = alive
            .iter()
            .map(|&c| {
                let mine: Vec<&Eval> = evals
                    .iter()
                    .filter(|e| e.round == round && e.candidate == c)
                    .collect();
                score(&spec, &mine, c)
            })
            .collect();
        order(&spec, &mut scored);
        if let Some(best) = scored.first() {
            bar.set_message(format!(
                "best so far: candidate {} ({} {:.1})",
                best.candidate,
                spec.prefer[0].name(),
                best.mean[index_of(spec.prefer[0])]
            ));
        }
        alive = scored.iter().map(|s| s.candidate).collect();
        if last {
            final_scored = scored;
        }
    }
    bar.finish_and_clear();
    let text = write_outputs(&spec, &cands, &evals, &final_scored, &sched, &dir)?;
    if args.shard.is_some() {
        shards::clean(&dir);
    }
    Ok(text)
}

/// A fingerprint of a round's runs: their experiments and seeds (so of the
/// candidates that went on, so of every earlier result).
fn round_id(jobs: &[Job]) -> String {
    let mut h = crate::shard::Fnv::new();
    for j in jobs {
        h.write(&(j.point as u64).to_le_bytes());
        h.write(&j.model.seed().to_le_bytes());
        h.write(j.text.as_bytes());
    }
    format!("{:016x}", h.finish())
}

/// For `meshsim run --scenario NAME`: the experiment text with the tune
/// scenario's timeline and sets applied.
pub fn scenario_text(text: &str, path: &Path, scenario: &str) -> Result<String, String> {
    let mut table: Table = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(Value::Array(list)) = table.get("tune").and_then(|t| t.get("scenario")).cloned()
    else {
        return Err(format!(
            "{}: --scenario {scenario}: the experiment has no [[tune.scenario]]",
            path.display()
        ));
    };
    let Some(Value::Table(s)) = list
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(scenario))
        .cloned()
    else {
        let names: Vec<&str> = list
            .iter()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .collect();
        return Err(format!(
            "{}: --scenario {scenario}: no such scenario; the experiment has {}",
            path.display(),
            names.join(", ")
        ));
    };
    if let Some(t) = s.get("timeline") {
        table.insert("timeline".to_owned(), t.clone());
    }
    if let Some(Value::Table(sets)) = s.get("set") {
        for (p, v) in sets {
            setpath::set(&mut table, p, v.clone()).map_err(|e| e.to_string())?;
        }
    }
    toml::to_string(&table).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::search::{latin_hypercube, round_duration};
    use super::spec::{Constraints, Dim, Param, Scale};
    use super::*;

    #[test]
    fn sampled_durations_are_rounded_as_a_person_writes_them() {
        assert_eq!(round_duration(67_049_000_000), "67s");
        assert_eq!(round_duration(5_445_000_000), "5.4s");
        assert_eq!(round_duration(2_000_000_000), "2s");
        assert_eq!(round_duration(345_600_000), "345ms");
        assert_eq!(round_duration(100), "1ms");
    }

    #[test]
    fn a_latin_hypercube_uses_every_stratum_of_every_dimension_once() {
        let p = Param {
            path: "x".to_owned(),
            dim: Dim::Int {
                min: 0,
                max: 9,
                scale: Scale::Linear,
            },
            complement: None,
        };
        let points = latin_hypercube(&[p.clone(), p], 10, 7);
        for d in 0..2 {
            let mut seen: Vec<i64> = points.iter().map(|v| v[d].as_integer().unwrap()).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn halving_keeps_a_third_each_round_and_ends_at_full_length_over_every_seed() {
        let scen = Scenario { name: "x".to_owned(), base: toml::from_str("name = \"x\"\nduration = \"300s\"\n[load]\nclient = \"c\"\nhost = \"h\"\nqps = 1\n").unwrap() };
        let spec = Spec {
            params: Vec::new(),
            scenarios: vec![scen],
            budget: 200,
            seeds: 3,
            eta: 3,
            min_duration_ns: 0,
            constraints: Constraints::default(),
            prefer: vec![Objective::Errors5xx],
            name: "x".to_owned(),
            first_seed: 1,
        };
        let sched = schedule(&spec, 201);
        let sizes: Vec<usize> = sched.iter().map(|r| r.0).collect();
        assert_eq!(sizes, vec![201, 67, 23, 10]);
        assert_eq!(sched.last().unwrap().1, 3);
        assert_eq!(sched.last().unwrap().2, None);
        assert_eq!(sched[0].2, Some(300_000_000_000 / 27));
    }
}
