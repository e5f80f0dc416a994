//! Llama-style building blocks: RMSNorm, RoPE, grouped-query attention with a KV cache, SwiGLU, and
//! the generalised block of spec §2.1 (separate query and key/value sources, additive K/V term).

use crate::model::config::ModelConfig;
use std::cell::RefCell;
use std::collections::HashMap;
use tch::nn::{Init, Path};
use tch::{Device, Kind, Tensor};

/// A `[out, in]` weight initialised `N(0, std²)`, named `{name}.weight` (Hugging Face layout).
pub fn linear_weight(p: &Path, name: &str, out_dim: usize, in_dim: usize, std: f64) -> Tensor {
    (p / name).var("weight", &[out_dim as i64, in_dim as i64], Init::Randn { mean: 0.0, stdev: std })
}

/// `x` in the compute kind: cast for bf16, as it is for fp32 (an f64 model stays f64).
fn to_compute(x: &Tensor, kind: Kind) -> Tensor {
    if kind == Kind::Float || x.kind() == kind { x.shallow_clone() } else { x.to_kind(kind) }
}

/// `x·Wᵀ` computed in `kind`: for bf16 the input and the fp32 master weight are cast at use, so
/// gradients flow back to the fp32 weight; for fp32 nothing is cast (an f64 model stays f64).
/// Inside [`with_weight_cache`] the cast weight is made once per scope.
pub fn linear_in(x: &Tensor, w: &Tensor, kind: Kind) -> Tensor {
    if kind == Kind::Float {
        return x.linear::<Tensor>(w, None);
    }
    x.to_kind(kind).linear::<Tensor>(&weight_in(&[w], kind), None)
}

/// Prepared weights by (master weights' storage addresses, kind).
type WeightMap = HashMap<(Vec<usize>, Kind), Tensor>;

thread_local! {
    /// Weights prepared for inference (cast and/or concatenated), keyed by the master weights'
    /// storage addresses and the kind; `Some` only inside [`with_weight_cache`].
    static WEIGHT_CACHE: RefCell<Option<WeightMap>> = const { RefCell::new(None) };
}

/// Runs `f` without gradient tracking, with every weight's compute-kind cast (and the fused
/// projections of the decoding path: Q/K/V as one product, gate/up as one) made once for the whole
/// scope instead of at each call, as autocast's cast cache does. The weights must not change inside
/// `f` (generation, evaluation); the cache is dropped when `f` returns or unwinds. Nested scopes
/// share the outermost cache.
pub fn with_weight_cache<T>(f: impl FnOnce() -> T) -> T {
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            WEIGHT_CACHE.with(|c| *c.borrow_mut() = None);
        }
    }
    if weight_cache_active() {
        return tch::no_grad(f);
    }
    WEIGHT_CACHE.with(|c| *c.borrow_mut() = Some(HashMap::new()));
    let _scope = Scope;
    tch::no_grad(f)
}

/// True inside [`with_weight_cache`].
pub fn weight_cache_active() -> bool {
    WEIGHT_CACHE.with(|c| c.borrow().is_some())
}

/// The weights `ws` (all `[*, in]`) concatenated along their output dimension and cast to `kind`;
/// made once per [`with_weight_cache`] scope, at every call outside one.
fn weight_in(ws: &[&Tensor], kind: Kind) -> Tensor {
    let make = || {
        let w = if ws.len() == 1 { ws[0].shallow_clone() } else { Tensor::cat(ws, 0) };
        to_compute(&w, kind)
    };
    WEIGHT_CACHE.with(|c| match c.borrow_mut().as_mut() {
        None => make(),
        Some(map) => {
            let key = (ws.iter().map(|w| w.data_ptr() as usize).collect(), kind);
            map.entry(key).or_insert_with(make).shallow_clone()
        }
    })
}

