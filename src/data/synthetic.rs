//! The paper's synthetic task (Fleuret 2025, §4.1): a prompt "L>" (a letter and the separator)
//! then a 64-symbol body of blanks holding the letter repeated 8 times at a uniform start, every
//! body position then overwritten by the noise symbol with probability 1/16.
//!
//! This module is the one home of the task's geometry (lengths, largest target start) and of its
//! symbols; the synthetic tokenizer and the Figure 4 metrics read them from here.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Split;
use crate::util::rng::Stream;

/// Length of the synthetic prompt "L>": the letter and [`SYNTH_PROMPT_SEP`].
pub const SYNTH_PROMPT_LEN: usize = 2;

/// Length of the synthetic body (the part after the "L>" prompt).
pub const SYNTH_BODY_LEN: usize = 64;

/// Length in characters (and tokens) of one synthetic sequence: "L>" plus a 64-char body.
pub const SYNTH_LEN: usize = SYNTH_PROMPT_LEN + SYNTH_BODY_LEN;

/// Length of the synthetic target (the letter repeated this many times).
pub const SYNTH_TARGET_LEN: usize = 8;

/// Largest start of the target in the body (56): starts are uniform in `0..=SYNTH_MAX_TARGET_START`.
pub const SYNTH_MAX_TARGET_START: usize = SYNTH_BODY_LEN - SYNTH_TARGET_LEN;

/// Probability that a body position is overwritten by the noise symbol [`SYNTH_NOISE_CHAR`].
pub const SYNTH_NOISE_P: f64 = 1.0 / 16.0;

/// Background symbol of the body.
pub const SYNTH_BLANK_CHAR: char = '_';

/// Noise symbol that may overwrite any body position.
pub const SYNTH_NOISE_CHAR: char = '!';

/// Separator ending the prompt.
pub const SYNTH_PROMPT_SEP: char = '>';

/// Vocabulary size of the synthetic tokenizer (26 letters, blank, noise, prompt separator).
pub const SYNTH_VOCAB: usize = 29;

/// Synthetic token id of the blank symbol.
const ID_BLANK: u32 = 26;
/// Synthetic token id of the noise symbol.
const ID_NOISE: u32 = 27;
/// Synthetic token id of the prompt separator.
const ID_PROMPT: u32 = 28;

/// Symbols of the synthetic vocabulary, indexed by token id: 'A'..='Z', blank, noise, separator.
const SYNTH_ALPHABET: [u8; SYNTH_VOCAB] = {
    let mut t = [0u8; SYNTH_VOCAB];
    let mut i = 0;
    while i < 26 {
        t[i] = b'A' + i as u8;
        i += 1;
    }
    t[ID_BLANK as usize] = SYNTH_BLANK_CHAR as u8;
    t[ID_NOISE as usize] = SYNTH_NOISE_CHAR as u8;
    t[ID_PROMPT as usize] = SYNTH_PROMPT_SEP as u8;
    t
};

/// Draws one synthetic sequence as token ids, in the paper's exact RNG draw order.
fn synthetic_ids<R: Rng + ?Sized>(rng: &mut R) -> [u32; SYNTH_LEN] {
    synthetic_draw(rng).0
}

/// Draws one synthetic sequence as token ids together with its hidden target start (body index).
fn synthetic_draw<R: Rng + ?Sized>(rng: &mut R) -> ([u32; SYNTH_LEN], usize) {
    let letter: u32 = rng.random_range(0..26u32);
    let mut body = [ID_BLANK; SYNTH_BODY_LEN];
    let start = rng.random_range(0..=SYNTH_MAX_TARGET_START as u32) as usize;
    body[start..start + SYNTH_TARGET_LEN].fill(letter);
    for slot in body.iter_mut() {
        if rng.random_bool(SYNTH_NOISE_P) {
            *slot = ID_NOISE;
        }
    }
    let mut out = [0u32; SYNTH_LEN];
    out[0] = letter;
    out[1] = ID_PROMPT;
    out[SYNTH_PROMPT_LEN..].copy_from_slice(&body);
    (out, start)
}

/// Maps in-vocabulary synthetic ids (all < 29 by construction) to their string.
pub(super) fn synthetic_ids_to_string(ids: &[u32]) -> String {
    ids.iter().map(|&id| char::from(SYNTH_ALPHABET[id as usize])).collect()
}

/// Synthetic token id of `c`, if it is in the vocabulary.
pub(super) fn synthetic_id(c: char) -> Option<u32> {
    match c {
        'A'..='Z' => Some(c as u32 - 'A' as u32),
        SYNTH_BLANK_CHAR => Some(ID_BLANK),
        SYNTH_NOISE_CHAR => Some(ID_NOISE),
        SYNTH_PROMPT_SEP => Some(ID_PROMPT),
        _ => None,
    }
}

