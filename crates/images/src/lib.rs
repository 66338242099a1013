//! The node's image store: pulls images from OCI registries, imports archives and root
//! filesystems, and keeps their layers unpacked for overlayfs.
//!
//! Layout: [`reference`] normalises names as Docker does; [`ImageStore`] (this file) is the
//! store's face: records and queries, with the runtime's two entry points [`ImageStore::layers`]
//! and [`ImageStore::image_config`]; `pull.rs` speaks to registries through oci-client (mirrors,
//! auth, platform selection, verified blobs); `import.rs` reads OCI and `docker save` archives
//! and makes images from a root filesystem; `content.rs` owns the files on disk (blobs by digest,
//! layers by diff id, the records, all written atomically); [`unpack`] turns a layer tar into an
//! overlayfs lowerdir. `service.rs` implements [`runtime::ImageService`] over it all. Start with
//! [`ImageStore::open`] and [`ImageStore::pull_with_progress`].

mod content;
mod error;
mod import;
mod manifest;
mod pull;
pub mod reference;
mod service;
pub mod unpack;

pub use error::{Error, Result};
pub use manifest::ImageConfig;
pub use reference::{Reference, normalize};
pub use runtime::{Image, RegistryAuth};

use content::{Content, ImageRecord, Records};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where images come from: mirrors per registry and registries reached over plain HTTP, as
/// `tatami up --registry-mirror HOST=URL --insecure-registry HOST` gives them.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// `(host, URL)`: pulls from `host` (e.g. `docker.io`) try `URL` (e.g.
    /// `http://127.0.0.1:5000`) first, in the order given, then the registry itself.
    pub mirrors: Vec<(String, String)>,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP; an `https` mirror on such
    /// a host is used without verifying its certificate.
    pub insecure: Vec<String>,
}

/// What a pull is doing to one blob, for `tatami image pull`'s progress lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The blob was already in the store and is not fetched.
    Exists,
    /// Bytes are arriving.
    Downloading,
    /// The blob is complete and verified; its layer is being unpacked.
    Unpacking,
    /// The layer is unpacked (or was already).
    Done,
}

/// One progress report of a pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The layer blob's digest (`sha256:...`).
    pub digest: String,
    /// Bytes fetched so far.
    pub done: u64,
    /// The blob's size.
    pub total: u64,
    /// What is happening to it.
    pub state: ProgressState,
}

