//! The agent's side of the per-container shim (our conmon, `crates/shim`, whose
//! `monitor.rs` tells what it does). Its program is built into this binary by `build.rs` and
//! installed under the runtime's root; the agent starts one per container with the
//! arguments [`args`] makes.

use crate::error::{Error, Result};
use crate::meta::ContainerMeta;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The shim's program: a static executable of a few pages, without a C library.
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tatami-shim"));

/// Writes the shim's program to `<root>/bin/tatami-shim` unless the same is there, and returns
/// its path. Shims already running keep the file they started from: the new one replaces it
/// by rename.
pub(crate) fn install(root: &Path) -> Result<PathBuf> {
    let path = root.join("bin").join("tatami-shim");
    if std::fs::read(&path).is_ok_and(|b| b == PROGRAM) {
        return Ok(path);
    }
    let dir = root.join("bin");
    crate::meta::mkdir_all(&dir)?;
    let tmp = dir.join("tatami-shim.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(&tmp)
        .map_err(Error::io("write", &tmp))?;
    file.write_all(PROGRAM).map_err(Error::io("write", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
    Ok(path)
}

/// The shim's command line for a container (after the program): its directory, then what
/// it needs to run and log it.
pub(crate) fn args(
    dir: &Path,
    runc: &Path,
    runc_root: &Path,
    m: &ContainerMeta,
    log_max_bytes: u64,
    log_max_files: usize,
) -> Vec<OsString> {
    let mut flags = String::new();
    for (on, flag) in [(m.stdin, 'i'), (m.stdin_once, 'o'), (m.tty, 't')] {
        if on {
            flags.push(flag);
        }
    }
    if flags.is_empty() {
        flags.push('-');
    }
    vec![
        dir.into(),
        m.id.clone().into(),
        runc.into(),
        runc_root.into(),
        dir.into(),
        m.log_path.clone().into(),
        log_max_bytes.to_string().into(),
        log_max_files.to_string().into(),
        flags.into(),
        m.cgroups_path.clone().into(),
    ]
}

/// The program's path: as given if it names a directory, else the first executable of that
/// name on PATH (the shim runs it with execve, which does not search).
pub(crate) fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| program.to_path_buf())
}

/// The last error runc logged (its `--log-format json` file), in the words kubectl shows.
pub(crate) fn runc_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error" || v["level"] == "fatal")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_come_from_its_json_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"runc run failed: exec: \\\"nope\\\": executable file not found in $PATH\"}\n",
        )
        .unwrap();
        assert_eq!(
            runc_error(&log).unwrap(),
            "runc run failed: exec: \"nope\": executable file not found in $PATH"
        );
        assert!(runc_error(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn the_program_is_installed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = install(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), PROGRAM);
        let first = path.metadata().unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        install(dir.path()).unwrap();
        assert_eq!(path.metadata().unwrap().modified().unwrap(), first);
        std::fs::write(&path, b"old").unwrap();
        install(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), PROGRAM);
    }

    #[test]
    fn programs_are_found_on_path() {
        assert!(resolve_program(Path::new("sh")).is_absolute());
        assert_eq!(resolve_program(Path::new("./x")), PathBuf::from("./x"));
    }
}
