"""Hugging Face transformers' side of `make test-pretrained`: loads a GGUF Llama with transformers'
own GGUF loader (gguf-py dequantizes every tensor to fp32 and transformers un-permutes Q/K itself,
independently of freet), then for each prompt writes its token ids, the fp32 logits of
LlamaForCausalLM and 32 greedy tokens of `generate` (KV cache on) to a safetensors file.
With --bench N it also times greedy `generate` of N new tokens (tokens/s after the first).

    .venv/bin/python scripts/pretrained-reference.py --gguf FILE --prompts prompts.json --out ref.safetensors
"""

import argparse
import json
import os
import time

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompts", required=True, help="JSON list of strings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bench", type=int, default=0, help="also time greedy generate of this many new tokens")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.gguf))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    load_s = time.time() - t0
    prompts = json.load(open(a.prompts))
    out, info = {}, {"load_s": load_s, "threads": torch.get_num_threads(), "transformers": __import__("transformers").__version__}
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ids = torch.tensor([tok(p, add_special_tokens=False).input_ids])
            out[f"ids.{i}"] = ids[0].contiguous()
            out[f"logits.{i}"] = model(ids).logits[0].float().contiguous()
            # An explicit attention mask: without one, generate masks every prompt token equal to the pad
            # id, and SmolLM2's pad id is <|im_end|>, which chat prompts contain.
            g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new, do_sample=False,
                               use_cache=True, eos_token_id=None, pad_token_id=tok.eos_token_id)
            out[f"greedy.{i}"] = g[0, ids.shape[1]:].contiguous()
        if a.bench:
            ids = torch.tensor([tok(prompts[0], add_special_tokens=False).input_ids])
            kw = dict(do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=tok.eos_token_id)
            t0 = time.time()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, **kw)
            first = time.time() - t0
            t0 = time.time()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.bench, **kw)
            total = time.time() - t0
            info["bench"] = {"prompt_tokens": ids.shape[1], "new_tokens": a.bench, "first_token_s": first,
                             "total_s": total, "decode_tokens_per_s": (a.bench - 1) / max(total - first, 1e-9)}
    save_file(out, a.out)
    json.dump(info, open(a.out + ".json", "w"), indent=1)
    print(json.dumps(info))
    if a.bench:
        b = info["bench"]
        print(f"transformers {info['transformers']}: {b['prompt_tokens']} prompt tokens, {b['new_tokens']} new tokens, "
              f"{info['threads']} threads: first token {b['first_token_s']:.3f} s, decode {b['decode_tokens_per_s']:.2f} "
              f"tokens/s")


if __name__ == "__main__":
    main()
