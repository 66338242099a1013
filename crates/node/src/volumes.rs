//! A Pod's volumes, laid out as kubelet lays them (`pods/<uid>/volumes/<plugin>/<vol>`):
//! `emptyDir` is a directory under the Pod's dir (a tmpfs for `medium: Memory`), made once when the Pod starts (a `ready`
//! marker records that, so container restarts and agent restarts keep its content) and
//! removed with the Pod; `hostPath` is checked or created per its type and bind-mounted as is;
//! configMap, secret, downwardAPI and projected volumes are written by the [`atomic_writer`]
//! on every sync (secret and projected on a tmpfs of their own, so their bytes never reach the
//! node's disk) and always mounted read-only. [`make_mounts`] turns a container's volumeMounts
//! into the runtime's bind mounts, plus the termination-message file.
//!
//! Other volume kinds are refused with a FailedMount that says why, so no container starts
//! without a volume it asked for.
//!
//! [`atomic_writer`]: crate::atomic_writer

use crate::atomic_writer;
use crate::env::EnvContext;
use crate::payload::{self, Sources};
use crate::subpath;
use api::strategy::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use nix::mount::{MntFlags, MsFlags};
use runtime::{Mount, Propagation};
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// kubelet's escaped plugin directory name for emptyDir.
pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";

/// The plugin directory of a volume kind that has one (hostPath has none).
fn plugin_of(v: &Volume) -> Option<&'static str> {
    Some(if v.empty_dir.is_some() {
        EMPTY_DIR_PLUGIN
    } else if v.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if v.secret.is_some() {
        "kubernetes.io~secret"
    } else if v.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if v.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        return None;
    })
}

/// `<root>/pods/<uid>`.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// `<root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<vol>`.
pub fn empty_dir_path(root: &Path, uid: &str, volume: &str) -> PathBuf {
    volume_path(root, uid, EMPTY_DIR_PLUGIN, volume)
}

/// `<root>/pods/<uid>/volumes/<plugin>/<vol>`.
fn volume_path(root: &Path, uid: &str, plugin: &str, volume: &str) -> PathBuf {
    pod_dir(root, uid).join("volumes").join(plugin).join(volume)
}

/// The termination-message file of one container instance
/// (`<root>/pods/<uid>/containers/<name>/<attempt>`).
pub fn termination_log_path(root: &Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
    pod_dir(root, uid)
        .join("containers")
        .join(container)
        .join(attempt.to_string())
}

/// A volume that could not be set up: its name and kubelet's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError {
    /// The volume's name.
    pub volume: String,
    /// What went wrong (`hostPath type check failed: /x is not a directory`).
    pub message: String,
    /// An earlier pass set the volume up, and it stays as that pass left it (a ConfigMap that
    /// lost a key no longer updates the files, but the running containers keep them).
    pub mounted: bool,
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// Makes every volume of the Pod that is `due` ready, and rewrites the atomic-writer ones whose
/// content changed (idempotent). `sources` holds the ConfigMaps and Secrets that
/// [`payload::references`] names. Each volume is tried, whatever befell the others; the
/// failures are returned, which kubelet shows as
/// `MountVolume.SetUp failed for volume "<vol>" : <message>`.
pub fn setup(
    root: &Path,
    pod: &Pod,
    sources: &Sources,
    ctx: &EnvContext,
    due: &dyn Fn(&str) -> bool,
) -> Vec<SetupError> {
    let uid = uid_of(pod);
    let spec = pod.spec.as_ref();
    let volumes = spec.and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    let fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let tmpfs = |size_limit: Option<&str>| tmpfs_options(pod, size_limit, &ctx.allocatable_memory);
    let mut failures = Vec::new();
    for v in volumes.iter().filter(|v| due(&v.name)) {
        let result = if let Some(e) = &v.empty_dir {
            let options = tmpfs(e.size_limit.as_ref().map(|q| q.0.as_str()));
            setup_empty_dir(root, uid, v, fs_group, &options)
        } else if let Some(h) = &v.host_path {
            setup_host_path(&h.path, h.type_.as_deref().unwrap_or(""))
        } else if let Some(files) = payload::of_volume(pod, v, sources, ctx) {
            let plugin = plugin_of(v).unwrap_or_default();
            let dir = volume_path(root, uid, plugin, &v.name);
            // kubelet wraps these in an emptyDir of medium Memory, without a sizeLimit.
            let in_memory = v.secret.is_some() || v.projected.is_some();
            let set_perms = |data: &Path| match fs_group {
                Some(gid) => apply_fs_group(data, gid, true),
                None => Ok(()),
            };
            files.and_then(|files| {
                prepare_wrapper(&dir, in_memory.then(|| tmpfs(None)).as_deref(), fs_group)?;
                atomic_writer::write(&dir, &files, &set_perms)
            })
        } else {
            Err(not_served(v))
        };
        if let Err(message) = result {
            failures.push(SetupError {
                volume: v.name.clone(),
                message,
                mounted: is_set_up(root, uid, v),
            });
        }
    }
    failures
}

