//! Rendering `BENCHMARKS.md` from the JSON records of one run (freet and `bench/reference.py`):
//! training throughput, the Free Transformer's overhead against the FLOP model, the dense-formulation
//! comparison, KV-cache generation, the targets table, and the bf16-vs-fp32 loss-curve section.

use super::Record;
use super::flops::{mapper_gemm_flops, train_flops};
use super::sizes::SizesFile;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;

/// One row of the targets table: what should hold, what was measured, and whether it holds
/// (None: not measured).
type Target = (String, String, Option<bool>);

/// The newest record of an implementation, variant, size, precision and mode (and batch, if given).
fn find<'a>(
    recs: &'a [Record],
    imp: &str,
    variant: &str,
    size: &str,
    precision: &str,
    mode: &str,
    batch: Option<usize>,
) -> Option<&'a Record> {
    recs.iter().rev().find(|r| {
        r.implementation == imp
            && r.variant == variant
            && r.size == size
            && r.precision == precision
            && r.mode == mode
            && batch.is_none_or(|b| r.batch == b)
    })
}

/// The freet FT training record of a size, precision and H with the sizes file's E optimizer (the
/// newest one).
fn find_ft<'a>(recs: &'a [Record], sizes: &SizesFile, size: &str, precision: &str, bits: usize) -> Option<&'a Record> {
    find_ft_with(recs, size, precision, bits, sizes.train.ft_table_optimizer.name())
}

/// The newest freet FT training record of a size, precision, H and E optimizer ("dense" or "lazy";
/// records written before the optimizer was recorded were dense).
fn find_ft_with<'a>(recs: &'a [Record], size: &str, precision: &str, bits: usize, opt: &str) -> Option<&'a Record> {
    recs.iter().rev().find(|r| {
        r.implementation == "freet"
            && r.variant == "ft"
            && r.size == size
            && r.precision == precision
            && r.mode == "train"
            && r.bits == Some(bits)
            && r.table_optimizer.as_deref().unwrap_or("dense") == opt
    })
}

/// The (precision, H) pairs of freet FT training records of a size, the default H first.
fn ft_runs(recs: &[Record], size: &str, default_bits: usize) -> Vec<(&'static str, usize)> {
    let mut v: Vec<(&'static str, usize)> = vec![];
    for prec in ["fp32", "bf16"] {
        let mut bits: Vec<usize> = recs
            .iter()
            .filter(|r| r.implementation == "freet" && r.variant == "ft" && r.size == size && r.precision == prec)
            .filter(|r| r.mode == "train")
            .filter_map(|r| r.bits)
            .collect();
        bits.sort_by_key(|&b| (b != default_bits, std::cmp::Reverse(b)));
        bits.dedup();
        v.extend(bits.into_iter().map(|b| (prec, b)));
    }
    v
}

/// The E optimizer that is not `opt`.
fn other_opt(opt: &str) -> &'static str {
    if opt == "lazy" { "dense" } else { "lazy" }
}

/// A number with `digits` decimals, or a dash when missing.
fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// `a / b` when both are present.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// The verdict column of the targets table (None: not measured).
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// Renders `BENCHMARKS.md` from the records of one run; `notes` (hand-written analysis) is
/// appended verbatim and `header` names the command, machine and date.
pub fn report(recs: &[Record], sizes: &SizesFile, header: &str, notes: &str) -> String {
    let mut targets: Vec<Target> = vec![];
    let mut s = intro(header);
    s += &training_section(recs, sizes, &mut targets);
    s += &overhead_section(recs, sizes, &mut targets);
    s += &dense_section(recs, sizes);
    s += &generation_section(recs, sizes, &mut targets);
    targets.push(("GPU MFU in bf16 for s3".into(), "no GPU lent to this task".into(), None));
    s += "\n";
    s += &targets_table(&targets);
    if !notes.trim().is_empty() {
        s += "\n";
        s += notes.trim_end();
        s += "\n";
    }
    s
}

