//! A real `tatami up` on a private data dir and port, driven by the real kubectl.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running cluster; stopped (SIGKILL) when dropped.
pub struct Cluster {
    /// Holds the data dir and kubectl's HOME.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

/// What a kubectl run printed.
pub struct Run {
    /// Exit status code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics unless the command succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Panics unless the command failed; returns stderr.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "command succeeded unexpectedly:\nstdout: {}",
            self.stdout
        );
        &self.stderr
    }
}

/// The `tatami` binary under test.
pub fn tatami_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tatami")
}

impl Cluster {
    /// Starts `tatami up --port 0` on a fresh data dir and waits until it is ready.
    pub fn start() -> Cluster {
        let mut c = Cluster::prepare();
        c.up();
        c
    }

    /// A cluster whose `up` has not started yet (to prepare its data dir first).
    pub fn prepare() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("tatami-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home dir");
        Cluster { dir, child: None }
    }

    /// Imports a busybox root filesystem as the image `alpine` (docker.io/library/alpine:latest),
    /// so Pods with `imagePullPolicy: IfNotPresent` need no registry.
    pub fn import_busybox_as_alpine(&self) {
        let rootfs = self.dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let out = Command::new(tatami_bin())
            .args(["image", "--data-dir"])
            .arg(self.data())
            .arg("import-rootfs")
            .arg(&rootfs)
            .args(["--name", "alpine"])
            .output()
            .expect("tatami image import-rootfs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The data dir.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The kubeconfig `up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data().join("kubeconfig")
    }

    /// (Re)starts `tatami up` on the data dir.
    pub fn up(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("up.log"))
            .expect("log file");
        let child = Command::new(tatami_bin())
            .args(["up", "--port", "0", "--data-dir"])
            .arg(self.data())
            // Tests never reach outside this machine: docker.io images come from a mirror on a
            // closed loopback port, so a Pod that needs a pull fails fast instead.
            .args(["--registry-mirror", "docker.io=http://127.0.0.1:9"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tatami up");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig().exists() {
            assert!(
                Instant::now() < deadline,
                "tatami up wrote no kubeconfig: {}",
                self.log()
            );
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tatami up exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.kubectl(&["get", "--raw", "/readyz"]).stdout != "ok" {
            assert!(Instant::now() < deadline, "never ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What `up` logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// Stops `up` with `signal` ("TERM" or "KILL") and waits for it.
    pub fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// A kubectl command with this cluster's kubeconfig and a private HOME (fresh caches).
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("KUBECACHEDIR")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs kubectl.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        Run::from(self.kubectl_cmd(args).output().expect("run kubectl"))
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("kubectl output"))
    }

    /// A cluster whose node can run containers, with busybox imported as `alpine`; `None`
    /// (after saying why) on a machine without root and runc.
    pub fn with_containers(test: &str) -> Option<Cluster> {
        if !can_run_containers(test) {
            return None;
        }
        let mut c = Cluster::prepare();
        c.import_busybox_as_alpine();
        c.up();
        Some(c)
    }

    /// `kubectl apply -f` of `yaml`, written to `<name>.yaml`; it must succeed.
    /// The pid of the process holding the namespaces of the ready sandbox of the Pod named
    /// `pod`, as its sandbox's file records it.
    pub fn sandbox_holder(&self, pod: &str) -> i64 {
        let sandboxes = self.data().join("runtime/sandboxes");
        let sandbox: serde_json::Value = std::fs::read_dir(&sandboxes)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("sandbox.json")).ok())
            .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .find(|s| s["pod_name"] == pod && s["ready"] == true)
            .unwrap_or_else(|| panic!("no ready sandbox for {pod} in {}", sandboxes.display()));
        sandbox["holder"]["pid"].as_i64().expect("the holder's pid")
    }

    pub fn apply(&self, name: &str, yaml: &str) {
        let f = self.file(&format!("{name}.yaml"), yaml);
        self.kubectl(&["apply", "-f", f.to_str().unwrap()]).ok();
    }

    /// Writes `text` to a file in the test dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// A kube-rs client for this cluster.
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop("KILL");
        // Containers outlive `up`; `down` stops them and removes their mounts and networks.
        let _ = Command::new(tatami_bin())
            .args(["down", "--data-dir"])
            .arg(self.data())
            .status();
    }
}

/// Whether this process can run containers (root, with runc on PATH); prints why not.
pub fn can_run_containers(test: &str) -> bool {
    let root = nix_is_root();
    let runc = Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && runc) {
        let why = format!("{test} needs root and runc (root: {root}, runc: {runc})");
        // CI sets TATAMI_TEST_ALL: there a test that cannot run fails instead of passing.
        assert!(
            std::env::var_os("TATAMI_TEST_ALL").is_none(),
            "cannot run: {why}"
        );
        println!("skipped: {why}");
    }
    root && runc
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A minimal root filesystem made of Debian's busybox-static, like the acceptance scripts'.
pub fn busybox_rootfs(root: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox");
    for d in [
        "bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/log", "usr/bin",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("symlink");
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
}

/// The tutorial's manifests.
pub fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(name)
}

/// Retries `f` until it returns true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
