//! `freet eval`: held-out evaluation of a checkpoint with honest bounds (prior-Z CE, ELBO, IWAE).

use crate::DeviceArg;
use anyhow::{Result, bail};
use clap::Args;
use freet::train::checkpoint;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct EvalArgs {
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
    /// Evaluate on this run config's validation data instead of the checkpoint's own run (needed
    /// for a checkpoint without training state, e.g. one written by `freet import` or `convert`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// CPU threads for libtorch (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    device: DeviceArg,
}

/// `freet eval`: evaluates a checkpoint on its run's validation data.
pub(crate) fn cmd_eval(a: EvalArgs) -> Result<()> {
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    let loaded = checkpoint::load(&a.checkpoint, a.device.get()?)?;
    let (run, step) = match (&a.config, &loaded.state) {
        (Some(path), _) => (freet::config::RunConfig::load(path, &[])?, loaded.state.as_ref().map_or(0, |s| s.step)),
        (None, Some(state)) => (state.run.clone(), state.step),
        (None, None) => bail!(
            "{}: no state.json, so the validation data is unknown: pass --config with a run config",
            loaded.dir.display()
        ),
    };
    // The checkpoint's own tokenizer (its copy of tokenizer.json), not whatever the config path holds now.
    let data = run.dataset_with(loaded.tokenizer.clone())?;
    let n = a.batches.unwrap_or(run.train.eval_batches);
    if n == 0 {
        bail!("--batches must be at least 1");
    }
    let val = data.val_batches(n, run.train.batch_size);
    let opts = freet::eval::EvalOptions { prior_samples: a.prior_samples, iwae_samples: a.iwae_samples, seed: a.seed };
    let report = freet::eval::evaluate_with(&loaded.model, &val, &opts).with_target_bytes(data.target_bytes(&val));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("checkpoint {} (step {step})", loaded.dir.display());
        print!("{}", report.render());
    }
    Ok(())
}
