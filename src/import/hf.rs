//! Hugging Face Llama directories: `config.json` (plain Llama only: any key that would change the
//! architecture is refused by name), `model.safetensors` or a sharded
//! `model.safetensors.index.json`, `tokenizer.json` and, when present, a chat template.

use crate::data::BpeTokenizer;
use crate::import::llama::LlamaSpec;
use crate::import::{Source, TokenizerExtras};
use crate::util::error::one_line;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use tch::Tensor;

/// Keys of `config.json` that carry no architecture (metadata, token ids, training-only settings).
const HARMLESS: &[&str] = &[
    "_name_or_path",
    "architectures",
    "model_type",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "use_cache",
    "is_llama_config",
    "pretraining_tp",
    "attention_dropout",
    "tokenizer_class",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
];

/// Keys freet reads (their values are checked).
const READ: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
    "hidden_act",
    "head_dim",
    "attention_bias",
    "mlp_bias",
    "rope_scaling",
    "rope_parameters",
    "rope_interleaved",
];

fn usize_key(c: &Map<String, Value>, key: &str, default: Option<usize>) -> Result<usize> {
    match c.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| anyhow!("missing key {key}")),
        Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| anyhow!("{key} = {v} is not a non-negative integer")),
    }
}

fn f64_key(c: &Map<String, Value>, key: &str, default: f64) -> Result<f64> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_f64().ok_or_else(|| anyhow!("{key} = {v} is not a number")),
    }
}

/// The RoPE base: `rope_theta`, or transformers ≥ 5's `rope_parameters` of type `default`; any
/// scaling is refused.
fn rope_theta(c: &Map<String, Value>) -> Result<f64> {
    if let Some(s) = c.get("rope_scaling").filter(|v| !v.is_null()) {
        bail!("unsupported key rope_scaling = {s} (freet implements the default RoPE only)");
    }
    if c.get("rope_interleaved").and_then(Value::as_bool) == Some(true) {
        bail!("unsupported key rope_interleaved = true (freet's RoPE is rotate-half)");
    }
    let mut theta = f64_key(c, "rope_theta", 10_000.0)?;
    if let Some(p) = c.get("rope_parameters").filter(|v| !v.is_null()) {
        let obj = p.as_object().ok_or_else(|| anyhow!("rope_parameters = {p} is not an object"))?;
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("rope_type", Value::String(t)) if t == "default" => {}
                ("rope_theta", v) => theta = v.as_f64().ok_or_else(|| anyhow!("rope_parameters.rope_theta = {v}"))?,
                _ => bail!("unsupported rope_parameters.{k} = {v} (freet implements the default RoPE only)"),
            }
        }
    }
    Ok(theta)
}

