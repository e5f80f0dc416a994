//! Cached generation (spec §4): the prompt is prefilled through the encoder (posterior Z, bits
//! sampled), every new position draws its own uniform code that is then fixed in the cache, and
//! a pinned Z tensor overrides both (the paper's Figure 4 green groups).

use crate::data::{DataError, Tokenizer};
use crate::model::{FreeTransformer, ModelConfig, Pass, ZSource};
use crate::util::rng::{Stream, uniforms};
use tch::{Kind, Tensor};

/// Where the time of a generation call went (device-synchronised on CUDA).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenTiming {
    /// Seconds of the prompt's forward pass (encoder included) and its token draw.
    pub prefill_s: f64,
    /// Seconds of every later step (one token each).
    pub decode_s: f64,
}

/// Token sampling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Tokens to generate after the prompt.
    pub max_new_tokens: usize,
    /// Softmax temperature (0 = greedy).
    pub temperature: f64,
    /// Keep only the k most likely tokens (None = all).
    pub top_k: Option<usize>,
    /// Nucleus sampling mass (None = 1).
    pub top_p: Option<f64>,
    /// Seed of token sampling and of the prior codes.
    pub seed: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { max_new_tokens: 64, temperature: 1.0, top_k: None, top_p: None, seed: 0 }
    }
}

/// Where the latents of a batch of samples come from.
#[derive(Debug, Clone, Copy)]
pub enum GenerationZ<'a> {
    /// Prompt through the encoder, then an independent uniform code per sample and position.
    Fresh,
    /// One whole Z drawn from the prior (keyed by `z_seed`), shared by every sample, prompt included.
    Shared {
        /// Seed of the shared Z.
        z_seed: u64,
    },
    /// Caller-supplied codes `[B or 1, prompt + max_new_tokens − 1]` for every input position.
    Pinned(&'a Tensor),
}

/// Generated sequences and the codes each position used.
#[derive(Debug)]
pub struct Generation {
    /// Prompt plus generated tokens, `[B, P + N]` (int64).
    pub tokens: Tensor,
    /// The code of each input position `[B, P + N − 1]`; `None` for a baseline.
    pub codes: Option<Tensor>,
    /// Logits of each generated token's distribution, `[B, N, V]` (before temperature/filters).
    pub logits: Tensor,
    /// Wall-clock split of the call: prompt prefill (first forward) and the decode steps after it.
    pub timing: GenTiming,
}

/// An invalid generation request (checked before any tensor work).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Empty prompt.
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    /// Prompt id outside the vocabulary.
    #[error("prompt token {id} at position {pos} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The id.
        id: i64,
        /// Its position.
        pos: usize,
        /// The vocabulary size.
        vocab: usize,
    },
    /// Longer than the model's context.
    #[error("prompt ({prompt}) + max_new_tokens ({new}) exceeds the model's max_seq_len + 1 = {max}")]
    TooLong {
        /// Prompt length.
        prompt: usize,
        /// Requested new tokens.
        new: usize,
        /// Limit.
        max: usize,
    },
    /// Bad sampling settings.
    #[error("invalid sampling option: {0}")]
    Option(String),
    /// Pinned codes of the wrong shape or range.
    #[error("pinned codes: {0}")]
    Pinned(String),
}

/// Generates `n` continuations of `prompt`.
pub fn generate(
    model: &FreeTransformer,
    prompt: &[i64],
    n: usize,
    opts: &SampleOptions,
    source: GenerationZ,
) -> Result<Generation, GenerateError> {
    generate_batch(model, &vec![prompt.to_vec(); n], opts, source)
}

/// Generates one continuation per prompt; prompts must have equal lengths. Row `i` uses fresh-Z
/// sequence id `i`, so a row's draws do not depend on the rest of the batch.
pub fn generate_batch(
    model: &FreeTransformer,
    prompts: &[Vec<i64>],
    opts: &SampleOptions,
    source: GenerationZ,
) -> Result<Generation, GenerateError> {
    check_request(model.config(), prompts, opts)?;
    let (n, p_len) = (prompts.len(), prompts[0].len() as i64);
    let inputs = (p_len + opts.max_new_tokens as i64 - 1).max(p_len);
    let pinned = pinned_codes(model, source, n, inputs)?;
    Ok(crate::model::with_weight_cache(|| decode(model, prompts, opts, pinned.as_ref(), inputs)))
}

