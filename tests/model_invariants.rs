//! Integration tests of the model invariants of spec §8 (pitfalls 1, 2, 3, 5, 7, 8 and 13), on tiny
//! CPU models, through the public API only.

mod common;

use common::*;
use freet::model::config::{MapperGrad, ModelConfig};
use freet::model::layers::{AttnMask, KvInput};
use freet::model::{FreeTransformer, Pass, ZSource};
use std::collections::HashMap;
use std::f64::consts::LN_2;
use tch::{Device, Kind, Tensor};

// ---------------------------------------------------------------------------------------------
// Independent reference pieces, written from the spec with plain tensor ops.
// ---------------------------------------------------------------------------------------------

fn var(model: &FreeTransformer, name: &str) -> Tensor {
    model.var_store().variables().get(name).unwrap_or_else(|| panic!("no parameter named {name}")).shallow_clone()
}

/// `x / sqrt(mean(x²) + eps) · g`.
fn rms(x: &Tensor, g: &Tensor, eps: f64) -> Tensor {
    let k = x.kind();
    x / (x.square().mean_dim(-1, true, k) + eps).sqrt() * g
}

/// Where a (buggy) implementation could put `R` in the injection block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Inject {
    /// Spec §2.5: `nq = RMSNorm(X)`, `nkv = RMSNorm(X + R)`, residual `X`.
    Spec,
    /// R also reaches the queries.
    IntoQueries,
    /// R added to the residual stream (and so to queries and K/V).
    IntoResidual,
    /// K/V from raw `X + R`, skipping the pre-norm.
    RawKv,
}

/// `block[m]` of spec §2.1/§2.5 written out: explicit GQA (query head j reads KV head j/(nq/nkv)),
/// explicit causal softmax, SwiGLU.
fn reference_block_m(model: &FreeTransformer, x: &Tensor, r: &Tensor, how: Inject) -> Tensor {
    let cfg = model.config();
    let m = cfg.inject_after();
    let (nh, nkv, dh) = (cfg.n_heads as i64, cfg.n_kv_heads as i64, cfg.head_dim() as i64);
    let (b, t, d) = x.size3().unwrap();
    let pre = format!("model.layers.{m}");
    let vars = model.var_store().variables();
    let w = |n: &str| vars[&format!("{pre}.{n}.weight")].shallow_clone();
    let g_attn = w("input_layernorm");
    let eps = cfg.norm_eps;
    let xr = x + r;
    let resid = if how == Inject::IntoResidual { xr.shallow_clone() } else { x.shallow_clone() };
    let nq = match how {
        Inject::IntoQueries | Inject::IntoResidual => rms(&xr, &g_attn, eps),
        _ => rms(x, &g_attn, eps),
    };
    let nkv_states = match how {
        Inject::RawKv => xr.shallow_clone(),
        _ => rms(&xr, &g_attn, eps),
    };
    let heads = |z: &Tensor, proj: &str, n: i64| {
        z.linear::<Tensor>(&w(&format!("self_attn.{proj}")), None).view([b, t, n, dh]).transpose(1, 2)
    };
    let q = model.rope().apply(&heads(&nq, "q_proj", nh), 0);
    let k = model.rope().apply(&heads(&nkv_states, "k_proj", nkv), 0).repeat_interleave_self_int(nh / nkv, 1, None);
    let v = heads(&nkv_states, "v_proj", nkv).repeat_interleave_self_int(nh / nkv, 1, None);
    let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt();
    let future = Tensor::ones([t, t], (Kind::Bool, x.device())).triu(1);
    let att = scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, x.kind()).matmul(&v);
    let att = att.transpose(1, 2).reshape([b, t, d]).linear::<Tensor>(&w("self_attn.o_proj"), None);
    let h = resid + att;
    let u = rms(&h, &w("post_attention_layernorm"), eps);
    let mlp = (u.linear::<Tensor>(&w("mlp.gate_proj"), None).silu() * u.linear::<Tensor>(&w("mlp.up_proj"), None))
        .linear::<Tensor>(&w("mlp.down_proj"), None);
    h + mlp
}

/// Logits from `X_m` and `R`: the reference `block[m]`, then the library's (baseline) blocks
/// `m+1..L`, then the final RMSNorm and untied output projection.
fn reference_logits(model: &FreeTransformer, x_m: &Tensor, r: &Tensor, how: Inject) -> Tensor {
    let m = model.config().inject_after();
    let mut x = reference_block_m(model, x_m, r, how);
    for blk in &model.blocks()[m + 1..] {
        x = blk.forward(&x, KvInput::Same, AttnMask::Causal, model.rope(), 0, None);
    }
    rms(&x, &var(model, "model.norm.weight"), model.config().norm_eps)
        .linear::<Tensor>(&var(model, "lm_head.weight"), None)
}

/// The gather `R = E[c]`.
fn gather_r(model: &FreeTransformer, codes: &Tensor) -> Tensor {
    let e = &model.latent().unwrap().post_sampler;
    let (b, t) = codes.size2().unwrap();
    e.index_select(0, &codes.reshape([-1])).view([b, t, -1])
}

fn random_codes(model: &FreeTransformer, seed: i64, b: i64, t: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randint(model.latent().unwrap().mapper.num_codes(), [b, t], (Kind::Int64, Device::Cpu))
}

