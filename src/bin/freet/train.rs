//! `freet train`: train a model from a TOML config, or resume a run; data-parallel as one rank of
//! the world torchrun describes (`RANK`, `WORLD_SIZE`, …), or over `--nproc N` local ranks.

use crate::{DeviceArg, stop_flag};
use anyhow::{Result, bail};
use clap::Args;
use freet::config::RunConfig;
use freet::dist::World;
use freet::train::{TrainOptions, TrainSummary, train};
use std::path::PathBuf;
use std::time::Duration;
use tch::Device;

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
    /// Train data-parallel over N local ranks (processes) that this command starts, as
    /// `torchrun --nproc-per-node N` would.
    #[arg(long, value_name = "N")]
    nproc: Option<usize>,
    /// Seconds a rank waits for the others (rendezvous, each collective) before failing.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    dist_timeout: u64,
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
    if s.all_reduce_s > 0.0 {
        let train_s = s.tokens as f64 / s.tokens_per_s.max(1e-9);
        println!(
            "all-reduce: {:.1} s, {:.1} % of the training steps (waiting for the slowest rank included)",
            s.all_reduce_s,
            100.0 * s.all_reduce_s / train_s.max(1e-9)
        );
    }
    if let Some(e) = &s.eval {
        print!("{}", e.render());
    }
    println!("checkpoint: {}", s.checkpoint.display());
}

/// `freet train`: trains (or resumes) a run and prints its summary (rank 0 only); with `--nproc`,
/// starts the local ranks and waits for them.
pub(crate) fn cmd_train(a: TrainArgs) -> Result<()> {
    let world = World::from_env()?;
    let run = RunConfig::load(&a.config, &a.overrides)?;
    if let Some(n) = a.nproc {
        // Bad input is one line from here, not one per rank.
        if n > run.train.batch_size {
            bail!("--nproc {n} exceeds train.batch_size = {}: every rank needs a row", run.train.batch_size);
        }
        return launch(n, world.as_ref(), a.dist_timeout);
    }
    let mut opts = TrainOptions::new(&a.out);
    opts.resume = a.resume;
    opts.device = rank_device(a.device.get()?, world.as_ref())?;
    opts.progress = !a.quiet;
    opts.eval_prior_samples = a.eval_prior_samples;
    opts.stop = stop_flag()?;
    opts.dist_timeout = Duration::from_secs(a.dist_timeout.max(1));
    let root = world.as_ref().is_none_or(|w| w.rank == 0);
    opts.world = world;
    let s = train(&run, &opts)?;
    if root {
        print_summary(&s);
    }
    Ok(())
}

/// A rank's device: `cuda:LOCAL_RANK` when training on CUDA with several ranks.
fn rank_device(device: Device, world: Option<&World>) -> Result<Device> {
    match (device, world) {
        (Device::Cuda(_), Some(w)) if w.size > 1 => {
            let n = tch::Cuda::device_count() as usize;
            if w.local_rank >= n {
                bail!("rank {}: LOCAL_RANK {} has no CUDA device (this machine has {n})", w.rank, w.local_rank);
            }
            Ok(Device::Cuda(w.local_rank))
        }
        (d, _) => Ok(d),
    }
}

/// `--nproc N`: runs this command line (without `--nproc`) as N local ranks.
fn launch(n: usize, world: Option<&World>, timeout_s: u64) -> Result<()> {
    if world.is_some() {
        bail!("--nproc starts ranks itself; it cannot be used inside a launched rank (WORLD_SIZE is set)");
    }
    if n == 0 {
        bail!("--nproc must be at least 1");
    }
    let mut args = Vec::new();
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--nproc") => {
                it.next();
            }
            Some(s) if s.starts_with("--nproc=") => {}
            _ => args.push(arg),
        }
    }
    // After a rank fails, the others get the collective timeout (plus the 3 s of heartbeat
    // watching) to notice and name it before they are killed.
    let grace = Duration::from_secs(timeout_s.saturating_add(10));
    let stop = stop_flag()?;
    freet::dist::launch::run_local(n, &args, &stop, grace)?;
    Ok(())
}
