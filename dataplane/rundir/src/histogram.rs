//! A log-linear latency histogram in the style of HdrHistogram: values in
//! microseconds, 128 linear sub-buckets per power of two, so any recorded
//! value is reported within 1/128 < 1 % of itself. Fixed size, no
//! allocation when recording.

/// Linear sub-buckets per power of two: relative error ≤ 1/128.
const HALF: u64 = 128;
/// Powers of two above the linear range: values up to 2^48 µs.
const POWERS: usize = 40;
const BUCKETS: usize = 2 * HALF as usize + HALF as usize * POWERS;
/// Words of the bitmap of non-empty buckets.
const WORDS: usize = BUCKETS.div_ceil(64);

/// Latency histogram.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u32]>,
    /// Bit `i % 64` of word `i / 64`: bucket `i` is not empty. Quantiles
    /// and clearing visit only non-empty buckets: a window's histogram of
    /// a few requests spread over hundreds of buckets costs a few words.
    nonempty: Box<[u64; WORDS]>,
    total: u64,
    max_us: u64,
    /// The range of buckets in use, so that clearing and quantiles touch
    /// only what was recorded (per-window histograms are small and many).
    lo: usize,
    hi: usize,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            nonempty: Box::new([0; WORDS]),
            total: 0,
            max_us: 0,
            lo: BUCKETS,
            hi: 0,
        }
    }
}

/// Values below 256 have their own bucket; above, value `m << shift` with
/// `m` in [128, 256) goes to bucket `256 + (shift − 1) × 128 + (m − 128)`.
fn index(us: u64) -> usize {
    if us < 2 * HALF {
        return usize::try_from(us).unwrap_or(0);
    }
    let shift = u64::from(63 - us.leading_zeros()) - 7;
    let m = us >> shift;
    let i = 2 * HALF + (shift - 1) * HALF + (m - HALF);
    usize::try_from(i).unwrap_or(BUCKETS - 1).min(BUCKETS - 1)
}

/// The largest value of bucket `i` (values are reported as their bucket's top).
fn value_of(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * HALF {
        return i;
    }
    let j = i - 2 * HALF;
    let shift = j / HALF + 1;
    let m = j % HALF + HALF;
    (m << shift) + (1u64 << shift) - 1
}

impl Histogram {
    /// Records a latency in microseconds.
    pub fn record_us(&mut self, us: u64) {
        self.record_bucket(index(us));
        self.max_us = self.max_us.max(us);
    }

    /// Counts one more value in bucket `i` (its maximum kept apart).
    #[inline]
    fn record_bucket(&mut self, i: usize) {
        self.counts[i] += 1;
        self.nonempty[i / 64] |= 1 << (i % 64);
        self.lo = self.lo.min(i);
        self.hi = self.hi.max(i + 1);
        self.total += 1;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0–1), in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for i in self.buckets() {
            seen += u64::from(self.counts[i]);
            if seen >= rank {
                return value_of(i).min(self.max_us);
            }
        }
        self.max_us
    }

    /// The values at several quantiles (ascending), in one pass.
    pub fn quantiles_us<const N: usize>(&self, qs: [f64; N]) -> [u64; N] {
        let mut out = [0u64; N];
        if self.total == 0 {
            return out;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let ranks = qs.map(|q| ((q * self.total as f64).ceil() as u64).clamp(1, self.total));
        let mut k = 0;
        let Some(&first) = ranks.first() else {
            return out;
        };
        let mut next = first;
        let mut seen = 0u64;
        for i in self.buckets() {
            seen += u64::from(self.counts[i]);
            while seen >= next {
                out[k] = value_of(i).min(self.max_us);
                k += 1;
                let Some(&r) = ranks.get(k) else {
                    return out;
                };
                next = r;
            }
        }
        for o in &mut out[k..] {
            *o = self.max_us;
        }
        out
    }

    /// The non-empty buckets, in order.
    fn buckets(&self) -> impl Iterator<Item = usize> + '_ {
        let words = if self.lo < self.hi {
            self.lo / 64..(self.hi - 1) / 64 + 1
        } else {
            0..0
        };
        words.flat_map(move |w| {
            let mut bits = self.nonempty[w];
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + b)
            })
        })
    }

    /// Adds every value of `other`: the histogram of both sets of values
    /// (exactly what recording them all here would have made).
    pub fn merge(&mut self, other: &Self) {
        for i in other.buckets() {
            self.counts[i] += other.counts[i];
            self.nonempty[i / 64] |= 1 << (i % 64);
        }
        if other.total > 0 {
            self.lo = self.lo.min(other.lo);
            self.hi = self.hi.max(other.hi);
            self.total += other.total;
            self.max_us = self.max_us.max(other.max_us);
        }
    }

    /// Empties the histogram.
    pub fn clear(&mut self) {
        if self.total > 0 {
            for w in self.lo / 64..=(self.hi - 1) / 64 {
                let mut bits = self.nonempty[w];
                while bits != 0 {
                    self.counts[w * 64 + bits.trailing_zeros() as usize] = 0;
                    bits &= bits - 1;
                }
                self.nonempty[w] = 0;
            }
            self.total = 0;
            self.max_us = 0;
            self.lo = BUCKETS;
            self.hi = 0;
        }
    }
}

