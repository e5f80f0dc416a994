//! Data for freet: the paper's synthetic task, tokenizers (synthetic, bytes, task alphabets,
//! byte-level BPE), text corpora and synthetic evaluation tasks, with the byte accounting behind
//! bits-per-byte figures.
//!
//! Everything here is pure Rust and deterministic. Randomness is
//! counter-based: every example is drawn from its own `ChaCha8Rng` whose
//! seed is [`stream_seed`] of the run seed and the example's coordinates,
//! so training can resume exactly from a step counter alone.

mod config;
pub mod synthetic;
pub mod tasks;
pub mod text;
pub mod tokenizer;

use serde::{Deserialize, Serialize};

pub use self::config::DataConfig;
pub use self::synthetic::{
    SYNTH_BODY_LEN, SYNTH_LEN, SYNTH_NOISE_P, SYNTH_TARGET_LEN, SYNTH_VOCAB, SyntheticTask, synthetic_sample,
};
pub use self::text::TextDataset;
use self::tokenizer::bpe::BpeError;
pub use self::tokenizer::{BYTES_VOCAB, BpeTokenizer, Tokenizer};
use crate::util::rng::Stream;

/// Errors raised while building datasets or (de)tokenizing.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset file could not be read.
    #[error("cannot read dataset file {path}")]
    Io {
        /// The offending path.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The dataset file holds no bytes.
    #[error("dataset file {path} is empty")]
    EmptyFile {
        /// The offending path.
        path: String,
    },
    /// The validation fraction is not strictly between 0 and 1.
    #[error("val_fraction {val_fraction} for {path} must lie strictly between 0 and 1")]
    InvalidValFraction {
        /// The dataset path.
        path: String,
        /// The offending fraction.
        val_fraction: f64,
    },
    /// The sequence length is below 2 (no input/target pair fits).
    #[error("seq_len {seq_len} for {path} is too small: it must be at least 2")]
    SeqLenTooSmall {
        /// The dataset path.
        path: String,
        /// The offending sequence length.
        seq_len: usize,
    },
    /// The training region cannot hold one window.
    #[error("training region of {path} holds {len} tokens, shorter than seq_len {seq_len}")]
    TrainRegionTooShort {
        /// The dataset path.
        path: String,
        /// Tokens in the training region.
        len: usize,
        /// The requested sequence length.
        seq_len: usize,
    },
    /// The validation region cannot hold one window.
    #[error("validation region of {path} holds {len} tokens, shorter than seq_len {seq_len}")]
    ValRegionTooShort {
        /// The dataset path.
        path: String,
        /// Tokens in the validation region.
        len: usize,
        /// The requested sequence length.
        seq_len: usize,
    },
    /// A character outside the synthetic vocabulary was encoded.
    #[error("symbol {symbol:?} at position {position} is not in the synthetic vocabulary (A-Z, _, !, >)")]
    UnknownSymbol {
        /// The offending character.
        symbol: char,
        /// Its 0-based character position in the input.
        position: usize,
    },
    /// A token id at or above the vocabulary size was decoded.
    #[error("token id {id} at position {position} is out of range for the {tokenizer} vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Its 0-based position in the input.
        position: usize,
        /// Name of the tokenizer.
        tokenizer: &'static str,
        /// Size of the tokenizer's vocabulary.
        vocab_size: usize,
    },
    /// A character outside a task alphabet was encoded.
    #[error("symbol {symbol:?} at position {position} is not in the task alphabet \"{alphabet}\"")]
    NotInAlphabet {
        /// The offending character.
        symbol: char,
        /// Its 0-based character position in the input.
        position: usize,
        /// The task alphabet, in id order.
        alphabet: String,
    },
    /// A BPE tokenizer failed to load or encode.
    #[error(transparent)]
    Bpe(#[from] BpeError),
    /// The tokens of a text do not spell out its bytes (bits per byte would be wrong).
    #[error("the {tokenizer} tokenizer does not reproduce {path} exactly (first difference at byte {offset})")]
    NotExact {
        /// The dataset path.
        path: String,
        /// Name of the tokenizer.
        tokenizer: &'static str,
        /// First byte offset where decoded tokens and text differ.
        offset: usize,
    },
}

/// Which part of a dataset an example comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training examples (their rows come from [`Stream::TrainRows`]).
    Train = 0,
    /// Validation examples (their rows come from [`Stream::ValRows`]).
    Val = 1,
}