/// The one-byte UTF-8 text of synthetic token `id` (None when out of range).
pub(super) fn synthetic_token_bytes(id: u32) -> Option<&'static [u8]> {
    let i = id as usize;
    SYNTH_ALPHABET.get(i..=i)
}

/// Draws one 66-char synthetic sample "L>body" (letter, uniform 8-long target start, then 1/16 noise).
///
/// Draw order (a spec): letter `random_range(0..26u32)`, start
/// `random_range(0..=56u32)`, then 64 `random_bool(1/16)` noise draws in body
/// order. Noise is applied after the target, so it can overwrite target letters.
pub fn synthetic_sample<R: Rng + ?Sized>(rng: &mut R) -> String {
    synthetic_ids_to_string(&synthetic_ids(rng))
}

/// The paper's synthetic task, seeded; each example has its own counter-based RNG stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticTask {
    /// Run seed mixed into every example's stream.
    pub seed: u64,
}

impl SyntheticTask {
    /// Creates the task with the given seed.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The example `index` of `split`, from `ChaCha8Rng::seed_from_u64(stream_seed(seed, &[split, index]))`.
    pub fn sequence(&self, split: Split, index: u64) -> String {
        synthetic_ids_to_string(&self.sequence_ids(split, index))
    }

    /// Token ids of [`SyntheticTask::sequence`] with the hidden target start (a body index, before
    /// noise, which may overwrite target letters): the latent variable a Free Transformer can encode.
    pub fn sequence_with_start(&self, split: Split, index: u64) -> (Vec<u32>, usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(split.stream().seed(self.seed, &[index]));
        let (ids, start) = synthetic_draw(&mut rng);
        (ids.to_vec(), start)
    }

    /// Token ids of [`SyntheticTask::sequence`].
    fn sequence_ids(&self, split: Split, index: u64) -> [u32; SYNTH_LEN] {
        let mut rng = ChaCha8Rng::seed_from_u64(split.stream().seed(self.seed, &[index]));
        synthetic_ids(&mut rng)
    }

    /// The training example at (step, micro, row), from `stream_seed(seed, &[0, step, micro, row])`.
    pub fn train_example(&self, step: u64, micro: u64, row: u64) -> String {
        synthetic_ids_to_string(&self.train_ids(step, micro, row))
    }

    /// Token ids of [`SyntheticTask::train_example`].
    fn train_ids(&self, step: u64, micro: u64, row: u64) -> [u32; SYNTH_LEN] {
        let mut rng = ChaCha8Rng::seed_from_u64(Stream::TrainRows.seed(self.seed, &[step, micro, row]));
        synthetic_ids(&mut rng)
    }

    /// A training batch: rows `0..batch_size` of (step, micro), each from its own stream.
    pub fn train_batch(&self, step: u64, micro: u64, batch_size: usize) -> Vec<Vec<u32>> {
        self.train_rows(step, micro, 0..batch_size)
    }

    /// Rows `rows` of the training batch of (step, micro): a data-parallel rank's shard.
    pub fn train_rows(&self, step: u64, micro: u64, rows: std::ops::Range<usize>) -> Vec<Vec<u32>> {
        rows.map(|row| self.train_ids(step, micro, row as u64).to_vec()).collect()
    }

