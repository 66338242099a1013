//! A container's environment as kubelet makes it (`kubelet_pods.go` makeEnvironmentVariables):
//! `envFrom` sources first, then `env` entries in order, each value `$(VAR)`-expanded against
//! what is defined so far; `valueFrom` resolved from the Pod (fieldRef), the container's
//! resources (resourceFieldRef), ConfigMaps and Secrets. `command` and `args` are expanded
//! with the result.
//!
//! Resolution is pure: the agent fetches the ConfigMaps and Secrets [`references`] names, then
//! calls [`resolve`]. Errors carry kubelet's texts, shown as CreateContainerConfigError.

use api::strategy::quantity::Quantity;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use std::collections::{BTreeMap, HashMap};

/// What the environment may read besides the Pod: ConfigMaps and Secrets by name (`None`:
/// the object does not exist), and the node's and Pod's addresses.
#[derive(Clone, Debug, Default)]
pub struct EnvContext {
    /// ConfigMaps of the Pod's namespace, by name.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    /// Secrets of the Pod's namespace, by name.
    pub secrets: HashMap<String, Option<Secret>>,
    /// The node's IP (`status.hostIP`).
    pub host_ip: String,
    /// The Pod's IP (`status.podIP`).
    pub pod_ip: String,
    /// Node allocatable CPU, the default for an unset CPU limit (`2`).
    pub allocatable_cpu: String,
    /// Node allocatable memory, the default for an unset memory limit (`8Gi`).
    pub allocatable_memory: String,
    /// The annotations kubelet adds to its own copy of the Pod (`kubernetes.io/config.seen`,
    /// `kubernetes.io/config.source`), which the downward API shows with the Pod's own.
    pub node_annotations: BTreeMap<String, String>,
    /// Service variables (`KUBERNETES_SERVICE_HOST`, ...): after the container's own, unless
    /// it sets them itself, and known to its `$(VAR)` references.
    pub service_env: Vec<(String, String)>,
}

/// The variables kubelet gives every container for the `kubernetes` Service at `ip:port`
/// (pkg/kubelet/envvars FromServices, the port named `https`).
pub fn kubernetes_service_env(ip: &str, port: u16) -> Vec<(String, String)> {
    let url = format!("tcp://{ip}:{port}");
    [
        ("KUBERNETES_SERVICE_HOST".to_string(), ip.to_string()),
        ("KUBERNETES_SERVICE_PORT".to_string(), port.to_string()),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".to_string(),
            port.to_string(),
        ),
        ("KUBERNETES_PORT".to_string(), url.clone()),
        (format!("KUBERNETES_PORT_{port}_TCP"), url),
        (
            format!("KUBERNETES_PORT_{port}_TCP_PROTO"),
            "tcp".to_string(),
        ),
        (format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.to_string()),
        (format!("KUBERNETES_PORT_{port}_TCP_ADDR"), ip.to_string()),
    ]
    .into()
}

/// The ConfigMap and Secret names a container's environment reads: (config maps, secrets).
pub fn references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = vec![];
    let mut secrets = vec![];
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion): `$(NAME)` becomes
/// the value when `lookup` knows it and stays as written otherwise; `$$` is a literal `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push_str(&input[last..i]);
                    out.push('$');
                    i += 2;
                    last = i;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        out.push_str(&input[last..i]);
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        last = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[last..]);
    out
}

