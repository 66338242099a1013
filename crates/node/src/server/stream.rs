//! exec and attach over WebSocket, in the channel protocol of `v5.channel.k8s.io` and
//! `v4.channel.k8s.io` (apimachinery's `wsstream`, kubectl-wire.md §9).
//!
//! Every message is binary; its first byte is the channel: 0 stdin, 1 stdout, 2 stderr (from
//! the process), 3 the final `Status` JSON, 4 terminal resizes (`{"Width":..,"Height":..}`), and,
//! in v5 only, 255 with a channel number: the client closed that stream (`[255, 0]` closes the
//! process's stdin, which `kubectl cp` into a Pod needs). The end is always, in this order: all
//! output, the Status on channel 3, a Close frame with code 1000. kubectl reads a missing Status
//! as success and a missing Close frame as an error.

use super::{Context, PodRef, ServerError, find_container, query_pairs, upgrade_required};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use runtime::{ContainerState, StreamRequest, StreamSession};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// The subprotocols served, most preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Channel numbers.
pub mod channel {
    /// Client to process.
    pub const STDIN: u8 = 0;
    /// Process to client.
    pub const STDOUT: u8 = 1;
    /// Process to client.
    pub const STDERR: u8 = 2;
    /// The final Status.
    pub const ERROR: u8 = 3;
    /// Terminal size changes.
    pub const RESIZE: u8 = 4;
    /// v5: the client closed the stream named by the next byte.
    pub const CLOSE: u8 = 255;
}

/// Which of the two the request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A new process in the container.
    Exec,
    /// The container's main process.
    Attach,
}

