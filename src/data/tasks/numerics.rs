//! Numerics shared by the tasks: the world and example RNG streams, Gamma/Dirichlet and
//! categorical draws, log-sum-exp, and per-token averaging of sequence NLLs.

use std::f64::consts::{LN_2, PI};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::TaskError;
use crate::data::Split;
use crate::util::rng::Stream;

/// The RNG of the world of a task kind (`kind` tags 1 = mixture, 2 = permutation).
pub(super) fn world_rng(world_seed: u64, kind: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(Stream::TaskWorld.seed(world_seed, &[kind]))
}

/// The RNG of example `index` of `split`: `stream_seed(seed, &[split, index])`.
pub(super) fn example_rng(seed: u64, split: Split, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(split.stream().seed(seed, &[index]))
}

/// The RNG of training row (step, micro, row): `stream_seed(seed, &[0, step, micro, row])`.
pub(super) fn train_rng(seed: u64, step: u64, micro: u64, row: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(Stream::TrainRows.seed(seed, &[step, micro, row]))
}

/// A uniform draw in (0, 1].
pub(super) fn open01<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.random::<f64>()
}

/// A standard normal draw (Box–Muller, the cosine half).
pub(super) fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let r = (-2.0 * open01(rng).ln()).sqrt();
    r * (2.0 * PI * rng.random::<f64>()).cos()
}

/// The natural log of a Gamma(shape, 1) draw, safe for tiny shapes.
///
/// Marsaglia–Tsang for shape ≥ 1; for shape < 1 the boost `G(a) = G(a+1)·U^(1/a)` is applied in
/// log space (`ln U / a`), so rows never underflow to all zeros.
pub(super) fn ln_gamma_draw<R: Rng + ?Sized>(rng: &mut R, shape: f64) -> f64 {
    if shape < 1.0 {
        let boost = open01(rng).ln() / shape;
        return ln_gamma_draw(rng, shape + 1.0) + boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = std_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v3 = v * v * v;
        if open01(rng).ln() < 0.5 * x * x + d - d * v3 + d * v3.ln() {
            return d.ln() + v3.ln();
        }
    }
}

/// `ln Σ exp(v)`, stable; `-inf` for an empty slice or all `-inf`.
pub(super) fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// Index drawn from unnormalised weights `row` with a uniform `u` in [0, 1).
pub(super) fn categorical(row: &[f64], u: f64) -> usize {
    let mut rest = u * row.iter().sum::<f64>();
    let mut last = 0;
    for (j, &p) in row.iter().enumerate() {
        if p > 0.0 {
            last = j;
            if rest < p {
                return j;
            }
            rest -= p;
        }
    }
    last
}

/// Checks every id is below `vocab_size`.
pub(super) fn check_ids(ids: &[u32], vocab_size: usize) -> Result<(), TaskError> {
    match ids.iter().enumerate().find(|&(_, &id)| id as usize >= vocab_size) {
        Some((position, &id)) => Err(TaskError::TokenOutOfRange { id, position, vocab_size }),
        None => Ok(()),
    }
}

/// Total NLL over total predicted tokens (`len − 1` per sequence).
pub(super) fn per_token<S: AsRef<[u32]>>(
    seqs: &[S],
    nll: impl Fn(&[u32]) -> Result<f64, TaskError>,
) -> Result<f64, TaskError> {
    let (mut total, mut tokens) = (0.0, 0usize);
    for s in seqs {
        let s = s.as_ref();
        total += nll(s)?;
        tokens += s.len().saturating_sub(1);
    }
    if tokens == 0 {
        return Err(TaskError::NoTokens);
    }
    Ok(total / tokens as f64)
}

/// Bits per sequence by which a model's NLL exceeds the Bayes-optimal NLL.
///
/// `(model − bayes) · tokens_per_seq / ln 2`, both NLLs in nats per predicted token and
/// `tokens_per_seq = seq_len − 1` (the first token is never predicted). For the mixture tasks this
/// is the information about the hidden choice the model fails to use, to compare with the
/// `log2 K` bits the choice holds; it can be slightly negative on a finite evaluation set.
pub fn excess_nll_bits_per_seq(
    model_nll_nats_per_token: f64,
    bayes_nll_nats_per_token: f64,
    tokens_per_seq: usize,
) -> f64 {
    (model_nll_nats_per_token - bayes_nll_nats_per_token) * tokens_per_seq as f64 / LN_2
}

/// Pearson χ² statistic of counts against a uniform distribution (for the tasks' tests).
#[cfg(test)]
pub(super) fn chi2_uniform(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    let e = total as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_nll_converts_nats_per_token_to_bits_per_sequence() {
        assert!((excess_nll_bits_per_seq(1.0, 1.0 - LN_2 / 63.0, 63) - 1.0).abs() < 1e-12);
        assert!((excess_nll_bits_per_seq(0.5, 0.5, 10)).abs() < 1e-15);
        assert!(excess_nll_bits_per_seq(0.4, 0.5, 10) < 0.0);
    }
}