/// The volume's kind as the API spells its source field (`emptyDir`, `gcePersistentDisk`, ...).
fn kind_of(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()?
                .iter()
                .find(|(k, v)| k.as_str() != "name" && !v.is_null())
                .map(|(k, _)| k.clone())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Why the node refuses a volume of a kind it does not serve, plainly.
fn not_served(v: &Volume) -> String {
    let kind = kind_of(v);
    // The in-tree cloud plugins moved to CSI drivers, which this node does not run.
    let csi_driver = match kind.as_str() {
        "awsElasticBlockStore" => Some("ebs.csi.aws.com"),
        "azureDisk" => Some("disk.csi.azure.com"),
        "azureFile" => Some("file.csi.azure.com"),
        "cinder" => Some("cinder.csi.openstack.org"),
        "gcePersistentDisk" => Some("pd.csi.storage.gke.io"),
        "portworxVolume" => Some("pxd.portworx.com"),
        "vsphereVolume" => Some("csi.vsphere.vmware.com"),
        _ => None,
    };
    match (kind.as_str(), csi_driver) {
        (_, Some(driver)) => format!(
            "volume kind {kind} is not served on this node: it needs a cloud disk and the CSI driver {driver}, and this node has neither"
        ),
        ("gitRepo", _) => "volume kind gitRepo is not served on this node: it is deprecated and would run git on the node; clone the repository into an emptyDir from an init container instead".to_string(),
        _ => format!("volume kind {kind} is not served on this node"),
    }
}

/// Whether an earlier pass set the volume up.
fn is_set_up(root: &Path, uid: &str, v: &Volume) -> bool {
    match plugin_of(v) {
        Some(EMPTY_DIR_PLUGIN) => pod_dir(root, uid)
            .join("plugins")
            .join(EMPTY_DIR_PLUGIN)
            .join(&v.name)
            .join("ready")
            .exists(),
        Some(plugin) => {
            fs::symlink_metadata(volume_path(root, uid, plugin, &v.name).join("..data")).is_ok()
        }
        None => false,
    }
}

/// The directory an atomic-writer volume lives in: an emptyDir of its own, on disk (0777) or
/// on a tmpfs (1777).
fn prepare_wrapper(dir: &Path, tmpfs: Option<&str>, fs_group: Option<u32>) -> Result<(), String> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    }
    if let Some(options) = tmpfs
        && !is_mount_point(dir)
    {
        mount_tmpfs(dir, options)?;
    }
    if let Some(gid) = fs_group {
        apply_fs_group_to(dir, gid, false).map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Whether `path` is the root of a mount (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(me), Some(Ok(parent))) = (
        fs::symlink_metadata(path),
        path.parent().map(fs::symlink_metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}

/// kubelet's fsGroup walk (volume_linux.go): every entry under `dir` gets group `gid` and the
/// group bits of its kind (0660, or 0440 for read-only volumes); directories also get setgid
/// and 0110. Bits are only added; symlinks are left as they are.
fn apply_fs_group(dir: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    apply_fs_group_to(dir, gid, read_only)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            apply_fs_group(&entry.path(), gid, read_only)?;
        } else if !kind.is_symlink() {
            apply_fs_group_to(&entry.path(), gid, read_only)?;
        }
    }
    Ok(())
}

