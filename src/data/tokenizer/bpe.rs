//! Byte-level BPE tokenizers built with Hugging Face's `tokenizers` crate: training from text
//! files, loading `tokenizer.json`, and exact byte accounting for bits per byte.
//!
//! A tokenizer here is byte-level: the `ByteLevel` pre-tokenizer (no prefix space) maps every byte
//! to one of 256 symbols, BPE merges those, and the `ByteLevel` decoder maps them back, so any UTF-8
//! text round-trips exactly. freet does not trust that claim blindly: every token id is mapped to
//! the exact bytes it stands for ([`BpeTokenizer::token_bytes`]), a tokenizer whose tokens are not
//! byte-level is refused, and datasets check that the tokens of a corpus reproduce its bytes.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    DecoderWrapper, Model, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, TokenizerBuilder,
};

/// Smallest vocabulary `train` accepts: the 256 byte symbols plus at least one merge.
pub const MIN_VOCAB: usize = 257;

/// Largest vocabulary `train` accepts (2^20); anything above is a typo, not a tokenizer.
pub const MAX_VOCAB: usize = 1 << 20;

/// Default minimum pair frequency for a merge.
pub const DEFAULT_MIN_FREQUENCY: u64 = 2;

/// Name of the tokenizer file inside a checkpoint directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Texts are encoded in pieces of at least this many bytes, cut where the byte-level
/// pre-tokenizer always splits (so the ids equal those of encoding the whole text).
const CHUNK_BYTES: usize = 1 << 16;

/// Errors raised while training, loading or applying a BPE tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum BpeError {
    /// A file could not be read (the I/O error is part of the message, not a separate source, so
    /// that `{:#}` chains print it once).
    #[error("cannot read {path}: {error}")]
    Io {
        /// The offending path.
        path: String,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A text file is not UTF-8.
    #[error("{path} is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        /// The offending path.
        path: String,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// No training file was given, or all of them are empty.
    #[error("no training text: {0}")]
    EmptyInput(String),
    /// The requested vocabulary size is out of range.
    #[error("vocab size {0} must lie in {MIN_VOCAB}..={MAX_VOCAB} (256 byte symbols plus at least one merge)")]
    VocabSize(usize),
    /// A tokenizer file is not valid `tokenizer.json`.
    #[error("{source_name} is not a valid tokenizer.json: {message}")]
    Parse {
        /// Where the JSON came from.
        source_name: String,
        /// The parser's message, on one line.
        message: String,
    },
    /// A tokenizer whose tokens are not byte-level (freet cannot count their bytes).
    #[error("{source_name} is not a byte-level BPE tokenizer: {message}")]
    NotByteLevel {
        /// Where the tokenizer came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The `tokenizers` crate failed while training or encoding.
    #[error("tokenizer {source_name}: {message}")]
    Tokenizers {
        /// Which tokenizer.
        source_name: String,
        /// The crate's message, on one line.
        message: String,
    },
}

/// GPT-2's byte → symbol table (the `ByteLevel` alphabet): printable bytes map to themselves,
/// the others to U+0100 upwards in byte order.
fn byte_symbols() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(code).expect("code points below 0x200 are valid");
    }
    table
}

/// Byte of a `ByteLevel` symbol, if `c` is one.
fn symbol_byte(c: char) -> Option<u8> {
    static TABLE: std::sync::LazyLock<std::collections::HashMap<char, u8>> =
        std::sync::LazyLock::new(|| byte_symbols().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect());
    TABLE.get(&c).copied()
}

/// FNV-1a, 64 bits: the content hash recorded for a tokenizer (identity, not security).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Splits `text` into pieces of at least [`CHUNK_BYTES`] bytes, each cut right after a '\n' that is
/// followed by a non-whitespace character: the GPT-2 pattern of the byte-level pre-tokenizer always
/// splits there, so encoding the pieces gives the ids of encoding the whole text.
fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = CHUNK_BYTES;
    while i < bytes.len() {
        // Find the next '\n' at or after i whose successor is not whitespace.
        match bytes[i..].iter().position(|&b| b == b'\n') {
            None => break,
            Some(p) => {
                let cut = i + p + 1;
                let next = text[cut..].chars().next();
                if next.is_some_and(|c| !c.is_whitespace()) {
                    out.push(&text[start..cut]);
                    start = cut;
                    i = cut + CHUNK_BYTES;
                } else {
                    i = cut;
                }
            }
        }
    }
    if start < text.len() || out.is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// Shared state of a loaded tokenizer.