/// Checks that `config.json` describes a plain Llama and reads its shape.
pub fn parse_config(text: &str) -> Result<LlamaSpec> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("not valid JSON: {}", one_line(&e.to_string())))?;
    let c = v.as_object().ok_or_else(|| anyhow!("not a JSON object"))?;
    let mut keys: Vec<&String> = c.keys().collect();
    keys.sort();
    for k in keys {
        if !HARMLESS.contains(&k.as_str()) && !READ.contains(&k.as_str()) {
            bail!("unsupported key {k} = {} (freet imports plain Llama models only)", c[k]);
        }
    }
    if c.get("model_type").and_then(Value::as_str) != Some("llama") {
        bail!("model_type {} is not \"llama\"", c.get("model_type").unwrap_or(&Value::Null));
    }
    if let Some(a) = c.get("architectures")
        && a != &serde_json::json!(["LlamaForCausalLM"])
    {
        bail!("architectures {a} is not [\"LlamaForCausalLM\"]");
    }
    for key in ["attention_bias", "mlp_bias"] {
        if c.get(key).and_then(Value::as_bool) == Some(true) {
            bail!("unsupported key {key} = true (freet's projections have no biases)");
        }
    }
    if let Some(act) = c.get("hidden_act").filter(|a| a.as_str() != Some("silu")) {
        bail!("unsupported hidden_act {act} (freet's MLP is SwiGLU with silu)");
    }
    let d_model = usize_key(c, "hidden_size", None)?;
    let n_heads = usize_key(c, "num_attention_heads", None)?;
    let spec = LlamaSpec {
        vocab_size: usize_key(c, "vocab_size", None)?,
        d_model,
        n_layers: usize_key(c, "num_hidden_layers", None)?,
        n_heads,
        n_kv_heads: usize_key(c, "num_key_value_heads", Some(n_heads))?,
        ffn_hidden: usize_key(c, "intermediate_size", None)?,
        rope_theta: rope_theta(c)?,
        norm_eps: f64_key(c, "rms_norm_eps", 1e-6)?,
        max_seq_len: usize_key(c, "max_position_embeddings", Some(2048))?,
        tied_embeddings: c.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
    };
    if n_heads > 0
        && let Some(hd) = c.get("head_dim").filter(|v| !v.is_null())
        && hd.as_u64() != Some((d_model / n_heads) as u64)
    {
        bail!(
            "unsupported head_dim = {hd} (freet's head width is hidden_size / num_attention_heads = {})",
            d_model / n_heads
        );
    }
    Ok(spec)
}

/// The tensors of a directory: its shards (listed by `model.safetensors.index.json`) or its
/// single `model.safetensors`. RoPE frequency buffers of old checkpoints are dropped.
fn read_weights(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        let p = dir.join("model.safetensors");
        if !p.is_file() {
            bail!("{}: no model.safetensors nor model.safetensors.index.json", dir.display());
        }
        return Ok(drop_buffers(read_file(&p)?));
    }
    let text = std::fs::read_to_string(&index).with_context(|| format!("cannot read {}", index.display()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("corrupt {}: {}", index.display(), one_line(&e.to_string())))?;
    let map =
        v.get("weight_map").and_then(Value::as_object).ok_or_else(|| anyhow!("{}: no weight_map", index.display()))?;
    let mut files = BTreeSet::new();
    for f in map.values() {
        let f = f.as_str().filter(|f| !f.contains(['/', '\\']) && !f.starts_with('.'));
        let f = f.ok_or_else(|| anyhow!("{}: a weight_map entry is not a plain file name", index.display()))?;
        files.insert(f.to_string());
    }
    let mut out = HashMap::new();
    for f in &files {
        out.extend(read_file(&dir.join(f))?);
    }
    let mut wanted: Vec<&String> = map.keys().collect();
    wanted.sort();
    if let Some(missing) = wanted.into_iter().find(|k| !out.contains_key(*k)) {
        bail!("{}: tensor {missing} is listed but absent from its shard", index.display());
    }
    Ok(drop_buffers(out))
}

fn read_file(p: &Path) -> Result<HashMap<String, Tensor>> {
    if !p.is_file() {
        bail!("missing {}", p.display());
    }
    let list =
        Tensor::read_safetensors(p).map_err(|e| anyhow!("corrupt {}: {}", p.display(), one_line(&e.to_string())))?;
    Ok(list.into_iter().collect())
}

fn drop_buffers(mut t: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    t.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    t
}

/// The chat template of `tokenizer_config.json` (a string, or the `default` of a named list) or of
/// `chat_template.jinja`, and the BOS/EOS token strings.
fn tokenizer_extras(dir: &Path) -> Result<TokenizerExtras> {
    let mut extras = TokenizerExtras::default();
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        extras.chat_template =
            Some(std::fs::read_to_string(&jinja).with_context(|| format!("cannot read {}", jinja.display()))?);
    }
    let tc = dir.join("tokenizer_config.json");
    if tc.is_file() {
        let text = std::fs::read_to_string(&tc).with_context(|| format!("cannot read {}", tc.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("corrupt {}: {}", tc.display(), one_line(&e.to_string())))?;
        let token = |key: &str| match v.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        extras.bos_token = token("bos_token");
        extras.eos_token = token("eos_token");
        match v.get("chat_template") {
            Some(Value::String(s)) => extras.chat_template = Some(s.clone()),
            Some(Value::Array(list)) => {
                let default = list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some("default"));
                extras.chat_template =
                    default.and_then(|t| t.get("template")).and_then(Value::as_str).map(str::to_string);
            }
            _ => {}
        }
    }
    Ok(extras)
}

