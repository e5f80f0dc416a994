//! AdamW (decoupled weight decay, PyTorch semantics) with explicit, saveable state; global-norm
//! gradient clipping; linear warm-up then cosine decay.

use crate::config::TrainConfig;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// One parameter with its Adam moments.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over every trainable tensor of a `VarStore`, in name order.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    steps: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

/// Whether a parameter gets weight decay: matrices only; the embedding and the post-sampler table
/// only when `decay_embeddings`; never norm gains or ζ.
pub fn decays(name: &str, dims: usize, decay_embeddings: bool) -> bool {
    let table = name.ends_with("embed_tokens.weight") || name.ends_with("post_sampler.weight");
    dims >= 2 && (!table || decay_embeddings)
}

impl AdamW {
    /// Zero moments for every variable of `vs`.
    pub fn new(vs: &VarStore, cfg: &TrainConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, param)| Slot {
                decay: decays(&name, param.dim(), cfg.decay_embeddings),
                m: param.zeros_like().to_kind(Kind::Float),
                v: param.zeros_like().to_kind(Kind::Float),
                name,
                param,
            })
            .collect();
        AdamW { slots, steps: 0, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.adam_eps, weight_decay: cfg.weight_decay }
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// Global L2 norm of all gradients (NaN/inf propagate).
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            let sq: Vec<Tensor> = self
                .slots
                .iter()
                .map(|s| s.param.grad())
                .filter(Tensor::defined)
                .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
                .collect();
            if sq.is_empty() { 0.0 } else { Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[]) }
        })
    }

    /// Scales gradients so that their global norm is at most `max_norm` (given the current `norm`).
    pub fn clip(&mut self, norm: f64, max_norm: f64) {
        if max_norm > 0.0 && norm > max_norm {
            let c = max_norm / (norm + 1e-6);
            tch::no_grad(|| {
                for s in &self.slots {
                    let mut g = s.param.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(c);
                    }
                }
            });
        }
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                if s.decay && self.weight_decay > 0.0 {
                    let _ = s.param.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = s.m.lerp_(&g, 1.0 - self.beta1);
                let _ = s.v.g_mul_scalar_(self.beta2);
                let _ = s.v.addcmul_(&(&g * (1.0 - self.beta2)), &g);
                let denom = (&s.v / bc2).sqrt() + self.eps;
                let update = (&s.m / denom) * (lr / bc1);
                let _ = s.param.g_sub_(&update.to_kind(s.param.kind()));
            }
        });
    }

    /// Moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`) plus the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), s.m.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", s.name), s.v.shallow_clone()));
        }
        (out, self.steps)
    }

    /// Restores moments saved by [`AdamW::state`]; every tensor must be present with its shape.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: u64) -> Result<(), String> {
        let map: std::collections::HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for s in &mut self.slots {
            for (prefix, dst) in [("exp_avg", &mut s.m), ("exp_avg_sq", &mut s.v)] {
                let key = format!("{prefix}.{}", s.name);
                let src = map.get(key.as_str()).ok_or_else(|| format!("missing tensor {key}"))?;
                if src.size() != dst.size() {
                    return Err(format!("tensor {key} has shape {:?}, expected {:?}", src.size(), dst.size()));
                }
                tch::no_grad(|| dst.copy_(&src.to_kind(Kind::Float)));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based): linear warm-up to `lr`, then cosine decay to
/// `lr · min_lr_ratio` at the last step.
pub fn learning_rate(cfg: &TrainConfig, step: u64) -> f64 {
    let (lr, min_lr) = (cfg.lr, cfg.lr * cfg.min_lr_ratio);
    if step < cfg.warmup_steps {
        return lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let decay_steps = cfg.steps.saturating_sub(cfg.warmup_steps).max(1);
    let progress = ((step - cfg.warmup_steps) as f64 / decay_steps as f64).min(1.0);
    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn};

    fn cfg() -> TrainConfig {
        toml::from_str("steps = 100\nbatch_size = 1\nlr = 0.1\nwarmup_steps = 10\nweight_decay = 0.1").unwrap()
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let c = cfg();
        assert!((learning_rate(&c, 0) - 0.01).abs() < 1e-12);
        assert!((learning_rate(&c, 9) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 10) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 100) - 0.01).abs() < 1e-12);
        assert!(learning_rate(&c, 55) < 0.1 && learning_rate(&c, 55) > 0.01);
    }

    #[test]
    fn matches_the_closed_form_adamw_update() {
        // Two steps by hand: m, v, bias correction and decoupled decay.
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 1], nn::Init::Const(1.0));
        let mut c = cfg();
        c.beta1 = 0.9;
        c.beta2 = 0.99;
        c.adam_eps = 1e-8;
        let mut opt = AdamW::new(&vs, &c);
        let (mut p, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for (t, g) in [(1, 0.5f64), (2, -0.25)] {
            opt.zero_grad();
            (&w * g).sum(Kind::Float).backward();
            opt.step(0.1);
            p *= 1.0 - 0.1 * 0.1;
            m = 0.9 * m + 0.1 * g;
            v = 0.99 * v + 0.01 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let vh = v / (1.0 - 0.99f64.powi(t));
            p -= 0.1 * mh / (vh.sqrt() + 1e-8);
            assert!((w.double_value(&[0, 0]) - p).abs() < 1e-6, "step {t}: {} vs {p}", w.double_value(&[0, 0]));
        }
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let a = vs.root().var("a", &[3], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[4], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, &cfg());
        ((&a * 3.0).sum(Kind::Float) + (&b * 4.0).sum(Kind::Float)).backward();
        let n = opt.grad_norm();
        assert!((n - (27.0f64 + 64.0).sqrt()).abs() < 1e-5);
        opt.clip(n, 1.0);
        assert!((opt.grad_norm() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn decay_groups() {
        assert!(decays("model.layers.0.self_attn.q_proj.weight", 2, false));
        assert!(!decays("model.norm.weight", 1, true));
        assert!(!decays("model.latent.zeta", 1, true));
        assert!(!decays("model.embed_tokens.weight", 2, false));
        assert!(decays("model.embed_tokens.weight", 2, true));
        assert!(!decays("model.latent.post_sampler.weight", 2, false));
    }
}
