//! The process that holds a sandbox's namespaces: the shim's program in its `pause` mode
//! (`crates/shim/src/pause.rs`), kubelet's pause container without a container. Containers
//! join its namespaces through `/proc/<pid>/ns/*`, so a Pod adds no namespace mounts to the
//! node's mount table, which every `runc` reads several times. Its pid and start time, kept in
//! `sandbox.json`, tell it from a later process that got the same pid.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kubelet's `PodInfraOOMAdj`.
const OOM_SCORE_ADJ: &str = "-998";

/// How long a killed holder may take to go.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub pid: i32,
    /// When it started, in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

impl Holder {
    /// Starts `program`'s pause mode with new IPC, and unless `host_network` also network and
    /// UTS, namespaces; `hostname` is set in the new UTS namespace.
    pub fn start(program: &Path, host_network: bool, hostname: &str) -> Result<Holder> {
        let flags = if host_network { "i" } else { "niu" };
        let command = || format!("{} pause {flags} {hostname}", program.display());
        let mut child = Command::new(program)
            .args(["pause", flags, hostname])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("run", program))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        // The first process exits right after its fork.
        let _ = child.wait();
        let line = line.trim();
        let pid = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse::<i32>().ok())
            .ok_or_else(|| Error::Command {
                command: command(),
                message: line.strip_prefix("error ").unwrap_or(line).to_string(),
            })?;
        let start_time = start_time(pid).ok_or_else(|| Error::Command {
            command: command(),
            message: format!("process {pid} ended at once"),
        })?;
        let holder = Holder { pid, start_time };
        // As kubelet protects the pause container (PodInfraOOMAdj): the kernel's OOM killer
        // picks it last, since the Pod would be started over without it. Best effort: a
        // node without CAP_SYS_RESOURCE cannot lower the score.
        if let Err(e) = std::fs::write(format!("/proc/{pid}/oom_score_adj"), OOM_SCORE_ADJ) {
            // Said once: where the node cannot lower scores, every Pod would say it again.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(pid, error = %e, "cannot set the namespace holder's oom_score_adj");
            });
        }
        Ok(holder)
    }

    /// Whether the holder still runs (a process that ended but was not reaped yet does not).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// The file of one of its namespaces: `net`, `ipc` or `uts`.
    pub fn ns(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// Kills the holder and waits until it is gone; its namespaces go with the last process
    /// in them.
    pub fn stop(&self) -> Result<()> {
        if !self.alive() {
            return Ok(());
        }
        let pid = nix::unistd::Pid::from_raw(self.pid);
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => return Err(Error::sys(format!("kill {}", self.pid))(e)),
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.alive() {
            if Instant::now() > deadline {
                return Err(Error::Command {
                    command: format!("kill {}", self.pid),
                    message: "the namespace holder is still running".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// The start time of a live process (not a zombie), from `/proc/<pid>/stat`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Field 3 is the state, field 22 the start time.
    match *fields.first()? {
        "Z" | "X" | "x" => None,
        _ => fields.get(22 - 3)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_read_from_stat() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(t > 0);
        assert_eq!(start_time(me), Some(t));
        let holder = Holder {
            pid: me,
            start_time: t + 1,
        };
        assert!(!holder.alive(), "another start time is another process");
        assert_eq!(
            holder.ns("net"),
            PathBuf::from(format!("/proc/{me}/ns/net"))
        );
        assert_eq!(start_time(i32::MAX), None);
    }
}
