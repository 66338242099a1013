//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the checks kube-apiserver
//! makes (with its texts), then the request goes to the streaming server of the Pod's node, as
//! kube-apiserver proxies to the kubelet.
//!
//! The node is found from `spec.nodeName`: its Node object's `InternalIP` address and
//! `status.daemonEndpoints.kubeletEndpoint.Port`; requests carry the bearer token in
//! [`State::kubelet_token`]. Logs are an HTTP GET whose body is streamed through as it comes
//! (the node sends one chunk per line when following). The other three are WebSockets: the
//! node is dialled first with the subprotocols the client offered, so the client gets the
//! node's choice (or the node's refusal), then frames are relayed both ways, close frames
//! included, since kubectl reads the exit status from the last data frame and needs the close.

use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::request::Query;
use crate::server::{State, resource};
use axum::Router;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long dialling a node may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes of the WebSocket subresources. They are routes of their own, not verbs behind
/// the generic resource handler, because accepting an upgrade needs the request itself.
pub fn upgrade_routes() -> Router<Arc<State>> {
    Router::new()
        .route("/api/v1/namespaces/{ns}/pods/{name}/exec", any(exec))
        .route("/api/v1/namespaces/{ns}/pods/{name}/attach", any(attach))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/portforward",
            any(portforward),
        )
}

/// Serves the streaming subresources reached through the generic handler: `log`, and the
/// WebSocket ones when the request is not an upgrade (kubectl's SPDY fallback).
pub async fn handle(call: &Call, method: &Method, sub: &str) -> ApiResult<Response> {
    match (method, sub) {
        (&Method::GET, "log") => log(call).await,
        _ => Err(ApiError::bad_request("Upgrade request required")),
    }
}

/// The container a request names, as kube-apiserver resolves it: the `container` parameter,
/// or the only container; a 400 with Kubernetes' words otherwise.
pub fn container_name(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match asked {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None if containers.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => {
            let mut text = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                text.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                text.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(text))
        }
    }
}

/// Which runtime container the logs come from, by the Pod's status, as kubelet chooses
/// (`validateContainerLogStatus`): `Ok(None)` when there is no status for it yet.
pub fn log_container_id(
    pod: &Value,
    name: &str,
    container: &str,
    previous: bool,
) -> ApiResult<Option<String>> {
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod["status"][k].as_array())
    .flatten()
    .find(|s| s["name"].as_str() == Some(container));
    let Some(status) = status else {
        // kubelet: "container ... is waiting to start - no logs yet" when it has no status.
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is waiting to start - no logs yet"
        )));
    };
    let id = |v: &Value| {
        v["containerID"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| s.split_once("://").map_or(s, |(_, id)| id).to_string())
    };
    let state = &status["state"];
    let last = &status["lastState"]["terminated"];
    let terminated_error = || {
        ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is terminated"
        ))
    };
    if previous {
        return match id(last) {
            Some(i) => Ok(Some(i)),
            None => Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            ))),
        };
    }
    if state["running"].is_object() {
        return Ok(id(status));
    }
    if state["terminated"].is_object() {
        return match id(&state["terminated"]).or_else(|| id(last)) {
            Some(i) => Ok(Some(i)),
            None => Err(terminated_error()),
        };
    }
    if last.is_object() {
        return id(last).map(Some).ok_or_else(terminated_error);
    }
    if let Some(reason) = state["waiting"]["reason"].as_str() {
        let why = match reason {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            other => other.to_string(),
        };
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is waiting to start: {why}"
        )));
    }
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {name:?} is waiting to start - no logs yet"
    )))
}

/// `host:port` of the streaming server of the node the Pod runs on.
async fn node_address(state: &State, pod: &Value, name: &str) -> ApiResult<String> {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let obj = state
        .objects
        .try_get(resource("nodes"), None, node)
        .await?
        .ok_or_else(|| ApiError::not_found(resource("nodes"), node))?;
    let addresses = obj["status"]["addresses"].as_array();
    let ip = addresses
        .and_then(|a| {
            ["InternalIP", "ExternalIP", "Hostname"]
                .iter()
                .find_map(|t| {
                    a.iter()
                        .find(|x| x["type"].as_str() == Some(t))
                        .and_then(|x| x["address"].as_str())
                })
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!("node {node:?} does not report an address"))
        })?;
    let port = obj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("node {node:?} does not report a kubelet port"))
        })?;
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

