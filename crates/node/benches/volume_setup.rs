//! Volume setup time per kind: `node::volumes::setup` of one Pod holding one volume of the
//! kind, on a fresh Pod directory each time (median of 20, then the Pod's teardown, untimed),
//! beside two floors measured in the same run: a bare `mkdir` and a bare tmpfs mount.
//! Prints a table. Run as root (tmpfs mounts): `cargo bench -p node --bench volume_setup`.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use node::env::EnvContext;
use node::payload::Sources;
use std::time::{Duration, Instant};

const RUNS: usize = 20;

fn pod(uid: &str, volume: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench", "namespace": "default", "uid": uid, "labels": {"app": "bench"}},
        "spec": {"volumes": [volume], "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("a pod")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "volume_setup: needs root (secret, projected and Memory emptyDir volumes are tmpfs mounts)"
        );
        std::process::exit(2);
    }
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("node");
    let host = tmp.path().join("host");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2", "greeting": "hello"}
    }))
    .unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sec"}, "data": {"password": "aHVudGVyMg=="}
    }))
    .unwrap();
    let sources = Sources {
        config_maps: [("cfg".to_string(), Some(cm))].into(),
        secrets: [("sec".to_string(), Some(secret))].into(),
        tokens: [((String::new(), 3607), "header.claims.signature".to_string())].into(),
    };
    let ctx = EnvContext::default();
    let kinds: Vec<(&str, serde_json::Value)> = vec![
        ("emptyDir", serde_json::json!({"name": "v", "emptyDir": {}})),
        (
            "emptyDir (medium: Memory)",
            serde_json::json!({"name": "v", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}),
        ),
        (
            "hostPath (DirectoryOrCreate)",
            serde_json::json!({"name": "v", "hostPath": {"path": "HOST", "type": "DirectoryOrCreate"}}),
        ),
        (
            "configMap (3 keys)",
            serde_json::json!({"name": "v", "configMap": {"name": "cfg"}}),
        ),
        (
            "secret (1 key, tmpfs)",
            serde_json::json!({"name": "v", "secret": {"secretName": "sec"}}),
        ),
        (
            "downwardAPI (2 items)",
            serde_json::json!({"name": "v", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}),
        ),
        (
            "projected (kube-api-access)",
            serde_json::json!({"name": "v", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}),
        ),
    ];
    let mut rows = Vec::new();
    for (name, volume) in &kinds {
        let mut samples = Vec::new();
        for i in 0..RUNS + 1 {
            let uid = format!("{}-{i}", name.len());
            let text = volume
                .to_string()
                .replace("HOST", host.join(&uid).to_str().unwrap());
            let p = pod(&uid, serde_json::from_str(&text).unwrap());
            let t = Instant::now();
            let failures = node::volumes::setup(&root, &p, &sources, &ctx, &|_| true);
            let took = t.elapsed();
            assert!(failures.is_empty(), "{name}: {failures:?}");
            // The first run warms the caches and is not counted.
            if i > 0 {
                samples.push(took);
            }
            node::volumes::teardown(&root, &uid).expect("teardown");
        }
        rows.push((name.to_string(), median(samples)));
    }
    // Floors: what the kernel alone takes for the two shapes of setup.
    let mut mkdirs = Vec::new();
    let mut mounts = Vec::new();
    for i in 0..RUNS {
        let dir = tmp.path().join(format!("floor-{i}"));
        let t = Instant::now();
        std::fs::create_dir(&dir).unwrap();
        mkdirs.push(t.elapsed());
        let t = Instant::now();
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=1777"),
        )
        .unwrap();
        mounts.push(t.elapsed());
        nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    println!("| volume kind (one volume, fresh Pod dir) | setup, median of {RUNS} |");
    println!("| --- | --- |");
    for (name, d) in &rows {
        println!("| {name} | {} |", ms(*d));
    }
    println!("| floor: bare mkdir | {} |", ms(median(mkdirs)));
    println!("| floor: bare tmpfs mount | {} |", ms(median(mounts)));
}
