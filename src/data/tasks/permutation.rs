//! `permutation`: `x;y` with `y = π_k(x)` for one of K fixed hidden permutations: validity,
//! coverage of the K choices, consistency across samples sharing Z, and exact Bayes NLL.

use std::collections::{BTreeMap, HashSet};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::numerics::{check_ids, example_rng, per_token, train_rng, world_rng};
use super::{TaskError, check_range, default_symbols};
use crate::data::Split;
use crate::data::tokenizer::alphabet::MAX_LETTERS;
use crate::util::error::{FieldError, value_err};

/// Largest number of permutation entries (k · n) a permutation world may hold.
const MAX_PERM_ENTRIES: usize = 1 << 20;

/// Parameters of the `permutation` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermutationSpec {
    /// Number of distinct hidden permutations K (1..=min(4096, n!), with k · n ≤ 2^20).
    pub k: usize,
    /// Length of x and of y (1..=1024).
    #[serde(default = "default_n")]
    pub n: usize,
    /// Symbols A (2..=62).
    #[serde(default = "default_symbols")]
    pub symbols: usize,
    /// Seed of the world (the K permutations), independent of the run seed.
    #[serde(default)]
    pub world_seed: u64,
}

fn default_n() -> usize {
    8
}

impl PermutationSpec {
    /// Checks every parameter range, naming the field at fault.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range("data.n", self.n, 1, 1024)?;
        check_range("data.k", self.k, 1, 4096)?;
        let distinct = (1..=self.n).try_fold(1usize, |acc, i| acc.checked_mul(i)).unwrap_or(usize::MAX);
        if self.k > distinct {
            return Err(value_err(
                "data.k",
                format!("{} exceeds the {distinct} distinct permutations of n = {}", self.k, self.n),
            ));
        }
        if self.k * self.n > MAX_PERM_ENTRIES {
            return Err(value_err(
                "data.k",
                format!("k · n = {} permutation entries exceeds the limit {MAX_PERM_ENTRIES}", self.k * self.n),
            ));
        }
        check_range("data.symbols", self.symbols, 2, MAX_LETTERS)
    }
}

/// Sequences `x ; y` with `y[i] = x[π_k[i]]` for one of K fixed, distinct, hidden permutations.
///
/// Draw order of one example (a spec): `k = random_range(0..K as u32)`, then the n symbols of x,
/// each `random_range(0..A as u32)`. The world draws Fisher–Yates shuffles (`random_range(0..=i)`
/// for i = n−1 down to 1), skipping repeats, until K distinct permutations are found.
#[derive(Debug, Clone)]
pub struct Permutation {
    /// Run seed of the example streams.
    seed: u64,
    /// Length of x and y.
    n: usize,
    /// Symbols A; the separator has id A.
    symbols: usize,
    /// The K permutations of 0..n.
    perms: Vec<Vec<usize>>,
}

