//! Pod namespaces and the node bridge.
//!
//! A sandbox's network, IPC and UTS namespaces are made by a short-lived thread that
//! unshares them and bind-mounts `/proc/thread-self/ns/*` onto files in the sandbox directory
//! (what `ip netns add` does), so they outlive the thread and every container; containers join
//! them by path. Each Pod gets a veth pair: the host end on the bridge, the other end as
//! `eth0` in the Pod with an address from a file-per-address pool under the root.
//! Network settings use `ip` from iproute2: forking from a thread that has entered a
//! namespace puts the child in it too, so `ip` runs inside the Pod's namespace that way.

use crate::error::{Error, Result};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The node bridge's name.
pub const BRIDGE: &str = "tatami0";

/// The Pod network: the bridge holds the first address, Pods get the rest.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// The bridge's address, the Pods' gateway (10.88.0.1).
    pub gateway: Ipv4Addr,
    /// The prefix length (16).
    pub prefix: u8,
}

impl Default for PodNetwork {
    fn default() -> Self {
        PodNetwork {
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            prefix: 16,
        }
    }
}

impl PodNetwork {
    /// The network's CIDR, e.g. `10.88.0.0/16`.
    pub fn cidr(&self) -> String {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(self.gateway) & mask),
            self.prefix
        )
    }

    /// The usable host addresses after the gateway, lowest first.
    fn candidates(&self) -> impl Iterator<Item = Ipv4Addr> {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        let base = u32::from(self.gateway) & mask;
        let broadcast = base | !mask;
        let gw = u32::from(self.gateway);
        (base + 1..broadcast)
            .filter(move |a| *a != gw)
            .map(Ipv4Addr::from)
    }
}

