//! Pulling from registries with oci-client, in containerd's manner: hosts are tried in order
//! (the mirrors for the registry, then the registry itself), a 404 moves on to the next host,
//! and the first other failure is what is reported when no host has the image. Every blob is
//! hashed as it arrives and renamed into the store only when it matches its descriptor; blobs
//! already in the store are not fetched again.

use crate::content::{ImageRecord, LayerRecord};
use crate::error::{Error, Result, chain};
use crate::manifest::{ACCEPTED, AnyManifest, ConfigFile, Descriptor, select_platform};
use crate::reference::{Reference, normalize};
use crate::unpack::hex;
use crate::{Image, ImageStore, Progress, ProgressState, RegistryAuth, RegistryConfig};
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth as OciAuth;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;

/// How many layer blobs one pull fetches at once.
const MAX_CONCURRENT_DOWNLOADS: usize = 3;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A registry that stops sending is given up on, like containerd's
/// image_pull_progress_timeout, instead of holding the Pod in ContainerCreating.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const USER_AGENT: &str = concat!("tatami/", env!("CARGO_PKG_VERSION"));

/// A place to fetch a registry's content from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP.
    pub http: bool,
    /// HTTPS without verifying the certificate.
    pub skip_verify: bool,
}

/// The parsed registry settings.
#[derive(Debug, Default)]
pub(crate) struct Registries {
    mirrors: Vec<(String, Endpoint)>,
    insecure: Vec<String>,
    anonymous: AnonymousClients,
}

/// One client per endpoint for anonymous pulls, kept between pulls: making one builds a TLS
/// configuration (a good part of an `Always` pull's check of an image already present), and a
/// kept one reuses its connections. Pulls with credentials get a client of their own, so no
/// token one of them obtained serves another.
#[derive(Default)]
struct AnonymousClients(std::sync::Mutex<std::collections::HashMap<Endpoint, Anonymous>>);

/// The kept clients of one endpoint: oci-client's, and a plain HTTP one that asks for a tag's
/// manifest without oci-client's probe of `/v2/` (see [`Endpoint::manifest_directly`]).
#[derive(Clone)]
struct Anonymous {
    oci: oci_client::Client,
    plain: reqwest::Client,
}

impl std::fmt::Debug for AnonymousClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnonymousClients")
    }
}

impl Registries {
    pub(crate) fn new(config: &RegistryConfig) -> Result<Registries> {
        let mut mirrors = Vec::new();
        for (host, url) in &config.mirrors {
            let bad = |reason: &str| Error::Config {
                mirror: format!("{host}={url}"),
                reason: reason.to_string(),
            };
            let (http, rest) = if let Some(rest) = url.strip_prefix("http://") {
                (true, rest)
            } else if let Some(rest) = url.strip_prefix("https://") {
                (false, rest)
            } else if url.contains("://") {
                return Err(bad("the URL must start with http:// or https://"));
            } else {
                (false, url.as_str())
            };
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            // oci-client always puts `/v2/` right after the host, so a mirror cannot live under
            // a path prefix; `/` and `/v2` are the same as none.
            if !matches!(path.trim_end_matches('/'), "" | "v2") {
                return Err(bad("a mirror URL may not have a path"));
            }
            if authority.is_empty() || host.is_empty() {
                return Err(bad(
                    "both the registry host and the mirror's host are needed",
                ));
            }
            let skip_verify = !http && config.insecure.iter().any(|h| h == authority);
            mirrors.push((
                host.clone(),
                Endpoint {
                    host: authority.to_string(),
                    http,
                    skip_verify,
                },
            ));
        }
        Ok(Registries {
            mirrors,
            insecure: config.insecure.clone(),
            anonymous: AnonymousClients::default(),
        })
    }

    /// The kept clients to reach `endpoint` with, for an anonymous pull (one with credentials
    /// makes its own, `Endpoint::client`).
    fn anonymous(&self, endpoint: &Endpoint) -> Anonymous {
        let mut clients = self.anonymous.0.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(endpoint.clone())
            .or_insert_with(|| Anonymous {
                oci: endpoint.client(),
                plain: endpoint.plain_client(),
            })
            .clone()
    }

    /// The hosts to try for a registry, in order.
    pub(crate) fn endpoints(&self, domain: &str, default_endpoint: bool) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .mirrors
            .iter()
            .filter(|(h, _)| h == domain)
            .map(|(_, e)| e.clone())
            .collect();
        if out.is_empty() || default_endpoint {
            let http = self.insecure.iter().any(|h| h == domain);
            out.push(Endpoint {
                host: domain.to_string(),
                http,
                skip_verify: false,
            });
        }
        out
    }
}

