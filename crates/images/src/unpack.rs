//! Unpacking one layer tar into its own directory, in the form overlayfs reads as a lowerdir.
//!
//! Every layer lives in a directory of its own and the runtime stacks them with overlayfs, so
//! the OCI whiteouts are turned into overlayfs's: `.wh.<name>` becomes a character device 0/0
//! named `<name>`, and `.wh..wh..opq` marks its directory with `trusted.overlay.opaque=y`
//! (see the kernel's Documentation/filesystems/overlayfs.rst, "whiteouts and opaque
//! directories"). Because a layer directory holds only its own layer, nothing in it may be
//! reached through a symlink: an entry under a symlinked directory, a `..` component, or a
//! hardlink to outside is refused instead of resolved, so a hostile layer can never write
//! outside its directory. Owners, modes, mtimes, xattrs, hardlinks, symlinks and device nodes
//! are kept (the node runs as root).

use crate::error::{Error, Result};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::lchown;
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Wraps a reader and hashes everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The `sha256:<hex>` digest and length of what was read.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Returns a reader of the uncompressed tar, whatever the blob's compression. The magic bytes
/// decide rather than the media type, because `docker save` archives and some registries label
/// layers loosely.
pub(crate) fn decompressed<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(128 * 1024, reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(reader))
    }
}

/// Unpacks a (possibly compressed) layer into `dest`, which must be an empty directory, and
/// returns the digest of the uncompressed tar (the layer's diff id).
pub fn unpack_layer(blob: impl Read, dest: &Path) -> Result<String> {
    let tar = decompressed(blob).map_err(Error::io("read layer", dest))?;
    let mut hashing = HashingReader::new(tar);
    unpack_tar(&mut hashing, dest)?;
    // The diff id covers the whole stream, including the zero blocks after the last entry.
    io::copy(&mut hashing, &mut io::sink()).map_err(Error::io("read layer", dest))?;
    Ok(hashing.finish().0)
}

/// Unpacks an uncompressed layer tar into `dest`.
pub fn unpack_tar(tar: impl Read, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    // Only root may give files away; unprivileged (tests, tools) we keep everything as ours.
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(Error::io("read layer", dest))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("read layer entry in", dest))?;
        unpack_entry(entry, dest)?;
    }
    Ok(())
}

fn unpack_entry<R: Read>(mut entry: tar::Entry<'_, R>, dest: &Path) -> Result<()> {
    let raw = entry
        .path()
        .map_err(Error::io("read layer entry in", dest))?
        .into_owned();
    let shown = raw.display().to_string();
    let Some(rel) = clean(&raw, &shown)? else {
        // The archive's root (`./`): the layer directory itself stays as we made it.
        return Ok(());
    };
    let name = rel
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let parent = rel.parent().unwrap_or(Path::new(""));
    let parent_dir = ensure_parents(dest, parent, &shown)?;

    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if name == OPAQUE_MARKER {
            xattr::set(&parent_dir, "trusted.overlay.opaque", b"y")
                .map_err(Error::io("mark opaque directory", &parent_dir))?;
        } else if !hidden.starts_with(".wh.") && !hidden.is_empty() {
            // `.wh..wh.*` names other than the opaque marker are AUFS bookkeeping, not files.
            let target = parent_dir.join(hidden);
            remove_existing(&target, false)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| Error::io("make whiteout", &target)(io::Error::from(e)))?;
        }
        return Ok(());
    }

    let target = parent_dir.join(&name);
    let kind = entry.header().entry_type();
    remove_existing(&target, kind.is_dir())?;
    let header_io = |e: io::Error| Error::io("read header of", &target)(e);
    match kind {
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(header_io)?
                .ok_or_else(|| Error::UnsafeEntry {
                    entry: shown.clone(),
                    reason: "hardlink without a target",
                })?
                .into_owned();
            let Some(link_rel) = clean(&link, &shown)? else {
                return Err(Error::UnsafeEntry {
                    entry: shown,
                    reason: "hardlink to the layer root",
                });
            };
            let source = ensure_parents(dest, link_rel.parent().unwrap_or(Path::new("")), &shown)?
                .join(link_rel.file_name().unwrap_or_default());
            fs::hard_link(&source, &target).map_err(Error::io("hardlink", &target))?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let header = entry.header();
            let flag = match kind {
                tar::EntryType::Char => SFlag::S_IFCHR,
                tar::EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            // A fifo's device fields are often left blank rather than zero.
            let (major, minor) = if kind == tar::EntryType::Fifo {
                (0, 0)
            } else {
                (
                    header.device_major().map_err(header_io)?.unwrap_or(0),
                    header.device_minor().map_err(header_io)?.unwrap_or(0),
                )
            };
            let mode = header.mode().map_err(header_io)? & 0o7777;
            mknod(
                &target,
                flag,
                Mode::from_bits_truncate(mode),
                makedev(major.into(), minor.into()),
            )
            .map_err(|e| Error::io("make device node", &target)(io::Error::from(e)))?;
            let uid = header.uid().map_err(header_io)? as u32;
            let gid = header.gid().map_err(header_io)? as u32;
            lchown(&target, Some(uid), Some(gid)).map_err(Error::io("chown", &target))?;
            // mknod applies the umask; set the mode again so it is exactly the archive's.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(Error::io("chmod", &target))?;
        }
        tar::EntryType::Directory
        | tar::EntryType::Regular
        | tar::EntryType::Continuous
        | tar::EntryType::Symlink => {
            entry
                .unpack(&target)
                .map_err(Error::io("unpack", &target))?;
        }
        // PAX and GNU long-name headers are folded into the next entry by the tar crate;
        // anything else (sparse files, volume labels) has no place in an image layer.
        _ => {}
    }
    Ok(())
}

