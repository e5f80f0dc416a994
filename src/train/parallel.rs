//! Data parallelism over c10d ranks ([`crate::dist`]): every rank holds the whole model, draws a
//! contiguous shard of every global batch, and all ranks take the same optimizer step.
//!
//! - **Batches.** Rank r of W draws rows `⌊rB/W⌋..⌊(r+1)B/W⌋` of each micro-batch of B rows, with the
//!   latent draws those rows get in the whole batch, and scales its loss by its share of the rows;
//!   the sum over ranks of the scaled gradients is then the single-process gradient.
//! - **Start.** Rank 0 initialises or resumes; parameters, optimizer moments and step counters are
//!   broadcast from it, so every rank starts from rank 0's state whatever the world size it saved.
//! - **Gradients.** Summed with one all-reduce per bucket of ≤ [`BUCKET_BYTES`] of flattened
//!   gradients (as DDP, after the whole backward, never one call per tensor). The post-sampler
//!   table E (`[2^H, D]`) gets its own path: only rows touched by some micro-batch of the step
//!   carry gradient, so the ranks first agree on the union of touched rows (a max-reduce of a
//!   `[2^H]` mask), then sum just those rows. Every rank therefore holds the same, exact E
//!   gradient, zero outside the union, and lazy AdamW (which updates rows with a non-zero
//!   gradient) updates the same rows on every rank.
//! - **Decisions.** The step's loss figures and the stop request (SIGTERM) travel in one small
//!   all-reduce, so every rank sees the global loss; gradients are identical after the reduction,
//!   so the NaN/inf guard decides the same on every rank. At each checkpoint the ranks compare a
//!   parameter checksum and stop with an error if they have drifted apart.

use crate::dist::{Backend, DistError, Group, ReduceOp, World};
use crate::model::FreeTransformer;
use crate::model::loss::LossStats;
use crate::train::checkpoint::TrainState;
use crate::train::optim::{AdamW, TABLE};
use std::ops::Range;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// Bucket size of the gradient all-reduce: 25 MiB, PyTorch DDP's `bucket_cap_mb` default.
pub const BUCKET_BYTES: usize = 25 << 20;

/// This process's part in a data-parallel run.
#[derive(Debug)]
pub struct DataParallel {
    group: Group,
    /// Where the model lives: every tensor of a collective must be there (NCCL takes CUDA tensors).
    device: Device,
}

impl DataParallel {
    /// Joins `world`: Gloo for CPU training, NCCL on `cuda:LOCAL_RANK` for CUDA. Each micro-batch's
    /// `batch_size` rows must give every rank at least one.
    pub fn join(world: &World, device: Device, batch_size: usize, timeout: Duration) -> Result<Self, DistError> {
        if batch_size < world.size {
            return Err(DistError(format!(
                "train.batch_size = {batch_size} gives some of the {} ranks no row: it must be at least WORLD_SIZE",
                world.size
            )));
        }
        let backend = match device {
            Device::Cuda(i) => Backend::Nccl(i as i32),
            _ => Backend::Gloo,
        };
        Ok(DataParallel { group: Group::join(world, backend, timeout)?, device })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.group.size()
    }

    /// The rows of a `batch`-row micro-batch this rank draws.
    pub fn shard(&self, batch: usize) -> Range<usize> {
        shard(batch, self.rank(), self.size())
    }

    /// Whether `ok` holds on every rank (one min-reduce): how ranks learn that another failed to
    /// start rather than waiting for it until the timeout.
    pub fn all_ok(&self, ok: bool) -> Result<bool, DistError> {
        let t = Tensor::from_slice(&[i64::from(ok)]).to_device(self.device);
        self.group.all_reduce("start-up status", &[&t], ReduceOp::Min)?;
        Ok(t.int64_value(&[0]) == 1)
    }