    /// The fixed validation set: `Split::Val` indices `0..n_batches·batch_size`, in batches.
    pub fn val_batches(&self, n_batches: usize, batch_size: usize) -> Vec<Vec<Vec<u32>>> {
        (0..n_batches as u64)
            .map(|b| {
                (0..batch_size as u64)
                    .map(|r| self.sequence_ids(Split::Val, b * batch_size as u64 + r).to_vec())
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Tokenizer};
    use crate::util::rng::{splitmix64, stream_seed};
    use std::collections::HashSet;

    const N: usize = 20_000;

    #[test]
    fn the_hidden_start_is_where_the_target_was_written() {
        let task = SyntheticTask::new(3);
        for i in 0..500 {
            let (ids, start) = task.sequence_with_start(Split::Val, i);
            assert_eq!(ids, task.sequence_ids(Split::Val, i).to_vec());
            assert!(start <= SYNTH_MAX_TARGET_START);
            let body = &ids[SYNTH_PROMPT_LEN..];
            for (j, &c) in body.iter().enumerate() {
                let inside = (start..start + SYNTH_TARGET_LEN).contains(&j);
                match c {
                    ID_NOISE => {}
                    ID_BLANK => assert!(!inside, "blank inside the target at {j} (start {start})"),
                    letter => assert!(inside && letter == ids[0], "letter {letter} at {j} (start {start})"),
                }
            }
        }
    }

    /// Splits a sample into (letter, body) after checking the prompt layout.
    fn parse(s: &str) -> (u8, Vec<u8>) {
        let b = s.as_bytes();
        assert_eq!(b.len(), SYNTH_LEN, "{s}");
        assert_eq!(s.chars().count(), SYNTH_LEN);
        assert!(b[0].is_ascii_uppercase(), "{s}");
        assert_eq!(b[1], b'>', "{s}");
        let body = b[2..].to_vec();
        for &c in &body {
            assert!(c == b[0] || c == b'_' || c == b'!', "{s}");
        }
        (b[0], body)
    }

    /// Starts consistent with a body: window only letter/'!' and all letters inside it.
    fn candidate_starts(letter: u8, body: &[u8]) -> Vec<usize> {
        (0..=SYNTH_BODY_LEN - SYNTH_TARGET_LEN)
            .filter(|&s| {
                body.iter().enumerate().all(|(i, &c)| {
                    let inside = (s..s + SYNTH_TARGET_LEN).contains(&i);
                    if inside { c == letter || c == b'!' } else { c != letter }
                })
            })
            .collect()
    }

    #[test]
    fn splitmix_matches_reference_value() {
        // First output of the reference splitmix64 generator seeded with 0.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn golden_values_pin_streams() {
        // Pins the mixing function and the rand/rand_chacha sampling so that a
        // dependency or code change that would silently alter runs is caught.
        assert_eq!(stream_seed(0, &[]), 0xa706_dd2f_4d19_7e6f);
        assert_eq!(stream_seed(42, &[1, 2, 3]), 0x9f10_e253_373c_0c51);
        assert_eq!(
            SyntheticTask::new(0).sequence(Split::Train, 0),
            "F>______________________!__!_________________FFFFFFFF_____________"
        );
        assert_eq!(
            SyntheticTask::new(0).sequence(Split::Val, 1),
            "J>______________________!_!________________________JJJJJJJJ_______"
        );
    }

    #[test]
    fn stream_seed_separates_streams() {
        let mut seen = HashSet::new();
        for seed in 0..4u64 {
            assert!(seen.insert(stream_seed(seed, &[])));
            for a in 0..8u64 {
                assert!(seen.insert(stream_seed(seed, &[a])));
                assert!(seen.insert(stream_seed(seed, &[a, 0])));
                for b in 1..8u64 {
                    assert!(seen.insert(stream_seed(seed, &[a, b])));
                    assert!(seen.insert(stream_seed(seed, &[0, a, b])));
                }
            }
        }
        assert_eq!(stream_seed(7, &[1, 2, 3]), stream_seed(7, &[1, 2, 3]));
        assert_ne!(stream_seed(7, &[1, 2]), stream_seed(7, &[2, 1]));
    }

    #[test]
    fn generator_statistics() {
        let task = SyntheticTask::new(12345);
        let mut letters = [0usize; 26];
        let mut starts = [0usize; SYNTH_BODY_LEN - SYNTH_TARGET_LEN + 1];
        let (mut noise, mut target_noise, mut target_slots) = (0usize, 0usize, 0usize);
        let mut ambiguous = 0usize;
        for i in 0..N as u64 {
            let s = task.sequence(Split::Train, i);
            let (letter, body) = parse(&s);
            letters[(letter - b'A') as usize] += 1;
            noise += body.iter().filter(|&&c| c == b'!').count();
            let cands = candidate_starts(letter, &body);
            assert!(!cands.is_empty(), "target not recoverable in {s}");
            if cands.len() == 1 {
                let st = cands[0];
                starts[st] += 1;
                target_slots += SYNTH_TARGET_LEN;
                target_noise += body[st..st + SYNTH_TARGET_LEN].iter().filter(|&&c| c == b'!').count();
            } else {
                ambiguous += 1;
            }
        }
        let chi2 = |counts: &[usize]| {
            let total: usize = counts.iter().sum();
            let e = total as f64 / counts.len() as f64;
            counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum::<f64>()
        };
        // df = 25: the 99.9% quantile is about 52.6.
        let letter_chi2 = chi2(&letters);
        assert!(letter_chi2 < 60.0, "letter chi2 {letter_chi2}: {letters:?}");
        // Ambiguity needs two independent 1/16 events, so it is rare.
        assert!(ambiguous < N / 50, "ambiguous {ambiguous}");
        // df = 56: the 99.9% quantile is about 97.
        let start_chi2 = chi2(&starts);
        assert!(start_chi2 < 110.0, "start chi2 {start_chi2}: {starts:?}");
        assert!(starts.iter().all(|&c| c > 200), "{starts:?}");
        let rate = noise as f64 / (N * SYNTH_BODY_LEN) as f64;
        assert!((rate - 0.0625).abs() < 0.002, "noise rate {rate}");
        // Noise is applied after the target, so it hits target slots too.
        let trate = target_noise as f64 / target_slots as f64;
        assert!((trate - 0.0625).abs() < 0.005, "target noise rate {trate}");
    }

    /// Independent re-implementation of the paper's procedure.
    fn reference_sample(rng: &mut ChaCha8Rng) -> String {
        let letter = (b'A' + rng.random_range(0u32..26) as u8) as char;
        let mut body = vec!['_'; 64];
        let start = rng.random_range(0u32..=56) as usize;
        for c in body.iter_mut().skip(start).take(8) {
            *c = letter;
        }
        for c in body.iter_mut() {
            if rng.random_bool(1.0 / 16.0) {
                *c = '!';
            }
        }
        let mut out = String::new();
        out.push(letter);
        out.push('>');
        out.extend(body);
        out
    }

    #[test]
    fn exact_procedure_matches_reference() {
        let task = SyntheticTask::new(99);
        for split in [Split::Train, Split::Val] {
            for i in 0..300u64 {
                let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(99, &[split as u64, i]));
                assert_eq!(task.sequence(split, i), reference_sample(&mut rng));
            }
        }
        // A shared rng across many samples also guards the number of draws per sample.
        let mut a = ChaCha8Rng::seed_from_u64(5);
        let mut b = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..300 {
            assert_eq!(synthetic_sample(&mut a), reference_sample(&mut b));
        }
        for step in 0..3 {
            for row in 0..50 {
                let parts = [0, step, 1, row];
                let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(99, &parts));
                assert_eq!(task.train_example(step, 1, row), reference_sample(&mut rng));
            }
        }
    }

