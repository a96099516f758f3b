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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::RngExt as _;
use rand_pcg::Pcg64Mcg;
use toml::{Table, Value};

use crate::experiment::ExperimentFile;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::plan::{self, Job};
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
}

// === the [tune] table ===

/// How a range is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    Linear,
    Log,
}

/// One dimension of the search space.
#[derive(Clone, Debug)]
enum Dim {
    /// Integers in `[min, max]`.
    Int { min: i64, max: i64, scale: Scale },
    /// Numbers in `[min, max]`.
    Float { min: f64, max: f64, scale: Scale },
    /// Durations in `[min, max]` (nanoseconds), written back in Istio's syntax.
    Duration { min: u64, max: u64, scale: Scale },
    /// One of these values.
    Values(Vec<Value>),
}

/// A tuned field: its `--set` path and its range.
#[derive(Clone, Debug)]
struct Param {
    path: String,
    dim: Dim,
    /// Another path set to `100 - value` (the other weight of a two-way split).
    complement: Option<String>,
}

/// A scenario: an experiment, maybe with its timeline replaced and fields set.
#[derive(Clone, Debug)]
struct Scenario {
    name: String,
    /// The experiment (includes resolved, `--set` applied).
    base: Table,
}

/// The objectives, all minimised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Client-visible 5xx, summed over scenarios.
    Errors5xx,
    /// p99 client latency, the worst scenario's.
    P99,
    /// Host-seconds healthy pods spent ejected, summed over scenarios.
    HealthyEjected,
    /// Time from a pod going bad to its ejection, mean over scenarios with one.
    EjectDelay,
    /// Requests that reached a bad pod, summed over scenarios.
    BadRequests,
}

/// Every objective, in column order.
pub const OBJECTIVES: [Objective; 5] = [
    Objective::Errors5xx,
    Objective::P99,
    Objective::HealthyEjected,
    Objective::EjectDelay,
    Objective::BadRequests,
];

impl Objective {
    /// The `summary.csv` column it comes from.
    pub fn name(self) -> &'static str {
        match self {
            Self::Errors5xx => "errors_5xx",
            Self::P99 => "latency_ms_p99",
            Self::HealthyEjected => "healthy_ejected_host_seconds",
            Self::EjectDelay => "eject_delay_s",
            Self::BadRequests => "bad_pod_requests",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        OBJECTIVES.into_iter().find(|o| o.name() == s)
    }
}

/// Limits a recommendation must respect.
#[derive(Clone, Debug, Default)]
struct Constraints {
    /// Client 5xx / requests, over all scenarios.
    max_error_rate: Option<f64>,
    /// Healthy ejected host-seconds / (pods × duration), over all scenarios.
    max_healthy_ejected_share: Option<f64>,
    /// Worst scenario's p99, ms.
    max_p99_ms: Option<f64>,
    /// Mean time to eject a bad pod, s.
    max_eject_delay_s: Option<f64>,
}

#[derive(Clone, Debug)]
struct Spec {
    params: Vec<Param>,
    scenarios: Vec<Scenario>,
    budget: usize,
    seeds: u32,
    eta: usize,
    /// Shortest run of the early rounds.
    min_duration_ns: u64,
    constraints: Constraints,
    prefer: Vec<Objective>,
    /// The first scenario's experiment name (names the output).
    name: String,
    first_seed: u64,
}