    /// Rank 0's parameters, optimizer state, step and token counts to every rank.
    pub fn broadcast_start(
        &self,
        model: &FreeTransformer,
        opt: &mut AdamW,
        state: &mut TrainState,
    ) -> Result<(), DistError> {
        let counters = Tensor::from_slice(&[state.step as i64, state.tokens_seen as i64, opt.steps() as i64])
            .to_device(self.device);
        self.group.broadcast("step counters", &[&counters], 0)?;
        let mut tensors: Vec<(String, Tensor)> = sorted_vars(model);
        tensors.extend(opt.state().0);
        tch::no_grad(|| -> Result<(), DistError> {
            for (i, bucket) in buckets(&tensors).iter().enumerate() {
                let refs: Vec<&Tensor> = bucket.iter().map(|&j| &tensors[j].1).collect();
                self.group.broadcast(&format!("parameters and optimizer state (bucket {i})"), &refs, 0)?;
            }
            Ok(())
        })?;
        let c = Vec::<i64>::try_from(&counters.to_device(Device::Cpu)).expect("three counters");
        state.step = c[0] as u64;
        state.tokens_seen = c[1] as u64;
        state.data_cursor = (state.step, 0);
        opt.set_steps(c[2] as u64);
        Ok(())
    }

    /// Sums the gradients over ranks (see the module documentation) and agrees on the step's loss
    /// figures, each rank's `stats` weighted by its `share` of the batch, and on whether any rank
    /// asked to `stop`.
    pub fn reduce_step(
        &self,
        model: &FreeTransformer,
        stats: &LossStats,
        share: f64,
        stop: bool,
    ) -> Result<(LossStats, bool), DistError> {
        let (figures, stopped) = self.reduce_stats(stats, share, stop)?;
        tch::no_grad(|| -> Result<(), DistError> {
            let vars = sorted_vars(model);
            let mut dense = Vec::with_capacity(vars.len());
            for (name, p) in &vars {
                let g = p.grad();
                if !g.defined() {
                    return Err(DistError(format!(
                        "rank {}: {name} has no gradient; data-parallel training needs every parameter in every step",
                        self.rank()
                    )));
                }
                if name == TABLE {
                    self.reduce_touched_rows(&g)?;
                } else {
                    dense.push((name.clone(), g));
                }
            }
            let bs = buckets(&dense);
            for (i, bucket) in bs.iter().enumerate() {
                let refs: Vec<&Tensor> = bucket.iter().map(|&j| &dense[j].1).collect();
                self.group.all_reduce(
                    &format!("gradients (bucket {} of {})", i + 1, bs.len()),
                    &refs,
                    ReduceOp::Sum,
                )?;
            }
            Ok(())
        })?;
        Ok((figures, stopped))
    }

    /// The global loss figures and stop decision: one sum-reduce of `[share·figures…, stop]`.
    fn reduce_stats(&self, s: &LossStats, share: f64, stop: bool) -> Result<(LossStats, bool), DistError> {
        let opt = |v: Option<f64>| v.unwrap_or(0.0);
        let mut v = vec![s.ce, s.loss, opt(s.kl_nats), opt(s.kl_bits), opt(s.free_bits), opt(s.frac_above_kappa)];
        v.extend(&s.per_bit_kl_bits);
        v.iter_mut().for_each(|x| *x *= share);
        v.push(f64::from(u8::from(stop)));
        let t = Tensor::from_slice(&v).to_device(self.device);
        self.group.all_reduce("loss figures and stop flag", &[&t], ReduceOp::Sum)?;
        let r = Vec::<f64>::try_from(&t.to_device(Device::Cpu)).expect("f64 figures");
        let keep = |orig: Option<f64>, x: f64| orig.map(|_| x);
        let out = LossStats {
            ce: r[0],
            loss: r[1],
            kl_nats: keep(s.kl_nats, r[2]),
            kl_bits: keep(s.kl_bits, r[3]),
            free_bits: keep(s.free_bits, r[4]),
            frac_above_kappa: keep(s.frac_above_kappa, r[5]),
            per_bit_kl_bits: r[6..6 + s.per_bit_kl_bits.len()].to_vec(),
        };
        Ok((out, r[r.len() - 1] > 0.0))
    }

