//! What the shim does, started by the agent as
//! `tatami-shim <container dir> <id> <runc> <runc root> <bundle> <log path> <log max bytes>
//! <log max files> <flags> <cgroups path>` (flags: `i` stdin, `o` stdin once, `t` tty, or `-`):
//!
//! 1. forks and lets the first process exit at once, so the agent reaps it and the shim is
//!    adopted by init: it outlives the agent, whether the agent exits or is killed;
//! 2. starts a new session and becomes a child subreaper, so the container's init process
//!    (whose parent, runc, exits right away) is re-parented to it and it can reap the exit code;
//! 3. runs `runc run --detach` with stdio pipes it holds (or `--console-socket` for a tty);
//! 4. tells the agent `started <pid>` or `error <message>` on its stdout, then closes it (on
//!    an error the agent reads runc's own words in `runc.log`);
//! 5. copies the container's stdout and stderr into the CRI log file and to attached clients,
//!    serves `stdin.sock` (bytes to the container's stdin), `attach.sock` (framed output:
//!    one byte stream id 1 or 2, a big-endian u32 length, the bytes) and, for a tty,
//!    `resize.sock` (lines `<cols> <rows>`);
//! 6. when the container's init exits, writes `exit.json` and exits.
//!
//! One thread and a `poll` loop: the shim lives as long as its container, so it keeps to a few
//! pages of memory.
// The environment is handed to runc as the raw pointers the kernel gave.
#![allow(unsafe_code)]

use crate::log::{CriLog, LineSplitter, errno_text};
use crate::sys::{self, Errno, Fd, POLLERR, POLLHUP, POLLIN, POLLOUT, PollFd};
use crate::text::{self, Buf};
use core::ffi::CStr;

/// What the agent passes on the command line.
pub struct Config<'a> {
    pub dir: &'a CStr,
    pub id: &'a CStr,
    pub runc: &'a CStr,
    pub runc_root: &'a CStr,
    pub bundle: &'a CStr,
    pub log_path: &'a CStr,
    pub log_max_bytes: u64,
    pub log_max_files: u64,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub cgroups_path: &'a CStr,
}

impl<'a> Config<'a> {
    /// From the arguments after the program's name.
    pub fn parse(args: &[&'a CStr]) -> Option<Config<'a>> {
        let [
            dir,
            id,
            runc,
            runc_root,
            bundle,
            log_path,
            max_bytes,
            max_files,
            flags,
            cgroups,
        ] = *args
        else {
            return None;
        };
        let number = |s: &CStr| match text::parse_u64(s.to_bytes()) {
            Some((n, [])) => Some(n),
            _ => None,
        };
        let flags = flags.to_bytes();
        Some(Config {
            dir,
            id,
            runc,
            runc_root,
            bundle,
            log_path,
            log_max_bytes: number(max_bytes)?,
            log_max_files: number(max_files)?,
            stdin: flags.contains(&b'i'),
            stdin_once: flags.contains(&b'o'),
            tty: flags.contains(&b't'),
            cgroups_path: cgroups,
        })
    }
}

/// Why the shim stopped: what it was doing, and why that failed.
#[derive(Debug)]
pub struct Failure {
    what: &'static str,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    Unknown,
    /// The kernel's error.
    Errno(Errno),
    /// How a child (runc) ended.
    Exit(sys::Exit),
}

impl Failure {
    fn new(what: &'static str) -> Failure {
        Failure {
            what,
            cause: Cause::Unknown,
        }
    }

    fn push_to<const N: usize>(&self, out: &mut Buf<N>) {
        out.push_str(self.what);
        match self.cause {
            Cause::Unknown => {}
            Cause::Errno(e) => {
                out.push(b": ")
                    .push_str(errno_text(e))
                    .push(b" (os error ")
                    .push_u64(e.0 as u64)
                    .push(b")");
            }
            Cause::Exit(sys::Exit::Code(c)) => {
                out.push(b": exit status ").push_u64(c as u64);
            }
            Cause::Exit(sys::Exit::Signal(s)) => {
                out.push(b": killed by signal ").push_u64(s as u64);
            }
        }
    }
}

/// Attaches what was being done to a system call's error.
trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Doing<T> for sys::Result<T> {
    fn doing(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            what,
            cause: Cause::Errno(e),
        })
    }
}