fn bad(file: &Path, path: &str, why: impl std::fmt::Display) -> String {
    format!("{}: {path}: {why}", file.display())
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

/// Reads `[tune]` of the first experiment and the scenarios of all.
fn spec(args: &Args<'_>) -> Result<Spec, String> {
    let mut scenarios = Vec::new();
    let mut tune_table: Option<(PathBuf, Table)> = None;
    let mut name = String::new();
    let mut first_seed = 1;
    for (i, file) in args.files.iter().enumerate() {
        // As `meshsim run` loads it: checked, includes merged, --set applied.
        let plan = plan::load(file, args.sets, None)?;
        let mut table: Table =
            toml::from_str(&plan.text).map_err(|e| format!("{}: {e}", file.display()))?;
        table.remove("sweep");
        let tune = match table.remove("tune") {
            Some(Value::Table(t)) => Some(t),
            Some(_) => return Err(bad(file, "tune", "expected a table ([tune])")),
            None => None,
        };
        let exp_name = table
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("experiment")
            .to_owned();
        if i == 0 {
            name.clone_from(&exp_name);
            first_seed = plan.jobs.first().map_or(1, |j| j.model.seed());
        }
        let listed = match tune.as_ref().and_then(|t| t.get("scenario")) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => {
                return Err(bad(
                    file,
                    "tune.scenario",
                    "expected [[tune.scenario]] tables",
                ));
            }
        };
        if listed.is_empty() {
            scenarios.push(Scenario {
                name: exp_name.clone(),
                base: table.clone(),
            });
        }
        for (j, item) in listed.iter().enumerate() {
            let at = format!("tune.scenario[{j}]");
            let Value::Table(s) = item else {
                return Err(bad(file, &at, "expected a table"));
            };
            let sname = match s.get("name") {
                Some(Value::String(n)) if !n.is_empty() => n.clone(),
                _ => {
                    return Err(bad(
                        file,
                        &format!("{at}.name"),
                        "expected a name (a string)",
                    ));
                }
            };
            let mut base = table.clone();
            for (k, v) in s {
                match k.as_str() {
                    "name" => {}
                    "timeline" => {
                        if !matches!(v, Value::Array(_)) {
                            return Err(bad(
                                file,
                                &format!("{at}.timeline"),
                                "expected an array of timeline events, as the experiment's [[timeline]]",
                            ));
                        }
                        base.insert("timeline".to_owned(), v.clone());
                    }
                    "set" => {
                        let Value::Table(sets) = v else {
                            return Err(bad(
                                file,
                                &format!("{at}.set"),
                                "expected a table of path = value, e.g. set = { \"load.qps\" = 1800 }",
                            ));
                        };
                        for (p, val) in sets {
                            setpath::set(&mut base, p, val.clone())
                                .map_err(|e| bad(file, &format!("{at}.set.\"{p}\""), e.why))?;
                        }
                    }
                    other => {
                        return Err(bad(
                            file,
                            &format!("{at}.{other}"),
                            "unknown field: expected name, timeline or set",
                        ));
                    }
                }
            }
            let scenario = Scenario {
                name: format!("{exp_name}/{sname}"),
                base,
            };
            // Checked now, so a bad scenario is reported before any run.
            model_of(&scenario, &[], None, first_seed)
                .map_err(|e| format!("{}: {at} ({sname}): {e}", file.display()))?;
            scenarios.push(scenario);
        }
        if i == 0 {
            tune_table = tune.map(|t| (file.clone(), t));
        }
    }
    if scenarios
        .iter()
        .map(|s| &s.name)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        != scenarios.len()
    {
        return Err(
            "two scenarios have the same name: give each experiment (or [[tune.scenario]]) its own"
                .to_owned(),
        );
    }
    let Some((file, t)) = tune_table else {
        return Err(format!(
            "{}: no [tune] table: say what to tune, e.g.\n[tune.space]\n\"destinationRule.backend.trafficPolicy.outlierDetection.consecutive5xxErrors\" = {{ min = 1, max = 20 }}\n(see docs/cli.md, meshsim tune)",
            args.files[0].display()
        ));
    };
    let mut spec = Spec {
        params: Vec::new(),
        scenarios,
        budget: 50,
        seeds: 3,
        eta: 3,
        min_duration_ns: 0,
        constraints: Constraints::default(),
        prefer: vec![
            Objective::Errors5xx,
            Objective::HealthyEjected,
            Objective::P99,
        ],
        name,
        first_seed,
    };
    for (k, v) in &t {
        let at = format!("tune.{k}");
        match k.as_str() {
            "scenario" => {}
            "budget" => spec.budget = positive_int(&file, &at, v)?,
            "seeds" => spec.seeds = u32::try_from(positive_int(&file, &at, v)?).unwrap_or(u32::MAX),
            "eta" => {
                spec.eta = positive_int(&file, &at, v)?;
                if spec.eta < 2 {
                    return Err(bad(
                        &file,
                        &at,
                        "expected 2 or more (the share kept each round is 1/eta)",
                    ));
                }
            }
            "minDuration" => {
                let Some(d) = v
                    .as_str()
                    .and_then(|s| mesh_engine::config::parse_duration(s).ok())
                else {
                    return Err(bad(&file, &at, "expected a duration such as \"60s\""));
                };
                spec.min_duration_ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            }
            "space" => {
                let Value::Table(space) = v else {
                    return Err(bad(&file, &at, "expected a table of path = range"));
                };
                leaves(space, String::new(), &mut |path, range| {
                    spec.params.push(param(&file, &path, range)?);
                    Ok(())
                })?;
            }
            "constraints" => {
                let Value::Table(c) = v else {
                    return Err(bad(&file, &at, "expected a table"));
                };
                for (ck, cv) in c {
                    let cat = format!("{at}.{ck}");
                    let x = cv
                        .as_float()
                        .or_else(|| cv.as_integer().map(|i| i as f64))
                        .filter(|x| *x >= 0.0)
                        .ok_or_else(|| bad(&file, &cat, "expected a number ≥ 0"))?;
                    match ck.as_str() {
                        "maxErrorRate" => spec.constraints.max_error_rate = Some(x),
                        "maxHealthyEjectedShare" => {
                            spec.constraints.max_healthy_ejected_share = Some(x)
                        }
                        "maxP99Ms" => spec.constraints.max_p99_ms = Some(x),
                        "maxEjectDelayS" => spec.constraints.max_eject_delay_s = Some(x),
                        _ => {
                            return Err(bad(
                                &file,
                                &cat,
                                "unknown constraint: expected maxErrorRate, maxHealthyEjectedShare, maxP99Ms or maxEjectDelayS",
                            ));
                        }
                    }
                }
            }
            "prefer" => {
                let Value::Array(items) = v else {
                    return Err(bad(
                        &file,
                        &at,
                        "expected a list of objectives, most important first",
                    ));
                };
                spec.prefer = items
                    .iter()
                    .map(|i| i.as_str().and_then(Objective::parse))
                    .collect::<Option<Vec<_>>>()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        bad(
                            &file,
                            &at,
                            format!(
                                "expected objectives among {}",
                                OBJECTIVES.map(Objective::name).join(", ")
                            ),
                        )
                    })?;
            }
            _ => {
                return Err(bad(
                    &file,
                    &at,
                    "unknown field: expected space, scenario, constraints, prefer, budget, seeds, eta or minDuration",
                ));
            }
        }
    }
    if spec.params.is_empty() {
        return Err(bad(
            &file,
            "tune.space",
            "expected at least one field to tune, e.g. \"destinationRule.backend.trafficPolicy.outlierDetection.consecutive5xxErrors\" = { min = 1, max = 20 }",
        ));
    }
    if let Some(b) = args.budget {
        spec.budget = b.max(1);
    }
    if let Some(s) = args.seeds {
        spec.seeds = s.max(1);
    }
    // Every path must name a field of every scenario's experiment.
    for p in &spec.params {
        for s in &spec.scenarios {
            let mut t = s.base.clone();
            let sample = sample_value(&p.dim, 0.0);
            setpath::set(&mut t, &p.path, sample.clone())
                .map_err(|e| bad(&file, &format!("tune.space.\"{}\"", p.path), e.why))?;
            if let Some(c) = &p.complement {
                setpath::set(&mut t, c, Value::Integer(0)).map_err(|e| {
                    bad(
                        &file,
                        &format!("tune.space.\"{}\".complement", p.path),
                        e.why,
                    )
                })?;
            }
            check_existing(&s.base, &p.path, &p.dim)
                .map_err(|why| bad(&file, &format!("tune.space.\"{}\"", p.path), why))?;
            let f: ExperimentFile = t.try_into().map_err(|e: toml::de::Error| {
                bad(
                    &file,
                    &format!("tune.space.\"{}\"", p.path),
                    format!(
                        "no such field in scenario {}: {}",
                        s.name,
                        e.message().trim()
                    ),
                )
            })?;
            Model::build(&f, Some(1)).map_err(|e| {
                bad(
                    &file,
                    &format!("tune.space.\"{}\"", p.path),
                    format!(
                        "in scenario {}, {}",
                        s.name,
                        e.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                )
            })?;
        }
    }
    Ok(spec)
}

