//! Synthetic evaluation tasks (issue 5) with exact scorers and Bayes-optimal likelihoods.
//!
//! Three seedable tasks whose hidden choice is the kind of global latent a Free Transformer's Z
//! can carry:
//!
//! * `hmm_mixture`: K random Markov chains over V symbols; each sequence follows one chain,
//!   chosen uniformly and never shown. Exact Bayes-optimal NLL by log-sum-exp over the chains.
//! * `permutation`: `x;y` with `y = π_k(x)` for one of K fixed hidden permutations: validity,
//!   coverage of the K choices, consistency across samples sharing Z, and exact Bayes NLL.
//! * `countdown`: numbers and a target; the completion is an arithmetic expression reaching the
//!   target. Exact integer scorer, pass@k and the number of distinct valid answers.
//!
//! Determinism follows [`crate::data`]. A task's *world* (transition matrices, permutations) is a
//! pure function of its spec, `world_seed` included, drawn once and shared by train and val, so
//! runs with different training seeds face the same world. Every example is a pure function of
//! the run seed and its coordinates: `stream_seed(seed, &[split, index])` for indexed examples and
//! `stream_seed(seed, &[0, step, micro, row])` for training rows, as for
//! [`crate::data::SyntheticTask`], so resume stays bit-exact.
//!
//! Every sequence has a fixed length `seq_len` (tokens, the final target included). Its first
//! `prompt_len` tokens are the prompt given at generation; the rest is the completion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::f64::consts::{LN_2, PI};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{DataError, Split, Tokenizer, stream_seed};
use crate::util::error::{FieldError, value_err};

/// The letter symbols of [`TaskAlphabet::Letters`] and [`TaskAlphabet::LettersSep`], in id order.
pub const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Most letter symbols a task can use (the length of [`LETTERS`]).
pub const MAX_LETTERS: usize = 62;

/// The separator between `x` and `y` in the permutation task (id = number of symbols).
pub const SEPARATOR: char = ';';

/// The countdown alphabet, in id order: digits, operators, parentheses, `,` `=` `:` and the pad.
pub const ARITHMETIC: &str = "0123456789+-*/(),=:.";

/// The countdown pad character: left-pads prompts and right-pads completions.
pub const PAD: char = '.';

/// Tag of world streams (ASCII "world"), never a split counter.
const WORLD_TAG: u64 = 0x0077_6f72_6c64;

/// Largest number of transition entries (k · symbols²) a mixture world may hold.
const MAX_HMM_ENTRIES: usize = 1 << 20;

/// Largest number of permutation entries (k · n) a permutation world may hold.
const MAX_PERM_ENTRIES: usize = 1 << 20;

/// Countdown expressions longer than this are malformed (bounds the parser's work and recursion).
const MAX_EXPR_CHARS: usize = 1024;

/// Random trees tried per countdown example before falling back to a single number.
const COUNTDOWN_ATTEMPTS: usize = 256;

/// Errors of task scorers and likelihoods on caller-supplied sequences.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskError {
    /// A token id is outside the task's vocabulary.
    #[error("token id {id} at position {position} is outside the task vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Its 0-based position.
        position: usize,
        /// The task's vocabulary size.
        vocab_size: usize,
    },
    /// A sequence has the wrong number of tokens.
    #[error("sequence has {len} tokens, expected {expected}")]
    WrongLength {
        /// Tokens given.
        len: usize,
        /// What was expected, in words.
        expected: String,
    },
    /// A prompt does not have the task's prompt format.
    #[error("malformed prompt: {0}")]
    MalformedPrompt(String),
    /// A latent index (chain or permutation) is out of range.
    #[error("latent {index} is out of range: the task has {count}")]
    LatentOutOfRange {
        /// The offending index.
        index: usize,
        /// Number of latent choices.
        count: usize,
    },
    /// Hand-built world parameters are invalid.
    #[error("invalid world: {0}")]
    InvalidWorld(String),
    /// An average was asked over no predicted tokens.
    #[error("no predicted tokens to average over")]
    NoTokens,
    /// The task has no Bayes-optimal likelihood.
    #[error("task {0} has no exact Bayes-optimal NLL")]
    NoBayes(&'static str),
    /// The task has no completion scorer.
    #[error("task {0} has no completion scorer")]
    NoScorer(&'static str),
}

/// A task's character alphabet: one char per token id. `Copy`, so it fits in [`Tokenizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAlphabet {
    /// The first `n` characters of [`LETTERS`] (n is capped at 62).
    Letters(u8),
    /// The first `n` characters of [`LETTERS`], then [`SEPARATOR`] with id `n`.
    LettersSep(u8),
    /// [`ARITHMETIC`]: 20 characters.
    Arithmetic,
}

impl TaskAlphabet {
    /// Number of letter symbols (0 for arithmetic).
    fn letters(self) -> usize {
        match self {
            TaskAlphabet::Letters(n) | TaskAlphabet::LettersSep(n) => usize::from(n).min(MAX_LETTERS),
            TaskAlphabet::Arithmetic => 0,
        }
    }

    /// Number of distinct token ids.
    pub fn vocab_size(self) -> usize {
        match self {
            TaskAlphabet::Letters(_) => self.letters(),
            TaskAlphabet::LettersSep(_) => self.letters() + 1,
            TaskAlphabet::Arithmetic => ARITHMETIC.len(),
        }
    }

    /// The character of token `id`, if in range.
    pub fn char_of(self, id: u32) -> Option<char> {
        let id = usize::try_from(id).ok()?;
        match self {
            TaskAlphabet::Letters(_) | TaskAlphabet::LettersSep(_) if id < self.letters() => {
                Some(char::from(LETTERS.as_bytes()[id]))
            }
            TaskAlphabet::LettersSep(_) if id == self.letters() => Some(SEPARATOR),
            TaskAlphabet::Arithmetic => ARITHMETIC.as_bytes().get(id).map(|&b| char::from(b)),
            _ => None,
        }
    }

    /// The token id of `c`, if it is in the alphabet.
    pub fn id_of(self, c: char) -> Option<u32> {
        match self {
            TaskAlphabet::Arithmetic => ARITHMETIC.find(c).map(|i| i as u32),
            TaskAlphabet::LettersSep(_) if c == SEPARATOR => Some(self.letters() as u32),
            _ => LETTERS[..self.letters()].find(c).map(|i| i as u32),
        }
    }

    /// All characters in id order.
    pub fn chars(self) -> String {
        (0..self.vocab_size() as u32).filter_map(|id| self.char_of(id)).collect()
    }

    /// Encodes text, one id per character; unknown characters are errors naming their position.
    pub fn encode(self, text: &str) -> Result<Vec<u32>, DataError> {
        text.chars()
            .enumerate()
            .map(|(position, symbol)| {
                self.id_of(symbol).ok_or_else(|| DataError::NotInAlphabet { symbol, position, alphabet: self.chars() })
            })
            .collect()
    }

    /// Decodes ids to text; out-of-range ids are errors naming their position.
    pub fn decode(self, ids: &[u32]) -> Result<String, DataError> {
        ids.iter()
            .enumerate()
            .map(|(position, &id)| {
                self.char_of(id).ok_or(DataError::TokenOutOfRange {
                    id,
                    position,
                    tokenizer: "task",
                    vocab_size: self.vocab_size(),
                })
            })
            .collect()
    }
}

// ----------------------------------------------------------------------------------------------
// Specs (the `[data]` section with `kind = "task"`)
// ----------------------------------------------------------------------------------------------

/// Which task and its parameters: `[data] kind = "task"`, `task = "<name>"`, then the parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum TaskSpec {
    /// Mixture of K Markov chains.
    HmmMixture(HmmSpec),
    /// Hidden permutation transduction.
    Permutation(PermutationSpec),
    /// Countdown-style arithmetic.
    Countdown(CountdownSpec),
}

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

