//! Configuration: one TOML file with `[model]`, `[model.latent]`, `[train]` and `[data]` sections,
//! validated once, with `--set key=value` overrides applied before validation.

use serde::{Deserialize, Deserializer, Serialize};
use std::f64::consts::LN_2;
use std::path::{Path, PathBuf};

/// A configuration error: one line naming the field or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (unknown key, wrong type, missing field).
    #[error("invalid config {origin}: {message}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's message, folded to one line.
        message: String,
    },
    /// A `--set` override is malformed.
    #[error("invalid override '{0}': expected key=value with a dotted key such as train.lr=3e-4")]
    Override(String),
    /// A value is out of range.
    #[error("invalid value for {field}: {message}")]
    Value {
        /// The dotted field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

pub(crate) fn value_err(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value { field, message: message.into() }
}

/// Where the post-sampler output `R` enters the key/value path of the injection block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Injection {
    /// `RMSNorm_attn(X + R)`: the literal Algorithm-2 reading (default).
    #[default]
    PreNorm,
    /// `RMSNorm_attn(X) + R`: ablation, R added after the norm.
    PostNorm,
}

/// How the Binary Mapper's straight-through gradient (Eq. 8) is computed. Both give the same
/// estimator (the full code distribution G); they differ only in cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MapperGrad {
    /// Chunked closed-form backward, O(chunk·2^H) scratch, no dense one-hot (default).
    #[default]
    Fused,
    /// Autodiff of `E[c] + (G − sg(G))·E` with G materialised for the whole batch: the usual
    /// public formulation, O(B·T·2^H) memory. For tests and benchmarks.
    Dense,
}

/// How the post-sampler table E is initialised (the paper leaves this open; spec §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PostSamplerInit {
    /// i.i.d. rows, `E ~ N(0, σ²)` with σ = `post_sampler_init_std` (default).
    #[default]
    Gaussian,
    /// Linear in the ±1 bits: `E_c = Σ_h (2·bit(c,h) − 1)·W_h`, `W ~ N(0, σ²/H)`, plus i.i.d.
    /// `N(0, post_sampler_init_noise²)`; Eq. 8 then gives bit h the full signal `2p(1−p)·δR·W_h`.
    Bits,
}

/// How AdamW updates the post-sampler table E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TableOptimizer {
    /// Every row every step, like any other parameter (default).
    #[default]
    Dense,
    /// Lazy AdamW: only rows with a non-zero gradient in the step get moment updates, decay and a
    /// parameter update, with bias correction from the row's own update count.
    Lazy,
}

/// Arithmetic precision of the matrix products (spec: the Binary Mapper always runs in fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in fp32 (default).
    #[default]
    Fp32,
    /// Linear layers and attention in bf16 with fp32 master weights, residual stream, norms,
    /// logits, loss and the Binary Mapper (the explicit CPU equivalent of bf16 autocast).
    Bf16,
}

impl Precision {
    /// The tensor kind of the matrix products.
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Bf16 => tch::Kind::BFloat16,
        }
    }

    /// "fp32" or "bf16".
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// κ in bits per token, written either as a number (`0.125`) or a fraction (`"1/8"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct KappaBits(pub f64);

impl KappaBits {
    /// κ converted exactly once to nats: `k · ln 2`.
    pub fn nats(self) -> f64 {
        self.0 * LN_2
    }

    /// Parses `0.5`, `1/8`, `2`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let v = if let Some((a, b)) = s.split_once('/') {
            let a: f64 = a.trim().parse().map_err(|_| format!("'{s}' is not a number or fraction"))?;
            let b: f64 = b.trim().parse().map_err(|_| format!("'{s}' is not a number or fraction"))?;
            if b == 0.0 {
                return Err(format!("'{s}' divides by zero"));
            }
            a / b
        } else {
            s.parse().map_err(|_| format!("'{s}' is not a number or fraction"))?
        };
        Ok(KappaBits(v))
    }
}

