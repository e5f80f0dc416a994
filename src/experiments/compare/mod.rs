//! `freet compare`: does the latent help? Trains a baseline, a parameter-matched baseline (one more
//! block, since the encoder adds one) and Free Transformers at several κ on the same data, steps and
//! hyperparameters, over several seeds; evaluates every run with honest bounds (spec §7) and the
//! task's exact scores; and reports mean ± 95 % CI per arm, collapse counts and metric-vs-κ plots.

use crate::config::RunConfig;
use crate::data::tasks::{Task, consistency, coverage, excess_nll_bits_per_seq, pass_at_k};
use crate::data::{Dataset, Split};
use crate::eval::{BitsPerByte, EvalOptions, EvalReport, evaluate_with};
use crate::experiments::harness::{Finished, train_or_reuse};
use crate::generate::{GenerationZ, SampleOptions, generate_batch};
use crate::model::FreeTransformer;
use crate::model::config::KappaBits;
use crate::report::plot::{Chart, Series, write_svg};
use crate::report::stats::MeanCi;
use crate::train::TrainOptions;
use crate::util::rng::stream_seed;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Tensor};

/// Built-in task configs (`experiments/compare/*.toml`).
pub const TASKS: [(&str, &str); 3] = [
    ("hmm", include_str!("../../../experiments/compare/hmm.toml")),
    ("permutation", include_str!("../../../experiments/compare/permutation.toml")),
    ("countdown", include_str!("../../../experiments/compare/countdown.toml")),
];

/// Overrides of `--quick`: a tiny model, few steps (a smoke test).
pub const QUICK: [&str; 8] = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.n_kv_heads=1",
    "model.ffn_hidden=64",
    "model.latent.bits=8",
    "train.steps=20",
    "train.batch_size=8",
];

/// KL below this fraction of κ at the end of training counts as posterior collapse (spec §7).
pub const COLLAPSE_FRACTION: f64 = 0.01;

/// Settings of one comparison.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Task name (`hmm`, `permutation`, `countdown`) or a path to a run config (e.g. real text).
    pub task: String,
    /// Seeds per arm (`train.seed = 1..=seeds`).
    pub seeds: usize,
    /// κ values of the Free Transformer arms, in bits.
    pub kappas: Vec<KappaBits>,
    /// Working directory (models under `models/`).
    pub out: PathBuf,
    /// Report directory (`compare.md`, `results.json`, plots).
    pub report_dir: PathBuf,
    /// Extra overrides applied to every arm.
    pub overrides: Vec<String>,
    /// Tiny models and few steps.
    pub quick: bool,
    /// Prompts for generation-scored metrics.
    pub prompts: usize,
    /// Samples per prompt.
    pub samples: usize,
    /// Posterior draws of the IWAE bound.
    pub iwae_samples: usize,
    /// Prior draws of the prior-Z CE.
    pub prior_samples: usize,
    /// Reuse runs already trained to their final step.
    pub reuse: bool,
    /// Device.
    pub device: Device,
    /// Progress bars.
    pub progress: bool,
    /// The command line (named in the report).
    pub command: String,
    /// SIGINT/SIGTERM flag.
    pub stop: Arc<AtomicBool>,
}

/// One arm: a name and the overrides that make it from the task config.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    /// "baseline", "baseline+1" or "ft κ=…".
    pub name: String,
    /// κ in bits for Free Transformer arms.
    pub kappa_bits: Option<f64>,
    /// Overrides applied to the task config.
    pub overrides: Vec<String>,
}

/// The arms of a comparison: baseline (L blocks), matched baseline (L+1 blocks), then one Free
/// Transformer per κ.
pub fn arms(base: &RunConfig, kappas: &[KappaBits]) -> Vec<Arm> {
    let l = base.model.n_layers;
    let mut v = vec![
        Arm { name: "baseline".into(), kappa_bits: None, overrides: vec!["model.latent.enabled=false".into()] },
        Arm {
            name: "baseline+1".into(),
            kappa_bits: None,
            overrides: vec!["model.latent.enabled=false".into(), format!("model.n_layers={}", l + 1)],
        },
    ];
    for k in kappas {
        v.push(Arm {
            name: format!(
                "FT κ={}",
                crate::experiments::figure4::kappa_title(k.0)
                    .trim_start_matches("κ = ")
                    .replace(" bits", "")
                    .replace(" bit", "")
            ),
            kappa_bits: Some(k.0),
            overrides: vec!["model.latent.enabled=true".into(), format!("model.latent.kappa_bits={}", k.0)],
        });
    }
    v
}

