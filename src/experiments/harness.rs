//! The one arm runner shared by Figure 4 and `freet compare`: build an arm's run config (the
//! experiment's `--quick` overrides, then the user's, then the arm's own), then train it, or reuse
//! the run already trained to its final step with exactly the same config.

use crate::config::RunConfig;
use crate::model::FreeTransformer;
use crate::train::checkpoint;
use crate::train::{TrainOptions, train};
use anyhow::{Result, bail};
use indicatif::MultiProgress;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tch::Device;

/// The overrides every arm of an experiment starts from: its `--quick` set when `quick`, then the
/// user's `extra` overrides (so that the user's win).
pub fn quick_overrides(quick: bool, quick_set: &[&str], extra: &[String]) -> Vec<String> {
    let mut overrides: Vec<String> = if quick { quick_set.iter().map(|s| s.to_string()).collect() } else { vec![] };
    overrides.extend(extra.iter().cloned());
    overrides
}

/// The `train.threads=N` override that lets `jobs` trainings at once share the CPU cores (N = cores
/// / jobs), printed under `tag`; None with one job, off the CPU, or when the user's `overrides` set
/// `train.threads`. The count follows `jobs`, not the runs selected, so that a later `--reuse` with the
/// same `jobs` finds the runs (their configs record the thread count).
pub fn jobs_threads_override(jobs: usize, device: Device, overrides: &[String], tag: &str) -> Option<String> {
    let user_sets = overrides.iter().any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == "train.threads"));
    if jobs <= 1 || device != Device::Cpu || user_sets {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    eprintln!("[{tag}] --jobs {jobs}: {threads} CPU thread(s) per training ({cores} cores)");
    Some(format!("train.threads={threads}"))
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
    /// A runner for `jobs` trainings at once. With several, it gets a stop flag of its own, so that
    /// a failing run stops the others while the user's flag `user_stop` (whose second signal kills
    /// the process) is only copied in by [`run_parallel`], and progress bars in one group.
    pub fn for_jobs(
        jobs: usize,
        device: Device,
        progress: bool,
        user_stop: &Arc<AtomicBool>,
        reuse: bool,
        tag: &'static str,
    ) -> ArmRunner {
        let stop = if jobs > 1 { Arc::new(AtomicBool::new(false)) } else { Arc::clone(user_stop) };
        let bars = (jobs > 1 && progress).then(MultiProgress::new);
        ArmRunner { device, progress, stop, reuse, tag, bars }
    }

    /// Trains `run` in `dir`, or reuses the run there, with this runner's options; `label` names
    /// its progress bar when several arms train at once. On the CPU, the calling thread is left
    /// with the run's `train.threads` libtorch threads (if set) for the measurements that follow,
    /// also when the run was reused and never went through the trainer.
    pub fn train(&self, run: &RunConfig, dir: &Path, label: &str) -> Result<Finished> {
        let mut topts = TrainOptions::new(dir);
        topts.device = self.device;
        topts.progress = self.progress;
        topts.bars = self.bars.clone().map(|m| (m, label.to_string()));
        topts.stop = Arc::clone(&self.stop);
        let finished = train_or_reuse(run, &topts, self.reuse, self.tag)?;
        if self.device == Device::Cpu && run.train.threads > 0 {
            tch::set_num_threads(run.train.threads as i32);
        }
        Ok(finished)
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
    /// Training seconds (for a reused or resumed run, the time logged over all its invocations, as
    /// `metrics.jsonl` carries it; 0 if unknown).
    pub train_seconds: f64,
    /// Loaded from an earlier run rather than trained now.
    pub reused: bool,
}

/// Trains `run` from scratch in `opts.out_dir`; with `reuse`, first looks at the run saved there.
/// A run trained to its final step with this config is loaded; one interrupted before it (SIGTERM,
/// or killed after a periodic checkpoint) resumes from its newest checkpoint. Only bookkeeping
/// settings may differ ([`RunConfig::outcome_differences`]; the difference is printed); a saved
/// run, finished or not, with any other difference is an error that names the settings and keeps
/// it, so that `--reuse` never deletes saved training. Without `reuse` the run directory is trained
/// afresh. `tag` prefixes the progress lines. An interrupted training is an error that suggests
/// `--reuse`.
pub fn train_or_reuse(run: &RunConfig, opts: &TrainOptions, reuse: bool, tag: &str) -> Result<Finished> {
    let dir = &opts.out_dir;
    let bars = opts.bars.as_ref().map(|(m, _)| m);
    let saved = if reuse { checkpoint::load(dir, opts.device).ok() } else { None };
    let mut opts = opts.clone();
    let mut resuming = false;
    if let Some(l) = saved
        && let Some(s) = l.state.as_ref()
    {
        let diff = s.run.outcome_differences(run);
        let finished = s.step == s.run.train.steps;
        if !diff.is_empty() {
            let what = if finished {
                "a finished run".to_string()
            } else {
                format!("an unfinished run (step {} of {})", s.step, s.run.train.steps)
            };
            bail!(
                "--reuse: {} holds {what} trained with other settings ({}); it is kept: remove it or choose \
                 another --out",
                dir.display(),
                diff.join(", ")
            );
        }
        let bookkeeping = s.run.differences(run);
        let noted = if bookkeeping.is_empty() {
            String::new()
        } else {
            format!(" (saved with other bookkeeping settings: {})", bookkeeping.join(", "))
        };
        if finished {
            say(bars, &format!("[{tag}] reusing {}{noted}", l.dir.display()));
            return Ok(Finished { model: l.model, train_seconds: logged_train_seconds(dir), reused: true });
        }
        say(bars, &format!("[{tag}] resuming {} at step {} of {}{noted}", dir.display(), s.step, run.train.steps));
        (opts.resume, resuming) = (true, true);
    }
    if !resuming {
        let _ = std::fs::remove_dir_all(dir);
        say(bars, &format!("[{tag}] training {} ({} steps)", dir.display(), run.train.steps));
    }
    let s = train(run, &opts)?;
    if s.interrupted {
        bail!("interrupted; rerun with --reuse to resume (finished runs are kept)");
    }
    let model = checkpoint::load(&s.checkpoint, opts.device)?.model;
    // A resumed run's summary counts this invocation only; its log carries the earlier ones too.
    let train_seconds = if resuming { logged_train_seconds(dir) } else { s.elapsed_s };
    Ok(Finished { model, train_seconds, reused: false })
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

/// Runs `work` on every item of `plan` on `jobs` worker threads, the costliest first (by `cost`);
/// returns the results in `plan`'s order. `stop` is the flag the arms' trainings watch: the user's flag
/// `user_stop` is copied into it, and a failure (or a panic) raises it so that the other trainings
/// end at their next step. The error returned is the first in `plan`'s order that is not such an
/// interruption; the others are printed.
pub fn run_parallel<P: Sync, T: Send, K: Ord>(
    plan: &[P],
    cost: impl Fn(&P) -> K,
    jobs: usize,
    user_stop: &AtomicBool,
    stop: &AtomicBool,
    tag: &str,
    work: &(dyn Fn(&P) -> Result<T> + Sync),
) -> Result<Vec<T>> {
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&plan[i])));
    let queue = Mutex::new(order.into_iter());
    let slots: Vec<Mutex<Option<Result<T>>>> = plan.iter().map(|_| Mutex::new(None)).collect();
    let workers_left = AtomicUsize::new(jobs);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while workers_left.load(Ordering::SeqCst) > 0 {
                if user_stop.load(Ordering::SeqCst) {
                    stop.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        for _ in 0..jobs {
            scope.spawn(|| {
                let _done = CountDown(&workers_left);
                let _guard = StopOnPanic(stop);
                while !stop.load(Ordering::SeqCst) {
                    let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else { break };
                    let r = work(&plan[i]);
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    let (mut out, mut errors) = (Vec::with_capacity(plan.len()), Vec::new());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(t)) => out.push(t),
            Some(Err(e)) => errors.push(e),
            None => {}
        }
    }
    // The cause, not an arm interrupted because of it (or by the user, if nothing failed).
    let cause = errors.iter().position(|e| !format!("{e:#}").contains("interrupted")).unwrap_or(0);
    match (errors.is_empty(), out.len() == plan.len()) {
        (false, _) => {
            let cause = errors.swap_remove(cause);
            for e in &errors {
                eprintln!("[{tag}] also: {e:#}");
            }
            Err(cause)
        }
        (true, true) => Ok(out),
        (true, false) => bail!("interrupted; rerun with --reuse to keep finished runs"),
    }
}

/// Counts a worker out when it ends, however it ends.
struct CountDown<'a>(&'a AtomicUsize);

impl Drop for CountDown<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Raises the stop flag if its worker thread unwinds from a panic, so that the other arms stop too
/// instead of training on while the experiment is already lost.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_arm_stops_the_others_and_is_the_error_reported() {
        let names = ["baseline", "kappa-1-64", "kappa-1-8"];
        let plan: Vec<(&str, u64)> = names.iter().map(|n| (*n, 40)).collect();
        let (user, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        // The failing arm waits until another has started, which then runs until it is stopped.
        let started = std::sync::atomic::AtomicUsize::new(0);
        let arm = |(name, _): &(&str, u64)| -> Result<usize> {
            started.fetch_add(1, Ordering::SeqCst);
            if *name == "kappa-1-64" {
                while started.load(Ordering::SeqCst) < 2 {
                    std::thread::yield_now();
                }
                bail!("arm {name}: out of disk");
            }
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            bail!("arm {name}: interrupted; rerun with --reuse to keep finished runs")
        };
        let err = run_parallel(&plan, |p| p.1, 2, &user, &stop, "test", &arm).unwrap_err().to_string();
        assert_eq!(err, "arm kappa-1-64: out of disk", "the cause, not the arm it interrupted");
        assert!(!user.load(Ordering::SeqCst), "the user's stop flag is left alone");
        assert!(started.load(Ordering::SeqCst) < 3, "no arm starts after the failure");

        // The user's stop reaches the arms, and nothing that ran is lost from the error.
        let (user, stop) = (AtomicBool::new(true), AtomicBool::new(false));
        let wait = |(name, _): &(&str, u64)| -> Result<usize> {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            bail!("arm {name}: interrupted; rerun with --reuse to keep finished runs")
        };
        let err = run_parallel(&plan, |p| p.1, 2, &user, &stop, "test", &wait).unwrap_err().to_string();
        assert!(err.contains("interrupted"), "{err}");

        // Every arm fine: results in the plan's order, whatever order they ran in.
        let (user, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        let index = |(name, _): &(&str, u64)| -> Result<usize> { Ok(names.iter().position(|n| n == name).unwrap()) };
        assert_eq!(run_parallel(&plan, |p| p.1, 2, &user, &stop, "test", &index).unwrap(), vec![0, 1, 2]);
    }
}
