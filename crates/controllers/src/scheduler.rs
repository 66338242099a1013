//! The scheduler: watches Pods that name `default-scheduler` and no node, filters the nodes
//! as kube-scheduler's default plugins do (NodeUnschedulable, NodeName, node selector,
//! TaintToleration, and the node's Ready condition), picks the one with the fewest Pods, and
//! POSTs `pods/<name>/binding`. It writes the `Scheduled` event, or `FailedScheduling` and the
//! PodScheduled=False condition with kube-scheduler's message.
//!
//! The filter and the message are pure functions over typed Nodes and Pods, so they are
//! tested without a server. The loop keeps a cache of nodes and Pods from its watches (listed
//! once, then kept by the events, as kube-scheduler's informers are), schedules a Pod as soon
//! as its event arrives, and retries unschedulable Pods every few seconds.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// The scheduler name this scheduler serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How often unschedulable Pods are tried again without a change.
const RETRY: Duration = Duration::from_secs(5);

/// A scheduler error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{context}")]
    Api {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// Why a node does not fit a Pod (kube-scheduler's reason texts).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    /// `node(s) were unschedulable`
    Unschedulable,
    /// `node(s) didn't match Pod's node affinity/selector`
    Selector,
    /// `node(s) had untolerated taint {key: value}`
    Taint(String),
    /// `node(s) didn't match the requested node name`
    NodeName,
}

