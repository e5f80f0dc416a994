//! What does Z carry on the synthetic task, and what does the decoder take from it?
//!
//! `scripts/with-env cargo run --release --example latent_info -- CHECKPOINT [N_SEQUENCES] [PRIOR_DRAWS]`
//!
//! For N held-out sequences (default 512) whose hidden target start is known, it reports:
//! - **decoder side**: held-out CE per class of target token (the separator, a noise `!`, the first
//!   position of the target, the rest of the target, blanks), with posterior Z (a diagnostic: Z has
//!   seen the future) and with prior Z (averaged over PRIOR_DRAWS draws, default 4). The posterior −
//!   prior gap of a class, times its frequency, is how much of the posterior gain that class holds.
//! - **encoder side**: per bit, the KL to the uniform prior (bits/token) and the mutual information
//!   (bits/token) between the sampled bit and (a) "the next token is `!`", (b) "the next token
//!   starts the target", (c) the distance from the next token to the target start (bucketed), and
//!   (d) the absolute position t alone (information the decoder has anyway). The posterior bits are
//!   independent given the sequence, so each bit's MI is `H_b(p̄) − Σ_y P(y) H_b(p̄_y)`. It is
//!   per bit and marginal over the context: a code that names a label with different bit values in
//!   different contexts, or only through a combination of bits, can carry information that these
//!   columns show as 0 (probes §17: after a κ = 8 copy stage, MI(!) ≈ 0 while the decoder's `!` CE
//!   gap is 2 nats). The decoder-side CE gap by class is the direct measure of what Z delivers.
//! - **attention**: per head, the mean attention weight at each offset s − t in −3..=+3, for the
//!   encoder (which must look at t + 1 to name the next token's noise) and for the injection block
//!   of the decoder (which must look at its own position, offset 0, to read Z_t itself).
use anyhow::{Context, Result, bail};
use freet::data::Split;
use freet::data::synthetic::{SYNTH_PROMPT_LEN, SYNTH_TARGET_LEN, SyntheticTask};
use freet::eval::to_batch;
use freet::model::config::Injection;
use freet::model::layers::AttnMask;
use freet::model::loss::token_nll;
use freet::model::{FreeTransformer, Pass, ZSource};
use tch::{Device, Kind, Tensor};

/// Binary entropy in bits.
fn hb(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
}

/// Mutual information (bits) between a Bernoulli(p_i) bit and the label y_i, over tokens i.
fn mutual_info(p: &[f64], y: &[usize], classes: usize) -> f64 {
    let mut sum = vec![0.0; classes];
    let mut n = vec![0usize; classes];
    for (&pi, &yi) in p.iter().zip(y) {
        sum[yi] += pi;
        n[yi] += 1;
    }
    let total = p.len() as f64;
    let mean = sum.iter().sum::<f64>() / total;
    let cond: f64 = (0..classes).filter(|&c| n[c] > 0).map(|c| n[c] as f64 / total * hb(sum[c] / n[c] as f64)).sum();
    hb(mean) - cond
}

/// Class of the target token at body index `j` (`None`: the separator) given the start.
fn class(target: u32, j: Option<usize>, start: usize) -> usize {
    const NOISE: u32 = 27;
    match j {
        None => 0,
        Some(_) if target == NOISE => 1,
        Some(j) if j == start => 2,
        Some(j) if (start..start + SYNTH_TARGET_LEN).contains(&j) => 3,
        Some(_) => 4,
    }
}