/// Everything measured on one trained run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Arm name.
    pub arm: String,
    /// κ in bits (FT arms).
    pub kappa_bits: Option<f64>,
    /// `train.seed`.
    pub seed: u64,
    /// Training seconds (0 when reused).
    pub train_seconds: f64,
    /// (decoder, encoder, table E) parameters.
    pub params: (usize, usize, usize),
    /// Held-out evaluation.
    pub eval: EvalReport,
    /// Posterior collapse: final KL below 1 % of κ.
    pub collapsed: bool,
    /// Task metrics by name.
    pub metrics: BTreeMap<String, f64>,
}

/// How a metric is named and rendered.
struct MetricInfo {
    key: &'static str,
    label: &'static str,
    digits: usize,
}

const METRICS: [MetricInfo; 14] = [
    MetricInfo { key: "nll", label: "NLL bound (nats/token)", digits: 4 },
    MetricInfo { key: "bits_per_byte", label: "NLL bound (bits/byte)", digits: 4 },
    MetricInfo { key: "excess_nll_bits_per_seq", label: "excess NLL over Bayes (bits/seq)", digits: 2 },
    MetricInfo { key: "elbo", label: "ELBO", digits: 4 },
    MetricInfo { key: "prior_ce", label: "prior-Z CE", digits: 4 },
    MetricInfo { key: "kl_bits", label: "KL (bits/token)", digits: 3 },
    MetricInfo { key: "dead_bits", label: "dead bits", digits: 1 },
    MetricInfo { key: "validity", label: "validity", digits: 3 },
    MetricInfo { key: "coverage", label: "coverage (norm. entropy)", digits: 3 },
    MetricInfo { key: "consistency_shared_z", label: "consistency, shared Z", digits: 3 },
    MetricInfo { key: "consistency_independent", label: "consistency, independent", digits: 3 },
    MetricInfo { key: "pass_at_1", label: "pass@1", digits: 3 },
    MetricInfo { key: "pass_at_8", label: "pass@8", digits: 3 },
    MetricInfo { key: "distinct_valid", label: "distinct valid answers / prompt", digits: 2 },
];

/// Loads the task's base config (built-in name or a TOML path) with the user's overrides.
pub fn base_config(o: &CompareOptions) -> Result<(String, RunConfig)> {
    let mut overrides: Vec<String> = if o.quick { QUICK.iter().map(|s| s.to_string()).collect() } else { vec![] };
    overrides.extend(o.overrides.iter().cloned());
    if let Some((name, text)) = TASKS.iter().find(|(n, _)| *n == o.task) {
        let run = RunConfig::from_toml_str(text, &format!("experiments/compare/{name}.toml"), &overrides)?;
        return Ok((name.to_string(), run));
    }
    let path = Path::new(&o.task);
    if path.is_file() {
        let run = RunConfig::load(path, &overrides)?;
        let name = path.file_stem().map_or("custom".into(), |s| s.to_string_lossy().into_owned());
        return Ok((name, run));
    }
    bail!(
        "--task {:?}: expected one of {} or a run config file",
        o.task,
        TASKS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )
}

