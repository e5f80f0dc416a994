//! `freet sample`: sample continuations of a prompt from a checkpoint, with fresh or shared Z.

use crate::DeviceArg;
use anyhow::{Result, anyhow};
use clap::Args;
use freet::data::Tokenizer;
use freet::generate::{GenerationZ, SampleOptions, decode_rows, generate};
use freet::train::checkpoint;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct SampleArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The prompt text (synthetic task: e.g. "Q>").
    #[arg(long)]
    prompt: String,
    /// Number of samples.
    #[arg(short, long, default_value_t = 5)]
    n: usize,
    /// Tokens to generate (default: complete a synthetic sequence, else 128).
    #[arg(long)]
    max_new: Option<usize>,
    /// Softmax temperature (0 = greedy).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling mass.
    #[arg(long)]
    top_p: Option<f64>,
    /// Seed of token sampling and of fresh latents.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share one whole Z (drawn from the prior with --z-seed) across all samples.
    #[arg(long)]
    shared_z: bool,
    /// Seed of the shared Z.
    #[arg(long, default_value_t = 0)]
    z_seed: u64,
    /// Print the prefill time and decoding speed to stderr.
    #[arg(long)]
    timing: bool,
    /// CPU threads for libtorch (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    device: DeviceArg,
}

/// The prompt's token ids, or an error naming `--prompt`.
pub(crate) fn encode_prompt(tok: &Tokenizer, prompt: &str) -> Result<Vec<i64>> {
    let ids = tok.encode(prompt).map_err(|e| anyhow!("--prompt: {e}"))?;
    Ok(ids.into_iter().map(i64::from).collect())
}

/// Tokens to generate when `--max-new` is not given: complete a synthetic sequence, else 128.
pub(crate) fn default_max_new(tok: &Tokenizer, prompt_len: usize) -> usize {
    match tok {
        Tokenizer::Synthetic => freet::data::SYNTH_LEN.saturating_sub(prompt_len).max(1),
        Tokenizer::Bytes | Tokenizer::Task(_) | Tokenizer::Bpe(_) => 128,
    }
}

/// `freet sample`: prints `-n` continuations of the prompt.
pub(crate) fn cmd_sample(a: SampleArgs) -> Result<()> {
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    let loaded = checkpoint::load(&a.checkpoint, a.device.get()?)?;
    let prompt = encode_prompt(&loaded.tokenizer, &a.prompt)?;
    let opts = SampleOptions {
        max_new_tokens: a.max_new.unwrap_or_else(|| default_max_new(&loaded.tokenizer, prompt.len())),
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    };
    let source = if a.shared_z { GenerationZ::Shared { z_seed: a.z_seed } } else { GenerationZ::Fresh };
    let g = generate(&loaded.model, &prompt, a.n, &opts, source)?;
    for s in decode_rows(&loaded.tokenizer, &g.tokens)? {
        println!("{s}");
    }
    if a.timing {
        let steps = opts.max_new_tokens.saturating_sub(1) as f64;
        eprintln!(
            "timing: {} prompt tokens, {} new tokens × {} samples, {} threads: prefill (+ first token) {:.3} s, \
             decode {:.2} tokens/s per sample ({:.3} s for {} steps)",
            prompt.len(),
            opts.max_new_tokens,
            a.n,
            tch::get_num_threads(),
            g.timing.prefill_s,
            steps / g.timing.decode_s.max(1e-12),
            g.timing.decode_s,
            steps
        );
    }
    Ok(())
}