/// Checks a request before any tensor work: at least one prompt, equal non-empty prompts inside the
/// vocabulary, the context length, and the sampling settings.
fn check_request(cfg: &ModelConfig, prompts: &[Vec<i64>], opts: &SampleOptions) -> Result<(), GenerateError> {
    let Some(prompt) = prompts.first() else {
        return Err(GenerateError::Option("the number of samples must be at least 1".into()));
    };
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompts.iter().any(|p| p.len() != prompt.len()) {
        return Err(GenerateError::Option("prompts of one batch must have equal lengths".into()));
    }
    for p in prompts {
        if let Some((pos, &id)) = p.iter().enumerate().find(|(_, id)| **id < 0 || **id as usize >= cfg.vocab_size) {
            return Err(GenerateError::TokenOutOfRange { id, pos, vocab: cfg.vocab_size });
        }
    }
    if prompt.len() + opts.max_new_tokens > cfg.max_seq_len + 1 {
        return Err(GenerateError::TooLong {
            prompt: prompt.len(),
            new: opts.max_new_tokens,
            max: cfg.max_seq_len + 1,
        });
    }
    if !(opts.temperature.is_finite() && opts.temperature >= 0.0) {
        return Err(GenerateError::Option(format!("temperature {} must be finite and ≥ 0", opts.temperature)));
    }
    if opts.top_k == Some(0) {
        return Err(GenerateError::Option("top_k must be at least 1".into()));
    }
    if let Some(p) = opts.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(GenerateError::Option(format!("top_p {p} must lie in (0, 1]")));
    }
    Ok(())
}

/// The codes every input position will use when they are fixed in advance (`[n, ≥ inputs]`):
/// checked pinned codes, or one shared prior draw; `None` for fresh Z (drawn while decoding).
fn pinned_codes(
    model: &FreeTransformer,
    source: GenerationZ,
    n: usize,
    inputs: i64,
) -> Result<Option<Tensor>, GenerateError> {
    let (b, dev) = (n as i64, model.device());
    Ok(match source {
        GenerationZ::Pinned(z) => {
            let z = z.to_device(dev).to_kind(Kind::Int64);
            let c = model.latent().map_or(0, |l| l.mapper.num_codes());
            let ok_rows = z.dim() == 2 && (z.size()[0] == 1 || z.size()[0] == b);
            if !ok_rows || z.size()[1] < inputs {
                return Err(GenerateError::Pinned(format!("expected shape [{b} or 1, {inputs}], got {:?}", z.size())));
            }
            if model.latent().is_some() && (z.min().int64_value(&[]) < 0 || z.max().int64_value(&[]) >= c) {
                return Err(GenerateError::Pinned(format!("codes must lie in 0..{c}")));
            }
            Some(z.expand([b, z.size()[1]], false))
        }
        GenerationZ::Shared { z_seed } => {
            model.latent().map(|l| l.mapper.prior_codes(z_seed, &vec![0u64; n], 0, inputs, dev))
        }
        GenerationZ::Fresh => None,
    })
}

