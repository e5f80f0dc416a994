//! Spec §8.9 at H = 16: one fused forward + backward over 4096 tokens never materialises a
//! `[B, T, 2^H]` tensor. Alone in its own test binary so that the process's peak RSS measures this
//! test only.
//!
//! The fused mapper's scratch is two `[tokens, tile]` fp32 buffers within a 16 MiB budget each
//! (the tile of codes shrinks as the token count grows), while one fp32 `[B, T, C]` tensor is 1 GiB
//! here; the dense formulation grew the peak RSS by 4 GiB on the same batch
//! (measured once, by hand). Runs on one libtorch thread (≈ 3.5 s on a loaded 2-core machine; two
//! threads took 7–10 s there).

mod common;

use common::*;
use freet::model::{Pass, ZSource};
use std::time::Instant;
use tch::Kind;

/// Peak resident set size of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    let kb: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmHWM value");
    kb * 1024
}

#[test]
fn fused_h16_forward_backward_stays_within_tile_scratch() {
    let _g = serial();
    let cfg = tiny(16, "\"1/64\"");
    let model = build(&cfg, 301);
    let lat = model.latent().unwrap();
    let c = lat.mapper.num_codes();
    assert_eq!(c, 65_536);
    assert_eq!(lat.mapper.table().size(), [c, 16], "BITS is one shared [C, H] constant");
    let step = |b: i64, t: i64, seed: i64| {
        let seq = tokens(seed, b, t + 1);
        let (inp, tgt) = (seq.narrow(1, 0, t).contiguous(), seq.narrow(1, 1, t).contiguous());
        let fwd = model.forward(&inp, ZSource::Posterior { key: 0 }, Pass::Train);
        let loss = model.loss(&fwd, &tgt);
        model.backward(&fwd, &loss, 1.0);
        loss.total().double_value(&[])
    };
    // Warm-up on 32 tokens (allocator, thread pools, the mapper on 32 tokens).
    step(1, 32, 1);
    let before = peak_rss();
    let start = Instant::now();
    let (b, t) = (128, 32); // 4096 tokens
    let loss = step(b, t, 2);
    let secs = start.elapsed().as_secs_f64();
    let growth = peak_rss().saturating_sub(before);
    let one_btc = (b * t * c * 4) as u64; // a single fp32 [B, T, C] tensor: 1 GiB
    eprintln!(
        "H=16, {} tokens: loss {loss:.4}, fused forward+backward {secs:.2} s, peak RSS growth {:.0} MiB \
         (one fp32 [B,T,C] tensor = {:.0} MiB)",
        b * t,
        growth as f64 / 1048576.0,
        one_btc as f64 / 1048576.0
    );
    assert!(loss.is_finite());
    let g = lat.encoder.readout.grad();
    assert!(g.defined() && g.isfinite().all().int64_value(&[]) == 1 && g.abs().max().double_value(&[]) > 0.0);
    assert_eq!(g.kind(), Kind::Float);
    // Tile scratch is O(tokens · tile) (≤ 16 MiB per buffer); a single [B, T, C] fp32 tensor would
    // already add 1 GiB.
    assert!(growth < one_btc / 2, "peak RSS grew by {} MiB: a [B, T, 2^H]-sized buffer was allocated?", growth >> 20);
}
