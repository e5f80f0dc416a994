//! Regime metrics for the synthetic experiment of the Free Transformer paper
//! (Fleuret 2025, arXiv 2510.17558, §4.1, Figure 4); the figure itself is drawn by
//! [`super::render`].
//!
//! A training sequence is 66 characters: a prompt `L>` (`L` a letter `A`–`Z`)
//! followed by a 64-character body that is all `_` except a target made of the
//! prompt letter repeated 8 times at a uniformly random start in `0..=56`, and
//! in which each body position is independently replaced by `!` with
//! probability 1/16 (noise may overwrite target letters).
//!
//! Everything here works on generated samples given as the *full* string,
//! prompt included (e.g. `"K>____KKKKKKKK…"`). Body indices (target start,
//! `!` positions) are character indices into the 64-character body, i.e. the
//! full-string index minus 2.
//!
//! The metrics tell the regimes of Figure 4 apart: when the latent `Z` encodes
//! the target position, samples that share one `Z` (green groups) agree on the
//! target start (`position_agreement` near 1, versus
//! [`CHANCE_POSITION_AGREEMENT`] for independent `Z`); when `Z` also encodes
//! the noise, they agree on the `!` positions (`noise_agreement`).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::report::stats::{mean, standard_error};

/// The synthetic task's geometry and symbols, defined once in [`crate::data::synthetic`]: prompt,
/// body, sequence and target lengths, the largest target start, and the noise, blank and
/// prompt-separator characters.
pub use crate::data::synthetic::{
    SYNTH_BLANK_CHAR as BLANK_CHAR, SYNTH_BODY_LEN as BODY_LEN, SYNTH_LEN as SEQ_LEN,
    SYNTH_MAX_TARGET_START as MAX_TARGET_START, SYNTH_NOISE_CHAR as NOISE_CHAR, SYNTH_PROMPT_LEN as PROMPT_LEN,
    SYNTH_PROMPT_SEP as PROMPT_SEP, SYNTH_TARGET_LEN as TARGET_LEN,
};
/// Position agreement expected for two independent uniform target starts (1/57).
pub const CHANCE_POSITION_AGREEMENT: f64 = 1.0 / (MAX_TARGET_START as f64 + 1.0);

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Figure4Error {
    /// `aggregate` got a different number of groups and prompt letters.
    #[error("got {groups} sample groups but {letters} prompt letters")]
    LengthMismatch {
        /// Number of sample groups.
        groups: usize,
        /// Number of prompt letters.
        letters: usize,
    },
}

/// What one generated sample looks like, as parsed by [`parse_sample`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleInfo {
    /// Prompt letter the sample was checked against (`None` if not an `A`–`Z` letter).
    pub prompt_letter: Option<char>,
    /// The sample has exactly [`SEQ_LEN`] characters (66).
    pub length_ok: bool,
    /// The sample starts with `L>` for the prompt letter `L`.
    pub prompt_ok: bool,
    /// Everything after the first two characters (empty if the sample is shorter).
    pub body: String,
    /// Start of the target run in the body; `Some` exactly when the sample is valid.
    pub target_start: Option<usize>,
    /// Validity as defined in [`parse_sample`].
    pub valid: bool,
    /// Body indices holding `!`, increasing.
    pub bang_positions: Vec<usize>,
    /// Number of `!` in the body.
    pub bang_count: usize,
    /// All `A`–`Z` letters of the body equal the prompt letter and there is at least one.
    pub letter_correct: bool,
}

impl SampleInfo {
    /// Right length and right prompt: the sample can take part in noise agreement and bang rate.
    pub fn well_formed(&self) -> bool {
        self.length_ok && self.prompt_ok
    }
}

/// Parses a full sample, taking the prompt letter from its own first character.
///
/// Validity: the sample is well formed (66 characters, starts with `L>`), the
/// set `P` of body positions holding a letter `A`–`Z` is non-empty, every
/// letter in `P` is `L`, and some window `[s, s + 8)` with `0 <= s <= 56`
/// contains all of `P` and holds only `L` or `!` (a `!` inside the window is
/// noise that overwrote a target letter). Every body character must be a body
/// symbol: `_`, `!` or a letter; anything else (a stray `>`, say) makes the sample invalid.
///
/// Tie-breaking: when several windows qualify (because of `!` next to the
/// letters), `target_start` is the smallest such `s`.
pub fn parse_sample(s: &str) -> SampleInfo {
    let letter = s.chars().next().filter(char::is_ascii_uppercase);
    parse_with_letter(s, letter)
}

