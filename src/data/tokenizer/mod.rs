//! Tokenizers: the 29-symbol synthetic alphabet, raw UTF-8 bytes, a synthetic evaluation task's
//! alphabet, or a byte-level BPE, behind one [`Tokenizer`] enum with exact byte accounting.

pub mod alphabet;
pub mod bpe;

use serde::{Deserialize, Serialize};

pub use self::alphabet::TaskAlphabet;
pub use self::bpe::BpeTokenizer;
use super::DataError;
use super::synthetic::{SYNTH_VOCAB, synthetic_id, synthetic_ids_to_string, synthetic_token_bytes};

/// Vocabulary size of the byte tokenizer.
pub const BYTES_VOCAB: usize = 256;

/// Every byte value, indexed by itself: the bytes of byte-tokenizer ids.
const ALL_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Tokenizer kinds: the 29-symbol synthetic alphabet, raw UTF-8 bytes, a task alphabet, or a
/// byte-level BPE.
///
/// Serialized as `"synthetic"`, `"bytes"`, `{"task": …}` or `{"bpe": {file, vocab_size, fnv1a64}}`;
/// a BPE tokenizer is never deserialized from that record but loaded from its file
/// ([`BpeTokenizer::from_file`], or a checkpoint's copy by `checkpoint::load`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// 'A'..='Z' → 0..=25, '_' → 26, '!' → 27, '>' → 28.
    Synthetic,
    /// One token per UTF-8 byte (0..=255).
    Bytes,
    /// A synthetic evaluation task's alphabet, one char per id (see [`crate::data::tasks`]).
    Task(TaskAlphabet),
    /// A byte-level BPE trained by `freet tokenizer train` (any `tokenizer.json` whose tokens are
    /// byte-level).
    #[serde(skip_deserializing)]
    Bpe(BpeTokenizer),
}

