//! Does Z steer the samples? Shared-Z against fresh-Z agreement, group by group (group i of both
//! modes shares its prompt letter, so the comparison is paired), with a paired bootstrap interval,
//! and the chance level of position agreement computed from the model's own fresh samples.

use super::metrics::{GroupMetrics, group_metrics, parse_sample_for};
use crate::report::bootstrap::{DEFAULT_RESAMPLES, PairedDiff, paired_diff};
use serde::Serialize;
use std::collections::BTreeMap;

/// Shared-Z minus fresh-Z agreement over paired groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contrast {
    /// Position agreement, shared − fresh, with its 95 % paired bootstrap interval.
    pub position: Option<PairedDiff>,
    /// `!` (Jaccard) agreement, shared − fresh, with its 95 % paired bootstrap interval.
    pub noise: Option<PairedDiff>,
    /// Chance position agreement: the probability that two independent fresh samples start their
    /// target at the same place, `Σ_s q(s)²` over the fresh valid samples' start distribution `q`.
    pub position_chance: Option<f64>,
}

impl Contrast {
    /// Both intervals measured and neither lies above 0: sharing Z changes nothing measurable.
    pub fn z_does_nothing(&self) -> bool {
        matches!((&self.position, &self.noise), (Some(p), Some(n)) if p.lo <= 0.0 && n.lo <= 0.0)
    }
}

/// Per-group metrics of groups of full samples, `letters[i]` being group i's prompt letter.
pub fn per_group<S: AsRef<str>>(groups: &[Vec<S>], letters: &[char]) -> Vec<GroupMetrics> {
    groups.iter().zip(letters).map(|(g, &l)| group_metrics(g, l)).collect()
}

/// `Σ_s q(s)²` over the target starts of the valid samples (`None` without a valid sample).
pub fn position_chance<S: AsRef<str>>(groups: &[Vec<S>], letters: &[char]) -> Option<f64> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (g, &l) in groups.iter().zip(letters) {
        for s in g {
            if let Some(start) = parse_sample_for(s.as_ref(), l).target_start {
                *counts.entry(start).or_default() += 1;
            }
        }
    }
    let n: usize = counts.values().sum();
    (n > 0).then(|| counts.values().map(|&c| (c as f64 / n as f64).powi(2)).sum())
}

/// The paired contrast of `shared` against `fresh` groups (same letters, same order). A group that
/// lacks a metric in either mode (fewer than two valid or well-formed samples) is left out of that
/// metric's comparison. `seed` keys the bootstrap resampling.
pub fn contrast<S: AsRef<str>>(fresh: &[Vec<S>], shared: &[Vec<S>], letters: &[char], seed: u64) -> Contrast {
    let (f, s) = (per_group(fresh, letters), per_group(shared, letters));
    let pair = |m: fn(&GroupMetrics) -> Option<f64>, key: u64| {
        let nan = f64::NAN;
        let a: Vec<f64> = s.iter().map(|g| m(g).unwrap_or(nan)).collect();
        let b: Vec<f64> = f.iter().map(|g| m(g).unwrap_or(nan)).collect();
        paired_diff(&a, &b, DEFAULT_RESAMPLES, seed ^ key)
    };
    Contrast {
        position: pair(|g| g.position_agreement, 1),
        noise: pair(|g| g.noise_agreement, 2),
        position_chance: position_chance(fresh, letters),
    }
}

/// One line in words: whether sharing Z measurably raises position and noise agreement, with
/// the differences, their intervals, and "(weakly)" when the position gain is under 0.25.
pub fn verdict(c: &Contrast) -> String {
    let (Some(p), Some(n)) = (&c.position, &c.noise) else {
        return "too few valid samples to tell whether Z steers the samples.".into();
    };
    let numbers = format!(
        "shared − fresh position agreement {} (chance {}), noise agreement {} (95 % paired bootstrap over groups)",
        p,
        c.position_chance.map_or("–".into(), |v| format!("{v:.3}")),
        n
    );
    if c.z_does_nothing() {
        return format!(
            "Z does nothing measurable here: samples that share Z agree no more than samples with fresh Z; {numbers}."
        );
    }
    if p.lo > 0.0 {
        format!(
            "Z steers the target position{}{}: {numbers}.",
            if p.mean < 0.25 { " (weakly)" } else { "" },
            if n.lo > 0.0 { " and the noise" } else { ", but not measurably the noise" }
        )
    } else {
        format!("Z steers the noise but not measurably the target position: {numbers}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(letter: char, start: usize, bangs: &[usize]) -> String {
        let mut body = vec!['_'; 64];
        for c in &mut body[start..start + 8] {
            *c = letter;
        }
        for &b in bangs {
            body[b] = '!';
        }
        format!("{letter}>{}", body.into_iter().collect::<String>())
    }

    #[test]
    fn chance_is_the_sum_of_squared_start_frequencies() {
        // Starts 3, 3, 10, 20 → q = (1/2, 1/4, 1/4) → Σ q² = 3/8; invalid samples do not count.
        let groups = vec![
            vec![sample('K', 3, &[]), sample('K', 3, &[]), "garbage".to_string()],
            vec![sample('Q', 10, &[]), sample('Q', 20, &[])],
        ];
        let chance = position_chance(&groups, &['K', 'Q']).unwrap();
        assert!((chance - 0.375).abs() < 1e-12, "{chance}");
        assert!(position_chance::<String>(&[vec![]], &['K']).is_none());
    }

    #[test]
    fn a_latent_that_fixes_the_position_is_detected_and_one_that_does_not_is_not() {
        // Shared groups: all samples start at one place per group; fresh ones: all different starts.
        let letters: Vec<char> = (0..30).map(|i| (b'A' + (i % 26) as u8) as char).collect();
        let fresh: Vec<Vec<String>> =
            letters.iter().map(|&l| (0..4).map(|k| sample(l, 5 + 10 * k, &[1 + k])).collect()).collect();
        let shared: Vec<Vec<String>> =
            letters.iter().enumerate().map(|(i, &l)| (0..4).map(|k| sample(l, i % 50, &[1 + k])).collect()).collect();
        let c = contrast(&fresh, &shared, &letters, 1);
        let p = c.position.unwrap();
        assert!((p.mean - 1.0).abs() < 1e-12 && p.lo > 0.0, "{p:?}");
        assert!(c.noise.unwrap().includes_zero());
        assert!(verdict(&c).starts_with("Z steers the target position, but not"), "{}", verdict(&c));
        let same = contrast(&fresh, &fresh, &letters, 1);
        assert!(same.position.unwrap().includes_zero());
        assert!(verdict(&same).starts_with("Z does nothing"), "{}", verdict(&same));
        assert!(same.z_does_nothing() && !c.z_does_nothing());
        // Fresh starts 5, 15, 25, 35 equally often: chance 1/4.
        assert!((c.position_chance.unwrap() - 0.25).abs() < 1e-12);
    }
}
