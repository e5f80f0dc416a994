//! Data-parallel training over c10d (Gloo on 127.0.0.1, 1 intra-op thread per rank), end to end
//! through the `freet` binary: 2 ranks (`--nproc 2`, and torchrun's) train like 1 process with the
//! same global batch; a run
//! resumes across world sizes (2 → 1, 1 → 2); SIGTERM to one rank stops all of them at the same
//! step with a checkpoint; a killed rank is named by the survivor, whose last checkpoint loads and
//! resumes; an unreachable store is a one-line error.
//!
//! **Tolerance.** The 2-rank run computes each step's loss and gradient as the same sums over the
//! batch's N = B·T token terms as one process, in another order: two halves of N/2 terms and one
//! addition (the all-reduce), against one sum of N. Reordering a sum of n fp32 terms moves it by at
//! most γ_n·Σ|terms|, γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (Higham, *Accuracy and Stability of Numerical
//! Algorithms*, §4.2), so the two differ per step by at most 2γ_N relative. To first order these
//! errors add up over steps (AdamW's normalised update turns a relative gradient error δ into at
//! most 2δ·lr of parameter movement, plus one rounding of each parameter, ≤ ulp(max |w|)):
//! - loss and gradient norm at step s: |Δ| ≤ s · 2γ_N · |value|;
//! - each weight after S steps: |Δ| ≤ S · (2 · 2γ_N · lr + ulp(max |w|)).
//!
//! For the test's B = 8, T = 65, lr = 3·10⁻³, S = 20: 2γ_N = 6.2·10⁻⁵, loss tolerance ≈ 2·10⁻³ at
//! step 20 and weight tolerance ≈ 1.7·10⁻⁵; measured on 2026-11-30 (AMD EPYC, 2 cores,
//! `cargo test --release --test data_parallel -- --nocapture`): loss differences ≤ 3.6·10⁻⁷,
//! weights ≤ 2.4·10⁻⁷. Mistakes in sharding, latent draws, loss weighting or the reduction move
//! weights by ~lr = 3·10⁻³ or the logged loss and norm by far more than this.

mod common;

use freet::train::checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::Device;

/// Global batch B, tokens per row T (synthetic sequences of 66 tokens), steps S, peak lr.
const B: usize = 8;
const T: usize = 65;
const STEPS: u64 = 20;
const LR: f64 = 3e-3;

fn freet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_freet"))
}

/// The tiny run with 10 latent bits (1024 rows of E, most untouched by a step's 520 tokens, many
/// by only one shard), lazy AdamW for E (it updates exactly the rows with gradient), one thread.
fn config(dir: &Path, extra: &[&str]) -> PathBuf {
    let (b, s, lr) = (format!("train.batch_size={B}"), format!("train.steps={STEPS}"), format!("train.lr={LR}"));
    let mut o = vec![
        b.as_str(),
        s.as_str(),
        lr.as_str(),
        "model.latent.bits=10",
        "train.post_sampler_optimizer=\"lazy\"",
        "train.threads=1",
        "train.checkpoint_every=10",
        "train.keep_last=0",
    ];
    o.extend_from_slice(extra);
    let p = dir.join(format!("cfg-{}.toml", extra.len()));
    std::fs::write(&p, common::tiny_run_toml(&o)).unwrap();
    p
}

