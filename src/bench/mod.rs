//! Benchmarks (issue 4): training step time split into forward / backward / optimizer, peak RSS and
//! KV-cache generation speed, in the JSON schema shared with `bench/reference.py`; the FLOP model
//! that predicts the Free Transformer's overhead; and the `BENCHMARKS.md` report.

use crate::config::TrainConfig;
use crate::generate::{GenerationZ, SampleOptions, generate_batch};
use crate::model::config::{ModelConfig, Precision};
use crate::model::{FreeTransformer, Pass, ZSource};
use crate::train::optim::AdamW;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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

/// Which model is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The decoder alone.
    Baseline,
    /// The Free Transformer with the fused, chunked Eq. 8 backward (freet's default).
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
}

/// The model configuration of a size and variant.
pub fn model_config(size: &Size, variant: Variant, precision: Precision, latent: &LatentSpec) -> Result<ModelConfig> {
    let enabled = variant != Variant::Baseline;
    let grad = if variant == Variant::FtDense { "dense" } else { "fused" };
    let text = format!(
        "vocab_size = {}\nd_model = {}\nn_layers = {}\nn_heads = {}\nn_kv_heads = {}\nffn_hidden = {}\n\
         max_seq_len = {}\nprecision = \"{}\"\n[latent]\nenabled = {enabled}\nbits = {}\nkappa_bits = {}\n\
         mapper_grad = \"{grad}\"\n",
        size.vocab_size,
        size.d_model,
        size.n_layers,
        size.n_heads,
        size.n_kv_heads,
        size.ffn_hidden,
        size.seq_len.max(1),
        precision.name(),
        latent.bits,
        latent.kappa_bits,
    );
    let cfg: ModelConfig = toml::from_str(&text).context("bench model config")?;
    cfg.validate()?;
    Ok(cfg)
}

fn train_config(spec: &TrainSpec, batch: usize) -> Result<TrainConfig> {
    let text = format!(
        "steps = 1\nbatch_size = {batch}\nlr = {}\nbeta1 = {}\nbeta2 = {}\nadam_eps = {}\nweight_decay = {}\n\
         grad_clip = {}\n",
        spec.lr, spec.betas[0], spec.betas[1], spec.eps, spec.weight_decay, spec.grad_clip
    );
    toml::from_str(&text).context("bench train config")
}

/// Peak resident set size of this process in MiB (`VmHWM`), 0 where unavailable.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

fn ms(a: Instant, b: Instant) -> f64 {
    (b - a).as_secs_f64() * 1e3
}

/// Runs one benchmark and returns its record.
pub fn run(sizes: &SizesFile, o: &BenchOptions) -> Result<Record> {
    let size = sizes.size(&o.size)?;
    let mut latent = sizes.latent;
    if let Some(h) = o.bits {
        latent.bits = h;
    }
    let mut cfg = model_config(&size, o.variant, o.precision, &latent)?;
    if o.mode == Mode::Generate {
        cfg.max_seq_len =
            cfg.max_seq_len.max(sizes.generate.prompt_len + o.new_tokens.unwrap_or(sizes.generate.new_tokens));
    }
    let model = FreeTransformer::new(&cfg, o.device, 0)?;
    let params = model.var_store().variables().values().map(Tensor::numel).sum();
    let mut rec = Record {
        implementation: "freet".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        variant: o.variant.name().into(),
        size: o.size.clone(),
        precision: o.precision.name().into(),
        mode: match o.mode {
            Mode::Train => "train".into(),
            Mode::Generate => "generate".into(),
        },
        threads: tch::get_num_threads().into(),
        seq_len: size.seq_len,
        params,
        bits: (o.variant != Variant::Baseline).then_some(latent.bits),
        device: format!("{:?}", o.device).to_lowercase(),
        ..Default::default()
    };
    match o.mode {
        Mode::Train => bench_train(&model, sizes, o, &size, &mut rec)?,
        Mode::Generate => bench_generate(&model, sizes, o, &mut rec)?,
    }
    rec.peak_rss_mib = peak_rss_mib();
    Ok(rec)
}

