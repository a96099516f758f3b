//! Sweeps beyond one machine: `meshsim sweep --shard K/N` runs a
//! deterministic, cost-balanced share of a sweep's runs into a shard
//! directory, and `meshsim merge` puts the N shard directories back together
//! into exactly the directory one `meshsim sweep` would have written (the
//! same run directories, the same `summary.csv`, byte for byte).
//!
//! The scheduler is the cluster's (a Kubernetes Indexed Job, a Slurm job
//! array): a shard knows only its index and the count. Every shard loads
//! the same plan, so every shard computes the same assignment; a shard
//! directory's `shard.toml`, written last, says which runs it holds, of
//! which plan, made by which binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file that marks a finished shard.
pub const SHARD_FILE: &str = "shard.toml";

/// `K/N`: shard `K` (from 0) of `N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "expected K/N with 0 <= K < N (K from 0, as JOB_COMPLETION_INDEX and SLURM_ARRAY_TASK_ID with --array=0-(N-1) count), found `{s}`"
            )
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// A run's estimated cost, in simulated requests and window rows: what
/// balances shards (a run of 300 s at 1,000 qps weighs ten of 30 s). A
/// closed-loop connection counts as 50 requests a second.
fn cost_of(secs: f64, qps: f64, connections: u32, pods: usize, window_secs: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let rows = pods as f64 * secs / window_secs.max(1e-3);
    secs * (qps + f64::from(connections) * 50.0) + rows + 1.0
}

/// [`cost_of`] a built run.
pub fn model_cost(m: &crate::model::Model) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let secs = m.duration.as_nanos() as f64 / 1e9;
    cost_of(
        secs,
        m.load.qps.unwrap_or(0.0),
        m.load.connections.unwrap_or(0),
        m.pods.len(),
        m.window.as_secs_f64(),
    )
}

/// [`cost_of`] a run of experiment `f`, before anything is built.
pub fn file_cost(f: &crate::experiment::ExperimentFile) -> f64 {
    let pods: u64 = f
        .service
        .iter()
        .flat_map(|s| &s.version)
        .map(|v| u64::from(v.pods))
        .sum();
    cost_of(
        f.duration.value.as_secs_f64(),
        f.load.qps.unwrap_or(0.0),
        f.load.connections.unwrap_or(0),
        usize::try_from(pods).unwrap_or(usize::MAX),
        f.window.as_ref().map_or(1.0, |w| w.value.as_secs_f64()),
    )
}

/// The shard of every run of these costs: the longest first, each to the
/// least loaded shard so far (ties to the lowest index). A pure function of
/// the plan.
pub fn assign_costs(costs: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0.0f64; count.max(1)];
    let mut shard = vec![0; costs.len()];
    for j in order {
        let (best, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
            .unwrap_or((0, &0.0));
        shard[j] = best;
        load[best] += costs[j];
    }
    shard
}

/// 64-bit FNV-1a: a stable fingerprint (not for security).
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over several writes.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    /// The empty fingerprint.
    #[must_use]
    pub fn new() -> Self {
        Self(FNV_START)
    }

    /// Adds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv(bytes, self.0);
    }

    /// The fingerprint so far.
    #[must_use]
    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A fingerprint of a large file, read in 64 KiB blocks (not held whole)
/// and mixed eight bytes at a step: a 40 MB executable in a few
/// milliseconds.
fn fingerprint_file(path: &Path) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = FNV_START;
    loop {
        // Fill the block (a short read is not the end).
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        let mut words = buf[..n].chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            h = (h ^ u64::from_le_bytes(a))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29);
        }
        h = fnv(words.remainder(), h);
        if n < buf.len() {
            return Ok(h);
        }
    }
}

/// This binary: its version and a fingerprint of the executable, so that
/// shards made by different builds are not merged.
pub fn binary_id() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| fingerprint_file(&p).ok());
    match exe {
        Some(h) => format!("meshsim {version} {h:016x}"),
        None => format!("meshsim {version}"),
    }
}

/// `shard.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The experiment's name.
    pub experiment: String,
    /// [`plan_id`] of the plan the shard ran.
    pub plan: String,
    /// [`binary_id`] of the binary that ran it.
    pub binary: String,
    /// This shard, from 0.
    pub shard: usize,
    /// Shards in all.
    pub shards: usize,
    /// Runs in the whole sweep.
    pub runs: usize,
    /// The runs (indices into the sweep's runs, point-major then seed)
    /// this shard holds, in the order of its `summary.csv` rows.
    pub jobs: Vec<usize>,
}

/// Starts a shard directory: a `shard.toml` of an earlier attempt goes, so
/// a shard killed halfway is never taken for finished.
pub fn begin(dir: &Path) -> Result<(), String> {
    let f = dir.join(SHARD_FILE);
    match std::fs::remove_file(&f) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: cannot remove: {e}", f.display())),
    }
}

/// Marks a shard directory finished.
pub fn finish(dir: &Path, info: &ShardInfo) -> Result<(), String> {
    let f = dir.join(SHARD_FILE);
    let text = toml::to_string(info).map_err(|e| format!("{}: {e}", f.display()))?;
    let text = format!(
        "# A finished shard of a meshsim sweep: merge the shard directories with\n# `meshsim merge DIR... --out OUT`.\n{text}"
    );
    std::fs::write(&f, text).map_err(|e| format!("{}: cannot write: {e}", f.display()))
}

fn read_info(dir: &Path) -> Result<ShardInfo, String> {
    let f = dir.join(SHARD_FILE);
    let text = std::fs::read_to_string(&f).map_err(|e| {
        if dir.is_dir() {
            format!(
                "{}: not a finished shard (no {SHARD_FILE}: the shard did not finish; run it again with the same --shard)",
                dir.display()
            )
        } else {
            format!("{}: cannot read: {e}", dir.display())
        }
    })?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", f.display(), e.message()))
}

