//! The command line's contracts: `up` writes a private kubeconfig and one line naming it,
//! refuses a second `up` on the same data dir, `kubeconfig` prints the path, `down` stops `up`.

mod common;

use common::{Cluster, tatami_bin};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn up_kubeconfig_and_down() {
    let c = Cluster::start();
    let mode = std::fs::metadata(c.kubeconfig())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    for key in ["pki/ca.key", "pki/admin.key", "pki/server.key", "state.db"] {
        let mode = std::fs::metadata(c.data().join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    assert!(
        c.log()
            .contains(&format!("kubeconfig: {}", c.kubeconfig().display())),
        "{}",
        c.log()
    );

    let out = Command::new(tatami_bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(c.data())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        c.kubeconfig().to_str().unwrap()
    );

    let second = Command::new(tatami_bin())
        .args(["up", "--port", "0", "--data-dir"])
        .arg(c.data())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("tatami up is already running on this data dir"),
        "{err}"
    );

    let down = Command::new(tatami_bin())
        .args(["down", "--data-dir"])
        .arg(c.data())
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!c.data().join("tatami.pid").exists());
    let after = c.kubectl(&["get", "--raw", "/readyz"]);
    assert_ne!(after.code, 0, "the API still answers after down");
}

#[test]
fn kubeconfig_without_a_cluster_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(tatami_bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("tatami: no kubeconfig at "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
