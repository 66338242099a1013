//! Rows of the core kinds other than Pod, and of StorageClass and Lease.

use super::{
    Column, Ctx, age_column, columns as build, doc, format_labels, name_column, parse_time,
};
use crate::strategy::quantity::Quantity;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The columns of `kind`, or `None` when it has no printer here.
pub(super) fn columns(kind: &str) -> Option<Vec<Column>> {
    let specs = match kind {
        "Namespace" => vec![
            name_column(),
            (
                "Status",
                "string",
                "",
                0,
                "The status of the namespace".into(),
            ),
            age_column(),
        ],
        "ConfigMap" => vec![
            name_column(),
            ("Data", "string", "", 0, doc::<core::ConfigMap>("data")),
            age_column(),
        ],
        "Secret" => vec![
            name_column(),
            ("Type", "string", "", 0, doc::<core::Secret>("type")),
            ("Data", "string", "", 0, doc::<core::Secret>("data")),
            age_column(),
        ],
        "ServiceAccount" => {
            vec![
                name_column(),
                (
                    "Secrets",
                    "string",
                    "",
                    0,
                    doc::<core::ServiceAccount>("secrets"),
                ),
                age_column(),
            ]
        }
        "Event" => vec![
            (
                "Last Seen",
                "string",
                "",
                0,
                doc::<core::Event>("lastTimestamp"),
            ),
            ("Type", "string", "", 0, doc::<core::Event>("type")),
            ("Reason", "string", "", 0, doc::<core::Event>("reason")),
            (
                "Object",
                "string",
                "",
                0,
                doc::<core::Event>("involvedObject"),
            ),
            (
                "Subobject",
                "string",
                "",
                1,
                doc::<core::ObjectReference>("fieldPath"),
            ),
            ("Source", "string", "", 1, doc::<core::Event>("source")),
            ("Message", "string", "", 0, doc::<core::Event>("message")),
            (
                "First Seen",
                "string",
                "",
                1,
                doc::<core::Event>("firstTimestamp"),
            ),
            ("Count", "string", "", 1, doc::<core::Event>("count")),
            (
                "Name",
                "string",
                "name",
                1,
                doc::<super::ObjectMeta>("name"),
            ),
        ],
        "Node" => vec![
            name_column(),
            ("Status", "string", "", 0, "The status of the node".into()),
            ("Roles", "string", "", 0, "The roles of the node".into()),
            age_column(),
            (
                "Version",
                "string",
                "",
                0,
                doc::<core::NodeSystemInfo>("kubeletVersion"),
            ),
            (
                "Internal-IP",
                "string",
                "",
                1,
                doc::<core::NodeStatus>("addresses"),
            ),
            (
                "External-IP",
                "string",
                "",
                1,
                doc::<core::NodeStatus>("addresses"),
            ),
            (
                "OS-Image",
                "string",
                "",
                1,
                doc::<core::NodeSystemInfo>("osImage"),
            ),
            (
                "Kernel-Version",
                "string",
                "",
                1,
                doc::<core::NodeSystemInfo>("kernelVersion"),
            ),
            (
                "Container-Runtime",
                "string",
                "",
                1,
                doc::<core::NodeSystemInfo>("containerRuntimeVersion"),
            ),
        ],
        "PersistentVolume" => vec![
            name_column(),
            (
                "Capacity",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeSpec>("capacity"),
            ),
            (
                "Access Modes",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeSpec>("accessModes"),
            ),
            (
                "Reclaim Policy",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeSpec>("persistentVolumeReclaimPolicy"),
            ),
            (
                "Status",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeStatus>("phase"),
            ),
            (
                "Claim",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeSpec>("claimRef"),
            ),
            (
                "StorageClass",
                "string",
                "",
                0,
                "StorageClass of the pv".into(),
            ),
            (
                "VolumeAttributesClass",
                "string",
                "",
                0,
                "VolumeAttributesClass of the pv".into(),
            ),
            (
                "Reason",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeStatus>("reason"),
            ),
            age_column(),
            (
                "VolumeMode",
                "string",
                "",
                1,
                doc::<core::PersistentVolumeSpec>("volumeMode"),
            ),
        ],
        "PersistentVolumeClaim" => vec![
            name_column(),
            (
                "Status",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeClaimStatus>("phase"),
            ),
            (
                "Volume",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeClaimSpec>("volumeName"),
            ),
            (
                "Capacity",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeClaimStatus>("capacity"),
            ),
            (
                "Access Modes",
                "string",
                "",
                0,
                doc::<core::PersistentVolumeClaimStatus>("accessModes"),
            ),
            (
                "StorageClass",
                "string",
                "",
                0,
                "StorageClass of the pvc".into(),
            ),
            (
                "VolumeAttributesClass",
                "string",
                "",
                0,
                "VolumeAttributesClass of the pvc".into(),
            ),
            age_column(),
            (
                "VolumeMode",
                "string",
                "",
                1,
                doc::<core::PersistentVolumeClaimSpec>("volumeMode"),
            ),
        ],
        "StorageClass" => vec![
            name_column(),
            (
                "Provisioner",
                "string",
                "",
                0,
                doc::<StorageClass>("provisioner"),
            ),
            (
                "ReclaimPolicy",
                "string",
                "",
                0,
                doc::<StorageClass>("reclaimPolicy"),
            ),
            (
                "VolumeBindingMode",
                "string",
                "",
                0,
                doc::<StorageClass>("volumeBindingMode"),
            ),
            (
                "AllowVolumeExpansion",
                "string",
                "",
                0,
                doc::<StorageClass>("allowVolumeExpansion"),
            ),
            age_column(),
        ],
        "Lease" => vec![
            name_column(),
            (
                "Holder",
                "string",
                "",
                0,
                doc::<LeaseSpec>("holderIdentity"),
            ),
            age_column(),
        ],
        "Service" => vec![
            name_column(),
            ("Type", "string", "", 0, doc::<core::ServiceSpec>("type")),
            (
                "Cluster-IP",
                "string",
                "",
                0,
                doc::<core::ServiceSpec>("clusterIP"),
            ),
            (
                "External-IP",
                "string",
                "",
                0,
                doc::<core::ServiceSpec>("externalIPs"),
            ),
            (
                "Port(s)",
                "string",
                "",
                0,
                doc::<core::ServiceSpec>("ports"),
            ),
            age_column(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<core::ServiceSpec>("selector"),
            ),
        ],
        "Endpoints" => {
            vec![
                name_column(),
                (
                    "Endpoints",
                    "string",
                    "",
                    0,
                    doc::<core::Endpoints>("subsets"),
                ),
                age_column(),
            ]
        }
        _ => return None,
    };
    Some(build(specs))
}

