//! The `freet` command line: train, sample, eval, demo.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use freet::config::RunConfig;
use freet::data::Tokenizer;
use freet::experiments::figure4::{Group, Panel, render_text};
use freet::generate::{GenerationZ, SampleOptions, decode_rows, generate};
use freet::model::config::Precision;
use freet::train::checkpoint;
use freet::train::{TrainOptions, TrainSummary, train};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tch::Device;

const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");
const DEMO_BASELINE_CONFIG: &str = include_str!("../../../configs/demo-baseline.toml");

#[derive(Parser)]
#[command(name = "freet", version, about = "The Free Transformer (Fleuret 2025) in Rust: train, sample, evaluate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model from a TOML config (or resume a run).
    Train(TrainArgs),
    /// Sample continuations of a prompt from a checkpoint.
    Sample(SampleArgs),
    /// Held-out evaluation with honest bounds (prior-Z CE, ELBO) for a Free Transformer.
    Eval(EvalArgs),
    /// Train a small Free Transformer on the synthetic task (≤ 10 min on 2 CPU cores) and show
    /// samples with fresh Z (blue group) and shared Z (green groups).
    Demo(DemoArgs),
    /// Reproduce the paper's experiments.
    #[command(subcommand)]
    Experiment(ExperimentCmd),
    /// Does the latent help? Baseline, matched baseline (+1 block) and Free Transformers at several
    /// κ over several seeds, evaluated with honest bounds and exact task scores.
    Compare(CompareArgs),
    /// Speed benchmarks (bench/run.sh runs them all next to the PyTorch reference).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Byte-level BPE tokenizers for text data.
    #[command(subcommand)]
    Tokenizer(TokenizerCmd),
}

#[derive(Args)]
struct CompareArgs {
    /// hmm, permutation, countdown (built-in configs in experiments/compare/) or a run config file
    /// (e.g. text with a BPE tokenizer).
    #[arg(long)]
    task: String,
    /// Seeds per arm.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// κ of the Free Transformer arms, in bits (comma-separated; fractions allowed).
    #[arg(long, default_value = "1/4,1/2,1,2", value_delimiter = ',')]
    kappa: Vec<String>,
    /// Working directory (models under models/).
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Report directory (compare.md, results.json, plots); default: --out.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Override a value in every arm's config (repeatable), e.g. --set data.k=64.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Tiny models and 20 steps: a smoke test.
    #[arg(long)]
    quick: bool,
    /// Validation prompts for generation-scored metrics.
    #[arg(long, default_value_t = 64)]
    prompts: usize,
    /// Samples per prompt.
    #[arg(long, default_value_t = 8)]
    samples: usize,
    /// Posterior draws of the IWAE bound.
    #[arg(long, default_value_t = 16)]
    iwae_samples: usize,
    /// Prior draws of the prior-Z CE.
    #[arg(long, default_value_t = 4)]
    prior_samples: usize,
    /// Reuse runs already trained to their final step.
    #[arg(long)]
    reuse: bool,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArg,
}

