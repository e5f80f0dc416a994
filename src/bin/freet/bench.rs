//! `freet bench`: measure one configuration (`run`) or render `BENCHMARKS.md` from the records
//! (`report`).

use crate::DeviceArg;
use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use freet::bench::{BenchOptions, Mode, Variant};
use freet::model::config::Precision;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum BenchCmd {
    /// Measure one configuration: training step split (forward/backward/optimizer), peak RSS, or
    /// KV-cache generation speed; prints one JSON record and appends it to --json.
    Run(BenchRunArgs),
    /// Render BENCHMARKS.md from the JSON records of a run (freet and bench/reference.py).
    Report(BenchReportArgs),
}

#[derive(Args)]
pub(crate) struct BenchRunArgs {
    /// Size name from the sizes file (s1, s2, s3).
    #[arg(long, default_value = "s1")]
    size: String,
    /// baseline, ft (fused Eq. 8 backward) or ft-dense (dense one-hot formulation).
    #[arg(long, value_enum, default_value_t = VariantArg::Baseline)]
    variant: VariantArg,
    /// fp32 or bf16 (bf16 products, fp32 master weights, fp32 mapper).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    precision: PrecisionArg,
    /// train or generate.
    #[arg(long, value_enum, default_value_t = ModeArg::Train)]
    mode: ModeArg,
    /// Measured steps (default: the sizes file's).
    #[arg(long)]
    steps: Option<usize>,
    /// Warm-up steps (default: the sizes file's).
    #[arg(long)]
    warmup: Option<usize>,
    /// Batch size (training default: the size's; generation default: 1).
    #[arg(long)]
    batch: Option<usize>,
    /// Tokens to decode (generation).
    #[arg(long)]
    new_tokens: Option<usize>,
    /// H for the Free Transformer variants (default: the sizes file's).
    #[arg(long)]
    bits: Option<usize>,
    /// How the ft variant's AdamW updates E: dense or lazy (default: the sizes file's
    /// train.ft_table_optimizer).
    #[arg(long, value_parser = ["dense", "lazy"])]
    table_optimizer: Option<String>,
    /// A sizes file (default: the bench/sizes.json compiled in).
    #[arg(long)]
    sizes: Option<PathBuf>,
    /// Append the JSON record to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
pub(crate) struct BenchReportArgs {
    /// JSON-lines records (freet and PyTorch).
    #[arg(long, default_value = "bench/results.jsonl")]
    json: PathBuf,
    /// Hand-written analysis appended to the report.
    #[arg(long)]
    notes: Option<PathBuf>,
    /// The command that produced the records (named in the report).
    #[arg(long, default_value = "bash bench/run.sh")]
    command: String,
    /// Minutes the run took (named in the report).
    #[arg(long)]
    minutes: Option<f64>,
    /// Output Markdown file.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// A sizes file (default: the bench/sizes.json compiled in).
    #[arg(long)]
    sizes: Option<PathBuf>,
    /// Training runs for the bf16-vs-fp32 loss-curve section, as LABEL=RUN_DIR (repeatable).
    #[arg(long = "curve", value_name = "LABEL=RUN_DIR")]
    curves: Vec<String>,
}

// The value enums below map one-to-one onto library types. Their variants carry no doc comments:
// clap would print them as per-value help and switch `--help` to its long layout; the flags' own
// help says what each value means.

/// `--variant` of `bench run` ([`Variant`]).
#[derive(Clone, Copy, ValueEnum)]
enum VariantArg {
    Baseline,
    Ft,
    FtDense,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Baseline => Variant::Baseline,
            VariantArg::Ft => Variant::Ft,
            VariantArg::FtDense => Variant::FtDense,
        }
    }
}

/// `--precision` of `bench run` ([`Precision`]).
#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Fp32,
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

/// `--mode` of `bench run` ([`Mode`]).
#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Train,
    Generate,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Train => Mode::Train,
            ModeArg::Generate => Mode::Generate,
        }
    }
}

/// The sizes file at `path`, or the one compiled in.
fn sizes_file(path: &Option<PathBuf>) -> Result<freet::bench::SizesFile> {
    match path {
        None => freet::bench::SizesFile::parse(freet::bench::DEFAULT_SIZES),
        Some(p) => freet::bench::SizesFile::parse(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| p.display().to_string()),
    }
}

/// `freet bench run`: prints the record of one configuration and appends it to `--json`.
pub(crate) fn cmd_bench_run(a: BenchRunArgs) -> Result<()> {
    let sizes = sizes_file(&a.sizes)?;
    let o = BenchOptions {
        size: a.size,
        variant: a.variant.into(),
        precision: a.precision.into(),
        mode: a.mode.into(),
        steps: a.steps,
        warmup: a.warmup,
        batch: a.batch,
        new_tokens: a.new_tokens,
        bits: a.bits,
        table_optimizer: a.table_optimizer.as_deref().map(|t| match t {
            "lazy" => freet::config::TableOptimizer::Lazy,
            _ => freet::config::TableOptimizer::Dense,
        }),
        device: a.device.get()?,
    };
    let rec = freet::bench::run(&sizes, &o)?;
    let line = serde_json::to_string(&rec)?;
    println!("{line}");
    if let Some(p) = a.json {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("cannot open {}", p.display()))?;
        writeln!(f, "{line}").with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// The JSON-lines records of `path` (blank lines skipped).
fn read_records(path: &Path) -> Result<Vec<freet::bench::Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut recs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: freet::bench::Record = serde_json::from_str(line).map_err(|e| {
            anyhow!("{} line {}: {}", path.display(), i + 1, freet::util::error::one_line(&e.to_string()))
        })?;
        recs.push(r);
    }
    Ok(recs)
}

/// `freet bench report`: renders the report, the loss-curve section and the notes into `--out`.
pub(crate) fn cmd_bench_report(a: BenchReportArgs) -> Result<()> {
    let sizes = sizes_file(&a.sizes)?;
    let recs = read_records(&a.json)?;
    let notes = match &a.notes {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => String::new(),
    };
    let header = format!(
        "Produced by `{}`{} on {} ({}; PyTorch reference: torch {}).",
        a.command,
        a.minutes.map(|m| format!(" ({m:.0} minutes)")).unwrap_or_default(),
        freet::report::stamp::today(),
        freet::report::stamp::machine(),
        recs.iter().find(|r| r.implementation == "pytorch").map_or("–", |r| r.version.as_str()),
    );
    let mut md = freet::bench::report(&recs, &sizes, &header, "");
    if !a.curves.is_empty() {
        let mut curves = vec![];
        for c in &a.curves {
            let (label, dir) = c.split_once('=').ok_or_else(|| anyhow!("--curve {c:?}: expected LABEL=RUN_DIR"))?;
            curves.push(freet::bench::read_curve(label, Path::new(dir))?);
        }
        let svg = a.out.with_file_name("bench").join("precision-curves.svg");
        md += "\n";
        md += &freet::bench::curves_section(&curves, &svg, "bench/precision-curves.svg")?;
    }
    if !notes.trim().is_empty() {
        md += "\n";
        md += notes.trim_end();
        md += "\n";
    }
    freet::util::fs::write_atomic(&a.out, md.as_bytes())?;
    println!("wrote {} ({} records)", a.out.display(), recs.len());
    Ok(())
}
