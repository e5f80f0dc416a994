//! The training loop: gradient accumulation, AdamW with warm-up + cosine decay, global-norm
//! clipping, periodic held-out evaluation, JSONL metrics, atomic checkpoints and exact resume.
//! Every random draw is a pure function of `(seed, step, micro-batch)`, so a resumed run follows
//! the uninterrupted one exactly. With a data-parallel world ([`crate::train::parallel`]) each rank
//! trains on its shard of every batch and rank 0 alone writes the run directory.

use crate::config::{NonFinite, RunConfig, TrainConfig};
use crate::data::{Dataset, Tokenizer};
use crate::dist::World;
use crate::eval::{EvalReport, evaluate, to_batch};
use crate::model::loss::LossStats;
use crate::model::{FreeTransformer, Pass, ZSource};
use crate::train::checkpoint::{self, FORMAT_VERSION, TrainState};
use crate::train::optim::{AdamW, learning_rate};
use crate::train::parallel::DataParallel;
use anyhow::{Context, Result, anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tch::Device;

/// How to run a training job.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run directory: `config.toml`, `metrics.jsonl`, `checkpoints/`.
    pub out_dir: PathBuf,
    /// Continue from the run directory's latest checkpoint.
    pub resume: bool,
    /// Where to train.
    pub device: Device,
    /// Show a progress bar.
    pub progress: bool,
    /// Draw the progress bar in this group, below the others (several trainings at once), with
    /// `label` in front of it.
    pub bars: Option<(MultiProgress, String)>,
    /// Prior-Z draws per evaluation.
    pub eval_prior_samples: usize,
    /// Set to true (e.g. by SIGINT/SIGTERM) to checkpoint and stop after the current step (with
    /// several ranks: after the step in which any rank asked).
    pub stop: Arc<AtomicBool>,
    /// The data-parallel world (torchrun's variables, [`World::from_env`]); None or a world of one
    /// rank trains in this process alone.
    pub world: Option<World>,
    /// Bound on the rendezvous and on every collective of a data-parallel run.
    pub dist_timeout: Duration,
}

impl TrainOptions {
    /// Defaults: CPU, progress bar, 1 prior draw per evaluation, one process (600 s timeout if
    /// given a world).
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        TrainOptions {
            out_dir: out_dir.into(),
            resume: false,
            device: Device::Cpu,
            progress: true,
            bars: None,
            eval_prior_samples: 1,
            stop: Arc::new(AtomicBool::new(false)),
            world: None,
            dist_timeout: Duration::from_secs(600),
        }
    }
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Optimizer steps completed.
    pub steps: u64,
    /// Tokens consumed in this invocation.
    pub tokens: u64,
    /// Seconds spent in this invocation.
    pub elapsed_s: f64,
    /// Training throughput of this invocation (tokens per second, evaluation excluded).
    pub tokens_per_s: f64,
    /// Seconds of this invocation's training steps spent in the gradient and figures all-reduce
    /// (waiting for the slowest rank included); 0 for a single process.
    pub all_reduce_s: f64,
    /// Loss figures of the last step.
    pub last: LossStats,
    /// The final held-out evaluation.
    pub eval: Option<EvalReport>,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// Stopped early by a signal.
    pub interrupted: bool,
}

/// One metrics line.
#[derive(Debug, Serialize)]
struct MetricsLine<'a> {
    step: u64,
    lr: f64,
    grad_norm: f64,
    tokens: u64,
    tok_per_s: f64,
    elapsed_s: f64,
    #[serde(flatten)]
    stats: &'a LossStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval: Option<&'a EvalReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'a str>,
    /// Milliseconds of the step in the all-reduce (data-parallel runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    all_reduce_ms: Option<f64>,
}

