//! Link libtorch so that CUDA stays loadable, give the binary an rpath to the libtorch it was
//! built against (the project venv's), and compile the c10d shim (`csrc/`), freet's binding to
//! PyTorch's collective engine, against that libtorch's headers with torch-sys's flags. On another
//! machine, `LD_LIBRARY_PATH` pointing at that machine's `torch/lib` (same torch 2.11.0) takes
//! precedence over nothing: rpath entries that do not exist are skipped by the loader.
use std::path::{Path, PathBuf};

fn main() {
    // torch-sys exports its libtorch lib dir through `links = "tch"`.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok().map(PathBuf::from);
    if let Some(lib) = &lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    // Without --no-as-needed the linker drops libtorch (and with it libtorch_cuda) because no
    // symbol is referenced directly, and CUDA silently disappears at run time.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rerun-if-changed=build.rs");
    let lib = lib.expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB (its `links = \"tch\"` metadata)");
    compile_shim(&lib);
}

/// Compiles `csrc/*.cpp` into the static library `freet_c10d`: the Gloo half always, the NCCL half
/// when the CUDA runtime and NCCL headers are found (the venv's `nvidia/*` packages or
/// `CUDA_HOME`) and libtorch has `libtorch_cuda`; `FREET_NO_NCCL=1` leaves NCCL out.
fn compile_shim(lib: &Path) {
    for f in ["csrc/c10d_shim.cpp", "csrc/c10d_nccl.cpp", "csrc/c10d_shim.h", "csrc/gloo-decl"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=FREET_NO_NCCL");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let torch = lib.parent().expect("libtorch lib dir has a parent");
    let include = torch.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include("csrc")
        .include("csrc/gloo-decl")
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/c10d_shim.cpp")
        .file("csrc/c10d_nccl.cpp");
    let nccl = std::env::var("FREET_NO_NCCL").map_or(true, |v| v.is_empty() || v == "0")
        && lib.join("libtorch_cuda.so").exists();
    let cuda_dirs = if nccl { cuda_include_dirs(torch) } else { None };
    if let Some(dirs) = &cuda_dirs {
        build.define("FREET_WITH_NCCL", "1").includes(dirs);
    }
    build.compile("freet_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if cuda_dirs.is_some() {
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=freet_nccl=\"{}\"", if cuda_dirs.is_some() { "yes" } else { "no" });
    println!("cargo::rustc-check-cfg=cfg(freet_nccl, values(\"yes\", \"no\"))");
}

/// Include directories for the CUDA runtime and NCCL headers: the venv's `nvidia/*/include` (PyPI
/// CUDA wheels), the host headers those wheels leave out (`.cuda-headers/nvidia/*/include`, fetched
/// by `scripts/cuda-headers.sh`), and `CUDA_HOME/include`. None when `cuda_runtime_api.h`,
/// `crt/host_config.h`, `nv/target` or `nccl.h` is missing.
fn cuda_include_dirs(torch: &Path) -> Option<Vec<PathBuf>> {
    let nvidia_includes = |root: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("nvidia"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("include"))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        found
    };
    let mut dirs: Vec<PathBuf> = torch.parent().map(nvidia_includes).unwrap_or_default();
    if Path::new(".cuda-headers").is_dir() {
        println!("cargo:rerun-if-changed=.cuda-headers");
    }
    dirs.extend(nvidia_includes(Path::new(".cuda-headers")).into_iter().filter_map(|d| d.canonicalize().ok()));
    if let Ok(home) = std::env::var("CUDA_HOME") {
        dirs.push(Path::new(&home).join("include"));
    }
    let has = |h: &str| dirs.iter().any(|d| d.join(h).exists());
    ["cuda_runtime_api.h", "crt/host_config.h", "nv/target", "nccl.h"].iter().all(|h| has(h)).then_some(dirs)
}

/// The libstdc++ ABI libtorch was built with: `LIBTORCH_CXX11_ABI` (torch-sys's variable), else
/// the venv's torch, else 1 (every PyPI torch since 2.7).
fn cxx11_abi() -> String {
    if let Ok(v) = std::env::var("LIBTORCH_CXX11_ABI") {
        return v;
    }
    let python = std::env::var("VIRTUAL_ENV").map_or("python3".into(), |v| format!("{v}/bin/python"));
    std::process::Command::new(python)
        .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s == "0" || s == "1")
        .unwrap_or_else(|| "1".into())
}
