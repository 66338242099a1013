//! Image references, normalised as Docker's `ParseNormalizedNamed` does: a first path component
//! is a registry only when it holds a `.` or a `:` or is `localhost`; otherwise the registry is
//! `docker.io`, and a single-component name there gets the `library/` prefix. A name with neither
//! tag nor digest gets the tag `latest`.

use crate::error::{Error, Result};
use std::fmt;

/// The registry Docker Hub's images live in, as references spell it.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// The repository path in the registry (`library/alpine`).
    pub path: String,
    /// The tag, if any (`latest` when the reference named neither tag nor digest).
    pub tag: Option<String>,
    /// The digest, if any (`sha256:<64 hex>`).
    pub digest: Option<String>,
}

impl Reference {
    /// The repository's full name without tag or digest (`docker.io/library/alpine`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The reference with this digest instead of its tag (`docker.io/library/alpine@sha256:...`).
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{}", self.name(), digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses and normalises a reference as `docker pull` does.
pub fn normalize(reference: &str) -> Result<Reference> {
    let invalid = |detail: Option<String>| Error::InvalidReference {
        reference: reference.to_string(),
        detail,
    };
    if reference.is_empty() {
        return Err(invalid(None));
    }
    if is_hex64(reference) {
        return Err(invalid(Some(format!(
            "invalid repository name ({reference}), cannot specify 64-byte hexadecimal strings"
        ))));
    }

    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    // A `:` after the last `/` starts the tag; one before it belongs to a registry's port.
    let (name, tag) = match name_and_tag.rfind(':') {
        Some(i) if !name_and_tag[i..].contains('/') => {
            (&name_and_tag[..i], Some(&name_and_tag[i + 1..]))
        }
        _ => (name_and_tag, None),
    };

    let (domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    if domain == DOCKER_HUB && !path.contains('/') {
        path = format!("library/{path}");
    }

    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(Some(format!(
            "repository name ({path}) must be lowercase"
        ))));
    }
    if !valid_domain(&domain) || !path.split('/').all(valid_path_component) {
        return Err(invalid(None));
    }
    if domain.len() + 1 + path.len() > 255 {
        return Err(invalid(Some(
            "repository name must not be more than 255 characters".into(),
        )));
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(invalid(None));
    }
    if let Some(digest) = digest {
        validate_digest(digest).map_err(|_| invalid(None))?;
    }

    let tag = match (tag, digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag.map(str::to_string),
    };
    Ok(Reference {
        domain,
        path,
        tag,
        digest: digest.map(str::to_string),
    })
}

/// Checks a `sha256:<64 lowercase hex>` digest; other algorithms are refused because every
/// digest we compute and verify is sha256.
pub fn validate_digest(digest: &str) -> Result<()> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(()),
        _ => Err(Error::invalid(
            "digest",
            format!("{digest:?} is not a sha256 digest"),
        )),
    }
}

pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || domain.starts_with('[') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let table = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("library/alpine", "docker.io/library/alpine:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/user/app", "docker.io/user/app:latest"),
            ("quay.io/coreos/etcd", "quay.io/coreos/etcd:latest"),
            ("host:5000/x", "host:5000/x:latest"),
            ("host:5000/x:tag", "host:5000/x:tag"),
            (
                "127.0.0.1:5000/library/alpine:3",
                "127.0.0.1:5000/library/alpine:3",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            (
                "my-reg.example.com/ns/img_x.y",
                "my-reg.example.com/ns/img_x.y:latest",
            ),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            ("a__b/c--d", "docker.io/a__b/c--d:latest"),
        ];
        for (input, want) in table {
            let got = normalize(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), want, "{input}");
        }
        let r = normalize(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));
        assert_eq!(r.tag, None);
        let r = normalize(&format!("alpine:3@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/alpine:3@{D}"));
        assert_eq!(r.name(), "docker.io/library/alpine");
        let r = normalize(&format!("host:5000/x@{D}")).unwrap();
        assert_eq!((r.domain.as_str(), r.path.as_str()), ("host:5000", "x"));
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let bad = [
            "",
            "Alpine",
            "docker.io/Alpine",
            "alpine:",
            "alpine:-x",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            "a//b",
            "a/",
            "-a",
            "a..b",
            "a:b:c",
            "host:port/x",
            &"a".repeat(256),
            &"0".repeat(64),
            &format!("alpine:{}", "t".repeat(129)),
        ];
        for input in bad {
            assert!(normalize(input).is_err(), "{input:?} should be refused");
        }
        assert_eq!(
            normalize("Alpine").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Alpine) must be lowercase"
        );
        assert_eq!(
            normalize("alpine:").unwrap_err().to_string(),
            "invalid reference format"
        );
    }
}
