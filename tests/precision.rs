//! bf16 compute: products in bf16, master weights, norms, loss and the Binary Mapper in
//! fp32. The bf16 model must agree with the fp32 one, train to the same loss within noise, and keep
//! every gradient and weight in fp32.

mod common;

use common::{build, max_abs, max_abs_diff, serial, tiny, tokens};
use freet::eval::to_batch;
use freet::model::config::Precision;
use freet::model::{FreeTransformer, Pass, ZSource};
use freet::train::optim::AdamW;
use tch::Kind;

fn with_precision(cfg: &freet::model::config::ModelConfig, p: Precision) -> freet::model::config::ModelConfig {
    let mut c = cfg.clone();
    c.precision = p;
    c
}

#[test]
fn bf16_forward_matches_fp32_with_the_same_weights_and_pinned_codes() {
    let _g = serial();
    let cfg = tiny(8, "1");
    let m32 = build(&cfg, 3);
    let m16 = build(&with_precision(&cfg, Precision::Bf16), 3);
    let x = tokens(5, 3, 24);
    let codes = tch::Tensor::randint(256, [3, 24], (Kind::Int64, tch::Device::Cpu));
    let a = m32.forward(&x, ZSource::Pinned(&codes), Pass::Inference);
    let b = m16.forward(&x, ZSource::Pinned(&codes), Pass::Inference);
    assert_eq!(b.logits.kind(), Kind::Float, "logits leave the head in fp32");
    let err = max_abs_diff(&a.logits, &b.logits);
    let scale = max_abs(&a.logits);
    eprintln!("max |Δlogit| bf16 vs fp32: {err:.3e} (max |logit| {scale:.3e})");
    // bf16 keeps 8 mantissa bits (relative precision 2^-8 ≈ 0.4 %) per product.
    assert!(err < 0.02 * scale, "bf16 logits differ by {err:.3e} (scale {scale:.3e})");
    assert!(err > 0.0, "the bf16 model must actually compute in bf16");
    // The encoder's bit logits are fp32, as the Binary Mapper requires.
    let post = m16.forward(&x, ZSource::Posterior { key: 1 }, Pass::Inference);
    assert_eq!(post.bit_logits.unwrap().kind(), Kind::Float);
}

#[test]
fn bf16_training_keeps_fp32_weights_and_gradients_and_matches_the_fp32_gradient() {
    let _g = serial();
    let cfg = tiny(6, "\"1/2\"");
    let m32 = build(&cfg, 4);
    let m16 = build(&with_precision(&cfg, Precision::Bf16), 4);
    let x = tokens(6, 4, 20);
    let (inp, tgt) = (x.narrow(1, 0, 19), x.narrow(1, 1, 19));
    for m in [&m32, &m16] {
        let fwd = m.forward(&inp, ZSource::Posterior { key: 9 }, Pass::Train);
        let loss = m.loss(&fwd, &tgt);
        m.backward(&fwd, &loss, 1.0);
    }
    let v32 = m32.var_store().variables();
    let v16 = m16.var_store().variables();
    let mut worst: f64 = 0.0;
    for (name, p16) in &v16 {
        assert_eq!(p16.kind(), Kind::Float, "{name} stays fp32");
        let g16 = p16.grad();
        assert!(g16.defined(), "{name} has no gradient in bf16");
        assert_eq!(g16.kind(), Kind::Float, "{name}: gradient kind");
        let g32 = v32[name].grad();
        let scale = max_abs(&g32);
        if scale > 1e-6 {
            worst = worst.max(max_abs_diff(&g16, &g32) / scale);
        }
    }
    eprintln!("worst relative gradient difference bf16 vs fp32: {worst:.4}");
    // Same codes (same key, same fp32 bit logits up to bf16 error): the gradients agree to bf16 accuracy.
    assert!(worst < 0.05, "worst relative gradient difference {worst:.3}");
}

/// Trains the tiny synthetic run for `steps` steps and returns the mean loss of the last 10.
fn train_tail_loss(p: Precision, seed: u64, steps: u64) -> f64 {
    let mut run = common::tiny_run(&["model.latent.enabled=false", "train.batch_size=16"]);
    run.model.precision = p;
    run.train.seed = seed;
    let data = run.dataset().unwrap();
    let model = FreeTransformer::new(&run.model, tch::Device::Cpu, seed).unwrap();
    let mut opt = AdamW::new(model.var_store(), &run.train);
    let mut tail = vec![];
    for step in 0..steps {
        let (x, y) = to_batch(&data.train_batch(step, 0, run.train.batch_size), tch::Device::Cpu);
        let fwd = model.forward(&x, ZSource::Posterior { key: step }, Pass::Train);
        let loss = model.loss(&fwd, &y);
        model.backward(&fwd, &loss, 1.0);
        let n = opt.grad_norm();
        opt.clip(n, 1.0);
        opt.step(3e-3);
        opt.zero_grad();
        if step + 10 >= steps {
            tail.push(loss.ce.double_value(&[]));
        }
    }
    tail.iter().sum::<f64>() / tail.len() as f64
}

#[test]
fn bf16_loss_curve_matches_fp32_within_seed_noise() {
    let _g = serial();
    let steps = 120;
    let f32a = train_tail_loss(Precision::Fp32, 1, steps);
    let f32b = train_tail_loss(Precision::Fp32, 2, steps);
    let bf = train_tail_loss(Precision::Bf16, 1, steps);
    // Learning happened (uniform over 29 symbols is ln 29 = 3.37 nats).
    assert!(f32a < 2.0 && bf < 2.0, "fp32 {f32a:.3}, bf16 {bf:.3}");
    let noise = (f32a - f32b).abs();
    let diff = (bf - f32a).abs();
    eprintln!("tail CE: fp32 seed 1 {f32a:.4}, fp32 seed 2 {f32b:.4}, bf16 seed 1 {bf:.4}");
    assert!(diff < 0.05 + 2.0 * noise, "bf16 {bf:.4} vs fp32 {f32a:.4} (seed-to-seed noise {noise:.4})");
}
