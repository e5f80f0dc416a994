//! GFLOP/s of the fused Eq. 8 backward against a square GEMM, in one process.
//!
//! `scripts/with-env cargo run --release --example mapper_rate -- [N] [D] [H] [threads]`
//! (defaults: 2048 tokens, D = 512, H = 16, 2 threads). Prints, each as the median of 5 runs after
//! one warm-up: a square 2048³ fp32 GEMM; freet's code-tiled backward
//! ([`BinaryMapper::grad_bit_logits`]); and the token-chunked formulation it replaced (64-token
//! chunks, each streaming all of E, kept here only as the comparison). The rate counts the
//! `δR·Eᵀ` GEMM's `2·N·2^H·D` FLOPs, the bulk of the op.
use freet::model::mapper::BinaryMapper;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

/// The pre-2026-11-30 backward: chunks of `rows` tokens, `[rows, 2^H]` G per chunk.
fn token_chunked(table: &Tensor, o: &Tensor, e: &Tensor, dr: &Tensor, rows: i64) -> Tensor {
    let n = o.size()[0];
    let mut parts = vec![];
    let mut start = 0;
    while start < n {
        let len = rows.min(n - start);
        let oc = o.narrow(0, start, len);
        let g = (oc.mm(&table.tr()) - oc.softplus().sum_dim_intlist(-1, true, Kind::Float)).exp();
        let w = g * dr.narrow(0, start, len).mm(&e.tr());
        let s = w.sum_dim_intlist(-1, true, Kind::Float);
        parts.push(w.mm(table) - oc.sigmoid() * s);
        start += len;
    }
    Tensor::cat(&parts, 0)
}

fn main() {
    let arg = |i: usize, d: i64| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, d, h, threads) = (arg(1, 2048), arg(2, 512), arg(3, 16), arg(4, 2));
    tch::set_num_threads(threads as i32);
    let opts = (Kind::Float, Device::Cpu);
    let m = BinaryMapper::new(h as usize, 0, Device::Cpu);
    let c = m.num_codes();
    let (o, e, dr) = (Tensor::randn([n, h], opts) * 2.0, Tensor::randn([c, d], opts), Tensor::randn([n, d], opts));
    let (a, b) = (Tensor::randn([2048, 2048], opts), Tensor::randn([2048, 2048], opts));
    let square = median_ms(|| drop(a.mm(&b)));
    let tiled = median_ms(|| drop(tch::no_grad(|| m.grad_bit_logits(&o, &e, &dr))));
    let chunked = median_ms(|| drop(tch::no_grad(|| token_chunked(m.table(), &o, &e, &dr, 64))));
    let same = tch::no_grad(|| {
        let x = m.grad_bit_logits(&o, &e, &dr);
        let y = token_chunked(m.table(), &o, &e, &dr, 64);
        (x - &y).abs().max().double_value(&[]) / y.abs().max().double_value(&[]).max(1e-30)
    });
    let gflop = 2.0 * (n * c * d) as f64 / 1e9;
    let rate = |ms: f64, f: f64| f / (ms / 1e3);
    println!("N = {n}, D = {d}, H = {h}, {threads} threads; δR·Eᵀ = {gflop:.1} GFLOP");
    println!("square 2048³ GEMM     {square:8.1} ms  {:6.1} GFLOP/s", rate(square, 2.0 * 2048f64.powi(3) / 1e9));
    println!("tiled over codes      {tiled:8.1} ms  {:6.1} GFLOP/s", rate(tiled, gflop));
    println!("chunked over tokens   {chunked:8.1} ms  {:6.1} GFLOP/s", rate(chunked, gflop));
    println!("tiled / chunked time  {:.3}; max relative difference {same:.1e}", tiled / chunked);
}
