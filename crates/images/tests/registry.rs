//! Pulls and imports against real parts: Debian's docker-registry on 127.0.0.1, an image made
//! from busybox-static and pushed with skopeo (as the acceptance scripts do), and layers
//! unpacked as root. Each test prints why it skipped when a part is missing.

use images::{Error, ImageStore, Progress, ProgressState, RegistryConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The acceptance helper that writes an OCI layout, beside the repository as CI lays it out.
fn mk_oci_image() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [manifest.join("../../../shared/acceptance/mk-oci-image.py")];
    candidates.into_iter().find(|p| p.is_file())
}

/// Why this machine cannot run the registry tests, if it cannot.
fn missing_parts() -> Option<String> {
    if !is_root() {
        return Some("needs root (layers keep owners, device nodes and trusted xattrs)".into());
    }
    for cmd in ["docker-registry", "skopeo", "busybox", "python3"] {
        if !have(cmd) {
            return Some(format!(
                "needs {cmd} (apt-get install -y docker-registry skopeo busybox-static)"
            ));
        }
    }
    if mk_oci_image().is_none() {
        return Some("needs shared/acceptance/mk-oci-image.py beside the repository".into());
    }
    None
}

/// Notes a test this machine cannot run; under `TATAMI_TEST_ALL` (set by CI) it fails instead.
fn skip(why: &str) {
    assert!(
        std::env::var_os("TATAMI_TEST_ALL").is_none(),
        "cannot run: {why}"
    );
    eprintln!("skipped: {why}");
}

macro_rules! require_parts {
    () => {
        if let Some(why) = missing_parts() {
            skip(&why);
            return;
        }
    };
}

/// A minimal alpine-like root filesystem made of busybox, as lib.sh's busybox_rootfs.
fn busybox_rootfs(root: &Path) {
    for d in [
        "bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/log", "usr/bin",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let bb = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::copy(bb.trim(), root.join("bin/busybox")).unwrap();
    let list = Command::new(bb.trim())
        .arg("--list")
        .output()
        .unwrap()
        .stdout;
    for applet in String::from_utf8(list).unwrap().lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A docker-registry on a free loopback port, stopped when dropped.
struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Registry {
    fn start(work: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = work.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                work.join("registry").display()
            ),
        )
        .unwrap();
        let log = work.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let registry = Registry { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200")
    }

    fn push(&self, layout: &Path, tag: &str, repo_tag: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}/{repo_tag}", self.addr));
        run(&mut cmd);
    }

    /// How many blob GETs the registry has served (its access log).
    fn blob_gets(&self) -> usize {
        self.requests(|r| r.starts_with("GET /v2/") && r.contains("/blobs/sha256:"))
    }

    /// How many requests the registry has served whose request line (`GET /v2/ HTTP/1.1`)
    /// matches.
    fn requests(&self, matches: impl Fn(&str) -> bool) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter(|r| matches(r))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI layout holding busybox as `latest`, plus an index `multi` that lists it for this
/// platform beside an entry for another one.
fn busybox_layout(work: &Path) -> PathBuf {
    let rootfs = work.join("rootfs");
    busybox_rootfs(&rootfs);
    let layout = work.join("layout");
    run(Command::new("python3")
        .arg(mk_oci_image().unwrap())
        .arg(&rootfs)
        .arg(&layout)
        .arg("latest"));
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifest = index["manifests"][0].clone();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut here = manifest.clone();
    here.as_object_mut().unwrap().remove("annotations");
    here["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
    let mut elsewhere = here.clone();
    elsewhere["platform"] = serde_json::json!({"os": "linux", "architecture": "s390x-elsewhere"});
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [elsewhere, here],
    });
    let bytes = serde_json::to_vec(&list).unwrap();
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    layout
}

fn mirror_store(root: &Path, registry: &Registry) -> ImageStore {
    let config = RegistryConfig {
        mirrors: vec![("docker.io".into(), format!("http://{}", registry.addr))],
        insecure: vec![registry.addr.clone()],
    };
    let store = ImageStore::open(root, config).unwrap();
    // Never fall back to the real docker.io: tests talk to 127.0.0.1 only.
    store.set_default_endpoint(false);
    store
}