fn grads(model: &FreeTransformer) -> HashMap<String, Tensor> {
    model.var_store().variables().into_iter().map(|(k, v)| (k, v.grad())).collect()
}

// ---------------------------------------------------------------------------------------------
// §8.1: the encoder has positions and is non-causal; the decoder is causal.
// ---------------------------------------------------------------------------------------------

#[test]
fn encoder_bit_logits_depend_on_position_and_on_future_tokens() {
    let _g = serial();
    let model = build(&tiny(4, "\"1/8\""), 11);
    let (b, t) = (2, 16);
    let toks = tokens(1, b, t);
    tch::manual_seed(0);
    let o = model.forward(&toks, ZSource::Posterior { key: 0 }, Pass::Inference).bit_logits.expect("the encoder ran");
    assert_eq!(o.size(), [b, t, 4]);
    assert_eq!(o.kind(), Kind::Float, "bit logits are fp32 (spec §2.6)");
    // Pairwise max_h |o_t − o_t'| for every t ≠ t'.
    let diff = (o.unsqueeze(2) - o.unsqueeze(1)).abs().amax([-1i64].as_slice(), false); // [B, T, T]
    let off_diag = Tensor::eye(t, (Kind::Bool, Device::Cpu)).logical_not();
    let pair = diff.masked_select(&off_diag.unsqueeze(0).expand([b, t, t], false));
    let (max_pair, min_pair) = (pair.max().double_value(&[]), pair.min().double_value(&[]));
    eprintln!("encoder: max_(t≠t') |o_t − o_t'| = {max_pair:.3e}, min over pairs = {min_pair:.3e}");
    assert!(max_pair > 1e-4, "every position has the same posterior: max pair difference {max_pair:.3e}");
    assert!(min_pair > 0.0, "two positions share bitwise-identical bit logits");

    // Non-causal: changing only the last token moves the logits at position 0 (and everywhere).
    let toks2 = toks.copy();
    let _ = toks2.get(0).get(t - 1).fill_((toks.int64_value(&[0, t - 1]) + 1) % VOCAB);
    let o2 = model.forward(&toks2, ZSource::Posterior { key: 0 }, Pass::Inference).bit_logits.unwrap();
    let d0 = max_abs_diff(&o.get(0).get(0), &o2.get(0).get(0));
    eprintln!("encoder: change of o_0 after editing the last token = {d0:.3e}");
    assert!(d0 > 1e-6, "o at position 0 ignores the last token (causal encoder?): {d0:.3e}");
    // The other row is untouched.
    assert!(o.get(1).equal(&o2.get(1)), "editing row 0 changed row 1's bit logits");
}

#[test]
fn baseline_and_pinned_free_transformer_are_causal() {
    let _g = serial();
    let cfg = tiny(4, "\"1/8\"");
    let ft = build(&cfg, 12);
    let base = build(&baseline_of(&cfg), 12);
    let (b, t) = (2, 12);
    let toks = tokens(2, b, t);
    let toks2 = toks.copy();
    for row in 0..b {
        let _ = toks2.get(row).get(t - 1).fill_((toks.int64_value(&[row, t - 1]) + 5) % VOCAB);
    }
    let z = random_codes(&ft, 3, b, t);
    let cases: [(&str, &FreeTransformer, ZSource); 2] =
        [("baseline", &base, ZSource::Pinned(&z)), ("pinned Free Transformer", &ft, ZSource::Pinned(&z))];
    for (name, model, latents) in cases {
        let a = model.forward(&toks, latents, Pass::Inference).logits;
        let c = model.forward(&toks2, latents, Pass::Inference).logits;
        assert!(
            a.narrow(1, 0, t - 1).equal(&c.narrow(1, 0, t - 1)),
            "{name}: editing the last token changed earlier logits (max {:.3e})",
            max_abs_diff(&a.narrow(1, 0, t - 1), &c.narrow(1, 0, t - 1))
        );
        assert!(!a.select(1, t - 1).equal(&c.select(1, t - 1)), "{name}: the last position ignores its token");
    }
}

// ---------------------------------------------------------------------------------------------
// §8.2 and §8.13: R enters only the keys/values of block[m], through the attention pre-norm.
// ---------------------------------------------------------------------------------------------

#[test]
fn zeroing_block_m_attention_output_makes_logits_independent_of_z() {
    let _g = serial();
    let model = build(&tiny(4, "\"1/8\""), 21);
    let m = model.config().inject_after();
    let toks = tokens(4, 2, 10);
    let z1 = random_codes(&model, 5, 2, 10);
    let z2 = (&z1 + 1).remainder(16);
    let before1 = model.forward(&toks, ZSource::Pinned(&z1), Pass::Inference).logits;
    let before2 = model.forward(&toks, ZSource::Pinned(&z2), Pass::Inference).logits;
    assert!(max_abs_diff(&before1, &before2) > 1e-5, "Z has no effect to begin with");
    zero_param(model.blocks()[m].attn.o_proj());
    let after1 = model.forward(&toks, ZSource::Pinned(&z1), Pass::Inference).logits;
    let after2 = model.forward(&toks, ZSource::Pinned(&z2), Pass::Inference).logits;
    assert!(
        after1.equal(&after2),
        "with W_o of block[m] zeroed, Z still reaches the logits (max {:.3e}): R leaks outside block[m]'s attention",
        max_abs_diff(&after1, &after2)
    );
    // Posterior Z too.
    tch::manual_seed(1);
    let post = model.forward(&toks, ZSource::Posterior { key: 1 }, Pass::Inference).logits;
    assert!(post.equal(&after1));
}

