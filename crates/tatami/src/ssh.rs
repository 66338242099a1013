//! `tatami ssh`: a shell, or one command, on a node. The single node of `tatami up` is this
//! machine, so its files are exactly what hostPath volumes see.

use crate::cli::SshArgs;
use crate::datadir::DataDir;
use anyhow::Context;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Replaces this process with the command (or a login shell) on the node.
pub fn run(args: SshArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data.data_dir.as_deref())?;
    if crate::down::running_pid(&dir.pid_file()).is_none() {
        anyhow::bail!(
            "no cluster is running on {}: start one with `tatami up`",
            dir.0.display()
        );
    }
    if let Some(node) = &args.node {
        let here = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let named = std::fs::read_to_string(dir.0.join("node-name")).unwrap_or_default();
        if node != &here && node != named.trim() {
            anyhow::bail!("node {node:?} not found");
        }
    }
    let mut cmd = match args.command.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest);
            c
        }
        None => {
            let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_string());
            let mut c = Command::new(shell);
            c.arg("-l");
            c
        }
    };
    let err = cmd.current_dir("/").exec();
    Err(err).context("cannot start the command on the node")
}