/// Parameters of the `countdown` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownSpec {
    /// Numbers per problem (1..=8).
    #[serde(default = "default_n_numbers")]
    pub n_numbers: usize,
    /// Numbers are drawn uniformly from 1..=max_number (1..=9999).
    #[serde(default = "default_max_number")]
    pub max_number: u64,
    /// Targets lie in 1..=max_target (max_number..=999999).
    #[serde(default = "default_max_target")]
    pub max_target: u64,
}

fn default_symbols() -> usize {
    8
}
fn default_n() -> usize {
    8
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
fn default_n_numbers() -> usize {
    4
}
fn default_max_number() -> u64 {
    20
}
fn default_max_target() -> u64 {
    100
}

/// Checks `lo <= v <= hi`, naming the field otherwise.
fn check_range<T: PartialOrd + std::fmt::Display>(field: &'static str, v: T, lo: T, hi: T) -> Result<(), FieldError> {
    if v < lo || v > hi {
        return Err(value_err(field, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(())
}

/// Number of decimal digits of `v`.
fn digits(mut v: u64) -> usize {
    let mut d = 1;
    while v >= 10 {
        v /= 10;
        d += 1;
    }
    d
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

impl CountdownSpec {
    /// Checks every parameter range, naming the field at fault.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range("data.n_numbers", self.n_numbers, 1, 8)?;
        check_range("data.max_number", self.max_number, 1, 9999)?;
        if self.max_target < self.max_number || self.max_target > 999_999 {
            return Err(value_err(
                "data.max_target",
                format!(
                    "{} is outside max_number..=999999 = {}..=999999 (a single number must always be a valid answer)",
                    self.max_target, self.max_number
                ),
            ));
        }
        Ok(())
    }

    /// Characters of the (left-padded) prompt: `n1,n2,…,nN=T:` at the widest.
    fn prompt_len(&self) -> usize {
        let n = self.n_numbers;
        n * digits(self.max_number) + (n - 1) + 1 + digits(self.max_target) + 1
    }

    /// Characters of the (right-padded) completion: the longest expression the generator writes.
    fn completion_len(&self) -> usize {
        let n = self.n_numbers;
        // N numbers, N − 1 operators, and at most one pair of parentheses per non-root inner node.
        n * digits(self.max_number) + (n - 1) + 2 * n.saturating_sub(2)
    }
}

impl TaskSpec {
    /// Checks every parameter range, naming the field at fault.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            TaskSpec::HmmMixture(s) => s.validate(),
            TaskSpec::Permutation(s) => s.validate(),
            TaskSpec::Countdown(s) => s.validate(),
        }
    }

    /// The task's name as written in `task = "…"`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskSpec::HmmMixture(_) => "hmm_mixture",
            TaskSpec::Permutation(_) => "permutation",
            TaskSpec::Countdown(_) => "countdown",
        }
    }

    /// The task's alphabet (meaningful once [`TaskSpec::validate`] passed).
    pub fn alphabet(&self) -> TaskAlphabet {
        match self {
            TaskSpec::HmmMixture(s) => TaskAlphabet::Letters(s.symbols.min(MAX_LETTERS) as u8),
            TaskSpec::Permutation(s) => TaskAlphabet::LettersSep(s.symbols.min(MAX_LETTERS) as u8),
            TaskSpec::Countdown(_) => TaskAlphabet::Arithmetic,
        }
    }

    /// Vocabulary size of [`TaskSpec::alphabet`].
    pub fn vocab_size(&self) -> usize {
        self.alphabet().vocab_size()
    }

    /// Tokens per sequence, the final target included (meaningful once validated).
    pub fn seq_len(&self) -> usize {
        match self {
            TaskSpec::HmmMixture(s) => s.seq_len,
            TaskSpec::Permutation(s) => s.n.saturating_mul(2).saturating_add(1),
            TaskSpec::Countdown(s) => s.prompt_len() + s.completion_len(),
        }
    }

    /// Prompt tokens given at generation (meaningful once validated).
    pub fn prompt_len(&self) -> usize {
        match self {
            TaskSpec::HmmMixture(s) => s.prompt_len,
            TaskSpec::Permutation(s) => s.n.saturating_add(1),
            TaskSpec::Countdown(s) => s.prompt_len(),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Shared randomness and numerics
// ----------------------------------------------------------------------------------------------

/// The RNG of the world of a task kind (`kind` tags 1 = mixture, 2 = permutation).
fn world_rng(world_seed: u64, kind: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_seed(world_seed, &[WORLD_TAG, kind]))
}

/// The RNG of example `index` of `split`: `stream_seed(seed, &[split, index])`.
fn example_rng(seed: u64, split: Split, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_seed(seed, &[split as u64, index]))
}

/// The RNG of training row (step, micro, row): `stream_seed(seed, &[0, step, micro, row])`.
fn train_rng(seed: u64, step: u64, micro: u64, row: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_seed(seed, &[Split::Train as u64, step, micro, row]))
}

/// A uniform draw in (0, 1].
fn open01<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.random::<f64>()
}

/// A standard normal draw (Box–Muller, the cosine half).
fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let r = (-2.0 * open01(rng).ln()).sqrt();
    r * (2.0 * PI * rng.random::<f64>()).cos()
}

