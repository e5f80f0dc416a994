//! The findings at the top of a comparison report, generated from the runs: whether the baseline
//! learned the task (the budget), then each Free Transformer arm against the baseline and the
//! matched baseline with 95 % Welch intervals over seeds, what its latent carries, and a verdict.
//! Sentences are written from the numbers, so that a regenerated report cannot keep a stale claim.

use super::arms::Arm;
use super::metrics::RunResult;
use crate::config::RunConfig;
use crate::data::DataConfig;
use crate::data::tasks::TaskSpec;
use crate::report::stats::{DiffCi, MeanCi};
use std::fmt::Write as _;

/// A metric on which arms are compared: its key, how it is named, digits, and its good direction.
struct Compared {
    key: &'static str,
    label: &'static str,
    digits: usize,
    higher_is_better: bool,
}

/// The compared metrics, in the order the findings state them.
const COMPARED: [Compared; 5] = [
    Compared { key: "nll", label: "NLL bound (nats/token)", digits: 4, higher_is_better: false },
    Compared { key: "bits_per_byte", label: "bits per byte", digits: 4, higher_is_better: false },
    Compared { key: "validity", label: "validity", digits: 3, higher_is_better: true },
    Compared { key: "pass_at_1", label: "pass@1", digits: 3, higher_is_better: true },
    Compared { key: "pass_at_8", label: "pass@8", digits: 3, higher_is_better: true },
];

/// How a difference reads: better, worse, or not detected at this many seeds.
fn verdict(d: &DiffCi, higher_is_better: bool) -> &'static str {
    match (d.excludes_zero(), (d.diff > 0.0) == higher_is_better) {
        (false, _) => "no difference detected",
        (true, true) => "better",
        (true, false) => "worse",
    }
}

/// The values of `key` over the runs of `arm`.
fn vals(results: &[RunResult], arm: &str, key: &str) -> Vec<f64> {
    results.iter().filter(|r| r.arm == arm).filter_map(|r| r.metrics.get(key).copied()).collect()
}

/// "1.2345 ± 0.0012" for the runs of `arm`, or "–".
fn shown(results: &[RunResult], arm: &str, key: &str, digits: usize) -> String {
    MeanCi::of(&vals(results, arm, key)).map_or("–".into(), |c| c.render(digits))
}

/// The task of a run config, if it is one.
fn task_spec(base: &RunConfig) -> Option<&TaskSpec> {
    match &base.data {
        DataConfig::Task(t) => Some(t),
        _ => None,
    }
}

/// The budget sentence: did the baseline learn the task (issue 15's targets: validity ≥ 0.8 on the
/// permutation task, excess NLL ≤ 0.3 bit/seq on the HMM mixture, pass@1 with its CI on countdown)?
fn budget(base: &RunConfig, results: &[RunResult]) -> Option<String> {
    let (key, target, label, at_least) = match task_spec(base)? {
        TaskSpec::Permutation(_) => ("validity", 0.8, "validity", true),
        TaskSpec::HmmMixture(_) => ("excess_nll_bits_per_seq", 0.3, "excess NLL over Bayes (bits/seq)", false),
        TaskSpec::Countdown(_) => ("pass_at_1", f64::NAN, "pass@1", true),
    };
    let c = MeanCi::of(&vals(results, "baseline", key))?;
    let digits = if key == "excess_nll_bits_per_seq" { 2 } else { 3 };
    if target.is_nan() {
        return Some(format!(
            "- **Budget.** The baseline's {label} is {} (no target: reported with its CI).",
            c.render(digits)
        ));
    }
    let met = if at_least { c.mean >= target } else { c.mean <= target };
    let (sign, lower_end) = if at_least { ("≥", c.mean - c.ci95) } else { ("≤", c.mean + c.ci95) };
    let whole = if at_least { lower_end >= target } else { lower_end <= target };
    Some(format!(
        "- **Budget.** The baseline's {label} is {} against the target {sign} {target}: {}{}.",
        c.render(digits),
        if met { "met" } else { "missed" },
        match (met, c.ci95.is_finite()) {
            (true, true) if !whole => " on the mean (not by the whole interval)",
            (true, true) => " by the whole interval",
            _ => "",
        }
    ))
}

