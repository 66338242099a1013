//! The node's streaming server: the small part of kubelet's HTTP API that the API server proxies
//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward` to.
//!
//! Layout: [`serve`] runs the routes below on a bound listener, behind a bearer token;
//! [`logs`] reads CRI log files; [`stream`] speaks the `v5.channel.k8s.io` (and v4) WebSocket
//! protocol of exec and attach; [`portforward`] speaks SPDY/3.1 inside a WebSocket, as kubectl
//! 1.31+ does through the API server. Containers are found through the runtime by their labels
//! (see [`find_container`]), so the server needs no state of its own.
//!
//! Routes (as kubelet's, with the Pod's UID as an optional segment so a Pod recreated under the
//! same name is never confused with the old one):
//! - `GET /containerLogs/{ns}/{pod}[/{uid}]/{container}?follow&tailLines&previous&timestamps&sinceSeconds&sinceTime&limitBytes[&containerID]`
//! - `GET /exec/{ns}/{pod}[/{uid}]/{container}?command=..&stdin&stdout&stderr&tty` (WebSocket)
//! - `GET /attach/{ns}/{pod}[/{uid}]/{container}?stdin&stdout&stderr&tty` (WebSocket)
//! - `GET /portForward/{ns}/{pod}[/{uid}]` (WebSocket, `SPDY/3.1+portforward.k8s.io`)

pub mod logs;
pub mod portforward;
#[cfg(test)]
mod proxy_tests;
pub mod stream;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runtime::{ContainerRuntime, ContainerState, ContainerStatus, labels};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the node server needs.
pub struct Context {
    /// The runtime that runs the node's containers.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The bearer token every request must carry (shared with the API server through the data
    /// directory, in a file of mode 0600).
    pub token: String,
}

/// Why a request could not be served. Each becomes a plain-text reply with its HTTP code, which
/// the API server turns into a `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No container of that name (or no previous instance) on this node.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The runtime failed.
    #[error("{context}")]
    Runtime {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: runtime::Error,
    },
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let code = match &self {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Runtime { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let text = match &self {
            ServerError::Runtime { context, source } => format!("{context}: {source}"),
            other => other.to_string(),
        };
        let mut resp = (code, text).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// Serves the node's API on `listener` until the listener fails.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) -> std::io::Result<()> {
    axum::serve(listener, router(ctx)).await
}

/// The routes; public so tests can serve them on a listener of their own.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs_named))
        .route("/containerLogs/{ns}/{pod}/{uid}/{container}", get(logs_uid))
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(|s, p, q, ws| stream_named(stream::Kind::Exec, s, p, q, ws)),
        )
        .route(
            "/exec/{ns}/{pod}/{uid}/{container}",
            get(|s, p, q, ws| stream_uid(stream::Kind::Exec, s, p, q, ws)),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            get(|s, p, q, ws| stream_named(stream::Kind::Attach, s, p, q, ws)),
        )
        .route(
            "/attach/{ns}/{pod}/{uid}/{container}",
            get(|s, p, q, ws| stream_uid(stream::Kind::Attach, s, p, q, ws)),
        )
        .route("/portForward/{ns}/{pod}", get(portforward_named))
        .route("/portForward/{ns}/{pod}/{uid}", get(portforward_uid))
        .layer(middleware::from_fn_with_state(ctx.clone(), authenticate))
        .with_state(ctx)
}

/// Refuses requests without the shared bearer token.
async fn authenticate(State(ctx): State<Arc<Context>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), ctx.token.as_bytes()) => next.run(req).await,
        _ => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    }
}

/// Compares without stopping at the first difference, so response times do not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which Pod a request names.
#[derive(Clone, Debug)]
pub struct PodRef {
    /// The namespace.
    pub namespace: String,
    /// The Pod's name.
    pub name: String,
    /// The Pod's UID, when the caller knows it.
    pub uid: Option<String>,
}

impl PodRef {
    fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(labels::POD_NAMESPACE) == Some(&self.namespace)
            && labels.get(labels::POD_NAME) == Some(&self.name)
            && self
                .uid
                .as_ref()
                .is_none_or(|u| labels.get(labels::POD_UID) == Some(u))
    }
}

