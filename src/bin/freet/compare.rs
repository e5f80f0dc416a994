//! `freet compare`: does the latent help? Baselines and Free Transformers at several κ over several
//! seeds, evaluated with honest bounds and exact task scores.

use crate::{DeviceArg, invoked_command, stop_flag};
use anyhow::{Result, anyhow, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// hmm, permutation, countdown, text (built-in configs in experiments/compare/; text needs
    /// `bash scripts/prepare-shakespeare.sh all`) or a run config file.
    #[arg(long)]
    task: String,
    /// Seeds per arm.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// κ of the Free Transformer arms, in bits (comma-separated; fractions allowed).
    #[arg(long, default_value = "1/4,1/2,1,2", value_delimiter = ',')]
    kappa: Vec<String>,
    /// Only these arms, comma-separated: baseline, baseline+1, ft (every Free Transformer arm) or
    /// one arm's name such as "FT κ=1/2" (default: all).
    #[arg(long, value_delimiter = ',')]
    arms: Vec<String>,
    /// Also train Free Transformers with this many bits H, for contrast with the task config's H
    /// (arms "FT H=… κ=…", at the κ of --contrast-kappa).
    #[arg(long)]
    contrast_bits: Option<usize>,
    /// κ of the contrast arms, in bits (comma-separated; fractions allowed).
    #[arg(long, default_value = "1", value_delimiter = ',')]
    contrast_kappa: Vec<String>,
    /// Runs trained at once, the costliest first, each on cores / N CPU threads (recorded in the
    /// run configs; --reuse finds earlier runs at any thread count).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
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
    /// Reuse runs already trained to their final step; resume interrupted ones from their last checkpoint.
    #[arg(long)]
    reuse: bool,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// `freet compare`: runs every arm and writes the comparison report.
pub(crate) fn cmd_compare(a: CompareArgs) -> Result<()> {
    let parse = |flag: &str, list: &[String]| {
        list.iter()
            .map(|k| freet::model::config::KappaBits::parse(k.trim()).map_err(|e| anyhow!("{flag} {k:?}: {e}")))
            .collect::<Result<Vec<_>>>()
    };
    let kappas = parse("--kappa", &a.kappa)?;
    let contrast_kappas = parse("--contrast-kappa", &a.contrast_kappa)?;
    if a.prompts == 0 || a.samples == 0 {
        bail!("--prompts and --samples must be at least 1");
    }
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
        command: invoked_command(),
        stop: stop_flag()?,
        arms: a.arms,
        contrast_bits: a.contrast_bits,
        contrast_kappas,
        jobs: a.jobs,
    };
    let results = freet::experiments::compare::run_compare(&o)?;
    println!("{} runs; report: {}", results.len(), o.report_dir.join("compare.md").display());
    Ok(())
}
