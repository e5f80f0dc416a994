//! The comparison's report: `results.json` (every run), metric-vs-κ plots and `compare.md` (mean ±
//! 95 % CI per arm over seeds, collapse counts).

use super::CompareOptions;
use super::arms::Arm;
use super::metrics::RunResult;
use crate::config::RunConfig;
use crate::report::plot::{Chart, Series, write_svg};
use crate::report::stats::{MeanCi, mean};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// How a metric is named and rendered.
struct MetricInfo {
    key: &'static str,
    label: &'static str,
    digits: usize,
}

/// The metrics a report may show, in column order (a column appears when some run has the metric).
const METRICS: [MetricInfo; 16] = [
    MetricInfo { key: "nll", label: "NLL bound (nats/token)", digits: 4 },
    MetricInfo { key: "bits_per_byte", label: "NLL bound (bits/byte)", digits: 4 },
    MetricInfo { key: "excess_nll_bits_per_seq", label: "excess NLL over Bayes (bits/seq)", digits: 2 },
    MetricInfo { key: "elbo", label: "ELBO", digits: 4 },
    MetricInfo { key: "prior_ce", label: "prior-Z CE", digits: 4 },
    MetricInfo { key: "kl_bits", label: "KL (bits/token)", digits: 3 },
    MetricInfo { key: "dead_bits", label: "dead bits", digits: 1 },
    MetricInfo { key: "validity", label: "validity", digits: 3 },
    MetricInfo { key: "coverage", label: "coverage (norm. entropy)", digits: 3 },
    MetricInfo { key: "consistency_shared_z", label: "consistency, shared Z", digits: 3 },
    MetricInfo { key: "consistency_independent", label: "consistency, independent", digits: 3 },
    MetricInfo { key: "mi_z_hidden_bits", label: "I(Z; hidden) lower bound (bits)", digits: 3 },
    MetricInfo { key: "hidden_accuracy", label: "hidden choice from Z (held-out accuracy)", digits: 3 },
    MetricInfo { key: "pass_at_1", label: "pass@1", digits: 3 },
    MetricInfo { key: "pass_at_8", label: "pass@8", digits: 3 },
    MetricInfo { key: "distinct_valid", label: "distinct valid answers / prompt", digits: 2 },
];

/// The name of the Free Transformer arms' series in the plots (the task config's H).
const FT_SERIES: &str = "Free Transformer";

/// The metrics plotted against κ.
const PLOTTED: [&str; 7] =
    ["nll", "excess_nll_bits_per_seq", "validity", "pass_at_1", "consistency_shared_z", "mi_z_hidden_bits", "kl_bits"];

/// Writes `results.json`, the plots and `compare.md` into `o.report_dir`.
pub(super) fn write_report(
    task: &str,
    base: &RunConfig,
    arms: &[Arm],
    results: &[RunResult],
    o: &CompareOptions,
    minutes: f64,
) -> Result<()> {
    let write = |name: &str, bytes: &[u8]| crate::util::fs::write_atomic(&o.report_dir.join(name), bytes);
    write("results.json", serde_json::to_string_pretty(results)?.as_bytes())?;
    let plots = write_plots(results, arms, &o.report_dir)?;
    let md = report(task, base, arms, results, o, minutes, &plots);
    write("compare.md", md.as_bytes())
}

/// The values of metric `key` over the runs (seeds) of `arm` that have it.
fn values<'a>(results: &'a [RunResult], arm: &'a str, key: &'a str) -> impl Iterator<Item = f64> + 'a {
    results.iter().filter(move |r| r.arm == arm).filter_map(move |r| r.metrics.get(key).copied())
}

