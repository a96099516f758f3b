//! From an experiment file (plus `--set` overrides) to the list of runs:
//! sweep points × seeds, each a checked [`Model`]; and running them in
//! parallel with results in a fixed order, whatever the thread count.

use std::path::{Path, PathBuf};

use mesh_engine::config::source::{self, Origins};
use mesh_engine::config::{ConfigError, ConfigErrors};
use rayon::prelude::*;
use toml::{Table, Value};

use crate::experiment::{self, ExperimentFile};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::run::{Run, RunError};
use crate::setpath;

/// One run to make.
#[derive(Debug)]
pub struct Job {
    /// Index of the run in the whole plan (point-major, then seed), also
    /// when only a shard's runs were built.
    pub index: usize,
    /// Index of the sweep point (0 without a sweep).
    pub point: usize,
    /// The swept values of this point, as (path, value text).
    pub values: Vec<(String, String)>,
    /// The checked model (its seed is this replica's).
    pub model: Model,
    /// The experiment of this point as TOML (the sweep resolved), for the
    /// run directory's `experiment.toml`.
    pub text: String,
}

/// A loaded experiment: its jobs and the resolved text (for provenance).
#[derive(Debug)]
pub struct Plan {
    /// The experiment's name.
    pub name: String,
    /// The experiment as run (after `--set`), as TOML.
    pub text: String,
    /// Swept paths, in order.
    pub swept: Vec<String>,
    /// Every run, point-major then seed (a shard's runs only, from
    /// [`load_shard`]).
    pub jobs: Vec<Job>,
    /// Runs in the whole plan.
    pub runs: usize,
    /// A fingerprint of every run of the plan (its point, seed and resolved
    /// experiment), the same whichever runs were built.
    pub fingerprint: String,
    /// Warnings of the configs (located in the file when possible).
    pub warnings: Vec<ConfigError>,
    /// Notes of reading the mesh files (Kubernetes objects skipped).
    pub notes: Vec<ConfigError>,
}

/// Reads `path`, applies `sets`, expands the sweep and the seeds, and checks
/// every resulting experiment. Errors name the file, line:column (when the
/// text is the file's), the field path and what to do.
pub fn load(path: &Path, sets: &[(String, String)], seed: Option<u64>) -> Result<Plan, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{name}: cannot read the experiment: {e}"))?;
    load_text_of(&text, path, sets, seed, None)
}

/// [`load`] building only the runs of `shard` (each shard of a large sweep
/// holds its own models only); the plan's `runs` and `fingerprint` are the
/// whole plan's.
pub fn load_shard(
    path: &Path,
    sets: &[(String, String)],
    seed: Option<u64>,
    shard: crate::shard::Shard,
) -> Result<Plan, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{name}: cannot read the experiment: {e}"))?;
    load_text_of(&text, path, sets, seed, Some(shard))
}

/// [`load`] for an experiment's `text` that is (or will be) the file at
/// `path`: included files are relative to it, and messages name it.
pub fn load_text(
    text: &str,
    path: &Path,
    sets: &[(String, String)],
    seed: Option<u64>,
) -> Result<Plan, String> {
    load_text_of(text, path, sets, seed, None)
}

