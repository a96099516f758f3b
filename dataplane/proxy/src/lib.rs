//! # mesh-proxy
//!
//! `meshproxy`: the mesh engine (`mesh-engine`) behind real sockets, and
//! `meshecho`, a test upstream. The proxy is a thin shell that owns the
//! clock and the sockets: per event it reads the clock once, asks
//! the engine, forwards with retries and timeouts as the engine decides,
//! and reports each outcome back (STYLE.md pattern 9). One timer task
//! drives `poll_timeout` / `handle_timeout`. `--concurrency` workers each
//! run their own current-thread tokio runtime with their own connection
//! pools; a listener's engine is shared by them under one lock, as
//! Envoy's cluster state is (docs/proxy.md, "Workers").
//!
//! Map: [`config`] reads the mesh TOML and its `[[listener]]`s; `proxy`
//! holds each listener's engine, pools and counters; `pool` the upstream
//! connection pools; `h1` the HTTP/1.1 client they speak (a small codec
//! over `httparse`); `downstream` the listener side (its own HTTP/1.1
//! codec, hyper for h2c); `hdr` header blocks in wire form; `forward` one
//! request's life; `server` workers, accept loops, timer, reload and drain; `admin` the admin endpoints; `log` the access
//! log; `record` the run directory from live traffic; [`echo`] the test
//! upstream.
#![forbid(unsafe_code)]

mod admin;
mod body;
mod chan;
pub mod config;
mod connect;
mod downstream;
pub mod echo;
mod forward;
#[doc(hidden)]
pub mod fuzz;
mod h1;
mod hdr;
mod log;
mod msg;
mod pool;
mod proxy;
mod record;
mod rt;
mod server;
pub mod signals;

pub use log::AccessLog;
pub use proxy::Options;
pub use server::run;