/// The title, the run's `header` and how to read the numbers.
fn intro(header: &str) -> String {
    let mut s = String::new();
    s += "# freet benchmarks\n\n";
    s += header;
    s += "\n\nEvery number below comes from the records of that one run (`bench/results.jsonl`); ratios compare \
          measurements taken in the same run on the same machine. Step times are medians over the measured \
          steps after warm-up; tokens/s = batch · seq_len / median step. Peak RSS is the process's VmHWM \
          (each configuration runs in its own process).\n\n";
    s
}

/// Training throughput of both implementations per size, and the speed-up target.
fn training_section(recs: &[Record], sizes: &SizesFile, targets: &mut Vec<Target>) -> String {
    let mut s = String::new();
    s += "## Training throughput: freet vs PyTorch eager on the identical model\n\n";
    s += "| size | impl | precision | variant | step ms | fwd | bwd | opt | tokens/s | × PyTorch fp32 | peak RSS MiB |\n";
    s += "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for name in sizes.sizes.keys() {
        let py32 = find(recs, "pytorch", "baseline", name, "fp32", "train", None).and_then(|r| r.tokens_per_s);
        for (imp, prec, var) in [
            ("pytorch", "fp32", "baseline"),
            ("pytorch", "bf16", "baseline"),
            ("freet", "fp32", "baseline"),
            ("freet", "bf16", "baseline"),
            ("pytorch", "fp32", "ft-dense"),
            ("freet", "fp32", "ft-dense"),
            ("freet", "fp32", "ft"),
            ("freet", "bf16", "ft"),
        ] {
            let r = if imp == "freet" && var == "ft" {
                find_ft(recs, sizes, name, prec, sizes.latent.bits)
            } else {
                find(recs, imp, var, name, prec, "train", None)
            };
            let Some(r) = r else { continue };
            let label = if imp == "pytorch" && prec == "bf16" { "bf16 autocast" } else { prec };
            let _ = writeln!(
                s,
                "| {name} | {imp} | {label} | {var} | {} | {} | {} | {} | {} | {} | {:.0} |",
                fmt_opt(r.step_ms_median, 0),
                fmt_opt(r.fwd_ms_median, 0),
                fmt_opt(r.bwd_ms_median, 0),
                fmt_opt(r.opt_ms_median, 0),
                fmt_opt(r.tokens_per_s, 0),
                fmt_opt(ratio(r.tokens_per_s, py32), 2),
                r.peak_rss_mib
            );
        }
        let best = ["fp32", "bf16"]
            .iter()
            .filter_map(|p| find(recs, "freet", "baseline", name, p, "train", None)?.tokens_per_s)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        if let Some(x) = ratio(best, py32) {
            targets.push((format!("{name}: training ≥ 1.3× PyTorch eager fp32"), format!("{x:.2}×"), Some(x >= 1.3)));
        }
    }
    s
}

