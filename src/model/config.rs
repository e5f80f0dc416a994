//! The architecture's configuration (`[model]`, `[model.latent]`): the decoder's shape, the latent
//! (H, κ, injection depth, E's init) and precision, each validated with a one-line error.

use crate::util::error::{FieldError, value_err};
use serde::{Deserialize, Deserializer, Serialize};
use std::f64::consts::LN_2;

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
    /// Closed-form backward tiled over codes, O(tokens·tile) scratch, no dense one-hot (default).
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
    /// i.i.d. rows, `E ~ N(0, σ²)` with σ = `post_sampler_init_std` (default 0.02, the spec's).
    Gaussian,
    /// Linear in the ±1 bits: `E_c = Σ_h (2·bit(c,h) − 1)·W_h`, `W ~ N(0, σ²/H)` (default σ = 1),
    /// plus i.i.d. `N(0, post_sampler_init_noise²)`; Eq. 8 then gives bit h the full signal
    /// `2p(1−p)·δR·W_h`. The default: at H = 16 it is what makes the decoder read Z
    /// (docs/results/figure4-probes/README.md §7).
    #[default]
    Bits,
}

/// Over what the free-bits threshold κ is granted (spec §3 is token-wise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FreeBits {
    /// The paper's `(1/T)·Σ_t max(0, KL_t − κ)`: each token gets κ for free (default).
    #[default]
    Token,
    /// `(1/T)·max(0, Σ_t KL_t − κ·T)` per sequence: the same κ·T budget, spent on any tokens. A
    /// deviation from the paper, for probes: token-wise free bits make restating a fact at every
    /// token free, which the i.i.d. prior cannot reproduce (docs/results/figure4-probes §13).
    Sequence,
}

impl FreeBits {
    /// True for the paper's token-wise form (the default, not serialised).
    pub fn is_token(&self) -> bool {
        *self == FreeBits::Token
    }
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

    /// Checks κ as the value of `field` for a latent of `bits` bits: finite, ≥ 0 and ≤ H.
    pub fn check(self, field: &'static str, bits: usize) -> Result<(), FieldError> {
        if !(self.0.is_finite() && self.0 >= 0.0) {
            return Err(value_err(field, format!("{} must be ≥ 0", self.0)));
        }
        if self.0 > bits as f64 {
            return Err(value_err(field, format!("{} exceeds the H = {bits} bits a token can carry", self.0)));
        }
        Ok(())
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
    /// Whether κ is granted per token (the paper) or as a per-sequence budget κ·T (a probe).
    #[serde(default, skip_serializing_if = "FreeBits::is_token")]
    pub free_bits: FreeBits,
    /// Std σ of the post-sampler table E init (unset: 1 for `bits`, the spec's 0.02 for
    /// `gaussian`); read it through [`LatentConfig::init_std`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_sampler_init_std: Option<f64>,
    /// Shape of the E init: `gaussian` (i.i.d. rows) or `bits` (linear in the code's bits).
    #[serde(default)]
    pub post_sampler_init: PostSamplerInit,
    /// Std of i.i.d. noise added on top of the `bits` init (0 = none).
    #[serde(default)]
    pub post_sampler_init_noise: f64,
    /// Where R enters the K/V path of the injection block.
    #[serde(default)]
    pub injection: Injection,
    /// A learned per-head bias on the encoder's attention scores for each relative offset s − t
    /// (zero at init, so the model starts as the spec's). A deviation from the paper, off by
    /// default: with a constant query ζ the encoder can select offsets only through RoPE phases,
    /// and at H = 16 it was measured to attend uniformly (docs/results/figure4-probes §10).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encoder_rel_bias: bool,
    /// When set, a learned per-head bias on the injection block's attention scores for each
    /// relative offset s − t, starting at this value for the own position (offset 0) and 0
    /// elsewhere, so that block m starts by reading its own token's Z. A deviation from the paper,
    /// off by default (docs/results/figure4-probes §10: the decoder otherwise reads Z_t no more than
    /// uniformly, and no bit ever carries the next token's noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_self_bias: Option<f64>,
    /// How Eq. 8's gradient is computed.
    #[serde(default)]
    pub mapper_grad: MapperGrad,
    /// Codes per tile in the fused mapper backward (a power of two ≤ 2^H; 0 = the largest tile
    /// whose `[tokens, tile]` fp32 scratch stays ≤ 16 MiB).
    #[serde(default)]
    pub mapper_tile: usize,
    /// Accepted and ignored: the tokens per chunk of the token-chunked backward that tiling over
    /// codes replaced (2026-11-30), so that configs and checkpoints written before still load.
    /// Never serialised and equal whatever its value, so that such a run resumes and is reused.
    #[serde(default, skip_serializing)]
    pub mapper_chunk: serde::de::IgnoredAny,
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
            free_bits: FreeBits::Token,
            post_sampler_init_std: None,
            post_sampler_init: PostSamplerInit::default(),
            post_sampler_init_noise: 0.0,
            injection: Injection::PreNorm,
            encoder_rel_bias: false,
            inject_self_bias: None,
            mapper_grad: MapperGrad::Fused,
            mapper_tile: 0,
            mapper_chunk: serde::de::IgnoredAny,
        }
    }
}