/// Runs the shim; the process's exit code.
///
/// # Safety
/// `envp` must be the environment the process was started with (null or a null-terminated
/// array of NUL-terminated strings); it is handed to runc.
pub unsafe fn main(args: &[&CStr], envp: *const *const u8) -> i32 {
    let Some(cfg) = Config::parse(args) else {
        let _ = sys::write_all(2, b"usage: tatami-shim <container dir> <id> <runc> <runc root> <bundle> <log path> <log max bytes> <log max files> <flags> <cgroups path>\n");
        return 2;
    };
    match sys::fork() {
        Ok(0) => {}
        Ok(_) => return 0,
        Err(e) => {
            report_failure(&Failure {
                what: "fork",
                cause: Cause::Errno(e),
            });
            return 1;
        }
    }
    // A session of its own: signals sent to the agent's process group or terminal (Ctrl-C
    // on `tatami up`) do not reach the shim.
    let _ = sys::setsid();
    // SAFETY: passed on from the caller.
    match unsafe { run(&cfg, envp) } {
        Ok(()) => 0,
        Err(f) => {
            report_failure(&f);
            1
        }
    }
}

/// Tells the agent how the start went (one line on stdout), once; stdout then points at
/// /dev/null so the agent's read ends. Later calls write to /dev/null.
fn report(line: &[u8]) {
    let _ = sys::write_all(1, line);
    if let Ok(null) = sys::open(c"/dev/null", sys::O_WRONLY, 0) {
        let _ = sys::dup2(null, 1);
        sys::close(null);
    }
}

fn report_failure(f: &Failure) {
    let mut line = Buf::<512>::new();
    line.push(b"error ");
    f.push_to(&mut line);
    line.push(b"\n");
    // The shim's stderr is its log file beside the container's.
    let _ = sys::write_all(2, line.as_bytes());
    report(line.as_bytes());
}

/// The descriptors a container's output and input go through.
struct Stdio {
    /// stdout and stderr (a terminal has only the first).
    outputs: [Option<Fd>; 2],
    stdin: Option<Fd>,
    /// The terminal's master side, for resizes.
    console: Option<Fd>,
}

/// # Safety
/// As for [`main`].
unsafe fn run(cfg: &Config, envp: *const *const u8) -> Result<(), Failure> {
    // Socket paths are limited to 108 bytes and the container directory can be longer, so the
    // shim works in it and binds its sockets by relative name (clients reach them through
    // `/proc/self/fd/<dir fd>/`).
    sys::chdir(cfg.dir).doing("enter the container directory")?;
    sys::set_child_subreaper().doing("become a subreaper")?;
    // Output to a client that went away is an error, not a signal.
    sys::set_signal_ignored(sys::SIGPIPE, true).doing("ignore SIGPIPE")?;

    // Sockets are bound before the container runs, so they exist once the agent hears
    // "started".
    let stdin_listener = cfg
        .stdin
        .then(|| sys::listen_unix(c"stdin.sock"))
        .transpose()
        .doing("listen on stdin.sock")?;
    let attach_listener = sys::listen_unix(c"attach.sock").doing("listen on attach.sock")?;
    let resize_listener = cfg
        .tty
        .then(|| sys::listen_unix(c"resize.sock"))
        .transpose()
        .doing("listen on resize.sock")?;

    // SAFETY: passed on from the caller.
    let stdio = unsafe { start_container(cfg, envp) }?;

    let pid = adopted_child()?;
    let mut start = Buf::<256>::new();
    start
        .push(b"{\"pid\":")
        .push_u64(pid as u64)
        .push(b",\"started_at\":")
        .push_u64(sys::clock(true))
        .push(b",\"pid_start_time\":")
        .push_u64(pid_start_time(pid).unwrap_or(0))
        .push(b",\"shim_pid\":")
        .push_u64(sys::getpid() as u64)
        .push(b"}\n");
    write_atomic(c"start.json", c"start.json.tmp", start.as_bytes()).doing("write start.json")?;
    let mut line = Buf::<64>::new();
    line.push(b"started ").push_u64(pid as u64).push(b"\n");
    report(line.as_bytes());

    let log =
        CriLog::open(cfg.log_path, cfg.log_max_bytes, cfg.log_max_files).doing("open the log")?;
    let children = sys::signal_fd(sys::SIGCHLD).doing("watch for SIGCHLD")?;
    let mut monitor = Monitor {
        log,
        splitters: [LineSplitter::new(), LineSplitter::new()],
        outputs: stdio.outputs,
        clients: [None; MAX_CLIENTS],
        attach_listener,
        stdin: StdinCopy {
            listener: stdin_listener,
            conn: None,
            writer: stdio.stdin,
            once: cfg.stdin_once,
            buf: [0; 8192],
            pending: (0, 0),
            closing: false,
        },
        resize_listener,
        resizes: [const { None }; MAX_RESIZES],
        console: stdio.console,
        children,
        init: pid,
        exit: None,
        buf: [0; 32 * 1024],
    };
    let exit_code = monitor.run();

    let oom = oom_killed(cfg.cgroups_path);
    let mut record = Buf::<256>::new();
    record
        .push(b"{\"exit_code\":")
        .push_u64(exit_code as u64)
        .push(b",\"finished_at\":")
        .push_u64(sys::clock(true))
        .push(b",\"reason\":")
        .push(if oom { b"\"OOMKilled\"" } else { b"null" })
        .push(b",\"message\":null}\n");
    write_atomic(c"exit.json", c"exit.json.tmp", record.as_bytes()).doing("write exit.json")
}

