//! The kubeconfig: the admin's client certificate and the cluster's CA, for kubectl.

use crate::cli::DataDirArgs;
use crate::datadir::DataDir;
use apiserver::pki::Pki;
use base64::Engine;

/// `tatami kubeconfig`: prints the kubeconfig's path.
pub fn print_path(args: DataDirArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data_dir.as_deref())?;
    let path = dir.kubeconfig();
    if !path.exists() {
        anyhow::bail!(
            "no kubeconfig at {}: is `tatami up` running on this data dir?",
            path.display()
        );
    }
    println!("{}", path.display());
    Ok(())
}

/// The kubeconfig text for a server at `url`.
pub fn render(pki: &Pki, url: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tatami\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\nusers:\n- name: tatami-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: tatami\n  context:\n    cluster: tatami\n    user: tatami-admin\n    namespace: default\ncurrent-context: tatami\npreferences: {{}}\n",
        b64(&pki.ca_cert),
        b64(&pki.admin_cert),
        b64(&pki.admin_key),
    )
}