impl LatentConfig {
    /// σ of the E init: `post_sampler_init_std` if set, else 1 for `bits` and 0.02 (spec) for
    /// `gaussian`.
    pub fn init_std(&self) -> f64 {
        self.post_sampler_init_std.unwrap_or(match self.post_sampler_init {
            PostSamplerInit::Bits => 1.0,
            PostSamplerInit::Gaussian => 0.02,
        })
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

    /// `latent.inject_after` resolved (default L/2): the number of blocks before the injection block, which is `block[m]` for this `m`.
    pub fn inject_after(&self) -> usize {
        self.latent.inject_after.unwrap_or(self.n_layers / 2)
    }

    /// Checks every range the model relies on.
    pub fn validate(&self) -> Result<(), FieldError> {
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
        match self.latent() {
            Some(lat) => self.validate_latent(lat),
            None => Ok(()),
        }
    }

    /// Checks the latent half: H, the injection depth, κ and E's init.
    fn validate_latent(&self, lat: &LatentConfig) -> Result<(), FieldError> {
        if !(1..=16).contains(&lat.bits) {
            return Err(value_err("model.latent.bits", format!("{} is outside 1..=16", lat.bits)));
        }
        let m = self.inject_after();
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
            Some(k) => k.check("model.latent.kappa_bits", lat.bits)?,
        }
        if !(lat.init_std().is_finite() && lat.init_std() >= 0.0) {
            return Err(value_err("model.latent.post_sampler_init_std", "must be finite and ≥ 0"));
        }
        if lat.inject_self_bias.is_some_and(|b| !b.is_finite()) {
            return Err(value_err("model.latent.inject_self_bias", "must be a finite number"));
        }
        if !(lat.post_sampler_init_noise.is_finite() && lat.post_sampler_init_noise >= 0.0) {
            return Err(value_err("model.latent.post_sampler_init_noise", "must be finite and ≥ 0"));
        }
        if lat.post_sampler_init_noise > 0.0 && lat.post_sampler_init != PostSamplerInit::Bits {
            return Err(value_err(
                "model.latent.post_sampler_init_noise",
                "is only used with post_sampler_init = \"bits\"",
            ));
        }
        let tile = lat.mapper_tile;
        if tile != 0 && (!tile.is_power_of_two() || tile > 1 << lat.bits) {
            return Err(value_err(
                "model.latent.mapper_tile",
                format!("must be 0 (automatic) or a power of two ≤ 2^bits = {}, got {tile}", 1u64 << lat.bits),
            ));
        }
        Ok(())
    }

