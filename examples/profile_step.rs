//! Times the phases of one Free Transformer training step (forward, loss, backward, optimizer).
//! `scripts/with-env cargo run --release --example profile_step -- configs/demo.toml [key=value ...]`
use freet::config::RunConfig;
use freet::eval::to_batch;
use freet::model::{FreeTransformer, Pass, ZSource};
use freet::train::optim::AdamW;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map(String::as_str).unwrap_or("configs/demo.toml");
    let run = RunConfig::load(std::path::Path::new(path), &args[1.min(args.len())..])?;
    let model = FreeTransformer::new(&run.model, tch::Device::Cpu, 0)?;
    let mut opt = AdamW::new(model.var_store(), &run.train);
    let data = run.dataset()?;
    for step in 0..4u64 {
        let rows = data.train_batch(step, 0, run.train.batch_size);
        let (x, y) = to_batch(&rows, tch::Device::Cpu);
        let t0 = Instant::now();
        let fwd = model.forward(&x, ZSource::Posterior { key: step }, Pass::Train);
        let t1 = Instant::now();
        let loss = model.loss(&fwd, &y);
        let _ = loss.ce.double_value(&[]);
        let t2 = Instant::now();
        model.backward(&fwd, &loss, 1.0);
        let t3 = Instant::now();
        let n = opt.grad_norm();
        opt.clip(n, 1.0);
        opt.step(1e-3);
        opt.zero_grad();
        let t4 = Instant::now();
        println!(
            "step {step}: forward {:.0} ms, loss {:.0} ms, backward {:.0} ms, optimizer {:.0} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            (t4 - t3).as_secs_f64() * 1e3
        );
    }
    Ok(())
}
