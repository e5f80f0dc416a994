//! Held-out evaluation that cannot flatter the model (spec §7). A baseline reports its exact CE.
//! A Free Transformer reports the prior-Z CE (what generation does; an upper bound on the NLL)
//! and the ELBO (posterior CE + the full, un-hinged KL; an upper bound). Its posterior CE, where
//! the encoder has seen the predicted token, is reported only as a labelled training diagnostic.

use crate::model::loss::{kl_per_bit, token_nll};
use crate::model::{FreeTransformer, Pass, ZSource};
use crate::util::rng::Stream;
use serde::{Deserialize, Serialize};
use std::f64::consts::LN_2;
use tch::{Device, Kind, Tensor};

/// Per-bit mean KL below this many bits marks a dead bit.
pub const DEAD_BIT_THRESHOLD_BITS: f64 = 0.01;

/// Evaluation figures, per token, in nats (bits = nats / ln 2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    /// Predicted tokens evaluated.
    pub tokens: u64,
    /// Baseline only: exact cross-entropy (NLL).
    pub ce: Option<f64>,
    /// Free Transformer: E_{Z~prior}[−ln p(x|Z)], averaged over `prior_samples` draws (upper bound).
    pub prior_ce: Option<f64>,
    /// Number of prior draws averaged.
    pub prior_samples: usize,
    /// Free Transformer: posterior CE + mean un-hinged KL (upper bound on the NLL).
    pub elbo: Option<f64>,
    /// Free Transformer: importance-weighted bound with `iwae_samples` posterior draws (spec §7.4);
    /// tighter than the ELBO in expectation, still an upper bound on the NLL.
    #[serde(default)]
    pub iwae: Option<f64>,
    /// Posterior draws of the importance-weighted bound.
    #[serde(default)]
    pub iwae_samples: usize,
    /// Diagnostic only, never comparable with a baseline: CE with encoder Z (it saw the future).
    pub posterior_ce_diagnostic: Option<f64>,
    /// Mean KL_t, nats.
    pub kl_nats: Option<f64>,
    /// Mean KL of each bit, in bits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_bit_kl_bits: Vec<f64>,
    /// Bits whose mean KL is below [`DEAD_BIT_THRESHOLD_BITS`].
    pub dead_bits: Option<usize>,
    /// Fraction of tokens with KL_t > κ.
    pub frac_above_kappa: Option<f64>,
    /// Text data only: the headline figures per UTF-8 byte of the predicted text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_byte: Option<BitsPerByte>,
}

/// Headline figures in bits per UTF-8 byte: total nats over the predicted tokens / ln 2 / the bytes
/// those tokens decode to. Comparable across tokenizers; equals bits per token for byte tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BitsPerByte {
    /// UTF-8 bytes the predicted tokens stand for.
    pub bytes: u64,
    /// Baseline: exact CE, bits/byte.
    pub ce: Option<f64>,
    /// Free Transformer: CE with prior Z, bits/byte (upper bound).
    pub prior_ce: Option<f64>,
    /// Free Transformer: ELBO, bits/byte (upper bound).
    pub elbo: Option<f64>,
    /// Free Transformer: importance-weighted bound, bits/byte (upper bound).
    #[serde(default)]
    pub iwae: Option<f64>,
}

/// The exact CE when there is one, else the tightest of the upper bounds (NaN if none).
fn headline(exact: Option<f64>, bounds: [Option<f64>; 3]) -> f64 {
    exact.unwrap_or_else(|| bounds.into_iter().flatten().fold(f64::NAN, f64::min))
}

impl BitsPerByte {
    /// [`EvalReport::headline_nats`]'s rule in bits per byte.
    pub fn headline(&self) -> f64 {
        headline(self.ce, [self.prior_ce, self.iwae, self.elbo])
    }
}

impl EvalReport {
    /// The honest headline number: exact CE for a baseline; for a Free Transformer the tightest of
    /// its upper bounds (prior-Z CE, IWAE, ELBO; each an upper bound on the NLL in expectation).
    pub fn headline_nats(&self) -> f64 {
        headline(self.ce, [self.prior_ce, self.iwae, self.elbo])
    }

    /// Adds bits per byte, given the UTF-8 bytes of the evaluated targets (None: not text, no-op).
    pub fn with_target_bytes(mut self, bytes: Option<u64>) -> Self {
        self.bits_per_byte = bytes.filter(|&b| b > 0).map(|bytes| {
            let per_byte = |v: Option<f64>| v.map(|nats| nats * self.tokens as f64 / LN_2 / bytes as f64);
            BitsPerByte {
                bytes,
                ce: per_byte(self.ce),
                prior_ce: per_byte(self.prior_ce),
                elbo: per_byte(self.elbo),
                iwae: per_byte(self.iwae),
            }
        });
        self
    }

