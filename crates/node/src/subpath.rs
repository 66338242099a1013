//! subPath mounts that cannot leave their volume (kubelet's subpath_linux.go, and the fixes of
//! CVE-2017-1002101 and CVE-2021-25741): the subPath is opened with `openat2` beneath the
//! volume's root (a symlink may resolve within the volume, never outside it, and no magic link
//! is followed), missing directories are made one by one under an already-opened parent, and
//! the bind mount is made from the opened file descriptor, so a container that swaps a
//! directory for a symlink meanwhile cannot redirect it. The bind lands on a per-container
//! target under `pods/<uid>/volume-subpaths/`, which is what the runtime gets.

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, mkdirat};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why a subPath could not be mounted; kubelet tells the user no more than which step failed,
/// so nothing about the node leaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Resolving or mounting it failed (an escape, among others).
    Prepare,
    /// Making a missing directory failed.
    CreateDirectory,
}

impl Failure {
    /// kubelet's message for the volumeMount `volume` of container `container`.
    pub fn message(self, volume: &str, container: &str) -> String {
        match self {
            Failure::Prepare => format!(
                "failed to prepare subPath for volumeMount {volume:?} of container {container:?}"
            ),
            Failure::CreateDirectory => format!(
                "failed to create subPath directory for volumeMount {volume:?} of container {container:?}"
            ),
        }
    }
}

fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `sub` beneath `root`, making missing directories with the root's mode.
fn open_beneath(root: &OwnedFd, sub: &str) -> Result<OwnedFd, Failure> {
    match openat2(root, sub, beneath(OFlag::empty())) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => {
            tracing::debug!(sub, "subPath refused: {e}");
            return Err(Failure::Prepare);
        }
    }
    let mode = fstat(root).map_err(|_| Failure::Prepare)?.st_mode & 0o7777;
    let mut dir = openat2(root, ".", beneath(OFlag::O_DIRECTORY)).map_err(|_| Failure::Prepare)?;
    for part in sub.split('/').filter(|p| !p.is_empty() && *p != ".") {
        match mkdirat(&dir, part, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                tracing::debug!(sub, "cannot make a subPath directory: {e}");
                return Err(Failure::CreateDirectory);
            }
        }
        // Beneath the parent just opened: a component swapped for a symlink meanwhile may still
        // resolve only within the volume.
        let next = openat2(&dir, part, beneath(OFlag::O_DIRECTORY)).map_err(|e| {
            tracing::debug!(sub, "subPath directory refused: {e}");
            Failure::CreateDirectory
        })?;
        dir = next;
    }
    // The mode the umask took off (kubelet makes them like the volume root).
    let _ = reopen_rw(&dir).map(|fd| fchmod(&fd, Mode::from_bits_truncate(mode)));
    Ok(dir)
}

/// The same directory opened for real (fchmod needs more than an O_PATH descriptor).
fn reopen_rw(fd: &OwnedFd) -> nix::Result<OwnedFd> {
    open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Binds `sub` of the volume at `volume` onto `target` (made as a file or a directory to match;
/// an earlier bind there is replaced, so a restarted container sees the current content).
pub fn bind(volume: &Path, sub: &str, target: &Path) -> Result<(), Failure> {
    let root = open(
        volume,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| Failure::Prepare)?;
    let source = open_beneath(&root, sub)?;
    let is_dir = fstat(&source)
        .map(|s| s.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits())
        .map_err(|_| Failure::Prepare)?;
    unmount(target);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|_| Failure::Prepare)?;
    }
    let made = if is_dir {
        std::fs::create_dir_all(target)
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map(drop)
    };
    made.map_err(|_| Failure::Prepare)?;
    let from = PathBuf::from(format!("/proc/self/fd/{}", source.as_raw_fd()));
    nix::mount::mount(
        Some(&from),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        tracing::debug!(sub, "subPath bind failed: {e}");
        Failure::Prepare
    })
}

