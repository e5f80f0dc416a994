//! Shared helpers of the integration tests: tiny configurations, a lock that serialises the tests
//! that seed torch's global generator, and random token batches.
#![allow(dead_code)]

use freet::model::FreeTransformer;
use freet::model::config::ModelConfig;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// The vocabulary of the tiny test models.
pub const VOCAB: i64 = 29;

static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Tests of one binary run on parallel threads but share torch's global generator, which model
/// initialisation and the tests' own random tensors (`tokens`, `random_codes`) consume (latent and
/// token draws are counter-based): every test holds this lock so that seeded draws are
/// reproducible. The tensors are
/// tiny, so libtorch runs on one thread: OpenMP spin-waiting on a loaded 2-core machine made single
/// tests swing from 0.5 s to 5 s.
pub fn serial() -> MutexGuard<'static, ()> {
    let guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

/// A tiny Free Transformer configuration (V = 29, D = 32, L = 4, 4 heads, 2 KV heads, FFN 64,
/// max_seq_len 32) with `bits` latent bits and κ = `kappa` (a TOML value: `"1/64"`, `4`).
pub fn tiny(bits: usize, kappa: &str) -> ModelConfig {
    let text = format!(
        r#"
vocab_size = {VOCAB}
d_model = 32
n_layers = 4
n_heads = 4
n_kv_heads = 2
ffn_hidden = 64
max_seq_len = 32
[latent]
bits = {bits}
kappa_bits = {kappa}
"#
    );
    let cfg: ModelConfig = toml::from_str(&text).expect("test config parses");
    cfg.validate().expect("test config is valid");
    cfg
}

/// A whole tiny training run on the synthetic task (V = 29, D = 32, L = 2, H = 6, κ = 0.5 bit,
/// 30 steps of 4 sequences, a checkpoint every step, metrics every step).
pub const TINY_RUN: &str = r#"
[model]
vocab_size = 29
d_model = 32
n_layers = 2
n_heads = 2
n_kv_heads = 1
ffn_hidden = 64
max_seq_len = 70
[model.latent]
bits = 6
kappa_bits = 0.5
[train]
steps = 30
batch_size = 4
lr = 3e-3
warmup_steps = 3
seed = 9
log_every = 1
eval_every = 0
eval_batches = 1
checkpoint_every = 1
keep_last = 3
[data]
kind = "synthetic"
"#;

/// [`TINY_RUN`] with `key=value` overrides applied, as TOML text (for config files).
pub fn tiny_run_toml(overrides: &[&str]) -> String {
    let mut v: toml::Value = toml::from_str(TINY_RUN).expect("tiny run parses");
    for o in overrides {
        freet::config::apply_override(&mut v, o).expect("valid override");
    }
    toml::to_string(&v).expect("serialises")
}

/// [`TINY_RUN`] with overrides, parsed and validated.
pub fn tiny_run(overrides: &[&str]) -> freet::config::RunConfig {
    freet::config::RunConfig::from_toml_str(&tiny_run_toml(overrides), "tiny run", &[]).expect("valid tiny run")
}

/// The same architecture without the latent: a baseline decoder.
pub fn baseline_of(cfg: &ModelConfig) -> ModelConfig {
    let mut b = cfg.clone();
    b.latent.enabled = false;
    b
}

/// Builds a model on the CPU.
pub fn build(cfg: &ModelConfig, seed: u64) -> FreeTransformer {
    FreeTransformer::new(cfg, Device::Cpu, seed).expect("model builds")
}

/// Uniform random tokens `[b, t]` (int64), drawn with torch's generator after seeding it.
pub fn tokens(seed: i64, b: i64, t: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randint(VOCAB, [b, t], (Kind::Int64, Device::Cpu))
}

/// `max |a − b|` as f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// `max |a|` as f64.
pub fn max_abs(a: &Tensor) -> f64 {
    a.to_kind(Kind::Double).abs().max().double_value(&[])
}

/// Overwrites a parameter in place (a shallow clone shares its storage), outside autograd.
pub fn set_param(p: &Tensor, value: &Tensor) {
    tch::no_grad(|| p.shallow_clone().copy_(value));
}

/// Zeroes a parameter in place.
pub fn zero_param(p: &Tensor) {
    tch::no_grad(|| {
        let _ = p.shallow_clone().zero_();
    });
}

/// Pearson's χ² of integer counts against equal expected counts.
pub fn chi_square_uniform(counts: &[i64]) -> f64 {
    let n: i64 = counts.iter().sum();
    let e = n as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

/// Histogram of int64 codes in `0..c`.
pub fn histogram(codes: &Tensor, c: i64) -> Vec<i64> {
    Vec::<i64>::try_from(codes.flatten(0, -1).bincount::<Tensor>(None, c)).expect("counts to host")
}

/// An upper critical value of χ² with `df` degrees of freedom at roughly p = 1e-6 (Wilson–Hilferty
/// with z = 4.75): generous, so that a deterministic draw passes, yet far below what a broken
/// sampler (constant, shared or correlated codes) produces.
pub fn chi_square_critical(df: f64) -> f64 {
    let z = 4.75;
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

/// (step, loss, grad_norm) of every line of a run's `metrics.jsonl`.
pub fn curve(run: &std::path::Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap(), v["grad_norm"].as_f64().unwrap())
        })
        .collect()
}
