//! The Pod network and the node bridge (one per runtime root, see [`PodNetwork::for_root`]).
//!
//! A sandbox's namespaces are held by a process of their own (`pause.rs`). Each Pod gets a
//! veth pair: the host end on the bridge, the other end as
//! `eth0` in the Pod with an address from a file-per-address pool under the root.
//! A Pod's links, address and route are set through netlink (`netlink.rs`), on a socket opened
//! by a thread that has entered the Pod's namespace; only the bridge is made with `ip`, once.

use crate::error::{Error, Result};
use crate::netlink::{self, Netlink};
use nix::mount::MntFlags;
use nix::sched::CloneFlags;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Pod network: a bridge on the node holds the first address, Pods get the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    /// The bridge's name (at most 15 bytes, the kernel's limit for interface names).
    pub bridge: String,
    /// The bridge's address, the Pods' gateway (10.88.0.1).
    pub gateway: Ipv4Addr,
    /// The prefix length (16).
    pub prefix: u8,
}

impl Default for PodNetwork {
    /// `tatami0` with 10.88.0.1/16: one network for the whole machine.
    fn default() -> Self {
        PodNetwork {
            bridge: "tatami0".to_string(),
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            prefix: 16,
        }
    }
}

/// Where [`PodNetwork::for_root`] picks subnets: 10.128.0.0/9, 32768 networks of /24. It
/// stays clear of the default 10.88.0.0/16 and of Kubernetes' usual Service range
/// 10.96.0.0/12.
const FOR_ROOT_BASE: u32 = 10 << 24 | 128 << 16;
const FOR_ROOT_SUBNETS: u64 = 1 << 15;

impl PodNetwork {
    /// A network of its own for the runtime keeping its files under `root`, so several
    /// clusters on one machine neither share a bridge nor tear down each other's: bridge
    /// `tt<8 hex digits>` and a /24 in 10.128.0.0/9 (254 Pods), both from a stable hash
    /// (FNV-1a, 64 bits) of the root's canonical path. The same root always gets the same
    /// network, so a restarted agent finds its Pods' bridge again.
    ///
    /// Collision odds: bridge names take 32 bits of the hash, subnets 15 other bits (32768
    /// choices), so among `n` roots two share a subnet with probability about
    /// `n(n-1)/65536` (0.003% for 2, 0.14% for 10). A shared subnet, or one that overlaps
    /// any route already on the node, is refused when the bridge is made, with an error
    /// naming the other device, rather than silently breaking both.
    pub fn for_root(root: &Path) -> PodNetwork {
        let hash = fnv1a(stable_path(root).as_os_str().as_encoded_bytes());
        let subnet = (hash >> 32) % FOR_ROOT_SUBNETS;
        let base = FOR_ROOT_BASE + ((subnet as u32) << 8);
        PodNetwork {
            bridge: format!("tt{:08x}", hash as u32),
            gateway: Ipv4Addr::from(base + 1),
            prefix: 24,
        }
    }

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

/// Detaches a mount, ignoring "not mounted" and "no such file".
pub(crate) fn unmount_quiet(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(Error::sys(format!("unmount {}", path.display()))(e)),
    }
}

/// Whether the network's bridge is there.
pub(crate) fn bridge_exists(net: &PodNetwork) -> bool {
    Path::new("/sys/class/net").join(&net.bridge).exists()
}

/// Makes the bridge with the gateway address, if it is not there. A new bridge's subnet must
/// not overlap a route the node already has (another cluster's bridge, a VPN, the LAN).
pub(crate) fn ensure_bridge(net: &PodNetwork) -> Result<()> {
    let bridge = net.bridge.as_str();
    if bridge_exists(net) {
        return Ok(());
    }
    let routes = run(Command::new("ip").args(["-o", "-4", "route", "show"]), None)?;
    if let Some((route, device)) = overlapping_route(&routes, net) {
        return Err(Error::NetworkOverlap {
            cidr: net.cidr(),
            route,
            device,
        });
    }
    let batch = format!(
        "link add {bridge} type bridge\naddr add {}/{} dev {bridge}\nlink set {bridge} up\n",
        net.gateway, net.prefix
    );
    match ip_batch(&batch) {
        // Another sandbox made it at the same moment.
        Err(_) if Path::new("/sys/class/net").join(bridge).exists() => Ok(()),
        other => other,
    }
}

/// The first route in `ip -o -4 route show` output, other than the default route and those
/// on our own bridge, whose destination overlaps the network; with its device.
fn overlapping_route(routes: &str, net: &PodNetwork) -> Option<(String, String)> {
    let mask = |prefix: u8| u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    for line in routes.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let device = words
            .iter()
            .position(|w| *w == "dev")
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("");
        if device == net.bridge {
            continue;
        }
        // The destination is the first word that parses (a type such as `unreachable` or
        // `blackhole` may come before it; `default` never parses).
        let Some((addr, prefix)) = words.iter().find_map(|w| {
            let (a, p) = w.split_once('/').unwrap_or((w, "32"));
            Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?))
        }) else {
            continue;
        };
        if prefix == 0 || prefix > 32 {
            continue;
        }
        let m = mask(prefix.min(net.prefix));
        if u32::from(addr) & m == u32::from(net.gateway) & m {
            return Some((format!("{addr}/{prefix}"), device.to_string()));
        }
    }
    None
}