#[test]
fn zero_post_sampler_equals_the_baseline_with_the_same_seed() {
    let _g = serial();
    let cfg = tiny(4, "\"1/8\"");
    let ft = build(&cfg, 31);
    let base = build(&baseline_of(&cfg), 31);
    // Decoder params are created first: a baseline and a Free Transformer share their init.
    let fv = ft.var_store().variables();
    let bv = base.var_store().variables();
    assert!(!bv.is_empty());
    for (name, t) in &bv {
        let f = fv.get(name).unwrap_or_else(|| panic!("the Free Transformer lacks decoder parameter {name}"));
        assert!(f.equal(t), "decoder parameter {name} differs between baseline and Free Transformer");
    }
    let extra: Vec<&String> = fv.keys().filter(|k| !bv.contains_key(*k)).collect();
    assert!(extra.iter().all(|k| k.starts_with("model.latent.")), "unexpected extra parameters {extra:?}");
    assert!(extra.iter().any(|k| k.as_str() == "model.latent.post_sampler.weight"));

    zero_param(&ft.latent().unwrap().post_sampler);
    let toks = tokens(6, 3, 14);
    let want = base.forward(&toks, ZSource::Posterior { key: 0 }, Pass::Inference).logits;
    let z = random_codes(&ft, 7, 3, 14);
    let z_other = (&z * 3 + 7).remainder(16);
    tch::manual_seed(8);
    let cases = [
        ZSource::Pinned(&z),
        ZSource::Pinned(&z_other),
        ZSource::Posterior { key: 0 },
        ZSource::Prior { seed: 9, seq_ids: &[0, 1, 2] },
    ];
    for latents in cases {
        for pass in [Pass::Inference, Pass::Train] {
            let got = ft.forward(&toks, latents, pass).logits;
            assert!(
                got.equal(&want),
                "{latents:?} {pass:?}: E = 0 but logits differ from the baseline (max {:.3e})",
                max_abs_diff(&got, &want)
            );
        }
    }
}

#[test]
fn z_enters_only_the_keys_and_values_of_block_m() {
    let _g = serial();
    let mut model = build(&tiny(4, "\"1/8\""), 41);
    model.var_store_mut().double();
    let m = model.config().inject_after();
    let (b, t) = (2, 12);
    let toks = tokens(10, b, t);
    let z1 = random_codes(&model, 11, b, t);
    let z2 = random_codes(&model, 12, b, t);
    let x_m = model.trunk(&toks);
    assert_eq!(x_m.kind(), Kind::Double);
    let blk = &model.blocks()[m];
    let q = |_: &Tensor| blk.attn.queries(&blk.attn_norm.forward(&x_m), model.rope(), 0);
    assert!(q(&z1).equal(&q(&z2)));

    let l1 = model.forward(&toks, ZSource::Pinned(&z1), Pass::Inference).logits;
    let l2 = model.forward(&toks, ZSource::Pinned(&z2), Pass::Inference).logits;
    let z_effect = max_abs_diff(&l1, &l2);
    eprintln!("injection: logit change between two Z = {z_effect:.3e}");
    assert!(z_effect > 1e-4, "Z barely moves the logits ({z_effect:.3e}): the test below would be vacuous");
    for (z, logits) in [(&z1, &l1), (&z2, &l2)] {
        let r = gather_r(&model, z);
        let reference = reference_logits(&model, &x_m, &r, Inject::Spec);
        let err = max_abs_diff(logits, &reference);
        eprintln!("injection: |model − reference Algorithm 2| = {err:.3e}");
        assert!(
            err < 1e-10,
            "logits differ from the reference (queries and residual from X_m, K/V from RMSNorm(X_m + R)) by {err:.3e}"
        );
        // The reference is sharp enough to reject each misplaced injection.
        for wrong in [Inject::IntoQueries, Inject::IntoResidual, Inject::RawKv] {
            let e = max_abs_diff(logits, &reference_logits(&model, &x_m, &r, wrong));
            assert!(e > 1e-6, "the model is indistinguishable from injection variant {wrong:?} ({e:.3e})");
        }
    }
}

#[test]
fn z_at_position_t_changes_only_positions_from_t_on() {
    let _g = serial();
    let model = build(&tiny(4, "\"1/8\""), 51);
    let (b, t) = (2, 12);
    let toks = tokens(13, b, t);
    let z = random_codes(&model, 14, b, t);
    let base = model.forward(&toks, ZSource::Pinned(&z), Pass::Inference).logits;
    for p in [0, 5, t - 1] {
        let z2 = z.copy();
        let _ = z2.narrow(1, p, 1).g_add_scalar_(3).remainder_(16);
        let l = model.forward(&toks, ZSource::Pinned(&z2), Pass::Inference).logits;
        if p > 0 {
            assert!(base.narrow(1, 0, p).equal(&l.narrow(1, 0, p)), "changing Z_{p} moved logits before position {p}");
        }
        for row in 0..b {
            // The diagonal is included: position p sees R_p.
            let d = max_abs_diff(&base.get(row).get(p), &l.get(row).get(p));
            assert!(d > 1e-6, "changing Z_{p} left the logits at position {p} unchanged ({d:.3e})");
        }
    }
}

