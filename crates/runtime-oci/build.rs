//! Builds the container shim (`crates/shim/src/main.rs`) into `$OUT_DIR/tatami-shim`, for
//! `shim.rs` to embed. It is compiled here with rustc rather than as a Cargo target because it
//! needs flags a workspace member cannot have on its own: `panic = "abort"` (it has no std to
//! unwind with) and a static link without a C library.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = manifest.join("../shim/src");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("tatami-shim");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition=2024",
            "--crate-type=bin",
            "--crate-name=tatami_shim",
        ])
        .args(["--target", &target])
        .args(["-C", "panic=abort", "-C", "opt-level=s", "-C", "lto=fat"])
        .args([
            "-C",
            "codegen-units=1",
            "-C",
            "strip=symbols",
            "-C",
            "debuginfo=0",
        ])
        // Not position-independent: nothing would relocate it, as there is no loader.
        .args(["-C", "relocation-model=static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static"])
        .arg(src.join("main.rs"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run rustc for the shim");
    assert!(status.success(), "building the shim failed");
}
