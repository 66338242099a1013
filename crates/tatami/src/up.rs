//! `tatami up`: storage, then the API server, then the controllers, in the foreground until
//! SIGTERM or SIGINT.

use crate::cli::UpArgs;
use crate::datadir::DataDir;
use crate::kubeconfig;
use anyhow::Context;
use apiserver::pki::{Pki, write_private};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::Datastore;
use tokio::signal::unix::{SignalKind, signal};

/// How often old revisions are compacted, and how many are kept (kine's choice).
const COMPACT_EVERY: Duration = Duration::from_secs(300);
const COMPACT_KEEP: i64 = 1000;

/// Runs the cluster until a signal stops it.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data.data_dir.as_deref())?;
    dir.create()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(dir, args))
}

async fn serve(dir: DataDir, args: UpArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pid_file = PidFile::claim(dir.pid_file())?;
    let db_path = match args.datastore.as_deref() {
        None => dir.state_db(),
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) => PathBuf::from(path),
            None => anyhow::bail!("unsupported datastore {url:?}: use sqlite://PATH"),
        },
    };
    let sqlite = store_sqlite::SqliteStore::open(&db_path)
        .with_context(|| format!("cannot open the datastore {}", db_path.display()))?;
    let _compactor = sqlite.spawn_compactor(COMPACT_EVERY, COMPACT_KEEP);
    let store: Arc<dyn Datastore> = Arc::new(sqlite);

    let pki =
        Pki::load_or_create(&dir.pki()).context("cannot prepare the cluster's certificates")?;
    let tls = apiserver::tls_config(&pki).context("cannot configure TLS")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;

    let state = apiserver::State::new(store);
    let sa_key = apiserver::pki::service_account_key(&dir.pki())
        .context("cannot prepare the service account signing key")?;
    let issuer = apiserver::tokens::Issuer::new(&sa_key, pki.ca_cert.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = state.service_accounts.set(issuer);
    apiserver::controllers::bootstrap(&state)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bootstrap the cluster: {}", e.message))?;
    tokio::spawn(apiserver::controllers::namespace_finalizer(state.clone()));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(apiserver::serve(listener, state.clone(), tls, async {
        let _ = stop_rx.await;
    }));
    let url = format!("https://{addr}");

    // The node: images, runtime and agent, a client of the API like any other.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let images = crate::image::open_store(&dir, &args.registries)?;
    let runtime = crate::node::oci_runtime(&dir, images.clone())?;
    let client = crate::node::local_client(&state, "kubelet")?;
    let scheduler = crate::node::local_client(&state, "default-scheduler")?;
    let name = crate::node::node_name(args.node_name.as_deref());
    std::fs::write(dir.node_name(), format!("{name}\n")).context("cannot record the node name")?;
    let streaming = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen for the node")?;
    // The API server proxies logs, exec and attach to the node's streaming server with this token.
    let token = crate::node::node_token(&dir)?;
    let _ = state.kubelet_token.set(token.clone());
    let context = Arc::new(node::server::Context {
        runtime: runtime.clone(),
        token,
    });
    node::volumes::share_root(&dir.node())
        .context("cannot make the node's directory a shared mount")?;
    // Served on the side: the node's start does not wait for the bridge and the certificate.
    let gateway = runtime.pod_gateway().to_string();
    {
        let (runtime, pki, state) = (runtime.clone(), pki.clone(), state.clone());
        let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_pods(&runtime, &pki, &state, &gateway, shutdown).await {
                tracing::warn!("Pods cannot reach the API server: {e:#}");
            }
        });
    }
    let mut config = node::NodeConfig::new(
        &name,
        dir.node(),
        dir.logs(),
        client,
        runtime,
        Arc::new(images),
    );
    config.api_service = Some((gateway, POD_API_PORT));
    config.streaming = Some(node::Streaming {
        listener: streaming,
        context,
    });
    let agent = node::Agent::new(config);
    let mut node_ready = agent.ready();
    let agent = tokio::spawn(agent.run(shutdown.clone()));
    tokio::spawn(controllers::run_scheduler(scheduler, shutdown.clone()));

    let kubeconfig = kubeconfig::render(&pki, &url);
    write_private(&dir.kubeconfig(), kubeconfig.as_bytes())
        .context("cannot write the kubeconfig")?;
    println!(
        "tatami is up at {url}; kubeconfig: {}",
        dir.kubeconfig().display()
    );
    // /readyz answers ok once the node is Ready, so a Pod applied then can run.
    let ready_state = state.clone();
    tokio::spawn(async move {
        if node_ready.wait_for(|r| *r).await.is_ok() {
            ready_state.set_ready();
        }
    });

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        done = server => {
            done.context("the API server stopped")?.context("the API server failed")?;
            anyhow::bail!("the API server stopped unexpectedly");
        }
    }
    // Containers keep running: the next `up` on this data dir adopts them.
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    let _ = stop_tx.send(());
    drop(pid_file);
    Ok(())
}

/// The port Pods reach the API server on, as on Kubernetes (the `kubernetes` Service's).
const POD_API_PORT: u16 = 443;

/// Serves the API to the Pods on the Pod network's gateway, with a certificate for that address
/// and the `kubernetes.default` names, and records it as the `kubernetes` Service.
async fn serve_pods(
    runtime: &runtime_oci::OciRuntime,
    pki: &Pki,
    state: &Arc<apiserver::State>,
    gateway: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    runtime
        .ensure_pod_network()
        .context("cannot make the Pod network")?;
    let names: Vec<String> = [
        gateway,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .into();
    let (cert, key) = pki
        .serving_certificate(&names)
        .context("cannot make the certificate Pods see")?;
    let tls = apiserver::tls_config_with(pki, &cert, &key).context("cannot configure TLS")?;
    let listener = tokio::net::TcpListener::bind((gateway, POD_API_PORT))
        .await
        .with_context(|| format!("cannot listen on {gateway}:{POD_API_PORT}"))?;
    tokio::spawn(apiserver::serve(listener, state.clone(), tls, async move {
        shutdown.cancelled().await
    }));
    apiserver::controllers::ensure_kubernetes_service(state, gateway, POD_API_PORT)
        .await
        .map_err(|e| anyhow::anyhow!("cannot record the kubernetes Service: {}", e.message))
}

/// The pid file of a running `up`, removed when dropped. Claiming fails while another live
/// `up` holds the data dir.
struct PidFile(PathBuf);

impl PidFile {
    fn claim(path: PathBuf) -> anyhow::Result<PidFile> {
        if let Some(pid) = crate::down::running_pid(&path) {
            anyhow::bail!("tatami up is already running on this data dir (pid {pid})");
        }
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
