//! `hmm_mixture`: K random Markov chains over V symbols; each sequence follows one chain, chosen
//! uniformly and never shown. Exact Bayes-optimal NLL by log-sum-exp over the chains.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::numerics::{
    categorical, check_ids, example_rng, ln_gamma_draw, log_sum_exp, per_token, train_rng, world_rng,
};
use super::{TaskError, check_range, default_symbols};
use crate::data::Split;
use crate::data::tokenizer::alphabet::MAX_LETTERS;
use crate::util::error::{FieldError, value_err};

/// Largest number of transition entries (k · symbols²) a mixture world may hold.
const MAX_HMM_ENTRIES: usize = 1 << 20;

/// Parameters of the `hmm_mixture` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmmSpec {
    /// Number of chains K (1..=65536, with k · symbols² ≤ 2^20).
    pub k: usize,
    /// Symbols V (2..=62).
    #[serde(default = "default_symbols")]
    pub symbols: usize,
    /// Tokens per sequence (2..=65536).
    #[serde(default = "default_hmm_seq_len")]
    pub seq_len: usize,
    /// Dirichlet concentration of every transition row (1e-3..=1e3).
    ///
    /// The default 0.5 (< 1) makes rows peaked, so each chain has clearly lower entropy than
    /// ln V and chains are told apart within a few tokens: the hidden chain is worth learning.
    /// α = 1 is uniform over the simplex; large α makes every chain nearly uniform and alike.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Prompt tokens given at generation (1..seq_len).
    #[serde(default = "default_one")]
    pub prompt_len: usize,
    /// Seed of the world (the K matrices), independent of the run seed.
    #[serde(default)]
    pub world_seed: u64,
}

fn default_hmm_seq_len() -> usize {
    64
}
fn default_alpha() -> f64 {
    0.5
}
fn default_one() -> usize {
    1
}

impl HmmSpec {
    /// Checks every parameter range, naming the field at fault.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range("data.k", self.k, 1, 65_536)?;
        check_range("data.symbols", self.symbols, 2, MAX_LETTERS)?;
        let entries = self.k * self.symbols * self.symbols;
        if entries > MAX_HMM_ENTRIES {
            return Err(value_err(
                "data.k",
                format!("k · symbols² = {entries} transition entries exceeds the limit {MAX_HMM_ENTRIES}"),
            ));
        }
        check_range("data.seq_len", self.seq_len, 2, 65_536)?;
        if !(self.alpha.is_finite() && (1e-3..=1e3).contains(&self.alpha)) {
            return Err(value_err("data.alpha", format!("{} must be a finite number in [0.001, 1000]", self.alpha)));
        }
        check_range("data.prompt_len", self.prompt_len, 1, self.seq_len - 1)
    }
}

/// A mixture of K Markov chains over V symbols; each sequence follows one hidden chain.
///
/// Draw order of one example (a spec): chain `random_range(0..K as u32)`, first token
/// `random_range(0..V as u32)`, then per later token one `random::<f64>()` inverted through the
/// cumulative transition row. The world draws each row as normalised Gamma(α) samples
/// (Dirichlet(α)), chain-major then row-major, from the world stream.
#[derive(Debug, Clone)]
pub struct HmmMixture {
    /// Run seed of the example streams.
    seed: u64,
    /// Number of chains K.
    k: usize,
    /// Symbols V.
    symbols: usize,
    /// Tokens per sequence.
    seq_len: usize,
    /// Prompt tokens at generation.
    prompt_len: usize,
    /// Transition probabilities `A_k[i, j]` at `(k·V + i)·V + j`.
    probs: Vec<f64>,
    /// Natural logs of `probs` (exact even where `probs` underflows).
    log_probs: Vec<f64>,
}

impl HmmMixture {
    /// Draws the world from `spec` (validated first); `seed` keys the example streams.
    pub fn new(spec: &HmmSpec, seed: u64) -> Result<Self, FieldError> {
        spec.validate()?;
        let (k, v) = (spec.k, spec.symbols);
        let mut rng = world_rng(spec.world_seed, 1);
        let mut log_probs = Vec::with_capacity(k * v * v);
        let mut lg = vec![0.0; v];
        for _ in 0..k * v {
            for x in lg.iter_mut() {
                *x = ln_gamma_draw(&mut rng, spec.alpha);
            }
            let z = log_sum_exp(&lg);
            log_probs.extend(lg.iter().map(|&x| x - z));
        }
        let probs = log_probs.iter().map(|&l| l.exp()).collect();
        Ok(Self { seed, k, symbols: v, seq_len: spec.seq_len, prompt_len: spec.prompt_len, probs, log_probs })
    }

