//! Figure 4 (spec §5): the synthetic task's regime metrics, the figure's text/SVG rendering, and
//! the experiment that trains the five arms and measures them.

pub mod agreement;
pub mod metrics;
pub mod render;
pub mod run;

pub use metrics::*;
pub use render::*;
pub use run::*;
