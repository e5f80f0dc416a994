//! The paper's experiments and our comparisons, each one command: Figure 4 and `freet compare`,
//! sharing one arm runner.

pub mod compare;
pub mod figure4;
pub mod harness;