fn bench_train(
    model: &FreeTransformer,
    sizes: &SizesFile,
    o: &BenchOptions,
    size: &Size,
    rec: &mut Record,
) -> Result<()> {
    let batch = o.batch.unwrap_or(size.batch);
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (warmup, steps) = (o.warmup.unwrap_or(sizes.train.warmup_steps), o.steps.unwrap_or(sizes.train.measured_steps));
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let tc = train_config(&sizes.train, batch)?;
    let mut opt = AdamW::new(model.var_store(), &tc);
    tch::manual_seed(1234);
    let data =
        Tensor::randint(size.vocab_size as i64, [batch as i64, size.seq_len as i64 + 1], (Kind::Int64, o.device));
    let x = data.narrow(1, 0, size.seq_len as i64);
    let y = data.narrow(1, 1, size.seq_len as i64);
    let (mut fwd_ms, mut bwd_ms, mut opt_ms, mut step_ms, mut losses) = (vec![], vec![], vec![], vec![], vec![]);
    for step in 0..warmup + steps {
        sync(o.device);
        let t0 = Instant::now();
        let fwd = model.forward(&x, ZSource::Posterior { key: step as u64 }, Pass::Train);
        let loss = model.loss(&fwd, &y);
        sync(o.device);
        let t1 = Instant::now();
        model.backward(&fwd, &loss, 1.0);
        sync(o.device);
        let t2 = Instant::now();
        let norm = opt.grad_norm();
        opt.clip(norm, tc.grad_clip);
        opt.step(tc.lr);
        opt.zero_grad();
        sync(o.device);
        let t3 = Instant::now();
        if step >= warmup {
            fwd_ms.push(ms(t0, t1));
            bwd_ms.push(ms(t1, t2));
            opt_ms.push(ms(t2, t3));
            step_ms.push(ms(t0, t3));
            losses.push(loss.total().double_value(&[]));
        }
    }
    let step = median(&step_ms);
    rec.batch = batch;
    rec.steps = steps;
    rec.step_ms_median = Some(step);
    rec.fwd_ms_median = Some(median(&fwd_ms));
    rec.bwd_ms_median = Some(median(&bwd_ms));
    rec.opt_ms_median = Some(median(&opt_ms));
    rec.tokens_per_s = Some((batch * size.seq_len) as f64 / (step / 1e3));
    rec.loss_first_last = Some([losses[0], *losses.last().expect("at least one step")]);
    if let (Some(lat), Variant::Ft) = (model.latent(), o.variant) {
        rec.mapper_ms_median = Some(time_mapper(lat, (batch * size.seq_len) as i64, size.d_model as i64, o.device));
    }
    Ok(())
}

/// The fused Eq. 8 backward alone on `n` tokens of width `d` (median of 3 after one warm-up).
fn time_mapper(lat: &crate::model::LatentModule, n: i64, d: i64, device: Device) -> f64 {
    let h = lat.mapper.bits();
    let o = Tensor::randn([n, h], (Kind::Float, device));
    let dr = Tensor::randn([n, d], (Kind::Float, device)) * 1e-3;
    let mut t = vec![];
    for i in 0..4 {
        sync(device);
        let t0 = Instant::now();
        let g = lat.mapper.grad_bit_logits(&o, &lat.post_sampler, &dr);
        sync(device);
        if i > 0 {
            t.push(ms(t0, Instant::now()));
        }
        drop(g);
    }
    median(&t)
}

