//! What is measured on each trained run of a comparison: the held-out evaluation with honest
//! bounds, posterior collapse, and the task's exact scores (excess NLL over the Bayes optimum,
//! generation-scored validity, coverage, consistency and pass@k).

use super::CompareOptions;
use super::arms::Arm;
use super::mi;
use crate::config::RunConfig;
use crate::data::tasks::{
    Countdown, HmmMixture, Permutation, Task, consistency, coverage, excess_nll_bits_per_seq, pass_at_k,
};
use crate::data::{Dataset, Split};
use crate::eval::{BitsPerByte, EvalOptions, EvalReport, evaluate_with};
use crate::generate::{GenerationZ, SampleOptions, generate_batch};
use crate::model::FreeTransformer;
use crate::report::stats::mean;
use crate::util::rng::Stream;
use anyhow::{Result, anyhow};
use serde::Serialize;
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// KL below this fraction of κ at the end of training counts as posterior collapse (spec §7).
pub const COLLAPSE_FRACTION: f64 = 0.01;

/// Everything measured on one trained run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Arm name.
    pub arm: String,
    /// κ in bits (FT arms).
    pub kappa_bits: Option<f64>,
    /// `train.seed`.
    pub seed: u64,
    /// Training seconds (for a run reused with `--reuse`, the time logged when it was trained).
    pub train_seconds: f64,
    /// (decoder, encoder, table E) parameters.
    pub params: (usize, usize, usize),
    /// Held-out evaluation.
    pub eval: EvalReport,
    /// Posterior collapse: final KL below [`COLLAPSE_FRACTION`] of κ.
    pub collapsed: bool,
    /// Task metrics by name.
    pub metrics: BTreeMap<String, f64>,
}

/// Evaluates one trained run of `arm`: the held-out bounds, collapse, and (on a task) its scores.
pub(super) fn evaluate_run(
    model: &FreeTransformer,
    run: &RunConfig,
    arm: &Arm,
    seed: u64,
    train_seconds: f64,
    o: &CompareOptions,
) -> Result<RunResult> {
    let data = run.dataset()?;
    let val = data.val_batches(run.train.eval_batches, run.train.batch_size);
    // The same evaluation draws for every arm and seed.
    let opts = EvalOptions { prior_samples: o.prior_samples, iwae_samples: o.iwae_samples, seed: 0xe7a1 };
    let eval = evaluate_with(model, &val, &opts).with_target_bytes(data.target_bytes(&val));
    let mut metrics = BTreeMap::new();
    let nll = eval.headline_nats();
    metrics.insert("nll".to_string(), nll);
    for (k, v) in [("elbo", eval.elbo), ("prior_ce", eval.prior_ce)] {
        if let Some(v) = v {
            metrics.insert(k.to_string(), v);
        }
    }
    if let Some(v) = eval.bits_per_byte.as_ref().map(BitsPerByte::headline).filter(|v| v.is_finite()) {
        metrics.insert("bits_per_byte".into(), v);
    }
    let kl_bits = eval.kl_nats.map(|k| k / std::f64::consts::LN_2);
    if let Some(k) = kl_bits {
        metrics.insert("kl_bits".into(), k);
    }
    if let Some(d) = eval.dead_bits {
        metrics.insert("dead_bits".into(), d as f64);
    }
    let collapsed = match (arm.kappa_bits, kl_bits) {
        (Some(kappa), Some(kl)) => kl < COLLAPSE_FRACTION * kappa,
        _ => false,
    };
    if let Dataset::Task(task) = &data {
        task_metrics(model, task, &val, nll, seed, o, &mut metrics)?;
    }
    Ok(RunResult {
        arm: arm.name.clone(),
        kappa_bits: arm.kappa_bits,
        seed,
        train_seconds,
        params: run.model.param_counts(),
        eval,
        collapsed,
        metrics,
    })
}