/// Whether `name` is a valid environment variable name (`IsEnvVarName`).
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || "-._".contains(c) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The environment of `container` in `pod`, in kubelet's order, or kubelet's message for a
/// missing ConfigMap, Secret or key.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = vec![];
    let mut values: HashMap<String, String> = HashMap::new();
    let set =
        |order: &mut Vec<String>, values: &mut HashMap<String, String>, k: String, v: String| {
            if values.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let mut pairs: Vec<(String, String)> = vec![];
        if let Some(r) = &from.config_map_ref {
            match ctx.config_maps.get(&r.name).cloned().flatten() {
                Some(cm) => {
                    pairs.extend(cm.data.unwrap_or_default());
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match ctx.secrets.get(&r.name).cloned().flatten() {
                Some(s) => pairs.extend(secret_strings(&s)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
        for (k, v) in pairs {
            let key = format!("{prefix}{k}");
            // kubelet skips invalid names (with an InvalidEnvironmentVariableNames event).
            if is_env_var_name(&key) {
                set(&mut order, &mut values, key, v);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            let known = values.clone();
            let service = |name: &str| {
                ctx.service_env
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            expand(v, &|name| {
                known.get(name).cloned().or_else(|| service(name))
            })
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path, ctx)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => find_container(pod, n).unwrap_or(container),
                    None => container,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    ctx,
                )?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match ctx.config_maps.get(&r.name).cloned().flatten() {
                    None if optional => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match ctx.secrets.get(&r.name).cloned().flatten() {
                    None if optional => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                    Some(s) => match secret_strings(&s).remove(&r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut order, &mut values, var.name.clone(), value);
    }
    for (k, v) in &ctx.service_env {
        if !values.contains_key(k) {
            set(&mut order, &mut values, k.clone(), v.clone());
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = values.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// `command` and `args` with `$(VAR)` expanded from `env`.
pub fn expand_command(
    container: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| map.get(name).map(|v| (*v).to_string());
    let command = container
        .command
        .iter()
        .flatten()
        .map(|s| expand(s, &lookup))
        .collect();
    let args = container
        .args
        .iter()
        .flatten()
        .map(|s| expand(s, &lookup))
        .collect();
    (command, args)
}

fn secret_strings(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// The Pod's annotations as the node sees them: its own and the node's.
fn annotations_seen(pod: &Pod, ctx: &EnvContext) -> BTreeMap<String, String> {
    let mut all = ctx.node_annotations.clone();
    all.extend(pod.metadata.annotations.clone().unwrap_or_default());
    all
}

/// The value a downward-API field path names (`pkg/fieldpath` plus the status fields kubelet
/// fills in itself).
pub fn field_value(pod: &Pod, path: &str, ctx: &EnvContext) -> Result<String, String> {
    let meta = &pod.metadata;
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        rest.strip_suffix("']").map(str::to_string)
    };
    let format_map = |m: &Option<BTreeMap<String, String>>| -> String {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels),
        "metadata.annotations" => format_map(&Some(annotations_seen(pod, ctx))),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                annotations_seen(pod, ctx)
                    .get(&key)
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

/// The value of a resourceFieldRef: the limit (node allocatable when unset) or request,
/// divided by the divisor and rounded up, as `ExtractContainerResourceValue` does.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    ctx: &EnvContext,
) -> Result<String, String> {
    let res = container.resources.as_ref();
    let get = |which: &str, name: &str| -> Option<Quantity> {
        let m = match which {
            "limits" => res.and_then(|r| r.limits.as_ref()),
            _ => res.and_then(|r| r.requests.as_ref()),
        }?;
        Quantity::parse(&m.get(name)?.0)
    };
    let divisor = match divisor.filter(|d| !d.is_empty()) {
        Some(d) => Quantity::parse(d).ok_or_else(|| format!("invalid divisor {d:?}"))?,
        None => Quantity::parse("1").ok_or("invalid divisor")?,
    };
    let (which, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let value = match (which, name) {
        ("limits", "cpu") => get("limits", "cpu").or_else(|| Quantity::parse(&ctx.allocatable_cpu)),
        ("limits", "memory") => {
            get("limits", "memory").or_else(|| Quantity::parse(&ctx.allocatable_memory))
        }
        ("limits", "ephemeral-storage") => get("limits", "ephemeral-storage"),
        ("requests", n) if ["cpu", "memory", "ephemeral-storage"].contains(&n) => {
            get("requests", n)
                // An unset request reads as the limit when one is set (requests default to limits).
                .or_else(|| get("limits", n))
        }
        _ => return Err(format!("unsupported container resource : {resource}")),
    }
    .unwrap_or(Quantity::ZERO);
    if divisor.0 <= 0 {
        return Err("divisor must be positive".to_string());
    }
    let n = (value.0 + divisor.0 - 1).div_euclid(divisor.0);
    Ok(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [{
                "name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "A", "value": "a"},
                    {"name": "B", "value": "$(A)-b $$(A) $(MISSING)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                    {"name": "CPULIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                    {"name": "O", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "pw", "optional": true}}},
                    {"name": "CFG_k", "value": "override"}
                ],
                "command": ["sh", "-c", "echo $(A) $(B)"], "args": ["$(POD)", "$$(POD)"]
            }]}
        }))
        .unwrap()
    }

    fn ctx() -> EnvContext {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "cfg"}, "data": {"k": "v", "bad key": "x"}}),
        )
        .unwrap();
        let sec: Secret = serde_json::from_value(
            json!({"metadata": {"name": "sec"}, "data": {"pw": "aHVudGVyMg=="}}),
        )
        .unwrap();
        EnvContext {
            config_maps: [("cfg".to_string(), Some(cm))].into(),
            secrets: [("sec".to_string(), Some(sec)), ("nope".to_string(), None)].into(),
            host_ip: "127.0.0.1".into(),
            pod_ip: "10.88.0.2".into(),
            allocatable_cpu: "2".into(),
            allocatable_memory: "8Gi".into(),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_in_kubelets_order() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env = resolve(&p, c, &ctx()).unwrap();
        let want: Vec<(&str, &str)> = vec![
            ("CFG_k", "override"),
            ("A", "a"),
            ("B", "a-b $(A) $(MISSING)"),
            ("POD", "p"),
            ("APP", "web"),
            ("NODE", "n1"),
            ("IP", "10.88.0.2"),
            ("MEM", "64"),
            ("CPU", "250"),
            ("CPULIM", "2"),
            ("K", "v"),
            ("S", "hunter2"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        let (command, args) = expand_command(c, &env);
        assert_eq!(command, ["sh", "-c", "echo a a-b $(A) $(MISSING)"]);
        assert_eq!(args, ["p", "$(POD)"]);
    }

    #[test]
    fn missing_sources_give_kubelets_messages() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mut cx = ctx();
        cx.secrets.insert("sec".into(), None);
        assert_eq!(resolve(&p, c, &cx).unwrap_err(), "secret \"sec\" not found");
        let mut cx = ctx();
        cx.config_maps.insert("cfg".into(), None);
        assert_eq!(
            resolve(&p, c, &cx).unwrap_err(),
            "configmap \"cfg\" not found"
        );
        let mut cx = ctx();
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {}})).unwrap();
        cx.config_maps.insert("cfg".into(), Some(cm));
        assert_eq!(
            resolve(&p, c, &cx).unwrap_err(),
            "couldn't find key k in ConfigMap ns/cfg"
        );
        assert_eq!(
            references(c),
            (
                vec!["cfg".to_string()],
                vec!["nope".to_string(), "sec".to_string()]
            )
        );
    }

    #[test]
    fn expansion_edge_cases() {
        let look = |n: &str| (n == "X").then(|| "1".to_string());
        assert_eq!(expand("$(X)$(X)", &look), "11");
        assert_eq!(expand("$X $( $(X", &look), "$X $( $(X");
        assert_eq!(expand("a$$b$", &look), "a$b$");
        assert_eq!(expand("$(Y)", &look), "$(Y)");
    }
}