    /// Builds a mixture from explicit matrices `matrices[k][i][j] = A_k[i, j]` (rows must sum to 1).
    pub fn from_matrices(
        matrices: &[Vec<Vec<f64>>],
        seq_len: usize,
        prompt_len: usize,
        seed: u64,
    ) -> Result<Self, TaskError> {
        let bad = |m: String| Err(TaskError::InvalidWorld(m));
        let k = matrices.len();
        let v = matrices.first().map_or(0, Vec::len);
        if k == 0 || !(2..=MAX_LETTERS).contains(&v) {
            return bad(format!("need at least one matrix of 2..=62 symbols, got {k} of {v}"));
        }
        if seq_len < 2 || prompt_len == 0 || prompt_len >= seq_len {
            return bad(format!("seq_len {seq_len} must be ≥ 2 and prompt_len {prompt_len} in 1..seq_len"));
        }
        let mut probs = Vec::with_capacity(k * v * v);
        for (c, m) in matrices.iter().enumerate() {
            if m.len() != v || m.iter().any(|row| row.len() != v) {
                return bad(format!("matrix {c} is not {v}×{v}"));
            }
            for (i, row) in m.iter().enumerate() {
                if row.iter().any(|&p| !(p.is_finite() && p >= 0.0)) || (row.iter().sum::<f64>() - 1.0).abs() > 1e-9 {
                    return bad(format!("row {i} of matrix {c} is not a probability distribution"));
                }
                probs.extend_from_slice(row);
            }
        }
        let log_probs = probs.iter().map(|&p| p.ln()).collect();
        Ok(Self { seed, k, symbols: v, seq_len, prompt_len, probs, log_probs })
    }

    /// Number of chains K.
    pub fn n_chains(&self) -> usize {
        self.k
    }

    /// Symbols V.
    pub fn symbols(&self) -> usize {
        self.symbols
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Prompt tokens at generation.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Row `from` of chain `k`.
    fn row(&self, k: usize, from: usize) -> &[f64] {
        let start = (k * self.symbols + from) * self.symbols;
        &self.probs[start..start + self.symbols]
    }

    /// `A_k[from, to]`, or `None` out of range.
    pub fn transition(&self, k: usize, from: usize, to: usize) -> Option<f64> {
        (k < self.k && from < self.symbols && to < self.symbols)
            .then(|| self.probs[(k * self.symbols + from) * self.symbols + to])
    }

    /// Draws one sequence and its hidden chain.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> (Vec<u32>, usize) {
        let k = rng.random_range(0..self.k as u32) as usize;
        let mut cur = rng.random_range(0..self.symbols as u32) as usize;
        let mut ids = Vec::with_capacity(self.seq_len);
        ids.push(cur as u32);
        for _ in 1..self.seq_len {
            cur = categorical(self.row(k, cur), rng.random::<f64>());
            ids.push(cur as u32);
        }
        (ids, k)
    }

    /// Example `index` of `split` with its hidden chain.
    pub fn example(&self, split: Split, index: u64) -> (Vec<u32>, usize) {
        self.sample(&mut example_rng(self.seed, split, index))
    }

    /// Training row (step, micro, row) with its hidden chain.
    pub fn train_example(&self, step: u64, micro: u64, row: u64) -> (Vec<u32>, usize) {
        self.sample(&mut train_rng(self.seed, step, micro, row))
    }

    /// `ln Π_{t≥1} A_k[x_{t−1}, x_t]` for every chain k (non-empty `ids`, all below V).
    pub fn chain_log_likelihoods(&self, ids: &[u32]) -> Result<Vec<f64>, TaskError> {
        if ids.is_empty() {
            return Err(TaskError::WrongLength { len: 0, expected: "at least 1".into() });
        }
        check_ids(ids, self.symbols)?;
        let v = self.symbols;
        Ok((0..self.k)
            .map(|k| ids.windows(2).map(|w| self.log_probs[(k * v + w[0] as usize) * v + w[1] as usize]).sum())
            .collect())
    }

    /// Exact Bayes-optimal NLL of `ids[1..]` given `ids[0]`: `−ln((1/K) Σ_k Π_t A_k[x_{t−1}, x_t])`.
    ///
    /// The first token is uniform under every chain, so it cancels from the posterior. `+inf`
    /// for a sequence no chain can produce.
    pub fn bayes_nll_nats(&self, ids: &[u32]) -> Result<f64, TaskError> {
        let s = self.chain_log_likelihoods(ids)?;
        Ok((self.k as f64).ln() - log_sum_exp(&s))
    }

