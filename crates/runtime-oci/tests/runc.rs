//! Black-box tests with the real runc, busybox and iproute2. They need root; without it (or
//! without runc or busybox) each test prints why it skipped. They run one at a time: they
//! share the test cgroup parent, which each one removes when it ends.

use runtime::{ContainerConfig, ContainerRuntime, ContainerState, SandboxConfig, StreamRequest};
use runtime_oci::{ImageConfig, OciConfig, OciRuntime, RootfsProvider};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    for tool in ["runc", "busybox", "ip"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            // CI sets TATAMI_TEST_ALL: there a test that cannot run fails instead of passing.
            assert!(
                std::env::var_os("TATAMI_TEST_ALL").is_none(),
                "cannot run: {why}"
            );
            // Straight to the process's stderr: the test harness hides eprintln! output of
            // passing tests, and a skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: this test needs root, runc, busybox and ip ({why})"
            );
            return;
        }
    };
}

/// One image: a busybox root filesystem.
struct Busybox {
    dir: PathBuf,
}

impl RootfsProvider for Busybox {
    fn image_config(&self, _image_id: &str) -> runtime::Result<ImageConfig> {
        Ok(ImageConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
            ..Default::default()
        })
    }
    fn layers(&self, _image_id: &str) -> runtime::Result<Vec<PathBuf>> {
        Ok(vec![self.dir.clone()])
    }
}

fn busybox_rootfs(r: &Path) {
    for d in [
        "bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "usr/bin",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::fs::copy(bb, r.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(bb)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = r.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
}

/// A runtime on a fresh root; everything it made is shut down and checked on drop, even when
/// the test fails.
struct Env {
    rt: OciRuntime,
    config: OciConfig,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env::with_root(|_| {})
    }

    /// With the runtime's root on a tmpfs of its own (as a data directory under a tmpfs /tmp
    /// is): nothing may take the filesystem's kind for a mount of the runtime's.
    fn on_tmpfs() -> Env {
        Env::with_root(|root| {
            std::fs::create_dir_all(root).unwrap();
            nix::mount::mount(
                Some("tmpfs"),
                root,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
        })
    }

    fn with_root(prepare: impl FnOnce(&Path)) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("tatami-oci-")
            .tempdir_in("/tmp")
            .unwrap();
        let image = dir.path().join("image");
        busybox_rootfs(&image);
        prepare(&dir.path().join("root"));
        let config = OciConfig::new(dir.path().join("root"), Arc::new(Busybox { dir: image }));
        let rt = OciRuntime::new(config.clone()).unwrap();
        Env { rt, config, dir }
    }

    fn sandbox_config(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            pod_uid: format!("uid-{name}"),
            pod_name: name.into(),
            namespace: "default".into(),
            hostname: name.into(),
            resolv_conf: "nameserver 127.0.0.1\n".into(),
            log_directory: self.dir.path().join("logs").join(name),
            cgroup_parent: format!("/tatami-test/pod{name}"),
            ..Default::default()
        }
    }
}

fn container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "busybox".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: PathBuf::from(format!("{name}/0.log")),
        ..Default::default()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let rt = self.rt.clone();
        let root = self.config.root.clone();
        std::thread::spawn(move || {
            let tokio = tokio::runtime::Runtime::new().unwrap();
            if let Err(e) = tokio.block_on(rt.shutdown_all()) {
                eprintln!("shutdown_all: {e}");
            }
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            for line in mounts
                .lines()
                .filter(|l| l.contains(root.to_str().unwrap()))
            {
                let target = line.split(' ').nth(4).unwrap();
                let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            }
        })
        .join()
        .unwrap();
        let _ = std::fs::remove_dir("/sys/fs/cgroup/memory/tatami-test");
        for c in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(c.path().join("tatami-test"));
        }
    }
}

async fn wait_exited(rt: &OciRuntime, id: &str) -> runtime::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = rt.container_status(id).await.unwrap();
        if st.state == ContainerState::Exited || Instant::now() > deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `c` in the sandbox, starts it and waits until it has exited.
