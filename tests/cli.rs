//! The `freet` binary on bad input: a one-line error naming the problem, a non-zero exit, never a
//! panic or backtrace; and the happy path of train → sample → eval on a tiny model.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn freet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freet")).args(args).output().expect("run freet")
}

/// Asserts a clean failure whose single stderr line contains every `needle`.
fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "exit code for a user error; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

/// A tiny Free Transformer run: H = 6, κ = 1/8 bit, 2 steps, checkpoint at the end only.
fn tiny() -> String {
    common::tiny_run_toml(&[
        "model.latent.kappa_bits=\"1/8\"",
        "train.steps=2",
        "train.lr=1e-3",
        "train.log_every=10",
        "train.checkpoint_every=0",
        "train.keep_last=0",
    ])
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn bad_configs_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run").display().to_string();
    fails_with(&freet(&["train", "--config", "/nonexistent/x.toml", "--out", &out]), &["/nonexistent/x.toml"]);
    let cfg = write(tmp.path(), "c.toml", &tiny());
    let cases: &[(&str, &[&str])] = &[
        ("model.latent.bits=17", &["model.latent.bits"]),
        ("model.latent.bits=0", &["model.latent.bits"]),
        ("model.latent.kappa_bits=-0.5", &["kappa_bits"]),
        ("model.n_kv_heads=3", &["n_kv_heads"]),
        ("model.n_layers=0", &["n_layers"]),
        ("model.colour=2", &["colour"]),
        ("train.batch_size=\"many\"", &["batch_size"]),
        ("model.vocab_size=300", &["vocab_size"]),
        ("data.kind=\"text\"", &["path"]),
    ];
    for (o, needles) in cases {
        fails_with(&freet(&["train", "--config", &cfg, "--set", o, "--out", &out]), needles);
    }
    let broken = write(tmp.path(), "broken.toml", "[model\nvocab_size = ");
    fails_with(&freet(&["train", "--config", &broken, "--out", &out]), &["broken.toml"]);
    let text_cfg = tiny()
        .replace("kind = \"synthetic\"", "kind = \"text\"\npath = \"/no/such.txt\"\nseq_len = 33")
        .replace("vocab_size = 29", "vocab_size = 256");
    let tc = write(tmp.path(), "t.toml", &text_cfg);
    let o = freet(&["train", "--config", &tc, "--out", &out]);
    fails_with(&o, &["/no/such.txt", "No such file"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "the OS cause is printed once: {err}");
    let empty = write(tmp.path(), "empty.txt", "");
    let tc = write(tmp.path(), "t2.toml", &text_cfg.replace("/no/such.txt", &empty));
    fails_with(&freet(&["train", "--config", &tc, "--out", &out]), &["empty.txt"]);
}

#[test]
fn train_sample_eval_and_bad_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "c.toml", &tiny());
    let run = tmp.path().join("run");
    let r = run.display().to_string();
    let o = freet(&["train", "--config", &cfg, "--out", &r, "--quiet", "--device", "cpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ELBO") && stdout.contains("diagnostic"), "{stdout}");
    assert!(run.join("metrics.jsonl").is_file() && run.join("config.toml").is_file());

    let o = freet(&["sample", "--checkpoint", &r, "--prompt", "Q>", "-n", "3", "--seed", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.starts_with("Q>") && l.chars().count() == 66), "{lines:?}");
    let again = freet(&["sample", "--checkpoint", &r, "--prompt", "Q>", "-n", "3", "--seed", "1"]);
    assert_eq!(o.stdout, again.stdout, "same seed, same samples");
    let shared =
        freet(&["sample", "--checkpoint", &r, "--prompt", "Q>", "-n", "2", "--shared-z", "--temperature", "0"]);
    let s: Vec<String> = String::from_utf8_lossy(&shared.stdout).lines().map(String::from).collect();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0], s[1], "greedy decoding with one shared Z gives identical samples");

    let o = freet(&["eval", "--checkpoint", &r, "--prior-samples", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["elbo"].as_f64().unwrap() > 0.0 && v["prior_ce"].as_f64().unwrap() > 0.0);
    assert!(v["ce"].is_null(), "a Free Transformer reports no plain CE");

    fails_with(&freet(&["sample", "--checkpoint", &r, "--prompt", "q>"]), &["'q'", "position 0"]);
    fails_with(&freet(&["sample", "--checkpoint", &r, "--prompt", "Q>", "--max-new", "500"]), &["max_seq_len"]);
    fails_with(&freet(&["sample", "--checkpoint", &r, "--prompt", "Q>", "--top-p", "1.5"]), &["top_p"]);
    fails_with(&freet(&["sample", "--checkpoint", "/no/ckpt", "--prompt", "Q>"]), &["/no/ckpt"]);
    fails_with(&freet(&["train", "--config", &cfg, "--out", &r]), &["--resume"]);

    // Corrupt checkpoint files: truncated weights, bit-flipped header, broken JSON.
    let ckpt = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let dir = run.join("checkpoints").join(ckpt.trim());
    let weights = dir.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &good[..good.len() / 2]).unwrap();
    fails_with(&freet(&["sample", "--checkpoint", &r, "--prompt", "Q>"]), &["model.safetensors"]);
    let mut flipped = good.clone();
    flipped[3] ^= 0x40;
    std::fs::write(&weights, &flipped).unwrap();
    fails_with(&freet(&["eval", "--checkpoint", &r]), &["model.safetensors"]);
    std::fs::write(&weights, &good).unwrap();
    let cj = dir.join("config.json");
    let good_cj = std::fs::read(&cj).unwrap();
    std::fs::write(&cj, &good_cj[..good_cj.len() - 10]).unwrap();
    fails_with(&freet(&["sample", "--checkpoint", &r, "--prompt", "Q>"]), &["config.json"]);
    std::fs::write(&cj, &good_cj).unwrap();
    let o = freet(&["sample", "--checkpoint", &r, "--prompt", "Q>", "-n", "1"]);
    assert!(o.status.success(), "restored checkpoint loads again");
}

