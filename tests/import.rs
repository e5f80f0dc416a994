//! `freet import` and `freet convert` on the committed fixture `tests/data/tiny-llama/` (a tiny
//! random Llama saved by Hugging Face transformers, with transformers' own logits and greedy
//! tokens, made by `scripts/make-tiny-llama-fixture.py`): the Hugging Face path, the GGUF path
//! (the same weights written as GGUF with llama.cpp's Q/K permutation), the conversion to a Free
//! Transformer, and every bad input as a one-line error. `make test-pretrained` runs the same
//! checks on the real SmolLM2-135M (tests/pretrained.rs).

mod common;

use freet::data::Tokenizer;
use freet::generate::{GenerationZ, SampleOptions, generate};
use freet::import::gguf::{GgufWriter, Value};
use freet::import::llama::permute_rows;
use freet::import::quant::GgmlType;
use freet::import::{import, write};
use freet::model::{FreeTransformer, Pass, ZSource};
use freet::train::checkpoint;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-llama")
}

fn expected() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture().join("expected.safetensors")).unwrap().into_iter().collect()
}

fn logits(model: &FreeTransformer, ids: &Tensor) -> Tensor {
    tch::no_grad(|| model.forward(&ids.view([1, -1]), ZSource::Posterior { key: 0 }, Pass::Inference).logits.get(0))
}

fn greedy(model: &FreeTransformer, ids: &[i64], n: usize) -> Vec<i64> {
    let opts = SampleOptions { max_new_tokens: n, temperature: 0.0, ..SampleOptions::default() };
    let g = generate(model, ids, 1, &opts, GenerationZ::Fresh).unwrap();
    Vec::<i64>::try_from(g.tokens.get(0).narrow(0, ids.len() as i64, n as i64)).unwrap()
}

/// freet's logits, tokens and greedy continuation against transformers' on the fixture prompts;
/// returns the largest |Δlogit|.
fn check_against_transformers(model: &FreeTransformer, tok: &Tokenizer) -> f64 {
    let exp = expected();
    let prompts = ["The keeper counted 42", "A river runs, and", "<|im_start|>7 ships"];
    let mut worst = 0.0f64;
    for (i, p) in prompts.iter().enumerate() {
        let ids: Vec<i64> = tok.encode(p).unwrap().into_iter().map(i64::from).collect();
        let want_ids = Vec::<i64>::try_from(&exp[&format!("ids.{i}")]).unwrap();
        assert_eq!(ids, want_ids, "tokens of {p:?}");
        let got = logits(model, &Tensor::from_slice(&ids));
        let diff = (got - &exp[&format!("logits.{i}")]).abs().max().double_value(&[]);
        worst = worst.max(diff);
        let want = Vec::<i64>::try_from(&exp[&format!("greedy.{i}")]).unwrap();
        assert_eq!(greedy(model, &ids, want.len()), want, "greedy continuation of {p:?}");
    }
    assert!(worst <= 1e-4, "max |Δlogit| {worst}");
    worst
}

#[test]
fn hugging_face_directory_matches_transformers() {
    let _g = common::serial();
    let imp = import(&fixture()).unwrap();
    let c = imp.model.config();
    assert_eq!((c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_hidden), (280, 16, 2, 4, 2, 40));
    assert_eq!((c.rope_theta, c.tied_embeddings, c.max_seq_len), (500.0, false, 64));
    let tok = Tokenizer::Bpe(imp.tokenizer.clone());
    check_against_transformers(&imp.model, &tok);
    assert!(imp.extras.chat_template.as_deref().is_some_and(|t| t.contains("<|im_start|>")));
    // Written and loaded back as a checkpoint, with its tokenizer and chat template.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    write(&out, &imp.model, &imp.tokenizer, &imp.extras).unwrap();
    let loaded = checkpoint::load(&out, Device::Cpu).unwrap();
    assert_eq!(loaded.tokenizer, tok);
    check_against_transformers(&loaded.model, &loaded.tokenizer);
    let tc = std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap();
    assert!(tc.contains("chat_template") && tc.contains("im_start"), "{tc}");
    let again = write(&out, &imp.model, &imp.tokenizer, &imp.extras).unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
}

