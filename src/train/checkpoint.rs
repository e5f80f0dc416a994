//! Checkpoints: `model.safetensors` (Hugging Face Llama tensor names, Free Transformer tensors
//! under `model.latent.`), `config.json` (HF-style keys plus the full freet config),
//! `optimizer.safetensors`, `state.json` (step, run config, data cursor) and, for a BPE run, a copy
//! of its `tokenizer.json` (recorded in `config.json` with its size and content hash, and checked
//! on load), so that `sample` and `eval` use the exact tokenizer of training. Each checkpoint is
//! written into a temporary directory, fsynced, and renamed into place; a `latest` pointer file is
//! then replaced atomically. A crash at any point leaves the previous checkpoint loadable.

use crate::config::RunConfig;
use crate::data::Tokenizer;
use crate::data::tokenizer::bpe::{BpeRecord, BpeTokenizer};
use crate::model::FreeTransformer;
use crate::model::config::ModelConfig;
use crate::train::optim::AdamW;
use crate::util::error::one_line;
use crate::util::fs::{fsync_dir, fsync_file, write_atomic, write_file_synced};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Version of the on-disk layout.
pub const FORMAT_VERSION: u32 = 1;
const MODEL_FILE: &str = "model.safetensors";
const OPTIM_FILE: &str = "optimizer.safetensors";
const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
const LATEST: &str = "latest";

/// Training bookkeeping saved beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Layout version.
    pub format_version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Tokens consumed.
    pub tokens_seen: u64,
    /// Wall-clock seconds of training so far.
    pub elapsed_s: f64,
    /// The next (step, micro-batch) to read: data is a pure function of it and the seed.
    pub data_cursor: (u64, u64),
    /// The whole run configuration.
    pub run: RunConfig,
}

/// `config.json`: Hugging Face-style keys plus freet's own.
#[derive(Debug, Serialize, Deserialize)]
struct ConfigJson {
    architectures: Vec<String>,
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    rope_theta: f64,
    tie_word_embeddings: bool,
    freet: FreetJson,
}

#[derive(Debug, Serialize, Deserialize)]
struct FreetJson {
    model: ModelConfig,
    /// A serialized [`Tokenizer`]; a BPE is `{"bpe": BpeRecord}` and its file lies beside.
    tokenizer: serde_json::Value,
}

fn config_json(cfg: &ModelConfig, tokenizer: &Tokenizer) -> Result<ConfigJson> {
    let ft = cfg.latent().is_some();
    Ok(ConfigJson {
        architectures: vec![if ft { "FreeTransformerForCausalLM" } else { "LlamaForCausalLM" }.into()],
        model_type: if ft { "free_transformer" } else { "llama" }.into(),
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.d_model,
        intermediate_size: cfg.ffn_hidden,
        num_hidden_layers: cfg.n_layers,
        num_attention_heads: cfg.n_heads,
        num_key_value_heads: cfg.n_kv_heads,
        max_position_embeddings: cfg.max_seq_len,
        rms_norm_eps: cfg.norm_eps,
        rope_theta: cfg.rope_theta,
        tie_word_embeddings: cfg.tied_embeddings,
        freet: FreetJson { model: cfg.clone(), tokenizer: serde_json::to_value(tokenizer)? },
    })
}

/// The tokenizer `config.json` records: a built-in one, or a BPE loaded from the checkpoint's own
/// copy, which must match the recorded vocabulary size and content hash.
fn load_tokenizer(dir: &Path, value: serde_json::Value) -> Result<Tokenizer> {
    let cj = dir.join(CONFIG_FILE);
    let Some(record) = value.get("bpe") else {
        return serde_json::from_value(value).map_err(|e| anyhow!("corrupt {}: tokenizer: {e}", cj.display()));
    };
    let record: BpeRecord =
        serde_json::from_value(record.clone()).map_err(|e| anyhow!("corrupt {}: tokenizer.bpe: {e}", cj.display()))?;
    if record.file.is_empty() || record.file.contains(['/', '\\']) || record.file.starts_with('.') {
        bail!("corrupt {}: tokenizer file {:?} is not a plain file name", cj.display(), record.file);
    }
    let bpe = BpeTokenizer::from_file(&dir.join(&record.file))?;
    if bpe.record() != record {
        bail!(
            "{}: {} does not match config.json (vocab {} vs {}, fnv1a64 {} vs {})",
            dir.display(),
            record.file,
            bpe.vocab_size(),
            record.vocab_size,
            bpe.hash_hex(),
            record.fnv1a64
        );
    }
    Ok(Tokenizer::Bpe(bpe))
}

fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Saves a checkpoint for `state.step` under `dir` (`dir/step-NNNNNNNN`), points `dir/latest` at
/// it, and keeps only the newest `keep_last` (0 = all). Returns the checkpoint's directory.
pub fn save(
    dir: &Path,
    model: &FreeTransformer,
    tokenizer: Tokenizer,
    opt: Option<&AdamW>,
    state: &TrainState,
    keep_last: usize,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let name = step_name(state.step);
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let written = (|| -> Result<()> {
        fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let vars = sorted_vars(model);
        let p = tmp.join(MODEL_FILE);
        Tensor::write_safetensors(&vars, &p).with_context(|| format!("cannot write {}", p.display()))?;
        fsync_file(&p)?;
        if let Some(opt) = opt {
            let (tensors, _) = opt.state();
            let p = tmp.join(OPTIM_FILE);
            Tensor::write_safetensors(&tensors, &p).with_context(|| format!("cannot write {}", p.display()))?;
            fsync_file(&p)?;
        }
        if let Tokenizer::Bpe(bpe) = &tokenizer {
            write_file_synced(&tmp.join(crate::data::tokenizer::bpe::TOKENIZER_FILE), bpe.json().as_bytes())?;
        }
        let cj = serde_json::to_vec_pretty(&config_json(model.config(), &tokenizer)?)?;
        write_file_synced(&tmp.join(CONFIG_FILE), &cj)?;
        write_file_synced(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(state)?)?;
        fsync_dir(&tmp)
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let fin = dir.join(&name);
    if fin.exists() {
        // Same step saved again (e.g. final save right after a periodic one): replace it.
        let old = dir.join(format!(".old-{name}-{}", std::process::id()));
        fs::rename(&fin, &old).with_context(|| format!("cannot move aside {}", fin.display()))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&tmp, &fin).with_context(|| format!("cannot rename checkpoint into {}", fin.display()))?;
    fsync_dir(dir)?;
    write_atomic(&dir.join(LATEST), name.as_bytes())?;
    if keep_last > 0 {
        rotate(dir, keep_last, &name)?;
    }
    Ok(fin)
}

/// Writes a checkpoint without training state (an imported or converted model) as the directory
/// `out`, which must not exist yet: weights, `config.json`, the tokenizer and `extra` files (name,
/// bytes; e.g. `tokenizer_config.json` with a chat template) go into a temporary sibling that is
/// fsynced and renamed into place, so `out` is complete or absent.
pub fn save_standalone(
    out: &Path,
    model: &FreeTransformer,
    tokenizer: &Tokenizer,
    extra: &[(&str, &[u8])],
) -> Result<()> {
    if out.exists() {
        bail!("{} already exists: choose another --out", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let written = (|| -> Result<()> {
        fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let p = tmp.join(MODEL_FILE);
        Tensor::write_safetensors(&sorted_vars(model), &p).with_context(|| format!("cannot write {}", p.display()))?;
        fsync_file(&p)?;
        if let Tokenizer::Bpe(bpe) = tokenizer {
            write_file_synced(&tmp.join(crate::data::tokenizer::bpe::TOKENIZER_FILE), bpe.json().as_bytes())?;
        }
        for (file, bytes) in extra {
            write_file_synced(&tmp.join(file), bytes)?;
        }
        let cj = serde_json::to_vec_pretty(&config_json(model.config(), tokenizer)?)?;
        write_file_synced(&tmp.join(CONFIG_FILE), &cj)?;
        fsync_dir(&tmp)
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, out).with_context(|| format!("cannot rename {} into {}", tmp.display(), out.display()))?;
    fsync_dir(&parent)
}

/// Removes temporary directories and files left in `dir` by a writer that was killed mid-save.
/// Complete checkpoints and `latest` are never touched.
pub fn clean_stale(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".old-") || name.starts_with(".latest.tmp-") {
            let p = entry.path();
            let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        }
    }
}

fn sorted_vars(model: &FreeTransformer) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Complete checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            let p = e.path();
            (p.join(STATE_FILE).is_file() && p.join(MODEL_FILE).is_file()).then_some((step, p))
        })
        .collect();
    out.sort();
    out
}

fn rotate(dir: &Path, keep: usize, newest: &str) -> Result<()> {
    let all = list(dir);
    let excess = all.len().saturating_sub(keep);
    for (_, p) in all.into_iter().take(excess) {
        if p.file_name().is_some_and(|n| n == newest) {
            continue;
        }
        fs::remove_dir_all(&p).with_context(|| format!("cannot remove old checkpoint {}", p.display()))?;
    }
    Ok(())
}

