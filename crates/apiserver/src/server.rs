//! The HTTPS server: TLS with client certificates, HTTP/2 and HTTP/1.1 by ALPN (kubectl uses
//! h2, and HTTP/1.1 for upgrades), authentication, the fixed endpoints (version, health,
//! discovery, OpenAPI) and one fallback that parses resource paths itself.

use crate::discovery;
use crate::error::ApiError;
use crate::objects::Objects;
use crate::pki::Pki;
use crate::request::{self, MAX_BODY_BYTES, Query};
use crate::rest::{self, Call, json_response};
use api::registry::Resource;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use store::Datastore;
use tokio::net::TcpListener;
use tower::Service;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificates could not be loaded into rustls.
    #[error("invalid TLS material: {0}")]
    Tls(String),
}

/// The state every handler shares.
pub struct State {
    /// API objects on the datastore.
    pub objects: Objects,
    /// Whether `/readyz` answers ok.
    pub ready: AtomicBool,
    /// The bearer token of the nodes' streaming servers (logs, exec, attach, port-forward).
    pub kubelet_token: std::sync::OnceLock<String>,
    /// Signs and checks service account tokens; without it no Pod gets a token volume.
    pub service_accounts: std::sync::OnceLock<crate::tokens::Issuer>,
}

impl State {
    /// State on `store`, not yet ready.
    pub fn new(store: Arc<dyn Datastore>) -> Arc<State> {
        Arc::new(State {
            objects: Objects::new(store),
            ready: AtomicBool::new(false),
            kubelet_token: std::sync::OnceLock::new(),
            service_accounts: std::sync::OnceLock::new(),
        })
    }

    /// Marks the server ready (bootstrap done).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

/// The authenticated user of a connection, from its client certificate.
#[derive(Clone, Debug)]
pub struct User {
    /// The certificate's CN.
    pub name: String,
    /// The certificate's O entries.
    pub groups: Vec<String>,
}

/// The registry entry of a core resource the server itself relies on.
pub fn resource(plural: &str) -> &'static Resource {
    api::registry::find("", "v1", plural).expect("core resources are always registered")
}

/// The rustls configuration: our serving certificate, client certificates verified against
/// our CA (optional, so that unauthenticated requests reach us and get a 401).
pub fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ServeError> {
    tls_config_with(pki, &pki.server_cert, &pki.server_key)
}

/// As [`tls_config`], serving `cert` and `key` (PEM) instead of the loopback certificate.
pub fn tls_config_with(
    pki: &Pki,
    cert: &str,
    key: &str,
) -> Result<rustls::ServerConfig, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).map_err(|e| tls(&e))?;
    roots.add(ca).map_err(|e| tls(&e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: rustls::ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = router(state);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| user_of(c));
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    if let Some(u) = &user {
                        req.extensions_mut().insert(u.clone());
                    }
                    app.clone().call(req.map(Body::new))
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

/// The API as a service inside this process, for the components that run beside the server
/// (the scheduler, the node agent): each request is handled as one from `user`'s certificate
/// with `user_agent` (which names the field manager) would be over TLS, with no socket,
/// encryption or HTTP framing between them.
pub fn local_service<B>(
    state: Arc<State>,
    user: User,
    user_agent: HeaderValue,
) -> impl Service<
    axum::http::Request<B>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let app = router(state);
    tower::service_fn(move |req: axum::http::Request<B>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(user.clone());
        req.headers_mut()
            .entry(header::USER_AGENT)
            .or_insert_with(|| user_agent.clone());
        app.clone().call(req)
    })
}

fn user_of(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(User { name, groups })
}

/// The router; public so tests can drive it without TLS.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(readyz))
        .route("/api", get(api_root))
        .route("/apis", get(apis_root))
        .route("/api/v1", get(|| async { group_version("", "v1") }))
        .route(
            "/apis/{group}/{version}",
            get(|Path((g, v)): Path<(String, String)>| async move { group_version(&g, &v) }),
        )
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*gv}", get(openapi_document))
        .merge(rest::proxy::upgrade_routes())
        .fallback(resource_handler)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Refuses requests without a verified client certificate or a valid service account token,
