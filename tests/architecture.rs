//! The shape of the code, checked: `cargo test --release --test architecture`.
//!
//! - **Layers.** Top-level modules import only from lower layers (see `LAYERS`); `model` and
//!   `data` never import each other. Test modules (`#[cfg(test)]`) are exempt.
//! - **No import cycle** among the files of `src/` (a reference to a re-export of a `mod.rs` façade
//!   counts as a reference to the file that defines the item).
//! - **Short functions.** No function outside tests is longer than `MAX_FN_LINES`, unless the line
//!   above it (among its doc comments and attributes) says why with `// long: …`.
//!
//! The parsing is line-based and relies on `cargo fmt` layout; it reads `crate::a::b` paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, lowest layer first; modules on one line are peers and must not import
/// each other.
const LAYERS: &[&[&str]] = &[
    &["util"],
    &["report", "dist"],
    &["model", "data"],
    &["config"],
    &["eval", "generate"],
    &["train"],
    &["experiments", "bench", "import"],
];

/// The longest function body allowed without a `// long:` justification.
const MAX_FN_LINES: usize = 80;

/// One source file: its module path (`model::mapper`; `model` for `model/mod.rs`) and the lines
/// before its first `#[cfg(test)]`.
struct Source {
    module: String,
    path: PathBuf,
    lines: Vec<String>,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.starts_with(root.join("bin")) && p.file_name().is_some_and(|n| n != "lib.rs"))
        .map(|path| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            let lines = text.lines().take_while(|l| l.trim() != "#[cfg(test)]").map(str::to_string).collect();
            Source { module: parts.join("::"), path, lines }
        })
        .collect()
}

/// Every `crate::a::b::…` path in the lines (code only, comments skipped), as segment lists;
/// `use crate::a::{b, c::d}` yields `a::b` and `a::c::d`.
fn crate_paths(lines: &[String]) -> Vec<Vec<String>> {
    let code: String = lines.iter().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut prefix = Vec::new();
        let mut s = rest;
        loop {
            let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
            if end == 0 {
                break;
            }
            prefix.push(s[..end].to_string());
            s = &s[end..];
            if let Some(t) = s.strip_prefix("::") {
                if let Some(group) = t.strip_prefix('{') {
                    let close = group.find('}').unwrap_or(group.len());
                    for item in group[..close].split(',') {
                        let item: Vec<String> =
                            item.trim().split("::").map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
                        if !item.is_empty() && item[0] != "self" {
                            out.push(prefix.iter().cloned().chain(item).collect());
                        } else if !item.is_empty() {
                            out.push(prefix.clone());
                        }
                    }
                    prefix.clear();
                    break;
                }
                s = t;
            } else {
                break;
            }
        }
        if !prefix.is_empty() {
            out.push(prefix);
        }
    }
    out
}

/// The module a path names: the longest prefix that is a module, followed through the `pub use`
/// re-exports of a `mod.rs` façade to the child that defines the item.
fn resolve(path: &[String], modules: &BTreeMap<String, &Source>) -> Option<String> {
    let mut best = None;
    for k in 1..=path.len() {
        let m = path[..k].join("::");
        if modules.contains_key(&m) {
            best = Some((m, k));
        }
    }
    let (module, k) = best?;
    let Some(item) = path.get(k) else { return Some(module) };
    let facade = modules[&module];
    for l in &facade.lines {
        let l = l.trim();
        let Some(target) = l.strip_prefix("pub use ") else { continue };
        let target = target.trim_end_matches(';');
        let (child, names) = target.split_once("::").unwrap_or((target, ""));
        let child_mod = format!("{module}::{child}");
        let Some(child_src) = modules.get(&child_mod) else { continue };
        let names = names.trim_start_matches('{').trim_end_matches('}');
        let listed = names.split(',').any(|n| n.trim() == item);
        let glob = names == "*" && defines(child_src, item);
        if listed || glob {
            return Some(child_mod);
        }
    }
    Some(module)
}

/// Whether a file defines a public item called `name`.
fn defines(src: &Source, name: &str) -> bool {
    src.lines.iter().any(|l| {
        let l = l.trim_start();
        ["pub fn ", "pub struct ", "pub enum ", "pub const ", "pub type ", "pub trait ", "pub static "].iter().any(
            |kw| {
                l.strip_prefix(kw).is_some_and(|r| {
                    r.starts_with(name) && !r[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            },
        )
    })
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// The file-level import graph, without the structural edges of a façade to its own children.
fn graph(srcs: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<String, &Source> = srcs.iter().map(|s| (s.module.clone(), s)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in srcs {
        let edges = g.entry(s.module.clone()).or_default();
        for p in crate_paths(&s.lines) {
            if let Some(t) = resolve(&p, &modules)
                && t != s.module
                && !t.starts_with(&format!("{}::", s.module))
            {
                edges.insert(t);
            }
        }
    }
    g
}

#[test]
fn every_top_level_module_has_a_layer() {
    for s in sources() {
        assert!(layer(top(&s.module)).is_some(), "{} ({}) is in no layer of LAYERS", s.module, s.path.display());
    }
}

#[test]
fn modules_import_only_from_lower_layers() {
    let srcs = sources();
    let mut bad = Vec::new();
    for (from, tos) in graph(&srcs) {
        for to in tos {
            let (a, b) = (top(&from), top(&to));
            if a != b && layer(b) >= layer(a) {
                bad.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(bad.is_empty(), "imports against the layer order (see LAYERS): {bad:#?}");
}

#[test]
fn there_is_no_import_cycle() {
    let g = graph(&sources());
    // Depth-first search with colours; report the first cycle found as a path.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, &g, &mut state, &mut Vec::new())
        {
            panic!("import cycle: {}", c.join(" → "));
        }
    }
}

#[test]
fn functions_are_short_or_say_why_not() {
    let mut long = Vec::new();
    for s in sources() {
        for (i, line) in s.lines.iter().enumerate() {
            let t = line.trim_start();
            let is_fn =
                ["fn ", "pub fn ", "pub(crate) fn ", "const fn ", "pub const fn ", "async fn ", "pub async fn "]
                    .iter()
                    .any(|kw| t.starts_with(kw));
            if !is_fn || t.ends_with(';') {
                continue;
            }
            let indent = line.len() - t.len();
            let close = format!("{}}}", " ".repeat(indent));
            let Some(end) = s.lines[i..].iter().position(|l| *l == close) else { continue };
            let n = end + 1;
            let justified = s.lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("//") || l.trim_start().starts_with("#["))
                .any(|l| l.trim_start().starts_with("// long:"));
            if n > MAX_FN_LINES && !justified {
                long.push(format!("{}:{} {} lines: {}", s.path.display(), i + 1, n, t));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines without a `// long:` reason: {long:#?}");
}

#[test]
fn the_path_parser_reads_groups_and_nesting() {
    let lines = vec![
        "use crate::model::{FreeTransformer, config::ModelConfig};".to_string(),
        "let x = crate::util::rng::stream_seed(1, &[]); // crate::ignored::here".to_string(),
        "use crate::data::tasks::{self, Task};".to_string(),
    ];
    let got: Vec<String> = crate_paths(&lines).into_iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "model::FreeTransformer",
            "model::config::ModelConfig",
            "util::rng::stream_seed",
            "data::tasks",
            "data::tasks::Task"
        ]
    );
}