/// The Free Transformer's measured step overhead against the FLOP model, with its targets.
fn overhead_section(recs: &[Record], sizes: &SizesFile, targets: &mut Vec<Target>) -> String {
    let mut s = String::new();
    s += "\n## Free Transformer overhead: measured vs FLOP prediction\n\n";
    s += "Predicted = (FT FLOPs − baseline FLOPs) / baseline FLOPs from `freet::bench::train_flops` (encoder \
          block fwd+bwd, the fused Eq. 8 backward over all 2^H codes, the gather). Measured = FT step / \
          baseline step − 1, same precision, same run. `mapper` is the fused Eq. 8 backward timed alone on \
          the step's shapes; its GFLOP/s count the `δR·Eᵀ` GEMM's 2·N·2^H·D. `E optimizer`: how AdamW \
          updated E (lazy: only the rows gathered in the step).\n\n";
    s += "| size | precision | H | E optimizer | baseline ms | FT ms | measured | predicted | encoder | mapper | measured / predicted | mapper ms | mapper GFLOP/s | Δfwd | Δbwd | Δopt |\n";
    s += "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (name, size) in &sizes.sizes {
        let default_opt = sizes.train.ft_table_optimizer.name();
        let runs = ft_runs(recs, name, sizes.latent.bits);
        let with_opt = runs.iter().flat_map(|&(p, b)| [(p, b, default_opt), (p, b, other_opt(default_opt))]);
        for (prec, bits, opt) in with_opt {
            let (Some(b), Some(f)) =
                (find(recs, "freet", "baseline", name, prec, "train", None), find_ft_with(recs, name, prec, bits, opt))
            else {
                continue;
            };
            let (Some(bs), Some(fs)) = (b.step_ms_median, f.step_ms_median) else { continue };
            let fl = train_flops(size, f.batch, Some(bits));
            let measured = fs / bs - 1.0;
            let pred = fl.overhead();
            let d = |a: Option<f64>, b: Option<f64>| fmt_opt(a.zip(b).map(|(a, b)| a - b), 0);
            let _ = writeln!(
                s,
                "| {name} | {prec} | {bits} | {} | {bs:.0} | {fs:.0} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.2} | {} | {} | {} | {} | {} |",
                f.table_optimizer.as_deref().unwrap_or("dense"),
                100.0 * measured,
                100.0 * pred,
                100.0 * fl.encoder / fl.decoder,
                100.0 * fl.mapper / fl.decoder,
                measured / pred,
                fmt_opt(f.mapper_ms_median, 0),
                // The δR·Eᵀ GEMM's FLOPs over the fused backward's time.
                fmt_opt(
                    f.mapper_ms_median.map(|ms| {
                        mapper_gemm_flops((f.batch * size.seq_len) as f64, bits, size.d_model as f64) / ms / 1e6
                    }),
                    0
                ),
                d(f.fwd_ms_median, b.fwd_ms_median),
                d(f.bwd_ms_median, b.bwd_ms_median),
                d(f.opt_ms_median, b.opt_ms_median),
            );
            if opt != default_opt {
                continue;
            }
            if bits == 16 {
                let scope = if name == "s1" { " (reported; the threshold is for s2 and s3)" } else { "" };
                targets.push((
                    format!("{name}: FT overhead ≤ 1.15 × predicted at H = 16 ({prec}){scope}"),
                    format!("{:.2}× ({:.1} % vs {:.1} %)", measured / pred, 100.0 * measured, 100.0 * pred),
                    Some(measured / pred <= 1.15),
                ));
            }
            if bits <= 10 && size.d_model >= 512 && name == "s2" {
                let bound = 1.0 / size.n_layers as f64 + 0.02;
                targets.push((
                    format!("{name}: FT overhead ≤ 1/L + 2 % at H = {bits} ({prec})"),
                    format!("{:.1} % vs {:.1} %", 100.0 * measured, 100.0 * bound),
                    Some(measured <= bound),
                ));
            }
        }
        let step = |prec| find_ft(recs, sizes, name, prec, sizes.latent.bits).and_then(|r| r.step_ms_median);
        if name != "s1"
            && let (Some(b16), Some(f32)) = (step("bf16"), step("fp32"))
        {
            targets.push((
                format!("{name}: bf16 FT step ≤ 0.75 × fp32 FT step (H = {})", sizes.latent.bits),
                format!("{:.2}× ({b16:.0} vs {f32:.0} ms)", b16 / f32),
                Some(b16 / f32 <= 0.75),
            ));
        }
    }
    s += &memory_section(recs, sizes, targets);
    s
}

