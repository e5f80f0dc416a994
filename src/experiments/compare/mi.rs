//! I(Z; hidden): how much a Free Transformer's posterior codes say about a task's hidden choice
//! (the permutation index, the Markov chain), as a held-out variational lower bound.
//!
//! **Estimator (Barber–Agakov, cross-fitted).** For any conditional model `q(k | z)`,
//! `I(Z; k) = H(k) − H(k | Z) ≥ H(k) + E[log₂ q(k | Z)]`, with equality when `q` is the true
//! posterior. Both tasks draw `k` uniformly among K, so `H(k) = log₂ K` exactly. `N` validation
//! examples `(x, k)` (`Split::Val` indices `0..N`) go through the trunk and the encoder; one
//! posterior code per input token is drawn from the encoder's bit logits (independent Bernoulli
//! bits, exactly as the model's forward pass draws them, from a fixed stream), so each sequence
//! gives `T·H` binary features: one draw of `Z ~ Q(Z | x)`. A multinomial logistic regression
//! `q(k | z)` is fitted on one half of the examples and its cross-entropy measured on the other,
//! then the halves swap (2-fold cross-fitting). Because each `q` is scored on examples it never
//! saw, the mean held-out cross-entropy estimates `−E[log₂ q(k | Z)]` of a fixed `q` without
//! bias, so `log₂ K − CE` is an unbiased estimate of a valid lower bound on `I(Z; k)`: it can
//! only under-report (a probe too weak, or too little data), and it may come out slightly
//! negative by sampling noise when Z says nothing about k. It is reported as is.
//!
//! The probe: features standardised with the training half's statistics; a group lasso (one group
//! per feature, its K weights) at the level where a feature independent of k is unlikely to enter
//! selects the features (most of the T·H bits are usually dead, and an unpenalised fit on ~1000
//! noise features and ~1000 examples over-fits far below zero); a multinomial logistic regression
//! refitted on them with a small L2 penalty gives q (a relaxed lasso: the refit removes the lasso's
//! shrinkage). Both fits are full-batch FISTA from zero for a fixed number of steps on the CPU, and
//! the bits are drawn from a fixed stream: the same model and seed give the same number at one
//! thread count and device (CPU reductions may round differently at another). Above
//! [`MAX_FEATURES`] features per sequence (T·H) the estimate is skipped (no value is reported).
//! On synthetic features (unit tests) it gives ≈ log₂ K for copies of k's bits, ≈ 0 for features
//! independent of k, and the known value for noisy copies.

use crate::data::Split;
use crate::data::tasks::Task;
use crate::eval::to_batch;
use crate::model::FreeTransformer;
use crate::util::rng::Stream;
use std::f64::consts::LN_2;
use tch::{Device, Kind, Tensor};

/// Floating-point kind of the probe's features and fits (sums of the result are in f64).
const KIND: Kind = Kind::Float;

/// Validation examples of the estimate.
pub(super) const MI_EXAMPLES: usize = 2048;

/// The most features per sequence (T·H) the probe takes: `[2048, 8192]` floats are 64 MiB.
pub(super) const MAX_FEATURES: usize = 8192;

/// Sequences per encoder pass.
const CHUNK: usize = 256;

/// Proximal-gradient (FISTA) steps of each probe fit.
const PROBE_STEPS: usize = 200;

/// L2 penalty of the probe's refit on the selected features: `PROBE_L2/2 · ‖W‖²` (nats).
const PROBE_L2: f64 = 1e-3;

/// What a held-out probe of a hidden choice measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Probe {
    /// `log₂ K −` the held-out cross-entropy, in bits: a lower bound on I(features; label).
    pub mi_bits: f64,
    /// Held-out cross-entropy of `q(k | features)`, in bits.
    pub ce_bits: f64,
    /// Held-out accuracy of `argmax q` (chance is 1/K).
    pub accuracy: f64,
}

/// The lower bound on I(Z; hidden choice) of a Free Transformer on `task` from `n` validation
/// examples, with its posterior bits drawn from the stream of `seed`; `None` for a baseline or a
/// task without a uniform hidden choice.
pub(super) fn mi_z_hidden(model: &FreeTransformer, task: &Task, seed: u64, n: usize) -> Option<Probe> {
    let lat = model.latent()?;
    let features = (task.seq_len() - 1) * lat.mapper.bits() as usize;
    if features > MAX_FEATURES {
        eprintln!("[compare] I(Z; hidden) skipped: {features} posterior bits per sequence (T·H) exceed {MAX_FEATURES}");
        return None;
    }
    let (rows, labels, k) = hidden_examples(task, n)?;
    let key = Stream::CompareMiBits.seed(seed, &[]);
    let features = posterior_bit_features(model, &rows, key)?;
    Some(probe_mi(&features, &labels, k))
}

