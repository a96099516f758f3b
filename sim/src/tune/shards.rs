//! `meshsim tune --shard K/N`: the rounds of a tune spread over N processes
//! (pods of a Kubernetes Indexed Job, tasks of a Slurm array) that share
//! one output directory (a ReadWriteMany volume, a shared file system).
//!
//! The search is adaptive (which candidates go on depends on every result
//! of the round), so the shards meet after each round: each runs its
//! cost-balanced share of the round's runs into the shared directory,
//! writes its results to `shards/round-R-shard-K.toml` (atomically: a temp
//! file renamed), and waits until the N files of the round are there. Every
//! shard then holds every result and computes the same next round. Shard 0
//! writes the outputs and removes `shards/`: the directory is byte for byte
//! the one `meshsim tune` writes on one machine. A shard killed and started
//! again (the Job's retry) runs its rounds again and rewrites the same
//! files; the others keep waiting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shard::Shard;

/// One run's summary with every figure at full precision (the CSV row
/// rounds): the next round is decided on exactly what one process would see.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    job: usize,
    experiment: String,
    seed: u64,
    duration_ns: u64,
    requests: u64,
    successes: u64,
    errors_5xx: u64,
    overflow: u64,
    fault_aborts: u64,
    timeouts: u64,
    latency_ms: [f64; 4],
    ejections: u64,
    ejected_host_seconds: f64,
    users_switched_version: u64,
    version_switches: u64,
    healthy_ejected_host_seconds: f64,
    eject_delay_s: Option<f64>,
    bad_pod_requests: u64,
}

impl Row {
    fn of(job: usize, s: &mesh_rundir::Summary) -> Self {
        Self {
            job,
            experiment: s.experiment.clone(),
            seed: s.seed,
            duration_ns: s.duration_ns,
            requests: s.requests,
            successes: s.successes,
            errors_5xx: s.errors_5xx,
            overflow: s.overflow,
            fault_aborts: s.fault_aborts,
            timeouts: s.timeouts,
            latency_ms: s.latency_ms,
            ejections: s.ejections,
            ejected_host_seconds: s.ejected_host_seconds,
            users_switched_version: s.users_switched_version,
            version_switches: s.version_switches,
            healthy_ejected_host_seconds: s.healthy_ejected_host_seconds,
            eject_delay_s: s.eject_delay_s,
            bad_pod_requests: s.bad_pod_requests,
        }
    }

    fn summary(self) -> mesh_rundir::Summary {
        mesh_rundir::Summary {
            experiment: self.experiment,
            seed: self.seed,
            duration_ns: self.duration_ns,
            requests: self.requests,
            successes: self.successes,
            errors_5xx: self.errors_5xx,
            overflow: self.overflow,
            fault_aborts: self.fault_aborts,
            timeouts: self.timeouts,
            latency_ms: self.latency_ms,
            ejections: self.ejections,
            ejected_host_seconds: self.ejected_host_seconds,
            users_switched_version: self.users_switched_version,
            version_switches: self.version_switches,
            healthy_ejected_host_seconds: self.healthy_ejected_host_seconds,
            eject_delay_s: self.eject_delay_s,
            bad_pod_requests: self.bad_pod_requests,
        }
    }
}

/// `shards/round-R-shard-K.toml`.
#[derive(Debug, Serialize, Deserialize)]
struct RoundFile {
    /// Fingerprint of the round's runs (and so of every earlier result).
    round_id: String,
    binary: String,
    shard: usize,
    shards: usize,
    rows: Vec<Row>,
}

fn file_of(dir: &Path, round: usize, shard: usize) -> PathBuf {
    dir.join("shards")
        .join(format!("round-{round}-shard-{shard}.toml"))
}

/// Publishes this shard's results of `round`.
pub(super) fn publish(
    dir: &Path,
    round: usize,
    round_id: &str,
    shard: Shard,
    rows: &[(usize, mesh_rundir::Summary)],
) -> Result<(), String> {
    let f = RoundFile {
        round_id: round_id.to_owned(),
        binary: crate::shard::binary_id(),
        shard: shard.index,
        shards: shard.count,
        rows: rows.iter().map(|(j, s)| Row::of(*j, s)).collect(),
    };
    let path = file_of(dir, round, shard.index);
    let text = toml::to_string(&f).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("{}: cannot create: {e}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Waits until every shard has published `round` (with this round's
/// fingerprint and this binary), then returns every run's summary in job
/// order. A file of another tune or binary is waited past (a retried shard
/// rewrites it); after `wait` without all of them, an error names the
/// shards missing and the files that do not match.
pub(super) fn gather(
    dir: &Path,
    round: usize,
    round_id: &str,
    shard: Shard,
    jobs: usize,
    wait: Duration,
) -> Result<Vec<mesh_rundir::Summary>, String> {
    let binary = crate::shard::binary_id();
    // Polls every 100 ms, counted rather than timed: the simulator reads
    // no clock.
    const POLL: Duration = Duration::from_millis(100);
    let polls = wait.as_millis() / POLL.as_millis();
    let mut polled = 0u128;
    loop {
        let mut rows: Vec<Option<mesh_rundir::Summary>> = vec![None; jobs];
        let mut missing = Vec::new();
        let mut foreign = Vec::new();
        for k in 0..shard.count {
            let path = file_of(dir, round, k);
            let Ok(text) = std::fs::read_to_string(&path) else {
                missing.push(format!("{k}/{}", shard.count));
                continue;
            };
            let f: RoundFile = match toml::from_str(&text) {
                Ok(f) => f,
                Err(_) => {
                    foreign.push(path.display().to_string());
                    continue;
                }
            };
            if f.round_id != round_id || f.binary != binary || f.shards != shard.count {
                foreign.push(path.display().to_string());
                continue;
            }
            for r in f.rows {
                if let Some(slot) = rows.get_mut(r.job) {
                    *slot = Some(r.summary());
                }
            }
        }
        if missing.is_empty() && foreign.is_empty() {
            return rows
                .into_iter()
                .enumerate()
                .map(|(j, r)| {
                    r.ok_or_else(|| {
                        format!(
                            "{}: round {round}: run {j} is in no shard's results: the shard files are damaged",
                            dir.display()
                        )
                    })
                })
                .collect();
        }
        if polled >= polls {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("shards not done: {}", missing.join(", ")));
            }
            if !foreign.is_empty() {
                why.push(format!("of another tune or binary: {}", foreign.join(", ")));
            }
            return Err(format!(
                "{}: round {round}: waited {} s for the other shards ({}); start every shard with the same files and --shard K/{}, one output directory shared by all, and a binary built once",
                dir.display(),
                wait.as_secs(),
                why.join("; "),
                shard.count
            ));
        }
        std::thread::sleep(POLL);
        polled += 1;
    }
}

/// Shard 0, done: the meeting files go.
pub(super) fn clean(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir.join("shards"));
}
