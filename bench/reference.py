"""PyTorch reference for the freet speed benchmark (issue 4).

A plain, eager PyTorch implementation of the same models as freet (`src/model/layers.rs`, `src/model/encoder.rs`,
`src/model/transformer.rs`, `src/model/loss.rs`, `src/train/optim.rs`), timed on the CPU. Shapes and hyperparameters come from
`bench/sizes.json`, shared with `freet bench`; nothing about the shapes is hard-coded here.

Variants
  baseline   Llama-style decoder: token embedding, L pre-norm blocks (RMSNorm eps 1e-5, rotate-half RoPE
             theta 1e4, attention via F.scaled_dot_product_attention with enable_gqa, SwiGLU MLP, no
             biases), final RMSNorm, untied lm_head.
  ft-dense   Free Transformer (Algorithm 2) with the Binary Mapper written the way public PyTorch
             implementations write it: the whole code distribution
                 G = exp(o·BITSᵀ − Σ_h softplus(o_h))     over all C = 2^H codes, [B, T, C] fp32,
             the one-hot Y of the sampled code, M = Y + (G − G.detach()) and R = M @ E with E: [C, D]
             (a bias-free Linear(C → D)). The forward value is exactly E[c]; the gradient reaches the
             bit logits through all of G. Blocks 0..L/2 give X_m; one non-causal encoder block reads
             X_m as keys/values with the learned constant query ζ broadcast over positions, then
             RMSNorm and a readout Linear(D → H) give fp32 bit logits o; bits ~ Bernoulli(σ(o)),
             c = Σ_h bit_h 2^h; block m = L/2 (0-based: the first after the trunk) takes its K/V from
             RMSNorm_attn(X_m + R), its queries and residual from X_m; loss =
             CE + mean_t max(0, KL_t − κ), KL_t = Σ_h KL(Bernoulli(σ(o_h)) ‖ Bernoulli(1/2)),
             κ = kappa_bits·ln 2.

Modes
  train      Per step, on a fresh random token batch [batch, seq_len + 1] (fixed seed; drawn outside
             the timed regions), three wall-clock intervals (time.perf_counter; the CPU is synchronous):
               fwd  forward pass and loss (CE, + the free-bits KL for ft-dense),
               bwd  loss.backward(),
               opt  clip_grad_norm_(1.0) + AdamW.step() + zero_grad(set_to_none=True).
             `--warmup` untimed steps come first. Reported: medians over the `--steps` measured steps;
             step = fwd + bwd + opt per step; tokens/s = batch·seq_len / median step time.
             AdamW (torch.optim.AdamW defaults otherwise; constant lr) decays the tensors freet's
             `decays()` decays: every matrix except the token embedding and the post-sampler table E;
             never the norm gains or ζ.
             bf16: torch.autocast("cpu", dtype=torch.bfloat16) around forward + loss, fp32 master
             weights; logits and bit logits are cast to fp32, and the Binary Mapper and KL run in fp32
             with autocast disabled (as in freet).
  generate   Under torch.inference_mode(): a random prompt [batch, prompt_len] is prefilled in one pass
             (ft-dense: through the encoder, with sampled bits) and the first new token is sampled
             from its last logits: that is `prefill_ms`. Then the decode loop runs `new_tokens`
             single-token steps (forward with a KV cache grown by torch.cat per layer, then
             torch.multinomial sampling at temperature 1 from a seeded generator; ft-dense draws a
             uniform code per new position and injects E[c]). decode_tokens_per_s =
             batch·new_tokens / decode-loop time; tokens_per_s is the same figure. step/fwd medians
             are over the single-token steps (step = forward + sampling). `--warmup` untimed full
             generations come first; with `--steps N > 1` the timed generation is repeated N times
             and prefill and decode times are medians over the repeats. One JSON line per batch size
             (sizes.json generate.batches unless `--batch`). Only the last position goes through the
             lm_head. bf16: one autocast region around the whole generation (weights cast once, KV
             cache in bf16).

Peak RSS is ru_maxrss of this process (in MiB) read right after each run, warm-up included; it never
decreases, so with two generate batch sizes in one invocation the second row's figure covers both.

Output: one JSON object per run, printed and appended to `--json` if given:
  impl, version, variant, size, precision, mode, threads, batch, seq_len, params, steps,
  step_ms_median, fwd_ms_median, bwd_ms_median, opt_ms_median, tokens_per_s, peak_rss_mib
  and, for generate only: prefill_ms, decode_tokens_per_s, new_tokens.
For generate, seq_len is prompt_len, steps is the number of timed generations, and bwd/opt are null.

Usage:
  python bench/reference.py --size s1 --variant baseline --precision fp32 --mode train
  python bench/reference.py --size s1 --variant ft-dense --precision bf16 --mode generate --json out.jsonl
"""