/// A window's latencies kept as their histogram buckets (2 bytes each),
/// for quantiles that are exactly a [`Histogram`]'s: the same buckets, the
/// same ranks, the same values. Recording appends to one buffer (one
/// cache line, where a `Histogram` touches its counters, its bitmap and
/// its header), so many small per-window histograms (one per endpoint)
/// stay cheap; quantiles select instead of walking buckets. Past
/// [`Samples::SPILL`] values in a window it turns into a `Histogram`, so
/// its memory is bounded whatever the rate. The buffers are kept across
/// [`Samples::clear`]: no allocation once warm.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    buckets: Vec<u16>,
    max_us: u64,
    /// The window's values once there were too many to keep one by one.
    spill: Option<Box<Histogram>>,
    spilled: bool,
}

impl Samples {
    /// Values kept one by one in a window (16 KiB) before the histogram
    /// takes over.
    pub const SPILL: usize = 8 << 10;

    /// Records a latency in microseconds.
    #[inline]
    pub fn record_us(&mut self, us: u64) {
        self.max_us = self.max_us.max(us);
        if self.spilled {
            if let Some(h) = self.spill.as_mut() {
                h.record_us(us);
            }
        } else if self.buckets.len() < Self::SPILL {
            // `index` is below `BUCKETS`, which fits a u16.
            self.buckets.push(index(us) as u16);
        } else {
            self.spill_over();
            if let Some(h) = self.spill.as_mut() {
                h.record_us(us);
            }
        }
    }

    #[cold]
    fn spill_over(&mut self) {
        let h = self.spill.get_or_insert_with(Box::default);
        for &b in &self.buckets {
            h.record_bucket(usize::from(b));
        }
        h.max_us = h.max_us.max(self.max_us);
        self.buckets.clear();
        self.spilled = true;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        match &self.spill {
            Some(h) if self.spilled => h.count(),
            _ => self.buckets.len() as u64,
        }
    }

    /// The values at several quantiles (ascending), in microseconds, as
    /// [`Histogram::quantiles_us`] gives them for the same values; 0 when
    /// empty. Reorders the buffer.
    pub fn quantiles_us<const N: usize>(&mut self, qs: [f64; N]) -> [u64; N] {
        if let Some(h) = &self.spill
            && self.spilled
        {
            return h.quantiles_us(qs);
        }
        let mut out = [0u64; N];
        let total = self.buckets.len() as u64;
        if total == 0 {
            return out;
        }
        // Each rank's bucket; the buffer left of the previous one holds
        // smaller ones, so each selection runs on what is right of it.
        let mut from = 0usize;
        for (o, q) in out.iter_mut().zip(qs) {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            // At most `total`, itself a `usize`.
            let k = (rank - 1) as usize;
            let b = if k < from {
                // A rank below the previous one (`qs` not ascending).
                *self.buckets[..from].select_nth_unstable(k).1
            } else {
                let b = *self.buckets[from..].select_nth_unstable(k - from).1;
                from = k;
                b
            };
            *o = value_of(usize::from(b)).min(self.max_us);
        }
        out
    }

