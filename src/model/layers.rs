//! Llama-style building blocks: RMSNorm, RoPE, grouped-query attention with a KV cache, SwiGLU, and
//! the generalised block of spec §2.1 (separate query and key/value sources, additive K/V term).

use crate::model::config::ModelConfig;
use tch::nn::{Init, Path};
use tch::{Device, Kind, Tensor};

/// A `[out, in]` weight initialised `N(0, std²)`, named `{name}.weight` (Hugging Face layout).
pub fn linear_weight(p: &Path, name: &str, out_dim: usize, in_dim: usize, std: f64) -> Tensor {
    (p / name).var("weight", &[out_dim as i64, in_dim as i64], Init::Randn { mean: 0.0, stdev: std })
}

/// `x·Wᵀ` computed in `kind`: for bf16 the input and the fp32 master weight are cast at use, so
/// gradients flow back to the fp32 weight; for fp32 nothing is cast (an f64 model stays f64).
pub fn linear_in(x: &Tensor, w: &Tensor, kind: Kind) -> Tensor {
    if kind == Kind::Float {
        return x.linear::<Tensor>(w, None);
    }
    x.to_kind(kind).linear::<Tensor>(&w.to_kind(kind), None)
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
        let (b, t, _) = nq.size3().expect("attention input is [B, T, D]");
        let q = linear_in(nq, &self.wq, self.compute).view([b, t, self.n_heads, self.head_dim]).transpose(1, 2);
        rope.apply(&q, pos)
    }

    /// Attention of `nq` (queries) over `nkv` (keys/values), both already normalised; positions start
    /// at `pos`. With a cache, the new keys/values are appended and attention covers the whole cache.
    pub fn forward(
        &self,
        nq: &Tensor,
        nkv: &Tensor,
        mask: AttnMask,
        rope: &Rope,
        pos: i64,
        cache: Option<&mut LayerCache>,
    ) -> Tensor {
        let (b, tq, d) = nq.size3().expect("attention input is [B, T, D]");
        let tk = nkv.size()[1];
        let q = self.queries(nq, rope, pos);
        let k = linear_in(nkv, &self.wk, self.compute).view([b, tk, self.n_kv, self.head_dim]).transpose(1, 2);
        let v = linear_in(nkv, &self.wv, self.compute).view([b, tk, self.n_kv, self.head_dim]).transpose(1, 2);
        let k = rope.apply(&k, pos);
        let (k, v, past) = match cache {
            Some(c) => {
                let past = c.len();
                let (k, v) = c.append(&k, &v);
                (k, v, past)
            }
            None => (k, v, 0),
        };
        let gqa = self.n_kv != self.n_heads;
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
                let tk = k.size()[2];
                let qi = Tensor::arange(tq, (Kind::Int64, q.device())).unsqueeze(1) + past;
                let kj = Tensor::arange(tk, (Kind::Int64, q.device())).unsqueeze(0);
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
    pub fn forward(&self, u: &Tensor) -> Tensor {
        let u = if self.compute == Kind::Float { u.shallow_clone() } else { u.to_kind(self.compute) };
        let g = linear_in(&u, &self.gate, self.compute).silu();
        linear_in(&(g * linear_in(&u, &self.up, self.compute)), &self.down, self.compute)
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
        let nq = self.attn_norm.forward(xq);
        let nkv = self.kv_states(xq, &nq, kv);
        let h = xq + self.attn.forward(&nq, &nkv, mask, rope, pos, cache);
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
