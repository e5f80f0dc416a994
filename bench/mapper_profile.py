"""Profile evidence for BENCHMARKS.md: where the time of the fused Eq. 8 backward goes.

Times, with the same libtorch freet links (the project venv's torch), each operation of one chunk
of `grad_bit_logits` (src/model/mapper.rs) over all chunks of a training step, and compares the δR·Eᵀ
GEMM's rate with an ordinary square GEMM. Usage:
    .venv/bin/python bench/mapper_profile.py --tokens 4096 --d 256 --bits 16 --chunk 64
"""
import argparse, json, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=4096)
p.add_argument("--d", type=int, default=256)
p.add_argument("--bits", type=int, default=16)
p.add_argument("--chunk", type=int, default=64)
p.add_argument("--reps", type=int, default=3)
a = p.parse_args()
torch.manual_seed(0)
n, d, h, ch = a.tokens, a.d, a.bits, a.chunk
c = 1 << h
e = torch.randn(c, d)
table = ((torch.arange(c).unsqueeze(1) >> torch.arange(h)) & 1).float()
o = torch.randn(n, h)
dr = torch.randn(n, d) * 1e-3
w = torch.empty(ch, c)
gc = torch.empty(ch, c)
et, tt = e.t(), table.t()

def timed(f):
    best = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for s in range(0, n, ch):
            f(s)
        best.append(time.perf_counter() - t0)
    return 1e3 * sorted(best)[len(best) // 2]

parts = {
    "o·BITSᵀ (K=H GEMM, writes n×C)": lambda s: torch.mm(o[s:s+ch], tt, out=w),
    "− Σ softplus, exp (2 passes over n×C)": lambda s: w.sub_(o[s:s+ch].sum(-1, keepdim=True)).exp_(),
    "δR·Eᵀ (K=D GEMM)": lambda s: torch.mm(dr[s:s+ch], et, out=gc),
    "w ⊙ gc, row sums (2 passes)": lambda s: (w.mul_(gc), w.sum(-1, keepdim=True)),
    "w·BITS (N=H GEMM, reads n×C)": lambda s: w.mm(table),
}
out = {k: timed(f) for k, f in parts.items()}
total = sum(out.values())
flops_gemm = 2.0 * n * c * d
sq = 2048
x, y = torch.randn(sq, sq), torch.randn(sq, sq)
t0 = time.perf_counter(); [x.mm(y) for _ in range(3)]; sq_rate = 3 * 2 * sq**3 / (time.perf_counter() - t0) / 1e9
res = {"tokens": n, "d": d, "bits": h, "chunk": ch, "threads": torch.get_num_threads(), "ms": out, "total_ms": total,
       "dRE_gflops": flops_gemm / out["δR·Eᵀ (K=D GEMM)"] / 1e6, "square_gemm_gflops": sq_rate,
       "bytes_per_pass_mib": n * c * 4 / 2**20}
print(json.dumps(res, ensure_ascii=False, indent=1))
