//! The per-container shim (our conmon). The agent re-executes its own binary as
//! `<exe> <shim args...> <container dir>`; [`shim_main`] then
//!
//! 1. forks and lets the first process exit at once, so the agent reaps it and the shim is
//!    adopted by init: it outlives the agent, whether the agent exits or is killed;
//! 2. starts a new session and becomes a child subreaper, so the container's init process
//!    (whose parent, runc, exits right away) is re-parented to it and it can reap the exit code;
//! 3. runs `runc run --detach` with stdio pipes it holds (or `--console-socket` for a tty);
//! 4. tells the agent `started <pid>` or `error <message>` on its stdout, then closes it;
//! 5. copies the container's stdout and stderr into the CRI log file and to attached clients,
//!    serves `stdin.sock` (bytes to the container's stdin), `attach.sock` (framed output:
//!    one byte stream id 1 or 2, a big-endian u32 length, the bytes) and, for a tty,
//!    `resize.sock` (lines `<cols> <rows>`);
//! 6. when the container's init exits, writes `exit.json` and exits.

use crate::crilog::{CriLog, LineSplitter};
use crate::error::{Error, Result};
use crate::meta::{self, ExitRecord, StartRecord};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// What the agent tells the shim, in `<container dir>/shim.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ShimConfig {
    pub id: String,
    pub runc: PathBuf,
    pub runc_root: PathBuf,
    pub bundle: PathBuf,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub cgroups_path: String,
}

/// Runs the shim for the container directory given as the last argument, and returns the
/// process exit status. Call it first thing in `main`, before any thread is started: it forks.
pub fn shim_main(args: &[String]) -> i32 {
    let Some(dir) = args.last() else {
        eprintln!("usage: shim <container directory>");
        return 2;
    };
    let dir = PathBuf::from(dir);
    match fork() {
        Ok(true) => return 0,
        Ok(false) => {}
        Err(e) => {
            report(&format!("error {e}"));
            return 1;
        }
    }
    // A session of its own: signals sent to the agent's process group or terminal
    // (Ctrl-C on `tatami up`) do not reach the shim.
    let _ = nix::unistd::setsid();
    match run(&dir) {
        Ok(()) => 0,
        Err(e) => {
            let message = error_chain(&e);
            eprintln!("shim {}: {message}", dir.display());
            report(&format!("error {message}"));
            1
        }
    }
}

/// `true` in the parent.
#[allow(unsafe_code)]
fn fork() -> Result<bool> {
    // SAFETY: the shim calls this from `main` before starting any thread, so the child is a
    // copy of a single-threaded process and may do anything afterwards.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(true),
        Ok(nix::unistd::ForkResult::Child) => Ok(false),
        Err(e) => Err(Error::sys("fork")(e)),
    }
}

/// Tells the agent how the start went (one line on stdout), once; stdout is then pointed at
/// /dev/null so the agent's read ends.
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", line.replace('\n', " "));
    let _ = out.flush();
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null.as_fd());
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The last error runc logged (its `--log-format json` file), in the words kubectl shows.
pub(crate) fn runc_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error" || v["level"] == "fatal")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

type Clients = Arc<Mutex<Vec<UnixStream>>>;

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Error::sys("pipe"))
}

fn bind(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(Error::io("listen on", path))
}

