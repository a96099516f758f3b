//! `meshproxy --config FILE [--admin 127.0.0.1:PORT]`: the mesh engine as
//! an HTTP proxy. See docs/proxy.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mesh_proxy::{AccessLog, Options, config, signals};

/// The mesh engine as an HTTP/1.1 and h2c proxy: Istio routing, load
/// balancing, affinity, outlier detection, circuit breaking, retries and
/// faults, from the same TOML file the simulator reads.
#[derive(Parser, Debug)]
#[command(name = "meshproxy", version)]
struct Args {
    /// The mesh config with at least one [[listener]]: a TOML file, or
    /// repeated for several files and directories (TOML with the listeners
    /// and the registry, Istio YAML for VirtualServices, DestinationRules…).
    #[arg(long, required = true)]
    config: Vec<PathBuf>,
    /// Admin listener (/stats, /clusters, /config_dump, /ready); keep it on
    /// loopback.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Access log on stdout: off, text or json.
    #[arg(long, default_value = "text")]
    access_log: AccessLog,
    /// On SIGTERM/SIGINT, how long the listeners keep accepting (answering
    /// with `connection: close`, `/ready` 503) before they close, as Istio's
    /// `terminationDrainDuration` (0s: close them at once).
    #[arg(long, default_value = "5s", value_parser = parse_duration_or_zero)]
    drain_time: Duration,
    /// After the drain time, how long in-flight requests may still finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How long a client may take to send its request headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// How long an HTTP/1.1 client connection may sit idle between
    /// requests before it is closed, as Envoy's `idle_timeout` (0s: never).
    #[arg(long, default_value = "1h", value_parser = parse_duration_or_zero)]
    idle_timeout: Duration,
    /// Largest request body accepted, in bytes (larger: 413); 0: no limit,
    /// as Envoy.
    #[arg(long, default_value_t = 0)]
    max_body_bytes: u64,
    /// The most of a body held in memory, in bytes (Envoy's buffer limit):
    /// a request body up to it is kept so that a retry can resend it, a
    /// response body up to it is read before the answer goes on; larger
    /// ones stream through, and such a request is not retried.
    #[arg(long, default_value_t = 1 << 20)]
    buffer_limit: usize,
    /// Largest request header block, in bytes.
    #[arg(long, default_value_t = 64 << 10)]
    max_header_bytes: usize,
    /// How often the config file is checked for changes (0s: only SIGHUP).
    #[arg(long, default_value = "1s", value_parser = parse_duration_or_zero)]
    watch_interval: Duration,
    /// Worker threads, as Envoy's `--concurrency` (Istio's sidecars run 2);
    /// 0: one per core. Each worker serves its own client connections with
    /// its own load-balancer state and connection pools; outlier detection
    /// and circuit-breaker counters are shared.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=1024))]
    concurrency: u16,
    /// Seed of the engine's random streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Record the run directory (summary.csv, timeseries.csv, calls.csv,
    /// events.csv; docs/run-format.md) from live traffic into DIR, for
    /// `meshsim replay DIR`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// The recording's window (Istio duration).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    record_window: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_engine::config::parse_duration(s)
}

fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s == "0" || s == "0s" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.record
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "meshproxy: --record {}: cannot create the directory: {e}",
            dir.display()
        );
        return ExitCode::from(2);
    }
    let loaded = match config::load(&args.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meshproxy: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        eprintln!("meshproxy: warning: {w}");
    }
    let options = Options {
        access_log: args.access_log,
        max_body_bytes: (args.max_body_bytes > 0).then_some(args.max_body_bytes),
        buffer_limit: args.buffer_limit,
        max_header_bytes: args.max_header_bytes,
        header_read_timeout: args.header_read_timeout,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        drain_time: args.drain_time,
        drain_timeout: args.drain_timeout,
        watch_interval: (!args.watch_interval.is_zero()).then_some(args.watch_interval),
        seed: args.seed,
        record: args.record.clone(),
        record_window: args.record_window,
        concurrency: match args.concurrency {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => usize::from(n),
        },
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut listeners = Vec::new();
        for l in &loaded.listeners {
            match tokio::net::TcpListener::bind(l.address).await {
                Ok(s) => {
                    let bound = s.local_addr().map_or(l.address, |a| a);
                    println!("meshproxy listening on {bound} ({})", l.role());
                    listeners.push(s);
                }
                Err(e) => {
                    eprintln!(
                        "meshproxy: {}: listener: cannot listen on {}: {e}",
                        args.config[0].display(),
                        l.address
                    );
                    return ExitCode::from(2);
                }
            }
        }
        let admin = match args.admin {
            Some(a) => match tokio::net::TcpListener::bind(a).await {
                Ok(s) => {
                    let bound = s.local_addr().map_or(a, |x| x);
                    println!("meshproxy admin on {bound}");
                    Some(s)
                }
                Err(e) => {
                    eprintln!("meshproxy: --admin: cannot listen on {a}: {e}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        mesh_proxy::run(
            args.config.clone(),
            loaded,
            listeners,
            admin,
            options,
            signals::hangups(),
            signals::terminate(),
        )
        .await;
        ExitCode::SUCCESS
    })
}