/// except the public health and version endpoints (which Kubernetes' default policy also grants
/// to everyone).
async fn authenticate(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    mut req: Request,
    next: Next,
) -> Response {
    let public = matches!(
        req.uri().path(),
        "/healthz" | "/livez" | "/readyz" | "/version"
    );
    if req.extensions().get::<User>().is_none() {
        let bearer = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        if let Some(token) = bearer {
            match service_account_user(&state, &token).await {
                Some(user) => {
                    req.extensions_mut().insert(user);
                }
                None if !public => return ApiError::unauthorized().into_response(),
                None => {}
            }
        } else if !public {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// The user a service account token stands for, if it is valid and its ServiceAccount (and
/// the Pod it is bound to) still exist with the uids it names.
async fn service_account_user(state: &State, token: &str) -> Option<User> {
    let issuer = state.service_accounts.get()?;
    let claims = issuer.verify(token, jiff::Timestamp::now().as_second())?;
    let b = &claims.kubernetes;
    let uid_of = |obj: serde_json::Value| obj["metadata"]["uid"].as_str().map(str::to_string);
    let sa = state
        .objects
        .try_get(
            resource("serviceaccounts"),
            Some(&b.namespace),
            &b.serviceaccount.name,
        )
        .await
        .ok()??;
    if uid_of(sa)? != b.serviceaccount.uid {
        return None;
    }
    if let Some(pod) = &b.pod {
        let live = state
            .objects
            .try_get(resource("pods"), Some(&b.namespace), &pod.name)
            .await
            .ok()??;
        if uid_of(live)? != pod.uid {
            return None;
        }
    }
    Some(User {
        name: claims.sub.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", b.namespace),
            "system:authenticated".into(),
        ],
    })
}

async fn version() -> Response {
    let v = json!({
        "major": "1", "minor": "32", "gitVersion": concat!("v1.32.0+tatami-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "n/a",
        "compiler": "rustc", "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
    });
    json_response(StatusCode::OK, &v, "application/json")
}

async fn health() -> &'static str {
    "ok"
}

async fn readyz(AxState(state): AxState<Arc<State>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ok".into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "[-]bootstrap failed: not finished\nreadyz check failed",
        )
            .into_response()
    }
}

fn discovery_reply(
    headers: &HeaderMap,
    aggregated: impl FnOnce() -> serde_json::Value,
    legacy: impl FnOnce() -> serde_json::Value,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if discovery::wants_aggregated(accept) {
        json_response(
            StatusCode::OK,
            &aggregated(),
            discovery::AGGREGATED_CONTENT_TYPE,
        )
    } else {
        json_response(StatusCode::OK, &legacy(), "application/json")
    }
}

async fn api_root(headers: HeaderMap) -> Response {
    discovery_reply(
        &headers,
        || discovery::aggregated(true),
        discovery::api_versions,
    )
}

async fn apis_root(headers: HeaderMap) -> Response {
    discovery_reply(
        &headers,
        || discovery::aggregated(false),
        discovery::api_group_list,
    )
}

fn group_version(group: &str, version: &str) -> Response {
    match discovery::resource_list(group, version) {
        Some(list) => json_response(StatusCode::OK, &list, "application/json"),
        None => ApiError::no_route().into_response(),
    }
}

async fn openapi_index() -> Response {
    json_response(StatusCode::OK, &api::openapi::index(), "application/json")
}

/// One group-version's OpenAPI v3 document, as kube-openapi's handler3 serves it: asked for by
/// its current hash (the URL `/openapi/v3` lists), it is immutable and expires a year later, so
/// kubectl's HTTP cache keeps it without asking again; an old hash is redirected to the current.
async fn openapi_document(Path(gv): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(doc) = api::openapi::document(&gv) else {
        return ApiError::no_route().into_response();
    };
    let query = request::Query::parse(uri.query());
    let hash = query.get("hash");
    if let Some(hash) = hash
        && hash != doc.hash
    {
        let location = format!("/openapi/v3/{gv}?hash={}", doc.hash);
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let etag = format!("\"{}\"", doc.hash);
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut resp = (StatusCode::OK, doc.bytes.clone()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if hash.is_some() {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        let in_a_year = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(365 * 24))
            .unwrap_or(jiff::Timestamp::MAX);
        if let Ok(expires) =
            jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&in_a_year)
            && let Ok(v) = HeaderValue::from_str(&expires)
        {
            h.insert(header::EXPIRES, v);
        }
    }
    resp
}

async fn resource_handler(
    AxState(state): AxState<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(target) = request::parse_path(uri.path()) else {
        return ApiError::no_route().into_response();
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let call = Call {
        state,
        target,
        query: Query::parse(uri.query()),
        headers,
        body,
        method,
    };
    rest::dispatch(call).await
}

/// How much of an oversized body is read and discarded before the 413 reply, so that the client
/// (still sending) gets the reply instead of a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a request body of at most [`MAX_BODY_BYTES`]; 413 for a larger one.
async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            break;
        }
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large());
    }
    Ok(buf.freeze())
}