struct Inner {
    /// The Hugging Face tokenizer (truncation and padding disabled).
    tokenizer: tokenizers::Tokenizer,
    /// The exact `tokenizer.json` text it was loaded from (copied into checkpoints).
    json: String,
    /// [`fnv1a64`] of `json`.
    hash: u64,
    /// Bytes of every token id, `0..vocab_size`.
    token_bytes: Vec<Box<[u8]>>,
    /// Where it came from, for messages.
    source: String,
}

/// A byte-level BPE tokenizer: cheap to clone, compared by content.
#[derive(Clone)]
pub struct BpeTokenizer(Arc<Inner>);

impl fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("source", &self.0.source)
            .field("vocab_size", &self.vocab_size())
            .field("hash", &self.hash_hex())
            .finish()
    }
}

impl PartialEq for BpeTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.0.hash == other.0.hash && self.0.json == other.0.json
    }
}

impl Eq for BpeTokenizer {}

impl Hash for BpeTokenizer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash.hash(state);
    }
}

/// What a checkpoint's `config.json` records about its BPE tokenizer (the file lies beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BpeRecord {
    /// File name inside the checkpoint directory.
    pub file: String,
    /// Number of token ids.
    pub vocab_size: usize,
    /// [`fnv1a64`] of the file, 16 hex digits.
    pub fnv1a64: String,
}

impl Serialize for BpeTokenizer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.record().serialize(s)
    }
}

impl BpeTokenizer {
    /// Loads `tokenizer.json` from `path`.
    pub fn from_file(path: &Path) -> Result<Self, BpeError> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| BpeError::Io { path: source.clone(), error: e })?;
        let json = String::from_utf8(bytes)
            .map_err(|e| BpeError::NotUtf8 { path: source.clone(), offset: e.utf8_error().valid_up_to() })?;
        Self::from_json(json, source)
    }

    /// Parses `tokenizer.json` text; `source` names it in errors.
    pub fn from_json(json: String, source: impl Into<String>) -> Result<Self, BpeError> {
        let source = source.into();
        let mut tokenizer: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e: tokenizers::Error| BpeError::Parse { source_name: source.clone(), message: one_line(&e) })?;
        // Training windows are cut by freet; a tokenizer must neither truncate nor pad.
        tokenizer
            .with_truncation(None)
            .map_err(|e| BpeError::Tokenizers { source_name: source.clone(), message: one_line(&e) })?;
        tokenizer.with_padding(None);
        let token_bytes = Self::byte_table(&tokenizer, &source)?;
        let hash = fnv1a64(json.as_bytes());
        Ok(Self(Arc::new(Inner { tokenizer, json, hash, token_bytes, source })))
    }

    /// The bytes of every id `0..vocab_size`: added tokens stand for their own text, model tokens
    /// for the bytes of their `ByteLevel` symbols.
    fn byte_table(tokenizer: &tokenizers::Tokenizer, source: &str) -> Result<Vec<Box<[u8]>>, BpeError> {
        let bad = |message: String| BpeError::NotByteLevel { source_name: source.to_string(), message };
        let added = tokenizer.get_added_tokens_decoder();
        let vocab = tokenizer.get_vocab(true);
        let Some(&max_id) = vocab.values().max() else {
            return Err(bad("its vocabulary is empty".into()));
        };
        if max_id as usize >= MAX_VOCAB {
            return Err(bad(format!("token id {max_id} is beyond the supported {MAX_VOCAB} ids")));
        }
        (0..=max_id)
            .map(|id| {
                if let Some(t) = added.get(&id) {
                    return Ok(t.content.as_bytes().into());
                }
                let token = tokenizer
                    .get_model()
                    .id_to_token(id)
                    .ok_or_else(|| bad(format!("no token has id {id} (ids must be contiguous)")))?;
                token
                    .chars()
                    .map(symbol_byte)
                    .collect::<Option<Box<[u8]>>>()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(format!("token {token:?} (id {id}) is not made of ByteLevel symbols")))
            })
            .collect()
    }

    /// Number of token ids (the model's `vocab_size` must equal it).
    pub fn vocab_size(&self) -> usize {
        self.0.token_bytes.len()
    }

    /// Number of merges of the BPE model, if its JSON has them.
    pub fn merges(&self) -> Option<usize> {
        let v: serde_json::Value = serde_json::from_str(&self.0.json).ok()?;
        v.get("model")?.get("merges")?.as_array().map(Vec::len)
    }

    /// The exact `tokenizer.json` text.
    pub fn json(&self) -> &str {
        &self.0.json
    }

    /// Content hash of [`BpeTokenizer::json`], 16 hex digits.
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.0.hash)
    }

    /// Where the tokenizer came from (a path, or a label).
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The record a checkpoint keeps in `config.json`.
    pub fn record(&self) -> BpeRecord {
        BpeRecord { file: TOKENIZER_FILE.into(), vocab_size: self.vocab_size(), fnv1a64: self.hash_hex() }
    }

    /// The bytes token `id` stands for, if `id` is in the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.0.token_bytes.get(id as usize).map(|b| &b[..])
    }

    /// Encodes text to ids (no special tokens are added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BpeError> {
        let pieces = chunks(text);
        let encodings = self
            .0
            .tokenizer
            .encode_batch_fast(pieces, false)
            .map_err(|e| BpeError::Tokenizers { source_name: self.0.source.clone(), message: one_line(&e) })?;
        Ok(encodings.iter().flat_map(|e| e.get_ids().iter().copied()).collect())
    }

    /// The bytes of `ids` concatenated (ids outside the vocabulary are skipped; callers check).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter().filter_map(|&id| self.token_bytes(id)).flatten().copied().collect()
    }
}

