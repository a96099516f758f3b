//! `meshecho`: a test upstream for meshproxy's tests, examples and
//! benchmarks (see `mesh_proxy::echo` for the query parameters).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mesh_proxy::echo::{self, Defaults};

/// A small, fast HTTP/1.1 test upstream in the spirit of fortio's echo
/// server: `?status=503:20,500:5`, `?delay=10ms:20,1s:1`, `?size=N`,
/// `?close=true`, `?header=K:V`.
#[derive(Parser, Debug)]
#[command(name = "meshecho", version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8081 (port 0 picks a free port;
    /// the bound address is printed on stdout).
    #[arg(long)]
    listen: SocketAddr,
    /// Name sent back in `x-meshecho-name` (default: the listen address).
    #[arg(long)]
    name: Option<String>,
    /// Answer every request without its own `status` with this status…
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=599))]
    status: Option<u16>,
    /// …from this long after start on (Istio duration: 500ms, 60s, 2m).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    after: Duration,
    /// Percent (0–100) of requests without their own `status` answered 503.
    #[arg(long, default_value_t = 0.0, value_parser = parse_percent)]
    error_rate: f64,
    /// Seed of the dice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_engine::config::parse_duration(s)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "expected a percentage between 0 and 100, found \"{s}\""
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshecho: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("meshecho: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(2);
            }
        };
        let bound = listener.local_addr().map_or(args.listen, |a| a);
        let defaults = Defaults {
            name: args.name.unwrap_or_else(|| bound.to_string()),
            status: args.status.unwrap_or(0),
            after: args.after,
            error_rate: args.error_rate,
        };
        println!("meshecho listening on {bound}");
        echo::serve(
            listener,
            defaults,
            args.seed,
            mesh_proxy::signals::terminate(),
        )
        .await;
        ExitCode::SUCCESS
    })
}
