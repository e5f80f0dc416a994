//! freet: the Free Transformer (Fleuret 2025, arXiv 2510.17558) in Rust on libtorch.
//!
//! Data flows one way: `data` → `model` (`blocks`, `encoder`, `mapper`, `loss`) →
//! `train` / `generate` / `eval` → the `freet` CLI.

pub mod bench;
pub mod blocks;
pub mod bpe;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod encoder;
pub mod eval;
pub mod experiment;
pub mod figure4;
pub mod generate;
pub mod loss;
pub mod mapper;
pub mod model;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod stats;
pub mod tasks;
pub mod train;