/// The run directory name of a `summary.csv` row: `point-XXXX-seed-S`.
fn run_dir_of(point: &str, seed: &str) -> String {
    let p: usize = point.parse().unwrap_or(0);
    format!("point-{p:04}-seed-{seed}")
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Merges shard directories into `out`: checks that they are the shards of
/// one plan made by one binary, none missing, none twice, then writes the
/// run directories and `summary.csv` in sweep order. Returns what to print.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<String, String> {
    if dirs.is_empty() {
        return Err("meshsim merge: expected the shard directories to merge".to_owned());
    }
    let infos = dirs
        .iter()
        .map(|d| read_info(d))
        .collect::<Result<Vec<_>, _>>()?;
    let (first, first_dir) = (&infos[0], &dirs[0]);
    for (info, dir) in infos.iter().zip(dirs).skip(1) {
        let differs = |what: &str, a: &str, b: &str| {
            format!(
                "{}: a shard of another {what} than {} ({b} against {a}): merge the shards of one `meshsim sweep` run by one binary",
                dir.display(),
                first_dir.display()
            )
        };
        if info.plan != first.plan || info.experiment != first.experiment {
            return Err(differs(
                "experiment",
                &format!("{} {}", first.experiment, first.plan),
                &format!("{} {}", info.experiment, info.plan),
            ));
        }
        if info.binary != first.binary {
            return Err(differs("binary", &first.binary, &info.binary));
        }
        if info.shards != first.shards || info.runs != first.runs {
            return Err(differs(
                "shard count",
                &first.shards.to_string(),
                &info.shards.to_string(),
            ));
        }
    }
    let n = first.shards;
    let mut seen: Vec<Option<&Path>> = vec![None; n];
    for (info, dir) in infos.iter().zip(dirs) {
        if info.shard >= n {
            return Err(format!(
                "{}: shard {} of {n} does not exist",
                dir.display(),
                info.shard
            ));
        }
        if let Some(other) = seen[info.shard] {
            return Err(format!(
                "{}: shard {}/{n} is given twice (also {}): give each shard once",
                dir.display(),
                info.shard,
                other.display()
            ));
        }
        seen[info.shard] = Some(dir);
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(k, _)| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shards missing: {} of {} (run them with `meshsim sweep EXPERIMENT --shard K/{n}` and give their directories too)",
            missing.join(", "),
            first.experiment
        ));
    }
    // Every run exactly once, and each row where its shard says.
    let mut owner: Vec<Option<(usize, usize)>> = vec![None; first.runs];
    for (s, info) in infos.iter().enumerate() {
        for (row, &j) in info.jobs.iter().enumerate() {
            match owner.get_mut(j) {
                Some(slot @ None) => *slot = Some((s, row)),
                _ => {
                    return Err(format!(
                        "{}: run {j} is out of range or held by two shards: the shard directories are damaged",
                        dirs[s].display()
                    ));
                }
            }
        }
    }
    if let Some(j) = owner.iter().position(Option::is_none) {
        return Err(format!(
            "run {j} of {} is in no shard: the shard directories are damaged",
            first.experiment
        ));
    }
    // The rows of every shard's summary.csv.
    let mut header: Option<csv::StringRecord> = None;
    let mut rows: Vec<Vec<csv::StringRecord>> = Vec::new();
    for (info, dir) in infos.iter().zip(dirs) {
        let f = dir.join("summary.csv");
        let mut r =
            csv::Reader::from_path(&f).map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
        let h = r
            .headers()
            .map_err(|e| format!("{}: {e}", f.display()))?
            .clone();
        match &header {
            Some(first) if *first != h => {
                return Err(format!(
                    "{}: its columns differ from the other shards'",
                    f.display()
                ));
            }
            _ => header = Some(h),
        }
        let recs = r
            .records()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", f.display()))?;
        if recs.len() != info.jobs.len() {
            return Err(format!(
                "{}: {} rows for the {} runs of {SHARD_FILE}: the shard is damaged; run it again",
                f.display(),
                recs.len(),
                info.jobs.len()
            ));
        }
        rows.push(recs);
    }
    let header = header.unwrap_or_default();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(point_col), Some(seed_col)) = (col("point"), col("seed")) else {
        return Err(format!(
            "{}: summary.csv has no point and seed columns",
            first_dir.display()
        ));
    };
    std::fs::create_dir_all(out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
    let sum = out.join("summary.csv");
    let mut w = csv::Writer::from_path(&sum)
        .map_err(|e| format!("{}: cannot write: {e}", sum.display()))?;
    w.write_record(&header)
        .map_err(|e| format!("{}: {e}", sum.display()))?;
    for &(s, row) in owner.iter().flatten() {
        let rec = &rows[s][row];
        let name = run_dir_of(
            rec.get(point_col).unwrap_or(""),
            rec.get(seed_col).unwrap_or(""),
        );
        let (from, to) = (dirs[s].join(&name), out.join(&name));
        copy_dir(&from, &to)
            .map_err(|e| format!("{}: cannot copy to {}: {e}", from.display(), to.display()))?;
        w.write_record(rec)
            .map_err(|e| format!("{}: {e}", sum.display()))?;
    }
    w.flush()
        .map_err(|e| format!("{}: cannot write: {e}", sum.display()))?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Merged {n} shard(s) of {} ({} runs) into {} (summary.csv, one run directory per point and seed)",
        first.experiment,
        first.runs,
        out.display()
    );
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_read_from_zero() {
        assert_eq!("0/4".parse(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!("3/4".parse(), Ok(Shard { index: 3, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "2", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
