//! Pod rows: READY, the STATUS algorithm of upstream `printPod`, RESTARTS with the time of the
//! last restart, and the wide IP, NODE, NOMINATED NODE and READINESS GATES columns.

use super::{Column, Ctx, age_column, columns as build, doc, name_column, parse_time, since};
use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// The Pod columns.
pub(super) fn columns() -> Vec<Column> {
    build(vec![
        name_column(),
        ("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic.".into()),
        ("Status", "string", "", 0, "The aggregate status of the containers in this pod.".into()),
        (
            "Restarts",
            "string",
            "",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.".into(),
        ),
        age_column(),
        ("IP", "string", "", 1, doc::<PodStatus>("podIP")),
        ("Node", "string", "", 1, doc::<PodSpec>("nodeName")),
        ("Nominated Node", "string", "", 1, doc::<PodStatus>("nominatedNodeName")),
        ("Readiness Gates", "string", "", 1, doc::<PodSpec>("readinessGates")),
    ])
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(path)
}

fn get_str<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or_default()
}

fn get_int(v: &Value, path: &str) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn condition_true(ctx: &Ctx<'_>, kind: &str) -> bool {
    ctx.array("/status/conditions")
        .iter()
        .any(|c| get_str(c, "/type") == kind && get_str(c, "/status") == "True")
}

/// The later of two restart times; a missing `finishedAt` never wins (Go's zero time).
fn later(current: Option<Timestamp>, status: &Value) -> Option<Timestamp> {
    let finished = parse_time(get(status, "/lastState/terminated/finishedAt"));
    match (current, finished) {
        (Some(c), Some(f)) if f > c => Some(f),
        (None, f) => f,
        (c, _) => c,
    }
}

/// `Signal:N` or `ExitCode:N` for a terminated state without a reason.
fn exit_text(terminated: &Value) -> String {
    let signal = get_int(terminated, "/signal");
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", get_int(terminated, "/exitCode"))
    }
}

/// The cells of one Pod row.
pub(super) fn cells(ctx: &Ctx<'_>) -> Vec<Value> {
    let init_specs = ctx.array("/spec/initContainers");
    // Sidecars (init containers with restartPolicy Always) count as containers.
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| get_str(c, "/name") == name && get_str(c, "/restartPolicy") == "Always")
    };
    let total = ctx.array("/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| get_str(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = ctx.str("/status/phase");
    let mut reason = match ctx.str("/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let gated = ctx.array("/status/conditions").iter().any(|c| {
        get_str(c, "/type") == "PodScheduled" && get_str(c, "/reason") == "SchedulingGated"
    });
    if gated {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, status) in ctx
        .array("/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        restarts += get_int(status, "/restartCount");
        last_restart = later(last_restart, status);
        let sidecar = restartable(get_str(status, "/name"));
        if sidecar {
            sidecar_restarts += get_int(status, "/restartCount");
            last_sidecar_restart = later(last_sidecar_restart, status);
        }
        let terminated = get(status, "/state/terminated").filter(|t| t.is_object());
        let waiting_reason = get_str(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| get_int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && get(status, "/started").and_then(Value::as_bool) == Some(true) {
            if get(status, "/ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match get_str(t, "/reason") {
                "" => format!("Init:{}", exit_text(t)),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(ctx, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in ctx.array("/status/containerStatuses").iter().rev() {
            restarts += get_int(status, "/restartCount");
            last_restart = later(last_restart, status);
            let waiting_reason = get_str(status, "/state/waiting/reason");
            let terminated = get(status, "/state/terminated").filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match get_str(t, "/reason") {
                    "" => exit_text(t),
                    r => r.to_string(),
                };
            } else if get(status, "/ready").and_then(Value::as_bool) == Some(true)
                && get(status, "/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not Completed.
        if reason == "Completed" && has_running {
            reason = if condition_true(ctx, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if ctx.deleting() && ctx.str("/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if ctx.deleting() && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), ctx.now)),
        _ => restarts.to_string(),
    };

    let ip = match ctx.at("/status/podIPs/0/ip").and_then(Value::as_str) {
        Some(ip) if !ip.is_empty() => ip,
        _ => ctx.str("/status/podIP"),
    };
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let gates = ctx.array("/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = ctx.array("/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                let kind = get_str(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| get_str(c, "/type") == kind)
                    .is_some_and(|c| get_str(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(ctx.name()),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        json!(ctx.age()),
        json!(or_none(ip)),
        json!(or_none(ctx.str("/spec/nodeName"))),
        json!(or_none(ctx.str("/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}