fn apply_fs_group_to(path: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    let meta = fs::symlink_metadata(path)?;
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2000 | 0o110;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode | mask != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode | mask))?;
    }
    Ok(())
}

/// The options of a Memory-medium volume's tmpfs: its root 1777, and its size the smallest of
/// the node's allocatable memory, the Pod's memory limit (when every container has one) and
/// the volume's `sizeLimit` (kubelet's calculateEmptyDirMemorySize).
fn tmpfs_options(pod: &Pod, size_limit: Option<&str>, allocatable: &str) -> String {
    let positive = |q: Option<Quantity>| q.filter(|q| q.0 > 0);
    let size = [
        positive(Quantity::parse(allocatable)),
        positive(pod_memory_limit(pod)),
        positive(size_limit.and_then(Quantity::parse)),
    ]
    .into_iter()
    .flatten()
    .min();
    match size {
        // Quantities are held in billionths; tmpfs takes whole bytes.
        Some(q) => format!("mode=1777,size={}", (q.0 + 999_999_999) / 1_000_000_000),
        None => "mode=1777".to_string(),
    }
}

/// The Pod's memory limit as its cgroup gets it: the larger of the app containers' sum and
/// the largest init container's, or none when any container lacks a limit.
fn pod_memory_limit(pod: &Pod) -> Option<Quantity> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        Quantity::parse(&q.0)
    };
    let mut apps = Quantity::ZERO;
    for c in &spec.containers {
        apps = Quantity(apps.0 + limit(c)?.0);
    }
    let mut most = apps;
    for c in spec.init_containers.iter().flatten() {
        most = most.max(limit(c)?);
    }
    Some(most)
}

fn mount_tmpfs(dir: &Path, options: &str) -> Result<(), String> {
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(options),
    )
    .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))
}

