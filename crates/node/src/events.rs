//! core/v1 Events, as client-go's recorder writes them for kubelet: one object per distinct
//! (object, reason, message), repeats counted on the same object (`x3 over 1m`).
//!
//! [`Recorder::record`] never blocks: records go through a channel to one task that writes
//! them in order, so a slow API server slows no pod worker.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `Normal`
    Normal,
    /// `Warning`
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event about a Pod (or one of its containers, by field path).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub name: String,
    /// The Pod's UID.
    pub uid: String,
    /// `spec.containers{date}`, or none for the Pod itself.
    pub field_path: Option<String>,
    /// Normal or Warning.
    pub type_: EventType,
    /// `Pulling`, `Started`, ...
    pub reason: String,
    /// kubelet's text.
    pub message: String,
}

/// Sends events for one component (`kubelet` on host `node1`).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

impl Recorder {
    /// A recorder writing through `client` as `component` on `host`, and the task that
    /// writes (it ends when every recorder clone is dropped).
    pub fn new(
        client: kube::Client,
        component: &str,
        host: &str,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(writer(client, component.to_string(), host.to_string(), rx));
        (Recorder { tx }, task)
    }

    /// A recorder whose records go to `tx` (tests read them from the other end).
    pub fn to_channel(tx: mpsc::UnboundedSender<Record>) -> Recorder {
        Recorder { tx }
    }

    /// Records an event about `pod`.
    pub fn record(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let record = Record {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            field_path,
            type_,
            reason: reason.to_string(),
            message: message.into(),
        };
        // The writer only stops when the agent does; a lost event then does not matter.
        let _ = self.tx.send(record);
    }
}

async fn writer(
    client: kube::Client,
    component: String,
    host: String,
    mut rx: mpsc::UnboundedReceiver<Record>,
) {
    // (record) -> (event name, count): what was written, to count repeats.
    let mut seen: HashMap<Record, (String, i32)> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let now = SystemTime::now();
        let api: Api<Event> = Api::namespaced(client.clone(), &r.namespace);
        let stamp = crate::format::rfc3339(now);
        if let Some((name, count)) = seen.get_mut(&r) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": stamp});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(e) => tracing::debug!("cannot update event {name}: {e}"),
            }
        }
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("{}.{nanos:x}", r.name);
        let mut involved = json!({
            "kind": "Pod", "namespace": r.namespace, "name": r.name, "uid": r.uid, "apiVersion": "v1",
        });
        if let Some(fp) = &r.field_path {
            involved["fieldPath"] = json!(fp);
        }
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": r.namespace},
            "involvedObject": involved,
            "reason": r.reason, "message": r.message, "type": r.type_.as_str(),
            "source": {"component": component, "host": host},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": component, "reportingInstance": host,
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot build event: {e}");
                continue;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                seen.insert(r, (name, 1));
            }
            Err(e) => tracing::warn!("cannot write event {name}: {e}"),
        }
        // Keep the repeat table bounded (client-go's LRU holds 4096 entries).
        if seen.len() > 4096 {
            seen.clear();
        }
    }
}
