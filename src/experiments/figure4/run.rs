//! The paper's synthetic experiment (§4.1, Figure 4) end to end: train a baseline and four Free
//! Transformers (κ = 1/64, 1/8, 1, 8 bits), draw the figure's blue/green groups, and measure the
//! regimes over many groups with fresh and shared Z.

use crate::config::{RunConfig, TableOptimizer};
use crate::data::{SYNTH_LEN, Tokenizer};
use crate::eval::{EvalReport, evaluate};
use crate::experiments::figure4::agreement::{self, Contrast};
use crate::experiments::figure4::{self, CHANCE_POSITION_AGREEMENT, Group, Panel, RegimeMetrics};
use crate::experiments::harness::{ArmRunner, Finished, jobs_threads_override, quick_overrides, run_parallel};
use crate::generate::{GenerationZ, SampleOptions, decode_rows, generate_batch};
use crate::model::FreeTransformer;
use crate::model::config::{FreeBits, PostSamplerInit};
use crate::report::bootstrap::PairedDiff;
use crate::util::rng::Stream;
use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Tensor};

/// The five arms: name and the config kept in `experiments/figure4/`.
pub const ARMS: [(&str, &str); 5] = [
    ("baseline", include_str!("../../../experiments/figure4/baseline.toml")),
    ("kappa-1-64", include_str!("../../../experiments/figure4/kappa-1-64.toml")),
    ("kappa-1-8", include_str!("../../../experiments/figure4/kappa-1-8.toml")),
    ("kappa-1", include_str!("../../../experiments/figure4/kappa-1.toml")),
    ("kappa-8", include_str!("../../../experiments/figure4/kappa-8.toml")),
];

/// Overrides that turn every arm into the `--quick` smoke version (small model, H = 10, few steps).
pub const QUICK: [&str; 11] = [
    "model.latent.bits=10",
    "train.lr=3e-3",
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.n_kv_heads=1",
    "model.ffn_hidden=64",
    "train.steps=40",
    "train.batch_size=16",
    "train.eval_every=0",
    "train.checkpoint_every=0",
];

/// Settings of one experiment run.
#[derive(Debug, Clone)]
pub struct Figure4Options {
    /// Working directory: trained models under `models/`.
    pub out: PathBuf,
    /// Where the report (`figure4.md`, `figure4.svg`, `results.json`, `samples.json`) goes.
    pub report_dir: PathBuf,
    /// Small models and few steps (a smoke test in minutes).
    pub quick: bool,
    /// Groups per regime measurement.
    pub groups: usize,
    /// Samples per group.
    pub group_size: usize,
    /// Reuse models already trained to their final step in `out/models`.
    pub reuse: bool,
    /// Device.
    pub device: Device,
    /// Progress bars while training.
    pub progress: bool,
    /// Extra `key=value` overrides applied to every arm.
    pub overrides: Vec<String>,
    /// Only these arms (names of [`ARMS`]); empty means all five.
    pub arms: Vec<String>,
    /// The command line that produced this run (printed in the report).
    pub command: String,
    /// Stop flag (SIGINT/SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Arms trained at once (each on `cores / jobs` CPU threads unless `train.threads` is set).
    pub jobs: usize,
}

/// Everything measured for one arm.
#[derive(Debug, Clone, Serialize)]
pub struct ArmResult {
    /// Arm name.
    pub name: String,
    /// κ in bits (None for the baseline).
    pub kappa_bits: Option<f64>,
    /// Training seconds: this invocation's, or those logged when a reused arm was trained.
    pub train_seconds: f64,
    /// Whether the arm was reused (`--reuse`) rather than trained by this invocation.
    pub reused: bool,
    /// Training steps.
    pub steps: u64,
    /// Held-out evaluation at the end of training.
    pub eval: EvalReport,
    /// Metrics over groups whose samples each draw their own Z.
    pub fresh: RegimeMetrics,
    /// Metrics over groups whose samples share one prior Z.
    pub shared: RegimeMetrics,
    /// Shared − fresh agreement over paired groups, with 95 % bootstrap intervals and chance.
    pub contrast: Contrast,
    /// The figure panel (one blue, two green groups).
    pub panel: Panel,
}

