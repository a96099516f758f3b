//! `meshsim`: the command line.
//!
//! `check` validates experiments and mesh configs, `route` asks the engine
//! how a proxy routes a request, `run` and `sweep` simulate, and `replay`
//! plays a run directory back in the terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod check;

use clap::{Parser, Subcommand};
use mesh_engine::config::{self, Config};
use mesh_engine::{Decision, Engine, ProxySpec, Request, Time};

/// meshsim: what your users see when a pod goes bad, before you deploy.
#[derive(Debug, Parser)]
#[command(name = "meshsim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate experiment files (topology, load, timeline, mesh config,
    /// sweep) or mesh config files without running them.
    Check {
        /// Experiments (TOML), mesh config files (TOML), Istio YAML files or
        /// directories of them (all the YAML is checked as one config).
        #[arg(required_unless_present = "rules")]
        files: Vec<PathBuf>,
        /// Override a field of an experiment: `--set load.qps=5000` (repeatable).
        #[arg(long = "set", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// `text` (for people) or `json` (for CI).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
        /// Exit 2 on findings of this severity or above: `error`, `warning` or `info`.
        #[arg(long, default_value = "error", value_parser = ["error", "warning", "info"])]
        fail_on: String,
        /// Print the analyzer's rules (codes, severities) and exit.
        #[arg(long)]
        rules: bool,
    },
    /// Ask the engine how one proxy routes a request, as Envoy configured by
    /// Istio would. With `-n N` sends N such requests and prints the split.
    Route(Box<RouteArgs>),
    /// Run an experiment: print a fortio-like summary and write the run
    /// directory (summary.csv, timeseries.csv, events.csv, experiment.toml).
    Run {
        /// Experiment file (TOML).
        file: PathBuf,
        /// Run directory to write (default: `runs/<experiment name>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed, overriding the experiment's.
        #[arg(long)]
        seed: Option<u64>,
        /// Override a field: `--set duration=3000s --set load.qps=5000` (repeatable).
        #[arg(long = "set", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Run this `[[tune.scenario]]` of the experiment (its timeline and sets).
        #[arg(long)]
        scenario: Option<String>,
        /// Also run a baseline with this field changed (`off` removes it),
        /// e.g. `--baseline destinationRule.backend.trafficPolicy.outlierDetection=off`,
        /// and print both side by side with the difference (repeatable).
        #[arg(long = "baseline", value_parser = parse_set)]
        baseline: Vec<(String, String)>,
    },
    /// Run every point of an experiment's `[sweep]` × its `seeds` in
    /// parallel; write one summary row per run and print the best points.
    Sweep {
        /// Experiment file (TOML) with a `[sweep]` table.
        file: PathBuf,
        /// Directory to write (default: `runs/<experiment name>-sweep`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads (default: all cores). Results do not depend on it.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Seed of the first replica, overriding the experiment's.
        #[arg(long)]
        seed: Option<u64>,
        /// Override a field (repeatable).
        #[arg(long = "set", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// What "best" means: success_rate (highest), errors_5xx,
        /// latency_ms_p99 or ejected_host_seconds (lowest).
        #[arg(long, default_value = "success_rate")]
        objective: String,
        /// Run only shard K of N (K from 0): a cost-balanced share of the
        /// runs, into a shard directory for `meshsim merge`. For a
        /// Kubernetes Indexed Job: `--shard $JOB_COMPLETION_INDEX/N`.
        #[arg(long)]
        shard: Option<meshsim::shard::Shard>,
    },
    /// Merge the shard directories of a sharded sweep (`meshsim sweep
    /// --shard K/N`) into the directory one `meshsim sweep` would have
    /// written, byte for byte; refuses a missing, repeated or foreign shard.
    Merge {
        /// The N shard directories, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Directory to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Play a run directory back in the terminal (from `meshsim run`, a
    /// `meshsim sweep` directory to pick a point from, or `meshproxy
    /// --record`). Space plays, ←/→ step, ⇧←/→ jump between events, ? help.
    Replay(ReplayArgs),
    /// Write one self-contained HTML report (inline SVG charts, no script)
    /// of a run, sweep or tune directory, or of two runs compared.
    Report(ReportArgs),
    /// Write an experiment's mesh config (or a run directory's) as Istio
    /// YAML to `kubectl apply`: one document per object.
    Export(meshsim::export::Args),
    /// Recommend the outlier-detection settings (and weights) to deploy:
    /// search the `[tune]` space over its scenarios, print the Pareto front
    /// and write recommended.yaml (kubectl-applyable), pareto.csv and
    /// points.csv.
    Tune(TuneArgs),
    /// Write an experiment skeleton from `kubectl get
    /// svc,deploy,statefulset,vs,dr,gw,se -A -o yaml` output: one service
    /// per Kubernetes Service, the Istio objects kept in your files.
    Import(meshsim::import::Args),
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// A run directory (`meshsim run`, `meshproxy --record`), a sweep
    /// directory or a tune directory.
    dir: PathBuf,
    /// A second run directory, overlaid on the first.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// The HTML file to write (default: `DIR/report.html`).
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// The summary column a sweep's heatmaps show (mean over seeds).
    #[arg(long, default_value = "errors_5xx")]
    objective: String,
}

