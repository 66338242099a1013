//! The per-container shim (our conmon), as a library so the workspace's tests and lints
//! cover it; `main.rs` is the program, built into the tatami binary by runtime-oci's build
//! script. Nothing here allocates or uses a C library.
#![cfg_attr(not(test), no_std)]

mod log;
mod monitor;
mod pause;
mod sys;
mod text;

pub use monitor::main;
pub use pause::main as pause;
