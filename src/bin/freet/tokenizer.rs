//! `freet tokenizer train`: train a byte-level BPE and write its tokenizer.json.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum TokenizerCmd {
    /// Train a byte-level BPE (any UTF-8 round-trips exactly) and write its tokenizer.json.
    Train(TokenizerTrainArgs),
}

#[derive(Args)]
pub(crate) struct TokenizerTrainArgs {
    /// UTF-8 training text files.
    #[arg(long, num_args = 1.., required = true)]
    files: Vec<PathBuf>,
    /// Vocabulary size: 256 byte symbols plus merges (fewer if the text runs out of pairs).
    #[arg(long)]
    vocab_size: usize,
    /// Where to write tokenizer.json (replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Minimum count of a pair for it to be merged.
    #[arg(long, default_value_t = freet::data::tokenizer::bpe::DEFAULT_MIN_FREQUENCY)]
    min_frequency: u64,
}

/// `freet tokenizer train`: trains a byte-level BPE and writes its tokenizer.json.
pub(crate) fn cmd_tokenizer_train(a: TokenizerTrainArgs) -> Result<()> {
    let t = freet::data::tokenizer::bpe::train(&a.files, a.vocab_size, a.min_frequency)?;
    freet::util::fs::write_atomic(&a.out, t.tokenizer.json().as_bytes())
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "trained a byte-level BPE: vocab size {} ({} merges) on {} training bytes in {} file(s)",
        t.tokenizer.vocab_size(),
        t.merges,
        t.training_bytes,
        a.files.len()
    );
    println!(
        "training text: {} tokens, {:.3} bytes/token; fnv1a64 {}",
        t.training_tokens,
        t.bytes_per_token(),
        t.tokenizer.hash_hex()
    );
    println!("wrote {}", a.out.display());
    Ok(())
}
