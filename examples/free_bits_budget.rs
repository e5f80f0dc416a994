//! What the free-bits hinge pays for each way of using Z on the synthetic task (spec §5.1).
//!
//! `scripts/with-env cargo run --release --example free_bits_budget`
//!
//! A *deterministic code* names an event of the data at token t by sending the sequence's Z_t into a
//! cell of the code space whose prior mass is the event's probability (uniformly inside it). The
//! decoder that reads the cell predicts the event exactly, and prior Z then decides it: samples that
//! share a Z agree on it. Such a code saves the event's entropy in cross-entropy and costs
//! `KL_t = −ln(mass of the cell)` at that token, so without free bits it is worth exactly nothing
//! (E[KL] = the entropy saved). The hinge refunds part of the KL; the refund is the code's net gain
//! in the training loss (nats per sequence), assuming a decoder that implements the code perfectly:
//!
//! - token-wise (the paper): `Σ_t E[min(KL_t, κ)]`;
//! - per sequence (`model.latent.free_bits = "sequence"`, not in the paper): `E[min(Σ_t KL_t, κ·T)]`.
//!
//! Codes: **noise** (each of the 64 body tokens names whether it is `!`, p = 1/16); **position,
//! hazard** (each body token t names whether the target starts there, given that it has not
//! started: p = 1/(57 − t)); **position, binary** (six tokens carry one bit each, cells of mass 1/2,
//! naming the start among 64 values of which 57 are used: 6 ln 2 of KL for the ln 57 saved). The
//! binary figure is an idealisation: a causal decoder needs the bits before the start, so the few
//! starts among the first positions would need other cells (a small charge not counted here). At
//! κ < 1 bit no informative deterministic code is free at every token: a cell of mass ≥ e^(−κ) > 1/2
//! leaves the others below 1/2, and a sequence sent there pays more than κ. These are particular
//! codes, not a bound over all codes.

/// Body length, target length and number of target starts (spec §5.1).
const BODY: usize = 64;
const STARTS: usize = 57;
/// Noise rate, and the number of positions that carry a Z and a KL term: the 65 inputs of a
/// 66-token sequence (the trainer's tokens per sequence).
const P_NOISE: f64 = 1.0 / 16.0;
const T: f64 = 65.0;

/// Token-wise gain of the noise code: each body token refunds min(KL, κ).
fn noise_tokenwise(k: f64) -> f64 {
    BODY as f64 * (P_NOISE * (-P_NOISE.ln()).min(k) + (1.0 - P_NOISE) * (-(1.0 - P_NOISE).ln()).min(k))
}

/// Token-wise gain of the hazard position code, averaged over the uniform start s.
fn hazard_tokenwise(k: f64) -> f64 {
    let per_start = |s: usize| -> f64 {
        let hazard = |t: usize| 1.0 / (STARTS - t) as f64;
        let before: f64 = (0..s).map(|t| (-(1.0 - hazard(t)).ln()).min(k)).sum();
        before + (-hazard(s).ln()).min(k)
    };
    (0..STARTS).map(per_start).sum::<f64>() / STARTS as f64
}

/// Token-wise gain of the binary position code: ln 57 saved, 6 tokens at ln 2 each charged above κ.
fn binary_tokenwise(k: f64) -> f64 {
    let l2 = std::f64::consts::LN_2;
    (STARTS as f64).ln() - 6.0 * (l2 - k).max(0.0)
}

/// Binomial probability P(N = n) for N ~ Bin(m, p).
fn binom(m: usize, n: usize, p: f64) -> f64 {
    let ln_choose: f64 = (1..=n).map(|i| ((m - n + i) as f64 / i as f64).ln()).sum();
    (ln_choose + n as f64 * p.ln() + (m - n) as f64 * (1.0 - p).ln()).exp()
}

/// Per-sequence gain of the noise code: its total KL depends on the number N of `!`.
fn noise_pooled(k: f64) -> f64 {
    let budget = k * T;
    (0..=BODY)
        .map(|n| {
            let kl = n as f64 * -P_NOISE.ln() + (BODY - n) as f64 * -(1.0 - P_NOISE).ln();
            binom(BODY, n, P_NOISE) * kl.min(budget)
        })
        .sum()
}

/// Per-sequence gain of a position code whose total KL is `kl` for every sequence (hazard: ln 57;
/// binary: 6 ln 2), of which ln 57 is saved.
fn position_pooled(k: f64, kl: f64) -> f64 {
    (STARTS as f64).ln() - (kl - k * T).max(0.0)
}

fn main() {
    let l2 = std::f64::consts::LN_2;
    let saved_noise = BODY as f64 * -(P_NOISE * P_NOISE.ln() + (1.0 - P_NOISE) * (1.0 - P_NOISE).ln());
    println!(
        "Net gain in the training loss (nats per sequence) of deterministic codes; entropy saved: noise {saved_noise:.2}, \
         position {:.2}.\n",
        (STARTS as f64).ln()
    );
    println!(
        "| κ (bits/token) | token-wise: noise | token-wise: position, hazard | token-wise: position, binary | \
         per sequence: noise | per sequence: position, hazard | per sequence: position, binary |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, bits) in [("1/64", 1.0 / 64.0), ("1/8", 0.125), ("1/2", 0.5), ("1", 1.0), ("2", 2.0), ("8", 8.0)] {
        let k = bits * l2;
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            noise_tokenwise(k),
            hazard_tokenwise(k),
            binary_tokenwise(k),
            noise_pooled(k),
            position_pooled(k, (STARTS as f64).ln()),
            position_pooled(k, 6.0 * l2),
        );
    }
}
