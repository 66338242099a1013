//! Port-forward: SPDY/3.1 carried inside a WebSocket (`SPDY/3.1+portforward.k8s.io`), as
//! kubectl 1.31+ speaks it through the API server (kubectl-wire.md §10).
//!
//! Every binary message holds a slice of one SPDY byte stream, so frames are reassembled from a
//! buffer. Per forwarded connection the client opens two streams carrying the headers
//! `streamtype` (`error` or `data`), `port` and `requestid`; each gets a SYN_REPLY. The data
//! stream is joined to a TCP connection to the Pod's IP and port; a failure to connect is
//! written on the error stream of the same request. Header blocks are zlib streams (one per
//! direction for the whole session) primed with SPDY/3's dictionary.

use super::{Context, PodRef, ServerError, upgrade_required};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use futures::{SinkExt, StreamExt};
use runtime::labels;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The subprotocol kubectl offers.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// SPDY/3's zlib dictionary for header blocks.
const DICTIONARY: &[u8] = include_bytes!("spdy_dict.bin");

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const FLAG_FIN: u8 = 0x01;
/// The largest frame accepted (SPDY's length field is 24 bits; real frames are far smaller).
const MAX_FRAME: usize = 1 << 24;

/// What can go wrong in a SPDY session; each ends it.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A header block did not inflate.
    #[error("cannot inflate a SPDY header block")]
    Inflate(#[source] flate2::DecompressError),
    /// A header block did not deflate.
    #[error("cannot deflate a SPDY header block")]
    Deflate(#[source] flate2::CompressError),
    /// A frame is malformed.
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
}

/// Answers a port-forward request: finds the Pod's IP, upgrades, and runs the SPDY session.
pub async fn serve_portforward(
    ctx: Arc<Context>,
    pod: PodRef,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return upgrade_required();
    };
    let ws = ws.protocols([PROTOCOL]);
    if ws.selected_protocol().is_none() {
        return ServerError::BadRequest(format!(
            "port-forward needs the {PROTOCOL} WebSocket subprotocol"
        ))
        .into_response();
    }
    let ip = match pod_ip(&ctx, &pod).await {
        Ok(ip) => ip,
        Err(e) => return e.into_response(),
    };
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = session(socket, ip, pod).await {
            tracing::debug!("port-forward session ended: {e}");
        }
    })
    .into_response()
}

