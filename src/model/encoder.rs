//! The encoder (spec §2.3): one non-causal block whose queries and residual stream are a learned
//! constant ζ repeated over positions (with RoPE, so rows differ), whose keys/values are the trunk
//! output `X_m`, followed by RMSNorm and a linear readout to H bit logits.

use crate::model::config::ModelConfig;
use crate::model::layers::{AttnMask, Block, KvInput, RmsNorm, Rope, linear_in, linear_weight};
use tch::Tensor;
use tch::nn::{Init, Path};

/// The Free Transformer's encoder: `ζ`, one block, `RMSNorm_enc`, `W_enc`.
#[derive(Debug)]
pub struct Encoder {
    /// The non-causal block.
    pub block: Block,
    /// The learned constant query ζ ∈ R^D.
    pub zeta: Tensor,
    /// `RMSNorm_enc`.
    pub norm: RmsNorm,
    /// `W_enc`: `[H, D]`.
    pub readout: Tensor,
    /// Optional learned score bias per head and relative offset s − t, `[n_heads, 2·max_len − 1]`
    /// (`model.latent.encoder_rel_bias`; a deviation from the paper, zero at init).
    pub rel_bias: Option<Tensor>,
}

impl Encoder {
    /// Parameters under `p` (`{p}.encoder.*`, `{p}.zeta`, `{p}.norm.weight`, `{p}.readout.weight`).
    pub fn new(p: &Path, cfg: &ModelConfig, bits: usize) -> Self {
        Encoder {
            block: Block::new(&(p / "encoder"), cfg),
            zeta: p.var("zeta", &[cfg.d_model as i64], Init::Randn { mean: 0.0, stdev: cfg.init_std }),
            norm: RmsNorm::new(&(p / "norm"), cfg.d_model, cfg.norm_eps),
            readout: linear_weight(p, "readout", bits, cfg.d_model, cfg.init_std),
            rel_bias: cfg.latent.encoder_rel_bias.then(|| {
                let offsets = 2 * cfg.max_seq_len as i64 - 1;
                p.var("rel_bias", &[cfg.n_heads as i64, offsets], Init::Const(0.0))
            }),
        }
    }

    /// Bit logits `o: [B, T, H]` (fp32) from the trunk output `x_m: [B, T, D]`.
    pub fn forward(&self, x_m: &Tensor, rope: &Rope) -> Tensor {
        let (b, t, d) = x_m.size3().expect("encoder input is [B, T, D]");
        let q0 = self.zeta.view([1, 1, d]).expand([b, t, d], false);
        let rel = self.rel_bias.as_ref();
        let y = self.block.forward_rel(&q0, KvInput::From(x_m), AttnMask::Bidirectional, rope, 0, None, rel);
        let kind = self.block.attn.compute();
        linear_in(&self.norm.forward(&y), &self.readout, kind).to_kind(tch::Kind::Float)
    }
}