/// Parses a full sample against a known prompt letter; a different first character makes it invalid.
///
/// Same rules as [`parse_sample`]; a `prompt` outside `A`–`Z` makes every sample invalid.
pub fn parse_sample_for(s: &str, prompt: char) -> SampleInfo {
    parse_with_letter(s, Some(prompt).filter(char::is_ascii_uppercase))
}

fn parse_with_letter(s: &str, letter: Option<char>) -> SampleInfo {
    let chars: Vec<char> = s.chars().collect();
    let length_ok = chars.len() == SEQ_LEN;
    let prompt_ok = letter.is_some_and(|l| chars.first() == Some(&l) && chars.get(1) == Some(&PROMPT_SEP));
    let body: &[char] = chars.get(PROMPT_LEN..).unwrap_or(&[]);
    let bang_positions: Vec<usize> =
        body.iter().enumerate().filter(|&(_, &c)| c == NOISE_CHAR).map(|(i, _)| i).collect();
    let mut letters = body.iter().copied().filter(char::is_ascii_uppercase);
    let letter_correct = match (letter, letters.next()) {
        (Some(l), Some(first)) => first == l && letters.all(|c| c == l),
        _ => false,
    };
    let body_symbols_ok = body.iter().all(|&c| c == BLANK_CHAR || c == NOISE_CHAR || c.is_ascii_uppercase());
    let target_start = match letter {
        Some(l) if length_ok && prompt_ok && letter_correct && body_symbols_ok => find_target_start(body, l),
        _ => None,
    };
    SampleInfo {
        prompt_letter: letter,
        length_ok,
        prompt_ok,
        body: body.iter().collect(),
        target_start,
        valid: target_start.is_some(),
        bang_count: bang_positions.len(),
        bang_positions,
        letter_correct,
    }
}

/// Smallest window start whose window holds every `letter` and only `letter`/`!`.
///
/// Assumes `body.len() == BODY_LEN` and that all letters of the body are `letter`.
fn find_target_start(body: &[char], letter: char) -> Option<usize> {
    let lo = body.iter().position(|&c| c == letter)?;
    let hi = body.iter().rposition(|&c| c == letter)?;
    if hi - lo >= TARGET_LEN {
        return None;
    }
    // A window [s, s + 8) contains lo..=hi iff hi + 1 - 8 <= s <= lo.
    let first = (hi + 1).saturating_sub(TARGET_LEN);
    let last = lo.min(MAX_TARGET_START);
    (first..=last).find(|&s| body[s..s + TARGET_LEN].iter().all(|&c| c == letter || c == NOISE_CHAR))
}

/// Jaccard index `|a ∩ b| / |a ∪ b|` of two position sets; two empty sets give 1.0.
pub fn jaccard(a: &[usize], b: &[usize]) -> f64 {
    let a: BTreeSet<usize> = a.iter().copied().collect();
    let b: BTreeSet<usize> = b.iter().copied().collect();
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// Metrics of one group of samples generated from the same prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupMetrics {
    /// Number of samples in the group.
    pub n_samples: usize,
    /// Number of valid samples.
    pub n_valid: usize,
    /// Number of well-formed samples (right length and prompt).
    pub n_well_formed: usize,
    /// Fraction of unordered pairs of valid samples with equal target start (`None` below 2 valid).
    pub position_agreement: Option<f64>,
    /// Mean Jaccard index of `!` sets over unordered well-formed pairs (`None` below 2 well formed).
    pub noise_agreement: Option<f64>,
    /// Fraction of samples that are valid (`None` for an empty group).
    pub validity: Option<f64>,
    /// `!` per body character over well-formed samples (`None` if there are none).
    pub bang_rate: Option<f64>,
    /// Fraction of samples whose letters are all the prompt letter (`None` for an empty group).
    pub letter_correct: Option<f64>,
}