/// RMSNorm with a learned gain initialised to 1.
#[derive(Debug)]
pub struct RmsNorm {
    /// The gain `g`.
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Creates `{p}.weight` of size `dim`.
    pub fn new(p: &Path, dim: usize, eps: f64) -> Self {
        RmsNorm { weight: p.var("weight", &[dim as i64], Init::Const(1.0)), eps }
    }

    /// `x / sqrt(mean(x²) + eps) · g` over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = *x.size().last().expect("rmsnorm input has a last dimension");
        x.rms_norm([d], Some(&self.weight), self.eps)
    }
}

/// Rotary position embedding tables (the rotate-half layout used by Hugging Face Llama).
#[derive(Debug)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for positions `0..max_len` and head width `head_dim`.
    pub fn new(head_dim: usize, max_len: usize, theta: f64, device: Device) -> Self {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half).map(|j| (theta.powf(-(2.0 * j as f64) / head_dim as f64)) as f32).collect();
        let inv = Tensor::from_slice(&inv);
        let t = Tensor::arange(max_len as i64, (Kind::Float, Device::Cpu));
        let freqs = t.unsqueeze(1) * inv.unsqueeze(0); // [T, half]
        let emb = Tensor::cat(&[&freqs, &freqs], 1); // [T, head_dim]
        Rope { cos: emb.cos().to_device(device), sin: emb.sin().to_device(device) }
    }

    /// Longest sequence the tables cover.
    pub fn max_len(&self) -> i64 {
        self.cos.size()[0]
    }

    /// Rotates `x: [B, heads, T, head_dim]` as positions `pos..pos+T`.
    pub fn apply(&self, x: &Tensor, pos: i64) -> Tensor {
        let t = x.size()[2];
        let hd = x.size()[3];
        let cos = self.cos.narrow(0, pos, t).to_kind(x.kind());
        let sin = self.sin.narrow(0, pos, t).to_kind(x.kind());
        let x1 = x.narrow(3, 0, hd / 2);
        let x2 = x.narrow(3, hd / 2, hd / 2);
        let rotated = Tensor::cat(&[&(-x2), &x1], 3);
        x * cos + rotated * sin
    }
}

/// Which key positions a query may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnMask {
    /// Query at position t sees keys at positions ≤ t (decoder).
    Causal,
    /// Every query sees every key (the non-causal encoder).
    Bidirectional,
}

/// Scores bias `[n_heads, tq, tk]` for queries at positions `q_pos..q_pos + tq` over keys at
/// `0..tk`: entry `[h, i, j]` is `rel[h, (j − (q_pos + i)) + centre]`, the table's value for the
/// offset s − t (offsets beyond the table's range are clamped to its ends).
pub fn offset_bias(rel: &Tensor, q_pos: i64, tq: i64, tk: i64) -> Tensor {
    let (heads, offsets) = rel.size2().expect("a relative bias table is [heads, offsets]");
    let centre = (offsets - 1) / 2;
    let (qi, kj) = position_grid(q_pos, tq, tk, rel.device());
    let idx = (kj - qi + centre).clamp(0, offsets - 1);
    rel.index_select(1, &idx.view([-1])).view([heads, tq, tk]).to_kind(at_least_f32(rel.kind()))
}

/// fp32 for reduced-precision kinds, the kind itself for fp32 and f64 (scores and softmax never
/// run below fp32).
fn at_least_f32(kind: Kind) -> Kind {
    if kind == Kind::Double { Kind::Double } else { Kind::Float }
}

/// The additive score term of a (relative-bias) attention: the bias when given, and −∞ on future
/// keys for a causal mask (query i sits at position `q_pos + i`).
fn score_bias(rel: Option<&Tensor>, mask: AttnMask, q_pos: i64, tq: i64, tk: i64, device: Device) -> Tensor {
    let bias = rel.map_or_else(|| Tensor::zeros([1, tq, tk], (Kind::Float, device)), |r| offset_bias(r, q_pos, tq, tk));
    match mask {
        AttnMask::Bidirectional => bias,
        AttnMask::Causal => {
            let (qi, kj) = position_grid(q_pos, tq, tk, device);
            bias.masked_fill(&kj.gt_tensor(&qi), f64::NEG_INFINITY)
        }
    }
}