/// Unmounts every bind stacked on `target`.
pub fn unmount(target: &Path) {
    while nix::mount::umount2(target, MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn root_only() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_subpath_resolves_beneath_its_volume_only() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        fs::create_dir_all(vol.join("real")).unwrap();
        std::os::unix::fs::symlink("/", vol.join("to-root")).unwrap();
        std::os::unix::fs::symlink("../", vol.join("up")).unwrap();
        std::os::unix::fs::symlink("real", vol.join("inside")).unwrap();
        let root = open(&vol, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        assert!(open_beneath(&root, "real").is_ok());
        assert!(
            open_beneath(&root, "inside").is_ok(),
            "a link within the volume"
        );
        assert_eq!(
            open_beneath(&root, "to-root").unwrap_err(),
            Failure::Prepare
        );
        assert_eq!(open_beneath(&root, "up").unwrap_err(), Failure::Prepare);
        assert_eq!(
            open_beneath(&root, "to-root/etc").unwrap_err(),
            Failure::Prepare
        );
        // A missing path is made as directories, but not through a link that leaves.
        assert!(open_beneath(&root, "new/deeper").is_ok());
        assert!(vol.join("new/deeper").is_dir());
        assert_eq!(
            open_beneath(&root, "to-root/nonexistent-dir").unwrap_err(),
            Failure::Prepare
        );
    }

    /// CVE-2021-25741: a container swaps a directory of the subPath for a symlink out of the
    /// volume while the node sets the subPath up. Every bind made must show the volume's own
    /// directory, never the one the symlink leads to.
    #[test]
    fn a_directory_swapped_for_a_symlink_during_setup_never_leads_out() {
        assert!(root_only(), "this test needs root, for mounts");
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(vol.join("swap/inner")).unwrap();
        fs::write(vol.join("swap/inner/marker"), "inside").unwrap();
        fs::create_dir_all(outside.join("inner")).unwrap();
        fs::write(outside.join("inner/marker"), "outside").unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("link")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (vol, stop) = (vol.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // The directory and the symlink trade places atomically.
                    nix::fcntl::renameat2(
                        nix::fcntl::AT_FDCWD,
                        &vol.join("swap"),
                        nix::fcntl::AT_FDCWD,
                        &vol.join("link"),
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .unwrap();
                    swaps += 1;
                }
                swaps
            })
        };
        let target = tmp.path().join("subpaths/v/c/0");
        let (mut bound, mut refused) = (0, 0);
        for _ in 0..2000 {
            match bind(&vol, "swap/inner", &target) {
                Ok(()) => {
                    bound += 1;
                    let seen = fs::read_to_string(target.join("marker")).unwrap();
                    unmount(&target);
                    assert_eq!(seen, "inside", "a bind led out of the volume");
                }
                Err(e) => {
                    assert_eq!(e, Failure::Prepare);
                    refused += 1;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(
            bound > 0 && refused > 0,
            "the race was not run: {bound} bound, {refused} refused, {swaps} swaps"
        );
        assert!(
            !outside.join("inner/swap").exists() && !outside.join("swap").exists(),
            "a directory was made outside the volume"
        );
    }

    #[test]
    fn a_bind_shows_the_subpath_and_is_replaced_on_the_next() {
        assert!(root_only(), "this test needs root, for mounts");
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        fs::create_dir_all(&vol).unwrap();
        fs::write(vol.join("f"), "one").unwrap();
        let target = tmp.path().join("subpaths/v/c/0");
        bind(&vol, "f", &target).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "one");
        fs::remove_file(vol.join("f")).unwrap();
        fs::write(vol.join("f"), "two").unwrap();
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "one",
            "the bound inode stays"
        );
        bind(&vol, "f", &target).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "two");
        unmount(&target);
        assert_eq!(fs::read_to_string(&target).unwrap(), "");
    }
}