impl<'de> Deserialize<'de> for KappaBits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(v) => Ok(KappaBits(v)),
            Raw::Int(v) => Ok(KappaBits(v as f64)),
            Raw::Str(s) => KappaBits::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// The latent part of a Free Transformer (`[model.latent]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentConfig {
    /// false: a plain baseline decoder (no encoder, no Z).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Bits per latent, H (1..=16); codes C = 2^H.
    #[serde(default = "default_bits")]
    pub bits: usize,
    /// Number of decoder blocks before the injection block (default L/2).
    #[serde(default)]
    pub inject_after: Option<usize>,
    /// Free-bits threshold κ per token, in bits (required when enabled).
    #[serde(default)]
    pub kappa_bits: Option<KappaBits>,
    /// Std σ of the post-sampler table E init (per entry, for either init).
    #[serde(default = "default_init_std")]
    pub post_sampler_init_std: f64,
    /// Shape of the E init: `gaussian` (i.i.d. rows) or `bits` (linear in the code's bits).
    #[serde(default)]
    pub post_sampler_init: PostSamplerInit,
    /// Std of i.i.d. noise added on top of the `bits` init (0 = none).
    #[serde(default)]
    pub post_sampler_init_noise: f64,
    /// Where R enters the K/V path of the injection block.
    #[serde(default)]
    pub injection: Injection,
    /// How Eq. 8's gradient is computed.
    #[serde(default)]
    pub mapper_grad: MapperGrad,
    /// Tokens per chunk in the fused mapper backward (0 = choose so scratch stays ≤ 16 MiB).
    #[serde(default)]
    pub mapper_chunk: usize,
}

fn yes() -> bool {
    true
}
fn default_bits() -> usize {
    16
}
fn default_init_std() -> f64 {
    0.02
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_norm_eps() -> f64 {
    1e-5
}

impl Default for LatentConfig {
    fn default() -> Self {
        LatentConfig {
            enabled: false,
            bits: default_bits(),
            inject_after: None,
            kappa_bits: None,
            post_sampler_init_std: default_init_std(),
            post_sampler_init: PostSamplerInit::Gaussian,
            post_sampler_init_noise: 0.0,
            injection: Injection::PreNorm,
            mapper_grad: MapperGrad::Fused,
            mapper_chunk: 0,
        }
    }
}

/// The decoder architecture (`[model]`), Llama-style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size V (must match the tokenizer).
    pub vocab_size: usize,
    /// Model width D.
    pub d_model: usize,
    /// Decoder blocks L.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA); must divide n_heads.
    pub n_kv_heads: usize,
    /// SwiGLU hidden width.
    pub ffn_hidden: usize,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Longest sequence the model accepts (RoPE table and KV cache size).
    pub max_seq_len: usize,
    /// Share the token embedding with the output projection.
    #[serde(default)]
    pub tied_embeddings: bool,
    /// Std of the normal init of every matrix.
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// The Free Transformer's latent; absent or `enabled = false` means a baseline decoder.
    #[serde(default)]
    pub latent: LatentConfig,
    /// Precision of the matrix products ("fp32" or "bf16"); weights are always stored in fp32.
    #[serde(default)]
    pub precision: Precision,
}

impl ModelConfig {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// The latent config when the model is a Free Transformer.
    pub fn latent(&self) -> Option<&LatentConfig> {
        self.latent.enabled.then_some(&self.latent)
    }

    /// Index of the injection block (`block[m]`).
    pub fn inject_at(&self) -> usize {
        self.latent.inject_after.unwrap_or(self.n_layers / 2)
    }