/// A freshly trained tokenizer and what training measured.
#[derive(Debug, Clone)]
pub struct TrainedBpe {
    /// The tokenizer (its JSON is what `freet tokenizer train` writes).
    pub tokenizer: BpeTokenizer,
    /// Merges learned.
    pub merges: usize,
    /// Bytes of training text.
    pub training_bytes: u64,
    /// Tokens of the training text under the trained tokenizer.
    pub training_tokens: u64,
}

impl TrainedBpe {
    /// Compression on the training text: bytes per token.
    pub fn bytes_per_token(&self) -> f64 {
        self.training_bytes as f64 / self.training_tokens.max(1) as f64
    }
}

/// Reads a UTF-8 text file, naming the path in errors.
pub fn read_text(path: &Path) -> Result<String, BpeError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| BpeError::Io { path: name.clone(), error: e })?;
    String::from_utf8(bytes).map_err(|e| BpeError::NotUtf8 { path: name, offset: e.utf8_error().valid_up_to() })
}

/// Trains a byte-level BPE with `vocab_size` ids (fewer when the text runs out of pairs seen
/// `min_frequency` times). Deterministic: the same files give the same `tokenizer.json`.
pub fn train(files: &[PathBuf], vocab_size: usize, min_frequency: u64) -> Result<TrainedBpe, BpeError> {
    if !(MIN_VOCAB..=MAX_VOCAB).contains(&vocab_size) {
        return Err(BpeError::VocabSize(vocab_size));
    }
    if files.is_empty() {
        return Err(BpeError::EmptyInput("no training file given".into()));
    }
    let texts = files.iter().map(|p| read_text(p)).collect::<Result<Vec<_>, _>>()?;
    let training_bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    if training_bytes == 0 {
        return Err(BpeError::EmptyInput(format!("the {} training file(s) are empty", files.len())));
    }
    let label = "being trained";
    let fail = |e: tokenizers::Error| BpeError::Tokenizers { source_name: label.into(), message: one_line(&e) };
    let alphabet: HashSet<char> = byte_symbols().into_iter().collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .initial_alphabet(alphabet)
        .build()
        .into();
    let built = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default().into())
    .with_normalizer(None)
    // No prefix space: the text round-trips byte for byte.
    .with_pre_tokenizer(Some(ByteLevel::new(false, false, true).into()))
    .with_post_processor(None)
    .with_decoder(Some(ByteLevel::new(false, false, true).into()))
    .build()
    .map_err(|e| BpeError::Tokenizers { source_name: label.into(), message: one_line(&e) })?;
    let mut tokenizer = tokenizers::Tokenizer::from(built);
    let pieces: Vec<&str> = texts.iter().flat_map(|t| chunks(t)).collect();
    tokenizer.train(&mut trainer, pieces.into_iter()).map_err(fail)?;
    let json = tokenizer.to_string(true).map_err(fail)?;
    let bpe = BpeTokenizer::from_json(json, "the trained tokenizer")?;
    let mut training_tokens = 0u64;
    for t in &texts {
        training_tokens += bpe.encode(t)?.len() as u64;
    }
    let merges = bpe.merges().unwrap_or(0);
    Ok(TrainedBpe { tokenizer: bpe, merges, training_bytes, training_tokens })
}