#[derive(Debug, clap::Args)]
struct TuneArgs {
    /// Experiments: the first has the `[tune]` table; each one, or each of
    /// its `[[tune.scenario]]`, is a scenario the settings are judged on.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Candidates to evaluate (default: `tune.budget`, else 50).
    #[arg(long)]
    budget: Option<usize>,
    /// Seeds of the final round (default: `tune.seeds`, else 3).
    #[arg(long)]
    seeds: Option<u32>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Directory to write (default: `runs/<experiment name>-tune`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a field of every experiment (repeatable).
    #[arg(long = "set", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// No successive halving: every candidate at full length over every
    /// seed (the halving's choice checked at its full cost).
    #[arg(long)]
    full: bool,
    /// Run as shard K of N (K from 0), every shard with the same files and
    /// the same --out on a shared volume: each runs its share of every
    /// round, and they meet after each round; shard 0 writes the results.
    #[arg(long)]
    shard: Option<meshsim::shard::Shard>,
    /// Seconds a shard waits for the others at the end of a round.
    #[arg(long, default_value_t = 3600)]
    shard_wait: u64,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Run directory, or sweep directory.
    dir: PathBuf,
    /// Print the frame at this time (e.g. `75s`) as text and exit, instead
    /// of opening the interactive replay.
    #[arg(long, value_name = "TIME")]
    frame_at: Option<String>,
    /// Size of the frame printed by `--frame-at`, `WIDTHxHEIGHT`.
    #[arg(long, default_value = "100x30", value_parser = parse_size)]
    size: (u16, u16),
    /// In a sweep directory: open this point's run directly.
    #[arg(long)]
    point: Option<usize>,
    /// With `--point`: the replica's seed (default: the point's first).
    #[arg(long)]
    seed: Option<u64>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expected WIDTHxHEIGHT such as 100x30, found `{s}`");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u16, u16) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    let (min_w, min_h) = meshsim::replay::MIN_SIZE;
    if w < min_w || h < min_h {
        return Err(format!("{w}x{h} is too small: at least {min_w}x{min_h}"));
    }
    Ok((w, h))
}

fn replay(args: &ReplayArgs) -> Result<String, String> {
    let mut app = meshsim::replay::open(&args.dir, args.point, args.seed)?;
    let Some(at) = &args.frame_at else {
        meshsim::replay::run_interactive(app)?;
        return Ok(String::new());
    };
    let t = config::parse_duration(at)
        .map_err(|e| format!("--frame-at {at}: {e} (e.g. 75s, 1m30s)"))?;
    app.seek_time(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
    let text = meshsim::replay::frame_text(&mut app, args.size.0, args.size.1)?;
    if let Some(e) = &app.status {
        return Err(e.clone());
    }
    Ok(text)
}

#[derive(Debug, clap::Args)]
struct RouteArgs {
    /// Mesh config: TOML mesh files, Istio YAML, or directories of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Host (and port) the caller asks for, e.g. `reviews:9080`.
    #[arg(long)]
    authority: String,
    /// Path with query, e.g. `/reviews/1?x=y`.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// A request header `name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Caller address `ip:port` (for `useSourceIp` and generated cookies).
    #[arg(long)]
    source: Option<SocketAddr>,
    /// Namespace of the calling workload.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// A label `key=value` of the calling workload (repeatable; for `sourceLabels`).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Route as this gateway (`name` or `namespace/name`) instead of a sidecar.
    #[arg(long)]
    gateway: Option<String>,
    /// Destination port the request arrives on (what `match.port` is
    /// compared with). Default: the authority's port; else, for a sidecar,
    /// the service's port, for a gateway its first server's whose hosts
    /// cover the authority; else 80.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Number of requests to send; above 1 prints how they were spread.
    #[arg(short = 'n', long, default_value_t = 1)]
    requests: u64,
    /// Seed of the engine's random streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("expected `name: value`, found `{s}`"))?;
    Ok((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected `path=value`, e.g. load.qps=5000, found `{s}`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected `key=value`, found `{s}`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// Exit code for bad input (files, fields, arguments).
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            files,
            sets,
            output,
            fail_on,
            rules,
        } => {
            if rules {
                Ok(mesh_engine::config::analyze::rules_text())
            } else {
                let args = check::Args {
                    files: &files,
                    sets: &sets,
                    json: output == "json",
                    fail_on: mesh_engine::config::analyze::Severity::parse(&fail_on)
                        .unwrap_or(mesh_engine::config::analyze::Severity::Error),
                };
                match check::check(&args) {
                    Ok(out) => Ok(out),
                    Err((out, err)) => {
                        print!("{out}");
                        Err(err)
                    }
                }
            }
        }
        Command::Route(args) => route(&args),
        Command::Run {
            file,
            out,
            seed,
            sets,
            scenario,
            baseline,
        } => run(
            &file,
            out.as_deref(),
            seed,
            &sets,
            scenario.as_deref(),
            &baseline,
        ),
        Command::Sweep {
            file,
            out,
            threads,
            seed,
            sets,
            objective,
            shard,
        } => match shard {
            Some(shard) => sweep_shard(&file, out.as_deref(), threads, seed, &sets, shard),
            None => sweep(&file, out.as_deref(), threads, seed, &sets, &objective),
        },
        Command::Merge { shards, out } => meshsim::shard::merge(&shards, &out),
        Command::Replay(args) => replay(&args),
        Command::Report(args) => meshsim::report::command(&meshsim::report::Args {
            dir: &args.dir,
            compare: args.compare.as_deref(),
            out: args.out.as_deref(),
            objective: &args.objective,
        }),
        Command::Export(args) => meshsim::export::command(&args),
        Command::Tune(args) => meshsim::tune::tune(&meshsim::tune::Args {
            files: &args.files,
            budget: args.budget,
            seeds: args.seeds,
            threads: args.threads,
            out: args.out.as_deref(),
            sets: &args.sets,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            full: args.full,
            shard: args.shard,
            shard_wait: std::time::Duration::from_secs(args.shard_wait),
        }),
        Command::Import(args) => meshsim::import::command(&args),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// Reads and validates a mesh config from files or directories (TOML and
/// Istio YAML); the error text names file, line:column, field and what to do.
fn load(paths: &[PathBuf]) -> Result<(Config, Vec<config::Warning>), String> {
    let shown = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    config::source::load(paths)
        .map(|(c, w, _)| (c, w))
        .map_err(|e| check::errors_text(&shown, &e.0))
}

fn route(args: &RouteArgs) -> Result<String, String> {
    let (cfg, _warnings) = load(&args.files)?;
    let proxy = match &args.gateway {
        Some(g) => {
            let (ns, name) = g.split_once('/').unwrap_or((&args.namespace, g));
            let full = format!("{ns}/{name}");
            if !cfg.gateways.contains(&full) {
                return Err(format!(
                    "--gateway {g}: no gateway \"{full}\" in {}; known: {}",
                    args.files[0].display(),
                    if cfg.gateways.is_empty() {
                        "none".to_owned()
                    } else {
                        cfg.gateways.join(", ")
                    }
                ));
            }
            ProxySpec::gateway(ns, name)
        }
        None => ProxySpec {
            namespace: args.namespace.clone(),
            labels: args.labels.iter().cloned().collect(),
            gateway: None,
        },
    };
    let mut engine = Engine::new(Arc::new(cfg), proxy, args.seed);
    let headers: Vec<(&str, &str)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = Request {
        method: &args.method,
        scheme: "http",
        authority: &args.authority,
        path: &args.path,
        headers: &headers,
        port: args
            .port
            .or_else(|| engine.destination_port(&args.authority))
            .unwrap_or(80),
        source: args.source,
        destination: None,
        worker: 0,
    };
    // A fault delay holds the request; the router runs when it is over.
    // The clock only moves forward: by the delays waited.
    let mut now = Time::ZERO;
    let mut decide = |engine: &mut Engine| match engine.handle_request(&req, now) {
        Decision::Delay(d) => {
            now = now + d.delay;
            (engine.handle_delayed(&req, d, now), now)
        }
        other => (other, now),
    };
    if args.requests <= 1 {
        let (d, _) = decide(&mut engine);
        return Ok(format!("{}\n", engine.describe(&d)));
    }
    // Each request completes before the next, so least-request sees idle hosts.
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..args.requests {
        let (d, at) = decide(&mut engine);
        let key = match d {
            Decision::Forward(f) => {
                // Sequential requests: a connection is always ready.
                match engine.admit(f.upstream, true, false, at) {
                    mesh_engine::Admission::Attach => {
                        let key = format!(
                            "{} {}",
                            engine.cluster_name(f.upstream.cluster),
                            engine.endpoint_address(f.upstream)
                        );
                        engine.handle_response(f.upstream, mesh_engine::Outcome::Status(200), at);
                        key
                    }
                    _ => "reject 503 UO".to_owned(),
                }
            }
            Decision::Reject(r) => format!("reject {} {}", r.status, r.flag()),
            Decision::Respond(r) => format!("respond {}", r.status),
            Decision::Delay(_) => "delay".to_owned(),
        };
        *outcomes.entry(key).or_default() += 1;
    }
    let mut out = format!(
        "{} requests to {}{}\n",
        args.requests, args.authority, args.path
    );
    for (k, n) in &outcomes {
        #[allow(clippy::cast_precision_loss)]
        let pct = 100.0 * *n as f64 / args.requests as f64;
        let _ = writeln!(out, "{n:>10} ({pct:5.1} %)  {k}");
    }
    Ok(out)
}

fn run(
    path: &Path,
    out: Option<&Path>,
    seed: Option<u64>,
    sets: &[(String, String)],
    scenario: Option<&str>,
    baseline: &[(String, String)],
) -> Result<String, String> {
    let (mut text, dir, first) = run_once(path, out, seed, sets, scenario, "")?;
    if baseline.is_empty() {
        let _ = writeln!(text, "Run directory: {}", dir.display());
        return Ok(text);
    }
    // The same experiment with the baseline's changes, beside it.
    let mut base_sets = sets.to_vec();
    base_sets.extend(baseline.iter().cloned());
    let base_out = PathBuf::from(format!("{}-baseline", dir.display()));
    let (base_text, base_dir, base) = run_once(
        path,
        Some(&base_out),
        seed,
        &base_sets,
        scenario,
        "baseline ",
    )?;
    let changes: Vec<String> = baseline.iter().map(|(p, v)| format!("{p}={v}")).collect();
    let _ = writeln!(text, "\nBaseline ({}):", changes.join(" "));
    text.push_str(&base_text);
    text.push_str(&compare(&first, &base));
    let _ = writeln!(
        text,
        "Run directory: {}; baseline: {}",
        dir.display(),
        base_dir.display()
    );
    Ok(text)
}

/// Runs an experiment's first point (each of its seeds); returns the text,
/// the run directory, and the first seed's summary.
fn run_once(
    path: &Path,
    out: Option<&Path>,
    seed: Option<u64>,
    sets: &[(String, String)],
    scenario: Option<&str>,
    what: &str,
) -> Result<(String, PathBuf, mesh_rundir::Summary), String> {
    let name = path.display().to_string();
    let plan = match scenario {
        None => meshsim::plan::load(path, sets, seed)?,
        Some(s) => {
            // As `tune` builds it: included files, then --set, then the
            // scenario's timeline and sets.
            let resolved = meshsim::plan::load(path, sets, seed)?;
            let text = meshsim::tune::scenario_text(&resolved.text, path, s)?;
            meshsim::plan::load_text(&text, path, &[], seed)?
        }
    };
    let mut out_text = String::new();
    for w in &plan.warnings {
        let _ = writeln!(out_text, "{what}{}: {w}", check::label(w));
    }
    if !plan.swept.is_empty() {
        let _ = writeln!(
            out_text,
            "note: {name} has a [sweep]; `meshsim run` runs its first point only (use `meshsim sweep`)"
        );
    }
    let jobs: Vec<_> = plan.jobs.into_iter().filter(|j| j.point == 0).collect();
    let dir = out.map_or_else(|| PathBuf::from("runs").join(&plan.name), Path::to_path_buf);
    let replicas = jobs.len() > 1;
    let dir_of = |_: usize, job: &meshsim::plan::Job| {
        if replicas {
            dir.join(format!("seed-{}", job.model.seed()))
        } else {
            dir.clone()
        }
    };
    let results = meshsim::plan::execute(&jobs, 1, Some(&dir_of), &|| {})
        .map_err(|e| format!("{name}: {e}"))?;
    for (job, metrics) in jobs.iter().zip(&results) {
        out_text.push_str(&meshsim::output::summary_text(&job.model, metrics));
    }
    if replicas {
        write_summary(&dir, &[], jobs.iter(), &results)?;
    }
    let first = results[0].summary(&jobs[0].model);
    Ok((out_text, dir, first))
}

/// The summary figures of a run against its baseline, with the difference.
fn compare(run: &mesh_rundir::Summary, base: &mesh_rundir::Summary) -> String {
    #[allow(clippy::cast_precision_loss)]
    let rows: [(&str, f64, f64); 11] = [
        ("requests", run.requests as f64, base.requests as f64),
        ("errors_5xx", run.errors_5xx as f64, base.errors_5xx as f64),
        (
            "success_rate_%",
            100.0 * run.successes as f64 / run.requests.max(1) as f64,
            100.0 * base.successes as f64 / base.requests.max(1) as f64,
        ),
        ("latency_ms_p50", run.latency_ms[0], base.latency_ms[0]),
        ("latency_ms_p99", run.latency_ms[2], base.latency_ms[2]),
        ("latency_ms_p999", run.latency_ms[3], base.latency_ms[3]),
        ("ejections", run.ejections as f64, base.ejections as f64),
        (
            "ejected_host_seconds",
            run.ejected_host_seconds,
            base.ejected_host_seconds,
        ),
        (
            "healthy_ejected_host_seconds",
            run.healthy_ejected_host_seconds,
            base.healthy_ejected_host_seconds,
        ),
        (
            "bad_pod_requests",
            run.bad_pod_requests as f64,
            base.bad_pod_requests as f64,
        ),
        ("timeouts", run.timeouts as f64, base.timeouts as f64),
    ];
    let mut s = format!(
        "\n{:<30} {:>14} {:>14} {:>14}\n",
        "figure (first seed)", "run", "baseline", "run − baseline"
    );
    for (name, a, b) in rows {
        let _ = writeln!(s, "{name:<30} {a:>14.3} {b:>14.3} {:>+14.3}", a - b);
    }
    s
}

fn write_summary<'j>(
    dir: &Path,
    swept: &[String],
    jobs: impl Iterator<Item = &'j meshsim::plan::Job> + Clone,
    results: &[meshsim::metrics::Metrics],
) -> Result<(), String> {
    let summaries: Vec<_> = jobs
        .clone()
        .zip(results)
        .map(|(job, m)| m.summary(&job.model))
        .collect();
    let mut prefix = vec!["point".to_owned()];
    prefix.extend(swept.iter().cloned());
    let rows = jobs.zip(&summaries).map(|(job, s)| {
        let mut values = vec![job.point.to_string()];
        values.extend(job.values.iter().map(|(_, v)| v.clone()));
        (values, s)
    });
    let path = dir.join("summary.csv");
    mesh_rundir::write_summary(&path, &prefix, rows)
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

fn sweep(
    path: &Path,
    out: Option<&Path>,
    threads: usize,
    seed: Option<u64>,
    sets: &[(String, String)],
    objective: &str,
) -> Result<String, String> {
    let name = path.display().to_string();
    let higher_is_better = match objective {
        "success_rate" => true,
        "errors_5xx" | "latency_ms_p99" | "ejected_host_seconds" => false,
        other => {
            return Err(format!(
                "--objective {other}: expected success_rate, errors_5xx, latency_ms_p99 or ejected_host_seconds"
            ));
        }
    };
    let plan = meshsim::plan::load(path, sets, seed)?;
    let mut text = String::new();
    for w in &plan.warnings {
        let _ = writeln!(text, "{}: {w}", check::label(w));
    }
    let bar = indicatif::ProgressBar::new(plan.jobs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs, {elapsed} elapsed, ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let dir = out.map_or_else(
        || PathBuf::from("runs").join(format!("{}-sweep", plan.name)),
        Path::to_path_buf,
    );
    let dir_of = |_: usize, job: &meshsim::plan::Job| {
        dir.join(format!("point-{:04}-seed-{}", job.point, job.model.seed()))
    };
    let results = meshsim::plan::execute(&plan.jobs, threads, Some(&dir_of), &|| bar.inc(1))
        .map_err(|e| format!("{name}: {e}"))?;
    bar.finish_and_clear();
    write_summary(&dir, &plan.swept, plan.jobs.iter(), &results)?;
    // Mean of the objective per point, over its seeds.
    let mut per_point: BTreeMap<usize, (f64, u32)> = BTreeMap::new();
    for (job, m) in plan.jobs.iter().zip(&results) {
        let v = objective_value(objective, m);
        let e = per_point.entry(job.point).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    let mut ranked: Vec<(usize, f64)> = per_point
        .into_iter()
        .map(|(p, (sum, n))| (p, sum / f64::from(n)))
        .collect();
    ranked.sort_by(|a, b| {
        let o = a.1.total_cmp(&b.1);
        (if higher_is_better { o.reverse() } else { o }).then(a.0.cmp(&b.0))
    });
    let _ = writeln!(
        text,
        "{} runs of {}; best points by {objective} (mean over seeds):",
        plan.jobs.len(),
        plan.name
    );
    for (point, value) in ranked.iter().take(5) {
        let values = plan
            .jobs
            .iter()
            .find(|j| j.point == *point)
            .map(|j| {
                j.values
                    .iter()
                    .map(|(p, v)| format!("{p}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  point {point:>4}: {objective} = {value:.6}  {values}"
        );
    }
    let _ = writeln!(
        text,
        "Sweep directory: {} (summary.csv, one run directory per point and seed)",
        dir.display()
    );
    Ok(text)
}

/// `meshsim sweep --shard K/N`: this shard's runs into a shard directory.
fn sweep_shard(
    path: &Path,
    out: Option<&Path>,
    threads: usize,
    seed: Option<u64>,
    sets: &[(String, String)],
    shard: meshsim::shard::Shard,
) -> Result<String, String> {
    use meshsim::shard;
    let name = path.display().to_string();
    let plan = meshsim::plan::load_shard(path, sets, seed, shard)?;
    let mut text = String::new();
    for w in &plan.warnings {
        let _ = writeln!(text, "{}: {w}", check::label(w));
    }
    let dir = out.map_or_else(
        || {
            PathBuf::from("runs").join(format!(
                "{}-sweep-shard-{}-of-{}",
                plan.name, shard.index, shard.count
            ))
        },
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    shard::begin(&dir)?;
    let dir_of = |_: usize, job: &meshsim::plan::Job| {
        dir.join(format!("point-{:04}-seed-{}", job.point, job.model.seed()))
    };
    let results = meshsim::plan::execute(&plan.jobs, threads, Some(&dir_of), &|| {})
        .map_err(|e| format!("{name}: {e}"))?;
    write_summary(&dir, &plan.swept, plan.jobs.iter(), &results)?;
    shard::finish(
        &dir,
        &shard::ShardInfo {
            experiment: plan.name.clone(),
            plan: plan.fingerprint.clone(),
            binary: shard::binary_id(),
            shard: shard.index,
            shards: shard.count,
            runs: plan.runs,
            jobs: plan.jobs.iter().map(|j| j.index).collect(),
        },
    )?;
    let _ = writeln!(
        text,
        "Shard {}/{} of {}: {} of {} runs in {} (merge the {} shard directories with `meshsim merge DIR... --out OUT`)",
        shard.index,
        shard.count,
        plan.name,
        plan.jobs.len(),
        plan.runs,
        dir.display(),
        shard.count
    );
    Ok(text)
}

fn objective_value(objective: &str, m: &meshsim::metrics::Metrics) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    match objective {
        "success_rate" => m.successes() as f64 / m.requests.max(1) as f64,
        "errors_5xx" => m.errors_5xx() as f64,
        "latency_ms_p99" => m.latency.quantile_us(0.99) as f64 / 1000.0,
        _ => m.ejected_host_ns as f64 / 1e9,
    }
}
