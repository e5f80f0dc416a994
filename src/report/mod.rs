//! Reporting helpers: SVG plots, seed statistics, and machine/date stamps.

pub mod bootstrap;
pub mod plot;
pub mod stamp;
pub mod stats;
