//! The sizes file (`bench/sizes.json`): the model shapes, latent settings, optimiser settings and
//! generation settings that freet and `bench/reference.py` both read.

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The shapes file compiled into the binary (`bench/sizes.json`).
pub const DEFAULT_SIZES: &str = include_str!("../../bench/sizes.json");

/// `bench/sizes.json`: the shapes and hyperparameters both implementations read.
#[derive(Debug, Clone, Deserialize)]
pub struct SizesFile {
    /// Named model shapes.
    pub sizes: BTreeMap<String, Size>,
    /// Latent settings of the Free Transformer variants.
    pub latent: LatentSpec,
    /// Optimiser settings and step counts.
    pub train: TrainSpec,
    /// Generation settings.
    pub generate: GenerateSpec,
}

/// One benchmark shape.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
pub struct Size {
    /// Decoder blocks L.
    pub n_layers: usize,
    /// Width D.
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// SwiGLU hidden width F.
    pub ffn_hidden: usize,
    /// Vocabulary V.
    pub vocab_size: usize,
    /// Tokens per training sequence T.
    pub seq_len: usize,
    /// Sequences per training step.
    pub batch: usize,
}

/// Latent settings of the Free Transformer variants.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LatentSpec {
    /// H.
    pub bits: usize,
    /// κ in bits.
    pub kappa_bits: f64,
}

/// Optimiser settings and step counts.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainSpec {
    /// Unmeasured steps first.
    pub warmup_steps: usize,
    /// Measured steps (medians are over these).
    pub measured_steps: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW betas.
    pub betas: [f64; 2],
    /// AdamW epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clip.
    pub grad_clip: f64,
    /// How the `ft` variant's AdamW updates E ("dense" or "lazy"); `ft-dense` is always dense.
    #[serde(default)]
    pub ft_table_optimizer: crate::config::TableOptimizer,
}

/// Generation settings.
#[derive(Debug, Clone, Deserialize)]
pub struct GenerateSpec {
    /// Prompt tokens, prefilled in one pass.
    pub prompt_len: usize,
    /// Tokens decoded one at a time after the prompt.
    pub new_tokens: usize,
    /// Batch sizes to measure.
    pub batches: Vec<usize>,
}

impl SizesFile {
    /// Parses a sizes file (JSON).
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| anyhow!("bench sizes: {}", crate::util::error::one_line(&e.to_string())))
    }

    /// The named size, or an error listing the known ones.
    pub fn size(&self, name: &str) -> Result<Size> {
        self.sizes.get(name).copied().ok_or_else(|| {
            anyhow!("unknown bench size {name:?}; known: {}", self.sizes.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_file_parses_and_matches_the_documented_shapes() {
        let f = SizesFile::parse(DEFAULT_SIZES).unwrap();
        let s1 = f.size("s1").unwrap();
        assert_eq!(
            (s1.n_layers, s1.d_model, s1.n_heads, s1.ffn_hidden, s1.vocab_size, s1.seq_len, s1.batch),
            (4, 256, 4, 1024, 64, 128, 32)
        );
        assert_eq!(f.size("s3").unwrap().seq_len, 512);
        assert!(f.size("s9").unwrap_err().to_string().contains("known: s1, s2, s3"));
    }
}
