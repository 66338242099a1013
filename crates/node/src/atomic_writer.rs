//! kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go), the layout every configMap,
//! secret, downwardAPI and projected volume shares: the files live in a timestamped directory
//! `..2025_03_01_10_22_31.1234567890`, `..data` is a symlink to it, and each top-level name is
//! a symlink through `..data`. An update writes a whole new timestamped directory and renames a
//! new `..data` link over the old one, so a reader sees all old keys or all new ones, never a
//! mix; then the old directory goes.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// The link to the current data directory.
const DATA_LINK: &str = "..data";
/// The new link, renamed over [`DATA_LINK`].
const NEW_DATA_LINK: &str = "..data_tmp";

/// One file of a volume's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// The exact bytes.
    pub data: Vec<u8>,
    /// The file's mode, whatever the umask.
    pub mode: u32,
    /// The owner to give the file, if any (kubelet's FsUser).
    pub owner: Option<u32>,
}

/// A payload: relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as kubelet does before writing (validatePath), and cleans it.
pub fn clean_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.len() > 4096 {
        return Err(format!(
            "invalid path: must be less than or equal to 4096 characters: {path:?}"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => {
                let p = p.to_string_lossy();
                if p.len() > 255 {
                    return Err(format!(
                        "invalid path: each path segment must be less than or equal to 255 characters: {path:?}"
                    ));
                }
                parts.push(p.into_owned());
            }
            Component::ParentDir => {
                return Err(format!("invalid path: must not contain '..': {path}"));
            }
            _ => {}
        }
    }
    if parts.first().is_some_and(|p| p.starts_with("..")) {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    if parts.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    Ok(parts.join("/"))
}

/// Writes `payload` into the volume directory `dir` (which must exist), replacing what an
/// earlier write put there. Nothing is rewritten when the content is the same. `set_perms`
/// runs on the new data directory before it becomes visible (kubelet's fsGroup hook).
pub fn write(
    dir: &Path,
    payload: &Payload,
    set_perms: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<(), String> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        clean.insert(clean_path(path)?, file.clone());
    }
    let io = |what: &str, path: &Path| {
        let what = what.to_string();
        let path = path.to_path_buf();
        move |e: std::io::Error| format!("{what} {}: {e}", path.display())
    };
    let old = fs::read_link(dir.join(DATA_LINK))
        .ok()
        .map(|name| dir.join(name))
        .filter(|d| d.is_dir());
    let old_files = match &old {
        Some(d) => files_under(d).map_err(io("read", d))?,
        None => BTreeMap::new(),
    };
    let unchanged = old.is_some()
        && old_files.len() == clean.len()
        && clean.iter().all(|(path, file)| {
            old_files
                .get(path)
                .is_some_and(|(data, mode)| *data == file.data && *mode == file.mode)
        });
    if !unchanged {
        let name = timestamped_name();
        let new = dir.join(&name);
        fs::create_dir(&new).map_err(io("create", &new))?;
        fs::set_permissions(&new, fs::Permissions::from_mode(0o755)).map_err(io("chmod", &new))?;
        for (path, file) in &clean {
            write_file(&new.join(path), file).map_err(io("write", &new.join(path)))?;
        }
        set_perms(&new).map_err(io("set permissions on", &new))?;
        let tmp = dir.join(NEW_DATA_LINK);
        let _ = fs::remove_file(&tmp);
        symlink(&name, &tmp).map_err(io("link", &tmp))?;
        fs::rename(&tmp, dir.join(DATA_LINK)).map_err(io("rename", &tmp))?;
    }
    // The visible names: one link per top-level component, stale ones removed.
    let wanted: std::collections::BTreeSet<&str> = clean
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    for top in &wanted {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(top), &link).map_err(io("link", &link))?;
        }
    }
    for entry in fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(name.as_str()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if !unchanged && let Some(old) = old {
        fs::remove_dir_all(&old).map_err(io("remove", &old))?;
    }
    Ok(())
}

