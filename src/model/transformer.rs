//! The Free Transformer (and, with the latent disabled, its baseline decoder). `forward_with` is the
//! paper's Algorithm 2 (corrected: every block runs exactly once).

use crate::model::config::{FreeBits, Injection, LatentConfig, MapperGrad, ModelConfig, PostSamplerInit};
use crate::model::encoder::Encoder;
use crate::model::layers::{AttnMask, Block, KvInput, LayerCache, RmsNorm, Rope, linear_in, linear_weight};
use crate::model::loss::Loss;
use crate::model::mapper::BinaryMapper;
use crate::util::error::FieldError;
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

/// Where the latents Z come from in a forward pass (spec §2.2).
#[derive(Debug, Clone, Copy)]
pub enum ZSource<'a> {
    /// The encoder reads the tokens non-causally and its bits are sampled with uniforms from the
    /// stream `key` (training, prefill, eval).
    Posterior {
        /// Key of the bit draws.
        key: u64,
    },
    /// As `Posterior`, for rows `first_row..` of a batch whose draws are keyed by `key`: each row
    /// gets the bits it gets in the whole batch (a data-parallel rank's shard).
    PosteriorRows {
        /// Key of the whole batch's bit draws.
        key: u64,
        /// The batch row this pass's row 0 is.
        first_row: usize,
    },
    /// Uniform codes, one per position, keyed by `(seed, seq_ids[b], position)` (generation).
    Prior {
        /// Seed of the draw.
        seed: u64,
        /// One id per batch row; equal ids give equal codes.
        seq_ids: &'a [u64],
    },
    /// Caller-supplied codes `[B, T]` for exactly the positions of this pass.
    Pinned(&'a Tensor),
}

/// What a forward pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Training: record the graph, with the cut that lets the fused Eq. 8 gradient through.
    Train,
    /// Evaluation or generation: no training graph, no mapper cut.
    Inference,
}

/// The latent half of a Free Transformer: encoder, Binary Mapper and post-sampler table `E`.
#[derive(Debug)]
pub struct LatentModule {
    /// The one-block non-causal encoder.
    pub encoder: Encoder,
    /// The post-sampler table `E: [C, D]`; `R = E[c]`.
    pub post_sampler: Tensor,
    /// Bit sampling, packing and the Eq. 8 gradient.
    pub mapper: BinaryMapper,
    /// κ in nats.
    pub kappa_nats: f64,
    /// Whether κ is granted per token (the paper) or per sequence (a probe).
    pub free_bits: FreeBits,
    /// Optional learned relative-offset bias on the injection block's attention scores,
    /// `[n_heads, 2·max_len − 1]` (`model.latent.inject_self_bias`; a deviation from the paper).
    pub inject_rel_bias: Option<Tensor>,
    injection: Injection,
    grad: MapperGrad,
}

impl LatentModule {
    /// `R = E[c]`, and, when training with posterior Z, the cut that lets the fused Eq. 8 gradient
    /// through: returns (decoder input, R as the decoder sees it, tape).
    fn post_sample(
        &self,
        x_m: Tensor,
        codes: &Tensor,
        o: Option<&Tensor>,
        pass: Pass,
    ) -> (Tensor, Tensor, Option<MapperTape>) {
        let (b, t) = codes.size2().expect("codes are [B, T]");
        let r = self.post_sampler.index_select(0, &codes.reshape([-1])).view([b, t, -1]);
        match (o, pass, self.grad) {
            (Some(o), Pass::Train, MapperGrad::Fused) => {
                let x_leaf = x_m.detach().set_requires_grad(true);
                let r_leaf = r.detach().set_requires_grad(true);
                let tape = MapperTape {
                    x_m,
                    x_leaf: x_leaf.shallow_clone(),
                    r,
                    r_leaf: r_leaf.shallow_clone(),
                    o: o.shallow_clone(),
                };
                (x_leaf, r_leaf, Some(tape))
            }
            (Some(o), Pass::Train, MapperGrad::Dense) => {
                (x_m, self.mapper.dense_post_sampler(o, codes, &self.post_sampler), None)
            }
            _ => (x_m, r, None),
        }
    }