/// The cells of one row of `kind`, or `None` when it has no printer here.
pub(super) fn cells(kind: &str, ctx: &Ctx<'_>) -> Option<Vec<Value>> {
    let name = json!(ctx.name());
    let age = json!(ctx.age());
    let count = |path: &str| ctx.object(path).map_or(0, |m| m.len());
    Some(match kind {
        "Namespace" => vec![name, json!(ctx.str("/status/phase")), age],
        "ConfigMap" => vec![name, json!(count("/data") + count("/binaryData")), age],
        "Secret" => vec![name, json!(ctx.str("/type")), json!(count("/data")), age],
        "ServiceAccount" => vec![name, json!(ctx.array("/secrets").len()), age],
        "Event" => event(ctx),
        "Node" => node(ctx),
        "PersistentVolume" => persistent_volume(ctx),
        "PersistentVolumeClaim" => persistent_volume_claim(ctx),
        "StorageClass" => storage_class(ctx),
        "Lease" => vec![name, json!(ctx.str("/spec/holderIdentity")), age],
        "Service" => service(ctx),
        "Endpoints" => vec![name, json!(format_endpoints(ctx)), age],
        _ => return None,
    })
}

/// `firstNonEmpty`
fn first<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// An Event row. Objects of events.k8s.io/v1 carry the same data under other names
/// (`regarding`, `note`, `deprecated*`), which the apiserver maps onto the core fields first.
fn event(ctx: &Ctx<'_>) -> Vec<Value> {
    let pick = |core: &str, events: &str| {
        ctx.at(core)
            .filter(|v| !v.is_null())
            .or_else(|| ctx.at(events))
    };
    let first_seen = match parse_time(pick("/firstTimestamp", "/deprecatedFirstTimestamp")) {
        Some(t) => super::since(Some(t), ctx.now),
        None => ctx.since(ctx.at("/eventTime")),
    };
    let mut last_seen = match parse_time(pick("/lastTimestamp", "/deprecatedLastTimestamp")) {
        Some(t) => super::since(Some(t), ctx.now),
        None => first_seen.clone(),
    };
    let mut count = pick("/count", "/deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(series) = ctx.at("/series").filter(|s| s.is_object()) {
        last_seen = ctx.since(series.get("lastObservedTime"));
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let object = |field: &str| {
        first(
            ctx.str(&format!("/involvedObject/{field}")),
            ctx.str(&format!("/regarding/{field}")),
        )
    };
    let kind = object("kind").to_lowercase();
    let target = match object("name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = first(
        ctx.str("/source/component"),
        ctx.str("/deprecatedSource/component"),
    );
    let host = first(ctx.str("/source/host"), ctx.str("/deprecatedSource/host"));
    let component = first(
        component,
        first(
            ctx.str("/reportingComponent"),
            ctx.str("/reportingController"),
        ),
    );
    let instance = first(host, ctx.str("/reportingInstance"));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    let message = first(ctx.str("/message"), ctx.str("/note")).trim();
    vec![
        json!(last_seen),
        json!(ctx.str("/type")),
        json!(ctx.str("/reason")),
        json!(target),
        json!(object("fieldPath")),
        json!(source),
        json!(message),
        json!(first_seen),
        json!(count),
        json!(ctx.name()),
    ]
}

fn node(ctx: &Ctx<'_>) -> Vec<Value> {
    let ready = ctx
        .array("/status/conditions")
        .iter()
        .rev()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let mut status = vec![match ready {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if ctx.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in ctx.object("/metadata/labels").into_iter().flatten() {
        if let Some(role) = k
            .strip_prefix("node-role.kubernetes.io/")
            .filter(|r| !r.is_empty())
        {
            roles.insert(role.to_string());
        } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
            roles.insert(v.as_str().unwrap_or_default().to_string());
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |kind: &str| {
        ctx.array("/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |field: &str| match ctx.str(&format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };
    vec![
        json!(ctx.name()),
        json!(status.join(",")),
        json!(roles),
        json!(ctx.age()),
        json!(ctx.str("/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// `helper.GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A storage quantity as `resource.Quantity.String()` prints it: canonical form in the format
/// it was written in (`1024Mi` as `1Gi`, `1000M` as `1G`, `1.5Gi` as `1536Mi`). A missing one is
/// Go's zero Quantity, `0`; one that does not parse is shown as written.
fn quantity(v: Option<&Value>) -> String {
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return "0".to_string(),
    };
    match Quantity::parse(&text) {
        Some(q) => canonical_quantity(q.0, &text),
        None => text,
    }
}

/// Formats `nanos` (the value in units of 10^-9) in the format family of `written`.
fn canonical_quantity(nanos: i128, written: &str) -> String {
    const NANO: i128 = 1_000_000_000;
    let suffix = written
        .trim()
        .trim_start_matches(['+', '-'])
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let exponent_form = suffix.starts_with(['e', 'E']);
    let binary = suffix.ends_with('i');
    let (sign, v) = if nanos < 0 {
        ("-", -nanos)
    } else {
        ("", nanos)
    };
    if v == 0 {
        return "0".to_string();
    }
    // Binary suffixes only for whole values of at least 1024; anything else prints as decimal.
    if binary && v % NANO == 0 && v / NANO >= 1024 {
        let mut units = v / NANO;
        let mut step = 0;
        while step < 6 && units % 1024 == 0 {
            units /= 1024;
            step += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][step];
        return format!("{sign}{units}{suffix}");
    }
    // Decimal: the largest power of 1000 that leaves a whole mantissa.
    let mut mantissa = v;
    let mut exp = -9;
    while exp < 18 && mantissa % 1000 == 0 {
        mantissa /= 1000;
        exp += 3;
    }
    let suffix = if exponent_form {
        if exp == 0 {
            String::new()
        } else {
            format!("e{exp}")
        }
    } else {
        match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        }
        .to_string()
    };
    format!("{sign}{mantissa}{suffix}")
}

/// The class of a volume or claim: the beta annotation wins over `spec.storageClassName`.
fn storage_class_name(ctx: &Ctx<'_>) -> String {
    ctx.annotation("volume.beta.kubernetes.io/storage-class")
        .unwrap_or(ctx.str("/spec/storageClassName"))
        .to_string()
}

fn persistent_volume(ctx: &Ctx<'_>) -> Vec<Value> {
    let claim = match ctx.object("/spec/claimRef") {
        Some(c) => format!(
            "{}/{}",
            c.get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            c.get("name").and_then(Value::as_str).unwrap_or_default()
        ),
        None => String::new(),
    };
    let phase = if ctx.deleting() {
        "Terminating"
    } else {
        ctx.str("/status/phase")
    };
    vec![
        json!(ctx.name()),
        json!(quantity(ctx.at("/spec/capacity/storage"))),
        json!(access_modes(ctx.array("/spec/accessModes"))),
        json!(ctx.str("/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class_name(ctx)),
        json!(optional(ctx, "/spec/volumeAttributesClassName")),
        json!(ctx.str("/status/reason")),
        json!(ctx.age()),
        json!(optional(ctx, "/spec/volumeMode")),
    ]
}

/// A pointer field: its value, or `<unset>` when absent.
fn optional(ctx: &Ctx<'_>, path: &str) -> String {
    match ctx.at(path).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => "<unset>".to_string(),
    }
}

fn persistent_volume_claim(ctx: &Ctx<'_>) -> Vec<Value> {
    let phase = if ctx.deleting() {
        "Terminating"
    } else {
        ctx.str("/status/phase")
    };
    let volume = ctx.str("/spec/volumeName");
    // Capacity and access modes are those of the bound volume, so only shown once bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(ctx.at("/status/capacity/storage")),
            access_modes(ctx.array("/status/accessModes")),
        )
    };
    vec![
        json!(ctx.name()),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class_name(ctx)),
        json!(optional(ctx, "/spec/volumeAttributesClassName")),
        json!(ctx.age()),
        json!(optional(ctx, "/spec/volumeMode")),
    ]
}

fn storage_class(ctx: &Ctx<'_>) -> Vec<Value> {
    let default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| ctx.annotation(k) == Some("true"));
    let name = if default {
        format!("{} (default)", ctx.name())
    } else {
        ctx.name().to_string()
    };
    let or = |path: &str, default: &str| match ctx.at(path).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => default.to_string(),
    };
    vec![
        json!(name),
        json!(ctx.str("/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(
            ctx.at("/allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(ctx.age()),
    ]
}

/// `getServiceExternalIP` for wide output (load balancer addresses are not clipped).
fn external_ip(ctx: &Ctx<'_>) -> String {
    let external: Vec<&str> = ctx
        .array("/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match ctx.str("/spec/type") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = ctx
                .array("/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    let ip = i.get("ip").and_then(Value::as_str).unwrap_or_default();
                    let host = i
                        .get("hostname")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Some(first(ip, host)).filter(|s| !s.is_empty())
                })
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            if all.is_empty() && external.is_empty() {
                return "<pending>".to_string();
            }
            all.extend(external);
            all.join(",")
        }
        "ExternalName" => ctx.str("/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service(ctx: &Ctx<'_>) -> Vec<Value> {
    let cluster_ip = match ctx.at("/spec/clusterIPs/0").and_then(Value::as_str) {
        Some(ip) => ip,
        None => match ctx.str("/spec/clusterIP") {
            "" => "<none>",
            ip => ip,
        },
    };
    let ports: Vec<String> = ctx
        .array("/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        json!(ctx.name()),
        json!(ctx.str("/spec/type")),
        json!(cluster_ip),
        json!(external_ip(ctx)),
        json!(ports),
        json!(ctx.age()),
        json!(format_labels(ctx.object("/spec/selector"))),
    ]
}

/// `formatEndpoints` with all ports: up to three `ip:port` entries, then `+ N more...`.
fn format_endpoints(ctx: &Ctx<'_>) -> String {
    let subsets = ctx.array("/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = ss
            .get("addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ip = |a: &Value| {
            a.get("ip")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ports = ss
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(ip(a));
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let host = ip(a);
                // net.JoinHostPort brackets IPv6 addresses.
                list.push(if host.contains(':') {
                    format!("[{host}]:{number}")
                } else {
                    format!("{host}:{number}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}