/// The findings section of `compare.md` for the task config `base`.
pub(super) fn findings(base: &RunConfig, arms: &[Arm], results: &[RunResult]) -> String {
    let mut s = String::from("## Findings\n\n");
    s += "Generated from the runs below. Δ is the Free Transformer arm minus the named baseline, with the \
          95 % Welch interval of the difference of seed means; \"no difference detected\" means the interval \
          contains 0, which at a few seeds is not evidence of equality. Free Transformer NLLs are upper \
          bounds: a lower (better) bound is a real gain, a higher one may be the bound's looseness.\n\n";
    if let Some(b) = budget(base, results) {
        s += &b;
        s += "\n";
    }
    let (mut better, mut worse, mut tested) = (vec![], vec![], 0);
    for a in arms.iter().filter(|a| a.kappa_bits.is_some()) {
        let runs = results.iter().filter(|r| r.arm == a.name).count();
        if runs == 0 {
            continue;
        }
        let collapsed = results.iter().filter(|r| r.arm == a.name && r.collapsed).count();
        let _ = write!(s, "- **{}** ({runs} seed{}, {collapsed} collapsed).", a.name, if runs == 1 { "" } else { "s" });
        // On text, bits per byte is the NLL in another unit: compared once.
        let has_bpb = !vals(results, &a.name, "bits_per_byte").is_empty();
        let skip = |c: &Compared| vals(results, &a.name, c.key).is_empty() || (has_bpb && c.key == "nll");
        for c in COMPARED.iter().filter(|c| !skip(c)) {
            let mut parts = vec![];
            for b in ["baseline", "baseline+1"] {
                let Some(d) = DiffCi::welch(&vals(results, &a.name, c.key), &vals(results, b, c.key)) else { continue };
                let v = verdict(&d, c.higher_is_better);
                tested += 1;
                parts.push(format!("Δ vs {b} {}, {v}", d.render(c.digits)));
                match v {
                    "better" => better.push(format!("{} vs {b} ({})", a.name, c.label)),
                    "worse" => worse.push(format!("{} vs {b} ({})", a.name, c.label)),
                    _ => {}
                }
            }
            let base = vals(results, "baseline", c.key);
            let _ = write!(
                s,
                " {} {}{}{}{}.",
                c.label,
                shown(results, &a.name, c.key, c.digits),
                if base.is_empty() {
                    String::new()
                } else {
                    format!(" (baseline {})", shown(results, "baseline", c.key, c.digits))
                },
                if parts.is_empty() { "" } else { ": " },
                parts.join("; ")
            );
        }
        s += &latent_sentence(results, &a.name, hidden_choices(base));
        s += "\n";
    }
    if tested == 0 {
        if results.iter().any(|r| r.kappa_bits.is_some()) {
            s +=
                "- **Verdict.** Nothing was tested: a comparison needs at least 2 seeds of an arm and of a baseline.\n";
        }
        return s;
    }
    let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join("; ") };
    let _ = writeln!(
        s,
        "- **Verdict.** Where the Free Transformer is better: {}. Where it is worse: {}. Everything else: no \
         difference detected at this number of seeds.",
        list(&better),
        list(&worse)
    );
    s
}

/// The number of hidden choices K of a task with one (permutation, HMM mixture).
fn hidden_choices(base: &RunConfig) -> Option<usize> {
    match task_spec(base)? {
        TaskSpec::Permutation(p) => Some(p.k),
        TaskSpec::HmmMixture(h) => Some(h.k),
        TaskSpec::Countdown(_) => None,
    }
}