/// Reads a Hugging Face Llama directory.
pub fn read_dir(dir: &Path) -> Result<Source> {
    let cj = dir.join("config.json");
    let text = std::fs::read_to_string(&cj).with_context(|| format!("cannot read {}", cj.display()))?;
    let spec = parse_config(&text).map_err(|e| anyhow!("{}: {e}", cj.display()))?;
    let tokenizer = BpeTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let tensors = read_weights(dir)?;
    Ok(Source {
        spec,
        tensors,
        tokenizer,
        extras: tokenizer_extras(dir)?,
        origin: dir.display().to_string(),
        tensor_types: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = r#"{"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.04,
      "intermediate_size": 1536, "is_llama_config": true, "max_position_embeddings": 8192, "model_type": "llama",
      "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "pretraining_tp": 1,
      "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
      "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": true,
      "vocab_size": 49152}"#;

    #[test]
    fn reads_a_plain_llama_config() {
        let s = parse_config(SMOL).unwrap();
        assert_eq!(
            (s.vocab_size, s.d_model, s.n_layers, s.n_heads, s.n_kv_heads, s.ffn_hidden),
            (49152, 576, 30, 9, 3, 1536)
        );
        assert_eq!((s.rope_theta, s.norm_eps, s.max_seq_len, s.tied_embeddings), (100_000.0, 1e-5, 8192, true));
        let v5 = SMOL.replace(
            "\"rope_theta\": 100000",
            "\"rope_parameters\": {\"rope_theta\": 5e5, \"rope_type\": \"default\"}",
        );
        assert_eq!(parse_config(&v5).unwrap().rope_theta, 5e5);
    }

    #[test]
    fn architecture_keys_freet_lacks_are_one_line_errors_naming_them() {
        let cases = [
            ("\"attention_bias\": false", "\"attention_bias\": true", "attention_bias"),
            ("\"attention_dropout\": 0.0", "\"attention_dropout\": 0.0, \"mlp_bias\": true", "mlp_bias"),
            (
                "\"rope_scaling\": null",
                "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}",
                "rope_scaling",
            ),
            ("\"use_cache\": true", "\"use_cache\": true, \"num_local_experts\": 8", "num_local_experts"),
            ("\"use_cache\": true", "\"use_cache\": true, \"sliding_window\": 4096", "sliding_window"),
            ("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act"),
            ("\"model_type\": \"llama\"", "\"model_type\": \"mistral\"", "model_type"),
            ("\"rope_interleaved\": false", "\"rope_interleaved\": true", "rope_interleaved"),
            ("\"use_cache\": true", "\"use_cache\": true, \"head_dim\": 128", "head_dim"),
            (
                "\"rope_theta\": 100000",
                "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4}",
                "rope_parameters",
            ),
        ];
        for (from, to, needle) in cases {
            let text = SMOL.replace(from, to);
            assert_ne!(text, SMOL, "{from}");
            let msg = parse_config(&text).unwrap_err().to_string();
            assert!(msg.contains(needle) && !msg.contains('\n'), "{needle}: {msg}");
        }
        assert!(parse_config("{").unwrap_err().to_string().contains("not valid JSON"));
        assert!(
            parse_config(&SMOL.replace("\"hidden_size\": 576,", "")).unwrap_err().to_string().contains("hidden_size")
        );
    }
}