/// Runs `runc run --detach` and waits for it; the container's init is then the shim's child.
///
/// # Safety
/// As for [`main`].
unsafe fn start_container(cfg: &Config, envp: *const *const u8) -> Result<Stdio, Failure> {
    let console_listener = cfg
        .tty
        .then(|| sys::listen_unix(c"console.sock"))
        .transpose()
        .doing("listen on console.sock")?;
    // The child's stdin, stdout and stderr, and the ends the shim keeps.
    // Read-write: a container without stdin reads EOF from it, as from a pipe closed.
    let null = sys::open(c"/dev/null", sys::O_RDWR, 0).doing("open /dev/null")?;
    let mut theirs = [null; 3];
    let mut stdio = Stdio {
        outputs: [None; 2],
        stdin: None,
        console: None,
    };
    if !cfg.tty {
        let (out_r, out_w) = sys::pipe().doing("make a pipe")?;
        let (err_r, err_w) = sys::pipe().doing("make a pipe")?;
        stdio.outputs = [Some(out_r), Some(err_r)];
        theirs[1] = out_w;
        theirs[2] = err_w;
        if cfg.stdin {
            let (in_r, in_w) = sys::pipe().doing("make a pipe")?;
            theirs[0] = in_r;
            stdio.stdin = Some(in_w);
        }
    }
    let mut args: [&CStr; 15] = [
        cfg.runc,
        c"--root",
        cfg.runc_root,
        c"--log",
        c"runc.log",
        c"--log-format",
        c"json",
        c"run",
        c"--detach",
        c"--bundle",
        cfg.bundle,
        cfg.id,
        c"",
        c"",
        c"",
    ];
    let mut argc = 12;
    if cfg.tty {
        args[11] = c"--console-socket";
        args[12] = c"console.sock";
        args[13] = cfg.id;
        argc = 14;
    }
    let runc = sys::fork().doing("fork")?;
    if runc == 0 {
        // The shim's log, kept past the redirections for an exec failure's words.
        let log = sys::dup_cloexec(2).unwrap_or(2);
        for (fd, target) in theirs.iter().zip(0..) {
            if sys::dup2(*fd, target).is_err() {
                sys::exit(127);
            }
        }
        // runc and the container start with the signal state a process normally has.
        let _ = sys::set_signal_ignored(sys::SIGPIPE, false);
        sys::unblock_signals();
        // SAFETY: passed on from the caller.
        let e = unsafe { sys::execve(cfg.runc, &args[..argc], envp) };
        let mut line = Buf::<256>::new();
        line.push(b"exec ")
            .push(cfg.runc.to_bytes())
            .push(b": ")
            .push_str(errno_text(e))
            .push(b"\n");
        let _ = sys::write_all(log, line.as_bytes());
        sys::exit(127);
    }
    // The write ends now belong to runc and the container: EOF on the read ends means the
    // container closed its side.
    for fd in theirs {
        if fd != null {
            sys::close(fd);
        }
    }
    sys::close(null);
    let status = loop {
        match sys::wait(runc, false).doing("wait for runc")? {
            Some((p, status)) if p == runc => break status,
            _ => continue,
        }
    };
    if status != sys::Exit::Code(0) {
        start_failed();
        return Err(Failure {
            what: "runc run",
            cause: Cause::Exit(status),
        });
    }
    if let Some(listener) = console_listener {
        // (A terminal's stdin is a second descriptor of it, so closing that leaves it open.)
        let master = receive_console(listener)?;
        let _ = sys::unlink(c"console.sock");
        stdio.outputs[0] = Some(master);
        stdio.console = Some(master);
        if cfg.stdin {
            stdio.stdin = Some(sys::dup(master).doing("dup the console")?);
        }
    }
    if let Some(w) = stdio.stdin {
        sys::set_nonblocking(w).doing("make stdin non-blocking")?;
    }
    Ok(stdio)
}