    fn kv_input<'a>(&self, r: &'a Tensor) -> KvInput<'a> {
        match self.injection {
            Injection::PreNorm => KvInput::AddBeforeNorm(r),
            Injection::PostNorm => KvInput::AddAfterNorm(r),
        }
    }
}

/// Autograd is cut at `X_m` and `R` during training so that the fused Binary Mapper gradient can be
/// inserted between the two halves (tch has no custom autograd functions). Each segment of the
/// graph is still backpropagated exactly once.
#[derive(Debug)]
struct MapperTape {
    x_m: Tensor,
    x_leaf: Tensor,
    r: Tensor,
    r_leaf: Tensor,
    o: Tensor,
}

/// The result of a forward pass.
#[derive(Debug)]
pub struct Forward {
    /// `[B, T, V]`.
    pub logits: Tensor,
    /// Codes used at each position `[B, T]` (int64); `None` for a baseline.
    pub codes: Option<Tensor>,
    /// Encoder bit logits `[B, T, H]` (fp32) when the encoder ran.
    pub bit_logits: Option<Tensor>,
    tape: Option<MapperTape>,
}

/// Per-layer KV caches plus the codes drawn so far (spec §4.1: Z is fixed once drawn).
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    codes: Vec<Tensor>,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// True before the prefill.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every code stored so far, `[B, len]`.
    pub fn codes(&self) -> Option<Tensor> {
        (!self.codes.is_empty()).then(|| Tensor::cat(&self.codes, 1))
    }
}

/// A Free Transformer, or a baseline decoder when `latent.enabled = false`.
#[derive(Debug)]
pub struct FreeTransformer {
    cfg: ModelConfig,
    vs: VarStore,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Option<Tensor>,
    rope: Rope,
    latent: Option<LatentModule>,
}

/// The post-sampler table `E: [C, D]` under `p`, initialised as `lat.post_sampler_init` says (draws
/// from torch's global generator, seeded by the caller).
fn post_sampler_table(p: &tch::nn::Path, lat: &LatentConfig, mapper: &BinaryMapper, d: i64) -> Tensor {
    let (c, sigma) = (mapper.num_codes(), lat.init_std());
    match lat.post_sampler_init {
        PostSamplerInit::Gaussian => p.var("weight", &[c, d], Init::Randn { mean: 0.0, stdev: sigma }),
        PostSamplerInit::Bits => {
            let mut e = p.var("weight", &[c, d], Init::Const(0.0));
            let h = mapper.bits();
            let w = Tensor::randn([h, d], (Kind::Float, p.device())) * (sigma / (h as f64).sqrt());
            let signs = mapper.table() * 2.0 - 1.0;
            let mut init = signs.matmul(&w);
            if lat.post_sampler_init_noise > 0.0 {
                init += Tensor::randn([c, d], (Kind::Float, p.device())) * lat.post_sampler_init_noise;
            }
            tch::no_grad(|| e.copy_(&init));
            e
        }
    }
}