/// `tmpfs`: the mount options should the medium be Memory.
fn setup_empty_dir(
    root: &Path,
    uid: &str,
    v: &Volume,
    fs_group: Option<u32>,
    tmpfs: &str,
) -> Result<(), String> {
    let source = v.empty_dir.as_ref();
    let memory = match source.and_then(|e| e.medium.as_deref()).unwrap_or("") {
        "" => false,
        "Memory" => true,
        m if m.starts_with("HugePages") => {
            return Err(format!(
                "storage medium {m:?} is not available on this node: it has no huge pages"
            ));
        }
        m => return Err(format!("unknown storage medium {m:?}")),
    };
    let marker_dir = pod_dir(root, uid)
        .join("plugins")
        .join(EMPTY_DIR_PLUGIN)
        .join(&v.name);
    let marker = marker_dir.join("ready");
    let dir = empty_dir_path(root, uid, &v.name);
    // A tmpfs gone with `tatami down` is mounted afresh (its content went with the containers).
    if marker.exists() && dir.is_dir() && (!memory || is_mount_point(&dir)) {
        return Ok(());
    }
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    if memory && !is_mount_point(&dir) {
        mount_tmpfs(&dir, tmpfs)?;
    } else if !memory {
        // MkdirAll is subject to the umask; emptyDir is 0777 whatever it is.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    }
    if let Some(gid) = fs_group {
        apply_fs_group(&dir, gid, false).map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&marker_dir).map_err(|e| format!("mkdir {}: {e}", marker_dir.display()))?;
    fs::write(&marker, b"").map_err(|e| format!("write {}: {e}", marker.display()))?;
    Ok(())
}

fn setup_host_path(path: &str, type_: &str) -> Result<(), String> {
    if Path::new(path)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!("invalid HostPath `{path}`: must not contain '..'"));
    }
    let p = Path::new(path);
    let meta = fs::metadata(p).ok();
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("hostPath type check failed: {path} is not {what}"))
        }
    };
    use std::os::unix::fs::FileTypeExt;
    match type_ {
        // Unset: like containerd, make a missing path a directory so the bind mount works.
        "" | "DirectoryOrCreate" => {
            if meta.is_none() {
                fs::create_dir_all(p).map_err(|e| format!("mkdir {path}: {e}"))?;
                if type_ == "DirectoryOrCreate" {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
                }
            }
            if type_.is_empty() {
                return Ok(());
            }
            check(fs::metadata(p).is_ok_and(|m| m.is_dir()), "a directory")
        }
        "Directory" => check(meta.is_some_and(|m| m.is_dir()), "a directory"),
        "FileOrCreate" => {
            if meta.is_none() {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(p)
                    .map_err(|e| format!("open {path}: {e}"))?;
            }
            check(fs::metadata(p).is_ok_and(|m| !m.is_dir()), "a file")
        }
        "File" => check(meta.is_some_and(|m| !m.is_dir()), "a file"),
        "Socket" => check(
            meta.is_some_and(|m| m.file_type().is_socket()),
            "a socket file",
        ),
        "CharDevice" => check(
            meta.is_some_and(|m| m.file_type().is_char_device()),
            "a character device",
        ),
        "BlockDevice" => check(
            meta.is_some_and(|m| m.file_type().is_block_device()),
            "a block device",
        ),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// Removes everything the node holds for the Pod (its volumes and termination files).
pub fn teardown(root: &Path, uid: &str) -> std::io::Result<()> {
    unmount_volumes(root, uid)?;
    match fs::remove_dir_all(pod_dir(root, uid)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the Pod's volumes only (a finished Pod whose object stays).
pub fn teardown_volumes(root: &Path, uid: &str) -> std::io::Result<()> {
    unmount_volumes(root, uid)?;
    for sub in ["volumes", "plugins"] {
        match fs::remove_dir_all(pod_dir(root, uid).join(sub)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Unmounts the Pod's volumes that are mounts of their own (the tmpfs ones), so removing the
/// Pod's directory removes no more than it should and leaves no mount behind.
fn unmount_volumes(root: &Path, uid: &str) -> std::io::Result<()> {
    // subPath binds first: `volume-subpaths/<vol>/<container>/<index>`.
    for volume in fs::read_dir(pod_dir(root, uid).join("volume-subpaths"))
        .into_iter()
        .flatten()
    {
        for container in fs::read_dir(volume?.path()).into_iter().flatten() {
            for target in fs::read_dir(container?.path()).into_iter().flatten() {
                subpath::unmount(&target?.path());
            }
        }
    }
    let volumes = pod_dir(root, uid).join("volumes");
    let Ok(plugins) = fs::read_dir(&volumes) else {
        return Ok(());
    };
    for plugin in plugins {
        for volume in fs::read_dir(plugin?.path())? {
            let path = volume?.path();
            if is_mount_point(&path) {
                nix::mount::umount2(&path, MntFlags::MNT_DETACH).map_err(std::io::Error::from)?;
            }
        }
    }
    Ok(())
}

/// Makes `root` a shared mount of its own, as kubelet makes its root directory (MakeRShared):
/// a mount a container makes in a volume with `Bidirectional` propagation then reaches the
/// node, and the node's reach containers that mount with `HostToContainer`.
pub fn share_root(root: &Path) -> std::io::Result<()> {
    fs::create_dir_all(root)?;
    let root = root.canonicalize()?;
    if !is_listed_mount(&root) {
        nix::mount::mount(
            Some(&root),
            &root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
    }
    nix::mount::mount(
        None::<&str>,
        &root,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )?;
    Ok(())
}

/// Undoes [`share_root`] (`tatami down`, once every volume is unmounted).
pub fn unshare_root(root: &Path) -> std::io::Result<()> {
    let Ok(root) = root.canonicalize() else {
        return Ok(());
    };
    while is_listed_mount(&root) {
        nix::mount::umount2(&root, MntFlags::MNT_DETACH)?;
    }
    Ok(())
}

/// Whether the mount table has a mount at `path` (a bind of a directory onto itself included,
/// which a device comparison cannot see).
fn is_listed_mount(path: &Path) -> bool {
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    table.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|m| m.replace("\\040", " ") == wanted)
    })
}

/// Unmounts the volumes of every Pod under `root` (`tatami down`: nothing runs any more).
pub fn unmount_all(root: &Path) -> std::io::Result<()> {
    let Ok(pods) = fs::read_dir(root.join("pods")) else {
        return Ok(());
    };
    for pod in pods {
        unmount_volumes(root, &pod?.file_name().to_string_lossy())?;
    }
    Ok(())
}

fn volume<'a>(pod: &'a Pod, name: &str) -> Option<&'a Volume> {
    pod.spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == name)
}

/// The bind mounts of one container instance: its volumeMounts (with subPath), then the
/// termination-message file (made here, empty and writable by any user).
pub fn make_mounts(
    root: &Path,
    pod: &Pod,
    container: &Container,
    attempt: u32,
    env: &[(String, String)],
) -> Result<Vec<Mount>, String> {
    let uid = uid_of(pod);
    let mut mounts = vec![];
    for (index, m) in container.volume_mounts.iter().flatten().enumerate() {
        let Some(v) = volume(pod, &m.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            ));
        };
        // configMap, secret, downwardAPI and projected volumes are always read-only.
        let (base, plugin_read_only) = if let Some(h) = &v.host_path {
            (PathBuf::from(&h.path), false)
        } else if let Some(plugin) = plugin_of(v) {
            let dir = volume_path(root, uid, plugin, &v.name);
            (dir, plugin != EMPTY_DIR_PLUGIN)
        } else {
            // Never reached for a Pod that got this far: setup refused the volume.
            return Err(not_served(v));
        };
        let sub = match m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
            Some(expr) => Some(expand_sub_path(expr, env)?),
            None => m.sub_path.clone().filter(|s| !s.is_empty()),
        };
        let host_path = match sub {
            Some(sub) => {
                let target = pod_dir(root, uid)
                    .join("volume-subpaths")
                    .join(&v.name)
                    .join(&container.name)
                    .join(index.to_string());
                subpath::bind(&base, &sub, &target)
                    .map_err(|f| f.message(&m.name, &container.name))?;
                target
            }
            None => base,
        };
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            _ => Propagation::Private,
        };
        mounts.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || plugin_read_only,
            // The API lets it through only with readOnly; this node's runc has `rro`, so
            // IfPossible is always possible.
            recursive_read_only: recursive_read_only(m),
            propagation,
        });
    }
    let term_path = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".to_string());
    let file = termination_log_path(root, uid, &container.name, attempt);
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    fs::write(&file, b"").map_err(|e| format!("write {}: {e}", file.display()))?;
    // Containers may run as any user and must be able to write their message.
    let _ = fs::set_permissions(&file, fs::Permissions::from_mode(0o666));
    if !mounts.iter().any(|m| m.container_path == term_path) {
        mounts.push(Mount {
            host_path: file,
            container_path: term_path,
            read_only: false,
            recursive_read_only: false,
            propagation: Propagation::Private,
        });
    }
    Ok(mounts)
}