#[test]
fn bad_device_is_a_user_error() {
    fails_with(&freet(&["sample", "--checkpoint", ".", "--prompt", "A>", "--device", "tpu"]), &["tpu"]);
}

#[test]
fn unknown_bench_choices_are_user_errors_not_defaults() {
    // Rejected before anything runs, naming the value and the possible ones.
    fails_with(&freet(&["bench", "run", "--variant", "ft-sparse"]), &["ft-sparse", "baseline, ft, ft-dense"]);
    fails_with(&freet(&["bench", "run", "--precision", "fp16"]), &["fp16", "fp32, bf16"]);
    fails_with(&freet(&["bench", "run", "--mode", "infer"]), &["infer", "train, generate"]);
}

/// The repository's tiny test corpus.
fn corpus() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-corpus.txt").display().to_string()
}

/// [`tiny`] on the test corpus with a BPE of `vocab` tokens from `tokenizer`.
fn tiny_bpe(tokenizer: &str, vocab: usize) -> String {
    common::tiny_run_toml(&[
        "model.latent.kappa_bits=\"1/8\"",
        &format!("model.vocab_size={vocab}"),
        "train.steps=2",
        "train.log_every=10",
        "train.checkpoint_every=0",
        "train.keep_last=0",
        "data.kind=\"text\"",
        &format!("data.path=\"{}\"", corpus()),
        "data.seq_len=33",
        "data.val_fraction=0.25",
        &format!("data.tokenizer=\"{tokenizer}\""),
    ])
}