async fn run_to_exit(
    env: &Env,
    sb: &str,
    sbc: &SandboxConfig,
    c: &ContainerConfig,
) -> runtime::ContainerStatus {
    let id = env.rt.create_container(sb, c, sbc).await.unwrap();
    env.rt.start_container(&id).await.unwrap();
    wait_exited(&env.rt, &id).await
}

/// The texts of a log's entries, in order.
fn log_texts(path: &Path) -> Vec<String> {
    log_entries(path).into_iter().map(|e| e.2).collect()
}

/// Starts `c` with stdin open in the sandbox and attaches to that stdin: the container's id
/// and the attach's stdin.
async fn start_with_stdin(
    env: &Env,
    sb: &str,
    sbc: &SandboxConfig,
    mut c: ContainerConfig,
) -> (String, Box<dyn tokio::io::AsyncWrite + Send + Unpin>) {
    c.stdin = true;
    let id = env.rt.create_container(sb, &c, sbc).await.unwrap();
    env.rt.start_container(&id).await.unwrap();
    let req = StreamRequest {
        stdin: true,
        ..Default::default()
    };
    let mut s = env.rt.attach(&id, &req).await.unwrap();
    (id, s.stdin.take().unwrap())
}

fn log_entries(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            assert!(
                f[0].parse::<jiff::Timestamp>().is_ok(),
                "bad timestamp in {l:?}"
            );
            (
                f[1].to_string(),
                f[2].to_string(),
                f.get(3).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_logs_and_exit_code() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("echo");
    let t = Instant::now();
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let t_sb = t.elapsed();
    let c = container(
        "main",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; printf 'no newline'; exit 3",
        ],
    );
    let id = env.rt.create_container(&sb, &c, &sbc).await.unwrap();
    let t_create = t.elapsed();
    env.rt.start_container(&id).await.unwrap();
    let t_start = t.elapsed();
    println!(
        "timing: run_sandbox {:?}, +create {:?}, +start {:?}, total {:?}",
        t_sb,
        t_create - t_sb,
        t_start - t_create,
        t_start
    );
    let st = wait_exited(&env.rt, &id).await;
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(3));
    assert_eq!(st.reason.as_deref(), Some("Error"));
    assert!(st.started_at.is_some() && st.finished_at.is_some());
    assert_eq!(st.log_path, sbc.log_directory.join("main/0.log"));
    let mut entries = log_entries(&st.log_path);
    entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
    assert_eq!(
        entries,
        vec![
            ("stderr".into(), "F".into(), "oops".into()),
            ("stdout".into(), "F".into(), "hello".into()),
            ("stdout".into(), "P".into(), "no newline".into()),
        ]
    );
    // The Pod's files and hostname are in place.
    let c2 = container(
        "files",
        &[
            "sh",
            "-c",
            "hostname; cat /etc/resolv.conf; grep -c localhost /etc/hosts",
        ],
    );
    let st2 = run_to_exit(&env, &sb, &sbc, &c2).await;
    assert_eq!(st2.exit_code, Some(0));
    assert_eq!(st2.reason.as_deref(), Some("Completed"));
    assert_eq!(
        log_texts(&st2.log_path),
        vec!["echo", "nameserver 127.0.0.1", "2"]
    );
    // A missing executable fails the start with runc's words.
    let bad = container("bad", &["nope"]);
    let id3 = env.rt.create_container(&sb, &bad, &sbc).await.unwrap();
    let err = env.rt.start_container(&id3).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("executable file not found in $PATH"),
        "{err}"
    );
    let st3 = env.rt.container_status(&id3).await.unwrap();
    assert_eq!(
        (st3.state, st3.exit_code, st3.reason.as_deref()),
        (ContainerState::Exited, Some(128), Some("StartError"))
    );
    // Removing twice is fine, and the log stays.
    env.rt.remove_container(&id).await.unwrap();
    env.rt.remove_container(&id).await.unwrap();
    assert!(st.log_path.exists());
    assert!(
        env.rt
            .container_status(&id)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_with_and_without_grace() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("stop");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    // pid 1 ignores SIGTERM without a handler, so only SIGKILL ends it.
    let id = env
        .rt
        .create_container(&sb, &container("sleeper", &["sleep", "1000"]), &sbc)
        .await
        .unwrap();
    env.rt.start_container(&id).await.unwrap();
    assert_eq!(
        env.rt.container_status(&id).await.unwrap().state,
        ContainerState::Running
    );
    let t = Instant::now();
    env.rt.stop_container(&id, Duration::ZERO).await.unwrap();
    println!("stop with grace 0 took {:?}", t.elapsed());
    let st = env.rt.container_status(&id).await.unwrap();
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::Exited, Some(137))
    );
    env.rt.stop_container(&id, Duration::ZERO).await.unwrap();

    let trap = container(
        "trap",
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let id = env.rt.create_container(&sb, &trap, &sbc).await.unwrap();
    env.rt.start_container(&id).await.unwrap();
    let log = env.rt.container_status(&id).await.unwrap().log_path;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    env.rt
        .stop_container(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let st = env.rt.container_status(&id).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(0)));
    assert!(log_entries(&log).iter().any(|e| e.2 == "bye"));

    // With a grace shorter than the process takes, SIGKILL follows.
    let id = env
        .rt
        .create_container(&sb, &container("slow", &["sleep", "1000"]), &sbc)
        .await
        .unwrap();
    env.rt.start_container(&id).await.unwrap();
    let t = Instant::now();
    env.rt
        .stop_container(&id, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        env.rt.container_status(&id).await.unwrap().exit_code,
        Some(137)
    );
    env.rt.stop_sandbox(&sb).await.unwrap();
    env.rt.stop_sandbox(&sb).await.unwrap();
    let uid = env.sandbox_config("stop").pod_uid;
    let all = env.rt.list_containers().await.unwrap();
    assert_eq!(env.rt.list_pod(&uid).await.unwrap().1.len(), all.len());
    assert!(!all.is_empty());
    env.rt.remove_sandbox(&sb).await.unwrap();
    env.rt.remove_sandbox(&sb).await.unwrap();
    assert!(env.rt.list_containers().await.unwrap().is_empty());
    let (sandboxes, containers) = env.rt.list_pod(&uid).await.unwrap();
    assert!(sandboxes.is_empty() && containers.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_mounts_and_security() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("mounts");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let data = env.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "from the host\n").unwrap();
    let mut c = container(
        "m",
        &[
            "sh",
            "-c",
            "cat /data/f; touch /data/g || echo ro; id -u; touch /x || echo rootro",
        ],
    );
    c.mounts.push(runtime::Mount {
        host_path: data.clone(),
        container_path: "/data".into(),
        read_only: true,
        recursive_read_only: false,
        propagation: Default::default(),
    });
    c.security.run_as_user = Some(65534);
    c.security.read_only_root_filesystem = true;
    let st = run_to_exit(&env, &sb, &sbc, &c).await;
    let out: Vec<String> = log_entries(&st.log_path)
        .into_iter()
        .filter(|e| e.0 == "stdout")
        .map(|e| e.2)
        .collect();
    assert_eq!(out, vec!["from the host", "ro", "65534", "rootro"]);
    assert!(!data.join("g").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_reach_each_other_and_exec() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let (c1, c2) = (env.sandbox_config("a"), env.sandbox_config("b"));
    let sb1 = env.rt.run_sandbox(&c1).await.unwrap();
    let sb2 = env.rt.run_sandbox(&c2).await.unwrap();
    let list = env.rt.list_sandboxes().await.unwrap();
    let ip1 = list.iter().find(|s| s.id == sb1).unwrap().ip.unwrap();
    let ip2 = list.iter().find(|s| s.id == sb2).unwrap().ip.unwrap();
    assert_ne!(ip1, ip2);
    assert!(list.iter().all(|s| s.ready));
    let server = container(
        "server",
        &["sh", "-c", "echo hi-from-a | nc -l -p 8080; sleep 1000"],
    );
    let srv = env.rt.create_container(&sb1, &server, &c1).await.unwrap();
    env.rt.start_container(&srv).await.unwrap();
    let client = container(
        "client",
        &[
            "sh",
            "-c",
            &format!(
                "ping -c1 -W2 {ip1} >/dev/null && echo ping-ok; sleep 0.2; nc {ip1} 8080 </dev/null"
            ),
        ],
    );
    let cl = env.rt.create_container(&sb2, &client, &c2).await.unwrap();
    env.rt.start_container(&cl).await.unwrap();
    let st = wait_exited(&env.rt, &cl).await;
    assert_eq!(
        log_texts(&st.log_path),
        vec!["ping-ok", "hi-from-a"],
        "exit {:?}",
        st.exit_code
    );

    // Each Pod's own sandbox and containers, also from a new runtime on the same root (its
    // index is built from the files).
    let fresh = OciRuntime::new(env.config.clone()).unwrap();
    for rt in [&env.rt, &fresh] {
        let (sandboxes, containers) = rt.list_pod(&c2.pod_uid).await.unwrap();
        assert_eq!(sandboxes.iter().map(|s| &s.id).collect::<Vec<_>>(), [&sb2]);
        assert_eq!(containers.iter().map(|c| &c.id).collect::<Vec<_>>(), [&cl]);
    }

    // exec: exit codes, stdin, and a missing executable.
    let req = |cmd: &[&str], stdin: bool| StreamRequest {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let s = env
        .rt
        .exec(&srv, &req(&["sh", "-c", "exit 3"], false))
        .await
        .unwrap();
    assert_eq!(s.exit.await.unwrap(), 3);
    let mut s = env.rt.exec(&srv, &req(&["cat"], true)).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"through stdin\n").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    s.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "through stdin\n");
    assert_eq!(s.exit.await.unwrap(), 0);
    let mut s = env.rt.exec(&srv, &req(&["nope"], false)).await.unwrap();
    let mut err = String::new();
    s.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert_eq!(s.exit.await.unwrap(), 255);
    assert!(
        err.contains("exec: \"nope\": executable file not found in $PATH"),
        "{err}"
    );

    // A new runtime on the same root (an agent restart) sees the same things.
    let again = OciRuntime::new(env.config.clone()).unwrap();
    let cs = again.list_containers().await.unwrap();
    let running = cs.iter().find(|c| c.id == srv).unwrap();
    assert_eq!(running.state, ContainerState::Running);
    assert_eq!(running.labels, server.labels);
    assert_eq!(cs.iter().find(|c| c.id == cl).unwrap().exit_code, Some(0));
    assert_eq!(again.list_sandboxes().await.unwrap().len(), 2);
    let s = again.exec(&srv, &req(&["true"], false)).await.unwrap();
    assert_eq!(s.exit.await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_all_leaves_nothing() {
    require_root!();
    let _g = lock().await;
    shutdown_leaves_nothing(&Env::new()).await;
    let env = Env::on_tmpfs();
    shutdown_leaves_nothing(&env).await;
    nix::mount::umount2(&env.config.root, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

async fn shutdown_leaves_nothing(env: &Env) {
    let sbc = env.sandbox_config("down");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let id = env
        .rt
        .create_container(&sb, &container("s", &["sleep", "1000"]), &sbc)
        .await
        .unwrap();
    env.rt.start_container(&id).await.unwrap();
    let start: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.config
                .root
                .join("containers")
                .join(&id)
                .join("start.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let shim_pid = start["shim_pid"].as_i64().unwrap() as i32;
    let pid = start["pid"].as_i64().unwrap() as i32;
    let holder_pid = holder_pid(env, &sb);
    let netns = std::fs::read_link(format!("/proc/{holder_pid}/ns/net")).unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        netns,
        "the container is in the holder's network namespace"
    );
    let bridge = Path::new("/sys/class/net").join(&env.config.network.bridge);
    assert!(bridge.exists());
    env.rt.shutdown_all().await.unwrap();
    let runc_list = std::process::Command::new("runc")
        .arg("--root")
        .arg(env.config.root.join("runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&runc_list.stdout).trim(), "");
    let root = format!("{}/", env.config.root.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root), "mounts left under {root}");
    assert!(!bridge.exists());
    assert!(!Path::new("/proc").join(pid.to_string()).exists());
    // The shim exits right after recording the exit; it and the killed namespace holder are
    // init's children by now, reaped soon after.
    for (process, what) in [(shim_pid, "shim"), (holder_pid, "namespace holder")] {
        let proc = Path::new("/proc").join(process.to_string());
        let deadline = Instant::now() + Duration::from_secs(3);
        while proc.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!proc.exists(), "{what} still running");
    }
    assert!(env.rt.list_sandboxes().await.unwrap().is_empty());
}

/// The pid of the process holding a sandbox's namespaces, from its file.
fn holder_pid(env: &Env, sandbox: &str) -> i32 {
    let path = env
        .config
        .root
        .join("sandboxes")
        .join(sandbox)
        .join("sandbox.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    meta["holder"]["pid"].as_i64().unwrap() as i32
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_whose_holder_died_is_not_ready() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("holder");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let pid = holder_pid(&env, &sb);
    let hostname = std::process::Command::new("nsenter")
        .arg(format!("--uts=/proc/{pid}/ns/uts"))
        .arg("hostname")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "holder");
    // Kubelet's score for the pause container where the node may lower scores
    // (CAP_SYS_RESOURCE); elsewhere the sandbox is made all the same.
    let can_lower = std::process::Command::new("sh")
        .args(["-c", "echo -998 > /proc/self/oom_score_adj"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    let oom = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(oom.trim(), if can_lower { "-998" } else { "0" });
    assert!(env.rt.list_sandboxes().await.unwrap()[0].ready);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.rt.list_sandboxes().await.unwrap()[0].ready && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!env.rt.list_sandboxes().await.unwrap()[0].ready);
    let err = env
        .rt
        .create_container(&sb, &container("late", &["true"]), &sbc)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not ready"), "{err}");
    env.rt.remove_sandbox(&sb).await.unwrap();
    assert!(env.rt.list_sandboxes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_sandboxes_share_the_nodes_network_and_name_but_not_ipc() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let mut sbc = env.sandbox_config("hostnet");
    sbc.host_network = true;
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let script = "hostname; for ns in net uts ipc; do readlink /proc/self/ns/$ns; done";
    let st = run_to_exit(&env, &sb, &sbc, &container("ns", &["sh", "-c", script])).await;
    assert_eq!(st.exit_code, Some(0));
    let own = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    let node = nix::unistd::gethostname().unwrap();
    let lines = log_texts(&st.log_path);
    assert_eq!(lines[0], node.to_string_lossy());
    assert_eq!(lines[1], own("net"));
    assert_eq!(lines[2], own("uts"));
    assert_ne!(lines[3], own("ipc"), "a Pod has its own IPC namespace");
    env.rt.remove_sandbox(&sb).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_unprivileged_containers_have_masked_and_read_only_paths() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("masks");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    // Mounts over /proc/timer_list (masked) and /proc/sys (read-only), as the container sees
    // them (runc masks only what exists: this kernel may have no /proc/kcore).
    let script = "grep -c -e ' /proc/timer_list ' -e ' /proc/sys ' /proc/self/mountinfo; true";
    for (privileged, expected) in [(false, "2"), (true, "0")] {
        let mut c = container(&format!("p{privileged}"), &["sh", "-c", script]);
        c.security.privileged = privileged;
        let st = run_to_exit(&env, &sb, &sbc, &c).await;
        assert_eq!(
            log_texts(&st.log_path),
            [expected],
            "privileged: {privileged}"
        );
    }
    env.rt.remove_sandbox(&sb).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_inherit_the_runtimes_open_files_limit() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("limits");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let c = container("ulimit", &["sh", "-c", "ulimit -n"]);
    let st = run_to_exit(&env, &sb, &sbc, &c).await;
    // This process's soft limit: "Max open files  <soft>  <hard>  files".
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_eq!(log_texts(&st.log_path), [soft]);
    env.rt.remove_sandbox(&sb).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_is_not_root_has_no_capabilities_in_effect() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("caps");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let script = "grep -E '^Cap(Inh|Eff|Amb)' /proc/self/status";
    let mut c = container("caps", &["sh", "-c", script]);
    c.security.run_as_user = Some(1000);
    let st = run_to_exit(&env, &sb, &sbc, &c).await;
    let zero = "0000000000000000";
    assert_eq!(
        log_texts(&st.log_path),
        [
            format!("CapInh:\t{zero}"),
            format!("CapEff:\t{zero}"),
            format!("CapAmb:\t{zero}")
        ]
    );
    env.rt.remove_sandbox(&sb).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_with_stdin() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("attach");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let mut c = container(
        "cat",
        &[
            "sh",
            "-c",
            "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; exit 4",
        ],
    );
    c.stdin = true;
    c.stdin_once = true;
    let id = env.rt.create_container(&sb, &c, &sbc).await.unwrap();
    env.rt.start_container(&id).await.unwrap();
    let req = StreamRequest {
        stdin: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut s = env.rt.attach(&id, &req).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"one\n").await.unwrap();
    let mut out = s.stdout.take().unwrap();
    let mut err = s.stderr.take().unwrap();
    let mut buf = vec![0u8; 7];
    out.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"got one");
    let mut buf = vec![0u8; 7];
    err.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"err one");
    // stdinOnce: closing this attach's stdin closes the container's, so `read` ends.
    drop(stdin);
    assert_eq!(s.exit.await.unwrap(), 4);
    let st = wait_exited(&env.rt, &id).await;
    assert_eq!(st.exit_code, Some(4));
    let entries = log_entries(&st.log_path);
    assert!(entries.contains(&("stdout".into(), "F".into(), "got one".into())));
    assert!(entries.contains(&("stderr".into(), "F".into(), "err one".into())));
}

/// A container that never reads its stdin while a client floods it: its output still reaches
/// the log while it runs (the shim must not wait on a full stdin pipe).
#[tokio::test(flavor = "multi_thread")]
async fn unread_stdin_does_not_stall_output() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("flood");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let talker = container(
        "talker",
        &["sh", "-c", "sleep 0.5; echo one; echo two; sleep 100"],
    );
    let (id, mut stdin) = start_with_stdin(&env, &sb, &sbc, talker).await;
    // Far more than a pipe holds, before the container writes anything.
    let flood = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..32 {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let log = sbc.log_directory.join("talker/0.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = ("stdout".to_string(), "F".to_string(), "two".to_string());
    while !log_entries(&log).contains(&want) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log_entries(&log).contains(&want), "{:?}", log_entries(&log));
    assert_eq!(
        env.rt.container_status(&id).await.unwrap().state,
        ContainerState::Running
    );
    flood.abort();
    env.rt.stop_container(&id, Duration::ZERO).await.unwrap();
}

/// A container reads a megabyte from an attach's stdin at its own pace (the shim waits for
/// room in the pipe), and one without stdin reads EOF from its /dev/null.
#[tokio::test(flavor = "multi_thread")]
async fn stdin_reaches_a_slow_reader_and_no_stdin_reads_eof() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("slowin");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let mut reader = container("reader", &["sh", "-c", "sleep 0.5; wc -c"]);
    reader.stdin_once = true;
    let (id, mut stdin) = start_with_stdin(&env, &sb, &sbc, reader).await;
    stdin.write_all(&vec![b'x'; 1 << 20]).await.unwrap();
    drop(stdin);
    let st = wait_exited(&env.rt, &id).await;
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(log_texts(&st.log_path), ["1048576"]);

    let none = container("none", &["sh", "-c", "cat; echo cat=$?"]);
    let st = run_to_exit(&env, &sb, &sbc, &none).await;
    assert_eq!(log_texts(&st.log_path), ["cat=0"]);
}

/// Reads from a terminal's output until `want` shows up (or the output ends), and returns
/// all it read.
async fn read_until(out: &mut (dyn tokio::io::AsyncRead + Send + Unpin), want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(want) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_a_terminal() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("tty");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let id = env
        .rt
        .create_container(&sb, &container("s", &["sleep", "1000"]), &sbc)
        .await
        .unwrap();
    env.rt.start_container(&id).await.unwrap();
    let req = |cmd: &[&str], stdin: bool| StreamRequest {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout: true,
        stderr: true,
        tty: true,
    };

    let mut s = env
        .rt
        .exec(&id, &req(&["sh", "-c", "tty; echo hi; exit 4"], false))
        .await
        .unwrap();
    assert!(s.stderr.is_none(), "a terminal merges stderr into stdout");
    let mut out = String::new();
    s.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("hi\r\n"), "{out:?}");
    assert_eq!(s.exit.await.unwrap(), 4);

    // An interactive shell: the size set through `resize` is what the command sees.
    let mut s = env.rt.exec(&id, &req(&["sh"], true)).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    let mut out = s.stdout.take().unwrap();
    let resize = s.resize.take().unwrap();
    resize.send((100, 30)).await.unwrap();
    // Only once the shell prompts, so the resize has been applied before `stty` runs.
    let prompt = read_until(&mut *out, "# ").await;
    assert!(prompt.contains("# "), "{prompt:?}");
    stdin.write_all(b"stty size\n").await.unwrap();
    let seen = read_until(&mut *out, "30 100").await;
    assert!(seen.contains("30 100"), "{seen:?}");
    resize.send((120, 40)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stdin.write_all(b"stty size; exit 7\n").await.unwrap();
    let seen = read_until(&mut *out, "40 120").await;
    assert!(seen.contains("40 120"), "{seen:?}");
    assert_eq!(s.exit.await.unwrap(), 7);

    // runc's own failure reaches the terminal.
    let mut s = env.rt.exec(&id, &req(&["nope"], false)).await.unwrap();
    let mut out = String::new();
    s.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(out.contains("executable file not found"), "{out:?}");
    assert_ne!(s.exit.await.unwrap(), 0);
}

/// Runs a command in a container without a terminal and returns its exit code and output.
async fn exec_out(rt: &OciRuntime, id: &str, cmd: &[&str]) -> (i32, String) {
    let req = StreamRequest {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    };
    let mut s = rt.exec(id, &req).await.unwrap();
    let mut out = String::new();
    s.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    (s.exit.await.unwrap(), out)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_roots_two_bridges() {
    require_root!();
    let _g = lock().await;
    let (one, two) = (Env::new(), Env::new());
    let (n1, n2) = (&one.config.network, &two.config.network);
    assert_ne!(n1.bridge, n2.bridge);
    assert_ne!(n1.cidr(), n2.cidr());
    let mut pods = Vec::new();
    for env in [&one, &two] {
        let sbc = env.sandbox_config("p");
        let sb = env.rt.run_sandbox(&sbc).await.unwrap();
        let id = env
            .rt
            .create_container(&sb, &container("s", &["sleep", "1000"]), &sbc)
            .await
            .unwrap();
        env.rt.start_container(&id).await.unwrap();
        let ip = env.rt.list_sandboxes().await.unwrap()[0].ip.unwrap();
        pods.push((id, ip));
    }
    for (env, (id, ip)) in [&one, &two].into_iter().zip(&pods) {
        let net = &env.config.network;
        let (code, out) = exec_out(&env.rt, id, &["ip", "-4", "-o", "addr", "show", "eth0"]).await;
        assert_eq!(code, 0);
        assert!(out.contains(&format!("{ip}/24")), "{out}");
        let gw = net.gateway.to_string();
        assert_eq!(
            exec_out(&env.rt, id, &["ping", "-c1", "-W2", &gw]).await.0,
            0
        );
    }

    // Shutting the first down leaves the second's bridge and Pods working.
    one.rt.shutdown_all().await.unwrap();
    assert!(!Path::new("/sys/class/net").join(&n1.bridge).exists());
    assert!(Path::new("/sys/class/net").join(&n2.bridge).exists());
    let (id2, ip2) = &pods[1];
    assert_eq!(
        two.rt.container_status(id2).await.unwrap().state,
        ContainerState::Running
    );
    let gw2 = n2.gateway.to_string();
    assert_eq!(
        exec_out(&two.rt, id2, &["ping", "-c1", "-W2", &gw2])
            .await
            .0,
        0
    );
    // A new Pod of the second reaches its first one over the bridge.
    let sbc = two.sandbox_config("q");
    let sb = two.rt.run_sandbox(&sbc).await.unwrap();
    let id = two
        .rt
        .create_container(&sb, &container("s", &["sleep", "1000"]), &sbc)
        .await
        .unwrap();
    two.rt.start_container(&id).await.unwrap();
    let target = ip2.to_string();
    assert_eq!(
        exec_out(&two.rt, &id, &["ping", "-c1", "-W2", &target])
            .await
            .0,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn termination_message_from_the_mounted_file() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("term");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let file = env.dir.path().join("termination-log");
    std::fs::write(&file, "").unwrap();
    let mut c = container(
        "t",
        &[
            "sh",
            "-c",
            "printf 'it went wrong' > /dev/termination-log; exit 2",
        ],
    );
    c.labels.insert(
        runtime_oci::TERMINATION_MESSAGE_PATH_LABEL.into(),
        "/dev/termination-log".into(),
    );
    c.mounts.push(runtime::Mount {
        host_path: file.clone(),
        container_path: "/dev/termination-log".into(),
        read_only: false,
        recursive_read_only: false,
        propagation: Default::default(),
    });
    let st = run_to_exit(&env, &sb, &sbc, &c).await;
    assert_eq!(st.exit_code, Some(2));
    assert_eq!(st.message.as_deref(), Some("it went wrong"));
    // Without the label the file is just a mount.
    let mut plain = c.clone();
    plain.name = "plain".into();
    plain.log_path = PathBuf::from("plain/0.log");
    plain.labels.clear();
    assert_eq!(run_to_exit(&env, &sb, &sbc, &plain).await.message, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_a_terminal_container() {
    require_root!();
    let _g = lock().await;
    let env = Env::new();
    let sbc = env.sandbox_config("ttyc");
    let sb = env.rt.run_sandbox(&sbc).await.unwrap();
    let mut c = container("sh", &["sh"]);
    c.stdin = true;
    c.tty = true;
    let id = env.rt.create_container(&sb, &c, &sbc).await.unwrap();
    env.rt.start_container(&id).await.unwrap();
    let req = StreamRequest {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
        ..Default::default()
    };
    let mut s = env.rt.attach(&id, &req).await.unwrap();
    assert!(s.stderr.is_none(), "a terminal merges stderr into stdout");
    let mut stdin = s.stdin.take().unwrap();
    let mut out = s.stdout.take().unwrap();
    // Right after the start: the shim's sockets all exist once it says it started.
    let resize = s.resize.take().unwrap();
    resize.send((90, 20)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stdin.write_all(b"tty; stty size; exit 5\n").await.unwrap();
    let seen = read_until(&mut *out, "20 90").await;
    assert!(
        seen.contains("/dev/pts/") && seen.contains("20 90"),
        "{seen:?}"
    );
    assert_eq!(s.exit.await.unwrap(), 5);
    assert_eq!(wait_exited(&env.rt, &id).await.exit_code, Some(5));
}
