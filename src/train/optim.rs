//! AdamW (decoupled weight decay, PyTorch semantics) with explicit, saveable state; global-norm
//! gradient clipping; linear warm-up then cosine decay.
//!
//! Two deviations from plain AdamW are available for the post-sampler table E, both off by default:
//! per-group learning-rate multipliers (E, encoder), and *lazy* AdamW for E. Lazy AdamW treats each
//! row r of E as its own Adam instance that steps only when the row is touched, i.e. when its
//! gradient row (summed over the accumulation window) is non-zero: then and only then are its
//! moments updated, its decoupled decay applied and its parameters moved, and its bias correction
//! uses `t_r`, the number of times row r has been updated (saved as `row_steps.NAME`). A row
//! touched at every step therefore follows dense AdamW exactly; an untouched row stays as it is,
//! moments included.

use crate::config::{TableOptimizer, TrainConfig};
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
    /// Learning-rate multiplier of this parameter's group.
    lr_mult: f64,
    /// Lazy rows: per-row update counts `t_r` (`[rows]` f64), `None` for a dense update.
    row_steps: Option<Tensor>,
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

/// Name of the post-sampler table E.
pub const TABLE: &str = "model.latent.post_sampler.weight";

/// Whether a parameter belongs to the encoder (its block, ζ, norm and readout).
pub fn is_encoder(name: &str) -> bool {
    name.starts_with("model.latent.") && name != TABLE
}

/// Whether a parameter gets weight decay: matrices only; the embedding and the post-sampler table
/// only when `decay_embeddings`; never norm gains, ζ or the encoder's relative-offset bias.
pub fn decays(name: &str, dims: usize, decay_embeddings: bool) -> bool {
    let table = name.ends_with("embed_tokens.weight") || name.ends_with("post_sampler.weight");
    dims >= 2 && !name.ends_with("rel_bias") && (!table || decay_embeddings)
}