impl Endpoint {
    fn client(&self) -> oci_client::Client {
        oci_client::Client::new(ClientConfig {
            protocol: if self.http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: self.skip_verify,
            // We pick the platform ourselves so that the index itself is kept and verified.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..Default::default()
        })
    }

    fn plain_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(self.skip_verify)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            // Only a TLS backend that cannot start fails here; oci-client's own would fail too.
            .unwrap_or_default()
    }

    /// Asks for a manifest as containerd's resolver does, at once, where oci-client first asks
    /// `/v2/` on every request of an anonymous pull (it keeps no token where none is needed):
    /// a second round trip for each check of an `Always` image. Only a plain answer (200, with
    /// a manifest's media type) is taken; anything else (a 401 challenge, a 404, any other
    /// refusal) is `None`, for oci-client to ask again and handle as it always does. A request
    /// that cannot be made is an error.
    async fn manifest_directly(
        &self,
        plain: &reqwest::Client,
        reference: &oci_client::Reference,
    ) -> Option<std::result::Result<(bytes::Bytes, String), OciDistributionError>> {
        let scheme = if self.http { "http" } else { "https" };
        let name = reference.digest().or(reference.tag()).unwrap_or("latest");
        // The host oci-client would ask (`docker.io` is `index.docker.io`).
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{name}",
            reference.resolve_registry(),
            reference.repository()
        );
        let sent = plain
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPTED.join(", "))
            .send()
            .await;
        let res = match sent {
            Ok(res) if res.status() == reqwest::StatusCode::OK => res,
            Ok(_) => return None,
            Err(e) => return Some(Err(e.into())),
        };
        // A manifest, not some page a redirect led to.
        let media_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|t| ACCEPTED.contains(&t)) {
            return None;
        }
        let digest = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Some(res.bytes().await.map_err(Into::into).map(|body| {
            let digest =
                digest.unwrap_or_else(|| format!("sha256:{}", hex(&Sha256::digest(&body))));
            (body, digest)
        }))
    }

    fn reference(&self, r: &Reference) -> oci_client::Reference {
        // A digest pins the content, so it is what is asked for when a tag comes with it.
        match (&r.digest, &r.tag) {
            (Some(d), _) => {
                oci_client::Reference::with_digest(self.host.clone(), r.path.clone(), d.clone())
            }
            (None, tag) => oci_client::Reference::with_tag(
                self.host.clone(),
                r.path.clone(),
                tag.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }
}

/// How a failed request is reported.
fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// Words a registry failure as containerd's resolver does.
fn describe(err: &OciDistributionError) -> String {
    const DENIED: &str =
        "pull access denied, repository does not exist or may require authorization";
    match err {
        OciDistributionError::UnauthorizedError { .. } => format!("{DENIED}: authorization failed"),
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("{DENIED}: server message: {}", reason.trim())
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let denied = envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
            let messages: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    let code = serde_json::to_value(&e.code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_lowercase))
                        .unwrap_or_default();
                    format!("{code}: {}", e.message)
                })
                .collect();
            if denied {
                format!("{DENIED}: server message: {}", messages.join("; "))
            } else {
                format!(
                    "unexpected status from GET request to {url}: {}",
                    messages.join("; ")
                )
            }
        }
        OciDistributionError::ServerError { code, url, .. } => {
            let reason = http::StatusCode::from_u16(*code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            format!("unexpected status from GET request to {url}: {code} {reason}")
                .trim_end()
                .to_string()
        }
        OciDistributionError::RequestError(e) => format!("failed to do request: {}", chain(e)),
        other => chain(other),
    }
}

/// A host that answered for the reference, with the client that asked it.
struct Resolved {
    client: oci_client::Client,
    reference: oci_client::Reference,
}

