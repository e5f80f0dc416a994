//! Regime metrics and rendering for the synthetic experiment of the Free
//! Transformer paper (Fleuret 2025, arXiv 2510.17558, §4.1, Figure 4).
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
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

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

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Standard error of the mean with the unbiased (n - 1) variance; `None` below 2 values.
fn standard_error(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    Some((var / n).sqrt())
}

/// Kind of a sample group in Figure 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupKind {
    /// Every sample has its own independent latent `Z`.
    Blue,
    /// All samples share one latent `Z` tensor.
    Green,
}

/// One group of samples (full strings, prompt included) shown in a panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Blue (independent `Z`) or green (shared `Z`).
    pub kind: GroupKind,
    /// Samples, one line each.
    pub samples: Vec<String>,
}

impl Group {
    /// A blue group: independent `Z` per sample.
    pub fn blue(samples: Vec<String>) -> Self {
        Self { kind: GroupKind::Blue, samples }
    }

    /// A green group: one `Z` shared by all samples.
    pub fn green(samples: Vec<String>) -> Self {
        Self { kind: GroupKind::Green, samples }
    }
}

/// One panel of Figure 4: one model with its groups of samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panel {
    /// Panel title, e.g. `κ = 1/8 bit` (see [`kappa_title`]).
    pub title: String,
    /// Groups shown top to bottom (in the paper: one blue, then two green).
    pub groups: Vec<Group>,
}

/// Panel title for a KL budget of `kappa_bits` bits: `κ = 1/64 bit`, `κ = 1 bit`, `κ = 8 bits`.
pub fn kappa_title(kappa_bits: f64) -> String {
    let is_int = |x: f64| x.is_finite() && (x - x.round()).abs() < 1e-9;
    if kappa_bits > 0.0 && kappa_bits < 1.0 && is_int(1.0 / kappa_bits) {
        format!("κ = 1/{} bit", (1.0 / kappa_bits).round())
    } else if kappa_bits == 1.0 {
        "κ = 1 bit".to_string()
    } else if is_int(kappa_bits) {
        format!("κ = {} bits", kappa_bits.round())
    } else {
        format!("κ = {kappa_bits} bits")
    }
}

/// Header of each group of a panel: `blue: independent Z`, `green 1: shared Z`, `green 2: shared Z`.
///
/// Groups of a kind are numbered only when the panel has more than one of that kind.
pub fn group_headers(panel: &Panel) -> Vec<String> {
    let count = |k: GroupKind| panel.groups.iter().filter(|g| g.kind == k).count();
    let (n_blue, n_green) = (count(GroupKind::Blue), count(GroupKind::Green));
    let (mut i_blue, mut i_green) = (0, 0);
    panel
        .groups
        .iter()
        .map(|g| {
            let (name, what, total, idx) = match g.kind {
                GroupKind::Blue => ("blue", "independent Z", n_blue, &mut i_blue),
                GroupKind::Green => ("green", "shared Z", n_green, &mut i_green),
            };
            *idx += 1;
            if total > 1 { format!("{name} {idx}: {what}") } else { format!("{name}: {what}") }
        })
        .collect()
}

const ANSI_RESET: &str = "\x1b[0m";
const ANSI_BOLD: &str = "\x1b[1m";
const ANSI_BLUE: &str = "\x1b[1;34m";
const ANSI_GREEN: &str = "\x1b[1;32m";
const ANSI_LETTER: &str = "\x1b[1;33m";
const ANSI_WRONG: &str = "\x1b[1;31m";

