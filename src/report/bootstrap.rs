//! Paired bootstrap intervals: for two measurements taken on the same units (groups that share
//! their prompt, seeds, …), the percentile interval of the mean difference under resampling of units.

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Resamples used by [`paired_diff`] unless told otherwise.
pub const DEFAULT_RESAMPLES: usize = 10_000;

/// Mean difference `a − b` over paired units, with its 95 % percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedDiff {
    /// Mean of `a_i − b_i` over the units.
    pub mean: f64,
    /// 2.5 % quantile of the resampled means.
    pub lo: f64,
    /// 97.5 % quantile of the resampled means.
    pub hi: f64,
    /// Units used (pairs with both values finite).
    pub n: usize,
}

impl std::fmt::Display for PairedDiff {
    /// `+0.012 [−0.003, +0.027]`: the mean difference and its interval, 3 decimals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:+.3} [{:+.3}, {:+.3}]", self.mean, self.lo, self.hi)
    }
}

impl PairedDiff {
    /// Whether the interval includes 0 (the difference is not significant at 5 %).
    pub fn includes_zero(&self) -> bool {
        self.lo <= 0.0 && 0.0 <= self.hi
    }
}

/// The paired bootstrap of `mean(a − b)`: units (indices) are drawn with replacement `resamples`
/// times from a ChaCha stream seeded by `seed`; pairs where either value is not finite are dropped.
/// `None` when no pair is left.
pub fn paired_diff(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<PairedDiff> {
    let d: Vec<f64> = a.iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| x - y).collect();
    let n = d.len();
    if n == 0 {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> =
        (0..resamples.max(1)).map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| means[((p * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Some(PairedDiff { mean, lo: q(0.025), hi: q(0.975), n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_difference_has_a_point_interval() {
        let a = [0.5, 0.7, 0.9, 0.1];
        let b: Vec<f64> = a.iter().map(|x| x - 0.25).collect();
        let d = paired_diff(&a, &b, 500, 1).unwrap();
        assert!((d.mean - 0.25).abs() < 1e-12 && (d.lo - 0.25).abs() < 1e-12 && (d.hi - 0.25).abs() < 1e-12);
        assert!(!d.includes_zero());
        assert_eq!(d.to_string(), "+0.250 [+0.250, +0.250]");
    }

    #[test]
    fn pairing_removes_the_shared_unit_effect() {
        // Large unit-to-unit spread, tiny consistent difference: paired, the interval excludes 0.
        let a: Vec<f64> = (0..50).map(|i| (i * 37 % 11) as f64 + 0.01).collect();
        let b: Vec<f64> = (0..50).map(|i| (i * 37 % 11) as f64).collect();
        let d = paired_diff(&a, &b, 2000, 2).unwrap();
        assert!(d.lo > 0.0, "{d:?}");
    }

    #[test]
    fn the_interval_matches_the_normal_approximation_for_many_units() {
        // d_i = ±1 alternating: mean 0, sd 1, n = 400 → 95 % half-width ≈ 1.96 / 20 = 0.098.
        let a: Vec<f64> = (0..400).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let b = vec![0.0; 400];
        let d = paired_diff(&a, &b, 4000, 3).unwrap();
        assert!(d.includes_zero(), "{d:?}");
        let half = (d.hi - d.lo) / 2.0;
        assert!((half - 0.098).abs() < 0.015, "half-width {half}");
        assert_eq!(d.n, 400);
    }

    #[test]
    fn non_finite_pairs_are_dropped_and_empty_input_gives_none() {
        let d = paired_diff(&[1.0, f64::NAN, 3.0], &[0.0, 0.0, f64::INFINITY], 100, 4).unwrap();
        assert_eq!(d.n, 1);
        assert_eq!(d.mean, 1.0);
        assert!(paired_diff(&[], &[], 100, 5).is_none());
        assert!(paired_diff(&[f64::NAN], &[1.0], 100, 5).is_none());
    }
}