/// The fixture's weights and vocabulary as a GGUF file, as llama.cpp's converter writes it: Q and
/// K rows permuted for interleaved RoPE, attention in BF16, the rest F32, tokens and merges in the
/// metadata. `edit` may change the metadata or tensors before writing.
fn fixture_as_gguf(edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(String, Tensor, GgmlType)>)) -> Vec<u8> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for shard in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        tensors.extend(Tensor::read_safetensors(fixture().join(shard)).unwrap());
    }
    let mut out = Vec::new();
    for (name, t) in tensors {
        let t = t.to_kind(Kind::Float);
        let (gname, ty, t) = match name.as_str() {
            "model.embed_tokens.weight" => ("token_embd.weight".to_string(), GgmlType::F32, t),
            "model.norm.weight" => ("output_norm.weight".to_string(), GgmlType::F32, t),
            "lm_head.weight" => ("output.weight".to_string(), GgmlType::F32, t),
            _ => {
                let rest = name.strip_prefix("model.layers.").unwrap();
                let (i, part) = rest.split_once('.').unwrap();
                let (g, ty, t) = match part {
                    "input_layernorm.weight" => ("attn_norm", GgmlType::F32, t),
                    "post_attention_layernorm.weight" => ("ffn_norm", GgmlType::F32, t),
                    "self_attn.q_proj.weight" => ("attn_q", GgmlType::BF16, permute_rows(&t, 4)),
                    "self_attn.k_proj.weight" => ("attn_k", GgmlType::BF16, permute_rows(&t, 2)),
                    "self_attn.v_proj.weight" => ("attn_v", GgmlType::BF16, t),
                    "self_attn.o_proj.weight" => ("attn_output", GgmlType::BF16, t),
                    "mlp.gate_proj.weight" => ("ffn_gate", GgmlType::F32, t),
                    "mlp.up_proj.weight" => ("ffn_up", GgmlType::F32, t),
                    "mlp.down_proj.weight" => ("ffn_down", GgmlType::F32, t),
                    other => panic!("unexpected tensor {other}"),
                };
                (format!("blk.{i}.{g}.weight"), ty, t)
            }
        };
        out.push((gname, t, ty));
    }
    let tj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tj["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let merges: Vec<Value> = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::Str(s.clone()),
            pair => Value::Str(format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap())),
        })
        .collect();
    let types: Vec<Value> = (0..tokens.len()).map(|i| Value::Int(if i < 3 { 3 } else { 1 })).collect();
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str("llama".into())),
        ("llama.block_count".into(), Value::Uint(2)),
        ("llama.context_length".into(), Value::Uint(64)),
        ("llama.embedding_length".into(), Value::Uint(16)),
        ("llama.feed_forward_length".into(), Value::Uint(40)),
        ("llama.attention.head_count".into(), Value::Uint(4)),
        ("llama.attention.head_count_kv".into(), Value::Uint(2)),
        ("llama.rope.freq_base".into(), Value::Float(500.0)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::Float(1e-5)),
        ("llama.rope.dimension_count".into(), Value::Uint(4)),
        ("tokenizer.ggml.model".into(), Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::Str("smollm".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::Str).collect())),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::Uint(0)),
        ("tokenizer.ggml.eos_token_id".into(), Value::Uint(2)),
        ("tokenizer.chat_template".into(), Value::Str("{{ messages }}".into())),
    ];
    edit(&mut meta, &mut out);
    let mut w = GgufWriter::default();
    for (k, v) in meta {
        w.meta(&k, v);
    }
    for (name, t, ty) in out {
        let shape = t.size();
        let data: Vec<f32> = Vec::try_from(t.contiguous().view([-1])).unwrap();
        let bytes: Vec<u8> = match ty {
            GgmlType::BF16 => data.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
            GgmlType::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            // Unsupported types: the right number of bytes of zeros.
            _ => vec![0u8; data.len()],
        };
        w.tensor(&name, &shape, ty, bytes);
    }
    w.to_bytes()
}