/// The node's image store. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    content: Content,
    registries: pull::Registries,
    /// The records as on disk; every change is saved before the lock is released.
    records: Mutex<Records>,
    /// Pulls and imports hold it shared while they add blobs no record names yet; removal
    /// holds it exclusively while it deletes unreferenced blobs, so it never takes theirs.
    gc: tokio::sync::RwLock<()>,
    default_endpoint: AtomicBool,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`, with the node's registry settings.
    pub fn open(root: &Path, config: RegistryConfig) -> Result<ImageStore> {
        // oci-client is built without a TLS provider so the workspace has only ring; install it
        // once per process (a second install fails harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registries = pull::Registries::new(&config)?;
        let content = Content::open(root)?;
        let records = content.load_records()?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                content,
                registries,
                records: Mutex::new(records),
                gc: tokio::sync::RwLock::new(()),
                default_endpoint: AtomicBool::new(true),
            }),
        })
    }

    /// Whether a registry that has mirrors is tried itself after them (the default, as
    /// containerd falls back to the upstream host). Off, only the mirrors are asked, like k3s's
    /// `disable-default-endpoint`; tests use it to stay on 127.0.0.1.
    pub fn set_default_endpoint(&self, enabled: bool) {
        self.inner
            .default_endpoint
            .store(enabled, Ordering::Relaxed);
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.inner.content.root()
    }

    /// The unpacked layer directories of an image (by id or reference), lowest first: the
    /// overlayfs lowerdirs, to be given to `lowerdir=` in reverse order.
    pub fn layers(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        let record = self.record(image_id)?;
        record
            .layers
            .iter()
            // A layer directory removed by hand is unpacked again from its blob.
            .map(|l| self.inner.content.ensure_layer(&l.blob, &l.diff_id))
            .collect()
    }

    /// The config (entrypoint, cmd, env, working dir, user) of an image, by id or reference.
    pub fn image_config(&self, image_id: &str) -> Result<ImageConfig> {
        let record = self.record(image_id)?;
        let bytes = self.inner.content.read_blob(&record.id)?;
        Ok(
            manifest::ConfigFile::parse(&bytes, &format!("image config {}", record.id))?
                .image_config(),
        )
    }

    /// The image a reference or id names, if present.
    pub fn status(&self, reference: &str) -> Result<Option<Image>> {
        let records = self.records();
        Ok(find(&records, reference)?.map(|r| to_image(r, Some(reference))))
    }

    /// Every image, by id.
    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(self
            .records()
            .images
            .values()
            .map(|r| to_image(r, None))
            .collect())
    }

    /// Removes a reference, as `docker rmi` does: a tag or digest reference is untagged and the
    /// image goes when nothing names it any more; an id removes the image with all its names.
    /// Blobs and layers no image uses any more are deleted.
    pub async fn remove(&self, reference: &str) -> Result<()> {
        let _gc = self.inner.gc.write().await;
        let mut records = self.records();
        let id = find(&records, reference)?
            .map(|r| r.id.clone())
            .ok_or_else(|| Error::NotFound {
                reference: reference.to_string(),
            })?;
        let by_id = is_id(reference);
        let normalized = if by_id {
            None
        } else {
            Some(normalize(reference)?)
        };
        if let Some(record) = records.images.get_mut(&id) {
            match &normalized {
                Some(r) if r.digest.is_none() => record.names.retain(|n| *n != r.to_string()),
                Some(r) => {
                    let name = r.name();
                    record
                        .repo_digests
                        .retain(|d| !d.starts_with(&format!("{name}@")));
                }
                None => {}
            }
            if by_id || record.names.is_empty() {
                records.images.remove(&id);
            }
        }
        self.inner.content.save_records(&records)?;
        self.inner.content.collect_garbage(&records)
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave the records half-changed on disk (they
        // are saved whole), so a poisoned lock is still usable.
        self.inner.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, reference: &str) -> Result<ImageRecord> {
        let records = self.records();
        find(&records, reference)?
            .cloned()
            .ok_or_else(|| Error::NotFound {
                reference: reference.to_string(),
            })
    }

    /// Adds or updates an image record and names it; a name moves off any image that had it.
    fn commit_record(
        &self,
        mut record: ImageRecord,
        names: &[String],
        repo_digests: &[String],
    ) -> Result<Image> {
        let mut records = self.records();
        let before = records.clone();
        for other in records.images.values_mut() {
            other.names.retain(|n| !names.contains(n));
        }
        if let Some(old) = records.images.get(&record.id) {
            record.names = old.names.clone();
            record.repo_digests = old.repo_digests.clone();
        }
        for n in names {
            if !record.names.contains(n) {
                record.names.push(n.clone());
            }
        }
        for d in repo_digests {
            // One repo digest per repository: the newest pull's.
            let repo = d.split('@').next().unwrap_or_default();
            record
                .repo_digests
                .retain(|old| old.split('@').next() != Some(repo));
            record.repo_digests.push(d.clone());
        }
        let image = to_image(&record, repo_digests.first().map(String::as_str));
        records.images.insert(record.id.clone(), record);
        // An `Always` pull of an image already here changes nothing: no rewrite, no fsync.
        if *records != before {
            self.inner.content.save_records(&records)?;
        }
        Ok(image)
    }
}

/// Whether a reference is an image id (`sha256:<hex>` or 64 hex digits) rather than a name.
fn is_id(reference: &str) -> bool {
    reference.starts_with("sha256:") || reference::is_hex64(reference)
}

/// Finds the record a reference names: an id (`sha256:` with the full or a leading part of
/// the hex, or the bare 64 hex digits), a `name@digest`, or a `name:tag`.
fn find<'a>(records: &'a Records, reference: &str) -> Result<Option<&'a ImageRecord>> {
    if is_id(reference) {
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        let mut hits = records
            .images
            .values()
            .filter(|r| r.id["sha256:".len()..].starts_with(hex));
        return Ok(match (hits.next(), hits.next()) {
            (Some(one), None) if !hex.is_empty() => Some(one),
            _ => None,
        });
    }
    let r = normalize(reference)?;
    Ok(match &r.digest {
        Some(digest) => {
            let wanted = r.with_digest(digest);
            records
                .images
                .values()
                .find(|rec| rec.repo_digests.contains(&wanted))
        }
        None => {
            let wanted = r.to_string();
            records
                .images
                .values()
                .find(|rec| rec.names.contains(&wanted))
        }
    })
}

fn to_image(record: &ImageRecord, asked: Option<&str>) -> Image {
    // Show the repo digest of the repository asked about, as the CRI does for imageID.
    let repo = asked.and_then(|a| normalize(a).ok()).map(|r| r.name());
    let repo_digest = repo
        .and_then(|repo| {
            record
                .repo_digests
                .iter()
                .find(|d| d.split('@').next() == Some(repo.as_str()))
        })
        .or_else(|| record.repo_digests.first())
        .cloned()
        .unwrap_or_default();
    Image {
        id: record.id.clone(),
        tags: record.names.clone(),
        repo_digest,
        size: record.size,
    }
}