/// The Free Transformer's peak-RSS overhead against what it must hold (E, its gradient and AdamW
/// state, the encoder, the activations kept for the backward, the mapper scratch), with its target.
fn memory_section(recs: &[Record], sizes: &SizesFile, targets: &mut Vec<Target>) -> String {
    let mut rows = String::new();
    for name in sizes.sizes.keys() {
        let bits = sizes.latent.bits;
        let (Some(b), Some(f)) =
            (find(recs, "freet", "baseline", name, "fp32", "train", None), find_ft(recs, sizes, name, "fp32", bits))
        else {
            continue;
        };
        let Some(m) = f.memory_parts else { continue };
        let over = f.peak_rss_mib - b.peak_rss_mib;
        let _ = writeln!(
            rows,
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            f.table_optimizer.as_deref().unwrap_or("dense"),
            b.peak_rss_mib,
            f.peak_rss_mib,
            over,
            m.table,
            m.table_grad,
            m.table_state,
            m.encoder_params,
            m.activations,
            m.mapper_scratch,
            over / m.total(),
        );
        let scope = if name == "s1" { " (reported; the threshold is for s2 and s3)" } else { "" };
        targets.push((
            format!("{name}: FT peak-RSS overhead ≤ 1.2 × its accounted parts (H = {bits}, fp32){scope}"),
            format!("{:.2}× ({over:.0} vs {:.0} MiB)", over / m.total(), m.total()),
            Some(over / m.total() <= 1.2),
        ));
    }
    if rows.is_empty() {
        return rows;
    }
    let mut s = String::from(
        "
### Free Transformer memory: peak RSS overhead against what it must hold (fp32, H = 16)

         Overhead = FT peak RSS − baseline peak RSS (same run). The parts, in MiB: E `[2^H, D]`, its gradient          (dense), its AdamW moments (plus per-row step counts when lazy), the encoder's parameters with their          gradients and moments, the fp32 activations kept for the backward (encoder block 13·D + 4·F floats          per token, readout 2·D + H, and R, the injection block's second norm and the cut's gradients 4·D),          and the fused Eq. 8 backward's scratch. Ratio = overhead / sum of the parts.

",
    );
    s += "| size | E optimizer | baseline MiB | FT MiB | overhead | E | E grad | E AdamW | encoder | activations | mapper scratch | ratio |
";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
";
    s += &rows;
    s
}

/// The fused Eq. 8 backward against the dense one-hot formulation (empty without PyTorch dense records).
fn dense_section(recs: &[Record], sizes: &SizesFile) -> String {
    let mut s = String::new();
    let dense =
        |imp: &str, name: &str| find(recs, imp, "ft-dense", name, "fp32", "train", None).and_then(|r| r.step_ms_median);
    let mut dense_rows = String::new();
    for name in sizes.sizes.keys() {
        let fused = find_ft(recs, sizes, name, "fp32", sizes.latent.bits);
        if let (Some(py), Some(f)) = (dense("pytorch", name), fused) {
            let _ = writeln!(
                dense_rows,
                "| {name} | {py:.0} | {} | {} | {} | {:.0} | {:.0} |",
                fmt_opt(dense("freet", name), 0),
                fmt_opt(f.step_ms_median, 0),
                fmt_opt(f.step_ms_median.map(|x| py / x), 2),
                find(recs, "pytorch", "ft-dense", name, "fp32", "train", None).map_or(f64::NAN, |r| r.peak_rss_mib),
                f.peak_rss_mib
            );
        }
    }
    if !dense_rows.is_empty() {
        s += "\nThe FT-specific part against the usual public formulation (post-sampler as a dense one-hot × \
              Linear(2^H → D), autograd through the full G), fp32:\n\n";
        s += "| size | PyTorch dense ms | freet dense ms | freet fused ms | fused speed-up vs PyTorch dense | PyTorch dense RSS MiB | freet fused RSS MiB |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|\n";
        s += &dense_rows;
    }
    s
}

