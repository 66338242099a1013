//! `exec` (runc exec with pipes, or with a terminal) and `attach` (the shim's sockets).

use crate::OciRuntime;
use runtime::{StreamRequest, StreamSession};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn internal(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> runtime::Error {
    runtime::Error::Internal {
        context: context.to_string(),
        source: Box::new(e),
    }
}

/// Runs a command in a running container. The process's exit code is what `exit` resolves
/// to; when runc itself cannot start the command it exits 255 and its message (e.g.
/// `exec: "nope": executable file not found in $PATH`) arrives on stderr, which is what
/// kubectl users see.
pub(crate) async fn exec(
    rt: &OciRuntime,
    id: &str,
    req: &StreamRequest,
) -> runtime::Result<StreamSession> {
    if req.command.is_empty() {
        return Err(runtime::Error::StartContainer {
            message: "no command given".into(),
        });
    }
    let _ = rt.running_dir(id).await?;
    if req.tty {
        return exec_tty(rt, id, req);
    }
    let mut cmd = rt.runc_command();
    // With a log file, runc prints its own failure as one plain sentence on stderr (not a
    // logrus line), the text kubectl users know.
    cmd.args(["--log", "/dev/null", "--log-format", "json", "exec"])
        .arg(id)
        .args(&req.command);
    cmd.stdin(if req.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(if req.stdout {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stderr(if req.stderr {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|e| internal("run runc exec", e))?;
    let stdin = child
        .stdin
        .take()
        .map(|w| Box::new(w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
    let stdout = child
        .stdout
        .take()
        .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    let stderr = child
        .stderr
        .take()
        .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    let exit = Box::pin(async move {
        let status = child
            .wait()
            .await
            .map_err(|e| internal("wait for runc exec", e))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    });
    Ok(StreamSession {
        stdin,
        stdout,
        stderr,
        resize: None,
        exit,
    })
}

/// Runs a command with a terminal: runc in the foreground with a node-side pty as its stdio
/// (see `pty.rs` for why not `--console-socket`). Output and runc's own failure messages
/// come from the pty; a resize sets the node-side pty's size and tells runc with SIGWINCH,
/// and runc resizes the container's terminal to match.
fn exec_tty(rt: &OciRuntime, id: &str, req: &StreamRequest) -> runtime::Result<StreamSession> {
    let pty = crate::pty::open().map_err(|e| internal("open a terminal for exec", e))?;
    let stdio = |what: &str| {
        pty.slave
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| internal(&format!("duplicate the terminal for {what}"), e))
    };
    let mut cmd = rt.runc_command();
    cmd.args([
        "--log",
        "/dev/null",
        "--log-format",
        "json",
        "exec",
        "--tty",
    ])
    .arg(id)
    .args(&req.command)
    .stdin(stdio("stdin")?)
    .stdout(stdio("stdout")?)
    .stderr(stdio("stderr")?)
    // Its own process group: a Ctrl-C on the terminal the node runs in must not reach
    // runc, which would pass it on to the command.
    .process_group(0);
    let mut child = cmd.spawn().map_err(|e| internal("run runc exec", e))?;
    // Our copies of the slave must go, or reading the master never reaches the end.
    drop(cmd);
    drop(pty.slave);
    let dup = |what: &str| {
        pty.master
            .try_clone()
            .and_then(crate::pty::PtyIo::new)
            .map_err(|e| internal(&format!("duplicate the terminal for {what}"), e))
    };
    let stdin = if req.stdin {
        Some(Box::new(dup("stdin")?) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>)
    } else {
        None
    };
    let mut output = dup("stdout")?;
    let stdout = if req.stdout {
        Some(Box::new(output) as Box<dyn tokio::io::AsyncRead + Send + Unpin>)
    } else {
        // Nobody reads: drain it anyway, or runc blocks once the terminal's buffer is full.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut output, &mut tokio::io::sink()).await;
        });
        None
    };
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<(u16, u16)>(8);
    let master = pty.master;
    // One task waits for runc and applies resizes, so a signal never goes to runc's pid after
    // it was reaped (`child.id()` is None from then on) and could have been reused.
    let waiter = tokio::spawn(async move {
        let mut resizing = true;
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(|e| internal("wait for runc exec", e))?;
                    use std::os::unix::process::ExitStatusExt;
                    return Ok(status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
                }
                size = resize_rx.recv(), if resizing => match size {
                    Some((cols, rows)) => {
                        if crate::pty::set_winsize(master.as_raw_fd(), cols, rows).is_ok()
                            && let Some(pid) = child.id()
                        {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGWINCH,
                            );
                        }
                    }
                    None => resizing = false,
                },
            }
        }
    });
    let exit = Box::pin(async move {
        waiter
            .await
            .map_err(|e| internal("wait for runc exec", e))?
    });
    Ok(StreamSession {
        stdin,
        stdout,
        stderr: None,
        resize: Some(resize_tx),
        exit,
    })
}

/// Connects to the container's main process through its shim: output from `attach.sock`
/// (framed: stream id, length, bytes), input to `stdin.sock`, terminal size to `resize.sock`.
/// `exit` resolves when the output stream ends, to the container's exit code if it has
/// exited by then (else 0).
pub(crate) async fn attach(
    rt: &OciRuntime,
    id: &str,
    req: &StreamRequest,
) -> runtime::Result<StreamSession> {
    let (dir, tty) = rt.running_dir(id).await?;
    // Through the directory's descriptor: the full path may be too long for a socket address.
    let dir_fd =
        std::fs::File::open(&dir).map_err(|e| internal("open the container directory", e))?;
    let short = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd()));
    let mut out_sock = tokio::net::UnixStream::connect(short.join("attach.sock"))
        .await
        .map_err(|e| internal("connect to the container's output", e))?;
    let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = if req.stdin {
        let s = tokio::net::UnixStream::connect(short.join("stdin.sock"))
            .await
            .map_err(|e| internal("connect to the container's stdin", e))?;
        Some(Box::new(s))
    } else {
        None
    };
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let want_out = req.stdout;
    let want_err = req.stderr && !tty;
    let exit_path = dir.join("exit.json");
    // The output is copied by a task of its own, so the streams flow whether or not
    // anyone polls `exit`.
    let pump = tokio::spawn(async move {
        let mut header = [0u8; 5];
        loop {
            if out_sock.read_exact(&mut header).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut data = vec![0u8; len];
            if out_sock.read_exact(&mut data).await.is_err() {
                break;
            }
            let _ = match header[0] {
                1 if want_out => out_w.write_all(&data).await,
                2 if want_err => err_w.write_all(&data).await,
                _ => Ok(()),
            };
        }
        drop((out_w, err_w));
        // The shim writes the exit record right after the output ends.
        for _ in 0..50 {
            if let Ok(bytes) = tokio::fs::read(&exit_path).await
                && let Ok(rec) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                return Ok(rec["exit_code"].as_i64().unwrap_or(0) as i32);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(0)
    });
    let exit = Box::pin(async move {
        pump.await
            .map_err(|e| internal("copy the container's output", e))?
    });
    let resize = if tty {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u16, u16)>(8);
        let resize_sock = tokio::net::UnixStream::connect(short.join("resize.sock")).await;
        tokio::spawn(async move {
            let Ok(mut s) = resize_sock else {
                return;
            };
            while let Some((cols, rows)) = rx.recv().await {
                if s.write_all(format!("{cols} {rows}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Some(tx)
    } else {
        None
    };
    Ok(StreamSession {
        stdin,
        stdout: req
            .stdout
            .then(|| Box::new(out_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        stderr: want_err.then(|| Box::new(err_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        resize,
        exit,
    })
}