fn token(state: &State) -> ApiResult<&str> {
    state
        .kubelet_token
        .get()
        .map(String::as_str)
        .ok_or_else(|| ApiError::unavailable("the node streaming token is not configured"))
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// `k=v&...` of the parameters in `keep` (repeated ones kept, in order).
fn forward_query(query: &Query, keep: &[&str], extra: &[(&str, String)]) -> String {
    query
        .0
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.clone()))
        .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
        .map(|(k, v)| format!("{}={}", segment(k), segment(&v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn unreachable_node(addr: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("error dialing backend: dial tcp {addr}: {e}"))
}

/// The node's error reply as a Status: its text, with the code mapped to a reason.
fn node_error(code: StatusCode, text: &str) -> ApiError {
    let text = text.trim();
    match code {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => ApiError::bad_request(text),
        _ => ApiError::internal(text),
    }
}

async fn log(call: &Call) -> ApiResult<Response> {
    let name = call.name()?;
    let pods = resource("pods");
    let pod = call.objects().get(pods, call.ns(), name).await?;
    let container = container_name(&pod, name, call.query.non_empty("container"))?;
    for key in ["tailLines", "sinceSeconds", "limitBytes"] {
        if let Some(v) = call.query.int(key)?
            && v < 0
        {
            return Err(ApiError::bad_request(format!(
                "PodLogOptions \"{name}\" is invalid: {key}: Invalid value: {v}: must be greater than or equal to 0"
            )));
        }
    }
    if pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        // kube-apiserver has no location for an unscheduled Pod, and answers with no logs.
        return Ok(text_response(Body::empty()));
    }
    let previous = call.query.flag("previous");
    let Some(id) = log_container_id(&pod, name, &container, previous)? else {
        return Ok(text_response(Body::empty()));
    };
    let addr = node_address(&call.state, &pod, name).await?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let path = format!(
        "/containerLogs/{}/{}/{}/{}?{}",
        segment(call.ns().unwrap_or_default()),
        segment(name),
        segment(uid),
        segment(&container),
        forward_query(
            &call.query,
            &[
                "follow",
                "tailLines",
                "previous",
                "timestamps",
                "sinceSeconds",
                "sinceTime",
                "limitBytes",
            ],
            &[("containerID", id)],
        )
    );
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable_node(&addr, "i/o timeout"))?
        .map_err(|e| unreachable_node(&addr, e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable_node(&addr, e))?;
    // The connection task lives as long as the body is being read, however long a follow is.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("node log connection ended: {e}");
        }
    });
    let request = hyper::Request::get(path)
        .header(header::HOST, addr.as_str())
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token(&call.state)?),
        )
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    let reply = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable_node(&addr, e))?;
    let code = reply.status();
    if code != StatusCode::OK {
        let body = axum::body::to_bytes(Body::new(reply.into_body()), 64 * 1024)
            .await
            .unwrap_or_default();
        return Err(node_error(code, &String::from_utf8_lossy(&body)));
    }
    Ok(text_response(Body::new(reply.into_body())))
}

fn text_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn exec(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    ws: Upgrade,
) -> Response {
    let keep = ["command", "stdin", "stdout", "stderr", "tty"];
    stream(state, ns, name, q, ws, "exec", &keep)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn attach(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    ws: Upgrade,
) -> Response {
    let keep = ["stdin", "stdout", "stderr", "tty"];
    stream(state, ns, name, q, ws, "attach", &keep)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn portforward(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    ws: Upgrade,
) -> Response {
    stream(state, ns, name, q, ws, "portforward", &["ports"])
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Checks a WebSocket subresource request, dials the node, and relays.
async fn stream(
    state: Arc<State>,
    ns: String,
    name: String,
    raw_query: Option<String>,
    ws: Upgrade,
    sub: &str,
    keep: &[&str],
) -> ApiResult<Response> {
    let pods = resource("pods");
    let pod = state.objects.get(pods, Some(&ns), &name).await?;
    let query = Query::parse(raw_query.as_deref());
    let Ok(mut ws) = ws else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let path = if sub == "portforward" {
        format!(
            "/portForward/{}/{}/{}",
            segment(&ns),
            segment(&name),
            segment(uid)
        )
    } else {
        let container = container_name(&pod, &name, query.non_empty("container"))?;
        format!(
            "/{sub}/{}/{}/{}/{}",
            segment(&ns),
            segment(&name),
            segment(uid),
            segment(&container)
        )
    };
    let addr = node_address(&state, &pod, &name).await?;
    let q = forward_query(&query, keep, &[]);
    let url = format!("ws://{addr}{path}?{q}");
    let mut request = url.into_client_request().map_err(ApiError::internal)?;
    let offered: Vec<String> = ws
        .requested_protocols()
        .filter_map(|p| p.to_str().ok().map(str::to_string))
        .collect();
    let headers = request.headers_mut();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", token(&state)?)).map_err(ApiError::internal)?,
    );
    if !offered.is_empty() {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&offered.join(", ")).map_err(ApiError::internal)?,
        );
    }
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable_node(&addr, "i/o timeout"))?
        .map_err(|e| unreachable_node(&addr, e))?;
    let _ = tcp.set_nodelay(true);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(16 << 20));
    let (node, reply) =
        match tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await {
            Ok(ok) => ok,
            Err(tungstenite::Error::Http(resp)) => {
                let text = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(node_error(resp.status(), &text));
            }
            Err(e) => return Err(unreachable_node(&addr, e)),
        };
    if let Some(p) = reply.headers().get(header::SEC_WEBSOCKET_PROTOCOL) {
        ws.set_selected_protocol(p.clone());
    }
    Ok(ws
        .max_message_size(64 << 20)
        .on_upgrade(move |client| relay(client, node))
        .into_response())
}

type NodeSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Copies messages both ways until either side closes; a close frame is passed on as it is.
async fn relay(client: WebSocket, node: NodeSocket) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_node, mut from_node) = node.split();
    let up = async {
        while let Some(Ok(msg)) = from_client.next().await {
            let close = matches!(msg, ws::Message::Close(_));
            let Some(m) = to_tungstenite(msg) else {
                continue;
            };
            if to_node.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = to_node.close().await;
    };
    let down = async {
        let mut closed = false;
        while let Some(Ok(msg)) = from_node.next().await {
            closed = matches!(msg, tungstenite::Message::Close(_));
            let Some(m) = to_axum(msg) else {
                continue;
            };
            if to_client.send(m).await.is_err() || closed {
                break;
            }
        }
        if !closed {
            // The node went away without a close: say so rather than drop the connection.
            let _ = to_client
                .send(ws::Message::Close(Some(ws::CloseFrame {
                    code: 1011,
                    reason: "the node closed the stream".into(),
                })))
                .await;
        }
        let _ = to_client.flush().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => {
            // Let the client's answer to the close reach the node, briefly.
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut up).await;
        }
        () = &mut up => {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut down).await;
        }
    }
}

/// Data and close frames cross; pings and pongs are each side's own business.
fn to_tungstenite(msg: ws::Message) -> Option<tungstenite::Message> {
    Some(match msg {
        ws::Message::Binary(b) => tungstenite::Message::Binary(b),
        ws::Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
        ws::Message::Close(f) => {
            tungstenite::Message::Close(f.map(|f| tungstenite::protocol::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }))
        }
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}

fn to_axum(msg: tungstenite::Message) -> Option<ws::Message> {
    Some(match msg {
        tungstenite::Message::Binary(b) => ws::Message::Binary(b),
        tungstenite::Message::Text(t) => ws::Message::Text(t.as_str().into()),
        tungstenite::Message::Close(f) => ws::Message::Close(f.map(|f| ws::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "date-tail", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "date"}, {"name": "tail"}]},
            "status": {"containerStatuses": [
                {"name": "date", "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "tail", "state": {"running": {}}, "containerID": "runc://abc",
                 "lastState": {"terminated": {"exitCode": 1, "containerID": "runc://old"}}},
            ]},
        })
    }

    #[test]
    fn container_names_as_kubernetes_words_them() {
        let p = pod();
        assert_eq!(
            container_name(&p, "date-tail", None).unwrap_err().message,
            "a container name must be specified for pod date-tail, choose one of: [date tail]"
        );
        assert_eq!(
            container_name(&p, "date-tail", Some("nope"))
                .unwrap_err()
                .message,
            "container nope is not valid for pod date-tail"
        );
        assert_eq!(
            container_name(&p, "date-tail", Some("tail")).unwrap(),
            "tail"
        );
        let one = json!({"spec": {"containers": [{"name": "main"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(container_name(&one, "demo", None).unwrap(), "main");
        assert_eq!(container_name(&one, "demo", Some("init")).unwrap(), "init");
    }

    #[test]
    fn log_container_by_status() {
        let p = pod();
        let err = log_container_id(&p, "date-tail", "date", false).unwrap_err();
        assert_eq!(err.code, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "container \"date\" in pod \"date-tail\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            log_container_id(&p, "date-tail", "date", true)
                .unwrap_err()
                .message,
            "previous terminated container \"date\" in pod \"date-tail\" not found"
        );
        assert_eq!(
            log_container_id(&p, "date-tail", "tail", false).unwrap(),
            Some("abc".into())
        );
        assert_eq!(
            log_container_id(&p, "date-tail", "tail", true).unwrap(),
            Some("old".into())
        );
        // Crash loop: the waiting container's logs are its last instance's.
        let crash = json!({"status": {"containerStatuses": [{"name": "c",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"containerID": "runc://last"}}}]}});
        assert_eq!(
            log_container_id(&crash, "p", "c", false).unwrap(),
            Some("last".into())
        );
        let pulling = json!({"status": {"containerStatuses": [{"name": "c",
            "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert_eq!(
            log_container_id(&pulling, "p", "c", false)
                .unwrap_err()
                .message,
            "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
    }

    #[test]
    fn forwarded_query_keeps_repeats() {
        let q = Query::parse(Some("command=ls&command=%2Fdir&container=main&stdout=true"));
        assert_eq!(
            forward_query(&q, &["command", "stdout"], &[]),
            "command=ls&command=%2Fdir&stdout=true"
        );
    }
}