fn bench_generate(model: &FreeTransformer, sizes: &SizesFile, o: &BenchOptions, rec: &mut Record) -> Result<()> {
    let new_tokens = o.new_tokens.unwrap_or(sizes.generate.new_tokens);
    let batch = o.batch.unwrap_or(*sizes.generate.batches.first().unwrap_or(&1));
    if batch == 0 || new_tokens == 0 {
        bail!("--batch and --new-tokens must be at least 1");
    }
    let v = model.config().vocab_size as i64;
    let prompts: Vec<Vec<i64>> = (0..batch)
        .map(|b| (0..sizes.generate.prompt_len as i64).map(|i| (i * 7 + b as i64 * 3) % v).collect())
        .collect();
    // As in bench/reference.py: the prefill draws one token, then `new_tokens` single-token steps.
    let mut opts =
        SampleOptions { max_new_tokens: new_tokens + 1, temperature: 1.0, top_k: None, top_p: None, seed: 7 };
    // Warm-up, then the measured run.
    let warm = SampleOptions { max_new_tokens: 4.min(new_tokens), ..opts.clone() };
    generate_batch(model, &prompts, &warm, GenerationZ::Fresh)?;
    opts.seed = 8;
    let g = generate_batch(model, &prompts, &opts, GenerationZ::Fresh)?;
    sync(o.device);
    rec.batch = batch;
    rec.new_tokens = Some(new_tokens);
    rec.prefill_ms = Some(g.timing.prefill_s * 1e3);
    rec.seq_len = sizes.generate.prompt_len;
    rec.steps = 1;
    rec.decode_tokens_per_s = Some((batch * new_tokens) as f64 / g.timing.decode_s.max(1e-9));
    rec.tokens_per_s = rec.decode_tokens_per_s;
    rec.step_ms_median = Some(1e3 * g.timing.decode_s / new_tokens as f64);
    Ok(())
}

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
        fl.mapper = tokens * (2.0 * c * d + 2.0 * 2.0 * c * h + 5.0 * c);
        fl.gather = 2.0 * tokens * d;
    }
    fl
}

fn find<'a>(
    recs: &'a [Record],
    imp: &str,
    variant: &str,
    size: &str,
    precision: &str,
    mode: &str,
    batch: Option<usize>,
) -> Option<&'a Record> {
    recs.iter().rev().find(|r| {
        r.implementation == imp
            && r.variant == variant
            && r.size == size
            && r.precision == precision
            && r.mode == mode
            && batch.is_none_or(|b| r.batch == b)
    })
}

/// The freet FT training record of a size, precision and H (the newest one).
fn find_ft<'a>(recs: &'a [Record], size: &str, precision: &str, bits: usize) -> Option<&'a Record> {
    recs.iter().rev().find(|r| {
        r.implementation == "freet"
            && r.variant == "ft"
            && r.size == size
            && r.precision == precision
            && r.mode == "train"
            && r.bits == Some(bits)
    })
}

