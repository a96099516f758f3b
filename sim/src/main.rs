//! `meshsim`: the command line.
//!
//! Today it validates mesh configs (`check`) and asks the engine how it
//! routes requests (`route`); the discrete-event simulator (`run`, `sweep`,
//! `replay`) builds on the same engine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Validate mesh config files (services, VirtualServices, DestinationRules,
    /// Gateways, ServiceEntries) and print a summary and any warnings.
    Check {
        /// Mesh config files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
    },
}

#[derive(Debug, clap::Args)]
struct RouteArgs {
    /// Mesh config file (TOML).
    file: PathBuf,
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
        Command::Check { files } => check(&files),
        Command::Route(args) => route(&args),
        Command::Run { file, out, seed } => run(&file, out.as_deref(), seed),
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

/// Reads and validates one file; the error text names file, line:column,
/// field and what to do.
fn load(path: &Path) -> Result<(Config, Vec<config::Warning>), String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{name}: cannot read the mesh config: {e}"))?;
    config::from_toml(&text, Some(&name)).map_err(|errors| {
        let n = errors.0.len();
        format!(
            "{errors}\n{name}: {n} error{} found; fix {} and run `meshsim check {name}` again",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )
    })
}

fn check(files: &[PathBuf]) -> Result<String, String> {
    let mut out = String::new();
    let mut failures = Vec::new();
    for path in files {
        match load(path) {
            Ok((cfg, warnings)) => {
                for w in &warnings {
                    let _ = writeln!(out, "warning: {w}");
                }
                let endpoints: usize = cfg.services.iter().map(|s| s.endpoints.len()).sum();
                let _ = writeln!(
                    out,
                    "{}: ok: {} services, {} endpoints, {} clusters, {} VirtualServices, {} DestinationRules, {} Gateways, {} ServiceEntries, {} warning{}",
                    path.display(),
                    cfg.services.len(),
                    endpoints,
                    cfg.clusters.len(),
                    cfg.virtual_services.len(),
                    cfg.source.destination_rule.len(),
                    cfg.gateways.len(),
                    cfg.source.service_entry.len(),
                    warnings.len(),
                    if warnings.len() == 1 { "" } else { "s" }
                );
            }
            Err(msg) => failures.push(msg),
        }
    }
    if failures.is_empty() {
        Ok(out)
    } else {
        print!("{out}");
        Err(failures.join("\n"))
    }
}

fn route(args: &RouteArgs) -> Result<String, String> {
    let (cfg, _warnings) = load(&args.file)?;
    let proxy = match &args.gateway {
        Some(g) => {
            let (ns, name) = g.split_once('/').unwrap_or((&args.namespace, g));
            let full = format!("{ns}/{name}");
            if !cfg.gateways.contains(&full) {
                return Err(format!(
                    "--gateway {g}: no gateway \"{full}\" in {}; known: {}",
                    args.file.display(),
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
        port: 0,
        source: args.source,
        destination: None,
    };
    if args.requests <= 1 {
        let d = engine.handle_request(&req, Time::ZERO);
        return Ok(format!("{}\n", engine.describe(&d)));
    }
    // Each request completes before the next, so least-request sees idle hosts.
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..args.requests {
        let d = engine.handle_request(&req, Time::ZERO);
        let key = match d {
            Decision::Forward(f) => {
                // Sequential requests: a connection is always ready.
                match engine.admit(f.upstream, true, false, Time::ZERO) {
                    mesh_engine::Admission::Attach => {
                        let key = format!(
                            "{} {}",
                            engine.cluster_name(f.upstream.cluster),
                            engine.endpoint_address(f.upstream)
                        );
                        engine.handle_response(
                            f.upstream,
                            mesh_engine::Outcome::Status(200),
                            Time::ZERO,
                        );
                        key
                    }
                    _ => "reject 503 UO".to_owned(),
                }
            }
            Decision::Reject(r) => format!("reject {} {}", r.status, r.flag()),
            Decision::Respond(r) => format!("respond {}", r.status),
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

fn run(path: &Path, out: Option<&Path>, seed: Option<u64>) -> Result<String, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read the experiment: {e}"))?;
    let file = meshsim::experiment::parse(&text, Some(&name)).map_err(|e| e.to_string())?;
    let (model, warnings) = meshsim::Model::build(&file, seed).map_err(|errors| {
        let n = errors.len();
        let located = mesh_engine::config::ConfigErrors(errors).locate_in(Some(&name), &text);
        format!("{located}\n{name}: {n} error{} found", if n == 1 { "" } else { "s" })
    })?;
    let warnings = mesh_engine::config::ConfigErrors(warnings).locate_in(Some(&name), &text);
    let mut out_text = String::new();
    for w in &warnings.0 {
        let _ = writeln!(out_text, "warning: {w}");
    }
    let metrics = meshsim::Run::new(&model).run().map_err(|e| format!("{name}: {e}"))?;
    let dir = out.map_or_else(|| PathBuf::from("runs").join(&file.name), Path::to_path_buf);
    meshsim::output::write_run_dir(&dir, &model, &metrics, &text)
        .map_err(|e| format!("{}: cannot write the run directory: {e}", dir.display()))?;
    out_text.push_str(&meshsim::output::summary_text(&model, &metrics));
    let _ = writeln!(out_text, "Run directory: {}", dir.display());
    Ok(out_text)
}