#[test]
fn injection_block_with_zero_r_is_bitwise_the_baseline_block() {
    let _g = serial();
    let model = build(&tiny(4, "\"1/8\""), 61);
    let m = model.config().inject_after();
    let blk = &model.blocks()[m];
    tch::manual_seed(15);
    let x = Tensor::randn([2, 9, 32], (Kind::Float, Device::Cpu));
    let zeros = x.zeros_like();
    let same = blk.forward(&x, KvInput::Same, AttnMask::Causal, model.rope(), 0, None);
    for (name, kv) in [("pre-norm", KvInput::AddBeforeNorm(&zeros)), ("post-norm", KvInput::AddAfterNorm(&zeros))] {
        let got = blk.forward(&x, kv, AttnMask::Causal, model.rope(), 0, None);
        assert!(got.equal(&same), "{name} injection of R = 0 is not bitwise the baseline block");
    }
    // A non-zero R goes through the block's own pre-norm (not raw X + R) and is scale-free.
    let r = Tensor::randn([2, 9, 32], (Kind::Float, Device::Cpu));
    let nq = blk.attn_norm.forward(&x);
    let nkv = blk.kv_states(&x, &nq, KvInput::AddBeforeNorm(&r));
    assert!(nkv.equal(&blk.attn_norm.forward(&(&x + &r))));
    let rms_nkv = (nkv.square().mean_dim(-1, false, Kind::Float)).sqrt();
    assert!(rms_nkv.allclose(&rms_nkv.ones_like(), 1e-3, 1e-3, false), "K/V input is not normalised");
    let got = blk.forward(&x, KvInput::AddBeforeNorm(&r), AttnMask::Causal, model.rope(), 0, None);
    assert!(max_abs_diff(&got, &same) > 1e-5, "a non-zero R has no effect");
}

// ---------------------------------------------------------------------------------------------
// §8.3: one prior code per position, uniform and independent.
// ---------------------------------------------------------------------------------------------

#[test]
fn prior_codes_are_uniform_per_position_and_independent_across_positions() {
    let _g = serial();
    let model = build(&tiny(4, "\"1/8\""), 71);
    let (b, t, c) = (1000i64, 20i64, 16i64);
    let ids: Vec<u64> = (0..b as u64).map(|i| 1000 + 7 * i).collect();
    let toks = tokens(16, b, t);
    let codes = model.forward(&toks, ZSource::Prior { seed: 2024, seq_ids: &ids }, Pass::Inference).codes.unwrap();
    assert_eq!(codes.size(), [b, t], "codes are one per position: [B, T]");
    let mapper = &model.latent().unwrap().mapper;
    assert!(codes.equal(&mapper.prior_codes(2024, &ids, 0, t, Device::Cpu)));

    let crit15 = chi_square_critical(15.0);
    let all = histogram(&codes, c);
    let chi_all = chi_square_uniform(&all);
    let mut worst = 0f64;
    for p in 0..t {
        let chi = chi_square_uniform(&histogram(&codes.select(1, p), c));
        worst = worst.max(chi);
        assert!(chi < crit15, "codes at position {p} are not uniform: χ² = {chi:.1} (df 15, critical {crit15:.1})");
    }
    assert!(chi_all < crit15, "pooled codes are not uniform: χ² = {chi_all:.1}");
    // Each bit is fair.
    let bits = mapper.unpack(&codes).to_kind(Kind::Double);
    let per_bit = Vec::<f64>::try_from(bits.reshape([-1, 4]).mean_dim(0, false, Kind::Double)).unwrap();
    assert!(per_bit.iter().all(|m| (m - 0.5).abs() < 0.02), "bit means {per_bit:?}");
    // Independence across positions: adjacent pairs are uniform over 256 joint cells...
    let pairs = codes.narrow(1, 0, t - 1) * c + codes.narrow(1, 1, t - 1);
    let chi_pairs = chi_square_uniform(&histogram(&pairs, c * c));
    let crit255 = chi_square_critical(255.0);
    assert!(chi_pairs < crit255, "adjacent codes are dependent: χ² = {chi_pairs:.1} (df 255, critical {crit255:.1})");
    // ...and uncorrelated, as are codes at one position in neighbouring sequences.
    let corr = |a: &Tensor, b: &Tensor| {
        Tensor::stack(&[a.flatten(0, -1), b.flatten(0, -1)], 0).to_kind(Kind::Double).corrcoef().double_value(&[0, 1])
    };
    let rho_pos = corr(&codes.narrow(1, 0, t - 1), &codes.narrow(1, 1, t - 1));
    let rho_seq = corr(&codes.narrow(0, 0, b - 1), &codes.narrow(0, 1, b - 1));
    eprintln!(
        "prior: χ² pooled {chi_all:.1}, worst position {worst:.1} (crit {crit15:.1}); pairs {chi_pairs:.1} \
         (crit {crit255:.1}); ρ(t,t+1) {rho_pos:.4}, ρ(seq,seq+1) {rho_seq:.4}"
    );
    assert!(rho_pos.abs() < 0.05 && rho_seq.abs() < 0.05, "correlated codes: {rho_pos}, {rho_seq}");
    // Different sequence ids get different codes; equal ids equal codes; other seeds other codes.
    assert!(!codes.get(0).equal(&codes.get(1)));
    let twins = model.forward(
        &toks.narrow(0, 0, 2),
        ZSource::Prior { seed: 2024, seq_ids: &[ids[3], ids[3]] },
        Pass::Inference,
    );
    let twins = twins.codes.unwrap();
    assert!(twins.get(0).equal(&twins.get(1)) && twins.get(0).equal(&codes.get(3)));
    let other = model.forward(&toks, ZSource::Prior { seed: 2025, seq_ids: &ids }, Pass::Inference).codes.unwrap();
    assert!(other.ne_tensor(&codes).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]) > 0.8);
}

