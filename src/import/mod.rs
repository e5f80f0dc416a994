//! Starting from a pretrained Llama: `freet import` reads a Hugging Face Llama directory or a GGUF
//! file into a baseline freet checkpoint with its own tokenizer (and chat template), and
//! `freet convert` turns such a baseline into a Free Transformer whose prior-Z cross-entropy
//! starts equal to the baseline's.

pub mod convert;
pub mod gguf;
pub mod hf;
pub mod llama;
pub mod quant;
pub mod vocab;

use crate::data::{BpeTokenizer, Tokenizer};
use crate::model::FreeTransformer;
use crate::train::checkpoint;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

use self::gguf::{Gguf, Value};
use self::llama::{LlamaSpec, unpermute_rows};

/// What a tokenizer keeps beside `tokenizer.json`: BOS/EOS strings and the chat template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerExtras {
    /// The Jinja chat template, if the source has one.
    pub chat_template: Option<String>,
    /// The beginning-of-sequence token.
    pub bos_token: Option<String>,
    /// The end-of-sequence token.
    pub eos_token: Option<String>,
}

impl TokenizerExtras {
    /// A Hugging Face `tokenizer_config.json` carrying these (so transformers' `AutoTokenizer`
    /// reads the checkpoint directory too).
    pub fn tokenizer_config(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        for (k, v) in
            [("bos_token", &self.bos_token), ("eos_token", &self.eos_token), ("chat_template", &self.chat_template)]
        {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        serde_json::Value::Object(m)
    }
}

/// A source model read into memory, before it becomes a freet model.
#[derive(Debug)]
pub struct Source {
    /// Its shape.
    pub spec: LlamaSpec,
    /// Its tensors under Hugging Face names, Q/K in rotate-half order.
    pub tensors: HashMap<String, Tensor>,
    /// Its tokenizer.
    pub tokenizer: BpeTokenizer,
    /// Chat template and special tokens.
    pub extras: TokenizerExtras,
    /// Where it came from, for messages.
    pub origin: String,
    /// How many tensors of each GGUF type were dequantized (empty for safetensors).
    pub tensor_types: BTreeMap<String, usize>,
}

/// An imported model.
#[derive(Debug)]
pub struct Imported {
    /// The baseline decoder with the source's weights (fp32).
    pub model: FreeTransformer,
    /// Its tokenizer.
    pub tokenizer: BpeTokenizer,
    /// Chat template and special tokens.
    pub extras: TokenizerExtras,
    /// How many tensors of each GGUF type were dequantized (empty for safetensors).
    pub tensor_types: BTreeMap<String, usize>,
}

/// Reads `path` (a Hugging Face Llama directory, or a GGUF file) into a baseline freet model.
pub fn import(path: &Path) -> Result<Imported> {
    let src = if path.is_dir() {
        hf::read_dir(path)?
    } else if path.is_file() {
        read_gguf(path)?
    } else {
        bail!("{} does not exist", path.display());
    };
    if src.tokenizer.vocab_size() != src.spec.vocab_size {
        bail!(
            "{}: tokenizer.json has {} tokens but the model's vocab_size is {} (freet needs them equal)",
            src.origin,
            src.tokenizer.vocab_size(),
            src.spec.vocab_size
        );
    }
    let model = llama::build_model(&src.spec, src.tensors, &src.origin)?;
    Ok(Imported { model, tokenizer: src.tokenizer, extras: src.extras, tensor_types: src.tensor_types })
}

/// Writes an imported (or converted) model as a standalone checkpoint directory `out`: weights,
/// `config.json`, `tokenizer.json`, `tokenizer_config.json` (chat template, BOS/EOS).
pub fn write(out: &Path, model: &FreeTransformer, tokenizer: &BpeTokenizer, extras: &TokenizerExtras) -> Result<()> {
    let tc = serde_json::to_vec_pretty(&extras.tokenizer_config())?;
    checkpoint::save_standalone(out, model, &Tokenizer::Bpe(tokenizer.clone()), &[("tokenizer_config.json", &tc)])
}

fn meta_usize(g: &Gguf, key: &str) -> Result<usize> {
    g.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| anyhow!("missing or non-integer {key}"))
}

