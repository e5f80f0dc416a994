//! The arms of a comparison: a baseline, a parameter-matched baseline, one Free Transformer per κ
//! and, for contrast, Free Transformers with another number of bits H; each a set of overrides on
//! the task config.

use crate::config::RunConfig;
use crate::model::config::KappaBits;
use serde::Serialize;

/// One arm: a name and the overrides that make it from the task config.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    /// "baseline", "baseline+1", "FT κ=…" or (a contrast arm) "FT H=… κ=…".
    pub name: String,
    /// κ in bits for Free Transformer arms.
    pub kappa_bits: Option<f64>,
    /// H of a contrast arm, whose bits differ from the task config's (None for the other arms).
    pub bits: Option<usize>,
    /// Overrides applied to the task config.
    pub overrides: Vec<String>,
}

/// The arms of a comparison: baseline (L blocks), matched baseline (L+1 blocks), one Free
/// Transformer per κ at the task config's H, then one per `contrast` κ at `contrast_bits` bits.
pub fn arms(base: &RunConfig, kappas: &[KappaBits], contrast_bits: Option<usize>, contrast: &[KappaBits]) -> Vec<Arm> {
    let l = base.model.n_layers;
    let mut v = vec![
        Arm {
            name: "baseline".into(),
            kappa_bits: None,
            bits: None,
            overrides: vec!["model.latent.enabled=false".into()],
        },
        Arm {
            name: "baseline+1".into(),
            kappa_bits: None,
            bits: None,
            overrides: vec!["model.latent.enabled=false".into(), format!("model.n_layers={}", l + 1)],
        },
    ];
    for k in kappas {
        v.push(Arm {
            name: format!("FT κ={}", crate::experiments::figure4::fmt_bits(k.0)),
            kappa_bits: Some(k.0),
            bits: None,
            overrides: vec!["model.latent.enabled=true".into(), format!("model.latent.kappa_bits={}", k.0)],
        });
    }
    for (h, k) in contrast_bits.iter().flat_map(|&h| contrast.iter().map(move |k| (h, k))) {
        v.push(Arm {
            name: format!("FT H={h} κ={}", crate::experiments::figure4::fmt_bits(k.0)),
            kappa_bits: Some(k.0),
            bits: Some(h),
            overrides: vec![
                "model.latent.enabled=true".into(),
                format!("model.latent.kappa_bits={}", k.0),
                format!("model.latent.bits={h}"),
            ],
        });
    }
    v
}

/// The arms of `all` named in `only` (every arm if `only` is empty), in `all`'s order. A name is an
/// arm's own (`baseline`, `baseline+1`, `FT κ=1/2`) or `ft` for every Free Transformer arm.
pub fn select(all: Vec<Arm>, only: &[String]) -> Result<Vec<Arm>, String> {
    let names: Vec<String> = all.iter().map(|a| a.name.clone()).collect();
    if let Some(bad) = only.iter().find(|n| n.as_str() != "ft" && !names.contains(n)) {
        return Err(format!("unknown arm '{bad}': choose among ft, {}", names.join(", ")));
    }
    let wanted =
        |a: &Arm| only.is_empty() || only.iter().any(|n| *n == a.name || (n == "ft" && a.kappa_bits.is_some()));
    Ok(all.into_iter().filter(wanted).collect())
}

/// The directory name of an arm's runs: `FT κ=1/4` → `ft-kappa-1_4`, `FT H=8 κ=1` → `ft-h8-kappa-1`,
/// `baseline+1` → `baseline-plus1`.
pub(super) fn slug(name: &str) -> String {
    name.replace("FT κ=", "ft-kappa-")
        .replace("FT H=", "ft-h")
        .replace(" κ=", "-kappa-")
        .replace('/', "_")
        .replace('+', "-plus")
        .replace(' ', "-")
}

#[cfg(test)]
mod tests {
    use super::super::base_config;
    use super::super::tests::opts;
    use super::*;

    #[test]
    fn arms_are_baseline_matched_baseline_and_one_ft_per_kappa() {
        let (_, base) = base_config(&opts("permutation")).unwrap();
        let a = arms(&base, &[KappaBits(0.25), KappaBits(2.0)], Some(8), &[KappaBits(1.0)]);
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["baseline", "baseline+1", "FT κ=1/4", "FT κ=2", "FT H=8 κ=1"]);
        assert!(a[1].overrides.contains(&format!("model.n_layers={}", base.model.n_layers + 1)));
        assert_eq!((slug("FT κ=1/4"), slug("baseline+1")), ("ft-kappa-1_4".into(), "baseline-plus1".into()));
        assert_eq!(slug("FT H=8 κ=1/2"), "ft-h8-kappa-1_2");
        // The contrast arm is the task config at H = 8; the others keep its H.
        let bits_of =
            |arm: &Arm| RunConfig::from_toml_str(&toml::to_string(&base).unwrap(), "t", &arm.overrides).unwrap();
        assert_eq!((bits_of(&a[4]).model.latent.bits, a[4].bits), (8, Some(8)));
        assert_eq!(bits_of(&a[2]).model.latent.bits, base.model.latent.bits);
        assert_eq!(arms(&base, &[], None, &[KappaBits(1.0)]).len(), 2, "no contrast arm without its H");
    }

    #[test]
    fn arms_are_selected_by_name_or_as_ft_in_their_order() {
        let (_, base) = base_config(&opts("permutation")).unwrap();
        let all = || arms(&base, &[KappaBits(0.25), KappaBits(2.0)], None, &[]);
        let names = |only: &[&str]| -> Vec<String> {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            select(all(), &only).unwrap().into_iter().map(|a| a.name).collect()
        };
        assert_eq!(names(&[]).len(), 4, "no selection keeps every arm");
        assert_eq!(names(&["baseline"]), ["baseline"]);
        assert_eq!(names(&["ft", "baseline"]), ["baseline", "FT κ=1/4", "FT κ=2"], "the arms' own order");
        assert_eq!(names(&["FT κ=2", "baseline+1"]), ["baseline+1", "FT κ=2"]);
        let err = select(all(), &["FT κ=1".to_string()]).unwrap_err();
        assert!(err.contains("unknown arm 'FT κ=1'") && err.contains("FT κ=1/4"), "{err}");
    }
}
