//! Images that do not come from a registry: OCI archives (an `oci-layout` directory in a tar,
//! as `skopeo copy oci-archive:` or `docker save` since 25 write), older `docker save` tars
//! (`manifest.json` with `<id>/layer.tar`), and root filesystems made into a one-layer image as
//! `docker import` does.

use crate::content::ImageRecord;
use crate::error::{Error, Result};
use crate::manifest::{
    AnyManifest, ConfigFile, DOCKER_MANIFEST, Descriptor, OCI_MANIFEST, go_arch, select_platform,
};
use crate::reference::normalize;
use crate::unpack::decompressed;
use crate::{Image, ImageStore};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// The files of an archive that are read as documents; everything else is a blob.
const DOCUMENTS: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// One image of `docker save`'s manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image found in an archive, before its layers are unpacked.
struct Found {
    target: String,
    manifest: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    names: Vec<String>,
}

impl ImageStore {
    /// Imports every image of an OCI archive or `docker save` tar (either may be gzip or zstd
    /// compressed). Images are named by their `io.containerd.image.name` annotation, a full
    /// reference in `org.opencontainers.image.ref.name`, or `RepoTags`; an image whose archive
    /// gives only a tag is imported without a name, as `docker load` does, and is found by id.
    pub async fn import(&self, path: &Path) -> Result<Vec<Image>> {
        let found = {
            let _gc = self.inner.gc.read().await;
            let store = self.clone();
            let path = path.to_path_buf();
            let found = tokio::task::spawn_blocking(move || store.read_archive(&path))
                .await
                .map_err(|e| Error::invalid("archive", format!("import stopped: {e}")))??;
            let mut images = Vec::new();
            for f in found {
                let blob = self.inner.content.read_blob(&f.config.digest)?;
                let config =
                    ConfigFile::parse(&blob, &format!("image config {}", f.config.digest))?;
                let record = self
                    .unpack_layers(
                        &f.config,
                        &f.layers,
                        config.diff_ids(),
                        &f.target,
                        &f.manifest,
                        &|_| {},
                    )
                    .await?;
                let repo_digests: Vec<String> = f
                    .names
                    .iter()
                    .filter_map(|n| normalize(n).ok())
                    .map(|r| r.with_digest(&f.target))
                    .collect();
                images.push(self.commit_record(record, &f.names, &repo_digests)?);
            }
            images
        };
        // The archive's other files (docker's per-layer json, VERSION) were stored as blobs
        // while streaming; now that the images are recorded, drop what none of them uses.
        let _gc = self.inner.gc.write().await;
        self.inner.content.collect_garbage(&self.records())?;
        Ok(found)
    }