fn run(dir: &Path) -> Result<()> {
    let cfg: ShimConfig = meta::read_json(&dir.join("shim.json"))?;
    // Socket paths are limited to 108 bytes and the container directory can be longer, so the
    // shim works in it and binds its sockets by relative name (clients reach them through
    // `/proc/self/fd/<dir fd>/`).
    std::env::set_current_dir(dir).map_err(Error::io("enter", dir))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(Error::sys("set child subreaper"))?;
    let runc_log = dir.join("runc.log");

    let mut cmd = Command::new(&cfg.runc);
    cmd.arg("--root")
        .arg(&cfg.runc_root)
        .arg("--log")
        .arg(&runc_log)
        .args(["--log-format", "json", "run", "--detach", "--bundle"])
        .arg(&cfg.bundle);

    // Sockets are bound before the container runs, so they exist once the agent hears
    // "started".
    let stdin_listener = if cfg.stdin {
        Some(bind(Path::new("stdin.sock"))?)
    } else {
        None
    };
    let attach_listener = bind(Path::new("attach.sock"))?;
    let resize_listener = if cfg.tty {
        Some(bind(Path::new("resize.sock"))?)
    } else {
        None
    };

    let mut readers: Vec<(File, &'static str)> = Vec::new();
    let mut stdin_writer: Option<File> = None;
    let mut console: Option<OwnedFd> = None;
    if cfg.tty {
        let console_path = PathBuf::from("console.sock");
        let console_listener = bind(&console_path)?;
        cmd.arg("--console-socket").arg(&console_path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.arg(&cfg.id);
        let status = cmd.status().map_err(Error::io("run", &cfg.runc))?;
        if !status.success() {
            return start_failed(dir, &cfg, &runc_log, status.to_string());
        }
        console_listener
            .set_nonblocking(true)
            .map_err(Error::io("listen on", &console_path))?;
        let (stream, _) = console_listener
            .accept()
            .map_err(Error::io("accept on", &console_path))?;
        stream
            .set_nonblocking(false)
            .map_err(Error::io("accept on", &console_path))?;
        let master = receive_fd(&stream)?;
        let _ = std::fs::remove_file(&console_path);
        let reader = master
            .try_clone()
            .map_err(Error::io("dup", &console_path))?;
        readers.push((File::from(reader), "stdout"));
        if cfg.stdin {
            let w = master
                .try_clone()
                .map_err(Error::io("dup", &console_path))?;
            stdin_writer = Some(File::from(w));
        }
        console = Some(master);
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        if cfg.stdin {
            let (in_r, in_w) = pipe()?;
            cmd.stdin(Stdio::from(in_r));
            stdin_writer = Some(File::from(in_w));
        } else {
            cmd.stdin(Stdio::null());
        }
        cmd.stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w))
            .arg(&cfg.id);
        // `cmd` owns the write ends; they are closed in this process when it is dropped
        // after the spawn, so EOF on the read ends means the container closed its side.
        let status = cmd.status().map_err(Error::io("run", &cfg.runc));
        drop(cmd);
        let status = status?;
        if !status.success() {
            return start_failed(dir, &cfg, &runc_log, status.to_string());
        }
        readers.push((File::from(out_r), "stdout"));
        readers.push((File::from(err_r), "stderr"));
    }

    let pid = adopted_child()?;
    let start = StartRecord {
        pid,
        started_at: meta::now_nanos(),
        pid_start_time: meta::pid_start_time(pid).unwrap_or(0),
        shim_pid: std::process::id() as i32,
    };
    meta::write_json(&dir.join("start.json"), &start)?;
    report(&format!("started {pid}"));

    let log = CriLog::open(&cfg.log_path, cfg.log_max_bytes, cfg.log_max_files)
        .map_err(Error::io("open log", &cfg.log_path))?;
    let log = Arc::new(Mutex::new(log));
    let clients: Clients = Arc::new(Mutex::new(Vec::new()));

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let n_readers = readers.len();
    for (file, stream) in readers {
        let (log, clients, done) = (log.clone(), clients.clone(), done_tx.clone());
        std::thread::spawn(move || {
            pump(file, stream, &log, &clients);
            let _ = done.send(());
        });
    }
    {
        let clients = clients.clone();
        std::thread::spawn(move || {
            for conn in attach_listener.incoming().flatten() {
                if let Ok(mut all) = clients.lock() {
                    all.push(conn);
                }
            }
        });
    }
    if let (Some(listener), Some(writer)) = (stdin_listener, stdin_writer) {
        let once = cfg.stdin_once;
        std::thread::spawn(move || serve_stdin(listener, writer, once));
    }
    if let (Some(master), Some(listener)) = (&console, resize_listener) {
        let fd = master.as_raw_fd();
        std::thread::spawn(move || serve_resize(listener, fd));
    }

    let exit_code = reap(pid);
    // The container's processes are gone (its pid namespace dies with init), so the pipes
    // reach EOF soon; a process that escaped with a copy of them must not hold the shim.
    for _ in 0..n_readers {
        if done_rx.recv_timeout(Duration::from_secs(2)).is_err() {
            break;
        }
    }
    let reason = oom_killed(&cfg.cgroups_path).then(|| "OOMKilled".to_string());
    let record = ExitRecord {
        exit_code,
        finished_at: meta::now_nanos(),
        reason,
        message: None,
    };
    meta::write_json(&dir.join("exit.json"), &record)?;
    drop(console);
    Ok(())
}

/// The container's init: `runc run --detach` leaves it orphaned and the shim, a subreaper with
/// no other child, adopts it. Read from /proc rather than runc's `--pid-file`, which runc writes
/// with O_SYNC (a disk flush on every start).
fn adopted_child() -> Result<i32> {
    let path = format!("/proc/self/task/{}/children", std::process::id());
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", Path::new(&path)))?;
    let children: Vec<i32> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    match children[..] {
        [pid] => Ok(pid),
        _ => Err(Error::Start(format!(
            "runc left {} processes to the shim, not the container's init alone",
            children.len()
        ))),
    }
}