/// Runs a command and turns a failure into an error carrying its stderr.
pub(crate) fn run(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Command {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::Command {
                command: shown.clone(),
                message: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if message.is_empty() {
            message = out.status.to_string();
        }
        return Err(Error::Command {
            command: shown,
            message,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` with these lines.
fn ip_batch(lines: &str) -> Result<()> {
    run(Command::new("ip").args(["-batch", "-"]), Some(lines)).map(|_| ())
}

/// The namespaces a sandbox holds, as files.
#[derive(Clone, Debug)]
pub(crate) struct NsFiles {
    pub net: Option<PathBuf>,
    pub ipc: PathBuf,
    pub uts: Option<PathBuf>,
}

impl NsFiles {
    /// The files for a sandbox directory; host network shares the node's net and UTS.
    pub fn new(dir: &Path, host_network: bool) -> NsFiles {
        let ns = dir.join("ns");
        NsFiles {
            net: (!host_network).then(|| ns.join("net")),
            ipc: ns.join("ipc"),
            uts: (!host_network).then(|| ns.join("uts")),
        }
    }

    fn all(&self) -> Vec<(&Path, &'static str, CloneFlags)> {
        let mut v = vec![(self.ipc.as_path(), "ipc", CloneFlags::CLONE_NEWIPC)];
        if let Some(p) = &self.net {
            v.push((p.as_path(), "net", CloneFlags::CLONE_NEWNET));
        }
        if let Some(p) = &self.uts {
            v.push((p.as_path(), "uts", CloneFlags::CLONE_NEWUTS));
        }
        v
    }
}

/// Whether a path is a mounted namespace file.
pub(crate) fn is_ns_mounted(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Makes the sandbox's namespaces and pins them to their files. Loopback comes up and the
/// hostname is set inside.
pub(crate) fn create_namespaces(files: &NsFiles, hostname: &str) -> Result<()> {
    for (path, _, _) in files.all() {
        if let Some(parent) = path.parent() {
            crate::meta::mkdir_all(parent)?;
        }
        std::fs::File::create(path).map_err(Error::io("create", path))?;
    }
    let files = files.clone();
    let hostname = hostname.to_string();
    // A fresh thread: unshare() of these three kinds changes only the calling thread, and the
    // thread ends right after, so no other task ever runs in the new namespaces.
    std::thread::spawn(move || -> Result<()> {
        let mut flags = CloneFlags::empty();
        for (_, _, f) in files.all() {
            flags |= f;
        }
        nix::sched::unshare(flags).map_err(Error::sys("unshare pod namespaces"))?;
        if files.uts.is_some() {
            nix::unistd::sethostname(&hostname)
                .map_err(Error::sys(format!("sethostname {hostname}")))?;
        }
        for (path, kind, _) in files.all() {
            let source = format!("/proc/thread-self/ns/{kind}");
            nix::mount::mount(
                Some(source.as_str()),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(Error::sys(format!(
                "bind mount {source} on {}",
                path.display()
            )))?;
        }
        if files.net.is_some() {
            ip_batch("link set lo up\n")?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| Error::Command {
        command: "create namespaces".into(),
        message: "thread panicked".into(),
    })?
}

/// Runs `f` in a thread that has joined the network namespace at `netns`.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let file = std::fs::File::open(netns).map_err(Error::io("open", netns))?;
    let shown = netns.display().to_string();
    std::thread::spawn(move || -> Result<T> {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(Error::sys(format!("setns {shown}")))?;
        f()
    })
    .join()
    .map_err(|_| Error::Command {
        command: "enter netns".into(),
        message: "thread panicked".into(),
    })?
}

/// Unmounts and removes the namespace files. Missing is fine.
pub(crate) fn remove_namespaces(files: &NsFiles) -> Result<()> {
    for (path, _, _) in files.all() {
        unmount_quiet(path)?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path)(e)),
        }
    }
    Ok(())
}

/// Detaches a mount, ignoring "not mounted" and "no such file".
pub(crate) fn unmount_quiet(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(Error::sys(format!("unmount {}", path.display()))(e)),
    }
}

/// Makes the bridge with the gateway address, if it is not there.
pub(crate) fn ensure_bridge(net: &PodNetwork) -> Result<()> {
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        return Ok(());
    }
    let batch = format!(
        "link add {BRIDGE} type bridge\naddr add {}/{} dev {BRIDGE}\nlink set {BRIDGE} up\n",
        net.gateway, net.prefix
    );
    match ip_batch(&batch) {
        // Another sandbox made it at the same moment.
        Err(_) if Path::new("/sys/class/net").join(BRIDGE).exists() => Ok(()),
        other => other,
    }
}

/// Removes the bridge. Missing is fine.
pub(crate) fn remove_bridge() -> Result<()> {
    if !Path::new("/sys/class/net").join(BRIDGE).exists() {
        return Ok(());
    }
    run(Command::new("ip").args(["link", "del", BRIDGE]), None).map(|_| ())
}

/// Takes the lowest free address: the pool is one file per address in use, made with
/// `create_new`, so two sandboxes never get the same one, even from two processes.
pub(crate) fn allocate_ip(ipam_dir: &Path, net: &PodNetwork, owner: &str) -> Result<Ipv4Addr> {
    crate::meta::mkdir_all(ipam_dir)?;
    for ip in net.candidates() {
        let path = ipam_dir.join(ip.to_string());
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(owner.as_bytes())
                    .map_err(Error::io("write", &path))?;
                return Ok(ip);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &path)(e)),
        }
    }
    Err(Error::AddressesExhausted(net.cidr()))
}

/// Gives an address back if `owner` holds it.
pub(crate) fn release_ip(ipam_dir: &Path, ip: Ipv4Addr, owner: &str) -> Result<()> {
    let path = ipam_dir.join(ip.to_string());
    match std::fs::read_to_string(&path) {
        Ok(held) if held == owner => {
            std::fs::remove_file(&path).map_err(Error::io("remove", &path))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("read", &path)(e)),
    }
}

/// The host end's name for a sandbox (interface names are at most 15 bytes).
pub(crate) fn veth_name(sandbox_id: &str) -> String {
    format!("veth{}", &sandbox_id[..sandbox_id.len().min(11)])
}

/// Connects the Pod's network namespace to the bridge: a veth pair whose far end is made
/// directly inside the Pod as `eth0`, then the address and default route inside.
pub(crate) fn attach_pod(netns: &Path, veth: &str, ip: Ipv4Addr, net: &PodNetwork) -> Result<()> {
    ensure_bridge(net)?;
    let host = format!(
        "link add {veth} type veth peer name eth0 netns {}\nlink set {veth} master {BRIDGE}\nlink set {veth} up\n",
        netns.display()
    );
    ip_batch(&host)?;
    let inside = format!(
        "addr add {ip}/{} dev eth0\nlink set eth0 up\nroute add default via {}\n",
        net.prefix, net.gateway
    );
    in_netns(netns, move || ip_batch(&inside))
}

/// Removes the Pod's veth pair (deleting one end deletes both). Missing is fine.
pub(crate) fn detach_pod(veth: &str) -> Result<()> {
    if !Path::new("/sys/class/net").join(veth).exists() {
        return Ok(());
    }
    match run(Command::new("ip").args(["link", "del", veth]), None) {
        Err(_) if !Path::new("/sys/class/net").join(veth).exists() => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_lowest_first_and_skip_the_gateway() {
        let net = PodNetwork::default();
        assert_eq!(net.cidr(), "10.88.0.0/16");
        let dir = tempfile::tempdir().unwrap();
        let a = allocate_ip(dir.path(), &net, "a").unwrap();
        let b = allocate_ip(dir.path(), &net, "b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 88, 0, 3));
        release_ip(dir.path(), a, "someone else").unwrap();
        assert_eq!(
            allocate_ip(dir.path(), &net, "c").unwrap(),
            Ipv4Addr::new(10, 88, 0, 4)
        );
        release_ip(dir.path(), a, "a").unwrap();
        assert_eq!(allocate_ip(dir.path(), &net, "d").unwrap(), a);
    }

    #[test]
    fn small_pool_runs_out() {
        let net = PodNetwork {
            gateway: Ipv4Addr::new(10, 99, 0, 1),
            prefix: 30,
        };
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            allocate_ip(dir.path(), &net, "a").unwrap(),
            Ipv4Addr::new(10, 99, 0, 2)
        );
        assert!(matches!(
            allocate_ip(dir.path(), &net, "b"),
            Err(Error::AddressesExhausted(_))
        ));
    }

    #[test]
    fn veth_names_fit() {
        assert!(veth_name(&crate::meta::new_id()).len() <= 15);
    }
}
