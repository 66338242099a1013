//! Reading the CRI log files the monitor writes, as kubelet's `kuberuntime/logs` does.
//!
//! Each line of a file is `<RFC3339Nano> <stdout|stderr> <F|P> <text>`: `F` ends a log line, `P`
//! is a piece of a longer one (the newline is the writer's, not the program's). [`LogOptions`]
//! are the `pods/log` query options; [`LogWriter`] turns parsed lines into what the client sees;
//! [`stream_logs`] reads a file from the right place and, with `follow`, keeps reading across
//! rotation until the container has exited and its file is drained.

use bytes::Bytes;
use jiff::Timestamp;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// What went wrong reading logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A query option has a bad value (a 400 for the client).
    #[error("invalid value for {option}: {value:?}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// What was given.
        value: String,
    },
    /// The log file could not be read.
    #[error("cannot read log file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of the file is not in the CRI format.
    #[error("malformed CRI log line: {reason}")]
    Malformed {
        /// Which part is wrong.
        reason: &'static str,
    },
}

/// The `pods/log` options, as kubelet takes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
    /// Only the last this many lines of the file (before `since`).
    pub tail_lines: Option<u64>,
    /// The previous instance of the container instead of the current one.
    pub previous: bool,
    /// Prefix every line with its RFC3339Nano timestamp.
    pub timestamps: bool,
    /// Only lines written at or after this instant (`sinceSeconds` or `sinceTime`).
    pub since: Option<Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Parses the query parameters kubectl sends, `now` being the reference of `sinceSeconds`.
    pub fn from_query(pairs: &[(String, String)], now: Timestamp) -> Result<Self, LogError> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let flag = |k: &'static str| -> Result<bool, LogError> {
            match get(k) {
                None | Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") => Ok(true),
                Some(v) => Err(LogError::BadOption {
                    option: k,
                    value: v.to_string(),
                }),
            }
        };
        let number = |k: &'static str| -> Result<Option<i64>, LogError> {
            get(k)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| LogError::BadOption {
                        option: k,
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        let mut opts = LogOptions {
            follow: flag("follow")?,
            previous: flag("previous")?,
            timestamps: flag("timestamps")?,
            // Kubernetes treats a negative tail as "everything" in the kubelet reader.
            tail_lines: number("tailLines")?.and_then(|n| u64::try_from(n).ok()),
            limit_bytes: number("limitBytes")?.and_then(|n| u64::try_from(n).ok()),
            since: None,
        };
        if let Some(secs) = number("sinceSeconds")? {
            let back = jiff::SignedDuration::from_secs(secs.max(0));
            opts.since = Some(now.checked_sub(back).unwrap_or(Timestamp::MIN));
        } else if let Some(t) = get("sinceTime") {
            opts.since = Some(t.parse().map_err(|_| LogError::BadOption {
                option: "sinceTime",
                value: t.to_string(),
            })?);
        }
        Ok(opts)
    }
}

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// The program's standard output.
    Stdout,
    /// The program's standard error.
    Stderr,
}

/// One line of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// When the monitor read it.
    pub timestamp: Timestamp,
    /// Where it came from.
    pub stream: LogStream,
    /// A piece of a longer line (tag `P`) rather than its end (tag `F`).
    pub partial: bool,
    /// The text, without the file's newline.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (with or without its trailing newline).
pub fn parse_cri_line(line: &[u8]) -> Result<CriLine<'_>, LogError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let ts = fields.next().ok_or(LogError::Malformed {
        reason: "no timestamp",
    })?;
    let timestamp = std::str::from_utf8(ts)
        .ok()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .ok_or(LogError::Malformed {
            reason: "bad timestamp",
        })?;
    let stream = match fields.next() {
        Some(b"stdout") => LogStream::Stdout,
        Some(b"stderr") => LogStream::Stderr,
        _ => {
            return Err(LogError::Malformed {
                reason: "unknown stream",
            });
        }
    };
    let partial = match fields.next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(LogError::Malformed { reason: "bad tag" }),
    };
    Ok(CriLine {
        timestamp,
        stream,
        partial,
        content: fields.next().unwrap_or(b""),
    })
}

