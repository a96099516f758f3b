//! The simulator's random draws: exact samplers whose every float
//! operation is pure Rust (`libm`), so a seed gives the same run on any
//! machine, CPU and libc.
//!
//! The standard normal and exponential draws are Marsaglia and Tsang's
//! ziggurat ("The Ziggurat Method for Generating Random Variables", 2000),
//! 256 layers, with Doornik's trick of taking the layer and the abscissa
//! from one 64-bit draw. About 99 % of draws cost one random word, a
//! multiply and a compare; the rest fall back to exact rejection and tail
//! steps. The tables are computed once from the published constants.
//!
//! Why not `rand_distr`: its float math (`exp`, `ln`, `powf`) is the
//! platform's `libm` as soon as any crate of the build enables
//! `num-traits/std` (plotters does), and glibc's `exp` has an FMA and a
//! non-FMA variant. Draws could differ between machines in the last bit.

use std::sync::LazyLock;

use rand::Rng;

/// Layers of the ziggurats.
const LAYERS: usize = 256;

/// One ziggurat: layer abscissas `x[0..=256]` (x[0] the base strip's
/// pseudo-width, x[1] = r, x[256] = 0) and the density at each, `f[i]`.
pub(crate) struct Ziggurat {
    x: [f64; LAYERS + 1],
    f: [f64; LAYERS + 1],
}

impl std::fmt::Debug for Ziggurat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ziggurat(r = {})", self.x[1])
    }
}

impl Ziggurat {
    /// Builds the layers of density `pdf` (unnormalised, decreasing on
    /// x ≥ 0, with inverse `inv`) from the rightmost abscissa `r` and the
    /// area `v` of each layer.
    fn new(r: f64, v: f64, pdf: fn(f64) -> f64, inv: fn(f64) -> f64) -> Self {
        let mut x = [0.0; LAYERS + 1];
        let mut f = [0.0; LAYERS + 1];
        x[0] = v / pdf(r);
        x[1] = r;
        for i in 1..LAYERS - 1 {
            x[i + 1] = inv(pdf(x[i]) + v / x[i]);
        }
        x[LAYERS] = 0.0;
        for i in 0..=LAYERS {
            f[i] = pdf(x[i]);
        }
        Self { x, f }
    }
}

fn normal_pdf(x: f64) -> f64 {
    libm::exp(-0.5 * x * x)
}

fn normal_inv(y: f64) -> f64 {
    libm::sqrt(-2.0 * libm::log(y))
}

fn exp_pdf(x: f64) -> f64 {
    libm::exp(-x)
}

fn exp_inv(y: f64) -> f64 {
    -libm::log(y)
}

/// Marsaglia and Tsang's constants for 256 layers.
const NORMAL_R: f64 = 3.654_152_885_361_009;
const NORMAL_V: f64 = 0.004_928_673_233_99;
const EXP_R: f64 = 7.697_117_470_131_05;
const EXP_V: f64 = 0.003_949_659_822_581_557;

static NORMAL: LazyLock<Ziggurat> =
    LazyLock::new(|| Ziggurat::new(NORMAL_R, NORMAL_V, normal_pdf, normal_inv));
static EXPONENTIAL: LazyLock<Ziggurat> =
    LazyLock::new(|| Ziggurat::new(EXP_R, EXP_V, exp_pdf, exp_inv));

/// The standard normal's ziggurat (built on first use).
pub(crate) fn normal_table() -> &'static Ziggurat {
    &NORMAL
}

/// The standard exponential's ziggurat (built on first use).
pub(crate) fn exponential_table() -> &'static Ziggurat {
    &EXPONENTIAL
}

/// 2^-52.
const EPS52: f64 = 1.0 / 4_503_599_627_370_496.0;

/// A uniform draw in [0, 1): the top 53 bits (as `rand`'s `f64`).
#[inline]
fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let u = (rng.next_u64() >> 11) as f64 * (0.5 * EPS52);
    u
}

/// A uniform draw in (0, 1]: the top 53 bits, plus one step (as `rand`'s
/// `OpenClosed01`).
#[inline]
pub(crate) fn open_closed01<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let u = ((rng.next_u64() >> 11) + 1) as f64 * (0.5 * EPS52);
    u
}

/// A uniform draw in (0, 1), never 0 or 1: 52 random bits, centred in
/// their interval.
#[inline]
pub(crate) fn open01<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let u = ((rng.next_u64() >> 12) as f64 + 0.5) * EPS52;
    u
}

/// One draw of a ziggurat: a layer from the low 8 bits of one word and
/// the abscissa from its top 52, as a value in [-1, 1) for a `SYMMETRIC`
/// density (sign included) or in (0, 1); accepted at once inside the layer
/// below, by rejection in the wedge (`pdf`), and by `tail(rng, u)` beyond
/// the base layer.
#[inline(always)]
fn ziggurat<R: Rng + ?Sized, const SYMMETRIC: bool>(
    z: &Ziggurat,
    rng: &mut R,
    pdf: fn(f64) -> f64,
    tail: impl Fn(&mut R, f64) -> f64,
) -> f64 {
    loop {
        let bits = rng.next_u64();
        let i = (bits & 0xff) as usize;
        #[allow(clippy::cast_precision_loss)]
        let u = if SYMMETRIC {
            (bits >> 12) as f64 * (2.0 * EPS52) - 1.0
        } else {
            ((bits >> 12) as f64 + 0.5) * EPS52
        };
        let x = u * z.x[i];
        if (if SYMMETRIC { x.abs() } else { x }) < z.x[i + 1] {
            return x;
        }
        if i == 0 {
            return tail(rng, u);
        }
        if z.f[i + 1] + (z.f[i] - z.f[i + 1]) * unit(rng) < pdf(x) {
            return x;
        }
    }
}

