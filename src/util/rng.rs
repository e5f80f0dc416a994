//! Counter-based randomness: every draw that must be reproducible across resume, cached versus
//! uncached decoding, and batch layout is a pure function of `(seed, counters…)`.

/// One round of splitmix64: a bijective 64-bit mixer with good avalanche.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes `seed` with counters `parts` into a seed for one independent, reproducible RNG stream.
///
/// Each part is folded in with a per-position constant and the number of parts is folded in
/// last, so `[a]`, `[a, 0]` and `[0, a]` all give different streams.
pub fn stream_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut state = splitmix64(seed);
    for (i, &part) in parts.iter().enumerate() {
        let tag = (i as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        state = splitmix64(state ^ splitmix64(part ^ tag));
    }
    splitmix64(state ^ (parts.len() as u64).wrapping_mul(0xA076_1D64_78BD_642F))
}

/// Every random stream of freet, named, with its tag: a stream's seed is
/// `stream_seed(seed, &[tag, counters…])` ([`Stream::seed`]). The tags are the discriminants, so
/// the compiler rejects two streams with one tag, and `stream_seed` keeps different tags (and
/// different counter counts) apart. Each variant documents its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Data rows of the training split: `[index]` for indexed examples, `[step, micro, row]` for
    /// training batches (the tag equals `data::Split::Train`).
    TrainRows = 0,
    /// Data rows of the validation split: `[index]` (the tag equals `data::Split::Val`).
    ValRows = 1,
    /// The fixed world of an evaluation task (its chains, its permutations): `[kind]`.
    TaskWorld = 0x0077_6f72_6c64,
    /// Encoder bit draws of a training micro-step: `[step, micro]` (reproducible on resume).
    TrainLatents = 0x7354_6570,
    /// Uniform prior codes: `[sequence id, position]` (independent of batch layout and caching).
    PriorCodes = 0x0070_7269_6f72,
    /// Encoder bit draws of an evaluation batch: `[batch]`.
    EvalPosterior = 0xe7a1,
    /// Posterior proposals of the importance-weighted bound: `[batch, sample]`.
    EvalIwae = 0x1fa3,
    /// Prior codes of the prior-Z cross-entropy: `[batch, draw]`.
    EvalPrior = 0x7072_6365,
    /// Encoder bit draws at generation prefill: `[]`.
    GenPrefill = 0x9e1f,
    /// Token draws of generation: `[step]`.
    GenTokens = 0x70c5,
    /// `freet compare`: token sampling of a task's prompts: `[]`.
    CompareSampling = 0xc0e5,
    /// `freet compare`: the shared Z of the consistency groups: `[]`.
    CompareSharedZ = 0x5a2e,
    /// `freet compare`: posterior bit draws of the I(Z; hidden) estimate: `[]` (offset = element).
    CompareMiBits = 0x6d69,
    /// Figure 4: the prompt letters of the measured groups: `[]`.
    Figure4Letters = 0xf164,
    /// Figure 4: token sampling of the fresh-Z groups: `[]`.
    Figure4Fresh = 0xf401,
    /// Figure 4: token sampling of the shared-Z groups: `[]`.
    Figure4Shared = 0xf402,
    /// Figure 4: the shared Z of the measured groups: `[]`.
    Figure4SharedZ = 0xf403,
    /// Figure 4: the panel's prompt letter: `[]`.
    Figure4PanelLetter = 0xf404,
    /// Figure 4: token sampling of the panel's groups: `[group]`.
    Figure4PanelSampling = 0xf405,
}

impl Stream {
    /// Every stream, for the distinctness test and for readers.
    pub const ALL: [Stream; 19] = [
        Stream::TrainRows,
        Stream::ValRows,
        Stream::TaskWorld,
        Stream::TrainLatents,
        Stream::PriorCodes,
        Stream::EvalPosterior,
        Stream::EvalIwae,
        Stream::EvalPrior,
        Stream::GenPrefill,
        Stream::GenTokens,
        Stream::CompareSampling,
        Stream::CompareSharedZ,
        Stream::CompareMiBits,
        Stream::Figure4Letters,
        Stream::Figure4Fresh,
        Stream::Figure4Shared,
        Stream::Figure4SharedZ,
        Stream::Figure4PanelLetter,
        Stream::Figure4PanelSampling,
    ];

    /// The stream's tag.
    pub fn tag(self) -> u64 {
        self as u64
    }

    /// The seed of this stream at `counters`, derived from the run (or user) `seed`.
    pub fn seed(self, seed: u64, counters: &[u64]) -> u64 {
        let mut parts = Vec::with_capacity(counters.len() + 1);
        parts.push(self.tag());
        parts.extend_from_slice(counters);
        stream_seed(seed, &parts)
    }
}

/// The key of the latent draws of one training micro-step: makes bit sampling reproducible on resume.
pub fn step_key(seed: u64, step: u64, micro: u64) -> u64 {
    Stream::TrainLatents.seed(seed, &[step, micro])
}

/// A CPU fp32 tensor of the given shape filled with `U[0, 1)` draws from the stream `key`.
pub fn uniforms(key: u64, shape: &[i64]) -> tch::Tensor {
    uniforms_at(key, 0, shape)
}

/// Draws `offset..offset + n` of the stream `key` as a CPU fp32 tensor of the given shape (n
/// elements): equal to that slice of [`uniforms`] of the whole, so a data-parallel rank draws its
/// rows' part of a batch's latents without the others'. Each f32 takes one 32-bit ChaCha word.
pub fn uniforms_at(key: u64, offset: u64, shape: &[i64]) -> tch::Tensor {
    use rand::{Rng, SeedableRng};
    let n: i64 = shape.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
    rng.set_word_pos(u128::from(offset));
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    tch::Tensor::from_slice(&v).view(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniforms_at_an_offset_are_that_slice_of_the_whole_stream() {
        let whole = Vec::<f32>::try_from(uniforms(42, &[3, 5, 7]).flatten(0, -1)).unwrap();
        for (offset, n) in [(0usize, 105usize), (35, 70), (1, 3), (70, 35), (104, 1)] {
            let part = Vec::<f32>::try_from(uniforms_at(42, offset as u64, &[n as i64])).unwrap();
            assert_eq!(part, whole[offset..offset + n], "offset {offset}");
        }
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        assert_eq!(stream_seed(1, &[2, 3]), stream_seed(1, &[2, 3]));
        assert_ne!(stream_seed(1, &[2, 3]), stream_seed(1, &[3, 2]));
        assert_ne!(stream_seed(1, &[2, 3]), stream_seed(2, &[2, 3]));
        assert_ne!(stream_seed(1, &[0]), stream_seed(1, &[]));
    }

    #[test]
    fn stream_tags_are_distinct_and_streams_do_not_collide() {
        let tags: std::collections::BTreeSet<u64> = Stream::ALL.iter().map(|s| s.tag()).collect();
        assert_eq!(tags.len(), Stream::ALL.len(), "two streams share a tag");
        // The same seed and counters give different seeds in different streams.
        let seeds: std::collections::BTreeSet<u64> = Stream::ALL.iter().map(|s| s.seed(7, &[1, 2])).collect();
        assert_eq!(seeds.len(), Stream::ALL.len());
        assert_eq!(Stream::ValRows.seed(3, &[5]), stream_seed(3, &[1, 5]));
        assert_eq!(step_key(9, 4, 1), stream_seed(9, &[0x7354_6570, 4, 1]));
    }
}
