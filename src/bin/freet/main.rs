//! The `freet` command line: `train` (a model from a TOML config, or resume a run), `sample` (from a
//! checkpoint), `eval` (held-out bounds), `demo` (a small Free Transformer on the synthetic task),
//! `experiment figure4` (§4.1 / Figure 4), `compare` (does the latent help?), `bench` (`run`, `report`:
//! speed benchmarks and `BENCHMARKS.md`), `tokenizer train` (byte-level BPE), `import` (a pretrained Llama)
//! and `convert` (a baseline into a Free Transformer). One file per command.

mod bench;
mod compare;
mod demo;
mod eval;
mod experiment;
mod import;
mod sample;
mod tokenizer;
mod train;

use anyhow::{Result, bail};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tch::Device;

#[derive(Parser)]
#[command(name = "freet", version, about = "The Free Transformer (Fleuret 2025) in Rust: train, sample, evaluate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model from a TOML config (or resume a run).
    Train(train::TrainArgs),
    /// Sample continuations of a prompt from a checkpoint.
    Sample(sample::SampleArgs),
    /// Held-out evaluation with honest bounds (prior-Z CE, ELBO) for a Free Transformer.
    Eval(eval::EvalArgs),
    /// Train a small Free Transformer on the synthetic task (≤ 10 min on 2 CPU cores) and show
    /// samples with fresh Z (blue group) and shared Z (green groups).
    Demo(demo::DemoArgs),
    /// Reproduce the paper's experiments.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCmd),
    /// Does the latent help? Baseline, matched baseline (+1 block) and Free Transformers at several
    /// κ over several seeds, evaluated with honest bounds and exact task scores.
    Compare(compare::CompareArgs),
    /// Speed benchmarks (bench/run.sh runs them all next to the PyTorch reference).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Byte-level BPE tokenizers for text data.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCmd),
    /// Import a pretrained Llama (Hugging Face directory or GGUF file) as a baseline checkpoint.
    Import(import::ImportArgs),
    /// Turn a baseline checkpoint into a Free Transformer (encoder, ζ, readout, E) for fine-tuning.
    Convert(import::ConvertArgs),
}

/// Where to run (`--device`). No doc comments on the variants: clap would print them as per-value
/// help and switch `--help` to its long layout; the flag's help says what each value means.
#[derive(Clone, Copy, ValueEnum)]
enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// The `--device` flag every command that runs a model takes.
#[derive(Args)]
struct DeviceArg {
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto, hide_possible_values = true)]
    device: DeviceChoice,
}

impl DeviceArg {
    /// The libtorch device, or an error when CUDA is asked for and absent.
    fn get(&self) -> Result<Device> {
        match self.device {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => bail!("--device cuda: no CUDA device is available to libtorch"),
        }
    }
}

/// A flag raised by the first SIGINT/SIGTERM, so that runs stop cleanly at their next step.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled terminates at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// The invoking command line as `freet ARGS…`, named in the reports of experiments.
fn invoked_command() -> String {
    std::iter::once("freet".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")
}

/// Parses the command line. A value outside a flag's closed set of choices (`--device tpu`) is a
/// user error like any other bad value: one line, exit status 1. Other usage errors, `--help` and
/// `--version` are clap's own.
fn parse_cli() -> Result<Cli> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if is_unknown_choice(&e) => {
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect();
            bail!("{}", lines.join(" ").trim_start_matches("error: "))
        }
        Err(e) => e.exit(),
    }
}

/// Whether clap rejected a given value that is not one of the flag's possible values (rather than,
/// say, a missing value).
fn is_unknown_choice(e: &clap::Error) -> bool {
    let given = matches!(e.get(ContextKind::InvalidValue), Some(ContextValue::String(v)) if !v.is_empty());
    let closed = matches!(e.get(ContextKind::ValidValue), Some(ContextValue::Strings(v)) if !v.is_empty());
    e.kind() == ErrorKind::InvalidValue && given && closed
}

fn run() -> Result<()> {
    match parse_cli()?.cmd {
        Cmd::Train(a) => train::cmd_train(a),
        Cmd::Sample(a) => sample::cmd_sample(a),
        Cmd::Eval(a) => eval::cmd_eval(a),
        Cmd::Demo(a) => demo::cmd_demo(a),
        Cmd::Experiment(experiment::ExperimentCmd::Figure4(a)) => experiment::cmd_figure4(a),
        Cmd::Compare(a) => compare::cmd_compare(a),
        Cmd::Bench(bench::BenchCmd::Run(a)) => bench::cmd_bench_run(a),
        Cmd::Bench(bench::BenchCmd::Report(a)) => bench::cmd_bench_report(a),
        Cmd::Tokenizer(tokenizer::TokenizerCmd::Train(a)) => tokenizer::cmd_tokenizer_train(a),
        Cmd::Import(a) => import::cmd_import(a),
        Cmd::Convert(a) => import::cmd_convert(a),
    }
}

fn main() -> ExitCode {
    // libtorch errors surface as panics inside tch; inputs are validated first, and anything left
    // is reported as one line rather than a backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            // libtorch messages carry a C++ backtrace after the first line (escaped or not).
            let first = msg.split("\\n").next().unwrap_or(msg).lines().next().unwrap_or(msg);
            eprintln!("error: internal failure: {first}");
            ExitCode::from(2)
        }
    }
}