/// Whether a volumeMount asks to be read-only all the way down.
pub fn recursive_read_only(m: &k8s_openapi::api::core::v1::VolumeMount) -> bool {
    m.read_only == Some(true)
        && matches!(
            m.recursive_read_only.as_deref(),
            Some("Enabled" | "IfPossible")
        )
}

/// One volume of a Pod on this node, as `tatami volumes` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VolumeInfo {
    /// The volume's name.
    pub volume: String,
    /// Its kind (`emptyDir`, `configMap`, ...).
    pub kind: String,
    /// Where it lives on the node (nothing for a kind the node does not serve).
    pub path: Option<PathBuf>,
    /// `memory` for a tmpfs, else `disk`.
    pub medium: &'static str,
    /// Bytes of the files in it (symlinks not followed), when it exists.
    pub used_bytes: Option<u64>,
    /// Which containers mount it, where and how.
    pub mounts: Vec<MountInfo>,
}

/// One container's mount of a volume.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MountInfo {
    /// The container.
    pub container: String,
    /// Where in the container.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The subPath (or subPathExpr), if any.
    pub sub_path: Option<String>,
}

/// The Pod's volumes as they are on the node under `root`.
pub fn describe(root: &Path, pod: &Pod) -> Vec<VolumeInfo> {
    let uid = uid_of(pod);
    let spec = pod.spec.as_ref();
    let containers: Vec<&Container> = spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .collect();
    let volumes = spec.and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    volumes
        .iter()
        .map(|v| {
            let kind = kind_of(v);
            let path = match (&v.host_path, plugin_of(v)) {
                (Some(h), _) => Some(PathBuf::from(&h.path)),
                (None, Some(plugin)) => Some(volume_path(root, uid, plugin, &v.name)),
                _ => None,
            };
            let exists = path.as_deref().is_some_and(|p| p.exists());
            let medium =
                if exists && path.as_deref().is_some_and(is_mount_point) && v.host_path.is_none() {
                    "memory"
                } else {
                    "disk"
                };
            let plugin_read_only = plugin_of(v).is_some_and(|p| p != EMPTY_DIR_PLUGIN);
            let mounts = containers
                .iter()
                .flat_map(|c| {
                    c.volume_mounts
                        .iter()
                        .flatten()
                        .filter(|m| m.name == v.name)
                        .map(|m| MountInfo {
                            container: c.name.clone(),
                            path: m.mount_path.clone(),
                            read_only: m.read_only == Some(true) || plugin_read_only,
                            sub_path: m
                                .sub_path
                                .clone()
                                .or_else(|| m.sub_path_expr.clone())
                                .filter(|s| !s.is_empty()),
                        })
                })
                .collect();
            VolumeInfo {
                volume: v.name.clone(),
                kind,
                used_bytes: path.as_deref().filter(|_| exists).map(used_bytes),
                path,
                medium,
                mounts,
            }
        })
        .collect()
}