/// Samples behind the metrics, so that anyone can recompute them.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ArmSamples {
    /// Arm name.
    pub name: String,
    /// Prompt letter of each group.
    pub letters: Vec<char>,
    /// Fresh-Z groups.
    pub fresh: Vec<Vec<String>>,
    /// Shared-Z groups.
    pub shared: Vec<Vec<String>>,
}

/// Runs the experiment and writes the report; returns the per-arm results.
pub fn run_figure4(o: &Figure4Options) -> Result<Vec<ArmResult>> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&o.report_dir).with_context(|| format!("cannot create {}", o.report_dir.display()))?;
    if let Some(bad) = o.arms.iter().find(|a| !ARMS.iter().any(|(n, _)| n == a)) {
        bail!("unknown arm '{bad}': choose among {}", ARMS.map(|(n, _)| n).join(", "));
    }
    if o.jobs == 0 {
        bail!("--jobs must be ≥ 1");
    }
    let mut overrides = quick_overrides(o.quick, &QUICK, &o.overrides);
    let user_sets = |key: &str| o.overrides.iter().any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key));
    if let Some(threads) = jobs_threads_override(o.jobs, o.device, &o.overrides, "figure4") {
        overrides.insert(0, threads);
    }
    let mut plan = Vec::new();
    for (name, text) in ARMS.into_iter().filter(|(n, _)| o.arms.is_empty() || o.arms.iter().any(|a| a == n)) {
        let source = format!("experiments/figure4/{name}.toml");
        let mut arm_overrides = overrides.clone();
        if !user_sets("train.kappa_warm_steps")
            && let Some(warm) = scaled_warm_steps(text, &source, &overrides)?
        {
            arm_overrides.push(format!("train.kappa_warm_steps={warm}"));
        }
        let run = RunConfig::from_toml_str(text, &source, &arm_overrides)?;
        plan.push((name, run));
    }
    let jobs = o.jobs.min(plan.len());
    let runner = ArmRunner::for_jobs(jobs, o.device, o.progress, &o.stop, o.reuse, "figure4");
    let arm = |(name, run): &(&str, RunConfig)| -> Result<(ArmResult, ArmSamples)> {
        let dir = o.out.join("models").join(name);
        let finished = runner.train(run, &dir, &format!("arm {name}")).with_context(|| format!("arm {name}"))?;
        measure_arm(name, run, finished, o, &runner)
    };
    let measured: Vec<(ArmResult, ArmSamples)> = if jobs == 1 {
        plan.iter().map(arm).collect::<Result<_>>()?
    } else {
        run_parallel(&plan, |(_, run)| run.train.steps, jobs, &o.stop, &runner.stop, "figure4", &arm)?
    };
    let (results, all_samples): (Vec<ArmResult>, Vec<ArmSamples>) = measured.into_iter().unzip();
    let total = t0.elapsed().as_secs_f64();
    let configs: Vec<RunConfig> = plan.into_iter().map(|(_, run)| run).collect();
    write_report(&results, &all_samples, &configs, o, total)?;
    Ok(results)
}

/// An arm's `train.kappa_warm_steps` rescaled to the steps it trains with `overrides` (e.g. 1,400
/// of 2,400 becomes 23 of 40 under `--quick`), or None when the arm has no κ schedule or keeps its
/// own steps.
fn scaled_warm_steps(text: &str, source: &str, overrides: &[String]) -> Result<Option<u64>> {
    let own = RunConfig::from_toml_str(text, source, &[])?.train;
    if own.kappa_warm_bits.is_none() {
        return Ok(None);
    }
    // Parse with a schedule that fits any step count, only to learn the steps the overrides give.
    let probe: Vec<String> = overrides.iter().cloned().chain(["train.kappa_warm_steps=1".to_string()]).collect();
    let steps = RunConfig::from_toml_str(text, source, &probe)?.train.steps;
    if steps == own.steps {
        return Ok(None);
    }
    let warm = (own.kappa_warm_steps as f64 * steps as f64 / own.steps as f64).round() as u64;
    Ok(Some(warm.clamp(1, steps)))
}