/// Metric-vs-κ plots (FT arms with 95 % CI bars; baselines as flat lines); returns file names.
fn write_plots(results: &[RunResult], arms: &[Arm], dir: &Path) -> Result<Vec<(String, String)>> {
    let kappas: Vec<f64> = arms.iter().filter_map(|a| a.kappa_bits).collect();
    if kappas.is_empty() {
        return Ok(vec![]);
    }
    let (lo, hi) = kappas.iter().fold((f64::MAX, f64::MIN), |(a, b), &k| (a.min(k), b.max(k)));
    let mut files = vec![];
    for info in METRICS.iter().filter(|i| PLOTTED.contains(&i.key)) {
        // A plot needs some Free Transformer arm that measured the metric.
        if !arms.iter().any(|a| a.kappa_bits.is_some() && values(results, &a.name, info.key).any(f64::is_finite)) {
            continue;
        }
        let series = plot_series(results, arms, info.key, (lo, hi));
        let file = format!("{}.svg", info.key);
        let chart = Chart {
            title: format!("{} vs κ (mean ± 95 % CI over seeds)", info.label),
            x_label: "κ (bits/token)".into(),
            y_label: info.label.into(),
            log2_x: true,
        };
        write_svg(&dir.join(&file), &chart, &series)?;
        files.push((info.label.to_string(), file));
    }
    Ok(files)
}

/// The series of one metric plot: each baseline a flat line over the κ range `(lo, hi)`, the
/// Free Transformer arms one line of mean ± 95 % CI points at their κ (contrast arms, of another H,
/// a line of their own).
fn plot_series(results: &[RunResult], arms: &[Arm], key: &str, (lo, hi): (f64, f64)) -> Vec<Series> {
    let mut series: Vec<Series> = vec![];
    for a in arms {
        let pts: Vec<f64> = values(results, &a.name, key).collect();
        let Some(ci) = MeanCi::of(&pts) else { continue };
        let err = if ci.ci95.is_finite() { ci.ci95 } else { 0.0 };
        match a.kappa_bits {
            None => series.push(Series { name: a.name.clone(), points: vec![(lo, ci.mean, 0.0), (hi, ci.mean, 0.0)] }),
            Some(k) => {
                let name = a.bits.map_or(FT_SERIES.to_string(), |h| format!("FT H={h}"));
                let i = match series.iter().position(|s| s.name == name) {
                    Some(i) => i,
                    None => {
                        series.push(Series { name, points: vec![] });
                        series.len() - 1
                    }
                };
                series[i].points.push((k, ci.mean, err));
            }
        }
    }
    series
}

/// The markdown report `compare.md`.
fn report(
    task: &str,
    base: &RunConfig,
    arms: &[Arm],
    results: &[RunResult],
    o: &CompareOptions,
    minutes: f64,
    plots: &[(String, String)],
) -> String {
    let mut s = report_head(task, results, o, minutes);
    s += &super::findings::findings(base, arms, results);
    s += "\n## Setup and results\n\n";
    s += &report_setup(base, o);
    s += &arm_table(arms, results);
    if let Some(line) = bayes_line(results) {
        let _ = writeln!(s, "\n{line}");
    }
    s += "\nPer-run values (seed by seed) are in `results.json`.\n";
    if !plots.is_empty() {
        s += "\n## Plots\n\n";
        for (label, file) in plots {
            let _ = writeln!(s, "![{label}]({file})\n");
        }
    }
    s
}

/// Title and provenance (command, date, machine, times).
fn report_head(task: &str, results: &[RunResult], o: &CompareOptions, minutes: f64) -> String {
    let mut s = format!("# freet compare: {task}\n\n");
    let _ = writeln!(
        s,
        "Produced by `{}` on {} ({}): this invocation took {minutes:.1} minutes; training took {:.1} minutes \
         in total over the {} runs (per-arm means in the table; a run reused with `--reuse` keeps the time \
         logged when it was trained).\n",
        o.command,
        crate::report::stamp::today(),
        crate::report::stamp::machine(),
        results.iter().map(|r| r.train_seconds).sum::<f64>() / 60.0,
        results.len()
    );
    s
}

/// The model and training settings, and how to read the table.
fn report_setup(base: &RunConfig, o: &CompareOptions) -> String {
    let m = &base.model;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Model: d_model {}, {} blocks, {} heads ({} KV), FFN {}, H = {} bits; {} steps of {} sequences, lr {}; \
         {} seeds per arm (`train.seed` = 1..={}); the task's world (`data.world_seed`) is the same for every run.\n",
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.n_kv_heads,
        m.ffn_hidden,
        m.latent.bits,
        base.train.steps,
        base.train.batch_size,
        base.train.lr,
        o.seeds,
        o.seeds
    );
    s += "**How to read it.** The baseline's NLL is exact; every Free Transformer figure is an upper bound; \
          its NLL bound is the tightest of the prior-Z CE, the IWAE bound (posterior proposal) and the ELBO. A win on a bound is real, a loss may be the \
          bound's looseness. `baseline+1` has one more block, matching the encoder's block; the FT's table E \
          is counted separately (it is large but each token reads one row). Generation-scored metrics use \
          samples drawn as in inference: prompt through the encoder, prior codes after it. Collapse: final \
          KL below 1 % of κ.\n\n";
    s
}