/// Runs the comparison and writes the report; returns every run's result.
pub fn run_compare(o: &CompareOptions) -> Result<Vec<RunResult>> {
    if o.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let t0 = Instant::now();
    let (task_name, base) = base_config(o)?;
    let arms = arms(&base, &o.kappas);
    std::fs::create_dir_all(&o.report_dir).with_context(|| format!("cannot create {}", o.report_dir.display()))?;
    let mut results = vec![];
    for arm in &arms {
        for seed in 1..=o.seeds as u64 {
            let mut ov = arm.overrides.clone();
            ov.push(format!("train.seed={seed}"));
            let text = toml::to_string(&base).context("serialising the task config")?;
            let run = RunConfig::from_toml_str(&text, &format!("{task_name} / {}", arm.name), &ov)?;
            let dir = o.out.join("models").join(slug(&arm.name)).join(format!("seed{seed}"));
            let mut topts = TrainOptions::new(&dir);
            topts.device = o.device;
            topts.progress = o.progress;
            topts.stop = Arc::clone(&o.stop);
            let Finished { model, train_seconds: secs, .. } = train_or_reuse(&run, &topts, o.reuse, "compare")
                .with_context(|| format!("{} seed {seed}", arm.name))?;
            eprintln!("[compare] {} seed {seed}: evaluating", arm.name);
            let r = evaluate_run(&model, &run, arm, seed, secs, o)?;
            eprintln!(
                "[compare] {} seed {seed}: NLL bound {:.4} nats/token{}",
                arm.name,
                r.eval.headline_nats(),
                if r.collapsed { " (collapsed)" } else { "" }
            );
            results.push(r);
        }
    }
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    let write = |name: &str, bytes: &[u8]| crate::util::fs::write_atomic(&o.report_dir.join(name), bytes);
    write("results.json", serde_json::to_string_pretty(&results)?.as_bytes())?;
    let plots = write_plots(&results, &arms, &o.report_dir)?;
    let md = report(&task_name, &base, &arms, &results, o, minutes, &plots);
    write("compare.md", md.as_bytes())?;
    eprintln!("[compare] done in {minutes:.1} min; report: {}", o.report_dir.join("compare.md").display());
    Ok(results)
}

fn slug(name: &str) -> String {
    name.replace("FT κ=", "ft-kappa-").replace('/', "_").replace('+', "-plus").replace(' ', "-")
}

fn evaluate_run(
    model: &FreeTransformer,
    run: &RunConfig,
    arm: &Arm,
    seed: u64,
    train_seconds: f64,
    o: &CompareOptions,
) -> Result<RunResult> {
    let data = run.dataset()?;
    let val = data.val_batches(run.train.eval_batches, run.train.batch_size);
    // The same evaluation draws for every arm and seed.
    let opts = EvalOptions { prior_samples: o.prior_samples, iwae_samples: o.iwae_samples, seed: 0xe7a1 };
    let eval = evaluate_with(model, &val, &opts).with_target_bytes(data.target_bytes(&val));
    let mut metrics = BTreeMap::new();
    let nll = eval.headline_nats();
    metrics.insert("nll".to_string(), nll);
    for (k, v) in [("elbo", eval.elbo), ("prior_ce", eval.prior_ce)] {
        if let Some(v) = v {
            metrics.insert(k.to_string(), v);
        }
    }
    if let Some(v) = eval.bits_per_byte.as_ref().map(BitsPerByte::headline).filter(|v| v.is_finite()) {
        metrics.insert("bits_per_byte".into(), v);
    }
    let kl_bits = eval.kl_nats.map(|k| k / std::f64::consts::LN_2);
    if let Some(k) = kl_bits {
        metrics.insert("kl_bits".into(), k);
    }
    if let Some(d) = eval.dead_bits {
        metrics.insert("dead_bits".into(), d as f64);
    }
    let collapsed = match (arm.kappa_bits, kl_bits) {
        (Some(kappa), Some(kl)) => kl < COLLAPSE_FRACTION * kappa,
        _ => false,
    };
    if let Dataset::Task(task) = &data {
        task_metrics(model, task, &val, nll, seed, o, &mut metrics)?;
    }
    Ok(RunResult {
        arm: arm.name.clone(),
        kappa_bits: arm.kappa_bits,
        seed,
        train_seconds,
        params: run.model.param_counts(),
        eval,
        collapsed,
        metrics,
    })
}

