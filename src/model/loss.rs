//! The conditional-VAE loss (spec §3): cross-entropy plus the token-wise free-bits KL,
//! `CE + (1/T)·Σ_t max(0, KL_t − κ)`, with `KL_t` in closed form from the bit logits. All in nats.
//! The per-sequence form `(1/T)·max(0, Σ_t KL_t − κ·T)` is a labelled probe (`FreeBits::Sequence`).

use super::config::FreeBits;
use std::f64::consts::LN_2;
use tch::{Kind, Reduction, Tensor};

/// `kl_bit(o) = ln 2 + σ(o)·o − softplus(o)`: KL of Bernoulli(σ(o)) to Bernoulli(1/2), elementwise.
pub fn kl_per_bit(o: &Tensor) -> Tensor {
    let o = o.to_kind(Kind::Float);
    o.sigmoid() * &o - o.softplus() + LN_2
}

/// `KL_t = Σ_h kl_bit(o[t,h])`: `[…, H]` logits → `[…]` nats, in `[0, H·ln 2]`.
pub fn kl_per_token(o: &Tensor) -> Tensor {
    kl_per_bit(o).sum_dim_intlist(-1, false, Kind::Float)
}

/// `(1/N)·Σ_t max(0, KL_t − κ)` over all tokens: the hinge is applied per token, then averaged.
pub fn free_bits(kl_tok: &Tensor, kappa_nats: f64) -> Tensor {
    (kl_tok - kappa_nats).relu().mean(Kind::Float)
}

/// `(1/(B·T))·Σ_b max(0, Σ_t KL_bt − κ·T)` for `kl_tok: [B, T]`: one hinge per sequence on its
/// whole KL, so the κ·T budget may sit on any tokens. Equals [`free_bits`] when every token is
/// above κ, and is never larger.
pub fn free_bits_sequence(kl_tok: &Tensor, kappa_nats: f64) -> Tensor {
    let (b, t) = kl_tok.size2().expect("KL per token is [B, T]");
    (kl_tok.sum_dim_intlist(1, false, Kind::Float) - kappa_nats * t as f64).relu().sum(Kind::Float) / (b * t) as f64
}

/// Per-token negative log-likelihood `−ln softmax(logits)[target]`: `[B, T, V]`, `[B, T]` → `[B, T]`.
pub fn token_nll(logits: &Tensor, targets: &Tensor) -> Tensor {
    let (b, t, v) = logits.size3().expect("logits are [B, T, V]");
    logits
        .to_kind(Kind::Float)
        .view([b * t, v])
        .log_softmax(-1, Kind::Float)
        .g_nll_loss::<Tensor>(&targets.reshape([b * t]), None, Reduction::None, -100)
        .view([b, t])
}

/// Mean cross-entropy over every predicted position.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let (b, t, v) = logits.size3().expect("logits are [B, T, V]");
    logits.to_kind(Kind::Float).view([b * t, v]).cross_entropy_for_logits(&targets.reshape([b * t]))
}

/// The differentiable loss terms of one forward pass.
#[derive(Debug)]
pub struct Loss {
    /// Mean cross-entropy (with whatever Z the forward used).
    pub ce: Tensor,
    /// The free-bits term; `None` when the encoder did not run.
    pub fb: Option<Tensor>,
    /// `KL_t` per token `[B, T]`, nats.
    pub kl_tok: Option<Tensor>,
    /// Per-bit KL `[B, T, H]`, nats.
    pub kl_bits: Option<Tensor>,
    kappa_nats: f64,
}

impl Loss {
    /// CE against `targets`, plus the free-bits term at `kappa_nats` (granted per token or per
    /// sequence, as `scope` says) when bit logits are given.
    pub fn new(
        logits: &Tensor,
        targets: &Tensor,
        bit_logits: Option<&Tensor>,
        kappa_nats: f64,
        scope: FreeBits,
    ) -> Self {
        let ce = cross_entropy(logits, targets);
        let kl_bits = bit_logits.map(kl_per_bit);
        let kl_tok = kl_bits.as_ref().map(|k| k.sum_dim_intlist(-1, false, Kind::Float));
        let fb = kl_tok.as_ref().map(|k| match scope {
            FreeBits::Token => free_bits(k, kappa_nats),
            FreeBits::Sequence => free_bits_sequence(k, kappa_nats),
        });
        Loss { ce, fb, kl_tok, kl_bits, kappa_nats }
    }

