//! A pseudo-terminal on the node, for `exec` with a tty, and async I/O on its master side.
//!
//! runc only hands a terminal's master over `--console-socket` when it detaches, and a
//! detached exec is re-parented away from us, so its exit code would be lost (runc refuses
//! `--console-socket` without `--detach`: "cannot use console socket if runc will not detach
//! or allocate tty"). So exec runs runc in the foreground with the slave of a node-side pty as
//! its stdio: runc makes the container's terminal, copies between the two, and resizes the
//! container's terminal to ours when it gets SIGWINCH.

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A pty pair. Both ends are close-on-exec from the start, so a process the node spawns on
/// another thread at the same moment (a shim, which lives long) never inherits the slave and
/// holds the terminal open.
pub(crate) struct Pty {
    /// The side we read and write.
    pub master: OwnedFd,
    /// The side runc gets as stdin, stdout and stderr.
    pub slave: OwnedFd,
}

/// Opens a pty pair with the slave in raw mode: it is only a transport between us and runc
/// (the container's own terminal does the line discipline), and input sent before runc makes
/// it raw itself must not be echoed back.
pub(crate) fn open() -> std::io::Result<Pty> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave: OwnedFd = File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC)
        .open(&name)?
        .into();
    let mut attrs = nix::sys::termios::tcgetattr(&slave)?;
    nix::sys::termios::cfmakeraw(&mut attrs);
    nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &attrs)?;
    Ok(Pty {
        master: master.into(),
        slave,
    })
}

/// One descriptor of a pty master, readable and writable without blocking a thread. Reads
/// end (EOF) when every holder of the slave has closed it: the kernel then answers EIO.
pub(crate) struct PtyIo {
    fd: AsyncFd<File>,
}

impl PtyIo {
    /// Wraps a descriptor of a master (a `dup`: each one is registered with the reactor on
    /// its own). The shared file description is made non-blocking.
    #[allow(unsafe_code)]
    pub fn new(fd: OwnedFd) -> std::io::Result<PtyIo> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: the `File` owns the descriptor and is never handed out, so it stays open
        // and the same for as long as the `AsyncFd` holds it.
        let fd = unsafe { AsyncFd::register(File::from(fd)) }?;
        Ok(PtyIo { fd })
    }
}

impl AsyncRead for PtyIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The slave side is closed everywhere: that is the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsRawFd for PtyIo {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

/// Sets a terminal's size (TIOCSWINSZ); the kernel signals the foreground process group.
#[allow(unsafe_code)]
pub(crate) fn set_winsize(fd: std::os::fd::RawFd, cols: u16, rows: u16) -> std::io::Result<()> {
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
