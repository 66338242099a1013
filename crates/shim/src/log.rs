//! The CRI log format that `kubectl logs` reads:
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`, where `P` marks a piece of a longer
//! line (over 16 KiB) or a last line that ended without a newline, and `F` ends a line.
//! Files rotate like kubelet's: the live file keeps its name, rotated ones get
//! `.<YYYYmmdd-HHMMSS>` appended (kubelet's timestamp format, uncompressed here), and only the
//! newest `max_files` files (the live one included) are kept.

use crate::sys::{self, EEXIST, EINVAL, Errno, Fd, Result};
use crate::text::{Buf, Utc};
use core::ffi::CStr;

/// Longest line written as one entry; longer ones are split into `P` pieces (containerd's
/// and CRI-O's default).
pub const MAX_LINE: usize = 16 * 1024;

/// Room for a log file's path and the suffixes rotation adds.
pub type PathBuf = Buf<4096>;

/// One container's log file.
pub struct CriLog {
    path: PathBuf,
    fd: Fd,
    size: u64,
    max_bytes: u64,
    max_files: u64,
}

impl CriLog {
    /// Opens (appending) or creates the log file and the directories above it.
    pub fn open(path: &CStr, max_bytes: u64, max_files: u64) -> Result<CriLog> {
        let mut p = PathBuf::new();
        p.push(path.to_bytes());
        make_parents(&p)?;
        let fd = open_append(&mut p)?;
        Ok(CriLog {
            size: sys::file_size(fd)?,
            path: p,
            fd,
            max_bytes,
            max_files: max_files.max(1),
        })
    }

    /// Writes one entry. The whole entry goes out in one write, so readers never see half.
    /// `head` and `tail` are the text's two parts (a line may start in an earlier read).
    pub fn write_entry(
        &mut self,
        stream: &str,
        partial: bool,
        head: &[u8],
        tail: &[u8],
    ) -> Result<()> {
        let mut prefix = Buf::<64>::new();
        Utc::from_nanos(sys::clock(true)).push_rfc3339_nano(&mut prefix);
        prefix
            .push(b" ")
            .push_str(stream)
            .push(if partial { b" P " } else { b" F " });
        let len = (prefix.len() + head.len() + tail.len() + 1) as u64;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        sys::write_all_vectored(self.fd, &[prefix.as_bytes(), head, tail, b"\n"])?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let base = self.path.len();
        self.path.push(b".");
        Utc::from_nanos(sys::clock(true)).push_compact(&mut self.path);
        let stamped = self.path.len();
        let mut n = 1;
        let mut live = PathBuf::new();
        live.push(&self.path.as_bytes()[..base]);
        let renamed = loop {
            match rename_new(&mut live, &mut self.path) {
                Err(EEXIST) if n < 1000 => {
                    self.path.truncate(stamped);
                    self.path.push(b".").push_padded(n, 3);
                    n += 1;
                }
                r => break r,
            }
        };
        self.path.truncate(base);
        renamed?;
        // The new file first: if it cannot be made, entries keep going to the renamed one.
        let fd = open_append(&mut self.path)?;
        sys::close(core::mem::replace(&mut self.fd, fd));
        self.size = 0;
        // Old files left over are no reason to lose the entry being written.
        let _ = self.prune();
        Ok(())
    }

    /// Removes the oldest rotated files beyond `max_files - 1`. The stamps sort as text in
    /// time order, so the oldest is the smallest name.
    fn prune(&mut self) -> Result<()> {
        let bytes = self.path.as_bytes();
        let slash = bytes.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
        let mut dir = PathBuf::new();
        dir.push(if slash == 0 { b"." } else { &bytes[..slash] });
        let mut prefix = Buf::<512>::new();
        prefix.push(&bytes[slash..]).push(b".");
        loop {
            let mut oldest = Buf::<512>::new();
            let mut count = 0u64;
            for_each_entry(&mut dir, |name| {
                if name.starts_with(prefix.as_bytes()) {
                    count += 1;
                    if oldest.is_empty() || name < oldest.as_bytes() {
                        oldest.clear();
                        oldest.push(name);
                    }
                }
            })?;
            if count < self.max_files {
                return Ok(());
            }
            let mut path = PathBuf::new();
            path.push(dir.as_bytes()).push(b"/").push(oldest.as_bytes());
            sys::unlink(path.cstr()?)?;
        }
    }
}

impl Drop for CriLog {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

/// Renames `from` to `to` unless `to` exists (EEXIST then). Filesystems without
/// RENAME_NOREPLACE (NFS, FUSE) get a check and a plain rename.
fn rename_new(from: &mut PathBuf, to: &mut PathBuf) -> Result<()> {
    match sys::rename(from.cstr()?, to.cstr()?, false) {
        Err(EINVAL) => {
            if sys::open(to.cstr()?, sys::O_RDONLY, 0)
                .map(sys::close)
                .is_ok()
            {
                return Err(EEXIST);
            }
            sys::rename(from.cstr()?, to.cstr()?, true)
        }
        r => r,
    }
}

fn open_append(path: &mut PathBuf) -> Result<Fd> {
    sys::open(
        path.cstr()?,
        sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND,
        0o666,
    )
}

/// `mkdir -p` of the directory that holds `path`.
fn make_parents(path: &PathBuf) -> Result<()> {
    let bytes = path.as_bytes();
    let mut dir = PathBuf::new();
    for (i, _) in bytes
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, b)| **b == b'/')
    {
        dir.clear();
        dir.push(&bytes[..i]);
        match sys::mkdir(dir.cstr()?, 0o755) {
            Ok(()) | Err(EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Calls `f` with the name of every entry of the directory.
fn for_each_entry(dir: &mut PathBuf, mut f: impl FnMut(&[u8])) -> Result<()> {
    let fd = sys::open(dir.cstr()?, sys::O_RDONLY | sys::O_DIRECTORY, 0)?;
    let mut buf = [0u8; 4096];
    let result = loop {
        let n = match sys::getdents(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        // linux_dirent64: ino u64, off i64, reclen u16, type u8, then the NUL-ended name.
        let mut at = 0;
        while at + 19 < n {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            f(name);
            at += reclen;
        }
    };
    sys::close(fd);
    result
}

/// Splits a stream into log entries: whole lines as `F`, pieces of over-long lines as `P`,
/// and a last unterminated line as `P` at the end.
pub struct LineSplitter {
    pending: [u8; MAX_LINE],
    len: usize,
}

impl LineSplitter {
    pub const fn new() -> Self {
        LineSplitter {
            pending: [0; MAX_LINE],
            len: 0,
        }
    }

    /// Feeds bytes; calls `emit(partial, head, tail)` for every entry that is complete, its
    /// text being `head` (held from earlier reads) then `tail`.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(bool, &[u8], &[u8])) {
        loop {
            let newline = data.iter().position(|b| *b == b'\n');
            let mut part = &data[..newline.unwrap_or(data.len())];
            while self.len + part.len() > MAX_LINE {
                let take = MAX_LINE - self.len;
                emit(true, &self.pending[..self.len], &part[..take]);
                self.len = 0;
                part = &part[take..];
            }
            match newline {
                Some(i) => {
                    emit(false, &self.pending[..self.len], part);
                    self.len = 0;
                    data = &data[i + 1..];
                }
                None => {
                    self.pending[self.len..self.len + part.len()].copy_from_slice(part);
                    self.len += part.len();
                    return;
                }
            }
        }
    }

    /// The stream ended: what is left goes out as a partial entry.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8], &[u8])) {
        if self.len > 0 {
            emit(true, &self.pending[..self.len], &[]);
            self.len = 0;
        }
    }
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

/// An error's number, for messages.
pub fn errno_text(e: Errno) -> &'static str {
    match e.0 {
        1 => "operation not permitted",
        2 => "no such file or directory",
        13 => "permission denied",
        17 => "file exists",
        22 => "invalid argument",
        28 => "no space left on device",
        36 => "file name too long",
        110 => "timed out",
        _ => "system error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut s = Box::new(LineSplitter::new());
        let mut push = |p: bool, a: &[u8], b: &[u8]| out.push((p, [a, b].concat()));
        for c in chunks {
            s.feed(c, &mut push);
        }
        s.finish(&mut push);
        out
    }

    #[test]
    fn lines_split_across_reads() {
        let out = split(&[b"hel", b"lo\nwor", b"ld\n\nend"]);
        assert_eq!(
            out,
            vec![
                (false, b"hello".to_vec()),
                (false, b"world".to_vec()),
                (false, b"".to_vec()),
                (true, b"end".to_vec())
            ]
        );
    }

    #[test]
    fn long_lines_become_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut data = long.clone();
        data.push(b'\n');
        let out = split(&[&data]);
        assert_eq!(out.len(), 3);
        assert!(out[0].0 && out[1].0 && !out[2].0);
        assert_eq!(out[2].1.len(), 10);
        // Across reads, a held start joins the rest of its piece.
        let out = split(&[&long[..10], &long[10..MAX_LINE + 1]]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.len(), MAX_LINE);
        assert!(out.iter().all(|(p, _)| *p));
    }

    fn cstring(p: &std::path::Path) -> std::ffi::CString {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
    }

    #[test]
    fn entries_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/d/0.log");
        let mut log = CriLog::open(&cstring(&path), 200, 3).unwrap();
        log.write_entry("stdout", false, b"hel", b"lo").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let fields: Vec<&str> = text.trim_end().splitn(4, ' ').collect();
        assert_eq!(&fields[1..], &["stdout", "F", "hello"]);
        assert!(fields[0].ends_with('Z') && fields[0].len() >= 20, "{text}");
        for i in 0..40 {
            log.write_entry("stderr", false, format!("line {i}").as_bytes(), b"")
                .unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(dir.path().join("c/d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"0.log".to_string()));
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("line 39"));
        // Reopened, it appends.
        drop(log);
        let mut log = CriLog::open(&cstring(&path), 0, 3).unwrap();
        log.write_entry("stdout", true, b"tail", b"").unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with(" stdout P tail\n")
        );
    }
}