impl Tokenizer {
    /// Number of distinct token ids.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Synthetic => SYNTH_VOCAB,
            Tokenizer::Bytes => BYTES_VOCAB,
            Tokenizer::Task(a) => a.vocab_size(),
            Tokenizer::Bpe(b) => b.vocab_size(),
        }
    }

    /// Short name of the tokenizer ("synthetic", "bytes", "task" or "bpe").
    pub fn name(&self) -> &'static str {
        match self {
            Tokenizer::Synthetic => "synthetic",
            Tokenizer::Bytes => "bytes",
            Tokenizer::Task(_) => "task",
            Tokenizer::Bpe(_) => "bpe",
        }
    }

    /// The tokenizer in words, for errors (a BPE names its file and hash).
    pub fn describe(&self) -> String {
        match self {
            Tokenizer::Bpe(b) => format!("the BPE tokenizer {} (fnv1a64 {})", b.source(), b.hash_hex()),
            other => format!("the {} tokenizer", other.name()),
        }
    }

    /// The UTF-8 bytes token `id` stands for (None when out of range): the unit of bits per byte.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        match self {
            Tokenizer::Synthetic => synthetic_token_bytes(id),
            Tokenizer::Bytes => ALL_BYTES.get(i..=i),
            Tokenizer::Bpe(b) => b.token_bytes(id),
            Tokenizer::Task(_) => None,
        }
    }

    /// Encodes text to ids; the synthetic tokenizer rejects unknown characters with their position.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        match self {
            Tokenizer::Synthetic => text
                .chars()
                .enumerate()
                .map(|(position, symbol)| synthetic_id(symbol).ok_or(DataError::UnknownSymbol { symbol, position }))
                .collect(),
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Tokenizer::Task(a) => a.encode(text),
            Tokenizer::Bpe(b) => Ok(b.encode(text)?),
        }
    }

    /// Decodes ids to text; ids at or above the vocabulary size are errors, bytes decode lossily.
    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        let vocab_size = self.vocab_size();
        if let Some((position, &id)) = ids.iter().enumerate().find(|&(_, &id)| id as usize >= vocab_size) {
            return Err(DataError::TokenOutOfRange { id, position, tokenizer: self.name(), vocab_size });
        }
        Ok(match self {
            Tokenizer::Synthetic => synthetic_ids_to_string(ids),
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&id| id as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Tokenizer::Task(a) => a.decode(ids)?,
            Tokenizer::Bpe(b) => String::from_utf8_lossy(&b.decode_bytes(ids)).into_owned(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The shared test BPE (vocab 300, trained on tests/data/tiny-corpus.txt).
    pub(crate) fn bpe() -> Tokenizer {
        Tokenizer::Bpe(bpe::tests::trained().tokenizer.clone())
    }

    #[test]
    fn synthetic_vocabulary_mapping() {
        let tok = Tokenizer::Synthetic;
        assert_eq!(tok.vocab_size(), 29);
        assert_eq!(Tokenizer::Bytes.vocab_size(), 256);
        assert_eq!(tok.encode("AZ_!>").unwrap(), vec![0, 25, 26, 27, 28]);
        let all: Vec<u32> = (0..29).collect();
        assert_eq!(tok.decode(&all).unwrap(), "ABCDEFGHIJKLMNOPQRSTUVWXYZ_!>");
        assert_eq!(tok.name(), "synthetic");
        assert_eq!(Tokenizer::Bytes.name(), "bytes");
    }

    #[test]
    fn unknown_symbol_error_names_symbol_and_position() {
        let err = Tokenizer::Synthetic.encode("AB>x_").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'x'"), "{msg}");
        assert!(msg.contains("position 3"), "{msg}");
        // Positions count characters, not bytes.
        let msg = Tokenizer::Synthetic.encode("éAé").unwrap_err().to_string();
        assert!(msg.contains("'é'") && msg.contains("position 0"), "{msg}");
        let msg = Tokenizer::Synthetic.encode("AAa").unwrap_err().to_string();
        assert!(msg.contains("'a'") && msg.contains("position 2"), "{msg}");
    }

    #[test]
    fn decode_rejects_out_of_range_ids() {
        let msg = Tokenizer::Synthetic.decode(&[0, 29]).unwrap_err().to_string();
        assert!(msg.contains("29") && msg.contains("position 1"), "{msg}");
        assert!(Tokenizer::Synthetic.decode(&[28]).is_ok());
        let msg = Tokenizer::Bytes.decode(&[65, 256]).unwrap_err().to_string();
        assert!(msg.contains("256"), "{msg}");
        assert!(Tokenizer::Bytes.decode(&[255]).is_ok());
        // Invalid UTF-8 decodes lossily.
        assert_eq!(Tokenizer::Bytes.decode(&[0xff, 65]).unwrap(), "\u{fffd}A");
    }

    #[test]
    fn tokenizer_serde_names() {
        use serde::de::IntoDeserializer;
        use serde::de::value::Error;
        let de = |s: &'static str| Tokenizer::deserialize(IntoDeserializer::<Error>::into_deserializer(s));
        assert_eq!(de("synthetic").unwrap(), Tokenizer::Synthetic);
        assert_eq!(de("bytes").unwrap(), Tokenizer::Bytes);
        assert!(de("Bytes").is_err());
    }

    proptest! {
        #[test]
        fn synthetic_round_trip(s in "[A-Z_!>]{0,100}") {
            let tok = Tokenizer::Synthetic;
            let ids = tok.encode(&s).unwrap();
            prop_assert_eq!(ids.len(), s.len());
            prop_assert!(ids.iter().all(|&i| i < 29));
            prop_assert_eq!(tok.decode(&ids).unwrap(), s);
        }

        #[test]
        fn bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let raw: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let ids = Tokenizer::Bytes.encode(s).unwrap();
                prop_assert_eq!(&ids, &raw);
                prop_assert_eq!(Tokenizer::Bytes.decode(&ids).unwrap(), s);
            } else {
                let lossy = String::from_utf8_lossy(&bytes).into_owned();
                prop_assert_eq!(Tokenizer::Bytes.decode(&raw).unwrap(), lossy);
            }
        }

        #[test]
        fn string_round_trip(s in any::<String>()) {
            let ids = Tokenizer::Bytes.encode(&s).unwrap();
            prop_assert_eq!(ids.len(), s.len());
            prop_assert_eq!(Tokenizer::Bytes.decode(&ids).unwrap(), s);
        }
    }

    #[test]
    fn bpe_tokenizer_encodes_and_decodes_through_the_enum() {
        let tok = bpe();
        assert_eq!(tok.vocab_size(), 300);
        let ids = tok.encode("The lighthouse keeper, ünd 😀").unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "The lighthouse keeper, ünd 😀");
        let msg = tok.decode(&[1, 300]).unwrap_err().to_string();
        assert!(msg.contains("300") && msg.contains("bpe"), "{msg}");
        // Serialized as a record of the file, never as the whole tokenizer.
        let v = serde_json::to_value(&tok).unwrap();
        assert_eq!(v["bpe"]["file"], "tokenizer.json");
        assert_eq!(v["bpe"]["vocab_size"], 300);
        assert!(serde_json::from_value::<Tokenizer>(v).is_err());
        assert_eq!(serde_json::to_value(Tokenizer::Bytes).unwrap(), "bytes");
    }

    #[test]
    fn tokenizer_task_variant_round_trips() {
        let tok = Tokenizer::Task(TaskAlphabet::LettersSep(8));
        let copy = tok.clone();
        assert_eq!(copy.vocab_size(), 9);
        assert_eq!(tok.name(), "task");
        assert_eq!(tok.decode(&tok.encode("abh;ha").unwrap()).unwrap(), "abh;ha");
        let msg = tok.decode(&[9]).unwrap_err().to_string();
        assert!(msg.contains("9") && msg.contains("task"), "{msg}");
        assert!(tok.encode("z").unwrap_err().to_string().contains("'z'"));
        for t in [tok, Tokenizer::Task(TaskAlphabet::Arithmetic), Tokenizer::Task(TaskAlphabet::Letters(5))] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Tokenizer>(&json).unwrap(), t, "{json}");
        }
    }
}