    /// `CE + FB`, the training objective.
    pub fn total(&self) -> Tensor {
        match &self.fb {
            Some(fb) => &self.ce + fb,
            None => self.ce.shallow_clone(),
        }
    }

    /// Scalar statistics for logging.
    pub fn stats(&self) -> LossStats {
        tch::no_grad(|| {
            let ce = self.ce.double_value(&[]);
            let (kl, fb, above, per_bit) = match (&self.kl_tok, &self.kl_bits, &self.fb) {
                (Some(kt), Some(kb), Some(fb)) => {
                    let h = kb.size()[kb.dim() - 1];
                    let per_bit: Vec<f64> = Vec::<f32>::try_from(kb.reshape([-1, h]).mean_dim(0, false, Kind::Float))
                        .expect("per-bit KL to host")
                        .into_iter()
                        .map(|v| f64::from(v) / LN_2)
                        .collect();
                    let above = kt.gt(self.kappa_nats).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
                    (Some(kt.mean(Kind::Float).double_value(&[])), Some(fb.double_value(&[])), Some(above), per_bit)
                }
                _ => (None, None, None, Vec::new()),
            };
            LossStats {
                ce,
                loss: ce + fb.unwrap_or(0.0),
                kl_nats: kl,
                kl_bits: kl.map(|k| k / LN_2),
                free_bits: fb,
                frac_above_kappa: above,
                per_bit_kl_bits: per_bit,
            }
        })
    }
}