#[tokio::test]
async fn pulls_through_a_docker_io_mirror_and_reuses_blobs() {
    require_parts!();
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    let registry = Registry::start(work.path());
    registry.push(&layout, "latest", "library/alpine:latest", false);
    let store = mirror_store(&work.path().join("store"), &registry);

    let seen = Mutex::new(Vec::<Progress>::new());
    let record = |p: Progress| seen.lock().unwrap().push(p);
    let image = store
        .pull_with_progress("alpine", None, &record)
        .await
        .unwrap();
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    assert_eq!(image.tags, ["docker.io/library/alpine:latest"]);
    assert!(
        image
            .repo_digest
            .starts_with("docker.io/library/alpine@sha256:"),
        "{image:?}"
    );
    let states: Vec<ProgressState> = seen.lock().unwrap().iter().map(|p| p.state).collect();
    assert!(
        states.contains(&ProgressState::Downloading) && states.ends_with(&[ProgressState::Done]),
        "{states:?}"
    );

    let layers = store.layers(&image.id).unwrap();
    assert_eq!(layers.len(), 1);
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(layers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let config = store.image_config(&image.id).unwrap();
    assert_eq!(config.cmd, ["sh"]);
    assert!(config.env.iter().any(|e| e.starts_with("PATH=")));

    // Pulled again: the manifest is asked for, no blob is, and the records are not rewritten
    // (a rewrite is a new file put in place, so a new inode).
    let blob_gets = registry.blob_gets();
    assert!(blob_gets >= 2, "config and layer were fetched: {blob_gets}");
    let records_inode = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(work.path().join("store/images.json"))
            .unwrap()
            .ino()
    };
    let inode = records_inode();
    let probes = || registry.requests(|r| r.starts_with("GET /v2/ "));
    let manifest_gets = || registry.requests(|r| r.contains("/manifests/"));
    let (probes_before, manifests_before) = (probes(), manifest_gets());
    seen.lock().unwrap().clear();
    let again = store
        .pull_with_progress("docker.io/library/alpine:latest", None, &record)
        .await
        .unwrap();
    assert_eq!(again.id, image.id);
    assert_eq!(
        registry.blob_gets(),
        blob_gets,
        "a second pull fetched blobs"
    );
    assert_eq!(
        records_inode(),
        inode,
        "an unchanged pull rewrote images.json"
    );
    // One request, as containerd makes it: the manifest, without asking `/v2/` first.
    assert_eq!(
        (probes(), manifest_gets()),
        (probes_before, manifests_before + 1)
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.state == ProgressState::Exists)
    );

    // The runtime-facing trait sees the same image, by reference, repo digest and id.
    use runtime::ImageService;
    let by_ref = store.image_status("alpine:latest").await.unwrap().unwrap();
    assert_eq!(by_ref.id, image.id);
    let by_digest = store
        .image_status(&image.repo_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_digest.id, image.id);
    assert!(store.image_status(&image.id).await.unwrap().is_some());
    assert_eq!(store.list_images().await.unwrap().len(), 1);

    // A reopened store (an agent restart) knows the image without pulling.
    drop(store);
    let reopened = mirror_store(&work.path().join("store"), &registry);
    assert_eq!(reopened.layers(&image.id).unwrap(), layers);
}