    /// Empties it, keeping its buffers.
    pub fn clear(&mut self) {
        self.buckets.clear();
        self.max_us = 0;
        if self.spilled {
            if let Some(h) = self.spill.as_mut() {
                h.clear();
            }
            self.spilled = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_windows_are_the_histogram_of_all_their_values() {
        let mut all = Histogram::default();
        let mut merged = Histogram::default();
        let mut window = Histogram::default();
        let mut x = 7u64;
        let qs = [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0];
        for round in 0..60u64 {
            // Empty windows too, and ranges that move.
            for _ in 0..(round * 13) % 101 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let us = (x >> 33) % (1 << (round % 30 + 1));
                all.record_us(us);
                window.record_us(us);
            }
            merged.merge(&window);
            window.clear();
            assert_eq!(merged.count(), all.count());
            assert_eq!(
                merged.quantiles_us(qs),
                all.quantiles_us(qs),
                "round {round}"
            );
        }
    }

    #[test]
    fn samples_give_a_histograms_quantiles_exactly() {
        let mut h = Histogram::default();
        let mut s = Samples::default();
        let mut x = 29u64;
        let qs = [0.0, 0.5, 0.9, 0.99, 1.0];
        assert_eq!(s.quantiles_us(qs), h.quantiles_us(qs));
        for round in 0..200u64 {
            // Some windows past the spill, most below.
            let n = if round % 17 == 5 {
                Samples::SPILL as u64 + 700
            } else {
                round % 37
            };
            for _ in 0..n {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let us = (x >> 33) % (1 << (round % 34 + 1));
                h.record_us(us);
                s.record_us(us);
            }
            assert_eq!(s.count(), h.count());
            assert_eq!(s.quantiles_us(qs), h.quantiles_us(qs), "round {round}");
            if round % 3 == 0 {
                h.clear();
                s.clear();
            }
        }
    }

    #[test]
    fn every_value_is_reported_within_one_percent() {
        let mut v = 1u64;
        while v < 10_000_000_000 {
            let top = value_of(index(v));
            assert!(top >= v, "{v} → {top}");
            #[allow(clippy::cast_precision_loss)]
            let err = (top - v) as f64 / v as f64;
            assert!(err < 0.01, "{v} → {top} ({err})");
            v = v * 11 / 10 + 1;
        }
    }

    #[test]
    fn quantiles_of_a_uniform_ramp() {
        let mut h = Histogram::default();
        for us in 1..=10_000 {
            h.record_us(us);
        }
        for (q, expected) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            #[allow(clippy::cast_precision_loss)]
            let got = h.quantile_us(q) as f64;
            assert!((got - expected).abs() / expected < 0.01, "q{q}: {got}");
        }
        assert_eq!(h.quantile_us(1.0), 10_000);
    }

    #[test]
    fn a_cleared_histogram_is_a_new_one() {
        let mut h = Histogram::default();
        let mut x = 5u64;
        for round in 0..50u64 {
            let mut fresh = Histogram::default();
            for _ in 0..(round % 7) * 3 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let us = (x >> 33) % (1 << (round % 30 + 1));
                h.record_us(us);
                fresh.record_us(us);
            }
            let qs = [0.0, 0.5, 0.99, 1.0];
            assert_eq!(h.quantiles_us(qs), fresh.quantiles_us(qs));
            assert_eq!(h.counts, fresh.counts);
            assert_eq!(h.nonempty, fresh.nonempty);
            h.clear();
        }
    }

    #[test]
    fn quantiles_in_one_pass_equal_quantiles_one_by_one() {
        let mut h = Histogram::default();
        assert_eq!(h.quantiles_us([0.5, 0.99]), [0, 0]);
        let mut x = 17u64;
        for _ in 0..5_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            h.record_us(1_000 + (x >> 40) % 90_000);
        }
        let qs = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0];
        let one_pass = h.quantiles_us(qs);
        for (q, got) in qs.iter().zip(one_pass) {
            assert_eq!(got, h.quantile_us(*q), "q{q}");
        }
    }
}