import argparse
import json
import math
import os
import resource
import statistics
import time
import warnings
from dataclasses import dataclass

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch works without numpy

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    max_seq_len: int  # RoPE table length
    latent: bool = False
    bits: int = 16
    kappa_bits: float = 1.0
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    init_std: float = 0.02

    @property
    def head_dim(self):
        return self.d_model // self.n_heads

    @property
    def inject_at(self):
        return self.n_layers // 2


# ----------------------------------------------------------------------------------------------------
# Model


def rope_tables(head_dim, max_len, theta):
    """cos/sin tables [max_len, head_dim] in the rotate-half (Hugging Face Llama) layout."""
    inv = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin, pos):
    """Rotates x: [B, heads, T, head_dim] as positions pos..pos+T."""
    t = x.size(2)
    cos, sin = cos[pos : pos + t].to(x.dtype), sin[pos : pos + t].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, nq, nkv, rope, causal, pos=0, cache=None):
        """Queries from nq, keys/values from nkv (both normalised). `cache` is a per-layer dict whose
        "k"/"v" grow by torch.cat; attention then covers every cached position."""
        B, Tq, D = nq.shape
        Tk = nkv.size(1)
        cos, sin = rope
        q = self.q_proj(nq).view(B, Tq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(nkv).view(B, Tk, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(nkv).view(B, Tk, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin, pos), apply_rope(k, cos, sin, pos)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].size(2)
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # Prefill (empty cache) is causal; a single new query may see the whole cache.
        assert past == 0 or Tq == 1, "chunked decoding after a prefill is not needed here"
        is_causal = causal and past == 0 and Tq > 1
        y = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=self.n_kv != self.n_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, Tq, D))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm block with a separate key/value source (spec §2.1); the residual follows the queries.

    K/V input: RMSNorm_attn(x) by default, RMSNorm_attn(kv_src) for the encoder, and
    RMSNorm_attn(x + kv_add) for the injection block."""

    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, causal=True, pos=0, cache=None, kv_src=None, kv_add=None):
        nq = self.input_layernorm(x)
        if kv_src is not None:
            nkv = self.input_layernorm(kv_src)
        elif kv_add is not None:
            nkv = self.input_layernorm(x + kv_add)
        else:
            nkv = nq
        h = x + self.self_attn(nq, nkv, rope, causal, pos, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class Encoder(nn.Module):
    """One non-causal block: queries/residual = ζ at every position (RoPE makes rows differ), keys/values
    = X_m; then RMSNorm and a readout to H bit logits (fp32)."""

    def __init__(self, cfg):
        super().__init__()
        self.block = Block(cfg)
        self.zeta = nn.Parameter(torch.empty(cfg.d_model))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.readout = nn.Linear(cfg.d_model, cfg.bits, bias=False)

    def forward(self, x_m, rope):
        B, T, D = x_m.shape
        q0 = self.zeta.view(1, 1, D).expand(B, T, D)
        y = self.block(q0, rope, causal=False, kv_src=x_m)
        return self.readout(self.norm(y)).float()


class BinaryMapper(nn.Module):
    """Bit sampling and the dense Eq. 8 post-sampler: R = (Y + (G − sg(G))) @ E. Runs in fp32."""

    def __init__(self, cfg):
        super().__init__()
        self.bits, self.n_codes = cfg.bits, 1 << cfg.bits
        self.register_buffer("powers", 2 ** torch.arange(cfg.bits), persistent=False)  # LSB first
        bits_table = (torch.arange(self.n_codes).unsqueeze(-1) >> torch.arange(cfg.bits)) & 1
        self.register_buffer("bits_table", bits_table.float(), persistent=False)  # BITS: [C, H]

    @torch.no_grad()
    def sample(self, o, gen):
        """c = Σ_h b_h 2^h with b_h ~ Bernoulli(σ(o_h)): [..., H] → [...] int64."""
        b = torch.bernoulli(torch.sigmoid(o), generator=gen).long()
        return (b * self.powers).sum(-1)

    def forward(self, o, codes, E):
        log_g = o @ self.bits_table.T - F.softplus(o).sum(-1, keepdim=True)  # [B, T, C]
        G = log_g.exp()
        Y = F.one_hot(codes, self.n_codes).to(G.dtype)
        M = Y + (G - G.detach())  # forward value exactly Y
        return M @ E


class FreeTransformer(nn.Module):
    """The baseline decoder, or (cfg.latent) the Free Transformer of Algorithm 2."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # untied
        if cfg.latent:
            self.encoder = Encoder(cfg)
            self.mapper = BinaryMapper(cfg)
            self.post_sampler = nn.Parameter(torch.empty(1 << cfg.bits, cfg.d_model))  # E: [C, D]
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        # As freet: every matrix, the embedding, ζ and E ~ N(0, 0.02²); norm gains 1.
        for name, p in self.named_parameters():
            if p.dim() >= 2 or name.endswith("zeta"):
                nn.init.normal_(p, mean=0.0, std=self.cfg.init_std)
            else:
                nn.init.ones_(p)

    def forward(self, idx, gen=None):
        """Training forward: logits [B, T, V] (fp32) and bit logits o [B, T, H] (fp32) or None."""
        rope = (self.rope_cos, self.rope_sin)
        m = self.cfg.inject_at
        x = self.embed_tokens(idx)
        for block in self.layers[:m]:
            x = block(x, rope)
        o, r = None, None
        if self.cfg.latent:  # x is X_m, not detached: it feeds both the encoder and block m
            o = self.encoder(x, rope)
            with torch.autocast("cpu", enabled=False):
                codes = self.mapper.sample(o, gen)
                r = self.mapper(o, codes, self.post_sampler)
        for i, block in enumerate(self.layers[m:], start=m):
            x = block(x, rope, kv_add=r if i == m else None)
        return self.lm_head(self.norm(x)).float(), o

    def forward_cached(self, idx, caches, pos, gen):
        """Inference forward of new tokens after `pos` cached positions; returns last-position logits.
        Prefill (pos = 0) draws Z from the encoder; later positions draw uniform codes."""
        rope = (self.rope_cos, self.rope_sin)
        m = self.cfg.inject_at
        x = self.embed_tokens(idx)
        for i, block in enumerate(self.layers[:m]):
            x = block(x, rope, pos=pos, cache=caches[i])
        r = None
        if self.cfg.latent:
            if pos == 0:
                codes = self.mapper.sample(self.encoder(x, rope), gen)
            else:
                codes = torch.randint(self.mapper.n_codes, idx.shape, generator=gen)
            r = F.embedding(codes, self.post_sampler)  # R = E[c]
        for i, block in enumerate(self.layers[m:], start=m):
            x = block(x, rope, pos=pos, cache=caches[i], kv_add=r if i == m else None)
        return self.lm_head(self.norm(x[:, -1])).float()


