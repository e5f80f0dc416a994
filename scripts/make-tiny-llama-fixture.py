"""Writes tests/data/tiny-llama/: a tiny random Llama saved by Hugging Face transformers (bf16
safetensors in two shards with an index, a byte-level BPE tokenizer.json with digit splitting and
special tokens, a chat template) and expected.safetensors: transformers' fp32 logits and greedy
tokens on three prompts. Run once; the files are committed and tests/import.rs checks freet
against them.

    .venv/bin/python scripts/make-tiny-llama-fixture.py
"""

import json
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tiny-llama")
PROMPTS = [
    "The keeper counted 42",
    "A river runs, and",
    "<|im_start|>7 ships",
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def tokenizer():
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=280, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train([os.path.join(ROOT, "tests", "data", "tiny-corpus.txt")], trainer)
    return tok


def main():
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tok = tokenizer()
    tok.save(os.path.join(OUT, "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(OUT, "tokenizer.json"))
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_theta=500.0, tie_word_embeddings=False, initializer_range=0.3, bos_token_id=0, eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    model.save_pretrained(OUT, max_shard_size="20KB")
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIAL[0], "eos_token": SPECIAL[2],
                   "chat_template": TEMPLATE}, f, indent=1)
    for extra in ["generation_config.json"]:
        if os.path.exists(os.path.join(OUT, extra)):
            os.remove(os.path.join(OUT, extra))
    # Reload what was saved: casting the in-memory model back to fp32 would keep its RoPE inv_freq
    # buffer rounded to bf16 by the cast above.
    model = LlamaForCausalLM.from_pretrained(OUT, dtype=torch.float32).eval()
    expected = {}
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            ids = torch.tensor([fast(p, add_special_tokens=False).input_ids])
            expected[f"ids.{i}"] = ids[0]
            expected[f"logits.{i}"] = model(ids).logits[0].float().contiguous()
            out = model.generate(ids, max_new_tokens=16, do_sample=False, use_cache=True,
                                 eos_token_id=None, pad_token_id=0)
            expected[f"greedy.{i}"] = out[0, ids.shape[1]:].contiguous()
    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    print(sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
