//! The device test subset, for `scripts/gpu-check.sh`: the model, training and data-parallel
//! training on the device named by `FREET_TEST_DEVICE` (`cuda` or `cpu`) against the CPU. Without
//! that variable every test returns at once (the default suite covers the CPU elsewhere); the
//! script runs them with `FREET_TEST_DEVICE=cuda` on a GPU machine and with `cpu` here.
//!
//! Tolerances: the device's kernels differ from the CPU's (other GEMM blocking, TF32 off but
//! atomics-based backward reductions that are not deterministic), so no reduction-order bound
//! applies; fp32 logits must agree to 1e-4 and gradients to 1e-3 of their largest magnitude,
//! bf16 ones to 3 % (bf16 keeps 8 mantissa bits).

mod common;

use freet::model::config::Precision;
use freet::model::{FreeTransformer, Pass, ZSource};
use freet::train::checkpoint;
use std::path::Path;
use std::process::Command;
use tch::Device;

/// The device under test, or None outside `scripts/gpu-check.sh`.
fn device() -> Option<Device> {
    let d = std::env::var("FREET_TEST_DEVICE").ok()?;
    Some(match d.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => {
            assert!(tch::Cuda::is_available(), "FREET_TEST_DEVICE=cuda but libtorch sees no CUDA device");
            Device::Cuda(0)
        }
        other => panic!("FREET_TEST_DEVICE={other:?}: use cpu or cuda"),
    })
}

fn name(d: Device) -> &'static str {
    if d == Device::Cpu { "cpu" } else { "cuda" }
}

#[test]
fn forward_and_backward_on_the_device_match_the_cpu() {
    let Some(dev) = device() else { return };
    let _g = common::serial();
    for (precision, tol) in [(Precision::Fp32, (1e-4, 1e-3)), (Precision::Bf16, (3e-2, 3e-2))] {
        let mut cfg = common::tiny(6, "\"1/2\"");
        cfg.precision = precision;
        let cpu = common::build(&cfg, 11);
        let mut on = FreeTransformer::new(&cfg, dev, 11).unwrap();
        on.var_store_mut().copy(cpu.var_store()).unwrap();
        let toks = common::tokens(5, 3, 12);
        let (inp, tgt) = (toks.narrow(1, 0, 11), toks.narrow(1, 1, 11));
        let mut grads = Vec::new();
        let mut logits = Vec::new();
        for (m, d) in [(&cpu, Device::Cpu), (&on, dev)] {
            let fwd = m.forward(&inp.to_device(d), ZSource::Posterior { key: 7 }, Pass::Train);
            let loss = m.loss(&fwd, &tgt.to_device(d));
            m.backward(&fwd, &loss, 1.0);
            logits.push(fwd.logits.to_device(Device::Cpu));
            let mut g: Vec<(String, tch::Tensor)> =
                m.var_store().variables().into_iter().map(|(n, p)| (n, p.grad().to_device(Device::Cpu))).collect();
            g.sort_by(|a, b| a.0.cmp(&b.0));
            grads.push(g);
        }
        let dl = common::max_abs_diff(&logits[0], &logits[1]);
        assert!(dl <= tol.0 * common::max_abs(&logits[0]).max(1.0), "{precision:?}: logits differ by {dl}");
        for ((n, a), (_, b)) in grads[0].iter().zip(&grads[1]) {
            let d = common::max_abs_diff(a, b);
            assert!(d <= tol.1 * common::max_abs(a).max(1e-6), "{precision:?} {n}: gradients differ by {d}");
        }
        println!("{precision:?} on {}: max |Δlogit| {dl:.2e}", name(dev));
    }
}

/// The binary under test: `FREET_BIN` (set by the script, since a test binary built here runs
/// from another checkout path there), else the one cargo built beside this test.
fn freet() -> Command {
    Command::new(std::env::var_os("FREET_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_freet").into()))
}

fn train(cfg: &Path, out: &Path, dev: Device, extra: &[&str]) {
    let o = freet()
        .args(["train", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(["--quiet", "--device", name(dev)])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: {}", out.display(), String::from_utf8_lossy(&o.stderr));
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn training_on_the_device_learns_and_its_checkpoint_loads_on_the_cpu() {
    let Some(dev) = device() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("run.toml");
    std::fs::write(&cfg, common::tiny_run_toml(&["train.steps=60", "train.checkpoint_every=0", "train.threads=1"]))
        .unwrap();
    let run = tmp.path().join("run");
    train(&cfg, &run, dev, &[]);
    let l = losses(&run);
    assert!(l[l.len() - 1] < l[0] - 0.5, "loss {} -> {}", l[0], l[l.len() - 1]);
    let loaded = checkpoint::load(&run, Device::Cpu).unwrap();
    assert_eq!(loaded.state.unwrap().step, 60);
    println!("60 steps on {}: loss {:.4} -> {:.4}", name(dev), l[0], l[l.len() - 1]);
}

#[test]
fn two_ranks_on_the_device_match_one_process() {
    let Some(dev) = device() else { return };
    if dev != Device::Cpu && tch::Cuda::device_count() < 2 {
        println!("skipped: 1-rank vs 2-rank NCCL needs 2 GPUs, this machine has {}", tch::Cuda::device_count());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("run.toml");
    std::fs::write(&cfg, common::tiny_run_toml(&["train.steps=20", "train.batch_size=8", "train.threads=1"])).unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    train(&cfg, &one, dev, &[]);
    train(&cfg, &two, dev, &["--nproc", "2", "--dist-timeout", "120"]);
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(&b).map(|(x, y)| ((x - y) / x).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-3, "per-step loss differs by up to {worst:.2e} (relative)");
    let (ma, mb) =
        (checkpoint::load(&one, Device::Cpu).unwrap().model, checkpoint::load(&two, Device::Cpu).unwrap().model);
    let vb = mb.var_store().variables();
    let dw = ma.var_store().variables().iter().map(|(n, t)| common::max_abs_diff(t, &vb[n])).fold(0.0, f64::max);
    assert!(dw <= 1e-3, "weights differ by up to {dw:.2e}");
    let backend = if dev == Device::Cpu { "Gloo" } else { "NCCL" };
    println!("1 vs 2 ranks ({backend}, {}): loss ≤ {worst:.2e} relative, weights ≤ {dw:.2e}", name(dev));
}