/// kubelet's eviction message for the first on-disk emptyDir whose files exceed its
/// `sizeLimit` (a Memory one cannot: its tmpfs refuses the writes instead).
pub fn empty_dir_over_limit(root: &Path, pod: &Pod) -> Option<String> {
    let uid = uid_of(pod);
    let volumes = pod.spec.as_ref()?.volumes.as_deref()?;
    volumes.iter().find_map(|v| {
        let e = v.empty_dir.as_ref()?;
        if e.medium.as_deref().is_some_and(|m| !m.is_empty()) {
            return None;
        }
        let written = e.size_limit.as_ref()?;
        let limit = Quantity::parse(&written.0).filter(|q| q.0 > 0)?;
        let used = used_bytes(&empty_dir_path(root, uid, &v.name));
        (i128::from(used) * 1_000_000_000 > limit.0).then(|| {
            format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name, written.0
            )
        })
    })
}

/// Bytes of the regular files under `path` (or of `path` itself), symlinks not followed, and
/// not across into other mounts.
fn used_bytes(path: &Path) -> u64 {
    let Ok(top) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !top.is_dir() {
        return top.len();
    }
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && meta.dev() == top.dev() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// A `subPathExpr` with the container's `$(VAR)`s in it, checked as kubelet checks it.
fn expand_sub_path(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = crate::env::expand(expr, &|key| {
        let value = env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        if value.as_deref().is_none_or(str::is_empty) {
            missing.borrow_mut().insert(key.to_string());
        }
        Some(value.unwrap_or_default())
    });
    let missing = missing.into_inner();
    if !missing.is_empty() {
        let names: Vec<String> = missing.into_iter().collect();
        return Err(format!("missing value for {}", names.join(", ")));
    }
    if Path::new(&expanded).is_absolute() {
        return Err(format!(
            "error SubPath `{expanded}` must not be an absolute path"
        ));
    }
    if Path::new(&expanded)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!(
            "unable to provision SubPath `{expanded}`: must not contain '..'"
        ));
    }
    Ok(expanded)
}