/// Trains (or resumes) a run, alone or as one rank of `opts.world`.
pub fn train(run: &RunConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    run.validate()?;
    let tc = &run.train;
    if tc.threads > 0 {
        tch::set_num_threads(tc.threads as i32);
    }
    let dp = match &opts.world {
        Some(w) if w.size > 1 => Some(DataParallel::join(w, opts.device, tc.batch_size, opts.dist_timeout)?),
        _ => None,
    };
    let root = dp.as_ref().is_none_or(|d| d.rank() == 0);
    let tok = run.tokenizer()?;
    let data = run.dataset_with(tok.clone())?;
    let ckpt_dir = opts.out_dir.join("checkpoints");
    let (model, mut opt, mut state) = start(run, opts, &ckpt_dir, &tok, dp.as_ref())?;
    let val = data.val_batches(tc.eval_batches, tc.batch_size);
    if val.is_empty() {
        bail!("the validation split holds no batch: use a longer text or a larger data.val_fraction");
    }
    let val_bytes = data.target_bytes(&val);
    let mut metrics = if root { Some(open_metrics(&opts.out_dir)?) } else { None };
    let tokens_per_step = (tc.batch_size * tc.grad_accum * (data.seq_len() - 1)) as u64;
    let mut lp = LoopState::new(opts, tc, &state, tokens_per_step, root);
    let shard = dp.as_ref().map_or(0..tc.batch_size, |d| d.shard(tc.batch_size));
    let share = shard.len() as f64 / tc.batch_size as f64;

    while state.step < tc.steps {
        let step = state.step;
        let ts = Instant::now();
        let lr = learning_rate(tc, step);
        let kappa = tc.kappa_nats_at(run.model.latent.kappa_bits, step).unwrap_or(0.0);
        let stats = accumulate(&model, &data, tc, (step, &shard, share, kappa), opts.device);
        let (stats, stop_now, all_reduce_ms) = reduce(dp.as_ref(), &model, stats, share, &opts.stop)?;
        lp.all_reduce_time += all_reduce_ms.unwrap_or(0.0) / 1e3;
        let grad_norm = opt.grad_norm();
        let skipped = update_or_skip(&mut opt, &stats, (step, grad_norm, lr), tc, &lp)?;
        lp.train_time += ts.elapsed().as_secs_f64();
        state.step += 1;
        state.tokens_seen += lp.tokens_per_step;
        state.data_cursor = (state.step, 0);
        let tok_s = lp.tokens_per_s(state.step);
        let is_last = state.step == tc.steps;
        let eval_now = root && (is_last || (tc.eval_every > 0 && state.step.is_multiple_of(tc.eval_every)));
        let eval =
            eval_now.then(|| evaluate(&model, &val, opts.eval_prior_samples, tc.seed).with_target_bytes(val_bytes));
        if let Some(m) = metrics.as_mut()
            && (eval.is_some() || state.step.is_multiple_of(tc.log_every) || is_last || skipped.is_some())
        {
            let line = MetricsLine {
                step: state.step,
                lr,
                grad_norm,
                tokens: state.tokens_seen,
                tok_per_s: tok_s,
                elapsed_s: state.elapsed_s + lp.t0.elapsed().as_secs_f64(),
                stats: &stats,
                eval: eval.as_ref(),
                skipped,
                all_reduce_ms,
            };
            writeln!(m, "{}", serde_json::to_string(&line)?).context("cannot append to metrics.jsonl")?;
            m.flush()?;
        }
        lp.observe(state.step, stats, tok_s, eval);
        let ckpt_now =
            is_last || stop_now || (tc.checkpoint_every > 0 && state.step.is_multiple_of(tc.checkpoint_every));
        if ckpt_now {
            save_checkpoint(&ckpt_dir, (&model, &opt, &tok), &state, dp.as_ref(), &mut lp)?;
        }
        if stop_now && !is_last {
            lp.interrupted = true;
            break;
        }
    }
    lp.finish(&ckpt_dir, state.step)
}

/// The step's global loss figures and stop decision, and the milliseconds spent agreeing on them
/// and summing the gradients (None for a single process, whose figures are already global).
fn reduce(
    dp: Option<&DataParallel>,
    model: &FreeTransformer,
    stats: LossStats,
    share: f64,
    stop: &AtomicBool,
) -> Result<(LossStats, bool, Option<f64>)> {
    let asked = stop.load(Ordering::SeqCst);
    let Some(d) = dp else { return Ok((stats, asked, None)) };
    let t = Instant::now();
    let (stats, stop_now) = d.reduce_step(model, &stats, share, asked)?;
    Ok((stats, stop_now, Some(t.elapsed().as_secs_f64() * 1e3)))
}

/// Rank 0 (or the only process) writes the checkpoint of `state`, after the ranks have checked
/// that they hold the same parameters.
fn save_checkpoint(
    ckpt_dir: &Path,
    (model, opt, tok): (&FreeTransformer, &AdamW, &Tokenizer),
    state: &TrainState,
    dp: Option<&DataParallel>,
    lp: &mut LoopState,
) -> Result<()> {
    if let Some(d) = dp {
        d.check_in_sync(model, state.step)?;
    }
    if lp.root {
        let mut s = state.clone();
        s.elapsed_s += lp.t0.elapsed().as_secs_f64();
        lp.last_ckpt = Some(checkpoint::save(ckpt_dir, model, tok.clone(), Some(opt), &s, lp.keep_last)?);
    }
    Ok(())
}