/// Exact task scores: excess NLL over the Bayes optimum where it is known; generation-scored
/// metrics from samples drawn as in inference (prompt through the encoder, prior codes after).
fn task_metrics(
    model: &FreeTransformer,
    task: &Task,
    val: &[Vec<Vec<u32>>],
    nll: f64,
    seed: u64,
    o: &CompareOptions,
    m: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let rows: Vec<&Vec<u32>> = val.iter().flatten().collect();
    if let Ok(bayes) = task.bayes_nll_per_token(&rows) {
        m.insert("bayes_nll".into(), bayes);
        m.insert("excess_nll_bits_per_seq".into(), excess_nll_bits_per_seq(nll, bayes, task.seq_len() - 1));
    }
    if matches!(task, Task::HmmMixture(_)) {
        return Ok(());
    }
    let (p_len, new) = (task.prompt_len(), task.seq_len() - task.prompt_len());
    let prompts: Vec<Vec<u32>> =
        (0..o.prompts as u64).map(|i| task.example_ids(Split::Val, i)[..p_len].to_vec()).collect();
    let k = o.samples.max(1);
    let batch: Vec<Vec<i64>> =
        prompts.iter().flat_map(|p| std::iter::repeat_n(p.iter().map(|&v| i64::from(v)).collect(), k)).collect();
    let sopts = SampleOptions { max_new_tokens: new, seed: stream_seed(seed, &[0xc0e5]), ..Default::default() };
    let out = generate_batch(model, &batch, &sopts, GenerationZ::Fresh)?;
    let samples = completions(&out.tokens, p_len)?;
    match task {
        Task::Permutation(perm) => {
            let mut sets = vec![];
            let mut valid = 0usize;
            for (i, c) in samples.iter().enumerate() {
                let s = perm.matching_ks(&prompts[i / k], c).unwrap_or_default();
                valid += usize::from(!s.is_empty());
                sets.push(s);
            }
            m.insert("validity".into(), valid as f64 / samples.len() as f64);
            let valid_sets: Vec<Vec<usize>> = sets.iter().filter(|s| !s.is_empty()).cloned().collect();
            m.insert("coverage".into(), coverage(&valid_sets, perm.n_perms()).normalized);
            // Independent samples of the same prompt: how often two pick the same permutation.
            let per_prompt: Vec<f64> = sets.chunks(k).filter_map(consistency).collect();
            if !per_prompt.is_empty() {
                m.insert("consistency_independent".into(), per_prompt.iter().sum::<f64>() / per_prompt.len() as f64);
            }
            if let Some(lat) = model.latent() {
                // One shared prior Z per group of different prompts: does Z pick the permutation?
                let ids: Vec<u64> = (0..prompts.len() as u64).map(|i| i % k as u64).collect();
                let z = lat.mapper.prior_codes(
                    stream_seed(seed, &[0x5a2e]),
                    &ids,
                    0,
                    (task.seq_len() - 1) as i64,
                    model.device(),
                );
                let one: Vec<Vec<i64>> = prompts.iter().map(|p| p.iter().map(|&v| i64::from(v)).collect()).collect();
                let g = generate_batch(model, &one, &sopts, GenerationZ::Pinned(&z))?;
                let comp = completions(&g.tokens, p_len)?;
                let mut groups: BTreeMap<u64, Vec<Vec<usize>>> = BTreeMap::new();
                for (i, c) in comp.iter().enumerate() {
                    groups.entry(ids[i]).or_default().push(perm.matching_ks(&prompts[i], c).unwrap_or_default());
                }
                let per_group: Vec<f64> = groups.values().filter_map(|g| consistency(g)).collect();
                if !per_group.is_empty() {
                    m.insert("consistency_shared_z".into(), per_group.iter().sum::<f64>() / per_group.len() as f64);
                }
            }
        }
        Task::Countdown(cd) => {
            let (mut p1, mut p8, mut distinct, mut n) = (0.0, 0.0, 0.0, 0.0);
            for (i, group) in samples.chunks(k).enumerate() {
                let c = group.iter().filter(|c| cd.score(&prompts[i], c).is_ok_and(|v| v.is_correct())).count();
                p1 += pass_at_k(k, c, 1).unwrap_or(f64::NAN);
                p8 += pass_at_k(k, c, 8.min(k)).unwrap_or(f64::NAN);
                distinct += cd.distinct_valid(&prompts[i], group).unwrap_or(0) as f64;
                n += 1.0;
            }
            m.insert("pass_at_1".into(), p1 / n);
            m.insert("pass_at_8".into(), p8 / n);
            m.insert("distinct_valid".into(), distinct / n);
        }
        Task::HmmMixture(_) => {}
    }
    Ok(())
}

