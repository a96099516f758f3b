//! # meshsim
//!
//! Deterministic discrete-event simulation of a service mesh, driven by the
//! shared engine (`mesh-engine`): one engine per modelled proxy, modelled
//! pods with latency distributions, errors, concurrency and queues, a
//! fortio-like load, a timeline of faults and config pushes, and online
//! metrics written to a run directory.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod budget;
mod callgraph;
pub mod experiment;
pub mod export;
pub mod import;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plan;
mod pools;
mod queue;
pub mod replay;
pub mod report;
pub mod run;
mod sample;
pub mod setpath;
pub mod shard;
pub mod tune;

pub use callgraph::Edge;
pub use mesh_rundir::Histogram;
pub use model::Model;
pub use run::{Run, RunError};
