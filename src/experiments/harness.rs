//! The one arm runner shared by Figure 4 and `freet compare`: build an arm's run config (the
//! experiment's `--quick` overrides, then the user's, then the arm's own), then train it, or reuse
//! the run already trained to its final step with exactly the same config.

use crate::config::RunConfig;
use crate::model::FreeTransformer;
use crate::train::checkpoint;
use crate::train::{TrainOptions, train};
use anyhow::{Context, Result, bail};
use indicatif::MultiProgress;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tch::Device;

/// The overrides every arm of an experiment starts from: its `--quick` set when `quick`, then the
/// user's `extra` overrides (so that the user's win).
pub fn quick_overrides(quick: bool, quick_set: &[&str], extra: &[String]) -> Vec<String> {
    let mut overrides: Vec<String> = if quick { quick_set.iter().map(|s| s.to_string()).collect() } else { vec![] };
    overrides.extend(extra.iter().cloned());
    overrides
}

/// How an experiment trains its arms: the same device, progress bars, stop flag and `--reuse` for
/// every arm, and a tag that prefixes the progress lines.
#[derive(Debug, Clone)]
pub struct ArmRunner {
    /// Device to train on.
    pub device: Device,
    /// Progress bars while training.
    pub progress: bool,
    /// Stop flag (SIGINT/SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Reuse a run already trained to its final step with exactly the same config.
    pub reuse: bool,
    /// Prefix of the progress lines (`figure4`, `compare`).
    pub tag: &'static str,
    /// With several arms training at once: the group their progress bars share (lines are printed
    /// above it).
    pub bars: Option<MultiProgress>,
}

impl ArmRunner {
    /// Parses the arm's run config from `text` (named `source` in errors) with `overrides`, then
    /// trains it in `dir` or reuses the run there (see [`train_or_reuse`]); a training error is
    /// prefixed with `label`. Returns the config with the finished run.
    pub fn run(
        &self,
        label: &str,
        text: &str,
        source: &str,
        overrides: &[String],
        dir: &Path,
    ) -> Result<(RunConfig, Finished)> {
        let run = RunConfig::from_toml_str(text, source, overrides)?;
        let finished = self.train(&run, dir, label).with_context(|| label.to_string())?;
        Ok((run, finished))
    }

    /// Trains `run` in `dir`, or reuses the run there, with this runner's options; `label` names
    /// its progress bar when several arms train at once.
    pub fn train(&self, run: &RunConfig, dir: &Path, label: &str) -> Result<Finished> {
        let mut topts = TrainOptions::new(dir);
        topts.device = self.device;
        topts.progress = self.progress;
        topts.bars = self.bars.clone().map(|m| (m, label.to_string()));
        topts.stop = Arc::clone(&self.stop);
        train_or_reuse(run, &topts, self.reuse, self.tag)
    }

    /// Prints a progress line above the bars (plain `eprintln!` with a single arm at a time).
    pub fn say(&self, line: &str) {
        say(self.bars.as_ref(), line);
    }
}

/// A finished run: trained by this call, or reused from an earlier one.
#[derive(Debug)]
pub struct Finished {
    /// The model at its final step.
    pub model: FreeTransformer,
    /// Training seconds (for a reused run, the time logged when it was trained; 0 if unknown).
    pub train_seconds: f64,
    /// Loaded from an earlier run rather than trained now.
    pub reused: bool,
}

/// Trains `run` from scratch in `opts.out_dir`; with `reuse`, first loads the run already trained
/// there to its final step with exactly this config. `tag` prefixes the progress lines. An
/// interrupted training is an error that suggests `--reuse`.
pub fn train_or_reuse(run: &RunConfig, opts: &TrainOptions, reuse: bool, tag: &str) -> Result<Finished> {
    let dir = &opts.out_dir;
    if reuse
        && let Ok(l) = checkpoint::load(dir, opts.device)
        && l.state.as_ref().is_some_and(|s| s.step == run.train.steps && s.run == *run)
    {
        say(opts.bars.as_ref().map(|(m, _)| m), &format!("[{tag}] reusing {}", l.dir.display()));
        return Ok(Finished { model: l.model, train_seconds: logged_train_seconds(dir), reused: true });
    }
    let _ = std::fs::remove_dir_all(dir);
    say(opts.bars.as_ref().map(|(m, _)| m), &format!("[{tag}] training {} ({} steps)", dir.display(), run.train.steps));
    let s = train(run, opts)?;
    if s.interrupted {
        bail!("interrupted; rerun with --reuse to keep finished runs");
    }
    let model = checkpoint::load(&s.checkpoint, opts.device)?.model;
    Ok(Finished { model, train_seconds: s.elapsed_s, reused: false })
}

/// Prints `line` to stderr, above the progress bars of `bars` if there are any.
fn say(bars: Option<&MultiProgress>, line: &str) {
    match bars {
        Some(m) => m.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Training seconds of a finished run, from the last record of its `metrics.jsonl` (0 if absent).
fn logged_train_seconds(dir: &Path) -> f64 {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .ok()
        .and_then(|t| {
            let last = t.lines().rev().find(|l| !l.trim().is_empty())?.to_string();
            serde_json::from_str::<serde_json::Value>(&last).ok()?["elapsed_s"].as_f64()
        })
        .unwrap_or(0.0)
}