fn completions(tokens: &Tensor, p_len: usize) -> Result<Vec<Vec<u32>>> {
    let rows = Vec::<Vec<i64>>::try_from(tokens.to_device(Device::Cpu)).map_err(|e| anyhow!("samples: {e}"))?;
    Ok(rows.into_iter().map(|r| r[p_len..].iter().map(|&v| v as u32).collect()).collect())
}

fn values<'a>(results: &'a [RunResult], arm: &'a str, key: &'a str) -> impl Iterator<Item = f64> + 'a {
    results.iter().filter(move |r| r.arm == arm).filter_map(move |r| r.metrics.get(key).copied())
}

/// Metric-vs-κ plots (FT arms with 95 % CI bars; baselines as flat lines); returns file names.
fn write_plots(results: &[RunResult], arms: &[Arm], dir: &Path) -> Result<Vec<(String, String)>> {
    let kappas: Vec<f64> = arms.iter().filter_map(|a| a.kappa_bits).collect();
    if kappas.is_empty() {
        return Ok(vec![]);
    }
    let (lo, hi) = kappas.iter().fold((f64::MAX, f64::MIN), |(a, b), &k| (a.min(k), b.max(k)));
    let mut files = vec![];
    for info in METRICS.iter().filter(|i| {
        ["nll", "excess_nll_bits_per_seq", "validity", "pass_at_1", "consistency_shared_z", "kl_bits"].contains(&i.key)
    }) {
        let mut series = vec![];
        for a in arms {
            let pts: Vec<f64> = values(results, &a.name, info.key).collect();
            let Some(ci) = MeanCi::of(&pts) else { continue };
            let err = if ci.ci95.is_finite() { ci.ci95 } else { 0.0 };
            match a.kappa_bits {
                None => {
                    series.push(Series { name: a.name.clone(), points: vec![(lo, ci.mean, 0.0), (hi, ci.mean, 0.0)] })
                }
                Some(k) => {
                    if series.last().is_none_or(|s: &Series| s.name != "Free Transformer") {
                        series.push(Series { name: "Free Transformer".into(), points: vec![] });
                    }
                    series.last_mut().expect("just pushed").points.push((k, ci.mean, err));
                }
            }
        }
        if !series.iter().any(|s| s.name == "Free Transformer" && !s.points.is_empty()) {
            continue;
        }
        let file = format!("{}.svg", info.key);
        let chart = Chart {
            title: format!("{} vs κ (mean ± 95 % CI over seeds)", info.label),
            x_label: "κ (bits/token)".into(),
            y_label: info.label.into(),
            log2_x: true,
        };
        write_svg(&dir.join(&file), &chart, &series)?;
        files.push((info.label.to_string(), file));
    }
    Ok(files)
}

