//! The tokenizer of a GGUF file, rebuilt as a Hugging Face `tokenizer.json`: GPT-2-style
//! byte-level BPE (`tokenizer.ggml.model = "gpt2"`) from the embedded tokens and merges, with the
//! pre-tokenizer that `tokenizer.ggml.pre` names, and control tokens as special added tokens.

use crate::data::BpeTokenizer;
use crate::import::TokenizerExtras;
use crate::import::gguf::{Gguf, Value};
use anyhow::{Result, anyhow, bail};
use serde_json::json;

/// llama.cpp's token type of control tokens (`<|im_start|>`): special added tokens.
const CONTROL: i64 = 3;
/// llama.cpp's token type of user-defined tokens: added, not special.
const USER_DEFINED: i64 = 4;

/// The Hugging Face pre-tokenizer equal to llama.cpp's regexes for a `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Result<serde_json::Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    Ok(match pre {
        // GPT-2's regex: what ByteLevel with use_regex applies.
        "gpt-2" | "gpt2" => byte_level,
        // llama.cpp splits digits one by one ("\p{N}"), then applies GPT-2's regex: Hugging Face's
        // tokenizer.json of these models is Digits(individual) followed by ByteLevel.
        "smollm" | "starcoder" | "refact" | "codeshell" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]
        }),
        other => bail!(
            "tokenizer.ggml.pre = \"{other}\" is not supported (freet rebuilds gpt-2 and smollm/starcoder-style \
             byte-level BPE tokenizers)"
        ),
    })
}

fn strings<'a>(g: &'a Gguf, key: &str) -> Result<Vec<&'a str>> {
    let arr = g.get(key).and_then(Value::as_array).ok_or_else(|| anyhow!("missing {key}"))?;
    arr.iter().map(|v| v.as_str().ok_or_else(|| anyhow!("{key} holds a non-string"))).collect()
}

fn token_string(g: &Gguf, tokens: &[&str], key: &str) -> Option<String> {
    let id = g.get(key)?.as_u64()? as usize;
    tokens.get(id).map(|s| s.to_string())
}

/// Builds the tokenizer (and its BOS/EOS tokens and chat template) of a GGUF file whose model has
/// `vocab_size` embedding rows.
pub fn gguf_tokenizer(g: &Gguf, vocab_size: usize, origin: &str) -> Result<(BpeTokenizer, TokenizerExtras)> {
    let model =
        g.get("tokenizer.ggml.model").and_then(Value::as_str).ok_or_else(|| anyhow!("missing tokenizer.ggml.model"))?;
    if model != "gpt2" {
        bail!(
            "tokenizer.ggml.model = \"{model}\" is not supported (freet rebuilds GPT-2-style byte-level BPE, \"gpt2\")"
        );
    }
    let pre =
        g.get("tokenizer.ggml.pre").and_then(Value::as_str).ok_or_else(|| anyhow!("missing tokenizer.ggml.pre"))?;
    let tokens = strings(g, "tokenizer.ggml.tokens")?;
    let merges = strings(g, "tokenizer.ggml.merges")?;
    if tokens.len() != vocab_size {
        bail!("the vocabulary has {} tokens but the model has {vocab_size} embedding rows", tokens.len());
    }
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) if a.len() == tokens.len() => a.iter().map(|v| if let Value::Int(i) = v { *i } else { 1 }).collect(),
        Some(a) => bail!("tokenizer.ggml.token_type has {} entries for {} tokens", a.len(), tokens.len()),
        None => vec![1; tokens.len()],
    };
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        if vocab.insert(t.to_string(), json!(id)).is_some() {
            bail!("token {t:?} appears twice in tokenizer.ggml.tokens");
        }
    }
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, ty)| matches!(**ty, CONTROL | USER_DEFINED))
        .map(|(id, ty)| {
            json!({"id": id, "content": tokens[id], "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": *ty == CONTROL})
        })
        .collect();
    let tj = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre)?, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    let tok = BpeTokenizer::from_json(serde_json::to_string_pretty(&tj)?, format!("the vocabulary of {origin}"))?;
    let extras = TokenizerExtras {
        chat_template: g.get("tokenizer.chat_template").and_then(Value::as_str).map(str::to_string),
        bos_token: token_string(g, &tokens, "tokenizer.ggml.bos_token_id"),
        eos_token: token_string(g, &tokens, "tokenizer.ggml.eos_token_id"),
    };
    Ok((tok, extras))
}