/// Terminal rendering: per panel a title, then per group a header and one sample per line.
///
/// With `ansi`, titles are bold, headers blue/green, the prompt letter (in the
/// prompt and the body) bold yellow and any other letter bold red. Without it
/// the output is plain and each sample appears verbatim on its own line.
pub fn render_text(panels: &[Panel], ansi: bool) -> String {
    let mut out = String::new();
    for (p, panel) in panels.iter().enumerate() {
        if p > 0 {
            out.push('\n');
        }
        if ansi {
            let _ = writeln!(out, "{ANSI_BOLD}{}{ANSI_RESET}", panel.title);
        } else {
            let _ = writeln!(out, "{}", panel.title);
        }
        for (group, header) in panel.groups.iter().zip(group_headers(panel)) {
            if ansi {
                let colour = match group.kind {
                    GroupKind::Blue => ANSI_BLUE,
                    GroupKind::Green => ANSI_GREEN,
                };
                let _ = writeln!(out, "  {colour}{header}{ANSI_RESET}");
            } else {
                let _ = writeln!(out, "  {header}");
            }
            for sample in &group.samples {
                out.push_str("    ");
                if ansi {
                    push_ansi_sample(&mut out, sample);
                } else {
                    out.push_str(sample);
                }
                out.push('\n');
            }
        }
    }
    out
}

fn push_ansi_sample(out: &mut String, sample: &str) {
    let prompt = sample.chars().next();
    for c in sample.chars() {
        if c.is_ascii_uppercase() {
            let colour = if Some(c) == prompt { ANSI_LETTER } else { ANSI_WRONG };
            let _ = write!(out, "{colour}{c}{ANSI_RESET}");
        } else {
            out.push(c);
        }
    }
}

/// Font family of the sample lines in the SVG.
pub const SVG_MONO_FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";

const SVG_FONT_SIZE: f64 = 14.0;
/// Advance width of one monospace glyph, in em (DejaVu Sans Mono and Menlo: 0.602).
const SVG_GLYPH_EM: f64 = 0.602;
const SVG_LINE_H: f64 = 17.0;
const SVG_HEADER_SIZE: f64 = 12.0;
const SVG_HEADER_H: f64 = 18.0;
const SVG_TITLE_SIZE: f64 = 17.0;
const SVG_TITLE_H: f64 = 30.0;
const SVG_BOX_PAD: f64 = 8.0;
const SVG_BOX_GAP: f64 = 10.0;
const SVG_PANEL_GAP_X: f64 = 36.0;
const SVG_PANEL_GAP_Y: f64 = 28.0;
const SVG_MARGIN: f64 = 20.0;

struct SvgStyle {
    stroke: &'static str,
    fill: &'static str,
    class: &'static str,
}

fn svg_style(kind: GroupKind) -> SvgStyle {
    match kind {
        GroupKind::Blue => SvgStyle { stroke: "#1f5fbf", fill: "#e3eeff", class: "box blue" },
        GroupKind::Green => SvgStyle { stroke: "#2e8b37", fill: "#e2f5e4", class: "box green" },
    }
}

fn svg_box_height(group: &Group) -> f64 {
    SVG_BOX_PAD * 2.0 + SVG_HEADER_H + SVG_LINE_H * group.samples.len() as f64
}

fn svg_panel_height(panel: &Panel) -> f64 {
    let boxes: f64 = panel.groups.iter().map(svg_box_height).sum();
    let gaps = SVG_BOX_GAP * panel.groups.len().saturating_sub(1) as f64;
    SVG_TITLE_H + boxes + gaps
}