fn open_metrics(out_dir: &Path) -> Result<std::fs::File> {
    let path = out_dir.join("metrics.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The model, optimizer and state every rank starts from: rank 0 (or the only process) creates the
/// run directory and initialises or resumes; with several ranks, they agree that this worked and
/// take rank 0's state. Then rank 0 clears stale temporaries and writes `config.toml`.
fn start(
    run: &RunConfig,
    opts: &TrainOptions,
    ckpt_dir: &Path,
    tok: &Tokenizer,
    dp: Option<&DataParallel>,
) -> Result<(FreeTransformer, AdamW, TrainState)> {
    let root = dp.is_none_or(|d| d.rank() == 0);
    let init = if root {
        std::fs::create_dir_all(&opts.out_dir)
            .with_context(|| format!("cannot create run directory {}", opts.out_dir.display()))
            .and_then(|_| init_or_resume(run, opts, ckpt_dir, tok))
    } else {
        fresh(run, opts)
    };
    let (model, mut opt, mut state) = match dp {
        None => init?,
        Some(d) => match (d.all_ok(init.is_ok())?, init) {
            (_, Err(e)) => return Err(e),
            (false, Ok(_)) => bail!("rank {}: another rank failed to start (its error says why)", d.rank()),
            (true, Ok(x)) => x,
        },
    };
    if let Some(d) = dp {
        d.broadcast_start(&model, &mut opt, &mut state)?;
    }
    if root {
        checkpoint::clean_stale(ckpt_dir);
        let cfg_text = toml::to_string_pretty(run)?;
        crate::util::fs::write_atomic(&opts.out_dir.join("config.toml"), cfg_text.as_bytes())?;
    }
    Ok((model, opt, state))
}

/// A fresh model, optimizer and state, or those of the run directory's latest checkpoint (which must
/// have been trained with the same model, data and tokenizer).
fn init_or_resume(
    run: &RunConfig,
    opts: &TrainOptions,
    ckpt_dir: &Path,
    tok: &Tokenizer,
) -> Result<(FreeTransformer, AdamW, TrainState)> {
    let tc = &run.train;
    if opts.resume {
        let loaded = checkpoint::load(ckpt_dir, opts.device)
            .with_context(|| format!("cannot resume from {}", ckpt_dir.display()))?;
        let state = loaded.state.ok_or_else(|| anyhow!("{}: no state.json to resume from", loaded.dir.display()))?;
        if state.run.model != run.model || state.run.data != run.data {
            bail!(
                "{}: the checkpoint's model/data config differs from the given config; resume with the run's own \
                 config.toml",
                loaded.dir.display()
            );
        }
        if loaded.tokenizer != *tok {
            bail!(
                "{}: the checkpoint was trained with {}, but the config names {}; resume with the run's own tokenizer",
                loaded.dir.display(),
                loaded.tokenizer.describe(),
                tok.describe()
            );
        }
        let mut opt = AdamW::new(loaded.model.var_store(), tc);
        checkpoint::load_optimizer(&loaded.dir, &mut opt, state.step)?;
        let mut state = state;
        state.run = run.clone();
        truncate_metrics(&opts.out_dir.join("metrics.jsonl"), state.step)?;
        return Ok((loaded.model, opt, state));
    }
    if checkpoint::list(ckpt_dir).last().is_some() {
        bail!("{} already holds checkpoints: pass --resume to continue, or choose another --out", ckpt_dir.display());
    }
    let (mut model, opt, state) = fresh(run, opts)?;
    if let Some(src) = &tc.init_from {
        // In place (the optimizer holds the same tensors); other ranks receive these by broadcast.
        init_from(&mut model, src, tok)?;
    }
    let _ = std::fs::remove_file(opts.out_dir.join("metrics.jsonl"));
    Ok((model, opt, state))
}

/// A freshly initialised model, its optimizer and step 0; touches no file.
fn fresh(run: &RunConfig, opts: &TrainOptions) -> Result<(FreeTransformer, AdamW, TrainState)> {
    let model = FreeTransformer::new(&run.model, opts.device, run.train.seed)?;
    let opt = AdamW::new(model.var_store(), &run.train);
    let state = TrainState {
        format_version: FORMAT_VERSION,
        step: 0,
        tokens_seen: 0,
        elapsed_s: 0.0,
        data_cursor: (0, 0),
        run: run.clone(),
    };
    Ok((model, opt, state))
}

/// Copies the weights of the checkpoint `src` (`train.init_from`) into a fresh model of the same
/// architecture trained with the same tokenizer.
fn init_from(model: &mut FreeTransformer, src: &Path, tok: &Tokenizer) -> Result<()> {
    let loaded = checkpoint::load(src, model.device()).with_context(|| format!("train.init_from {}", src.display()))?;
    if let Err(field) = model.config().same_architecture(loaded.model.config()) {
        bail!(
            "train.init_from {}: the checkpoint's {field} differs from the config's [model]; copy its architecture \
             from {}",
            src.display(),
            loaded.dir.join("config.json").display()
        );
    }
    if loaded.tokenizer != *tok {
        bail!(
            "train.init_from {}: the checkpoint uses {}, but the config names {}; point data.tokenizer at the \
             checkpoint's tokenizer.json",
            src.display(),
            loaded.tokenizer.describe(),
            tok.describe()
        );
    }
    let tensors: std::collections::HashMap<String, tch::Tensor> = loaded.model.var_store().variables();
    checkpoint::load_tensors(model, &tensors, &format!("train.init_from {}", loaded.dir.display()))
}

/// Forward and backward over the rows `shard` of the step's micro-batches, accumulating
/// `share/grad_accum` of each gradient (`share`: the shard's fraction of the batch, 1 for a single
/// process); returns the shard's mean loss figures.
fn accumulate(
    model: &FreeTransformer,
    data: &Dataset,
    tc: &TrainConfig,
    (step, shard, share, kappa_nats): (u64, &Range<usize>, f64, f64),
    device: Device,
) -> LossStats {
    let mut acc = LossAcc::default();
    for micro in 0..tc.grad_accum as u64 {
        let rows = data.train_rows(step, micro, shard.clone());
        let (x, y) = to_batch(&rows, device);
        let key = crate::util::rng::step_key(tc.seed, step, micro);
        let z = ZSource::PosteriorRows { key, first_row: shard.start };
        let fwd = model.forward(&x, z, Pass::Train);
        let loss = model.loss_at_kappa(&fwd, &y, kappa_nats);
        model.backward(&fwd, &loss, share / tc.grad_accum as f64);
        acc.add(loss.stats());
    }
    acc.mean()
}

/// Clips and applies the update of 0-based `step` when loss and gradient are finite. Otherwise drops the gradient and,
/// as `train.on_nonfinite` says, stops with an error (the last checkpoint untouched) or returns the
/// reason the step was skipped.
fn update_or_skip(
    opt: &mut AdamW,
    stats: &LossStats,
    (step, grad_norm, lr): (u64, f64, f64),
    tc: &TrainConfig,
    lp: &LoopState,
) -> Result<Option<&'static str>> {
    if stats.loss.is_finite() && grad_norm.is_finite() {
        opt.clip(grad_norm, tc.grad_clip);
        opt.step(lr);
        opt.zero_grad();
        return Ok(None);
    }
    opt.zero_grad();
    match tc.on_nonfinite {
        NonFinite::Stop => {
            lp.bar.abandon();
            bail!(
                "non-finite {} at step {} (loss {}, grad norm {}); stopped, the last checkpoint is untouched{}",
                if stats.loss.is_finite() { "gradient" } else { "loss" },
                step + 1,
                stats.loss,
                grad_norm,
                lp.last_ckpt.as_ref().map(|p: &PathBuf| format!(" ({})", p.display())).unwrap_or_default()
            );
        }
        NonFinite::Skip => Ok(Some("non-finite loss or gradient: step skipped")),
    }
}

/// What the training loop tracks besides the checkpointed [`TrainState`].
struct LoopState {
    /// Rank 0 or the only process: shows progress and writes the run directory.
    root: bool,
    keep_last: usize,
    start_step: u64,
    tokens_per_step: u64,
    bar: ProgressBar,
    t0: Instant,
    train_time: f64,
    all_reduce_time: f64,
    last: LossStats,
    last_eval: Option<EvalReport>,
    last_ckpt: Option<PathBuf>,
    interrupted: bool,
}

impl LoopState {
    fn new(opts: &TrainOptions, tc: &TrainConfig, state: &TrainState, tokens_per_step: u64, root: bool) -> Self {
        LoopState {
            root,
            keep_last: tc.keep_last,
            start_step: state.step,
            tokens_per_step,
            bar: progress_bar(opts.progress && root, opts.bars.as_ref(), tc.steps, state.step),
            t0: Instant::now(),
            train_time: 0.0,
            all_reduce_time: 0.0,
            last: LossStats::default(),
            last_eval: None,
            last_ckpt: None,
            interrupted: false,
        }
    }

    /// Training throughput of this invocation at `step` (evaluation excluded).
    fn tokens_per_s(&self, step: u64) -> f64 {
        ((step - self.start_step) * self.tokens_per_step) as f64 / self.train_time.max(1e-9)
    }

    /// Shows the finished `step` on the progress bar and keeps its figures for the summary.
    fn observe(&mut self, step: u64, stats: LossStats, tok_s: f64, eval: Option<EvalReport>) {
        self.bar.set_position(step);
        self.bar.set_message(progress_message(&stats, tok_s, eval.as_ref()));
        if eval.is_some() {
            self.last_eval = eval;
        }
        self.last = stats;
    }

    /// The summary of this invocation, once the loop has ended at `step`.
    fn finish(self, ckpt_dir: &Path, step: u64) -> Result<TrainSummary> {
        self.bar.finish_and_clear();
        let checkpoint = match self.last_ckpt {
            Some(p) => p,
            None if self.root => checkpoint::resolve(ckpt_dir)?,
            None => ckpt_dir.to_path_buf(),
        };
        let done = (step - self.start_step) * self.tokens_per_step;
        Ok(TrainSummary {
            steps: step,
            tokens: done,
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            tokens_per_s: done as f64 / self.train_time.max(1e-9),
            all_reduce_s: self.all_reduce_time,
            last: self.last,
            eval: self.last_eval,
            checkpoint,
            interrupted: self.interrupted,
        })
    }
}

#[derive(Default)]
struct LossAcc {
    n: f64,
    sum: LossStats,
}

impl LossAcc {
    fn add(&mut self, s: LossStats) {
        let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (None, b) => b,
            (a, None) => a,
        };
        self.n += 1.0;
        self.sum.ce += s.ce;
        self.sum.loss += s.loss;
        self.sum.kl_nats = add(self.sum.kl_nats, s.kl_nats);
        self.sum.kl_bits = add(self.sum.kl_bits, s.kl_bits);
        self.sum.free_bits = add(self.sum.free_bits, s.free_bits);
        self.sum.frac_above_kappa = add(self.sum.frac_above_kappa, s.frac_above_kappa);
        if self.sum.per_bit_kl_bits.is_empty() {
            self.sum.per_bit_kl_bits = s.per_bit_kl_bits;
        } else {
            for (a, b) in self.sum.per_bit_kl_bits.iter_mut().zip(s.per_bit_kl_bits) {
                *a += b;
            }
        }
    }

    fn mean(mut self) -> LossStats {
        let n = self.n.max(1.0);
        let div = |v: Option<f64>| v.map(|v| v / n);
        self.sum.ce /= n;
        self.sum.loss /= n;
        self.sum.kl_nats = div(self.sum.kl_nats);
        self.sum.kl_bits = div(self.sum.kl_bits);
        self.sum.free_bits = div(self.sum.free_bits);
        self.sum.frac_above_kappa = div(self.sum.frac_above_kappa);
        for v in &mut self.sum.per_bit_kl_bits {
            *v /= n;
        }
        self.sum
    }
}

/// The training's progress bar: hidden unless `show`; inside `group` (with its label) if given.
fn progress_bar(show: bool, group: Option<&(MultiProgress, String)>, total: u64, start: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix}{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    match group {
        Some((multi, label)) => {
            bar.set_prefix(format!("{label} "));
            multi.add(bar)
        }
        None => bar,
    }
}

fn progress_message(s: &LossStats, tok_s: f64, eval: Option<&EvalReport>) -> String {
    let mut m = format!("ce {:.3}", s.ce);
    if let Some(kl) = s.kl_bits {
        m += &format!(" kl {kl:.3}b");
    }
    m += &format!(" {:.1}k tok/s", tok_s / 1000.0);
    if let Some(e) = eval {
        m += &format!(" | val {:.3}", e.headline_nats());
    }
    m
}

/// Drops metrics lines past `step` (written after the checkpoint a resume starts from).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    crate::util::fs::write_atomic(path, kept.as_bytes())
}