// ---------------------------------------------------------------------------------------------
// §8.5: bits are sampled, never thresholded, in training and eval forwards.
// ---------------------------------------------------------------------------------------------

#[test]
fn posterior_bits_are_sampled_not_thresholded() {
    let _g = serial();
    let model = build(&tiny(4, "\"1/8\""), 81);
    let lat = model.latent().unwrap();
    let (b, t) = (1024, 32);
    let toks = tokens(17, b, t);
    let readout = lat.encoder.readout.copy();
    zero_param(&lat.encoder.readout);
    for (i, pass) in [Pass::Inference, Pass::Train].into_iter().enumerate() {
        tch::manual_seed(100 + i as i64);
        let fwd = model.forward(&toks, ZSource::Posterior { key: 100 + i as u64 }, pass);
        let o = fwd.bit_logits.as_ref().unwrap();
        assert_eq!(max_abs(o), 0.0, "a zero readout gives zero bit logits");
        let bits = lat.mapper.unpack(fwd.codes.as_ref().unwrap()).to_kind(Kind::Double);
        assert!(bits.numel() >= 100_000);
        let mean = bits.mean(Kind::Double).double_value(&[]);
        let per_bit = Vec::<f64>::try_from(bits.reshape([-1, 4]).mean_dim(0, false, Kind::Double)).unwrap();
        eprintln!("{pass:?}: mean of {} bits at o = 0: {mean:.4}; per bit {per_bit:?}", bits.numel());
        assert!((mean - 0.5).abs() < 0.01, "{pass:?}: bits at o = 0 average {mean}, not 0.5 ± 0.01");
        assert!(per_bit.iter().all(|m| (m - 0.5).abs() < 0.02), "{pass:?}: per-bit means {per_bit:?}");
    }
    // With moderate logits the bit frequencies follow σ(o), not 1[o > 0].
    set_param(&lat.encoder.readout, &(&readout * 40.0));
    tch::manual_seed(102);
    let fwd = model.forward(&toks, ZSource::Posterior { key: 102 }, Pass::Inference);
    let o = fwd.bit_logits.unwrap().reshape([-1, 4]).to_kind(Kind::Double);
    let bits = lat.mapper.unpack(&fwd.codes.unwrap()).reshape([-1, 4]).to_kind(Kind::Double);
    let freq = bits.mean_dim(0, false, Kind::Double);
    let p = o.sigmoid().mean_dim(0, false, Kind::Double);
    let thr = o.gt(0.0).to_kind(Kind::Double).mean_dim(0, false, Kind::Double);
    eprintln!("bit frequency {freq:?}\nmean σ(o) {p:?}\nthreshold {thr:?}");
    assert!(max_abs_diff(&freq, &p) < 0.01, "bit frequencies do not follow σ(o)");
    assert!(max_abs_diff(&thr, &p) > 0.05, "logits too small to tell sampling from thresholding");
}

// ---------------------------------------------------------------------------------------------
// §8.8: no integer cast kills the gradient; the trunk gets gradient through the encoder.
// ---------------------------------------------------------------------------------------------