/// The (precision, H) pairs of freet FT training records of a size, the default H first.
fn ft_runs(recs: &[Record], size: &str, default_bits: usize) -> Vec<(&'static str, usize)> {
    let mut v: Vec<(&'static str, usize)> = vec![];
    for prec in ["fp32", "bf16"] {
        let mut bits: Vec<usize> = recs
            .iter()
            .filter(|r| r.implementation == "freet" && r.variant == "ft" && r.size == size && r.precision == prec)
            .filter(|r| r.mode == "train")
            .filter_map(|r| r.bits)
            .collect();
        bits.sort_by_key(|&b| (b != default_bits, std::cmp::Reverse(b)));
        bits.dedup();
        v.extend(bits.into_iter().map(|b| (prec, b)));
    }
    v
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// Renders `BENCHMARKS.md` from the records of one run; `notes` (hand-written analysis) is
/// appended verbatim and `header` names the command, machine and date.
pub fn report(recs: &[Record], sizes: &SizesFile, header: &str, notes: &str) -> String {
    let mut s = String::new();
    s += "# freet benchmarks\n\n";
    s += header;
    s += "\n\nEvery number below comes from the records of that one run (`bench/results.jsonl`); ratios compare \
          measurements taken in the same run on the same machine. Step times are medians over the measured \
          steps after warm-up; tokens/s = batch · seq_len / median step. Peak RSS is the process's VmHWM \
          (each configuration runs in its own process).\n\n";
    let mut targets: Vec<(String, String, Option<bool>)> = vec![];

    s += "## Training throughput: freet vs PyTorch eager on the identical model\n\n";
    s += "| size | impl | precision | variant | step ms | fwd | bwd | opt | tokens/s | × PyTorch fp32 | peak RSS MiB |\n";
    s += "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for name in sizes.sizes.keys() {
        let py32 = find(recs, "pytorch", "baseline", name, "fp32", "train", None).and_then(|r| r.tokens_per_s);
        for (imp, prec, var) in [
            ("pytorch", "fp32", "baseline"),
            ("pytorch", "bf16", "baseline"),
            ("freet", "fp32", "baseline"),
            ("freet", "bf16", "baseline"),
            ("pytorch", "fp32", "ft-dense"),
            ("freet", "fp32", "ft-dense"),
            ("freet", "fp32", "ft"),
            ("freet", "bf16", "ft"),
        ] {
            let r = if imp == "freet" && var == "ft" {
                find_ft(recs, name, prec, sizes.latent.bits)
            } else {
                find(recs, imp, var, name, prec, "train", None)
            };
            let Some(r) = r else { continue };
            let label = if imp == "pytorch" && prec == "bf16" { "bf16 autocast" } else { prec };
            let _ = writeln!(
                s,
                "| {name} | {imp} | {label} | {var} | {} | {} | {} | {} | {} | {} | {:.0} |",
                fmt_opt(r.step_ms_median, 0),
                fmt_opt(r.fwd_ms_median, 0),
                fmt_opt(r.bwd_ms_median, 0),
                fmt_opt(r.opt_ms_median, 0),
                fmt_opt(r.tokens_per_s, 0),
                fmt_opt(ratio(r.tokens_per_s, py32), 2),
                r.peak_rss_mib
            );
        }
        let best = ["fp32", "bf16"]
            .iter()
            .filter_map(|p| find(recs, "freet", "baseline", name, p, "train", None)?.tokens_per_s)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        if let Some(x) = ratio(best, py32) {
            targets.push((format!("{name}: training ≥ 1.3× PyTorch eager fp32"), format!("{x:.2}×"), Some(x >= 1.3)));
        }
    }

    s += "\n## Free Transformer overhead: measured vs FLOP prediction\n\n";
    s += "Predicted = (FT FLOPs − baseline FLOPs) / baseline FLOPs from `freet::bench::train_flops` (encoder \
          block fwd+bwd, the fused Eq. 8 backward over all 2^H codes, the gather). Measured = FT step / \
          baseline step − 1, same precision, same run. `mapper` is the fused Eq. 8 backward timed alone on \
          the step's shapes.\n\n";
    s += "| size | precision | H | baseline ms | FT ms | measured | predicted | encoder | mapper | measured / predicted | mapper ms | Δfwd | Δbwd | Δopt |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (name, size) in &sizes.sizes {
        for (prec, bits) in ft_runs(recs, name, sizes.latent.bits) {
            let (Some(b), Some(f)) =
                (find(recs, "freet", "baseline", name, prec, "train", None), find_ft(recs, name, prec, bits))
            else {
                continue;
            };
            let (Some(bs), Some(fs)) = (b.step_ms_median, f.step_ms_median) else { continue };
            let fl = train_flops(size, f.batch, Some(bits));
            let measured = fs / bs - 1.0;
            let pred = fl.overhead();
            let d = |a: Option<f64>, b: Option<f64>| fmt_opt(a.zip(b).map(|(a, b)| a - b), 0);
            let _ = writeln!(
                s,
                "| {name} | {prec} | {bits} | {bs:.0} | {fs:.0} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.2} | {} | {} | {} | {} |",
                100.0 * measured,
                100.0 * pred,
                100.0 * fl.encoder / fl.decoder,
                100.0 * fl.mapper / fl.decoder,
                measured / pred,
                fmt_opt(f.mapper_ms_median, 0),
                d(f.fwd_ms_median, b.fwd_ms_median),
                d(f.bwd_ms_median, b.bwd_ms_median),
                d(f.opt_ms_median, b.opt_ms_median),
            );
            if prec == "fp32" && bits == 16 {
                targets.push((
                    format!("{name}: FT overhead ≤ 1.15 × predicted at H = 16 (fp32)"),
                    format!("{:.2}× ({:.1} % vs {:.1} %)", measured / pred, 100.0 * measured, 100.0 * pred),
                    Some(measured / pred <= 1.15),
                ));
                let mem = f.peak_rss_mib / b.peak_rss_mib - 1.0;
                targets.push((
                    format!("{name}: FT peak RSS within 10 % of baseline at H = 16"),
                    format!("{:+.1} % ({:.0} vs {:.0} MiB)", 100.0 * mem, f.peak_rss_mib, b.peak_rss_mib),
                    Some(mem <= 0.10),
                ));
            }
            if bits <= 10 && size.d_model >= 512 {
                let bound = 1.0 / size.n_layers as f64 + 0.02;
                targets.push((
                    format!("{name}: FT overhead ≤ 1/L + 2 % at H = {bits} ({prec})"),
                    format!("{:.1} % vs {:.1} %", 100.0 * measured, 100.0 * bound),
                    Some(measured <= bound),
                ));
            }
        }
    }
    let dense =
        |imp: &str, name: &str| find(recs, imp, "ft-dense", name, "fp32", "train", None).and_then(|r| r.step_ms_median);
    let mut dense_rows = String::new();
    for name in sizes.sizes.keys() {
        let fused = find_ft(recs, name, "fp32", sizes.latent.bits);
        if let (Some(py), Some(f)) = (dense("pytorch", name), fused) {
            let _ = writeln!(
                dense_rows,
                "| {name} | {py:.0} | {} | {} | {} | {:.0} | {:.0} |",
                fmt_opt(dense("freet", name), 0),
                fmt_opt(f.step_ms_median, 0),
                fmt_opt(f.step_ms_median.map(|x| py / x), 2),
                find(recs, "pytorch", "ft-dense", name, "fp32", "train", None).map_or(f64::NAN, |r| r.peak_rss_mib),
                f.peak_rss_mib
            );
        }
    }
    if !dense_rows.is_empty() {
        s += "\nThe FT-specific part against the usual public formulation (post-sampler as a dense one-hot × \
              Linear(2^H → D), autograd through the full G), fp32:\n\n";
        s += "| size | PyTorch dense ms | freet dense ms | freet fused ms | fused speed-up vs PyTorch dense | PyTorch dense RSS MiB | freet fused RSS MiB |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|\n";
        s += &dense_rows;
    }

    s += "\n## KV-cache generation\n\n";
    s += "Prompt prefilled in one pass (through the encoder for the FT), then one token per step with \
          multinomial sampling; decode tokens/s = batch · new tokens / time of the new-token steps after \
          the prefill (both implementations; see bench/reference.py).\n\n";
    s += "| size | variant | precision | batch | freet tokens/s | PyTorch tokens/s | ratio | freet prefill ms | PyTorch prefill ms |\n";
    s += "|---|---|---|---:|---:|---:|---:|---:|---:|\n";
    for name in sizes.sizes.keys() {
        for var in ["baseline", "ft"] {
            for prec in ["fp32", "bf16"] {
                for &b in &sizes.generate.batches {
                    let f = find(recs, "freet", var, name, prec, "generate", Some(b));
                    let pvar = if var == "ft" { "ft-dense" } else { var };
                    let p = find(recs, "pytorch", pvar, name, prec, "generate", Some(b));
                    if f.is_none() && p.is_none() {
                        continue;
                    }
                    let ft = f.and_then(|r| r.decode_tokens_per_s);
                    let pt = p.and_then(|r| r.decode_tokens_per_s);
                    let _ = writeln!(
                        s,
                        "| {name} | {var} | {prec} | {b} | {} | {} | {} | {} | {} |",
                        fmt_opt(ft, 0),
                        fmt_opt(pt, 0),
                        fmt_opt(ratio(ft, pt), 2),
                        fmt_opt(f.and_then(|r| r.prefill_ms), 1),
                        fmt_opt(p.and_then(|r| r.prefill_ms), 1)
                    );
                    if var == "baseline"
                        && prec == "fp32"
                        && b == 1
                        && let Some(x) = ratio(ft, pt)
                    {
                        targets.push((
                            format!("{name}: KV generation ≥ 1.5× PyTorch loop at batch 1"),
                            format!("{x:.2}×"),
                            Some(x >= 1.5),
                        ));
                    }
                }
            }
        }
        let (b, f) = (
            find(recs, "freet", "baseline", name, "fp32", "generate", Some(1)).and_then(|r| r.decode_tokens_per_s),
            find(recs, "freet", "ft", name, "fp32", "generate", Some(1)).and_then(|r| r.decode_tokens_per_s),
        );
        if let Some(x) = ratio(b, f) {
            targets.push((
                format!("{name}: FT generation overhead ≤ 2 % (batch 1, fp32)"),
                format!("{:+.1} %", 100.0 * (x - 1.0)),
                Some(x - 1.0 <= 0.02),
            ));
        }
    }
    targets.push(("GPU MFU in bf16 for s3".into(), "no GPU lent to this task".into(), None));

    let mut head = String::from("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    for (t, m, ok) in &targets {
        let _ = writeln!(head, "| {t} | {m} | {} |", verdict(*ok));
    }
    s += "\n";
    s += &head;
    if !notes.trim().is_empty() {
        s += "\n";
        s += notes.trim_end();
        s += "\n";
    }
    s
}