/// Query positions `[tq, 1]` (`q_pos + i`) and key positions `[1, tk]` (`j`), int64, to broadcast
/// into masks and offsets.
fn position_grid(q_pos: i64, tq: i64, tk: i64, device: Device) -> (Tensor, Tensor) {
    let qi = Tensor::arange(tq, (Kind::Int64, device)).unsqueeze(1) + q_pos;
    (qi, Tensor::arange(tk, (Kind::Int64, device)).unsqueeze(0))
}

/// Keys and values of one attention layer for cached decoding, preallocated to `capacity`.
#[derive(Debug)]
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: i64,
}

impl LayerCache {
    /// An empty cache for `batch` sequences of up to `capacity` positions.
    pub fn new(batch: i64, n_kv: i64, capacity: i64, head_dim: i64, kind: Kind, device: Device) -> Self {
        let z = || Tensor::zeros([batch, n_kv, capacity, head_dim], (kind, device));
        LayerCache { k: z(), v: z(), len: 0 }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn append(&mut self, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        assert!(self.len + t <= self.k.size()[2], "KV cache overflow: raise its capacity");
        self.k.narrow(2, self.len, t).copy_(k);
        self.v.narrow(2, self.len, t).copy_(v);
        self.len += t;
        (self.k.narrow(2, 0, self.len), self.v.narrow(2, 0, self.len))
    }
}

/// Grouped-query self-attention without biases.
#[derive(Debug)]
pub struct Attention {
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    n_heads: i64,
    n_kv: i64,
    head_dim: i64,
    compute: Kind,
}

impl Attention {
    /// `{p}.{q,k,v,o}_proj.weight`.
    pub fn new(p: &Path, cfg: &ModelConfig) -> Self {
        let (d, dh) = (cfg.d_model, cfg.head_dim());
        let std = cfg.init_std;
        Attention {
            wq: linear_weight(p, "q_proj", cfg.n_heads * dh, d, std),
            wk: linear_weight(p, "k_proj", cfg.n_kv_heads * dh, d, std),
            wv: linear_weight(p, "v_proj", cfg.n_kv_heads * dh, d, std),
            wo: linear_weight(p, "o_proj", d, cfg.n_heads * dh, std),
            n_heads: cfg.n_heads as i64,
            n_kv: cfg.n_kv_heads as i64,
            head_dim: dh as i64,
            compute: cfg.precision.kind(),
        }
    }

    /// The kind the products run in (fp32 or bf16).
    pub fn compute(&self) -> Kind {
        self.compute
    }

    /// The output projection (tests zero it to cut a block's attention path).
    pub fn o_proj(&self) -> &Tensor {
        &self.wo
    }

    /// Query projection, heads split and rotated: `[B, n_heads, T, head_dim]`.
    pub fn queries(&self, nq: &Tensor, rope: &Rope, pos: i64) -> Tensor {
        rope.apply(&self.heads(nq, &self.wq, self.n_heads), pos)
    }

    /// `x·wᵀ` split into `n` heads: `[B, n, T, head_dim]`.
    fn heads(&self, x: &Tensor, w: &Tensor, n: i64) -> Tensor {
        let (b, t, _) = x.size3().expect("attention input is [B, T, D]");
        linear_in(x, w, self.compute).view([b, t, n, self.head_dim]).transpose(1, 2)
    }