/// Evaluates one trained arm, samples its regime groups and its figure panel, and logs the headline.
fn measure_arm(
    name: &str,
    run: &RunConfig,
    finished: Finished,
    o: &Figure4Options,
    runner: &ArmRunner,
) -> Result<(ArmResult, ArmSamples)> {
    // A reused arm's training time is the one logged when it was trained (marked in the report).
    let Finished { model, train_seconds, reused } = finished;
    runner.say(&format!("[figure4] {name}: evaluating and sampling {} groups × {}", o.groups, o.group_size));
    let val = run.dataset()?.val_batches(run.train.eval_batches, run.train.batch_size);
    let eval = evaluate(&model, &val, 4, run.train.seed);
    let kappa_bits = run.model.latent().and_then(|l| l.kappa_bits).map(|k| k.0);
    let samples = regime_samples(&model, name, o.groups, o.group_size, run.train.seed)?;
    let fresh = figure4::aggregate(&samples.fresh, &samples.letters)?;
    let shared = figure4::aggregate(&samples.shared, &samples.letters)?;
    let contrast = agreement::contrast(&samples.fresh, &samples.shared, &samples.letters, run.train.seed);
    let panel = figure_panel(&model, name, kappa_bits, run.train.seed)?;
    runner.say(&format!(
        "[figure4] {name}: validity {} / {}, position agreement {} / {}, noise agreement {} / {} (fresh / shared)",
        fmt(fresh.validity),
        fmt(shared.validity),
        fmt(fresh.position_agreement),
        fmt(shared.position_agreement),
        fmt(fresh.noise_agreement),
        fmt(shared.noise_agreement)
    ));
    runner.say(&format!("[figure4] {name}: {}", agreement::verdict(&contrast)));
    let result = ArmResult {
        name: name.into(),
        kappa_bits,
        train_seconds,
        reused,
        steps: run.train.steps,
        eval,
        fresh,
        shared,
        contrast,
        panel,
    };
    Ok((result, samples))
}

/// Writes `figure4.svg`, `figure4.txt`, `results.json`, `samples.json` and `figure4.md`; `configs`
/// are the arms' run configs, in the order of `results`.
fn write_report(
    results: &[ArmResult],
    samples: &[ArmSamples],
    configs: &[RunConfig],
    o: &Figure4Options,
    total: f64,
) -> Result<()> {
    let panels: Vec<Panel> = results.iter().map(|r| r.panel.clone()).collect();
    let svg = figure4::render_svg(&panels);
    let text = figure4::render_text(&panels, false);
    let write = |name: &str, bytes: &[u8]| crate::util::fs::write_atomic(&o.report_dir.join(name), bytes);
    write("figure4.svg", svg.as_bytes())?;
    write("figure4.txt", text.as_bytes())?;
    write("results.json", serde_json::to_string_pretty(results)?.as_bytes())?;
    write("samples.json", serde_json::to_string(samples)?.as_bytes())?;
    let md = report_markdown(results, configs, o, total, &text);
    write("figure4.md", md.as_bytes())?;
    eprintln!("[figure4] done in {total:.0} s; report: {}", o.report_dir.join("figure4.md").display());
    Ok(())
}

/// Token ids of the prompt `L>` for the letter `L`.
fn letter_ids(letter: char) -> Vec<i64> {
    Tokenizer::Synthetic.encode(&format!("{letter}>")).expect("valid prompt").into_iter().map(i64::from).collect()
}