/// Validation examples `0..n` with their hidden choice, and the number of choices K.
fn hidden_examples(task: &Task, n: usize) -> Option<(Vec<Vec<u32>>, Vec<i64>, usize)> {
    let (examples, k): (Vec<(Vec<u32>, usize)>, usize) = match task {
        Task::Permutation(t) => ((0..n as u64).map(|i| t.example(Split::Val, i)).collect(), t.n_perms()),
        Task::HmmMixture(t) => ((0..n as u64).map(|i| t.example(Split::Val, i)).collect(), t.n_chains()),
        Task::Countdown(_) => return None,
    };
    let (rows, labels) = examples.into_iter().map(|(ids, c)| (ids, c as i64)).unzip();
    Some((rows, labels, k))
}

/// One posterior draw of Z per sequence as binary features `[N, T·H]` (0/1, [`KIND`], CPU), `T` the
/// input positions (`seq_len − 1`): the trunk and the encoder read the inputs as in training, and
/// the bits are drawn as [`crate::model::mapper::BinaryMapper::sample_at`] draws them, element `i`
/// of the whole set taking draw `i` of the stream `key` (so the chunking does not matter). `None`
/// for a baseline.
pub(super) fn posterior_bit_features(model: &FreeTransformer, rows: &[Vec<u32>], key: u64) -> Option<Tensor> {
    let lat = model.latent()?;
    let feats: Vec<Tensor> = crate::model::with_weight_cache(|| {
        let mut offset = 0u64;
        rows.chunks(CHUNK)
            .map(|chunk| {
                let (x, _) = to_batch(chunk, model.device());
                let o = lat.encoder.forward(&model.trunk(&x), model.rope());
                let codes = lat.mapper.sample_at(&o, key, offset);
                offset += o.numel() as u64;
                lat.mapper.unpack(&codes).to_device(Device::Cpu).to_kind(KIND).view([chunk.len() as i64, -1])
            })
            .collect()
    });
    Some(Tensor::cat(&feats, 0))
}

/// The cross-fitted Barber–Agakov bound on I(features; label) in bits: a multinomial logistic
/// regression `q(k | x)` on `features: [N, F]` fitted on each half of the rows ([`fit_probe`])
/// and scored on the other; `log₂ k − mean held-out CE` (see the module doc). `labels` are in
/// `0..k`, assumed uniform. Deterministic.
pub(super) fn probe_mi(features: &Tensor, labels: &[i64], k: usize) -> Probe {
    let n = labels.len();
    assert_eq!(features.size()[0], n as i64, "one label per row of features");
    assert!(n >= 2 && k >= 1, "need two examples and one class");
    let x = features.to_device(Device::Cpu).to_kind(KIND);
    let y = Tensor::from_slice(labels);
    let half = (n / 2) as i64;
    let folds = [(0, half), (half, n as i64 - half)];
    let (mut ce_nats, mut correct) = (0.0, 0.0);
    for (i, &(start, len)) in folds.iter().enumerate() {
        let (t_start, t_len) = folds[1 - i];
        let q = fit_probe(&x.narrow(0, t_start, t_len), &y.narrow(0, t_start, t_len), k as i64);
        let yv = y.narrow(0, start, len);
        let logp = q.log_probs(&x.narrow(0, start, len));
        ce_nats -= logp.gather(1, &yv.unsqueeze(1), false).sum(Kind::Double).double_value(&[]);
        correct += logp.argmax(-1, false).eq_tensor(&yv).sum(Kind::Double).double_value(&[]);
    }
    let ce_bits = ce_nats / n as f64 / LN_2;
    Probe { mi_bits: (k as f64).log2() - ce_bits, ce_bits, accuracy: correct / n as f64 }
}

/// A fitted probe `q(k | x) = softmax(((x − μ)/σ)[:, support] · W + b)`.
struct Fitted {
    /// Per-feature mean of the training rows `[F]`.
    mean: Tensor,
    /// Per-feature scale of the training rows `[F]` (0 marks a constant feature).
    inv_std: Tensor,
    /// Indices of the selected features (int64).
    support: Tensor,
    /// Weights `[|support|, k]`.
    w: Tensor,
    /// Bias `[k]`.
    b: Tensor,
}

