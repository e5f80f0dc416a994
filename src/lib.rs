//! freet: the Free Transformer (Fleuret 2025, arXiv 2510.17558) in Rust on libtorch.
//!
//! Layers, lowest first; a module imports only from layers below it (checked by
//! `tests/architecture.rs`):
//!
//! ```text
//! util                         error helpers, atomic writes, named random streams
//! report                       plots, seed statistics, machine/date stamps
//! model        data            the network (Algorithm 2) | tokenizers, datasets, tasks
//! config                       RunConfig = ModelConfig + TrainConfig + DataConfig
//! eval  generate  train        bounds | sampling with a KV cache | AdamW, checkpoints, the loop
//! experiments  bench           Figure 4, compare | speed and the FLOP model
//! bin/freet                    the CLI, one file per command
//! ```

pub mod bench;
pub mod config;
pub mod data;
pub mod eval;
pub mod experiments;
pub mod generate;
pub mod model;
pub mod report;
pub mod train;
pub mod util;
