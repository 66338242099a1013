//! `tatami down` and `tatami reset`: stop the running `up` on a data dir (and delete the dir).

use crate::cli::DataDirArgs;
use crate::datadir::DataDir;
use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `down` waits for `up` to exit after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The pid in `pid_file`, if that process is alive.
pub fn running_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    kill(Pid::from_raw(pid), None).ok().map(|_| pid)
}

/// `tatami down`: stops `up`, then every container, mount and network namespace it made.
pub fn run(args: DataDirArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data_dir.as_deref())?;
    stop(&dir)?;
    stop_containers(&dir)
}

fn stop_containers(dir: &DataDir) -> anyhow::Result<()> {
    if dir.runtime().exists() {
        stop_runtime(dir)?;
    }
    // The in-memory volumes go with the containers; the next `up` writes them again.
    node::volumes::unmount_all(&dir.node()).context("cannot unmount the Pods' volumes")?;
    node::volumes::unshare_root(&dir.node()).context("cannot unmount the node's directory")
}

/// Kills every container and removes every sandbox, mount and network the runtime made.
fn stop_runtime(dir: &DataDir) -> anyhow::Result<()> {
    let images = crate::image::open_store(dir, &Default::default())?;
    let runtime = crate::node::oci_runtime(dir, images)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(runtime.shutdown_all())
        .context("cannot stop the containers")
}

fn stop(dir: &DataDir) -> anyhow::Result<()> {
    let Some(pid) = running_pid(&dir.pid_file()) else {
        return Ok(());
    };
    let pid = Pid::from_raw(pid);
    kill(pid, Signal::SIGTERM).context("cannot signal tatami up")?;
    let start = Instant::now();
    while kill(pid, None).is_ok() {
        if start.elapsed() > STOP_TIMEOUT {
            let _ = kill(pid, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `tatami reset`.
pub fn reset(args: DataDirArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data_dir.as_deref())?;
    stop(&dir)?;
    stop_containers(&dir)?;
    if dir.0.exists() {
        std::fs::remove_dir_all(&dir.0)
            .with_context(|| format!("cannot delete {}", dir.0.display()))?;
    }
    Ok(())
}