/// How long output may stay silent after the process exited before it is cut: a background
/// child that inherited stdout would otherwise hold the session open forever.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Answers an exec or attach request: checks it, upgrades, and runs the session.
pub async fn serve_stream(
    ctx: Arc<Context>,
    pod: PodRef,
    container: String,
    query: Option<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    kind: Kind,
) -> Response {
    let Ok(ws) = ws else {
        return upgrade_required();
    };
    let pairs = match query_pairs(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let flag = |k: &str| {
        pairs
            .iter()
            .any(|(key, v)| key == k && matches!(v.as_str(), "true" | "1"))
    };
    let request = StreamRequest {
        command: pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr") && !flag("tty"),
        tty: flag("tty"),
    };
    if kind == Kind::Exec && request.command.is_empty() {
        return ServerError::BadRequest("you must specify at least 1 command".into())
            .into_response();
    }
    if !(request.stdin || request.stdout || request.stderr) {
        return ServerError::BadRequest(
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        )
        .into_response();
    }
    let ws = ws.protocols(PROTOCOLS);
    let v5 = ws
        .selected_protocol()
        .is_some_and(|p| p.as_bytes() == PROTOCOLS[0].as_bytes());
    ws.on_upgrade(move |socket| async move {
        let started = start(&ctx, &pod, &container, &request, kind).await;
        run(socket, started, kind, &request, v5).await;
    })
    .into_response()
}

/// Starts the exec or attach; an error becomes the session's Failure status.
async fn start(
    ctx: &Context,
    pod: &PodRef,
    container: &str,
    request: &StreamRequest,
    kind: Kind,
) -> Result<StreamSession, Value> {
    let found = find_container(ctx.runtime.as_ref(), pod, container, false)
        .await
        .map_err(|e| failure("NotFound", 404, &e.to_string()))?;
    if found.state != ContainerState::Running {
        return Err(failure(
            "BadRequest",
            400,
            &format!(
                "container {container:?} in pod {:?} is not running",
                pod.name
            ),
        ));
    }
    let result = match kind {
        Kind::Exec => ctx.runtime.exec(&found.id, request).await,
        Kind::Attach => ctx.runtime.attach(&found.id, request).await,
    };
    result.map_err(|e| {
        let what = match kind {
            Kind::Exec => "error executing command in container",
            Kind::Attach => "error attaching to container",
        };
        failure(
            "InternalError",
            500,
            &format!("Internal error occurred: {what}: {e}"),
        )
    })
}

/// A Failure status as kubelet's streaming server writes it on channel 3.
pub fn failure(reason: &str, code: u16, message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

/// The status for a finished exec: Success, or NonZeroExitCode with the code as the cause
/// kubectl reads its own exit status from.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// Runs one session to its end on an upgraded socket.
async fn run(
    socket: WebSocket,
    started: Result<StreamSession, Value>,
    kind: Kind,
    request: &StreamRequest,
    v5: bool,
) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    // One writer, so output, status and the close frame leave in the order they were queued.
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.flush().await;
    });
    let status = match started {
        Err(status) => status,
        Ok(session) => {
            let StreamSession {
                stdin,
                stdout,
                stderr,
                resize,
                exit,
            } = session;
            let (exited_tx, exited_rx) = watch::channel(false);
            let mut pumps = Vec::new();
            for (ch, out) in [(channel::STDOUT, stdout), (channel::STDERR, stderr)] {
                if let Some(out) = out {
                    pumps.push(tokio::spawn(pump(out, ch, tx.clone(), exited_rx.clone())));
                }
            }
            // The reader: client messages, until the client goes away. It also keeps the socket
            // read, which is what answers the client's pings.
            let reader = async {
                let mut stdin = stdin;
                while let Some(Ok(msg)) = incoming.next().await {
                    let data = match msg {
                        Message::Binary(b) => b,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    let Some((&ch, payload)) = data.split_first() else {
                        continue;
                    };
                    match ch {
                        channel::STDIN => {
                            if let Some(w) = stdin.as_mut() {
                                // A process that stopped reading is not the client's error.
                                if w.write_all(payload).await.is_err() || w.flush().await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        channel::RESIZE => {
                            if let (Some(r), Ok(size)) =
                                (resize.as_ref(), serde_json::from_slice::<Value>(payload))
                            {
                                let dim = |k| {
                                    size[k]
                                        .as_u64()
                                        .and_then(|v| u16::try_from(v).ok())
                                        .unwrap_or(0)
                                };
                                let _ = r.try_send((dim("Width"), dim("Height")));
                            }
                        }
                        channel::CLOSE if v5 && payload.first() == Some(&channel::STDIN) => {
                            if let Some(mut w) = stdin.take() {
                                let _ = w.shutdown().await;
                            }
                        }
                        _ => {}
                    }
                }
            };
            let finish = async {
                let code = exit.await;
                let _ = exited_tx.send(true);
                for p in pumps {
                    let _ = p.await;
                }
                code
            };
            tokio::pin!(reader);
            tokio::select! {
                code = finish => match (kind, code) {
                    (Kind::Exec, Ok(code)) => exit_status(&request.command, code),
                    (Kind::Attach, Ok(_)) => json!({"metadata": {}, "status": "Success"}),
                    (_, Err(e)) => failure("InternalError", 500, &format!("Internal error occurred: {e}")),
                },
                // The client left: nothing to report to, and dropping the session lets go of
                // the process's streams.
                () = &mut reader => {
                    drop(tx);
                    writer.abort();
                    return;
                }
            }
        }
    };
    let status = serde_json::to_vec(&status).unwrap_or_default();
    let mut msg = Vec::with_capacity(status.len() + 1);
    msg.push(channel::ERROR);
    msg.extend_from_slice(&status);
    let _ = tx.send(Message::Binary(Bytes::from(msg))).await;
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    drop(tx);
    let _ = writer.await;
    // Give the client a moment to answer the close before the connection drops.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
}

/// Copies one output stream to its channel until EOF, or until it has been idle for
/// [`DRAIN_IDLE`] after the process exited.
async fn pump(
    mut out: Box<dyn AsyncRead + Send + Unpin>,
    ch: u8,
    tx: mpsc::Sender<Message>,
    exited: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = if *exited.borrow() {
            match tokio::time::timeout(DRAIN_IDLE, out.read(&mut buf[1..])).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            let mut exited = exited.clone();
            tokio::select! {
                r = out.read(&mut buf[1..]) => r,
                _ = exited.wait_for(|e| *e) => continue,
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf[0] = ch;
        if tx
            .send(Message::Binary(Bytes::copy_from_slice(&buf[..=n])))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::server::{Context, router};
    use async_trait::async_trait;
    use runtime::{
        ContainerConfig, ContainerRuntime, ContainerStatus, SandboxConfig, SandboxStatus,
    };
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::SystemTime;
    use tokio_tungstenite::tungstenite::Message as TMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    /// A runtime with one running container whose exec echoes stdin to stdout (until stdin is
    /// closed), writes the command to stderr and exits with the code named by the command.
    pub struct FakeStreams {
        pub resizes: Arc<Mutex<Vec<(u16, u16)>>>,
        pub log_path: std::path::PathBuf,
    }

    #[async_trait]
    impl ContainerRuntime for FakeStreams {
        async fn run_sandbox(&self, _: &SandboxConfig) -> runtime::Result<String> {
            unimplemented!()
        }
        async fn stop_sandbox(&self, _: &str) -> runtime::Result<()> {
            Ok(())
        }
        async fn remove_sandbox(&self, _: &str) -> runtime::Result<()> {
            Ok(())
        }
        async fn list_sandboxes(&self) -> runtime::Result<Vec<SandboxStatus>> {
            let labels = self.list_containers().await?.remove(0).labels;
            let pod_uid = labels
                .get(runtime::labels::POD_UID)
                .cloned()
                .unwrap_or_default();
            Ok(vec![SandboxStatus {
                id: "s1".into(),
                pod_uid,
                ready: true,
                ip: None,
                created_at: SystemTime::now(),
                labels,
            }])
        }
        async fn create_container(
            &self,
            _: &str,
            _: &ContainerConfig,
            _: &SandboxConfig,
        ) -> runtime::Result<String> {
            unimplemented!()
        }
        async fn start_container(&self, _: &str) -> runtime::Result<()> {
            Ok(())
        }
        async fn stop_container(&self, _: &str, _: Duration) -> runtime::Result<()> {
            Ok(())
        }
        async fn remove_container(&self, _: &str) -> runtime::Result<()> {
            Ok(())
        }
        async fn container_status(&self, _: &str) -> runtime::Result<ContainerStatus> {
            Ok(self.list_containers().await?.remove(0))
        }
        async fn list_containers(&self) -> runtime::Result<Vec<ContainerStatus>> {
            let labels: BTreeMap<String, String> = [
                (runtime::labels::POD_NAMESPACE, "default"),
                (runtime::labels::POD_NAME, "demo"),
                (runtime::labels::POD_UID, "u1"),
                (runtime::labels::CONTAINER_NAME, "main"),
                (runtime::labels::CONTAINER_ATTEMPT, "0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            Ok(vec![ContainerStatus {
                id: "c1".into(),
                sandbox_id: "s1".into(),
                state: ContainerState::Running,
                image: "busybox".into(),
                image_id: "busybox@sha256:0".into(),
                created_at: SystemTime::now(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                reason: None,
                message: None,
                log_path: self.log_path.clone(),
                labels,
            }])
        }
        async fn exec(&self, _: &str, req: &StreamRequest) -> runtime::Result<StreamSession> {
            if req.command[0] == "nope" {
                return Err(runtime::Error::StartContainer {
                    message: "exec: \"nope\": executable file not found in $PATH".into(),
                });
            }
            let code: i32 = req.command.last().and_then(|c| c.parse().ok()).unwrap_or(0);
            let (stdin_w, mut stdin_r) = tokio::io::duplex(1024);
            let (mut out_w, out_r) = tokio::io::duplex(1024);
            let (mut err_w, err_r) = tokio::io::duplex(1024);
            let (resize_tx, mut resize_rx) = mpsc::channel(4);
            let resizes = self.resizes.clone();
            tokio::spawn(async move {
                while let Some(r) = resize_rx.recv().await {
                    resizes.lock().unwrap().push(r);
                }
            });
            let cmd = req.command.join(" ");
            let with_stdin = req.stdin;
            let exit = async move {
                let _ = err_w.write_all(cmd.as_bytes()).await;
                drop(err_w);
                if with_stdin {
                    // Echo until stdin is closed: only then does the "process" end.
                    tokio::io::copy(&mut stdin_r, &mut out_w).await.unwrap();
                } else {
                    out_w.write_all(b"hello\n").await.unwrap();
                }
                drop(out_w);
                Ok(code)
            };
            Ok(StreamSession {
                stdin: Some(Box::new(stdin_w)),
                stdout: Some(Box::new(out_r)),
                stderr: if req.stderr {
                    Some(Box::new(err_r))
                } else {
                    None
                },
                resize: Some(resize_tx),
                exit: Box::pin(exit),
            })
        }
        async fn attach(&self, id: &str, req: &StreamRequest) -> runtime::Result<StreamSession> {
            let mut req = req.clone();
            req.command = vec!["attach".into()];
            self.exec(id, &req).await
        }
    }

    async fn start_server() -> (String, Arc<Mutex<Vec<(u16, u16)>>>) {
        let resizes = Arc::new(Mutex::new(Vec::new()));
        let ctx = Arc::new(Context {
            runtime: Arc::new(FakeStreams {
                resizes: resizes.clone(),
                log_path: "/nonexistent".into(),
            }),
            token: "secret".into(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::server::serve(listener, ctx));
        (format!("127.0.0.1:{}", addr.port()), resizes)
    }

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn connect(addr: &str, path: &str, protocol: &str) -> Ws {
        let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", "Bearer secret".parse().unwrap());
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(
            resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
            protocol
        );
        ws
    }

    /// Everything up to the close: (channel, payload) messages and the close code.
    async fn drain(ws: &mut Ws) -> (Vec<(u8, Vec<u8>)>, Option<u16>) {
        let mut got = Vec::new();
        while let Some(m) = ws.next().await {
            match m.unwrap() {
                TMessage::Binary(b) => got.push((b[0], b[1..].to_vec())),
                TMessage::Close(f) => return (got, f.map(|f| u16::from(f.code))),
                TMessage::Text(_) => panic!("text message"),
                _ => {}
            }
        }
        (got, None)
    }

    fn joined(got: &[(u8, Vec<u8>)], ch: u8) -> String {
        String::from_utf8(
            got.iter()
                .filter(|(c, _)| *c == ch)
                .flat_map(|(_, d)| d.clone())
                .collect(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn exit_code_then_status_then_close() {
        let (addr, _) = start_server().await;
        let mut ws = connect(
            &addr,
            "/exec/default/demo/main?command=sh&command=-c&command=3&stdout=true&stderr=true",
            "v5.channel.k8s.io",
        )
        .await;
        let (got, close) = drain(&mut ws).await;
        assert_eq!(close, Some(1000));
        assert_eq!(joined(&got, 1), "hello\n");
        assert_eq!(joined(&got, 2), "sh -c 3");
        // The status is the last message, after all output.
        let (ch, status) = got.last().unwrap();
        assert_eq!(*ch, 3);
        let status: Value = serde_json::from_slice(status).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn success_and_exec_failure() {
        let (addr, _) = start_server().await;
        let mut ws = connect(
            &addr,
            "/exec/default/demo/u1/main?command=true&stdout=true",
            "v4.channel.k8s.io",
        )
        .await;
        let (got, close) = drain(&mut ws).await;
        assert_eq!(close, Some(1000));
        let status: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
        assert_eq!(status, json!({"metadata": {}, "status": "Success"}));

        let mut ws = connect(
            &addr,
            "/exec/default/demo/main?command=nope&stdout=true",
            "v5.channel.k8s.io",
        )
        .await;
        let (got, close) = drain(&mut ws).await;
        assert_eq!(close, Some(1000));
        let status: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
        assert_eq!(status["status"], "Failure");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("executable file not found")
        );

        let mut ws = connect(
            &addr,
            "/exec/default/other/main?command=ls&stdout=true",
            "v5.channel.k8s.io",
        )
        .await;
        let (got, _) = drain(&mut ws).await;
        let status: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
        assert_eq!(status["reason"], "NotFound");
    }

    #[tokio::test]
    async fn stdin_close_signal_ends_the_process() {
        let (addr, resizes) = start_server().await;
        let mut ws = connect(
            &addr,
            "/exec/default/demo/main?command=cat&stdin=true&stdout=true&tty=true",
            "v5.channel.k8s.io",
        )
        .await;
        ws.send(TMessage::Binary(Bytes::from_static(
            b"\x04{\"Width\":80,\"Height\":24}",
        )))
        .await
        .unwrap();
        ws.send(TMessage::Binary(Bytes::from_static(b"\x00abc")))
            .await
            .unwrap();
        ws.send(TMessage::Binary(Bytes::from_static(b"\x00def")))
            .await
            .unwrap();
        ws.send(TMessage::Binary(Bytes::from_static(&[255, 0])))
            .await
            .unwrap();
        let (got, close) = drain(&mut ws).await;
        assert_eq!(close, Some(1000));
        assert_eq!(joined(&got, 1), "abcdef");
        // tty: no stderr channel.
        assert!(got.iter().all(|(c, _)| *c != 2));
        let status: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
        assert_eq!(status["status"], "Success");
        assert_eq!(*resizes.lock().unwrap(), vec![(80, 24)]);
    }

    #[tokio::test]
    async fn attach_reports_success() {
        let (addr, _) = start_server().await;
        let mut ws = connect(
            &addr,
            "/attach/default/demo/main?stdout=true",
            "v5.channel.k8s.io",
        )
        .await;
        let (got, close) = drain(&mut ws).await;
        assert_eq!(close, Some(1000));
        assert_eq!(joined(&got, 1), "hello\n");
        let status: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
        assert_eq!(status["status"], "Success");
    }

    #[tokio::test]
    async fn refuses_without_token_or_upgrade() {
        let (addr, _) = start_server().await;
        let req = format!("ws://{addr}/exec/default/demo/main?command=ls&stdout=true")
            .into_client_request()
            .unwrap();
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
            other => panic!("{other}"),
        }
        let _ = router;
    }
}
