//! Scoring a round: the objectives over scenarios and seeds with Student-t
//! intervals, Pareto ranks, the order of a round, and the paired choice of
//! the recommendation.

use super::Eval;
use super::spec::{OBJECTIVES, Objective, Spec};

/// A candidate's objectives over one round: per seed, then mean and 95 %
/// interval half-width.
#[derive(Clone, Debug)]
pub(crate) struct Scored {
    pub(crate) candidate: usize,
    pub(crate) mean: [f64; 5],
    pub(crate) ci: [f64; 5],
    pub(crate) error_rate: f64,
    pub(crate) healthy_share: f64,
    pub(crate) violation: f64,
    pub(crate) rank: usize,
    /// Per scenario (index), the objectives' means over seeds.
    pub(crate) per_scenario: Vec<[f64; 5]>,
    /// Per seed (in seed order), the objectives over all scenarios.
    pub(crate) per_seed: Vec<[f64; 5]>,
}

/// Student's t quantile for a two-sided 95 % interval with `df` degrees of
/// freedom (1.96 beyond the table).
pub(crate) fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        f64::INFINITY
    } else {
        T.get(df - 1).copied().unwrap_or(1.96)
    }
}

/// Mean and 95 % half-width of `xs` (0 half-width for a single value).
pub(crate) fn mean_ci(xs: &[f64]) -> (f64, f64) {
    #[allow(clippy::cast_precision_loss)]
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, t95(xs.len() - 1) * var.sqrt() / n.sqrt())
}

