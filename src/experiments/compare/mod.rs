//! `freet compare`: does the latent help? Trains a baseline, a parameter-matched baseline (one more
//! block, since the encoder adds one) and Free Transformers at several κ on the same data, steps and
//! hyperparameters, over several seeds; evaluates every run with honest bounds (spec §7) and the
//! task's exact scores; and reports mean ± 95 % CI per arm, collapse counts and metric-vs-κ plots.
//!
//! This module holds the options and the run loop; the arms are in `arms`, the measurements in
//! `metrics`, the report in `report`.

mod arms;
mod findings;
mod metrics;
mod mi;
mod report;

pub use arms::{Arm, arms};
pub use metrics::{COLLAPSE_FRACTION, RunResult};

use crate::config::RunConfig;
use crate::experiments::harness::{ArmRunner, Finished, jobs_threads_override, quick_overrides, run_parallel};
use crate::model::config::KappaBits;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::Device;

/// Built-in task configs (`experiments/compare/*.toml`).
/// `text` reads files that `scripts/prepare-shakespeare.sh all` writes under `runs/data/`.
pub const TASKS: [(&str, &str); 4] = [
    ("hmm", include_str!("../../../experiments/compare/hmm.toml")),
    ("permutation", include_str!("../../../experiments/compare/permutation.toml")),
    ("countdown", include_str!("../../../experiments/compare/countdown.toml")),
    ("text", include_str!("../../../experiments/compare/text.toml")),
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

/// Settings of one comparison.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Task name (`hmm`, `permutation`, `countdown`, `text`) or a path to a run config.
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
    /// Only these arms ([`arms::select`]: an arm's name or `ft`); empty means all.
    pub arms: Vec<String>,
    /// H of the contrast arms (None: no contrast arm).
    pub contrast_bits: Option<usize>,
    /// κ values of the contrast arms, in bits.
    pub contrast_kappas: Vec<KappaBits>,
    /// Runs trained at once (each on `cores / jobs` CPU threads unless `train.threads` is set).
    pub jobs: usize,
}