/// Takes the terminal runc sent to `console.sock`; runc has exited, so it is there or never
/// comes.
fn receive_console(listener: Fd) -> Result<Fd, Failure> {
    let mut wait = [PollFd {
        fd: listener,
        events: POLLIN,
        revents: 0,
    }];
    if sys::poll(&mut wait, 5000).doing("wait for the console")? == 0 {
        return Err(Failure {
            what: "wait for the console",
            cause: Cause::Errno(sys::ETIMEDOUT),
        });
    }
    let conn = sys::accept(listener, false).doing("accept on console.sock")?;
    let master = sys::receive_fd(conn).doing("receive the console");
    sys::close(conn);
    sys::close(listener);
    master?.ok_or(Failure::new("runc sent no console"))
}

/// Records a failed start as containerd reports it (exit code 128, reason StartError); the
/// agent adds runc's message from its log and removes what runc left.
fn start_failed() {
    let mut record = Buf::<256>::new();
    record
        .push(b"{\"exit_code\":128,\"finished_at\":")
        .push_u64(sys::clock(true))
        .push(b",\"reason\":\"StartError\",\"message\":null}\n");
    let _ = write_atomic(c"exit.json", c"exit.json.tmp", record.as_bytes());
}

/// The container's init: `runc run --detach` leaves it orphaned and the shim, a subreaper with
/// no other child, adopts it. Read from /proc rather than runc's `--pid-file`, which runc writes
/// with O_SYNC (a disk flush on every start).
fn adopted_child() -> Result<i32, Failure> {
    let mut path = Buf::<64>::new();
    let me = sys::getpid() as u64;
    path.push(b"/proc/self/task/")
        .push_u64(me)
        .push(b"/children");
    let mut buf = [0u8; 256];
    let text = read_file(path.cstr().doing("read children")?, &mut buf).doing("read children")?;
    let mut children = text::fields(text).filter_map(|f| text::parse_u64(f));
    match (children.next(), children.next()) {
        (Some((pid, _)), None) => Ok(pid as i32),
        _ => Err(Failure::new(
            "runc left other processes to the shim than the container's init alone",
        )),
    }
}

/// Field 22 (start time in clock ticks) of `/proc/<pid>/stat`.
fn pid_start_time(pid: i32) -> Option<u64> {
    let mut path = Buf::<64>::new();
    path.push(b"/proc/").push_u64(pid as u64).push(b"/stat");
    let mut buf = [0u8; 1024];
    let stat = read_file(path.cstr().ok()?, &mut buf).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after the last ')'
    // are plain. Field 3 is the first after it, so field 22 is the 20th.
    let rest = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
    text::fields(rest)
        .nth(19)
        .and_then(text::parse_u64)
        .map(|(n, _)| n)
}

/// Whether the kernel's OOM killer struck in the container's memory cgroup (v1, then v2).
fn oom_killed(cgroups_path: &CStr) -> bool {
    let rel = cgroups_path.to_bytes();
    let rel = &rel[rel.iter().take_while(|b| **b == b'/').count()..];
    for (root, file) in [
        (&b"/sys/fs/cgroup/memory/"[..], &b"/memory.oom_control"[..]),
        (b"/sys/fs/cgroup/", b"/memory.events"),
    ] {
        let mut path = Buf::<4096>::new();
        path.push(root).push(rel).push(file);
        let Ok(p) = path.cstr() else { continue };
        let mut buf = [0u8; 2048];
        if let Ok(text) = read_file(p, &mut buf) {
            return text.split(|b| *b == b'\n').any(|l| {
                l.strip_prefix(b"oom_kill ")
                    .and_then(text::parse_u64)
                    .is_some_and(|(n, _)| n > 0)
            });
        }
    }
    false
}

