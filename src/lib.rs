//! freet: the Free Transformer (Fleuret 2025, arXiv 2510.17558) in Rust on libtorch.
//!
//! Layers, lowest first; a module imports only from layers below it, and modules on one line
//! never import each other (checked by `tests/architecture.rs`):
//!
//! ```text
//! util                         error helpers, atomic writes, named random streams
//! report       dist            plots, seed statistics, machine/date stamps | c10d collectives, torchrun world
//! model        data            the network (Algorithm 2) | tokenizers, datasets, tasks
//! config                       RunConfig = ModelConfig + TrainConfig + DataConfig
//! eval  generate               honest bounds | sampling with a KV cache
//! train                        AdamW, atomic checkpoints, the training loop
//! experiments  bench  import   Figure 4, compare | speed and the FLOP model | pretrained Llamas (HF, GGUF), conversion
//! bin/freet                    the CLI, one file per command
//! ```
//!
//! "spec §n" in the documentation refers to the sections of `docs/spec.md`.

pub mod bench;
pub mod config;
pub mod data;
pub mod dist;
pub mod eval;
pub mod experiments;
pub mod generate;
pub mod import;
pub mod model;
pub mod report;
pub mod train;
pub mod util;