    /// `Err(field)` naming the first architecture field that differs from `other`: everything
    /// that shapes the weights or the function they compute (precision, max_seq_len, init
    /// settings, κ and how the mapper gradient is computed are free to differ).
    pub fn same_architecture(&self, other: &ModelConfig) -> Result<(), String> {
        let (a, b) = (self, other);
        let fields: [(&str, bool); 13] = [
            ("vocab_size", a.vocab_size == b.vocab_size),
            ("d_model", a.d_model == b.d_model),
            ("n_layers", a.n_layers == b.n_layers),
            ("n_heads", a.n_heads == b.n_heads),
            ("n_kv_heads", a.n_kv_heads == b.n_kv_heads),
            ("ffn_hidden", a.ffn_hidden == b.ffn_hidden),
            ("rope_theta", a.rope_theta == b.rope_theta),
            ("tied_embeddings", a.tied_embeddings == b.tied_embeddings),
            ("norm_eps", a.norm_eps == b.norm_eps),
            ("latent.enabled", a.latent().is_some() == b.latent().is_some()),
            ("latent.bits", a.latent().map(|l| l.bits) == b.latent().map(|l| l.bits)),
            ("latent.inject_after", a.latent().map(|_| a.inject_after()) == b.latent().map(|_| b.inject_after())),
            ("latent.injection", a.latent().map(|l| l.injection) == b.latent().map(|l| l.injection)),
        ];
        match fields.iter().find(|(_, same)| !same) {
            Some((f, _)) => Err(format!("model.{f}")),
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_units_convert_once() {
        assert!((KappaBits(0.5).nats() - 0.346_573_6).abs() < 1e-7);
        assert_eq!(KappaBits::parse("1/64").unwrap().0, 1.0 / 64.0);
        assert!((KappaBits::parse("1/8").unwrap().nats() - 0.086_643).abs() < 1e-6);
        assert!(KappaBits::parse("1/0").is_err());
        assert!(KappaBits::parse("abc").is_err());
    }

    #[test]
    fn post_sampler_init_defaults_to_bits_sigma_one_and_the_spec_stays_selectable() {
        let parse = |extra: &str| -> LatentConfig { toml::from_str(&format!("kappa_bits = 1\n{extra}")).unwrap() };
        let d = parse("");
        assert_eq!((d.post_sampler_init, d.init_std()), (PostSamplerInit::Bits, 1.0));
        let spec = parse("post_sampler_init = \"gaussian\"");
        assert_eq!((spec.post_sampler_init, spec.init_std()), (PostSamplerInit::Gaussian, 0.02));
        assert_eq!(parse("post_sampler_init_std = 0.5").init_std(), 0.5);
        // An unset σ round-trips as unset (a saved config keeps meaning "the init's default").
        let again: LatentConfig = toml::from_str(&toml::to_string(&d).unwrap()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn free_bits_default_to_the_papers_token_form_and_are_serialised_only_when_changed() {
        let parse = |extra: &str| -> LatentConfig { toml::from_str(&format!("kappa_bits = 1\n{extra}")).unwrap() };
        let d = parse("");
        assert_eq!(d.free_bits, FreeBits::Token);
        // Configs saved before the option existed serialise (and so hash for --reuse) as before.
        assert!(!toml::to_string(&d).unwrap().contains("free_bits"));
        let seq = parse("free_bits = \"sequence\"");
        assert_eq!(seq.free_bits, FreeBits::Sequence);
        let again: LatentConfig = toml::from_str(&toml::to_string(&seq).unwrap()).unwrap();
        assert_eq!(again, seq);
        assert!(toml::from_str::<LatentConfig>("kappa_bits = 1\nfree_bits = \"batch\"").is_err());
    }

    #[test]
    fn mapper_tile_is_a_power_of_two_and_the_old_chunk_key_still_loads() {
        let model = |latent: &str| -> ModelConfig {
            toml::from_str(&format!(
                "vocab_size = 29\nd_model = 32\nn_layers = 2\nn_heads = 2\nn_kv_heads = 1\nffn_hidden = 64\nmax_seq_len = 16\n\
                 [latent]\nbits = 4\nkappa_bits = 1\n{latent}"
            ))
            .unwrap()
        };
        assert!(model("mapper_tile = 8").validate().is_ok());
        let e = model("mapper_tile = 6").validate().unwrap_err().to_string();
        assert!(e.contains("model.latent.mapper_tile") && e.contains("power of two"), "{e}");
        assert!(model("mapper_tile = 32").validate().is_err(), "a tile larger than 2^H");
        let old = model("mapper_chunk = 64");
        assert!(old.validate().is_ok(), "checkpoints written before tiling load");
        assert_eq!(old, model(""), "and compare equal to today's config (resume, --reuse)");
    }
}