    /// Q, K and V heads `[B, heads, T, head_dim]`, Q and K rotated for positions `pos..`. Inside a [`with_weight_cache`]
    /// scope K and V are one product with the cached `[Wk; Wv]`, and Q joins them (`[Wq; Wk; Wv]`)
    /// when queries and keys/values share their source (every block but the injection block and
    /// the encoder).
    fn projections(&self, nq: &Tensor, nkv: &Tensor, rope: &Rope, pos: i64) -> (Tensor, Tensor, Tensor) {
        if !weight_cache_active() {
            let q = rope.apply(&self.heads(nq, &self.wq, self.n_heads), pos);
            let k = rope.apply(&self.heads(nkv, &self.wk, self.n_kv), pos);
            return (q, k, self.heads(nkv, &self.wv, self.n_kv));
        }
        let (b, t, _) = nq.size3().expect("attention input is [B, T, D]");
        let tk = nkv.size()[1];
        let (dq, dkv) = (self.n_heads * self.head_dim, self.n_kv * self.head_dim);
        let split = |x: &Tensor, t: i64, n: i64| x.view([b, t, n, self.head_dim]).transpose(1, 2);
        if nq.data_ptr() == nkv.data_ptr() && nq.size() == nkv.size() {
            let w = weight_in(&[&self.wq, &self.wk, &self.wv], self.compute);
            let y = to_compute(nq, self.compute).linear::<Tensor>(&w, None);
            // Q and K are adjacent in the product: one RoPE over their heads together.
            let qk = rope.apply(&split(&y.narrow(-1, 0, dq + dkv), t, self.n_heads + self.n_kv), pos);
            let v = split(&y.narrow(-1, dq + dkv, dkv), t, self.n_kv);
            return (qk.narrow(1, 0, self.n_heads), qk.narrow(1, self.n_heads, self.n_kv), v);
        }
        let q = rope.apply(&self.heads(nq, &self.wq, self.n_heads), pos);
        let w = weight_in(&[&self.wk, &self.wv], self.compute);
        let kv = to_compute(nkv, self.compute).linear::<Tensor>(&w, None).split_with_sizes([dkv, dkv], -1);
        (q, rope.apply(&split(&kv[0], tk, self.n_kv), pos), split(&kv[1], tk, self.n_kv))
    }

    /// Key/value heads repeated to the query heads (GQA), for the written-out attention.
    fn repeat_kv(&self, x: &Tensor) -> Tensor {
        x.repeat_interleave_self_int(self.n_heads / self.n_kv, 1, None)
    }

    /// Written-out attention probabilities of queries `q` (at positions `q_pos..`) over keys `k`
    /// (at `0..`), both `[B, heads, T, head_dim]`, with the optional relative-offset table and the
    /// mask; scores and softmax run in at least fp32.
    fn probs(&self, q: &Tensor, k: &Tensor, mask: AttnMask, q_pos: i64, rel: Option<&Tensor>) -> Tensor {
        let kind = at_least_f32(q.kind());
        let k = self.repeat_kv(k);
        let scores = q.matmul(&k.transpose(-2, -1)).to_kind(kind) / (self.head_dim as f64).sqrt();
        let bias = score_bias(rel, mask, q_pos, q.size()[2], k.size()[2], q.device());
        (scores + bias).softmax(-1, kind)
    }

    /// Attention probabilities `[B, n_heads, T, T]` (fp32) of `nq` over `nkv` from position 0, with
    /// an optional relative-offset bias table (see [`offset_bias`]), for analysis (which offsets a
    /// head reads); the forward pass never materialises them.
    pub fn weights(&self, nq: &Tensor, nkv: &Tensor, mask: AttnMask, rope: &Rope, rel: Option<&Tensor>) -> Tensor {
        let q = self.queries(nq, rope, 0).to_kind(Kind::Float);
        let k = rope.apply(&self.heads(nkv, &self.wk, self.n_kv), 0).to_kind(Kind::Float);
        self.probs(&q, &k, mask, 0, rel)
    }