    /// Checks every range the model relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vocab_size < 2 {
            return Err(value_err("model.vocab_size", "must be at least 2"));
        }
        if self.d_model == 0 {
            return Err(value_err("model.d_model", "must be positive"));
        }
        if self.n_layers == 0 {
            return Err(value_err("model.n_layers", "must be at least 1"));
        }
        if self.n_heads == 0 || self.n_kv_heads == 0 {
            return Err(value_err("model.n_heads", "n_heads and n_kv_heads must be positive"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(value_err(
                "model.n_kv_heads",
                format!("{} does not divide n_heads = {}", self.n_kv_heads, self.n_heads),
            ));
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(value_err(
                "model.n_heads",
                format!("{} does not divide d_model = {}", self.n_heads, self.d_model),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(value_err("model.n_heads", "head dim d_model/n_heads must be even for RoPE"));
        }
        if self.ffn_hidden == 0 {
            return Err(value_err("model.ffn_hidden", "must be positive"));
        }
        if self.max_seq_len < 2 {
            return Err(value_err("model.max_seq_len", "must be at least 2"));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(value_err("model.rope_theta", "must be a finite number > 1"));
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(value_err("model.init_std", "must be a finite number > 0"));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(value_err("model.norm_eps", "must be a finite number > 0"));
        }
        if let Some(lat) = self.latent() {
            if !(1..=16).contains(&lat.bits) {
                return Err(value_err("model.latent.bits", format!("{} is outside 1..=16", lat.bits)));
            }
            let m = self.inject_at();
            if self.n_layers < 2 || m == 0 || m >= self.n_layers {
                return Err(value_err(
                    "model.latent.inject_after",
                    format!(
                        "{m} must lie in 1..{} (a Free Transformer needs ≥ 2 blocks: a trunk before the \
                         injection block)",
                        self.n_layers
                    ),
                ));
            }
            match lat.kappa_bits {
                None => {
                    return Err(value_err(
                        "model.latent.kappa_bits",
                        "required when latent.enabled = true (e.g. 0.5 or \"1/8\")",
                    ));
                }
                Some(k) if !(k.0.is_finite() && k.0 >= 0.0) => {
                    return Err(value_err("model.latent.kappa_bits", format!("{} must be ≥ 0", k.0)));
                }
                Some(k) if k.0 > lat.bits as f64 => {
                    return Err(value_err(
                        "model.latent.kappa_bits",
                        format!("{} exceeds the H = {} bits a token can carry", k.0, lat.bits),
                    ));
                }
                _ => {}
            }
            if !(lat.post_sampler_init_std.is_finite() && lat.post_sampler_init_std >= 0.0) {
                return Err(value_err("model.latent.post_sampler_init_std", "must be finite and ≥ 0"));
            }
            if !(lat.post_sampler_init_noise.is_finite() && lat.post_sampler_init_noise >= 0.0) {
                return Err(value_err("model.latent.post_sampler_init_noise", "must be finite and ≥ 0"));
            }
            if lat.post_sampler_init_noise > 0.0 && lat.post_sampler_init != PostSamplerInit::Bits {
                return Err(value_err("model.latent.post_sampler_init_noise", "is only used with post_sampler_init = \"bits\""));
            }
        }
        Ok(())
    }

    /// Number of parameters, split as (decoder, encoder block + ζ + readout, post-sampler table E).
    pub fn param_counts(&self) -> (usize, usize, usize) {
        let d = self.d_model;
        let dh = self.head_dim();
        let block = d * (self.n_heads * dh) * 2 + d * (self.n_kv_heads * dh) * 2 + 3 * d * self.ffn_hidden + 2 * d;
        let head = if self.tied_embeddings { 0 } else { self.vocab_size * d };
        let decoder = self.vocab_size * d + self.n_layers * block + d + head;
        match self.latent() {
            Some(lat) => (decoder, block + 2 * d + lat.bits * d, (1usize << lat.bits) * d),
            None => (decoder, 0, 0),
        }
    }
}

/// What to do when the loss or gradient is NaN/inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NonFinite {
    /// Stop training with an error; the last good checkpoint stays untouched (default).
    #[default]
    Stop,
    /// Skip the optimizer step and go on.
    Skip,
}

/// Optimisation and bookkeeping (`[train]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of lr (cosine decay target).
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay (matrices only; never norms or ζ).
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Also decay the token embedding and the post-sampler table E.
    #[serde(default)]
    pub decay_embeddings: bool,
    /// How AdamW updates the post-sampler table E (`dense` or `lazy`).
    #[serde(default)]
    pub post_sampler_optimizer: TableOptimizer,
    /// Learning-rate multiplier for the post-sampler table E.
    #[serde(default = "one_f")]
    pub post_sampler_lr_mult: f64,
    /// Learning-rate multiplier for the encoder (its block, ζ, norm and readout).
    #[serde(default = "one_f")]
    pub encoder_lr_mult: f64,
    /// AdamW β1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// AdamW β2.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// AdamW ε.
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
    /// Global-norm gradient clipping (0 = off).
    #[serde(default = "one_f")]
    pub grad_clip: f64,
    /// Seed of init, data order and every random draw.
    #[serde(default)]
    pub seed: u64,
    /// Metrics line every N steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Held-out evaluation every N steps (0 = only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Validation batches per evaluation.
    #[serde(default = "default_eval_batches")]
    pub eval_batches: usize,
    /// Checkpoint every N steps (0 = only at the end).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Keep only the newest N checkpoints (0 = keep all).
    #[serde(default)]
    pub keep_last: usize,
    /// NaN/inf handling.
    #[serde(default)]
    pub on_nonfinite: NonFinite,
    /// CPU threads for libtorch (0 = libtorch's default).
    #[serde(default)]
    pub threads: usize,
}

fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_wd() -> f64 {
    0.1
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_log_every() -> u64 {
    10
}
fn default_eval_batches() -> usize {
    8
}

impl TrainConfig {
    /// Checks every range the trainer relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.steps == 0 {
            return Err(value_err("train.steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(value_err("train.batch_size", "must be at least 1"));
        }
        if self.grad_accum == 0 {
            return Err(value_err("train.grad_accum", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(value_err("train.lr", "must be a finite number > 0"));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(value_err("train.min_lr_ratio", "must lie in [0, 1]"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(value_err("train.weight_decay", "must be finite and ≥ 0"));
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return Err(value_err("train.beta1", "must lie in [0, 1)"));
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return Err(value_err("train.beta2", "must lie in [0, 1)"));
        }
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            return Err(value_err("train.adam_eps", "must be a finite number > 0"));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return Err(value_err("train.grad_clip", "must be finite and ≥ 0"));
        }
        for (key, v) in [("train.post_sampler_lr_mult", self.post_sampler_lr_mult), ("train.encoder_lr_mult", self.encoder_lr_mult)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(value_err(key, "must be finite and ≥ 0"));
            }
        }
        if self.log_every == 0 {
            return Err(value_err("train.log_every", "must be at least 1"));
        }
        if self.eval_batches == 0 {
            return Err(value_err("train.eval_batches", "must be at least 1"));
        }
        Ok(())
    }
}

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
    /// parameters; see [`crate::tasks`]).
    Task(crate::tasks::TaskSpec),
}

fn default_val_fraction() -> f64 {
    0.05
}

/// A whole run: model, training and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The architecture.
    pub model: ModelConfig,
    /// The optimisation.
    pub train: TrainConfig,
    /// The data.
    pub data: DataConfig,
}

impl RunConfig {
    /// Reads a TOML file, applies `key=value` overrides, then validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (`origin` names it in errors), applies overrides, validates.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let parse_err = |e: &dyn std::fmt::Display| ConfigError::Parse {
            origin: origin.to_string(),
            message: one_line(&e.to_string()),
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| parse_err(&e))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: RunConfig = value.try_into().map_err(|e: toml::de::Error| parse_err(&e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Validates every section and their agreement.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate()?;
        self.train.validate()?;
        match &self.data {
            DataConfig::Synthetic => {
                if self.model.vocab_size != crate::data::Tokenizer::Synthetic.vocab_size() {
                    return Err(value_err(
                        "model.vocab_size",
                        format!("{} does not match the synthetic task's 29 symbols", self.model.vocab_size),
                    ));
                }
                if self.model.max_seq_len < crate::data::SYNTH_LEN - 1 {
                    return Err(value_err(
                        "model.max_seq_len",
                        format!("{} is shorter than the synthetic task's 65 inputs", self.model.max_seq_len),
                    ));
                }
            }
            DataConfig::Text { seq_len, val_fraction, tokenizer, .. } => {
                if tokenizer.is_none() && self.model.vocab_size != crate::data::Tokenizer::Bytes.vocab_size() {
                    return Err(value_err(
                        "model.vocab_size",
                        format!("{} does not match the byte tokenizer's 256", self.model.vocab_size),
                    ));
                }
                if *seq_len < 2 {
                    return Err(value_err("data.seq_len", "must be at least 2"));
                }
                if *seq_len - 1 > self.model.max_seq_len {
                    return Err(value_err(
                        "data.seq_len",
                        format!("{} exceeds model.max_seq_len + 1 = {}", seq_len, self.model.max_seq_len + 1),
                    ));
                }
                if !(*val_fraction > 0.0 && *val_fraction < 1.0) {
                    return Err(value_err("data.val_fraction", "must lie strictly between 0 and 1"));
                }
            }
            DataConfig::Task(spec) => {
                spec.validate()?;
                if self.model.vocab_size != spec.vocab_size() {
                    return Err(value_err(
                        "model.vocab_size",
                        format!(
                            "{} does not match the {} task's {} symbols",
                            self.model.vocab_size,
                            spec.name(),
                            spec.vocab_size()
                        ),
                    ));
                }
                if self.model.max_seq_len < spec.seq_len() - 1 {
                    return Err(value_err(
                        "model.max_seq_len",
                        format!(
                            "{} is shorter than the {} task's {} inputs",
                            self.model.max_seq_len,
                            spec.name(),
                            spec.seq_len() - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Folds a multi-line message (parser or libtorch errors) into one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sets `a.b.c = value` in a TOML tree; the value is parsed as TOML (number, bool, string, array)
/// and falls back to a plain string.
pub fn apply_override(root: &mut toml::Value, spec: &str) -> Result<(), ConfigError> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| ConfigError::Override(spec.to_string()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(ConfigError::Override(spec.to_string()));
    }
    let raw = raw.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let table = node.as_table_mut().ok_or_else(|| ConfigError::Override(spec.to_string()))?;
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().ok_or_else(|| ConfigError::Override(spec.to_string()))?;
    table.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[model]
vocab_size = 29
d_model = 64
n_layers = 4
n_heads = 4
n_kv_heads = 2
ffn_hidden = 128
max_seq_len = 80
[model.latent]
bits = 8
kappa_bits = "1/8"
[train]
steps = 10
batch_size = 4
lr = 1e-3
[data]
kind = "synthetic"
"#;

    #[test]
    fn kappa_units_convert_once() {
        assert!((KappaBits(0.5).nats() - 0.346_573_6).abs() < 1e-7);
        assert_eq!(KappaBits::parse("1/64").unwrap().0, 1.0 / 64.0);
        assert!((KappaBits::parse("1/8").unwrap().nats() - 0.086_643).abs() < 1e-6);
        assert!(KappaBits::parse("1/0").is_err());
        assert!(KappaBits::parse("abc").is_err());
    }

    #[test]
    fn parses_and_validates() {
        let c = RunConfig::from_toml_str(BASE, "test", &[]).unwrap();
        assert!(c.model.latent().is_some());
        assert_eq!(c.model.inject_at(), 2);
        assert_eq!(c.model.latent.kappa_bits.unwrap().0, 0.125);
    }

    #[test]
    fn overrides_apply_before_validation() {
        let c = RunConfig::from_toml_str(
            BASE,
            "test",
            &["model.latent.kappa_bits=2".into(), "train.lr=3e-4".into(), "model.latent.enabled=false".into()],
        )
        .unwrap();
        assert_eq!(c.train.lr, 3e-4);
        assert!(c.model.latent().is_none());
        let e = RunConfig::from_toml_str(BASE, "test", &["model.latent.bits=17".into()]).unwrap_err();
        assert!(e.to_string().contains("model.latent.bits"), "{e}");
        assert!(RunConfig::from_toml_str(BASE, "test", &["novalue".into()]).is_err());
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let cases = [
            ("model.n_kv_heads=3", "model.n_kv_heads"),
            ("model.latent.kappa_bits=-1", "model.latent.kappa_bits"),
            ("model.n_layers=0", "model.n_layers"),
            ("model.latent.bits=0", "model.latent.bits"),
            ("model.vocab_size=30", "model.vocab_size"),
            ("train.lr=0", "train.lr"),
            ("model.latent.inject_after=4", "model.latent.inject_after"),
            ("model.bogus=1", "bogus"),
            ("train.steps=\"ten\"", "train.steps"),
        ];
        for (o, field) in cases {
            let e = RunConfig::from_toml_str(BASE, "test", &[o.to_string()]).unwrap_err().to_string();
            assert!(e.contains(field), "{o}: {e}");
            assert!(!e.contains('\n'), "{o}: multi-line error {e}");
        }
    }

    #[test]
    fn kappa_is_required_for_a_free_transformer() {
        let text = BASE.replace("kappa_bits = \"1/8\"", "");
        let e = RunConfig::from_toml_str(&text, "test", &[]).unwrap_err().to_string();
        assert!(e.contains("kappa_bits"), "{e}");
    }

    #[test]
    fn text_tokenizer_key_is_optional_and_round_trips() {
        let text = |extra: &str| {
            BASE.replace("vocab_size = 29", "vocab_size = 300")
                .replace("kind = \"synthetic\"", &format!("kind = \"text\"\npath = \"c.txt\"\nseq_len = 33\n{extra}"))
        };
        // Without a tokenizer the text is bytes, and 300 is not 256.
        let e = RunConfig::from_toml_str(&text(""), "test", &[]).unwrap_err().to_string();
        assert!(e.contains("model.vocab_size") && e.contains("256"), "{e}");
        // With one, the vocabulary is checked when the tokenizer file is loaded.
        let c = RunConfig::from_toml_str(&text("tokenizer = \"tok.json\""), "test", &[]).unwrap();
        let DataConfig::Text { tokenizer, .. } = &c.data else { panic!("text data") };
        assert_eq!(tokenizer.as_deref(), Some(Path::new("tok.json")));
        let back = RunConfig::from_toml_str(&toml::to_string(&c).unwrap(), "round trip", &[]).unwrap();
        assert_eq!(back, c);
        // Byte-level runs serialise exactly as before (no tokenizer key).
        let bytes = RunConfig::from_toml_str(&text(""), "test", &["model.vocab_size=256".into()]).unwrap();
        assert!(!toml::to_string(&bytes).unwrap().contains("tokenizer"));
    }

    #[test]
    fn param_counts_separate_the_table() {
        let c = RunConfig::from_toml_str(BASE, "test", &[]).unwrap();
        let (_, enc, table) = c.model.param_counts();
        assert_eq!(table, 256 * 64);
        assert!(enc > 0);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = "[model]\nvocab_size = 29\nd_model = 32\nn_layers = 2\nn_heads = 2\nn_kv_heads = 1\n\
                        ffn_hidden = 64\nmax_seq_len = 70\n[model.latent]\nbits = 4\nkappa_bits = 0.5\n\
                        [train]\nsteps = 1\nbatch_size = 1\nlr = 1e-3\n[data]\nkind = \"synthetic\"\n";

    proptest! {
        /// Any override, well-formed or not, yields a config or a one-line error; never a panic.
        #[test]
        fn overrides_never_panic(key in "[a-z_.]{0,24}", value in "\\PC{0,16}") {
            let o = format!("{key}={value}");
            match RunConfig::from_toml_str(BASE, "prop", &[o]) {
                Ok(c) => prop_assert!(c.validate().is_ok()),
                Err(e) => prop_assert!(!e.to_string().contains('\n')),
            }
        }

        /// Numeric fields accept exactly the values validation allows.
        #[test]
        fn numeric_ranges_are_enforced(bits in -3i64..24, kappa in -2.0f64..20.0, layers in 0i64..6) {
            let o = [
                format!("model.latent.bits={bits}"),
                format!("model.latent.kappa_bits={kappa}"),
                format!("model.n_layers={layers}"),
            ];
            let ok = (1..=16).contains(&bits) && kappa >= 0.0 && kappa <= bits as f64 && layers >= 2;
            prop_assert_eq!(RunConfig::from_toml_str(BASE, "prop", &o).is_ok(), ok);
        }

        /// Arbitrary text through the TOML front end never panics.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = RunConfig::from_toml_str(&text, "prop", &[]);
        }
    }
}