/// KV-cache generation speed of both implementations, with its targets.
fn generation_section(recs: &[Record], sizes: &SizesFile, targets: &mut Vec<Target>) -> String {
    let mut s = String::new();
    s += "\n## KV-cache generation\n\n";
    s += "Prompt prefilled in one pass (through the encoder for the FT), then one token per step with \
          multinomial sampling; decode tokens/s = batch · new tokens / time of the new-token steps after \
          the prefill (both implementations; see bench/reference.py).\n\n";
    s += "| size | variant | precision | batch | freet tokens/s | PyTorch tokens/s | ratio | freet prefill ms | PyTorch prefill ms |\n";
    s += "|---|---|---|---:|---:|---:|---:|---:|---:|\n";
    for name in sizes.sizes.keys() {
        for var in ["baseline", "ft"] {
            for prec in ["fp32", "bf16"] {
                for &b in &sizes.generate.batches {
                    let f = find(recs, "freet", var, name, prec, "generate", Some(b));
                    let pvar = if var == "ft" { "ft-dense" } else { var };
                    let p = find(recs, "pytorch", pvar, name, prec, "generate", Some(b));
                    if f.is_none() && p.is_none() {
                        continue;
                    }
                    let ft = f.and_then(|r| r.decode_tokens_per_s);
                    let pt = p.and_then(|r| r.decode_tokens_per_s);
                    let _ = writeln!(
                        s,
                        "| {name} | {var} | {prec} | {b} | {} | {} | {} | {} | {} |",
                        fmt_opt(ft, 0),
                        fmt_opt(pt, 0),
                        fmt_opt(ratio(ft, pt), 2),
                        fmt_opt(f.and_then(|r| r.prefill_ms), 1),
                        fmt_opt(p.and_then(|r| r.prefill_ms), 1)
                    );
                    if var == "baseline"
                        && b == 1
                        && let Some(x) = ratio(ft, pt)
                    {
                        targets.push((
                            format!("{name}: KV generation ≥ 1.5× PyTorch loop at batch 1 ({prec})"),
                            format!("{x:.2}×"),
                            Some(x >= 1.5),
                        ));
                    }
                }
            }
        }
        let (b, f) = (
            find(recs, "freet", "baseline", name, "fp32", "generate", Some(1)).and_then(|r| r.decode_tokens_per_s),
            find(recs, "freet", "ft", name, "fp32", "generate", Some(1)).and_then(|r| r.decode_tokens_per_s),
        );
        if let Some(x) = ratio(b, f) {
            targets.push((
                format!("{name}: FT generation overhead ≤ 2 % (batch 1, fp32)"),
                format!("{:+.1} %", 100.0 * (x - 1.0)),
                Some(x - 1.0 <= 0.02),
            ));
        }
    }
    s
}

/// The `## Targets` table.
fn targets_table(targets: &[Target]) -> String {
    let mut head = String::from("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    for (t, m, ok) in targets {
        let _ = writeln!(head, "| {t} | {m} | {} |", verdict(*ok));
    }
    head
}

/// One training run's curve for the precision check: training CE per logged step and the final
/// held-out headline figure.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Label (e.g. "fp32 seed 1").
    pub name: String,
    /// `(step, training CE)`.
    pub train_ce: Vec<(f64, f64)>,
    /// Held-out CE (baseline) or ELBO (FT) at the last evaluation.
    pub final_eval: Option<f64>,
}

/// Reads `metrics.jsonl` of a run directory into a [`Curve`].
pub fn read_curve(name: &str, run_dir: &std::path::Path) -> Result<Curve> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut c = Curve { name: name.to_string(), train_ce: vec![], final_eval: None };
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if let (Some(step), Some(ce)) = (v["step"].as_f64(), v["ce"].as_f64()) {
            c.train_ce.push((step, ce));
        }
        if let Some(e) = v.get("eval") {
            c.final_eval = e["ce"].as_f64().or(e["elbo"].as_f64()).or(c.final_eval);
        }
    }
    if c.train_ce.is_empty() {
        bail!("{}: no training steps logged", path.display());
    }
    Ok(c)
}