    /// NLL of `ids[1..]` given `ids[0]` under the true chain `k`: a lower bound that cheats.
    pub fn known_chain_nll_nats(&self, ids: &[u32], k: usize) -> Result<f64, TaskError> {
        if k >= self.k {
            return Err(TaskError::LatentOutOfRange { index: k, count: self.k });
        }
        Ok(-self.chain_log_likelihoods(ids)?[k])
    }

    /// Posterior over chains given the whole of `ids` (uniform prior).
    pub fn chain_posterior(&self, ids: &[u32]) -> Result<Vec<f64>, TaskError> {
        let s = self.chain_log_likelihoods(ids)?;
        let z = log_sum_exp(&s);
        Ok(s.iter().map(|&x| (x - z).exp()).collect())
    }

    /// Bayes-optimal NLL in nats per predicted token (`len − 1` per sequence) over `seqs`.
    pub fn bayes_nll_per_token<S: AsRef<[u32]>>(&self, seqs: &[S]) -> Result<f64, TaskError> {
        per_token(seqs, |s| self.bayes_nll_nats(s))
    }

    /// Known-chain NLL in nats per predicted token over `(sequence, chain)` pairs.
    pub fn known_chain_nll_per_token<S: AsRef<[u32]>>(&self, seqs: &[(S, usize)]) -> Result<f64, TaskError> {
        let (mut total, mut tokens) = (0.0, 0usize);
        for (s, k) in seqs {
            total += self.known_chain_nll_nats(s.as_ref(), *k)?;
            tokens += s.as_ref().len().saturating_sub(1);
        }
        if tokens == 0 {
            return Err(TaskError::NoTokens);
        }
        Ok(total / tokens as f64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::tasks::Task;
    use crate::data::tasks::numerics::chi2_uniform;
    use std::collections::HashSet;

    /// A mixture task from its parameters (prompt length 1).
    pub(crate) fn hmm(k: usize, symbols: usize, seq_len: usize, alpha: f64, world_seed: u64, seed: u64) -> HmmMixture {
        let spec = HmmSpec { k, symbols, seq_len, alpha, prompt_len: 1, world_seed };
        HmmMixture::new(&spec, seed).unwrap()
    }

    #[test]
    fn hmm_world_rows_are_distributions_fixed_by_world_seed() {
        let a = hmm(5, 6, 16, 0.5, 3, 0);
        for k in 0..5 {
            for i in 0..6 {
                let row: Vec<f64> = (0..6).map(|j| a.transition(k, i, j).unwrap()).collect();
                assert!(row.iter().all(|&p| (0.0..=1.0).contains(&p)));
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{row:?}");
            }
        }
        assert_eq!(a.transition(5, 0, 0), None);
        assert_eq!(a.transition(0, 6, 0), None);
        // The world depends on world_seed only, not on the run seed.
        let b = hmm(5, 6, 16, 0.5, 3, 99);
        assert_eq!(a.probs, b.probs);
        assert_ne!(a.probs, hmm(5, 6, 16, 0.5, 4, 0).probs);
        // Tiny α: peaked rows, yet finite logs and exact normalisation.
        let tiny = hmm(4, 8, 32, 1e-3, 0, 0);
        assert!(tiny.log_probs.iter().all(|l| !l.is_nan() && *l <= 0.0));
        for r in tiny.probs.chunks(8) {
            assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        for i in 0..50 {
            let (ids, k) = tiny.example(Split::Val, i);
            assert!(tiny.bayes_nll_nats(&ids).unwrap().is_finite());
            assert!(tiny.known_chain_nll_nats(&ids, k).unwrap().is_finite());
        }
    }

    #[test]
    fn dirichlet_rows_have_the_right_moments() {
        // p_j ~ Beta(α, 3α) for V = 4: mean 1/4, variance (1/4)(3/4) / (4α + 1).
        for alpha in [0.5, 2.0] {
            let t = hmm(4096, 4, 8, alpha, 11, 0);
            let n = t.probs.len() as f64;
            let mean = t.probs.iter().sum::<f64>() / n;
            let var = t.probs.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n;
            let want = 0.1875 / (4.0 * alpha + 1.0);
            assert!((mean - 0.25).abs() < 1e-9, "rows sum to 1 so the mean is exact: {mean}");
            assert!((var / want - 1.0).abs() < 0.05, "alpha {alpha}: var {var} vs {want}");
        }
    }

    #[test]
    fn hmm_examples_are_deterministic_and_distinct() {
        let t = hmm(4, 8, 64, 0.5, 0, 1);
        let task = Task::HmmMixture(t.clone());
        assert_eq!(task.example_ids(Split::Train, 3), task.example_ids(Split::Train, 3));
        assert_eq!(
            Task::HmmMixture(hmm(4, 8, 64, 0.5, 0, 1)).example_ids(Split::Val, 7),
            task.example_ids(Split::Val, 7)
        );
        let mut seen = HashSet::new();
        for i in 0..200 {
            assert!(seen.insert(task.example_ids(Split::Train, i)));
            assert!(seen.insert(task.example_ids(Split::Val, i)));
            assert!(seen.insert(task.train_ids(i, 0, 0)));
        }
        assert_ne!(
            task.example_ids(Split::Val, 0),
            Task::HmmMixture(hmm(4, 8, 64, 0.5, 0, 2)).example_ids(Split::Val, 0)
        );
        assert_eq!(task.train_ids(5, 1, 2), t.train_example(5, 1, 2).0);
        assert!(task.example_ids(Split::Val, 0).iter().all(|&x| x < 8));
        assert_eq!(task.example_ids(Split::Val, 0).len(), 64);
    }

    #[test]
    fn hmm_transitions_follow_the_hidden_chain() {
        let (k, v) = (3, 4);
        let t = hmm(k, v, 64, 0.5, 7, 5);
        let mut counts = vec![0usize; k * v * v];
        let (mut chains, mut firsts) = (vec![0usize; k], vec![0usize; v]);
        let n = 3000;
        for i in 0..n {
            let (ids, c) = t.example(Split::Train, i);
            chains[c] += 1;
            firsts[ids[0] as usize] += 1;
            for w in ids.windows(2) {
                counts[(c * v + w[0] as usize) * v + w[1] as usize] += 1;
            }
        }
        // df = 2 and 3: the 99.9% quantiles are 13.8 and 16.3.
        assert!(chi2_uniform(&chains) < 16.0, "{chains:?}");
        assert!(chi2_uniform(&firsts) < 19.0, "{firsts:?}");
        let mut rows_checked = 0;
        for c in 0..k {
            for i in 0..v {
                let row = &counts[(c * v + i) * v..(c * v + i + 1) * v];
                let total: usize = row.iter().sum();
                if total < 500 {
                    continue;
                }
                rows_checked += 1;
                for (j, &m) in row.iter().enumerate() {
                    let p = t.transition(c, i, j).unwrap();
                    let f = m as f64 / total as f64;
                    let tol = 4.5 * (p * (1.0 - p) / total as f64).sqrt() + 1e-3;
                    assert!((f - p).abs() < tol, "chain {c} row {i} col {j}: freq {f} vs {p} (n {total})");
                }
            }
        }
        assert!(rows_checked >= 8, "only {rows_checked} well-visited rows");
    }

    #[test]
    fn hmm_bayes_nll_hand_case() {
        let a1 = vec![vec![0.9, 0.1], vec![0.2, 0.8]];
        let a2 = vec![vec![0.5, 0.5], vec![0.3, 0.7]];
        let t = HmmMixture::from_matrices(&[a1.clone(), a2], 3, 1, 0).unwrap();
        let x = [0u32, 0, 1];
        // p1 = 0.9·0.1 = 0.09, p2 = 0.5·0.5 = 0.25: −ln(½ (0.09 + 0.25)) = −ln 0.17.
        let want = -(0.17f64).ln();
        assert!((t.bayes_nll_nats(&x).unwrap() - want).abs() < 1e-12);
        assert!((t.known_chain_nll_nats(&x, 0).unwrap() + (0.09f64).ln()).abs() < 1e-12);
        assert!((t.known_chain_nll_nats(&x, 1).unwrap() + (0.25f64).ln()).abs() < 1e-12);
        assert!((t.bayes_nll_per_token(&[x.to_vec()]).unwrap() - want / 2.0).abs() < 1e-12);
        let post = t.chain_posterior(&x).unwrap();
        assert!((post[0] - 0.09 / 0.34).abs() < 1e-12 && (post[1] - 0.25 / 0.34).abs() < 1e-12);
        // One token: nothing predicted, NLL 0; errors, not panics, on bad input.
        assert_eq!(t.bayes_nll_nats(&[1]).unwrap(), 0.0);
        assert!(matches!(t.bayes_nll_nats(&[]), Err(TaskError::WrongLength { .. })));
        assert!(matches!(t.bayes_nll_nats(&[0, 2]), Err(TaskError::TokenOutOfRange { id: 2, position: 1, .. })));
        assert!(matches!(t.known_chain_nll_nats(&x, 2), Err(TaskError::LatentOutOfRange { .. })));
        assert_eq!(t.bayes_nll_per_token(&[vec![0u32]]), Err(TaskError::NoTokens));
        // Impossible sequences have infinite NLL.
        let zero = HmmMixture::from_matrices(&[vec![vec![1.0, 0.0], vec![0.0, 1.0]]], 3, 1, 0).unwrap();
        assert_eq!(zero.bayes_nll_nats(&[0, 1]).unwrap(), f64::INFINITY);
        // Invalid hand-built worlds are errors.
        assert!(HmmMixture::from_matrices(&[vec![vec![0.5, 0.6], vec![0.5, 0.5]]], 3, 1, 0).is_err());
        assert!(HmmMixture::from_matrices(&[a1.clone(), vec![vec![1.0]]], 3, 1, 0).is_err());
        assert!(HmmMixture::from_matrices(&[], 3, 1, 0).is_err());
        assert!(HmmMixture::from_matrices(&[a1], 3, 3, 0).is_err());
    }

    #[test]
    fn hmm_single_chain_bayes_equals_known_chain() {
        let t = hmm(1, 6, 40, 0.5, 2, 0);
        for i in 0..100 {
            let (ids, k) = t.example(Split::Val, i);
            assert_eq!(k, 0);
            let (b, kn) = (t.bayes_nll_nats(&ids).unwrap(), t.known_chain_nll_nats(&ids, 0).unwrap());
            assert!((b - kn).abs() < 1e-9, "{b} vs {kn}");
        }
    }

    #[test]
    fn hmm_bayes_nll_is_the_exact_sequence_distribution() {
        // K = 2, V = 2, 3 tokens: p(x) = (1/V)·exp(−bayes_nll(x)) must sum to 1 and match sampling.
        let t = hmm(2, 2, 3, 0.5, 21, 8);
        let mut p = [0.0; 8];
        for (code, slot) in p.iter_mut().enumerate() {
            let x: Vec<u32> = (0..3).map(|b| ((code >> (2 - b)) & 1) as u32).collect();
            *slot = 0.5 * (-t.bayes_nll_nats(&x).unwrap()).exp();
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
        let n = 40_000;
        let mut counts = [0usize; 8];
        for i in 0..n {
            let (x, _) = t.example(Split::Train, i);
            counts[((x[0] << 2) | (x[1] << 1) | x[2]) as usize] += 1;
        }
        for (c, (&m, &q)) in counts.iter().zip(&p).enumerate() {
            let f = m as f64 / n as f64;
            let tol = 4.5 * (q * (1.0 - q) / n as f64).sqrt() + 1e-4;
            assert!((f - q).abs() < tol, "sequence {c:03b}: freq {f} vs p {q}");
        }
    }

    #[test]
    fn hmm_bayes_lies_between_known_chain_and_log_v() {
        let (k, v) = (8, 8);
        let t = hmm(k, v, 64, 0.5, 1, 3);
        let mut seqs = Vec::new();
        let mut with_chain = Vec::new();
        let mut posterior_true = 0.0;
        for i in 0..400 {
            let (ids, c) = t.example(Split::Val, i);
            let b = t.bayes_nll_nats(&ids).unwrap();
            let kn = t.known_chain_nll_nats(&ids, c).unwrap();
            // Pointwise: (1/K) Σ_j p_j ≥ p_c / K.
            assert!(b <= kn + (k as f64).ln() + 1e-9, "{b} vs {kn}");
            posterior_true += t.chain_posterior(&ids).unwrap()[c];
            seqs.push(ids.clone());
            with_chain.push((ids, c));
        }
        let bayes = t.bayes_nll_per_token(&seqs).unwrap();
        let known = t.known_chain_nll_per_token(&with_chain).unwrap();
        // The known chain is a lower bound in expectation; the gap is I(chain; x) / 63 ≤ ln K / 63.
        assert!(known < bayes, "{known} vs {bayes}");
        assert!(bayes - known < (k as f64).ln() / 63.0 + 1e-9, "{known} vs {bayes}");
        // α = 0.5 rows are peaked: well below the uniform ln V, and chains are identifiable.
        assert!(bayes > 0.0 && bayes < 0.9 * (v as f64).ln(), "{bayes}");
        assert!(posterior_true / 400.0 > 0.8, "{posterior_true}");
        let task = Task::HmmMixture(t);
        assert_eq!(task.bayes_nll_per_token(&seqs).unwrap(), bayes);
        assert_eq!(task.score(&[0], &[0]), Err(TaskError::NoScorer("hmm_mixture")));
    }
}