impl Split {
    /// The random stream of this split's rows.
    pub fn stream(self) -> Stream {
        match self {
            Split::Train => Stream::TrainRows,
            Split::Val => Stream::ValRows,
        }
    }
}

/// A dataset: the synthetic task, a tokenized text corpus or a synthetic evaluation task.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// The paper's synthetic task (synthetic tokenizer, 66 tokens per example).
    Synthetic(SyntheticTask),
    /// A text file tokenized as bytes or with a BPE.
    Text(TextDataset),
    /// A synthetic evaluation task ([`crate::data::tasks::Task`]) with its own alphabet.
    Task(tasks::Task),
}

impl Dataset {
    /// The tokenizer matching this dataset.
    pub fn tokenizer(&self) -> Tokenizer {
        match self {
            Dataset::Synthetic(_) => Tokenizer::Synthetic,
            Dataset::Text(t) => t.tokenizer().clone(),
            Dataset::Task(t) => t.tokenizer(),
        }
    }

    /// UTF-8 bytes of text that the predicted tokens (positions 1.. of every row) of `batches`
    /// stand for: the denominator of bits per byte. None for the synthetic task and the evaluation
    /// tasks, which are not text.
    pub fn target_bytes(&self, batches: &[Vec<Vec<u32>>]) -> Option<u64> {
        let Dataset::Text(t) = self else { return None };
        let tok = t.tokenizer();
        let bytes = batches
            .iter()
            .flatten()
            .flat_map(|row| row.iter().skip(1))
            .map(|&id| tok.token_bytes(id).map_or(0, <[u8]>::len) as u64)
            .sum();
        Some(bytes)
    }

    /// Vocabulary size of [`Dataset::tokenizer`].
    pub fn vocab_size(&self) -> usize {
        self.tokenizer().vocab_size()
    }

    /// Tokens per example INCLUDING the final target (the model sees `seq_len - 1` inputs).
    pub fn seq_len(&self) -> usize {
        match self {
            Dataset::Synthetic(_) => SYNTH_LEN,
            Dataset::Text(t) => t.seq_len(),
            Dataset::Task(t) => t.seq_len(),
        }
    }

    /// Training batch, a pure function of (seed, step, micro, row) via `stream_seed(seed, &[0, step, micro, row])`.
    ///
    /// Each row has its own RNG stream, so no two (step, micro, row) share an
    /// example stream, and resuming from `step` reproduces the run exactly.
    pub fn train_batch(&self, step: u64, micro: u64, batch_size: usize) -> Vec<Vec<u32>> {
        self.train_rows(step, micro, 0..batch_size)
    }

    /// Rows `rows` of the training batch of (step, micro), equal to that slice of
    /// [`Dataset::train_batch`]: the shard a data-parallel rank draws.
    pub fn train_rows(&self, step: u64, micro: u64, rows: std::ops::Range<usize>) -> Vec<Vec<u32>> {
        match self {
            Dataset::Synthetic(task) => task.train_rows(step, micro, rows),
            Dataset::Text(t) => t.train_rows(step, micro, rows),
            Dataset::Task(t) => t.train_rows(step, micro, rows),
        }
    }

    /// Fixed validation set: the synthetic and evaluation tasks use `Split::Val` indices `0..n*bs`;
    /// text uses the held-out tail.
    pub fn val_batches(&self, n_batches: usize, batch_size: usize) -> Vec<Vec<Vec<u32>>> {
        match self {
            Dataset::Synthetic(task) => task.val_batches(n_batches, batch_size),
            Dataset::Text(t) => t.val_batches(n_batches, batch_size),
            Dataset::Task(t) => t.val_batches(n_batches, batch_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_of_rows_is_that_slice_of_the_batch() {
        let text: Vec<u8> = (0..4000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        let sets = [
            Dataset::Synthetic(SyntheticTask::new(5)),
            Dataset::Text(TextDataset::from_bytes(text, 16, 0.1, 5).unwrap()),
        ];
        for d in sets {
            let whole = d.train_batch(3, 1, 8);
            for (lo, hi) in [(0, 8), (0, 3), (3, 8), (5, 6)] {
                assert_eq!(d.train_rows(3, 1, lo..hi), whole[lo..hi]);
            }
        }
    }

    #[test]
    fn split_streams_keep_the_split_value_as_their_tag() {
        // Datasets drawn before the stream table existed used `[split as u64, …]`: same draws now.
        assert_eq!(Split::Train.stream().tag(), Split::Train as u64);
        assert_eq!(Split::Val.stream().tag(), Split::Val as u64);
    }
}