/// SVG laid out like the paper's Figure 4: panels in a 2-column grid, each a title over stacked boxes.
///
/// Blue groups get a blue-bordered light-blue box, green groups a
/// green-bordered light-green box; each box has a small header line and one
/// sample per line in [`SVG_MONO_FONT`], letters of the body in bold. All
/// sizes derive from the content (longest line, number of samples), assuming
/// a glyph advance of 0.602 em. Elements carry classes `title`, `header`,
/// `sample`, `box blue` and `box green`.
pub fn render_svg(panels: &[Panel]) -> String {
    let glyph_w = SVG_FONT_SIZE * SVG_GLYPH_EM;
    let header_glyph_w = SVG_HEADER_SIZE * SVG_GLYPH_EM;
    let title_glyph_w = SVG_TITLE_SIZE * 0.62;

    // Every panel cell and every box share one width so the grid lines up.
    let mut cell_w: f64 = 0.0;
    for panel in panels {
        cell_w = cell_w.max(panel.title.chars().count() as f64 * title_glyph_w);
        for (group, header) in panel.groups.iter().zip(group_headers(panel)) {
            let longest = group.samples.iter().map(|s| s.chars().count()).max().unwrap_or(0);
            let text_w = (longest as f64 * glyph_w).max(header.chars().count() as f64 * header_glyph_w);
            cell_w = cell_w.max(text_w + 2.0 * SVG_BOX_PAD);
        }
    }
    cell_w = cell_w.ceil();

    let cols = panels.len().clamp(1, 2);
    let row_heights: Vec<f64> =
        panels.chunks(cols).map(|row| row.iter().map(svg_panel_height).fold(0.0, f64::max)).collect();
    let width = 2.0 * SVG_MARGIN + cols as f64 * cell_w + (cols - 1) as f64 * SVG_PANEL_GAP_X;
    let height = 2.0 * SVG_MARGIN
        + row_heights.iter().sum::<f64>()
        + SVG_PANEL_GAP_Y * row_heights.len().saturating_sub(1) as f64;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" xml:space="preserve">"#
    );
    let _ =
        writeln!(out, r#"<rect class="background" x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#);

    let mut row_y = SVG_MARGIN;
    for (r, row) in panels.chunks(cols).enumerate() {
        for (c, panel) in row.iter().enumerate() {
            let x0 = SVG_MARGIN + c as f64 * (cell_w + SVG_PANEL_GAP_X);
            render_svg_panel(&mut out, panel, x0, row_y, cell_w);
        }
        row_y += row_heights[r] + SVG_PANEL_GAP_Y;
    }
    out.push_str("</svg>\n");
    out
}

fn render_svg_panel(out: &mut String, panel: &Panel, x0: f64, y0: f64, cell_w: f64) {
    let _ = writeln!(out, "<g class=\"panel\">");
    let _ = writeln!(
        out,
        r##"<text class="title" x="{:.1}" y="{:.1}" text-anchor="middle" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{SVG_TITLE_SIZE}" font-weight="bold" fill="#222">{}</text>"##,
        x0 + cell_w / 2.0,
        y0 + SVG_TITLE_SIZE,
        xml_escape(&panel.title)
    );
    let mut y = y0 + SVG_TITLE_H;
    for (group, header) in panel.groups.iter().zip(group_headers(panel)) {
        let style = svg_style(group.kind);
        let box_h = svg_box_height(group);
        let _ = writeln!(
            out,
            r#"<rect class="{}" x="{x0:.1}" y="{y:.1}" width="{cell_w:.1}" height="{box_h:.1}" rx="4" ry="4" fill="{}" stroke="{}" stroke-width="1.5"/>"#,
            style.class, style.fill, style.stroke
        );
        let tx = x0 + SVG_BOX_PAD;
        let _ = writeln!(
            out,
            r#"<text class="header" x="{tx:.1}" y="{:.1}" font-family="{SVG_MONO_FONT}" font-size="{SVG_HEADER_SIZE}" font-style="italic" fill="{}">{}</text>"#,
            y + SVG_BOX_PAD + SVG_HEADER_SIZE,
            style.stroke,
            xml_escape(&header)
        );
        for (i, sample) in group.samples.iter().enumerate() {
            let baseline = y + SVG_BOX_PAD + SVG_HEADER_H + i as f64 * SVG_LINE_H + SVG_FONT_SIZE * 0.8;
            let _ = writeln!(
                out,
                r##"<text class="sample" x="{tx:.1}" y="{baseline:.1}" font-family="{SVG_MONO_FONT}" font-size="{SVG_FONT_SIZE}" fill="#111">{}</text>"##,
                svg_sample_spans(sample)
            );
        }
        y += box_h + SVG_BOX_GAP;
    }
    let _ = writeln!(out, "</g>");
}