/// The decoding loop with a KV cache: prefill the prompts (through the encoder unless codes are
/// pinned), then one token per step with prior (or pinned) codes; times prefill and decode apart.
fn decode(
    model: &FreeTransformer,
    prompts: &[Vec<i64>],
    opts: &SampleOptions,
    pinned: Option<&Tensor>,
    inputs: i64,
) -> Generation {
    let (b, p_len, dev) = (prompts.len() as i64, prompts[0].len() as i64, model.device());
    let fresh_ids: Vec<u64> = (0..b as u64).collect();
    let mut cache = model.new_cache(b, inputs);
    let flat: Vec<i64> = prompts.iter().flatten().copied().collect();
    let tokens = Tensor::from_slice(&flat).view([b, p_len]).to_device(dev);
    let mut out = vec![tokens.shallow_clone()];
    let mut step_logits = Vec::new();
    let mut input = tokens;
    let sync = || {
        if let tch::Device::Cuda(i) = dev {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let start = std::time::Instant::now();
    let mut prefill_s = 0.0;
    for step in 0..opts.max_new_tokens {
        if step == 1 {
            sync();
            prefill_s = start.elapsed().as_secs_f64();
        }
        let pos = cache.len();
        let t = input.size()[1];
        let z = pinned.map(|z| z.narrow(1, pos, t));
        let latents = match (&z, step) {
            (Some(z), _) => ZSource::Pinned(z),
            (None, 0) => ZSource::Posterior { key: Stream::GenPrefill.seed(opts.seed, &[]) },
            (None, _) => ZSource::Prior { seed: opts.seed, seq_ids: &fresh_ids },
        };
        let fwd = model.forward_with(&input, latents, Pass::Inference, Some(&mut cache));
        let last = fwd.logits.select(1, t - 1).to_kind(Kind::Float);
        let next = sample_token(&last, opts, Stream::GenTokens.seed(opts.seed, &[step as u64]));
        step_logits.push(last.unsqueeze(1));
        out.push(next.shallow_clone());
        input = next;
    }
    sync();
    let total = start.elapsed().as_secs_f64();
    if opts.max_new_tokens == 1 {
        prefill_s = total;
    }
    Generation {
        timing: GenTiming { prefill_s, decode_s: total - prefill_s },
        tokens: Tensor::cat(&out, 1),
        codes: cache.codes(),
        logits: if step_logits.is_empty() {
            Tensor::zeros([b, 0, model.config().vocab_size as i64], (Kind::Float, dev))
        } else {
            Tensor::cat(&step_logits, 1)
        },
    }
}

/// Draws one token per row from `[B, V]` logits with temperature, top-k and top-p: `[B, 1]`. The
/// draw inverts the CDF at uniforms from the stream `key` (reproducible, no global generator).
pub fn sample_token(logits: &Tensor, opts: &SampleOptions, key: u64) -> Tensor {
    if opts.temperature == 0.0 {
        return logits.argmax(-1, true);
    }
    let mut l = logits / opts.temperature;
    let v = l.size()[1];
    if let Some(k) = opts.top_k
        && (k as i64) < v
    {
        let (top, _) = l.topk(k as i64, -1, true, true);
        let kth = top.narrow(1, k as i64 - 1, 1);
        l = l.masked_fill(&l.lt_tensor(&kth), f64::NEG_INFINITY);
    }
    if let Some(p) = opts.top_p
        && p < 1.0
    {
        let (sorted, idx) = l.sort(-1, true);
        let probs = sorted.softmax(-1, Kind::Float);
        let before = probs.cumsum(-1, Kind::Float) - &probs;
        let drop_sorted = before.gt(p);
        let drop = drop_sorted.scatter(-1, &idx, &drop_sorted);
        l = l.masked_fill(&drop, f64::NEG_INFINITY);
    }
    let cdf = l.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
    let b = cdf.size()[0];
    let u = uniforms(key, &[b, 1]).to_device(cdf.device()) * cdf.narrow(1, v - 1, 1);
    // Index of the first token whose CDF exceeds u, so tokens of zero mass are never chosen.
    cdf.le_tensor(&u).sum_dim_intlist(-1, true, Kind::Int64).clamp_max(v - 1)
}

/// Decodes generated `[B, T]` int64 tokens into one string per row.
pub fn decode_rows(tok: &Tokenizer, tokens: &Tensor) -> Result<Vec<String>, DataError> {
    let rows =
        Vec::<Vec<i64>>::try_from(tokens.to_device(tch::Device::Cpu)).expect("generated tokens are [B, T] int64");
    rows.into_iter().map(|r| tok.decode(&r.into_iter().map(|v| v as u32).collect::<Vec<_>>())).collect()
}