/// Computes [`GroupMetrics`] of full samples that were all generated from `prompt`.
pub fn group_metrics<S: AsRef<str>>(samples: &[S], prompt: char) -> GroupMetrics {
    let infos: Vec<SampleInfo> = samples.iter().map(|s| parse_sample_for(s.as_ref(), prompt)).collect();
    group_metrics_from_infos(&infos)
}

/// Computes [`GroupMetrics`] from already parsed samples.
pub fn group_metrics_from_infos(infos: &[SampleInfo]) -> GroupMetrics {
    let n = infos.len();
    let starts: Vec<usize> = infos.iter().filter_map(|i| i.target_start).collect();
    let well_formed: Vec<&SampleInfo> = infos.iter().filter(|i| i.well_formed()).collect();

    let position_agreement = mean_over_pairs(&starts, |a, b| f64::from(u8::from(a == b)));
    let noise_agreement = mean_over_pairs(&well_formed, |a, b| jaccard(&a.bang_positions, &b.bang_positions));
    let fraction = |count: usize| (n > 0).then(|| count as f64 / n as f64);
    let bangs: usize = well_formed.iter().map(|i| i.bang_count).sum();
    let bang_rate = (!well_formed.is_empty()).then(|| bangs as f64 / (well_formed.len() * BODY_LEN) as f64);

    GroupMetrics {
        n_samples: n,
        n_valid: starts.len(),
        n_well_formed: well_formed.len(),
        position_agreement,
        noise_agreement,
        validity: fraction(starts.len()),
        bang_rate,
        letter_correct: fraction(infos.iter().filter(|i| i.letter_correct).count()),
    }
}

/// Mean of `f` over unordered pairs of distinct items; `None` with fewer than two items.
fn mean_over_pairs<T>(items: &[T], f: impl Fn(&T, &T) -> f64) -> Option<f64> {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for (i, a) in items.iter().enumerate() {
        for b in &items[i + 1..] {
            sum += f(a, b);
            pairs += 1;
        }
    }
    (pairs > 0).then(|| sum / pairs as f64)
}

/// Metrics of one model (one κ) aggregated over many groups; means skip groups where a metric is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegimeMetrics {
    /// Number of groups.
    pub n_groups: usize,
    /// Total number of samples.
    pub n_samples: usize,
    /// Total number of valid samples.
    pub n_valid: usize,
    /// Mean over groups of the position agreement.
    pub position_agreement: Option<f64>,
    /// Standard error (sample std / sqrt(n)) of that mean; `None` below 2 contributing groups.
    pub position_agreement_se: Option<f64>,
    /// Number of groups with a defined position agreement.
    pub position_agreement_groups: usize,
    /// Mean over groups of the noise agreement.
    pub noise_agreement: Option<f64>,
    /// Standard error (sample std / sqrt(n)) of that mean; `None` below 2 contributing groups.
    pub noise_agreement_se: Option<f64>,
    /// Number of groups with a defined noise agreement.
    pub noise_agreement_groups: usize,
    /// Mean over groups of the validity.
    pub validity: Option<f64>,
    /// Mean over groups of the bang rate.
    pub bang_rate: Option<f64>,
    /// Mean over groups of the letter-correct rate.
    pub letter_correct: Option<f64>,
}

/// Aggregates groups of full samples; `prompt_letters[i]` is the prompt letter of `groups[i]`.
pub fn aggregate<S: AsRef<str>>(groups: &[Vec<S>], prompt_letters: &[char]) -> Result<RegimeMetrics, Figure4Error> {
    if groups.len() != prompt_letters.len() {
        return Err(Figure4Error::LengthMismatch { groups: groups.len(), letters: prompt_letters.len() });
    }
    let metrics: Vec<GroupMetrics> = groups.iter().zip(prompt_letters).map(|(g, &l)| group_metrics(g, l)).collect();
    Ok(aggregate_group_metrics(&metrics))
}