impl Misfit {
    fn text(&self) -> String {
        match self {
            Misfit::Unschedulable => "node(s) were unschedulable".into(),
            Misfit::Selector => "node(s) didn't match Pod's node affinity/selector".into(),
            Misfit::Taint(t) => format!("node(s) had untolerated taint {t}"),
            Misfit::NodeName => "node(s) didn't match the requested node name".into(),
        }
    }
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok =
            t.key.as_deref().is_none_or(|k| k.is_empty()) || t.key.as_deref() == Some(&taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        // An empty key with Exists tolerates everything.
        effect_ok && key_ok && value_ok
    })
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Whether `pod` may run on `node`, or the first reason it may not.
pub fn filter(pod: &Pod, node: &Node) -> Result<(), Misfit> {
    let spec = pod.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let node_spec = node.spec.clone().unwrap_or_default();
    if node_spec.unschedulable == Some(true) {
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerates(&tolerations, &taint) {
            return Err(Misfit::Unschedulable);
        }
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return Err(Misfit::Selector);
    }
    // A node that is not Ready carries the not-ready taint in a cluster with the node
    // lifecycle controller; we treat it the same way here.
    let mut taints = node_spec.taints.clone().unwrap_or_default();
    if !ready(node) {
        taints.push(Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    for taint in &taints {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerates(&tolerations, taint)
        {
            return Err(Misfit::Taint(format!(
                "{{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

/// The node for `pod`: among those that fit, the one running the fewest Pods (then by name);
/// otherwise kube-scheduler's FailedScheduling message.
pub fn pick(
    pod: &Pod,
    nodes: &[Node],
    pods_per_node: &HashMap<String, usize>,
) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("no nodes available to schedule pods".to_string());
    }
    let mut fits: Vec<&Node> = vec![];
    let mut misfits: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        match filter(pod, n) {
            Ok(()) => fits.push(n),
            Err(m) => *misfits.entry(m.text()).or_default() += 1,
        }
    }
    let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
    if let Some(best) = fits
        .iter()
        .min_by_key(|n| (pods_per_node.get(&name(n)).copied().unwrap_or(0), name(n)))
    {
        return Ok(name(best));
    }
    let total = nodes.len();
    let reasons: Vec<String> = misfits
        .iter()
        .map(|(text, count)| format!("{count} {text}"))
        .collect();
    Err(format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        reasons.join(", ")
    ))
}

fn wants_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && spec
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(SCHEDULER_NAME)
            == SCHEDULER_NAME
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(Vec::is_empty)
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn now_text() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn event(client: &kube::Client, pod: &Pod, type_: &str, reason: &str, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let stamp = now_text();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name,
            "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": SCHEDULER_NAME},
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "reportingComponent": SCHEDULER_NAME, "reportingInstance": format!("{SCHEDULER_NAME}-{host}"),
        "action": if reason == "Scheduled" { "Binding" } else { "Scheduling" },
    });
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    match serde_json::from_value(ev) {
        Ok(e) => {
            if let Err(e) = api.create(&PostParams::default(), &e).await {
                tracing::warn!("cannot write event for pod {name}: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot build event: {e}"),
    }
}

/// What the scheduler knows of the cluster, kept from its watches as kube-scheduler's informer
/// cache is: every node, the Pods that wait, and where each placed Pod runs (only its node, so
/// a cluster of many Pods costs little memory).
#[derive(Default)]
struct Cache {
    nodes: BTreeMap<String, Node>,
    /// The Pods that want a node, by UID.
    pending: HashMap<String, Pod>,
    /// The node of every placed Pod, by UID.
    placed: HashMap<String, String>,
}

impl Cache {
    /// Takes in a Pod as it now is.
    fn pod_changed(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished {
            // A finished Pod holds no place on its node (kube-scheduler's cache drops it too).
            self.pending.remove(&uid);
            self.placed.remove(&uid);
        } else if let Some(node) = node {
            self.pending.remove(&uid);
            self.placed.insert(uid, node);
        } else if wants_scheduling(&pod) {
            self.pending.insert(uid, pod);
        } else {
            self.pending.remove(&uid);
        }
    }

    fn pod_deleted(&mut self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            self.pending.remove(uid);
            self.placed.remove(uid);
        }
    }

    fn node_changed(&mut self, node: Node) {
        if let Some(name) = node.metadata.name.clone() {
            self.nodes.insert(name, node);
        }
    }

    fn node_deleted(&mut self, node: &Node) {
        if let Some(name) = &node.metadata.name {
            self.nodes.remove(name);
        }
    }

    fn pods_per_node(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for node in self.placed.values() {
            *counts.entry(node.clone()).or_default() += 1;
        }
        counts
    }

    /// The waiting Pods, oldest first (kube-scheduler's queue order without priorities).
    fn queue(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self.pending.values().cloned().collect();
        pods.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.clone().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
        pods
    }
}

/// Every object of a kind, read a page at a time, and the resource version to watch from.
async fn list_all<K>(api: &Api<K>) -> Result<(Vec<K>, String), Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.map_err(|source| Error::Api {
            context: format!("list {}", K::plural(&())),
            source,
        })?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok((items, page.metadata.resource_version.unwrap_or_default())),
        }
    }
}

struct Scheduler {
    client: kube::Client,
    cache: Cache,
    /// The last failure message per Pod UID and when it was reported.
    reported: HashMap<String, (String, Instant)>,
}

impl Scheduler {
    /// One pass over the cache: tries every Pod that waits for a node.
    async fn pass(&mut self) {
        self.reported
            .retain(|uid, _| self.cache.pending.contains_key(uid));
        let queue = self.cache.queue();
        if queue.is_empty() {
            return;
        }
        let nodes: Vec<Node> = self.cache.nodes.values().cloned().collect();
        let per_node = self.cache.pods_per_node();
        for pod in queue {
            if let Some(node) = self.schedule(&pod, &nodes, &per_node).await {
                // Counted at once, before the watch brings the bound Pod back.
                let mut bound = pod;
                bound.spec.get_or_insert_default().node_name = Some(node);
                self.cache.pod_changed(bound);
            }
        }
    }