    /// Streams the archive into the blob store and finds its images.
    fn read_archive(&self, path: &Path) -> Result<Vec<Found>> {
        let file = File::open(path).map_err(Error::io("open archive", path))?;
        let reader = decompressed(BufReader::new(file)).map_err(Error::io("read archive", path))?;
        let mut archive = tar::Archive::new(reader);
        let mut documents: HashMap<String, Vec<u8>> = HashMap::new();
        let mut files: HashMap<String, String> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let entries = archive.entries().map_err(Error::io("read archive", path))?;
        for entry in entries {
            let mut entry = entry.map_err(Error::io("read archive", path))?;
            let raw = entry
                .path()
                .map_err(Error::io("read archive", path))?
                .into_owned();
            let Some(name) = archive_path(&raw) else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if DOCUMENTS.contains(&name.as_str()) {
                        let mut bytes = Vec::new();
                        entry
                            .read_to_end(&mut bytes)
                            .map_err(Error::io("read archive", path))?;
                        documents.insert(name, bytes);
                        continue;
                    }
                    let expected = name
                        .strip_prefix("blobs/sha256/")
                        .map(|hex| format!("sha256:{hex}"));
                    let (digest, _) = self
                        .inner
                        .content
                        .put_reader(&mut entry, expected.as_deref())?;
                    files.insert(name, digest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    // docker save links `<id>/layer.tar` to `blobs/sha256/<hex>`.
                    if let Ok(Some(target)) = entry.link_name() {
                        let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                            Path::new(&name)
                                .parent()
                                .unwrap_or(Path::new(""))
                                .join(target)
                        } else {
                            target.into_owned()
                        };
                        if let Some(target) = archive_path(&base) {
                            links.push((name, target));
                        }
                    }
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(digest) = files.get(&target).cloned() {
                files.insert(name, digest);
            }
        }
        let blob_of = |name: &str| -> Result<String> {
            files
                .get(name.trim_start_matches("./"))
                .cloned()
                .ok_or_else(|| {
                    Error::invalid("archive", format!("it names {name} but does not hold it"))
                })
        };

        if let Some(index) = documents.get("index.json") {
            let index = AnyManifest::parse(index, "archive index.json")?;
            let mut found = Vec::new();
            for desc in index.manifests.unwrap_or_default() {
                let names = desc_names(&desc);
                found.push(self.resolve_local(&desc.digest, names)?);
            }
            return Ok(found);
        }
        if let Some(manifest) = documents.get("manifest.json") {
            let saved: Vec<SavedImage> = serde_json::from_slice(manifest)
                .map_err(|e| Error::invalid("archive manifest.json", e))?;
            let mut found = Vec::new();
            for image in saved {
                let config_digest = blob_of(&image.config)?;
                let config = Descriptor {
                    media_type: DOCKER_CONFIG.into(),
                    size: self.blob_size(&config_digest)?,
                    digest: config_digest,
                    ..Default::default()
                };
                let mut layers = Vec::new();
                for layer in &image.layers {
                    let digest = blob_of(layer)?;
                    layers.push(Descriptor {
                        media_type: DOCKER_LAYER.into(),
                        size: self.blob_size(&digest)?,
                        digest,
                        ..Default::default()
                    });
                }
                // Old docker save has no manifest; write the one a registry would have served.
                let manifest = serde_json::json!({
                    "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": layers,
                });
                let manifest = self
                    .inner
                    .content
                    .put_bytes(manifest.to_string().as_bytes())?;
                let names = image
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| named(t))
                    .collect();
                found.push(Found {
                    target: manifest.clone(),
                    manifest,
                    config,
                    layers,
                    names,
                });
            }
            return Ok(found);
        }
        Err(Error::invalid(
            format!("archive {}", path.display()),
            "it has neither index.json (OCI) nor manifest.json (docker save)",
        ))
    }

    /// Follows a manifest or index already in the store down to this platform's manifest.
    fn resolve_local(&self, target: &str, names: Vec<String>) -> Result<Found> {
        let mut digest = target.to_string();
        // Nested indexes are allowed, but not without end.
        for _ in 0..4 {
            let bytes = self.inner.content.read_blob(&digest)?;
            let m = AnyManifest::parse(&bytes, &format!("manifest {digest}"))?;
            if m.is_index() {
                let entries = m.manifests.unwrap_or_default();
                let chosen = select_platform(&entries).ok_or_else(|| {
                    Error::invalid(
                        format!("index {digest}"),
                        "no match for platform in manifest",
                    )
                })?;
                digest = chosen.digest.clone();
                continue;
            }
            let (Some(config), Some(layers)) = (m.config, m.layers) else {
                return Err(Error::invalid(
                    format!("manifest {digest}"),
                    "it has no config or layers",
                ));
            };
            return Ok(Found {
                target: target.to_string(),
                manifest: digest,
                config,
                layers,
                names,
            });
        }
        Err(Error::invalid(
            format!("index {target}"),
            "indexes nest too deep",
        ))
    }

    fn blob_size(&self, digest: &str) -> Result<u64> {
        let path = self.inner.content.blob_path(digest)?;
        Ok(std::fs::metadata(&path)
            .map_err(Error::io("stat blob", path))?
            .len())
    }

    /// Makes a one-layer image from a directory tree or a (possibly compressed) tar of one,
    /// like `docker import`: the config sets only `PATH`, so Pods give the command.
    pub async fn import_rootfs(&self, source: &Path, name: &str) -> Result<Image> {
        let r = normalize(name)?;
        let _gc = self.inner.gc.read().await;
        let store = self.clone();
        let src = source.to_path_buf();
        let layer = tokio::task::spawn_blocking(move || store.layer_from(&src))
            .await
            .map_err(|e| Error::invalid("root filesystem", format!("import stopped: {e}")))??;
        let config = serde_json::json!({
            "architecture": go_arch(),
            "os": "linux",
            "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
            "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
            "history": [{ "created_by": "tatami image import-rootfs", "comment": format!("imported from {}", source.display()) }],
        });
        let config_bytes = config.to_string().into_bytes();
        let config = Descriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: self.inner.content.put_bytes(&config_bytes)?,
            size: config_bytes.len() as u64,
            ..Default::default()
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer],
        });
        let manifest = self
            .inner
            .content
            .put_bytes(manifest.to_string().as_bytes())?;
        let diff_ids = [layer.digest.clone()];
        let record: ImageRecord = self
            .unpack_layers(&config, &[layer], &diff_ids, &manifest, &manifest, &|_| {})
            .await?;
        let names: Vec<String> = if r.digest.is_none() {
            vec![r.to_string()]
        } else {
            Vec::new()
        };
        self.commit_record(record, &names, &[r.with_digest(&manifest)])
    }

    /// Stores the root filesystem as one uncompressed layer blob (its digest is its diff id).
    fn layer_from(&self, source: &Path) -> Result<Descriptor> {
        let meta = std::fs::metadata(source).map_err(Error::io("stat", source))?;
        let (digest, size) = if meta.is_dir() {
            let tmp = self.inner.content.tmp_path("rootfs.tar");
            let build = || -> std::io::Result<()> {
                let mut builder = tar::Builder::new(std::io::BufWriter::new(File::create(&tmp)?));
                builder.mode(tar::HeaderMode::Complete);
                builder.follow_symlinks(false);
                builder.append_dir_all(".", source)?;
                builder
                    .into_inner()?
                    .into_inner()
                    .map_err(|e| e.into_error())?
                    .sync_all()
            };
            let built = build().map_err(Error::io("pack root filesystem", source));
            let stored = built.and_then(|()| {
                let file = File::open(&tmp).map_err(Error::io("read", &tmp))?;
                self.inner.content.put_reader(BufReader::new(file), None)
            });
            let _ = std::fs::remove_file(&tmp);
            stored?
        } else {
            let file = File::open(source).map_err(Error::io("open", source))?;
            let tar = decompressed(BufReader::new(file)).map_err(Error::io("read", source))?;
            self.inner.content.put_reader(tar, None)?
        };
        Ok(Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest,
            size,
            ..Default::default()
        })
    }
}

/// An archive member's path without `./`, or `None` if it climbs out with `..`.
fn archive_path(raw: &Path) -> Option<String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    out.to_str().map(str::to_string).filter(|s| !s.is_empty())
}

/// The names an OCI index entry gives its image.
fn desc_names(desc: &Descriptor) -> Vec<String> {
    let annotations = desc.annotations.clone().unwrap_or_default();
    let name = annotations.get(NAME_ANNOTATION).or_else(|| {
        // OCI's ref.name is often only a tag ("latest"); only a full reference names an image.
        annotations
            .get(REF_NAME_ANNOTATION)
            .filter(|n| n.contains(['/', ':']))
    });
    name.and_then(|n| named(n)).into_iter().collect()
}

/// A normalised `name:tag`, or `None` for what is not one.
fn named(reference: &str) -> Option<String> {
    normalize(reference)
        .ok()
        .filter(|r| r.digest.is_none())
        .map(|r| r.to_string())
}