pub(crate) fn score(spec: &Spec, evals: &[&Eval], candidate: usize) -> Scored {
    let mut seeds: Vec<u64> = evals.iter().map(|e| e.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut per_seed: Vec<[f64; 5]> = Vec::new();
    let (mut errs, mut reqs, mut healthy, mut capacity) = (0.0, 0.0, 0.0, 0.0);
    let n_scen = spec.scenarios.len();
    let mut per_scenario = vec![[0.0; 5]; n_scen];
    for &seed in &seeds {
        let mut v = [0.0; 5];
        let (mut delay_sum, mut delay_n) = (0.0, 0.0);
        for e in evals.iter().filter(|e| e.seed == seed) {
            let s = &e.summary;
            #[allow(clippy::cast_precision_loss)]
            let row = [
                s.errors_5xx as f64,
                s.latency_ms[2],
                s.healthy_ejected_host_seconds,
                s.eject_delay_s.unwrap_or(0.0),
                s.bad_pod_requests as f64,
            ];
            v[0] += row[0];
            v[1] = f64::max(v[1], row[1]);
            v[2] += row[2];
            if let Some(d) = s.eject_delay_s {
                delay_sum += d;
                delay_n += 1.0;
            }
            v[4] += row[4];
            #[allow(clippy::cast_precision_loss)]
            {
                errs += s.errors_5xx as f64;
                reqs += s.requests as f64;
                healthy += s.healthy_ejected_host_seconds;
                // Healthy capacity per proxy (each keeps its own detector),
                // over the scenario's full length so that a shortened early
                // round is not judged on an inflated share.
                capacity += (e.pods * e.proxies.max(1)) as f64 * e.full_ns as f64 / 1e9;
            }
            for (k, x) in row.iter().enumerate() {
                per_scenario[e.scenario][k] += x / seeds.len() as f64;
            }
        }
        v[3] = if delay_n > 0.0 {
            delay_sum / delay_n
        } else {
            0.0
        };
        per_seed.push(v);
    }
    let n = per_seed.len().max(1) as f64;
    let mut mean = [0.0; 5];
    let mut ci = [0.0; 5];
    for k in 0..5 {
        mean[k] = per_seed.iter().map(|v| v[k]).sum::<f64>() / n;
        if per_seed.len() > 1 {
            let var = per_seed
                .iter()
                .map(|v| (v[k] - mean[k]).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            ci[k] = 1.96 * var.sqrt() / n.sqrt();
        }
    }
    let error_rate = if reqs > 0.0 { errs / reqs } else { 0.0 };
    let healthy_share = if capacity > 0.0 {
        healthy / capacity
    } else {
        0.0
    };
    let c = &spec.constraints;
    let over = |x: f64, limit: Option<f64>| {
        limit.map_or(0.0, |l| if x > l { (x - l) / l.max(1e-9) } else { 0.0 })
    };
    let violation = over(error_rate, c.max_error_rate)
        + over(healthy_share, c.max_healthy_ejected_share)
        + over(mean[1], c.max_p99_ms)
        + over(mean[3], c.max_eject_delay_s);
    Scored {
        candidate,
        mean,
        ci,
        error_rate,
        healthy_share,
        violation,
        rank: 0,
        per_scenario,
        per_seed,
    }
}

pub(crate) fn index_of(o: Objective) -> usize {
    OBJECTIVES.iter().position(|x| *x == o).unwrap_or(0)
}

/// Sets each one's Pareto rank (0: not dominated) over the objective means.
pub(crate) fn pareto_ranks(scored: &mut [Scored]) {
    let dominates = |a: &Scored, b: &Scored| {
        a.mean.iter().zip(&b.mean).all(|(x, y)| x <= y)
            && a.mean.iter().zip(&b.mean).any(|(x, y)| x < y)
    };
    let mut left: Vec<usize> = (0..scored.len()).collect();
    let mut rank = 0;
    while !left.is_empty() {
        let front: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&i| {
                !left
                    .iter()
                    .any(|&j| j != i && dominates(&scored[j], &scored[i]))
            })
            .collect();
        for &i in &front {
            scored[i].rank = rank;
        }
        left.retain(|i| !front.contains(i));
        rank += 1;
    }
}

/// Best first: feasible, then the user's order of preference, then the
/// Pareto rank, then the candidate's index (the baseline first on a tie).
///
/// An objective decides only beyond its resolution in this round: the
/// larger of 1 % of its largest mean and its median confidence interval.
/// Within it (100.0 against 100.3 errors) two candidates tie on it and the
/// next objective decides. Means are compared in buckets of that size, so
/// the order stays a total order.
pub(crate) fn order(spec: &Spec, scored: &mut [Scored]) {
    pareto_ranks(scored);
    let resolution: Vec<f64> = (0..5)
        .map(|k| {
            let scale = scored.iter().map(|s| s.mean[k].abs()).fold(0.0, f64::max);
            let mut cis: Vec<f64> = scored.iter().map(|s| s.ci[k]).collect();
            cis.sort_by(f64::total_cmp);
            let median = cis.get(cis.len() / 2).copied().unwrap_or(0.0);
            (scale * 0.01).max(median).max(1e-9)
        })
        .collect();
    #[allow(clippy::cast_possible_truncation)]
    let bucket = |s: &Scored, k: usize| (s.mean[k] / resolution[k]).floor() as i64;
    scored.sort_by(|a, b| {
        (a.violation > 0.0)
            .cmp(&(b.violation > 0.0))
            .then(a.violation.total_cmp(&b.violation))
            .then_with(|| {
                spec.prefer
                    .iter()
                    .map(|o| bucket(a, index_of(*o)).cmp(&bucket(b, index_of(*o))))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .then(a.rank.cmp(&b.rank))
            .then(a.candidate.cmp(&b.candidate))
    });
}

/// How `a` compares with `b`, paired seed by seed (common random numbers),
/// objective by objective in the order of preference: the first objective
/// whose 95 % interval of the paired difference excludes 0 decides.
pub(crate) fn paired(spec: &Spec, a: &Scored, b: &Scored) -> std::cmp::Ordering {
    for o in &spec.prefer {
        let (m, h) = paired_diff(a, b, index_of(*o));
        if m + h < 0.0 {
            return std::cmp::Ordering::Less;
        }
        if m - h > 0.0 {
            return std::cmp::Ordering::Greater;
        }
    }
    std::cmp::Ordering::Equal
}

/// Mean and 95 % half-width of `a − b` on objective `k`, seed by seed.
pub(crate) fn paired_diff(a: &Scored, b: &Scored, k: usize) -> (f64, f64) {
    let d: Vec<f64> = a
        .per_seed
        .iter()
        .zip(&b.per_seed)
        .map(|(x, y)| x[k] - y[k])
        .collect();
    mean_ci(&d)
}

/// The recommendation: starting from the current settings (or, if they
/// break a constraint, the best candidate in order), a candidate takes over
/// only if it meets the constraints and is better beyond the noise of the
/// seeds. So a change is recommended only when the runs support it.
pub(crate) fn champion<'a>(spec: &Spec, ordered: &'a [Scored], base: &'a Scored) -> &'a Scored {
    let mut champ = if base.violation == 0.0 {
        base
    } else {
        &ordered[0]
    };
    for c in ordered {
        if c.violation == 0.0 && paired(spec, c, champ).is_lt() {
            champ = c;
        }
    }
    champ
}
