//! The c10d binding (`freet::dist`) between real processes: two ranks on 127.0.0.1 over Gloo
//! all-reduce, broadcast and meet at barriers correctly; a missing peer, a stuck peer, a killed
//! peer and an unreachable store come back as one-line Rust errors within their timeouts.
//!
//! A test spawns its ranks by running this test binary again on one `rank_*` function with the
//! variables torchrun would set (plus `FREET_TEST_RANK_BODY`); without that variable a `rank_*`
//! function returns at once.

use freet::dist::{Backend, Group, ReduceOp, World};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// Runs `nproc` ranks of `body` (a `rank_*` test of this binary), each with the extra `env`;
/// returns their outputs in rank order.
fn ranks(body: &str, nproc: usize, env: &[(&str, &str)]) -> Vec<Output> {
    let port = freet::dist::launch::free_port().unwrap().to_string();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..nproc)
        .map(|r| {
            let mut c = Command::new(&exe);
            c.args([body, "--exact", "--nocapture", "--test-threads=1"])
                .env("FREET_TEST_RANK_BODY", "1")
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", nproc.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .envs(env.iter().copied());
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// The world of a rank body, or None outside one.
fn body_world() -> Option<World> {
    std::env::var_os("FREET_TEST_RANK_BODY")?;
    tch::set_num_threads(1);
    World::from_env().unwrap()
}

fn join(w: &World, timeout_s: u64) -> Group {
    Group::join(w, Backend::Gloo, Duration::from_secs(timeout_s)).unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The lines a rank body printed with `report:`.
fn reports(o: &Output) -> Vec<String> {
    // The harness prints `test NAME ... ` without a newline before the body's first line.
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once("report: "))
        .map(|(_, r)| r.to_string())
        .collect()
}

#[test]
fn rank_collectives() {
    let Some(w) = body_world() else { return };
    let g = join(&w, 30);
    let r = w.rank as f64;
    // Two tensors of different shapes, one call: flattened into one buffer and written back.
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]) * (r + 1.0);
    let b = Tensor::from_slice(&[10.0f32, 20.0, 30.0, 40.0]).view([2, 2]) + r;
    g.all_reduce("a and b", &[&a, &b], ReduceOp::Sum).unwrap();
    assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![3.0, 6.0, 9.0]);
    assert_eq!(Vec::<f32>::try_from(&b.flatten(0, -1)).unwrap(), vec![21.0, 41.0, 61.0, 81.0]);
    let m = Tensor::from_slice(&[r, -r, 5.0 * r]);
    g.all_reduce("mean", &[&m], ReduceOp::Avg).unwrap();
    assert_eq!(Vec::<f64>::try_from(&m).unwrap(), vec![0.5, -0.5, 2.5]);
    let (lo, hi) = (Tensor::from_slice(&[r as i64, 7]), Tensor::from_slice(&[r as i64, 7]));
    g.all_reduce("min", &[&lo], ReduceOp::Min).unwrap();
    g.all_reduce("max", &[&hi], ReduceOp::Max).unwrap();
    assert_eq!((Vec::<i64>::try_from(&lo).unwrap(), Vec::<i64>::try_from(&hi).unwrap()), (vec![0, 7], vec![1, 7]));
    // Broadcast from rank 1 of a non-contiguous view and a parameter that requires grad.
    let p = tch::nn::VarStore::new(tch::Device::Cpu);
    let w1 = p.root().var("w", &[3], tch::nn::Init::Const(r));
    let t = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([2, 3]).tr() * (r + 1.0);
    tch::no_grad(|| g.broadcast("w and t", &[&w1, &t], 1)).unwrap();
    assert_eq!(Vec::<f32>::try_from(&w1).unwrap(), vec![1.0; 3]);
    assert_eq!(Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap(), vec![0.0, 6.0, 2.0, 8.0, 4.0, 10.0]);
    g.barrier("end").unwrap();
    // A call refused before any collective starts: an error, never an abort; the group stays usable.
    let mixed = Tensor::from_slice(&[1i64]);
    let e = g.all_reduce("mixed", &[&a, &mixed], ReduceOp::Sum).unwrap_err().0;
    println!("report: {e}");
    g.all_reduce("a", &[&a], ReduceOp::Sum).unwrap();
    assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![6.0, 12.0, 18.0]);
}