/// Bucket of the signed distance from body index `j` to the start: before (far, 2–8, 1), at the
/// start, inside, after.
fn distance_bucket(j: Option<usize>, start: usize) -> usize {
    let Some(j) = j else { return 0 };
    let d = start as i64 - j as i64;
    match d {
        d if d > 8 => 1,
        2..=8 => 2,
        1 => 3,
        0 => 4,
        d if d > -(SYNTH_TARGET_LEN as i64) => 5,
        _ => 6,
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else { bail!("usage: latent_info CHECKPOINT [N_SEQUENCES] [PRIOR_DRAWS]") };
    let n: usize = args.get(1).map_or(Ok(512), |s| s.parse()).context("N_SEQUENCES")?;
    let draws: u64 = args.get(2).map_or(Ok(4), |s| s.parse()).context("PRIOR_DRAWS")?;
    let loaded = freet::train::checkpoint::load(std::path::Path::new(path), Device::Cpu)?;
    let model = &loaded.model;
    let Some(bits) = model.config().latent.enabled.then_some(model.config().latent.bits) else {
        bail!("{path}: not a Free Transformer (no latent)")
    };
    let task = SyntheticTask::new(0x1a7e);
    let drawn: Vec<(Vec<u32>, usize)> = (0..n as u64).map(|i| task.sequence_with_start(Split::Val, i)).collect();
    let rows: Vec<Vec<u32>> = drawn.iter().map(|(r, _)| r.clone()).collect();
    let (x, y) = to_batch(&rows, Device::Cpu);
    let (b, t) = y.size2()?;
    let _guard = tch::no_grad_guard();
    let post = model.forward(&x, ZSource::Posterior { key: 7 }, Pass::Inference);
    let ce_post = Vec::<f64>::try_from(token_nll(&post.logits, &y).to_kind(Kind::Double).view([-1]))?;
    let mut ce_prior = vec![0.0; ce_post.len()];
    let ids: Vec<u64> = (0..b as u64).collect();
    for d in 0..draws {
        let f = model.forward(&x, ZSource::Prior { seed: 1000 + d, seq_ids: &ids }, Pass::Inference);
        let c = Vec::<f64>::try_from(token_nll(&f.logits, &y).to_kind(Kind::Double).view([-1]))?;
        ce_prior.iter_mut().zip(c).for_each(|(a, c)| *a += c / draws as f64);
    }
    let o = post.bit_logits.context("the encoder did not run")?;
    let p = Vec::<f64>::try_from(o.sigmoid().to_kind(Kind::Double).view([-1]))?;
    let targets = Vec::<i64>::try_from(y.view([-1]))?;

    // Labels per token (b, t): the target token is sequence position t + 1.
    let h = bits;
    let (mut cls, mut noise, mut starts, mut dist, mut pos) = (vec![], vec![], vec![], vec![], vec![]);
    for (bi, (_, start)) in drawn.iter().enumerate().take(b as usize) {
        for ti in 0..t as usize {
            let j = (ti + 1).checked_sub(SYNTH_PROMPT_LEN);
            let target = targets[bi * t as usize + ti] as u32;
            let c = class(target, j, *start);
            cls.push(c);
            noise.push(usize::from(c == 1));
            starts.push(usize::from(j == Some(*start)));
            dist.push(distance_bucket(j, *start));
            pos.push(ti);
        }
    }
    let names = ["separator '>'", "noise '!'", "target start", "target (rest)", "blank '_'"];
    println!("{path}: {n} held-out sequences × {t} tokens, H = {h}, prior CE over {draws} draws");
    println!("\ndecoder: CE (nats/token) by class of the target token");
    println!("{:<16} {:>7} {:>10} {:>9} {:>9} {:>12}", "class", "share", "posterior", "prior", "gap", "share × gap");
    let (mut tp, mut tq) = (0.0, 0.0);
    for (c, name) in names.iter().enumerate() {
        let idx: Vec<usize> = (0..cls.len()).filter(|&i| cls[i] == c).collect();
        if idx.is_empty() {
            continue;
        }
        let share = idx.len() as f64 / cls.len() as f64;
        let mp = idx.iter().map(|&i| ce_post[i]).sum::<f64>() / idx.len() as f64;
        let mq = idx.iter().map(|&i| ce_prior[i]).sum::<f64>() / idx.len() as f64;
        tp += share * mp;
        tq += share * mq;
        println!("{name:<16} {share:>7.4} {mp:>10.4} {mq:>9.4} {:>9.4} {:>12.4}", mq - mp, share * (mq - mp));
    }
    println!("{:<16} {:>7} {tp:>10.4} {tq:>9.4} {:>9.4}", "all", "1", tq - tp);

    println!("\nencoder: per bit, KL to the prior and MI with the hidden structure (bits/token)");
    println!("{:>4} {:>8} {:>9} {:>9} {:>10} {:>9}", "bit", "KL", "MI(!)", "MI(start)", "MI(dist)", "MI(t)");
    let mut tot = [0.0; 5];
    for bit in 0..h {
        let pb: Vec<f64> = (0..cls.len()).map(|i| p[i * h + bit]).collect();
        let kl = pb.iter().map(|&q| 1.0 - hb(q)).sum::<f64>() / pb.len() as f64;
        let row = [
            kl,
            mutual_info(&pb, &noise, 2),
            mutual_info(&pb, &starts, 2),
            mutual_info(&pb, &dist, 7),
            mutual_info(&pb, &pos, t as usize),
        ];
        row.iter().zip(tot.iter_mut()).for_each(|(v, s)| *s += v);
        println!("{bit:>4} {:>8.4} {:>9.4} {:>9.4} {:>10.4} {:>9.4}", row[0], row[1], row[2], row[3], row[4]);
    }
    println!("{:>4} {:>8.4} {:>9.4} {:>9.4} {:>10.4} {:>9.4}", "sum", tot[0], tot[1], tot[2], tot[3], tot[4]);
    let (enc_next, dec_self) = attention_offsets(model, &x, post.codes.as_ref().context("no codes")?)?;
    println!(
        "\nreference: H_b(1/16) = {:.4} bit is what a token's Z would need to name the next noise; the start\n\
         holds log2(57) = {:.2} bits per sequence. The MI columns are per bit and marginal over the context:\n\
         a context-dependent or multi-bit code can show 0 here; the decoder's CE gap by class is the direct measure.",
        hb(1.0 / 16.0),
        57f64.log2()
    );
    println!(
        "\nsummary: KL {:.3} | MI ! {:.4} start {:.4} dist {:.3} t {:.3} | CE post {tp:.4} prior {tq:.4} | \
         max encoder weight at +1 {enc_next:.3} (uniform {:.3}), max decoder-m weight at 0 {dec_self:.3} (uniform causal {:.3})",
        tot[0],
        tot[1],
        tot[2],
        tot[3],
        tot[4],
        1.0 / t as f64,
        (1..=t).map(|k| 1.0 / k as f64).sum::<f64>() / t as f64
    );
    Ok(())
}

/// Prints, per head, the mean attention weight at offsets −3..=+3 of the encoder and of the
/// decoder's injection block (with the posterior codes in its keys/values); returns the largest
/// head's mean weight at offset +1 in the encoder and at offset 0 in the decoder.
fn attention_offsets(model: &FreeTransformer, x: &Tensor, codes: &Tensor) -> Result<(f64, f64)> {
    let lat = model.latent().context("no latent")?;
    let x_m = model.trunk(x);
    let (b, t, d) = x_m.size3()?;
    let enc = &lat.encoder.block;
    let zeta = lat.encoder.zeta.view([1, 1, d]).expand([b, t, d], false);
    let w_enc = enc.attn.weights(
        &enc.attn_norm.forward(&zeta),
        &enc.attn_norm.forward(&x_m),
        AttnMask::Bidirectional,
        model.rope(),
        lat.encoder.rel_bias.as_ref(),
    );
    let m = model.config().inject_after();
    let blk = &model.blocks()[m];
    let r = lat.post_sampler.index_select(0, &codes.view([-1])).view([b, t, d]).to_kind(x_m.kind());
    let nq = blk.attn_norm.forward(&x_m);
    let nkv = match model.config().latent.injection {
        Injection::PreNorm => blk.attn_norm.forward(&(&x_m + &r)),
        Injection::PostNorm => &nq + &r,
    };
    let w_dec = blk.attn.weights(&nq, &nkv, AttnMask::Causal, model.rope(), lat.inject_rel_bias.as_ref());
    let mut peaks = [0.0f64; 2];
    for (k, (name, w)) in [("encoder", w_enc), ("decoder block m (reads Z)", w_dec)].into_iter().enumerate() {
        println!("\nattention of the {name}: mean weight at offset s − t");
        println!("{:>5} {}", "head", (-3..=3).map(|o| format!("{o:>+7}")).collect::<String>());
        let heads = w.size()[1];
        for hd in 0..heads {
            let wh = w.select(1, hd).mean_dim(0, false, Kind::Float); // [T, T]
            let mut row = String::new();
            for off in -3i64..=3 {
                let (mut s, mut n) = (0.0, 0);
                for ti in 0..t {
                    let si = ti + off;
                    if (0..t).contains(&si) {
                        s += wh.double_value(&[ti, si]);
                        n += 1;
                    }
                }
                let mean = s / n as f64;
                if off == [1, 0][k] {
                    peaks[k] = peaks[k].max(mean);
                }
                row += &format!("{mean:>7.3}");
            }
            println!("{hd:>5} {row}");
        }
    }
    Ok((peaks[0], peaks[1]))
}