fn positive_int(file: &Path, at: &str, v: &Value) -> Result<usize, String> {
    v.as_integer()
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i > 0)
        .ok_or_else(|| bad(file, at, "expected a positive integer"))
}

/// Walks `[tune.space]`: a table with `min`/`max` or `values` is a range;
/// other tables are path segments (dotted keys).
fn leaves(
    t: &Table,
    prefix: String,
    f: &mut dyn FnMut(String, &Table) -> Result<(), String>,
) -> Result<(), String> {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Value::Table(inner) = v else {
            return Err(format!(
                "tune.space.\"{path}\": expected a range such as {{ min = 1, max = 20 }} or {{ values = [...] }}"
            ));
        };
        if ["min", "max", "values"]
            .iter()
            .any(|r| inner.contains_key(*r))
        {
            f(path, inner)?;
        } else {
            leaves(inner, path, f)?;
        }
    }
    Ok(())
}

fn param(file: &Path, path: &str, r: &Table) -> Result<Param, String> {
    let at = format!("tune.space.\"{path}\"");
    for k in r.keys() {
        if !["min", "max", "values", "scale", "complement"].contains(&k.as_str()) {
            return Err(bad(
                file,
                &format!("{at}.{k}"),
                "unknown field: expected min, max, scale, values or complement",
            ));
        }
    }
    let scale = match r.get("scale").map(|v| v.as_str()) {
        None | Some(Some("linear")) => Scale::Linear,
        Some(Some("log")) => Scale::Log,
        _ => {
            return Err(bad(
                file,
                &format!("{at}.scale"),
                "expected \"linear\" or \"log\"",
            ));
        }
    };
    let complement = match r.get("complement") {
        None => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => {
            return Err(bad(
                file,
                &format!("{at}.complement"),
                "expected a path (a string)",
            ));
        }
    };
    let dim = if let Some(v) = r.get("values") {
        if r.contains_key("min") || r.contains_key("max") {
            return Err(bad(
                file,
                &at,
                "give either values or min and max, not both",
            ));
        }
        match v {
            Value::Array(items) if !items.is_empty() => Dim::Values(items.clone()),
            _ => {
                return Err(bad(
                    file,
                    &format!("{at}.values"),
                    "expected a non-empty list",
                ));
            }
        }
    } else {
        let (Some(lo), Some(hi)) = (r.get("min"), r.get("max")) else {
            return Err(bad(file, &at, "expected both min and max (or values)"));
        };
        match (lo, hi) {
            (Value::Integer(a), Value::Integer(b)) => {
                if a > b {
                    return Err(bad(file, &at, format!("min {a} is above max {b}")));
                }
                if scale == Scale::Log && *a <= 0 {
                    return Err(bad(file, &at, "a log scale needs min > 0"));
                }
                Dim::Int {
                    min: *a,
                    max: *b,
                    scale,
                }
            }
            (Value::String(a), Value::String(b)) => {
                let parse = |s: &str, which: &str| {
                    mesh_engine::config::parse_duration(s)
                        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                        .map_err(|e| {
                            bad(
                                file,
                                &format!("{at}.{which}"),
                                format!("expected a duration such as \"1s\": {e}"),
                            )
                        })
                };
                let (a, b) = (parse(a, "min")?, parse(b, "max")?);
                if a > b {
                    return Err(bad(file, &at, "min is above max"));
                }
                if scale == Scale::Log && a == 0 {
                    return Err(bad(file, &at, "a log scale needs min > 0"));
                }
                Dim::Duration {
                    min: a,
                    max: b,
                    scale,
                }
            }
            (a, b) if (a.is_integer() || a.is_float()) && (b.is_integer() || b.is_float()) => {
                let num = |v: &Value| {
                    v.as_float()
                        .or_else(|| v.as_integer().map(|i| i as f64))
                        .unwrap_or(0.0)
                };
                let (a, b) = (num(a), num(b));
                if a > b {
                    return Err(bad(file, &at, format!("min {a} is above max {b}")));
                }
                if scale == Scale::Log && a <= 0.0 {
                    return Err(bad(file, &at, "a log scale needs min > 0"));
                }
                Dim::Float {
                    min: a,
                    max: b,
                    scale,
                }
            }
            _ => {
                return Err(bad(
                    file,
                    &at,
                    "expected min and max both numbers or both durations (\"1s\")",
                ));
            }
        }
    };
    if complement.is_some() && !matches!(dim, Dim::Int { min, max, .. } if min >= 0 && max <= 100) {
        return Err(bad(
            file,
            &format!("{at}.complement"),
            "a complement weight needs an integer range within 0 to 100 (it is set to 100 − value)",
        ));
    }
    Ok(Param {
        path: path.to_owned(),
        dim,
        complement,
    })
}