impl ImageStore {
    /// Pulls an image (anonymously, or with `auth` from an imagePullSecret), reporting each
    /// layer's progress, and returns it once every layer is unpacked. An image whose blobs are
    /// all present costs one manifest request. The progress callback is `Send + Sync` so the
    /// pull can run on any runtime thread.
    pub async fn pull_with_progress(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Image> {
        let r = normalize(reference)?;
        let shown = r.to_string();
        let wrap = |cause: String| Error::Pull {
            message: format!("failed to pull and unpack image {shown:?}: {cause}"),
        };
        let _gc = self.inner.gc.read().await;
        let auth = match auth {
            Some(a) => OciAuth::Basic(a.username.clone(), a.password.clone()),
            None => OciAuth::Anonymous,
        };

        // Resolve: the first host that has the manifest wins.
        let default_endpoint = self.inner.default_endpoint.load(Ordering::Relaxed);
        let mut first_err = None;
        let mut found = None;
        for endpoint in self.inner.registries.endpoints(&r.domain, default_endpoint) {
            let reference = endpoint.reference(&r);
            let (client, direct) = if matches!(auth, OciAuth::Anonymous) {
                let Anonymous { oci, plain } = self.inner.registries.anonymous(&endpoint);
                let direct = endpoint.manifest_directly(&plain, &reference).await;
                (oci, direct)
            } else {
                (endpoint.client(), None)
            };
            let got = match direct {
                Some(got) => got,
                None => client.pull_manifest_raw(&reference, &auth, ACCEPTED).await,
            };
            match got {
                Ok((bytes, digest)) => {
                    found = Some((Resolved { client, reference }, bytes, digest));
                    break;
                }
                Err(e) if is_not_found(&e) => {
                    tracing::debug!(host = %endpoint.host, reference = %shown, "not found, trying next host");
                }
                Err(e) => {
                    tracing::info!(host = %endpoint.host, reference = %shown, error = %chain(&e), "trying next host");
                    first_err.get_or_insert_with(|| describe(&e));
                }
            }
        }
        let resolve_err =
            |cause: String| wrap(format!("failed to resolve reference {shown:?}: {cause}"));
        let Some((resolved, bytes, digest)) = found else {
            return Err(resolve_err(
                first_err.unwrap_or_else(|| format!("{shown}: not found")),
            ));
        };
        let target = self
            .store_manifest(&bytes, &digest, r.digest.as_deref())
            .map_err(|e| resolve_err(chain(&e)))?;

        // An index: choose this platform's manifest and fetch it by digest.
        let top = AnyManifest::parse(&bytes, &format!("manifest {target}"))
            .map_err(|e| wrap(chain(&e)))?;
        let (manifest_digest, manifest) = if top.is_index() {
            let entries = top.manifests.unwrap_or_default();
            let chosen = select_platform(&entries)
                .ok_or_else(|| wrap("no match for platform in manifest: not found".to_string()))?;
            let by_digest = resolved.reference.clone_with_digest(chosen.digest.clone());
            let (bytes, digest) = resolved
                .client
                .pull_manifest_raw(&by_digest, &auth, ACCEPTED)
                .await
                .map_err(|e| {
                    wrap(format!(
                        "failed to resolve reference {shown:?}: {}",
                        describe(&e)
                    ))
                })?;
            let digest = self
                .store_manifest(&bytes, &digest, Some(&chosen.digest))
                .map_err(|e| wrap(chain(&e)))?;
            let manifest = AnyManifest::parse(&bytes, &format!("manifest {digest}"))
                .map_err(|e| wrap(chain(&e)))?;
            (digest, manifest)
        } else {
            (target.clone(), top)
        };
        let (Some(config_desc), Some(layer_descs)) = (manifest.config, manifest.layers) else {
            return Err(wrap(format!(
                "manifest {manifest_digest} has no config or layers"
            )));
        };

        // Fetch the config and every layer blob the store lacks.
        let quiet = |_: Progress| {};
        self.fetch_blob(&resolved, &config_desc, &quiet)
            .await
            .map_err(|e| wrap(format!("failed to copy: {}", chain(&e))))?;
        // Three layers at a time, as containerd's default max_concurrent_downloads.
        // Boxed with an explicit type: the closure's future otherwise trips rustc's
        // higher-ranked lifetime inference when the whole pull must be Send.
        type Fetch<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;
        let fetches: Vec<Fetch<'_>> = layer_descs
            .iter()
            .map(|desc| Box::pin(self.fetch_blob(&resolved, desc, progress)) as Fetch<'_>)
            .collect();
        futures::stream::iter(fetches)
            .buffer_unordered(MAX_CONCURRENT_DOWNLOADS)
            .try_collect::<Vec<()>>()
            .await
            .map_err(|e| wrap(format!("failed to copy: {}", chain(&e))))?;
        let config_bytes = self
            .inner
            .content
            .read_blob(&config_desc.digest)
            .map_err(|e| wrap(chain(&e)))?;
        let config = ConfigFile::parse(
            &config_bytes,
            &format!("image config {}", config_desc.digest),
        )
        .map_err(|e| wrap(chain(&e)))?;
        let record = self
            .unpack_layers(
                &config_desc,
                &layer_descs,
                config.diff_ids(),
                &target,
                &manifest_digest,
                progress,
            )
            .await
            .map_err(|e| wrap(chain(&e)))?;

        let names: Vec<String> = if r.digest.is_none() {
            vec![shown.clone()]
        } else {
            Vec::new()
        };
        self.commit_record(record, &names, &[r.with_digest(&target)])
            .map_err(|e| wrap(chain(&e)))
    }

    /// Checks a manifest's bytes against the digest the registry gave and, when the reference
    /// pinned one, against that, then stores them. Returns the digest.
    fn store_manifest(&self, bytes: &[u8], digest: &str, pinned: Option<&str>) -> Result<String> {
        let actual = format!("sha256:{}", hex(&Sha256::digest(bytes)));
        for expected in [Some(digest), pinned].into_iter().flatten() {
            if expected != actual {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        self.inner.content.put_bytes(bytes)
    }

    /// Fetches one blob into the store unless it is there, hashing as it arrives.
    async fn fetch_blob(
        &self,
        resolved: &Resolved,
        desc: &Descriptor,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<()> {
        let report = |done, state| {
            progress(Progress {
                digest: desc.digest.clone(),
                done,
                total: desc.size,
                state,
            })
        };
        if self.inner.content.has_blob(&desc.digest) {
            report(desc.size, ProgressState::Exists);
            return Ok(());
        }
        let path = self.inner.content.blob_path(&desc.digest)?;
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size as i64,
            ..Default::default()
        };
        let pull_err = |e: OciDistributionError| Error::Pull {
            message: format!("httpReadSeeker: failed open: {}", describe(&e)),
        };
        let mut stream = resolved
            .client
            .pull_blob_stream(&resolved.reference, &oci_desc)
            .await
            .map_err(pull_err)?;
        let tmp = self.inner.content.tmp_path("blob");
        let result = async {
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(Error::io("create blob", &tmp))?;
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
            let mut hasher = Sha256::new();
            let mut done = 0u64;
            report(0, ProgressState::Downloading);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Error::io("read blob from registry for", &path))?;
                hasher.update(&chunk);
                done += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(Error::io("write blob", &tmp))?;
                report(done, ProgressState::Downloading);
            }
            out.flush().await.map_err(Error::io("write blob", &tmp))?;
            let actual = format!("sha256:{}", hex(&hasher.finalize()));
            if actual != desc.digest || (desc.size != 0 && done != desc.size) {
                return Err(Error::DigestMismatch {
                    expected: desc.digest.clone(),
                    actual,
                });
            }
            self.inner.content.commit_blob(&tmp, &desc.digest)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Unpacks each layer (off the async threads) and builds the image's record.
    pub(crate) async fn unpack_layers(
        &self,
        config: &Descriptor,
        layers: &[Descriptor],
        diff_ids: &[String],
        target: &str,
        manifest: &str,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<ImageRecord> {
        if diff_ids.len() != layers.len() {
            return Err(Error::invalid(
                format!("image config {}", config.digest),
                format!(
                    "it lists {} diff ids for {} layers",
                    diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        let mut records = Vec::with_capacity(layers.len());
        for (desc, diff_id) in layers.iter().zip(diff_ids) {
            let report = |state| {
                progress(Progress {
                    digest: desc.digest.clone(),
                    done: desc.size,
                    total: desc.size,
                    state,
                })
            };
            report(ProgressState::Unpacking);
            let store = self.clone();
            let (blob, diff) = (desc.digest.clone(), diff_id.clone());
            tokio::task::spawn_blocking(move || store.inner.content.ensure_layer(&blob, &diff))
                .await
                .map_err(|e| {
                    Error::invalid(
                        format!("layer {diff_id}"),
                        format!("unpacking stopped: {e}"),
                    )
                })?
                .map_err(|e| Error::Extract {
                    diff_id: diff_id.clone(),
                    source: Box::new(e),
                })?;
            report(ProgressState::Done);
            records.push(LayerRecord {
                blob: desc.digest.clone(),
                diff_id: diff_id.clone(),
                size: desc.size,
            });
        }
        Ok(ImageRecord {
            id: config.digest.clone(),
            target: target.to_string(),
            manifest: manifest.to_string(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            size: config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers: records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let config = RegistryConfig {
            mirrors: vec![
                ("docker.io".into(), "http://127.0.0.1:5000".into()),
                ("docker.io".into(), "https://mirror.example:8443/".into()),
            ],
            insecure: vec!["mirror.example:8443".into(), "10.0.0.1:5000".into()],
        };
        let reg = Registries::new(&config).unwrap();
        let hosts: Vec<_> = reg
            .endpoints("docker.io", true)
            .into_iter()
            .map(|e| (e.host, e.http, e.skip_verify))
            .collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:5000".to_string(), true, false),
                ("mirror.example:8443".to_string(), false, true),
                ("docker.io".to_string(), false, false)
            ]
        );
        assert_eq!(reg.endpoints("docker.io", false).len(), 2);
        let plain = reg.endpoints("10.0.0.1:5000", false);
        assert_eq!(
            plain,
            [Endpoint {
                host: "10.0.0.1:5000".into(),
                http: true,
                skip_verify: false
            }]
        );
        let bad = RegistryConfig {
            mirrors: vec![("docker.io".into(), "http://h/prefix".into())],
            insecure: vec![],
        };
        assert!(Registries::new(&bad).is_err());
    }
}