impl Permutation {
    /// Draws the world from `spec` (validated first); `seed` keys the example streams.
    pub fn new(spec: &PermutationSpec, seed: u64) -> Result<Self, FieldError> {
        spec.validate()?;
        let n = spec.n;
        let mut rng = world_rng(spec.world_seed, 2);
        let mut seen = HashSet::new();
        let mut perms = Vec::with_capacity(spec.k);
        while perms.len() < spec.k {
            let mut p: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = rng.random_range(0..=i as u32) as usize;
                p.swap(i, j);
            }
            if seen.insert(p.clone()) {
                perms.push(p);
            }
        }
        Ok(Self { seed, n, symbols: spec.symbols, perms })
    }

    /// Builds the task from explicit permutations (distinct, each of 0..n) over `symbols` symbols.
    pub fn from_permutations(perms: Vec<Vec<usize>>, symbols: usize, seed: u64) -> Result<Self, TaskError> {
        let n = perms.first().map_or(0, Vec::len);
        if n == 0 || !(2..=MAX_LETTERS).contains(&symbols) {
            return Err(TaskError::InvalidWorld(format!("need n ≥ 1 and 2..=62 symbols, got n {n}, {symbols}")));
        }
        let mut seen = HashSet::new();
        for (k, p) in perms.iter().enumerate() {
            let mut sorted = p.clone();
            sorted.sort_unstable();
            if sorted != (0..n).collect::<Vec<_>>() || !seen.insert(p.clone()) {
                return Err(TaskError::InvalidWorld(format!("entry {k} is not a new permutation of 0..{n}")));
            }
        }
        Ok(Self { seed, n, symbols, perms })
    }

    /// Length of x and of y.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Symbols A.
    pub fn symbols(&self) -> usize {
        self.symbols
    }

    /// Number of permutations K.
    pub fn n_perms(&self) -> usize {
        self.perms.len()
    }

    /// The K permutations.
    pub fn permutations(&self) -> &[Vec<usize>] {
        &self.perms
    }

    /// Token id of the separator.
    pub fn separator_id(&self) -> u32 {
        self.symbols as u32
    }

    /// Tokens per sequence: 2n + 1.
    pub fn seq_len(&self) -> usize {
        2 * self.n + 1
    }

    /// Prompt tokens at generation: x and the separator.
    pub fn prompt_len(&self) -> usize {
        self.n + 1
    }

    /// `π_k(x)`: `y[i] = x[π_k[i]]`, or `None` if k or the length of x is out of range.
    pub fn apply(&self, k: usize, x: &[u32]) -> Option<Vec<u32>> {
        let p = self.perms.get(k)?;
        (x.len() == self.n).then(|| p.iter().map(|&src| x[src]).collect())
    }

    /// Draws one sequence and its hidden permutation index.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> (Vec<u32>, usize) {
        let k = rng.random_range(0..self.perms.len() as u32) as usize;
        let mut ids: Vec<u32> = (0..self.n).map(|_| rng.random_range(0..self.symbols as u32)).collect();
        ids.push(self.separator_id());
        for &src in &self.perms[k] {
            ids.push(ids[src]);
        }
        (ids, k)
    }

    /// Example `index` of `split` with its hidden permutation.
    pub fn example(&self, split: Split, index: u64) -> (Vec<u32>, usize) {
        self.sample(&mut example_rng(self.seed, split, index))
    }

    /// Training row (step, micro, row) with its hidden permutation.
    pub fn train_example(&self, step: u64, micro: u64, row: u64) -> (Vec<u32>, usize) {
        self.sample(&mut train_rng(self.seed, step, micro, row))
    }

    /// x from a prompt of exactly n symbols then the separator.
    fn parse_prompt<'a>(&self, prompt: &'a [u32]) -> Result<&'a [u32], TaskError> {
        if prompt.len() != self.n + 1 {
            return Err(TaskError::MalformedPrompt(format!(
                "{} tokens, expected n + 1 = {}",
                prompt.len(),
                self.n + 1
            )));
        }
        let (x, sep) = prompt.split_at(self.n);
        if sep[0] != self.separator_id() {
            return Err(TaskError::MalformedPrompt(format!("token {} is not the separator", self.n)));
        }
        if let Some(i) = x.iter().position(|&t| t as usize >= self.symbols) {
            return Err(TaskError::MalformedPrompt(format!("token {i} is not a symbol")));
        }
        Ok(x)
    }

    /// Every k with `π_k(x) = completion`, ascending; empty when the completion is invalid.
    ///
    /// The prompt must be x (n symbols) then the separator, else an error. A completion that is
    /// not exactly n symbols matches nothing. Repeated symbols in x can make several k match.
    pub fn matching_ks(&self, prompt: &[u32], completion: &[u32]) -> Result<Vec<usize>, TaskError> {
        let x = self.parse_prompt(prompt)?;
        if completion.len() != self.n {
            return Ok(Vec::new());
        }
        Ok((0..self.perms.len())
            .filter(|&k| self.perms[k].iter().zip(completion).all(|(&src, &c)| x[src] == c))
            .collect())
    }

    /// Whether the completion is `π_k(x)` for some k.
    pub fn is_valid(&self, prompt: &[u32], completion: &[u32]) -> Result<bool, TaskError> {
        Ok(!self.matching_ks(prompt, completion)?.is_empty())
    }

    /// Exact Bayes-optimal NLL of a full sequence's tokens 1.. given token 0.
    ///
    /// `p = A^{−(n−1)} · #{k: π_k(x) = y} / K` (x uniform, the separator certain), so the NLL is
    /// `(n−1) ln A + ln K − ln #{k}`; `+inf` when the sequence is impossible.
    pub fn bayes_nll_nats(&self, ids: &[u32]) -> Result<f64, TaskError> {
        if ids.len() != self.seq_len() {
            return Err(TaskError::WrongLength { len: ids.len(), expected: format!("2n + 1 = {}", self.seq_len()) });
        }
        check_ids(ids, self.symbols + 1)?;
        let (prompt, y) = ids.split_at(self.n + 1);
        let count = match self.matching_ks(prompt, y) {
            Ok(ks) => ks.len(),
            Err(_) => 0,
        };
        if count == 0 || y.contains(&self.separator_id()) {
            return Ok(f64::INFINITY);
        }
        Ok((self.n - 1) as f64 * (self.symbols as f64).ln() + (self.perms.len() as f64).ln() - (count as f64).ln())
    }

    /// Bayes-optimal NLL in nats per predicted token (2n per sequence) over `seqs`.
    pub fn bayes_nll_per_token<S: AsRef<[u32]>>(&self, seqs: &[S]) -> Result<f64, TaskError> {
        per_token(seqs, |s| self.bayes_nll_nats(s))
    }
}

