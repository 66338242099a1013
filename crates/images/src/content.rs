//! The content store on disk: blobs by digest, unpacked layers by diff id, and the image records.
//!
//! Layout under the store's root:
//! - `blobs/sha256/<hex>`: manifests, indexes, configs and layer blobs, each verified before it
//!   is renamed into place, so a blob file that exists is always complete and correct.
//! - `layers/<diff id hex>/`: one unpacked layer, shared by every image that has it. A layer is
//!   unpacked into `tmp/` and renamed here whole, so a crash never leaves a half layer in use.
//! - `images.json`: the image records, rewritten atomically (temp file, fsync, rename).
//! - `tmp/`: work in progress, emptied when the store opens.

use crate::error::{Error, Result};
use crate::reference::is_hex64;
use crate::unpack::{HashingReader, hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One layer of an image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LayerRecord {
    /// The digest of the (possibly compressed) blob.
    pub blob: String,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// What the store remembers about one image, keyed by its id (the config digest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// The config digest.
    pub id: String,
    /// The manifest or index digest the image was resolved to (what repo digests name).
    pub target: String,
    /// The platform manifest's digest (equal to `target` unless `target` is an index).
    pub manifest: String,
    /// Normalised references naming it (`docker.io/library/alpine:latest`).
    #[serde(default)]
    pub names: Vec<String>,
    /// `name@digest` forms it is known by.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Layers, lowest first.
    pub layers: Vec<LayerRecord>,
    /// Config plus layer blob sizes.
    pub size: u64,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Records {
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
}

/// Paths and file operations of the content store.
pub(crate) struct Content {
    root: PathBuf,
    tmp_seq: AtomicU64,
}

impl Content {
    pub(crate) fn open(root: &Path) -> Result<Content> {
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(Error::io("create directory", &path))?;
        }
        // Whatever is in tmp/ was being written when a previous process stopped.
        let tmp = root.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        Ok(Content {
            root: root.to_path_buf(),
            tmp_seq: AtomicU64::new(0),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path under tmp/ (same file system as blobs and layers, so rename is atomic).
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(Error::io("read blob", path))
    }

    pub(crate) fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(Error::io("open blob", path))
    }

    /// Stores bytes as a blob and returns their digest.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<String> {
        let digest = format!("sha256:{}", hex(&Sha256::digest(bytes)));
        if !self.has_blob(&digest) {
            let tmp = self.tmp_path("blob");
            fs::write(&tmp, bytes).map_err(Error::io("write blob", &tmp))?;
            self.commit_blob(&tmp, &digest)?;
        }
        Ok(digest)
    }

    /// Copies a stream into the store, verifying it against `expected` when given, and returns
    /// its digest and size.
    pub(crate) fn put_reader(
        &self,
        reader: impl Read,
        expected: Option<&str>,
    ) -> Result<(String, u64)> {
        let tmp = self.tmp_path("blob");
        let result = (|| {
            let mut file = File::create(&tmp).map_err(Error::io("create blob", &tmp))?;
            let mut hashing = HashingReader::new(reader);
            io::copy(&mut hashing, &mut file).map_err(Error::io("write blob", &tmp))?;
            let (digest, size) = hashing.finish();
            if let Some(expected) = expected
                && expected != digest
            {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
            self.commit_blob(&tmp, &digest)?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Moves a verified temp file to its blob path.
    pub(crate) fn commit_blob(&self, tmp: &Path, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        fs::rename(tmp, &path).map_err(Error::io("store blob", &path))
    }

    pub(crate) fn layer_path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    /// Unpacks the blob into `layers/<diff id>` unless it is there already, verifying that the
    /// uncompressed tar hashes to `diff_id`.
    pub(crate) fn ensure_layer(&self, blob: &str, diff_id: &str) -> Result<PathBuf> {
        let path = self.layer_path(diff_id)?;
        if path.is_dir() {
            return Ok(path);
        }
        let tmp = self.tmp_path("layer");
        let result = (|| {
            fs::create_dir(&tmp).map_err(Error::io("create directory", &tmp))?;
            let file = self.open_blob(blob)?;
            let actual = crate::unpack::unpack_layer(io::BufReader::new(file), &tmp)?;
            if actual != diff_id {
                return Err(Error::DigestMismatch {
                    expected: diff_id.to_string(),
                    actual,
                });
            }
            // The directory was made with the process's umask; a layer root is 0755 like `/`.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &tmp))?;
            match fs::rename(&tmp, &path) {
                Ok(()) => Ok(()),
                // Another pull of an image sharing this layer finished first; theirs is as good.
                Err(_) if path.is_dir() => {
                    let _ = fs::remove_dir_all(&tmp);
                    Ok(())
                }
                Err(e) => Err(Error::io("store layer", &path)(e)),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| path)
    }

    fn records_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    pub(crate) fn load_records(&self) -> Result<Records> {
        let path = self.records_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                action: "read image records",
                path,
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(Error::io("read image records", path)(e)),
        }
    }

    pub(crate) fn save_records(&self, records: &Records) -> Result<()> {
        let path = self.records_path();
        let bytes = serde_json::to_vec_pretty(records).map_err(|source| Error::Json {
            action: "write image records",
            path: path.clone(),
            source,
        })?;
        let tmp = self.tmp_path("images.json");
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(Error::io("write image records", &path))
    }

    /// Deletes blobs and layer directories that no record refers to.
    pub(crate) fn collect_garbage(&self, records: &Records) -> Result<()> {
        let mut blobs = std::collections::HashSet::new();
        let mut layers = std::collections::HashSet::new();
        for r in records.images.values() {
            for d in [&r.id, &r.target, &r.manifest] {
                blobs.insert(digest_hex(d)?.to_string());
            }
            for l in &r.layers {
                blobs.insert(digest_hex(&l.blob)?.to_string());
                layers.insert(digest_hex(&l.diff_id)?.to_string());
            }
        }
        sweep(&self.root.join("blobs/sha256"), &blobs)?;
        sweep(&self.root.join("layers"), &layers)
    }
}

fn sweep(dir: &Path, keep: &std::collections::HashSet<String>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(Error::io("list", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(Error::io("remove", &path))?;
    }
    Ok(())
}

/// The hex part of a `sha256:` digest, checked so it can be used as a file name.
pub(crate) fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(hex),
        _ => Err(Error::invalid(
            "digest",
            format!("{digest:?} is not a sha256 digest"),
        )),
    }
}