    /// A human-readable table (nats and bits per token), labelled so that nobody compares the
    /// posterior CE with a baseline.
    pub fn render(&self) -> String {
        let row = |name: &str, v: f64| format!("  {name:<40} {v:>8.4} nats  {:>8.4} bits\n", v / LN_2);
        let mut s = format!("held-out evaluation over {} tokens (per token)\n", self.tokens);
        if let Some(ce) = self.ce {
            s += &row("CE (exact NLL, baseline)", ce);
        }
        if let Some(v) = self.prior_ce {
            s += &row(&format!("CE with prior Z (bound, {} draws)", self.prior_samples), v);
        }
        if let Some(v) = self.elbo {
            s += &row("ELBO = posterior CE + KL (bound)", v);
        }
        if let Some(v) = self.iwae {
            s += &row(&format!("IWAE bound, {} posterior draws", self.iwae_samples), v);
        }
        if let Some(v) = self.kl_nats {
            s += &row("KL (un-hinged)", v);
        }
        if let Some(v) = self.posterior_ce_diagnostic {
            s += &row("posterior CE [diagnostic: saw the future]", v);
        }
        if let (Some(d), Some(f)) = (self.dead_bits, self.frac_above_kappa) {
            s += &format!(
                "  dead bits (< {DEAD_BIT_THRESHOLD_BITS} bit): {d}/{}   tokens above κ: {:.1}%\n",
                self.per_bit_kl_bits.len(),
                100.0 * f
            );
        }
        if let Some(b) = &self.bits_per_byte {
            s += &format!(
                "per byte of text ({} bytes, {:.3} bytes/token)\n",
                b.bytes,
                b.bytes as f64 / self.tokens.max(1) as f64
            );
            let rows = [
                ("CE (exact NLL, baseline)", b.ce),
                ("CE with prior Z (bound)", b.prior_ce),
                ("ELBO (bound)", b.elbo),
                ("IWAE (bound)", b.iwae),
            ];
            for (name, v) in rows {
                if let Some(v) = v {
                    s += &format!("  {name:<40} {v:>8.4} bits/byte\n");
                }
            }
        }
        s
    }
}

/// Turns rows of token ids into `(inputs, targets)` = `(x[:, :-1], x[:, 1:])`.
pub fn to_batch(rows: &[Vec<u32>], device: Device) -> (Tensor, Tensor) {
    let t = rows[0].len() as i64;
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().map(|&v| i64::from(v))).collect();
    let x = Tensor::from_slice(&flat).view([rows.len() as i64, t]).to_device(device);
    (x.narrow(1, 0, t - 1).contiguous(), x.narrow(1, 1, t - 1).contiguous())
}

/// Log importance weights of one posterior draw per sequence, `[B]` in f64:
/// `ln p(S|z) + ln P(z) − ln Q(z|S)` with `ln p(S|z) = −Σ_t CE_t`, `ln P(z) = −T·H·ln 2` and
/// `ln Q(z|S) = Σ_t Σ_h (b·o − softplus(o))`.
pub fn log_weights(logits: &Tensor, targets: &Tensor, bit_logits: &Tensor, bits: &Tensor) -> Tensor {
    let log_p = -token_nll(logits, targets).to_kind(Kind::Double).sum_dim_intlist(-1, false, Kind::Double);
    let o = bit_logits.to_kind(Kind::Double);
    let (t, h) = (o.size()[1], o.size()[2]);
    let log_q =
        (&o * bits.to_kind(Kind::Double) - o.softplus()).sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double);
    let log_prior = -((t * h) as f64) * LN_2;
    log_p + log_prior - log_q
}

/// The importance-weighted bound per sequence from log weights `[K, B]`:
/// `−(logsumexp_k ln w_k − ln K)`, in nats per sequence.
pub fn iwae_nll(log_w: &Tensor) -> Tensor {
    let k = log_w.size()[0] as f64;
    -(log_w.logsumexp([0i64].as_slice(), false) - k.ln())
}

/// Evaluation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// Prior draws averaged for the prior CE.
    pub prior_samples: usize,
    /// Posterior draws of the importance-weighted bound (0: not computed).
    pub iwae_samples: usize,
    /// Seed of every latent draw.
    pub seed: u64,
}

/// Evaluates on fixed batches. `prior_samples` prior draws are averaged for the prior CE; `seed`
/// fixes every draw.
pub fn evaluate(model: &FreeTransformer, batches: &[Vec<Vec<u32>>], prior_samples: usize, seed: u64) -> EvalReport {
    evaluate_with(model, batches, &EvalOptions { prior_samples, iwae_samples: 0, seed })
}

