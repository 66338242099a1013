//! What the atomic-writer volumes hold (configMap, secret, downwardAPI and projected), as
//! kubelet's plugins build it: the files, their bytes and modes, and kubelet's error texts for
//! a missing object or key. Pure: the agent fetches the ConfigMaps and Secrets that
//! [`references`] names and passes them in as [`Sources`].

use crate::atomic_writer::{FileProjection, Payload};
use crate::env::{self, EnvContext};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use std::collections::HashMap;

/// `defaultMode` when unset (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// The ConfigMaps and Secrets of the Pod's namespace its volumes read (`None`: not found).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// By name.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    /// By name.
    pub secrets: HashMap<String, Option<Secret>>,
    /// Service account tokens for the Pod, by what [`token_requests`] names.
    pub tokens: HashMap<TokenRequest, String>,
}

/// A token a `serviceAccountToken` projection asks for: (audience, "" for the API server's;
/// expirationSeconds).
pub type TokenRequest = (String, i64);

/// The tokens the Pod's projected volumes ask for.
pub fn token_requests(pod: &Pod) -> Vec<TokenRequest> {
    let mut out: Vec<TokenRequest> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|source| source.service_account_token.as_ref())
        .map(|t| {
            (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds.unwrap_or(3600),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The ConfigMap and Secret names the Pod's volumes read: (config maps, secrets).
pub fn references(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// The files of an atomic-writer volume, or kubelet's reason it cannot be set up.
/// `None` for a volume of another kind.
pub fn of_volume(
    pod: &Pod,
    v: &Volume,
    sources: &Sources,
    ctx: &EnvContext,
) -> Option<Result<Payload, String>> {
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(config_map(
            &c.name,
            sources.config_maps.get(&c.name).cloned().flatten().as_ref(),
            c.items.as_deref(),
            c.optional.unwrap_or(false),
            mode,
        ));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(secret(
            &name,
            sources.secrets.get(&name).cloned().flatten().as_ref(),
            s.items.as_deref(),
            s.optional.unwrap_or(false),
            mode,
        ));
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(downward_api(
            pod,
            d.items.as_deref().unwrap_or(&[]),
            mode,
            ctx,
        ));
    }
    let p = v.projected.as_ref()?;
    let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for source in p.sources.iter().flatten() {
        let part = if let Some(c) = &source.config_map {
            config_map(
                &c.name,
                sources.config_maps.get(&c.name).cloned().flatten().as_ref(),
                c.items.as_deref(),
                c.optional.unwrap_or(false),
                mode,
            )
        } else if let Some(s) = &source.secret {
            secret(
                &s.name,
                sources.secrets.get(&s.name).cloned().flatten().as_ref(),
                s.items.as_deref(),
                s.optional.unwrap_or(false),
                mode,
            )
        } else if let Some(d) = &source.downward_api {
            downward_api(pod, d.items.as_deref().unwrap_or(&[]), mode, ctx)
        } else if let Some(t) = &source.service_account_token {
            let key = (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds.unwrap_or(3600),
            );
            // The token is private to the Pod's user: owned by it when every container runs
            // as one, and 0600 once that user or a group is set.
            let fs_group = pod
                .spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|c| c.fs_group)
                .is_some();
            let owner = fs_user(pod);
            match sources.tokens.get(&key) {
                Some(token) => Ok(Payload::from([(
                    t.path.clone(),
                    FileProjection {
                        owner,
                        ..file(
                            token.clone().into_bytes(),
                            if fs_group || owner.is_some() {
                                0o600
                            } else {
                                mode
                            },
                        )
                    },
                )])),
                None => {
                    Err("failed to fetch token: no token for the pod's service account".to_string())
                }
            }
        } else {
            Err("a projected volume source of an unknown kind".to_string())
        };
        // The later source wins a name both give, as in kubelet.
        match part {
            Ok(files) => payload.extend(files),
            Err(e) => errors.push(e),
        }
    }
    Some(match errors.len() {
        0 => Ok(payload),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    })
}

/// kubelet's FsUser (FsUserFrom): the user every init and app container runs as, when each
/// names one (its own `runAsUser` or the Pod's) and they are all the same.
pub fn fs_user(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|c| c.run_as_user);
    let mut users = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                .or(pod_user)
        });
    let first = users.next()??;
    users
        .all(|u| u == Some(first))
        .then(|| u32::try_from(first).ok())
        .flatten()
}

