//! Reading a file of an image through its unpacked layers, as the container's overlay would
//! show it, without mounting anything: the runtime needs the image's `/etc/passwd` and
//! `/etc/group` before the container (and its overlay) exists.
//!
//! The layers are in overlayfs's form (`images/src/unpack.rs`): a whiteout is a character
//! device 0/0 under the deleted name, and an opaque directory has `trusted.overlay.opaque=y`.

use std::path::{Component, Path, PathBuf};

/// The text of the regular file at `rel` (relative to the image's root), from the highest
/// layer that has it, or None when no layer does, a higher layer deletes it, or it is not a
/// regular file there. Symlinks are not followed: they would resolve on the node.
pub(crate) fn read_image_file(layers: &[PathBuf], rel: &Path) -> Option<String> {
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    let (name, parents) = parts.split_last()?;
    'layers: for layer in layers.iter().rev() {
        let mut path = layer.clone();
        // An opaque directory on the way hides the same path in every lower layer.
        let mut opaque = false;
        for part in parents {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => opaque |= is_opaque(&path),
                // A whiteout, or anything else in the way, hides the lower layers' paths.
                Ok(_) => return None,
                Err(_) if opaque => return None,
                Err(_) => continue 'layers,
            }
        }
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => return std::fs::read_to_string(&path).ok(),
            // A whiteout deletes it; a directory or symlink is not a file to read.
            Ok(_) => return None,
            Err(_) if opaque => return None,
            Err(_) => {}
        }
    }
    None
}

fn is_opaque(dir: &Path) -> bool {
    xattr::get(dir, "trusted.overlay.opaque").is_ok_and(|v| v.as_deref() == Some(b"y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let layers: Vec<PathBuf> = (0..n).map(|i| dir.path().join(i.to_string())).collect();
        for l in &layers {
            std::fs::create_dir_all(l.join("etc")).unwrap();
        }
        (dir, layers)
    }

    #[test]
    fn the_highest_layer_with_the_file_wins() {
        let (_dir, l) = layers(3);
        std::fs::write(l[0].join("etc/passwd"), "low").unwrap();
        std::fs::write(l[1].join("etc/passwd"), "mid").unwrap();
        let passwd = Path::new("etc/passwd");
        assert_eq!(read_image_file(&l, passwd).as_deref(), Some("mid"));
        assert_eq!(read_image_file(&l[..1], passwd).as_deref(), Some("low"));
        assert_eq!(
            read_image_file(&l, Path::new("/etc/passwd")).as_deref(),
            Some("mid")
        );
        assert_eq!(read_image_file(&l, Path::new("etc/group")), None);
        // Not a regular file: a directory, or a symlink (it would resolve on the node).
        std::os::unix::fs::symlink("/etc/hostname", l[2].join("etc/group")).unwrap();
        assert_eq!(read_image_file(&l, Path::new("etc/group")), None);
        assert_eq!(read_image_file(&l, Path::new("etc")), None);
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers() {
        if !nix::unistd::geteuid().is_root() {
            // CI sets TATAMI_TEST_ALL: there a test that cannot run fails instead of passing.
            let why = "whiteouts (mknod) and trusted xattrs need root";
            assert!(
                std::env::var_os("TATAMI_TEST_ALL").is_none(),
                "cannot run: {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        let whiteout = |p: &Path| mknod(p, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).unwrap();
        let (_dir, l) = layers(3);
        std::fs::write(l[0].join("etc/passwd"), "low").unwrap();
        std::fs::write(l[0].join("etc/group"), "low").unwrap();
        whiteout(&l[1].join("etc/passwd"));
        assert_eq!(read_image_file(&l, Path::new("etc/passwd")), None);
        assert_eq!(
            read_image_file(&l, Path::new("etc/group")).as_deref(),
            Some("low")
        );
        xattr::set(l[2].join("etc"), "trusted.overlay.opaque", b"y").unwrap();
        assert_eq!(read_image_file(&l, Path::new("etc/group")), None);
        std::fs::write(l[2].join("etc/group"), "top").unwrap();
        assert_eq!(
            read_image_file(&l, Path::new("etc/group")).as_deref(),
            Some("top")
        );
        // A whiteout of the directory hides everything beneath it.
        std::fs::remove_dir_all(l[2].join("etc")).unwrap();
        whiteout(&l[2].join("etc"));
        assert_eq!(read_image_file(&l, Path::new("etc/group")), None);
    }
}
