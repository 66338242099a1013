//! Runs the container shim; tests re-execute this instead of the `tatami` binary.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(runtime_oci::shim_main(&args));
}
