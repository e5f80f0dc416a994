//! The `[data]` section of a run config: which data a run trains and evaluates on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tasks::TaskSpec;

/// The training data (`[data]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataConfig {
    /// The paper's §4.1 synthetic task (66 characters, 29 symbols).
    Synthetic,
    /// A UTF-8 text file: byte tokens, or a BPE's tokens when `tokenizer` is set.
    Text {
        /// The text file.
        path: PathBuf,
        /// Tokens per training window, including the last target.
        seq_len: usize,
        /// Trailing fraction of the tokens held out for validation.
        #[serde(default = "default_val_fraction")]
        val_fraction: f64,
        /// A `tokenizer.json` from `freet tokenizer train` (default: one token per byte); its
        /// vocabulary size must equal `model.vocab_size` (checked when the data is loaded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokenizer: Option<PathBuf>,
    },
    /// A synthetic evaluation task (`task = "hmm_mixture" | "permutation" | "countdown"`, then its
    /// parameters; see [`crate::data::tasks`]).
    Task(TaskSpec),
}

/// Default trailing fraction of a text corpus held out for validation.
fn default_val_fraction() -> f64 {
    0.05
}
