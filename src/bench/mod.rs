//! Benchmarks: training step time split into forward / backward / optimizer, peak RSS and KV-cache
//! generation speed, in the JSON schema shared with `bench/reference.py` (this file); the sizes
//! file both implementations read (`sizes`); running and timing one configuration (`measure`); the
//! FLOP model that predicts the Free Transformer's overhead (`flops`); and the `BENCHMARKS.md`
//! report (`report`). Everything is re-exported here: `freet::bench::run`, `freet::bench::report`, …

mod flops;
mod measure;
mod report;
mod sizes;

pub use flops::{Flops, train_flops};
pub use measure::{model_config, peak_rss_mib, run};
pub use report::{Curve, curves_section, read_curve, report};
pub use sizes::{DEFAULT_SIZES, GenerateSpec, LatentSpec, Size, SizesFile, TrainSpec};

use crate::model::config::Precision;
use serde::{Deserialize, Serialize};
use tch::Device;

/// Which model is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The decoder alone.
    Baseline,
    /// The Free Transformer with the fused, code-tiled Eq. 8 backward (freet's default).
    Ft,
    /// The Free Transformer with the dense one-hot formulation (`mapper_grad = "dense"`).
    FtDense,
}

impl Variant {
    /// The name used in JSON records.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Ft => "ft",
            Variant::FtDense => "ft-dense",
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Training steps.
    Train,
    /// KV-cache generation.
    Generate,
}

impl Mode {
    /// The name used in JSON records.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Generate => "generate",
        }
    }
}

/// One benchmark invocation.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Name of the size in the sizes file.
    pub size: String,
    /// Model variant.
    pub variant: Variant,
    /// Precision of the products.
    pub precision: Precision,
    /// Train or generate.
    pub mode: Mode,
    /// Measured steps (None: the sizes file's).
    pub steps: Option<usize>,
    /// Warm-up steps (None: the sizes file's).
    pub warmup: Option<usize>,
    /// Batch override (training).
    pub batch: Option<usize>,
    /// New tokens override (generation).
    pub new_tokens: Option<usize>,
    /// H override for the Free Transformer variants.
    pub bits: Option<usize>,
    /// How the `ft` variant updates E (None: the sizes file's `ft_table_optimizer`).
    pub table_optimizer: Option<crate::config::TableOptimizer>,
    /// Where to run.
    pub device: Device,
}

/// One measurement, in the schema `bench/reference.py` writes too.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// "freet" or "pytorch".
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Library version.
    #[serde(default)]
    pub version: String,
    /// "baseline", "ft" or "ft-dense".
    pub variant: String,
    /// Size name.
    pub size: String,
    /// "fp32" or "bf16".
    pub precision: String,
    /// "train" or "generate".
    pub mode: String,
    /// Intra-op threads.
    #[serde(default)]
    pub threads: i64,
    /// Batch size.
    pub batch: usize,
    /// Training sequence length.
    #[serde(default)]
    pub seq_len: usize,
    /// Parameter count.
    #[serde(default)]
    pub params: usize,
    /// Measured steps.
    #[serde(default)]
    pub steps: usize,
    /// Median training step, ms.
    #[serde(default)]
    pub step_ms_median: Option<f64>,
    /// Median forward (incl. loss), ms.
    #[serde(default)]
    pub fwd_ms_median: Option<f64>,
    /// Median backward, ms.
    #[serde(default)]
    pub bwd_ms_median: Option<f64>,
    /// Median clip + optimizer step, ms.
    #[serde(default)]
    pub opt_ms_median: Option<f64>,
    /// Training tokens per second (batch · seq_len / median step).
    #[serde(default)]
    pub tokens_per_s: Option<f64>,
    /// Peak resident memory of the process, MiB.
    #[serde(default)]
    pub peak_rss_mib: f64,
    /// Generation: prompt prefill time, ms.
    #[serde(default)]
    pub prefill_ms: Option<f64>,
    /// Generation: decoded tokens per second (batch · new tokens / decode time).
    #[serde(default)]
    pub decode_tokens_per_s: Option<f64>,
    /// Generation: tokens decoded per sequence.
    #[serde(default)]
    pub new_tokens: Option<usize>,
    /// freet only, training: how AdamW updated E ("dense" or "lazy").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_optimizer: Option<String>,
    /// freet only, training: the Free Transformer's accounted memory, MiB (see [`MemoryParts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_parts: Option<MemoryParts>,
    /// freet only: H of the Free Transformer variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<usize>,
    /// freet only: the fused Eq. 8 backward alone on this step's shapes, median ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapper_ms_median: Option<f64>,
    /// Training loss at the first and last measured step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_first_last: Option<[f64; 2]>,
    /// Device the run used.
    #[serde(default)]
    pub device: String,
    /// freet only, training: FLOPs of one step by the FLOP model (`flops::train_flops`), for MFU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_flops: Option<f64>,
}