/// A range over a field that holds something else (a string where a number
/// is tuned) is a mistake the user should hear about.
fn check_existing(base: &Table, path: &str, dim: &Dim) -> Result<(), String> {
    let Some(current) = setpath::get(base, path) else {
        return Ok(());
    };
    let ok = match dim {
        Dim::Int { .. } | Dim::Float { .. } => current.is_integer() || current.is_float(),
        Dim::Duration { .. } => current
            .as_str()
            .is_some_and(|s| mesh_engine::config::parse_duration(s).is_ok()),
        Dim::Values(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the field holds {current}, which is not {}: tune it with values = [...]",
            match dim {
                Dim::Duration { .. } => "a duration",
                _ => "a number",
            }
        ))
    }
}

// === candidates ===

/// One point of the space: a value per parameter (`None` for the baseline:
/// the experiment as written).
#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    values: Option<Vec<Value>>,
}

fn sample_value(dim: &Dim, u: f64) -> Value {
    let u = u.clamp(0.0, 1.0 - 1e-12);
    let lerp = |a: f64, b: f64, scale: Scale| match scale {
        Scale::Linear => a + u * (b - a),
        Scale::Log => libm::exp(libm::log(a) + u * (libm::log(b) - libm::log(a))),
    };
    match dim {
        Dim::Int { min, max, scale } => {
            let (lo, hi) = (i128::from(*min), i128::from(*max));
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let x = match scale {
                Scale::Linear => lo as f64 + u * ((hi - lo + 1) as f64),
                Scale::Log => lerp(lo as f64, (hi + 1) as f64, Scale::Log),
            }
            .floor() as i128;
            Value::Integer(i64::try_from(x.clamp(lo, hi)).unwrap_or(*min))
        }
        Dim::Float { min, max, scale } => Value::Float(lerp(*min, *max, *scale)),
        Dim::Duration { min, max, scale } => {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let ns = lerp(*min as f64, *max as f64, *scale) as u64;
            Value::String(round_duration(ns))
        }
        Dim::Values(v) => {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let i = (u * v.len() as f64) as usize;
            v[i.min(v.len() - 1)].clone()
        }
    }
}

