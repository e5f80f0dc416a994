//! The Binary Mapper and post-sampler (spec §2.4–§2.5): H independent Bernoulli bits per token
//! packed LSB-first into a code `c ∈ [0, 2^H)`; the forward value is the exact one-hot, i.e.
//! `R = E[c]` (a gather); the gradient is that of the whole code distribution G (Eq. 8).
//!
//! tch has no custom autograd functions, so the fused gradient is applied by the two-phase backward
//! of [`crate::model::FreeTransformer::backward`]: [`BinaryMapper::grad_bit_logits`] turns
//! `∂loss/∂R` into `∂loss/∂o` in tiles of codes, with `O(N · tile)` scratch and never a
//! `[B, T, 2^H]` tensor.

use crate::util::rng::{Stream, uniforms_at};
use tch::{Device, Kind, Tensor};

/// Scratch budget of one `[n, 2^L]` buffer of the fused backward (fp32).
const CHUNK_BYTES: i64 = 16 << 20;

/// Sampling, packing, and the Eq. 8 gradient for `H` bits.
#[derive(Debug)]
pub struct BinaryMapper {
    bits: i64,
    /// `BITS`: the constant `[C, H]` 0/1 matrix (fp32), row c = bits of c, LSB first.
    table: Tensor,
    /// `2^h` for h in 0..H (int64), to pack bits into codes.
    powers: Tensor,
    /// `h` for h in 0..H (int64), to unpack codes into bits.
    shifts: Tensor,
    /// Codes per tile of the fused backward (a power of two; 0 = from the memory budget).
    tile: i64,
}

impl BinaryMapper {
    /// A mapper for `bits` bits; `tile` codes per tile of the fused backward (a power of two
    /// ≤ 2^H, checked by the config), 0 = the largest tile within 16 MiB of scratch.
    pub fn new(bits: usize, tile: usize, device: Device) -> Self {
        let bits = bits as i64;
        let c = 1i64 << bits;
        let shifts = Tensor::arange(bits, (Kind::Int64, device));
        let powers = Tensor::ones_like(&shifts).bitwise_left_shift(&shifts);
        let mut m = BinaryMapper { bits, table: Tensor::new(), powers, shifts, tile: tile as i64 };
        m.table = m.unpack(&Tensor::arange(c, (Kind::Int64, device))).to_kind(Kind::Float);
        m
    }

    /// H.
    pub fn bits(&self) -> i64 {
        self.bits
    }

    /// C = 2^H.
    pub fn num_codes(&self) -> i64 {
        1 << self.bits
    }

    /// The `[C, H]` bit table.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// Draws `b = (u < σ(o))` with `u ~ U[0,1)` and packs LSB-first: `[…, H]` logits → `[…]` int64
    /// codes. Never a threshold, never argmax. The uniforms come from a counter-based stream keyed
    /// by `key` (not torch's global generator), so draws are reproducible under concurrency.
    pub fn sample(&self, o: &Tensor, key: u64) -> Tensor {
        self.sample_at(o, key, 0)
    }

    /// [`BinaryMapper::sample`] with the uniforms taken from element `offset` of the stream on:
    /// rows `r..` of a batch drawn alone get the draws they get in the whole batch when `offset`
    /// is `r·T·H`.
    pub fn sample_at(&self, o: &Tensor, key: u64, offset: u64) -> Tensor {
        tch::no_grad(|| {
            let p = o.detach().to_kind(Kind::Float).sigmoid();
            let u = uniforms_at(key, offset, &p.size()).to_device(p.device());
            self.pack(&u.lt_tensor(&p))
        })
    }

    /// Packs `[…, H]` bits (bool or 0/1) into `[…]` int64 codes, LSB first.
    pub fn pack(&self, bits: &Tensor) -> Tensor {
        (bits.to_kind(Kind::Int64) * &self.powers).sum_dim_intlist(-1, false, Kind::Int64)
    }

    /// Unpacks `[…]` codes into `[…, H]` 0/1 int64 bits.
    pub fn unpack(&self, codes: &Tensor) -> Tensor {
        codes.unsqueeze(-1).bitwise_right_shift(&self.shifts).bitwise_and(1)
    }

    /// Uniform prior codes for positions `pos..pos+t` of each sequence, keyed by
    /// `(seed, seq_id, position)`: independent of batch layout and of caching.
    pub fn prior_codes(&self, seed: u64, seq_ids: &[u64], pos: i64, t: i64, device: Device) -> Tensor {
        let mask = (1u64 << self.bits) - 1;
        let codes: Vec<i64> = seq_ids
            .iter()
            .flat_map(|&s| (pos..pos + t).map(move |p| (Stream::PriorCodes.seed(seed, &[s, p as u64]) & mask) as i64))
            .collect();
        Tensor::from_slice(&codes).view([seq_ids.len() as i64, t]).to_device(device)
    }