/// One training run's curve for the precision check: training CE per logged step and the final
/// held-out headline figure.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Label (e.g. "fp32 seed 1").
    pub name: String,
    /// `(step, training CE)`.
    pub train_ce: Vec<(f64, f64)>,
    /// Held-out CE (baseline) or ELBO (FT) at the last evaluation.
    pub final_eval: Option<f64>,
}

/// Reads `metrics.jsonl` of a run directory into a [`Curve`].
pub fn read_curve(name: &str, run_dir: &std::path::Path) -> Result<Curve> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut c = Curve { name: name.to_string(), train_ce: vec![], final_eval: None };
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if let (Some(step), Some(ce)) = (v["step"].as_f64(), v["ce"].as_f64()) {
            c.train_ce.push((step, ce));
        }
        if let Some(e) = v.get("eval") {
            c.final_eval = e["ce"].as_f64().or(e["elbo"].as_f64()).or(c.final_eval);
        }
    }
    if c.train_ce.is_empty() {
        bail!("{}: no training steps logged", path.display());
    }
    Ok(c)
}

/// The bf16-vs-fp32 section: final held-out CE per run, the seed-to-seed spread of the fp32 runs,
/// and (written to `svg`) the training-CE curves.
pub fn curves_section(curves: &[Curve], svg: &std::path::Path, svg_link: &str) -> Result<String> {
    let mut s = String::from(
        "## bf16 vs fp32: loss curves\n\nThe same run trained in fp32 with two seeds and in bf16 (products in bf16; master \
         weights, norms, logits, loss and the Binary Mapper in fp32). bf16 is within noise when its distance to \
         the fp32 run of the same seed is no larger than the fp32 seed-to-seed spread.\n\n",
    );
    s += "| run | held-out CE (final eval) | mean training CE, last 25 % of steps |\n|---|---:|---:|\n";
    for c in curves {
        let n = c.train_ce.len();
        let tail = &c.train_ce[n - (n / 4).max(1)..];
        let mean = tail.iter().map(|p| p.1).sum::<f64>() / tail.len() as f64;
        let _ = writeln!(s, "| {} | {} | {mean:.4} |", c.name, fmt_opt(c.final_eval, 4));
    }
    let series: Vec<crate::report::plot::Series> = curves
        .iter()
        .map(|c| crate::report::plot::Series {
            name: c.name.clone(),
            points: c.train_ce.iter().map(|&(x, y)| (x, y, 0.0)).collect(),
        })
        .collect();
    let chart = crate::report::plot::Chart {
        title: "training CE, fp32 vs bf16".into(),
        x_label: "step".into(),
        y_label: "CE (nats/token)".into(),
        log2_x: false,
    };
    crate::report::plot::write_svg(svg, &chart, &series)?;
    let _ = writeln!(s, "\n![training curves]({svg_link})");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_file_parses_and_matches_the_issue() {
        let f = SizesFile::parse(DEFAULT_SIZES).unwrap();
        let s1 = f.size("s1").unwrap();
        assert_eq!(
            (s1.n_layers, s1.d_model, s1.n_heads, s1.ffn_hidden, s1.vocab_size, s1.seq_len, s1.batch),
            (4, 256, 4, 1024, 64, 128, 32)
        );
        assert_eq!(f.size("s3").unwrap().seq_len, 512);
        assert!(f.size("s9").unwrap_err().to_string().contains("known: s1, s2, s3"));
    }

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
        // The issue's orientation figures: ~2 % at the 1.5B scale, ~30 % at d = 512, L = 12, H = 16.
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
                device: Device::Cpu,
            };
            let r = run(&f, &o).unwrap();
            assert_eq!((r.batch, r.steps, r.precision.as_str()), (2, 2, precision.name()));
            assert!(r.tokens_per_s.unwrap() > 0.0 && r.peak_rss_mib > 0.0);
            let [a, b] = r.loss_first_last.unwrap();
            assert!(a.is_finite() && b.is_finite());
            assert_eq!(r.mapper_ms_median.is_some(), variant == Variant::Ft);
            let g = run(&f, &BenchOptions { mode: Mode::Generate, new_tokens: Some(5), batch: Some(3), ..o }).unwrap();
            assert_eq!((g.batch, g.new_tokens), (3, Some(5)));
            assert!(g.decode_tokens_per_s.unwrap() > 0.0);
            let json = serde_json::to_string(&g).unwrap();
            assert!(json.contains("\"impl\":\"freet\"") && json.contains("\"decode_tokens_per_s\""));
            let back: Record = serde_json::from_str(&json).unwrap();
            assert_eq!((back.batch, back.mode.as_str(), back.variant.as_str()), (3, "generate", variant.name()));
        }
    }

    #[test]
    fn report_computes_ratios_from_records() {
        let f = SizesFile::parse(DEFAULT_SIZES).unwrap();
        let rec = |imp: &str, var: &str, prec: &str, tps: f64, ms: f64, rss: f64| Record {
            implementation: imp.into(),
            variant: var.into(),
            size: "s1".into(),
            precision: prec.into(),
            mode: "train".into(),
            batch: 32,
            seq_len: 128,
            step_ms_median: Some(ms),
            tokens_per_s: Some(tps),
            peak_rss_mib: rss,
            bits: (var != "baseline").then_some(16),
            ..Default::default()
        };
        let recs = vec![
            rec("pytorch", "baseline", "fp32", 4000.0, 1024.0, 500.0),
            rec("freet", "baseline", "bf16", 6000.0, 682.7, 400.0),
            rec("freet", "baseline", "fp32", 4100.0, 1000.0, 400.0),
            rec("freet", "ft", "fp32", 2000.0, 2000.0, 900.0),
        ];
        let md = report(&recs, &f, "header", "## Notes\n\nhand-written");
        assert!(md.contains("| s1: training ≥ 1.3× PyTorch eager fp32 | 1.50× | met |"), "{md}");
        assert!(md.contains("| s1 | freet | bf16 | baseline | 683 |"), "{md}");
        assert!(md.contains("+125.0 % (900 vs 400 MiB)"), "{md}");
        assert!(md.contains("## Notes\n\nhand-written"));
        assert!(md.contains("GPU MFU in bf16 for s3 | no GPU lent to this task | not measured"));
    }
}
