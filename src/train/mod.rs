//! Training: AdamW and its schedule, atomic checkpoints with exact resume, and the training loop.

pub mod checkpoint;
pub mod optim;
pub mod parallel;
pub mod trainer;

pub use trainer::*;
