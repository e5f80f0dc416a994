//! Training end to end on the synthetic task: the loss goes down, the KL respects κ, checkpoints
//! reload to identical logits, and a resumed run follows the uninterrupted one exactly.

mod common;

use freet::config::RunConfig;
use freet::eval::to_batch;
use freet::model::{Pass, ZSource};
use freet::train::checkpoint;
use freet::train::{TrainOptions, train};
use std::sync::atomic::Ordering;
use tch::{Device, Kind};

fn config(extra: &[&str]) -> RunConfig {
    let mut o = vec![
        "model.latent.bits=8",
        "train.steps=6",
        "train.batch_size=8",
        "train.warmup_steps=2",
        "train.seed=3",
        "train.checkpoint_every=0",
        "train.keep_last=0",
    ];
    o.extend_from_slice(extra);
    common::tiny_run(&o)
}

fn opts(dir: &std::path::Path) -> TrainOptions {
    let mut o = TrainOptions::new(dir);
    o.progress = false;
    o
}

/// The run `run` trained without interruption, in a fresh directory (the reference curve).
fn uninterrupted(run: &RunConfig) -> tempfile::TempDir {
    let full = tempfile::tempdir().unwrap();
    train(run, &opts(full.path())).unwrap();
    full
}

/// Calls `f` with `o`'s stop flag raised, as after SIGTERM (checkpoint after the current step and
/// stop), then lowers it again.
fn stopped<T>(o: &TrainOptions, f: impl FnOnce(&TrainOptions) -> T) -> T {
    o.stop.store(true, Ordering::SeqCst);
    let out = f(o);
    o.stop.store(false, Ordering::SeqCst);
    out
}

#[test]
fn short_run_learns_and_keeps_kl_near_kappa() {
    let tmp = tempfile::tempdir().unwrap();
    let run = config(&["train.steps=80", "train.batch_size=16", "train.log_every=10"]);
    let s = train(&run, &opts(tmp.path())).unwrap();
    let first = common::curve(tmp.path())[0].1;
    assert!(s.last.ce < first - 0.5, "CE did not fall enough: first logged loss {first}, last CE {}", s.last.ce);
    // The synthetic task's noise floor is far below ln 29 = 3.37 nats; after 80 steps CE < 1.6.
    assert!(s.last.ce < 1.6, "last CE {}", s.last.ce);
    let kl = s.last.kl_bits.unwrap();
    assert!(kl < 0.5 + 0.25, "KL {kl} bits/token far above κ = 0.5 bit");
    let e = s.eval.unwrap();
    assert!(e.elbo.unwrap() >= e.posterior_ce_diagnostic.unwrap(), "ELBO = CE_post + KL ≥ CE_post");
}

#[test]
fn checkpoint_reload_gives_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let run = config(&["train.steps=3"]);
    let s = train(&run, &opts(tmp.path())).unwrap();
    let a = checkpoint::load(&s.checkpoint, Device::Cpu).unwrap();
    let b = checkpoint::load(tmp.path(), Device::Cpu).unwrap(); // run directory → latest
    assert_eq!(a.dir, b.dir);
    let rows = run.dataset().unwrap().val_batches(1, 4).remove(0);
    let (x, _) = to_batch(&rows, Device::Cpu);
    let codes = tch::Tensor::randint(256, [4, x.size()[1]], (Kind::Int64, Device::Cpu));
    let la = a.model.forward(&x, ZSource::Pinned(&codes), Pass::Inference).logits;
    let lb = b.model.forward(&x, ZSource::Pinned(&codes), Pass::Inference).logits;
    assert!(la.equal(&lb));
    // And the trained weights differ from a fresh init (the load really copied tensors).
    let fresh = freet::model::FreeTransformer::new(&run.model, Device::Cpu, 3).unwrap();
    let lf = fresh.forward(&x, ZSource::Pinned(&codes), Pass::Inference).logits;
    assert!(!la.equal(&lf));
}

