//! `freet experiment figure4 --quick`: the report has its structure, and every metric in it is
//! recomputed here from the generated samples it ships.

use freet::experiments::figure4::{ArmSamples, Figure4Options, run_figure4};
use freet::experiments::figure4::{aggregate, agreement};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[test]
fn quick_experiment_report_is_complete_and_computed_from_samples() {
    let tmp = tempfile::tempdir().unwrap();
    // --jobs 2 gives each training half the cores (the automatic train.threads).
    let threads = (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1);
    let o = Figure4Options {
        out: tmp.path().join("work"),
        report_dir: tmp.path().join("report"),
        quick: true,
        groups: 6,
        group_size: 4,
        reuse: false,
        device: tch::Device::Cpu,
        progress: false,
        overrides: vec![],
        arms: vec![],
        command: "freet experiment figure4 --quick --jobs 2".into(),
        stop: Arc::new(AtomicBool::new(false)),
        jobs: 2,
    };
    let results = run_figure4(&o).unwrap();
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["baseline", "kappa-1-64", "kappa-1-8", "kappa-1", "kappa-8"], "arms in order despite --jobs 2");
    let md = std::fs::read_to_string(o.report_dir.join("figure4.md")).unwrap();
    for needle in [
        "| arm |",
        "κ = 1/64 bit",
        "κ = 1/8 bit",
        "κ = 1 bit",
        "κ = 8 bits",
        "baseline",
        "figure4.svg",
        "Quick mode",
        &format!("CPU threads per training: {threads}, 2 arms training at once"),
        // The κ = 1 arm's schedule (1,400 of 2,400 steps) is rescaled to the 40 quick steps.
        "κ = 1 bit 40 steps (κ = 8 bit/token for the first 23 steps, then 1; a schedule not in the paper)",
    ] {
        assert!(md.contains(needle), "report lacks {needle:?}");
    }
    assert_eq!(md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| arm")).count(), 5);
    let svg = std::fs::read_to_string(o.report_dir.join("figure4.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert_eq!(svg.matches("box blue").count(), 5, "one blue group per panel");
    assert_eq!(svg.matches("box green").count(), 10, "two green groups per panel");

    let samples: Vec<ArmSamples> =
        serde_json::from_str(&std::fs::read_to_string(o.report_dir.join("samples.json")).unwrap()).unwrap();
    assert_eq!(samples.len(), 5);
    for (arm, r) in samples.iter().zip(&results) {
        assert_eq!(arm.name, r.name);
        assert_eq!(arm.fresh.len(), 6);
        for g in arm.fresh.iter().chain(&arm.shared) {
            assert_eq!(g.len(), 4);
        }
        for (g, &l) in arm.fresh.iter().zip(&arm.letters) {
            for s in g {
                assert_eq!(s.chars().count(), 66, "{s}");
                assert!(s.starts_with(&format!("{l}>")), "{s}");
            }
        }
        let fresh = aggregate(&arm.fresh, &arm.letters).unwrap();
        let shared = aggregate(&arm.shared, &arm.letters).unwrap();
        assert_eq!(fresh, r.fresh, "{}: fresh metrics are recomputable from samples.json", arm.name);
        assert_eq!(shared, r.shared, "{}: shared metrics are recomputable from samples.json", arm.name);
        assert_eq!(r.fresh.n_samples, 24);
        let contrast = agreement::contrast(&arm.fresh, &arm.shared, &arm.letters, 1);
        assert_eq!(contrast, r.contrast, "{}: the paired contrast is recomputable from samples.json", arm.name);
    }
    assert!(md.contains("shared − fresh [95 % CI]") && md.contains("fresh / shared"), "labelled contrast columns");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.report_dir.join("results.json")).unwrap()).unwrap();
    assert!(json[1]["eval"]["elbo"].as_f64().is_some(), "FT arms report the ELBO");
    assert!(json[0]["eval"]["ce"].as_f64().is_some(), "the baseline reports its exact CE");

    // --arms: one arm, reused from the run above, measured again one arm at a time: the same numbers.
    let kappa_1 = results[3].clone();
    // With one job the thread count must be given to find the same run config.
    let one = Figure4Options {
        arms: vec!["kappa-1".into()],
        reuse: true,
        report_dir: tmp.path().join("one"),
        jobs: 1,
        overrides: vec![format!("train.threads={threads}")],
        ..o
    };
    let results = run_figure4(&one).unwrap();
    assert_eq!(results.len(), 1);
    assert!(results[0].reused && results[0].name == "kappa-1");
    assert_eq!((&results[0].fresh, &results[0].shared), (&kappa_1.fresh, &kappa_1.shared));
    // A run reused at another thread count is still the same run; any other difference is an
    // error that keeps the finished run.
    let other_threads = Figure4Options { overrides: vec![format!("train.threads={}", threads + 1)], ..one.clone() };
    assert!(run_figure4(&other_threads).unwrap()[0].reused, "train.threads alone does not retrain");
    let changed = Figure4Options { overrides: vec!["train.lr=0.01".into()], ..one.clone() };
    let err = format!("{:#}", run_figure4(&changed).unwrap_err());
    assert!(err.contains("holds a finished run trained with other settings") && err.contains("train.lr"), "{err}");
    assert!(tmp.path().join("work/models/kappa-1/metrics.jsonl").exists(), "the finished run is kept");
    let bad = Figure4Options { arms: vec!["kappa-2".into()], ..one };
    let err = run_figure4(&bad).unwrap_err().to_string();
    assert!(err.contains("unknown arm 'kappa-2'"), "{err}");
}