#[test]
fn ce_backward_reaches_the_encoder_and_the_trunk_through_it() {
    let _g = serial();
    // κ = H bits: KL_t ≤ H·ln 2 always, so the hinge is inactive and only CE is backpropagated.
    let mut cfg = tiny(4, "4");
    cfg.latent.post_sampler_init_std = Some(0.5);
    let (b, t) = (3, 12);
    let seq = tokens(18, b, t + 1);
    let (inp, tgt) = (seq.narrow(1, 0, t).contiguous(), seq.narrow(1, 1, t).contiguous());

    let post = build(&cfg, 91);
    tch::manual_seed(19);
    let fwd = post.forward(&inp, ZSource::Posterior { key: 19 }, Pass::Train);
    let loss = post.loss(&fwd, &tgt);
    assert_eq!(loss.fb.as_ref().unwrap().double_value(&[]), 0.0, "the free-bits term is not switched off");
    post.backward(&fwd, &loss, 1.0);
    let gp = grads(&post);

    // The same codes pinned: the decoder path alone (no encoder in the graph).
    let pinned = build(&cfg, 91);
    let codes = fwd.codes.as_ref().unwrap();
    let fwd2 = pinned.forward(&inp, ZSource::Pinned(codes), Pass::Train);
    assert!(fwd2.logits.equal(&fwd.logits), "pinning the sampled codes changed the forward value");
    let loss2 = pinned.loss(&fwd2, &tgt);
    pinned.backward(&fwd2, &loss2, 1.0);
    let gd = grads(&pinned);

    let names: Vec<String> = gp.keys().cloned().collect();
    for name in &names {
        let g = &gp[name];
        assert!(g.defined() && max_abs(g) > 0.0, "{name}: no gradient from the CE backward");
    }
    for name in [
        "model.latent.readout.weight",
        "model.latent.zeta",
        "model.latent.norm.weight",
        "model.latent.encoder.self_attn.q_proj.weight",
        "model.latent.encoder.self_attn.k_proj.weight",
        "model.latent.encoder.self_attn.v_proj.weight",
        "model.latent.encoder.self_attn.o_proj.weight",
        "model.latent.encoder.mlp.down_proj.weight",
        "model.latent.post_sampler.weight",
    ] {
        let n = max_abs(&gp[name]);
        assert!(n > 1e-7, "{name}: gradient {n:.3e} — the CE gradient does not reach the encoder");
        if name != "model.latent.post_sampler.weight" {
            assert!(!gd[name].defined() || max_abs(&gd[name]) == 0.0, "{name}: gradient without the encoder");
        }
    }
    // Decoder-only parameters (upper blocks, head) and E see the same gradient either way...
    for name in &names {
        let upper = name.starts_with("model.layers.2.")
            || name.starts_with("model.layers.3.")
            || name.starts_with("model.norm.")
            || name.starts_with("lm_head.")
            || name == "model.latent.post_sampler.weight";
        if upper {
            let d = max_abs_diff(&gp[name], &gd[name]);
            assert!(d <= 1e-6 * max_abs(&gd[name]) + 1e-12, "{name}: decoder-path gradient differs by {d:.3e}");
        }
    }
    // ...while every trunk parameter also receives the encoder-path gradient.
    let mut weakest = f64::INFINITY;
    for name in names
        .iter()
        .filter(|n| n.starts_with("model.layers.0.") || n.starts_with("model.layers.1.") || n.contains("embed"))
    {
        let rel = max_abs_diff(&gp[name], &gd[name]) / max_abs(&gd[name]);
        weakest = weakest.min(rel);
        // Without the encoder path the two runs differ only by fp32 rounding (≈ 1e-7).
        assert!(rel > 1e-5, "{name}: no encoder-path gradient (relative difference {rel:.3e})");
    }
    eprintln!("trunk: smallest relative encoder-path contribution {weakest:.3e}");
}

// ---------------------------------------------------------------------------------------------
// §8.7 at model level: the fused two-phase backward equals autodiff of the dense formulation.
// ---------------------------------------------------------------------------------------------

struct Run {
    grads: HashMap<String, Tensor>,
    codes: Tensor,
    ce: Tensor,
    fb: Tensor,
}

fn run_backward(cfg: &ModelConfig, grad: MapperGrad, double: bool, inp: &Tensor, tgt: &Tensor) -> Run {
    let mut cfg = cfg.clone();
    cfg.latent.mapper_grad = grad;
    let mut model = build(&cfg, 101);
    if double {
        model.var_store_mut().double();
    }
    // Larger logits than at init (so the hinge is active and bits are far from 1/2).
    let readout = &model.latent().unwrap().encoder.readout;
    set_param(readout, &(readout * 30.0));
    tch::manual_seed(20);
    let fwd = model.forward(inp, ZSource::Posterior { key: 20 }, Pass::Train);
    let loss = model.loss(&fwd, tgt);
    model.backward(&fwd, &loss, 1.0);
    Run { grads: grads(&model), codes: fwd.codes.unwrap(), ce: loss.ce.detach(), fb: loss.fb.unwrap().detach() }
}

/// Fused vs dense: every gradient must agree elementwise (`allclose(rtol, atol)`) and norm-wise
/// (`max |Δ| ≤ norm_tol · max |g|`). In an f64 model the bit logits `o` and the whole Binary Mapper
/// stay fp32 by design (spec §2.4/§2.6), and the two paths sum over codes in different orders, so the
/// f64 comparison is limited by fp32 rounding of the mapper gradient, not by the f64 decoder.
fn compare_fused_dense(double: bool) {
    let (b, t) = (3, 10);
    let seq = tokens(21, b, t + 1);
    let (inp, tgt) = (seq.narrow(1, 0, t).contiguous(), seq.narrow(1, 1, t).contiguous());
    let (rtol, atol, norm_tol) = (1e-4, 1e-6, 3e-5);
    for bits in [3usize, 4] {
        for kappa in ["\"1/64\"".to_string(), bits.to_string()] {
            let mut cfg = tiny(bits, &kappa);
            cfg.latent.post_sampler_init_std = Some(0.5);
            // H = 4 also covers the learned relative-offset biases (encoder and injection block).
            cfg.latent.encoder_rel_bias = bits == 4;
            cfg.latent.inject_self_bias = (bits == 4).then_some(1.5);
            let fused = run_backward(&cfg, MapperGrad::Fused, double, &inp, &tgt);
            let dense = run_backward(&cfg, MapperGrad::Dense, double, &inp, &tgt);
            let tag = format!("H={bits} κ={kappa} f64={double}");
            assert!(fused.codes.equal(&dense.codes), "{tag}: the two runs sampled different bits");
            assert!(fused.ce.equal(&dense.ce) && fused.fb.equal(&dense.fb), "{tag}: loss values differ");
            let fb = fused.fb.double_value(&[]);
            if kappa.contains('/') {
                assert!(fb > 0.0, "{tag}: the hinge is inactive, FB = {fb}");
            } else {
                assert_eq!(fb, 0.0);
            }
            assert_eq!(fused.grads.len(), dense.grads.len());
            let (mut worst, mut worst_name) = (0f64, String::new());
            for (name, gf) in &fused.grads {
                let gd = &dense.grads[name];
                assert_eq!(gf.defined(), gd.defined(), "{tag}: {name} has a gradient in only one run");
                assert!(gf.defined(), "{tag}: {name} has no gradient");
                let scale = max_abs(gd);
                assert!(scale > 1e-7, "{tag}: {name}: gradient {scale:.3e} too small to compare");
                let err = max_abs_diff(gf, gd);
                let rel = err / scale;
                if rel > worst {
                    (worst, worst_name) = (rel, name.clone());
                }
                assert!(
                    rel <= norm_tol && gf.allclose(gd, rtol, atol, false),
                    "{tag}: {name}: fused and dense gradients differ by {err:.3e} (scale {scale:.3e}, relative {rel:.3e})"
                );
            }
            eprintln!("{tag}: FB = {fb:.4}; worst relative gradient difference {worst:.3e} ({worst_name})");
        }
    }
}