/// Logged loss figures of one batch.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LossStats {
    /// Cross-entropy, nats per token (with encoder Z for a Free Transformer: a diagnostic only).
    pub ce: f64,
    /// CE + free-bits term.
    pub loss: f64,
    /// Mean `KL_t`, nats per token (un-hinged).
    pub kl_nats: Option<f64>,
    /// Mean `KL_t`, bits per token.
    pub kl_bits: Option<f64>,
    /// The hinged free-bits term, nats.
    pub free_bits: Option<f64>,
    /// Fraction of tokens with `KL_t > κ`.
    pub frac_above_kappa: Option<f64>,
    /// Mean KL of each bit, bits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_bit_kl_bits: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn kl_closed_form_limits() {
        // KL(o = 0) = 0; KL → ln 2 per bit as |o| → ∞ (spec §8.6).
        let k = kl_per_bit(&t(&[0.0, 50.0, -50.0]));
        let v: Vec<f32> = Vec::try_from(k).unwrap();
        assert!(v[0].abs() < 1e-7, "{v:?}");
        assert!((v[1] as f64 - LN_2).abs() < 1e-6 && (v[2] as f64 - LN_2).abs() < 1e-6, "{v:?}");
        let o = Tensor::full([3, 16], 60.0, (Kind::Float, Device::Cpu));
        let kt = kl_per_token(&o);
        assert!((kt.double_value(&[0]) - 16.0 * LN_2).abs() < 1e-5);
    }

    #[test]
    fn kl_matches_entropy_and_enumeration() {
        // kl_bit = ln2 − H_b(p), and KL_t = H ln2 + Σ_c G ln G (Eq. 4), for H = 3.
        let o = Tensor::from_slice(&[0.3f64, -1.7, 2.5]);
        let p = o.sigmoid();
        let q: Tensor = 1.0 - &p;
        let hb = -(&p * p.log() + &q * q.log());
        let want = (LN_2 - hb).sum(Kind::Double).double_value(&[]);
        assert!((kl_per_token(&o).double_value(&[]) - want).abs() < 1e-6);
        let m = crate::model::mapper::BinaryMapper::new(3, 0, Device::Cpu);
        let lg = m.log_code_probs(&o.view([1, 3]));
        let eq4 = 3.0 * LN_2 + (lg.exp() * &lg).sum(Kind::Double).double_value(&[]);
        assert!((eq4 - want).abs() < 1e-9);
        // d kl / do = o·p·(1−p)
        let o = Tensor::from_slice(&[0.8f64]).set_requires_grad(true);
        let g = Tensor::run_backward(&[kl_per_bit(&o).to_kind(Kind::Double).sum(Kind::Double)], &[&o], false, false);
        let p = 0.8f64.exp() / (1.0 + 0.8f64.exp());
        assert!((g[0].double_value(&[0]) - 0.8 * p * (1.0 - p)).abs() < 1e-6);
    }

    #[test]
    fn hinge_is_per_token_before_averaging() {
        // Spec §8.11: T = 2, KL = (2κ, 0) gives FB = κ/2, not max(0, mean − κ) = 0.
        let kappa = 0.5 * LN_2;
        let fb = free_bits(&t(&[2.0 * kappa as f32, 0.0]), kappa).double_value(&[]);
        assert!((fb - kappa / 2.0).abs() < 1e-7, "{fb}");
        // A token exactly at κ contributes exactly 0 and gets no gradient.
        let k = t(&[kappa as f32]).set_requires_grad(true);
        let fb = free_bits(&k, f64::from(kappa as f32));
        assert_eq!(fb.double_value(&[]), 0.0);
        let g = Tensor::run_backward(&[&fb], &[&k], false, false);
        assert_eq!(g[0].double_value(&[0]), 0.0);
    }

    #[test]
    fn sequence_hinge_pools_the_budget_over_tokens() {
        // B = 2, T = 2, κ = 1 nat. Row 0: KL = (2κ, 0) sums to the budget 2κ → 0 (token-wise: κ/2
        // per token). Row 1: (3κ, 2κ) is 3κ over budget → 3κ/(B·T). Gradient 1/(B·T) on row 1 only.
        let kappa = 1.0;
        let k = Tensor::from_slice(&[2.0f64, 0.0, 3.0, 2.0]).view([2, 2]).set_requires_grad(true);
        let fb = free_bits_sequence(&k, kappa);
        assert!((fb.double_value(&[]) - 3.0 / 4.0).abs() < 1e-12);
        let g = Tensor::run_backward(&[&fb], &[&k], false, false);
        let g: Vec<f64> = Vec::try_from(g[0].reshape([-1])).unwrap();
        assert_eq!(g, vec![0.0, 0.0, 0.25, 0.25]);
        // With every token above κ both forms agree; otherwise the pooled one is never larger.
        let all_above = Tensor::from_slice(&[1.5f64, 2.0, 4.0, 1.2]).view([2, 2]);
        let (tok, seq) = (free_bits(&all_above, kappa), free_bits_sequence(&all_above, kappa));
        assert!((tok.double_value(&[]) - seq.double_value(&[])).abs() < 1e-12);
        let mixed = k.detach();
        assert!(free_bits_sequence(&mixed, kappa).double_value(&[]) <= free_bits(&mixed, kappa).double_value(&[]));
        // Loss::new picks the form its scope names.
        let logits = Tensor::zeros([2, 2, 3], (Kind::Float, Device::Cpu));
        let targets = Tensor::zeros([2, 2], (Kind::Int64, Device::Cpu));
        let o = Tensor::from_slice(&[4.0f32, -4.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0]).view([2, 2, 2]);
        let nat = 0.5;
        let (tl, sl) = (
            Loss::new(&logits, &targets, Some(&o), nat, FreeBits::Token),
            Loss::new(&logits, &targets, Some(&o), nat, FreeBits::Sequence),
        );
        let kt = tl.kl_tok.as_ref().unwrap();
        let want_seq = free_bits_sequence(kt, nat).double_value(&[]);
        assert!((sl.fb.as_ref().unwrap().double_value(&[]) - want_seq).abs() < 1e-7);
        assert!((tl.fb.as_ref().unwrap().double_value(&[]) - free_bits(kt, nat).double_value(&[])).abs() < 1e-7);
        assert!(want_seq < free_bits(kt, nat).double_value(&[]));
    }

    #[test]
    fn stats_report_bits_as_nats_over_ln2() {
        let logits = Tensor::zeros([1, 2, 4], (Kind::Float, Device::Cpu));
        let targets = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
        let o = Tensor::from_slice(&[3.0f32, 0.0, -2.0, 1.0]).view([1, 2, 2]);
        let loss = Loss::new(&logits, &targets, Some(&o), 0.1, FreeBits::Token);
        let s = loss.stats();
        assert!((s.ce - 4f64.ln()).abs() < 1e-6);
        assert!((s.kl_bits.unwrap() - s.kl_nats.unwrap() / LN_2).abs() < 1e-12);
        assert_eq!(s.per_bit_kl_bits.len(), 2);
        assert!((s.loss - (s.ce + s.free_bits.unwrap())).abs() < 1e-9);
    }
}