    /// Sums E's gradient `g: [C, D]` over ranks on the union of rows any rank touched (a non-zero
    /// row, NaN included); the other rows are zero on every rank already.
    fn reduce_touched_rows(&self, g: &Tensor) -> Result<(), DistError> {
        let mask = g.ne(0.0).any_dim(1, false).to_kind(Kind::Float);
        self.group.all_reduce("E's touched rows", &[&mask], ReduceOp::Max)?;
        let rows = mask.nonzero().squeeze_dim(1);
        if rows.numel() == 0 {
            return Ok(());
        }
        let sub = g.index_select(0, &rows);
        self.group.all_reduce("E's gradient rows", &[&sub], ReduceOp::Sum)?;
        let mut g = g.shallow_clone();
        let _ = g.index_copy_(0, &rows, &sub);
        Ok(())
    }

    /// Checks that every rank holds the same parameters (a max-reduce of `±Σ` over all of them, in
    /// f64): ranks take identical steps on identical gradients, so any difference is a bug.
    pub fn check_in_sync(&self, model: &FreeTransformer, step: u64) -> Result<(), DistError> {
        let sum: f64 = tch::no_grad(|| {
            sorted_vars(model).iter().map(|(_, p)| p.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])).sum()
        });
        let t = Tensor::from_slice(&[sum, -sum]).to_device(self.device);
        self.group.all_reduce("parameter checksum", &[&t], ReduceOp::Max)?;
        let (hi, lo) = (t.double_value(&[0]), -t.double_value(&[1]));
        if hi.to_bits() != lo.to_bits() && !(hi.is_nan() && lo.is_nan()) {
            return Err(DistError(format!(
                "rank {}: the ranks' parameters differ at step {step} (checksums from {lo} to {hi}); stopped before \
                 checkpointing",
                self.rank()
            )));
        }
        Ok(())
    }
}

/// Rows `⌊rB/W⌋..⌊(r+1)B/W⌋` of a `batch`-row micro-batch: rank `rank` of `world`'s shard.
pub fn shard(batch: usize, rank: usize, world: usize) -> Range<usize> {
    (rank * batch / world)..((rank + 1) * batch / world)
}

fn sorted_vars(model: &FreeTransformer) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Consecutive runs of `tensors` (indices) of one dtype and device, each at most [`BUCKET_BYTES`]
/// (a larger tensor is a bucket of its own).
fn buckets(tensors: &[(String, Tensor)]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0usize;
    let mut key = None;
    for (i, (_, t)) in tensors.iter().enumerate() {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        let k = (t.kind(), t.device());
        match out.last_mut() {
            Some(b) if key == Some(k) && bytes + size <= BUCKET_BYTES => {
                b.push(i);
                bytes += size;
            }
            _ => {
                out.push(vec![i]);
                bytes = size;
                key = Some(k);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_disjointly_and_evenly() {
        for (batch, world) in [(8, 2), (7, 3), (5, 5), (64, 6)] {
            let parts: Vec<Range<usize>> = (0..world).map(|r| shard(batch, r, world)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[world - 1].end, batch);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn buckets_respect_the_cap_and_the_dtype() {
        let f = |n: i64| ("t".to_string(), Tensor::zeros([n], (Kind::Float, Device::Cpu)));
        let d = |n: i64| ("d".to_string(), Tensor::zeros([n], (Kind::Double, Device::Cpu)));
        let quarter = (BUCKET_BYTES / 4 / 4) as i64;
        let ts = vec![f(quarter), f(quarter), f(2 * quarter), f(1), d(1), d(1), f(5 * quarter), f(1)];
        // Two quarters and a half fill one bucket exactly; the next float starts another.
        assert_eq!(buckets(&ts), vec![vec![0, 1, 2], vec![3], vec![4, 5], vec![6], vec![7]]);
    }
}
