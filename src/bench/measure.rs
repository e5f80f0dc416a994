//! Running one benchmark configuration: building its model and optimiser from the sizes file, then
//! timing training steps (forward / backward / optimizer) or KV-cache generation.

use super::sizes::{LatentSpec, Size, SizesFile, TrainSpec};
use super::{BenchOptions, MemoryParts, Mode, Record, Variant};
use crate::config::{TableOptimizer, TrainConfig};
use crate::generate::{GenerationZ, SampleOptions, generate_batch};
use crate::model::config::{ModelConfig, Precision};
use crate::model::{FreeTransformer, Pass, ZSource};
use crate::train::optim::AdamW;
use anyhow::{Context, Result, bail};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
        mode: o.mode.name().into(),
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
    let mut tc = train_config(&sizes.train, batch)?;
    if o.variant == Variant::Ft {
        tc.post_sampler_optimizer = o.table_optimizer.unwrap_or(sizes.train.ft_table_optimizer);
        rec.table_optimizer = Some(tc.post_sampler_optimizer.name().into());
    }
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
    rec.train_flops = Some(super::flops::train_flops(size, batch, rec.bits).total());
    rec.loss_first_last = Some([losses[0], *losses.last().expect("at least one step")]);
    if let (Some(lat), Variant::Ft) = (model.latent(), o.variant) {
        let n = (batch * size.seq_len) as i64;
        rec.mapper_ms_median = Some(time_mapper(lat, n, size.d_model as i64, o.device));
        rec.memory_parts = Some(memory_parts(model, lat, tc.post_sampler_optimizer, n, size));
    }
    Ok(())
}

/// The memory a Free Transformer step holds beyond the baseline's, by part (see [`MemoryParts`]).
fn memory_parts(
    model: &FreeTransformer,
    lat: &crate::model::LatentModule,
    table_opt: TableOptimizer,
    n: i64,
    size: &Size,
) -> MemoryParts {
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    let e = lat.post_sampler.numel() as f64 * 4.0;
    let rows = lat.post_sampler.size()[0] as f64;
    let encoder: usize = model
        .var_store()
        .variables()
        .iter()
        .filter(|(name, _)| crate::train::optim::is_encoder(name))
        .map(|(_, t)| t.numel())
        .sum();
    let (d, f, h) = (size.d_model as f64, size.ffn_hidden as f64, lat.mapper.bits() as f64);
    MemoryParts {
        table: mib(e),
        table_grad: mib(e),
        table_state: mib(2.0 * e + if table_opt == TableOptimizer::Lazy { 8.0 * rows } else { 0.0 }),
        encoder_params: mib(16.0 * encoder as f64),
        activations: mib(4.0 * n as f64 * (13.0 * d + 4.0 * f + 2.0 * d + h + 4.0 * d)),
        mapper_scratch: mib(lat.mapper.scratch_bytes(n) as f64),
    }
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
    // Warm-up, then `--steps` timed generations (default 1, as bench/reference.py); prefill and
    // decode times are medians over them.
    let warm = SampleOptions { max_new_tokens: 4.min(new_tokens), ..opts.clone() };
    generate_batch(model, &prompts, &warm, GenerationZ::Fresh)?;
    let repeats = o.steps.unwrap_or(1).max(1);
    let (mut prefill, mut decode) = (vec![], vec![]);
    for r in 0..repeats {
        opts.seed = 8 + r as u64;
        let g = generate_batch(model, &prompts, &opts, GenerationZ::Fresh)?;
        sync(o.device);
        prefill.push(g.timing.prefill_s);
        decode.push(g.timing.decode_s);
    }
    let decode_s = median(&decode);
    rec.batch = batch;
    rec.new_tokens = Some(new_tokens);
    rec.prefill_ms = Some(median(&prefill) * 1e3);
    rec.seq_len = sizes.generate.prompt_len;
    rec.steps = repeats;
    rec.decode_tokens_per_s = Some((batch * new_tokens) as f64 / decode_s.max(1e-9));
    rec.tokens_per_s = rec.decode_tokens_per_s;
    rec.step_ms_median = Some(1e3 * decode_s / new_tokens as f64);
    Ok(())
}