/// What an arm's latent carries: KL, dead bits, I(Z; hidden) (of log₂ K when `k` is known) and
/// shared-Z consistency against fresh Z (paired within each seed's run), where measured.
fn latent_sentence(results: &[RunResult], arm: &str, k: Option<usize>) -> String {
    let mut parts = vec![];
    let has = |key: &str| !vals(results, arm, key).is_empty();
    if has("kl_bits") {
        parts.push(format!("KL {} bits/token", shown(results, arm, "kl_bits", 3)));
    }
    if has("dead_bits") {
        parts.push(format!("{} dead bits", shown(results, arm, "dead_bits", 1)));
    }
    if has("mi_z_hidden_bits") {
        parts.push(format!(
            "held-out lower bound on I(posterior Z; hidden choice) {} bits{}",
            shown(results, arm, "mi_z_hidden_bits", 3),
            k.map_or(String::new(), |k| format!(" of log₂ K = {:.3}", (k as f64).log2()))
        ));
    }
    if has("consistency_shared_z") {
        // Per seed: shared − fresh of the same run.
        let paired: Vec<f64> = results
            .iter()
            .filter(|r| r.arm == arm)
            .filter_map(|r| Some(r.metrics.get("consistency_shared_z")? - r.metrics.get("consistency_independent")?))
            .collect();
        let d = MeanCi::of(&paired).filter(|c| c.ci95.is_finite()).map(|c| {
            let v = if c.mean.abs() <= c.ci95 {
                "no difference detected"
            } else if c.mean > 0.0 {
                "higher"
            } else {
                "lower"
            };
            format!(" (paired per seed: {:+.3} ± {:.3}, {v})", c.mean, c.ci95)
        });
        parts.push(format!(
            "different prompts sharing one prior Z agree on the hidden choice {} of the time against {} for \
             samples of one prompt with fresh Z{}",
            shown(results, arm, "consistency_shared_z", 3),
            shown(results, arm, "consistency_independent", 3),
            d.unwrap_or_default()
        ));
    }
    if parts.is_empty() { String::new() } else { format!(" Latent: {}.", parts.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EvalReport;
    use std::collections::BTreeMap;

    /// A run of `arm` with the given metrics.
    fn run(arm: &str, kappa: Option<f64>, m: &[(&str, f64)]) -> RunResult {
        RunResult {
            arm: arm.into(),
            kappa_bits: kappa,
            seed: 1,
            train_seconds: 1.0,
            params: (1, 0, 0),
            eval: EvalReport::default(),
            collapsed: false,
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        }
    }

    fn arm(name: &str, kappa: Option<f64>) -> Arm {
        Arm { name: name.into(), kappa_bits: kappa, bits: None, overrides: vec![] }
    }

    #[test]
    fn findings_state_budget_differences_and_verdict_from_the_numbers() {
        let mut r = vec![];
        for (nll, v) in [(1.00, 0.90), (1.01, 0.92), (1.02, 0.88)] {
            r.push(run("baseline", None, &[("nll", nll), ("validity", v)]));
            r.push(run("baseline+1", None, &[("nll", nll - 0.001), ("validity", v)]));
        }
        // Clearly worse NLL (equal variances: Welch's df = 4, half-width 2.776 · √(2 · 10⁻⁴ / 3)), validity within noise, a latent that carries the choice.
        for (nll, v, s) in [(1.10, 0.91, 0.9), (1.11, 0.87, 0.8), (1.12, 0.90, 0.85)] {
            r.push(run(
                "FT κ=1",
                Some(1.0),
                &[
                    ("nll", nll),
                    ("validity", v),
                    ("kl_bits", 0.5),
                    ("mi_z_hidden_bits", 1.5),
                    ("consistency_shared_z", s),
                    ("consistency_independent", 0.3),
                ],
            ));
        }
        let arms = [arm("baseline", None), arm("baseline+1", None), arm("FT κ=1", Some(1.0))];
        let text = include_str!("../../../experiments/compare/permutation.toml");
        let perm = RunConfig::from_toml_str(text, "p", &[]).unwrap();
        let f = findings(&perm, &arms, &r);
        assert!(f.contains("validity is 0.900 ± 0.050 against the target ≥ 0.8: met by the whole interval"), "{f}");
        assert!(f.contains("Δ vs baseline +0.1000 [+0.0773, +0.1227], worse"), "{f}");
        assert!(f.contains("validity 0.893 ± 0.052 (baseline 0.900 ± 0.050): Δ vs baseline -0.007"), "{f}");
        assert!(f.contains("I(posterior Z; hidden choice) 1.500 ± 0.000 bits of log₂ K = 2.000"), "{f}");
        // Paired per seed: 0.6, 0.5, 0.55 → mean 0.55, half-width 4.303 · 0.05 / √3 = 0.124.
        assert!(
            f.contains(
                "against 0.300 ± 0.000 for samples of one prompt with fresh Z (paired per seed: +0.550 ± 0.124, higher)"
            ),
            "{f}"
        );
        assert!(f.contains("Where the Free Transformer is better: none. Where it is worse: FT κ=1 vs baseline"), "{f}");
        // The HMM budget is an excess at most 0.3; a mean above it is a miss.
        let h: Vec<RunResult> =
            [0.31, 0.33, 0.35].iter().map(|&e| run("baseline", None, &[("excess_nll_bits_per_seq", e)])).collect();
        let hmm = RunConfig::from_toml_str(include_str!("../../../experiments/compare/hmm.toml"), "h", &[]).unwrap();
        assert!(findings(&hmm, &arms[..1], &h).contains("0.33 ± 0.05 against the target ≤ 0.3: missed."));
        // One seed: nothing can be tested, and the findings say so.
        let one: Vec<RunResult> =
            r.iter().filter(|x| x.metrics["nll"] < 1.005 || x.metrics["nll"] == 1.10).cloned().collect();
        let f1 = findings(&perm, &arms, &one);
        assert!(f1.contains("Nothing was tested") && f1.contains("(1 seed, 0 collapsed)"), "{f1}");
    }
}