#[test]
fn gguf_file_matches_transformers_after_unpermuting_q_and_k() {
    let _g = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, fixture_as_gguf(|_, _| {})).unwrap();
    let imp = import(&path).unwrap();
    assert_eq!(imp.tensor_types.get("BF16"), Some(&8));
    assert_eq!(imp.extras.chat_template.as_deref(), Some("{{ messages }}"));
    assert_eq!(imp.extras.eos_token.as_deref(), Some("<|im_end|>"));
    let tok = Tokenizer::Bpe(imp.tokenizer.clone());
    check_against_transformers(&imp.model, &tok);
    // The rebuilt tokenizer agrees with the original tokenizer.json on arbitrary text.
    let hf = Tokenizer::Bpe(import(&fixture()).unwrap().tokenizer);
    for text in ["Digits 0123456789, tabs\tand\nnewlines; ünïcode 😀", "<|im_start|>user\nhi<|im_end|>", "  x  "] {
        assert_eq!(tok.encode(text).unwrap(), hf.encode(text).unwrap(), "{text:?}");
        assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
    }
    // Without the un-permutation the model would differ: Q/K rows written un-permuted change the logits.
    std::fs::write(
        &path,
        fixture_as_gguf(|_, ts| {
            for (name, t, _) in ts.iter_mut() {
                if name.ends_with("attn_q.weight") {
                    *t = freet::import::llama::unpermute_rows(t, 4);
                }
            }
        }),
    )
    .unwrap();
    let wrong = import(&path).unwrap();
    let ids = Tensor::from_slice(
        &tok.encode("The keeper counted 42").unwrap().into_iter().map(i64::from).collect::<Vec<_>>(),
    );
    let d = (logits(&wrong.model, &ids) - logits(&imp.model, &ids)).abs().max().double_value(&[]);
    assert!(d > 1e-3, "{d}");
}

#[test]
fn conversion_keeps_the_baseline_exactly_at_sigma_zero_and_nearly_at_small_sigma() {
    use freet::import::convert::{ConvertOptions, convert, prior_gap};
    use freet::model::config::KappaBits;
    let _g = common::serial();
    let base = import(&fixture()).unwrap().model;
    let ids: Vec<u32> = (0..4 * 33).map(|i| (i * 37 % 280) as u32).collect();
    let batches: Vec<Vec<Vec<u32>>> = vec![ids.chunks(33).map(<[u32]>::to_vec).collect()];
    let opts = |e_std| ConvertOptions { bits: 8, kappa: KappaBits(0.5), e_std, inject_after: None, seed: 3 };
    let exact = convert(&base, &opts(0.0)).unwrap();
    let g0 = prior_gap(&base, &exact, &batches, 2);
    assert_eq!(g0.gap(), 0.0, "{g0:?}");
    let vars = exact.var_store().variables();
    assert!(vars["model.latent.readout.weight"].abs().max().double_value(&[]) == 0.0);
    assert!(
        vars["model.latent.encoder.self_attn.q_proj.weight"].equal(&vars["model.layers.1.self_attn.q_proj.weight"])
    );
    // Encoder at the prior: every bit logit 0, KL 0, posterior CE = prior CE = baseline CE.
    let x = Tensor::from_slice(&ids[..33].iter().map(|&v| i64::from(v)).collect::<Vec<_>>()).view([1, -1]);
    let f = tch::no_grad(|| exact.forward(&x, ZSource::Posterior { key: 1 }, Pass::Inference));
    assert_eq!(f.bit_logits.unwrap().abs().max().double_value(&[]), 0.0);
    // A small bit-structured E moves the prior-Z CE by a second-order amount; a large one by more.
    let small = prior_gap(&base, &convert(&base, &opts(0.01)).unwrap(), &batches, 4).gap().abs();
    let large = prior_gap(&base, &convert(&base, &opts(1.0)).unwrap(), &batches, 4).gap().abs();
    assert!(small < 1e-3 && large > 10.0 * small, "small {small}, large {large}");
    assert!(convert(&exact, &opts(0.0)).unwrap_err().to_string().contains("already a Free Transformer"));
}

fn freet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freet")).args(args).output().expect("run freet")
}

fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code for a user error; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got: {err}");
    assert!(lines[0].starts_with("error: ") && !err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = |n: &str| tmp.path().join(n).display().to_string();
    // A truncated GGUF (cut inside the tensor data, and inside the header).
    let full = fixture_as_gguf(|_, _| {});
    for (name, cut) in [("trunc-data.gguf", full.len() - 100), ("trunc-head.gguf", 200)] {
        let p = tmp.path().join(name);
        std::fs::write(&p, &full[..cut]).unwrap();
        fails_with(&freet(&["import", p.to_str().unwrap(), "--out", &out("o1")]), &[name, "truncated"]);
    }
    // An unsupported quantization type, named.
    let q4k = fixture_as_gguf(|_, ts| ts[0].2 = GgmlType(12));
    let p = tmp.path().join("q4k.gguf");
    std::fs::write(&p, q4k).unwrap();
    fails_with(&freet(&["import", p.to_str().unwrap(), "--out", &out("o2")]), &["Q4_K", "not supported"]);
    // GGUF metadata freet does not implement (RoPE scaling), and another architecture.
    let scaled = fixture_as_gguf(|m, _| m.push(("llama.rope.scaling.type".into(), Value::Str("linear".into()))));
    std::fs::write(&p, scaled).unwrap();
    fails_with(&freet(&["import", p.to_str().unwrap(), "--out", &out("o3")]), &["llama.rope.scaling.type"]);
    // config.json with keys freet does not support.
    for (from, to, needle) in [
        ("\"attention_bias\": false", "\"attention_bias\": true", "attention_bias"),
        ("\"use_cache\": true", "\"use_cache\": true, \"num_local_experts\": 8", "num_local_experts"),
        ("\"rope_type\": \"default\"", "\"rope_type\": \"linear\", \"factor\": 2.0", "rope_parameters"),
    ] {
        let d = tmp.path().join(format!("hf-{needle}"));
        copy_fixture(&d);
        let cj = std::fs::read_to_string(d.join("config.json")).unwrap();
        assert!(cj.contains(from), "{from}");
        std::fs::write(d.join("config.json"), cj.replace(from, to)).unwrap();
        fails_with(&freet(&["import", d.to_str().unwrap(), "--out", &out("o4")]), &["config.json", needle]);
    }
    // A tokenizer.json whose vocabulary does not match the model.
    let d = tmp.path().join("hf-vocab");
    copy_fixture(&d);
    let tj = std::fs::read_to_string(d.join("tokenizer.json")).unwrap();
    std::fs::write(d.join("tokenizer.json"), tj.replacen("\"vocab\": {", "\"vocab\": {\"zzextra\": 280, ", 1)).unwrap();
    let err = freet(&["import", d.to_str().unwrap(), "--out", &out("o5")]);
    fails_with(&err, &["tokenizer.json", "281", "280"]);
    // A missing source, and an existing --out.
    fails_with(&freet(&["import", "/no/such/model", "--out", &out("o6")]), &["/no/such/model"]);
    std::fs::create_dir_all(tmp.path().join("exists")).unwrap();
    fails_with(&freet(&["import", fixture().to_str().unwrap(), "--out", &out("exists")]), &["already exists"]);
    assert!(!tmp.path().join("o1").exists() && !tmp.path().join("o5").exists(), "nothing written on error");
}

/// A run config fine-tuning the fixture (`train.init_from`) on the test corpus; `latent` is the
/// `[model.latent]` body.
fn finetune_toml(init_from: &Path, latent: &str, extra: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    format!(
        r#"
[model]
vocab_size = 280
d_model = 16
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_hidden = 40
rope_theta = 500.0
max_seq_len = 64
norm_eps = 1e-5
{extra}
[model.latent]
{latent}
[train]
init_from = "{}"
steps = 2
batch_size = 2
lr = 1e-9
warmup_steps = 0
weight_decay = 0.0
log_every = 1
eval_batches = 1
[data]
kind = "text"
path = "{root}/tests/data/tiny-corpus.txt"
tokenizer = "{root}/tests/data/tiny-llama/tokenizer.json"
seq_len = 17
val_fraction = 0.2
"#,
        init_from.display()
    )
}