fn cmd_compare(a: CompareArgs) -> Result<()> {
    let kappas = a
        .kappa
        .iter()
        .map(|k| freet::model::config::KappaBits::parse(k.trim()).map_err(|e| anyhow!("--kappa {k:?}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if a.prompts == 0 || a.samples == 0 {
        bail!("--prompts and --samples must be at least 1");
    }
    let command = std::iter::once("freet".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ");
    let o = freet::experiments::compare::CompareOptions {
        task: a.task,
        seeds: a.seeds,
        kappas,
        report_dir: a.report_dir.unwrap_or_else(|| a.out.clone()),
        out: a.out,
        overrides: a.overrides,
        quick: a.quick,
        prompts: a.prompts,
        samples: a.samples,
        iwae_samples: a.iwae_samples,
        prior_samples: a.prior_samples,
        reuse: a.reuse,
        device: a.device.get()?,
        progress: !a.quiet,
        command,
        stop: stop_flag()?,
    };
    let results = freet::experiments::compare::run_compare(&o)?;
    println!("{} runs; report: {}", results.len(), o.report_dir.join("compare.md").display());
    Ok(())
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Measure one configuration: training step split (forward/backward/optimizer), peak RSS, or
    /// KV-cache generation speed; prints one JSON record and appends it to --json.
    Run(BenchRunArgs),
    /// Render BENCHMARKS.md from the JSON records of a run (freet and bench/reference.py).
    Report(BenchReportArgs),
}

#[derive(Args)]
struct BenchRunArgs {
    /// Size name from the sizes file (s1, s2, s3).
    #[arg(long, default_value = "s1")]
    size: String,
    /// baseline, ft (fused Eq. 8 backward) or ft-dense (dense one-hot formulation).
    #[arg(long, default_value = "baseline", value_parser = ["baseline", "ft", "ft-dense"])]
    variant: String,
    /// fp32 or bf16 (bf16 products, fp32 master weights, fp32 mapper).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
    /// train or generate.
    #[arg(long, default_value = "train", value_parser = ["train", "generate"])]
    mode: String,
    /// Measured steps (default: the sizes file's).
    #[arg(long)]
    steps: Option<usize>,
    /// Warm-up steps (default: the sizes file's).
    #[arg(long)]
    warmup: Option<usize>,
    /// Batch size (training default: the size's; generation default: 1).
    #[arg(long)]
    batch: Option<usize>,
    /// Tokens to decode (generation).
    #[arg(long)]
    new_tokens: Option<usize>,
    /// H for the Free Transformer variants (default: the sizes file's).
    #[arg(long)]
    bits: Option<usize>,
    /// A sizes file (default: the bench/sizes.json compiled in).
    #[arg(long)]
    sizes: Option<PathBuf>,
    /// Append the JSON record to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct BenchReportArgs {
    /// JSON-lines records (freet and PyTorch).
    #[arg(long, default_value = "bench/results.jsonl")]
    json: PathBuf,
    /// Hand-written analysis appended to the report.
    #[arg(long)]
    notes: Option<PathBuf>,
    /// The command that produced the records (named in the report).
    #[arg(long, default_value = "bash bench/run.sh")]
    command: String,
    /// Minutes the run took (named in the report).
    #[arg(long)]
    minutes: Option<f64>,
    /// Output Markdown file.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// A sizes file (default: the bench/sizes.json compiled in).
    #[arg(long)]
    sizes: Option<PathBuf>,
    /// Training runs for the bf16-vs-fp32 loss-curve section, as LABEL=RUN_DIR (repeatable).
    #[arg(long = "curve", value_name = "LABEL=RUN_DIR")]
    curves: Vec<String>,
}

fn sizes_file(path: &Option<PathBuf>) -> Result<freet::bench::SizesFile> {
    match path {
        None => freet::bench::SizesFile::parse(freet::bench::DEFAULT_SIZES),
        Some(p) => freet::bench::SizesFile::parse(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| p.display().to_string()),
    }
}

fn cmd_bench_run(a: BenchRunArgs) -> Result<()> {
    use freet::bench::{BenchOptions, Mode, Variant};
    let sizes = sizes_file(&a.sizes)?;
    let o = BenchOptions {
        size: a.size,
        variant: match a.variant.as_str() {
            "ft" => Variant::Ft,
            "ft-dense" => Variant::FtDense,
            _ => Variant::Baseline,
        },
        precision: if a.precision == "bf16" { Precision::Bf16 } else { Precision::Fp32 },
        mode: if a.mode == "generate" { Mode::Generate } else { Mode::Train },
        steps: a.steps,
        warmup: a.warmup,
        batch: a.batch,
        new_tokens: a.new_tokens,
        bits: a.bits,
        device: a.device.get()?,
    };
    let rec = freet::bench::run(&sizes, &o)?;
    let line = serde_json::to_string(&rec)?;
    println!("{line}");
    if let Some(p) = a.json {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("cannot open {}", p.display()))?;
        writeln!(f, "{line}").with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

fn cmd_bench_report(a: BenchReportArgs) -> Result<()> {
    let sizes = sizes_file(&a.sizes)?;
    let text = std::fs::read_to_string(&a.json).with_context(|| format!("cannot read {}", a.json.display()))?;
    let mut recs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: freet::bench::Record = serde_json::from_str(line).map_err(|e| {
            anyhow!("{} line {}: {}", a.json.display(), i + 1, freet::util::error::one_line(&e.to_string()))
        })?;
        recs.push(r);
    }
    let notes = match &a.notes {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => String::new(),
    };
    let header = format!(
        "Produced by `{}`{} on {} ({}; PyTorch reference: torch {}).",
        a.command,
        a.minutes.map(|m| format!(" ({m:.0} minutes)")).unwrap_or_default(),
        freet::report::stamp::today(),
        freet::report::stamp::machine(),
        recs.iter().find(|r| r.implementation == "pytorch").map_or("–", |r| r.version.as_str()),
    );
    let mut md = freet::bench::report(&recs, &sizes, &header, "");
    if !a.curves.is_empty() {
        let mut curves = vec![];
        for c in &a.curves {
            let (label, dir) = c.split_once('=').ok_or_else(|| anyhow!("--curve {c:?}: expected LABEL=RUN_DIR"))?;
            curves.push(freet::bench::read_curve(label, std::path::Path::new(dir))?);
        }
        let svg = a.out.with_file_name("bench").join("precision-curves.svg");
        md += "\n";
        md += &freet::bench::curves_section(&curves, &svg, "bench/precision-curves.svg")?;
    }
    if !notes.trim().is_empty() {
        md += "\n";
        md += notes.trim_end();
        md += "\n";
    }
    freet::util::fs::write_atomic(&a.out, md.as_bytes())?;
    println!("wrote {} ({} records)", a.out.display(), recs.len());
    Ok(())
}

#[derive(Subcommand)]
enum TokenizerCmd {
    /// Train a byte-level BPE (any UTF-8 round-trips exactly) and write its tokenizer.json.
    Train(TokenizerTrainArgs),
}

#[derive(Args)]
struct TokenizerTrainArgs {
    /// UTF-8 training text files.
    #[arg(long, num_args = 1.., required = true)]
    files: Vec<PathBuf>,
    /// Vocabulary size: 256 byte symbols plus merges (fewer if the text runs out of pairs).
    #[arg(long)]
    vocab_size: usize,
    /// Where to write tokenizer.json (replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Minimum count of a pair for it to be merged.
    #[arg(long, default_value_t = freet::data::bpe::DEFAULT_MIN_FREQUENCY)]
    min_frequency: u64,
}

#[derive(Subcommand)]
enum ExperimentCmd {
    /// The synthetic task of §4.1 / Figure 4: a baseline and κ = 1/64, 1/8, 1, 8 bits, the figure's
    /// blue/green groups, and regime metrics over many groups.
    Figure4(Figure4Args),
}

#[derive(Args)]
struct Figure4Args {
    /// Working directory (trained models go under models/).
    #[arg(long, default_value = "runs/figure4")]
    out: PathBuf,
    /// Report directory (figure4.md, figure4.svg, results.json, samples.json); default: --out.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Tiny models and few steps: a smoke test in about 3 minutes.
    #[arg(long)]
    quick: bool,
    /// Groups per regime measurement (default 200; 20 with --quick).
    #[arg(long)]
    groups: Option<usize>,
    /// Samples per group.
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// Reuse arms already trained to their final step.
    #[arg(long)]
    reuse: bool,
    /// Override a value in every arm's config (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct DeviceArg {
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
}

impl DeviceArg {
    fn get(&self) -> Result<Device> {
        match self.device.as_str() {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(Device::cuda_if_available()),
            "cuda" if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            "cuda" => bail!("--device cuda: no CUDA device is available to libtorch"),
            other => bail!("--device {other}: expected auto, cpu or cuda"),
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    /// The run's TOML config.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, e.g. --set model.latent.kappa_bits=1/8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory (config.toml, metrics.jsonl, checkpoints/).
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue from the run directory's latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Prior-Z draws per evaluation.
    #[arg(long, default_value_t = 1)]
    eval_prior_samples: usize,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct SampleArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The prompt text (synthetic task: e.g. "Q>").
    #[arg(long)]
    prompt: String,
    /// Number of samples.
    #[arg(short, long, default_value_t = 5)]
    n: usize,
    /// Tokens to generate (default: complete a synthetic sequence, else 128).
    #[arg(long)]
    max_new: Option<usize>,
    /// Softmax temperature (0 = greedy).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling mass.
    #[arg(long)]
    top_p: Option<f64>,
    /// Seed of token sampling and of fresh latents.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share one whole Z (drawn from the prior with --z-seed) across all samples.
    #[arg(long)]
    shared_z: bool,
    /// Seed of the shared Z.
    #[arg(long, default_value_t = 0)]
    z_seed: u64,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Validation batches (default: the run's train.eval_batches).
    #[arg(long)]
    batches: Option<usize>,
    /// Prior-Z draws averaged for the prior CE.
    #[arg(long, default_value_t = 8)]
    prior_samples: usize,
    /// Posterior draws of the importance-weighted bound (0: skip it).
    #[arg(long, default_value_t = 16)]
    iwae_samples: usize,
    /// Seed of the latent draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct DemoArgs {
    /// Run directory.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Override a demo config value (repeatable), e.g. --set train.steps=100.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Samples per group.
    #[arg(long, default_value_t = 5)]
    group_size: usize,
    /// Also train the baseline (same architecture, no latent) for a speed comparison.
    #[arg(long)]
    with_baseline: bool,
    #[command(flatten)]
    device: DeviceArg,
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled terminates at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    Ok(stop)
}

fn print_summary(s: &TrainSummary) {
    if s.interrupted {
        eprintln!("interrupted: checkpoint saved at step {} in {}", s.steps, s.checkpoint.display());
    }
    println!(
        "trained to step {} ({} tokens in {:.1} s, {:.0} tok/s); last batch: ce {:.4}{}",
        s.steps,
        s.tokens,
        s.elapsed_s,
        s.tokens_per_s,
        s.last.ce,
        s.last.kl_bits.map(|k| format!(", kl {k:.3} bits/token")).unwrap_or_default()
    );
    if let Some(e) = &s.eval {
        print!("{}", e.render());
    }
    println!("checkpoint: {}", s.checkpoint.display());
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let run = RunConfig::load(&a.config, &a.overrides)?;
    let mut opts = TrainOptions::new(&a.out);
    opts.resume = a.resume;
    opts.device = a.device.get()?;
    opts.progress = !a.quiet;
    opts.eval_prior_samples = a.eval_prior_samples;
    opts.stop = stop_flag()?;
    let s = train(&run, &opts)?;
    print_summary(&s);
    Ok(())
}

fn encode_prompt(tok: &Tokenizer, prompt: &str) -> Result<Vec<i64>> {
    let ids = tok.encode(prompt).map_err(|e| anyhow!("--prompt: {e}"))?;
    Ok(ids.into_iter().map(i64::from).collect())
}

fn default_max_new(tok: &Tokenizer, prompt_len: usize) -> usize {
    match tok {
        Tokenizer::Synthetic => freet::data::SYNTH_LEN.saturating_sub(prompt_len).max(1),
        Tokenizer::Bytes | Tokenizer::Task(_) | Tokenizer::Bpe(_) => 128,
    }
}

fn cmd_sample(a: SampleArgs) -> Result<()> {
    let loaded = checkpoint::load(&a.checkpoint, a.device.get()?)?;
    let prompt = encode_prompt(&loaded.tokenizer, &a.prompt)?;
    let opts = SampleOptions {
        max_new_tokens: a.max_new.unwrap_or_else(|| default_max_new(&loaded.tokenizer, prompt.len())),
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    };
    let source = if a.shared_z { GenerationZ::Shared { z_seed: a.z_seed } } else { GenerationZ::Fresh };
    let g = generate(&loaded.model, &prompt, a.n, &opts, source)?;
    for s in decode_rows(&loaded.tokenizer, &g.tokens)? {
        println!("{s}");
    }
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let loaded = checkpoint::load(&a.checkpoint, a.device.get()?)?;
    let state = loaded
        .state
        .ok_or_else(|| anyhow!("{}: no state.json, so the validation data is unknown", loaded.dir.display()))?;
    // The checkpoint's own tokenizer (its copy of tokenizer.json), not whatever the config path holds now.
    let data = state.run.dataset_with(loaded.tokenizer.clone())?;
    let n = a.batches.unwrap_or(state.run.train.eval_batches);
    if n == 0 {
        bail!("--batches must be at least 1");
    }
    let val = data.val_batches(n, state.run.train.batch_size);
    let opts = freet::eval::EvalOptions { prior_samples: a.prior_samples, iwae_samples: a.iwae_samples, seed: a.seed };
    let report = freet::eval::evaluate_with(&loaded.model, &val, &opts).with_target_bytes(data.target_bytes(&val));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("checkpoint {} (step {})", loaded.dir.display(), state.step);
        print!("{}", report.render());
    }
    Ok(())
}

fn cmd_demo(a: DemoArgs) -> Result<()> {
    let device = a.device.get()?;
    let stop = stop_flag()?;
    let run = RunConfig::from_toml_str(DEMO_CONFIG, "the built-in demo config", &a.overrides)?;
    if a.out.join("checkpoints").exists() {
        std::fs::remove_dir_all(a.out.join("checkpoints"))
            .with_context(|| format!("cannot clear {}", a.out.join("checkpoints").display()))?;
    }
    let kappa = run.model.latent.kappa_bits.map_or(0.0, |k| k.0);
    println!(
        "freet demo: training a Free Transformer (H = {}, κ = {} bit/token) on the synthetic task for {} steps",
        run.model.latent.bits, kappa, run.train.steps
    );
    let mut opts = TrainOptions::new(a.out.join("free-transformer"));
    opts.device = device;
    opts.stop = Arc::clone(&stop);
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    let s = train(&run, &opts)?;
    print_summary(&s);
    if a.with_baseline {
        let base = RunConfig::from_toml_str(DEMO_BASELINE_CONFIG, "the built-in baseline config", &a.overrides)?;
        let mut bopts = TrainOptions::new(a.out.join("baseline"));
        bopts.device = device;
        bopts.stop = stop;
        let _ = std::fs::remove_dir_all(&bopts.out_dir);
        println!("training the baseline (same architecture, no latent) for comparison");
        let b = train(&base, &bopts)?;
        print_summary(&b);
        println!(
            "train throughput: baseline {:.0} tok/s, Free Transformer {:.0} tok/s (ratio {:.2})",
            b.tokens_per_s,
            s.tokens_per_s,
            s.tokens_per_s / b.tokens_per_s
        );
    }
    let loaded = checkpoint::load(&s.checkpoint, device)?;
    let letter = (b'A' + (run.train.seed % 26) as u8) as char;
    let prompt = encode_prompt(&loaded.tokenizer, &format!("{letter}>"))?;
    // Each group gets its own token-sampling seed: only Z should make green groups agree.
    let opts =
        |seed| SampleOptions { max_new_tokens: default_max_new(&loaded.tokenizer, 2), seed, ..Default::default() };
    let n = a.group_size;
    let blue = generate(&loaded.model, &prompt, n, &opts(7), GenerationZ::Fresh)?;
    let mut groups = vec![Group::blue(decode_rows(&loaded.tokenizer, &blue.tokens)?)];
    for z_seed in [1u64, 2] {
        let g = generate(&loaded.model, &prompt, n, &opts(100 + z_seed), GenerationZ::Shared { z_seed })?;
        groups.push(Group::green(decode_rows(&loaded.tokenizer, &g.tokens)?));
    }
    let panel = Panel { title: format!("κ = {kappa} bit, prompt {letter}>"), groups };
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    println!("\n{}", render_text(&[panel], colour));
    println!(
        "blue: every sample draws its own Z; green: the samples of a group share one Z drawn from the prior.\n\
         If Z carries the target position, green groups place their targets alike."
    );
    Ok(())
}

fn cmd_figure4(a: Figure4Args) -> Result<()> {
    let groups = a.groups.unwrap_or(if a.quick { 20 } else { 200 });
    if groups == 0 || a.group_size < 2 {
        bail!("--groups must be ≥ 1 and --group-size ≥ 2 (agreement needs pairs)");
    }
    let command = std::iter::once("freet".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ");
    let o = freet::experiments::figure4::Figure4Options {
        report_dir: a.report_dir.unwrap_or_else(|| a.out.clone()),
        out: a.out,
        quick: a.quick,
        groups,
        group_size: a.group_size,
        reuse: a.reuse,
        device: a.device.get()?,
        progress: !a.quiet,
        overrides: a.overrides,
        command,
        stop: stop_flag()?,
    };
    let results = freet::experiments::figure4::run_figure4(&o)?;
    for r in &results {
        println!(
            "{:<22} position agreement fresh {} shared {}; validity {}",
            r.panel.title,
            r.fresh.position_agreement.map_or("–".into(), |v| format!("{v:.3}")),
            r.shared.position_agreement.map_or("–".into(), |v| format!("{v:.3}")),
            r.shared.validity.map_or("–".into(), |v| format!("{v:.3}"))
        );
    }
    Ok(())
}

fn cmd_tokenizer_train(a: TokenizerTrainArgs) -> Result<()> {
    let t = freet::data::bpe::train(&a.files, a.vocab_size, a.min_frequency)?;
    freet::util::fs::write_atomic(&a.out, t.tokenizer.json().as_bytes())
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "trained a byte-level BPE: vocab size {} ({} merges) on {} training bytes in {} file(s)",
        t.tokenizer.vocab_size(),
        t.merges,
        t.training_bytes,
        a.files.len()
    );
    println!(
        "training text: {} tokens, {:.3} bytes/token; fnv1a64 {}",
        t.training_tokens,
        t.bytes_per_token(),
        t.tokenizer.hash_hex()
    );
    println!("wrote {}", a.out.display());
    Ok(())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Train(a) => cmd_train(a),
        Cmd::Sample(a) => cmd_sample(a),
        Cmd::Eval(a) => cmd_eval(a),
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::Experiment(ExperimentCmd::Figure4(a)) => cmd_figure4(a),
        Cmd::Compare(a) => cmd_compare(a),
        Cmd::Bench(BenchCmd::Run(a)) => cmd_bench_run(a),
        Cmd::Bench(BenchCmd::Report(a)) => cmd_bench_report(a),
        Cmd::Tokenizer(TokenizerCmd::Train(a)) => cmd_tokenizer_train(a),
    }
}

fn main() -> ExitCode {
    // libtorch errors surface as panics inside tch; inputs are validated first, and anything left
    // is reported as one line rather than a backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            // libtorch messages carry a C++ backtrace after the first line (escaped or not).
            let first = msg.split("\\n").next().unwrap_or(msg).lines().next().unwrap_or(msg);
            eprintln!("error: internal failure: {first}");
            ExitCode::from(2)
        }
    }
}
