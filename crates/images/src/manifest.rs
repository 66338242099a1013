//! The few fields of OCI and Docker manifests, indexes and configs the store reads. Our own
//! lenient structs rather than oci-spec's, because Docker configs carry `null` where the OCI
//! types expect lists, and unknown fields must pass through untouched.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What we ask registries for, in order of preference.
pub(crate) const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A platform in an index entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index: which one is told by `mediaType`, or by which list is present.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnyManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

impl AnyManifest {
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<AnyManifest> {
        serde_json::from_slice(bytes).map_err(|e| Error::invalid(what, e))
    }

    pub(crate) fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            Some(_) => false,
            None => self.manifests.is_some() && self.config.is_none(),
        }
    }
}

/// The Go name of this machine's architecture, as image platforms spell it.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Picks the index entry for linux on this architecture, as containerd's default platform
/// matcher does: an exact os/arch match first (for arm64 preferring variant v8 or none), else
/// an entry that names no platform at all. Attestation manifests carry `unknown/unknown` and so
/// never match.
pub(crate) fn select_platform(entries: &[Descriptor]) -> Option<&Descriptor> {
    let arch = go_arch();
    let matches = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    };
    let preferred_variant = |d: &&Descriptor| {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        arch != "arm64" || matches!(variant, None | Some("v8"))
    };
    entries
        .iter()
        .filter(matches)
        .find(preferred_variant)
        .or_else(|| entries.iter().find(matches))
        .or_else(|| entries.iter().find(|d| d.platform.is_none()))
}

/// The parts of an image config a container is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `ENTRYPOINT`, empty when unset.
    pub entrypoint: Vec<String>,
    /// `CMD`, empty when unset.
    pub cmd: Vec<String>,
    /// `ENV` as `NAME=value` strings.
    pub env: Vec<String>,
    /// `WORKDIR`, when set.
    pub working_dir: Option<String>,
    /// `USER` (`name`, `uid`, `uid:gid`, ...), when set.
    pub user: Option<String>,
    /// `STOPSIGNAL`, when set.
    pub stop_signal: Option<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
}

/// The image config document (OCI `application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub config: Option<RawConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl ConfigFile {
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<ConfigFile> {
        serde_json::from_slice(bytes).map_err(|e| Error::invalid(what, e))
    }

    pub(crate) fn diff_ids(&self) -> &[String] {
        self.rootfs
            .as_ref()
            .map(|r| r.diff_ids.as_slice())
            .unwrap_or_default()
    }

    pub(crate) fn image_config(self) -> ImageConfig {
        let c = self.config.unwrap_or_default();
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: nonempty(c.working_dir),
            user: nonempty(c.user),
            stop_signal: nonempty(c.stop_signal),
            labels: c.labels.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            digest: digest.into(),
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn selects_this_platform() {
        let arch = go_arch();
        let list = vec![
            entry("unknown", "unknown", None, "att"),
            entry("windows", arch, None, "win"),
            entry("linux", "s390x-not-this", None, "other"),
            entry("linux", arch, None, "mine"),
        ];
        assert_eq!(
            select_platform(&list).map(|d| d.digest.as_str()),
            Some("mine")
        );
        assert!(select_platform(&list[..3]).is_none());
        let bare = vec![Descriptor {
            digest: "any".into(),
            ..Default::default()
        }];
        assert_eq!(
            select_platform(&bare).map(|d| d.digest.as_str()),
            Some("any")
        );
    }

    #[test]
    fn reads_docker_configs_with_nulls() {
        let cfg = br#"{"config":{"Cmd":null,"Entrypoint":["/bin/sh","-c"],"Env":["A=1"],"WorkingDir":"","User":"1000:1000"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let parsed = ConfigFile::parse(cfg, "config").unwrap();
        assert_eq!(parsed.diff_ids(), ["sha256:aa"]);
        let c = parsed.image_config();
        assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
    }
}
