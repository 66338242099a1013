//! Turns a [`runtime::ContainerConfig`] and its image's config into an OCI runtime spec
//! (`config.json`), the way containerd's CRI plugin does: the same default mounts, capability
//! set, masked paths and device rules, and Docker's rules for merging command, args and env.
//! Everything here is pure.

use crate::ImageConfig;
use crate::error::{Error, Result};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use runtime::{ContainerConfig, Propagation, Security};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The PATH a container gets when its image sets none (containerd's default).
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities an unprivileged container keeps (containerd's and Docker's default set).
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, in kernel numbering order (CAP_CHOWN is 0).
const ALL_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths hidden from unprivileged containers (containerd's list).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths read-only in unprivileged containers (containerd's list).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The identity the container's process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Where a container's sandbox keeps what the container joins or mounts.
#[derive(Clone, Debug)]
pub(crate) struct SandboxPaths {
    /// `hosts`, `resolv.conf`, `hostname` and `shm/` live here.
    pub dir: PathBuf,
    /// The network namespace to join; none for host network.
    pub netns: Option<PathBuf>,
    /// The IPC namespace to join.
    pub ipcns: PathBuf,
    /// The UTS namespace to join; none for host network (the node's hostname).
    pub utsns: Option<PathBuf>,
    /// The hostname to set.
    pub hostname: String,
}

/// A container's root filesystem: the image's layers under a writable layer of its own, one
/// overlay that runc mounts inside the container's mount namespace. Kept out of the node's
/// mount table, which every `runc` reads several times: a mount there makes every later
/// container start slower.
pub(crate) struct Rootfs<'a> {
    /// The bundle's root, an empty directory the overlay covers.
    pub dir: &'a Path,
    /// The image's unpacked layers, lowest first.
    pub layers: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Everything the spec is made from.
pub(crate) struct SpecInput<'a> {
    pub config: &'a ContainerConfig,
    pub image: &'a ImageConfig,
    pub rootfs: &'a Rootfs<'a>,
    pub sandbox: &'a SandboxPaths,
    pub cgroups_path: &'a str,
    pub user: ResolvedUser,
}

/// The process's argv: Kubernetes' `command` replaces the image's Entrypoint, and `args`
/// replace its Cmd (when `command` is set, the image's Cmd is dropped too, as Docker does).
pub(crate) fn process_args(config: &ContainerConfig, image: &ImageConfig) -> Result<Vec<String>> {
    let mut argv: Vec<String> = if config.command.is_empty() {
        image.entrypoint.clone()
    } else {
        config.command.clone()
    };
    if !config.args.is_empty() {
        argv.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        argv.extend(image.cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(Error::InvalidConfig("no command specified".to_string()));
    }
    Ok(argv)
}

/// The environment: a default PATH and HOSTNAME, then the image's, then the config's; a later
/// value for the same name replaces the earlier one in place (containerd's rule).
pub(crate) fn merge_env(
    image_env: &[String],
    config_env: &[(String, String)],
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let name = entry.split('=').next().unwrap_or("").to_string();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(name.as_str()))
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    };
    set(DEFAULT_PATH.to_string());
    set(format!("HOSTNAME={hostname}"));
    for e in image_env {
        set(e.clone());
    }
    for (k, v) in config_env {
        set(format!("{k}={v}"));
    }
    env
}

/// The capability names (without `CAP_`) the process keeps: the default set, or every one
/// when privileged; then "ALL" in add or drop, then single adds, then single drops, the order
/// containerd applies them in.
pub(crate) fn capability_names(security: &Security, bounding: u64) -> Vec<String> {
    let all: Vec<String> = ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, s)| s.to_string())
        .collect();
    if security.privileged {
        return all;
    }
    let norm = |c: &String| {
        c.trim()
            .to_uppercase()
            .trim_start_matches("CAP_")
            .to_string()
    };
    let adds: Vec<String> = security.add_capabilities.iter().map(norm).collect();
    let drops: Vec<String> = security.drop_capabilities.iter().map(norm).collect();
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if adds.iter().any(|c| c == "ALL") {
        caps = all;
    }
    if drops.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    for c in adds.iter().filter(|c| *c != "ALL") {
        if !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    caps.retain(|c| !drops.contains(c));
    caps
}