impl FreeTransformer {
    /// Builds and initialises the model on `device` from `seed`. Decoder parameters are created
    /// before the latent ones, so a baseline and a Free Transformer with the same seed share their
    /// decoder initialisation.
    pub fn new(cfg: &ModelConfig, device: Device, seed: u64) -> Result<Self, FieldError> {
        cfg.validate()?;
        // Initialisation draws from torch's global generator: hold a lock so that concurrent
        // constructions (threads, tests) cannot interleave their draws.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed((seed & (i64::MAX as u64)) as i64);
        let vs = VarStore::new(device);
        let root = vs.root();
        let p = &root / "model";
        let (v, d) = (cfg.vocab_size as i64, cfg.d_model as i64);
        let embed = (&p / "embed_tokens").var("weight", &[v, d], Init::Randn { mean: 0.0, stdev: cfg.init_std });
        let blocks = (0..cfg.n_layers).map(|i| Block::new(&(&p / "layers" / i), cfg)).collect();
        let norm = RmsNorm::new(&(&p / "norm"), cfg.d_model, cfg.norm_eps);
        let lm_head =
            (!cfg.tied_embeddings).then(|| linear_weight(&root, "lm_head", cfg.vocab_size, cfg.d_model, cfg.init_std));
        let latent = cfg.latent().map(|lat| {
            let lp = &p / "latent";
            let mapper = BinaryMapper::new(lat.bits, lat.mapper_tile, device);
            LatentModule {
                encoder: Encoder::new(&lp, cfg, lat.bits),
                post_sampler: post_sampler_table(&(&lp / "post_sampler"), lat, &mapper, d),
                mapper,
                kappa_nats: lat.kappa_bits.expect("validated").nats(),
                free_bits: lat.free_bits,
                inject_rel_bias: lat.inject_self_bias.map(|own| {
                    let offsets = 2 * cfg.max_seq_len as i64 - 1;
                    let table = lp.var("inject_rel_bias", &[cfg.n_heads as i64, offsets], Init::Const(0.0));
                    tch::no_grad(|| {
                        let _ = table.narrow(1, (offsets - 1) / 2, 1).fill_(own);
                    });
                    table
                }),
                injection: lat.injection,
                grad: lat.mapper_grad,
            }
        });
        let rope = Rope::new(cfg.head_dim(), cfg.max_seq_len, cfg.rope_theta, device);
        Ok(FreeTransformer { cfg: cfg.clone(), vs, embed, blocks, norm, lm_head, rope, latent })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The parameter store (names follow the Hugging Face Llama convention).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Mutable parameter store (loading weights).
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    /// The device holding the parameters.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The decoder blocks `block[0..L]`.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The latent half, `None` for a baseline.
    pub fn latent(&self) -> Option<&LatentModule> {
        self.latent.as_ref()
    }

    /// The RoPE tables.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// κ in nats (0 for a baseline).
    pub fn kappa_nats(&self) -> f64 {
        self.latent.as_ref().map_or(0.0, |l| l.kappa_nats)
    }

    /// A KV cache for `batch` sequences of up to `capacity` positions.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        let c = &self.cfg;
        let layers = (0..c.n_layers)
            .map(|_| {
                let kind = c.precision.kind();
                LayerCache::new(batch, c.n_kv_heads as i64, capacity, c.head_dim() as i64, kind, self.device())
            })
            .collect();
        KvCache { layers, codes: Vec::new() }
    }

    /// Full forward pass without cache.
    pub fn forward(&self, tokens: &Tensor, latents: ZSource, pass: Pass) -> Forward {
        self.forward_with(tokens, latents, pass, None)
    }

    /// The trunk output `X_m` (the first `m` blocks), for tests and analysis.
    pub fn trunk(&self, tokens: &Tensor) -> Tensor {
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        for block in &self.blocks[..self.cfg.inject_after()] {
            x = block.forward(&x, KvInput::Same, AttnMask::Causal, &self.rope, 0, None);
        }
        x
    }