/// Finds a checkpoint directory from a path that is either one, a checkpoints directory (with
/// `latest`), or a run directory (with `checkpoints/latest`).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        bail!("checkpoint path {} does not exist", path.display());
    }
    if path.join(MODEL_FILE).exists() || path.join(CONFIG_FILE).exists() {
        return Ok(path.to_path_buf());
    }
    for dir in [path.join("checkpoints"), path.to_path_buf()] {
        let latest = dir.join(LATEST);
        if let Ok(name) = fs::read_to_string(&latest) {
            let p = dir.join(name.trim());
            if p.join(STATE_FILE).is_file() && p.join(MODEL_FILE).is_file() {
                return Ok(p);
            }
        }
        if let Some((_, p)) = list(&dir).pop() {
            return Ok(p);
        }
    }
    bail!("no checkpoint found in {}", path.display())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow!("corrupt {}: {e}", path.display()))
}

/// A model loaded from a checkpoint, with its tokenizer and (when present) training state.
#[derive(Debug)]
pub struct Loaded {
    /// The model with its weights.
    pub model: FreeTransformer,
    /// The tokenizer it was trained with.
    pub tokenizer: Tokenizer,
    /// Training bookkeeping, if the checkpoint has it.
    pub state: Option<TrainState>,
    /// The checkpoint directory.
    pub dir: PathBuf,
}

/// Loads a checkpoint (see [`resolve`] for accepted paths) onto `device`.
pub fn load(path: &Path, device: Device) -> Result<Loaded> {
    let dir = resolve(path)?;
    let cj: ConfigJson = read_json(&dir.join(CONFIG_FILE))?;
    let cfg = cj.freet.model;
    cfg.validate().map_err(|e| anyhow!("{}: {e}", dir.join(CONFIG_FILE).display()))?;
    let tokenizer = load_tokenizer(&dir, cj.freet.tokenizer)?;
    if tokenizer.vocab_size() != cfg.vocab_size {
        bail!(
            "{}: model vocab_size {} does not match its {} tokenizer's {} tokens",
            dir.join(CONFIG_FILE).display(),
            cfg.vocab_size,
            tokenizer.name(),
            tokenizer.vocab_size()
        );
    }
    let mut model = FreeTransformer::new(&cfg, device, 0)?;
    load_weights(&mut model, &dir.join(MODEL_FILE))?;
    let state_path = dir.join(STATE_FILE);
    let state: Option<TrainState> = if state_path.exists() { Some(read_json(&state_path)?) } else { None };
    if let Some(s) = &state
        && s.format_version != FORMAT_VERSION
    {
        bail!(
            "{}: format version {} is not supported (expected {FORMAT_VERSION})",
            state_path.display(),
            s.format_version
        );
    }
    Ok(Loaded { model, tokenizer, state, dir })
}

/// Copies every tensor of a safetensors file into the model; names and shapes must match exactly.
pub fn load_weights(model: &mut FreeTransformer, path: &Path) -> Result<()> {
    let tensors = read_tensors(path)?;
    load_tensors(model, &tensors, &path.display().to_string())
}

/// Copies named tensors into the model: every parameter must be given, with its exact shape and
/// finite values, and no other tensor may be present (`origin` names the source in errors).
pub fn load_tensors(model: &mut FreeTransformer, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
    let vars = model.var_store().variables();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if !vars.contains_key(name) {
            bail!("{origin}: unexpected tensor {name} for this configuration");
        }
    }
    let mut vars: Vec<(String, Tensor)> = vars.into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in &vars {
        let t = tensors.get(name).ok_or_else(|| anyhow!("{origin}: missing tensor {name}"))?;
        if t.size() != var.size() {
            bail!("{origin}: tensor {name} has shape {:?}, expected {:?}", t.size(), var.size());
        }
        let finite = t.isfinite().all().int64_value(&[]) == 1;
        if !finite {
            bail!("{origin}: tensor {name} holds NaN or inf");
        }
        tch::no_grad(|| var.shallow_clone().copy_(t));
    }
    Ok(())
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        bail!("missing {}", path.display());
    }
    let list = Tensor::read_safetensors(path)
        .map_err(|e| anyhow!("corrupt {}: {}", path.display(), one_line(&e.to_string())))?;
    Ok(list.into_iter().collect())
}

/// Restores the optimizer of a checkpoint directory into `opt`.
pub fn load_optimizer(dir: &Path, opt: &mut AdamW, steps: u64) -> Result<()> {
    let path = dir.join(OPTIM_FILE);
    let tensors: Vec<(String, Tensor)> = read_tensors(&path)?.into_iter().collect();
    opt.load_state(&tensors, steps).map_err(|e| anyhow!("{}: {e}", path.display()))
}