/// Generated rows back to full sample strings (prompt included).
fn decode(tokens: &Tensor) -> Result<Vec<String>> {
    Ok(decode_rows(&Tokenizer::Synthetic, tokens)?)
}

/// Fresh-Z and shared-Z groups for `groups` random prompt letters (the same letters for every arm).
pub fn regime_samples(model: &FreeTransformer, name: &str, groups: usize, k: usize, seed: u64) -> Result<ArmSamples> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(Stream::Figure4Letters.seed(seed, &[]));
    let letters: Vec<char> = (0..groups).map(|_| (b'A' + rng.random_range(0..26u8)) as char).collect();
    let prompts: Vec<Vec<i64>> = letters.iter().flat_map(|&l| std::iter::repeat_n(letter_ids(l), k)).collect();
    let new = SYNTH_LEN - 2;
    let fresh_opts =
        SampleOptions { max_new_tokens: new, seed: Stream::Figure4Fresh.seed(seed, &[]), ..Default::default() };
    let fresh = decode(&generate_batch(model, &prompts, &fresh_opts, GenerationZ::Fresh)?.tokens)?;
    let shared_opts =
        SampleOptions { max_new_tokens: new, seed: Stream::Figure4Shared.seed(seed, &[]), ..Default::default() };
    let shared = match model.latent() {
        Some(lat) => {
            // Group g's samples share the prior codes of sequence id g at every position.
            let ids: Vec<u64> = (0..groups as u64).flat_map(|g| std::iter::repeat_n(g, k)).collect();
            let z = lat.mapper.prior_codes(
                Stream::Figure4SharedZ.seed(seed, &[]),
                &ids,
                0,
                (SYNTH_LEN - 1) as i64,
                model.device(),
            );
            generate_batch(model, &prompts, &shared_opts, GenerationZ::Pinned(&z))?
        }
        None => generate_batch(model, &prompts, &shared_opts, GenerationZ::Fresh)?,
    };
    let shared = decode(&shared.tokens)?;
    let split = |v: Vec<String>| v.chunks(k).map(<[String]>::to_vec).collect::<Vec<_>>();
    Ok(ArmSamples { name: name.into(), letters, fresh: split(fresh), shared: split(shared) })
}

/// The paper's Figure 4 panel for one model: five samples of one prompt letter drawn from `seed`,
/// as a blue group (each sample its own Z) and two green groups (one shared Z each, `z_seed` 11
/// and 12); titled by κ ([`figure4::kappa_title`]), or `"{name} (no latent)"` without a latent.
pub fn figure_panel(model: &FreeTransformer, name: &str, kappa_bits: Option<f64>, seed: u64) -> Result<Panel> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(Stream::Figure4PanelLetter.seed(seed, &[]));
    let letter = (b'A' + rng.random_range(0..26u8)) as char;
    let prompts = vec![letter_ids(letter); 5];
    // Each group gets its own token-sampling seed: only Z should make green groups agree.
    let opts = |s| SampleOptions {
        max_new_tokens: SYNTH_LEN - 2,
        seed: Stream::Figure4PanelSampling.seed(seed, &[s]),
        ..Default::default()
    };
    let mut groups = vec![Group::blue(decode(&generate_batch(model, &prompts, &opts(0), GenerationZ::Fresh)?.tokens)?)];
    for z_seed in [11u64, 12] {
        let g = generate_batch(model, &prompts, &opts(z_seed), GenerationZ::Shared { z_seed })?;
        groups.push(Group::green(decode(&g.tokens)?));
    }
    let title = match kappa_bits {
        Some(k) => figure4::kappa_title(k),
        None => format!("{name} (no latent)"),
    };
    Ok(Panel { title, groups })
}

/// A metric with 3 decimals, or `–` when undefined.
fn fmt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