    /// Attention of `nq` (queries) over `nkv` (keys/values), both already normalised; positions start
    /// at `pos`. With a cache, the new keys/values are appended and attention covers the whole cache.
    /// An optional learned relative-offset bias table `rel` (`[n_heads, 2·max_len − 1]`, see
    /// [`offset_bias`]) is added to the scores; the attention is then written out (scores, softmax,
    /// values) so that the table receives its gradient.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        nq: &Tensor,
        nkv: &Tensor,
        mask: AttnMask,
        rope: &Rope,
        pos: i64,
        cache: Option<&mut LayerCache>,
        rel: Option<&Tensor>,
    ) -> Tensor {
        let (b, tq, d) = nq.size3().expect("attention input is [B, T, D]");
        let (q, k, v) = self.projections(nq, nkv, rope, pos);
        let (k, v, past) = match cache {
            Some(c) => {
                let past = c.len();
                let (k, v) = c.append(&k, &v);
                (k, v, past)
            }
            None => (k, v, 0),
        };
        let gqa = self.n_kv != self.n_heads;
        if rel.is_some() {
            let y = self.probs(&q, &k, mask, past, rel).to_kind(v.kind()).matmul(&self.repeat_kv(&v));
            return linear_in(&y.transpose(1, 2).reshape([b, tq, d]), &self.wo, self.compute);
        }
        let y = match mask {
            AttnMask::Bidirectional => {
                Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, gqa)
            }
            AttnMask::Causal if past == 0 => {
                Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, tq > 1, None, gqa)
            }
            AttnMask::Causal if tq == 1 => {
                Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, gqa)
            }
            AttnMask::Causal => {
                // Chunk after a non-empty cache: query i (position past+i) sees keys 0..=past+i.
                let (qi, kj) = position_grid(past, tq, k.size()[2], q.device());
                let allowed = kj.le_tensor(&qi);
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&allowed), 0.0, false, None, gqa)
            }
        };
        linear_in(&y.transpose(1, 2).reshape([b, tq, d]), &self.wo, self.compute)
    }
}

/// SwiGLU feed-forward: `W_down · (silu(W_gate·u) ⊙ W_up·u)`.
#[derive(Debug)]
pub struct Mlp {
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    compute: Kind,
}

impl Mlp {
    /// `{p}.{gate,up,down}_proj.weight`.
    pub fn new(p: &Path, cfg: &ModelConfig) -> Self {
        let (d, f, std) = (cfg.d_model, cfg.ffn_hidden, cfg.init_std);
        Mlp {
            gate: linear_weight(p, "gate_proj", f, d, std),
            up: linear_weight(p, "up_proj", f, d, std),
            down: linear_weight(p, "down_proj", d, f, std),
            compute: cfg.precision.kind(),
        }
    }

    /// Applies the MLP to `u`.
    /// Inside a [`with_weight_cache`] scope, gate and up are one product with the cached `[Wg; Wu]`.
    pub fn forward(&self, u: &Tensor) -> Tensor {
        let u = to_compute(u, self.compute);
        let h = if weight_cache_active() {
            let gu = u.linear::<Tensor>(&weight_in(&[&self.gate, &self.up], self.compute), None).chunk(2, -1);
            gu[0].silu() * &gu[1]
        } else {
            linear_in(&u, &self.gate, self.compute).silu() * linear_in(&u, &self.up, self.compute)
        };
        linear_in(&h, &self.down, self.compute)
    }
}