/// Removes the bridge. Missing is fine.
pub(crate) fn remove_bridge(net: &PodNetwork) -> Result<()> {
    if !Path::new("/sys/class/net").join(&net.bridge).exists() {
        return Ok(());
    }
    run(Command::new("ip").args(["link", "del", &net.bridge]), None).map(|_| ())
}

/// FNV-1a, 64 bits: tiny, and unlike std's hasher it is the same in every build, which a
/// name that must survive upgrades of the binary needs.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The canonical form of a path that may not exist yet: its deepest existing ancestor
/// canonicalised, then the rest as given. So `root` hashes the same before and after it is
/// made, and through any symlink or relative spelling of it.
fn stable_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = absolute.as_path();
    loop {
        if let Ok(canonical) = cur.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(canonical, |p: PathBuf, c: &&std::ffi::OsStr| p.join(c));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                cur = parent;
            }
            _ => return absolute,
        }
    }
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
/// directly inside the Pod as `eth0`, then loopback, the address and default route inside.
/// Through netlink, on a socket here and one opened inside the Pod.
pub(crate) fn attach_pod(netns: &Path, veth: &str, ip: Ipv4Addr, net: &PodNetwork) -> Result<()> {
    let ns = std::fs::File::open(netns).map_err(Error::io("open", netns))?;
    let bridge = netlink::link_index(&net.bridge)?;
    Netlink::open()?.add_veth(veth, bridge, "eth0", &ns)?;
    let (prefix, gateway) = (net.prefix, net.gateway);
    in_netns(netns, move || {
        let mut inside = Netlink::open()?;
        inside.set_up(netlink::link_index("lo")?)?;
        let eth0 = netlink::link_index("eth0")?;
        inside.add_address(eth0, ip, prefix)?;
        inside.set_up(eth0)?;
        inside.add_default_route(eth0, gateway)
    })
}

/// Removes the Pod's veth pair (deleting one end deletes both). Missing is fine.
pub(crate) fn detach_pod(veth: &str) -> Result<()> {
    if !Path::new("/sys/class/net").join(veth).exists() {
        return Ok(());
    }
    match Netlink::open()?.delete_link(veth) {
        Err(_) if !Path::new("/sys/class/net").join(veth).exists() => Ok(()),
        other => other,
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
            bridge: "ttest".into(),
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
    fn each_root_gets_a_network_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let (na, nb) = (PodNetwork::for_root(&a), PodNetwork::for_root(&b));
        assert_ne!(na.bridge, nb.bridge);
        assert_ne!(na.cidr(), nb.cidr());
        for n in [&na, &nb] {
            assert!(n.bridge.len() <= 15 && n.bridge.starts_with("tt"), "{n:?}");
            assert_eq!(n.prefix, 24);
            assert_eq!(n.gateway.octets()[0], 10);
            assert!(n.gateway.octets()[1] >= 128, "{n:?}");
            assert_eq!(n.gateway.octets()[3], 1);
        }
        // The same before and after the root exists, and through a symlink.
        std::fs::create_dir(&a).unwrap();
        assert_eq!(PodNetwork::for_root(&a), na);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert_eq!(PodNetwork::for_root(&link), na);
        assert_eq!(PodNetwork::for_root(&a.join("x/..")).bridge.len(), 10);
        // And the same in every build: the hash is fixed, not std's.
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn overlapping_routes_are_found() {
        let net = PodNetwork {
            bridge: "tt1".into(),
            gateway: Ipv4Addr::new(10, 130, 7, 1),
            prefix: 24,
        };
        let routes = "default via 192.168.1.1 dev eth0 proto dhcp\n\
            10.130.7.0/24 dev tt1 proto kernel scope link src 10.130.7.1\n\
            192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.5\n";
        assert_eq!(overlapping_route(routes, &net), None);
        let wider = format!("{routes}10.128.0.0/9 dev tun0 scope link\n");
        assert_eq!(
            overlapping_route(&wider, &net),
            Some(("10.128.0.0/9".into(), "tun0".into()))
        );
        let host = "unreachable 10.130.7.9 proto static\n";
        assert_eq!(
            overlapping_route(host, &net),
            Some(("10.130.7.9/32".into(), "".into()))
        );
        assert_eq!(overlapping_route("10.130.8.0/24 dev x\n", &net), None);
    }

    #[test]
    fn veth_names_fit() {
        assert!(veth_name(&crate::meta::new_id()).len() <= 15);
    }
}