/// How evenly a set of samples covers the K hidden choices.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Entropy in bits of the empirical distribution of the chosen k over valid samples.
    pub entropy_bits: f64,
    /// `entropy_bits / log2 K` (1 when K = 1 and some sample is valid; 0 with no valid sample).
    pub normalized: f64,
    /// Samples with at least one matching k.
    pub n_valid: usize,
    /// Distinct k that received some mass.
    pub distinct: usize,
}

/// Coverage of `n_choices` hidden choices by samples with the given matching-k sets.
///
/// Each valid sample (non-empty set) has mass 1, split equally between its (distinct) matching
/// k; invalid samples are ignored.
pub fn coverage(match_sets: &[Vec<usize>], n_choices: usize) -> Coverage {
    let mut mass: BTreeMap<usize, f64> = BTreeMap::new();
    let mut n_valid = 0usize;
    for set in match_sets {
        let mut set = set.clone();
        set.sort_unstable();
        set.dedup();
        if set.is_empty() {
            continue;
        }
        n_valid += 1;
        let w = 1.0 / set.len() as f64;
        for k in set {
            *mass.entry(k).or_insert(0.0) += w;
        }
    }
    let entropy_bits = if n_valid == 0 {
        0.0
    } else {
        -mass.values().map(|&m| m / n_valid as f64).filter(|&p| p > 0.0).map(|p| p * p.log2()).sum::<f64>()
    };
    let normalized = match (n_valid, n_choices) {
        (0, _) => 0.0,
        (_, 0 | 1) => 1.0,
        (_, k) => entropy_bits / (k as f64).log2(),
    };
    Coverage { entropy_bits, normalized, n_valid, distinct: mass.len() }
}