    /// Binds `pod` to the node `pick` chooses and returns it, or reports why none fits.
    async fn schedule(
        &mut self,
        pod: &Pod,
        nodes: &[Node],
        per_node: &HashMap<String, usize>,
    ) -> Option<String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match pick(pod, nodes, per_node) {
            Ok(node) => {
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns, "uid": uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                });
                match api
                    .create_subresource::<serde_json::Value, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(pod = %name, %node, "bound");
                        self.reported.remove(&uid);
                        event(
                            &self.client,
                            pod,
                            "Normal",
                            "Scheduled",
                            &format!("Successfully assigned {ns}/{name} to {node}"),
                        )
                        .await;
                        Some(node)
                    }
                    Err(e) => {
                        tracing::debug!("cannot bind pod {ns}/{name}: {e}");
                        None
                    }
                }
            }
            Err(message) => {
                let fresh = self
                    .reported
                    .get(&uid)
                    .is_none_or(|(m, at)| *m != message || at.elapsed() > Duration::from_secs(60));
                if !fresh {
                    return None;
                }
                self.reported.insert(uid, (message.clone(), Instant::now()));
                event(&self.client, pod, "Warning", "FailedScheduling", &message).await;
                let status = json!({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": message, "lastProbeTime": null, "lastTransitionTime": now_text(),
                }]}});
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
                    .await
                {
                    tracing::debug!("cannot mark pod {ns}/{name} unschedulable: {e}");
                }
                None
            }
        }
    }

    /// Fills the cache afresh from lists; returns the versions to watch Pods and Nodes from.
    async fn relist(
        &mut self,
        pods: &Api<Pod>,
        nodes: &Api<Node>,
    ) -> Result<(String, String), Error> {
        let ((pod_list, pod_rv), (node_list, node_rv)) =
            futures::try_join!(list_all(pods), list_all(nodes))?;
        self.cache = Cache::default();
        for pod in pod_list {
            self.cache.pod_changed(pod);
        }
        for node in node_list {
            self.cache.node_changed(node);
        }
        Ok((pod_rv, node_rv))
    }
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run_scheduler(client: kube::Client, shutdown: CancellationToken) {
    let mut s = Scheduler {
        client: client.clone(),
        cache: Cache::default(),
        reported: HashMap::new(),
    };
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    'outer: loop {
        let watches = match s.relist(&pods, &nodes).await {
            Ok((pod_rv, node_rv)) => {
                let params = WatchParams::default().timeout(290);
                match (
                    pods.watch(&params, &pod_rv).await,
                    nodes.watch(&params, &node_rv).await,
                ) {
                    (Ok(p), Ok(n)) => Some((p.boxed(), n.boxed())),
                    _ => None,
                }
            }
            Err(e) => {
                tracing::warn!("scheduler cannot list: {e}");
                None
            }
        };
        let Some((mut pw, mut nw)) = watches else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        s.pass().await;
        let mut retry = tokio::time::interval(RETRY);
        retry.tick().await;
        loop {
            let run = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = retry.tick() => !s.reported.is_empty(),
                ev = pw.try_next() => match ev {
                    Ok(Some(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                        let waits = wants_scheduling(&p);
                        s.cache.pod_changed(p);
                        waits
                    }
                    Ok(Some(WatchEvent::Deleted(p))) => {
                        s.cache.pod_deleted(&p);
                        false
                    }
                    Ok(Some(WatchEvent::Bookmark(_))) => false,
                    _ => continue 'outer,
                },
                // A node that changed may fit a Pod that waits.
                ev = nw.try_next() => match ev {
                    Ok(Some(WatchEvent::Added(n) | WatchEvent::Modified(n))) => {
                        s.cache.node_changed(n);
                        !s.reported.is_empty()
                    }
                    Ok(Some(WatchEvent::Deleted(n))) => {
                        s.cache.node_deleted(&n);
                        false
                    }
                    Ok(Some(WatchEvent::Bookmark(_))) => false,
                    _ => continue 'outer,
                },
            };
            if run {
                s.pass().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, v: serde_json::Value) -> Node {
        let mut n: Node = serde_json::from_value(v).unwrap();
        n.metadata.name = Some(name.into());
        n
    }

    fn ready_node(name: &str) -> Node {
        node(
            name,
            json!({"metadata": {"labels": {"kubernetes.io/hostname": name, "disk": "ssd"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut s = spec;
        s["containers"] = json!([{"name": "c", "image": "busybox"}]);
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": s}),
        )
        .unwrap()
    }

    #[test]
    fn fits_and_misfits() {
        let n = ready_node("n1");
        assert_eq!(filter(&pod(json!({})), &n), Ok(()));
        assert_eq!(
            filter(&pod(json!({"nodeSelector": {"disk": "ssd"}})), &n),
            Ok(())
        );
        assert_eq!(
            filter(&pod(json!({"nodeSelector": {"disk": "hdd"}})), &n),
            Err(Misfit::Selector)
        );
        let cordoned = node(
            "n1",
            json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            filter(&pod(json!({})), &cordoned),
            Err(Misfit::Unschedulable)
        );
        let tainted = node(
            "n1",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            filter(&pod(json!({})), &tainted),
            Err(Misfit::Taint("{dedicated: gpu}".into()))
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        assert_eq!(filter(&tolerant, &tainted), Ok(()));
        let everything = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(filter(&everything, &tainted), Ok(()));
        let prefer = node(
            "n1",
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(filter(&pod(json!({})), &prefer), Ok(()));
        let not_ready = node("n1", json!({}));
        assert_eq!(
            filter(&pod(json!({})), &not_ready),
            Err(Misfit::Taint("{node.kubernetes.io/not-ready: }".into()))
        );
    }

    #[test]
    fn picks_the_least_loaded_and_explains_failures() {
        let nodes = vec![ready_node("a"), ready_node("b")];
        let load: HashMap<String, usize> = [("a".to_string(), 3), ("b".to_string(), 1)].into();
        assert_eq!(pick(&pod(json!({})), &nodes, &load), Ok("b".into()));
        assert_eq!(
            pick(&pod(json!({})), &nodes, &HashMap::new()),
            Ok("a".into())
        );
        assert_eq!(
            pick(&pod(json!({"nodeSelector": {"disk": "hdd"}})), &nodes[..1], &load),
            Err("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into())
        );
        assert_eq!(
            pick(&pod(json!({})), &[], &load),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn the_cache_follows_pods_from_waiting_to_placed_to_gone() {
        let with_uid = |uid: &str, spec: serde_json::Value| {
            let mut p = pod(spec);
            p.metadata.uid = Some(uid.into());
            p.metadata.name = Some(uid.into());
            p
        };
        let mut cache = Cache::default();
        cache.pod_changed(with_uid("b", json!({})));
        cache.pod_changed(with_uid("a", json!({})));
        cache.pod_changed(with_uid("other", json!({"schedulerName": "other"})));
        let names: Vec<_> = cache
            .queue()
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        cache.pod_changed(with_uid("a", json!({"nodeName": "n1"})));
        cache.pod_changed(with_uid("c", json!({"nodeName": "n1"})));
        assert_eq!(cache.queue().len(), 1);
        assert_eq!(cache.pods_per_node(), [("n1".to_string(), 2)].into());
        cache.pod_deleted(&with_uid("c", json!({})));
        cache.pod_deleted(&with_uid("b", json!({})));
        assert!(cache.queue().is_empty());
        assert_eq!(cache.pods_per_node(), [("n1".to_string(), 1)].into());
        let mut done = with_uid("a", json!({"nodeName": "n1"}));
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        cache.pod_changed(done);
        assert!(cache.pods_per_node().is_empty());
        cache.node_changed(ready_node("n1"));
        cache.node_deleted(&ready_node("n1"));
        assert!(cache.nodes.is_empty());
    }

    #[test]
    fn only_unbound_default_scheduler_pods() {
        assert!(wants_scheduling(&pod(json!({}))));
        assert!(wants_scheduling(&pod(
            json!({"schedulerName": "default-scheduler"})
        )));
        assert!(!wants_scheduling(&pod(json!({"schedulerName": "other"}))));
        assert!(!wants_scheduling(&pod(json!({"nodeName": "n1"}))));
        assert!(!wants_scheduling(&pod(
            json!({"schedulingGates": [{"name": "g"}]})
        )));
    }
}