/// Formats a timestamp as Kubernetes prints log timestamps: RFC3339 in UTC with nine fraction
/// digits, so that lines sort as text.
pub fn format_timestamp(t: Timestamp) -> String {
    format!("{:.9}", t).replace("+00:00", "Z")
}

/// Turns parsed log lines into client output, applying `since`, `timestamps` and
/// `limitBytes` (tail is applied where the reading starts).
#[derive(Debug)]
pub struct LogWriter {
    timestamps: bool,
    since: Option<Timestamp>,
    remaining: Option<u64>,
    /// The previous line was a partial one, so this one continues it (no new prefix).
    in_partial: bool,
}

impl LogWriter {
    /// A writer for `opts`.
    pub fn new(opts: &LogOptions) -> Self {
        LogWriter {
            timestamps: opts.timestamps,
            since: opts.since,
            remaining: opts.limit_bytes,
            in_partial: false,
        }
    }

    /// Whether `limitBytes` has been reached.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Appends what one file line shows to `out`. Malformed lines are skipped, as kubelet does.
    pub fn write_line(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        if self.done() {
            return;
        }
        let Ok(line) = parse_cri_line(raw) else {
            tracing::debug!("skipping a malformed log line");
            return;
        };
        if self.since.is_some_and(|since| line.timestamp < since) {
            return;
        }
        let mut text = Vec::with_capacity(line.content.len() + 40);
        if self.timestamps && !self.in_partial {
            text.extend_from_slice(format_timestamp(line.timestamp).as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(line.content);
        if !line.partial {
            text.push(b'\n');
        }
        self.in_partial = line.partial;
        if let Some(left) = self.remaining.as_mut() {
            let take = text.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            text.truncate(take);
            *left -= take as u64;
        }
        out.extend_from_slice(&text);
    }
}

/// The byte offset where the last `n` lines of `file` start (0 when it has fewer).
pub async fn tail_start(file: &mut tokio::fs::File, n: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let len = file.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; BLOCK as usize];
    // The newline that ends the last line does not start a line; skip it.
    let mut skip_last = true;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(chunk).await?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b != b'\n' {
                skip_last = false;
                continue;
            }
            if skip_last && start + i as u64 == len - 1 {
                skip_last = false;
                continue;
            }
            newlines += 1;
            if newlines == n {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// How often a follower looks for new lines, a rotation, or the container's end.
const POLL: Duration = Duration::from_millis(100);

/// Tells a follower whether the container still runs (and so more lines may come).
pub type StillRunning = Box<dyn FnMut() -> futures::future::BoxFuture<'static, bool> + Send>;

/// Reads `path` as `opts` say and sends the output in chunks (one per line or batch of lines)
/// until done, the container has exited and its file is drained (with `follow`), or the receiver
/// is gone. `running` is consulted only when following.
pub async fn stream_logs(
    path: PathBuf,
    opts: LogOptions,
    mut running: StillRunning,
    out: mpsc::Sender<Result<Bytes, LogError>>,
) {
    if let Err(e) = follow_file(&path, &opts, &mut running, &out).await {
        let _ = out.send(Err(e)).await;
    }
}

async fn open(path: &Path) -> Result<(tokio::fs::File, u64), LogError> {
    let read = |source| LogError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read)?;
    let ino = file.metadata().await.map_err(read)?.ino();
    Ok((file, ino))
}

async fn follow_file(
    path: &Path,
    opts: &LogOptions,
    running: &mut StillRunning,
    out: &mpsc::Sender<Result<Bytes, LogError>>,
) -> Result<(), LogError> {
    let read = |source| LogError::Read {
        path: path.to_path_buf(),
        source,
    };
    let (mut file, mut ino) = open(path).await?;
    let start = match opts.tail_lines {
        Some(n) => tail_start(&mut file, n).await.map_err(read)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start)).await.map_err(read)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut pos = start;
    let mut writer = LogWriter::new(opts);
    let mut line = Vec::new();
    let mut batch = Vec::new();
    // Seen the container stopped once: one more pass drains what it wrote last.
    let mut stopping = false;
    // Saw the file rotated once: one more pass over the old file first.
    let mut draining_old = false;
    let mut polls = 0u32;
    loop {
        let n = reader.read_until(b'\n', &mut line).await.map_err(read)?;
        pos += n as u64;
        if line.ends_with(b"\n") {
            writer.write_line(&line, &mut batch);
            line.clear();
            // Send what we have whenever the file has nothing more buffered, so a follower
            // gets every line as soon as it is written and a large read goes in big chunks.
            let flush = reader.buffer().is_empty() || batch.len() > 32 * 1024;
            if !batch.is_empty()
                && flush
                && out
                    .send(Ok(Bytes::from(std::mem::take(&mut batch))))
                    .await
                    .is_err()
            {
                return Ok(());
            }
            if writer.done() {
                break;
            }
            continue;
        }
        // End of the file, with `line` holding an unfinished line (if any).
        if !opts.follow {
            if !line.is_empty() {
                writer.write_line(&line, &mut batch);
            }
            break;
        }
        if stopping {
            break;
        }
        // A new file under the same name means the writer rotated: what the old one held is
        // read, so go on from the start of the new one. A shorter file was truncated in place.
        match tokio::fs::metadata(path).await {
            // Lines may have reached the old file between our last read and the rename: read
            // it to its end once more before moving on.
            Ok(meta) if meta.ino() != ino && !draining_old => {
                draining_old = true;
                continue;
            }
            Ok(meta) if meta.ino() != ino => {
                draining_old = false;
                let (f, i) = open(path).await?;
                reader = BufReader::with_capacity(64 * 1024, f);
                ino = i;
                pos = 0;
                line.clear();
                continue;
            }
            Ok(meta) if meta.len() < pos => {
                reader.seek(SeekFrom::Start(0)).await.map_err(read)?;
                pos = 0;
                line.clear();
                continue;
            }
            _ => {}
        }
        polls += 1;
        if polls % 5 == 1 && !running().await {
            // Read once more: the last lines may have landed after the previous read.
            stopping = true;
            continue;
        }
        tokio::time::sleep(POLL).await;
    }
    if !batch.is_empty() {
        let _ = out.send(Ok(Bytes::from(batch))).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const FILE: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02Z stdout P thr
2024-05-01T10:00:02.1Z stdout P e
2024-05-01T10:00:02.2Z stdout F e
2024-05-01T10:00:03Z stdout F
2024-05-01T10:00:04Z stdout F four
";

    fn write_all(opts: &LogOptions, text: &str) -> String {
        let mut w = LogWriter::new(opts);
        let mut out = Vec::new();
        for l in text.split_inclusive('\n') {
            w.write_line(l.as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_lines() {
        let l = parse_cri_line(b"2024-05-01T10:00:00.5+02:00 stderr P a b \n").unwrap();
        assert_eq!(l.timestamp, ts("2024-05-01T08:00:00.5Z"));
        assert_eq!(l.stream, LogStream::Stderr);
        assert!(l.partial);
        assert_eq!(l.content, b"a b ");
        assert_eq!(
            parse_cri_line(b"2024-05-01T10:00:00Z stdout F")
                .unwrap()
                .content,
            b""
        );
        assert!(parse_cri_line(b"garbage").is_err());
        assert!(parse_cri_line(b"2024-05-01T10:00:00Z stdin F x").is_err());
        assert!(parse_cri_line(b"2024-05-01T10:00:00Z stdout X x").is_err());
    }

    #[test]
    fn joins_partials_and_strips_prefixes() {
        let plain = write_all(&LogOptions::default(), FILE);
        assert_eq!(plain, "one\ntwo\nthree\n\nfour\n");
    }

    #[test]
    fn timestamps_once_per_joined_line() {
        let opts = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        let out = write_all(&opts, FILE);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "2024-05-01T10:00:00.000000001Z one");
        assert_eq!(lines[1], "2024-05-01T10:00:01.500000000Z two");
        assert_eq!(lines[2], "2024-05-01T10:00:02.000000000Z three");
        assert_eq!(lines[3], "2024-05-01T10:00:03.000000000Z ");
    }

    #[test]
    fn since_and_limit() {
        let opts = LogOptions {
            since: Some(ts("2024-05-01T10:00:01.5Z")),
            ..Default::default()
        };
        assert_eq!(write_all(&opts, FILE), "two\nthree\n\nfour\n");
        let opts = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(write_all(&opts, FILE), "one\ntw");
    }

    #[test]
    fn options_from_query() {
        let q = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap();
        let now = ts("2024-05-01T10:00:00Z");
        let o = LogOptions::from_query(
            &q("follow=true&tailLines=10&timestamps=true&sinceSeconds=60&limitBytes=5"),
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(10));
        assert_eq!(o.limit_bytes, Some(5));
        assert_eq!(o.since, Some(ts("2024-05-01T09:59:00Z")));
        let o = LogOptions::from_query(&q("sinceTime=2024-05-01T09%3A00%3A00Z"), now).unwrap();
        assert_eq!(o.since, Some(ts("2024-05-01T09:00:00Z")));
        assert!(LogOptions::from_query(&q("tailLines=x"), now).is_err());
        assert!(LogOptions::from_query(&q("follow=maybe"), now).is_err());
    }

    async fn collect(path: PathBuf, opts: LogOptions, running: StillRunning) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(stream_logs(path, opts, running, tx));
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        task.await.unwrap();
        String::from_utf8(out).unwrap()
    }

    fn never_running() -> StillRunning {
        Box::new(|| Box::pin(async { false }))
    }

    #[tokio::test]
    async fn tail_counts_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, FILE).unwrap();
        let tail = |n| LogOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(
            collect(path.clone(), tail(2), never_running()).await,
            "\nfour\n"
        );
        assert_eq!(collect(path.clone(), tail(0), never_running()).await, "");
        assert_eq!(
            collect(path.clone(), tail(100), never_running()).await,
            "one\ntwo\nthree\n\nfour\n"
        );
        // A last line without its newline still counts as a line.
        std::fs::write(
            &path,
            "2024-05-01T10:00:00Z stdout F a\n2024-05-01T10:00:00Z stdout F b",
        )
        .unwrap();
        assert_eq!(collect(path.clone(), tail(1), never_running()).await, "b\n");
        // Tails larger than one read block.
        let mut big = String::new();
        for i in 0..5000 {
            big.push_str(&format!("2024-05-01T10:00:00Z stdout F line {i}\n"));
        }
        std::fs::write(&path, &big).unwrap();
        let out = collect(path.clone(), tail(3000), never_running()).await;
        assert_eq!(out.lines().count(), 3000);
        assert!(out.starts_with("line 2000\n"));
    }

    #[tokio::test]
    async fn follow_across_rotation_until_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-05-01T10:00:00Z stdout F first\n").unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let running: StillRunning = Box::new(move || {
            let v = flag.load(Ordering::SeqCst);
            Box::pin(async move { v })
        });
        let (tx, mut rx) = mpsc::channel(16);
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let task = tokio::spawn(stream_logs(path.clone(), opts, running, tx));
        assert_eq!(&rx.recv().await.unwrap().unwrap()[..], b"first\n");
        // Half a line, then its end: nothing is sent until the line is whole.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"2024-05-01T10:00:01Z stdout F sec").unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        f.write_all(b"ond\n").unwrap();
        assert_eq!(&rx.recv().await.unwrap().unwrap()[..], b"second\n");
        // Rotation: the old file moves away, a new one takes its name.
        f.write_all(b"2024-05-01T10:00:02Z stdout F third\n")
            .unwrap();
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        std::fs::write(&path, "2024-05-01T10:00:03Z stdout F fourth\n").unwrap();
        let mut got = Vec::new();
        while got.len() < b"third\nfourth\n".len() {
            got.extend_from_slice(&rx.recv().await.unwrap().unwrap());
        }
        assert_eq!(got, b"third\nfourth\n");
        // The container exits after writing one last line: it is sent, then the stream ends.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"2024-05-01T10:00:04Z stdout F last\n")
            .unwrap();
        alive.store(false, Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(c) = rx.recv().await {
            rest.extend_from_slice(&c.unwrap());
        }
        assert_eq!(rest, b"last\n");
        task.await.unwrap();
    }
}
