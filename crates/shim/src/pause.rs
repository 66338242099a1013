//! The holder of a Pod's namespaces (kubelet's pause container, without the container),
//! started by the agent as `tatami-shim pause <flags> <hostname>` (flags: `n` network, `i`
//! IPC, `u` UTS; at least one):
//!
//! 1. forks and lets the first process exit at once, so the agent reaps it and the holder is
//!    adopted by init, outliving the agent;
//! 2. starts a session of its own, unshares the namespaces and sets the hostname in the new
//!    UTS namespace;
//! 3. tells the agent `ready <pid>` or `error <message>` on its stdout, then closes it;
//! 4. sleeps until it is killed. The namespaces live as long as it does: containers join them
//!    through `/proc/<pid>/ns/*`, so they need no mount on the node.

use crate::log::errno_text;
use crate::sys::{self, Errno};
use crate::text::Buf;
use core::ffi::CStr;

/// Runs the holder; the process's exit code (it returns only on a failure).
pub fn main(args: &[&CStr]) -> i32 {
    let [flags, hostname] = *args else {
        let _ = sys::write_all(2, b"usage: tatami-shim pause <flags: n i u> <hostname>\n");
        return 2;
    };
    let Some(namespaces) = clone_flags(flags.to_bytes()) else {
        let _ = sys::write_all(2, b"tatami-shim pause: flags are n, i and u\n");
        return 2;
    };
    match sys::fork() {
        Ok(0) => {}
        Ok(_) => return 0,
        Err(e) => return fail(b"fork", e),
    }
    // A session of its own: signals sent to the agent's process group or terminal do not
    // reach it.
    let _ = sys::setsid();
    if let Err(e) = sys::unshare(namespaces) {
        return fail(b"unshare", e);
    }
    if namespaces & sys::CLONE_NEWUTS != 0
        && let Err(e) = sys::sethostname(hostname.to_bytes())
    {
        return fail(b"sethostname", e);
    }
    let mut line = Buf::<32>::new();
    line.push(b"ready ")
        .push_u64(sys::getpid() as u64)
        .push(b"\n");
    let _ = sys::write_all(1, line.as_bytes());
    if let Ok(null) = sys::open(c"/dev/null", sys::O_RDWR, 0) {
        for fd in 0..3 {
            let _ = sys::dup2(null, fd);
        }
        sys::close(null);
    }
    loop {
        sys::pause();
    }
}

/// The unshare(2) flags for the letters of `flags`; None for an unknown letter or none.
fn clone_flags(flags: &[u8]) -> Option<usize> {
    let mut out = 0;
    for f in flags {
        out |= match f {
            b'n' => sys::CLONE_NEWNET,
            b'i' => sys::CLONE_NEWIPC,
            b'u' => sys::CLONE_NEWUTS,
            _ => return None,
        };
    }
    (out != 0).then_some(out)
}

fn fail(what: &[u8], e: Errno) -> i32 {
    let mut line = Buf::<128>::new();
    line.push(b"error ")
        .push(what)
        .push(b": ")
        .push(errno_text(e).as_bytes())
        .push(b"\n");
    let _ = sys::write_all(1, line.as_bytes());
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_namespaces() {
        assert_eq!(
            clone_flags(b"niu"),
            Some(sys::CLONE_NEWNET | sys::CLONE_NEWIPC | sys::CLONE_NEWUTS)
        );
        assert_eq!(clone_flags(b"i"), Some(sys::CLONE_NEWIPC));
        assert_eq!(clone_flags(b""), None);
        assert_eq!(clone_flags(b"nx"), None);
    }
}
