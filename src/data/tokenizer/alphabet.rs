//! The alphabets of the synthetic evaluation tasks ([`crate::data::tasks`]): one character per
//! token id, small enough to be `Copy` inside [`crate::data::Tokenizer`].

use serde::{Deserialize, Serialize};

use crate::data::DataError;

/// The letter symbols of [`TaskAlphabet::Letters`] and [`TaskAlphabet::LettersSep`], in id order.
pub const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Most letter symbols a task can use (the length of [`LETTERS`]).
pub const MAX_LETTERS: usize = 62;

/// The separator between `x` and `y` in the permutation task (id = number of symbols).
pub const SEPARATOR: char = ';';

/// The countdown alphabet, in id order: digits, operators, parentheses, `,` `=` `:` and the pad.
pub const ARITHMETIC: &str = "0123456789+-*/(),=:.";

/// The countdown pad character: left-pads prompts and right-pads completions.
pub const PAD: char = '.';

/// A task's character alphabet: one char per token id. `Copy`, so it fits in [`crate::data::Tokenizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAlphabet {
    /// The first `n` characters of [`LETTERS`] (n is capped at 62).
    Letters(u8),
    /// The first `n` characters of [`LETTERS`], then [`SEPARATOR`] with id `n`.
    LettersSep(u8),
    /// [`ARITHMETIC`]: 20 characters.
    Arithmetic,
}

impl TaskAlphabet {
    /// Number of letter symbols (0 for arithmetic).
    fn letters(self) -> usize {
        match self {
            TaskAlphabet::Letters(n) | TaskAlphabet::LettersSep(n) => usize::from(n).min(MAX_LETTERS),
            TaskAlphabet::Arithmetic => 0,
        }
    }

    /// Number of distinct token ids.
    pub fn vocab_size(self) -> usize {
        match self {
            TaskAlphabet::Letters(_) => self.letters(),
            TaskAlphabet::LettersSep(_) => self.letters() + 1,
            TaskAlphabet::Arithmetic => ARITHMETIC.len(),
        }
    }

    /// The character of token `id`, if in range.
    pub fn char_of(self, id: u32) -> Option<char> {
        let id = usize::try_from(id).ok()?;
        match self {
            TaskAlphabet::Letters(_) | TaskAlphabet::LettersSep(_) if id < self.letters() => {
                Some(char::from(LETTERS.as_bytes()[id]))
            }
            TaskAlphabet::LettersSep(_) if id == self.letters() => Some(SEPARATOR),
            TaskAlphabet::Arithmetic => ARITHMETIC.as_bytes().get(id).map(|&b| char::from(b)),
            _ => None,
        }
    }

    /// The token id of `c`, if it is in the alphabet.
    pub fn id_of(self, c: char) -> Option<u32> {
        match self {
            TaskAlphabet::Arithmetic => ARITHMETIC.find(c).map(|i| i as u32),
            TaskAlphabet::LettersSep(_) if c == SEPARATOR => Some(self.letters() as u32),
            _ => LETTERS[..self.letters()].find(c).map(|i| i as u32),
        }
    }

    /// All characters in id order.
    pub fn chars(self) -> String {
        (0..self.vocab_size() as u32).filter_map(|id| self.char_of(id)).collect()
    }

    /// Encodes text, one id per character; unknown characters are errors naming their position.
    pub fn encode(self, text: &str) -> Result<Vec<u32>, DataError> {
        text.chars()
            .enumerate()
            .map(|(position, symbol)| {
                self.id_of(symbol).ok_or_else(|| DataError::NotInAlphabet { symbol, position, alphabet: self.chars() })
            })
            .collect()
    }

    /// Decodes ids to text; out-of-range ids are errors naming their position.
    pub fn decode(self, ids: &[u32]) -> Result<String, DataError> {
        ids.iter()
            .enumerate()
            .map(|(position, &id)| {
                self.char_of(id).ok_or(DataError::TokenOutOfRange {
                    id,
                    position,
                    tokenizer: "task",
                    vocab_size: self.vocab_size(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabets_map_ids_and_reject_strangers() {
        let a = TaskAlphabet::Letters(4);
        assert_eq!(a.vocab_size(), 4);
        assert_eq!(a.chars(), "abcd");
        assert_eq!(a.encode("dcba").unwrap(), vec![3, 2, 1, 0]);
        let msg = a.encode("abe").unwrap_err().to_string();
        assert!(msg.contains("'e'") && msg.contains("position 2") && msg.contains("abcd"), "{msg}");
        assert!(a.decode(&[4]).unwrap_err().to_string().contains("position 0"));
        let s = TaskAlphabet::LettersSep(3);
        assert_eq!(s.chars(), "abc;");
        assert_eq!(s.encode("ab;c").unwrap(), vec![0, 1, 3, 2]);
        assert!(TaskAlphabet::Letters(3).encode(";").is_err());
        let c = TaskAlphabet::Arithmetic;
        assert_eq!(c.vocab_size(), 20);
        assert_eq!(c.chars(), ARITHMETIC);
        let text = "..3,7,12,5=36:(7-5)*12/3+1.";
        assert_eq!(c.decode(&c.encode(text).unwrap()).unwrap(), text);
        assert!(c.encode("3 + 4").is_err());
        // 62 letters at most, even from a hand-made (deserialized) value.
        assert_eq!(TaskAlphabet::Letters(200).vocab_size(), 62);
        assert_eq!(TaskAlphabet::LettersSep(62).chars().chars().last(), Some(';'));
        assert_eq!(TaskAlphabet::LettersSep(62).char_of(63), None);
        assert_eq!(TaskAlphabet::Letters(62).char_of(u32::MAX), None);
    }
}