/// A metric with its standard error (`0.500 ± 0.100`), or as [`fmt`] without one.
fn fmt_se(v: Option<f64>, se: Option<f64>) -> String {
    match (v, se) {
        (Some(v), Some(se)) => format!("{v:.3} ± {se:.3}"),
        (v, _) => fmt(v),
    }
}

/// The report `figure4.md`: how it was produced, the regime table, the paper's reading and the figure.
fn report_markdown(
    results: &[ArmResult],
    configs: &[RunConfig],
    o: &Figure4Options,
    total_s: f64,
    text: &str,
) -> String {
    let mut s = report_header(results, configs, o, total_s);
    s += &regime_table(results);
    s += "\nThe paper's reading (spec §5.3): at 1/64 bit Z is unused (shared ≈ fresh); at 1/8 bit shared groups agree \
          on the position but not the noise; at 1 bit on both; at 8 bits the samples break (validity drops). The \
          table reports what this run measured, whatever it is. The NLL column never shows a posterior CE: a Free \
          Transformer's figures are upper bounds (ELBO; CE with prior Z), the baseline's is exact.\n\n";
    s += "## The figure\n\n![Figure 4 grid](figure4.svg)\n\n```text\n";
    s += text;
    s += "```\n\nRaw numbers: `results.json`; every sample behind the metrics: `samples.json`.\n";
    s
}

/// Title, provenance (command, date, machine, time, quick mode, reused arms) and the arms' settings:
/// those they share (quoted from the first Free Transformer arm), then each arm's steps and κ schedule.
fn report_header(results: &[ArmResult], configs: &[RunConfig], o: &Figure4Options, total_s: f64) -> String {
    let ft = configs.iter().find(|c| c.model.latent().is_some()).unwrap_or(&configs[0]);
    let m = &ft.model;
    let t = &ft.train;
    let mut s = String::new();
    s += "# Figure 4 reproduction: the synthetic task (paper §4.1)\n\n";
    s += &format!(
        "Produced by `{}` on {} ({}), in {:.1} minutes in total.{}\n\n",
        o.command,
        crate::report::stamp::today(),
        crate::report::stamp::machine(),
        total_s / 60.0,
        if o.quick { " **Quick mode: tiny models, few steps; a smoke test, not a result.**" } else { "" }
    );
    if results.iter().any(|r| r.reused) {
        s += "Arms marked \"(reused)\" were trained by an earlier invocation with the identical run config (`--reuse` \
              checks the whole config and the final step); the total above excludes their training, and their \
              \"train min\" is the time logged when they were trained. Evaluation and every sample are from this \
              invocation.\n\n";
    }
    s += &format!(
        "Every arm: {} blocks, d_model {}, {} heads ({} KV), SwiGLU {}, H = {} bits, {}, \
         batch {}, {}, AdamW lr {} (warm-up {}, cosine), seed {}; configs in `experiments/figure4/`. Metrics \
         over {} groups of {} samples per arm, the same prompt letters for every arm.\n\n",
        m.n_layers,
        m.d_model,
        m.n_heads,
        m.n_kv_heads,
        m.ffn_hidden,
        m.latent.bits,
        latent_recipe(ft),
        t.batch_size,
        arm_lengths(results, configs),
        t.lr,
        t.warmup_steps,
        t.seed,
        o.groups,
        o.group_size
    );
    if o.device == Device::Cpu {
        let threads = match t.threads {
            0 => format!("libtorch's default ({} here)", tch::get_num_threads()),
            n => n.to_string(),
        };
        let jobs = o.jobs.min(configs.len());
        let at_once = if jobs > 1 { format!(", {jobs} arms training at once") } else { String::new() };
        s += &format!(
            "CPU threads per training: {threads}{at_once}. Runs are deterministic for a given binary and thread \
             count; whether the thread count alone changes them is not settled (docs/results/figure4-probes/README.md \
             §15, §18).\n\n"
        );
    }
    s
}

