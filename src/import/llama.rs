//! What both import paths share: a plain Llama's hyper-parameters, its Hugging Face tensor names,
//! the GGUF Q/K row order, and building a baseline freet model from named tensors.

use crate::model::FreeTransformer;
use crate::model::config::{LatentConfig, ModelConfig, Precision};
use crate::train::checkpoint;
use anyhow::{Result, anyhow, bail};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// A plain Llama's hyper-parameters (no biases, default RoPE, dense SwiGLU MLP, RMSNorm).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaSpec {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// SwiGLU hidden width.
    pub ffn_hidden: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Context length.
    pub max_seq_len: usize,
    /// The output projection is the embedding.
    pub tied_embeddings: bool,
}

impl LlamaSpec {
    /// The freet baseline configuration of this Llama (fp32, latent disabled).
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            vocab_size: self.vocab_size,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            ffn_hidden: self.ffn_hidden,
            rope_theta: self.rope_theta,
            max_seq_len: self.max_seq_len,
            tied_embeddings: self.tied_embeddings,
            init_std: 0.02,
            norm_eps: self.norm_eps,
            latent: LatentConfig::default(),
            precision: Precision::Fp32,
        }
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }
}

/// GGUF's Llama converter stores Q and K with each head's rows interleaved for pair-wise RoPE:
/// Hugging Face row `j·(d_h/2) + i` (j ∈ {0, 1}) is GGUF row `2i + j`. This puts them back in
/// the rotate-half order freet and Hugging Face use: per head, rows (2i, 2i+1) → (i, i + d_h/2).
pub fn unpermute_rows(w: &Tensor, n_heads: usize) -> Tensor {
    let (rows, cols) = w.size2().expect("a projection is 2-D");
    let nh = n_heads as i64;
    w.reshape([nh, rows / nh / 2, 2, cols]).transpose(1, 2).reshape([rows, cols])
}

/// llama.cpp's `permute` (convert_hf_to_gguf.py): the inverse of [`unpermute_rows`], for tests
/// and fixtures that write GGUF files.
pub fn permute_rows(w: &Tensor, n_heads: usize) -> Tensor {
    let (rows, cols) = w.size2().expect("a projection is 2-D");
    let nh = n_heads as i64;
    w.reshape([nh, 2, rows / nh / 2, cols]).transpose(1, 2).reshape([rows, cols])
}

