//! Ratios that survive a noisy machine: the median of per-repetition paired ratios (two
//! measurements taken next to each other), with a seeded percentile-bootstrap interval.
//!
//! The machine the benchmark runs on is shared: one whole run can be a fifth slower than the
//! next. A ratio of two medians taken minutes apart carries that drift; a ratio of two
//! measurements taken one after the other mostly cancels it, and the spread of those ratios
//! over the repetitions says how far to trust their median.

use pfdemo::rng::Rng;
use serde::Serialize;

/// Bootstrap resamples per interval.
const RESAMPLES: usize = 2000;
/// Two-sided coverage of the interval.
const LEVEL: f64 = 0.95;

/// A median with its bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub median: f64,
    /// The interval's bounds (95%, percentile bootstrap of the median).
    pub lo: f64,
    pub hi: f64,
    /// How many paired ratios it was made of.
    pub n: usize,
}

impl Interval {
    /// (hi - lo) / median: how wide the interval is, relative to what it brackets.
    pub fn width(&self) -> f64 {
        (self.hi - self.lo) / self.median
    }

    /// Whether the interval holds `x`: a difference from `x` is then inside the noise.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// "faster", "slower" or "inside the noise", for a ratio of pages per second (switched
    /// over default, or one mode over another).
    pub fn verdict(&self) -> &'static str {
        if self.contains(1.0) {
            "inside the noise"
        } else if self.lo > 1.0 {
            "faster"
        } else {
            "slower"
        }
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The median of `values` with its percentile-bootstrap interval: `RESAMPLES` resamples
/// with replacement, the median of each, and the 2.5th and 97.5th percentiles of those.
/// Seeded, so that a run's intervals can be recomputed from its samples.
pub fn bootstrap(values: &[f64], seed: u64) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval {
            median: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            n,
        };
    }
    let mut rng = Rng(seed);
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let resample: Vec<f64> = (0..n)
                .map(|_| values[rng.below(n as u64) as usize])
                .collect();
            median(&resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |p: f64| medians[((RESAMPLES - 1) as f64 * p).round() as usize];
    Interval {
        median: median(values),
        lo: at((1.0 - LEVEL) / 2.0),
        hi: at(1.0 - (1.0 - LEVEL) / 2.0),
        n,
    }
}

/// The paired ratios of pages per second, `b` over `a`, from ns per page measured next to each
/// other (repetition `i` of each), with their interval: above 1 when `b` is faster.
pub fn paired(a_ns: &[f64], b_ns: &[f64], seed: u64) -> Interval {
    let ratios: Vec<f64> = a_ns.iter().zip(b_ns).map(|(a, b)| a / b).collect();
    bootstrap(&ratios, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn interval_brackets_the_median_and_is_reproducible() {
        let v = [0.9, 1.1, 1.0, 0.95, 1.05, 1.02, 0.98];
        let a = bootstrap(&v, 7);
        assert_eq!(a, bootstrap(&v, 7));
        assert!(a.lo <= a.median && a.median <= a.hi);
        assert!(a.lo >= 0.9 && a.hi <= 1.1);
        assert_eq!(a.verdict(), "inside the noise");
    }

    #[test]
    fn constant_ratios_have_no_width() {
        let a = paired(&[200.0, 100.0, 300.0], &[100.0, 50.0, 150.0], 1);
        assert_eq!((a.median, a.lo, a.hi, a.n), (2.0, 2.0, 2.0, 3));
        assert_eq!(a.width(), 0.0);
        assert_eq!(a.verdict(), "faster");
    }

    #[test]
    fn pairing_cancels_a_drift_that_the_medians_keep() {
        // The machine slows down 40% over the run; b is 10% faster than a throughout.
        let a: Vec<f64> = (0..9).map(|i| 100.0 * (1.0 + 0.05 * i as f64)).collect();
        let b: Vec<f64> = a.iter().map(|x| x / 1.1).collect();
        let r = paired(&a, &b, 3);
        assert!((r.median - 1.1).abs() < 1e-9 && r.width() < 1e-9);
        assert!(!r.contains(1.0));
    }
}