#[test]
fn fine_tuning_starts_from_an_imported_or_converted_checkpoint() {
    use freet::config::RunConfig;
    use freet::import::convert::{ConvertOptions, convert};
    use freet::model::config::KappaBits;
    use freet::train::trainer::{TrainOptions, train};
    let _g = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let imp = import(&fixture()).unwrap();
    let base_dir = tmp.path().join("base");
    write(&base_dir, &imp.model, &imp.tokenizer, &imp.extras).unwrap();
    let run = |toml: &str, name: &str| {
        let cfg = RunConfig::from_toml_str(toml, name, &[])?;
        let mut opts = TrainOptions::new(tmp.path().join(name));
        opts.progress = false;
        train(&cfg, &opts)
    };
    // Baseline: after two steps at lr 1e-9 the weights are still the imported ones.
    let s = run(&finetune_toml(&base_dir, "enabled = false", ""), "ft-base").unwrap();
    let tuned = checkpoint::load(&s.checkpoint, Device::Cpu).unwrap();
    let (a, b) = (imp.model.var_store().variables(), tuned.model.var_store().variables());
    for (name, t) in &a {
        let d = (t - &b[name]).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{name}: {d}");
    }
    // Free Transformer from a converted checkpoint.
    let opts = ConvertOptions { bits: 4, kappa: KappaBits(0.5), e_std: 0.5, inject_after: None, seed: 0 };
    let ft = convert(&imp.model, &opts).unwrap();
    let ft_dir = tmp.path().join("ft");
    write(&ft_dir, &ft, &imp.tokenizer, &imp.extras).unwrap();
    let latent = "enabled = true\nbits = 4\nkappa_bits = 0.5";
    let s = run(&finetune_toml(&ft_dir, latent, ""), "ft-ft").unwrap();
    assert!(s.eval.and_then(|e| e.prior_ce).is_some());
    // A different architecture or tokenizer is a one-line error naming it.
    let e = run(&finetune_toml(&base_dir, "enabled = false", "").replace("ffn_hidden = 40", "ffn_hidden = 48"), "bad1");
    let msg = format!("{:#}", e.unwrap_err());
    assert!(msg.contains("model.ffn_hidden") && msg.contains("init_from"), "{msg}");
    let e = run(&finetune_toml(&base_dir, "enabled = true\nbits = 6\nkappa_bits = 0.5", ""), "bad2");
    assert!(format!("{:#}", e.unwrap_err()).contains("model.latent.enabled"));
    let e = run(&finetune_toml(&ft_dir, "enabled = true\nbits = 6\nkappa_bits = 0.5", ""), "bad3");
    assert!(format!("{:#}", e.unwrap_err()).contains("model.latent.bits"));
}

#[test]
fn the_cli_imports_samples_evaluates_and_converts() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let ok = |out: Output| {
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "stdout {o} stderr {e}");
        (o, e)
    };
    let (o, _) = ok(freet(&["import", fixture().to_str().unwrap(), "--out", ck.to_str().unwrap()]));
    assert!(o.contains("2 blocks") && o.contains("280 tokens") && o.contains("chat template kept"), "{o}");
    let (o, e) = ok(freet(&[
        "sample",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--prompt",
        "The keeper",
        "-n",
        "2",
        "--max-new",
        "6",
        "--temperature",
        "0",
        "--timing",
        "--threads",
        "1",
    ]));
    assert_eq!(o.lines().count(), 2, "{o}");
    assert!(o.lines().all(|l| l.starts_with("The keeper")), "{o}");
    assert!(e.contains("tokens/s") && e.contains("1 threads"), "{e}");
    // Evaluated on a run config's held-out split (an imported checkpoint has no training state).
    let cfg = tmp.path().join("run.toml");
    std::fs::write(&cfg, finetune_toml(&ck, "enabled = false", "")).unwrap();
    let (o, _) = ok(freet(&["eval", "--checkpoint", ck.to_str().unwrap(), "--config", cfg.to_str().unwrap()]));
    assert!(o.to_lowercase().contains("ce"), "{o}");
    fails_with(&freet(&["eval", "--checkpoint", ck.to_str().unwrap()]), &["no state.json", "--config"]);
    // Converted, with the prior-Z gap measured: exactly zero at σ = 0.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-corpus.txt");
    let ft = tmp.path().join("ft");
    let (o, _) = ok(freet(&[
        "convert",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        ft.to_str().unwrap(),
        "--bits",
        "6",
        "--kappa",
        "1/2",
        "--e-std",
        "0",
        "--measure",
        corpus.to_str().unwrap(),
        "--seq-len",
        "32",
        "--windows",
        "4",
    ]));
    assert!(o.contains("gap +0.00000") && o.contains("H = 6"), "{o}");
    let loaded = checkpoint::load(&ft, Device::Cpu).unwrap();
    assert_eq!(loaded.model.config().latent().map(|l| l.bits), Some(6));
    fails_with(
        &freet(&[
            "convert",
            "--checkpoint",
            ft.to_str().unwrap(),
            "--out",
            tmp.path().join("x").to_str().unwrap(),
            "--kappa",
            "1",
        ]),
        &["already a Free Transformer"],
    );
    fails_with(
        &freet(&[
            "convert",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--out",
            tmp.path().join("y").to_str().unwrap(),
            "--kappa",
            "1",
            "--bits",
            "17",
        ]),
        &["model.latent.bits"],
    );
}