/// The arms' training lengths and κ schedules: `600 steps` when every arm has the same plain length,
/// else one entry per arm (`κ = 1 bit 2400 steps (κ = 8 bit/token for the first 1400, …)`).
fn arm_lengths(results: &[ArmResult], configs: &[RunConfig]) -> String {
    let uniform = configs.iter().all(|c| c.train.steps == configs[0].train.steps && c.train.kappa_warm_bits.is_none());
    if uniform {
        return format!("{} steps", configs[0].train.steps);
    }
    let each: Vec<String> = results
        .iter()
        .zip(configs)
        .map(|(r, c)| {
            let schedule = kappa_schedule(c).map_or(String::new(), |k| format!(" ({k})"));
            format!("{} {} steps{schedule}", r.panel.title, c.train.steps)
        })
        .collect();
    let why = if configs.iter().any(|c| c.train.steps != configs[0].train.steps) {
        " (the regimes appear at different lengths: docs/results/figure4-probes/README.md §16–§18)"
    } else {
        ""
    };
    format!("steps per arm: {}{why}", each.join("; "))
}

/// The κ schedule of `run` in words, if it has one (not in the paper).
pub fn kappa_schedule(run: &RunConfig) -> Option<String> {
    let k = run.train.kappa_warm_bits?;
    let own = run.model.latent().and_then(|l| l.kappa_bits).map_or("the arm's".into(), |b| figure4::fmt_bits(b.0));
    Some(format!(
        "κ = {} bit/token for the first {} steps, then {own}; a schedule not in the paper",
        figure4::fmt_bits(k.0),
        run.train.kappa_warm_steps
    ))
}

/// The regime table: what fresh and shared mean, then one row per arm.
fn regime_table(results: &[ArmResult]) -> String {
    let mut s = String::new();
    s += "## Regimes\n\n";
    s += "Fresh: every sample in a group draws its own Z. Shared: the samples of a group share one Z drawn from the \
          prior. Position agreement: fraction of pairs of valid samples whose target starts at the same index; its \
          chance level is `Σ q(s)²` over the arm's own fresh distribution `q` of target starts (uniform starts would \
          give ";
    s += &format!(
        "{CHANCE_POSITION_AGREEMENT:.3}). Noise agreement: mean Jaccard overlap of the `!` positions. Agreements are \
         mean ± one standard error over groups; \"shared − fresh\" is the mean difference over paired groups (group i \
         has the same prompt letter in both modes) with its 95 % paired bootstrap interval. Every rate is given as \
         fresh / shared.\n\n"
    );
    s += "| arm | validity | position agreement fresh / shared (chance) | position shared − fresh [95 % CI] | noise agreement fresh / shared | noise shared − fresh [95 % CI] | `!` rate (data 0.0625) | letter correct | KL bits/token | posterior CE (diagnostic) | honest NLL (nats/token) | train min |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in results {
        s += &regime_row(r);
    }
    s
}

/// One arm's row of the regime table.
fn regime_row(r: &ArmResult) -> String {
    let nll = match (r.eval.ce, r.eval.elbo, r.eval.prior_ce) {
        (Some(ce), _, _) => format!("{ce:.3} (exact)"),
        (None, Some(elbo), Some(prior)) => format!("ELBO {elbo:.3}; prior-Z CE {prior:.3}"),
        _ => "–".into(),
    };
    let kl = r.eval.kl_nats.map(|k| k / std::f64::consts::LN_2);
    let both = |f: Option<f64>, s: Option<f64>| format!("{} / {}", fmt(f), fmt(s));
    format!(
        "| {} | {} | {} / {} ({}) | {} | {} / {} | {} | {} | {} | {} | {} | {} | {:.1}{} |\n",
        r.panel.title,
        both(r.fresh.validity, r.shared.validity),
        fmt_se(r.fresh.position_agreement, r.fresh.position_agreement_se),
        fmt_se(r.shared.position_agreement, r.shared.position_agreement_se),
        fmt(r.contrast.position_chance),
        fmt_diff(r.contrast.position.as_ref()),
        fmt_se(r.fresh.noise_agreement, r.fresh.noise_agreement_se),
        fmt_se(r.shared.noise_agreement, r.shared.noise_agreement_se),
        fmt_diff(r.contrast.noise.as_ref()),
        both(r.fresh.bang_rate, r.shared.bang_rate),
        both(r.fresh.letter_correct, r.shared.letter_correct),
        fmt(kl),
        fmt(r.eval.posterior_ce_diagnostic),
        nll,
        r.train_seconds / 60.0,
        if r.reused { " (reused)" } else { "" }
    )
}

