//! `freet demo`: train a small Free Transformer on the synthetic task and show samples with fresh Z
//! (blue group) and shared Z (green groups).

use crate::sample::{default_max_new, encode_prompt};
use crate::train::print_summary;
use crate::{DeviceArg, stop_flag};
use anyhow::{Context, Result};
use clap::Args;
use freet::config::RunConfig;
use freet::experiments::figure4::{Group, Panel, render_text};
use freet::generate::{GenerationZ, SampleOptions, decode_rows, generate};
use freet::train::checkpoint;
use freet::train::{TrainOptions, train};
use std::path::PathBuf;
use std::sync::Arc;

const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");
const DEMO_BASELINE_CONFIG: &str = include_str!("../../../configs/demo-baseline.toml");

#[derive(Args)]
pub(crate) struct DemoArgs {
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

/// `freet demo`: trains the demo model (and optionally the baseline), then prints blue and green groups.
pub(crate) fn cmd_demo(a: DemoArgs) -> Result<()> {
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