/// Aggregates already computed [`GroupMetrics`] into [`RegimeMetrics`].
pub fn aggregate_group_metrics(groups: &[GroupMetrics]) -> RegimeMetrics {
    let collect = |f: fn(&GroupMetrics) -> Option<f64>| -> Vec<f64> { groups.iter().filter_map(f).collect() };
    let position = collect(|g| g.position_agreement);
    let noise = collect(|g| g.noise_agreement);
    RegimeMetrics {
        n_groups: groups.len(),
        n_samples: groups.iter().map(|g| g.n_samples).sum(),
        n_valid: groups.iter().map(|g| g.n_valid).sum(),
        position_agreement: mean(&position),
        position_agreement_se: standard_error(&position),
        position_agreement_groups: position.len(),
        noise_agreement: mean(&noise),
        noise_agreement_se: standard_error(&noise),
        noise_agreement_groups: noise.len(),
        validity: mean(&collect(|g| g.validity)),
        bang_rate: mean(&collect(|g| g.bang_rate)),
        letter_correct: mean(&collect(|g| g.letter_correct)),
    }
}

/// Sample builders shared by the tests of this module and of [`super::render`].
#[cfg(test)]
pub(super) mod fixtures {
    use super::BODY_LEN;

    /// Builds a full sample `L>` + body from a 64-char body written with `.` for `_`.
    pub fn sample(letter: char, body: &str) -> String {
        let body = body.replace('.', "_");
        assert_eq!(body.chars().count(), BODY_LEN, "test body must be 64 chars");
        format!("{letter}>{body}")
    }

    /// Body of `_` with `run` written starting at `start`.
    pub fn body_with(start: usize, run: &str) -> String {
        let mut b: Vec<char> = vec!['_'; BODY_LEN];
        for (i, c) in run.chars().enumerate() {
            b[start + i] = c;
        }
        b.into_iter().collect()
    }

    /// Same as `body_with` plus `!` at the given positions.
    pub fn body_with_bangs(start: usize, run: &str, bangs: &[usize]) -> String {
        let mut b: Vec<char> = body_with(start, run).chars().collect();
        for &p in bangs {
            b[p] = '!';
        }
        b.into_iter().collect()
    }