impl AdamW {
    /// Zero moments for every variable of `vs`.
    pub fn new(vs: &VarStore, cfg: &TrainConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, param)| {
                let table = name == TABLE;
                let lr_mult = if table {
                    cfg.post_sampler_lr_mult
                } else if name.ends_with("rel_bias") {
                    cfg.rel_bias_lr_mult
                } else if is_encoder(&name) {
                    cfg.encoder_lr_mult
                } else {
                    1.0
                };
                let lazy = table && cfg.post_sampler_optimizer == TableOptimizer::Lazy;
                Slot {
                    decay: decays(&name, param.dim(), cfg.decay_embeddings),
                    m: param.zeros_like().to_kind(Kind::Float),
                    v: param.zeros_like().to_kind(Kind::Float),
                    lr_mult,
                    row_steps: lazy.then(|| Tensor::zeros([param.size()[0]], (Kind::Double, param.device()))),
                    name,
                    param,
                }
            })
            .collect();
        AdamW { slots, steps: 0, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.adam_eps, weight_decay: cfg.weight_decay }
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the step count (its moments having been filled otherwise, e.g. by a broadcast into the
    /// tensors of [`AdamW::state`]).
    pub fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
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
                .map(|g| g.norm().to_kind(Kind::Float))
                .collect();
            // One fused reduction per tensor (no squared copy of E's gradient), then their L2 norm.
            if sq.is_empty() { 0.0 } else { Tensor::stack(&sq, 0).norm().double_value(&[]) }
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

    /// One AdamW update at learning rate `lr` (times each group's multiplier).
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let hp = Hyper { beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay };
        let step_bc = hp.step_correction(self.steps);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let lr = lr * s.lr_mult;
                let decay = s.decay && self.weight_decay > 0.0;
                match &mut s.row_steps {
                    None => hp.update(&mut s.param, &mut s.m, &mut s.v, &g, lr, decay, &step_bc),
                    Some(row_steps) => {
                        // Per-row L1 norm as one reduction (no |g| copy of the whole table); NaN ≠ 0.
                        let rows = g.norm_scalaropt_dim(1, [1i64], false).nonzero().squeeze_dim(1);
                        let t_r = row_steps.index_select(0, &rows) + 1.0;
                        let _ = row_steps.index_copy_(0, &rows, &t_r);
                        let mut p = s.param.index_select(0, &rows);
                        let mut m = s.m.index_select(0, &rows);
                        let mut v = s.v.index_select(0, &rows);
                        hp.update(
                            &mut p,
                            &mut m,
                            &mut v,
                            &g.index_select(0, &rows),
                            lr,
                            decay,
                            &hp.row_correction(&t_r),
                        );
                        let _ = s.param.index_copy_(0, &rows, &p);
                        let _ = s.m.index_copy_(0, &rows, &m);
                        let _ = s.v.index_copy_(0, &rows, &v);
                    }
                }
            }
        });
    }

    /// Moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`) plus the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), s.m.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", s.name), s.v.shallow_clone()));
            if let Some(r) = &s.row_steps {
                out.push((format!("row_steps.{}", s.name), r.shallow_clone()));
            }
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
            if let Some(dst) = &mut s.row_steps {
                let key = format!("row_steps.{}", s.name);
                let src = map.get(key.as_str()).ok_or_else(|| {
                    format!("missing tensor {key} (was the run started with train.post_sampler_optimizer = \"dense\"?)")
                })?;
                if src.size() != dst.size() {
                    return Err(format!("tensor {key} has shape {:?}, expected {:?}", src.size(), dst.size()));
                }
                tch::no_grad(|| dst.copy_(&src.to_kind(Kind::Double)));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// The AdamW constants.
struct Hyper {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

/// Adam's bias corrections `(1 − β1^t, 1 − β2^t)`: one pair per step, or one per row (lazy).
enum BiasCorrection {
    Step(f64, f64),
    Rows(Tensor, Tensor),
}

impl Hyper {
    /// Bias corrections for the global step count `t`.
    fn step_correction(&self, t: u64) -> BiasCorrection {
        BiasCorrection::Step(1.0 - self.beta1.powi(t as i32), 1.0 - self.beta2.powi(t as i32))
    }

    /// Bias corrections `[rows, 1]` for per-row update counts `t_r: [rows]` (f64).
    fn row_correction(&self, t_r: &Tensor) -> BiasCorrection {
        let bc = |beta: f64| ((t_r * beta.ln()).exp().neg() + 1.0).to_kind(Kind::Float).unsqueeze(1);
        BiasCorrection::Rows(bc(self.beta1), bc(self.beta2))
    }

    /// In place: decoupled decay (when `decay`), the moments, then the bias-corrected step.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        p: &mut Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        g: &Tensor,
        lr: f64,
        decay: bool,
        bc: &BiasCorrection,
    ) {
        if decay {
            let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
        }
        let _ = m.lerp_(g, 1.0 - self.beta1);
        let _ = v.g_mul_scalar_(self.beta2);
        let _ = v.addcmul_(&(g * (1.0 - self.beta2)), g);
        let update = match bc {
            BiasCorrection::Step(bc1, bc2) => (&*m / ((&*v / *bc2).sqrt() + self.eps)) * (lr / bc1),
            BiasCorrection::Rows(bc1, bc2) => (&*m / ((&*v / bc2).sqrt() + self.eps)) * lr / bc1,
        };
        let _ = p.g_sub_(&update.to_kind(p.kind()));
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

    /// A table named like E with `rows × 2` entries, and a config using `opt` for it.
    fn table(rows: i64, opt: TableOptimizer) -> (nn::VarStore, Tensor, TrainConfig) {
        let vs = nn::VarStore::new(Device::Cpu);
        let e = (vs.root() / "model" / "latent" / "post_sampler").var("weight", &[rows, 2], nn::Init::Const(1.0));
        let mut c = cfg();
        c.decay_embeddings = true;
        c.post_sampler_optimizer = opt;
        (vs, e, c)
    }

    #[test]
    fn lazy_adamw_equals_dense_on_rows_touched_every_step() {
        let (vs_d, e_d, c_d) = table(3, TableOptimizer::Dense);
        let (vs_l, e_l, c_l) = table(3, TableOptimizer::Lazy);
        let (mut dense, mut lazy) = (AdamW::new(&vs_d, &c_d), AdamW::new(&vs_l, &c_l));
        let g = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25, -0.5, 3.0]).view([3, 2]);
        for k in 0..5 {
            for (opt, e) in [(&mut dense, &e_d), (&mut lazy, &e_l)] {
                opt.zero_grad();
                (e * (&g * (k as f64 + 1.0))).sum(Kind::Float).backward();
                opt.step(0.1);
            }
        }
        let diff = (&e_d - &e_l).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "lazy and dense differ by {diff}");
        assert!((&e_d - 1.0).abs().max().double_value(&[]) > 0.1, "the parameters moved");
    }

    #[test]
    fn lazy_adamw_leaves_untouched_rows_alone_and_corrects_bias_per_row() {
        // Row 0 gets gradient at steps 1 and 3, row 1 only at step 3, row 2 never.
        let (vs, e, c) = table(3, TableOptimizer::Lazy);
        let mut opt = AdamW::new(&vs, &c);
        let mask = [[1.0f32, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]];
        for m in mask {
            opt.zero_grad();
            let w = Tensor::from_slice(&m).view([3, 1]) * 0.5;
            (&e * w).sum(Kind::Float).backward();
            opt.step(0.1);
        }
        // By hand: a row updated at its own counts t = 1, 2 with g = 0.5 each time, decay each update.
        let adam = |updates: i32| {
            let (mut p, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
            for t in 1..=updates {
                p *= 1.0 - 0.1 * 0.1;
                m = 0.9 * m + 0.1 * 0.5;
                v = 0.95 * v + 0.05 * 0.25;
                p -= 0.1 * (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.95f64.powi(t))).sqrt() + 1e-8);
            }
            p
        };
        for (row, updates) in [(0, 2), (1, 1), (2, 0)] {
            let got = e.double_value(&[row, 0]);
            assert!((got - adam(updates)).abs() < 1e-6, "row {row}: {got} vs {}", adam(updates));
        }
        let (state, _) = opt.state();
        let counts = &state.iter().find(|(n, _)| n.starts_with("row_steps.")).expect("row counts saved").1;
        assert_eq!(Vec::<f64>::try_from(counts).unwrap(), vec![2.0, 1.0, 0.0]);
        let m2 = &state.iter().find(|(n, _)| n.starts_with("exp_avg.")).unwrap().1;
        assert_eq!(m2.double_value(&[2, 0]), 0.0, "an untouched row keeps zero moments");
    }

    #[test]
    fn lazy_state_round_trips_and_is_required_on_load() {
        let (vs, e, c) = table(2, TableOptimizer::Lazy);
        let mut opt = AdamW::new(&vs, &c);
        opt.zero_grad();
        (&e * Tensor::from_slice(&[1.0f32, 0.0]).view([2, 1])).sum(Kind::Float).backward();
        opt.step(0.1);
        let (state, steps) = opt.state();
        let mut other = AdamW::new(&vs, &c);
        other.load_state(&state, steps).unwrap();
        assert_eq!(Vec::<f64>::try_from(&other.state().0[2].1).unwrap(), vec![1.0, 0.0]);
        let dense: Vec<_> = state.into_iter().filter(|(n, _)| !n.starts_with("row_steps.")).collect();
        let err = other.load_state(&dense, steps).unwrap_err();
        assert!(err.contains("row_steps.model.latent.post_sampler.weight"), "{err}");
    }

    #[test]
    fn learning_rate_multipliers_scale_each_group() {
        // With Adam's normalised first step, |Δp| = lr · mult for a constant gradient (no decay on vectors).
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root() / "model";
        let dec = (&root / "norm").var("weight", &[1], nn::Init::Const(0.0));
        let enc = (&root / "latent").var("zeta", &[1], nn::Init::Const(0.0));
        let tab = (&root / "latent" / "post_sampler").var("weight", &[1, 1], nn::Init::Const(0.0));
        let mut c = cfg();
        c.encoder_lr_mult = 3.0;
        c.post_sampler_lr_mult = 10.0;
        let mut opt = AdamW::new(&vs, &c);
        (dec.sum(Kind::Float) + enc.sum(Kind::Float) + tab.sum(Kind::Float)).backward();
        opt.step(0.01);
        for (t, want) in [(&dec, 0.01), (&enc, 0.03), (&tab, 0.1)] {
            let got = -t.flatten(0, -1).double_value(&[0]);
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn decay_groups() {
        assert!(decays("model.layers.0.self_attn.q_proj.weight", 2, false));
        assert!(!decays("model.norm.weight", 1, true));
        assert!(!decays("model.latent.zeta", 1, true));
        assert!(!decays("model.embed_tokens.weight", 2, false));
        assert!(decays("model.embed_tokens.weight", 2, true));
        assert!(!decays("model.latent.post_sampler.weight", 2, false));
        assert!(!decays("model.latent.rel_bias", 2, true));
    }
}
