//! Figure 4 itself: panels of blue (independent Z) and green (shared Z) sample groups, rendered as
//! text (plain or with ANSI colours) or laid out as SVG like the paper's figure (§4.1).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::metrics::PROMPT_LEN;

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

/// A number of bits as the paper writes it: `1/64`, `1/8`, `1`, `8`, `0.3`.
pub fn fmt_bits(bits: f64) -> String {
    let is_int = |x: f64| x.is_finite() && (x - x.round()).abs() < 1e-9;
    if bits > 0.0 && bits < 1.0 && is_int(1.0 / bits) {
        format!("1/{}", (1.0 / bits).round())
    } else if is_int(bits) {
        format!("{}", bits.round())
    } else {
        format!("{bits}")
    }
}

/// Panel title for a KL budget of `kappa_bits` bits: `κ = 1/64 bit`, `κ = 1 bit`, `κ = 8 bits`.
pub fn kappa_title(kappa_bits: f64) -> String {
    let n = fmt_bits(kappa_bits);
    let unit = if n == "1" || n.starts_with("1/") { "bit" } else { "bits" };
    format!("κ = {n} {unit}")
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
    use super::super::metrics::fixtures::valid_at;
    use super::*;

    #[test]
    fn kappa_titles() {
        assert_eq!(kappa_title(1.0 / 64.0), "κ = 1/64 bit");
        assert_eq!(kappa_title(0.125), "κ = 1/8 bit");
        assert_eq!(kappa_title(1.0), "κ = 1 bit");
        assert_eq!(kappa_title(8.0), "κ = 8 bits");
        assert_eq!(kappa_title(0.3), "κ = 0.3 bits");
        assert_eq!(fmt_bits(1.0 / 64.0), "1/64");
        assert_eq!(fmt_bits(0.125), "1/8");
        assert_eq!(fmt_bits(1.0), "1");
        assert_eq!(fmt_bits(8.0), "8");
        assert_eq!(fmt_bits(0.3), "0.3");
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
