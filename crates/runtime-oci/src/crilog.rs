//! The CRI log format the shim writes and `kubectl logs` reads:
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`, where `P` marks a piece of a longer
//! line (over 16 KiB) or a last line that ended without a newline, and `F` ends a line.
//! Files rotate like kubelet's: the live file keeps its name, rotated ones get
//! `.<YYYYmmdd-HHMMSS>` appended (kubelet's timestamp format, uncompressed here), and only the
//! newest `max_files` files (the live one included) are kept.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest line written as one entry; longer ones are split into `P` pieces (containerd's
/// and CRI-O's default).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// A Go `time.RFC3339Nano` timestamp in UTC: trailing zeros of the fraction trimmed.
pub(crate) fn timestamp_now() -> String {
    rfc3339_nano(jiff::Timestamp::now())
}

/// Formats a timestamp as Go's `time.RFC3339Nano` does.
pub(crate) fn rfc3339_nano(t: jiff::Timestamp) -> String {
    let secs = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.subsec_nanosecond();
    if nanos == 0 {
        return format!("{secs}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{secs}.{}Z", frac.trim_end_matches('0'))
}

/// One container's log file.
pub(crate) struct CriLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

impl CriLog {
    /// Opens (appending) or creates the log file.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> std::io::Result<CriLog> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLog {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            max_files: max_files.max(1),
        })
    }

    /// Writes one entry. The whole entry goes out in one write, so readers never see half.
    pub fn write_entry(&mut self, stream: &str, partial: bool, text: &[u8]) -> std::io::Result<()> {
        let ts = timestamp_now();
        let mut line = Vec::with_capacity(ts.len() + stream.len() + text.len() + 5);
        line.extend_from_slice(ts.as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_bytes());
        line.extend_from_slice(if partial { b" P " } else { b" F " });
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.max_bytes > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
        let base = self.path.as_os_str().to_string_lossy().into_owned();
        let mut target = PathBuf::from(format!("{base}.{stamp}"));
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{base}.{stamp}.{n:03}"));
            n += 1;
        }
        std::fs::rename(&self.path, &target)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        self.prune()
    }

    /// Removes the oldest rotated files beyond `max_files - 1`.
    fn prune(&self) -> std::io::Result<()> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(());
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        // The stamps sort as text in time order.
        rotated.sort();
        let keep = self.max_files - 1;
        if rotated.len() > keep {
            for old in &rotated[..rotated.len() - keep] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }
}

/// Splits a stream into log entries: whole lines as `F`, pieces of over-long lines as `P`,
/// and a last unterminated line as `P` at the end.
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        LineSplitter { buf: Vec::new() }
    }

    /// Feeds bytes; calls `emit(partial, text)` for every entry that is complete.
    pub fn feed(&mut self, data: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            while line.len() > MAX_LINE {
                emit(true, &line[..MAX_LINE]);
                line = &line[MAX_LINE..];
            }
            emit(false, line);
            start = end + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() > MAX_LINE {
            emit(true, &self.buf[..MAX_LINE]);
            self.buf.drain(..MAX_LINE);
        }
    }

    /// The stream ended: what is left goes out as a partial entry.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if !self.buf.is_empty() {
            emit(true, &self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new();
        for c in chunks {
            s.feed(c, |p, t| out.push((p, t.to_vec())));
        }
        s.finish(|p, t| out.push((p, t.to_vec())));
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
        // Without a newline, the pieces come out as the data arrives.
        let out = split(&[&long[..MAX_LINE + 1]]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(p, _)| *p));
    }

    #[test]
    fn timestamps_look_like_go() {
        let t: jiff::Timestamp = "2024-01-02T03:04:05.120Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "2024-01-02T03:04:05.12Z");
        let t: jiff::Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "2024-01-02T03:04:05Z");
        let now = timestamp_now();
        assert!(now.ends_with('Z') && now.len() >= 20, "{now}");
    }

    #[test]
    fn entries_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut log = CriLog::open(&path, 200, 3).unwrap();
        log.write_entry("stdout", false, b"hello").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let fields: Vec<&str> = text.trim_end().splitn(4, ' ').collect();
        assert_eq!(&fields[1..], &["stdout", "F", "hello"]);
        assert!(fields[0].parse::<jiff::Timestamp>().is_ok());
        for i in 0..40 {
            log.write_entry("stderr", false, format!("line {i}").as_bytes())
                .unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(dir.path().join("c"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"0.log".to_string()));
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("line 39"));
    }
}
