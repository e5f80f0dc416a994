//! The bottom layer: error helpers, atomic file writes and the named random streams.

pub mod error;
pub mod fs;
pub mod rng;