#[test]
fn two_ranks_all_reduce_broadcast_and_barrier_over_gloo() {
    let out = ranks("rank_collectives", 2, &[]);
    for (r, o) in out.iter().enumerate() {
        assert!(o.status.success(), "rank {r} failed:\n{}", text(o));
        let rep = reports(o);
        let want = format!("rank {r}: all-reduce of mixed: tensors of one call must share a dtype and a device");
        assert!(rep.len() == 1 && rep[0] == want, "{rep:?}");
    }
}

#[test]
fn rank_stuck_or_killed_peer() {
    let Some(w) = body_world() else { return };
    let g = join(&w, 6);
    let t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    g.all_reduce("warm-up", &[&t], ReduceOp::Sum).unwrap();
    if w.rank == 1 {
        match std::env::var("PEER").unwrap().as_str() {
            // Alive but never joins the next collective, until rank 0 has given up.
            "stuck" => std::thread::sleep(Duration::from_secs(15)),
            // Killed mid-run.
            _ => unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            },
        }
        return;
    }
    let t0 = Instant::now();
    let e = g.all_reduce("gradients", &[&t], ReduceOp::Sum).unwrap_err().0;
    println!("report: {:.1} {e}", t0.elapsed().as_secs_f64());
    // The group is poisoned: refused at once, and dropping it does not wait for Gloo.
    let e2 = g.barrier("after").unwrap_err().0;
    println!("report: 0 {e2}");
}

/// Rank 0's two reports: (seconds, error of the failed collective), (_, error of the next call).
fn failed_collective(peer: &str) -> (f64, String, String) {
    let out = ranks("rank_stuck_or_killed_peer", 2, &[("PEER", peer)]);
    assert!(out[0].status.success(), "rank 0 failed:\n{}", text(&out[0]));
    let rep = reports(&out[0]);
    assert_eq!(rep.len(), 2, "{}", text(&out[0]));
    let (secs, err) = rep[0].split_once(' ').unwrap();
    (secs.parse().unwrap(), err.to_string(), rep[1].clone())
}

#[test]
fn a_stuck_peer_times_out_and_a_killed_peer_is_named() {
    let (secs, err, next) = failed_collective("stuck");
    assert!(err.starts_with("rank 0: all-reduce of gradients failed while every rank is alive"), "{err}");
    assert!(err.to_lowercase().contains("timed out"), "{err}");
    // 6 s collective timeout, plus 3 s of heartbeat watching.
    assert!((5.5..20.0).contains(&secs), "took {secs} s");
    assert!(next.contains("unusable after an earlier failed collective"), "{next}");

    let (secs, err, _) = failed_collective("killed");
    assert!(err.starts_with("rank 0: lost rank 1 during all-reduce of gradients (heartbeat stopped)"), "{err}");
    assert!(secs < 10.0, "took {secs} s");
    assert!(!err.contains('\n'));
}

#[test]
fn a_missing_peer_or_an_unreachable_store_is_an_error_within_the_timeout() {
    let port = freet::dist::launch::free_port().unwrap();
    let w = |rank: usize| World {
        rank,
        size: 2,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
        restart: 0,
    };
    // Rank 0 hosts the store; rank 1 never comes.
    let t0 = Instant::now();
    let e = Group::join(&w(0), Backend::Gloo, Duration::from_secs(2)).unwrap_err().0;
    let secs = t0.elapsed().as_secs_f64();
    assert!(e.starts_with("rank 0: cannot form the process group of 2 ranks (Gloo, store 127.0.0.1:"), "{e}");
    println!("{secs:.1} s: {e}");
    assert!(secs < 10.0 && !e.contains('\n'), "{secs} s: {e}");
    // Rank 1 finds no store at MASTER_ADDR:MASTER_PORT.
    let t0 = Instant::now();
    let e = Group::join(&w(1), Backend::Gloo, Duration::from_secs(2)).unwrap_err().0;
    let secs = t0.elapsed().as_secs_f64();
    assert!(e.starts_with(&format!("rank 1: cannot reach the rendezvous store at 127.0.0.1:{port}")), "{e}");
    assert!(secs < 10.0 && !e.contains('\n'), "{secs} s: {e}");
}

#[test]
fn nccl_without_a_gpu_is_an_error_not_an_abort() {
    if tch::Cuda::is_available() {
        return;
    }
    let port = freet::dist::launch::free_port().unwrap();
    let w = World {
        rank: 0,
        size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
        restart: 0,
    };
    let e = Group::join(&w, Backend::Nccl(0), Duration::from_secs(5)).unwrap_err().0;
    println!("{e}");
    assert!(e.starts_with("rank 0: cannot form the process group of 1 ranks (Nccl(0)") && !e.contains('\n'), "{e}");
}