/// Exact task scores: excess NLL over the Bayes optimum where it is known; for a Free Transformer
/// on a task with a hidden choice, the held-out lower bound on I(Z; hidden) ([`mi`]);
/// generation-scored metrics from samples drawn as in inference (prompt through the encoder,
/// prior codes after).
fn task_metrics(
    model: &FreeTransformer,
    task: &Task,
    val: &[Vec<Vec<u32>>],
    nll: f64,
    seed: u64,
    o: &CompareOptions,
    m: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let rows: Vec<&Vec<u32>> = val.iter().flatten().collect();
    if let Ok(bayes) = task.bayes_nll_per_token(&rows) {
        m.insert("bayes_nll".into(), bayes);
        m.insert("excess_nll_bits_per_seq".into(), excess_nll_bits_per_seq(nll, bayes, task.seq_len() - 1));
    }
    if let Some(p) = mi::mi_z_hidden(model, task, seed, mi::MI_EXAMPLES) {
        m.insert("mi_z_hidden_bits".into(), p.mi_bits);
        m.insert("hidden_accuracy".into(), p.accuracy);
    }
    let drawn = PromptSamples::draw(model, task, seed, o)?;
    match task {
        Task::Permutation(perm) => permutation_metrics(model, task, perm, &drawn, seed, m)?,
        Task::HmmMixture(hmm) => {
            let chain = |p: &[u32], c: &[u32]| likeliest_chain(hmm, p, c);
            let sets: Vec<Vec<usize>> =
                drawn.samples.iter().enumerate().map(|(i, c)| chain(&drawn.prompts[i / drawn.k], c)).collect();
            consistency_metrics(model, task, &drawn, &sets, seed, &chain, m)?;
        }
        Task::Countdown(cd) => countdown_metrics(cd, &drawn, m),
    }
    Ok(())
}

/// `k` completions with fresh Z for each of the first validation prompts, as in inference.
#[derive(Clone)]
struct PromptSamples {
    /// The prompts (the first `o.prompts` validation examples, cut to the task's prompt length).
    prompts: Vec<Vec<u32>>,
    /// Samples per prompt.
    k: usize,
    /// Prompt length in tokens.
    p_len: usize,
    /// The sampling options they were drawn with (reused for the shared-Z draws).
    sopts: SampleOptions,
    /// Completions, `k` consecutive ones per prompt.
    samples: Vec<Vec<u32>>,
}

impl PromptSamples {
    /// Draws `o.samples` (at least 1) completions of each of `o.prompts` validation prompts.
    fn draw(model: &FreeTransformer, task: &Task, seed: u64, o: &CompareOptions) -> Result<PromptSamples> {
        let (p_len, new) = (task.prompt_len(), task.seq_len() - task.prompt_len());
        let prompts: Vec<Vec<u32>> =
            (0..o.prompts as u64).map(|i| task.example_ids(Split::Val, i)[..p_len].to_vec()).collect();
        let k = o.samples.max(1);
        let sopts =
            SampleOptions { max_new_tokens: new, seed: Stream::CompareSampling.seed(seed, &[]), ..Default::default() };
        let mut d = PromptSamples { prompts, k, p_len, sopts, samples: vec![] };
        let out = generate_batch(model, &d.batch(), &d.sopts, GenerationZ::Fresh)?;
        d.samples = completions(&out.tokens, p_len)?;
        Ok(d)
    }

    /// The generation batch: each prompt `k` times in a row, as token ids.
    fn batch(&self) -> Vec<Vec<i64>> {
        self.prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.iter().map(|&v| i64::from(v)).collect(), self.k))
            .collect()
    }
}

