//! The node half of `tatami up`: the image store, the runc runtime and the agent, wired to the
//! API server through an ordinary client.

use crate::datadir::DataDir;
use anyhow::Context;
use apiserver::pki::{ADMIN_GROUP, ADMIN_USER, write_private};
use images::ImageStore;
use runtime_oci::{OciConfig, OciRuntime, RootfsProvider};
use std::path::PathBuf;
use std::sync::Arc;

/// Root filesystems for the runtime, from the image store.
struct ImageRootfs(ImageStore);

impl RootfsProvider for ImageRootfs {
    fn image_config(&self, image_id: &str) -> runtime::Result<runtime_oci::ImageConfig> {
        let c = self
            .0
            .image_config(image_id)
            .map_err(runtime::Error::from)?;
        Ok(runtime_oci::ImageConfig {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: c.env,
            working_dir: c.working_dir,
            user: c.user,
        })
    }

    fn layers(&self, image_id: &str) -> runtime::Result<Vec<PathBuf>> {
        self.0.layers(image_id).map_err(runtime::Error::from)
    }
}

/// The runc runtime on a data dir's state.
pub fn oci_runtime(dir: &DataDir, images: ImageStore) -> anyhow::Result<Arc<OciRuntime>> {
    let config = OciConfig::new(dir.runtime(), Arc::new(ImageRootfs(images)));
    Ok(Arc::new(
        OciRuntime::new(config).context("cannot start the container runtime")?,
    ))
}

/// A client of the API server in this process, as the cluster's admin. `agent` names the
/// component (`kubelet`, `default-scheduler`): the server takes the field manager of its
/// writes from the user agent, as kube-apiserver does.
pub fn local_client(state: &Arc<apiserver::State>, agent: &str) -> anyhow::Result<kube::Client> {
    let user_agent = format!(
        "{agent}/v1.32.0 (linux) tatami/{}",
        env!("CARGO_PKG_VERSION")
    );
    let user_agent = http::HeaderValue::from_str(&user_agent).context("invalid user agent")?;
    let admin = apiserver::server::User {
        name: ADMIN_USER.into(),
        groups: vec![ADMIN_GROUP.into()],
    };
    let service = apiserver::local_service(state.clone(), admin, user_agent);
    Ok(kube::Client::new(service, "default"))
}

/// The secret the API server shows the node's streaming server, kept in the data dir (0600).
pub fn node_token(dir: &DataDir) -> anyhow::Result<String> {
    let path = dir.pki().join("node-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let token = format!("{}{}", uuid_hex(), uuid_hex());
    write_private(&path, token.as_bytes()).context("cannot write the node token")?;
    Ok(token)
}

fn uuid_hex() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The node's name: `--node-name`, else the host name.
pub fn node_name(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "tatami".to_string())
        .to_lowercase()
}