#[test]
fn fused_backward_equals_dense_autodiff_fp32() {
    let _g = serial();
    compare_fused_dense(false);
}

#[test]
fn fused_backward_equals_dense_autodiff_f64() {
    let _g = serial();
    compare_fused_dense(true);
}

// ---------------------------------------------------------------------------------------------
// Whole-model gradient against finite differences of the Eq. 8 surrogate (f64).
// ---------------------------------------------------------------------------------------------

/// The surrogate whose exact derivative at θ0 is the Binary Mapper estimator:
/// `F(θ) = CE(decoder(X_m(θ), R = E[c] + Eᵀ·(G(o(θ)) − G0))) + FB(o(θ))` with the codes `c` and
/// `G0 = G(o(θ0))` frozen. Written entirely in f64 with plain tensor ops plus the library's
/// blocks; `per_code` = true gives the wrong "sampled code only" straight-through instead.
fn surrogate(
    model: &FreeTransformer,
    inp: &Tensor,
    tgt: &Tensor,
    codes: &Tensor,
    g0: Option<&Tensor>,
    per_code: bool,
) -> (f64, Tensor) {
    tch::no_grad(|| {
        let lat = model.latent().unwrap();
        let enc = &lat.encoder;
        let eps = model.config().norm_eps;
        let x_m = model.trunk(inp);
        let (b, t, d) = x_m.size3().unwrap();
        let q0 = enc.zeta.view([1, 1, d]).expand([b, t, d], false);
        let y = enc.block.forward(&q0, KvInput::From(&x_m), AttnMask::Bidirectional, model.rope(), 0, None);
        let o = rms(&y, &enc.norm.weight, eps).linear::<Tensor>(&enc.readout, None);
        let table = lat.mapper.table().to_kind(Kind::Double);
        let g = (o.matmul(&table.tr()) - o.softplus().sum_dim_intlist(-1, true, Kind::Double)).exp(); // [B,T,C]
        let e = &lat.post_sampler;
        let y_onehot = codes.one_hot(lat.mapper.num_codes()).to_kind(Kind::Double);
        let dg = match g0 {
            Some(g0) if per_code => (&g - g0) * &y_onehot,
            Some(g0) => &g - g0,
            None => g.zeros_like(),
        };
        let r = (y_onehot + dg).matmul(e);
        let logits = reference_logits(model, &x_m, &r, Inject::Spec);
        let ce = -logits.log_softmax(-1, Kind::Double).gather(-1, &tgt.unsqueeze(-1), false).mean(Kind::Double);
        let kl = (o.sigmoid() * &o - o.softplus() + LN_2).sum_dim_intlist(-1, false, Kind::Double);
        let fb = (kl - model.kappa_nats()).relu().mean(Kind::Double);
        ((ce + fb).double_value(&[]), g)
    })
}

fn entry(p: &Tensor, idx: i64) -> Tensor {
    p.shallow_clone().view([-1]).get(idx)
}