/// The natural log of a Gamma(shape, 1) draw, safe for tiny shapes.
///
/// Marsaglia–Tsang for shape ≥ 1; for shape < 1 the boost `G(a) = G(a+1)·U^(1/a)` is applied in
/// log space (`ln U / a`), so rows never underflow to all zeros.
fn ln_gamma_draw<R: Rng + ?Sized>(rng: &mut R, shape: f64) -> f64 {
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
fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// Index drawn from unnormalised weights `row` with a uniform `u` in [0, 1).
fn categorical(row: &[f64], u: f64) -> usize {
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
fn check_ids(ids: &[u32], vocab_size: usize) -> Result<(), TaskError> {
    match ids.iter().enumerate().find(|&(_, &id)| id as usize >= vocab_size) {
        Some((position, &id)) => Err(TaskError::TokenOutOfRange { id, position, vocab_size }),
        None => Ok(()),
    }
}

/// Total NLL over total predicted tokens (`len − 1` per sequence).
fn per_token<S: AsRef<[u32]>>(seqs: &[S], nll: impl Fn(&[u32]) -> Result<f64, TaskError>) -> Result<f64, TaskError> {
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

// ----------------------------------------------------------------------------------------------
// Task 1: mixture of K Markov chains
// ----------------------------------------------------------------------------------------------

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

// ----------------------------------------------------------------------------------------------
// Task 2: hidden permutation transduction
// ----------------------------------------------------------------------------------------------

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

// ----------------------------------------------------------------------------------------------
// Task 3: countdown-style arithmetic
// ----------------------------------------------------------------------------------------------

/// One countdown problem: a multiset of numbers and a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountdownProblem {
    /// The numbers, in prompt order (each usable at most as often as it appears).
    pub numbers: Vec<u64>,
    /// The value to reach.
    pub target: u64,
}

/// A generated countdown example: the problem and the training expression that solves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountdownExample {
    /// The problem shown in the prompt.
    pub problem: CountdownProblem,
    /// The training completion, without padding.
    pub expression: String,
}

/// The scorer's verdict on one countdown completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Well formed, uses available numbers only, and equals the target.
    Correct,
    /// Not an expression of the grammar (or empty, or over 1024 characters).
    Malformed,
    /// Uses a number absent from the problem, or more often than it appears.
    UnavailableNumber,
    /// Divides by zero or divides inexactly.
    BadDivision,
    /// An intermediate value leaves the i128 range.
    Overflow,
    /// Evaluates to a value other than the target.
    WrongValue,
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Correct`].
    pub fn is_correct(self) -> bool {
        self == Verdict::Correct
    }
}

/// Countdown expression syntax tree.
#[derive(Debug)]
enum Expr {
    /// A literal; `None` when it does not fit in u128.
    Num(Option<u128>),
    /// `left op right`, op one of `+ - * /`.
    Bin(Box<Expr>, u8, Box<Expr>),
}

/// Recursive-descent parser over the countdown grammar:
/// `expr := term (('+'|'-') term)*`, `term := factor (('*'|'/') factor)*`,
/// `factor := number | '(' expr ')'`, numbers without leading zeros.
struct Parser<'a> {
    /// The expression's bytes.
    s: &'a [u8],
    /// Cursor.
    pos: usize,
}

impl Parser<'_> {
    /// The byte at the cursor.
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// `expr` at the cursor.
    fn expr(&mut self) -> Option<Expr> {
        let mut left = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            left = Expr::Bin(Box::new(left), op, Box::new(self.term()?));
        }
        Some(left)
    }

    /// `term` at the cursor.
    fn term(&mut self) -> Option<Expr> {
        let mut left = self.factor()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.pos += 1;
            left = Expr::Bin(Box::new(left), op, Box::new(self.factor()?));
        }
        Some(left)
    }

    /// `factor` at the cursor.
    fn factor(&mut self) -> Option<Expr> {
        match self.peek()? {
            b'(' => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek()? != b')' {
                    return None;
                }
                self.pos += 1;
                Some(e)
            }
            b'0'..=b'9' => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
                let lit = &self.s[start..self.pos];
                if lit.len() > 1 && lit[0] == b'0' {
                    return None;
                }
                let value =
                    lit.iter().try_fold(0u128, |acc, &d| acc.checked_mul(10)?.checked_add(u128::from(d - b'0')));
                Some(Expr::Num(value))
            }
            _ => None,
        }
    }
}

/// Parses a whole expression, `None` when malformed.
fn parse_expression(text: &str) -> Option<Expr> {
    if text.len() > MAX_EXPR_CHARS {
        return None;
    }
    let mut p = Parser { s: text.as_bytes(), pos: 0 };
    let e = p.expr()?;
    (p.pos == p.s.len()).then_some(e)
}

/// Literals of an expression, left to right.
fn literals(e: &Expr, out: &mut Vec<Option<u128>>) {
    match e {
        Expr::Num(v) => out.push(*v),
        Expr::Bin(a, _, b) => {
            literals(a, out);
            literals(b, out);
        }
    }
}

/// Exact integer value of an expression (checked i128, exact division only).
fn evaluate(e: &Expr) -> Result<i128, Verdict> {
    match e {
        Expr::Num(v) => v.and_then(|v| i128::try_from(v).ok()).ok_or(Verdict::Overflow),
        Expr::Bin(a, op, b) => {
            let (a, b) = (evaluate(a)?, evaluate(b)?);
            match op {
                b'+' => a.checked_add(b).ok_or(Verdict::Overflow),
                b'-' => a.checked_sub(b).ok_or(Verdict::Overflow),
                b'*' => a.checked_mul(b).ok_or(Verdict::Overflow),
                _ => {
                    if b == 0 {
                        return Err(Verdict::BadDivision);
                    }
                    let q = a.checked_div(b).ok_or(Verdict::Overflow)?;
                    if a.checked_rem(b) != Some(0) {
                        return Err(Verdict::BadDivision);
                    }
                    Ok(q)
                }
            }
        }
    }
}

/// Scores one expression against a problem; never panics.
///
/// Checks, in order: the grammar (digits, `+ - * /`, parentheses; no unary minus, no leading
/// zeros, no spaces), that every literal is an available number (each at most its
/// multiplicity), then the exact value: integer arithmetic, division only when exact, overflow
/// of i128 reported, never wrapped. Numbers need not all be used.
pub fn check_expression(numbers: &[u64], target: u64, expr: &str) -> Verdict {
    let Some(ast) = parse_expression(expr) else {
        return Verdict::Malformed;
    };
    let mut available: HashMap<u128, usize> = HashMap::new();
    for &n in numbers {
        *available.entry(u128::from(n)).or_insert(0) += 1;
    }
    let mut lits = Vec::new();
    literals(&ast, &mut lits);
    for lit in lits {
        match lit.and_then(|v| available.get_mut(&v)) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return Verdict::UnavailableNumber,
        }
    }
    match evaluate(&ast) {
        Err(v) => v,
        Ok(value) if value == i128::from(target) => Verdict::Correct,
        Ok(_) => Verdict::WrongValue,
    }
}

/// Unbiased pass@k from `n` samples of which `c` are correct: `1 − C(n−c, k) / C(n, k)`.
///
/// `None` unless `1 ≤ k ≤ n` and `c ≤ n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    // C(n−c, k) / C(n, k) = Π_{i = n−c+1}^{n} (1 − k / i).
    Some(1.0 - (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>())
}

/// A node of a generated expression tree: its value, text and precedence (3 literal, 2 `* /`, 1 `+ -`).
struct Node {
    /// Exact value (always a positive integer).
    value: u128,
    /// Text with minimal parentheses.
    text: String,
    /// Precedence of the top operator.
    prec: u8,
}

impl Node {
    /// `a op b`, parenthesising operands only where precedence or (for `-` and `/`) order needs it.
    fn combine(a: Node, op: u8, b: Node, value: u128) -> Node {
        let p = if matches!(op, b'*' | b'/') { 2 } else { 1 };
        let left = if a.prec < p { format!("({})", a.text) } else { a.text };
        let right_needs = b.prec < p || (b.prec == p && matches!(op, b'-' | b'/'));
        let right = if right_needs { format!("({})", b.text) } else { b.text };
        Node { value, text: format!("{left}{}{right}", char::from(op)), prec: p }
    }
}

/// Countdown-style arithmetic: reach the target with `+ - * /` and parentheses.
///
/// Format: prompt `n1,n2,…,nN=T:` left-padded with [`PAD`] to `prompt_len`; completion an
/// expression right-padded with [`PAD`]. Draw order of one example (a spec): N numbers
/// `random_range(1..=M)`; then up to 256 attempts, each drawing a subset size
/// `random_range(min(2, N)..=N)`, a partial Fisher–Yates subset, and a random tree that combines
/// two random nodes at a time with an operator drawn among those keeping every intermediate a
/// positive integer (`-` only when a > b, `/` only when exact). The first attempt with target
/// ≤ max_target wins; if none does, a single random number is the answer.
#[derive(Debug, Clone)]
pub struct Countdown {
    /// Run seed of the example streams.
    seed: u64,
    /// The parameters.
    spec: CountdownSpec,
}

impl Countdown {
    /// Builds the task from `spec` (validated first); `seed` keys the example streams.
    pub fn new(spec: &CountdownSpec, seed: u64) -> Result<Self, FieldError> {
        spec.validate()?;
        Ok(Self { seed, spec: spec.clone() })
    }

    /// The parameters.
    pub fn spec(&self) -> &CountdownSpec {
        &self.spec
    }

    /// Prompt characters (and tokens).
    pub fn prompt_len(&self) -> usize {
        self.spec.prompt_len()
    }

    /// Completion characters (and tokens).
    pub fn completion_len(&self) -> usize {
        self.spec.completion_len()
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.prompt_len() + self.completion_len()
    }

    /// Draws one problem and its training expression.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> CountdownExample {
        let n = self.spec.n_numbers;
        let numbers: Vec<u64> = (0..n).map(|_| rng.random_range(1..=self.spec.max_number)).collect();
        for _ in 0..COUNTDOWN_ATTEMPTS {
            let size = rng.random_range(n.min(2) as u32..=n as u32) as usize;
            let mut idx: Vec<usize> = (0..n).collect();
            for i in 0..size {
                let j = rng.random_range(i as u32..n as u32) as usize;
                idx.swap(i, j);
            }
            let mut nodes: Vec<Node> = idx[..size]
                .iter()
                .map(|&i| Node { value: u128::from(numbers[i]), text: numbers[i].to_string(), prec: 3 })
                .collect();
            while nodes.len() > 1 {
                let a = nodes.swap_remove(rng.random_range(0..nodes.len() as u32) as usize);
                let b = nodes.swap_remove(rng.random_range(0..nodes.len() as u32) as usize);
                let mut ops: Vec<(u8, u128)> = vec![(b'+', a.value + b.value)];
                if let Some(v) = a.value.checked_mul(b.value) {
                    ops.push((b'*', v));
                }
                if a.value > b.value {
                    ops.push((b'-', a.value - b.value));
                }
                if a.value.is_multiple_of(b.value) {
                    ops.push((b'/', a.value / b.value));
                }
                let (op, value) = ops[rng.random_range(0..ops.len() as u32) as usize];
                nodes.push(Node::combine(a, op, b, value));
            }
            let root = nodes.swap_remove(0);
            if root.value <= u128::from(self.spec.max_target) {
                let problem = CountdownProblem { numbers, target: root.value as u64 };
                return CountdownExample { problem, expression: root.text };
            }
        }
        let pick = numbers[rng.random_range(0..n as u32) as usize];
        CountdownExample { problem: CountdownProblem { numbers, target: pick }, expression: pick.to_string() }
    }

    /// Example `index` of `split`.
    pub fn example(&self, split: Split, index: u64) -> CountdownExample {
        self.sample(&mut example_rng(self.seed, split, index))
    }

    /// Training row (step, micro, row).
    pub fn train_example(&self, step: u64, micro: u64, row: u64) -> CountdownExample {
        self.sample(&mut train_rng(self.seed, step, micro, row))
    }

    /// The prompt text of a problem within the task's ranges, left-padded to `prompt_len`.
    pub fn prompt_text(&self, problem: &CountdownProblem) -> Result<String, TaskError> {
        let s = &self.spec;
        let ok = problem.numbers.len() == s.n_numbers
            && problem.numbers.iter().all(|&x| (1..=s.max_number).contains(&x))
            && (1..=s.max_target).contains(&problem.target);
        if !ok {
            return Err(TaskError::MalformedPrompt(format!("problem {problem:?} is outside the task's ranges")));
        }
        let nums: Vec<String> = problem.numbers.iter().map(u64::to_string).collect();
        let body = format!("{}={}:", nums.join(","), problem.target);
        Ok(format!("{}{body}", PAD.to_string().repeat(self.prompt_len() - body.len())))
    }

    /// The token ids of a generated example: padded prompt then padded expression.
    pub fn example_ids_of(&self, ex: &CountdownExample) -> Vec<u32> {
        let prompt = self.prompt_text(&ex.problem).unwrap_or_default();
        let pad = self.completion_len().saturating_sub(ex.expression.len());
        let text = format!("{prompt}{}{}", ex.expression, PAD.to_string().repeat(pad));
        TaskAlphabet::Arithmetic.encode(&text).unwrap_or_default()
    }

    /// Parses a prompt (exactly `prompt_len` tokens) back into its problem.
    pub fn parse_prompt(&self, prompt: &[u32]) -> Result<CountdownProblem, TaskError> {
        let bad = |m: String| TaskError::MalformedPrompt(m);
        if prompt.len() != self.prompt_len() {
            return Err(bad(format!("{} tokens, expected {}", prompt.len(), self.prompt_len())));
        }
        let text = TaskAlphabet::Arithmetic.decode(prompt).map_err(|e| bad(e.to_string()))?;
        let body = text.trim_start_matches(PAD);
        let (lhs, target) = body
            .strip_suffix(':')
            .and_then(|b| b.split_once('='))
            .ok_or_else(|| bad(format!("'{text}' is not 'n1,…,nN=T:'")))?;
        let number = |t: &str, max: u64| -> Option<u64> {
            let canonical = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && !t.starts_with('0');
            canonical.then(|| t.parse().ok()).flatten().filter(|v| (1..=max).contains(v))
        };
        let numbers: Option<Vec<u64>> = lhs.split(',').map(|t| number(t, self.spec.max_number)).collect();
        let numbers = numbers.filter(|v| v.len() == self.spec.n_numbers).ok_or_else(|| {
            bad(format!("'{lhs}' is not {} numbers in 1..={}", self.spec.n_numbers, self.spec.max_number))
        })?;
        let target = number(target, self.spec.max_target)
            .ok_or_else(|| bad(format!("target '{target}' is not in 1..={}", self.spec.max_target)))?;
        Ok(CountdownProblem { numbers, target })
    }

    /// The expression text of a completion: characters up to the first pad (the rest is ignored).
    ///
    /// `None` when an id before the first pad is outside the alphabet.
    pub fn completion_expression(completion: &[u32]) -> Option<String> {
        let pad = TaskAlphabet::Arithmetic.id_of(PAD)?;
        completion.iter().take_while(|&&id| id != pad).map(|&id| TaskAlphabet::Arithmetic.char_of(id)).collect()
    }

    /// Scores a completion against the problem in `prompt` (a malformed prompt is an error).
    pub fn score(&self, prompt: &[u32], completion: &[u32]) -> Result<Verdict, TaskError> {
        let problem = self.parse_prompt(prompt)?;
        Ok(match Self::completion_expression(completion) {
            Some(expr) => check_expression(&problem.numbers, problem.target, &expr),
            None => Verdict::Malformed,
        })
    }

    /// Number of distinct correct expressions (texts up to the first pad) among `completions`.
    pub fn distinct_valid<S: AsRef<[u32]>>(&self, prompt: &[u32], completions: &[S]) -> Result<usize, TaskError> {
        let problem = self.parse_prompt(prompt)?;
        let correct: HashSet<String> = completions
            .iter()
            .filter_map(|c| Self::completion_expression(c.as_ref()))
            .filter(|e| check_expression(&problem.numbers, problem.target, e).is_correct())
            .collect();
        Ok(correct.len())
    }
}

