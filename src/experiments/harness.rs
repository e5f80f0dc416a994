//! The one arm runner shared by Figure 4 and `freet compare`: train an arm, or reuse the run
//! already trained to its final step with exactly the same config.

use crate::config::RunConfig;
use crate::model::FreeTransformer;
use crate::train::checkpoint;
use crate::train::{TrainOptions, train};
use anyhow::{Result, bail};
use std::path::Path;

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
        eprintln!("[{tag}] reusing {}", l.dir.display());
        return Ok(Finished { model: l.model, train_seconds: logged_train_seconds(dir), reused: true });
    }
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("[{tag}] training {} ({} steps)", dir.display(), run.train.steps);
    let s = train(run, opts)?;
    if s.interrupted {
        bail!("interrupted; rerun with --reuse to keep finished runs");
    }
    let model = checkpoint::load(&s.checkpoint, opts.device)?.model;
    Ok(Finished { model, train_seconds: s.elapsed_s, reused: false })
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