fn train_args(cfg: &Path, out: &Path) -> Vec<String> {
    let (c, o) = (cfg.display().to_string(), out.display().to_string());
    ["train", "--config", &c, "--out", &o, "--quiet", "--device", "cpu"].map(String::from).to_vec()
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `freet train` to the end, alone or with `--nproc n`, plus `extra` arguments.
fn run(cfg: &Path, out: &Path, nproc: usize, extra: &[&str]) {
    let mut c = freet();
    c.args(train_args(cfg, out)).args(extra);
    if nproc > 1 {
        c.args(["--nproc", &nproc.to_string(), "--dist-timeout", "60"]);
    }
    ok(c.output().unwrap(), &format!("{} with {nproc} rank(s)", out.display()));
}

/// `2γ_N` for the batch's N = B·T terms.
fn two_gamma() -> f64 {
    let (n, u) = ((B * T) as f64, 2f64.powi(-24));
    2.0 * n * u / (1.0 - n * u)
}

/// Asserts the tolerance of the module documentation between two runs' curves and final weights;
/// returns (largest loss difference, largest weight difference).
fn assert_close(a: &Path, b: &Path) -> (f64, f64) {
    let (ca, cb) = (common::curve(a), common::curve(b));
    assert_eq!(ca.len(), cb.len(), "{} vs {}", a.display(), b.display());
    let mut worst_loss: f64 = 0.0;
    for ((s, la, ga), (sb, lb, gb)) in ca.iter().zip(&cb) {
        assert_eq!(s, sb);
        let tol = *s as f64 * two_gamma();
        assert!((la - lb).abs() <= tol * la.abs(), "step {s}: loss {la} vs {lb} (tolerance {})", tol * la.abs());
        assert!((ga - gb).abs() <= tol * ga.abs(), "step {s}: grad norm {ga} vs {gb}");
        worst_loss = worst_loss.max((la - lb).abs());
    }
    let (ma, mb) = (checkpoint::load(a, Device::Cpu).unwrap().model, checkpoint::load(b, Device::Cpu).unwrap().model);
    let (va, vb) = (ma.var_store().variables(), mb.var_store().variables());
    let wmax = va.values().map(common::max_abs).fold(0.0, f64::max);
    let ulp = 2f64.powi(wmax.log2().floor() as i32 - 23);
    let tol = STEPS as f64 * (2.0 * two_gamma() * LR + ulp);
    let mut worst_w: f64 = 0.0;
    for (name, t) in &va {
        let d = common::max_abs_diff(t, &vb[name]);
        assert!(d <= tol, "{name}: weights differ by {d} > {tol} ({} vs {})", a.display(), b.display());
        worst_w = worst_w.max(d);
    }
    (worst_loss, worst_w)
}

/// A copy of `run` whose latest checkpoint is the one of `step` (later ones removed).
fn rewind(run: &Path, to: &Path, step: u64) {
    ok(Command::new("cp").arg("-r").arg(run).arg(to).output().unwrap(), "cp");
    let ckpts = to.join("checkpoints");
    for (s, dir) in checkpoint::list(&ckpts) {
        if s > step {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    std::fs::write(ckpts.join("latest"), format!("step-{step:08}")).unwrap();
}

#[test]
fn two_ranks_train_like_one_process_and_resume_across_world_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &[]);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    run(&cfg, &one, 1, &[]);
    let t0 = Instant::now();
    run(&cfg, &two, 2, &[]);
    eprintln!("2 ranks, {STEPS} steps: {:.1} s", t0.elapsed().as_secs_f64());
    let (dl, dw) = assert_close(&one, &two);
    eprintln!("1 vs 2 ranks: loss differs by ≤ {dl:.2e}, weights by ≤ {dw:.2e}");
    // Only rank 0 wrote: one metrics line per step, no stray temporaries.
    assert_eq!(common::curve(&two).len(), STEPS as usize);
    assert!(
        std::fs::read_dir(two.join("checkpoints"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with('.'))
    );

    // The same 2 ranks started by torchrun (the venv's), as is but for a port of our own.
    let tr = tmp.path().join("torchrun");
    let port = freet::dist::launch::free_port().unwrap().to_string();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/torchrun"))
        .args(["--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", &port, "--no-python"])
        .arg(env!("CARGO_BIN_EXE_freet"))
        .args(train_args(&cfg, &tr))
        .output()
        .unwrap();
    ok(out, "torchrun");
    assert_close(&one, &tr);

    // 2 → 1: the 2-rank run's step-10 checkpoint, resumed by one process.
    let (two_one, one_two) = (tmp.path().join("two-one"), tmp.path().join("one-two"));
    rewind(&two, &two_one, 10);
    run(&cfg, &two_one, 1, &["--resume"]);
    assert_close(&one, &two_one);
    // 1 → 2.
    rewind(&one, &one_two, 10);
    run(&cfg, &one_two, 2, &["--resume"]);
    assert_close(&one, &one_two);
}

/// Starts rank `rank` of 2 as torchrun would, on `port`.
fn rank(cfg: &Path, out: &Path, rank: usize, port: u16, extra: &[&str]) -> Child {
    freet()
        .args(train_args(cfg, out))
        .args(["--dist-timeout", "30"])
        .args(extra)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_steps(run: &Path, steps: usize) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        if std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|s| s.lines().count() >= steps) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no progress in {}", run.display());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn sigterm_to_one_rank_stops_every_rank_at_the_same_step() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &["train.steps=100000", "train.checkpoint_every=0"]);
    let out = tmp.path().join("run");
    let port = freet::dist::launch::free_port().unwrap();
    let (r0, r1) = (rank(&cfg, &out, 0, port, &[]), rank(&cfg, &out, 1, port, &[]));
    wait_for_steps(&out, 3);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(r1.id() as i32, libc::SIGTERM) };
    let (o0, o1) = (r0.wait_with_output().unwrap(), r1.wait_with_output().unwrap());
    assert!(o0.status.success() && o1.status.success(), "rank 0: {}\nrank 1: {}", stderr(&o0), stderr(&o1));
    assert!(stderr(&o0).contains("interrupted: checkpoint saved at step"), "{}", stderr(&o0));
    let step = checkpoint::load(&out, Device::Cpu).unwrap().state.unwrap().step;
    assert_eq!(common::curve(&out).last().unwrap().0, step, "the checkpoint is the last logged step");
}