#[test]
fn model_gradient_matches_finite_differences_of_the_surrogate() {
    let _g = serial();
    let (b, t) = (2, 8);
    let seq = tokens(22, b, t + 1);
    let (inp, tgt) = (seq.narrow(1, 0, t).contiguous(), seq.narrow(1, 1, t).contiguous());
    // κ = H bits: CE only (the encoder's gradient is purely the Eq. 8 estimator). κ = 1 bit: the
    // hinge is active for about half of the tokens, so a hinge applied after averaging would show.
    for kappa in ["3", "1"] {
        let mut cfg = tiny(3, kappa);
        cfg.latent.post_sampler_init_std = Some(0.5);
        let mut model = build(&cfg, 111);
        model.var_store_mut().double();
        let readout = &model.latent().unwrap().encoder.readout;
        set_param(readout, &(readout * 30.0));
        tch::manual_seed(23);
        let fwd = model.forward(&inp, ZSource::Posterior { key: 23 }, Pass::Train);
        let loss = model.loss(&fwd, &tgt);
        let codes = fwd.codes.as_ref().unwrap().shallow_clone();
        let model_loss = loss.total().double_value(&[]);
        let active = loss.kl_tok.as_ref().unwrap().gt(model.kappa_nats()).to_kind(Kind::Double).mean(Kind::Double);
        let active = active.double_value(&[]);
        if kappa == "1" {
            assert!(active > 0.2 && active < 0.8, "κ = 1 bit: fraction of active hinges {active}");
        }
        model.backward(&fwd, &loss, 1.0);

        let (f0, g0) = surrogate(&model, &inp, &tgt, &codes, None, false);
        assert!((f0 - model_loss).abs() < 1e-5 * model_loss.abs(), "reference loss {f0} vs model {model_loss}");
        let vars = model.var_store().variables();
        let unsampled = {
            let used = histogram(&codes, 8);
            used.iter().position(|&n| n == 0).map(|c| c as i64)
        };
        let mut checks: Vec<(String, i64)> = [
            "model.latent.zeta",
            "model.latent.readout.weight",
            "model.latent.norm.weight",
            "model.latent.encoder.self_attn.k_proj.weight",
            "model.latent.encoder.mlp.up_proj.weight",
            "model.latent.post_sampler.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.1.self_attn.v_proj.weight",
            "model.embed_tokens.weight",
            "model.layers.3.mlp.up_proj.weight",
        ]
        .iter()
        .map(|n| (n.to_string(), vars[*n].grad().abs().flatten(0, -1).argmax(0, false).int64_value(&[])))
        .collect();
        if let Some(c) = unsampled {
            checks.push(("model.latent.post_sampler.weight".into(), c * 32));
        }
        let h = 1e-6;
        for (name, idx) in &checks {
            let p = &vars[name.as_str()];
            let analytic = entry(&p.grad(), *idx).double_value(&[]);
            let orig = entry(p, *idx).double_value(&[]);
            let at = |delta: f64, per_code: bool| {
                tch::no_grad(|| {
                    let _ = entry(p, *idx).fill_(orig + delta);
                });
                let (f, _) = surrogate(&model, &inp, &tgt, &codes, Some(&g0), per_code);
                tch::no_grad(|| {
                    let _ = entry(p, *idx).fill_(orig);
                });
                f
            };
            let fd = (at(h, false) - at(-h, false)) / (2.0 * h);
            let err = (fd - analytic).abs();
            eprintln!("κ={kappa} {name}[{idx}]: model {analytic:+.6e}, finite difference {fd:+.6e}, error {err:.1e}");
            assert!(
                err <= 1e-5 * fd.abs() + 1e-9,
                "κ={kappa} {name}[{idx}]: model gradient {analytic:e} vs surrogate {fd:e}"
            );
            if name == "model.latent.zeta" && kappa == "3" {
                // With CE alone, the "sampled code only" straight-through is a different estimator, and
                // this test tells them apart (with the hinge active the KL term dominates ζ's gradient).
                let wrong = (at(h, true) - at(-h, true)) / (2.0 * h);
                assert!((wrong - fd).abs() > 1e-2 * fd.abs(), "per-code estimator {wrong:e} ≈ Eq. 8 {fd:e}");
            }
        }
    }
}

#[test]
fn bit_structured_post_sampler_is_linear_in_the_bits_and_gives_eq8_its_closed_form() {
    let _g = serial();
    let mut cfg = tiny(4, "1");
    cfg.latent.post_sampler_init = freet::model::config::PostSamplerInit::Bits;
    cfg.latent.post_sampler_init_std = Some(0.5);
    let model = build(&cfg, 41);
    let lat = model.latent().unwrap();
    let e = lat.post_sampler.to_kind(Kind::Double);
    let d = e.size()[1];
    // E_c = Σ_h s_h(c) W_h: flipping every bit negates a row, and flipping bit h moves a row by ±2 W_h
    // for a W_h that does not depend on the other bits.
    let mut w = Vec::new();
    for h in 0..4i64 {
        let w_h = (e.get(1 << h) - e.get(0)) / 2.0;
        for c in 0..16i64 {
            let flipped = c ^ (1 << h);
            let sign = if c & (1 << h) != 0 { 1.0 } else { -1.0 };
            let diff = (e.get(c) - e.get(flipped)) / (2.0 * sign);
            assert!(max_abs_diff(&diff, &w_h) < 1e-6, "bit {h}, code {c}: E is not linear in the bits");
        }
        w.push(w_h);
    }
    for c in 0..16i64 {
        assert!(max_abs_diff(&e.get(c), &-e.get(15 - c)) < 1e-6, "code {c}: E_c ≠ −E_(¬c)");
    }
    let w = Tensor::stack(&w, 0); // [H, D]
    // Eq. 8 through the fused backward: δo_h = 2 p_h (1 − p_h) · (δR · W_h).
    let o = Tensor::randn([5, 4], (Kind::Double, Device::Cpu));
    let delta_r = Tensor::randn([5, d], (Kind::Double, Device::Cpu));
    let got = lat.mapper.grad_bit_logits(&o, &e, &delta_r);
    let p = o.sigmoid();
    let want = &p * (1.0 - &p) * 2.0 * delta_r.matmul(&w.tr());
    let err = max_abs_diff(&got.to_kind(Kind::Double), &want);
    // E is stored in fp32, so it is linear in the bits only to fp32 rounding (~1e-7).
    assert!(err < 1e-6, "Eq. 8 on a bit-structured E: max error {err:.3e}, scale {:.3e}", max_abs(&want));
    // The per-entry spread is σ (H terms of variance σ²/H each), measured over the 16 × 32 entries.
    let std = e.std(true).double_value(&[]);
    assert!((0.25..0.75).contains(&std), "entry std {std}, want about 0.5");
}
