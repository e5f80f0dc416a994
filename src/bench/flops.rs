//! The FLOP model of a training step: what the Free Transformer's encoder, Binary Mapper and gather
//! add to the baseline decoder, i.e. the overhead the benchmarks should measure.

use super::sizes::Size;
use serde::Serialize;

/// Training FLOPs per step, split by part (multiply–adds count 2; backward = 2 × forward for the
/// layers, the Binary Mapper's fused backward counted once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Flops {
    /// Decoder blocks, embedding and head (the baseline's whole step).
    pub decoder: f64,
    /// The encoder block and readout, forward and backward.
    pub encoder: f64,
    /// The fused Eq. 8 backward: `δR·Eᵀ`, `o·BITSᵀ`, `w·BITS` and the element-wise work over 2^H.
    pub mapper: f64,
    /// Gather of R and the scatter-add into E's gradient.
    pub gather: f64,
}

impl Flops {
    /// Everything.
    pub fn total(&self) -> f64 {
        self.decoder + self.encoder + self.mapper + self.gather
    }

    /// Predicted Free Transformer step overhead over the baseline: (FT − baseline) / baseline.
    pub fn overhead(&self) -> f64 {
        (self.encoder + self.mapper + self.gather) / self.decoder
    }
}

/// FLOPs of the Eq. 8 backward's `δR·Eᵀ` GEMM, `2·tokens·2^H·D`: the part that sets its rate.
pub fn mapper_gemm_flops(tokens: f64, bits: usize, d: f64) -> f64 {
    2.0 * tokens * (1u64 << bits) as f64 * d
}

/// The FLOP model of one training step of `batch` sequences of `seq_len` tokens.
pub fn train_flops(s: &Size, batch: usize, bits: Option<usize>) -> Flops {
    let (d, f, v, t) = (s.d_model as f64, s.ffn_hidden as f64, s.vocab_size as f64, s.seq_len as f64);
    let kv = d * s.n_kv_heads as f64 / s.n_heads as f64;
    let tokens = (batch * s.seq_len) as f64;
    let block_linear = 2.0 * (d * d + 2.0 * d * kv + d * d + 3.0 * d * f);
    // Attention scores and mixing: 2·2·D per key; a causal query sees (t+1)/2 keys on average.
    let causal_attn = 4.0 * d * (t + 1.0) / 2.0;
    let full_attn = 4.0 * d * t;
    let per_token_fwd = s.n_layers as f64 * (block_linear + causal_attn) + 2.0 * d * v;
    let mut fl = Flops { decoder: 3.0 * tokens * per_token_fwd, ..Default::default() };
    if let Some(h) = bits {
        let (h, c) = (h as f64, (1u64 << h) as f64);
        fl.encoder = 3.0 * tokens * (block_linear + full_attn + 2.0 * d * h);
        fl.mapper = mapper_gemm_flops(tokens, h as usize, d) + tokens * (2.0 * 2.0 * c * h + 5.0 * c);
        fl.gather = 2.0 * tokens * d;
    }
    fl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sizes::{DEFAULT_SIZES, SizesFile};

    #[test]
    fn flop_model_matches_hand_counts() {
        // One layer, D = 2, F = 4, V = 3, T = 1, batch 1, no GQA.
        let s = Size {
            n_layers: 1,
            d_model: 2,
            n_heads: 1,
            n_kv_heads: 1,
            ffn_hidden: 4,
            vocab_size: 3,
            seq_len: 1,
            batch: 1,
        };
        let f = train_flops(&s, 1, Some(2));
        // Linear: 2·(4·D² + 3·D·F) = 2·(16 + 24) = 80; attention 4·D·(T+1)/2 = 8; head 2·D·V = 12.
        assert_eq!(f.decoder, 3.0 * (80.0 + 8.0 + 12.0));
        // Encoder: 3·(80 + 4·D·T + 2·D·H) = 3·(80 + 8 + 8).
        assert_eq!(f.encoder, 3.0 * 96.0);
        // Mapper: 2·C·D + 4·C·H + 5·C with C = 4: 16 + 32 + 20.
        assert_eq!(f.mapper, 68.0);
        assert!((f.overhead() - (288.0 + 68.0 + 4.0) / 300.0).abs() < 1e-12);
    }

    #[test]
    fn paper_scale_mapper_share_is_small_and_d512_share_is_large() {
        // Orientation figures: ~2 % at the 1.5B scale, ~30 % at d = 512, L = 12, H = 16.
        let big = Size {
            n_layers: 28,
            d_model: 2048,
            n_heads: 16,
            n_kv_heads: 16,
            ffn_hidden: 8192,
            vocab_size: 32_000,
            seq_len: 1024,
            batch: 1,
        };
        let f = train_flops(&big, 1, Some(16));
        assert!(f.mapper / f.decoder < 0.04, "{}", f.mapper / f.decoder);
        let s2 = SizesFile::parse(DEFAULT_SIZES).unwrap().size("s2").unwrap();
        let f = train_flops(&s2, s2.batch, Some(16));
        assert!((0.15..0.45).contains(&f.overhead()), "{}", f.overhead());
    }
}