/// Escaped sample text with runs of body letters wrapped in bold `<tspan>`s.
fn svg_sample_spans(sample: &str) -> String {
    let mut out = String::new();
    let mut in_bold = false;
    for (i, c) in sample.chars().enumerate() {
        let bold = i >= PROMPT_LEN && c.is_ascii_uppercase();
        if bold != in_bold {
            out.push_str(if bold { r#"<tspan font-weight="bold">"# } else { "</tspan>" });
            in_bold = bold;
        }
        push_xml_escaped(&mut out, c);
    }
    if in_bold {
        out.push_str("</tspan>");
    }
    out
}

/// Escapes `&`, `<`, `>`, `"` and `'`; characters not allowed in XML 1.0 become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_xml_escaped(&mut out, c);
    }
    out
}

fn push_xml_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&apos;"),
        '\t' | '\n' | '\r' => out.push(c),
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a full sample `L>` + body from a 64-char body written with `.` for `_`.
    fn sample(letter: char, body: &str) -> String {
        let body = body.replace('.', "_");
        assert_eq!(body.chars().count(), BODY_LEN, "test body must be 64 chars");
        format!("{letter}>{body}")
    }

    /// Body of `_` with `run` written starting at `start`.
    fn body_with(start: usize, run: &str) -> String {
        let mut b: Vec<char> = vec!['_'; BODY_LEN];
        for (i, c) in run.chars().enumerate() {
            b[start + i] = c;
        }
        b.into_iter().collect()
    }

    /// Same as `body_with` plus `!` at the given positions.
    fn body_with_bangs(start: usize, run: &str, bangs: &[usize]) -> String {
        let mut b: Vec<char> = body_with(start, run).chars().collect();
        for &p in bangs {
            b[p] = '!';
        }
        b.into_iter().collect()
    }

    fn valid_at(letter: char, start: usize) -> String {
        sample(letter, &body_with(start, &letter.to_string().repeat(8)))
    }

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

    #[test]
    fn kappa_titles() {
        assert_eq!(kappa_title(1.0 / 64.0), "κ = 1/64 bit");
        assert_eq!(kappa_title(0.125), "κ = 1/8 bit");
        assert_eq!(kappa_title(1.0), "κ = 1 bit");
        assert_eq!(kappa_title(8.0), "κ = 8 bits");
        assert_eq!(kappa_title(0.3), "κ = 0.3 bits");
    }

    fn example_panels() -> Vec<Panel> {
        ["κ = 1/64 bit", "κ = 1/8 bit", "κ = 1 bit", "κ = 8 bits"]
            .iter()
            .enumerate()
            .map(|(i, t)| Panel {
                title: t.to_string(),
                groups: vec![
                    Group::blue(vec![valid_at('C', i), valid_at('C', 30)]),
                    Group::green(vec![valid_at('C', 7); 3]),
                    Group::green(vec![valid_at('C', 40 + i)]),
                ],
            })
            .collect()
    }

    #[test]
    fn group_headers_numbering() {
        let panel = &example_panels()[0];
        assert_eq!(group_headers(panel), vec!["blue: independent Z", "green 1: shared Z", "green 2: shared Z"]);
        let single = Panel { title: "x".into(), groups: vec![Group::green(vec![])] };
        assert_eq!(group_headers(&single), vec!["green: shared Z"]);
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn text_render_contains_everything() {
        let panels = example_panels();
        let text = render_text(&panels, false);
        let lines: Vec<&str> = text.lines().collect();
        for panel in &panels {
            assert!(lines.contains(&panel.title.as_str()));
            for header in group_headers(panel) {
                assert!(lines.contains(&format!("  {header}").as_str()));
            }
            for group in &panel.groups {
                for s in &group.samples {
                    assert!(lines.contains(&format!("    {s}").as_str()), "missing {s}");
                }
            }
        }
        let n_samples: usize = panels.iter().flat_map(|p| &p.groups).map(|g| g.samples.len()).sum();
        // titles + headers + samples + blank separators between panels.
        assert_eq!(lines.len(), 4 + 12 + n_samples + 3);
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn text_render_ansi() {
        let panels = example_panels();
        let text = render_text(&panels, true);
        assert!(text.contains(&format!("{ANSI_BLUE}blue: independent Z{ANSI_RESET}")));
        assert!(text.contains(&format!("{ANSI_GREEN}green 2: shared Z{ANSI_RESET}")));
        assert!(text.contains(&format!("    {ANSI_LETTER}C{ANSI_RESET}>")));
        assert_eq!(strip_ansi(&text), render_text(&panels, false));
        let wrong = Panel { title: "t".into(), groups: vec![Group::blue(vec!["C>__J".into()])] };
        assert!(render_text(&[wrong], true).contains(&format!("{ANSI_WRONG}J{ANSI_RESET}")));
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn svg_structure() {
        let panels = example_panels();
        let svg = render_svg(&panels);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, r#"class="box blue""#), 4);
        assert_eq!(count(&svg, r#"class="box green""#), 8);
        assert_eq!(count(&svg, "<g class=\"panel\">"), 4);
        assert_eq!(count(&svg, "<g "), count(&svg, "</g>"));
        assert_eq!(count(&svg, "<text "), count(&svg, "</text>"));
        assert_eq!(count(&svg, "<tspan "), count(&svg, "</tspan>"));
        let n_samples: usize = panels.iter().flat_map(|p| &p.groups).map(|g| g.samples.len()).sum();
        assert_eq!(count(&svg, r#"class="sample""#), n_samples);
        assert_eq!(count(&svg, r#"class="header""#), 12);
        assert_eq!(count(&svg, r#"class="title""#), 4);
        assert_eq!(count(&svg, "<text "), n_samples + 12 + 4);
        assert!(svg.contains(SVG_MONO_FONT));
        assert!(svg.contains("κ = 1/8 bit"));
        assert!(svg.contains("#e3eeff") && svg.contains("#e2f5e4"));
        // The prompt separator '>' is escaped, the prompt letter is plain.
        assert!(svg.contains(">C&gt;"));
    }

    #[test]
    fn svg_escapes_and_handles_odd_inputs() {
        let panel = Panel {
            title: "a < b & c".into(),
            groups: vec![Group::blue(vec!["K><&\"'\u{1}".into(), String::new()]), Group::green(vec![])],
        };
        let svg = render_svg(&[panel]);
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("K&gt;&lt;&amp;&quot;&apos;\u{FFFD}"));
        assert!(!svg.contains("<&"));
        assert!(!svg.contains('\u{1}'));
        assert_eq!(count(&svg, r#"class="sample""#), 2);
        assert_eq!(count(&svg, r#"class="box blue""#), 1);
        assert_eq!(count(&svg, r#"class="box green""#), 1);
        let empty = render_svg(&[]);
        assert!(empty.starts_with("<svg") && empty.trim_end().ends_with("</svg>"));
    }

    fn svg_size(svg: &str) -> (f64, f64) {
        let attr = |name: &str| -> f64 {
            let start = svg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            let end = start + svg[start..].find('"').unwrap();
            svg[start..end].parse().unwrap()
        };
        (attr("width"), attr("height"))
    }

    #[test]
    fn svg_size_follows_content() {
        let mut panels = example_panels();
        let (w4, h4) = svg_size(&render_svg(&panels));
        // A fifth panel adds a row, not a column.
        panels.push(panels[0].clone());
        let (w5, h5) = svg_size(&render_svg(&panels));
        assert_eq!(w5, w4);
        assert!(h5 > h4);
        // One panel is one column wide.
        let (w1, _) = svg_size(&render_svg(&panels[..1]));
        assert!(w1 < w4 * 0.6);
        // More samples make it taller; longer samples make it wider.
        panels[0].groups[0].samples.push(valid_at('C', 3));
        let (_, h5b) = svg_size(&render_svg(&panels));
        assert!(h5b > h5);
        panels[0].groups[0].samples.push("C>".to_string() + &"_".repeat(100));
        let (w5c, _) = svg_size(&render_svg(&panels));
        assert!(w5c > w5);
    }
}