fn file(data: Vec<u8>, mode: i32) -> FileProjection {
    FileProjection {
        data,
        mode: u32::try_from(mode).unwrap_or(0o644),
        owner: None,
    }
}

/// Keys to files: all of them by name, or the listed items at their paths (a missing key an
/// error unless `optional`, when it is skipped).
fn project(
    all: Vec<(String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: i32,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(all.into_iter().map(|(k, v)| (k, file(v, mode))).collect());
    };
    let by_key: HashMap<String, Vec<u8>> = all.into_iter().collect();
    let mut payload = Payload::new();
    for item in items {
        match by_key.get(&item.key) {
            Some(data) => {
                payload.insert(
                    item.path.clone(),
                    file(data.clone(), item.mode.unwrap_or(mode)),
                );
            }
            None if optional => {}
            None => return Err(missing_key(&item.key)),
        }
    }
    Ok(payload)
}

fn config_map(
    name: &str,
    cm: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: i32,
) -> Result<Payload, String> {
    let Some(cm) = cm else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("configmap {name:?} not found"))
        };
    };
    // A key is looked up in `data` first, then in `binaryData`.
    let mut all: Vec<(String, Vec<u8>)> = cm
        .binary_data
        .iter()
        .flatten()
        .filter(|(k, _)| !cm.data.as_ref().is_some_and(|d| d.contains_key(*k)))
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    all.extend(
        cm.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    project(all, items, optional, mode, |key| {
        format!("configmap references non-existent config key: {key}")
    })
}

fn secret(
    name: &str,
    s: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: i32,
) -> Result<Payload, String> {
    let Some(s) = s else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("secret {name:?} not found"))
        };
    };
    let all = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    project(all, items, optional, mode, |key| {
        format!("references non-existent secret key: {key}")
    })
}

fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    ctx: &EnvContext,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::field_value(pod, &f.field_path, ctx)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let container = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == name)
                .ok_or_else(|| format!("container {name:?} not found in the pod"))?;
            env::resource_value(
                container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                ctx,
            )?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            file(value.into_bytes(), item.mode.unwrap_or(mode)),
        );
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "1250m", "memory": "64Mi"}}}]}
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"}, "data": {"k": "v", "both": "text"},
            "binaryData": {"bin": "3sr+utD+/w==", "both": "AAA="}
        }))
        .unwrap();
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "sec"}, "data": {"pw": "aHVudGVyMg=="}
        }))
        .unwrap();
        Sources {
            config_maps: HashMap::from([("cfg".into(), Some(cm)), ("gone".into(), None)]),
            secrets: HashMap::from([("sec".into(), Some(s)), ("gone".into(), None)]),
            tokens: HashMap::from([((String::new(), 3607), "jwt".to_string())]),
        }
    }

    fn files(volume: serde_json::Value) -> Result<Vec<(String, Vec<u8>, u32)>, String> {
        let p = pod(json!([volume]));
        let v = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let ctx = EnvContext {
            node_annotations: [("kubernetes.io/config.source".to_string(), "api".to_string())]
                .into(),
            ..Default::default()
        };
        let payload = of_volume(&p, v, &sources(), &ctx).expect("a payload")?;
        Ok(payload
            .into_iter()
            .map(|(k, f)| (k, f.data, f.mode))
            .collect())
    }

    #[test]
    fn a_config_map_gives_every_key_data_before_binary_data() {
        assert_eq!(
            files(json!({"name": "v", "configMap": {"name": "cfg"}})).unwrap(),
            [
                (
                    "bin".into(),
                    vec![0xde, 0xca, 0xfe, 0xba, 0xd0, 0xfe, 0xff],
                    0o644
                ),
                ("both".into(), b"text".to_vec(), 0o644),
                ("k".into(), b"v".to_vec(), 0o644),
            ]
        );
    }

    #[test]
    fn items_pick_keys_with_their_own_paths_and_modes() {
        let got = files(json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o400,
            "items": [{"key": "k", "path": "dir/k.txt"}, {"key": "bin", "path": "b", "mode": 0o600}]}}))
        .unwrap();
        assert_eq!(
            got,
            [
                (
                    "b".into(),
                    vec![0xde, 0xca, 0xfe, 0xba, 0xd0, 0xfe, 0xff],
                    0o600
                ),
                ("dir/k.txt".into(), b"v".to_vec(), 0o400),
            ]
        );
        assert_eq!(
            files(
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}})
            ),
            Err("configmap references non-existent config key: nope".into())
        );
        assert_eq!(
            files(
                json!({"name": "v", "configMap": {"name": "cfg", "optional": true,
                "items": [{"key": "nope", "path": "x"}, {"key": "k", "path": "k"}]}})
            )
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn missing_objects_fail_unless_optional() {
        assert_eq!(
            files(json!({"name": "v", "configMap": {"name": "gone"}})),
            Err("configmap \"gone\" not found".into())
        );
        assert_eq!(
            files(json!({"name": "v", "secret": {"secretName": "gone"}})),
            Err("secret \"gone\" not found".into())
        );
        assert_eq!(
            files(json!({"name": "v", "secret": {"secretName": "gone", "optional": true}})),
            Ok(vec![])
        );
        assert_eq!(
            files(
                json!({"name": "v", "secret": {"secretName": "sec", "items": [{"key": "x", "path": "x"}]}})
            ),
            Err("references non-existent secret key: x".into())
        );
    }

    #[test]
    fn a_secret_is_written_decoded() {
        assert_eq!(
            files(json!({"name": "v", "secret": {"secretName": "sec", "defaultMode": 0o400}}))
                .unwrap(),
            [("pw".into(), b"hunter2".to_vec(), 0o400)]
        );
    }

    #[test]
    fn downward_api_files_hold_bare_values_and_sorted_quoted_maps() {
        let got = files(json!({"name": "v", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory"}},
        ]}}))
        .unwrap();
        let text: Vec<(String, String)> = got
            .into_iter()
            .map(|(k, v, _)| (k, String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            text,
            [
                (
                    "annotations".into(),
                    "kubernetes.io/config.source=\"api\"".into()
                ),
                ("cpu".into(), "2".into()),
                ("labels".into(), "a=\"x\\\"y\"\nb=\"2\"".into()),
                ("mem".into(), "67108864".into()),
                ("name".into(), "p".into()),
            ]
        );
    }

    #[test]
    fn fs_user_is_the_one_user_every_container_runs_as() {
        let pod =
            |v: serde_json::Value| -> Pod { serde_json::from_value(json!({"spec": v})).unwrap() };
        let c = |name: &str, user: Option<i64>| match user {
            Some(u) => json!({"name": name, "securityContext": {"runAsUser": u}}),
            None => json!({"name": name}),
        };
        assert_eq!(
            fs_user(&pod(json!({"containers": [c("a", Some(1000))]}))),
            Some(1000)
        );
        assert_eq!(
            fs_user(&pod(json!({"securityContext": {"runAsUser": 7},
                "containers": [c("a", None), c("b", Some(7))], "initContainers": [c("i", None)]}))),
            Some(7)
        );
        assert_eq!(
            fs_user(&pod(
                json!({"containers": [c("a", Some(1)), c("b", Some(2))]})
            )),
            None
        );
        assert_eq!(
            fs_user(&pod(json!({"containers": [c("a", Some(1)), c("b", None)]}))),
            None
        );
        assert_eq!(
            fs_user(&pod(
                json!({"containers": [c("a", Some(1))], "initContainers": [c("i", Some(0))]})
            )),
            None
        );
    }

    #[test]
    fn projected_sources_merge_and_their_errors_aggregate() {
        let got = files(json!({"name": "v", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "k", "path": "same"}]}},
            {"secret": {"name": "sec", "items": [{"key": "pw", "path": "same"}]}},
            {"downwardAPI": {"items": [{"path": "podname", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        ]}}))
        .unwrap();
        assert_eq!(
            got,
            [
                ("podname".into(), b"p".to_vec(), 0o440),
                ("same".into(), b"hunter2".to_vec(), 0o440),
                ("token".into(), b"jwt".to_vec(), 0o440),
            ]
        );
        assert_eq!(
            files(json!({"name": "v", "projected": {"sources": [
                {"configMap": {"name": "gone"}}, {"secret": {"name": "gone"}}]}})),
            Err("[configmap \"gone\" not found, secret \"gone\" not found]".into())
        );
    }
}