    /// A valid sample: the 8-letter target of `letter` at body index `start`, no noise.
    pub fn valid_at(letter: char, start: usize) -> String {
        sample(letter, &body_with(start, &letter.to_string().repeat(8)))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn valid_plain_sample() {
        let s = valid_at('K', 20);
        let info = parse_sample(&s);
        assert!(info.length_ok && info.prompt_ok && info.valid && info.letter_correct);
        assert_eq!(info.target_start, Some(20));
        assert_eq!(info.prompt_letter, Some('K'));
        assert_eq!(info.body.chars().count(), BODY_LEN);
        assert!(info.bang_positions.is_empty());
        assert_eq!(info.bang_count, 0);
        assert_eq!(parse_sample_for(&s, 'K'), info);
    }

    #[test]
    fn a_non_body_symbol_inside_the_body_makes_a_sample_invalid() {
        for stray in ['>', 'a', '#'] {
            for at in [0, 10, 63] {
                let mut chars: Vec<char> = valid_at('K', 20).chars().collect();
                chars[PROMPT_LEN + at] = stray;
                let info = parse_sample(&chars.iter().collect::<String>());
                assert!(!info.valid, "'{stray}' at body index {at} was counted valid");
                assert_eq!(info.target_start, None);
            }
        }
    }

    #[test]
    fn valid_at_both_extremes() {
        assert_eq!(parse_sample(&valid_at('A', 0)).target_start, Some(0));
        assert_eq!(parse_sample(&valid_at('Z', 56)).target_start, Some(56));
    }

    #[test]
    fn valid_with_bang_inside_target() {
        let s = sample('Q', &body_with_bangs(10, "QQ!QQ!QQ", &[40, 63]));
        let info = parse_sample(&s);
        assert!(info.valid);
        assert_eq!(info.target_start, Some(10));
        assert_eq!(info.bang_positions, vec![12, 15, 40, 63]);
        assert_eq!(info.bang_count, 4);
    }

    #[test]
    fn valid_with_bang_at_target_edge_unique_window() {
        // The first target letter was overwritten: letters at 11..18, '!' at 10.
        let info = parse_sample(&sample('M', &body_with(10, "!MMMMMMM")));
        assert!(info.valid);
        assert_eq!(info.target_start, Some(10));
        // The last one was overwritten: letters at 10..17, '!' at 17.
        let info = parse_sample(&sample('M', &body_with(10, "MMMMMMM!")));
        assert_eq!(info.target_start, Some(10));
    }

    #[test]
    fn tie_breaking_takes_smallest_window_start() {
        // Letters at 11..=17 with '!' at 10 and 18: windows at 10 and 11 both qualify.
        let info = parse_sample(&sample('M', &body_with(10, "!MMMMMMM!")));
        assert!(info.valid);
        assert_eq!(info.target_start, Some(10));
        // A single letter at 20 surrounded by '!' from 13 to 27: smallest start is 13.
        let mut run = "!".repeat(7);
        run.push('M');
        run.push_str(&"!".repeat(7));
        let info = parse_sample(&sample('M', &body_with(13, &run)));
        assert_eq!(info.target_start, Some(13));
        // Same at the body's start: windows cannot start before 0.
        let info = parse_sample(&sample('M', &body_with(0, "!!M!!!!!!!!")));
        assert_eq!(info.target_start, Some(0));
        // And at its end: windows cannot start after 56.
        let info = parse_sample(&sample('M', &body_with(53, "!!!!!!!!!M!")));
        assert_eq!(info.target_start, Some(55));
        let info = parse_sample(&sample('M', &body_with(55, "!!!!!!!!M")));
        assert_eq!(info.target_start, Some(56));
    }

    #[test]
    fn invalid_wrong_letter() {
        let info = parse_sample(&sample('K', &body_with(20, "JJJJJJJJ")));
        assert!(!info.valid && !info.letter_correct);
        assert_eq!(info.target_start, None);
        // Right run plus one stray wrong letter far away.
        let mut b: Vec<char> = body_with(20, "KKKKKKKK").chars().collect();
        b[50] = 'J';
        let info = parse_sample(&sample('K', &b.into_iter().collect::<String>()));
        assert!(!info.valid && !info.letter_correct);
        // A wrong letter inside the window.
        let info = parse_sample(&sample('K', &body_with(20, "KKKJKKKK")));
        assert!(!info.valid && !info.letter_correct);
    }

    #[test]
    fn invalid_two_runs() {
        let mut b: Vec<char> = body_with(5, "KKKKKKKK").chars().collect();
        for c in &mut b[30..38] {
            *c = 'K';
        }
        let info = parse_sample(&sample('K', &b.into_iter().collect::<String>()));
        assert!(info.letter_correct);
        assert!(!info.valid);
        // Two short pieces close enough to fit in 8 but with '_' between them.
        let info = parse_sample(&sample('K', &body_with(5, "KKK_KKKK")));
        assert!(!info.valid);
    }

    #[test]
    fn invalid_run_of_nine() {
        let info = parse_sample(&sample('K', &body_with(5, "KKKKKKKKK")));
        assert!(info.letter_correct);
        assert!(!info.valid);
        // Nine including a '!': letters span 9 positions.
        let info = parse_sample(&sample('K', &body_with(5, "KKKK!KKKK")));
        assert!(!info.valid);
    }

    #[test]
    fn invalid_short_run_without_bang() {
        let info = parse_sample(&sample('K', &body_with(5, "KKKKKKK")));
        assert!(info.letter_correct);
        assert!(!info.valid);
        // Also at the very start and end of the body.
        assert!(!parse_sample(&sample('K', &body_with(0, "KKKKKKK"))).valid);
        assert!(!parse_sample(&sample('K', &body_with(57, "KKKKKKK"))).valid);
        // A '!' that is not adjacent does not explain it.
        assert!(!parse_sample(&sample('K', &body_with(5, "KKKKKKK_!"))).valid);
    }

    #[test]
    fn invalid_target_fully_erased() {
        let info = parse_sample(&sample('K', &body_with(5, "!!!!!!!!")));
        assert!(!info.valid && !info.letter_correct);
        assert_eq!(info.bang_count, 8);
        assert!(info.well_formed());
        let info = parse_sample(&sample('K', &"_".repeat(64)));
        assert!(!info.valid);
    }

    #[test]
    fn invalid_wrong_length() {
        let s = valid_at('K', 20);
        let short = &s[..65];
        let info = parse_sample(short);
        assert!(!info.length_ok && !info.valid);
        assert_eq!(info.target_start, None);
        let long = format!("{s}_");
        assert!(!parse_sample(&long).valid);
        assert!(!parse_sample("").valid);
        assert!(!parse_sample("K").valid);
        // Length is counted in characters, not bytes.
        let mut chars: Vec<char> = s.chars().collect();
        chars[60] = 'é';
        let info = parse_sample(&chars.into_iter().collect::<String>());
        assert!(info.length_ok);
    }

    #[test]
    fn invalid_bad_prompt() {
        let body = body_with(20, "KKKKKKKK");
        // Missing separator.
        let info = parse_sample(&format!("K_{body}"));
        assert!(info.length_ok && !info.prompt_ok && !info.valid);
        // Prompt is not a letter.
        let info = parse_sample(&format!("_>{body}"));
        assert!(!info.prompt_ok && !info.valid && !info.letter_correct);
        // Prompt letter differs from the one the group was generated from.
        let s = format!("K>{body}");
        assert!(parse_sample(&s).valid);
        let info = parse_sample_for(&s, 'J');
        assert!(!info.prompt_ok && !info.valid && !info.letter_correct);
        // A prompt that is not A–Z makes everything invalid.
        assert!(!parse_sample_for(&s, 'k').valid);
    }

    #[test]
    fn non_body_characters_invalidate_inside_and_outside_the_window() {
        // Every body character must be `_`, `!` or a letter (a stray `>` used to pass outside the window).
        let mut b: Vec<char> = body_with(20, "KKKKKKKK").chars().collect();
        b[50] = '>';
        let info = parse_sample(&sample('K', &b.into_iter().collect::<String>()));
        assert!(!info.valid);
        assert!(parse_sample(&sample('K', &body_with(20, "KKKKKKKK"))).valid);
        // Inside the window too.
        assert!(!parse_sample(&sample('K', &body_with(20, "KKK>KKKK"))).valid);
    }

    #[test]
    fn jaccard_values() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&[1], &[]), 0.0);
        assert_eq!(jaccard(&[7, 9], &[9, 7]), 1.0);
        assert_eq!(jaccard(&[1, 1, 2], &[2]), 0.5);
    }

    #[test]
    fn position_agreement_pairs() {
        let same = [valid_at('K', 12), valid_at('K', 12)];
        assert_eq!(group_metrics(&same, 'K').position_agreement, Some(1.0));
        let different = [valid_at('K', 12), valid_at('K', 13)];
        assert_eq!(group_metrics(&different, 'K').position_agreement, Some(0.0));
        let three = [valid_at('K', 5), valid_at('K', 5), valid_at('K', 9)];
        let m = group_metrics(&three, 'K');
        assert!((m.position_agreement.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.n_valid, 3);
        assert_eq!(m.validity, Some(1.0));
    }

    #[test]
    fn position_agreement_ignores_invalid_and_needs_two_valid() {
        let bad = sample('K', &body_with(5, "KKKKKKKKK"));
        let group = [valid_at('K', 5), bad.clone(), valid_at('K', 5)];
        let m = group_metrics(&group, 'K');
        assert_eq!(m.position_agreement, Some(1.0));
        assert!((m.validity.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let m = group_metrics(&[valid_at('K', 5), bad], 'K');
        assert_eq!(m.position_agreement, None);
        assert_eq!(group_metrics::<String>(&[], 'K').validity, None);
    }

    #[test]
    fn noise_agreement_and_bang_rate() {
        let a = sample('K', &body_with_bangs(20, "KKKKKKKK", &[1, 2, 3]));
        let b = sample('K', &body_with_bangs(20, "KKKKKKKK", &[2, 3, 4]));
        let m = group_metrics(&[a.clone(), b.clone()], 'K');
        assert_eq!(m.noise_agreement, Some(0.5));
        assert_eq!(m.bang_rate, Some(6.0 / 128.0));
        // Three samples: pairs (a,b)=0.5, (a,c)=1.0 (c == a), (b,c)=0.5 → 2/3.
        let m = group_metrics(&[a.clone(), b.clone(), a.clone()], 'K');
        assert!((m.noise_agreement.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // Invalid but well-formed samples count for noise; wrong-length ones do not.
        let invalid = sample('K', &body_with_bangs(20, "JJJJJJJJ", &[1, 2, 3]));
        let m = group_metrics(&[a.clone(), invalid, a[..60].to_string()], 'K');
        assert_eq!(m.noise_agreement, Some(1.0));
        assert_eq!(m.n_well_formed, 2);
        assert_eq!(m.bang_rate, Some(6.0 / 128.0));
        // Two noiseless samples agree perfectly.
        let m = group_metrics(&[valid_at('K', 1), valid_at('K', 30)], 'K');
        assert_eq!(m.noise_agreement, Some(1.0));
        assert_eq!(m.bang_rate, Some(0.0));
    }

    #[test]
    fn bang_rate_hand_made_body() {
        // 4 '!' in one body (one inside the target): 4 / 64.
        let s = sample('B', &body_with_bangs(0, "BBB!BBBB", &[10, 20, 63]));
        let m = group_metrics(&[s], 'B');
        assert_eq!(m.bang_rate, Some(4.0 / 64.0));
        assert_eq!(m.letter_correct, Some(1.0));
    }

    #[test]
    fn letter_correct_rate() {
        let group = [
            valid_at('K', 0),
            sample('K', &body_with(5, "KKKKKKKKK")), // letters right, invalid
            sample('K', &body_with(5, "KKKKJKKK")),  // wrong letter
            sample('K', &"_".repeat(64)),            // no letter
        ];
        let m = group_metrics(&group, 'K');
        assert_eq!(m.letter_correct, Some(0.5));
        assert_eq!(m.validity, Some(0.25));
    }

    #[test]
    fn aggregate_means_and_standard_errors() {
        let g1 = vec![valid_at('A', 5), valid_at('A', 5)]; // pos 1.0, noise 1.0
        let g2 = vec![valid_at('B', 5), valid_at('B', 6)]; // pos 0.0, noise 1.0
        let g3 = vec![valid_at('C', 5)]; // pos None, noise None
        let r = aggregate(&[g1, g2, g3], &['A', 'B', 'C']).unwrap();
        assert_eq!(r.n_groups, 3);
        assert_eq!(r.n_samples, 5);
        assert_eq!(r.n_valid, 5);
        assert_eq!(r.position_agreement, Some(0.5));
        assert_eq!(r.position_agreement_groups, 2);
        // std of {1, 0} with n-1 = 1 is sqrt(0.5); se = sqrt(0.5)/sqrt(2) = 0.5.
        assert!((r.position_agreement_se.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(r.noise_agreement, Some(1.0));
        assert_eq!(r.noise_agreement_se, Some(0.0));
        assert_eq!(r.noise_agreement_groups, 2);
        assert_eq!(r.validity, Some(1.0));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["position_agreement"], 0.5);
        assert!(json["noise_agreement_se"].is_number());
    }

    #[test]
    fn aggregate_uses_each_groups_prompt_and_checks_lengths() {
        let g = vec![valid_at('A', 5), valid_at('A', 5)];
        let r = aggregate(std::slice::from_ref(&g), &['B']).unwrap();
        assert_eq!(r.validity, Some(0.0));
        assert_eq!(r.position_agreement, None);
        assert_eq!(r.position_agreement_se, None);
        let err = aggregate(&[g], &['A', 'B']).unwrap_err();
        assert_eq!(err, Figure4Error::LengthMismatch { groups: 1, letters: 2 });
        let empty = aggregate::<String>(&[], &[]).unwrap();
        assert_eq!(empty.n_groups, 0);
        assert_eq!(empty.validity, None);
    }
}