/// The IP of the Pod's ready sandbox (loopback for host-network Pods, which have none).
async fn pod_ip(ctx: &Context, pod: &PodRef) -> Result<IpAddr, ServerError> {
    let sandboxes = ctx
        .runtime
        .list_sandboxes()
        .await
        .map_err(|source| ServerError::Runtime {
            context: "cannot list sandboxes".into(),
            source,
        })?;
    let found = sandboxes
        .into_iter()
        .filter(|s| s.ready && pod.matches(&s.labels))
        .max_by_key(|s| s.created_at)
        .ok_or_else(|| {
            ServerError::NotFound(format!(
                "pod {:?} in namespace {:?} has no running sandbox",
                pod.name, pod.namespace
            ))
        })?;
    let _ = found.labels.get(labels::POD_UID);
    Ok(found.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

/// The two zlib streams of a session.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Headers {
    fn new() -> Result<Self, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(SpdyError::Deflate)?;
        Ok(Headers {
            inflate: Decompress::new(true),
            deflate,
        })
    }

    /// Inflates one header block and parses its name/value pairs.
    fn decode(&mut self, block: &[u8]) -> Result<HashMap<String, String>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before = self.inflate.total_in();
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity());
            }
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            match result {
                Ok(Status::BufError) if input.is_empty() => break,
                Ok(_) if input.is_empty() && out.capacity() > out.len() => break,
                Ok(_) => {}
                // The stream names a preset dictionary: SPDY's, set once per session.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(SpdyError::Inflate)?;
                }
                Err(e) => return Err(SpdyError::Inflate(e)),
            }
        }
        parse_header_block(&out)
    }

    /// Deflates a header block with `pairs`, ending in a sync flush as SPDY requires.
    fn encode(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
        for (k, v) in pairs {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(SpdyError::Deflate)?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // Output space left over means the flush is complete.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

/// Parses an inflated header block: a count, then length-prefixed names and values.
fn parse_header_block(raw: &[u8]) -> Result<HashMap<String, String>, SpdyError> {
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Result<usize, SpdyError> {
        let b = raw
            .get(*at..*at + 4)
            .ok_or(SpdyError::Malformed("short header block"))?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(&mut at)?;
    let mut out = HashMap::new();
    for _ in 0..count {
        let text = |at: &mut usize| -> Result<String, SpdyError> {
            let n = u32_at(at)?;
            let b = raw
                .get(*at..*at + n)
                .ok_or(SpdyError::Malformed("short header block"))?;
            *at += n;
            Ok(String::from_utf8_lossy(b).into_owned())
        };
        let k = text(&mut at)?;
        let v = text(&mut at)?;
        out.insert(k.to_ascii_lowercase(), v);
    }
    Ok(out)
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 0x03]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn data_frame(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One SPDY frame, parsed from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Control {
        kind: u16,
        flags: u8,
        body: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        body: Vec<u8>,
    },
}

/// Takes one whole frame off the front of `buf`, if it holds one.
fn next_frame(buf: &mut Vec<u8>) -> Result<Option<Frame>, SpdyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_FRAME {
        return Err(SpdyError::Malformed("frame too long"));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let flags = buf[4];
    let body = buf[8..8 + len].to_vec();
    let head = [buf[0], buf[1], buf[2], buf[3]];
    buf.drain(..8 + len);
    Ok(Some(if head[0] & 0x80 != 0 {
        Frame::Control {
            kind: u16::from_be_bytes([head[2], head[3]]),
            flags,
            body,
        }
    } else {
        Frame::Data {
            stream: u32::from_be_bytes(head) & 0x7fff_ffff,
            flags,
            body,
        }
    }))
}

fn stream_id(body: &[u8]) -> Result<u32, SpdyError> {
    let b = body
        .get(..4)
        .ok_or(SpdyError::Malformed("short control frame"))?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
}

/// Runs one session until the client closes it.
async fn session(socket: WebSocket, ip: IpAddr, pod: PodRef) -> Result<(), SpdyError> {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink
                .send(Message::Binary(Bytes::from(frame)))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut headers = Headers::new()?;
    let mut buf = Vec::new();
    // Data streams: where the client's bytes for the Pod go (`None` is the client's FIN).
    let mut to_pod: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    // Error streams by request id, for reporting a failed connection.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    let result = async {
        while let Some(Ok(msg)) = incoming.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            buf.extend_from_slice(&bytes);
            while let Some(frame) = next_frame(&mut buf)? {
                match frame {
                    Frame::Control {
                        kind: SYN_STREAM,
                        body,
                        ..
                    } => {
                        let id = stream_id(&body)?;
                        let block = body
                            .get(10..)
                            .ok_or(SpdyError::Malformed("short SYN_STREAM"))?;
                        let h = headers.decode(block)?;
                        let mut reply = id.to_be_bytes().to_vec();
                        reply.extend_from_slice(&headers.encode(&[])?);
                        let _ = out_tx.send(control_frame(SYN_REPLY, 0, &reply)).await;
                        let request = h.get("requestid").cloned().unwrap_or_default();
                        match h.get("streamtype").map(String::as_str) {
                            Some("error") => {
                                error_streams.insert(request, id);
                            }
                            Some("data") => {
                                let port = h.get("port").and_then(|p| p.parse::<u16>().ok());
                                let (tx, rx) = mpsc::channel(64);
                                to_pod.insert(id, tx);
                                let error_stream = error_streams.get(&request).copied();
                                tokio::spawn(forward(
                                    id,
                                    error_stream,
                                    ip,
                                    port,
                                    pod.clone(),
                                    rx,
                                    out_tx.clone(),
                                ));
                            }
                            _ => {}
                        }
                    }
                    Frame::Control {
                        kind: RST_STREAM,
                        body,
                        ..
                    } => {
                        // Dropping the sender ends the stream's connection to the Pod.
                        to_pod.remove(&stream_id(&body)?);
                    }
                    Frame::Control {
                        kind: PING, body, ..
                    } => {
                        let _ = out_tx.send(control_frame(PING, 0, &body)).await;
                    }
                    // SETTINGS, WINDOW_UPDATE, GOAWAY, HEADERS: nothing to do.
                    Frame::Control { .. } => {}
                    Frame::Data {
                        stream,
                        flags,
                        body,
                    } => {
                        if let Some(tx) = to_pod.get(&stream) {
                            if !body.is_empty() {
                                let _ = tx.send(Some(Bytes::from(body))).await;
                            }
                            if flags & FLAG_FIN != 0 {
                                let _ = tx.send(None).await;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    drop(to_pod);
    drop(out_tx);
    let _ = writer.await;
    result
}

/// Joins one data stream to a TCP connection to the Pod.
async fn forward(
    id: u32,
    error_stream: Option<u32>,
    ip: IpAddr,
    port: Option<u16>,
    pod: PodRef,
    mut from_client: mpsc::Receiver<Option<Bytes>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let report = |message: String| {
        let out = out.clone();
        async move {
            if let Some(e) = error_stream {
                let _ = out.send(data_frame(e, FLAG_FIN, message.as_bytes())).await;
            }
            let _ = out.send(data_frame(id, FLAG_FIN, &[])).await;
        }
    };
    let Some(port) = port else {
        report("portforward stream has no valid port".into()).await;
        return;
    };
    let tcp = match TcpStream::connect((ip, port)).await {
        Ok(t) => t,
        Err(e) => {
            report(format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                pod.name,
                pod.uid.as_deref().unwrap_or_default()
            ))
            .await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut read, mut write) = tcp.into_split();
    let up = async move {
        while let Some(Some(chunk)) = from_client.recv().await {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(data_frame(id, 0, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = out.send(data_frame(id, FLAG_FIN, &[])).await;
    };
    tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::stream::tests::FakeStreams;
    use std::sync::Mutex;
    use tokio_tungstenite::tungstenite::Message as TMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    /// The client side of the header compression, as Go's spdystream does it.
    fn client_headers(c: &mut Compress, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut h = Headers {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
        };
        std::mem::swap(&mut h.deflate, c);
        let out = h.encode(pairs).unwrap();
        std::mem::swap(&mut h.deflate, c);
        out
    }

    fn syn_stream(c: &mut Compress, id: u32, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&client_headers(c, pairs));
        control_frame(SYN_STREAM, 0, &body)
    }

    #[test]
    fn header_blocks_round_trip_across_a_session() {
        let mut server = Headers::new().unwrap();
        let mut client = Compress::new(Compression::default(), true);
        client.set_dictionary(DICTIONARY).unwrap();
        for port in ["80", "8080"] {
            let block = client_headers(
                &mut client,
                &[("streamtype", "data"), ("port", port), ("requestid", "0")],
            );
            let h = server.decode(&block).unwrap();
            assert_eq!(h["port"], port);
            assert_eq!(h["streamtype"], "data");
        }
        // Our own replies inflate on the other side.
        let mut other = Headers::new().unwrap();
        let reply = server.encode(&[]).unwrap();
        assert!(other.decode(&reply).unwrap().is_empty());
    }

    #[test]
    fn frames_split_and_coalesced() {
        let mut wire = control_frame(PING, 0, &1u32.to_be_bytes());
        wire.extend(data_frame(3, FLAG_FIN, b"hi"));
        let mut buf = wire[..5].to_vec();
        assert_eq!(next_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[5..]);
        assert_eq!(
            next_frame(&mut buf).unwrap(),
            Some(Frame::Control {
                kind: PING,
                flags: 0,
                body: 1u32.to_be_bytes().to_vec()
            })
        );
        assert_eq!(
            next_frame(&mut buf).unwrap(),
            Some(Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                body: b"hi".to_vec()
            })
        );
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn forwards_to_the_pod_and_reports_refusals() {
        // The "Pod": an echo server on loopback (the fake's sandbox has no IP).
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = echo.local_addr().unwrap().port().to_string();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
        });
        let ctx = Arc::new(Context {
            runtime: Arc::new(FakeStreams {
                resizes: Arc::new(Mutex::new(Vec::new())),
                log_path: "/nonexistent".into(),
            }),
            token: "secret".into(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::server::serve(listener, ctx));
        let mut req = format!("ws://{addr}/portForward/default/demo")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Authorization", "Bearer secret".parse().unwrap());
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", PROTOCOL.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(DICTIONARY).unwrap();
        let mut first = syn_stream(
            &mut c,
            1,
            &[("streamtype", "error"), ("port", &port), ("requestid", "0")],
        );
        first.extend(syn_stream(
            &mut c,
            3,
            &[("streamtype", "data"), ("port", &port), ("requestid", "0")],
        ));
        // Split across messages, as the wire may.
        let (a, b) = first.split_at(7);
        ws.send(TMessage::Binary(Bytes::copy_from_slice(a)))
            .await
            .unwrap();
        ws.send(TMessage::Binary(Bytes::copy_from_slice(b)))
            .await
            .unwrap();
        ws.send(TMessage::Binary(Bytes::from(data_frame(3, 0, b"ping me"))))
            .await
            .unwrap();
        ws.send(TMessage::Binary(Bytes::from(control_frame(
            PING,
            0,
            &7u32.to_be_bytes(),
        ))))
        .await
        .unwrap();
        // Refused: a port nothing listens on, as request 1.
        ws.send(TMessage::Binary(Bytes::from(syn_stream(
            &mut c,
            5,
            &[("streamtype", "error"), ("port", "1"), ("requestid", "1")],
        ))))
        .await
        .unwrap();
        ws.send(TMessage::Binary(Bytes::from(syn_stream(
            &mut c,
            7,
            &[("streamtype", "data"), ("port", "1"), ("requestid", "1")],
        ))))
        .await
        .unwrap();
        let mut client = Headers::new().unwrap();
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let mut echoed = Vec::new();
        let mut fin3 = false;
        let mut error5 = String::new();
        let mut pinged = false;
        while !(fin3 && pinged && !error5.is_empty() && replies.len() == 4) {
            let Some(Ok(TMessage::Binary(b))) = ws.next().await else {
                panic!("session ended early");
            };
            buf.extend_from_slice(&b);
            while let Some(f) = next_frame(&mut buf).unwrap() {
                match f {
                    Frame::Control {
                        kind: SYN_REPLY,
                        body,
                        ..
                    } => {
                        assert!(client.decode(&body[4..]).unwrap().is_empty());
                        replies.push(stream_id(&body).unwrap());
                    }
                    Frame::Control {
                        kind: PING, body, ..
                    } => {
                        assert_eq!(body, 7u32.to_be_bytes());
                        pinged = true;
                    }
                    Frame::Data {
                        stream: 3,
                        flags,
                        body,
                    } => {
                        echoed.extend(body);
                        fin3 |= flags & FLAG_FIN != 0;
                    }
                    Frame::Data {
                        stream: 5, body, ..
                    } => {
                        error5.push_str(&String::from_utf8_lossy(&body));
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(echoed, b"ping me");
        replies.sort();
        assert_eq!(replies, vec![1, 3, 5, 7]);
        assert!(
            error5.starts_with("error forwarding port 1 to pod demo"),
            "{error5}"
        );
    }
}
