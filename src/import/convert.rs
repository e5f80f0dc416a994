//! A pretrained baseline decoder made into a Free Transformer (spec §2), so that fine-tuning starts
//! from the pretrained model rather than from scratch:
//!
//! - every decoder tensor is copied unchanged;
//! - the encoder block is a copy of `block[m]`, the injection block, which reads the same `X_m`;
//! - `RMSNorm_enc` has gain 1 and the readout `W_enc` is zero, so every bit logit is 0: the
//!   encoder starts exactly at the prior (p = 1/2, KL = 0, free-bits hinge inactive) and its
//!   readout still gets a gradient from the first step;
//! - ζ is drawn `N(0, s²)` with `s` the RMS of the embedding table (a token-sized query);
//! - E is bit-structured (`post_sampler_init = "bits"`, the init the H = 16 probes found lets the
//!   decoder read Z): `E_c = Σ_h (2·bit_h(c) − 1)·W_h`, `W ~ N(0, σ²/H)`.
//!
//! **The prior-Z gap.** The spec's injection has no gate: R enters `RMSNorm_attn(X_m + R)`, so the
//! converted model equals the baseline only where R = 0. With σ = 0 (E = 0) the two are equal
//! bitwise (tested). With σ > 0, E's mean over the 2^H codes is exactly zero (each W_h appears
//! with + and − equally often), so the first-order change of the CE cancels when averaged over
//! uniform prior codes and the gap is second order in σ relative to the scale of `X_m`;
//! [`prior_gap`] measures it.

use crate::eval::evaluate;
use crate::model::FreeTransformer;
use crate::model::config::{KappaBits, LatentConfig, PostSamplerInit};
use anyhow::{Result, anyhow, bail};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// How to convert.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertOptions {
    /// Latent bits H.
    pub bits: usize,
    /// Free-bits threshold κ.
    pub kappa: KappaBits,
    /// σ of the bit-structured E (0: E = 0, the converted model equals the baseline exactly).
    pub e_std: f64,
    /// Blocks before the injection block (default L/2).
    pub inject_after: Option<usize>,
    /// Seed of ζ and E.
    pub seed: u64,
}

/// The Free Transformer made from `base` (see the module documentation for every choice).
pub fn convert(base: &FreeTransformer, o: &ConvertOptions) -> Result<FreeTransformer> {
    if base.latent().is_some() {
        bail!("the checkpoint is already a Free Transformer: convert a baseline decoder");
    }
    let mut cfg = base.config().clone();
    cfg.latent = LatentConfig {
        enabled: true,
        bits: o.bits,
        inject_after: o.inject_after,
        kappa_bits: Some(o.kappa),
        post_sampler_init_std: Some(o.e_std),
        post_sampler_init: PostSamplerInit::Bits,
        ..LatentConfig::default()
    };
    cfg.validate().map_err(|e| anyhow!("cannot convert: {e}"))?;
    let m = cfg.inject_after();
    let mut ft = FreeTransformer::new(&cfg, Device::Cpu, o.seed)?;
    let base_vars = base.var_store().variables();
    let embed = &base_vars["model.embed_tokens.weight"];
    let s = embed.square().mean(Kind::Double).sqrt().double_value(&[]);
    let mut fresh: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in ft.var_store().variables() {
        let src = if let Some(rest) = name.strip_prefix("model.latent.encoder.") {
            base_vars.get(&format!("model.layers.{m}.{rest}")).map(Tensor::copy)
        } else if name == "model.latent.readout.weight" {
            Some(var.zeros_like())
        } else if name == "model.latent.zeta" {
            // The seeded N(0, init_std²) draw of the constructor, rescaled to the embedding's RMS.
            Some(&var * (s / cfg.init_std))
        } else if name.starts_with("model.latent.") {
            Some(var.copy())
        } else {
            base_vars.get(&name).map(Tensor::copy)
        };
        fresh.insert(
            name.clone(),
            src.ok_or_else(|| anyhow!("cannot convert: the baseline lacks a tensor for {name}"))?,
        );
    }
    crate::train::checkpoint::load_tensors(&mut ft, &fresh, "conversion")?;
    if ft.device() != base.device() {
        ft.var_store_mut().set_device(base.device());
    }
    Ok(ft)
}

/// Cross-entropies on `batches` (rows of token ids): the baseline's exact CE, and the converted
/// model's CE with prior Z averaged over `draws` draws, in nats per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorGap {
    /// Baseline CE.
    pub base_ce: f64,
    /// Converted model, CE with prior Z.
    pub prior_ce: f64,
    /// Predicted tokens.
    pub tokens: u64,
}

impl PriorGap {
    /// `prior_ce − base_ce`.
    pub fn gap(&self) -> f64 {
        self.prior_ce - self.base_ce
    }
}

/// Measures the prior-Z gap of a conversion on `batches`.
pub fn prior_gap(base: &FreeTransformer, ft: &FreeTransformer, batches: &[Vec<Vec<u32>>], draws: usize) -> PriorGap {
    let b = evaluate(base, batches, 0, 0);
    let f = evaluate(ft, batches, draws.max(1), 0);
    PriorGap { base_ce: b.ce.unwrap_or(f64::NAN), prior_ce: f.prior_ce.unwrap_or(f64::NAN), tokens: b.tokens }
}

/// The RMS of the trunk output `X_m` of `ft` on `batches`: the scale σ of E is measured against.
pub fn trunk_rms(ft: &FreeTransformer, batches: &[Vec<Vec<u32>>]) -> f64 {
    tch::no_grad(|| {
        let (mut sum, mut n) = (0.0, 0.0);
        for rows in batches {
            let (x, _) = crate::eval::to_batch(rows, ft.device());
            let h = ft.trunk(&x);
            sum += h.square().sum(Kind::Double).double_value(&[]);
            n += h.numel() as f64;
        }
        (sum / n.max(1.0)).sqrt()
    })
}