/// A sampled duration as a person would write it: whole seconds from 10 s,
/// tenths of a second from 1 s (`5.4s`), whole milliseconds below.
fn round_duration(ns: u64) -> String {
    let ms = (ns / 1_000_000).max(1);
    let ms = if ms >= 10_000 {
        (ms + 500) / 1000 * 1000
    } else if ms >= 1000 {
        (ms + 50) / 100 * 100
    } else {
        ms
    };
    if ms % 1000 == 0 || ms < 1000 {
        mesh_engine::config::format_duration(std::time::Duration::from_millis(ms))
    } else {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    }
}

/// The whole grid, when every dimension is finite and it fits the budget.
fn grid(params: &[Param], budget: usize) -> Option<Vec<Vec<Value>>> {
    let mut points: Vec<Vec<Value>> = vec![Vec::new()];
    for p in params {
        let values: Vec<Value> = match &p.dim {
            Dim::Values(v) => v.clone(),
            Dim::Int {
                min,
                max,
                scale: Scale::Linear,
            } if max - min < 10_000 => (*min..=*max).map(Value::Integer).collect(),
            _ => return None,
        };
        if points.len().saturating_mul(values.len()) > budget {
            return None;
        }
        points = points
            .into_iter()
            .flat_map(|pt| {
                values.iter().map(move |v| {
                    let mut n = pt.clone();
                    n.push(v.clone());
                    n
                })
            })
            .collect();
    }
    Some(points)
}