/// Records a failed start (exit code 128, reason StartError, as containerd reports it), cleans
/// up what runc left, and fails with runc's message.
fn start_failed(dir: &Path, cfg: &ShimConfig, runc_log: &Path, status: String) -> Result<()> {
    let message = runc_error(runc_log).unwrap_or_else(|| format!("runc run: {status}"));
    let _ = Command::new(&cfg.runc)
        .arg("--root")
        .arg(&cfg.runc_root)
        .args(["delete", "--force", &cfg.id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let record = ExitRecord {
        exit_code: 128,
        finished_at: meta::now_nanos(),
        reason: Some("StartError".to_string()),
        message: Some(message.clone()),
    };
    meta::write_json(&dir.join("exit.json"), &record)?;
    Err(Error::Start(message))
}

/// Reaps children until `pid` exits and returns its exit code (128 + signal if killed, as
/// shells and containerd report it). Other orphans re-parented to the shim are reaped too.
fn reap(pid: i32) -> i32 {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => {
                // Not our child after all (should not happen with the subreaper bit): wait
                // for it to disappear; its code is lost.
                while meta::pid_start_time(pid).is_some() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return 255;
            }
        }
    }
}

/// Whether the kernel's OOM killer struck in the container's memory cgroup.
fn oom_killed(cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
    for path in [v1, v2] {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            });
        }
    }
    false
}

/// Copies one output stream into the log and to attached clients.
fn pump(mut src: File, stream: &'static str, log: &Mutex<CriLog>, clients: &Clients) {
    let id: u8 = if stream == "stdout" { 1 } else { 2 };
    let mut splitter = LineSplitter::new();
    let mut buf = vec![0u8; 32 * 1024];
    let write = |partial: bool, text: &[u8]| {
        if let Ok(mut log) = log.lock() {
            let _ = log.write_entry(stream, partial, text);
        }
    };
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: a terminal's other side closed.
            Err(_) => break,
        };
        let data = &buf[..n];
        if let Ok(mut all) = clients.lock()
            && !all.is_empty()
        {
            let mut frame = Vec::with_capacity(n + 5);
            frame.push(id);
            frame.extend_from_slice(&(n as u32).to_be_bytes());
            frame.extend_from_slice(data);
            all.retain_mut(|c| c.write_all(&frame).is_ok());
        }
        splitter.feed(data, write);
    }
    splitter.finish(write);
}

/// Copies every connection's bytes into the container's stdin. With `once`, stdin closes when
/// the first connection ends (Kubernetes' stdinOnce).
fn serve_stdin(listener: UnixListener, mut writer: File, once: bool) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        // A plain loop, not io::copy: its splice fast path can hold bytes read from a
        // socket in the kernel until more arrive, and stdin is interactive.
        let mut buf = [0u8; 8192];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if once {
            return;
        }
    }
}

/// Applies `<cols> <rows>` lines to the terminal.
fn serve_resize(listener: UnixListener, master: RawFd) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        for line in BufReader::new(conn).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace().map(|p| p.parse::<u16>());
            if let (Some(Ok(cols)), Some(Ok(rows))) = (parts.next(), parts.next()) {
                let _ = set_winsize(master, cols, rows);
            }
        }
    }
}

/// Sets a terminal's size (TIOCSWINSZ); the kernel signals the foreground process group.
#[allow(unsafe_code)]
pub(crate) fn set_winsize(fd: RawFd, cols: u16, rows: u16) -> std::io::Result<()> {
    let ws = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points at a live local.
    let r =
        unsafe { nix::libc::ioctl(fd, nix::libc::TIOCSWINSZ, &ws as *const nix::libc::winsize) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receives one file descriptor (runc's `--console-socket` protocol: SCM_RIGHTS).
#[allow(unsafe_code)]
pub(crate) fn receive_fd(stream: &UnixStream) -> Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(Error::sys("receive console"))?;
    for c in msg.cmsgs().map_err(Error::sys("receive console"))? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(Error::Start("runc sent no console".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_come_from_its_json_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"runc run failed: exec: \\\"nope\\\": executable file not found in $PATH\"}\n",
        )
        .unwrap();
        assert_eq!(
            runc_error(&log).unwrap(),
            "runc run failed: exec: \"nope\": executable file not found in $PATH"
        );
        assert!(runc_error(&dir.path().join("missing")).is_none());
    }
}