// ----------------------------------------------------------------------------------------------
// The task enum
// ----------------------------------------------------------------------------------------------

/// A built evaluation task: world drawn, example streams keyed by the run seed.
#[derive(Debug, Clone)]
pub enum Task {
    /// Mixture of K Markov chains.
    HmmMixture(HmmMixture),
    /// Hidden permutation transduction.
    Permutation(Permutation),
    /// Countdown-style arithmetic.
    Countdown(Countdown),
}

impl Task {
    /// Validates `spec`, draws its world, and keys the example streams with `seed`.
    pub fn new(spec: &TaskSpec, seed: u64) -> Result<Self, FieldError> {
        Ok(match spec {
            TaskSpec::HmmMixture(s) => Task::HmmMixture(HmmMixture::new(s, seed)?),
            TaskSpec::Permutation(s) => Task::Permutation(Permutation::new(s, seed)?),
            TaskSpec::Countdown(s) => Task::Countdown(Countdown::new(s, seed)?),
        })
    }

    /// The task's name as written in `task = "…"`.
    pub fn name(&self) -> &'static str {
        match self {
            Task::HmmMixture(_) => "hmm_mixture",
            Task::Permutation(_) => "permutation",
            Task::Countdown(_) => "countdown",
        }
    }

    /// The task's alphabet.
    pub fn alphabet(&self) -> TaskAlphabet {
        match self {
            Task::HmmMixture(t) => TaskAlphabet::Letters(t.symbols as u8),
            Task::Permutation(t) => TaskAlphabet::LettersSep(t.symbols as u8),
            Task::Countdown(_) => TaskAlphabet::Arithmetic,
        }
    }

    /// The tokenizer of the task's alphabet.
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::Task(self.alphabet())
    }

    /// Number of distinct token ids.
    pub fn vocab_size(&self) -> usize {
        self.alphabet().vocab_size()
    }

    /// Tokens per sequence, the final target included.
    pub fn seq_len(&self) -> usize {
        match self {
            Task::HmmMixture(t) => t.seq_len(),
            Task::Permutation(t) => t.seq_len(),
            Task::Countdown(t) => t.seq_len(),
        }
    }

    /// Prompt tokens given at generation; the remaining `seq_len − prompt_len` are the completion.
    pub fn prompt_len(&self) -> usize {
        match self {
            Task::HmmMixture(t) => t.prompt_len(),
            Task::Permutation(t) => t.prompt_len(),
            Task::Countdown(t) => t.prompt_len(),
        }
    }

    /// Encodes text in the task's alphabet.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        self.alphabet().encode(text)
    }

    /// Decodes ids in the task's alphabet.
    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.alphabet().decode(ids)
    }

    /// Splits a sequence into (prompt, completion) at `prompt_len` (or its end if shorter).
    pub fn split<'a>(&self, ids: &'a [u32]) -> (&'a [u32], &'a [u32]) {
        ids.split_at(self.prompt_len().min(ids.len()))
    }

    /// Example `index` of `split`, from `stream_seed(seed, &[split, index])`.
    pub fn example_ids(&self, split: Split, index: u64) -> Vec<u32> {
        match self {
            Task::HmmMixture(t) => t.example(split, index).0,
            Task::Permutation(t) => t.example(split, index).0,
            Task::Countdown(t) => t.example_ids_of(&t.example(split, index)),
        }
    }

    /// Training row (step, micro, row), from `stream_seed(seed, &[0, step, micro, row])`.
    pub fn train_ids(&self, step: u64, micro: u64, row: u64) -> Vec<u32> {
        match self {
            Task::HmmMixture(t) => t.train_example(step, micro, row).0,
            Task::Permutation(t) => t.train_example(step, micro, row).0,
            Task::Countdown(t) => t.example_ids_of(&t.train_example(step, micro, row)),
        }
    }

    /// A training batch: rows `0..batch_size` of (step, micro).
    pub fn train_batch(&self, step: u64, micro: u64, batch_size: usize) -> Vec<Vec<u32>> {
        (0..batch_size as u64).map(|row| self.train_ids(step, micro, row)).collect()
    }

    /// The fixed validation set: `Split::Val` indices `0..n_batches·batch_size`, in batches.
    pub fn val_batches(&self, n_batches: usize, batch_size: usize) -> Vec<Vec<Vec<u32>>> {
        (0..n_batches as u64)
            .map(|b| (0..batch_size as u64).map(|r| self.example_ids(Split::Val, b * batch_size as u64 + r)).collect())
            .collect()
    }

    /// Exact Bayes-optimal NLL (nats) of tokens 1.. given token 0; countdown has none.
    pub fn bayes_nll_nats(&self, ids: &[u32]) -> Result<f64, TaskError> {
        match self {
            Task::HmmMixture(t) => t.bayes_nll_nats(ids),
            Task::Permutation(t) => t.bayes_nll_nats(ids),
            Task::Countdown(_) => Err(TaskError::NoBayes("countdown")),
        }
    }

    /// Bayes-optimal NLL in nats per predicted token over `seqs`; countdown has none.
    pub fn bayes_nll_per_token<S: AsRef<[u32]>>(&self, seqs: &[S]) -> Result<f64, TaskError> {
        match self {
            Task::HmmMixture(t) => t.bayes_nll_per_token(seqs),
            Task::Permutation(t) => t.bayes_nll_per_token(seqs),
            Task::Countdown(_) => Err(TaskError::NoBayes("countdown")),
        }
    }

    /// Whether a completion is correct: valid permutation output, or countdown expression equal
    /// to the target; the mixture task has no scorer (use its NLLs).
    pub fn score(&self, prompt: &[u32], completion: &[u32]) -> Result<bool, TaskError> {
        match self {
            Task::HmmMixture(_) => Err(TaskError::NoScorer("hmm_mixture")),
            Task::Permutation(t) => t.is_valid(prompt, completion),
            Task::Countdown(t) => Ok(t.score(prompt, completion)?.is_correct()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataConfig, RunConfig};
    use crate::data::Dataset;
    use proptest::prelude::*;

    /// Pearson χ² statistic of counts against a uniform distribution.
    fn chi2_uniform(counts: &[usize]) -> f64 {
        let total: usize = counts.iter().sum();
        let e = total as f64 / counts.len() as f64;
        counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
    }

    fn hmm(k: usize, symbols: usize, seq_len: usize, alpha: f64, world_seed: u64, seed: u64) -> HmmMixture {
        let spec = HmmSpec { k, symbols, seq_len, alpha, prompt_len: 1, world_seed };
        HmmMixture::new(&spec, seed).unwrap()
    }

    fn perm(k: usize, n: usize, symbols: usize, world_seed: u64, seed: u64) -> Permutation {
        Permutation::new(&PermutationSpec { k, n, symbols, world_seed }, seed).unwrap()
    }

    fn countdown(seed: u64) -> Countdown {
        Countdown::new(&CountdownSpec { n_numbers: 4, max_number: 20, max_target: 100 }, seed).unwrap()
    }

    // ---------------------------------------------------------------- alphabets

    #[test]
    fn alphabets_map_ids_and_reject_strangers() {
        let a = TaskAlphabet::Letters(4);
        assert_eq!(a.vocab_size(), 4);
        assert_eq!(a.chars(), "abcd");
        assert_eq!(a.encode("dcba").unwrap(), vec![3, 2, 1, 0]);
        let msg = a.encode("abe").unwrap_err().to_string();
        assert!(msg.contains("'e'") && msg.contains("position 2") && msg.contains("abcd"), "{msg}");
        assert!(a.decode(&[4]).unwrap_err().to_string().contains("position 0"));
        let s = TaskAlphabet::LettersSep(3);
        assert_eq!(s.chars(), "abc;");
        assert_eq!(s.encode("ab;c").unwrap(), vec![0, 1, 3, 2]);
        assert!(TaskAlphabet::Letters(3).encode(";").is_err());
        let c = TaskAlphabet::Arithmetic;
        assert_eq!(c.vocab_size(), 20);
        assert_eq!(c.chars(), ARITHMETIC);
        let text = "..3,7,12,5=36:(7-5)*12/3+1.";
        assert_eq!(c.decode(&c.encode(text).unwrap()).unwrap(), text);
        assert!(c.encode("3 + 4").is_err());
        // 62 letters at most, even from a hand-made (deserialized) value.
        assert_eq!(TaskAlphabet::Letters(200).vocab_size(), 62);
        assert_eq!(TaskAlphabet::LettersSep(62).chars().chars().last(), Some(';'));
        assert_eq!(TaskAlphabet::LettersSep(62).char_of(63), None);
        assert_eq!(TaskAlphabet::Letters(62).char_of(u32::MAX), None);
    }

    #[test]
    fn tokenizer_task_variant_round_trips() {
        let tok = Tokenizer::Task(TaskAlphabet::LettersSep(8));
        let copy = tok.clone();
        assert_eq!(copy.vocab_size(), 9);
        assert_eq!(tok.name(), "task");
        assert_eq!(tok.decode(&tok.encode("abh;ha").unwrap()).unwrap(), "abh;ha");
        let msg = tok.decode(&[9]).unwrap_err().to_string();
        assert!(msg.contains("9") && msg.contains("task"), "{msg}");
        assert!(tok.encode("z").unwrap_err().to_string().contains("'z'"));
        for t in [tok, Tokenizer::Task(TaskAlphabet::Arithmetic), Tokenizer::Task(TaskAlphabet::Letters(5))] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Tokenizer>(&json).unwrap(), t, "{json}");
        }
    }

    // ---------------------------------------------------------------- task 1: mixture of chains

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

    // ---------------------------------------------------------------- task 2: permutations

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

    // ---------------------------------------------------------------- task 3: countdown

    #[test]
    fn countdown_training_examples_all_score_correct() {
        let t = countdown(17);
        let task = Task::Countdown(t.clone());
        // 4 numbers ≤ 20 (2 digits), target ≤ 100 (3 digits): prompt 4·2+3+1+3+1 = 16, completion 4·2+3+4 = 15.
        assert_eq!((t.prompt_len(), t.completion_len(), task.seq_len(), task.vocab_size()), (16, 15, 31, 20));
        let (mut used, mut parens, mut seen) = (0usize, 0usize, HashSet::new());
        let mut ops = HashMap::new();
        let n = 3000;
        for i in 0..n {
            let ex = t.example(Split::Train, i);
            let ids = task.example_ids(Split::Train, i);
            assert_eq!(ids, t.example_ids_of(&ex));
            assert_eq!(ids.len(), 31);
            let (prompt, completion) = task.split(&ids);
            assert_eq!(t.parse_prompt(prompt).unwrap(), ex.problem);
            assert_eq!(t.score(prompt, completion).unwrap(), Verdict::Correct, "{}", task.decode(&ids).unwrap());
            assert!(task.score(prompt, completion).unwrap());
            assert!((1..=100).contains(&ex.problem.target));
            assert!(ex.problem.numbers.iter().all(|&x| (1..=20).contains(&x)));
            assert_eq!(Countdown::completion_expression(completion).unwrap(), ex.expression);
            let text = task.decode(&ids).unwrap();
            assert!(text.ends_with(PAD) || ex.expression.len() == 15, "{text}");
            used += ex.expression.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).count();
            parens += usize::from(ex.expression.contains('('));
            for c in ex.expression.chars().filter(|c| "+-*/".contains(*c)) {
                *ops.entry(c).or_insert(0usize) += 1;
            }
            seen.insert(ids);
        }
        // Not degenerate: several numbers per answer, every operator, nested forms, varied problems.
        assert!(used as f64 / n as f64 > 2.0, "{used}");
        assert!(parens > n as usize / 20, "{parens}");
        assert!(ops.len() == 4 && ops.values().all(|&c| c > 100), "{ops:?}");
        assert!(seen.len() > n as usize * 95 / 100, "{}", seen.len());
        assert_eq!(t.example(Split::Val, 4), countdown(17).example(Split::Val, 4));
        assert_eq!(task.train_ids(2, 0, 1), t.example_ids_of(&t.train_example(2, 0, 1)));
        assert_eq!(task.bayes_nll_nats(&ids_of(&task, "..1,2,3,4=5:2+3")), Err(TaskError::NoBayes("countdown")));
    }

    fn ids_of(task: &Task, s: &str) -> Vec<u32> {
        task.encode(s).unwrap()
    }

    #[test]
    fn countdown_extreme_specs_generate_valid_examples() {
        for spec in [
            CountdownSpec { n_numbers: 1, max_number: 1, max_target: 1 },
            CountdownSpec { n_numbers: 8, max_number: 9999, max_target: 999_999 },
            CountdownSpec { n_numbers: 8, max_number: 9999, max_target: 9999 },
            CountdownSpec { n_numbers: 2, max_number: 3, max_target: 3 },
        ] {
            let t = Countdown::new(&spec, 1).unwrap();
            let task = Task::Countdown(t.clone());
            for i in 0..200 {
                let ids = task.example_ids(Split::Val, i);
                assert_eq!(ids.len(), task.seq_len());
                let (p, c) = task.split(&ids);
                assert_eq!(t.score(p, c).unwrap(), Verdict::Correct, "{spec:?}: {}", task.decode(&ids).unwrap());
            }
        }
    }

    #[test]
    fn countdown_scorer_hand_cases() {
        let nums = [3, 7, 12, 5];
        let chk = |e: &str| check_expression(&nums, 36, e);
        assert_eq!(chk("3*12"), Verdict::Correct);
        assert_eq!(chk("12*3"), Verdict::Correct);
        assert_eq!(chk("(7-5)*12+12"), Verdict::UnavailableNumber); // 12 twice
        assert_eq!(chk("(7-5)*(3+12+3)"), Verdict::UnavailableNumber); // 3 twice
        assert_eq!(chk("7*5+1"), Verdict::UnavailableNumber); // 1 not in the list
        assert_eq!(chk("3+7"), Verdict::WrongValue);
        assert_eq!(chk("3*(12"), Verdict::Malformed);
        assert_eq!(chk("3*12)"), Verdict::Malformed);
        assert_eq!(chk(""), Verdict::Malformed);
        assert_eq!(chk("3**12"), Verdict::Malformed);
        assert_eq!(chk("03*12"), Verdict::Malformed);
        assert_eq!(chk("-3+12"), Verdict::Malformed);
        assert_eq!(chk("3 * 12"), Verdict::Malformed);
        assert_eq!(chk("3,12"), Verdict::Malformed);
        assert_eq!(chk("()"), Verdict::Malformed);
        assert_eq!(chk("12/5"), Verdict::BadDivision); // inexact
        assert_eq!(chk("(12+7-5-3)*3"), Verdict::UnavailableNumber);
        assert_eq!(chk("12*(7-5)+3*5-3"), Verdict::UnavailableNumber);
        assert_eq!(chk("(7+5)*3"), Verdict::Correct);
        assert_eq!(chk("12*(5-7)"), Verdict::WrongValue); // negative intermediates are fine
        assert_eq!(chk("12/(7-5)*(3+5)-12"), Verdict::UnavailableNumber);
        assert_eq!(check_expression(&[5, 5, 12], 1, "12/(5-5)"), Verdict::BadDivision); // by zero
        assert_eq!(check_expression(&[5, 5, 5], 2, "(5+5)/5"), Verdict::Correct);
        assert_eq!(check_expression(&[5, 5, 12], 25, "5*5"), Verdict::Correct);
        assert_eq!(check_expression(&[5, 5, 12], 125, "5*5*5"), Verdict::UnavailableNumber);
        assert_eq!(check_expression(&[6, 4, 3], 8, "6*4/3"), Verdict::Correct); // (6·4)/3 is exact
        assert_eq!(check_expression(&[6, 4, 3], 8, "6/3*4"), Verdict::Correct);
        assert_eq!(check_expression(&[7, 2, 3], 2, "7-2-3"), Verdict::Correct); // left-associative
        assert_eq!(check_expression(&[8, 4, 2], 1, "8/4/2"), Verdict::Correct);
        assert_eq!(check_expression(&[8, 4, 2], 4, "8/(4/2)"), Verdict::Correct);
        // Huge values: checked arithmetic, never a panic or a wrap.
        let big = [1 << 62; 3];
        assert_eq!(check_expression(&big, 1, "4611686018427387904*4611686018427387904"), Verdict::WrongValue);
        let cube = "4611686018427387904*4611686018427387904*4611686018427387904";
        assert_eq!(check_expression(&big, 1, cube), Verdict::Overflow); // 2^186
        let max = [u64::MAX; 2];
        assert_eq!(check_expression(&max, 1, "18446744073709551615*18446744073709551615"), Verdict::Overflow);
        assert_eq!(check_expression(&max, 0, "18446744073709551615-18446744073709551615"), Verdict::Correct);
        let long_lit = "9".repeat(60);
        assert_eq!(check_expression(&nums, 36, &long_lit), Verdict::UnavailableNumber);
        let deep = format!("{}3{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(check_expression(&nums, 3, &deep), Verdict::Malformed); // over 1024 chars
        let nested = format!("{}3{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(check_expression(&nums, 3, &nested), Verdict::Correct);
        assert_eq!(check_expression(&[1; 8], 8, "1+1+1+1+1+1+1+1"), Verdict::Correct);
        assert_eq!(check_expression(&[9999; 8], 1, &["9999"; 8].join("*")), Verdict::WrongValue);
    }

    #[test]
    fn countdown_scores_token_completions() {
        let t = countdown(0);
        let task = Task::Countdown(t.clone());
        let prompt = ids_of(&task, "....3,7,12,5=36:");
        assert_eq!(t.parse_prompt(&prompt).unwrap(), CountdownProblem { numbers: vec![3, 7, 12, 5], target: 36 });
        let s = |c: &str| t.score(&prompt, &ids_of(&task, c)).unwrap();
        assert_eq!(s("3*12..........."), Verdict::Correct);
        assert_eq!(s("3*12.+5+5+5+5.."), Verdict::Correct); // text after the first pad is ignored
        assert_eq!(s("3*12"), Verdict::Correct);
        assert_eq!(s("..............."), Verdict::Malformed);
        assert_eq!(s("3*12=36........"), Verdict::Malformed);
        assert_eq!(t.score(&prompt, &[1, 30]).unwrap(), Verdict::Malformed); // id out of range
        assert!(!task.score(&prompt, &ids_of(&task, "3+7")).unwrap());
        // Malformed prompts are errors.
        for bad in ["3,7,12,5=36:....", "....3,7,12,5=36.", "..3,7,12,5,1=36:", ".....3,7,12,5:36", "...3,7,12,25=36:"]
        {
            let ids = ids_of(&task, bad);
            assert!(matches!(t.parse_prompt(&ids), Err(TaskError::MalformedPrompt(_))), "{bad}");
        }
        assert!(t.parse_prompt(&ids_of(&task, "....3,7,12,5=36")).is_err()); // wrong length
        assert!(t.parse_prompt(&ids_of(&task, "...03,7,12,5=36:")).is_err()); // leading zero
        assert!(t.parse_prompt(&ids_of(&task, "...3,7,12,5=101:")).is_err()); // target too large
        let problem = CountdownProblem { numbers: vec![3, 7, 12, 5], target: 36 };
        assert_eq!(t.prompt_text(&problem).unwrap(), "....3,7,12,5=36:");
        assert!(t.prompt_text(&CountdownProblem { numbers: vec![3], target: 3 }).is_err());
    }

    #[test]
    fn pass_at_k_matches_hand_values() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(pass_at_k(5, 2, 1), 0.4));
        assert!(close(pass_at_k(5, 2, 5), 1.0));
        assert!(close(pass_at_k(5, 2, 3), 1.0 - 1.0 / 10.0)); // 1 − C(3,3)/C(5,3)
        assert!(close(pass_at_k(10, 3, 4), 1.0 - 35.0 / 210.0)); // 1 − C(7,4)/C(10,4)
        assert!(close(pass_at_k(10, 0, 4), 0.0));
        assert!(close(pass_at_k(10, 10, 1), 1.0));
        assert!(close(pass_at_k(200, 13, 1), 13.0 / 200.0));
        assert_eq!(pass_at_k(5, 2, 0), None);
        assert_eq!(pass_at_k(5, 2, 6), None);
        assert_eq!(pass_at_k(5, 6, 1), None);
    }

    #[test]
    fn distinct_valid_counts_distinct_correct_texts() {
        let t = countdown(0);
        let task = Task::Countdown(t.clone());
        let prompt = ids_of(&task, "....3,7,12,5=36:");
        let comps: Vec<Vec<u32>> = ["3*12...", "12*3...", "3*12.....", "3+7..", "(7+5)*3", "12+12+12", "3*12.5"]
            .iter()
            .map(|c| ids_of(&task, c))
            .collect();
        assert_eq!(t.distinct_valid(&prompt, &comps).unwrap(), 3);
        assert_eq!(t.distinct_valid(&prompt, &Vec::<Vec<u32>>::new()).unwrap(), 0);
        assert!(t.distinct_valid(&[0], &comps).is_err());
    }

    #[test]
    fn excess_nll_converts_nats_per_token_to_bits_per_sequence() {
        assert!((excess_nll_bits_per_seq(1.0, 1.0 - LN_2 / 63.0, 63) - 1.0).abs() < 1e-12);
        assert!((excess_nll_bits_per_seq(0.5, 0.5, 10)).abs() < 1e-15);
        assert!(excess_nll_bits_per_seq(0.4, 0.5, 10) < 0.0);
    }

    // ---------------------------------------------------------------- golden pins

    #[test]
    fn golden_examples_pin_worlds_and_streams() {
        // Regression pins (values recorded from this implementation): a change to the draw order,
        // the mixing function or rand's sampling would silently change every run.
        let h = Task::HmmMixture(hmm(4, 8, 24, 0.5, 0, 0));
        let p = Task::Permutation(perm(4, 8, 8, 0, 0));
        let c = Task::Countdown(countdown(0));
        let show = |t: &Task, split, i| t.decode(&t.example_ids(split, i)).unwrap();
        assert_eq!(show(&h, Split::Train, 0), GOLDEN[0]);
        assert_eq!(show(&h, Split::Val, 1), GOLDEN[1]);
        assert_eq!(show(&p, Split::Train, 0), GOLDEN[2]);
        assert_eq!(show(&p, Split::Val, 1), GOLDEN[3]);
        assert_eq!(show(&c, Split::Train, 0), GOLDEN[4]);
        assert_eq!(show(&c, Split::Val, 1), GOLDEN[5]);
    }

    const GOLDEN: [&str; 6] = [
        "gfehfehbfgfehfgfghbfehfa",
        "ghhedbbbbbbcebhebbbbfdfc",
        "gdehcgha;eahggdhc",
        "gbfehdea;gdefabeh",
        "..16,11,8,18=37:18+11+8........",
        ".18,15,20,13=36:20-15+13+18....",
    ];

    // ---------------------------------------------------------------- dataset and config

    #[test]
    fn dataset_task_batches_are_pure_functions() {
        let task = Task::Permutation(perm(8, 5, 4, 1, 3));
        let data = Dataset::Task(task.clone());
        assert_eq!((data.seq_len(), data.vocab_size()), (11, 5));
        assert_eq!(data.tokenizer(), Tokenizer::Task(TaskAlphabet::LettersSep(4)));
        let batch = data.train_batch(4, 1, 6);
        assert_eq!(batch, data.train_batch(4, 1, 6));
        assert_ne!(batch, data.train_batch(5, 1, 6));
        assert_ne!(batch, data.train_batch(4, 0, 6));
        for (row, ids) in batch.iter().enumerate() {
            assert_eq!(*ids, task.train_ids(4, 1, row as u64));
            assert_eq!(ids.len(), 11);
            assert!(data.tokenizer().decode(ids).is_ok());
        }
        let val = data.val_batches(3, 4);
        assert_eq!(val.len(), 3);
        for (b, rows) in val.iter().enumerate() {
            assert_eq!(rows.len(), 4);
            for (r, ids) in rows.iter().enumerate() {
                assert_eq!(*ids, task.example_ids(Split::Val, (b * 4 + r) as u64));
            }
        }
        assert_eq!(val, data.val_batches(3, 4));
    }

    const MODEL: &str = "[model]\nd_model = 32\nn_layers = 2\nn_heads = 2\nn_kv_heads = 1\nffn_hidden = 64\n\
                         [train]\nsteps = 1\nbatch_size = 2\nlr = 1e-3\nseed = 5\n";

    fn run(vocab: usize, max_seq: usize, data: &str) -> String {
        MODEL.replace("[model]\n", &format!("[model]\nvocab_size = {vocab}\nmax_seq_len = {max_seq}\n")) + data
    }

    const HMM_TOML: &str = "[data]\nkind = \"task\"\ntask = \"hmm_mixture\"\nk = 64\n";
    const PERM_TOML: &str =
        "[data]\nkind = \"task\"\ntask = \"permutation\"\nk = 16\nn = 6\nsymbols = 4\nworld_seed = 3\n";
    const COUNTDOWN_TOML: &str = "[data]\nkind = \"task\"\ntask = \"countdown\"\n";

    #[test]
    fn task_configs_round_trip_and_build_datasets() {
        for (text, vocab, seq_len) in [(HMM_TOML, 8, 64), (PERM_TOML, 5, 13), (COUNTDOWN_TOML, 20, 31)] {
            let cfg = RunConfig::from_toml_str(&run(vocab, seq_len - 1, text), "test", &[]).unwrap();
            let DataConfig::Task(spec) = &cfg.data else { panic!("not a task: {:?}", cfg.data) };
            assert_eq!((spec.vocab_size(), spec.seq_len()), (vocab, seq_len));
            let back = toml::to_string(&cfg).unwrap();
            assert!(
                back.contains("kind = \"task\"") && back.contains(&format!("task = \"{}\"", spec.name())),
                "{back}"
            );
            assert_eq!(RunConfig::from_toml_str(&back, "round trip", &[]).unwrap(), cfg, "{back}");
            let data = cfg.dataset().unwrap();
            assert_eq!((data.vocab_size(), data.seq_len()), (vocab, seq_len));
            assert_eq!(cfg.tokenizer().unwrap(), data.tokenizer());
            let Dataset::Task(task) = &data else { panic!("not a task dataset") };
            assert_eq!(task.prompt_len(), spec.prompt_len());
            // The run seed keys the examples; the world is the spec's.
            assert_eq!(data.train_batch(0, 0, 2), Task::new(spec, 5).unwrap().train_batch(0, 0, 2));
        }
        let cfg = RunConfig::from_toml_str(&run(8, 63, HMM_TOML), "test", &[]).unwrap();
        let want = HmmSpec { k: 64, symbols: 8, seq_len: 64, alpha: 0.5, prompt_len: 1, world_seed: 0 };
        assert_eq!(cfg.data, DataConfig::Task(TaskSpec::HmmMixture(want)));
        let cfg = RunConfig::from_toml_str(&run(20, 30, COUNTDOWN_TOML), "test", &[]).unwrap();
        let want = CountdownSpec { n_numbers: 4, max_number: 20, max_target: 100 };
        assert_eq!(cfg.data, DataConfig::Task(TaskSpec::Countdown(want)));
        // Integers are accepted for alpha, and overrides reach task fields.
        let cfg = RunConfig::from_toml_str(
            &run(6, 99, HMM_TOML),
            "test",
            &["data.alpha=2".into(), "data.symbols=6".into(), "data.seq_len=100".into()],
        )
        .unwrap();
        assert!(matches!(
            cfg.data,
            DataConfig::Task(TaskSpec::HmmMixture(HmmSpec { alpha: 2.0, symbols: 6, seq_len: 100, .. }))
        ));
    }

    #[test]
    fn task_config_errors_name_the_field() {
        let cases: &[(&str, usize, usize, &str, &str)] = &[
            (HMM_TOML, 8, 63, "data.k=0", "data.k"),
            (HMM_TOML, 8, 63, "data.k=100000", "data.k"),
            (HMM_TOML, 8, 63, "data.symbols=1", "data.symbols"),
            (HMM_TOML, 8, 63, "data.symbols=63", "data.symbols"),
            (HMM_TOML, 8, 63, "data.k=20000", "data.k"), // 20000 · 8² entries
            (HMM_TOML, 8, 63, "data.alpha=0", "data.alpha"),
            (HMM_TOML, 8, 63, "data.alpha=-1", "data.alpha"),
            (HMM_TOML, 8, 63, "data.alpha=nan", "data.alpha"),
            (HMM_TOML, 8, 63, "data.alpha=inf", "data.alpha"),
            (HMM_TOML, 8, 63, "data.seq_len=1", "data.seq_len"),
            (HMM_TOML, 8, 63, "data.prompt_len=64", "data.prompt_len"),
            (HMM_TOML, 8, 63, "data.prompt_len=0", "data.prompt_len"),
            // Type errors inside the tagged section name the section and the bad value, not the key.
            (HMM_TOML, 8, 63, "data.k=-3", "integer `-3`, expected usize in `data`"),
            (HMM_TOML, 8, 63, "data.bogus=1", "bogus"),
            (HMM_TOML, 8, 63, "data.n=4", "n"),
            (HMM_TOML, 8, 63, "data.task=\"nope\"", "nope"),
            (HMM_TOML, 9, 63, "data.k=2", "model.vocab_size"),
            (HMM_TOML, 8, 62, "data.k=2", "model.max_seq_len"),
            (PERM_TOML, 5, 12, "data.k=0", "data.k"),
            (PERM_TOML, 5, 12, "data.n=0", "data.n"),
            (PERM_TOML, 5, 12, "data.n=2000", "data.n"),
            (PERM_TOML, 5, 12, "data.symbols=1", "data.symbols"),
            (PERM_TOML, 5, 12, "data.k=721", "data.k"), // more than 6! permutations
            (PERM_TOML, 5, 12, "data.alpha=1", "alpha"),
            (PERM_TOML, 5, 11, "data.k=2", "model.max_seq_len"),
            (COUNTDOWN_TOML, 20, 30, "data.n_numbers=0", "data.n_numbers"),
            (COUNTDOWN_TOML, 20, 30, "data.n_numbers=9", "data.n_numbers"),
            (COUNTDOWN_TOML, 20, 30, "data.max_number=0", "data.max_number"),
            (COUNTDOWN_TOML, 20, 30, "data.max_number=100000", "data.max_number"),
            (COUNTDOWN_TOML, 20, 30, "data.max_target=5", "data.max_target"),
            (COUNTDOWN_TOML, 20, 30, "data.max_target=10000000", "data.max_target"),
            (COUNTDOWN_TOML, 20, 30, "data.k=3", "k"),
            (COUNTDOWN_TOML, 29, 30, "data.n_numbers=4", "model.vocab_size"),
        ];
        for &(text, vocab, max_seq, o, field) in cases {
            let e = RunConfig::from_toml_str(&run(vocab, max_seq, text), "test", &[o.to_string()]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(field), "{o}: {msg}");
            assert!(!msg.contains('\n'), "{o}: multi-line {msg}");
        }
        // Missing required k.
        let e = RunConfig::from_toml_str(&run(8, 63, "[data]\nkind = \"task\"\ntask = \"hmm_mixture\"\n"), "t", &[]);
        assert!(e.unwrap_err().to_string().contains("missing field `k`"));
        // Task::new validates too.
        let bad = TaskSpec::Permutation(PermutationSpec { k: 3, n: 2, symbols: 4, world_seed: 0 });
        assert!(Task::new(&bad, 0).unwrap_err().to_string().contains("data.k"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Any parameters give a task or a field-naming error, never a panic; built tasks emit
        /// sequences of the promised length and vocabulary, and their own examples score.
        #[test]
        fn task_construction_never_panics(
            which in 0usize..3,
            k in 0usize..5000,
            a in 0usize..80,
            b in 0usize..3000,
            alpha in -1.0f64..2000.0,
            prompt_len in 0usize..80,
            big in 0u64..2_000_000,
            seed in any::<u64>(),
        ) {
            let spec = match which {
                0 => TaskSpec::HmmMixture(HmmSpec { k, symbols: a, seq_len: b, alpha, prompt_len, world_seed: seed }),
                1 => TaskSpec::Permutation(PermutationSpec { k, n: b / 8, symbols: a, world_seed: seed }),
                _ => TaskSpec::Countdown(CountdownSpec { n_numbers: a / 8, max_number: b as u64 * 4, max_target: big }),
            };
            match Task::new(&spec, seed) {
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("data.") && !msg.contains('\n'), "{}", msg);
                    prop_assert!(spec.validate().is_err());
                }
                Ok(task) => {
                    prop_assert!(spec.validate().is_ok());
                    prop_assert_eq!(task.vocab_size(), spec.vocab_size());
                    prop_assert_eq!(task.seq_len(), spec.seq_len());
                    prop_assert_eq!(task.prompt_len(), spec.prompt_len());
                    prop_assert!(task.prompt_len() >= 1 && task.prompt_len() < task.seq_len());
                    let ids = task.train_ids(0, 0, seed % 7);
                    prop_assert_eq!(ids.len(), task.seq_len());
                    prop_assert!(ids.iter().all(|&i| (i as usize) < task.vocab_size()));
                    let (p, c) = task.split(&ids);
                    match &task {
                        Task::HmmMixture(_) => prop_assert!(task.bayes_nll_nats(&ids).unwrap().is_finite()),
                        _ => prop_assert!(task.score(p, c).unwrap()),
                    }
                }
            }
        }

        /// The countdown scorer never panics on arbitrary text or numbers.
        #[test]
        fn countdown_scorer_never_panics(
            numbers in proptest::collection::vec(any::<u64>(), 0..6),
            target in any::<u64>(),
            expr in "[0-9+*/()-]{0,40}",
            junk in "\\PC{0,40}",
        ) {
            let _ = check_expression(&numbers, target, &expr);
            let _ = check_expression(&numbers, target, &junk);
        }

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