/// Reads a small file whole (as much as fits in `buf`).
fn read_file<'b>(path: &CStr, buf: &'b mut [u8]) -> sys::Result<&'b [u8]> {
    let fd = sys::open(path, sys::O_RDONLY, 0)?;
    let mut len = 0;
    let result = loop {
        match sys::read(fd, &mut buf[len..]) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    sys::close(fd);
    result.map(|()| &buf[..len])
}

/// Writes a file whole through a temporary one, so a reader sees the old version or the new.
fn write_atomic(path: &CStr, tmp: &CStr, bytes: &[u8]) -> sys::Result<()> {
    let fd = sys::open(tmp, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644)?;
    let written = sys::write_all(fd, bytes);
    sys::close(fd);
    written?;
    sys::rename(tmp, path, true)
}

const MAX_CLIENTS: usize = 16;
/// Each attached client's socket buffer: output it has not read yet waits there, and a client
/// that falls further behind is let go rather than stall the container's log.
const CLIENT_BUFFER: i32 = 4 << 20;
const MAX_RESIZES: usize = 4;
/// How long output may keep coming after the container's init exited (from a process that
/// escaped with a copy of its pipes).
const DRAIN_NANOS: u64 = 2_000_000_000;

/// The running container's side: its output, its input and its end.
struct Monitor {
    log: CriLog,
    splitters: [LineSplitter; 2],
    outputs: [Option<Fd>; 2],
    /// Connections to `attach.sock`.
    clients: [Option<Fd>; MAX_CLIENTS],
    attach_listener: Fd,
    stdin: StdinCopy,
    resize_listener: Option<Fd>,
    /// Connections to `resize.sock`, each with the start of a line.
    resizes: [Option<(Fd, Buf<32>)>; MAX_RESIZES],
    console: Option<Fd>,
    children: Fd,
    init: i32,
    /// The init's exit code, and when it was seen.
    exit: Option<(i32, u64)>,
    /// Where output is read into.
    buf: [u8; 32 * 1024],
}

/// What a `poll` entry stands for.
#[derive(Clone, Copy)]
enum Source {
    Output(usize),
    Client(usize),
    AttachListener,
    StdinListener,
    StdinConn,
    StdinWritable,
    ResizeListener,
    Resize(usize),
    Children,
}

impl Monitor {
    /// Serves the container until its init exits and its output ends; the exit code.
    fn run(&mut self) -> i32 {
        // A child that ended before SIGCHLD was blocked sent its signal for nothing.
        self.reap();
        loop {
            let timeout = match self.exit {
                Some((code, seen)) => {
                    let elapsed = sys::clock(false).saturating_sub(seen);
                    if self.outputs.iter().all(Option::is_none) || elapsed >= DRAIN_NANOS {
                        self.finish();
                        return code;
                    }
                    ((DRAIN_NANOS - elapsed) / 1_000_000) as i32 + 1
                }
                None => -1,
            };
            let mut fds = [PollFd {
                fd: -1,
                events: POLLIN,
                revents: 0,
            }; 40];
            let mut sources = [Source::Children; 40];
            let mut n = 0;
            let mut add = |fd: Option<Fd>, source: Source| {
                if let Some(fd) = fd {
                    fds[n].fd = fd;
                    // A write end reports room, never input.
                    if matches!(source, Source::StdinWritable) {
                        fds[n].events = POLLOUT;
                    }
                    sources[n] = source;
                    n += 1;
                }
            };
            add(Some(self.children), Source::Children);
            for (i, fd) in self.outputs.iter().enumerate() {
                add(*fd, Source::Output(i));
            }
            for (i, fd) in self.clients.iter().enumerate() {
                add(*fd, Source::Client(i));
            }
            add(Some(self.attach_listener), Source::AttachListener);
            let (fd, source) = self.stdin.waiting_on();
            add(fd, source);
            add(self.resize_listener, Source::ResizeListener);
            for (i, r) in self.resizes.iter().enumerate() {
                add(r.as_ref().map(|(fd, _)| *fd), Source::Resize(i));
            }
            if sys::poll(&mut fds[..n], timeout).is_err() {
                continue;
            }
            for (fd, source) in fds[..n].iter().zip(sources) {
                if fd.revents & (POLLIN | POLLOUT | POLLHUP | POLLERR) != 0 {
                    self.ready(source);
                }
            }
        }
    }

