//! The API server's proxy in front of this server: a Node and a Pod in an in-memory store, the
//! API router (without TLS, its user set by hand), and the node server on a fake runtime.

use super::Context;
use super::stream::tests::FakeStreams;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LOG: &str = "\
2024-05-01T10:00:00Z stdout F one
2024-05-01T10:00:01Z stderr P tw
2024-05-01T10:00:01Z stderr F o
2024-05-01T10:00:02Z stdout F three
";

/// Starts both servers; returns the API server's address and the temp dir holding the log.
async fn start() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("0.log");
    std::fs::write(&log_path, LOG).unwrap();
    let ctx = Arc::new(Context {
        runtime: Arc::new(FakeStreams {
            resizes: Arc::new(Mutex::new(Vec::new())),
            log_path,
        }),
        token: "node-token".into(),
    });
    let node_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_port = node_listener.local_addr().unwrap().port();
    tokio::spawn(super::serve(node_listener, ctx));

    let state = apiserver::State::new(Arc::new(store::MemoryStore::new()));
    state.kubelet_token.set("node-token".into()).unwrap();
    let nodes = apiserver::server::resource("nodes");
    let pods = apiserver::server::resource("pods");
    state
        .objects
        .create(
            nodes,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": node_port}}}}),
        )
        .await
        .unwrap();
    let pod = |name: &str, containers: Value, statuses: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": containers},
            "status": {"phase": "Running", "containerStatuses": statuses}})
    };
    let running = json!([{"name": "main", "state": {"running": {}}, "containerID": "runc://c1"}]);
    state
        .objects
        .create(pods, pod("demo", json!([{"name": "main"}]), running))
        .await
        .unwrap();
    state
        .objects
        .create(
            pods,
            pod(
                "date-tail",
                json!([{"name": "date"}, {"name": "tail"}]),
                json!([{"name": "date", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
            ),
        )
        .await
        .unwrap();

    let app = apiserver::server::router(state).layer(axum::middleware::from_fn(
        |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            req.extensions_mut().insert(apiserver::server::User {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
            });
            next.run(req).await
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, dir)
}

/// A plain HTTP/1.1 GET: the status code and the (de-chunked) body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (code, body)
}

#[tokio::test]
async fn logs_through_the_api_server() {
    let (addr, _dir) = start().await;
    let base = "/api/v1/namespaces/default/pods";
    let (code, body) = get(&addr, &format!("{base}/demo/log")).await;
    assert_eq!((code, body.as_str()), (200, "one\ntwo\nthree\n"));
    let (code, body) = get(
        &addr,
        &format!("{base}/demo/log?tailLines=1&timestamps=true"),
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "2024-05-01T10:00:02.000000000Z three\n")
    );
    let (code, body) = get(&addr, &format!("{base}/demo/log?limitBytes=5")).await;
    assert_eq!((code, body.as_str()), (200, "one\nt"));

    let message = |body: &str| -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        v["message"].as_str().unwrap().to_string()
    };
    let (code, body) = get(&addr, &format!("{base}/demo/log?container=nope")).await;
    assert_eq!(code, 400);
    assert_eq!(message(&body), "container nope is not valid for pod demo");
    let (code, body) = get(&addr, &format!("{base}/date-tail/log")).await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "a container name must be specified for pod date-tail, choose one of: [date tail]"
    );
    let (code, body) = get(&addr, &format!("{base}/date-tail/log?container=date")).await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "container \"date\" in pod \"date-tail\" is waiting to start: ContainerCreating"
    );
    let (code, body) = get(&addr, &format!("{base}/demo/log?previous=true")).await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "previous terminated container \"main\" in pod \"demo\" not found"
    );
    let (code, _) = get(&addr, &format!("{base}/nothere/log")).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn exec_through_the_api_server() {
    let (addr, _dir) = start().await;
    let url = format!(
        "ws://{addr}/api/v1/namespaces/default/pods/demo/exec?command=cat&stdin=true&stdout=true&stderr=true"
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "v5.channel.k8s.io"
    );
    ws.send(Message::Binary(bytes::Bytes::from_static(b"\x00hi")))
        .await
        .unwrap();
    ws.send(Message::Binary(bytes::Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut status = None;
    let close = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) if b[0] == 1 => out.extend_from_slice(&b[1..]),
            Message::Binary(b) if b[0] == 3 => {
                status = Some(serde_json::from_slice::<Value>(&b[1..]).unwrap())
            }
            Message::Close(f) => break f.map(|f| u16::from(f.code)),
            _ => {}
        }
    };
    assert_eq!(out, b"hi");
    assert_eq!(status.unwrap()["status"], "Success");
    assert_eq!(close, Some(1000));

    // Not an upgrade: kubectl's SPDY fallback gets the words it prints.
    let (code, body) = get(
        &addr,
        "/api/v1/namespaces/default/pods/demo/exec?command=ls&stdout=true",
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("Upgrade request required"), "{body}");
}