/// Loads the task's base config (built-in name or a TOML path) with the user's overrides.
pub fn base_config(o: &CompareOptions) -> Result<(String, RunConfig)> {
    let mut overrides = quick_overrides(o.quick, &QUICK, &o.overrides);
    if let Some(threads) = jobs_threads_override(o.jobs, o.device, &o.overrides, "compare") {
        overrides.insert(0, threads);
    }
    if let Some((name, text)) = TASKS.iter().find(|(n, _)| *n == o.task) {
        let run = RunConfig::from_toml_str(text, &format!("experiments/compare/{name}.toml"), &overrides)?;
        if let crate::data::DataConfig::Text { path, tokenizer, .. } = &run.data
            && let Some(missing) = std::iter::once(path).chain(tokenizer).find(|p| !p.exists())
        {
            bail!(
                "--task {name}: {} does not exist; run `bash scripts/prepare-shakespeare.sh all` first",
                missing.display()
            );
        }
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

/// One training of a comparison: an arm at a seed, its config and its directory.
struct Job<'a> {
    arm: &'a Arm,
    seed: u64,
    run: RunConfig,
    dir: PathBuf,
}

/// Runs the comparison and writes the report; returns every run's result.
pub fn run_compare(o: &CompareOptions) -> Result<Vec<RunResult>> {
    if o.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if o.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let t0 = Instant::now();
    let (task_name, base) = base_config(o)?;
    if let Some(h) = o.contrast_bits.filter(|&h| h == base.model.latent.bits) {
        bail!("--contrast-bits {h}: the task config's Free Transformers already have H = {h}");
    }
    let all = arms(&base, &o.kappas, o.contrast_bits, &o.contrast_kappas);
    if let Some(twice) = all.iter().enumerate().find(|(i, a)| all[..*i].iter().any(|b| b.name == a.name)) {
        bail!("arm '{}' is listed twice (the same κ twice in --kappa or --contrast-kappa)", twice.1.name);
    }
    let arms = arms::select(all, &o.arms).map_err(|e| anyhow::anyhow!("--arms: {e}"))?;
    std::fs::create_dir_all(&o.report_dir).with_context(|| format!("cannot create {}", o.report_dir.display()))?;
    let text = toml::to_string(&base).context("serialising the task config")?;
    let mut plan = vec![];
    for arm in &arms {
        for seed in 1..=o.seeds as u64 {
            let mut ov = arm.overrides.clone();
            ov.push(format!("train.seed={seed}"));
            let run = RunConfig::from_toml_str(&text, &format!("{task_name} / {}", arm.name), &ov)?;
            let dir = o.out.join("models").join(arms::slug(&arm.name)).join(format!("seed{seed}"));
            plan.push(Job { arm, seed, run, dir });
        }
    }
    let jobs = o.jobs.min(plan.len());
    let runner = ArmRunner::for_jobs(jobs, o.device, o.progress, &o.stop, o.reuse, "compare");
    let one = |j: &Job| -> Result<RunResult> {
        let label = format!("{} seed {}", j.arm.name, j.seed);
        let Finished { model, train_seconds, .. } =
            runner.train(&j.run, &j.dir, &label).with_context(|| label.clone())?;
        runner.say(&format!("[compare] {label}: evaluating"));
        let r = metrics::evaluate_run(&model, &j.run, j.arm, j.seed, train_seconds, o)?;
        runner.say(&format!(
            "[compare] {label}: NLL bound {:.4} nats/token{}",
            r.eval.headline_nats(),
            if r.collapsed { " (collapsed)" } else { "" }
        ));
        Ok(r)
    };
    let results: Vec<RunResult> = if jobs == 1 {
        plan.iter().map(one).collect::<Result<_>>()?
    } else {
        // The costliest first: Free Transformers by their number of codes, then by steps.
        let cost = |j: &Job| {
            let lat = &j.run.model.latent;
            (if lat.enabled { lat.bits } else { 0 }, j.run.train.steps)
        };
        run_parallel(&plan, cost, jobs, &o.stop, &runner.stop, "compare", &one)?
    };
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    report::write_report(&task_name, &base, &arms, &results, o, minutes)?;
    eprintln!("[compare] done in {minutes:.1} min; report: {}", o.report_dir.join("compare.md").display());
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options of a one-seed comparison of `task` that never touches the disk.
    pub(super) fn opts(task: &str) -> CompareOptions {
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
            arms: vec![],
            contrast_bits: None,
            contrast_kappas: vec![],
            jobs: 1,
        }
    }

    #[test]
    fn every_built_in_task_config_is_valid_and_unknown_tasks_are_errors() {
        for (name, text) in TASKS {
            if name == "text" {
                // Its corpus is prepared by a script under runs/; parse the config alone here.
                let run = RunConfig::from_toml_str(text, "text.toml", &[]).unwrap();
                assert!(run.model.latent.enabled && matches!(run.data, crate::data::DataConfig::Text { .. }));
                continue;
            }
            let (n, run) = base_config(&opts(name)).unwrap();
            assert_eq!(n, name);
            assert!(run.model.latent.enabled);
        }
        let twice = CompareOptions { kappas: vec![KappaBits(0.5), KappaBits(0.5)], ..opts("permutation") };
        let e = run_compare(&twice).unwrap_err().to_string();
        assert!(e.contains("arm 'FT κ=1/2' is listed twice"), "{e}");
        let same_h = CompareOptions { contrast_bits: Some(16), ..opts("permutation") };
        let e = run_compare(&same_h).unwrap_err().to_string();
        assert!(e.contains("--contrast-bits 16: the task config's Free Transformers already have H = 16"), "{e}");
        let e = base_config(&opts("nope")).unwrap_err().to_string();
        assert!(e.contains("hmm, permutation, countdown, text"), "{e}");
    }
}