/// The per-arm table: parameters, collapse count, mean ± 95 % CI of every metric some run has, and
/// the mean training seconds.
fn arm_table(arms: &[Arm], results: &[RunResult]) -> String {
    let mut s = String::from("| arm | params (decoder / encoder / E) | collapsed |");
    let shown: Vec<&MetricInfo> =
        METRICS.iter().filter(|i| results.iter().any(|r| r.metrics.contains_key(i.key))).collect();
    for i in &shown {
        let _ = write!(s, " {} |", i.label);
    }
    s += " train s |\n|---|---|---|";
    for _ in &shown {
        s += "---:|";
    }
    s += "---:|\n";
    for a in arms {
        s += &arm_row(a, results, &shown);
    }
    s
}

/// One arm's row of [`arm_table`]; empty when the arm has no runs.
fn arm_row(a: &Arm, results: &[RunResult], shown: &[&MetricInfo]) -> String {
    let mut s = String::new();
    let runs: Vec<&RunResult> = results.iter().filter(|r| r.arm == a.name).collect();
    let Some(first) = runs.first() else { return s };
    let (d, e, t) = first.params;
    let collapsed = runs.iter().filter(|r| r.collapsed).count();
    let _ = write!(
        s,
        "| {} | {} / {} / {} | {} |",
        a.name,
        d,
        e,
        t,
        if a.kappa_bits.is_some() { format!("{collapsed}/{}", runs.len()) } else { "–".into() }
    );
    for i in shown {
        let v: Vec<f64> = values(results, &a.name, i.key).collect();
        let _ = write!(s, " {} |", MeanCi::of(&v).map_or("–".into(), |c| c.render(i.digits)));
    }
    let secs: Vec<f64> = runs.iter().map(|r| r.train_seconds).collect();
    let _ = writeln!(s, " {:.0} |", mean(&secs).unwrap_or(f64::NAN));
    s
}

/// The Bayes-optimal NLL of the validation set, one figure per seed (each seed draws its own
/// validation rows) or one when every seed's agrees to the digits shown; `None` when unknown.
fn bayes_line(results: &[RunResult]) -> Option<String> {
    let by_seed: std::collections::BTreeMap<u64, String> =
        results.iter().filter_map(|r| Some((r.seed, format!("{:.4}", r.metrics.get("bayes_nll")?)))).collect();
    let first = by_seed.values().next()?;
    let figures = if by_seed.values().all(|b| b == first) {
        format!("{first} nats/token")
    } else {
        let each: Vec<String> = by_seed.iter().map(|(seed, b)| format!("{b} (seed {seed})")).collect();
        format!("{} nats/token", each.join(", "))
    };
    Some(format!("Bayes-optimal NLL of the validation set: {figures} (known by construction)."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, bayes: Option<f64>) -> RunResult {
        RunResult {
            arm: "baseline".into(),
            kappa_bits: None,
            seed,
            train_seconds: 1.0,
            params: (1, 0, 0),
            eval: crate::eval::EvalReport::default(),
            collapsed: false,
            metrics: bayes.map(|b| ("bayes_nll".to_string(), b)).into_iter().collect(),
        }
    }

    #[test]
    fn the_bayes_line_gives_each_seeds_figure_unless_they_agree() {
        let per_seed = [run(1, Some(1.50912)), run(2, Some(1.5004)), run(1, Some(1.50912)), run(3, Some(1.5011))];
        assert_eq!(
            bayes_line(&per_seed).unwrap(),
            "Bayes-optimal NLL of the validation set: 1.5091 (seed 1), 1.5004 (seed 2), 1.5011 (seed 3) nats/token \
             (known by construction)."
        );
        let agree = [run(1, Some(0.99641)), run(2, Some(0.99638))];
        assert!(bayes_line(&agree).unwrap().contains(": 0.9964 nats/token ("));
        assert_eq!(bayes_line(&[run(1, None)]), None);
    }
}
