//! What the datastore promises through the whole binary: a restart keeps every object, and a
//! `kill -9` loses no write that was acknowledged.

mod common;

use common::Cluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), name.to_string())])),
        ..Default::default()
    }
}

async fn names(c: &Cluster) -> Vec<String> {
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let list = api.list(&ListParams::default()).await.expect("list");
    list.items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_every_object() {
    let mut c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    for i in 0..20 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{i}")))
            .await
            .expect("create");
    }
    c.kubectl(&[
        "apply",
        "-f",
        common::manifest("date-tail-emptydir.yaml")
            .to_str()
            .unwrap(),
    ])
    .ok();
    let before = c
        .kubectl(&["get", "pod", "date-tail", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    c.stop("TERM");
    c.up();
    // The 20 and the namespace's kube-root-ca.crt.
    assert_eq!(names(&c).await.len(), 21);
    assert_eq!(
        c.kubectl(&["get", "pod", "date-tail", "-o", "jsonpath={.metadata.uid}"])
            .ok(),
        before
    );
    // Revisions continue after a restart: a new write gets a higher resourceVersion.
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let old: i64 = api
        .get("cm-19")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let new = api
        .create(&PostParams::default(), &config_map("after"))
        .await
        .unwrap();
    assert!(
        new.metadata
            .resource_version
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > old
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_1000_concurrent_creates_loses_no_acknowledged_create() {
    let mut c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let (api2, acked2) = (api.clone(), acked.clone());
    let creates = futures::stream::iter(0..1000)
        .map(move |i| {
            let (api, acked) = (&api2, &acked2);
            let api = api.clone();
            let acked = acked.clone();
            async move {
                let name = format!("c-{i}");
                if api
                    .create(&PostParams::default(), &config_map(&name))
                    .await
                    .is_ok()
                {
                    acked.lock().unwrap().push(name);
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>();
    let load = tokio::spawn(creates);
    // Kill the server once a few hundred creates were acknowledged, while more are in flight.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    c.stop("KILL");
    let _ = load.await;
    let acknowledged = acked.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 300 && acknowledged.len() < 1000,
        "{} acknowledged",
        acknowledged.len()
    );
    c.up();
    let present = names(&c).await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !present.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged creates lost: {missing:?}",
        missing.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_watchers_each_see_ten_thousand_events_in_order() {
    use kube::api::{WatchEvent, WatchParams};
    const WATCHERS: usize = 100;
    const EVENTS: usize = 10_000;
    let c = Cluster::start();
    let client = c.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let api = api.clone();
        let start = start.clone();
        watchers.push(tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(EVENTS);
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), &start)
                .await
                .expect("watch")
                .boxed();
            while revisions.len() < EVENTS {
                match stream.next().await {
                    Some(Ok(WatchEvent::Added(cm))) => revisions.push(
                        cm.metadata
                            .resource_version
                            .unwrap()
                            .parse::<i64>()
                            .unwrap(),
                    ),
                    Some(Ok(WatchEvent::Bookmark(_))) => {}
                    Some(Ok(other)) => panic!("unexpected event {other:?}"),
                    Some(Err(e)) => panic!("watch failed: {e}"),
                    None => panic!("watch ended after {} events", revisions.len()),
                }
            }
            revisions
        }));
    }
    let writes = futures::stream::iter(0..EVENTS)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm = api
                    .create(&PostParams::default(), &config_map(&format!("w-{i}")))
                    .await
                    .expect("create");
                cm.metadata
                    .resource_version
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<i64>>()
        .await;
    let mut written = writes;
    written.sort();
    for w in watchers {
        let seen = w.await.expect("watcher");
        assert!(seen.windows(2).all(|p| p[0] < p[1]), "events out of order");
        assert_eq!(seen, written, "a watcher missed or invented events");
    }
}