#[test]
fn a_killed_rank_is_named_and_the_run_resumes_from_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &["train.steps=60", "train.checkpoint_every=2"]);
    let (killed, whole) = (tmp.path().join("killed"), tmp.path().join("whole"));
    let port = freet::dist::launch::free_port().unwrap();
    let (r0, mut r1) = (rank(&cfg, &killed, 0, port, &[]), rank(&cfg, &killed, 1, port, &[]));
    wait_for_steps(&killed, 5);
    let t0 = Instant::now();
    r1.kill().unwrap();
    let o0 = r0.wait_with_output().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let _ = r1.wait();
    let err = stderr(&o0);
    assert!(!o0.status.success(), "rank 0 must fail when rank 1 is lost");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: rank 0: lost rank 1 during"), "{err}");
    assert!(secs < 30.0, "rank 0 took {secs} s to give up (timeout 30 s)");
    eprintln!("{secs:.1} s: {err}");
    // The last checkpoint loads; resuming it (as one process) finishes like an uninterrupted run.
    let step = checkpoint::load(&killed, Device::Cpu).unwrap().state.unwrap().step;
    assert!((2..60).contains(&step), "last checkpoint at step {step}");
    run(&cfg, &killed, 1, &["--resume"]);
    run(&cfg, &whole, 1, &[]);
    let (a, b) = (common::curve(&killed), common::curve(&whole));
    assert_eq!(a.len(), b.len());
    let tol = 60.0 * two_gamma();
    for ((s, la, _), (_, lb, _)) in a.iter().zip(&b) {
        assert!((la - lb).abs() <= tol * la, "step {s}: {la} vs {lb}");
    }
}

#[test]
fn an_unreachable_store_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &[]);
    let port = freet::dist::launch::free_port().unwrap();
    for addr in ["127.0.0.1", "no-such-host.invalid"] {
        let t0 = Instant::now();
        let o = freet()
            .args(train_args(&cfg, &tmp.path().join("run")))
            .args(["--dist-timeout", "3"])
            .env("RANK", "1")
            .env("WORLD_SIZE", "2")
            .env("MASTER_ADDR", addr)
            .env("MASTER_PORT", port.to_string())
            .output()
            .unwrap();
        let (err, secs) = (stderr(&o), t0.elapsed().as_secs_f64());
        assert!(!o.status.success() && err.trim_end().lines().count() == 1, "{err}");
        assert!(
            err.starts_with(&format!("error: rank 1: cannot reach the rendezvous store at {addr}:{port}")),
            "{err}"
        );
        assert!(secs < 15.0, "{addr}: {secs} s");
        eprintln!("{secs:.1} s: {err}");
    }
}

/// Extra environment variables of a case.
type Env<'a> = &'a [(&'a str, &'a str)];

#[test]
fn launch_mistakes_are_one_line_errors_before_any_rank_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &[]);
    let out = tmp.path().join("run");
    let cases: [(&[&str], Env, &str); 4] = [
        (&["--nproc", "9"], &[], "--nproc 9 exceeds train.batch_size = 8"),
        (&["--nproc", "0"], &[], "--nproc must be at least 1"),
        (&["--nproc", "2", "--set", "train.lr=-1"], &[], "invalid value for train.lr"),
        (
            &["--nproc", "2"],
            &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")],
            "--nproc starts ranks itself",
        ),
    ];
    for (args, env, want) in cases {
        let o = freet().args(train_args(&cfg, &out)).args(args).envs(env.iter().copied()).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(want) && err.trim_end().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert!(!out.exists(), "no rank started");
}
