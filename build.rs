//! Link libtorch so that CUDA stays loadable, and give the binary an rpath to the libtorch it was
//! built against (the project venv's). On another machine, `LD_LIBRARY_PATH` pointing at that
//! machine's `torch/lib` (same torch 2.11.0) takes precedence over nothing: rpath entries that do
//! not exist are skipped by the loader.
fn main() {
    // torch-sys exports its libtorch lib dir through `links = "tch"`.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    // Without --no-as-needed the linker drops libtorch (and with it libtorch_cuda) because no
    // symbol is referenced directly, and CUDA silently disappears at run time.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rerun-if-changed=build.rs");
}