/// Builds the baseline model of `spec` and copies `tensors` (Hugging Face names, any float kind)
/// into it; every tensor must be used and every parameter given, with its exact shape.
pub fn build_model(spec: &LlamaSpec, mut tensors: HashMap<String, Tensor>, origin: &str) -> Result<FreeTransformer> {
    let cfg = spec.model_config();
    cfg.validate().map_err(|e| anyhow!("{origin}: the model's shape is not supported: {e}"))?;
    if spec.tied_embeddings
        && let Some(head) = tensors.remove("lm_head.weight")
    {
        // Some tied checkpoints store the head anyway: it must then be the embedding.
        let embed = tensors
            .get("model.embed_tokens.weight")
            .ok_or_else(|| anyhow!("{origin}: missing tensor model.embed_tokens.weight"))?;
        if head.size() != embed.size() || !head.to_kind(Kind::Float).equal(&embed.to_kind(Kind::Float)) {
            bail!("{origin}: tie_word_embeddings is true but lm_head.weight differs from the embedding");
        }
    }
    let tensors: HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, v)| (k, v.to_kind(Kind::Float).to_device(Device::Cpu))).collect();
    let mut model = FreeTransformer::new(&cfg, Device::Cpu, 0).map_err(|e| anyhow!("{origin}: {e}"))?;
    checkpoint::load_tensors(&mut model, &tensors, origin)?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_restores_rotate_half_rows_by_hand() {
        // Two heads of width 4, one column holding the Hugging Face row index.
        let hf = Tensor::arange(8, (Kind::Float, Device::Cpu)).view([8, 1]);
        let gguf = permute_rows(&hf, 2);
        // Head 0: HF rows (0, 1 | 2, 3) = (a0, a1 | b0, b1) are stored as a0, b0, a1, b1.
        let got: Vec<f32> = Vec::try_from(gguf.view([-1])).unwrap();
        assert_eq!(got, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert!(unpermute_rows(&gguf, 2).equal(&hf));
        // GQA: K uses the KV head count; a wider head and several columns.
        let w = Tensor::randn([3 * 8, 5], (Kind::Float, Device::Cpu));
        assert!(unpermute_rows(&permute_rows(&w, 3), 3).equal(&w));
        assert!(!unpermute_rows(&w, 3).equal(&w));
    }

    /// The claim behind the un-permutation: interleaved-pair RoPE (what llama.cpp applies to GGUF's
    /// rows) on the GGUF rows gives the same attention scores as rotate-half RoPE (freet's
    /// `Rope`) on the un-permuted rows.
    #[test]
    fn interleaved_rope_on_gguf_rows_equals_rotate_half_on_unpermuted_rows() {
        use crate::model::layers::Rope;
        let (nh, hd, d, t) = (2i64, 8i64, 6i64, 5i64);
        let theta = 10_000.0f64;
        let wq = Tensor::randn([nh * hd, d], (Kind::Double, Device::Cpu));
        let wk = Tensor::randn([nh * hd, d], (Kind::Double, Device::Cpu));
        let x = Tensor::randn([t, d], (Kind::Double, Device::Cpu));
        // Interleaved RoPE on GGUF-ordered projections.
        let interleaved = |w: &Tensor| {
            let y = x.matmul(&w.tr()).view([t, nh, hd / 2, 2]);
            let inv: Vec<f64> = (0..hd / 2).map(|i| theta.powf(-(2.0 * i as f64) / hd as f64)).collect();
            let ang =
                Tensor::arange(t, (Kind::Double, Device::Cpu)).view([t, 1]) * Tensor::from_slice(&inv).view([1, -1]);
            let (c, s) = (ang.cos().view([t, 1, hd / 2]), ang.sin().view([t, 1, hd / 2]));
            let (a, b) = (y.select(3, 0), y.select(3, 1));
            Tensor::stack(&[&a * &c - &b * &s, &a * &s + &b * &c], 3).view([t, nh, hd])
        };
        let q_g = interleaved(&permute_rows(&wq, nh as usize));
        let k_g = interleaved(&permute_rows(&wk, nh as usize));
        let rope = Rope::new(hd as usize, t as usize, theta, Device::Cpu);
        let rotate_half = |w: &Tensor| {
            let y = x.matmul(&w.tr()).view([1, t, nh, hd]).transpose(1, 2).to_kind(Kind::Float);
            rope.apply(&y, 0).transpose(1, 2).view([t, nh, hd]).to_kind(Kind::Double)
        };
        let (q_f, k_f) = (rotate_half(&wq), rotate_half(&wk));
        // Scores per head: GGUF layout vs freet layout (the order inside a head differs, the dot products do not).
        let scores = |q: &Tensor, k: &Tensor| q.transpose(0, 1).matmul(&k.transpose(0, 1).transpose(1, 2));
        let diff = (scores(&q_g, &k_g) - scores(&q_f, &k_f)).abs().max().double_value(&[]);
        let scale = scores(&q_f, &k_f).abs().max().double_value(&[]);
        assert!(diff < 1e-5 * scale, "diff {diff} vs scale {scale}");
        // Without the un-permutation the scores differ.
        let bad = (scores(&q_g, &k_g)
            - scores(&rotate_half(&permute_rows(&wq, 2)), &rotate_half(&permute_rows(&wk, 2))))
        .abs()
        .max()
        .double_value(&[]);
        assert!(bad > 1e-2 * scale, "{bad}");
    }
}
