//! `freet import` (a Hugging Face Llama directory or a GGUF file → a baseline checkpoint with its
//! tokenizer) and `freet convert` (a baseline checkpoint → a Free Transformer, with the prior-Z gap
//! measured on a text).

use anyhow::{Result, anyhow, bail};
use clap::Args;
use freet::data::Tokenizer;
use freet::import::convert::{ConvertOptions, convert, prior_gap, trunk_rms};
use freet::import::{TokenizerExtras, import, write};
use freet::model::config::KappaBits;
use freet::train::checkpoint;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// A Hugging Face Llama directory (config.json, *.safetensors, tokenizer.json) or a GGUF file.
    source: PathBuf,
    /// The checkpoint directory to write (must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// `freet import`: reads the source, writes the checkpoint, prints what it did.
pub(crate) fn cmd_import(a: ImportArgs) -> Result<()> {
    if a.out.exists() {
        bail!("--out {} already exists: choose another", a.out.display());
    }
    let t0 = Instant::now();
    let imp = import(&a.source)?;
    write(&a.out, &imp.model, &imp.tokenizer, &imp.extras)?;
    let c = imp.model.config();
    let (params, _, _) = c.param_counts();
    println!(
        "imported {} → {}: Llama, {} blocks, d {}, {} query / {} KV heads of {}, FFN {}, RoPE base {}, eps {:e}, {} \
         embeddings, context {}; {:.1} M parameters (fp32)",
        a.source.display(),
        a.out.display(),
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim(),
        c.ffn_hidden,
        c.rope_theta,
        c.norm_eps,
        if c.tied_embeddings { "tied" } else { "untied" },
        c.max_seq_len,
        params as f64 / 1e6
    );
    if !imp.tensor_types.is_empty() {
        let types: Vec<String> = imp.tensor_types.iter().map(|(t, n)| format!("{n} {t}")).collect();
        println!("dequantized to fp32: {} tensors", types.join(", "));
    }
    println!(
        "tokenizer: byte-level BPE, {} tokens, {} merges; chat template {}; {:.1} s",
        imp.tokenizer.vocab_size(),
        imp.tokenizer.merges().unwrap_or(0),
        if imp.extras.chat_template.is_some() { "kept (tokenizer_config.json)" } else { "absent" },
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args)]
pub(crate) struct ConvertArgs {
    /// A baseline checkpoint (e.g. written by `freet import`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The Free Transformer checkpoint to write (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Latent bits H (1..=16).
    #[arg(long, default_value_t = 16)]
    bits: usize,
    /// Free-bits threshold κ in bits per token (e.g. 1/2).
    #[arg(long, value_parser = KappaBits::parse)]
    kappa: KappaBits,
    /// σ of the bit-structured E; 0 makes the converted model equal the baseline exactly.
    #[arg(long, default_value_t = 1.0)]
    e_std: f64,
    /// Blocks before the injection block (default L/2).
    #[arg(long)]
    inject_after: Option<usize>,
    /// Seed of ζ and E.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A UTF-8 text on which to measure the prior-Z gap (baseline CE vs converted prior-Z CE).
    #[arg(long)]
    measure: Option<PathBuf>,
    /// Tokens per measured window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Windows measured (at most; consecutive, non-overlapping, from the start of the text).
    #[arg(long, default_value_t = 16)]
    windows: usize,
    /// Prior draws averaged.
    #[arg(long, default_value_t = 4)]
    draws: usize,
}

/// Consecutive windows of `seq_len` tokens of a text file, in batches of 4.
fn windows(tok: &Tokenizer, path: &Path, seq_len: usize, n: usize) -> Result<Vec<Vec<Vec<u32>>>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("--measure {}: {e}", path.display()))?;
    let ids = tok.encode(&text).map_err(|e| anyhow!("--measure {}: {e}", path.display()))?;
    if seq_len < 2 || ids.len() < seq_len {
        bail!("--measure {}: {} tokens do not fill one window of --seq-len {seq_len}", path.display(), ids.len());
    }
    let rows: Vec<Vec<u32>> = ids.chunks_exact(seq_len).take(n.max(1)).map(<[u32]>::to_vec).collect();
    Ok(rows.chunks(4).map(<[Vec<u32>]>::to_vec).collect())
}

/// `freet convert`: writes the Free Transformer and, with `--measure`, prints the prior-Z gap.
pub(crate) fn cmd_convert(a: ConvertArgs) -> Result<()> {
    if !(a.e_std.is_finite() && a.e_std >= 0.0) {
        bail!("--e-std {} must be finite and ≥ 0", a.e_std);
    }
    if a.out.exists() {
        bail!("--out {} already exists: choose another", a.out.display());
    }
    let loaded = checkpoint::load(&a.checkpoint, Device::Cpu)?;
    let Tokenizer::Bpe(bpe) = &loaded.tokenizer else {
        bail!("{}: convert expects an imported checkpoint with a BPE tokenizer", loaded.dir.display());
    };
    let opts =
        ConvertOptions { bits: a.bits, kappa: a.kappa, e_std: a.e_std, inject_after: a.inject_after, seed: a.seed };
    let ft = convert(&loaded.model, &opts)?;
    let extras = read_extras(&loaded.dir)?;
    let cfg = ft.config();
    if let Some(path) = &a.measure {
        let max_len = cfg.max_seq_len + 1;
        let batches = windows(&loaded.tokenizer, path, a.seq_len.min(max_len), a.windows)?;
        let rms = trunk_rms(&ft, &batches);
        let g = prior_gap(&loaded.model, &ft, &batches, a.draws);
        println!(
            "prior-Z gap on {} ({} tokens): baseline CE {:.5}, converted prior-Z CE {:.5} ({} draws), gap {:+.5} \
             nats/token; RMS of X_m {:.3}, σ(E) {} = {:.4} × RMS",
            path.display(),
            g.tokens,
            g.base_ce,
            g.prior_ce,
            a.draws.max(1),
            g.gap(),
            rms,
            a.e_std,
            a.e_std / rms
        );
    }
    write(&a.out, &ft, bpe, &extras)?;
    let (_, enc, table) = cfg.param_counts();
    println!(
        "converted {} → {}: Free Transformer, H = {}, κ = {} bits, injection after block {} (encoder = copy of block \
         {m}, readout 0, E bit-structured σ = {}); +{:.2} M encoder parameters, +{:.1} M in E",
        loaded.dir.display(),
        a.out.display(),
        a.bits,
        a.kappa.0,
        cfg.inject_after(),
        a.e_std,
        enc as f64 / 1e6,
        table as f64 / 1e6,
        m = cfg.inject_after()
    );
    Ok(())
}

/// The chat template and special tokens a checkpoint keeps in `tokenizer_config.json`.
fn read_extras(dir: &Path) -> Result<TokenizerExtras> {
    let p = dir.join("tokenizer_config.json");
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(TokenizerExtras::default()) };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("corrupt {}: {e}", p.display()))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(TokenizerExtras { chat_template: s("chat_template"), bos_token: s("bos_token"), eos_token: s("eos_token") })
}