/// The uid, gid and groups to run as: `runAsUser`/`runAsGroup` win over the image's `User`
/// (`uid`, `uid:gid`, `name` or `name:group`), names are looked up in the image's
/// `/etc/passwd` and `/etc/group` (their text is given), and the user's groups from
/// `/etc/group` are added to the supplemental groups, as containerd does.
pub(crate) fn resolve_user(
    security: &Security,
    image_user: Option<&str>,
    passwd: &str,
    group: &str,
) -> Result<ResolvedUser> {
    let image_user = image_user.unwrap_or("").trim();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    // passwd lines: name:x:uid:gid:gecos:home:shell
    let passwd_entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let group_entries: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();

    let (uid, mut gid, name) = if let Some(uid) = security.run_as_user {
        let entry = passwd_entries.iter().find(|f| f[2].parse() == Ok(uid));
        let gid = entry.and_then(|f| f[3].parse().ok()).unwrap_or(0);
        (uid, gid, entry.map(|f| f[0].to_string()))
    } else if user_part.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        let entry = passwd_entries.iter().find(|f| f[2].parse() == Ok(uid));
        let gid = entry.and_then(|f| f[3].parse().ok()).unwrap_or(0);
        (uid, gid, entry.map(|f| f[0].to_string()))
    } else {
        let entry = passwd_entries
            .iter()
            .find(|f| f[0] == user_part)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "no users found matching {user_part:?} in /etc/passwd"
                ))
            })?;
        let uid = entry[2].parse().unwrap_or(0);
        let gid = entry[3].parse().unwrap_or(0);
        (uid, gid, Some(user_part.to_string()))
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::InvalidConfig(format!("no groups found matching {g:?} in /etc/group"))
                })?,
        };
    }
    if let Some(g) = security.run_as_group {
        gid = g;
    }
    if security.run_as_non_root && uid == 0 {
        return Err(Error::InvalidConfig(
            "container has runAsNonRoot and image will run as root".to_string(),
        ));
    }
    let mut additional_gids: Vec<u32> = Vec::new();
    if let Some(name) = name {
        for f in &group_entries {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse::<u32>()
                && g != gid
                && !additional_gids.contains(&g)
            {
                additional_gids.push(g);
            }
        }
    }
    for g in &security.supplemental_groups {
        if !additional_gids.contains(g) {
            additional_gids.push(*g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

fn mount(dest: &str, typ: &str, source: impl Into<PathBuf>, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|source| Error::Spec { source })
}

fn spec_err(source: oci_spec::OciSpecError) -> Error {
    Error::Spec { source }
}

/// The capabilities this process may hand on (its bounding set, `CapBnd`): what "all" means
/// for a privileged container, as containerd takes its own. A kernel or sandbox that withholds
/// one (CAP_SYS_MODULE, say) would otherwise make runc fail to apply it.
pub(crate) fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Builds the OCI spec.
/// Refuses a propagating mount whose host path sits on a mount that cannot propagate, as
/// containerd does: `Bidirectional` needs a shared mount, `HostToContainer` a shared or slave
/// one. `mountinfo` is the text of /proc/self/mountinfo.
pub(crate) fn check_propagation(mounts: &[runtime::Mount], mountinfo: &str) -> Result<()> {
    for m in mounts {
        let (wanted, kinds): (&str, &[&str]) = match m.propagation {
            Propagation::Private => continue,
            Propagation::HostToContainer => ("a shared or slave", &["shared:", "master:"]),
            Propagation::Bidirectional => ("a shared", &["shared:"]),
        };
        let path = m
            .host_path
            .canonicalize()
            .unwrap_or_else(|_| m.host_path.clone());
        let Some((mount_point, optional)) = mount_of(mountinfo, &path) else {
            continue;
        };
        if !optional
            .split(' ')
            .any(|field| kinds.iter().any(|k| field.starts_with(k)))
        {
            return Err(Error::InvalidConfig(format!(
                "path {:?} is mounted on {mount_point:?} but it is not {wanted} mount",
                m.host_path.display().to_string()
            )));
        }
    }
    Ok(())
}

/// The mount that holds `path`: its mount point and optional fields (`shared:1 master:2`).
/// The deepest mount point wins, and of several on one point the last listed, the one on top.
fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, String)> {
    let mut best: Option<(String, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(end) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let Some(point) = fields.get(4).map(|p| p.replace("\\040", " ")) else {
            continue;
        };
        let deeper = best.as_ref().is_none_or(|(b, _)| {
            Path::new(&point).components().count() >= Path::new(b).components().count()
        });
        if path.starts_with(&point) && deeper {
            best = Some((point, fields.get(6..end).unwrap_or_default().join(" ")));
        }
    }
    best
}

pub(crate) fn build_spec(input: &SpecInput<'_>, bounding: u64) -> Result<Spec> {
    let config = input.config;
    let security = &config.security;
    let privileged = security.privileged;
    let args = process_args(config, input.image)?;
    let env = merge_env(&input.image.env, &config.env, &input.sandbox.hostname);
    let cwd = config
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| input.image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_string());

    let caps: HashSet<Capability> = capability_names(security, bounding)
        .iter()
        .map(|c| {
            Capability::from_str(c)
                .map_err(|_| Error::InvalidConfig(format!("unknown capability {c:?}")))
        })
        .collect::<Result<_>>()?;
    // No inheritable or ambient capabilities, as containerd gives (CVE-2022-24769): a
    // process that is not root gets none in effect. The builder would fill in oci-spec's three.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_err)?;
    let user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid)
        .additional_gids(input.user.additional_gids.clone())
        .build()
        .map_err(spec_err)?;
    let process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        // None, as the CRI sets: a container inherits the runtime's limits (the builder would
        // fill in oci-spec's open-files limit of 1024, which kind once shipped as a bug).
        .rlimits(Vec::new())
        .no_new_privileges(security.no_new_privileges && !privileged)
        .build()
        .map_err(spec_err)?;

    let user_dests: HashSet<&str> = config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    let ro_sys = if privileged { "rw" } else { "ro" };
    let root = input.rootfs;
    // overlayfs lists lower layers top first.
    let lower: Vec<String> = root
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let overlay = [
        format!("lowerdir={}", lower.join(":")),
        format!("upperdir={}", root.upper.display()),
        format!("workdir={}", root.work.display()),
    ];
    let overlay: Vec<&str> = overlay.iter().map(String::as_str).collect();
    let mut mounts = vec![
        mount("/", "overlay", "overlay", &overlay)?,
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_sys],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_sys],
        )?,
    ];
    // The Pod's files and its shared /dev/shm, unless the config mounts its own there.
    let file_mode = if security.read_only_root_filesystem {
        "ro"
    } else {
        "rw"
    };
    let sandbox_files = [
        ("/dev/shm", input.sandbox.dir.join("shm"), "rw"),
        ("/etc/hosts", input.sandbox.dir.join("hosts"), file_mode),
        (
            "/etc/hostname",
            input.sandbox.dir.join("hostname"),
            file_mode,
        ),
        (
            "/etc/resolv.conf",
            input.sandbox.dir.join("resolv.conf"),
            file_mode,
        ),
    ];
    for (dest, source, mode) in sandbox_files {
        if !user_dests.contains(dest) {
            mounts.push(mount(dest, "bind", source, &["rbind", "rprivate", mode])?);
        }
    }
    // Parents before children, so a volume inside another volume lands on top of it.
    let mut user_mounts: Vec<&runtime::Mount> = config.mounts.iter().collect();
    user_mounts.sort_by_key(|m| Path::new(&m.container_path).components().count());
    let mut rootfs_propagation: Option<&str> = None;
    for m in user_mounts {
        let propagation = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        // `rro` makes the mounts beneath read-only too (runc applies it with mount_setattr).
        let mut options = vec!["rbind", propagation, if m.read_only { "ro" } else { "rw" }];
        if m.recursive_read_only {
            options.push("rro");
        }
        mounts.push(mount(
            &m.container_path,
            "bind",
            m.host_path.clone(),
            &options,
        )?);
    }

    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()
            .map_err(spec_err)?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()
            .map_err(spec_err)?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Ipc)
            .path(input.sandbox.ipcns.clone())
            .build()
            .map_err(spec_err)?,
    ];
    if let Some(net) = &input.sandbox.netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(net.clone())
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(uts) = &input.sandbox.utsns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Uts)
                .path(uts.clone())
                .build()
                .map_err(spec_err)?,
        );
    }

    // Deny every device, then runc adds its default allow list (null, zero, tty, ...).
    let devices = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(privileged)
            .access("rwm")
            .build()
            .map_err(spec_err)?,
    ];
    let r = &config.resources;
    let mut resources = LinuxResourcesBuilder::default().devices(devices);
    if let Some(limit) = r.memory_limit.filter(|l| *l > 0) {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(spec_err)?,
        );
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(s) = r.cpu_shares {
            cpu = cpu.shares(s);
        }
        if let Some(q) = r.cpu_quota {
            cpu = cpu.quota(q);
        }
        if let Some(p) = r.cpu_period {
            cpu = cpu.period(p);
        }
        resources = resources.cpu(cpu.build().map_err(spec_err)?);
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(spec_err)?)
        .cgroups_path(PathBuf::from(input.cgroups_path));
    // A privileged container sees /proc and /sys unmasked, as containerd gives it. Both lists
    // are set either way: the builder would fill in oci-spec's own defaults.
    let paths = |list: &[&str]| -> Vec<String> {
        if privileged {
            Vec::new()
        } else {
            list.iter().map(|s| s.to_string()).collect()
        }
    };
    linux = linux
        .masked_paths(paths(MASKED_PATHS))
        .readonly_paths(paths(READONLY_PATHS));
    if let Some(p) = rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }

    let spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(root.dir)
                .readonly(security.read_only_root_filesystem)
                .build()
                .map_err(spec_err)?,
        )
        .mounts(mounts)
        .process(process)
        .linux(linux.build().map_err(spec_err)?);
    let mut spec = spec.build().map_err(spec_err)?;
    // Only in the Pod's own UTS namespace: a host-network Pod has the node's name, and runc
    // refuses a hostname without a private UTS namespace (the builder's default is "youki").
    spec.set_hostname(
        input
            .sandbox
            .utsns
            .is_some()
            .then(|| input.sandbox.hostname.clone()),
    );
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagating_mounts_need_a_mount_that_propagates() {
        let table = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /srv rw,relatime - tmpfs tmpfs rw
31 22 0:41 / /slave rw,relatime master:7 - tmpfs tmpfs rw
32 30 0:42 / /srv/shared rw,relatime shared:9 - tmpfs tmpfs rw
";
        let mount = |path: &str, propagation| runtime::Mount {
            container_path: "/m".into(),
            host_path: path.into(),
            read_only: false,
            recursive_read_only: false,
            propagation,
        };
        let check =
            |path, p| check_propagation(&[mount(path, p)], table).map_err(|e| e.to_string());
        assert!(check("/data/x", Propagation::Bidirectional).is_ok());
        assert!(check("/srv/shared/x", Propagation::Bidirectional).is_ok());
        assert!(check("/srv/x", Propagation::Private).is_ok());
        assert!(check("/slave/x", Propagation::HostToContainer).is_ok());
        assert_eq!(
            check("/srv/x", Propagation::Bidirectional),
            Err(r#"path "/srv/x" is mounted on "/srv" but it is not a shared mount"#.into())
        );
        assert_eq!(
            check("/slave/x", Propagation::Bidirectional),
            Err(r#"path "/slave/x" is mounted on "/slave" but it is not a shared mount"#.into())
        );
        assert_eq!(
            check("/srv/x", Propagation::HostToContainer),
            Err(
                r#"path "/srv/x" is mounted on "/srv" but it is not a shared or slave mount"#
                    .into()
            )
        );
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_merge_like_docker() {
        let img = image(&["/ep"], &["c1", "c2"]);
        let mut c = ContainerConfig::default();
        assert_eq!(
            process_args(&c, &img).unwrap(),
            strings(&["/ep", "c1", "c2"])
        );
        c.args = strings(&["a"]);
        assert_eq!(process_args(&c, &img).unwrap(), strings(&["/ep", "a"]));
        c.command = strings(&["/cmd"]);
        assert_eq!(process_args(&c, &img).unwrap(), strings(&["/cmd", "a"]));
        c.args.clear();
        // command set: the image's Cmd is dropped too
        assert_eq!(process_args(&c, &img).unwrap(), strings(&["/cmd"]));
        let empty = ContainerConfig::default();
        assert!(process_args(&empty, &image(&[], &[])).is_err());
    }

    #[test]
    fn env_later_wins_in_place() {
        let env = merge_env(
            &strings(&["PATH=/img", "A=1", "B=2"]),
            &[("A".into(), "x".into()), ("C".into(), "3".into())],
            "web",
        );
        assert_eq!(
            env,
            strings(&["PATH=/img", "HOSTNAME=web", "A=x", "B=2", "C=3"])
        );
        let env = merge_env(&[], &[], "h");
        assert_eq!(env[0], DEFAULT_PATH);
    }

    /// Capabilities 0 to 40.
    const EVERY: u64 = (1 << 41) - 1;

    #[test]
    fn capabilities_add_drop_all() {
        let mut s = Security::default();
        assert_eq!(capability_names(&s, EVERY).len(), DEFAULT_CAPS.len());
        s.add_capabilities = strings(&["NET_ADMIN"]);
        s.drop_capabilities = strings(&["CHOWN"]);
        let caps = capability_names(&s, EVERY);
        assert!(caps.contains(&"NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CHOWN".to_string()));
        s.drop_capabilities = strings(&["ALL"]);
        assert_eq!(capability_names(&s, EVERY), strings(&["NET_ADMIN"]));
        s.add_capabilities = strings(&["ALL"]);
        s.drop_capabilities = strings(&["SYS_ADMIN"]);
        let caps = capability_names(&s, EVERY);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"SYS_ADMIN".to_string()));
        s.privileged = true;
        assert_eq!(capability_names(&s, (1 << 38) - 1).len(), 38);
        // A capability outside the bounding set is never asked for.
        let caps = capability_names(&s, EVERY & !(1 << 16));
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"SYS_MODULE".to_string()));
    }

    #[test]
    fn users_resolve_from_passwd() {
        let passwd = "root:x:0:0::/root:/bin/sh\nweb:x:100:101::/home/web:/bin/sh\n";
        let group = "root:x:0:\nweb:x:101:\nwheel:x:10:web,other\n";
        let s = Security::default();
        let u = resolve_user(&s, Some("web"), passwd, group).unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 100,
                gid: 101,
                additional_gids: vec![10]
            }
        );
        let u = resolve_user(&s, Some("100:0"), passwd, group).unwrap();
        assert_eq!((u.uid, u.gid), (100, 0));
        let u = resolve_user(&s, None, passwd, group).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let s2 = Security {
            run_as_user: Some(1234),
            run_as_group: Some(5),
            supplemental_groups: vec![7],
            ..Default::default()
        };
        let u = resolve_user(&s2, Some("web"), passwd, group).unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 1234,
                gid: 5,
                additional_gids: vec![7]
            }
        );
        let s3 = Security {
            run_as_non_root: true,
            ..Default::default()
        };
        assert!(resolve_user(&s3, None, passwd, group).is_err());
        assert!(resolve_user(&s, Some("nobody"), passwd, group).is_err());
    }

    #[test]
    fn spec_has_namespaces_mounts_and_limits() {
        let mut c = ContainerConfig {
            command: strings(&["sh"]),
            ..Default::default()
        };
        c.mounts.push(runtime::Mount {
            host_path: "/data".into(),
            container_path: "/data".into(),
            read_only: true,
            recursive_read_only: false,
            propagation: Propagation::HostToContainer,
        });
        c.resources.memory_limit = Some(64 << 20);
        c.resources.cpu_quota = Some(50_000);
        c.security.read_only_root_filesystem = true;
        let sandbox = SandboxPaths {
            dir: "/sb".into(),
            netns: Some("/sb/ns/net".into()),
            ipcns: "/sb/ns/ipc".into(),
            utsns: Some("/sb/ns/uts".into()),
            hostname: "pod".into(),
        };
        let img = ImageConfig::default();
        let layers = ["/l/0".into(), "/l/1".into()];
        let rootfs = Rootfs {
            dir: Path::new("/c/rootfs"),
            layers: &layers,
            upper: Path::new("/c/upper"),
            work: Path::new("/c/work"),
        };
        let input = SpecInput {
            config: &c,
            image: &img,
            rootfs: &rootfs,
            sandbox: &sandbox,
            cgroups_path: "/kubepods/pod1/c1",
            user: ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
        };
        let spec = build_spec(&input, u64::MAX).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["hostname"], "pod");
        assert_eq!(json["root"]["readonly"], true);
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/sb/ns/net")
        );
        assert!(
            ns.iter()
                .any(|n| n["type"] == "pid" && n.get("path").is_none())
        );
        let mounts = json["mounts"].as_array().unwrap();
        // The overlay comes first, so everything else is mounted on top of it.
        assert_eq!(mounts[0]["destination"], "/");
        assert_eq!(
            mounts[0]["options"],
            serde_json::json!(["lowerdir=/l/1:/l/0", "upperdir=/c/upper", "workdir=/c/work"])
        );
        assert_eq!(json["root"]["path"], "/c/rootfs");
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(
            data["options"],
            serde_json::json!(["rbind", "rslave", "ro"])
        );
        let hosts = mounts
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["source"], "/sb/hosts");
        assert_eq!(json["linux"]["rootfsPropagation"], "rslave");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["cgroupsPath"], "/kubepods/pod1/c1");
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            DEFAULT_CAPS.len()
        );
        assert!(json["linux"]["maskedPaths"].as_array().unwrap().len() > 5);
        assert_eq!(json["process"]["rlimits"], serde_json::json!([]));
        let caps = &json["process"]["capabilities"];
        assert_eq!(caps["inheritable"], serde_json::json!([]));
        assert_eq!(caps["ambient"], serde_json::json!([]));

        // Privileged, on the node's network and name: nothing masked, no hostname of its own.
        let mut privileged = c.clone();
        privileged.security.privileged = true;
        let host_sandbox = SandboxPaths {
            netns: None,
            utsns: None,
            ..sandbox.clone()
        };
        let input = SpecInput {
            config: &privileged,
            sandbox: &host_sandbox,
            user: input.user.clone(),
            ..input
        };
        let json = serde_json::to_value(build_spec(&input, u64::MAX).unwrap()).unwrap();
        assert_eq!(json["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(json["linux"]["readonlyPaths"], serde_json::json!([]));
        assert!(json.get("hostname").is_none(), "{}", json["hostname"]);
    }
}
