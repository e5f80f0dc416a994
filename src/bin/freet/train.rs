//! `freet train`: train a model from a TOML config, or resume a run.

use crate::{DeviceArg, stop_flag};
use anyhow::Result;
use clap::Args;
use freet::config::RunConfig;
use freet::train::{TrainOptions, TrainSummary, train};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct TrainArgs {
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

/// Prints how training went: steps, throughput, last batch, the final evaluation and the checkpoint.
pub(crate) fn print_summary(s: &TrainSummary) {
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

/// `freet train`: trains (or resumes) a run and prints its summary.
pub(crate) fn cmd_train(a: TrainArgs) -> Result<()> {
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