impl Fitted {
    /// `log q(k | x)` for rows `x: [n, F]`, `[n, k]`.
    fn log_probs(&self, x: &Tensor) -> Tensor {
        let z = ((x - &self.mean) * &self.inv_std).index_select(1, &self.support);
        (z.mm(&self.w) + &self.b).log_softmax(-1, KIND)
    }
}

/// Fits `q(k | x)` on training rows `x: [n, F]`, `y: [n]` (a relaxed group lasso): features are
/// standardised with the training rows' statistics; a multinomial logistic regression with a
/// group-lasso penalty (one group per feature, its k weights) at the level where a feature
/// independent of the labels is unlikely to enter selects the features; the model is refitted on
/// them with a small L2 penalty only, which removes the lasso's shrinkage. The bias is never
/// penalised.
fn fit_probe(x: &Tensor, y: &Tensor, k: i64) -> Fitted {
    let (n, f) = (x.size()[0], x.size()[1]);
    let mean = x.mean_dim(0, false, KIND);
    let std = x.std_dim(0, false, false);
    let inv_std = std.gt(1e-6).to_kind(KIND) / std.clamp_min(1e-6);
    let z = (x - &mean) * &inv_std;
    let onehot = y.one_hot(k).to_kind(KIND);
    // Under independence a standardised feature's gradient at the uniform fit is about
    // N(0, Cov(p − y)/n), with trace (k − 1)/(nk): the norm of its k entries stays below
    // (√(k−1) + √(2 ln F))/√(nk) for all F features with high probability.
    let level = (((k - 1) as f64).sqrt() + (2.0 * (f.max(2) as f64).ln()).sqrt()) / ((n * k) as f64).sqrt();
    let (w, _) = fit_logistic(&z, &onehot, level, 0.0);
    let norms = w.square().sum_dim_intlist(1, false, KIND);
    let support = norms.gt(0.0).nonzero().view([-1]);
    let zs = z.index_select(1, &support);
    let (w, b) = fit_logistic(&zs, &onehot, 0.0, PROBE_L2);
    Fitted { mean, inv_std, support, w, b }
}

/// Multinomial logistic regression of the one-hot labels `[n, k]` on `x: [n, F]` ([`KIND`]): weights
/// `[F, k]` and bias `[k]` minimising `mean CE + group · Σ_j ‖W_j‖ + l2/2 · ‖W‖²` by
/// [`PROBE_STEPS`] steps of FISTA from zero (step 1/L with L from Böhning's bound on the
/// Hessian), with the analytic gradient (no autograd).
fn fit_logistic(x: &Tensor, onehot: &Tensor, group: f64, l2: f64) -> (Tensor, Tensor) {
    let (n, f, k) = (x.size()[0], x.size()[1], onehot.size()[1]);
    let opts = (KIND, Device::Cpu);
    let xt = x.tr().contiguous();
    // Böhning: ∇² mean CE ≼ ½ (Xᵀ X / n) ⊗ I, the bias column adding at most 1 to the norm.
    let lipschitz = 0.5 * (top_eigenvalue(x, &xt) / n as f64 + 1.0) + l2;
    let step = 1.0 / lipschitz;
    let (mut w, mut b) = (Tensor::zeros([f, k], opts), Tensor::zeros([k], opts));
    let (mut vw, mut vb) = (w.shallow_clone(), b.shallow_clone());
    let mut t = 1.0f64;
    tch::no_grad(|| {
        for _ in 0..PROBE_STEPS {
            let g = ((x.mm(&vw) + &vb).softmax(-1, KIND) - onehot) / n as f64;
            let gw = xt.mm(&g) + &vw * l2;
            let gb = g.sum_dim_intlist(0, false, KIND);
            let mut w_new = &vw - gw * step;
            if group > 0.0 {
                let norm = w_new.square().sum_dim_intlist(1, true, KIND).sqrt();
                let shrink = (norm.clamp_min(1e-30).reciprocal() * (-step * group) + 1.0).clamp_min(0.0);
                w_new = &w_new * shrink;
            }
            let b_new = &vb - gb * step;
            let t_new = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
            let mom = (t - 1.0) / t_new;
            vw = &w_new + (&w_new - &w) * mom;
            vb = &b_new + (&b_new - &b) * mom;
            (w, b, t) = (w_new, b_new, t_new);
        }
    });
    (w, b)
}