#[test]
fn bpe_tokenizer_train_then_model_train_sample_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tmp.path().join("tok.json").display().to_string();
    let o = freet(&["tokenizer", "train", "--files", &corpus(), "--vocab-size", "300", "--out", &tok]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("vocab size 300") && stdout.contains("merges"), "{stdout}");
    assert!(stdout.contains("training bytes") && stdout.contains("bytes/token"), "{stdout}");
    // Deterministic across processes: the same input gives the same file.
    let tok2 = tmp.path().join("tok2.json").display().to_string();
    let o = freet(&["tokenizer", "train", "--files", &corpus(), "--vocab-size", "300", "--out", &tok2]);
    assert!(o.status.success());
    let tok_bytes = std::fs::read(&tok).unwrap();
    assert_eq!(tok_bytes, std::fs::read(&tok2).unwrap(), "tokenizer training is deterministic");

    let cfg = write(tmp.path(), "bpe.toml", &tiny_bpe(&tok, 300));
    let run = tmp.path().join("run");
    let r = run.display().to_string();
    let o = freet(&["train", "--config", &cfg, "--out", &r, "--quiet", "--device", "cpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("bits/byte"), "{stdout}");
    // The checkpoint carries its own byte-identical copy of the tokenizer.
    let ckpt = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let dir = run.join("checkpoints").join(ckpt.trim());
    assert_eq!(std::fs::read(dir.join("tokenizer.json")).unwrap(), tok_bytes);

    // Replacing the original file does not change what sample and eval use.
    let o = freet(&["tokenizer", "train", "--files", &corpus(), "--vocab-size", "280", "--out", &tok]);
    assert!(o.status.success());
    let o = freet(&["eval", "--checkpoint", &r, "--prior-samples", "1", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (tokens, elbo) = (v["tokens"].as_f64().unwrap(), v["elbo"].as_f64().unwrap());
    let bpb = &v["bits_per_byte"];
    let bytes = bpb["bytes"].as_f64().unwrap();
    assert!(bytes > 1.5 * tokens, "BPE tokens cover several bytes: {bytes} bytes, {tokens} tokens");
    let want = elbo * tokens / std::f64::consts::LN_2 / bytes;
    assert!((bpb["elbo"].as_f64().unwrap() - want).abs() < 1e-9, "{bpb}");
    assert!(bpb["prior_ce"].as_f64().unwrap() > 0.0 && bpb["ce"].is_null(), "{bpb}");
    let o = freet(&["eval", "--checkpoint", &r, "--prior-samples", "1"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("bits/byte"));
    let o = freet(&["sample", "--checkpoint", &r, "--prompt", "The river ", "-n", "2", "--max-new", "8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    assert!(lines.len() >= 2 && lines[0].starts_with("The river "), "{lines:?}");

    // Resuming with a different tokenizer is refused, whether its size differs or only its merges.
    fails_with(
        &freet(&["train", "--config", &cfg, "--out", &r, "--resume", "--set", "train.steps=3"]),
        &["model.vocab_size 300", "280 tokens"],
    );
    let half = write(
        tmp.path(),
        "half.txt",
        &std::fs::read_to_string(corpus()).unwrap().chars().take(2400).collect::<String>(),
    );
    let o =
        freet(&["tokenizer", "train", "--files", &half, "--vocab-size", "300", "--out", &tok, "--min-frequency", "1"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("vocab size 300"));
    fails_with(
        &freet(&["train", "--config", &cfg, "--out", &r, "--resume", "--set", "train.steps=3"]),
        &["checkpoint was trained with the BPE tokenizer", "tok.json"],
    );

    // A checkpoint whose tokenizer copy is corrupt, or not the one config.json records, fails cleanly.
    let copy = dir.join("tokenizer.json");
    std::fs::write(&copy, &tok_bytes[..tok_bytes.len() / 2]).unwrap();
    fails_with(&freet(&["eval", "--checkpoint", &r]), &["tokenizer.json", "not a valid tokenizer.json"]);
    std::fs::copy(&tok2, &copy).unwrap();
    let other = std::fs::read_to_string(&tok).unwrap();
    std::fs::write(&copy, other).unwrap();
    fails_with(&freet(&["sample", "--checkpoint", &r, "--prompt", "The"]), &["does not match config.json"]);
    std::fs::copy(&tok2, &copy).unwrap();
    let o = freet(&["sample", "--checkpoint", &r, "--prompt", "The", "-n", "1", "--max-new", "2"]);
    assert!(o.status.success(), "restored tokenizer loads again");
}

#[test]
fn bpe_user_errors_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.json").display().to_string();
    let empty = write(tmp.path(), "empty.txt", "");
    let train_tok = |files: &[&str], vocab: &str| {
        let mut args = vec!["tokenizer", "train", "--vocab-size", vocab, "--out", &out, "--files"];
        args.extend_from_slice(files);
        freet(&args)
    };
    fails_with(&train_tok(&["/no/such/corpus.txt"], "300"), &["/no/such/corpus.txt"]);
    fails_with(&train_tok(&[&empty], "300"), &["empty"]);
    fails_with(&train_tok(&[&corpus()], "256"), &["vocab size 256"]);
    fails_with(&train_tok(&[&corpus()], "100000000"), &["vocab size 100000000"]);
    assert!(!Path::new(&out).exists(), "no file is written on failure");

    // Training a model: corrupt tokenizer file, missing file, vocabulary mismatch.
    let o = train_tok(&[&corpus()], "300");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = tmp.path().join("run").display().to_string();
    let text = std::fs::read_to_string(&out).unwrap();
    let broken = write(tmp.path(), "broken.json", &text.chars().take(text.chars().count() / 3).collect::<String>());
    let cfg = write(tmp.path(), "broken.toml", &tiny_bpe(&broken, 300));
    fails_with(&freet(&["train", "--config", &cfg, "--out", &run]), &["broken.json", "not a valid tokenizer.json"]);
    let cfg = write(tmp.path(), "missing.toml", &tiny_bpe("/no/such/tok.json", 300));
    fails_with(&freet(&["train", "--config", &cfg, "--out", &run]), &["/no/such/tok.json"]);
    let cfg = write(tmp.path(), "mismatch.toml", &tiny_bpe(&out, 512));
    fails_with(&freet(&["train", "--config", &cfg, "--out", &run]), &["model.vocab_size 512", "300 tokens", "t.json"]);
}

mod arguments {
    use super::freet;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Random flags and values on every quick subcommand: usage errors or one-line errors, never
        /// a panic or an internal failure. (`demo` and `experiment` would start training.)
        #[test]
        fn random_arguments_never_panic(
            cmd in prop::sample::select(vec!["train", "sample", "eval"]),
            args in proptest::collection::vec(
                prop_oneof![
                    prop::sample::select(vec![
                        "--config", "--checkpoint", "--prompt", "--set", "-n", "--max-new", "--top-k",
                        "--top-p", "--temperature", "--device", "--seed", "--batches", "--resume",
                        "--shared-z", "--json", "--prior-samples",
                    ]).prop_map(String::from),
                    "[-a-z0-9=./>_]{0,10}",
                ],
                0..8,
            ),
        ) {
            let mut all = vec![cmd.to_string()];
            all.extend(args);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let out = freet(&refs);
            let err = String::from_utf8_lossy(&out.stderr);
            prop_assert!(!err.contains("panicked") && !err.contains("internal failure"), "{:?}: {}", all, err);
            prop_assert!(out.status.code().is_some(), "killed by a signal: {:?}", all);
        }
    }
}
