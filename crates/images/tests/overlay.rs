//! The unpacked layers stacked by the kernel's overlayfs, as the runtime will mount them:
//! whiteouts hide lower files and opaque directories hide lower content.

use images::{ImageStore, RegistryConfig};
use std::path::Path;
use std::process::Command;

fn layer_tar(dir: &Path, entries: &[(&str, Option<&str>)]) -> std::path::PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match content {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    let path = dir.join(format!(
        "layer{}.tar",
        std::fs::read_dir(dir).unwrap().count()
    ));
    std::fs::write(&path, builder.into_inner().unwrap()).unwrap();
    path
}

/// Notes a test this machine cannot run; under `TATAMI_TEST_ALL` (set by CI) it fails instead.
fn skip(why: &str) {
    assert!(
        std::env::var_os("TATAMI_TEST_ALL").is_none(),
        "cannot run: {why}"
    );
    eprintln!("skipped: {why}");
}

#[tokio::test]
async fn whiteouts_and_opaque_dirs_work_under_overlayfs() {
    if !nix::unistd::geteuid().is_root() {
        skip("mounting overlayfs needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&work.path().join("store"), RegistryConfig::default()).unwrap();
    let tars = work.path().join("tars");
    std::fs::create_dir(&tars).unwrap();
    let lower = layer_tar(
        &tars,
        &[
            ("etc/", None),
            ("etc/motd", Some("hello")),
            ("etc/keep", Some("kept")),
            ("cache/", None),
            ("cache/old", Some("old")),
        ],
    );
    let upper = layer_tar(
        &tars,
        &[
            ("etc/.wh.motd", Some("")),
            ("cache/.wh..wh..opq", Some("")),
            ("cache/new", Some("new")),
        ],
    );
    let a = store.import_rootfs(&lower, "lower").await.unwrap();
    let b = store.import_rootfs(&upper, "upper").await.unwrap();
    let lowerdirs = [
        store.layers(&b.id).unwrap()[0].clone(),
        store.layers(&a.id).unwrap()[0].clone(),
    ];
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let opts = format!(
        "lowerdir={}:{}",
        lowerdirs[0].display(),
        lowerdirs[1].display()
    );
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&mnt)
        .output()
        .unwrap();
    if !mounted.status.success() {
        skip(&format!(
            "overlayfs cannot be mounted here: {}",
            String::from_utf8_lossy(&mounted.stderr)
        ));
        return;
    }
    let check = || {
        assert!(
            !mnt.join("etc/motd").exists(),
            "the whiteout hides etc/motd"
        );
        assert_eq!(
            std::fs::read_to_string(mnt.join("etc/keep")).unwrap(),
            "kept"
        );
        assert!(
            !mnt.join("cache/old").exists(),
            "the opaque dir hides cache/old"
        );
        assert_eq!(
            std::fs::read_to_string(mnt.join("cache/new")).unwrap(),
            "new"
        );
    };
    let result = std::panic::catch_unwind(check);
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