/// The shape of a GGUF Llama; every `llama.*` key freet does not implement is refused by name.
fn gguf_spec(g: &Gguf, vocab_size: usize, tied: bool) -> Result<LlamaSpec> {
    let arch = g.get("general.architecture").and_then(Value::as_str).unwrap_or("(none)");
    if arch != "llama" {
        bail!("general.architecture = \"{arch}\" is not supported (freet imports \"llama\")");
    }
    const KNOWN: &[&str] = &[
        "llama.block_count",
        "llama.context_length",
        "llama.embedding_length",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon",
        "llama.rope.dimension_count",
        "llama.attention.key_length",
        "llama.attention.value_length",
        "llama.vocab_size",
    ];
    for (k, v) in g.meta.range("llama.".to_string()..) {
        if !k.starts_with("llama.") {
            break;
        }
        let harmless = match k.as_str() {
            "llama.rope.scaling.type" => v.as_str() == Some("none"),
            "llama.expert_count" | "llama.expert_used_count" => v.as_u64() == Some(0),
            _ => KNOWN.contains(&k.as_str()),
        };
        if !harmless {
            bail!("unsupported key {k} = {v:?} (freet imports plain Llama models only)");
        }
    }
    let n_heads = meta_usize(g, "llama.attention.head_count")?;
    let d_model = meta_usize(g, "llama.embedding_length")?;
    let spec = LlamaSpec {
        vocab_size,
        d_model,
        n_layers: meta_usize(g, "llama.block_count")?,
        n_heads,
        n_kv_heads: g
            .get("llama.attention.head_count_kv")
            .map_or(Ok(n_heads), |_| meta_usize(g, "llama.attention.head_count_kv"))?,
        ffn_hidden: meta_usize(g, "llama.feed_forward_length")?,
        rope_theta: g.get("llama.rope.freq_base").and_then(Value::as_f64).unwrap_or(10_000.0),
        norm_eps: g
            .get("llama.attention.layer_norm_rms_epsilon")
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow!("missing llama.attention.layer_norm_rms_epsilon"))?,
        max_seq_len: meta_usize(g, "llama.context_length")?,
        tied_embeddings: tied,
    };
    for key in ["llama.rope.dimension_count", "llama.attention.key_length", "llama.attention.value_length"] {
        if g.get(key).is_some() && meta_usize(g, key)? != spec.head_dim() {
            bail!(
                "unsupported {key} = {} (freet's head width is embedding_length / head_count = {})",
                meta_usize(g, key)?,
                spec.head_dim()
            );
        }
    }
    Ok(spec)
}

/// The Hugging Face name of a GGUF Llama tensor, and whether its rows are permuted for
/// interleaved RoPE (Some(heads) for Q and K).
fn hf_name(name: &str, spec_heads: (usize, usize)) -> Option<(String, Option<usize>)> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some((f.to_string(), None));
    }
    let rest = name.strip_prefix("blk.")?;
    let (i, part) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (hf, heads) = match part {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(spec_heads.0)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(spec_heads.1)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{i}.{hf}"), heads))
}

/// Reads a GGUF Llama: metadata, every tensor dequantized to f32 under its Hugging Face name with
/// Q/K un-permuted, and the tokenizer rebuilt from the embedded vocabulary.
pub fn read_gguf(path: &Path) -> Result<Source> {
    let origin = path.display().to_string();
    let g = Gguf::open(path)?;
    let at = |e: anyhow::Error| anyhow!("{origin}: {e}");
    let embd = g.tensor("token_embd.weight").ok_or_else(|| anyhow!("{origin}: missing tensor token_embd.weight"))?;
    let vocab_size = embd.shape()[0] as usize;
    let spec = gguf_spec(&g, vocab_size, g.tensor("output.weight").is_none()).map_err(at)?;
    let mut tensors = HashMap::new();
    let mut tensor_types = BTreeMap::new();
    for t in &g.tensors {
        let Some((name, heads)) = hf_name(&t.name, (spec.n_heads, spec.n_kv_heads)) else {
            return Err(at(anyhow!("unsupported tensor {} (freet imports plain Llama models only)", t.name)));
        };
        let (data, shape) = g.tensor_f32(&t.name).map_err(at)?;
        let mut w = Tensor::from_slice(&data).view(shape.as_slice());
        if let Some(h) = heads {
            if w.dim() != 2 || w.size()[0] % (2 * h as i64) != 0 {
                return Err(at(anyhow!("tensor {} has shape {:?}, not [heads·head_dim, d]", t.name, w.size())));
            }
            w = unpermute_rows(&w, h);
        }
        *tensor_types.entry(t.ty.name()).or_insert(0) += 1;
        tensors.insert(name, w.to_kind(Kind::Float).to_device(Device::Cpu));
    }
    let (tokenizer, extras) = vocab::gguf_tokenizer(&g, vocab_size, &origin).map_err(at)?;
    Ok(Source { spec, tensors, tokenizer, extras, origin, tensor_types })
}