    /// Algorithm 2. `Pass::Train` builds the graph for training (inserts the fused-mapper cut). With a
    /// cache, `tokens` are the next positions after the cached ones and K/V are appended; the
    /// encoder (`Posterior`) may run only on an empty cache, over the whole prompt.
    pub fn forward_with(
        &self,
        tokens: &Tensor,
        latents: ZSource,
        pass: Pass,
        mut cache: Option<&mut KvCache>,
    ) -> Forward {
        let (_, t) = tokens.size2().expect("tokens are [B, T]");
        let pos = cache.as_ref().map_or(0, |c| c.len());
        let m = self.cfg.inject_after();
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        for (i, block) in self.blocks[..m].iter().enumerate() {
            x = block.forward(&x, KvInput::Same, AttnMask::Causal, &self.rope, pos, layer(&mut cache, i));
        }
        let Some(lat) = &self.latent else {
            for (i, block) in self.blocks.iter().enumerate().skip(m) {
                x = block.forward(&x, KvInput::Same, AttnMask::Causal, &self.rope, pos, layer(&mut cache, i));
            }
            return Forward { logits: self.head(&x), codes: None, bit_logits: None, tape: None };
        };
        // x is X_m: both the encoder (keys/values) and block[m] read it. It is not detached.
        let (codes, o) = match latents {
            ZSource::Posterior { key } | ZSource::PosteriorRows { key, .. } => {
                assert_eq!(pos, 0, "the encoder runs only over a whole prompt, on an empty cache");
                let o = lat.encoder.forward(&x, &self.rope);
                let first_row = if let ZSource::PosteriorRows { first_row, .. } = latents { first_row } else { 0 };
                let offset = first_row as u64 * (t * lat.mapper.bits()) as u64;
                (lat.mapper.sample_at(&o, key, offset), Some(o))
            }
            ZSource::Prior { seed, seq_ids } => (lat.mapper.prior_codes(seed, seq_ids, pos, t, self.device()), None),
            ZSource::Pinned(z) => (z.to_device(self.device()).to_kind(Kind::Int64), None),
        };
        if let Some(c) = cache.as_deref_mut() {
            c.codes.push(codes.shallow_clone());
        }
        let (x_m, r, tape) = lat.post_sample(x, &codes, o.as_ref(), pass);
        let (kv, rel) = (lat.kv_input(&r), lat.inject_rel_bias.as_ref());
        x = self.blocks[m].forward_rel(&x_m, kv, AttnMask::Causal, &self.rope, pos, layer(&mut cache, m), rel);
        for (i, block) in self.blocks.iter().enumerate().skip(m + 1) {
            x = block.forward(&x, KvInput::Same, AttnMask::Causal, &self.rope, pos, layer(&mut cache, i));
        }
        Forward { logits: self.head(&x), codes: Some(codes), bit_logits: o, tape }
    }

    fn head(&self, x: &Tensor) -> Tensor {
        let w = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = linear_in(&self.norm.forward(x), w, self.cfg.precision.kind());
        // bf16 products hand fp32 logits to the loss; fp32 (or f64) logits stay as they are.
        if logits.kind() == Kind::BFloat16 { logits.to_kind(Kind::Float) } else { logits }
    }

    /// Training loss of a forward pass against `targets`.
    pub fn loss(&self, fwd: &Forward, targets: &Tensor) -> Loss {
        self.loss_at_kappa(fwd, targets, self.kappa_nats())
    }

    /// [`Self::loss`] with free bits at `kappa_nats` instead of the config's κ (a κ schedule).
    pub fn loss_at_kappa(&self, fwd: &Forward, targets: &Tensor, kappa_nats: f64) -> Loss {
        let scope = self.latent.as_ref().map_or(FreeBits::Token, |l| l.free_bits);
        Loss::new(&fwd.logits, targets, fwd.bit_logits.as_ref(), kappa_nats, scope)
    }

    /// Accumulates `scale · ∂(CE + FB)/∂θ` into the parameter gradients. With the fused mapper:
    /// phase 1 backpropagates CE through the decoder's upper half (giving `δX_m` and `δR`); the
    /// fused Eq. 8 backward turns `δR` into `δo`; phase 2 backpropagates one surrogate through the
    /// encoder and the trunk, whose gradient is the sum of the decoder and encoder paths.
    pub fn backward(&self, fwd: &Forward, loss: &Loss, scale: f64) {
        let (Some(tape), Some(lat)) = (&fwd.tape, &self.latent) else {
            (loss.total() * scale).backward();
            return;
        };
        (&loss.ce * scale).backward();
        let dr = tape.r_leaf.grad();
        let dx = tape.x_leaf.grad();
        let (b, t, h) = tape.o.size3().expect("bit logits are [B, T, H]");
        let d = dr.size()[2];
        let d_o = lat
            .mapper
            .grad_bit_logits(&tape.o.view([b * t, h]), &lat.post_sampler, &dr.view([b * t, d]))
            .view([b, t, h]);
        let mut surrogate =
            (&tape.o * &d_o).sum(Kind::Float) + (&tape.r * &dr).sum(Kind::Float) + (&tape.x_m * &dx).sum(Kind::Float);
        if let Some(fb) = &loss.fb {
            surrogate += fb * scale;
        }
        surrogate.backward();
    }
}

fn layer<'a>(cache: &'a mut Option<&mut KvCache>, i: usize) -> Option<&'a mut LayerCache> {
    cache.as_deref_mut().map(|c| &mut c.layers[i])
}