fn load_text_of(
    text: &str,
    path: &Path,
    sets: &[(String, String)],
    seed: Option<u64>,
    shard: Option<crate::shard::Shard>,
) -> Result<Plan, String> {
    let name = path.display().to_string();
    let text = text.to_owned();
    // The file as written: typos and types are reported with line:column.
    let base = experiment::parse(&text, Some(&name)).map_err(|e| e.to_string())?;
    let mut table: Table = toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let included = include_files(&mut table, path)?;
    let origins = &included.origins;
    for (p, v) in sets {
        if v == "off" {
            setpath::remove(&mut table, p).map_err(|e| e.to_string())?;
        } else {
            setpath::set(&mut table, p, setpath::parse_value(v)).map_err(|e| e.to_string())?;
        }
        // A path set on the command line is pinned: it leaves the sweep.
        if let Some(toml::Value::Table(sweep)) = table.get_mut("sweep") {
            sweep.remove(p);
        }
    }
    let rewritten = !sets.is_empty() || included.any;
    let (resolved_text, file) = if !rewritten {
        (text.clone(), base)
    } else {
        let t = toml::to_string(&table).map_err(|e| format!("{name}: {e}"))?;
        let source = format!("{name} (with --set and included files)");
        let f = experiment::parse(&t, Some(&source)).map_err(|e| e.to_string())?;
        (t, f)
    };
    let located = |errors: Vec<ConfigError>, point: &str| -> String {
        let n = errors.len();
        let e = if !rewritten && point.is_empty() {
            ConfigErrors(errors).locate_in(Some(&name), &text)
        } else {
            ConfigErrors(
                errors
                    .into_iter()
                    .map(|mut e| {
                        if !origins.locate(&mut e) {
                            e.file = Some(format!("{name}{point}"));
                        }
                        e
                    })
                    .collect(),
            )
        };
        format!(
            "{e}\n{name}: {n} error{} found",
            if n == 1 { "" } else { "s" }
        )
    };
    let swept: Vec<String> = file.sweep.keys().cloned().collect();
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (p, values) in &file.sweep {
        if values.is_empty() {
            return Err(format!(
                "{name}: sweep.\"{p}\": expected at least one value"
            ));
        }
        points = points
            .into_iter()
            .flat_map(|pt| {
                values.iter().map(move |v| {
                    let mut next = pt.clone();
                    next.push((p.clone(), v.clone()));
                    next
                })
            })
            .collect();
    }
    let seeds = file.seeds.unwrap_or(1).max(1);
    let first_seed = seed.or(file.seed).unwrap_or(1);
    let mut resolved = Vec::with_capacity(points.len());
    for (pi, pt) in points.iter().enumerate() {
        resolved.push(if pt.is_empty() {
            (file.clone(), String::new(), resolved_text.clone())
        } else {
            let mut t = table.clone();
            t.remove("sweep");
            for (p, v) in pt {
                setpath::set(&mut t, p, v.clone())
                    .map_err(|e| format!("{name}: sweep.\"{p}\": {}", e.why))?;
            }
            let point_text = toml::to_string(&t).map_err(|e| format!("{name}: {e}"))?;
            let f: ExperimentFile = t.try_into().map_err(|e: toml::de::Error| {
                format!("{name}: sweep point {pi}: {}", e.message())
            })?;
            let label = pt
                .iter()
                .map(|(p, v)| format!("{p}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            (f, format!(" (sweep point {pi}: {label})"), point_text)
        });
    }
    // Every run's identity, and (for a shard) which runs are its own.
    let per_point = seeds as usize;
    let runs = points.len() * per_point;
    let mut fp = crate::shard::Fnv::new();
    for (pi, (_, _, point_text)) in resolved.iter().enumerate() {
        for s in 0..seeds {
            fp.write(&(pi as u64).to_le_bytes());
            fp.write(&(first_seed + u64::from(s)).to_le_bytes());
            fp.write(point_text.as_bytes());
        }
    }
    let mine: Option<Vec<bool>> = shard.map(|sh| {
        let costs: Vec<f64> = resolved
            .iter()
            .flat_map(|(f, _, _)| std::iter::repeat_n(crate::shard::file_cost(f), per_point))
            .collect();
        crate::shard::assign_costs(&costs, sh.count)
            .into_iter()
            .map(|k| k == sh.index)
            .collect()
    });
    let mut jobs = Vec::new();
    let mut warnings = Vec::new();
    for (pi, ((f, label, point_text), pt)) in resolved.iter().zip(&points).enumerate() {
        for s in 0..seeds {
            let index = pi * per_point + s as usize;
            if mine.as_ref().is_some_and(|m| !m[index]) {
                continue;
            }
            let (model, w) =
                Model::build(f, Some(first_seed + u64::from(s))).map_err(|e| located(e, label))?;
            if jobs.is_empty() {
                warnings = w;
            }
            jobs.push(Job {
                index,
                point: pi,
                values: pt.iter().map(|(p, v)| (p.clone(), value_text(v))).collect(),
                model,
                text: point_text.clone(),
            });
        }
    }
    let mut warnings = if !rewritten {
        ConfigErrors(warnings).locate_in(Some(&name), &text).0
    } else {
        for w in &mut warnings {
            origins.locate(w);
        }
        warnings
    };
    let mut all = included.warnings;
    all.append(&mut warnings);
    Ok(Plan {
        name: file.name.clone(),
        text: resolved_text,
        swept,
        jobs,
        runs,
        fingerprint: format!("{:016x}", fp.finish()),
        warnings: all,
        notes: included.notes,
    })
}

/// A value as text for CSV columns (`"30s"` → `30s`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where job `index` writes its run directory.
pub type RunDirOf<'a> = dyn Fn(usize, &Job) -> PathBuf + Sync + 'a;

/// Runs every job on `threads` threads (0 = all cores); results come back
/// in job order, so outputs do not depend on the thread count. With `out`,
/// each job streams its run directory to `out(index, job)` as it goes (memory flat
/// in the run's length) and keeps no rows in memory. `tick` is called once
/// per finished job (for a progress bar).
pub fn execute(
    jobs: &[Job],
    threads: usize,
    out: Option<&RunDirOf<'_>>,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Metrics>, RunError> {
    let all: Vec<usize> = (0..jobs.len()).collect();
    execute_some(jobs, &all, threads, out, tick)
}

/// [`execute`] for the jobs at `which` only (a shard's share); results in
/// the order of `which`, and `out` gets each job's index in `jobs`.
pub fn execute_some(
    jobs: &[Job],
    which: &[usize],
    threads: usize,
    out: Option<&RunDirOf<'_>>,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Metrics>, RunError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RunError::Threads(e.to_string()))?;
    pool.install(|| {
        which
            .par_iter()
            .map(|&i| {
                let j = &jobs[i];
                let m = run_job(j, out.map(|f| f(i, j)));
                tick();
                m
            })
            .collect()
    })
}

fn run_job(job: &Job, dir: Option<PathBuf>) -> Result<Metrics, RunError> {
    let Some(dir) = dir else {
        return Run::new(&job.model).run();
    };
    let failed = |e: std::io::Error| RunError::Write(dir.display().to_string(), e.to_string());
    let writer = mesh_rundir::RunWriter::create(&dir).map_err(failed)?;
    let mut m = Run::new(&job.model).record_to(writer).run()?;
    crate::output::finish_run_dir(&job.model, &mut m, &job.text).map_err(failed)?;
    Ok(m)
}

/// What the files named by `mesh = ...` (and `push.mesh`) brought in:
/// where each object came from, and the notes and warnings of reading them.
#[derive(Debug, Default)]
struct Included {
    origins: Origins,
    notes: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    any: bool,
}

/// Merges `topology = "FILE"` (its `[[service]]` and `[[client]]` tables)
/// and `mesh = PATHS` (the Istio objects of TOML mesh files and Kubernetes
/// YAML, files or directories), also in each timeline `push`, paths being
/// relative to the experiment file.
fn include_files(table: &mut Table, experiment: &Path) -> Result<Included, String> {
    let dir = experiment.parent().unwrap_or_else(|| Path::new("."));
    let shown_exp = experiment.display().to_string();
    let mut inc = Included::default();
    if let Some(v) = table.remove("topology") {
        let Value::String(rel) = v else {
            return Err(format!(
                "{shown_exp}: `topology`: expected a file path (a string)"
            ));
        };
        let file = dir.join(&rel);
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| {
            format!("{shown_exp}: `topology = \"{rel}\"`: cannot read {shown}: {e}")
        })?;
        let mut other: Table = toml::from_str(&text).map_err(|e| {
            let c = mesh_engine::config::toml_error(&e, &text, Some(&shown));
            c.to_string()
        })?;
        let arrays = ["service", "client"];
        if let Some(k) = other.keys().find(|k| !arrays.contains(&k.as_str())) {
            return Err(format!(
                "{shown}: unexpected `{k}` in a topology file: expected only {}",
                arrays.join(", ")
            ));
        }
        for a in arrays {
            let Some(items) = other.remove(a) else {
                continue;
            };
            if table.contains_key(a) {
                return Err(format!(
                    "{shown_exp}: `{a}` is both inline and in {shown}: keep one of them"
                ));
            }
            table.insert(a.to_owned(), items);
        }
        inc.any = true;
    }
    include_mesh(table, dir, "", &shown_exp, &mut inc)?;
    if let Some(Value::Array(timeline)) = table.get_mut("timeline") {
        for (i, entry) in timeline.iter_mut().enumerate() {
            if let Some(Value::Table(push)) = entry.get_mut("push") {
                include_mesh(
                    push,
                    dir,
                    &format!("timeline[{i}].push"),
                    &shown_exp,
                    &mut inc,
                )?;
            }
        }
    }
    Ok(inc)
}

/// Resolves `mesh = PATHS` in `table` (the experiment, or a push at `at`).
fn include_mesh(
    table: &mut Table,
    dir: &Path,
    at: &str,
    experiment: &str,
    inc: &mut Included,
) -> Result<(), String> {
    let Some(v) = table.remove("mesh") else {
        return Ok(());
    };
    let key = if at.is_empty() {
        "mesh".to_owned()
    } else {
        format!("{at}.mesh")
    };
    let rels: Vec<String> = match v {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| format!("{experiment}: `{key}`: expected paths (strings)"))?,
        _ => {
            return Err(format!(
                "{experiment}: `{key}`: expected a path or a list of paths, e.g. mesh = [\"istio/\", \"extra.yaml\"]"
            ));
        }
    };
    if rels.is_empty() {
        return Err(format!("{experiment}: `{key}`: expected at least one path"));
    }
    let paths: Vec<PathBuf> = rels.iter().map(|r| dir.join(r)).collect();
    let sources = source::read(&paths, &source::ISTIO_ARRAYS).map_err(|e| {
        let n = e.0.len();
        format!(
            "{e}\n{experiment}: `{key}`: {n} error{} in the mesh config",
            if n == 1 { "" } else { "s" }
        )
    })?;
    for (array, items) in sources.table {
        if table.contains_key(&array) {
            return Err(format!(
                "{experiment}: `{array}` is both inline and in `{key}`: keep one of them"
            ));
        }
        table.insert(array, items);
    }
    inc.origins.extend(if at.is_empty() {
        sources.origins
    } else {
        sources.origins.under(at)
    });
    inc.notes.extend(sources.notes);
    inc.warnings.extend(sources.warnings);
    inc.any = true;
    Ok(())
}