def loss_fn(logits, targets, o, kappa_nats):
    """CE, plus for the Free Transformer the per-token free-bits hinge on the closed-form KL (fp32)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    if o is None:
        return ce, ce
    with torch.autocast("cpu", enabled=False):
        kl_tok = (math.log(2.0) + torch.sigmoid(o) * o - F.softplus(o)).sum(-1)  # [B, T] nats
        fb = (kl_tok - kappa_nats).clamp_min(0.0).mean()
    return ce + fb, ce


# ----------------------------------------------------------------------------------------------------
# Parameter count and AdamW groups, as in freet


def expected_params(cfg):
    """freet's count. Baseline: V·D + L·(4D² + 3·D·F + 2D) + D + V·D (untied lm_head; the attention term
    is 2·D·(n_heads·d_h) + 2·D·(n_kv·d_h), = 4D² when n_kv = n_heads). The Free Transformer adds one
    block, ζ (D), the encoder norm (D), the readout (H·D) and E (2^H·D)."""
    V, D, L, Fh = cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.ffn_hidden
    attn = 2 * D * cfg.n_heads * cfg.head_dim + 2 * D * cfg.n_kv_heads * cfg.head_dim
    block = attn + 3 * D * Fh + 2 * D
    n = V * D + L * block + D + V * D
    if cfg.n_kv_heads == cfg.n_heads and cfg.n_heads * cfg.head_dim == D:
        assert n == V * D + L * (4 * D * D + 3 * D * Fh + 2 * D) + D + V * D
    if cfg.latent:
        n += block + D + D + cfg.bits * D + (1 << cfg.bits) * D
    return n


def decays(name, dims):
    """freet's optim::decays with decay_embeddings = false: matrices only, not the tables."""
    table = name.endswith("embed_tokens.weight") or name.endswith("post_sampler")
    return dims >= 2 and not table