/// The termination message an exited instance left (at most 4096 bytes, as kubelet reads).
pub fn read_termination_message(
    root: &Path,
    uid: &str,
    container: &str,
    attempt: u32,
) -> Option<String> {
    let bytes = fs::read(termination_log_path(root, uid, container, attempt)).ok()?;
    let bytes = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(bytes).into_owned();
    (!text.is_empty()).then_some(text)
}

/// The last lines of a CRI-format log file as a termination message
/// (`terminationMessagePolicy: FallbackToLogsOnError`: 80 lines, 2048 bytes at most).
pub fn log_tail_message(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(80);
    let mut out = String::new();
    for line in &lines[start..] {
        // `<time> <stream> <P|F> <content>`: a P (partial) line continues on the next.
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, content) = (parts.next(), parts.next(), parts.next(), parts.next());
        out.push_str(content.unwrap_or(""));
        if tag != Some("P") {
            out.push('\n');
        }
    }
    if out.len() > 2048 {
        let mut cut = out.len() - 2048;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(dir: &Path) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "data", "hostPath": {"path": dir.join("host/data").to_str().unwrap(), "type": "DirectoryOrCreate"}},
                    {"name": "cfg", "configMap": {"name": "cfg"}},
                ],
                "containers": [{"name": "c", "image": "busybox", "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "data", "mountPath": "/data", "readOnly": true, "subPath": "sub"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                ]}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn tmpfs_size_is_the_smallest_of_allocatable_pod_limit_and_size_limit() {
        let with_limits = |app: &[Option<&str>], init: &[Option<&str>]| -> Pod {
            let c = |i: usize, l: &Option<&str>| match l {
                Some(m) => json!({"name": format!("c{i}"), "resources": {"limits": {"memory": m}}}),
                None => json!({"name": format!("c{i}")}),
            };
            serde_json::from_value(json!({"spec": {
                "containers": app.iter().enumerate().map(|(i, l)| c(i, l)).collect::<Vec<_>>(),
                "initContainers": init.iter().enumerate().map(|(i, l)| c(10 + i, l)).collect::<Vec<_>>(),
            }}))
            .unwrap()
        };
        let unlimited = with_limits(&[None], &[]);
        assert_eq!(
            tmpfs_options(&unlimited, None, "1Gi"),
            "mode=1777,size=1073741824"
        );
        assert_eq!(
            tmpfs_options(&unlimited, Some("10Mi"), "1Gi"),
            "mode=1777,size=10485760"
        );
        assert_eq!(
            tmpfs_options(&unlimited, Some("0"), "1Gi"),
            "mode=1777,size=1073741824"
        );
        // Two app containers add up; an init container counts when it needs more.
        let limited = with_limits(&[Some("64Mi"), Some("64Mi")], &[Some("100Mi")]);
        assert_eq!(
            tmpfs_options(&limited, None, "1Gi"),
            "mode=1777,size=134217728"
        );
        let big_init = with_limits(&[Some("64Mi")], &[Some("200Mi")]);
        assert_eq!(
            tmpfs_options(&big_init, None, "1Gi"),
            "mode=1777,size=209715200"
        );
        assert_eq!(
            tmpfs_options(&big_init, Some("1Mi"), "1Gi"),
            "mode=1777,size=1048576"
        );
        // One container without a limit leaves the Pod unlimited.
        let partly = with_limits(&[Some("64Mi"), None], &[]);
        assert_eq!(
            tmpfs_options(&partly, None, "1Gi"),
            "mode=1777,size=1073741824"
        );
        assert_eq!(tmpfs_options(&partly, None, ""), "mode=1777");
    }

    fn sources() -> Sources {
        let cm = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}}));
        Sources {
            config_maps: [("cfg".to_string(), Some(cm.unwrap()))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn empty_dir_is_made_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("node");
        let p = pod(tmp.path());
        let ctx = EnvContext::default();
        assert_eq!(setup(&root, &p, &sources(), &ctx, &|_| true), []);
        let dir = empty_dir_path(&root, "u1", "cache");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
        fs::write(dir.join("f"), "x").unwrap();
        assert_eq!(setup(&root, &p, &sources(), &ctx, &|_| true), []);
        assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "x");
        assert!(tmp.path().join("host/data").is_dir());

        let mounts =
            make_mounts(&root, &p, &p.spec.as_ref().unwrap().containers[0], 2, &[]).unwrap();
        assert_eq!(mounts.len(), 4, "{mounts:?}");
        assert_eq!(mounts[0].host_path, dir);
        // A subPath is bound onto a per-container target (made in the hostPath if missing).
        assert_eq!(
            mounts[1].host_path,
            pod_dir(&root, "u1").join("volume-subpaths/data/c/1")
        );
        assert!(tmp.path().join("host/data/sub").is_dir());
        assert!(mounts[1].read_only);
        // A configMap volume: read-only even without `readOnly`, its keys through `..data`.
        assert!(mounts[2].read_only);
        assert_eq!(
            fs::read_to_string(mounts[2].host_path.join("k")).unwrap(),
            "v"
        );
        assert_eq!(mounts[3].container_path, "/dev/termination-log");
        assert_eq!(
            mounts[3].host_path,
            termination_log_path(&root, "u1", "c", 2)
        );
        fs::write(&mounts[3].host_path, "bye").unwrap();
        assert_eq!(
            read_termination_message(&root, "u1", "c", 2).as_deref(),
            Some("bye")
        );

        teardown(&root, "u1").unwrap();
        assert!(!dir.exists());
        assert!(
            tmp.path().join("host/data/sub").is_dir(),
            "hostPath data outlives the pod"
        );
    }

    #[test]
    fn kinds_the_node_does_not_serve_are_refused_plainly() {
        let tmp = tempfile::tempdir().unwrap();
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u2"},
            "spec": {"volumes": [
                {"name": "disk", "gcePersistentDisk": {"pdName": "d"}},
                {"name": "repo", "gitRepo": {"repository": "https://example.invalid/r.git"}},
                {"name": "share", "nfs": {"server": "nfs.example", "path": "/"}},
            ], "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        let failures = setup(
            tmp.path(),
            &p,
            &Sources::default(),
            &EnvContext::default(),
            &|_| true,
        );
        let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "volume kind gcePersistentDisk is not served on this node: it needs a cloud disk and the CSI driver pd.csi.storage.gke.io, and this node has neither",
                "volume kind gitRepo is not served on this node: it is deprecated and would run git on the node; clone the repository into an emptyDir from an init container instead",
                "volume kind nfs is not served on this node",
            ]
        );
        assert!(failures.iter().all(|f| !f.mounted));
    }

    #[test]
    fn host_path_type_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(
            setup_host_path(f, "Directory").unwrap_err(),
            format!("hostPath type check failed: {f} is not a directory")
        );
        setup_host_path(f, "File").unwrap();
        let missing = tmp.path().join("new/file");
        assert!(
            setup_host_path(missing.to_str().unwrap(), "FileOrCreate")
                .unwrap_err()
                .starts_with("open ")
        );
        assert_eq!(
            setup_host_path("/a/../b", "").unwrap_err(),
            "invalid HostPath `/a/../b`: must not contain '..'"
        );
    }

    #[test]
    fn log_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("0.log");
        fs::write(&log, "2024-01-01T00:00:00Z stdout P par\n2024-01-01T00:00:00Z stdout F tial\n2024-01-01T00:00:01Z stderr F boom\n").unwrap();
        assert_eq!(log_tail_message(&log).as_deref(), Some("partial\nboom\n"));
    }
}
