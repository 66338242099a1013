//! The Linux system calls the shim makes, called directly: it links no C library, which keeps
//! it a few pages in memory. x86-64 only, like the rest of the node.
#![allow(unsafe_code)]

use core::ffi::CStr;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the shim's system calls are written for x86-64");

/// A file descriptor.
pub type Fd = i32;

/// An error number from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

/// The result of a system call.
pub type Result<T> = core::result::Result<T, Errno>;

pub const EINTR: Errno = Errno(4);
pub const EAGAIN: Errno = Errno(11);
pub const EEXIST: Errno = Errno(17);
pub const ENAMETOOLONG: Errno = Errno(36);
pub const EINVAL: Errno = Errno(22);
pub const ETIMEDOUT: Errno = Errno(110);

pub const AT_FDCWD: Fd = -100;
pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 1;
pub const O_RDWR: u32 = 2;
pub const O_CREAT: u32 = 0o100;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
pub const O_DIRECTORY: u32 = 0o200000;
pub const O_CLOEXEC: u32 = 0o2000000;

pub const POLLIN: i16 = 0x1;
pub const POLLOUT: i16 = 0x4;
pub const POLLERR: i16 = 0x8;
pub const POLLHUP: i16 = 0x10;

pub const SIGCHLD: u32 = 17;
pub const SIGPIPE: u32 = 13;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;

mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const POLL: usize = 7;
    pub const LSEEK: usize = 8;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const WRITEV: usize = 20;
    pub const DUP: usize = 32;
    pub const DUP2: usize = 33;
    pub const GETPID: usize = 39;
    pub const SOCKET: usize = 41;
    pub const SENDTO: usize = 44;
    pub const SETSOCKOPT: usize = 54;
    pub const RECVMSG: usize = 47;
    pub const BIND: usize = 49;
    pub const LISTEN: usize = 50;
    pub const FORK: usize = 57;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const CHDIR: usize = 80;
    pub const FCNTL: usize = 72;
    pub const PAUSE: usize = 34;
    pub const SETSID: usize = 112;
    pub const SETHOSTNAME: usize = 170;
    pub const UNSHARE: usize = 272;
    pub const PRCTL: usize = 157;
    pub const GETDENTS64: usize = 217;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const MKDIRAT: usize = 258;
    pub const UNLINKAT: usize = 263;
    pub const ACCEPT4: usize = 288;
    pub const SIGNALFD4: usize = 289;
    pub const PIPE2: usize = 293;
    pub const RENAMEAT2: usize = 316;
}