#[test]
fn resume_follows_the_uninterrupted_run_exactly() {
    let run = config(&[]);
    let full = uninterrupted(&run);

    let parts = tempfile::tempdir().unwrap();
    let s = stopped(&opts(parts.path()), |o| train(&run, o).unwrap());
    assert!(s.interrupted && s.steps == 1);
    let mut o2 = opts(parts.path());
    o2.resume = true;
    let s2 = train(&run, &o2).unwrap();
    assert_eq!(s2.steps, 6);
    let (a, b) = (common::curve(full.path()), common::curve(parts.path()));
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "per-step loss and grad norm must be bit-identical after resume");
}

#[test]
fn reuse_resumes_an_interrupted_experiment_run_exactly() {
    use freet::experiments::harness::train_or_reuse;
    let run = config(&[]);
    let full = uninterrupted(&run);

    // An experiment's run stopped after its first step (SIGTERM): the error suggests --reuse.
    let parts = tempfile::tempdir().unwrap();
    let o = opts(parts.path());
    let e = stopped(&o, |o| train_or_reuse(&run, o, true, "t").unwrap_err().to_string());
    assert!(e.contains("--reuse"), "{e}");
    // --reuse with other bookkeeping settings resumes it; the curve is the uninterrupted one.
    let bookkeeping = config(&["train.threads=1", "train.checkpoint_every=2"]);
    let f = train_or_reuse(&bookkeeping, &o, true, "t").unwrap();
    assert!(!f.reused);
    assert_eq!(common::curve(full.path()), common::curve(parts.path()), "resumed, not retrained from scratch");
    let steps: Vec<u64> = checkpoint::list(&parts.path().join("checkpoints")).iter().map(|c| c.0).collect();
    assert_eq!(steps, [1, 2, 4, 6], "resumed from the step-1 checkpoint, then checkpointed every 2 steps");
    // Finished now: reused as it is, with the training time of both invocations, as after resuming.
    let r = train_or_reuse(&run, &o, true, "t").unwrap();
    assert!(r.reused);
    assert_eq!(f.train_seconds, r.train_seconds, "the resumed run counts its first invocation too");

    // An unfinished run with another outcome setting is kept: an error that names the setting.
    let other = tempfile::tempdir().unwrap();
    let o = opts(other.path());
    stopped(&o, |o| train_or_reuse(&config(&["train.lr=0.01"]), o, true, "t").unwrap_err());
    let e = train_or_reuse(&run, &o, true, "t").unwrap_err().to_string();
    assert!(e.contains("an unfinished run (step 1 of 6)") && e.contains("train.lr"), "{e}");
    assert_eq!(checkpoint::list(&other.path().join("checkpoints")).len(), 1, "the unfinished run is kept");
    // Without --reuse the directory is trained afresh.
    train_or_reuse(&run, &o, false, "t").unwrap();
    assert_eq!(common::curve(full.path()), common::curve(other.path()), "retrained from step 0 with the given lr");
}

#[test]
fn fresh_run_refuses_to_overwrite_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let run = config(&["train.steps=1"]);
    train(&run, &opts(tmp.path())).unwrap();
    let e = train(&run, &opts(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
}

#[test]
fn kappa_warm_grants_its_budget_then_switches_to_the_arms_kappa() {
    // κ = 0 charges the whole KL (free-bits term = mean KL > 0); a warm κ of H = 8 bits per token
    // grants all of it, so the term is exactly 0 for the warm steps and positive after the switch.
    let tmp = tempfile::tempdir().unwrap();
    let run = config(&[
        "model.latent.kappa_bits=0",
        "train.kappa_warm_bits=8",
        "train.kappa_warm_steps=3",
        "train.steps=5",
        "train.log_every=1",
    ]);
    train(&run, &opts(tmp.path())).unwrap();
    let fb: Vec<(u64, f64, f64)> = std::fs::read_to_string(tmp.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["free_bits"].as_f64().unwrap(), v["kl_nats"].as_f64().unwrap())
        })
        .collect();
    assert_eq!(fb.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    for &(step, term, kl) in &fb {
        assert!(kl > 0.0, "step {step}: KL {kl}");
        if step <= 3 {
            assert_eq!(term, 0.0, "step {step}: warm κ = 8 bits must grant the whole KL");
        } else {
            assert!(
                (term - kl).abs() < 1e-6 * kl.max(1.0),
                "step {step}: at κ = 0 the term is the KL ({term} vs {kl})"
            );
        }
    }
}
