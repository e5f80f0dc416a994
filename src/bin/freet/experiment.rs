//! `freet experiment`: the paper's experiments (`figure4`: §4.1 / Figure 4).

use crate::{DeviceArg, invoked_command, stop_flag};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum ExperimentCmd {
    /// The synthetic task of §4.1 / Figure 4: a baseline and κ = 1/64, 1/8, 1, 8 bits, the figure's
    /// blue/green groups, and regime metrics over many groups.
    Figure4(Figure4Args),
}

#[derive(Args)]
pub(crate) struct Figure4Args {
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
    /// Reuse arms already trained to their final step; resume interrupted ones from their last checkpoint.
    #[arg(long)]
    reuse: bool,
    /// Only these arms, comma-separated (baseline, kappa-1-64, kappa-1-8, kappa-1, kappa-8; default: all).
    #[arg(long, value_delimiter = ',')]
    arms: Vec<String>,
    /// Arms trained at once, longest first. Each gets cores / jobs CPU threads unless
    /// --set train.threads=N says otherwise. --reuse finds earlier runs at any thread count, but
    /// results are deterministic per thread count: re-measure with the same --jobs to get the
    /// same numbers.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Override a value in every arm's config (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// `freet experiment figure4`: trains the arms and writes the Figure 4 report.
pub(crate) fn cmd_figure4(a: Figure4Args) -> Result<()> {
    let groups = a.groups.unwrap_or(if a.quick { 20 } else { 200 });
    if groups == 0 || a.group_size < 2 {
        bail!("--groups must be ≥ 1 and --group-size ≥ 2 (agreement needs pairs)");
    }
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
        arms: a.arms,
        command: invoked_command(),
        stop: stop_flag()?,
        jobs: a.jobs,
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
