//! Text corpora: a file tokenized as bytes or with a byte-level BPE, split into a training head
//! and a held-out validation tail, with the byte accounting behind bits per byte.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::DataError;
use super::tokenizer::Tokenizer;
use super::tokenizer::bpe::BpeError;
use crate::util::rng::Stream as RngStream;

/// Name used in errors for datasets built from in-memory bytes.
const MEMORY_SOURCE: &str = "<memory>";

/// The token stream of a text corpus: raw bytes (byte tokenizer, one token per byte) or ids.
#[derive(Clone)]
enum Stream {
    /// Byte-tokenizer stream, stored as the bytes themselves.
    Bytes(Vec<u8>),
    /// Token ids of any other tokenizer.
    Ids(Vec<u32>),
}

impl Stream {
    /// Number of tokens.
    fn len(&self) -> usize {
        match self {
            Stream::Bytes(b) => b.len(),
            Stream::Ids(ids) => ids.len(),
        }
    }

    /// Tokens `start..start + len`.
    fn window(&self, start: usize, len: usize) -> Vec<u32> {
        match self {
            Stream::Bytes(b) => b[start..start + len].iter().map(|&b| u32::from(b)).collect(),
            Stream::Ids(ids) => ids[start..start + len].to_vec(),
        }
    }
}

/// Byte offset of the first difference between the bytes `ids` stand for and `text` (None when
/// they spell it out exactly; an id outside the vocabulary is a difference).
fn first_difference(tok: &Tokenizer, ids: &[u32], text: &[u8]) -> Option<usize> {
    let mut pos = 0;
    for &id in ids {
        let Some(b) = tok.token_bytes(id) else { return Some(pos) };
        let rest = &text[pos..];
        if !rest.starts_with(b) {
            return Some(pos + b.iter().zip(rest).take_while(|(x, y)| x == y).count());
        }
        pos += b.len();
    }
    (pos != text.len()).then_some(pos)
}

/// A tokenized text corpus split into a training head and a held-out validation tail of tokens.
#[derive(Clone)]
pub struct TextDataset {
    /// Where the bytes came from (a path, or `"<memory>"`), used in errors and Debug.
    source: String,
    /// The tokenizer of the stream.
    tokenizer: Tokenizer,
    /// The whole corpus as tokens.
    tokens: Stream,
    /// UTF-8 bytes of the corpus.
    text_bytes: usize,
    /// First token of the validation region; tokens `..train_end` are training.
    train_end: usize,
    /// Tokens per example, including the final target.
    seq_len: usize,
    /// Run seed for training-window offsets.
    seed: u64,
}

impl fmt::Debug for TextDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextDataset")
            .field("source", &self.source)
            .field("tokenizer", &self.tokenizer.name())
            .field("bytes", &self.text_bytes)
            .field("tokens", &self.tokens.len())
            .field("train", &self.train_range())
            .field("val", &self.val_range())
            .field("seq_len", &self.seq_len)
            .field("seed", &self.seed)
            .finish()
    }
}

impl TextDataset {
    /// Reads `path` as byte tokens; the last `val_fraction` of them (rounded) is held out for validation.
    pub fn from_file(path: &Path, seq_len: usize, val_fraction: f64, seed: u64) -> Result<Self, DataError> {
        Self::from_file_with(path, Tokenizer::Bytes, seq_len, val_fraction, seed)
    }

    /// Like [`TextDataset::from_file`] but from in-memory bytes (errors name `"<memory>"`).
    pub fn from_bytes(bytes: Vec<u8>, seq_len: usize, val_fraction: f64, seed: u64) -> Result<Self, DataError> {
        Self::from_bytes_with(bytes, Tokenizer::Bytes, seq_len, val_fraction, seed)
    }

