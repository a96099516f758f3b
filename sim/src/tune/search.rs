//! Candidates: the current settings, then a seeded Latin hypercube over the
//! space, or the whole grid when it fits the budget.

use rand::RngExt as _;
use rand_pcg::Pcg64Mcg;
use toml::Value;

use super::spec::{Dim, Param, Scale, Spec};
use crate::plan;

// === candidates ===

/// One point of the space: a value per parameter (`None` for the baseline:
/// the experiment as written).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) values: Option<Vec<Value>>,
}

pub(crate) fn sample_value(dim: &Dim, u: f64) -> Value {
    let u = u.clamp(0.0, 1.0 - 1e-12);
    let lerp = |a: f64, b: f64, scale: Scale| match scale {
        Scale::Linear => a + u * (b - a),
        Scale::Log => libm::exp(libm::log(a) + u * (libm::log(b) - libm::log(a))),
    };
    match dim {
        Dim::Int { min, max, scale } => {
            let (lo, hi) = (i128::from(*min), i128::from(*max));
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let x = match scale {
                Scale::Linear => lo as f64 + u * ((hi - lo + 1) as f64),
                Scale::Log => lerp(lo as f64, (hi + 1) as f64, Scale::Log),
            }
            .floor() as i128;
            Value::Integer(i64::try_from(x.clamp(lo, hi)).unwrap_or(*min))
        }
        Dim::Float { min, max, scale } => Value::Float(lerp(*min, *max, *scale)),
        Dim::Duration { min, max, scale } => {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let ns = lerp(*min as f64, *max as f64, *scale) as u64;
            Value::String(round_duration(ns))
        }
        Dim::Values(v) => {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let i = (u * v.len() as f64) as usize;
            v[i.min(v.len() - 1)].clone()
        }
    }
}

/// A sampled duration as a person would write it: whole seconds from 10 s,
/// tenths of a second from 1 s (`5.4s`), whole milliseconds below.
pub(crate) fn round_duration(ns: u64) -> String {
    let ms = (ns / 1_000_000).max(1);
    let ms = if ms >= 10_000 {
        (ms + 500) / 1000 * 1000
    } else if ms >= 1000 {
        (ms + 50) / 100 * 100
    } else {
        ms
    };
    if ms % 1000 == 0 || ms < 1000 {
        mesh_engine::config::format_duration(std::time::Duration::from_millis(ms))
    } else {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    }
}

/// The whole grid, when every dimension is finite and it fits the budget.
pub(crate) fn grid(params: &[Param], budget: usize) -> Option<Vec<Vec<Value>>> {
    let mut points: Vec<Vec<Value>> = vec![Vec::new()];
    for p in params {
        let values: Vec<Value> = match &p.dim {
            Dim::Values(v) => v.clone(),
            Dim::Int {
                min,
                max,
                scale: Scale::Linear,
            } if max - min < 10_000 => (*min..=*max).map(Value::Integer).collect(),
            _ => return None,
        };
        if points.len().saturating_mul(values.len()) > budget {
            return None;
        }
        points = points
            .into_iter()
            .flat_map(|pt| {
                values.iter().map(move |v| {
                    let mut n = pt.clone();
                    n.push(v.clone());
                    n
                })
            })
            .collect();
    }
    Some(points)
}

/// A Latin hypercube of `n` points, seeded: each dimension's range cut in
/// `n` strata, each stratum used once.
pub(crate) fn latin_hypercube(params: &[Param], n: usize, seed: u64) -> Vec<Vec<Value>> {
    let mut rng = Pcg64Mcg::new(u128::from(seed) << 64 | 0x7475_6e65);
    let mut columns: Vec<Vec<Value>> = Vec::new();
    for p in params {
        let mut strata: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            strata.swap(i, j);
        }
        columns.push(
            strata
                .iter()
                .map(|&s| {
                    let r = rng.random_range(0..(1u64 << 53));
                    #[allow(clippy::cast_precision_loss)]
                    let u = (s as f64 + r as f64 / (1u64 << 53) as f64) / n as f64;
                    sample_value(&p.dim, u)
                })
                .collect(),
        );
    }
    (0..n)
        .map(|i| columns.iter().map(|c| c[i].clone()).collect())
        .collect()
}

pub(crate) fn candidates(spec: &Spec) -> Vec<Candidate> {
    let mut out = vec![Candidate { values: None }];
    let points = grid(&spec.params, spec.budget)
        .unwrap_or_else(|| latin_hypercube(&spec.params, spec.budget, spec.first_seed));
    for p in points {
        let c = Candidate { values: Some(p) };
        // Integers round: two strata can land on the same point.
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

pub(crate) fn values_text(v: &Value) -> String {
    plan::value_text(v)
}