/// The key/value input of a block (spec §2.1 and §2.5).
#[derive(Debug, Clone, Copy)]
pub enum KvInput<'a> {
    /// Keys/values from the query source: the baseline block.
    Same,
    /// Keys/values from `RMSNorm_attn(xq + r)`: the injection block (Algorithm 2).
    AddBeforeNorm(&'a Tensor),
    /// Keys/values from `RMSNorm_attn(xq) + r`: the post-norm ablation.
    AddAfterNorm(&'a Tensor),
    /// Keys/values from another sequence of states (the encoder reads `X_m`).
    From(&'a Tensor),
}

/// Pre-norm Transformer block with a separate query source and key/value source; the residual
/// stream follows the query source.
#[derive(Debug)]
pub struct Block {
    /// RMSNorm before attention (applied to both sources).
    pub attn_norm: RmsNorm,
    /// Self-attention.
    pub attn: Attention,
    /// RMSNorm before the MLP.
    pub mlp_norm: RmsNorm,
    /// The feed-forward.
    pub mlp: Mlp,
}

impl Block {
    /// Hugging Face Llama names under `p`: `input_layernorm`, `self_attn`, `post_attention_layernorm`, `mlp`.
    pub fn new(p: &Path, cfg: &ModelConfig) -> Self {
        Block {
            attn_norm: RmsNorm::new(&(p / "input_layernorm"), cfg.d_model, cfg.norm_eps),
            attn: Attention::new(&(p / "self_attn"), cfg),
            mlp_norm: RmsNorm::new(&(p / "post_attention_layernorm"), cfg.d_model, cfg.norm_eps),
            mlp: Mlp::new(&(p / "mlp"), cfg),
        }
    }

    /// `block(xq, xkv, mask, kv_add)` of spec §2.1.
    pub fn forward(
        &self,
        xq: &Tensor,
        kv: KvInput,
        mask: AttnMask,
        rope: &Rope,
        pos: i64,
        cache: Option<&mut LayerCache>,
    ) -> Tensor {
        self.forward_rel(xq, kv, mask, rope, pos, cache, None)
    }

    /// [`Block::forward`] with an optional relative-offset bias table on its attention scores.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_rel(
        &self,
        xq: &Tensor,
        kv: KvInput,
        mask: AttnMask,
        rope: &Rope,
        pos: i64,
        cache: Option<&mut LayerCache>,
        rel: Option<&Tensor>,
    ) -> Tensor {
        let nq = self.attn_norm.forward(xq);
        let nkv = self.kv_states(xq, &nq, kv);
        let h = xq + self.attn.forward(&nq, &nkv, mask, rope, pos, cache, rel);
        let out = self.mlp.forward(&self.mlp_norm.forward(&h));
        h + out
    }

    /// The normalised key/value source for a given K/V input.
    pub fn kv_states(&self, xq: &Tensor, nq: &Tensor, kv: KvInput) -> Tensor {
        match kv {
            KvInput::Same => nq.shallow_clone(),
            KvInput::AddBeforeNorm(r) => self.attn_norm.forward(&(xq + r)),
            KvInput::AddAfterNorm(r) => nq + r,
            KvInput::From(x) => self.attn_norm.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside `with_weight_cache` a block (fused Q/K/V and gate/up products, cached casts) computes
    /// what it computes outside, in fp32 and bf16; the scope runs without gradients, ends with the
    /// call, and a weight changed between two scopes is seen by the second.
    #[test]
    fn weight_cache_scope_computes_the_same_block_and_sees_weight_changes() {
        for precision in ["fp32", "bf16"] {
            let cfg: ModelConfig = toml::from_str(&format!(
                "vocab_size = 29\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nffn_hidden = 64\n\
                 max_seq_len = 16\nprecision = \"{precision}\""
            ))
            .expect("test config parses");
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let block = Block::new(&(vs.root() / "b"), &cfg);
            let rope = Rope::new(cfg.head_dim(), 16, cfg.rope_theta, Device::Cpu);
            tch::manual_seed(5);
            let x = Tensor::randn([2, 7, 32], (Kind::Float, Device::Cpu));
            let run = || block.forward(&x, KvInput::Same, AttnMask::Causal, &rope, 0, None);
            let plain = tch::no_grad(run);
            let cached = with_weight_cache(|| {
                assert!(weight_cache_active());
                let y = run();
                assert!(!y.requires_grad(), "the scope runs without gradients");
                // Cached decoding inside the scope (the fused path with a KV cache) equals the whole pass.
                let mut cache = LayerCache::new(2, 2, 7, 8, cfg.precision.kind(), Device::Cpu);
                let steps: Vec<Tensor> = (0..7)
                    .map(|i| {
                        let xi = x.narrow(1, i, 1);
                        block.forward(&xi, KvInput::Same, AttnMask::Causal, &rope, i, Some(&mut cache))
                    })
                    .collect();
                let tol = if precision == "fp32" { 1e-5 } else { 0.1 };
                let diff = (Tensor::cat(&steps, 1) - &y).abs().max().double_value(&[]);
                assert!(diff < tol, "{precision}: cached decoding differs by {diff}");
                y
            });
            assert!(!weight_cache_active(), "the cache ends with the scope");
            let tol = if precision == "fp32" { 1e-5 } else { 0.05 };
            let diff = (&cached - &plain).abs().max().double_value(&[]);
            assert!(diff < tol, "{precision}: the cached scope differs by {diff}");
            // The injection block's path: queries from x, keys/values from x + r (fused K/V only).
            let r = Tensor::randn([2, 7, 32], (Kind::Float, Device::Cpu));
            let inject = || block.forward(&x, KvInput::AddBeforeNorm(&r), AttnMask::Causal, &rope, 0, None);
            let diff = (with_weight_cache(inject) - tch::no_grad(inject)).abs().max().double_value(&[]);
            assert!(diff < tol, "{precision}: the cached injection block differs by {diff}");
            // A weight changed between scopes is seen by the next scope (nothing outlives a scope).
            tch::no_grad(|| {
                let _ = block.mlp.up.shallow_clone().g_mul_scalar_(0.0);
                let _ = block.attn.wv.shallow_clone().g_mul_scalar_(20.0);
            });
            let after_plain = tch::no_grad(run);
            let after_cached = with_weight_cache(run);
            let moved = (&after_plain - &plain).abs().mean(Kind::Float).double_value(&[]);
            let stale = (&after_cached - &after_plain).abs().mean(Kind::Float).double_value(&[]);
            assert!(stale < 0.05 * moved, "{precision}: stale weights after a change ({stale} vs {moved})");
        }
    }

    /// `weights` are the probabilities the forward pass uses: `o_proj(weights · V)` is its output.
    #[test]
    fn attention_weights_reproduce_the_forward_pass() {
        let cfg: ModelConfig = toml::from_str(
            "vocab_size = 29\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nffn_hidden = 64\nmax_seq_len = 16",
        )
        .expect("test config parses");
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(&(vs.root() / "a"), &cfg);
        let rope = Rope::new(cfg.head_dim(), 16, cfg.rope_theta, Device::Cpu);
        tch::manual_seed(3);
        let (nq, nkv) = (
            Tensor::randn([2, 7, 32], (Kind::Float, Device::Cpu)),
            Tensor::randn([2, 7, 32], (Kind::Float, Device::Cpu)),
        );
        for mask in [AttnMask::Causal, AttnMask::Bidirectional] {
            let w = attn.weights(&nq, &nkv, mask, &rope, None);
            assert_eq!(w.size(), [2, 4, 7, 7]);
            let row_sums = w.sum_dim_intlist(-1, false, Kind::Float);
            assert!((row_sums - 1.0).abs().max().double_value(&[]) < 1e-5);
            if matches!(mask, AttnMask::Causal) {
                assert_eq!(w.triu(1).abs().sum(Kind::Float).double_value(&[]), 0.0);
            }
            let v = linear_in(&nkv, &attn.wv, Kind::Float)
                .view([2, 7, 2, 8])
                .transpose(1, 2)
                .repeat_interleave_self_int(2, 1, None);
            let y = linear_in(&w.matmul(&v).transpose(1, 2).reshape([2, 7, 32]), &attn.wo, Kind::Float);
            let want = attn.forward(&nq, &nkv, mask, &rope, 0, None, None);
            assert!((y - want).abs().max().double_value(&[]) < 1e-5);
        }
        // A zero table is plain attention; with a table, `weights` and the forward pass agree, and
        // cached decoding (one query at a time) equals the whole-sequence pass.
        let zero = Tensor::zeros([4, 31], (Kind::Float, Device::Cpu));
        let rel = Tensor::randn([4, 31], (Kind::Float, Device::Cpu));
        for mask in [AttnMask::Causal, AttnMask::Bidirectional] {
            let plain = attn.forward(&nq, &nkv, mask, &rope, 0, None, None);
            let zeroed = attn.forward(&nq, &nkv, mask, &rope, 0, None, Some(&zero));
            assert!((zeroed - &plain).abs().max().double_value(&[]) < 1e-5);
            let w = attn.weights(&nq, &nkv, mask, &rope, Some(&rel));
            let v = linear_in(&nkv, &attn.wv, Kind::Float)
                .view([2, 7, 2, 8])
                .transpose(1, 2)
                .repeat_interleave_self_int(2, 1, None);
            let y = linear_in(&w.matmul(&v).transpose(1, 2).reshape([2, 7, 32]), &attn.wo, Kind::Float);
            let got = attn.forward(&nq, &nkv, mask, &rope, 0, None, Some(&rel));
            assert!((y - &got).abs().max().double_value(&[]) < 1e-5);
            if matches!(mask, AttnMask::Causal) {
                let mut cache = LayerCache::new(2, 2, 7, 8, Kind::Float, Device::Cpu);
                let steps: Vec<Tensor> = (0..7)
                    .map(|i| {
                        let (q1, kv1) = (nq.narrow(1, i, 1), nkv.narrow(1, i, 1));
                        attn.forward(&q1, &kv1, mask, &rope, i, Some(&mut cache), Some(&rel))
                    })
                    .collect();
                assert!((Tensor::cat(&steps, 1) - &got).abs().max().double_value(&[]) < 1e-5);
            }
        }
        // The table's gradient (through the written-out attention) matches central differences (f64).
        let mut vs64 = tch::nn::VarStore::new(Device::Cpu);
        let a64 = Attention::new(&(vs64.root() / "a"), &cfg);
        vs64.double();
        let (q64, kv64) = (nq.to_kind(Kind::Double), nkv.to_kind(Kind::Double));
        let weights = Tensor::randn([2, 7, 32], (Kind::Double, Device::Cpu));
        let rel64 = (rel.to_kind(Kind::Double)).set_requires_grad(true);
        let loss = |r: &Tensor| {
            (a64.forward(&q64, &kv64, AttnMask::Causal, &rope, 0, None, Some(r)) * &weights).sum(Kind::Double)
        };
        loss(&rel64).backward();
        let grad = rel64.grad();
        for (h, o) in [(0i64, 15i64), (1, 14), (3, 10), (2, 20)] {
            let fd = tch::no_grad(|| {
                let bump = |e: f64| {
                    let r = rel64.detach().copy();
                    let _ = r.get(h).get(o).g_add_scalar_(e);
                    loss(&r).double_value(&[])
                };
                (bump(1e-6) - bump(-1e-6)) / 2e-6
            });
            let g = grad.double_value(&[h, o]);
            assert!((g - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "rel[{h}, {o}]: autograd {g} vs finite difference {fd}");
        }
        // offset_bias reads the table at s − t.
        let table = Tensor::arange(7, (Kind::Float, Device::Cpu)).view([1, 7]);
        let b = offset_bias(&table, 1, 2, 3);
        assert_eq!(Vec::<f32>::try_from(b.view([-1])).unwrap(), vec![2.0, 3.0, 4.0, 1.0, 2.0, 3.0]);
    }
}