    /// Reads `path` and tokenizes it with `tokenizer` (non-byte tokenizers need UTF-8 text that
    /// their tokens reproduce exactly); the last `val_fraction` of the tokens is held out.
    pub fn from_file_with(
        path: &Path,
        tokenizer: Tokenizer,
        seq_len: usize,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| DataError::Io { path: source.clone(), source: e })?;
        Self::build(source, bytes, tokenizer, seq_len, val_fraction, seed)
    }

    /// Like [`TextDataset::from_file_with`] but from in-memory bytes (errors name `"<memory>"`).
    pub fn from_bytes_with(
        bytes: Vec<u8>,
        tokenizer: Tokenizer,
        seq_len: usize,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        Self::build(MEMORY_SOURCE.to_string(), bytes, tokenizer, seq_len, val_fraction, seed)
    }

    /// Validates the parameters, tokenizes and splits the corpus.
    fn build(
        source: String,
        bytes: Vec<u8>,
        tokenizer: Tokenizer,
        seq_len: usize,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        if bytes.is_empty() {
            return Err(DataError::EmptyFile { path: source });
        }
        // NaN fails both comparisons, so it is rejected too.
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(DataError::InvalidValFraction { path: source, val_fraction });
        }
        if seq_len < 2 {
            return Err(DataError::SeqLenTooSmall { path: source, seq_len });
        }
        let text_bytes = bytes.len();
        let tokens = match tokenizer {
            Tokenizer::Bytes => Stream::Bytes(bytes),
            _ => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|e| BpeError::NotUtf8 { path: source.clone(), offset: e.valid_up_to() })?;
                let ids = tokenizer.encode(text)?;
                if let Some(offset) = first_difference(&tokenizer, &ids, &bytes) {
                    return Err(DataError::NotExact { path: source, tokenizer: tokenizer.name(), offset });
                }
                Stream::Ids(ids)
            }
        };
        let len = tokens.len();
        let val_len = ((len as f64) * val_fraction).round() as usize;
        let val_len = val_len.min(len);
        let train_end = len - val_len;
        if train_end < seq_len {
            return Err(DataError::TrainRegionTooShort { path: source, len: train_end, seq_len });
        }
        if val_len < seq_len {
            return Err(DataError::ValRegionTooShort { path: source, len: val_len, seq_len });
        }
        Ok(Self { source, tokenizer, tokens, text_bytes, train_end, seq_len, seed })
    }

    /// Where the bytes came from (the path as displayed, or `"<memory>"`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The tokenizer of the stream.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokens per example, including the final target.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Tokens in the whole corpus.
    pub fn len_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// UTF-8 bytes in the whole corpus.
    pub fn len_bytes(&self) -> usize {
        self.text_bytes
    }

    /// Token range of the training region.
    pub fn train_range(&self) -> Range<usize> {
        0..self.train_end
    }

    /// Token range of the held-out validation region.
    pub fn val_range(&self) -> Range<usize> {
        self.train_end..self.tokens.len()
    }

    /// Number of non-overlapping validation windows.
    pub fn val_windows(&self) -> usize {
        (self.tokens.len() - self.train_end) / self.seq_len
    }

    /// Start offset of the training window at (step, micro, row), uniform over the training region.
    pub fn train_window_start(&self, step: u64, micro: u64, row: u64) -> usize {
        let mut rng = ChaCha8Rng::seed_from_u64(RngStream::TrainRows.seed(self.seed, &[step, micro, row]));
        let max_start = (self.train_end - self.seq_len) as u64;
        rng.random_range(0..=max_start) as usize
    }

    /// Tokens of the window starting at `start`.
    fn window(&self, start: usize) -> Vec<u32> {
        self.tokens.window(start, self.seq_len)
    }

    /// A training batch: `batch_size` windows, a pure function of (seed, step, micro, row).
    pub fn train_batch(&self, step: u64, micro: u64, batch_size: usize) -> Vec<Vec<u32>> {
        self.train_rows(step, micro, 0..batch_size)
    }

    /// Rows `rows` of the training batch of (step, micro): a data-parallel rank's shard.
    pub fn train_rows(&self, step: u64, micro: u64, rows: std::ops::Range<usize>) -> Vec<Vec<u32>> {
        rows.map(|row| self.window(self.train_window_start(step, micro, row as u64))).collect()
    }

    /// Non-overlapping validation windows in order, at most `n_batches` batches, never wrapping.
    ///
    /// Uses the first `min(n_batches * batch_size, val_windows())` windows of
    /// the held-out tail; every batch has `batch_size` rows except possibly
    /// the last when the region runs out.
    pub fn val_batches(&self, n_batches: usize, batch_size: usize) -> Vec<Vec<Vec<u32>>> {
        if batch_size == 0 {
            return Vec::new();
        }
        let n_windows = n_batches.saturating_mul(batch_size).min(self.val_windows());
        let windows: Vec<Vec<u32>> = (0..n_windows).map(|w| self.window(self.train_end + w * self.seq_len)).collect();
        windows.chunks(batch_size).map(<[_]>::to_vec).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::tokenizer::BpeTokenizer;
    use crate::data::tokenizer::tests::bpe;
    use crate::data::{Dataset, SyntheticTask};
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::io::Write;

    /// 1000 bytes: training bytes cycle 0..97, validation bytes are 128 + i % 97.
    pub(crate) fn corpus(len: usize, val_len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| if i < len - val_len { (i % 97) as u8 } else { 128 + ((i - (len - val_len)) % 97) as u8 })
            .collect()
    }

    #[test]
    fn text_train_windows() {
        let bytes = corpus(1000, 250);
        let ds = TextDataset::from_bytes(bytes.clone(), 16, 0.25, 7).unwrap();
        assert_eq!(ds.train_range(), 0..750);
        assert_eq!(ds.val_range(), 750..1000);
        let data = Dataset::Text(ds.clone());
        assert_eq!(data.seq_len(), 16);
        assert_eq!(data.tokenizer(), Tokenizer::Bytes);
        let (mut min_start, mut max_start) = (usize::MAX, 0);
        for step in 0..50 {
            for micro in 0..2 {
                let batch = data.train_batch(step, micro, 8);
                assert_eq!(batch, data.train_batch(step, micro, 8));
                assert_eq!(batch.len(), 8);
                for (row, w) in batch.iter().enumerate() {
                    assert_eq!(w.len(), 16);
                    // Training bytes only, and contiguous in the cyclic pattern.
                    assert!(w.iter().all(|&t| t < 97), "{w:?}");
                    for pair in w.windows(2) {
                        assert_eq!(pair[1], (pair[0] + 1) % 97, "{w:?}");
                    }
                    let start = ds.train_window_start(step, micro, row as u64);
                    assert!(start + 16 <= 750);
                    let expect: Vec<u32> = bytes[start..start + 16].iter().map(|&b| b.into()).collect();
                    assert_eq!(w, &expect);
                    min_start = min_start.min(start);
                    max_start = max_start.max(start);
                }
            }
        }
        // 800 uniform draws over 735 starts reach close to both ends.
        assert!(min_start < 20 && max_start > 714, "{min_start} {max_start}");
        assert_ne!(data.train_batch(0, 0, 8), data.train_batch(1, 0, 8));
        assert_ne!(data.train_batch(0, 0, 8), data.train_batch(0, 1, 8));
        let other = TextDataset::from_bytes(bytes, 16, 0.25, 8).unwrap();
        assert_ne!(data.train_batch(0, 0, 8), other.train_batch(0, 0, 8));
    }

    #[test]
    fn text_val_windows() {
        let bytes = corpus(1000, 250);
        let ds = TextDataset::from_bytes(bytes.clone(), 10, 0.25, 7).unwrap();
        assert_eq!(ds.val_windows(), 25);
        let data = Dataset::Text(ds);
        let val = data.val_batches(2, 4);
        assert_eq!(val.len(), 2);
        let flat: Vec<&Vec<u32>> = val.iter().flatten().collect();
        for (k, w) in flat.iter().enumerate() {
            let start = 750 + k * 10;
            let expect: Vec<u32> = bytes[start..start + 10].iter().map(|&b| b.into()).collect();
            assert_eq!(*w, &expect);
            assert!(w.iter().all(|&t| t >= 128));
        }
        assert_eq!(val, data.val_batches(2, 4));
        // Region too small for 10 full batches: no wrapping, 6 full + 1 partial.
        let val = data.val_batches(10, 4);
        assert_eq!(val.len(), 7);
        assert!(val[..6].iter().all(|b| b.len() == 4));
        assert_eq!(val[6].len(), 1);
        let flat: Vec<&Vec<u32>> = val.iter().flatten().collect();
        assert_eq!(flat.len(), 25);
        let distinct: HashSet<&Vec<u32>> = flat.iter().copied().collect();
        assert_eq!(distinct.len(), 25);
        assert_eq!(flat[24][9], u32::from(bytes[999]));
        assert!(data.val_batches(3, 0).is_empty());
    }

    fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        path
    }

    #[test]
    fn text_file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let check = |path: &Path, seq_len: usize, frac: f64, what: &str| {
            let err = TextDataset::from_file(path, seq_len, frac, 0).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(what), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        };
        let missing = dir.path().join("missing.txt");
        check(&missing, 8, 0.1, "cannot read");
        check(dir.path(), 8, 0.1, "cannot read");
        let empty = write_file(&dir, "empty.txt", b"");
        check(&empty, 8, 0.1, "is empty");
        let good = write_file(&dir, "good.txt", &[b'a'; 100]);
        for frac in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            check(&good, 8, frac, "val_fraction");
        }
        check(&good, 1, 0.1, "seq_len 1");
        check(&good, 0, 0.1, "seq_len 0");
        check(&good, 20, 0.9, "training region");
        check(&good, 20, 0.1, "validation region");
        let ok = TextDataset::from_file(&good, 10, 0.1, 0).unwrap();
        assert_eq!(ok.train_range(), 0..90);
        assert_eq!(ok.val_range(), 90..100);
        assert_eq!(ok.source(), good.display().to_string());
        assert_eq!(Dataset::Text(ok).val_batches(5, 1).len(), 1);
    }

    #[test]
    fn bpe_dataset_tokens_spell_out_the_text() {
        let path = crate::data::tokenizer::bpe::tests::corpus_path();
        let text = std::fs::read(&path).unwrap();
        let ds = TextDataset::from_file_with(&path, bpe(), 16, 0.25, 3).unwrap();
        assert_eq!(ds.len_bytes(), text.len());
        assert!(ds.len_tokens() < text.len() * 2 / 3, "BPE compresses: {} tokens", ds.len_tokens());
        assert_eq!(ds.tokenizer().name(), "bpe");
        // The validation region is the held-out tail: its tokens decode to the end of the file.
        let data = Dataset::Text(ds.clone());
        let val = data.val_batches(1000, 4);
        let flat: Vec<u32> = val.iter().flatten().flatten().copied().collect();
        assert_eq!(flat.len(), ds.val_windows() * 16);
        let Tokenizer::Bpe(b) = bpe() else { unreachable!() };
        let val_text = b.decode_bytes(&flat);
        let all_text = b.decode_bytes(&ds.tokens.window(0, ds.len_tokens()));
        assert_eq!(all_text, text);
        let val_start: usize = b.decode_bytes(&ds.tokens.window(0, ds.train_range().end)).len();
        assert_eq!(&text[val_start..val_start + val_text.len()], &val_text[..]);
        // Target bytes: every predicted token (not the first of each window) counts its own bytes.
        let expect: u64 = val.iter().flatten().map(|row| b.decode_bytes(&row[1..]).len() as u64).sum();
        assert_eq!(data.target_bytes(&val), Some(expect));
        assert!(expect > (flat.len() - flat.len() / 16) as u64, "more bytes than tokens");
        for row in data.train_batch(0, 0, 8) {
            assert_eq!(row.len(), 16);
            assert!(row.iter().all(|&t| (t as usize) < 300));
        }
        assert_eq!(Dataset::Synthetic(SyntheticTask::new(0)).target_bytes(&val), None);
    }

    #[test]
    fn bpe_dataset_refuses_text_it_cannot_reproduce() {
        let dir = tempfile::tempdir().unwrap();
        let latin1 = write_file(&dir, "latin1.txt", b"caf\xe9 au lait, again and again and again");
        let msg = TextDataset::from_file_with(&latin1, bpe(), 4, 0.25, 0).unwrap_err().to_string();
        assert!(msg.contains("latin1.txt") && msg.contains("UTF-8"), "{msg}");
        // A normalizer (here: lowercasing) breaks the exact byte round trip, so bits/byte would lie.
        let Tokenizer::Bpe(b) = bpe() else { unreachable!() };
        let mut v: serde_json::Value = serde_json::from_str(b.json()).unwrap();
        v["normalizer"] = serde_json::json!({"type": "Lowercase"});
        let lower = BpeTokenizer::from_json(v.to_string(), "lower.json").unwrap();
        let text = write_file(&dir, "t.txt", b"the river and The Lighthouse and the baker and the bread");
        let msg = TextDataset::from_file_with(&text, Tokenizer::Bpe(lower), 4, 0.25, 0).unwrap_err().to_string();
        assert!(msg.contains("does not reproduce") && msg.contains("byte 14"), "{msg}");
        // Bytes stay exact for any file, UTF-8 or not.
        assert!(TextDataset::from_file_with(&latin1, Tokenizer::Bytes, 4, 0.25, 0).is_ok());
    }

    proptest! {
        /// Dataset construction from arbitrary bytes and parameters returns Ok or Err, never panics,
        /// and every training window it yields has the requested length.
        #[test]
        fn text_dataset_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            seq_len in 0usize..80,
            val_fraction in -0.5f64..1.5,
        ) {
            if let Ok(ds) = TextDataset::from_bytes(bytes, seq_len, val_fraction, 1) {
                let d = Dataset::Text(ds);
                for row in d.train_batch(3, 0, 4) {
                    prop_assert_eq!(row.len(), seq_len);
                    prop_assert!(row.iter().all(|&t| t < 256));
                }
                let _ = d.val_batches(2, 3);
            }
        }
    }
}