/// Fraction of pairs of valid samples whose matching-k sets intersect; `None` below two valid.
///
/// Meant for samples generated from different prompts with the same latent Z: values near 1
/// mean Z encodes the permutation choice, values near the chance rate (about 1/K) mean it does
/// not. Invalid samples (empty sets) are left out.
pub fn consistency(match_sets: &[Vec<usize>]) -> Option<f64> {
    let valid: Vec<HashSet<usize>> =
        match_sets.iter().filter(|s| !s.is_empty()).map(|s| s.iter().copied().collect()).collect();
    if valid.len() < 2 {
        return None;
    }
    let (mut pairs, mut hits) = (0usize, 0usize);
    for i in 0..valid.len() {
        for j in i + 1..valid.len() {
            pairs += 1;
            if !valid[i].is_disjoint(&valid[j]) {
                hits += 1;
            }
        }
    }
    Some(hits as f64 / pairs as f64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::tasks::Task;
    use crate::data::tasks::numerics::chi2_uniform;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A permutation task from its parameters.
    pub(crate) fn perm(k: usize, n: usize, symbols: usize, world_seed: u64, seed: u64) -> Permutation {
        Permutation::new(&PermutationSpec { k, n, symbols, world_seed }, seed).unwrap()
    }

    #[test]
    fn permutation_world_is_distinct_and_fixed_by_world_seed() {
        let t = perm(50, 6, 4, 9, 0);
        let set: HashSet<&Vec<usize>> = t.permutations().iter().collect();
        assert_eq!(set.len(), 50);
        for p in t.permutations() {
            let mut s = p.clone();
            s.sort_unstable();
            assert_eq!(s, (0..6).collect::<Vec<_>>());
        }
        assert_eq!(t.permutations(), perm(50, 6, 4, 9, 123).permutations());
        assert_ne!(t.permutations(), perm(50, 6, 4, 10, 0).permutations());
        // K = n! draws every permutation.
        assert_eq!(perm(6, 3, 2, 0, 0).permutations().iter().collect::<HashSet<_>>().len(), 6);
        assert_eq!(perm(1, 1, 2, 0, 0).permutations(), &[vec![0]]);
    }

    #[test]
    fn permutation_examples_apply_a_uniform_hidden_permutation() {
        let (k, n, a) = (16, 6, 5);
        let t = perm(k, n, a, 4, 2);
        let task = Task::Permutation(t.clone());
        assert_eq!((task.seq_len(), task.prompt_len(), task.vocab_size()), (13, 7, 6));
        let (mut ks, mut syms) = (vec![0usize; k], vec![0usize; a]);
        let mut seen = HashSet::new();
        for i in 0..8000 {
            let (ids, c) = t.example(Split::Train, i);
            assert_eq!(ids, task.example_ids(Split::Train, i));
            assert_eq!(ids.len(), 13);
            assert_eq!(ids[n], t.separator_id());
            let (prompt, y) = task.split(&ids);
            assert_eq!(t.apply(c, &prompt[..n]).unwrap(), y);
            assert!(t.matching_ks(prompt, y).unwrap().contains(&c));
            assert!(task.score(prompt, y).unwrap());
            ks[c] += 1;
            for &x in &ids[..n] {
                syms[x as usize] += 1;
            }
            seen.insert(ids);
        }
        // df = 15 and 4: the 99.9% quantiles are 37.7 and 18.5.
        assert!(chi2_uniform(&ks) < 42.0, "{ks:?}");
        assert!(chi2_uniform(&syms) < 20.0, "{syms:?}");
        // About 8000² / (2 · 5^6 · 16) ≈ 128 repeats are expected by chance.
        assert!(seen.len() > 7750, "{}", seen.len());
        assert_ne!(task.example_ids(Split::Val, 0), task.example_ids(Split::Train, 0));
        assert_eq!(task.train_ids(1, 2, 3), t.train_example(1, 2, 3).0);
    }

    /// π0 swaps the first two, π1 is the identity, π2 reverses: over symbols a, b, c.
    fn hand_perm() -> (Permutation, Task) {
        let t = Permutation::from_permutations(vec![vec![1, 0, 2], vec![0, 1, 2], vec![2, 1, 0]], 3, 0).unwrap();
        (t.clone(), Task::Permutation(t))
    }

    #[test]
    fn permutation_matching_hand_cases() {
        let (t, task) = hand_perm();
        let m = |p: &str, c: &str| t.matching_ks(&task.encode(p).unwrap(), &task.encode(c).unwrap());
        assert_eq!(m("abb;", "bab").unwrap(), vec![0]);
        assert_eq!(m("abb;", "abb").unwrap(), vec![1]);
        assert_eq!(m("abb;", "bba").unwrap(), vec![2]);
        assert_eq!(m("abb;", "aaa").unwrap(), Vec::<usize>::new());
        // Repeated symbols: identity and reversal agree on "aba"; everything agrees on "bbb".
        assert_eq!(m("aba;", "aba").unwrap(), vec![1, 2]);
        assert_eq!(m("bbb;", "bbb").unwrap(), vec![0, 1, 2]);
        // Invalid completions match nothing; malformed prompts are errors.
        assert!(m("abb;", "ba").unwrap().is_empty());
        assert!(m("abb;", "babb").unwrap().is_empty());
        assert!(m("abb;", "b;b").unwrap().is_empty());
        assert!(matches!(m("abb", "bab"), Err(TaskError::MalformedPrompt(_))));
        assert!(matches!(m("abba", "bab"), Err(TaskError::MalformedPrompt(_))));
        assert!(matches!(m("a;b;", "bab"), Err(TaskError::MalformedPrompt(_))));
        assert!(t.is_valid(&task.encode("abb;").unwrap(), &task.encode("bab").unwrap()).unwrap());
        assert!(!task.score(&task.encode("abb;").unwrap(), &task.encode("bbb").unwrap()).unwrap());
        assert_eq!(t.apply(3, &[0, 1, 2]), None);
        assert_eq!(t.apply(0, &[0, 1]), None);
        // Hand-built worlds are checked.
        assert!(Permutation::from_permutations(vec![vec![0, 1], vec![0, 1]], 3, 0).is_err());
        assert!(Permutation::from_permutations(vec![vec![0, 0]], 3, 0).is_err());
        assert!(Permutation::from_permutations(vec![vec![0, 1]], 1, 0).is_err());
    }

    #[test]
    fn permutation_bayes_nll_hand_cases() {
        let (t, task) = hand_perm();
        let nll = |s: &str| t.bayes_nll_nats(&task.encode(s).unwrap());
        // (n−1) ln A + ln K − ln #matches with n = 3, A = 3, K = 3.
        let base = 2.0 * 3f64.ln() + 3f64.ln();
        assert!((nll("abb;bab").unwrap() - base).abs() < 1e-12);
        assert!((nll("aba;aba").unwrap() - (base - 2f64.ln())).abs() < 1e-12);
        assert!((nll("bbb;bbb").unwrap() - (base - 3f64.ln())).abs() < 1e-12);
        assert_eq!(nll("abb;aaa").unwrap(), f64::INFINITY);
        assert!(nll("abbabb").is_err());
        assert_eq!(nll("abbaabb").unwrap(), f64::INFINITY);
        assert!(matches!(t.bayes_nll_nats(&[0, 1, 1, 3, 1, 0, 9]), Err(TaskError::TokenOutOfRange { id: 9, .. })));
        let per = t.bayes_nll_per_token(&[task.encode("abb;bab").unwrap()]).unwrap();
        assert!((per - base / 6.0).abs() < 1e-12);
    }

    #[test]
    fn permutation_bayes_nll_is_the_exact_sequence_distribution() {
        // n = 2, A = 2, K = 2 (both permutations of two): enumerate every x and y.
        let t = perm(2, 2, 2, 0, 6);
        let mut p = HashMap::new();
        let mut total = 0.0;
        for code in 0..16u32 {
            let ids = vec![code >> 3 & 1, code >> 2 & 1, 2, code >> 1 & 1, code & 1];
            let q = 0.5 * (-t.bayes_nll_nats(&ids).unwrap()).exp();
            total += q;
            p.insert(ids, q);
        }
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        let n = 20_000;
        let mut counts: HashMap<Vec<u32>, usize> = HashMap::new();
        for i in 0..n {
            *counts.entry(t.example(Split::Val, i).0).or_insert(0) += 1;
        }
        for (ids, q) in p {
            let f = counts.get(&ids).copied().unwrap_or(0) as f64 / n as f64;
            let tol = 4.5 * (q * (1.0 - q) / n as f64).sqrt() + 1e-4;
            assert!((f - q).abs() < tol, "{ids:?}: freq {f} vs p {q}");
        }
    }

    #[test]
    fn coverage_of_known_histograms() {
        let c = coverage(&[vec![0], vec![0], vec![1], vec![2], vec![]], 4);
        assert!((c.entropy_bits - 1.5).abs() < 1e-12, "{c:?}");
        assert!((c.normalized - 0.75).abs() < 1e-12);
        assert_eq!((c.n_valid, c.distinct), (4, 3));
        // Split mass: {0, 1} gives ½ to each, so masses are 1.5 and 0.5.
        let c = coverage(&[vec![0, 1], vec![0]], 2);
        let want = -(0.75f64 * 0.75f64.log2() + 0.25 * 0.25f64.log2());
        assert!((c.entropy_bits - want).abs() < 1e-12 && (c.normalized - want).abs() < 1e-12);
        // Uniform over all K: normalized 1; duplicates inside a set are counted once.
        let c = coverage(&[vec![0], vec![1], vec![2], vec![3], vec![3, 3]], 5);
        // Masses 1, 1, 1, 2 over 5 valid samples: H = 0.6 log2 5 + 0.4 log2 2.5.
        let want = 0.6 * 5f64.log2() + 0.4 * 2.5f64.log2();
        assert!((c.entropy_bits - want).abs() < 1e-12 && (c.normalized - want / 5f64.log2()).abs() < 1e-12);
        assert_eq!((c.n_valid, c.distinct), (5, 4));
        let c = coverage(&(0..8).map(|k| vec![k]).collect::<Vec<_>>(), 8);
        assert!((c.entropy_bits - 3.0).abs() < 1e-12 && (c.normalized - 1.0).abs() < 1e-12);
        let c = coverage(&[vec![], vec![]], 4);
        assert_eq!((c.entropy_bits, c.normalized, c.n_valid, c.distinct), (0.0, 0.0, 0, 0));
        assert_eq!(coverage(&[vec![0]], 1).normalized, 1.0);
        assert_eq!(coverage(&vec![vec![5]; 10], 8).entropy_bits, 0.0);
    }

    #[test]
    fn consistency_of_hand_made_sets() {
        assert_eq!(consistency(&[vec![0], vec![0], vec![1]]), Some(1.0 / 3.0));
        assert_eq!(consistency(&[vec![0, 1], vec![1, 2], vec![2]]), Some(2.0 / 3.0));
        assert_eq!(consistency(&[vec![3], vec![3], vec![3], vec![]]), Some(1.0));
        assert_eq!(consistency(&[vec![0], vec![1], vec![2]]), Some(0.0));
        assert_eq!(consistency(&[vec![0], vec![]]), None);
        assert_eq!(consistency(&[]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Permutation scorers never panic on arbitrary ids.
        #[test]
        fn permutation_scorers_never_panic(
            prompt in proptest::collection::vec(0u32..7, 0..10),
            completion in proptest::collection::vec(0u32..7, 0..10),
        ) {
            let (t, _) = hand_perm();
            let _ = t.matching_ks(&prompt, &completion);
            let mut all = prompt.clone();
            all.extend(&completion);
            let _ = t.bayes_nll_nats(&all);
        }
    }
}
