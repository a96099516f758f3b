//! The `[tune]` table: the space, the scenarios, the constraints and the
//! order of preference, checked with field paths.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Args, model_of};
use crate::experiment::ExperimentFile;
use crate::model::Model;
use crate::plan;
use crate::setpath;

// === the [tune] table ===

/// How a range is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    Linear,
    Log,
}

/// One dimension of the search space.
#[derive(Clone, Debug)]
pub(crate) enum Dim {
    /// Integers in `[min, max]`.
    Int { min: i64, max: i64, scale: Scale },
    /// Numbers in `[min, max]`.
    Float { min: f64, max: f64, scale: Scale },
    /// Durations in `[min, max]` (nanoseconds), written back in Istio's syntax.
    Duration { min: u64, max: u64, scale: Scale },
    /// One of these values.
    Values(Vec<Value>),
}

impl Dim {
    /// The lowest value of the range (the first of a list), to check that
    /// a path takes values of this kind.
    fn lowest(&self) -> Value {
        match self {
            Self::Int { min, .. } => Value::Integer(*min),
            Self::Float { min, .. } => Value::Float(*min),
            Self::Duration { min, .. } => Value::String(mesh_engine::config::format_duration(
                std::time::Duration::from_nanos(*min),
            )),
            Self::Values(v) => v[0].clone(),
        }
    }
}

/// A tuned field: its `--set` path and its range.
#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub(crate) path: String,
    pub(crate) dim: Dim,
    /// Another path set to `100 - value` (the other weight of a two-way split).
    pub(crate) complement: Option<String>,
}

/// A scenario: an experiment, maybe with its timeline replaced and fields set.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    /// The experiment (includes resolved, `--set` applied).
    pub(crate) base: Table,
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
pub(crate) struct Constraints {
    /// Client 5xx / requests, over all scenarios.
    pub(crate) max_error_rate: Option<f64>,
    /// Healthy ejected host-seconds / (pods × duration), over all scenarios.
    pub(crate) max_healthy_ejected_share: Option<f64>,
    /// Worst scenario's p99, ms.
    pub(crate) max_p99_ms: Option<f64>,
    /// Mean time to eject a bad pod, s.
    pub(crate) max_eject_delay_s: Option<f64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) params: Vec<Param>,
    pub(crate) scenarios: Vec<Scenario>,
    pub(crate) budget: usize,
    pub(crate) seeds: u32,
    pub(crate) eta: usize,
    /// Shortest run of the early rounds.
    pub(crate) min_duration_ns: u64,
    pub(crate) constraints: Constraints,
    pub(crate) prefer: Vec<Objective>,
    /// The first scenario's experiment name (names the output).
    pub(crate) name: String,
    pub(crate) first_seed: u64,
}

pub(crate) fn bad(file: &Path, path: &str, why: impl std::fmt::Display) -> String {
    format!("{}: {path}: {why}", file.display())
}

/// Reads `[tune]` of the first experiment and the scenarios of all.
pub(crate) fn spec(args: &Args<'_>) -> Result<Spec, String> {
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
            let sample = p.dim.lowest();
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

pub(crate) fn positive_int(file: &Path, at: &str, v: &Value) -> Result<usize, String> {
    v.as_integer()
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i > 0)
        .ok_or_else(|| bad(file, at, "expected a positive integer"))
}

/// Walks `[tune.space]`: a table with `min`/`max` or `values` is a range;
/// other tables are path segments (dotted keys).
pub(crate) fn leaves(
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

pub(crate) fn param(file: &Path, path: &str, r: &Table) -> Result<Param, String> {
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
pub(crate) fn check_existing(base: &Table, path: &str, dim: &Dim) -> Result<(), String> {
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
