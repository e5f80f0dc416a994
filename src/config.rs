//! Configuration: one TOML file with `[model]`, `[model.latent]`, `[train]` and `[data]` sections,
//! validated once, with `--set key=value` overrides applied before validation.

pub use crate::data::DataConfig;
use crate::data::tasks::Task;
use crate::data::{BpeTokenizer, Dataset, SyntheticTask, TextDataset, Tokenizer};
use crate::model::config::{KappaBits, ModelConfig};
use crate::util::error::{FieldError, one_line, value_err};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration error: one line naming the field or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (unknown key, wrong type, missing field).
    #[error("invalid config {origin}: {message}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's message, folded to one line.
        message: String,
    },
    /// A `--set` override is malformed.
    #[error("invalid override '{0}': expected key=value with a dotted key such as train.lr=3e-4")]
    Override(String),
    /// A value is out of range.
    #[error(transparent)]
    Value(#[from] FieldError),
}

/// How AdamW updates the post-sampler table E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TableOptimizer {
    /// Every row every step, like any other parameter (default).
    #[default]
    Dense,
    /// Lazy AdamW: only rows with a non-zero gradient in the step get moment updates, decay and a
    /// parameter update, with bias correction from the row's own update count.
    Lazy,
}

impl TableOptimizer {
    /// "dense" or "lazy", as in the config.
    pub fn name(self) -> &'static str {
        match self {
            TableOptimizer::Dense => "dense",
            TableOptimizer::Lazy => "lazy",
        }
    }
}

/// What to do when the loss or gradient is NaN/inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NonFinite {
    /// Stop training with an error; the last good checkpoint stays untouched (default).
    #[default]
    Stop,
    /// Skip the optimizer step and go on.
    Skip,
}

/// Optimisation and bookkeeping (`[train]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of lr (cosine decay target).
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay (matrices only; never norms or ζ).
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Also decay the token embedding and the post-sampler table E.
    #[serde(default)]
    pub decay_embeddings: bool,
    /// How AdamW updates the post-sampler table E (`dense` or `lazy`).
    #[serde(default)]
    pub post_sampler_optimizer: TableOptimizer,
    /// Learning-rate multiplier for the post-sampler table E.
    #[serde(default = "one_f")]
    pub post_sampler_lr_mult: f64,
    /// Learning-rate multiplier for the encoder (its block, ζ, norm and readout).
    #[serde(default = "one_f")]
    pub encoder_lr_mult: f64,
    /// Learning-rate multiplier for the learned relative-offset score biases
    /// (`model.latent.encoder_rel_bias`, `model.latent.inject_self_bias`), applied to the base rate
    /// instead of `encoder_lr_mult`.
    #[serde(default = "one_f", alias = "encoder_bias_lr_mult")]
    pub rel_bias_lr_mult: f64,
    /// AdamW β1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// AdamW β2.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// AdamW ε.
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
    /// Global-norm gradient clipping (0 = off).
    #[serde(default = "one_f")]
    pub grad_clip: f64,
    /// Seed of init, data order and every random draw.
    #[serde(default)]
    pub seed: u64,
    /// Metrics line every N steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Held-out evaluation every N steps (0 = only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Validation batches per evaluation.
    #[serde(default = "default_eval_batches")]
    pub eval_batches: usize,
    /// Checkpoint every N steps (0 = only at the end).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Keep only the newest N checkpoints (0 = keep all).
    #[serde(default)]
    pub keep_last: usize,
    /// NaN/inf handling.
    #[serde(default)]
    pub on_nonfinite: NonFinite,
    /// CPU threads for libtorch (0 = libtorch's default).
    #[serde(default)]
    pub threads: usize,
    /// Start from the weights of this checkpoint (e.g. the output of `freet import` or `freet
    /// convert`) instead of a random init; its architecture must equal `[model]` (precision,
    /// max_seq_len, κ and E's init settings may differ) and its tokenizer the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// κ (bits per token) of the first `kappa_warm_steps` steps, in place of `model.latent.kappa_bits`:
    /// a larger budget to find a code that the target κ then compresses (a probe, not in the paper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kappa_warm_bits: Option<KappaBits>,
    /// Steps trained at `kappa_warm_bits` before κ switches to `model.latent.kappa_bits`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kappa_warm_steps: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_wd() -> f64 {
    0.1
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_log_every() -> u64 {
    10
}
fn default_eval_batches() -> usize {
    8
}