    /// `log G[n, c] = Σ_h bit(c,h)·o[n,h] − Σ_h softplus(o[n,h])` for `o: [n, H]` (fp32).
    pub fn log_code_probs(&self, o: &Tensor) -> Tensor {
        let k = o.kind();
        o.matmul(&self.table.to_kind(k).tr()) - o.softplus().sum_dim_intlist(-1, true, k)
    }

    /// The fused Eq. 8 backward: given bit logits `o: [N, H]`, the table `E: [C, D]` and
    /// `δR = ∂loss/∂R: [N, D]`, returns `∂loss/∂o: [N, H]`:
    /// `gc = δR·Eᵀ; w = G ⊙ gc; δo = w·BITS − p ⊙ Σ_c w`. Computed in fp32 (f64 when `o` is f64,
    /// for tests), whatever the model's compute dtype.
    ///
    /// Tiled over codes, so that E streams through the cache once per call: a tile is the `2^L`
    /// codes that share their high `H − L` bits, and G factorises over bits,
    /// `G[n, j·2^L + i] = A[n, i]·B[n, j]` with `A` the distribution of the low L bits and `B` that
    /// of the high ones. `A: [N, 2^L]` and `B: [N, 2^(H−L)]` are computed once; each tile is one
    /// full-width GEMM `δR·E_jᵀ`, one product with `A`, and one `[N, 2^L] × [2^L, L + 1]` reduction
    /// (low-bit sums and the row sum), weighted by `B[:, j]`. Scratch is two `[N, 2^L]` buffers and
    /// never a `[N, 2^H]` one.
    pub fn grad_bit_logits(&self, o: &Tensor, e: &Tensor, delta_r: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let k = if o.kind() == Kind::Double { Kind::Double } else { Kind::Float };
            let opts = (k, o.device());
            let (o, e, dr) = (o.detach().to_kind(k), e.detach().to_kind(k), delta_r.to_kind(k));
            let (n, h) = (o.size()[0], self.bits);
            let low = self.tile_bits(n);
            let (ct, tiles) = (1i64 << low, 1i64 << (h - low));
            let table = self.table.to_kind(k);
            // Codes 0..2^L carry every low-bit pattern; codes 0..2^(H−L) every high-bit pattern.
            let bits_low = table.narrow(0, 0, ct).narrow(1, 0, low);
            let bits_high = table.narrow(0, 0, tiles).narrow(1, 0, h - low);
            let factor = |o_part: &Tensor, bits: &Tensor| {
                (o_part.mm(&bits.tr()) - o_part.softplus().sum_dim_intlist(-1, true, k)).exp()
            };
            let a = factor(&o.narrow(1, 0, low), &bits_low); // [N, 2^L]
            let b = factor(&o.narrow(1, low, h - low), &bits_high); // [N, 2^(H−L)]
            let reduce = Tensor::cat(&[bits_low, Tensor::ones([ct, 1], opts)], 1); // [2^L, L + 1]
            let mut w = Tensor::empty([n, ct], opts);
            let mut acc_low = Tensor::zeros([n, low], opts);
            let row_sums = Tensor::empty([n, tiles], opts); // Σ_i A·gc per tile, before B
            for j in 0..tiles {
                let _ = dr.mm_out(&w, &e.narrow(0, j * ct, ct).tr());
                let _ = w.g_mul_(&a);
                let us = w.mm(&reduce);
                acc_low += us.narrow(1, 0, low) * b.narrow(1, j, 1);
                row_sums.narrow(1, j, 1).copy_(&us.narrow(1, low, 1));
            }
            let weighted = row_sums * &b; // Σ_{c in tile j} w_c
            let acc_high = weighted.mm(&bits_high);
            let s = weighted.sum_dim_intlist(-1, true, k);
            Tensor::cat(&[acc_low, acc_high], 1) - o.sigmoid() * s
        })
    }

    /// L, the low bits per tile of the fused backward: the configured tile, else the largest
    /// `2^L ≤ 2^H` whose `[n, 2^L]` fp32 scratch buffer fits in 16 MiB (at least 1 bit).
    /// Bytes of fp32 scratch the fused Eq. 8 backward allocates for `n` tokens: the factors
    /// `A: [n, 2^L]` and `B: [n, 2^(H−L)]`, the tile buffer `[n, 2^L]`, the per-tile row sums
    /// `[n, 2^(H−L)]`, the low-bit sums and reduction `[n, 2L + 1]` and the result `[n, H]`.
    pub fn scratch_bytes(&self, n: i64) -> i64 {
        let low = self.tile_bits(n);
        4 * n * (2 * (1 << low) + 2 * (1 << (self.bits - low)) + 2 * low + 1 + self.bits)
    }

    fn tile_bits(&self, n: i64) -> i64 {
        if self.tile > 0 {
            return self.tile.trailing_zeros() as i64;
        }
        let fit = (CHUNK_BYTES / (4 * n.max(1))).max(2);
        (63 - fit.leading_zeros() as i64).clamp(1, self.bits)
    }

    /// The usual autodiff formulation `R = (Y + (G − sg(G)))·E` with the whole `[…, C]` G and
    /// one-hot Y materialised. Same estimator as the fused path; `O(B·T·C)` memory.
    pub fn dense_post_sampler(&self, o: &Tensor, codes: &Tensor, e: &Tensor) -> Tensor {
        let g = self.log_code_probs(&o.to_kind(Kind::Float)).exp();
        let y = codes.one_hot(self.num_codes()).to_kind(Kind::Float);
        // Bracketed as Y + (G − sg(G)): the bracket is exactly 0, so the value is exactly Y.
        let m = y + (&g - g.detach());
        m.matmul(&e.to_kind(Kind::Float)).to_kind(e.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(bits: usize) -> BinaryMapper {
        BinaryMapper::new(bits, 0, Device::Cpu)
    }

    #[test]
    fn table_is_lsb_first() {
        let m = mapper(3);
        let t: Vec<f32> = Vec::try_from(m.table().flatten(0, -1)).unwrap();
        // code 6 = 0b110 → bits (h0, h1, h2) = (0, 1, 1)
        assert_eq!(&t[18..21], &[0.0, 1.0, 1.0]);
        let codes = Tensor::from_slice(&[0i64, 5, 7, 6]);
        let back = m.pack(&m.unpack(&codes));
        assert_eq!(Vec::<i64>::try_from(back).unwrap(), vec![0, 5, 7, 6]);
    }

    #[test]
    fn sampling_is_a_bernoulli_not_a_threshold() {
        // Spec §8.5: with every logit at 0, sampled bits have mean 0.5 ± 0.01 over 1e5 draws.
        let m = mapper(4);
        let o = Tensor::zeros([25_000, 4], (Kind::Float, Device::Cpu));
        let bits = m.unpack(&m.sample(&o, 11)).to_kind(Kind::Float);
        let mean = bits.mean(Kind::Float).double_value(&[]);
        assert!((mean - 0.5).abs() < 0.01, "mean bit {mean}");
        // Saturated logits give the exact pattern.
        let o = Tensor::from_slice(&[30.0f32, -30.0, 30.0, 30.0]).view([1, 4]);
        assert_eq!(m.sample(&o, 12).int64_value(&[0]), 0b1101);
    }

    #[test]
    fn code_distribution_sums_to_one() {
        let m = mapper(4);
        let o = Tensor::randn([5, 4], (Kind::Float, Device::Cpu)) * 3.0;
        let s = m.log_code_probs(&o).exp().sum_dim_intlist(-1, false, Kind::Float);
        assert!(s.allclose(&Tensor::ones([5], (Kind::Float, Device::Cpu)), 1e-5, 1e-6, false));
    }

    #[test]
    fn prior_codes_depend_on_sequence_and_position_only() {
        let m = mapper(16);
        let a = m.prior_codes(3, &[0, 1], 0, 6, Device::Cpu);
        let b = m.prior_codes(3, &[1], 2, 4, Device::Cpu);
        assert!(a.get(1).narrow(0, 2, 4).equal(&b.get(0)));
        assert!(!a.get(0).equal(&a.get(1)));
        let max = a.max().int64_value(&[]);
        assert!(max < 65_536 && a.min().int64_value(&[]) >= 0);
    }

    /// Spec §8.7: the fused gradient equals autodiff of the enumerated soft expression `Eᵀ·G(o)`,
    /// equals the analytic per-code formula, and matches finite differences, in f64.
    #[test]
    fn fused_gradient_matches_autodiff_analytic_and_finite_differences() {
        let opts = (Kind::Double, Device::Cpu);
        for bits in [1usize, 2, 3, 4] {
            let m = mapper(bits);
            let c = 1i64 << bits;
            let (n, d) = (7i64, 5i64);
            let o = (Tensor::randn([n, bits as i64], opts) * 2.0).set_requires_grad(true);
            let e = Tensor::randn([c, d], opts);
            let w = Tensor::randn([n, d], opts); // δR
            let table = m.table().to_kind(Kind::Double);
            // Autodiff of the enumerated soft expression ⟨w, Eᵀ G(o)⟩.
            let log_g = o.matmul(&table.tr()) - o.softplus().sum_dim_intlist(-1, true, Kind::Double);
            let soft = log_g.exp().matmul(&e);
            let f = (&soft * &w).sum(Kind::Double);
            let auto = Tensor::run_backward(&[&f], &[&o], false, false).remove(0);
            // The fused tiled path (fp32 internally), at every tile size from one code to all.
            for tile in (0..=bits).map(|l| 1usize << l) {
                let m = BinaryMapper::new(bits, tile, Device::Cpu);
                let fused =
                    m.grad_bit_logits(&o.to_kind(Kind::Float), &e.to_kind(Kind::Float), &w.to_kind(Kind::Float));
                assert!(
                    fused.to_kind(Kind::Double).allclose(&auto, 1e-4, 1e-5, false),
                    "H={bits}, tile {tile}: fused {fused} vs autodiff {auto}"
                );
                // The same fused function run in f64, to the spec's 1e-6.
                let fused64 = m.grad_bit_logits(&o.detach(), &e, &w);
                let err = (&fused64 - &auto).abs().max().double_value(&[]);
                assert!(err < 1e-6, "H={bits}, tile {tile}: f64 fused error {err}");
            }
            // Analytic: Σ_c g_c G_c (bit(c,h) − p_h).
            let g = w.matmul(&e.tr()); // [n, C]
            let gp = log_g.detach().exp();
            let p = o.detach().sigmoid();
            let analytic = (&g * &gp).matmul(&table) - &p * (&g * &gp).sum_dim_intlist(-1, true, Kind::Double);
            assert!(analytic.allclose(&auto, 1e-10, 1e-10, false), "H={bits}: analytic");
            // Finite differences on one token and bit.
            let eps = 1e-6;
            let f_at = |delta: f64| -> f64 {
                let od = o.detach().copy();
                let _ = od.get(2).get(0).g_add_scalar_(delta);
                let lg = od.matmul(&table.tr()) - od.softplus().sum_dim_intlist(-1, true, Kind::Double);
                (lg.exp().matmul(&e) * &w).sum(Kind::Double).double_value(&[])
            };
            let fd = (f_at(eps) - f_at(-eps)) / (2.0 * eps);
            let a = auto.double_value(&[2, 0]);
            assert!((fd - a).abs() < 1e-6, "H={bits}: fd {fd} vs {a}");
        }
    }

    /// At H = 12 with confident bits (|o| up to 12, G spread over few codes) the tiled backward
    /// equals the analytic `Σ_c g_c G_c (bit(c,h) − p_h)` over the full `[N, 2^H]` G, in f64, for
    /// the automatic tile and three explicit ones.
    #[test]
    fn tiled_backward_equals_the_full_formula_at_h12() {
        let opts = (Kind::Double, Device::Cpu);
        let (bits, n, d) = (12usize, 37i64, 9i64);
        let c = 1i64 << bits;
        tch::manual_seed(5);
        let o = Tensor::randn([n, bits as i64], opts) * 4.0;
        let e = Tensor::randn([c, d], opts);
        let w = Tensor::randn([n, d], opts);
        let m = mapper(bits);
        let table = m.table().to_kind(Kind::Double);
        let g = w.matmul(&e.tr()) * m.log_code_probs(&o).exp();
        let want = g.matmul(&table) - o.sigmoid() * g.sum_dim_intlist(-1, true, Kind::Double);
        for tile in [0usize, 2, 64, 4096] {
            let got = BinaryMapper::new(bits, tile, Device::Cpu).grad_bit_logits(&o, &e, &w);
            let err = (&got - &want).abs().max().double_value(&[]);
            assert!(err < 1e-10, "tile {tile}: error {err}");
        }
    }

    #[test]
    fn dense_post_sampler_forward_is_exactly_the_gather() {
        // Spec §8.10: forward R equals E[c] bitwise; the one-hot holds only exact 0 and 1.
        let m = mapper(4);
        let o = Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu)) * 4.0;
        let codes = m.sample(&o, 13);
        let e = Tensor::randn([16, 8], (Kind::Float, Device::Cpu));
        let dense = m.dense_post_sampler(&o, &codes, &e);
        let gather = e.index_select(0, &codes.flatten(0, -1)).view([2, 3, 8]);
        assert!(dense.equal(&gather));
    }
}