fn write_file(path: &Path, file: &FileProjection) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // No fsync, as kubelet: the content comes from the API again after a crash.
    f.write_all(&file.data)?;
    fs::set_permissions(path, fs::Permissions::from_mode(file.mode & 0o7777))?;
    if let Some(uid) = file.owner {
        std::os::unix::fs::lchown(path, Some(uid), None)?;
    }
    Ok(())
}

/// Every regular file under `dir`, by relative path, with its bytes and mode.
fn files_under(dir: &Path) -> std::io::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let mode = entry.metadata()?.permissions().mode() & 0o7777;
                out.insert(
                    path.to_string_lossy().into_owned(),
                    (fs::read(entry.path())?, mode),
                );
            }
        }
    }
    Ok(out)
}

/// `..YYYY_MM_DD_HH_MM_SS.<random digits>`, in UTC, as os.MkdirTemp names kubelet's.
fn timestamped_name() -> String {
    let now = jiff::Timestamp::now();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32;
    format!("..{}.{random}", now.strftime("%Y_%m_%d_%H_%M_%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
            owner: None,
        }
    }

    fn no_perms(_: &Path) -> std::io::Result<()> {
        Ok(())
    }

    #[test]
    fn paths_are_checked_and_cleaned_as_kubelet_does() {
        assert_eq!(clean_path("a//b").unwrap(), "a/b");
        assert_eq!(clean_path("./a").unwrap(), "a");
        assert!(clean_path("").is_err());
        assert!(clean_path("/etc/passwd").is_err());
        assert!(clean_path("a/../b").is_err());
        assert!(clean_path("..hidden").is_err());
        assert!(clean_path(&"x".repeat(256)).is_err());
    }

    #[test]
    fn the_layout_is_data_link_timestamped_dir_and_top_level_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let payload = Payload::from([
            ("a".to_string(), file("1", 0o644)),
            ("dir/sub/f".to_string(), file("2", 0o400)),
        ]);
        write(dir, &payload, &no_perms).unwrap();
        let data = fs::read_link(dir.join("..data")).unwrap();
        let name = data.to_string_lossy().into_owned();
        assert!(
            name.starts_with("..") && name.len() > "..2025_03_01_10_22_31.".len(),
            "{name}"
        );
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(dir.join("dir")).unwrap(),
            Path::new("..data/dir")
        );
        assert_eq!(fs::read_to_string(dir.join("dir/sub/f")).unwrap(), "2");
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            (mode("a"), mode("dir/sub/f"), mode(&name)),
            (0o644, 0o400, 0o755)
        );
    }

    #[test]
    fn an_update_switches_every_key_at_once_and_removes_the_old() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            &Payload::from([
                ("a".into(), file("1", 0o644)),
                ("b".into(), file("2", 0o644)),
            ]),
            &no_perms,
        )
        .unwrap();
        let first = fs::read_link(dir.join("..data")).unwrap();
        // The same content: nothing is rewritten.
        write(
            dir,
            &Payload::from([
                ("a".into(), file("1", 0o644)),
                ("b".into(), file("2", 0o644)),
            ]),
            &no_perms,
        )
        .unwrap();
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), first);

        write(
            dir,
            &Payload::from([
                ("a".into(), file("new", 0o644)),
                ("c".into(), file("3", 0o644)),
            ]),
            &no_perms,
        )
        .unwrap();
        let second = fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(second, first);
        assert!(!dir.join(&first).exists());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "new");
        assert_eq!(fs::read_to_string(dir.join("c")).unwrap(), "3");
        assert!(
            fs::symlink_metadata(dir.join("b")).is_err(),
            "a removed key loses its link"
        );
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected = vec![
            "..data".to_string(),
            second.to_string_lossy().into_owned(),
            "a".into(),
            "c".into(),
        ];
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn an_empty_payload_leaves_only_the_data_link_and_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &Payload::new(), &no_perms).unwrap();
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}