impl TrainConfig {
    /// Checks every range the trainer relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.steps == 0 {
            return Err(value_err("train.steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(value_err("train.batch_size", "must be at least 1"));
        }
        if self.grad_accum == 0 {
            return Err(value_err("train.grad_accum", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(value_err("train.lr", "must be a finite number > 0"));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(value_err("train.min_lr_ratio", "must lie in [0, 1]"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(value_err("train.weight_decay", "must be finite and ≥ 0"));
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return Err(value_err("train.beta1", "must lie in [0, 1)"));
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return Err(value_err("train.beta2", "must lie in [0, 1)"));
        }
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            return Err(value_err("train.adam_eps", "must be a finite number > 0"));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return Err(value_err("train.grad_clip", "must be finite and ≥ 0"));
        }
        for (key, v) in [
            ("train.post_sampler_lr_mult", self.post_sampler_lr_mult),
            ("train.encoder_lr_mult", self.encoder_lr_mult),
            ("train.rel_bias_lr_mult", self.rel_bias_lr_mult),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(value_err(key, "must be finite and ≥ 0"));
            }
        }
        if self.log_every == 0 {
            return Err(value_err("train.log_every", "must be at least 1"));
        }
        if self.eval_batches == 0 {
            return Err(value_err("train.eval_batches", "must be at least 1"));
        }
        match (self.kappa_warm_bits, self.kappa_warm_steps) {
            (None, 0) => {}
            (None, _) => return Err(value_err("train.kappa_warm_steps", "needs train.kappa_warm_bits")),
            (Some(_), 0) => return Err(value_err("train.kappa_warm_bits", "needs train.kappa_warm_steps ≥ 1")),
            (Some(_), n) if n > self.steps => {
                return Err(value_err("train.kappa_warm_steps", format!("{n} exceeds train.steps = {}", self.steps)));
            }
            _ => {}
        }
        Ok(())
    }

    /// κ in nats per token at 0-based `step`: `kappa_warm_bits` for the first `kappa_warm_steps`
    /// steps, then the model's `kappa` (None without a latent).
    pub fn kappa_nats_at(&self, kappa: Option<KappaBits>, step: u64) -> Option<f64> {
        let warm = self.kappa_warm_bits.filter(|_| step < self.kappa_warm_steps);
        kappa.map(|k| warm.unwrap_or(k).nats())
    }
}

/// A whole run: model, training and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The architecture.
    pub model: ModelConfig,
    /// The optimisation.
    pub train: TrainConfig,
    /// The data.
    pub data: DataConfig,
}

impl RunConfig {
    /// Reads a TOML file, applies `key=value` overrides, then validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (`origin` names it in errors), applies overrides, validates.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let parse_err = |e: &dyn std::fmt::Display| ConfigError::Parse {
            origin: origin.to_string(),
            message: one_line(&e.to_string()),
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| parse_err(&e))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: RunConfig = value.try_into().map_err(|e: toml::de::Error| parse_err(&e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Validates every section and their agreement.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate()?;
        self.train.validate()?;
        if let Some(k) = self.train.kappa_warm_bits {
            if !self.model.latent.enabled {
                return Err(value_err("train.kappa_warm_bits", "needs a latent (model.latent.enabled = true)"));
            }
            k.check("train.kappa_warm_bits", self.model.latent.bits)?;
        }
        match &self.data {
            DataConfig::Synthetic => {
                if self.model.vocab_size != crate::data::Tokenizer::Synthetic.vocab_size() {
                    return Err(value_err(
                        "model.vocab_size",
                        format!("{} does not match the synthetic task's 29 symbols", self.model.vocab_size),
                    ));
                }
                if self.model.max_seq_len < crate::data::SYNTH_LEN - 1 {
                    return Err(value_err(
                        "model.max_seq_len",
                        format!("{} is shorter than the synthetic task's 65 inputs", self.model.max_seq_len),
                    ));
                }
            }
            DataConfig::Text { seq_len, val_fraction, tokenizer, .. } => {
                if tokenizer.is_none() && self.model.vocab_size != crate::data::Tokenizer::Bytes.vocab_size() {
                    return Err(value_err(
                        "model.vocab_size",
                        format!("{} does not match the byte tokenizer's 256", self.model.vocab_size),
                    ));
                }
                if *seq_len < 2 {
                    return Err(value_err("data.seq_len", "must be at least 2"));
                }
                if *seq_len - 1 > self.model.max_seq_len {
                    return Err(value_err(
                        "data.seq_len",
                        format!("{} exceeds model.max_seq_len + 1 = {}", seq_len, self.model.max_seq_len + 1),
                    ));
                }
                if !(*val_fraction > 0.0 && *val_fraction < 1.0) {
                    return Err(value_err("data.val_fraction", "must lie strictly between 0 and 1"));
                }
            }
            DataConfig::Task(spec) => {
                spec.validate()?;
                if self.model.vocab_size != spec.vocab_size() {
                    return Err(value_err(
                        "model.vocab_size",
                        format!(
                            "{} does not match the {} task's {} symbols",
                            self.model.vocab_size,
                            spec.name(),
                            spec.vocab_size()
                        ),
                    ));
                }
                if self.model.max_seq_len < spec.seq_len() - 1 {
                    return Err(value_err(
                        "model.max_seq_len",
                        format!(
                            "{} is shorter than the {} task's {} inputs",
                            self.model.max_seq_len,
                            spec.name(),
                            spec.seq_len() - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Comparing run configs.
impl RunConfig {
    /// The settings where `other` differs from this config, as `key: this → other` in key order
    /// (empty when equal), e.g. `train.steps: 3600 → 4800`.
    pub fn differences(&self, other: &RunConfig) -> Vec<String> {
        /// Collects the differing leaves of two JSON trees under `prefix`.
        fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
            use serde_json::Value::Object;
            match (a, b) {
                (Object(x), Object(y)) => {
                    let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                    for k in keys {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        let null = serde_json::Value::Null;
                        walk(&key, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                    }
                }
                _ if a != b => out.push(format!("{prefix}: {a} → {b}")),
                _ => {}
            }
        }
        let json = |c: &RunConfig| serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
        let mut out = vec![];
        walk("", &json(self), &json(other), &mut out);
        out
    }

    /// [`RunConfig::differences`] less the bookkeeping settings that leave the trained weights
    /// unchanged (`train.threads`, `train.checkpoint_every`, `train.keep_last`): the settings that
    /// stop a run saved under one config from standing for (or resuming as) a run of the other.
    pub fn outcome_differences(&self, other: &RunConfig) -> Vec<String> {
        let mut a = self.clone();
        a.train.threads = other.train.threads;
        a.train.checkpoint_every = other.train.checkpoint_every;
        a.train.keep_last = other.train.keep_last;
        a.differences(other)
    }
}

/// Building what a run config names: its tokenizer and its dataset.
impl RunConfig {
    /// Builds the dataset a run config names, with the tokenizer it names ([`RunConfig::tokenizer`]).
    pub fn dataset(&self) -> Result<Dataset> {
        self.dataset_with(self.tokenizer()?)
    }

    /// Builds the dataset a run config names, tokenized with `tok` (e.g. a checkpoint's own copy of
    /// its tokenizer), after checking that `tok` fits `model.vocab_size`.
    pub fn dataset_with(&self, tok: Tokenizer) -> Result<Dataset> {
        self.check_vocab(&tok)?;
        Ok(match &self.data {
            DataConfig::Synthetic => Dataset::Synthetic(SyntheticTask::new(self.train.seed)),
            DataConfig::Text { path, seq_len, val_fraction, .. } => {
                Dataset::Text(TextDataset::from_file_with(path, tok, *seq_len, *val_fraction, self.train.seed)?)
            }
            DataConfig::Task(spec) => Dataset::Task(Task::new(spec, self.train.seed)?),
        })
    }

    /// The tokenizer a run config implies; a BPE is loaded from `data.tokenizer` and must fit
    /// `model.vocab_size`.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let tok = match &self.data {
            DataConfig::Synthetic => Tokenizer::Synthetic,
            DataConfig::Task(spec) => Tokenizer::Task(spec.alphabet()),
            DataConfig::Text { tokenizer: None, .. } => Tokenizer::Bytes,
            DataConfig::Text { tokenizer: Some(path), .. } => Tokenizer::Bpe(BpeTokenizer::from_file(path)?),
        };
        self.check_vocab(&tok)?;
        Ok(tok)
    }

    /// `model.vocab_size` must equal the tokenizer's vocabulary size.
    fn check_vocab(&self, tok: &Tokenizer) -> Result<()> {
        if self.model.vocab_size != tok.vocab_size() {
            bail!(
                "model.vocab_size {} does not match the vocabulary of {} ({} tokens)",
                self.model.vocab_size,
                tok.describe(),
                tok.vocab_size()
            );
        }
        Ok(())
    }
}

/// Sets `a.b.c = value` in a TOML tree; the value is parsed as TOML (number, bool, string, array)
/// and falls back to a plain string.
pub fn apply_override(root: &mut toml::Value, spec: &str) -> Result<(), ConfigError> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| ConfigError::Override(spec.to_string()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(ConfigError::Override(spec.to_string()));
    }
    let raw = raw.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let table = node.as_table_mut().ok_or_else(|| ConfigError::Override(spec.to_string()))?;
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().ok_or_else(|| ConfigError::Override(spec.to_string()))?;
    table.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_changed_setting_in_key_order() {
        let text = include_str!("../experiments/compare/permutation.toml");
        let a = RunConfig::from_toml_str(text, "p", &[]).unwrap();
        assert!(a.differences(&a.clone()).is_empty());
        let b = RunConfig::from_toml_str(text, "p", &["train.steps=10".into(), "model.d_model=32".into()]).unwrap();
        assert_eq!(a.differences(&b), ["model.d_model: 64 → 32", "train.steps: 3600 → 10"]);
        let c = RunConfig::from_toml_str(
            text,
            "p",
            &["train.threads=3".into(), "train.checkpoint_every=7".into(), "train.keep_last=2".into()],
        )
        .unwrap();
        assert_eq!(a.differences(&c).len(), 3);
        assert!(a.outcome_differences(&c).is_empty(), "bookkeeping settings do not change the outcome");
        assert_eq!(a.outcome_differences(&b), a.differences(&b));
    }

    const BASE: &str = r#"
[model]
vocab_size = 29
d_model = 64
n_layers = 4
n_heads = 4
n_kv_heads = 2
ffn_hidden = 128
max_seq_len = 80
[model.latent]
bits = 8
kappa_bits = "1/8"
[train]
steps = 10
batch_size = 4
lr = 1e-3
[data]
kind = "synthetic"
"#;

    #[test]
    fn parses_and_validates() {
        let c = RunConfig::from_toml_str(BASE, "test", &[]).unwrap();
        assert!(c.model.latent().is_some());
        assert_eq!(c.model.inject_after(), 2);
        assert_eq!(c.model.latent.kappa_bits.unwrap().0, 0.125);
    }

    #[test]
    fn overrides_apply_before_validation() {
        let c = RunConfig::from_toml_str(
            BASE,
            "test",
            &["model.latent.kappa_bits=2".into(), "train.lr=3e-4".into(), "model.latent.enabled=false".into()],
        )
        .unwrap();
        assert_eq!(c.train.lr, 3e-4);
        assert!(c.model.latent().is_none());
        let e = RunConfig::from_toml_str(BASE, "test", &["model.latent.bits=17".into()]).unwrap_err();
        assert!(e.to_string().contains("model.latent.bits"), "{e}");
        assert!(RunConfig::from_toml_str(BASE, "test", &["novalue".into()]).is_err());
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let cases = [
            ("model.n_kv_heads=3", "model.n_kv_heads"),
            ("model.latent.kappa_bits=-1", "model.latent.kappa_bits"),
            ("model.n_layers=0", "model.n_layers"),
            ("model.latent.bits=0", "model.latent.bits"),
            ("model.vocab_size=30", "model.vocab_size"),
            ("train.lr=0", "train.lr"),
            ("model.latent.inject_after=4", "model.latent.inject_after"),
            ("model.bogus=1", "bogus"),
            ("train.steps=\"ten\"", "train.steps"),
        ];
        for (o, field) in cases {
            let e = RunConfig::from_toml_str(BASE, "test", &[o.to_string()]).unwrap_err().to_string();
            assert!(e.contains(field), "{o}: {e}");
            assert!(!e.contains('\n'), "{o}: multi-line error {e}");
        }
    }

    #[test]
    fn kappa_is_required_for_a_free_transformer() {
        let text = BASE.replace("kappa_bits = \"1/8\"", "");
        let e = RunConfig::from_toml_str(&text, "test", &[]).unwrap_err().to_string();
        assert!(e.contains("kappa_bits"), "{e}");
    }

    #[test]
    fn text_tokenizer_key_is_optional_and_round_trips() {
        let text = |extra: &str| {
            BASE.replace("vocab_size = 29", "vocab_size = 300")
                .replace("kind = \"synthetic\"", &format!("kind = \"text\"\npath = \"c.txt\"\nseq_len = 33\n{extra}"))
        };
        // Without a tokenizer the text is bytes, and 300 is not 256.
        let e = RunConfig::from_toml_str(&text(""), "test", &[]).unwrap_err().to_string();
        assert!(e.contains("model.vocab_size") && e.contains("256"), "{e}");
        // With one, the vocabulary is checked when the tokenizer file is loaded.
        let c = RunConfig::from_toml_str(&text("tokenizer = \"tok.json\""), "test", &[]).unwrap();
        let DataConfig::Text { tokenizer, .. } = &c.data else { panic!("text data") };
        assert_eq!(tokenizer.as_deref(), Some(Path::new("tok.json")));
        let back = RunConfig::from_toml_str(&toml::to_string(&c).unwrap(), "round trip", &[]).unwrap();
        assert_eq!(back, c);
        // Byte-level runs serialise exactly as before (no tokenizer key).
        let bytes = RunConfig::from_toml_str(&text(""), "test", &["model.vocab_size=256".into()]).unwrap();
        assert!(!toml::to_string(&bytes).unwrap().contains("tokenizer"));
    }

    #[test]
    fn kappa_warm_switches_at_its_step_and_is_validated() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = RunConfig::from_toml_str(BASE, "test", &o(&["train.kappa_warm_bits=1", "train.kappa_warm_steps=4"]))
            .unwrap();
        let at = |step| c.train.kappa_nats_at(c.model.latent.kappa_bits, step).unwrap() / std::f64::consts::LN_2;
        assert_eq!((at(0), at(3), at(4), at(9)), (1.0, 1.0, 0.125, 0.125));
        assert_eq!(c.train.kappa_nats_at(None, 0), None, "no latent, no κ");
        // Round trip, and a run without the schedule serialises exactly as before.
        let back = RunConfig::from_toml_str(&toml::to_string(&c).unwrap(), "round trip", &[]).unwrap();
        assert_eq!(back, c);
        let plain = toml::to_string(&RunConfig::from_toml_str(BASE, "test", &[]).unwrap()).unwrap();
        assert!(!plain.contains("kappa_warm"), "{plain}");
        for (bad, field) in [
            (&["train.kappa_warm_bits=1"][..], "train.kappa_warm_bits"),
            (&["train.kappa_warm_steps=3"][..], "train.kappa_warm_steps"),
            (&["train.kappa_warm_bits=1", "train.kappa_warm_steps=11"][..], "train.kappa_warm_steps"),
            (&["train.kappa_warm_bits=-1", "train.kappa_warm_steps=2"][..], "train.kappa_warm_bits"),
            (&["train.kappa_warm_bits=9", "train.kappa_warm_steps=2"][..], "train.kappa_warm_bits"),
            (&["train.kappa_warm_bits=1", "train.kappa_warm_steps=2", "model.latent.enabled=false"][..], "latent"),
        ] {
            let e = RunConfig::from_toml_str(BASE, "test", &o(bad)).unwrap_err().to_string();
            assert!(e.contains(field) && !e.contains('\n'), "{bad:?}: {e}");
        }
    }

    #[test]
    fn param_counts_separate_the_table() {
        let c = RunConfig::from_toml_str(BASE, "test", &[]).unwrap();
        let (_, enc, table) = c.model.param_counts();
        assert_eq!(table, 256 * 64);
        assert!(enc > 0);
    }
}

/// Task configs (`[data] kind = "task"`): parsing, round trips, dataset building and field errors.
#[cfg(test)]
mod task_config_tests {
    use super::*;
    use crate::data::tasks::{CountdownSpec, HmmSpec, PermutationSpec, TaskSpec};

    const MODEL: &str = "[model]\nd_model = 32\nn_layers = 2\nn_heads = 2\nn_kv_heads = 1\nffn_hidden = 64\n\
                         [train]\nsteps = 1\nbatch_size = 2\nlr = 1e-3\nseed = 5\n";

    fn run(vocab: usize, max_seq: usize, data: &str) -> String {
        MODEL.replace("[model]\n", &format!("[model]\nvocab_size = {vocab}\nmax_seq_len = {max_seq}\n")) + data
    }

    const HMM_TOML: &str = "[data]\nkind = \"task\"\ntask = \"hmm_mixture\"\nk = 64\n";
    const PERM_TOML: &str =
        "[data]\nkind = \"task\"\ntask = \"permutation\"\nk = 16\nn = 6\nsymbols = 4\nworld_seed = 3\n";
    const COUNTDOWN_TOML: &str = "[data]\nkind = \"task\"\ntask = \"countdown\"\n";

    #[test]
    fn task_configs_round_trip_and_build_datasets() {
        for (text, vocab, seq_len) in [(HMM_TOML, 8, 64), (PERM_TOML, 5, 13), (COUNTDOWN_TOML, 20, 31)] {
            let cfg = RunConfig::from_toml_str(&run(vocab, seq_len - 1, text), "test", &[]).unwrap();
            let DataConfig::Task(spec) = &cfg.data else { panic!("not a task: {:?}", cfg.data) };
            assert_eq!((spec.vocab_size(), spec.seq_len()), (vocab, seq_len));
            let back = toml::to_string(&cfg).unwrap();
            assert!(
                back.contains("kind = \"task\"") && back.contains(&format!("task = \"{}\"", spec.name())),
                "{back}"
            );
            assert_eq!(RunConfig::from_toml_str(&back, "round trip", &[]).unwrap(), cfg, "{back}");
            let data = cfg.dataset().unwrap();
            assert_eq!((data.vocab_size(), data.seq_len()), (vocab, seq_len));
            assert_eq!(cfg.tokenizer().unwrap(), data.tokenizer());
            let Dataset::Task(task) = &data else { panic!("not a task dataset") };
            assert_eq!(task.prompt_len(), spec.prompt_len());
            // The run seed keys the examples; the world is the spec's.
            assert_eq!(data.train_batch(0, 0, 2), Task::new(spec, 5).unwrap().train_batch(0, 0, 2));
        }
        let cfg = RunConfig::from_toml_str(&run(8, 63, HMM_TOML), "test", &[]).unwrap();
        let want = HmmSpec { k: 64, symbols: 8, seq_len: 64, alpha: 0.5, prompt_len: 1, world_seed: 0 };
        assert_eq!(cfg.data, DataConfig::Task(TaskSpec::HmmMixture(want)));
        let cfg = RunConfig::from_toml_str(&run(20, 30, COUNTDOWN_TOML), "test", &[]).unwrap();
        let want = CountdownSpec { n_numbers: 4, max_number: 20, max_target: 100 };
        assert_eq!(cfg.data, DataConfig::Task(TaskSpec::Countdown(want)));
        // Integers are accepted for alpha, and overrides reach task fields.
        let cfg = RunConfig::from_toml_str(
            &run(6, 99, HMM_TOML),
            "test",
            &["data.alpha=2".into(), "data.symbols=6".into(), "data.seq_len=100".into()],
        )
        .unwrap();
        assert!(matches!(
            cfg.data,
            DataConfig::Task(TaskSpec::HmmMixture(HmmSpec { alpha: 2.0, symbols: 6, seq_len: 100, .. }))
        ));
    }

    #[test]
    fn task_config_errors_name_the_field() {
        let cases: &[(&str, usize, usize, &str, &str)] = &[
            (HMM_TOML, 8, 63, "data.k=0", "data.k"),
            (HMM_TOML, 8, 63, "data.k=100000", "data.k"),
            (HMM_TOML, 8, 63, "data.symbols=1", "data.symbols"),
            (HMM_TOML, 8, 63, "data.symbols=63", "data.symbols"),
            (HMM_TOML, 8, 63, "data.k=20000", "data.k"), // 20000 · 8² entries
            (HMM_TOML, 8, 63, "data.alpha=0", "data.alpha"),
            (HMM_TOML, 8, 63, "data.alpha=-1", "data.alpha"),
            (HMM_TOML, 8, 63, "data.alpha=nan", "data.alpha"),
            (HMM_TOML, 8, 63, "data.alpha=inf", "data.alpha"),
            (HMM_TOML, 8, 63, "data.seq_len=1", "data.seq_len"),
            (HMM_TOML, 8, 63, "data.prompt_len=64", "data.prompt_len"),
            (HMM_TOML, 8, 63, "data.prompt_len=0", "data.prompt_len"),
            // Type errors inside the tagged section name the section and the bad value, not the key.
            (HMM_TOML, 8, 63, "data.k=-3", "integer `-3`, expected usize in `data`"),
            (HMM_TOML, 8, 63, "data.bogus=1", "bogus"),
            (HMM_TOML, 8, 63, "data.n=4", "n"),
            (HMM_TOML, 8, 63, "data.task=\"nope\"", "nope"),
            (HMM_TOML, 9, 63, "data.k=2", "model.vocab_size"),
            (HMM_TOML, 8, 62, "data.k=2", "model.max_seq_len"),
            (PERM_TOML, 5, 12, "data.k=0", "data.k"),
            (PERM_TOML, 5, 12, "data.n=0", "data.n"),
            (PERM_TOML, 5, 12, "data.n=2000", "data.n"),
            (PERM_TOML, 5, 12, "data.symbols=1", "data.symbols"),
            (PERM_TOML, 5, 12, "data.k=721", "data.k"), // more than 6! permutations
            (PERM_TOML, 5, 12, "data.alpha=1", "alpha"),
            (PERM_TOML, 5, 11, "data.k=2", "model.max_seq_len"),
            (COUNTDOWN_TOML, 20, 30, "data.n_numbers=0", "data.n_numbers"),
            (COUNTDOWN_TOML, 20, 30, "data.n_numbers=9", "data.n_numbers"),
            (COUNTDOWN_TOML, 20, 30, "data.max_number=0", "data.max_number"),
            (COUNTDOWN_TOML, 20, 30, "data.max_number=100000", "data.max_number"),
            (COUNTDOWN_TOML, 20, 30, "data.max_target=5", "data.max_target"),
            (COUNTDOWN_TOML, 20, 30, "data.max_target=10000000", "data.max_target"),
            (COUNTDOWN_TOML, 20, 30, "data.k=3", "k"),
            (COUNTDOWN_TOML, 29, 30, "data.n_numbers=4", "model.vocab_size"),
        ];
        for &(text, vocab, max_seq, o, field) in cases {
            let e = RunConfig::from_toml_str(&run(vocab, max_seq, text), "test", &[o.to_string()]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(field), "{o}: {msg}");
            assert!(!msg.contains('\n'), "{o}: multi-line {msg}");
        }
        // Missing required k.
        let e = RunConfig::from_toml_str(&run(8, 63, "[data]\nkind = \"task\"\ntask = \"hmm_mixture\"\n"), "t", &[]);
        assert!(e.unwrap_err().to_string().contains("missing field `k`"));
        // Task::new validates too.
        let bad = TaskSpec::Permutation(PermutationSpec { k: 3, n: 2, symbols: 4, world_seed: 0 });
        assert!(Task::new(&bad, 0).unwrap_err().to_string().contains("data.k"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = "[model]\nvocab_size = 29\nd_model = 32\nn_layers = 2\nn_heads = 2\nn_kv_heads = 1\n\
                        ffn_hidden = 64\nmax_seq_len = 70\n[model.latent]\nbits = 4\nkappa_bits = 0.5\n\
                        [train]\nsteps = 1\nbatch_size = 1\nlr = 1e-3\n[data]\nkind = \"synthetic\"\n";

    proptest! {
        /// Any override, well-formed or not, yields a config or a one-line error; never a panic.
        #[test]
        fn overrides_never_panic(key in "[a-z_.]{0,24}", value in "\\PC{0,16}") {
            let o = format!("{key}={value}");
            match RunConfig::from_toml_str(BASE, "prop", &[o]) {
                Ok(c) => prop_assert!(c.validate().is_ok()),
                Err(e) => prop_assert!(!e.to_string().contains('\n')),
            }
        }

        /// Numeric fields accept exactly the values validation allows.
        #[test]
        fn numeric_ranges_are_enforced(bits in -3i64..24, kappa in -2.0f64..20.0, layers in 0i64..6) {
            let o = [
                format!("model.latent.bits={bits}"),
                format!("model.latent.kappa_bits={kappa}"),
                format!("model.n_layers={layers}"),
            ];
            let ok = (1..=16).contains(&bits) && kappa >= 0.0 && kappa <= bits as f64 && layers >= 2;
            prop_assert_eq!(RunConfig::from_toml_str(BASE, "prop", &o).is_ok(), ok);
        }

        /// Arbitrary text through the TOML front end never panics.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = RunConfig::from_toml_str(&text, "prop", &[]);
        }
    }
}