/// Folds a (possibly multi-line) message into one line.
fn one_line(e: &dyn fmt::Display) -> String {
    crate::util::error::one_line(&e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn byte_symbols_match_the_byte_level_alphabet() {
        let ours: HashSet<char> = byte_symbols().into_iter().collect();
        let theirs: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        assert_eq!(ours.len(), 256);
        assert_eq!(ours, theirs);
        assert_eq!(byte_symbols()[b' ' as usize], 'Ġ');
        assert_eq!(byte_symbols()[b'\n' as usize], 'Ċ');
        for b in 0..=255u8 {
            assert_eq!(symbol_byte(byte_symbols()[b as usize]), Some(b));
        }
    }

    #[test]
    fn chunks_cover_the_text_and_cut_before_non_whitespace() {
        let line = "word and more words\n";
        let text: String = std::iter::repeat_n(line, 10_000).collect::<String>() + "  \n\ttail";
        let pieces = chunks(&text);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), text);
        for p in &pieces[..pieces.len() - 1] {
            assert!(p.len() >= CHUNK_BYTES && p.ends_with('\n'));
        }
        assert_eq!(chunks(""), vec![""]);
        assert_eq!(chunks("short"), vec!["short"]);
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// The test corpus shipped with the repository.
    pub(crate) fn corpus_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-corpus.txt")
    }

    /// One tokenizer trained on the test corpus (vocab 300), shared by the tests.
    pub(crate) fn trained() -> &'static TrainedBpe {
        static T: std::sync::OnceLock<TrainedBpe> = std::sync::OnceLock::new();
        T.get_or_init(|| train(&[corpus_path()], 300, DEFAULT_MIN_FREQUENCY).expect("the test corpus trains"))
    }

    #[test]
    fn trains_the_requested_vocabulary() {
        let t = trained();
        assert_eq!(t.tokenizer.vocab_size(), 300);
        assert!(t.merges >= 300 - 256, "{}", t.merges);
        assert_eq!(t.training_bytes, std::fs::metadata(corpus_path()).unwrap().len());
        assert!(t.bytes_per_token() > 1.5, "BPE compresses: {}", t.bytes_per_token());
        // A tiny text runs out of pairs: the vocabulary stops short of the request, never above it.
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.txt");
        std::fs::write(&small, "abab abab cdcd").unwrap();
        let s = train(&[small], 5000, 1).unwrap();
        assert!(s.tokenizer.vocab_size() > 256 && s.tokenizer.vocab_size() < 5000, "{}", s.tokenizer.vocab_size());
    }

    #[test]
    fn training_is_deterministic() {
        let again = train(&[corpus_path()], 300, DEFAULT_MIN_FREQUENCY).unwrap();
        assert_eq!(again.tokenizer.json(), trained().tokenizer.json());
        assert_eq!(again.tokenizer, trained().tokenizer);
        // The JSON is a complete Hugging Face tokenizer with byte-level pre-tokenizer and decoder.
        let v: serde_json::Value = serde_json::from_str(again.tokenizer.json()).unwrap();
        assert_eq!(v["model"]["type"], "BPE");
        assert_eq!(v["pre_tokenizer"]["type"], "ByteLevel");
        assert_eq!(v["pre_tokenizer"]["add_prefix_space"], false);
        assert_eq!(v["decoder"]["type"], "ByteLevel");
        let reloaded = BpeTokenizer::from_json(again.tokenizer.json().to_string(), "copy").unwrap();
        assert_eq!(reloaded, again.tokenizer);
        assert_eq!(reloaded.record(), again.tokenizer.record());
    }

    #[test]
    fn training_errors_are_one_line_and_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        let latin1 = dir.path().join("latin1.txt");
        std::fs::write(&latin1, b"caf\xe9").unwrap();
        let missing = dir.path().join("missing.txt");
        let cases: Vec<(Result<TrainedBpe, BpeError>, &str)> = vec![
            (train(&[corpus_path()], 256, 2), "vocab size 256"),
            (train(&[corpus_path()], MAX_VOCAB + 1, 2), "vocab size"),
            (train(&[], 300, 2), "no training file"),
            (train(&[empty], 300, 2), "empty"),
            (train(std::slice::from_ref(&missing), 300, 2), "missing.txt"),
            (train(&[latin1], 300, 2), "offset 3"),
        ];
        for (r, needle) in cases {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains(needle) && !msg.contains('\n'), "{needle}: {msg}");
        }
    }

    #[test]
    fn loading_refuses_corrupt_and_non_byte_level_files() {
        let json = trained().tokenizer.json();
        let msg = BpeTokenizer::from_json(json[..json.len() / 2].to_string(), "half.json").unwrap_err().to_string();
        assert!(msg.contains("half.json") && msg.contains("not a valid tokenizer.json"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let word_level = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"hello":0,"☃":1},"unk_token":"hello"}}"#;
        let msg = BpeTokenizer::from_json(word_level.into(), "snow.json").unwrap_err().to_string();
        assert!(msg.contains("not a byte-level BPE") && msg.contains("☃"), "{msg}");
        let msg = BpeTokenizer::from_file(Path::new("/no/such/tokenizer.json")).unwrap_err().to_string();
        assert!(msg.contains("/no/such/tokenizer.json"), "{msg}");
    }

    #[test]
    fn corpus_round_trips_and_token_bytes_add_up() {
        let tok = &trained().tokenizer;
        let text = std::fs::read_to_string(corpus_path()).unwrap();
        let ids = tok.encode(&text).unwrap();
        assert_eq!(tok.decode_bytes(&ids), text.as_bytes());
        let total: usize = ids.iter().map(|&id| tok.token_bytes(id).unwrap().len()).sum();
        assert_eq!(total, text.len());
        // Hugging Face's own decoder agrees.
        assert_eq!(tok.0.tokenizer.decode(&ids, false).unwrap(), text);
        // Encoding in pieces gives the ids of encoding the whole text at once.
        let long: String = std::iter::repeat_n(text.as_str(), 40).collect();
        assert!(chunks(&long).len() > 1);
        let whole = tok.0.tokenizer.encode_fast(long.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(tok.encode(&long).unwrap(), whole);
    }

    proptest::proptest! {
        /// Any UTF-8 text (including characters never seen in training) round-trips exactly.
        #[test]
        fn arbitrary_utf8_round_trips(s in proptest::prelude::any::<String>(), t in "[a-z \n.,éü😀]{0,80}") {
            let tok = &trained().tokenizer;
            for text in [s.as_str(), t.as_str()] {
                let ids = tok.encode(text).unwrap();
                proptest::prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
                proptest::prop_assert_eq!(tok.decode_bytes(&ids), text.as_bytes());
                let hf = tok.0.tokenizer.decode(&ids, false).unwrap();
                proptest::prop_assert_eq!(hf.as_str(), text);
            }
        }
    }
}