/// What a Free Transformer training step must hold beyond the baseline's, MiB, for `bench`'s
/// memory target (measured FT peak RSS − baseline peak RSS against [`MemoryParts::total`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryParts {
    /// The post-sampler table E `[2^H, D]`.
    pub table: f64,
    /// E's gradient (dense: the gather's backward writes a full table).
    pub table_grad: f64,
    /// E's AdamW moments, plus the per-row step counts when lazy.
    pub table_state: f64,
    /// The encoder's parameters with their gradients and AdamW moments.
    pub encoder_params: f64,
    /// Activations kept for the backward, fp32: the encoder block (13·D + 4·F floats per token:
    /// norms, Q/K/V, RoPE, attention, output, SwiGLU), its readout (2·D + H), and on the decoder
    /// side R, the injection block's second norm and the cut's gradients (4·D).
    pub activations: f64,
    /// The fused Eq. 8 backward's scratch ([`crate::model::mapper::BinaryMapper::scratch_bytes`]).
    pub mapper_scratch: f64,
}

impl MemoryParts {
    /// Sum of the parts, MiB.
    pub fn total(&self) -> f64 {
        self.table + self.table_grad + self.table_state + self.encoder_params + self.activations + self.mapper_scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_runs_on_cpu_in_both_precisions_and_writes_the_shared_schema() {
        // The same dtype/device plumbing the GPU run uses, on a tiny shape.
        let mut f = SizesFile::parse(DEFAULT_SIZES).unwrap();
        f.sizes.insert(
            "tiny".into(),
            Size {
                n_layers: 2,
                d_model: 32,
                n_heads: 2,
                n_kv_heads: 1,
                ffn_hidden: 64,
                vocab_size: 17,
                seq_len: 12,
                batch: 2,
            },
        );
        f.generate.prompt_len = 3;
        for (variant, precision) in
            [(Variant::Baseline, Precision::Bf16), (Variant::Ft, Precision::Bf16), (Variant::Ft, Precision::Fp32)]
        {
            let o = BenchOptions {
                size: "tiny".into(),
                variant,
                precision,
                mode: Mode::Train,
                steps: Some(2),
                warmup: Some(1),
                batch: None,
                new_tokens: None,
                bits: Some(6),
                table_optimizer: None,
                device: Device::Cpu,
            };
            let r = run(&f, &o).unwrap();
            assert_eq!((r.batch, r.steps, r.precision.as_str()), (2, 2, precision.name()));
            assert!(r.tokens_per_s.unwrap() > 0.0 && r.peak_rss_mib > 0.0);
            let [a, b] = r.loss_first_last.unwrap();
            assert!(a.is_finite() && b.is_finite());
            assert_eq!(r.mapper_ms_median.is_some(), variant == Variant::Ft);
            assert_eq!(r.table_optimizer.as_deref(), (variant == Variant::Ft).then_some("lazy"));
            if let Some(m) = r.memory_parts {
                // E is [2^6, 32] fp32 = 8 KiB; its moments twice that plus 8 bytes per row.
                assert!((m.table * 1024.0 * 1024.0 - 8192.0).abs() < 1e-6);
                assert!((m.table_state * 1024.0 * 1024.0 - (16384.0 + 512.0)).abs() < 1e-6);
                assert!(m.total() > m.table + m.table_grad + m.table_state && m.mapper_scratch > 0.0);
            }
            let g = run(&f, &BenchOptions { mode: Mode::Generate, new_tokens: Some(5), batch: Some(3), ..o }).unwrap();
            assert_eq!((g.batch, g.new_tokens), (3, Some(5)));
            assert!(g.decode_tokens_per_s.unwrap() > 0.0);
            let json = serde_json::to_string(&g).unwrap();
            assert!(json.contains("\"impl\":\"freet\"") && json.contains("\"decode_tokens_per_s\""));
            let back: Record = serde_json::from_str(&json).unwrap();
            assert_eq!((back.batch, back.mode.as_str(), back.variant.as_str()), (3, "generate", variant.name()));
        }
    }
}