/// The bf16-vs-fp32 section: final held-out CE per run, the seed-to-seed spread of the fp32 runs,
/// and (written to `svg`) the training-CE curves.
pub fn curves_section(curves: &[Curve], svg: &std::path::Path, svg_link: &str) -> Result<String> {
    let mut s = String::from(
        "## bf16 vs fp32: loss curves\n\nThe same run trained in fp32 with two seeds and in bf16 (products in bf16; master \
         weights, norms, logits, loss and the Binary Mapper in fp32). bf16 is within noise when its distance to \
         the fp32 run of the same seed is no larger than the fp32 seed-to-seed spread.\n\n",
    );
    s += "| run | held-out CE (final eval) | mean training CE, last 25 % of steps |\n|---|---:|---:|\n";
    for c in curves {
        let n = c.train_ce.len();
        let tail = &c.train_ce[n - (n / 4).max(1)..];
        let mean = tail.iter().map(|p| p.1).sum::<f64>() / tail.len() as f64;
        let _ = writeln!(s, "| {} | {} | {mean:.4} |", c.name, fmt_opt(c.final_eval, 4));
    }
    let series: Vec<crate::report::plot::Series> = curves
        .iter()
        .map(|c| crate::report::plot::Series {
            name: c.name.clone(),
            points: c.train_ce.iter().map(|&(x, y)| (x, y, 0.0)).collect(),
        })
        .collect();
    let chart = crate::report::plot::Chart {
        title: "training CE, fp32 vs bf16".into(),
        x_label: "step".into(),
        y_label: "CE (nats/token)".into(),
        log2_x: false,
    };
    crate::report::plot::write_svg(svg, &chart, &series)?;
    let _ = writeln!(s, "\n![training curves]({svg_link})");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::MemoryParts;
    use crate::bench::sizes::DEFAULT_SIZES;

    #[test]
    fn report_computes_ratios_from_records() {
        let f = SizesFile::parse(DEFAULT_SIZES).unwrap();
        let rec = |imp: &str, var: &str, prec: &str, tps: f64, ms: f64, rss: f64| Record {
            implementation: imp.into(),
            variant: var.into(),
            size: "s1".into(),
            precision: prec.into(),
            mode: "train".into(),
            batch: 32,
            seq_len: 128,
            step_ms_median: Some(ms),
            tokens_per_s: Some(tps),
            peak_rss_mib: rss,
            bits: (var != "baseline").then_some(16),
            ..Default::default()
        };
        let parts = MemoryParts {
            table: 100.0,
            table_grad: 100.0,
            table_state: 150.0,
            activations: 50.0,
            ..Default::default()
        };
        let lazy = Record {
            table_optimizer: Some("lazy".into()),
            memory_parts: Some(parts),
            ..rec("freet", "ft", "fp32", 2000.0, 2000.0, 900.0)
        };
        // A newer dense-E record is shown beside it but never replaces the sizes file's optimizer.
        let dense =
            Record { table_optimizer: Some("dense".into()), ..rec("freet", "ft", "fp32", 1300.0, 3000.0, 1200.0) };
        let recs = vec![
            rec("pytorch", "baseline", "fp32", 4000.0, 1024.0, 500.0),
            rec("freet", "baseline", "bf16", 6000.0, 682.7, 400.0),
            rec("freet", "baseline", "fp32", 4100.0, 1000.0, 400.0),
            lazy,
            dense,
        ];
        let md = report(&recs, &f, "header", "## Notes\n\nhand-written");
        assert!(md.contains("| s1: training ≥ 1.3× PyTorch eager fp32 | 1.50× | met |"), "{md}");
        assert!(md.contains("| s1 | freet | bf16 | baseline | 683 |"), "{md}");
        // Overhead 900 − 400 = 500 MiB against 400 accounted.
        assert!(md.contains("1.25× (500 vs 400 MiB) | **not met** |"), "{md}");
        assert!(md.contains("| s1 | fp32 | 16 | lazy | 1000 | 2000 | 100.0 % |"), "{md}");
        assert!(md.contains("| s1 | fp32 | 16 | dense | 1000 | 3000 | 200.0 % |"), "{md}");
        assert!(md.contains("(fp32) (reported; the threshold is for s2 and s3) | 0.58×"), "{md}");
        assert!(md.contains("## Notes\n\nhand-written"));
        assert!(md.contains("GPU MFU in bf16 for s3 | no GPU lent to this task | not measured"));
    }
}
