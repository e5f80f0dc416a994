//! The findings at the top of a comparison report, generated from the runs: whether the baseline
//! learned the task (the budget), then each Free Transformer arm against the baseline and the
//! matched baseline with 95 % Welch intervals over seeds, what its latent carries, and a verdict.
//! Sentences are written from the numbers, so that a regenerated report cannot keep a stale claim.

use super::arms::Arm;
use super::metrics::RunResult;
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

/// The budget sentence: did the baseline learn the task (issue 15's targets)?
fn budget(task: &str, results: &[RunResult]) -> Option<String> {
    let (key, target, label, at_least) = match task {
        "permutation" => ("validity", 0.8, "validity", true),
        "hmm" => ("excess_nll_bits_per_seq", 0.3, "excess NLL over Bayes (bits/seq)", false),
        "countdown" => ("pass_at_1", f64::NAN, "pass@1", true),
        _ => return None,
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

/// The findings section of `compare.md`.
pub(super) fn findings(task: &str, arms: &[Arm], results: &[RunResult]) -> String {
    let mut s = String::from("## Findings\n\n");
    s += "Generated from the runs below. Δ is the Free Transformer arm minus the named baseline, with the \
          95 % Welch interval of the difference of seed means; \"no difference detected\" means the interval \
          contains 0, which at a few seeds is not evidence of equality. Free Transformer likelihoods are upper \
          bounds: a better bound is a real gain, a worse one may be the bound's looseness.\n\n";
    if let Some(b) = budget(task, results) {
        s += &b;
        s += "\n";
    }
    let (mut better, mut worse) = (vec![], vec![]);
    for a in arms.iter().filter(|a| a.kappa_bits.is_some()) {
        let runs = results.iter().filter(|r| r.arm == a.name).count();
        if runs == 0 {
            continue;
        }
        let collapsed = results.iter().filter(|r| r.arm == a.name && r.collapsed).count();
        let _ = write!(s, "- **{}** ({runs} seeds, {collapsed} collapsed).", a.name);
        for c in COMPARED.iter().filter(|c| !vals(results, &a.name, c.key).is_empty()) {
            let mut parts = vec![];
            for b in ["baseline", "baseline+1"] {
                let Some(d) = DiffCi::welch(&vals(results, &a.name, c.key), &vals(results, b, c.key)) else { continue };
                let v = verdict(&d, c.higher_is_better);
                parts.push(format!("Δ vs {b} {}, {v}", d.render(c.digits)));
                match v {
                    "better" => better.push(format!("{} vs {b} ({})", a.name, c.label)),
                    "worse" => worse.push(format!("{} vs {b} ({})", a.name, c.label)),
                    _ => {}
                }
            }
            let _ = write!(
                s,
                " {} {} (baseline {}){}{}.",
                c.label,
                shown(results, &a.name, c.key, c.digits),
                shown(results, "baseline", c.key, c.digits),
                if parts.is_empty() { "" } else { ": " },
                parts.join("; ")
            );
        }
        s += &latent_sentence(results, &a.name);
        s += "\n";
    }
    if better.is_empty() && worse.is_empty() && !results.iter().any(|r| r.kappa_bits.is_some()) {
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

/// What an arm's latent carries: KL, dead bits, I(Z; hidden) and shared-Z consistency, where measured.
fn latent_sentence(results: &[RunResult], arm: &str) -> String {
    let mut parts = vec![];
    let has = |k: &str| !vals(results, arm, k).is_empty();
    if has("kl_bits") {
        parts.push(format!("KL {} bits/token", shown(results, arm, "kl_bits", 3)));
    }
    if has("dead_bits") {
        parts.push(format!("{} dead bits", shown(results, arm, "dead_bits", 1)));
    }
    if has("mi_z_hidden_bits") {
        parts.push(format!("I(Z; hidden choice) ≥ {} bits", shown(results, arm, "mi_z_hidden_bits", 3)));
    }
    if has("consistency_shared_z") {
        let d =
            DiffCi::welch(&vals(results, arm, "consistency_shared_z"), &vals(results, arm, "consistency_independent"));
        parts.push(format!(
            "samples sharing Z agree on the hidden choice {} against {} for fresh Z{}",
            shown(results, arm, "consistency_shared_z", 3),
            shown(results, arm, "consistency_independent", 3),
            d.map_or(String::new(), |d| format!(" (Δ {}, {})", d.render(3), verdict(&d, true)))
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
        let f = findings("permutation", &arms, &r);
        assert!(f.contains("validity is 0.900 ± 0.050 against the target ≥ 0.8: met by the whole interval"), "{f}");
        assert!(f.contains("Δ vs baseline +0.1000 [+0.0773, +0.1227], worse"), "{f}");
        assert!(f.contains("validity 0.893 ± 0.052 (baseline 0.900 ± 0.050): Δ vs baseline -0.007"), "{f}");
        assert!(f.contains("I(Z; hidden choice) ≥ 1.500"), "{f}");
        assert!(f.contains("against 0.300 ± 0.000 for fresh Z (Δ +0.550 [+0.426, +0.674], better)"), "{f}");
        assert!(f.contains("Where the Free Transformer is better: none. Where it is worse: FT κ=1 vs baseline"), "{f}");
        // The HMM budget is an excess at most 0.3; a mean above it is a miss.
        let h: Vec<RunResult> =
            [0.31, 0.33, 0.35].iter().map(|&e| run("baseline", None, &[("excess_nll_bits_per_seq", e)])).collect();
        assert!(findings("hmm", &arms[..1], &h).contains("0.33 ± 0.05 against the target ≤ 0.3: missed."));
    }
}