    #[test]
    fn determinism_and_distinctness() {
        let t1 = SyntheticTask::new(1);
        let t2 = SyntheticTask::new(2);
        assert_eq!(t1.sequence(Split::Train, 3), t1.sequence(Split::Train, 3));
        assert_eq!(SyntheticTask::new(1).sequence(Split::Val, 3), t1.sequence(Split::Val, 3));
        let mut seen = HashSet::new();
        for i in 0..200 {
            assert!(seen.insert(t1.sequence(Split::Train, i)));
            assert!(seen.insert(t1.sequence(Split::Val, i)));
            assert!(seen.insert(t2.sequence(Split::Train, i)));
        }
    }

    #[test]
    fn synthetic_train_batch() {
        let data = Dataset::Synthetic(SyntheticTask::new(3));
        assert_eq!(data.seq_len(), 66);
        assert_eq!(data.vocab_size(), 29);
        let batch = data.train_batch(10, 2, 5);
        assert_eq!(batch.len(), 5);
        assert!(batch.iter().all(|r| r.len() == 66));
        assert_eq!(batch, data.train_batch(10, 2, 5));
        assert_ne!(batch, data.train_batch(11, 2, 5));
        assert_ne!(batch, data.train_batch(10, 3, 5));
        let task = SyntheticTask::new(3);
        for (row, ids) in batch.iter().enumerate() {
            let text = Tokenizer::Synthetic.decode(ids).unwrap();
            parse(&text);
            assert_eq!(text, task.train_example(10, 2, row as u64));
        }
        // Each (step, micro, row) has its own stream, disjoint from the validation
        // streams. (Contents can coincide by chance: e.g. about 1.6% of samples are
        // noise-free and there are only 26 * 57 clean targets.)
        let mut seeds = HashSet::new();
        for step in 0..200u64 {
            for micro in 0..4u64 {
                for row in 0..64u64 {
                    assert!(seeds.insert(stream_seed(3, &[0, step, micro, row])));
                }
            }
        }
        for i in 0..10_000u64 {
            assert!(seeds.insert(stream_seed(3, &[Split::Val as u64, i])));
        }
        // Whole batches never repeat in practice.
        let mut batches = HashSet::new();
        for step in 0..40 {
            for micro in 0..2 {
                assert!(batches.insert(data.train_batch(step, micro, 16)));
            }
        }
    }

    #[test]
    fn synthetic_val_batches() {
        let task = SyntheticTask::new(4);
        let data = Dataset::Synthetic(task);
        let val = data.val_batches(3, 4);
        assert_eq!(val.len(), 3);
        assert_eq!(val, data.val_batches(3, 4));
        for (b, batch) in val.iter().enumerate() {
            assert_eq!(batch.len(), 4);
            for (r, ids) in batch.iter().enumerate() {
                let expect = task.sequence(Split::Val, (b * 4 + r) as u64);
                assert_eq!(Tokenizer::Synthetic.encode(&expect).unwrap(), *ids);
            }
        }
    }
}
