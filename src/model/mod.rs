//! The Free Transformer itself (spec §2–§3): configuration, Llama-style layers, the encoder, the
//! Binary Mapper with its Eq. 8 gradient, the loss, and the decoder that ties them together
//! (Algorithm 2 in [`transformer::FreeTransformer::forward_with`]).

pub mod config;
pub mod encoder;
pub mod layers;
pub mod loss;
pub mod mapper;
pub mod transformer;

pub use config::ModelConfig;
pub use layers::with_weight_cache;
pub use transformer::*;