/// Turns an archive path into a relative path with only normal components. A leading `/` or
/// `./` is dropped, as tar tools do; `..` is refused rather than resolved. `None` is the root.
fn clean(raw: &Path, shown: &str) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::UnsafeEntry {
                    entry: shown.to_string(),
                    reason: "path contains ..",
                });
            }
            Component::Prefix(_) => {
                return Err(Error::UnsafeEntry {
                    entry: shown.to_string(),
                    reason: "path has a prefix",
                });
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Makes sure every directory on `parent` exists under `root` as a real directory (not a
/// symlink), creating missing ones as 0755 root-owned as containerd does, and returns the full
/// path.
fn ensure_parents(root: &Path, parent: &Path, shown: &str) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for component in parent.components() {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::UnsafeEntry {
                    entry: shown.to_string(),
                    reason: "path goes through a symlink",
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafeEntry {
                    entry: shown.to_string(),
                    reason: "parent is not a directory",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(Error::io("create directory", &dir))?;
            }
            Err(e) => return Err(Error::io("stat", &dir)(e)),
        }
    }
    Ok(dir)
}

/// Clears the way for a new entry: a later entry replaces an earlier one of the same name,
/// except that a directory over a directory only updates its metadata and keeps its content.
fn remove_existing(target: &Path, new_is_dir: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() && new_is_dir => Ok(()),
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(target).map_err(Error::io("remove", target))
        }
        Ok(_) => fs::remove_file(target).map_err(Error::io("remove", target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", target)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// One entry of a test tar.
    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Char(&'a str, u32, u32),
        Fifo(&'a str),
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            let (path, data): (&str, &[u8]) = match e {
                E::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    (p, &[])
                }
                E::File(p, data, mode) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    (p, data)
                }
                E::Symlink(p, to) | E::Hardlink(p, to) => {
                    h.set_entry_type(if matches!(e, E::Symlink(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_mode(0o777);
                    h.set_link_name_literal(to).unwrap();
                    (p, &[])
                }
                E::Char(p, major, minor) => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_mode(0o666);
                    h.set_device_major(*major).unwrap();
                    h.set_device_minor(*minor).unwrap();
                    (p, &[])
                }
                E::Fifo(p) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_mode(0o600);
                    (p, &[])
                }
            };
            h.set_size(data.len() as u64);
            // Write the raw name so `..` and absolute names reach the unpacker unchanged.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            builder.append(&h, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Notes a test this machine cannot run; under `TATAMI_TEST_ALL` (set by CI) it fails instead.
    fn skip(why: &str) {
        assert!(
            std::env::var_os("TATAMI_TEST_ALL").is_none(),
            "cannot run: {why}"
        );
        eprintln!("skipped: {why}");
    }

    #[test]
    fn unpacks_files_links_and_modes() {
        if !is_root() {
            skip("unpacking owners and device nodes needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            E::Dir("bin/", 0o755),
            E::File("bin/busybox", b"#!busybox", 0o4755),
            E::Symlink("bin/sh", "busybox"),
            E::Symlink("etc-link", "/etc"),
            E::Hardlink("bin/ls", "bin/busybox"),
            E::File("/abs/file", b"x", 0o600),
            E::Char("dev/null", 1, 3),
            E::Fifo("run/fifo"),
            E::File("bin/sh2", b"first", 0o644),
            E::File("bin/sh2", b"second", 0o644),
        ]);
        let diff_id = unpack_layer(&tar[..], tmp.path()).unwrap();
        assert_eq!(diff_id, format!("sha256:{}", hex(&Sha256::digest(&tar))));
        let r = tmp.path();
        assert_eq!(fs::read(r.join("bin/busybox")).unwrap(), b"#!busybox");
        let meta = fs::metadata(r.join("bin/busybox")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(meta.ino(), fs::metadata(r.join("bin/ls")).unwrap().ino());
        assert_eq!(
            fs::read_link(r.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_link(r.join("etc-link")).unwrap(),
            Path::new("/etc")
        );
        assert_eq!(fs::read(r.join("abs/file")).unwrap(), b"x");
        assert_eq!(fs::read(r.join("bin/sh2")).unwrap(), b"second");
        let null = fs::symlink_metadata(r.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert!(
            fs::symlink_metadata(r.join("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn converts_whiteouts_and_opaque_dirs_to_overlayfs_form() {
        if !is_root() {
            skip("whiteouts (mknod) and trusted xattrs need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            E::Dir("etc/", 0o755),
            E::File("etc/.wh.motd", b"", 0o644),
            E::Dir("var/cache/", 0o755),
            E::File("var/cache/.wh..wh..opq", b"", 0o644),
            E::File("var/cache/new", b"n", 0o644),
            // A whiteout whose directory the layer never lists still gets one.
            E::File("opt/app/.wh.old", b"", 0o644),
            E::File(".wh..wh.plnk", b"", 0o644),
        ]);
        unpack_layer(&tar[..], tmp.path()).unwrap();
        let r = tmp.path();
        let wh = fs::symlink_metadata(r.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!r.join("etc/.wh.motd").exists());
        assert_eq!(
            xattr::get(r.join("var/cache"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!r.join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(r.join("var/cache/new")).unwrap(), b"n");
        assert!(
            fs::symlink_metadata(r.join("opt/app/old"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert!(!r.join(".wh..wh.plnk").exists());
        assert_eq!(
            xattr::get(r.join("etc"), "trusted.overlay.opaque").unwrap(),
            None
        );
    }

    #[test]
    fn refuses_dotdot_and_symlink_escapes() {
        let outside = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                tar_of(&[E::File("../x", b"evil", 0o644)]),
                "path contains ..",
            ),
            (
                tar_of(&[E::File("a/../../x", b"evil", 0o644)]),
                "path contains ..",
            ),
            (
                tar_of(&[
                    E::Symlink("escape", outside.path().to_str().unwrap()),
                    E::File("escape/x", b"evil", 0o644),
                ]),
                "path goes through a symlink",
            ),
            (
                tar_of(&[E::Symlink("up", ".."), E::File("up/x", b"evil", 0o644)]),
                "path goes through a symlink",
            ),
            (
                tar_of(&[E::Hardlink("h", "../../etc/passwd")]),
                "path contains ..",
            ),
            (
                tar_of(&[
                    E::Symlink("escape", outside.path().to_str().unwrap()),
                    E::Hardlink("h", "escape/secret"),
                ]),
                "path goes through a symlink",
            ),
        ];
        fs::write(outside.path().join("secret"), b"s").unwrap();
        for (tar, reason) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let err = unpack_layer(&tar[..], tmp.path()).unwrap_err();
            match err {
                Error::UnsafeEntry { reason: got, .. } => assert_eq!(got, reason),
                other => panic!("wanted {reason}, got {other}"),
            }
        }
        assert!(!outside.path().join("x").exists());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn decompresses_gzip_and_zstd_by_magic() {
        let tar = tar_of(&[E::File("f", b"hello", 0o644)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        // ruzstd only decodes; a stored (raw-block) zstd frame is easy to write by hand.
        let zst = zstd_raw_frame(&tar);
        for blob in [tar.clone(), gz, zst] {
            let mut out = Vec::new();
            decompressed(&blob[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, tar);
        }
    }

    /// A zstd frame made of raw blocks (RFC 8878 §3.1.1), with the content size in the header.
    pub(crate) fn zstd_raw_frame(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
        // Frame header descriptor: 8-byte content size, single segment.
        out.push(0b1110_0000);
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let chunks: Vec<&[u8]> = data.chunks(100_000).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = (i + 1 == chunks.len()) as u32;
            // Block type 0 (raw) in bits 1-2, so only the last flag and the size.
            let header = last | ((chunk.len() as u32) << 3);
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.extend_from_slice(chunk);
        }
        out
    }
}