/// Permutation scores: validity, coverage of the hidden permutations, and consistency of
/// independent samples and (with a latent) of samples sharing one prior Z.
fn permutation_metrics(
    model: &FreeTransformer,
    task: &Task,
    perm: &Permutation,
    d: &PromptSamples,
    seed: u64,
    m: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let k = d.k;
    let mut sets = vec![];
    let mut valid = 0usize;
    for (i, c) in d.samples.iter().enumerate() {
        let s = perm.matching_ks(&d.prompts[i / k], c).unwrap_or_default();
        valid += usize::from(!s.is_empty());
        sets.push(s);
    }
    m.insert("validity".into(), valid as f64 / d.samples.len() as f64);
    let valid_sets: Vec<Vec<usize>> = sets.iter().filter(|s| !s.is_empty()).cloned().collect();
    m.insert("coverage".into(), coverage(&valid_sets, perm.n_perms()).normalized);
    let matching = |p: &[u32], c: &[u32]| perm.matching_ks(p, c).unwrap_or_default();
    consistency_metrics(model, task, d, &sets, seed, &matching, m)
}

/// The set of hidden choices of one completion of a prompt (empty: invalid, left out).
type Choices<'a> = dyn Fn(&[u32], &[u32]) -> Vec<usize> + 'a;