/// An upper estimate of the largest eigenvalue of `xᵀx` (`xt` = `xᵀ`, contiguous): 30 power
/// iterations from a fixed vector, times 1.25 (power iteration approaches from below).
fn top_eigenvalue(x: &Tensor, xt: &Tensor) -> f64 {
    let f = x.size()[1];
    if f == 0 || x.size()[0] == 0 {
        return 0.0;
    }
    let mut v = Tensor::linspace(1.0, 2.0, f, (KIND, Device::Cpu)).view([f, 1]);
    let mut lambda = 0.0;
    for _ in 0..30 {
        let u = xt.mm(&x.mm(&v));
        lambda = u.norm().double_value(&[]) / v.norm().double_value(&[]).max(1e-300);
        if lambda == 0.0 {
            return 0.0;
        }
        v = &u / u.norm();
    }
    1.25 * lambda
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::{stream_seed, uniforms};

    /// `n` uniform labels in `0..k` and `[n, f]` Bernoulli(½) features, from the stream `key`.
    fn noise(key: u64, n: usize, f: usize, k: usize) -> (Tensor, Vec<i64>) {
        let u = Vec::<f32>::try_from(uniforms(stream_seed(key, &[1]), &[n as i64])).unwrap();
        let labels = u.iter().map(|&v| ((v * k as f32) as i64).min(k as i64 - 1)).collect();
        (uniforms(stream_seed(key, &[2]), &[n as i64, f as i64]).lt(0.5).to_kind(KIND), labels)
    }

    /// Writes the `bits`-bit code of each label into columns `cols` of `x`, each copy flipped
    /// with probability `flip` (draws from the stream `key`).
    fn plant(x: &Tensor, labels: &[i64], bits: usize, cols: &[i64], flip: f32, key: u64) -> Tensor {
        let x = x.copy();
        let y = Tensor::from_slice(labels);
        for (j, &c) in cols.iter().enumerate() {
            let bit = y.bitwise_right_shift_tensor_scalar((j % bits) as i64).bitwise_and(1).to_kind(KIND);
            let flips =
                uniforms(stream_seed(key, &[3, j as u64]), &[labels.len() as i64]).lt(f64::from(flip)).to_kind(KIND);
            let noisy = (&bit - &flips).abs();
            x.narrow(1, c, 1).copy_(&noisy.unsqueeze(1));
        }
        x
    }

    #[test]
    fn mi_probe_finds_log2_k_when_the_features_copy_the_hidden_bits() {
        // K = 4: two bits of k copied into two of 1008 noise columns (one token's bits of an HMM
        // sequence), and into every token.
        let (n, f, k) = (2048, 63 * 16, 4);
        let (x, y) = noise(1, n, f, k);
        for cols in [vec![37i64, 38], (0..63).flat_map(|t| [t * 16, t * 16 + 5]).collect()] {
            let p = probe_mi(&plant(&x, &y, 2, &cols, 0.0, 3), &y, k);
            assert!((p.mi_bits - 2.0).abs() < 0.1, "{} copies: {p:?}", cols.len());
            assert!(p.accuracy > 0.99, "{p:?}");
        }
    }

    #[test]
    fn mi_probe_is_near_zero_for_features_independent_of_the_label() {
        for (seed, f, k) in [(2u64, 63 * 16, 4), (3, 16 * 16, 4), (4, 63 * 16, 16)] {
            let (x, y) = noise(seed, 2048, f, k);
            let p = probe_mi(&x, &y, k);
            assert!(p.mi_bits.abs() < 0.05, "f {f}, K {k}: {p:?}");
        }
    }

    #[test]
    fn mi_probe_recovers_a_known_partial_information() {
        // Each of k's two bits copied once through a binary symmetric channel with flip 0.1:
        // I = 2·(1 − h(0.1)) = 1.062 bits, and the Bayes posterior is logistic in the bits.
        let (n, f, k) = (2048, 256, 4);
        let (x, y) = noise(5, n, f, k);
        let p = probe_mi(&plant(&x, &y, 2, &[10, 200], 0.1, 9), &y, k);
        let h = -(0.1f64 * 0.1f64.log2() + 0.9 * 0.9f64.log2());
        let want = 2.0 * (1.0 - h);
        assert!(p.mi_bits < want + 0.05 && p.mi_bits > want - 0.15, "want {want}: {p:?}");
    }

    #[test]
    fn mi_probe_adds_up_many_weak_copies() {
        // k's two bits copied at all 63 tokens, each copy flipped with probability 0.3: a majority
        // over 63 copies is almost never wrong, so I is nearly 2 bits; no single copy says much.
        let (n, f, k) = (2048, 63 * 16, 4);
        let (x, y) = noise(7, n, f, k);
        let cols: Vec<i64> = (0..63).flat_map(|t| [t * 16 + 2, t * 16 + 9]).collect();
        let p = probe_mi(&plant(&x, &y, 2, &cols, 0.3, 13), &y, k);
        assert!(p.mi_bits > 1.8, "{p:?}");
    }

    #[test]
    fn mi_probe_scores_each_fit_only_on_the_half_it_never_saw() {
        // The features copy k in the first half of the rows and k + 1 (mod K) in the second: a probe
        // scored on its own training half would find 2 bits; scored across, it is confidently wrong.
        let (n, f, k) = (2048, 64, 4);
        let (x, y) = noise(8, n, f, k);
        let decoy: Vec<i64> = y.iter().enumerate().map(|(i, &c)| if i < n / 2 { c } else { (c + 1) % 4 }).collect();
        let p = probe_mi(&plant(&x, &decoy, 2, &[5, 40], 0.0, 12), &y, k);
        assert!(p.mi_bits < -1.0 && p.accuracy < 0.05, "{p:?}");
    }

    #[test]
    fn mi_probe_is_deterministic() {
        let (x, y) = noise(6, 512, 64, 4);
        let x = plant(&x, &y, 2, &[3], 0.2, 11);
        assert_eq!(probe_mi(&x, &y, 4), probe_mi(&x, &y, 4));
    }

    /// Diagnostic on a trained run (`FREET_MI_RUN=dir cargo test --release --lib mi_diagnostic --
    /// --ignored --nocapture`): the plug-in I(bit; k) of every posterior bit, its maximum against
    /// the maximum under shuffled labels, and the probe's bound: is a zero bound a probe too strict?
    #[test]
    #[ignore]
    fn mi_diagnostic_on_a_trained_run() {
        let Ok(dir) = std::env::var("FREET_MI_RUN") else { return };
        let l = crate::train::checkpoint::load(std::path::Path::new(&dir), Device::Cpu).unwrap();
        let run = l.state.unwrap().run;
        let crate::data::Dataset::Task(task) = run.dataset().unwrap() else { panic!("not a task") };
        let (rows, labels, k) = hidden_examples(&task, MI_EXAMPLES).unwrap();
        let x = posterior_bit_features(&l.model, &rows, 7).unwrap();
        let plug_in_max = |labels: &[i64]| -> (f64, usize) {
            let y = Tensor::from_slice(labels);
            let onehot = y.one_hot(k as i64).to_kind(KIND); // [N, K]
            let n = labels.len() as f64;
            let ones = onehot.transpose(0, 1).matmul(&x); // [K, F] count of bit = 1 per class
            let nk = onehot.sum_dim_intlist(0, false, KIND).unsqueeze(1); // [K, 1]
            let (p1k, pk) = (
                Vec::<f32>::try_from((&ones / &nk).flatten(0, -1)).unwrap(),
                Vec::<f32>::try_from((&nk / n).flatten(0, -1)).unwrap(),
            );
            let f = x.size()[1] as usize;
            let h = |p: f64| if p <= 0.0 || p >= 1.0 { 0.0 } else { -(p * p.log2() + (1.0 - p) * (1.0 - p).log2()) };
            let mut best = (0.0, 0);
            for j in 0..f {
                let p1: f64 = (0..k).map(|c| f64::from(pk[c]) * f64::from(p1k[c * f + j])).sum();
                let cond: f64 = (0..k).map(|c| f64::from(pk[c]) * h(f64::from(p1k[c * f + j]))).sum();
                let mi = h(p1) - cond;
                if mi > best.0 {
                    best = (mi, j);
                }
            }
            best
        };
        let (m, j) = plug_in_max(&labels);
        let mut shuffled = labels.clone();
        shuffled.rotate_left(labels.len() / 3);
        let (m0, _) = plug_in_max(&shuffled);
        let live =
            Vec::<f32>::try_from(x.mean_dim(0, false, KIND)).unwrap().iter().filter(|&&p| p > 0.01 && p < 0.99).count();
        eprintln!(
            "{dir}: {} features, {live} not constant; max plug-in I(bit; k) {m:.4} bits at feature {j} (token {}, bit {}); \
             with labels shuffled {m0:.4}; probe {:?}",
            x.size()[1],
            j / l.model.latent().unwrap().mapper.bits() as usize,
            j % l.model.latent().unwrap().mapper.bits() as usize,
            probe_mi(&x, &labels, k)
        );
    }
}