fn report(
    task: &str,
    base: &RunConfig,
    arms: &[Arm],
    results: &[RunResult],
    o: &CompareOptions,
    minutes: f64,
    plots: &[(String, String)],
) -> String {
    let m = &base.model;
    let mut s = format!("# freet compare: {task}\n\n");
    let _ = writeln!(
        s,
        "Produced by `{}` on {} ({}): this invocation took {minutes:.1} minutes; training took {:.1} minutes \
         in total over the {} runs (per-arm means in the table; a run reused with `--reuse` keeps the time \
         logged when it was trained).\n",
        o.command,
        crate::report::stamp::today(),
        crate::report::stamp::machine(),
        results.iter().map(|r| r.train_seconds).sum::<f64>() / 60.0,
        results.len()
    );
    let _ = writeln!(
        s,
        "Model: d_model {}, {} blocks, {} heads ({} KV), FFN {}, H = {} bits; {} steps of {} sequences, lr {}; \
         {} seeds per arm (`train.seed` = 1..={}); the task's world (`data.world_seed`) is the same for every run.\n",
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.n_kv_heads,
        m.ffn_hidden,
        m.latent.bits,
        base.train.steps,
        base.train.batch_size,
        base.train.lr,
        o.seeds,
        o.seeds
    );
    s += "**How to read it.** The baseline's NLL is exact; every Free Transformer figure is an upper bound; \
          its NLL bound is the tightest of the prior-Z CE, the IWAE bound (posterior proposal) and the ELBO. A win on a bound is real, a loss may be the \
          bound's looseness. `baseline+1` has one more block, matching the encoder's block; the FT's table E \
          is counted separately (it is large but each token reads one row). Generation-scored metrics use \
          samples drawn as in inference: prompt through the encoder, prior codes after it. Collapse: final \
          KL below 1 % of κ.\n\n";
    s += "| arm | params (decoder / encoder / E) | collapsed |";
    let shown: Vec<&MetricInfo> =
        METRICS.iter().filter(|i| results.iter().any(|r| r.metrics.contains_key(i.key))).collect();
    for i in &shown {
        let _ = write!(s, " {} |", i.label);
    }
    s += " train s |\n|---|---|---|";
    for _ in &shown {
        s += "---:|";
    }
    s += "---:|\n";
    for a in arms {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.arm == a.name).collect();
        let Some(first) = runs.first() else { continue };
        let (d, e, t) = first.params;
        let collapsed = runs.iter().filter(|r| r.collapsed).count();
        let _ = write!(
            s,
            "| {} | {} / {} / {} | {} |",
            a.name,
            d,
            e,
            t,
            if a.kappa_bits.is_some() { format!("{collapsed}/{}", runs.len()) } else { "–".into() }
        );
        for i in &shown {
            let v: Vec<f64> = values(results, &a.name, i.key).collect();
            let _ = write!(s, " {} |", MeanCi::of(&v).map_or("–".into(), |c| c.render(i.digits)));
        }
        let secs: Vec<f64> = runs.iter().map(|r| r.train_seconds).collect();
        let _ = writeln!(s, " {:.0} |", secs.iter().sum::<f64>() / secs.len() as f64);
    }
    if let Some(b) = results.iter().find_map(|r| r.metrics.get("bayes_nll")) {
        let _ = writeln!(s, "\nBayes-optimal NLL of the validation set: {b:.4} nats/token (known by construction).");
    }
    s += "\nPer-run values (seed by seed) are in `results.json`.\n";
    if !plots.is_empty() {
        s += "\n## Plots\n\n";
        for (label, file) in plots {
            let _ = writeln!(s, "![{label}]({file})\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_are_baseline_matched_baseline_and_one_ft_per_kappa() {
        let (_, base) = base_config(&opts("permutation")).unwrap();
        let a = arms(&base, &[KappaBits(0.25), KappaBits(2.0)]);
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["baseline", "baseline+1", "FT κ=1/4", "FT κ=2"]);
        assert!(a[1].overrides.contains(&format!("model.n_layers={}", base.model.n_layers + 1)));
        assert_eq!((slug("FT κ=1/4"), slug("baseline+1")), ("ft-kappa-1_4".into(), "baseline-plus1".into()));
    }

    fn opts(task: &str) -> CompareOptions {
        CompareOptions {
            task: task.into(),
            seeds: 1,
            kappas: vec![KappaBits(1.0)],
            out: PathBuf::from("/nonexistent"),
            report_dir: PathBuf::from("/nonexistent"),
            overrides: vec![],
            quick: false,
            prompts: 4,
            samples: 4,
            iwae_samples: 2,
            prior_samples: 1,
            reuse: false,
            device: Device::Cpu,
            progress: false,
            command: "test".into(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn every_built_in_task_config_is_valid_and_unknown_tasks_are_errors() {
        for (name, _) in TASKS {
            let (n, run) = base_config(&opts(name)).unwrap();
            assert_eq!(n, name);
            assert!(run.model.latent.enabled);
        }
        let e = base_config(&opts("nope")).unwrap_err().to_string();
        assert!(e.contains("hmm, permutation, countdown"), "{e}");
    }
}