#[tokio::test]
async fn selects_this_platform_from_an_index_and_reports_missing_images() {
    require_parts!();
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    let registry = Registry::start(work.path());
    registry.push(&layout, "multi", "library/multi:1", true);
    let store = mirror_store(&work.path().join("store"), &registry);

    let image = store
        .pull_with_progress("multi:1", None, &|_| {})
        .await
        .unwrap();
    assert!(
        store.layers(&image.id).unwrap()[0]
            .join("bin/busybox")
            .is_file()
    );
    // The repo digest names the index, as containerd's does for a multi-platform image.
    let index_digest = image.repo_digest.split('@').nth(1).unwrap().to_string();
    let layout_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        layout_index["manifests"][1]["digest"],
        index_digest.as_str()
    );

    let err = store
        .pull_with_progress("nope", None, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Pull { .. }));
    assert_eq!(
        err.to_string(),
        "failed to pull and unpack image \"docker.io/library/nope:latest\": failed to resolve reference \
         \"docker.io/library/nope:latest\": docker.io/library/nope:latest: not found"
    );
    // Through the trait it is the ErrImagePull kind, with the same words.
    use runtime::ImageService;
    let err = store.pull("nope", None).await.unwrap_err();
    assert!(matches!(err, runtime::Error::ImagePull { .. }), "{err:?}");

    // A registry named directly and marked insecure is spoken to over plain HTTP.
    let direct = ImageStore::open(
        &work.path().join("direct"),
        RegistryConfig {
            mirrors: vec![],
            insecure: vec![registry.addr.clone()],
        },
    )
    .unwrap();
    let img = direct
        .pull_with_progress(&format!("{}/library/alpine", registry.addr), None, &|_| {})
        .await;
    // alpine was not pushed in this test; multi was.
    assert!(img.unwrap_err().to_string().ends_with(": not found"));
    let img = direct
        .pull_with_progress(&format!("{}/library/multi:1", registry.addr), None, &|_| {})
        .await
        .unwrap();
    assert_eq!(img.id, image.id);
}

