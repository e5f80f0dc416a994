//! Small statistics: the mean and its standard error (Figure 4's group averages), and for seed
//! comparisons a Student-t 95 % confidence interval.

use serde::Serialize;

/// Two-sided 97.5 % quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (1.96 beyond 30).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        d if d <= 30 => T975[d - 1],
        _ => 1.96,
    }
}

/// Arithmetic mean; `None` for no values. Non-finite values are kept (they make the mean non-finite).
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Standard error of the mean, `s / √n` with the unbiased (n - 1) variance; `None` below 2 values.
pub fn standard_error(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    Some((var / n).sqrt())
}

/// Mean and 95 % confidence half-width of a set of per-seed values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanCi {
    /// Sample mean.
    pub mean: f64,
    /// Half-width of the 95 % t interval (NaN with fewer than 2 values).
    pub ci95: f64,
    /// Number of values.
    pub n: usize,
}

impl MeanCi {
    /// Mean ± t·s/√n ([`standard_error`] times [`t975`]) over the finite values of `v`.
    pub fn of(v: &[f64]) -> Option<MeanCi> {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        let mean = mean(&v)?;
        let ci95 = standard_error(&v).map_or(f64::NAN, |se| t975(n - 1) * se);
        Some(MeanCi { mean, ci95, n })
    }

    /// "1.234 ± 0.056" (or just the mean with one value).
    pub fn render(&self, digits: usize) -> String {
        if self.ci95.is_finite() {
            format!("{:.digits$} ± {:.digits$}", self.mean, self.ci95)
        } else {
            format!("{:.digits$}", self.mean)
        }
    }
}

/// Difference of two means with its 95 % Welch interval (unequal variances, Welch–Satterthwaite
/// degrees of freedom, rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiffCi {
    /// mean(a) − mean(b).
    pub diff: f64,
    /// Half-width of the 95 % interval (0 when both samples are constant).
    pub ci95: f64,
}

impl DiffCi {
    /// mean(a) − mean(b) ± t·√(s²_a/n_a + s²_b/n_b) over the finite values; `None` unless both have
    /// at least 2 finite values.
    pub fn welch(a: &[f64], b: &[f64]) -> Option<DiffCi> {
        let fin = |v: &[f64]| -> Vec<f64> { v.iter().copied().filter(|x| x.is_finite()).collect() };
        let (a, b) = (fin(a), fin(b));
        let (sa, sb) = (standard_error(&a)?, standard_error(&b)?);
        let diff = mean(&a)? - mean(&b)?;
        let (va, vb) = (sa * sa, sb * sb);
        if va + vb == 0.0 {
            return Some(DiffCi { diff, ci95: 0.0 });
        }
        let df = (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
        Some(DiffCi { diff, ci95: t975((df.floor() as usize).max(1)) * (va + vb).sqrt() })
    }

    /// Whether the interval excludes 0.
    pub fn excludes_zero(&self) -> bool {
        self.diff.abs() > self.ci95
    }

    /// "+0.012 [−0.004, +0.028]".
    pub fn render(&self, digits: usize) -> String {
        format!("{:+.digits$} [{:+.digits$}, {:+.digits$}]", self.diff, self.diff - self.ci95, self.diff + self.ci95)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_ci_match_hand_values() {
        // Values 1, 2, 3: mean 2, s = 1, half-width 4.303 / √3.
        let m = MeanCi::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(m.mean, 2.0);
        assert!((m.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(m.render(2), "2.00 ± 2.48");
        let one = MeanCi::of(&[5.0, f64::NAN]).unwrap();
        assert_eq!((one.n, one.render(1)), (1, "5.0".to_string()));
        assert!(MeanCi::of(&[]).is_none());
        assert_eq!(t975(100), 1.96);
        assert!(t975(0).is_nan());
    }

    #[test]
    fn mean_and_standard_error_match_hand_values() {
        // {1, 0}: mean 0.5, s² = 0.5 (n - 1 = 1), se = √0.5 / √2 = 0.5.
        assert_eq!(mean(&[1.0, 0.0]), Some(0.5));
        assert!((standard_error(&[1.0, 0.0]).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(standard_error(&[1.0, 1.0]), Some(0.0));
        assert_eq!((mean(&[]), standard_error(&[3.0])), (None, None));
        // Unlike MeanCi::of, these keep non-finite values.
        assert!(mean(&[1.0, f64::NAN]).unwrap().is_nan());
        // MeanCi's half-width is t975(n - 1) times the standard error of its finite values.
        let m = MeanCi::of(&[1.0, 2.0, 4.0, f64::INFINITY]).unwrap();
        assert_eq!(m.ci95, t975(2) * standard_error(&[1.0, 2.0, 4.0]).unwrap());
    }

    #[test]
    fn welch_difference_matches_hand_values() {
        // a = {1, 2, 3} (s² = 1), b = {0, 0, 0, 0} (s² = 0): se² = 1/3, df = (1/3)² / ((1/3)² / 2) = 2.
        let d = DiffCi::welch(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(d.diff, 2.0);
        assert!((d.ci95 - 4.303 * (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(!d.excludes_zero(), "2 ± 2.48 includes 0");
        assert_eq!(d.render(2), "+2.00 [-0.48, +4.48]");
        // Equal variances and sizes: df = 2(n − 1) = 4.
        let e = DiffCi::welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((e.ci95 - 2.776 * (2.0f64 / 3.0).sqrt()).abs() < 1e-12 && e.excludes_zero());
        // Unequal variances and sizes: a = {0, 2} (s² = 2, n 2), b = {0, 1, 2, 3, 4} (s² = 2.5, n 5):
        // se² = 1 + 0.5 = 1.5, df = 2.25 / (1/1 + 0.25/4) = 2.1176… → 2.
        let u = DiffCi::welch(&[0.0, 2.0], &[0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(u.diff, -1.0);
        assert!((u.ci95 - 4.303 * 1.5f64.sqrt()).abs() < 1e-12, "{u:?}");
        let c = DiffCi::welch(&[1.0, 1.0], &[0.5, 0.5]).unwrap();
        assert_eq!((c.diff, c.ci95, c.excludes_zero()), (0.5, 0.0, true));
        assert!(DiffCi::welch(&[1.0], &[1.0, 2.0]).is_none() && DiffCi::welch(&[1.0, f64::NAN], &[1.0, 2.0]).is_none());
    }
}