/// # Safety
/// The arguments must be valid for system call `n`: pointers to live memory of the sizes the
/// call reads or writes.
unsafe fn syscall(n: usize, a: [usize; 6]) -> Result<usize> {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; `syscall` clobbers only rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// A call without pointers (or with pointers made here from references).
fn call(n: usize, a: [usize; 6]) -> Result<usize> {
    // SAFETY: every caller below passes plain numbers or pointers taken from references it
    // holds for the length of the call, with the lengths of the memory they point at.
    unsafe { syscall(n, a) }
}

/// Retries a call the kernel interrupted.
fn retry(n: usize, a: [usize; 6]) -> Result<usize> {
    loop {
        match call(n, a) {
            Err(EINTR) => continue,
            r => return r,
        }
    }
}

pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    retry(
        nr::READ,
        [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

pub fn write(fd: Fd, buf: &[u8]) -> Result<usize> {
    retry(
        nr::WRITE,
        [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

/// Writes all of `buf` (a pipe or file may take it in parts).
pub fn write_all(fd: Fd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

#[repr(C)]
struct IoVec {
    base: usize,
    len: usize,
}

/// Writes all the parts, in one call when the kernel takes them whole (always, for a file
/// opened with O_APPEND that has room), so a reader sees all of them or none.
pub fn write_all_vectored(fd: Fd, parts: &[&[u8]; 4]) -> Result<()> {
    let mut skip = 0;
    loop {
        let mut iov = [const { IoVec { base: 0, len: 0 } }; 4];
        let mut rest = skip;
        let mut count = 0;
        for p in parts {
            if rest >= p.len() {
                rest -= p.len();
                continue;
            }
            iov[count] = IoVec {
                base: p[rest..].as_ptr() as usize,
                len: p.len() - rest,
            };
            rest = 0;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        skip += retry(
            nr::WRITEV,
            [fd as usize, iov.as_ptr() as usize, count, 0, 0, 0],
        )?;
    }
}

/// Sends on a socket without SIGPIPE if the peer is gone.
pub fn send(fd: Fd, buf: &[u8]) -> Result<usize> {
    const MSG_NOSIGNAL: usize = 0x4000;
    retry(
        nr::SENDTO,
        [
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            MSG_NOSIGNAL,
            0,
            0,
        ],
    )
}

pub fn close(fd: Fd) {
    let _ = call(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]);
}

pub fn dup(fd: Fd) -> Result<Fd> {
    call(nr::DUP, [fd as usize, 0, 0, 0, 0, 0]).map(|f| f as Fd)
}

/// A close-on-exec copy of `fd`.
pub fn dup_cloexec(fd: Fd) -> Result<Fd> {
    const F_DUPFD_CLOEXEC: usize = 1030;
    call(nr::FCNTL, [fd as usize, F_DUPFD_CLOEXEC, 3, 0, 0, 0]).map(|f| f as Fd)
}

/// Makes writes and reads on `fd` fail with EAGAIN instead of waiting (for every descriptor
/// sharing its open file).
pub fn set_nonblocking(fd: Fd) -> Result<()> {
    const F_GETFL: usize = 3;
    const F_SETFL: usize = 4;
    const O_NONBLOCK: usize = 0o4000;
    let flags = call(nr::FCNTL, [fd as usize, F_GETFL, 0, 0, 0, 0])?;
    call(
        nr::FCNTL,
        [fd as usize, F_SETFL, flags | O_NONBLOCK, 0, 0, 0],
    )
    .map(drop)
}

pub fn dup2(from: Fd, to: Fd) -> Result<()> {
    call(nr::DUP2, [from as usize, to as usize, 0, 0, 0, 0]).map(drop)
}

pub fn open(path: &CStr, flags: u32, mode: u32) -> Result<Fd> {
    let a = [
        AT_FDCWD as usize,
        path.as_ptr() as usize,
        (flags | O_CLOEXEC) as usize,
        mode as usize,
        0,
        0,
    ];
    retry(nr::OPENAT, a).map(|f| f as Fd)
}

/// The size of an open file (its end).
pub fn file_size(fd: Fd) -> Result<u64> {
    const SEEK_END: usize = 2;
    call(nr::LSEEK, [fd as usize, 0, SEEK_END, 0, 0, 0]).map(|n| n as u64)
}

pub fn mkdir(path: &CStr, mode: u32) -> Result<()> {
    call(
        nr::MKDIRAT,
        [
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            mode as usize,
            0,
            0,
            0,
        ],
    )
    .map(drop)
}

pub fn unlink(path: &CStr) -> Result<()> {
    call(
        nr::UNLINKAT,
        [AT_FDCWD as usize, path.as_ptr() as usize, 0, 0, 0, 0],
    )
    .map(drop)
}

/// Renames `from` to `to`; with `replace` false, fails with EEXIST if `to` exists.
pub fn rename(from: &CStr, to: &CStr, replace: bool) -> Result<()> {
    const RENAME_NOREPLACE: usize = 1;
    let flags = if replace { 0 } else { RENAME_NOREPLACE };
    let a = [
        AT_FDCWD as usize,
        from.as_ptr() as usize,
        AT_FDCWD as usize,
        to.as_ptr() as usize,
        flags,
        0,
    ];
    call(nr::RENAMEAT2, a).map(drop)
}

pub fn chdir(path: &CStr) -> Result<()> {
    call(nr::CHDIR, [path.as_ptr() as usize, 0, 0, 0, 0, 0]).map(drop)
}

/// Reads directory entries into `buf`: `linux_dirent64` records, 0 at the end.
pub fn getdents(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    call(
        nr::GETDENTS64,
        [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> Result<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    call(
        nr::PIPE2,
        [fds.as_mut_ptr() as usize, O_CLOEXEC as usize, 0, 0, 0, 0],
    )?;
    Ok((fds[0], fds[1]))
}

pub fn getpid() -> i32 {
    call(nr::GETPID, [0; 6]).unwrap_or(0) as i32
}

pub fn setsid() -> Result<()> {
    call(nr::SETSID, [0; 6]).map(drop)
}

pub const CLONE_NEWUTS: usize = 0x0400_0000;
pub const CLONE_NEWIPC: usize = 0x0800_0000;
pub const CLONE_NEWNET: usize = 0x4000_0000;

pub fn unshare(flags: usize) -> Result<()> {
    call(nr::UNSHARE, [flags, 0, 0, 0, 0, 0]).map(drop)
}

pub fn sethostname(name: &[u8]) -> Result<()> {
    call(
        nr::SETHOSTNAME,
        [name.as_ptr() as usize, name.len(), 0, 0, 0, 0],
    )
    .map(drop)
}

/// Sleeps until a signal is handled; one that kills the process never returns.
pub fn pause() {
    let _ = call(nr::PAUSE, [0; 6]);
}

pub fn set_child_subreaper() -> Result<()> {
    const PR_SET_CHILD_SUBREAPER: usize = 36;
    call(nr::PRCTL, [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0]).map(drop)
}

/// `Ok(0)` in the child, the child's pid in the parent.
pub fn fork() -> Result<i32> {
    call(nr::FORK, [0; 6]).map(|p| p as i32)
}

/// Replaces the process with `path` run with `args`; returns only on failure.
///
/// # Safety
/// `envp` must be null or point at a null-terminated array of pointers to NUL-terminated
/// strings (the environment the process was started with).
pub unsafe fn execve(path: &CStr, args: &[&CStr], envp: *const *const u8) -> Errno {
    let mut argv = [core::ptr::null::<u8>(); 24];
    if args.len() >= argv.len() {
        return Errno(7); // E2BIG
    }
    for (slot, a) in argv.iter_mut().zip(args) {
        *slot = a.as_ptr().cast();
    }
    let a = [
        path.as_ptr() as usize,
        argv.as_ptr() as usize,
        envp as usize,
        0,
        0,
        0,
    ];
    // SAFETY: every pointer in `argv` comes from a live `CStr` and the array ends with null;
    // the caller vouches for `envp`.
    match unsafe { syscall(nr::EXECVE, a) } {
        Err(e) => e,
        Ok(_) => Errno(0),
    }
}

pub fn exit(code: i32) -> ! {
    let _ = call(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
    unreachable!("exit_group returned")
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The code shells and containerd report: 128 + the signal for a killed process.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Waits for a child (`pid` -1: any); `None` with `nohang` when none has ended yet.
pub fn wait(pid: i32, nohang: bool) -> Result<Option<(i32, Exit)>> {
    const WNOHANG: usize = 1;
    let mut status: i32 = 0;
    let opts = if nohang { WNOHANG } else { 0 };
    let p = retry(
        nr::WAIT4,
        [
            pid as usize,
            &mut status as *mut i32 as usize,
            opts,
            0,
            0,
            0,
        ],
    )? as i32;
    if p == 0 {
        return Ok(None);
    }
    let sig = status & 0x7f;
    Ok(Some((
        p,
        if sig == 0 {
            Exit::Code((status >> 8) & 0xff)
        } else {
            Exit::Signal(sig)
        },
    )))
}

#[repr(C)]
struct SigAction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Ignores `signal` (`ignore`) or gives it back its default action.
pub fn set_signal_ignored(signal: u32, ignore: bool) -> Result<()> {
    let act = SigAction {
        handler: if ignore { SIG_IGN } else { SIG_DFL },
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    call(
        nr::RT_SIGACTION,
        [
            signal as usize,
            &act as *const SigAction as usize,
            0,
            8,
            0,
            0,
        ],
    )
    .map(drop)
}

/// Blocks `signal` and returns a descriptor that reads as it arrives (non-blocking).
pub fn signal_fd(signal: u32) -> Result<Fd> {
    const SIG_BLOCK: usize = 0;
    const SFD_NONBLOCK: usize = 0o4000;
    let mask: u64 = 1 << (signal - 1);
    let m = &mask as *const u64 as usize;
    call(nr::RT_SIGPROCMASK, [SIG_BLOCK, m, 0, 8, 0, 0])?;
    call(
        nr::SIGNALFD4,
        [usize::MAX, m, 8, SFD_NONBLOCK | O_CLOEXEC as usize, 0, 0],
    )
    .map(|f| f as Fd)
}

/// Unblocks every signal (for a child about to exec).
pub fn unblock_signals() {
    const SIG_SETMASK: usize = 2;
    let mask: u64 = 0;
    let _ = call(
        nr::RT_SIGPROCMASK,
        [SIG_SETMASK, &mask as *const u64 as usize, 0, 8, 0, 0],
    );
}

/// Nanoseconds since the epoch (`realtime`) or since boot.
pub fn clock(realtime: bool) -> u64 {
    let mut ts = [0i64; 2];
    let id = if realtime { 0 } else { 1 };
    let _ = call(
        nr::CLOCK_GETTIME,
        [id, ts.as_mut_ptr() as usize, 0, 0, 0, 0],
    );
    ts[0] as u64 * 1_000_000_000 + ts[1] as u64
}

/// One entry of a `poll` set.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollFd {
    pub fd: Fd,
    pub events: i16,
    pub revents: i16,
}

/// Waits for events; `timeout_ms` -1 waits without end.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Result<usize> {
    call(
        nr::POLL,
        [
            fds.as_mut_ptr() as usize,
            fds.len(),
            timeout_ms as usize,
            0,
            0,
            0,
        ],
    )
}

#[repr(C)]
struct SockaddrUn {
    family: u16,
    path: [u8; 108],
}

fn sockaddr(path: &CStr) -> Result<(SockaddrUn, usize)> {
    let bytes = path.to_bytes_with_nul();
    let mut addr = SockaddrUn {
        family: 1, // AF_UNIX
        path: [0; 108],
    };
    if bytes.len() > addr.path.len() {
        return Err(ENAMETOOLONG);
    }
    addr.path[..bytes.len()].copy_from_slice(bytes);
    Ok((addr, 2 + bytes.len()))
}

/// A listening Unix stream socket at `path` (replacing a stale one), close-on-exec.
pub fn listen_unix(path: &CStr) -> Result<Fd> {
    const AF_UNIX: usize = 1;
    const SOCK_STREAM: usize = 1;
    let (addr, len) = sockaddr(path)?;
    let _ = unlink(path);
    let fd = call(
        nr::SOCKET,
        [AF_UNIX, SOCK_STREAM | O_CLOEXEC as usize, 0, 0, 0, 0],
    )? as Fd;
    let bound = call(
        nr::BIND,
        [
            fd as usize,
            &addr as *const SockaddrUn as usize,
            len,
            0,
            0,
            0,
        ],
    )
    .and_then(|_| call(nr::LISTEN, [fd as usize, 16, 0, 0, 0, 0]));
    match bound {
        Ok(_) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Accepts a connection (close-on-exec; with `nonblocking`, its sends fail with EAGAIN
/// instead of waiting).
pub fn accept(fd: Fd, nonblocking: bool) -> Result<Fd> {
    const SOCK_NONBLOCK: usize = 0o4000;
    let flags = O_CLOEXEC as usize | if nonblocking { SOCK_NONBLOCK } else { 0 };
    retry(nr::ACCEPT4, [fd as usize, 0, 0, flags, 0, 0]).map(|f| f as Fd)
}

/// Sets a socket's send buffer, past the system's limit where allowed (SO_SNDBUFFORCE needs
/// CAP_NET_ADMIN, which the shim has as root).
pub fn set_send_buffer(fd: Fd, bytes: i32) -> Result<()> {
    const SOL_SOCKET: usize = 1;
    const SO_SNDBUF: usize = 7;
    const SO_SNDBUFFORCE: usize = 32;
    let v = &bytes as *const i32 as usize;
    call(
        nr::SETSOCKOPT,
        [fd as usize, SOL_SOCKET, SO_SNDBUFFORCE, v, 4, 0],
    )
    .or_else(|_| {
        call(
            nr::SETSOCKOPT,
            [fd as usize, SOL_SOCKET, SO_SNDBUF, v, 4, 0],
        )
    })
    .map(drop)
}

#[repr(C)]
struct MsgHdr {
    name: usize,
    namelen: u32,
    iov: *mut IoVec,
    iovlen: usize,
    control: *mut u64,
    controllen: usize,
    flags: i32,
}

/// Receives one descriptor passed with SCM_RIGHTS (runc's `--console-socket`).
pub fn receive_fd(sock: Fd) -> Result<Option<Fd>> {
    const MSG_CMSG_CLOEXEC: usize = 0x4000_0000;
    const SOL_SOCKET: u64 = 1;
    const SCM_RIGHTS: u64 = 1;
    let mut data = [0u8; 256];
    let mut iov = IoVec {
        base: data.as_mut_ptr() as usize,
        len: data.len(),
    };
    // cmsghdr { len: u64, level: i32, type: i32 } then the descriptors.
    let mut control = [0u64; 4];
    let mut msg = MsgHdr {
        name: 0,
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_mut_ptr(),
        controllen: core::mem::size_of_val(&control),
        flags: 0,
    };
    retry(
        nr::RECVMSG,
        [
            sock as usize,
            &mut msg as *mut MsgHdr as usize,
            MSG_CMSG_CLOEXEC,
            0,
            0,
            0,
        ],
    )?;
    let level_type = control[1];
    if msg.controllen >= 20
        && level_type & 0xffff_ffff == SOL_SOCKET
        && level_type >> 32 == SCM_RIGHTS
    {
        return Ok(Some((control[2] & 0xffff_ffff) as u32 as Fd));
    }
    Ok(None)
}

/// Sets a terminal's size (TIOCSWINSZ); the kernel signals its foreground process group.
pub fn set_winsize(fd: Fd, cols: u16, rows: u16) -> Result<()> {
    const TIOCSWINSZ: usize = 0x5414;
    let ws: [u16; 4] = [rows, cols, 0, 0];
    call(
        nr::IOCTL,
        [fd as usize, TIOCSWINSZ, ws.as_ptr() as usize, 0, 0, 0],
    )
    .map(drop)
}