    fn ready(&mut self, source: Source) {
        match source {
            Source::Children => self.reap(),
            Source::Output(i) => self.copy_output(i),
            Source::Client(i) => {
                // Clients only listen; anything readable means they left.
                if let Some(fd) = self.clients[i].take() {
                    sys::close(fd);
                }
            }
            Source::AttachListener => {
                if let Ok(conn) = sys::accept(self.attach_listener, true) {
                    let _ = sys::set_send_buffer(conn, CLIENT_BUFFER);
                    match self.clients.iter_mut().find(|c| c.is_none()) {
                        Some(slot) => *slot = Some(conn),
                        None => sys::close(conn),
                    }
                }
            }
            Source::StdinListener => self.stdin.accept(),
            Source::StdinConn => self.stdin.read(),
            Source::StdinWritable => self.stdin.flush(),
            Source::ResizeListener => {
                if let Some(conn) = self
                    .resize_listener
                    .and_then(|l| sys::accept(l, false).ok())
                {
                    match self.resizes.iter_mut().find(|r| r.is_none()) {
                        Some(slot) => *slot = Some((conn, Buf::new())),
                        None => sys::close(conn),
                    }
                }
            }
            Source::Resize(i) => self.resize(i),
        }
    }

    /// Reaps every child that ended; the init's end starts the drain of its output.
    fn reap(&mut self) {
        let mut info = [0u8; 128];
        while sys::read(self.children, &mut info).is_ok() {}
        while let Ok(Some((pid, status))) = sys::wait(-1, true) {
            if pid == self.init {
                self.exit = Some((status.code(), sys::clock(false)));
            }
        }
    }

    fn copy_output(&mut self, i: usize) {
        let Some(fd) = self.outputs[i] else { return };
        let buf = &mut self.buf;
        let n = match sys::read(fd, buf) {
            Ok(n) => n,
            // A terminal shares its descriptor with the non-blocking stdin.
            Err(sys::EAGAIN) => return,
            // Any other error is an end too (EIO: a terminal's other side closed).
            Err(_) => 0,
        };
        let stream = if i == 0 { "stdout" } else { "stderr" };
        let log = &mut self.log;
        let mut write = |partial: bool, head: &[u8], tail: &[u8]| {
            let _ = log.write_entry(stream, partial, head, tail);
        };
        if n == 0 {
            self.splitters[i].finish(&mut write);
            self.outputs[i] = None;
            if self.console != Some(fd) {
                sys::close(fd);
            }
            return;
        }
        let data = &buf[..n];
        self.splitters[i].feed(data, &mut write);
        let mut header = [i as u8 + 1, 0, 0, 0, 0];
        header[1..].copy_from_slice(&(n as u32).to_be_bytes());
        for slot in &mut self.clients {
            if let Some(c) = *slot
                && !(sent_whole(c, &header) && sent_whole(c, data))
            {
                sys::close(c);
                *slot = None;
            }
        }
    }

    /// Applies `<cols> <rows>` lines to the terminal.
    fn resize(&mut self, i: usize) {
        let Some((conn, line)) = self.resizes[i].as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = sys::read(*conn, &mut buf).unwrap_or(0);
        if n == 0 {
            sys::close(*conn);
            self.resizes[i] = None;
            return;
        }
        for &b in &buf[..n] {
            if b != b'\n' {
                line.push(&[b]);
                continue;
            }
            {
                let mut parts = text::fields(line.as_bytes()).map(text::parse_u64);
                if let (Some(Some((cols, _))), Some(Some((rows, _))), Some(console)) =
                    (parts.next(), parts.next(), self.console)
                {
                    let _ = sys::set_winsize(console, cols as u16, rows as u16);
                }
            }
            line.clear();
        }
    }