/// A Latin hypercube of `n` points, seeded: each dimension's range cut in
/// `n` strata, each stratum used once.
fn latin_hypercube(params: &[Param], n: usize, seed: u64) -> Vec<Vec<Value>> {
    let mut rng = Pcg64Mcg::new(u128::from(seed) << 64 | 0x7475_6e65);
    let mut columns: Vec<Vec<Value>> = Vec::new();
    for p in params {
        let mut strata: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            strata.swap(i, j);
        }
        columns.push(
            strata
                .iter()
                .map(|&s| {
                    let r = rng.random_range(0..(1u64 << 53));
                    #[allow(clippy::cast_precision_loss)]
                    let u = (s as f64 + r as f64 / (1u64 << 53) as f64) / n as f64;
                    sample_value(&p.dim, u)
                })
                .collect(),
        );
    }
    (0..n)
        .map(|i| columns.iter().map(|c| c[i].clone()).collect())
        .collect()
}

fn candidates(spec: &Spec) -> Vec<Candidate> {
    let mut out = vec![Candidate { values: None }];
    let points = grid(&spec.params, spec.budget)
        .unwrap_or_else(|| latin_hypercube(&spec.params, spec.budget, spec.first_seed));
    for p in points {
        let c = Candidate { values: Some(p) };
        // Integers round: two strata can land on the same point.
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn values_text(v: &Value) -> String {
    plan::value_text(v)
}

// === runs ===

/// The experiment of `scenario` with `values` set, its duration cut to
/// `duration_ns` when given, as a checked model for `seed`.
fn model_of(
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

fn sets_of(spec: &Spec, c: &Candidate) -> Vec<(String, Value)> {
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
fn scenario_size(s: &Scenario) -> (u64, usize) {
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
fn last_event_ns(s: &Scenario) -> u64 {
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
struct Eval {
    round: usize,
    candidate: usize,
    scenario: usize,
    seed: u64,
    duration_ns: u64,
    /// The scenario's own length (shares are of the full run's capacity).
    full_ns: u64,
    summary: mesh_rundir::Summary,
    pods: usize,
    /// Proxies of the run: each ejects on its own.
    proxies: usize,
    dir: String,
}

/// A candidate's objectives over one round: per seed, then mean and 95 %
/// interval half-width.
#[derive(Clone, Debug)]
struct Scored {
    candidate: usize,
    mean: [f64; 5],
    ci: [f64; 5],
    error_rate: f64,
    healthy_share: f64,
    violation: f64,
    rank: usize,
    /// Per scenario (index), the objectives' means over seeds.
    per_scenario: Vec<[f64; 5]>,
    /// Per seed (in seed order), the objectives over all scenarios.
    per_seed: Vec<[f64; 5]>,
}

/// Student's t quantile for a two-sided 95 % interval with `df` degrees of
/// freedom (1.96 beyond the table).
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        f64::INFINITY
    } else {
        T.get(df - 1).copied().unwrap_or(1.96)
    }
}

/// Mean and 95 % half-width of `xs` (0 half-width for a single value).
fn mean_ci(xs: &[f64]) -> (f64, f64) {
    #[allow(clippy::cast_precision_loss)]
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, t95(xs.len() - 1) * var.sqrt() / n.sqrt())
}

fn score(spec: &Spec, evals: &[&Eval], candidate: usize) -> Scored {
    let mut seeds: Vec<u64> = evals.iter().map(|e| e.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut per_seed: Vec<[f64; 5]> = Vec::new();
    let (mut errs, mut reqs, mut healthy, mut capacity) = (0.0, 0.0, 0.0, 0.0);
    let n_scen = spec.scenarios.len();
    let mut per_scenario = vec![[0.0; 5]; n_scen];
    for &seed in &seeds {
        let mut v = [0.0; 5];
        let (mut delay_sum, mut delay_n) = (0.0, 0.0);
        for e in evals.iter().filter(|e| e.seed == seed) {
            let s = &e.summary;
            #[allow(clippy::cast_precision_loss)]
            let row = [
                s.errors_5xx as f64,
                s.latency_ms[2],
                s.healthy_ejected_host_seconds,
                s.eject_delay_s.unwrap_or(0.0),
                s.bad_pod_requests as f64,
            ];
            v[0] += row[0];
            v[1] = f64::max(v[1], row[1]);
            v[2] += row[2];
            if let Some(d) = s.eject_delay_s {
                delay_sum += d;
                delay_n += 1.0;
            }
            v[4] += row[4];
            #[allow(clippy::cast_precision_loss)]
            {
                errs += s.errors_5xx as f64;
                reqs += s.requests as f64;
                healthy += s.healthy_ejected_host_seconds;
                // Healthy capacity per proxy (each keeps its own detector),
                // over the scenario's full length so that a shortened early
                // round is not judged on an inflated share.
                capacity += (e.pods * e.proxies.max(1)) as f64 * e.full_ns as f64 / 1e9;
            }
            for (k, x) in row.iter().enumerate() {
                per_scenario[e.scenario][k] += x / seeds.len() as f64;
            }
        }
        v[3] = if delay_n > 0.0 {
            delay_sum / delay_n
        } else {
            0.0
        };
        per_seed.push(v);
    }
    let n = per_seed.len().max(1) as f64;
    let mut mean = [0.0; 5];
    let mut ci = [0.0; 5];
    for k in 0..5 {
        mean[k] = per_seed.iter().map(|v| v[k]).sum::<f64>() / n;
        if per_seed.len() > 1 {
            let var = per_seed
                .iter()
                .map(|v| (v[k] - mean[k]).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            ci[k] = 1.96 * var.sqrt() / n.sqrt();
        }
    }
    let error_rate = if reqs > 0.0 { errs / reqs } else { 0.0 };
    let healthy_share = if capacity > 0.0 {
        healthy / capacity
    } else {
        0.0
    };
    let c = &spec.constraints;
    let over = |x: f64, limit: Option<f64>| {
        limit.map_or(0.0, |l| if x > l { (x - l) / l.max(1e-9) } else { 0.0 })
    };
    let violation = over(error_rate, c.max_error_rate)
        + over(healthy_share, c.max_healthy_ejected_share)
        + over(mean[1], c.max_p99_ms)
        + over(mean[3], c.max_eject_delay_s);
    Scored {
        candidate,
        mean,
        ci,
        error_rate,
        healthy_share,
        violation,
        rank: 0,
        per_scenario,
        per_seed,
    }
}

fn index_of(o: Objective) -> usize {
    OBJECTIVES.iter().position(|x| *x == o).unwrap_or(0)
}

/// Sets each one's Pareto rank (0: not dominated) over the objective means.
fn pareto_ranks(scored: &mut [Scored]) {
    let dominates = |a: &Scored, b: &Scored| {
        a.mean.iter().zip(&b.mean).all(|(x, y)| x <= y)
            && a.mean.iter().zip(&b.mean).any(|(x, y)| x < y)
    };
    let mut left: Vec<usize> = (0..scored.len()).collect();
    let mut rank = 0;
    while !left.is_empty() {
        let front: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&i| {
                !left
                    .iter()
                    .any(|&j| j != i && dominates(&scored[j], &scored[i]))
            })
            .collect();
        for &i in &front {
            scored[i].rank = rank;
        }
        left.retain(|i| !front.contains(i));
        rank += 1;
    }
}

/// Best first: feasible, then the user's order of preference, then the
/// Pareto rank, then the candidate's index (the baseline first on a tie).
///
/// An objective decides only beyond its resolution in this round: the
/// larger of 1 % of its largest mean and its median confidence interval.
/// Within it (100.0 against 100.3 errors) two candidates tie on it and the
/// next objective decides. Means are compared in buckets of that size, so
/// the order stays a total order.
fn order(spec: &Spec, scored: &mut [Scored]) {
    pareto_ranks(scored);
    let resolution: Vec<f64> = (0..5)
        .map(|k| {
            let scale = scored.iter().map(|s| s.mean[k].abs()).fold(0.0, f64::max);
            let mut cis: Vec<f64> = scored.iter().map(|s| s.ci[k]).collect();
            cis.sort_by(f64::total_cmp);
            let median = cis.get(cis.len() / 2).copied().unwrap_or(0.0);
            (scale * 0.01).max(median).max(1e-9)
        })
        .collect();
    #[allow(clippy::cast_possible_truncation)]
    let bucket = |s: &Scored, k: usize| (s.mean[k] / resolution[k]).floor() as i64;
    scored.sort_by(|a, b| {
        (a.violation > 0.0)
            .cmp(&(b.violation > 0.0))
            .then(a.violation.total_cmp(&b.violation))
            .then_with(|| {
                spec.prefer
                    .iter()
                    .map(|o| bucket(a, index_of(*o)).cmp(&bucket(b, index_of(*o))))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .then(a.rank.cmp(&b.rank))
            .then(a.candidate.cmp(&b.candidate))
    });
}

/// How `a` compares with `b`, paired seed by seed (common random numbers),
/// objective by objective in the order of preference: the first objective
/// whose 95 % interval of the paired difference excludes 0 decides.
fn paired(spec: &Spec, a: &Scored, b: &Scored) -> std::cmp::Ordering {
    for o in &spec.prefer {
        let (m, h) = paired_diff(a, b, index_of(*o));
        if m + h < 0.0 {
            return std::cmp::Ordering::Less;
        }
        if m - h > 0.0 {
            return std::cmp::Ordering::Greater;
        }
    }
    std::cmp::Ordering::Equal
}

/// Mean and 95 % half-width of `a − b` on objective `k`, seed by seed.
fn paired_diff(a: &Scored, b: &Scored, k: usize) -> (f64, f64) {
    let d: Vec<f64> = a
        .per_seed
        .iter()
        .zip(&b.per_seed)
        .map(|(x, y)| x[k] - y[k])
        .collect();
    mean_ci(&d)
}

/// The recommendation: starting from the current settings (or, if they
/// break a constraint, the best candidate in order), a candidate takes over
/// only if it meets the constraints and is better beyond the noise of the
/// seeds. So a change is recommended only when the runs support it.
fn champion<'a>(spec: &Spec, ordered: &'a [Scored], base: &'a Scored) -> &'a Scored {
    let mut champ = if base.violation == 0.0 {
        base
    } else {
        &ordered[0]
    };
    for c in ordered {
        if c.violation == 0.0 && paired(spec, c, champ).is_lt() {
            champ = c;
        }
    }
    champ
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
        let results: Vec<Metrics> =
            plan::execute(&jobs, args.threads, Some(&out_dir), &|| bar.inc(1))
                .map_err(|e| format!("{}: {e}", args.files[0].display()))?;
        for (i, (job, m)) in jobs.iter().zip(&results).enumerate() {
            let (c, si, seed, ran_ns, proxies) = meta[i];
            evals.push(Eval {
                round,
                candidate: c,
                scenario: si,
                seed,
                duration_ns: ran_ns,
                full_ns: sizes[si].1,
                summary: m.summary(&job.model),
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
    write_outputs(&spec, &cands, &evals, &final_scored, &sched, &dir)
}

fn csv_err(dir: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: cannot write: {e}", dir.display())
}

fn write_outputs(
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
fn recommended_yaml(
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
fn report(
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