#[tokio::test]
async fn imports_archives_and_root_filesystems_and_removes_them() {
    if !is_root() {
        skip("needs root (layers keep owners and device nodes)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&work.path().join("store"), RegistryConfig::default()).unwrap();

    // import-rootfs of a directory.
    let rootfs = work.path().join("tree");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::write(rootfs.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
    std::os::unix::fs::symlink("hello", rootfs.join("bin/hi")).unwrap();
    let image = store
        .import_rootfs(&rootfs, "example.com/tools/hello:1")
        .await
        .unwrap();
    assert_eq!(image.tags, ["example.com/tools/hello:1"]);
    let layers = store.layers("example.com/tools/hello:1").unwrap();
    assert_eq!(
        std::fs::read_to_string(layers[0].join("bin/hello")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read_link(layers[0].join("bin/hi")).unwrap(),
        Path::new("hello")
    );
    assert!(store.image_config(&image.id).unwrap().cmd.is_empty());

    // import-rootfs of a tar gives the same layer, shared.
    let tar_path = work.path().join("tree.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar_path)
        .arg("."));
    let from_tar = store.import_rootfs(&tar_path, "hello-tar").await.unwrap();
    assert_eq!(from_tar.tags, ["docker.io/library/hello-tar:latest"]);
    assert!(
        store.layers(&from_tar.id).unwrap()[0]
            .join("bin/hello")
            .is_file()
    );

    // An OCI archive (a tar of a layout) and an older docker save archive.
    if mk_oci_image().is_some() && have("busybox") {
        let layout = busybox_layout(work.path());
        let annotated = layout.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&annotated).unwrap()).unwrap();
        index["manifests"][0]["annotations"]["io.containerd.image.name"] =
            "docker.io/library/busybox:oci".into();
        std::fs::write(&annotated, serde_json::to_vec(&index).unwrap()).unwrap();
        let archive = work.path().join("oci.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."));
        let imported = store.import(&archive).await.unwrap();
        assert_eq!(imported.len(), 2);
        assert_eq!(imported[0].tags, ["docker.io/library/busybox:oci"]);
        // The index entry `multi` names only a tag, so it adds no name (as docker load does);
        // it resolves to the same image for this platform.
        assert_eq!(imported[0].id, imported[1].id);
        assert_eq!(imported[1].tags, ["docker.io/library/busybox:oci"]);
        assert!(
            store.layers("busybox:oci").unwrap()[0]
                .join("bin/busybox")
                .is_file()
        );

        let saved = docker_save_archive(work.path(), &layout);
        let loaded = store.import(&saved).await.unwrap();
        // Same config, same image: it gains the archive's name.
        assert_eq!(loaded[0].id, imported[0].id);
        assert_eq!(
            loaded[0].tags,
            [
                "docker.io/library/busybox:oci",
                "docker.io/library/busybox:saved"
            ]
        );
        store.remove("busybox:saved").await.unwrap();
        assert_eq!(
            store.status(&loaded[0].id).unwrap().unwrap().tags,
            ["docker.io/library/busybox:oci"]
        );
        store.remove("busybox:oci").await.unwrap();
        assert!(store.status(&loaded[0].id).unwrap().is_none());
    } else {
        skip("the archive part needs busybox and mk-oci-image.py");
    }

    // remove: untagging the last name removes the image and the layers only it used.
    let tar_layer = store.layers(&from_tar.id).unwrap()[0].clone();
    assert_ne!(
        tar_layer, layers[0],
        "GNU tar and our packer write different bytes"
    );
    store.remove("example.com/tools/hello:1").await.unwrap();
    assert!(store.status("example.com/tools/hello:1").unwrap().is_none());
    assert!(!layers[0].exists());
    assert!(tar_layer.is_dir(), "hello-tar still uses its layer");
    store.remove(&from_tar.id).await.unwrap();
    assert!(!tar_layer.exists());
    assert!(matches!(store.remove("hello-tar").await, Err(e) if e.is_not_found()));
    use runtime::ImageService;
    store.remove_image("hello-tar").await.unwrap();
    assert!(store.list().unwrap().is_empty());
    let left = std::fs::read_dir(work.path().join("store/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "every blob went with its image");
    assert_eq!(
        std::fs::read_dir(work.path().join("store/layers"))
            .unwrap()
            .count(),
        0
    );
}

/// A `docker save` archive in the old format (manifest.json and `<id>/layer.tar`) of the
/// layout's image.
fn docker_save_archive(work: &Path, layout: &Path) -> PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let dir = work.join("saved");
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::create_dir_all(dir.join("layer0")).unwrap();
    std::fs::copy(blob(&config), dir.join(format!("{config}.json"))).unwrap();
    // docker save holds layers uncompressed.
    let gz = std::fs::File::open(blob(manifest["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut tar)
        .unwrap();
    std::fs::write(dir.join("layer0/layer.tar"), tar).unwrap();
    std::fs::write(dir.join("layer0/VERSION"), "1.0").unwrap();
    let saved = serde_json::json!([{
        "Config": format!("{config}.json"),
        "RepoTags": ["busybox:saved"],
        "Layers": ["layer0/layer.tar"],
    }]);
    std::fs::write(dir.join("manifest.json"), saved.to_string()).unwrap();
    let archive = work.join("saved.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    archive
}

#[tokio::test]
async fn pulls_with_basic_auth_from_an_image_pull_secret() {
    require_parts!();
    // docker-registry's htpasswd files hold bcrypt hashes; Python's crypt module makes one.
    let hash = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(hash) = hash.filter(|h| h.starts_with("$2")) else {
        skip("needs python3's crypt module with bcrypt to write an htpasswd file");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    let open = Registry::start(work.path());
    open.push(&layout, "latest", "team/app:1", false);
    let storage = work.path().join("registry");
    drop(open);

    // The same storage behind a registry that wants a password.
    let auth_dir = work.path().join("auth");
    std::fs::create_dir_all(&auth_dir).unwrap();
    std::fs::write(auth_dir.join("htpasswd"), format!("puller:{hash}\n")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = auth_dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n\
             auth:\n  htpasswd:\n    realm: tatami-test\n    path: {}\n",
            storage.display(),
            auth_dir.join("htpasswd").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(auth_dir.join("log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = Registry {
        child,
        addr: addr.clone(),
        log: auth_dir.join("log"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let store = ImageStore::open(
        &work.path().join("store"),
        RegistryConfig {
            mirrors: vec![],
            insecure: vec![addr.clone()],
        },
    )
    .unwrap();
    let reference = format!("{addr}/team/app:1");
    let err = store
        .pull_with_progress(&reference, None, &|_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            ": pull access denied, repository does not exist or may require authorization"
        ),
        "{err}"
    );
    let wrong = images::RegistryAuth {
        username: "puller".into(),
        password: "nope".into(),
    };
    assert!(
        store
            .pull_with_progress(&reference, Some(&wrong), &|_| {})
            .await
            .is_err()
    );
    let right = images::RegistryAuth {
        username: "puller".into(),
        password: "s3cret".into(),
    };
    let image = store
        .pull_with_progress(&reference, Some(&right), &|_| {})
        .await
        .unwrap();
    assert!(
        store.layers(&image.id).unwrap()[0]
            .join("bin/busybox")
            .is_file()
    );
}

/// Adds to the layout a tag `two` with a second (gzip) layer on top of busybox: it
/// whites out `bin/ls` and adds `etc/motd`.
fn add_second_layer(layout: &Path) {
    use sha2::Digest;
    let sha = |b: &[u8]| -> String {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let blob_dir = layout.join("blobs/sha256");
    let read_json = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(blob_dir.join(digest.trim_start_matches("sha256:"))).unwrap(),
        )
        .unwrap()
    };
    let write_blob = |bytes: &[u8]| -> String {
        let hex = sha(bytes);
        std::fs::write(blob_dir.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in [("bin/.wh.ls", ""), ("etc/motd", "two layers\n")] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        builder.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": write_blob(&gz), "size": gz.len(),
    });

    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut manifest = read_json(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read_json(manifest["config"]["digest"].as_str().unwrap());
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(format!("sha256:{}", sha(&tar)).into());
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = write_blob(&config).into();
    manifest["config"]["size"] = config.len().into();
    manifest["layers"].as_array_mut().unwrap().push(layer);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "two"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[tokio::test]
async fn pulls_layers_in_order_and_shares_them_between_images() {
    require_parts!();
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    add_second_layer(&layout);
    let registry = Registry::start(work.path());
    registry.push(&layout, "latest", "library/alpine:latest", false);
    registry.push(&layout, "two", "library/two:latest", false);
    let store = mirror_store(&work.path().join("store"), &registry);

    let one = store
        .pull_with_progress("alpine", None, &|_| {})
        .await
        .unwrap();
    let before = registry.blob_gets();
    let seen = Mutex::new(Vec::<Progress>::new());
    let two = store
        .pull_with_progress("two", None, &|p| seen.lock().unwrap().push(p))
        .await
        .unwrap();
    // Only the new config and the new layer were fetched; busybox's layer is shared.
    assert_eq!(registry.blob_gets() - before, 2);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.state == ProgressState::Exists)
    );

    let layers = store.layers(&two.id).unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layers[0],
        store.layers(&one.id).unwrap()[0],
        "lowest first, and shared"
    );
    assert!(layers[0].join("bin/ls").exists());
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(layers[1].join("bin/ls"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(
        std::fs::read_to_string(layers[1].join("etc/motd")).unwrap(),
        "two layers\n"
    );

    // Removing one image keeps the layer the other still uses.
    store.remove("alpine").await.unwrap();
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(store.layers("two").unwrap(), layers);
}

#[tokio::test]
async fn an_unreachable_registry_is_reported_as_containerd_words_it() {
    let work = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let store = ImageStore::open(
        work.path(),
        RegistryConfig {
            mirrors: vec![],
            insecure: vec![host.clone()],
        },
    )
    .unwrap();
    let err = store
        .pull_with_progress(&format!("{host}/app:1"), None, &|_| {})
        .await
        .unwrap_err();
    let want = format!(
        "failed to pull and unpack image \"{host}/app:1\": failed to resolve reference \"{host}/app:1\": failed to do request: "
    );
    assert!(err.to_string().starts_with(&want), "{err}");
    assert!(err.to_string().contains("http://"), "{err}");
    assert!(store.list().unwrap().is_empty());
}