/// The chain a mixture sample follows: the argmax of the Bayes posterior over chains given the
/// completion and the prompt's last token only (the transitions the model generated; the prompt's
/// own evidence would differ between the different prompts of a shared-Z group), the lowest index
/// on a tie, as a one-element set; empty when no chain can produce it (or it holds a token outside
/// the symbols).
fn likeliest_chain(hmm: &HmmMixture, prompt: &[u32], completion: &[u32]) -> Vec<usize> {
    let last = &prompt[prompt.len().saturating_sub(1)..];
    let Ok(post) = hmm.chain_posterior(&[last, completion].concat()) else { return vec![] };
    post.iter()
        .enumerate()
        .filter(|(_, p)| p.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(vec![], |(i, _)| vec![i])
}

/// Consistency of the hidden choices: of independent samples of the same prompt (`sets`, the
/// choices of `d.samples`), and, with a latent, of samples of different prompts sharing one prior
/// Z ([`shared_z_consistency`]); `choices` maps (prompt, completion) to its set of choices.
fn consistency_metrics(
    model: &FreeTransformer,
    task: &Task,
    d: &PromptSamples,
    sets: &[Vec<usize>],
    seed: u64,
    choices: &Choices,
    m: &mut BTreeMap<String, f64>,
) -> Result<()> {
    // Independent samples of the same prompt: how often two pick the same choice.
    let per_prompt: Vec<f64> = sets.chunks(d.k).filter_map(consistency).collect();
    if let Some(v) = mean(&per_prompt) {
        m.insert("consistency_independent".into(), v);
    }
    if let Some(v) = shared_z_consistency(model, task, d, seed, choices)? {
        m.insert("consistency_shared_z".into(), v);
    }
    Ok(())
}

/// One shared prior Z per group of different prompts: does Z pick the hidden choice (the
/// permutation, the chain)? Mean consistency over the groups; `None` without a latent or without
/// a scorable group.
fn shared_z_consistency(
    model: &FreeTransformer,
    task: &Task,
    d: &PromptSamples,
    seed: u64,
    choices: &Choices,
) -> Result<Option<f64>> {
    let Some(lat) = model.latent() else { return Ok(None) };
    let prompts = &d.prompts;
    let ids: Vec<u64> = (0..prompts.len() as u64).map(|i| i % d.k as u64).collect();
    let z = lat.mapper.prior_codes(
        Stream::CompareSharedZ.seed(seed, &[]),
        &ids,
        0,
        (task.seq_len() - 1) as i64,
        model.device(),
    );
    let one: Vec<Vec<i64>> = prompts.iter().map(|p| p.iter().map(|&v| i64::from(v)).collect()).collect();
    let g = generate_batch(model, &one, &d.sopts, GenerationZ::Pinned(&z))?;
    let comp = completions(&g.tokens, d.p_len)?;
    let mut groups: BTreeMap<u64, Vec<Vec<usize>>> = BTreeMap::new();
    for (i, c) in comp.iter().enumerate() {
        groups.entry(ids[i]).or_default().push(choices(&prompts[i], c));
    }
    let per_group: Vec<f64> = groups.values().filter_map(|g| consistency(g)).collect();
    Ok(mean(&per_group))
}

/// Countdown scores per prompt, averaged: pass@1, pass@8 (pass@k for k < 8 samples) and the
/// number of distinct valid answers.
fn countdown_metrics(cd: &Countdown, d: &PromptSamples, m: &mut BTreeMap<String, f64>) {
    let k = d.k;
    let (mut p1, mut p8, mut distinct, mut n) = (0.0, 0.0, 0.0, 0.0);
    for (i, group) in d.samples.chunks(k).enumerate() {
        let c = group.iter().filter(|c| cd.score(&d.prompts[i], c).is_ok_and(|v| v.is_correct())).count();
        p1 += pass_at_k(k, c, 1).unwrap_or(f64::NAN);
        p8 += pass_at_k(k, c, 8.min(k)).unwrap_or(f64::NAN);
        distinct += cd.distinct_valid(&d.prompts[i], group).unwrap_or(0) as f64;
        n += 1.0;
    }
    m.insert("pass_at_1".into(), p1 / n);
    m.insert("pass_at_8".into(), p8 / n);
    m.insert("distinct_valid".into(), distinct / n);
}

/// The generated tokens after the prompt, one row per sample.
fn completions(tokens: &Tensor, p_len: usize) -> Result<Vec<Vec<u32>>> {
    let rows = Vec::<Vec<i64>>::try_from(tokens.to_device(Device::Cpu)).map_err(|e| anyhow!("samples: {e}"))?;
    Ok(rows.into_iter().map(|r| r[p_len..].iter().map(|&v| v as u32).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::compare::base_config;
    use crate::experiments::compare::tests::opts;
    use crate::model::{Pass, ZSource};
    use tch::Kind;

    /// An untrained `--quick` model of the built-in `task`, with or without the latent, its task,
    /// a few validation rows and the options.
    fn quick(task: &str, latent: bool) -> (FreeTransformer, Task, Vec<Vec<Vec<u32>>>, CompareOptions) {
        let mut o = opts(task);
        // Shared-Z groups are prompts i ≡ j (mod samples): two groups of four prompts.
        (o.quick, o.prompts, o.samples) = (true, 8, 2);
        o.overrides = vec![format!("model.latent.enabled={latent}")];
        let (_, run) = base_config(&o).unwrap();
        let model = FreeTransformer::new(&run.model, Device::Cpu, 1).unwrap();
        let Dataset::Task(task) = run.dataset().unwrap() else { panic!("{task} is a task") };
        let val = task.val_batches(1, 4);
        (model, task, val, o)
    }

    /// `task_metrics` of a quick model.
    fn scores(
        model: &FreeTransformer,
        task: &Task,
        val: &[Vec<Vec<u32>>],
        o: &CompareOptions,
    ) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        task_metrics(model, task, val, 2.0, 1, o, &mut m).unwrap();
        m
    }

    #[test]
    fn hmm_and_permutation_metrics_have_consistency_and_mi_deterministically() {
        for name in ["hmm", "permutation"] {
            let (model, task, val, o) = quick(name, true);
            let k = match &task {
                Task::HmmMixture(t) => t.n_chains(),
                Task::Permutation(t) => t.n_perms(),
                Task::Countdown(_) => unreachable!(),
            };
            let m = scores(&model, &task, &val, &o);
            // Every HMM sample has a likeliest chain; an untrained model's permutation samples are
            // all invalid, so only the bound is there.
            let keys: &[&str] = match name {
                "hmm" => &["consistency_independent", "consistency_shared_z", "mi_z_hidden_bits", "hidden_accuracy"],
                _ => &["mi_z_hidden_bits", "hidden_accuracy"],
            };
            for key in keys {
                let v = m.get(*key).unwrap_or_else(|| panic!("{name}: no {key} in {m:?}"));
                assert!(v.is_finite(), "{name}: {key} = {v}");
            }
            // An untrained encoder's bits are noise: the bound is about 0.
            assert!(m["mi_z_hidden_bits"].abs() < 0.05, "{name}: {m:?}");
            assert!(m["mi_z_hidden_bits"] <= (k as f64).log2(), "{name}: {m:?}");
            for key in ["consistency_independent", "consistency_shared_z", "hidden_accuracy"] {
                assert!(m.get(key).is_none_or(|v| (0.0..=1.0).contains(v)), "{name}: {key} {m:?}");
            }
            // The same model gives the same numbers.
            assert_eq!(scores(&model, &task, &val, &o), m, "{name}");
            // A baseline has no latent: no I(Z; hidden), no shared Z.
            let (base, task, val, o) = quick(name, false);
            let b = scores(&base, &task, &val, &o);
            assert_eq!(b.contains_key("consistency_independent"), name == "hmm", "{name}: {b:?}");
            for key in ["consistency_shared_z", "mi_z_hidden_bits", "hidden_accuracy"] {
                assert!(!b.contains_key(key), "{name}: baseline has {key}");
            }
        }
    }

    #[test]
    fn the_likeliest_chain_of_a_sample_is_its_true_chain_when_the_chains_differ() {
        // Two chains that each stay on one symbol with probability 0.9 (symbol 0 vs symbol 1).
        let (a, b) = (vec![vec![0.9, 0.1], vec![0.9, 0.1]], vec![vec![0.1, 0.9], vec![0.1, 0.9]]);
        let hmm = HmmMixture::from_matrices(&[a, b], 8, 1, 0).unwrap();
        assert_eq!(likeliest_chain(&hmm, &[1], &[0, 0, 0, 0, 0, 0, 0]), vec![0]);
        assert_eq!(likeliest_chain(&hmm, &[0], &[1, 1, 1, 1, 0, 1, 1]), vec![1]);
        // A token outside the symbols makes no choice; a tie goes to the lowest index.
        assert_eq!(likeliest_chain(&hmm, &[0], &[5, 0, 0, 0, 0, 0, 0]), Vec::<usize>::new());
        let m = vec![vec![0.5, 0.5], vec![0.2, 0.8]];
        let twins = HmmMixture::from_matrices(&[m.clone(), m.clone(), m], 8, 1, 0).unwrap();
        assert_eq!(likeliest_chain(&twins, &[0], &[1, 1, 0, 1, 0, 0, 1]), vec![0]);
        // Only the prompt's last token enters: a long prompt that favours chain 1 does not decide.
        assert_eq!(likeliest_chain(&hmm, &[1, 1, 1, 1, 1, 0], &[0, 0]), vec![0]);
    }

    /// Diagnostic on a trained countdown FT run (`FREET_PREFILL_RUN=dir cargo test --release --lib
    /// prefill_diagnostic -- --ignored --nocapture`; `FREET_PREFILL_M` candidates, default 64): pass@1
    /// and pass@8 of the report's 64 prompts × 8 samples with three sources of the prompt's codes:
    /// the encoder over the prompt (the paper's prefill, spec §4.2, what the report scores), the
    /// prior (uniform codes everywhere), and the model's own posterior given the prompt, by
    /// sampling-importance-resampling M encoder draws with weights `p(prompt | z)·P(z) / Q(z |
    /// prompt)`. The last samples the model's conditional `p(answer | prompt)` as M grows: a gap
    /// between it and the paper's prefill is the prefill's train/test gap, not the model.
    #[test]
    #[ignore]
    fn prefill_diagnostic_on_a_trained_countdown_run() {
        let Ok(dir) = std::env::var("FREET_PREFILL_RUN") else { return };
        let m: i64 = std::env::var("FREET_PREFILL_M").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
        let l = crate::train::checkpoint::load(std::path::Path::new(&dir), Device::Cpu).unwrap();
        let (model, run) = (l.model, l.state.unwrap().run);
        let Dataset::Task(task) = run.dataset().unwrap() else { panic!("not a task") };
        let Task::Countdown(cd) = &task else { panic!("not a countdown run") };
        let lat = model.latent().expect("a Free Transformer run");
        let seed = run.train.seed;
        let mut o = opts("countdown");
        (o.prompts, o.samples) = (64, 8);
        let paper = PromptSamples::draw(&model, &task, seed, &o).unwrap();
        let (p, b) = (paper.p_len as i64, paper.samples.len() as i64);
        let inputs = task.seq_len() as i64 - 1;
        let rows = paper.batch();
        let ids: Vec<u64> = (0..b as u64).collect();
        let key = |i: u64| Stream::CompareSampling.seed(seed, &[0xd1a6, i]);
        let score = |z: &Tensor| -> (f64, f64) {
            let g = generate_batch(&model, &rows, &paper.sopts, GenerationZ::Pinned(z)).unwrap();
            let d = PromptSamples { samples: completions(&g.tokens, paper.p_len).unwrap(), ..paper.clone() };
            let mut s = BTreeMap::new();
            countdown_metrics(cd, &d, &mut s);
            (s["pass_at_1"], s["pass_at_8"])
        };
        let mut s = BTreeMap::new();
        countdown_metrics(cd, &paper, &mut s);
        let prior = score(&lat.mapper.prior_codes(key(1), &ids, 0, inputs, Device::Cpu));
        // SIR: M encoder draws of the prompt's codes per sample, one kept with probability ∝ w.
        let flat: Vec<i64> = rows.iter().flat_map(|r| std::iter::repeat_n(r.clone(), m as usize)).flatten().collect();
        let x = Tensor::from_slice(&flat).view([b * m, p]);
        let f = tch::no_grad(|| model.forward(&x, ZSource::Posterior { key: key(2) }, Pass::Inference));
        let (codes, o_bits) = (f.codes.unwrap(), f.bit_logits.unwrap());
        let log_w = crate::eval::log_weights(
            &f.logits.narrow(1, 0, p - 1).contiguous(),
            &x.narrow(1, 1, p - 1).contiguous(),
            &o_bits,
            &lat.mapper.unpack(&codes),
        )
        .view([b, m]);
        let gumbel =
            -(-crate::util::rng::uniforms(key(3), &[b, m]).to_kind(Kind::Double).clamp(1e-12, 1.0).log()).log();
        let pick = (&log_w + gumbel).argmax(1, false).view([b, 1, 1]).expand([b, 1, p], false);
        let chosen = codes.view([b, m, p]).gather(1, &pick, false).squeeze_dim(1);
        let ess = f64::try_from(
            log_w
                .softmax(1, Kind::Double)
                .pow_tensor_scalar(2)
                .sum_dim_intlist(1, false, Kind::Double)
                .reciprocal()
                .mean(Kind::Double),
        )
        .unwrap();
        let rest = lat.mapper.prior_codes(key(4), &ids, p, inputs - p, Device::Cpu);
        let sir = score(&Tensor::cat(&[chosen, rest], 1));
        eprintln!(
            "{dir}: pass@1 / pass@8 over {} prompts × {} samples: encoder prefill (paper, the report) {:.3} / {:.3}; \
             prior codes everywhere {:.3} / {:.3}; SIR posterior given the prompt (M = {m}, mean ESS {ess:.1}) {:.3} / {:.3}",
            paper.prompts.len(),
            paper.k,
            s["pass_at_1"],
            s["pass_at_8"],
            prior.0,
            prior.1,
            sir.0,
            sir.1
        );
    }
}
