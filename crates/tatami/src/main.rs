//! `tatami`: a Kubernetes-compatible cluster in one binary.
//!
//! Layout: [`cli`] holds the command-line arguments only; each subcommand lives in its own
//! module ([`up`], [`down`], [`kubeconfig`], [`ssh`], [`image`]); [`datadir`] knows the data directory's files.
//! `up` wires the store, the API server and the controllers together.

mod cli;
mod datadir;
mod down;
mod image;
mod kubeconfig;
mod node;
mod ssh;
mod up;
mod volumes;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TATAMI_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match args.command {
        cli::Command::Up(a) => up::run(a),
        cli::Command::Down(a) => down::run(a),
        cli::Command::Reset(a) => down::reset(a),
        cli::Command::Kubeconfig(a) => kubeconfig::print_path(a),
        cli::Command::Ssh(a) => ssh::run(a),
        cli::Command::Image(a) => image::run(a),
        cli::Command::Volumes(a) => volumes::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tatami: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