fn attempt_of(c: &ContainerStatus) -> u32 {
    c.labels
        .get(labels::CONTAINER_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// The instances of a Pod's container on this node, newest first (the current one, then the
/// previous, ...). Without a UID, the Pod whose container was made last wins.
pub async fn container_instances(
    rt: &dyn ContainerRuntime,
    pod: &PodRef,
    container: &str,
) -> Result<Vec<ContainerStatus>, ServerError> {
    let all = rt
        .list_containers()
        .await
        .map_err(|source| ServerError::Runtime {
            context: "cannot list containers".into(),
            source,
        })?;
    let mut mine: Vec<ContainerStatus> = all
        .into_iter()
        .filter(|c| {
            pod.matches(&c.labels)
                && c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(container)
        })
        .collect();
    if pod.uid.is_none()
        && let Some(newest) = mine.iter().max_by_key(|c| c.created_at)
    {
        let uid = newest.labels.get(labels::POD_UID).cloned();
        mine.retain(|c| c.labels.get(labels::POD_UID) == uid.as_ref());
    }
    mine.sort_by(|a, b| {
        attempt_of(b)
            .cmp(&attempt_of(a))
            .then(b.created_at.cmp(&a.created_at))
    });
    Ok(mine)
}

/// The current (or, with `previous`, the one before) instance of a container.
pub async fn find_container(
    rt: &dyn ContainerRuntime,
    pod: &PodRef,
    container: &str,
    previous: bool,
) -> Result<ContainerStatus, ServerError> {
    let mut found = container_instances(rt, pod, container).await?;
    let index = usize::from(previous);
    if found.len() <= index {
        return Err(ServerError::NotFound(if previous {
            format!(
                "previous terminated container {container:?} in pod {:?} not found",
                pod.name
            )
        } else {
            format!("container {container:?} in pod {:?} not found", pod.name)
        }));
    }
    Ok(found.swap_remove(index))
}

/// The query string as ordered pairs (repeated keys kept, as exec's `command` needs).
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ServerError> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ServerError::BadRequest(format!("malformed query: {e}")))
}

async fn logs_named(
    State(ctx): State<Arc<Context>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let pod = PodRef {
        namespace: ns,
        name: pod,
        uid: None,
    };
    container_logs(ctx, pod, container, q).await
}

async fn logs_uid(
    State(ctx): State<Arc<Context>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let pod = PodRef {
        namespace: ns,
        name: pod,
        uid: Some(uid),
    };
    container_logs(ctx, pod, container, q).await
}

async fn container_logs(
    ctx: Arc<Context>,
    pod: PodRef,
    container: String,
    query: Option<String>,
) -> Response {
    match container_logs_inner(ctx, pod, container, query).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn container_logs_inner(
    ctx: Arc<Context>,
    pod: PodRef,
    container: String,
    query: Option<String>,
) -> Result<Response, ServerError> {
    let pairs = query_pairs(query.as_deref())?;
    let opts = logs::LogOptions::from_query(&pairs, jiff::Timestamp::now())
        .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    // The API server names the instance it chose from the Pod's status (as kubelet chooses);
    // without it, the newest instance (or the one before, for `previous`).
    let wanted = pairs
        .iter()
        .find(|(k, v)| k == "containerID" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let found = match wanted {
        Some(id) => container_instances(ctx.runtime.as_ref(), &pod, &container)
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                ServerError::NotFound(format!(
                    "container {container:?} in pod {:?} not found",
                    pod.name
                ))
            })?,
        None => find_container(ctx.runtime.as_ref(), &pod, &container, opts.previous).await?,
    };
    let id = found.id.clone();
    let rt = ctx.runtime.clone();
    // A previous instance has exited, so following it ends at its end.
    let running: logs::StillRunning = Box::new(move || {
        let rt = rt.clone();
        let id = id.clone();
        Box::pin(async move {
            matches!(
                rt.container_status(&id).await.map(|s| s.state),
                Ok(ContainerState::Running | ContainerState::Created)
            )
        })
    });
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(logs::stream_logs(found.log_path, opts, running, tx));
    let body = Body::from_stream(tokio_stream_of(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// The receiver as a stream (without pulling in tokio-stream for one adapter).
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A WebSocket upgrade, or why the request is not one.
type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// exec or attach on `/{ns}/{pod}/{container}`.
async fn stream_named(
    kind: stream::Kind,
    State(ctx): State<Arc<Context>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    ws: Upgrade,
) -> Response {
    let pod = PodRef {
        namespace,
        name,
        uid: None,
    };
    stream::serve_stream(ctx, pod, container, q, ws, kind).await
}

/// exec or attach on `/{ns}/{pod}/{uid}/{container}`.
async fn stream_uid(
    kind: stream::Kind,
    State(ctx): State<Arc<Context>>,
    Path((namespace, name, uid, container)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
    ws: Upgrade,
) -> Response {
    let pod = PodRef {
        namespace,
        name,
        uid: Some(uid),
    };
    stream::serve_stream(ctx, pod, container, q, ws, kind).await
}

async fn portforward_named(
    State(ctx): State<Arc<Context>>,
    Path((ns, pod)): Path<(String, String)>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let pod = PodRef {
        namespace: ns,
        name: pod,
        uid: None,
    };
    portforward::serve_portforward(ctx, pod, ws).await
}

async fn portforward_uid(
    State(ctx): State<Arc<Context>>,
    Path((ns, pod, uid)): Path<(String, String, String)>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let pod = PodRef {
        namespace: ns,
        name: pod,
        uid: Some(uid),
    };
    portforward::serve_portforward(ctx, pod, ws).await
}

/// The reply to a streaming request that is not a WebSocket upgrade.
fn upgrade_required() -> Response {
    ServerError::BadRequest("Upgrade request required".into()).into_response()
}