def make_optimizer(model, tc):
    params = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in params if decays(n, p.dim())], "weight_decay": tc["weight_decay"]},
        {"params": [p for n, p in params if not decays(n, p.dim())], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc["lr"], betas=tuple(tc["betas"]), eps=tc["eps"])


# ----------------------------------------------------------------------------------------------------
# Benchmarks


def autocast(precision):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def peak_rss_mib():
    """Peak resident set of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ms(seconds):
    return 1000.0 * seconds


def bench_train(model, cfg, tc, precision, batch, seq_len, steps, warmup, seed):
    opt = make_optimizer(model, tc)
    params = [p for p in model.parameters()]
    kappa = cfg.kappa_bits * math.log(2.0)
    data_gen = torch.Generator().manual_seed(seed)
    bit_gen = torch.Generator().manual_seed(seed + 1)
    fwd, bwd, optim, losses = [], [], [], []
    for step in range(warmup + steps):
        batch_tokens = torch.randint(cfg.vocab_size, (batch, seq_len + 1), generator=data_gen)
        x, y = batch_tokens[:, :-1], batch_tokens[:, 1:]
        t0 = time.perf_counter()
        with autocast(precision):
            logits, o = model(x, bit_gen)
            loss, ce = loss_fn(logits, y, o, kappa)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, tc["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        losses.append((loss.item(), ce.item()))
        if step >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            optim.append(t3 - t2)
    for i, (loss, ce) in enumerate(losses):
        tag = "warm-up" if i < warmup else "measured"
        print(f"# step {i} ({tag}): loss {loss:.4f}  ce {ce:.4f}  (ln V = {math.log(cfg.vocab_size):.4f})", flush=True)
    step_times = [a + b + c for a, b, c in zip(fwd, bwd, optim)]
    step_med = statistics.median(step_times)
    return {
        "steps": steps,
        "step_ms_median": ms(step_med),
        "fwd_ms_median": ms(statistics.median(fwd)),
        "bwd_ms_median": ms(statistics.median(bwd)),
        "opt_ms_median": ms(statistics.median(optim)),
        "tokens_per_s": batch * seq_len / step_med,
    }


@torch.inference_mode()
def generate_once(model, cfg, precision, prompt, new_tokens, gen):
    """One generation: returns (prefill seconds, decode-loop seconds, per-step seconds, forward seconds)."""
    caches = [{} for _ in range(cfg.n_layers)]
    # One autocast region around the whole generation, so that the bf16 copies of the weights are
    # cast once (autocast's weight cache) rather than at every step.
    with autocast(precision):
        t0 = time.perf_counter()
        logits = model.forward_cached(prompt, caches, 0, gen)
        nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)
        t1 = time.perf_counter()
        pos = prompt.size(1)
        steps, fwds = [], []
        for _ in range(new_tokens):
            s0 = time.perf_counter()
            logits = model.forward_cached(nxt, caches, pos, gen)
            s1 = time.perf_counter()
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)
            s2 = time.perf_counter()
            pos += 1
            steps.append(s2 - s0)
            fwds.append(s1 - s0)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, steps, fwds


def bench_generate(model, cfg, gc, precision, batch, steps, warmup, new_tokens, seed):
    model.eval()
    prompt = torch.randint(cfg.vocab_size, (batch, gc["prompt_len"]), generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(warmup):
        generate_once(model, cfg, precision, prompt, new_tokens, gen)
    prefills, decodes, step_times, fwd_times = [], [], [], []
    for _ in range(steps):
        p, d, s, f = generate_once(model, cfg, precision, prompt, new_tokens, gen)
        prefills.append(p)
        decodes.append(d)
        step_times += s
        fwd_times += f
    decode = statistics.median(decodes)
    tps = batch * new_tokens / decode
    return {
        "steps": steps,
        "step_ms_median": ms(statistics.median(step_times)),
        "fwd_ms_median": ms(statistics.median(fwd_times)),
        "bwd_ms_median": None,
        "opt_ms_median": None,
        "tokens_per_s": tps,
        "prefill_ms": ms(statistics.median(prefills)),
        "decode_tokens_per_s": tps,
        "new_tokens": new_tokens,
    }


# ----------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", required=True)
    ap.add_argument("--variant", choices=["baseline", "ft-dense"], required=True)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--mode", choices=["train", "generate"], default="train")
    ap.add_argument("--steps", type=int, help="measured steps (train; default sizes.json) or timed generations (default 1)")
    ap.add_argument("--warmup", type=int, help="untimed steps (train; default sizes.json) or generations (default 1)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--batch", type=int, help="batch size (default: sizes.json; generate: every generate.batches)")
    ap.add_argument("--new-tokens", type=int, help="generate: override sizes.json generate.new_tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default=os.path.join(HERE, "sizes.json"))
    ap.add_argument("--json", help="append the JSON result line(s) to this file")
    args = ap.parse_args()

    with open(args.sizes) as f:
        spec = json.load(f)
    if args.size not in spec["sizes"]:
        ap.error(f"unknown size {args.size!r}; sizes.json has {sorted(spec['sizes'])}")
    if args.threads:
        torch.set_num_threads(args.threads)
    s, tc, gc, lat = spec["sizes"][args.size], spec["train"], spec["generate"], spec["latent"]
    new_tokens = args.new_tokens if args.new_tokens is not None else gc["new_tokens"]
    cfg = Config(
        vocab_size=s["vocab_size"],
        d_model=s["d_model"],
        n_layers=s["n_layers"],
        n_heads=s["n_heads"],
        n_kv_heads=s["n_kv_heads"],
        ffn_hidden=s["ffn_hidden"],
        max_seq_len=max(s["seq_len"], gc["prompt_len"] + new_tokens),
        latent=args.variant == "ft-dense",
        bits=lat["bits"],
        kappa_bits=lat["kappa_bits"],
    )

    torch.manual_seed(args.seed)
    model = FreeTransformer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_params(cfg), (n_params, expected_params(cfg))
    print(f"# {args.variant} {args.size}: {n_params:,} parameters (= freet's count)", flush=True)

    base = {
        "impl": "pytorch",
        "version": torch.__version__,
        "variant": args.variant,
        "size": args.size,
        "precision": args.precision,
        "mode": args.mode,
        "threads": torch.get_num_threads(),
    }
    runs = []
    if args.mode == "train":
        batch = args.batch or s["batch"]
        steps = args.steps if args.steps is not None else tc["measured_steps"]
        warmup = args.warmup if args.warmup is not None else tc["warmup_steps"]
        assert steps >= 1
        res = bench_train(model, cfg, tc, args.precision, batch, s["seq_len"], steps, warmup, args.seed)
        runs.append(({"batch": batch, "seq_len": s["seq_len"]}, res, peak_rss_mib()))
    else:
        steps = args.steps if args.steps is not None else 1
        warmup = args.warmup if args.warmup is not None else 1
        assert steps >= 1 and new_tokens >= 1
        for batch in [args.batch] if args.batch else gc["batches"]:
            res = bench_generate(model, cfg, gc, args.precision, batch, steps, warmup, new_tokens, args.seed)
            runs.append(({"batch": batch, "seq_len": gc["prompt_len"]}, res, peak_rss_mib()))

    for shape, res, peak_rss in runs:
        row = {**base, **shape, "params": n_params}
        row.update({k: res[k] for k in ("steps", "step_ms_median", "fwd_ms_median", "bwd_ms_median", "opt_ms_median", "tokens_per_s")})
        row["peak_rss_mib"] = peak_rss
        if args.mode == "generate":
            row.update({k: res[k] for k in ("prefill_ms", "decode_tokens_per_s", "new_tokens")})
        line = json.dumps(row)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