    /// The end: what is held of unterminated lines goes to the log.
    fn finish(&mut self) {
        for (i, splitter) in self.splitters.iter_mut().enumerate() {
            let stream = if i == 0 { "stdout" } else { "stderr" };
            let log = &mut self.log;
            splitter.finish(|partial, head, tail| {
                let _ = log.write_entry(stream, partial, head, tail);
            });
        }
        if let Some(console) = self.console {
            sys::close(console);
        }
    }
}

/// The container's stdin and the one `stdin.sock` connection at a time copied into it. The
/// container's side is non-blocking: a container that does not read its stdin must not stop
/// the shim from copying its output.
struct StdinCopy {
    listener: Option<Fd>,
    conn: Option<Fd>,
    writer: Option<Fd>,
    /// With stdinOnce, stdin closes when the first connection ends.
    once: bool,
    buf: [u8; 8192],
    /// What of `buf` is still to be written.
    pending: (usize, usize),
    /// Close the writer once the pending bytes are out.
    closing: bool,
}

impl StdinCopy {
    /// What to wait for: room in the container's stdin while bytes are pending, else bytes
    /// from the connection, else a connection.
    fn waiting_on(&self) -> (Option<Fd>, Source) {
        if self.pending.0 < self.pending.1 {
            (self.writer, Source::StdinWritable)
        } else if self.conn.is_some() {
            (self.conn, Source::StdinConn)
        } else {
            (self.listener, Source::StdinListener)
        }
    }

    fn accept(&mut self) {
        if let Some(l) = self.listener {
            self.conn = sys::accept(l, false).ok();
        }
    }

    fn read(&mut self) {
        let Some(conn) = self.conn else { return };
        match sys::read(conn, &mut self.buf) {
            Ok(n) if n > 0 => {
                self.pending = (0, n);
                self.flush();
            }
            _ => {
                sys::close(conn);
                self.conn = None;
                if self.once {
                    if let Some(l) = self.listener.take() {
                        sys::close(l);
                    }
                    self.closing = true;
                    self.flush();
                }
            }
        }
    }

    fn flush(&mut self) {
        let Some(w) = self.writer else {
            self.pending = (0, 0);
            return;
        };
        while self.pending.0 < self.pending.1 {
            match sys::write(w, &self.buf[self.pending.0..self.pending.1]) {
                Ok(n) => self.pending.0 += n,
                Err(sys::EAGAIN) => return,
                // The container closed its stdin: nothing more can go in.
                Err(_) => {
                    self.pending = (0, 0);
                    self.closing = true;
                }
            }
        }
        if self.closing {
            self.writer = None;
            sys::close(w);
        }
    }
}

/// Whether a non-blocking client's socket took all of `data`: if its buffer is full, the
/// client is too far behind to keep.
fn sent_whole(fd: Fd, data: &[u8]) -> bool {
    matches!(sys::send(fd, data), Ok(n) if n == data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_and_why() {
        let text = |f: Failure| {
            let mut b = Buf::<128>::new();
            f.push_to(&mut b);
            String::from_utf8(b.as_bytes().to_vec()).unwrap()
        };
        let runc = |exit| Failure {
            what: "runc run",
            cause: Cause::Exit(exit),
        };
        assert_eq!(
            text(runc(sys::Exit::Code(127))),
            "runc run: exit status 127"
        );
        assert_eq!(
            text(runc(sys::Exit::Signal(9))),
            "runc run: killed by signal 9"
        );
        let open = Failure {
            what: "open the log",
            cause: Cause::Errno(Errno(13)),
        };
        assert_eq!(text(open), "open the log: permission denied (os error 13)");
        assert_eq!(
            text(Failure::new("runc sent no console")),
            "runc sent no console"
        );
    }

    #[test]
    fn arguments_parse() {
        let args = [
            c"/d",
            c"id",
            c"runc",
            c"/r",
            c"/b",
            c"/l/0.log",
            c"10485760",
            c"5",
            c"it",
            c"/cg",
        ];
        let cfg = Config::parse(&args).unwrap();
        assert_eq!(cfg.log_max_bytes, 10 * 1024 * 1024);
        assert_eq!(cfg.log_max_files, 5);
        assert!(cfg.stdin && cfg.tty && !cfg.stdin_once);
        assert!(Config::parse(&args[..9]).is_none());
        let mut bad = args;
        bad[6] = c"10x";
        assert!(Config::parse(&bad).is_none());
    }
}