/// A paired difference as `+0.012 [−0.003, +0.027]`, or `–`.
fn fmt_diff(d: Option<&PairedDiff>) -> String {
    d.map_or("–".into(), PairedDiff::to_string)
}

/// The latent recipe in words: E's init, E's optimizer and the learning-rate multipliers, each
/// stated because the paper leaves them open.
pub fn latent_recipe(run: &RunConfig) -> String {
    let (lat, t) = (&run.model.latent, &run.train);
    let mut s = match lat.post_sampler_init {
        PostSamplerInit::Gaussian => format!("post-sampler E ~ N(0, {}²)", lat.init_std()),
        PostSamplerInit::Bits => format!(
            "bit-structured E (E_c = Σ_h (2·bit_h(c) − 1)·W_h, W ~ N(0, {}²/H){})",
            lat.init_std(),
            if lat.post_sampler_init_noise > 0.0 {
                format!(", plus N(0, {}²) noise", lat.post_sampler_init_noise)
            } else {
                String::new()
            }
        ),
    };
    if t.post_sampler_optimizer == TableOptimizer::Lazy {
        s += ", lazy AdamW for E";
    }
    if t.post_sampler_lr_mult != 1.0 {
        s += &format!(", E learning rate ×{}", t.post_sampler_lr_mult);
    }
    if t.encoder_lr_mult != 1.0 {
        s += &format!(", encoder learning rate ×{}", t.encoder_lr_mult);
    }
    if lat.encoder_rel_bias {
        s += &format!(
            ", a learned relative-offset bias on the encoder's attention scores (not in the paper; learning rate ×{})",
            t.rel_bias_lr_mult
        );
    }
    if let Some(b) = lat.inject_self_bias {
        s += &format!(
            ", a learned relative-offset bias on the injection block's attention scores starting at {b} for the own \
             position (not in the paper; learning rate ×{})",
            t.rel_bias_lr_mult
        );
    }
    if lat.free_bits == FreeBits::Sequence {
        s += ", free bits per sequence: max(0, Σ_t KL_t − κ·T) (not in the paper, which grants κ per token)";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULED: &str = include_str!("../../../experiments/figure4/kappa-1.toml");

    #[test]
    fn kappa_schedule_scales_with_the_steps_the_overrides_give() {
        let own = RunConfig::from_toml_str(SCHEDULED, "kappa-1", &[]).unwrap().train;
        let (warm, steps) = (own.kappa_warm_steps, own.steps);
        assert!(own.kappa_warm_bits.is_some() && warm < steps, "the κ = 1 arm carries its schedule");
        let scaled = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            scaled_warm_steps(SCHEDULED, "kappa-1", &sets).unwrap()
        };
        assert_eq!(scaled(&[]), None, "its own length keeps its own schedule");
        let half = format!("train.steps={}", steps / 2);
        assert_eq!(scaled(&[&half]), Some((warm as f64 / 2.0).round() as u64));
        assert_eq!(scaled(&["train.steps=40"]), Some((warm as f64 * 40.0 / steps as f64).round() as u64));
        assert_eq!(scaled(&["train.steps=1"]), Some(1), "never below one step nor above the run");
        let baseline = ARMS[0].1;
        assert_eq!(scaled_warm_steps(baseline, "baseline", &["train.steps=40".into()]).unwrap(), None);
    }
}
