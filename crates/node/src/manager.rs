//! The populator and the relist: a watch of the Pods bound to this node feeds one worker per
//! UID (the desired state), and a relist of the runtime every second pokes the workers whose
//! containers changed (kubelet's PLEG), so exits are noticed without a runtime event stream.
//!
//! NOTE(assumptions): on start, everything the runtime holds carries the Pod UID label we
//! put there. After the first full list of Pods (`populated once`), sandboxes and
//! containers of UIDs no Pod has any more are torn down; before it nothing is removed, so an
//! agent that restarts adopts running Pods instead of killing them.

use crate::plan::ActualPod;
use crate::worker::{self, Desired, Shared, WorkerHandle};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use runtime::labels;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the runtime is relisted.
const RELIST: Duration = Duration::from_secs(1);

struct Manager {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    workers: HashMap<String, WorkerHandle>,
    /// UIDs whose worker finished: never started again.
    finished: HashSet<String>,
    /// The last relist: container ids and states by UID.
    last_relist: HashMap<String, Vec<(String, String)>>,
    populated: bool,
}

/// Runs the pod workers until `shutdown`.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut m = Manager {
        shared,
        shutdown,
        workers: HashMap::new(),
        finished: HashSet::new(),
        last_relist: HashMap::new(),
        populated: false,
    };
    m.run().await;
}

/// Whether two updates differ only in status and bookkeeping (resourceVersion,
/// managedFields).
fn same_but_status(a: &Desired, b: &Desired) -> bool {
    let (Desired::Live(a), Desired::Live(b)) = (a, b) else {
        return false;
    };
    let strip = |p: &Pod| {
        let mut m = p.metadata.clone();
        m.resource_version = None;
        m.managed_fields = None;
        m
    };
    a.spec == b.spec && strip(a) == strip(b)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl Manager {
    async fn run(&mut self) {
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let selector = format!("spec.nodeName={}", self.shared.node_name);
        let mut retry = Duration::from_millis(100);
        let mut relist = tokio::time::interval(RELIST);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'outer: loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let list = match api.list(&ListParams::default().fields(&selector)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("cannot list pods: {e}");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            retry = Duration::from_millis(100);
            let seen: HashSet<String> = list.items.iter().map(uid).collect();
            for pod in list.items {
                self.dispatch(Desired::Live(Arc::new(pod)));
            }
            // Pods deleted while we were not watching.
            let gone: Vec<String> = self
                .workers
                .keys()
                .filter(|u| !seen.contains(*u))
                .cloned()
                .collect();
            for u in gone {
                if let Some(h) = self.workers.get(&u) {
                    let last = match &*h.tx.borrow() {
                        Desired::Live(p) | Desired::Gone(p) => p.clone(),
                    };
                    h.tx.send_replace(Desired::Gone(last));
                }
            }
            if !self.populated {
                self.populated = true;
                self.clean_orphans(&seen).await;
            }
            let mut rv = list.metadata.resource_version.unwrap_or_default();
            let params = WatchParams::default().fields(&selector).timeout(290);
            let stream = match api.watch(&params, &rv).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot watch pods: {e}");
                    continue;
                }
            };
            let mut stream = stream.boxed();
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break 'outer,
                    _ = relist.tick() => self.relist().await,
                    ev = stream.try_next() => match ev {
                        Ok(Some(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                            rv = p.metadata.resource_version.clone().unwrap_or(rv);
                            self.dispatch(Desired::Live(Arc::new(p)));
                        }
                        Ok(Some(WatchEvent::Deleted(p))) => self.dispatch(Desired::Gone(Arc::new(p))),
                        Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                        Ok(Some(WatchEvent::Error(e))) => {
                            tracing::debug!("pod watch ended: {}", e.message);
                            continue 'outer;
                        }
                        // The server closed the watch (timeout): list again.
                        Ok(None) => continue 'outer,
                        Err(e) => {
                            tracing::debug!("pod watch failed: {e}");
                            continue 'outer;
                        }
                    }
                }
            }
        }
        // Workers stop on the same token; containers stay running for the next agent.
        for (_, h) in self.workers.drain() {
            let _ = h.task.await;
        }
    }

    fn dispatch(&mut self, desired: Desired) {
        let pod = match &desired {
            Desired::Live(p) | Desired::Gone(p) => p.clone(),
        };
        let u = uid(&pod);
        if u.is_empty() || self.finished.contains(&u) {
            return;
        }
        if let Some(h) = self.workers.get(&u) {
            if h.task.is_finished() {
                self.workers.remove(&u);
                self.finished.insert(u);
                return;
            }
            // Our own status writes come back through the watch; they must not wake the
            // worker (kubelet ignores status-only updates; krustlet#481). The mailbox still
            // takes the newer object, quietly, so the worker diffs against fresh status.
            let wake = {
                let current = h.tx.borrow();
                !same_but_status(&current, &desired)
            };
            h.tx.send_if_modified(|v| {
                *v = desired;
                wake
            });
            return;
        }
        if matches!(desired, Desired::Gone(_)) && !self.populated {
            return;
        }
        let handle = worker::spawn(self.shared.clone(), desired, self.shutdown.child_token());
        self.workers.insert(u, handle);
    }

    /// Relists the runtime and wakes the workers whose containers changed; reaps finished
    /// workers.
    async fn relist(&mut self) {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(u, _)| u.clone())
            .collect();
        for u in done {
            self.workers.remove(&u);
            self.finished.insert(u);
        }
        let Ok(containers) = self.shared.runtime.list_containers().await else {
            return;
        };
        let mut now: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for c in &containers {
            if let Some(u) = c.labels.get(labels::POD_UID) {
                now.entry(u.clone())
                    .or_default()
                    .push((c.id.clone(), format!("{:?}", c.state)));
            }
        }
        for v in now.values_mut() {
            v.sort();
        }
        for (u, h) in &self.workers {
            if now.get(u) != self.last_relist.get(u) {
                h.wake.notify_one();
            }
        }
        self.last_relist = now;
    }

    /// Tears down what the runtime holds for Pods that no longer exist.
    async fn clean_orphans(&mut self, live: &HashSet<String>) {
        let (Ok(sandboxes), Ok(containers)) = (
            self.shared.runtime.list_sandboxes().await,
            self.shared.runtime.list_containers().await,
        ) else {
            return;
        };
        let mut orphans: BTreeMap<String, Pod> = BTreeMap::new();
        let all = sandboxes
            .iter()
            .map(|s| &s.labels)
            .chain(containers.iter().map(|c| &c.labels));
        for l in all {
            let Some(u) = l.get(labels::POD_UID) else {
                continue;
            };
            if live.contains(u) || orphans.contains_key(u) {
                continue;
            }
            let mut pod = Pod::default();
            pod.metadata.uid = Some(u.clone());
            pod.metadata.name = l.get(labels::POD_NAME).cloned();
            pod.metadata.namespace = l.get(labels::POD_NAMESPACE).cloned();
            orphans.insert(u.clone(), pod);
        }
        for (u, pod) in orphans {
            let actual = ActualPod::of(&u, &sandboxes, &containers);
            tracing::info!(uid = %u, containers = actual.containers.len(), "removing the containers of a pod that is gone");
            self.dispatch_gone(pod);
        }
    }

    fn dispatch_gone(&mut self, pod: Pod) {
        let u = uid(&pod);
        let handle = worker::spawn(
            self.shared.clone(),
            Desired::Gone(Arc::new(pod)),
            self.shutdown.child_token(),
        );
        self.workers.insert(u, handle);
    }
}