/// [`evaluate`] with every option, including the importance-weighted bound.
pub fn evaluate_with(model: &FreeTransformer, batches: &[Vec<Vec<u32>>], opts: &EvalOptions) -> EvalReport {
    let (prior_samples, seed) = (opts.prior_samples, opts.seed);
    crate::model::with_weight_cache(|| {
        let mut iwae_sum = 0.0;
        let mut tokens = 0u64;
        let (mut ce_sum, mut post_sum, mut prior_sum, mut kl_sum, mut above_sum) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut per_bit: Option<Tensor> = None;
        let kappa = model.kappa_nats();
        for (bi, rows) in batches.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let (x, y) = to_batch(rows, model.device());
            let n = y.numel() as u64;
            tokens += n;
            let key = Stream::EvalPosterior.seed(seed, &[bi as u64]);
            let fwd = model.forward(&x, ZSource::Posterior { key }, Pass::Inference);
            let nll = token_nll(&fwd.logits, &y).sum(Kind::Double).double_value(&[]);
            let Some(o) = fwd.bit_logits else {
                ce_sum += nll;
                continue;
            };
            post_sum += nll;
            let kb = kl_per_bit(&o);
            let kt = kb.sum_dim_intlist(-1, false, Kind::Float);
            kl_sum += kt.sum(Kind::Double).double_value(&[]);
            above_sum += kt.gt(kappa).sum(Kind::Double).double_value(&[]);
            let h = kb.size()[2];
            let pb = kb.reshape([-1, h]).sum_dim_intlist(0, false, Kind::Double);
            per_bit = Some(per_bit.map_or(pb.shallow_clone(), |acc| acc + &pb));
            let ids: Vec<u64> = (0..rows.len() as u64).collect();
            if opts.iwae_samples > 0
                && let Some(lat) = model.latent()
            {
                let lw: Vec<Tensor> = (0..opts.iwae_samples)
                    .map(|k| {
                        let key = Stream::EvalIwae.seed(seed, &[bi as u64, k as u64]);
                        let f = model.forward(&x, ZSource::Posterior { key }, Pass::Inference);
                        let codes = f.codes.expect("a Free Transformer returns its codes");
                        let bits = lat.mapper.unpack(&codes);
                        log_weights(&f.logits, &y, f.bit_logits.as_ref().expect("posterior bit logits"), &bits)
                    })
                    .collect();
                iwae_sum += iwae_nll(&Tensor::stack(&lw, 0)).sum(Kind::Double).double_value(&[]);
            }
            for k in 0..prior_samples {
                let key = Stream::EvalPrior.seed(seed, &[bi as u64, k as u64]);
                let prior = model.forward(&x, ZSource::Prior { seed: key, seq_ids: &ids }, Pass::Inference);
                prior_sum += token_nll(&prior.logits, &y).sum(Kind::Double).double_value(&[]) / prior_samples as f64;
            }
        }
        let nt = tokens.max(1) as f64;
        match per_bit {
            None => EvalReport { tokens, ce: Some(ce_sum / nt), ..Default::default() },
            Some(pb) => {
                let per_bit_kl_bits: Vec<f64> =
                    Vec::<f64>::try_from(pb / nt / LN_2).expect("per-bit KL to host").into_iter().collect();
                let dead = per_bit_kl_bits.iter().filter(|&&b| b < DEAD_BIT_THRESHOLD_BITS).count();
                EvalReport {
                    tokens,
                    ce: None,
                    prior_ce: (prior_samples > 0).then_some(prior_sum / nt),
                    prior_samples,
                    iwae: (opts.iwae_samples > 0).then_some(iwae_sum / nt),
                    iwae_samples: opts.iwae_samples,
                    elbo: Some((post_sum + kl_sum) / nt),
                    posterior_ce_diagnostic: Some(post_sum / nt),
                    kl_nats: Some(kl_sum / nt),
                    per_bit_kl_bits,
                    dead_bits: Some(dead),
                    frac_above_kappa: Some(above_sum / nt),
                    bits_per_byte: None,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::text::tests::corpus;
    use crate::data::{Dataset, TextDataset};

    #[test]
    fn bits_per_byte_equals_bits_per_token_for_bytes() {
        let data = Dataset::Text(TextDataset::from_bytes(corpus(1000, 250), 10, 0.25, 7).unwrap());
        let val = data.val_batches(3, 4);
        let predicted: u64 = val.iter().flatten().map(|r| r.len() as u64 - 1).sum();
        assert_eq!(data.target_bytes(&val), Some(predicted));
        let report = EvalReport { tokens: predicted, prior_ce: Some(1.3), elbo: Some(1.7), ..Default::default() }
            .with_target_bytes(data.target_bytes(&val));
        let b = report.bits_per_byte.clone().expect("text data has bits per byte");
        assert_eq!(b.bytes, predicted);
        assert!((b.prior_ce.unwrap() - 1.3 / std::f64::consts::LN_2).abs() < 1e-12);
        assert!((b.elbo.unwrap() - 1.7 / std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(b.ce, None);
        // With BPE tokens the same nats spread over more bytes.
        let bpe_report = EvalReport { tokens: 10, ce: Some(2.0), ..Default::default() }.with_target_bytes(Some(25));
        let want = 2.0 * 10.0 / std::f64::consts::LN_2 / 25.0;
        assert!((bpe_report.bits_per_byte.unwrap().ce.unwrap() - want).abs() < 1e-12);
        assert!(report.render().contains("bits/byte"));
        assert!(EvalReport::default().with_target_bytes(None).bits_per_byte.is_none());
    }
}