/// A draw of the standard normal distribution N(0, 1), with `z` its
/// ziggurat ([`normal_table`]).
#[inline]
pub(crate) fn standard_normal<R: Rng + ?Sized>(z: &Ziggurat, rng: &mut R) -> f64 {
    ziggurat::<R, true>(z, rng, normal_pdf, |rng, u| normal_tail(rng, u < 0.0))
}

/// Beyond the base layer: Marsaglia's tail method.
#[cold]
fn normal_tail<R: Rng + ?Sized>(rng: &mut R, negative: bool) -> f64 {
    loop {
        let x = -libm::log(open01(rng)) / NORMAL_R;
        let y = -libm::log(open01(rng));
        if 2.0 * y >= x * x {
            return if negative {
                -(NORMAL_R + x)
            } else {
                NORMAL_R + x
            };
        }
    }
}

/// A draw of the standard exponential distribution (mean 1), with `z`
/// its ziggurat ([`exponential_table`]).
#[inline]
pub(crate) fn standard_exponential<R: Rng + ?Sized>(z: &Ziggurat, rng: &mut R) -> f64 {
    // Beyond r, the distribution is r plus an exponential draw (it is
    // memoryless): inverted directly.
    ziggurat::<R, false>(z, rng, exp_pdf, |rng, _| EXP_R - libm::log(open01(rng)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_pcg::Pcg64Mcg;

    fn moments(mut draw: impl FnMut() -> f64, n: usize) -> (f64, f64) {
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let v = draw();
            s += v;
            s2 += v * v;
        }
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        (s / n, s2 / n - (s / n) * (s / n))
    }

    #[test]
    fn the_ziggurats_top_layer_has_the_area_of_the_others() {
        // The published (r, v) make the recursion close: the last layer,
        // from x[255] up to the density's peak at 0, has area v too. A
        // wrong table or constant leaves it far off.
        for (z, v) in [(&*NORMAL, NORMAL_V), (&*EXPONENTIAL, EXP_V)] {
            let top = z.x[LAYERS - 1] * (z.f[LAYERS] - z.f[LAYERS - 1]);
            assert!((top - v).abs() < v * 1e-3, "{top} against {v}");
            assert!(z.x.windows(2).skip(1).all(|w| w[0] > w[1]));
            assert!(z.x[0] > z.x[1]);
        }
    }

    #[test]
    fn standard_normal_has_mean_0_and_variance_1() {
        let mut rng = Pcg64Mcg::new(7);
        let (m, v) = moments(|| standard_normal(normal_table(), &mut rng), 1_000_000);
        assert!(m.abs() < 0.005, "{m}");
        assert!((v - 1.0).abs() < 0.01, "{v}");
    }

    #[test]
    fn standard_normal_matches_the_normal_cdf_in_the_body_and_the_tail() {
        let mut rng = Pcg64Mcg::new(11);
        let n = 2_000_000;
        let (mut below_1, mut beyond_3) = (0u32, 0u32);
        for _ in 0..n {
            let z = standard_normal(normal_table(), &mut rng);
            below_1 += u32::from(z < 1.0);
            beyond_3 += u32::from(z.abs() > 3.0);
        }
        let p1 = f64::from(below_1) / f64::from(n);
        let p3 = f64::from(beyond_3) / f64::from(n);
        assert!((p1 - 0.841_344_7).abs() < 0.001, "{p1}");
        assert!((p3 - 0.002_699_8).abs() < 0.000_2, "{p3}");
    }

    #[test]
    fn standard_exponential_has_mean_1_variance_1_and_the_right_tail() {
        let mut rng = Pcg64Mcg::new(3);
        let (m, v) = moments(
            || standard_exponential(exponential_table(), &mut rng),
            1_000_000,
        );
        assert!((m - 1.0).abs() < 0.005, "{m}");
        assert!((v - 1.0).abs() < 0.02, "{v}");
        let n = 2_000_000;
        let beyond_8 = (0..n)
            .filter(|_| standard_exponential(exponential_table(), &mut rng) > 8.0)
            .count();
        // P(X > 8) = e^-8 = 3.35e-4: the tail past r = 7.7 is drawn.
        #[allow(clippy::cast_precision_loss)]
        let p = beyond_8 as f64 / f64::from(n);
        assert!((p - 3.354_6e-4).abs() < 0.5e-4, "{p}");
    }

    #[test]
    fn the_uniforms_keep_to_their_intervals() {
        let (mut zero, mut ones) = (ZeroRng, OnesRng);
        assert!(open01(&mut zero) > 0.0);
        assert!(open01(&mut ones) < 1.0);
        assert_eq!(unit(&mut zero), 0.0);
        assert!(unit(&mut ones) < 1.0);
        assert!(open_closed01(&mut zero) > 0.0);
        assert_eq!(open_closed01(&mut ones), 1.0);
    }

    struct ZeroRng;
    struct OnesRng;
    impl rand::TryRng for ZeroRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0);
            Ok(())
        }
    }
    impl rand::TryRng for OnesRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::MAX)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::MAX)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0xff);
            Ok(())
        }
    }
}
