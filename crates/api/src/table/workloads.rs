//! Rows of the workload kinds: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob and
//! ReplicationController.

use super::{
    Column, Ctx, age_column, columns as build, container_cells, doc, format_label_selector,
    format_labels, human_seconds, name_column, parse_time,
};
use crate::selector::LabelSelector;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";

/// The columns of `kind`, or `None` when it has no printer here.
pub(super) fn columns(kind: &str) -> Option<Vec<Column>> {
    let containers = || ("Containers", "string", "", 1, CONTAINERS.to_string());
    let images = || ("Images", "string", "", 1, IMAGES.to_string());
    let specs = match kind {
        "Deployment" => vec![
            name_column(),
            (
                "Ready",
                "string",
                "",
                0,
                "Number of the pod with ready state".into(),
            ),
            (
                "Up-to-date",
                "string",
                "",
                0,
                doc::<apps::DeploymentStatus>("updatedReplicas"),
            ),
            (
                "Available",
                "string",
                "",
                0,
                doc::<apps::DeploymentStatus>("availableReplicas"),
            ),
            age_column(),
            containers(),
            images(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<apps::DeploymentSpec>("selector"),
            ),
        ],
        "ReplicaSet" => vec![
            name_column(),
            (
                "Desired",
                "integer",
                "",
                0,
                doc::<apps::ReplicaSetSpec>("replicas"),
            ),
            (
                "Current",
                "integer",
                "",
                0,
                doc::<apps::ReplicaSetStatus>("replicas"),
            ),
            (
                "Ready",
                "integer",
                "",
                0,
                doc::<apps::ReplicaSetStatus>("readyReplicas"),
            ),
            age_column(),
            containers(),
            images(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<apps::ReplicaSetSpec>("selector"),
            ),
        ],
        "StatefulSet" => vec![
            name_column(),
            (
                "Ready",
                "string",
                "",
                0,
                "Number of the pod with ready state".into(),
            ),
            age_column(),
            containers(),
            images(),
        ],
        "DaemonSet" => vec![
            name_column(),
            (
                "Desired",
                "integer",
                "",
                0,
                doc::<apps::DaemonSetStatus>("desiredNumberScheduled"),
            ),
            (
                "Current",
                "integer",
                "",
                0,
                doc::<apps::DaemonSetStatus>("currentNumberScheduled"),
            ),
            (
                "Ready",
                "integer",
                "",
                0,
                doc::<apps::DaemonSetStatus>("numberReady"),
            ),
            (
                "Up-to-date",
                "integer",
                "",
                0,
                doc::<apps::DaemonSetStatus>("updatedNumberScheduled"),
            ),
            (
                "Available",
                "integer",
                "",
                0,
                doc::<apps::DaemonSetStatus>("numberAvailable"),
            ),
            (
                "Node Selector",
                "string",
                "",
                0,
                doc::<core::PodSpec>("nodeSelector"),
            ),
            age_column(),
            containers(),
            images(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<apps::DaemonSetSpec>("selector"),
            ),
        ],
        "Job" => vec![
            name_column(),
            ("Status", "string", "", 0, "Status of the job.".into()),
            (
                "Completions",
                "string",
                "",
                0,
                doc::<batch::JobStatus>("succeeded"),
            ),
            (
                "Duration",
                "string",
                "",
                0,
                "Time required to complete the job.".into(),
            ),
            age_column(),
            containers(),
            images(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<batch::JobSpec>("selector"),
            ),
        ],
        "CronJob" => vec![
            name_column(),
            (
                "Schedule",
                "string",
                "",
                0,
                doc::<batch::CronJobSpec>("schedule"),
            ),
            (
                "Timezone",
                "string",
                "",
                0,
                doc::<batch::CronJobSpec>("timeZone"),
            ),
            (
                "Suspend",
                "boolean",
                "",
                0,
                doc::<batch::CronJobSpec>("suspend"),
            ),
            (
                "Active",
                "integer",
                "",
                0,
                doc::<batch::CronJobStatus>("active"),
            ),
            (
                "Last Schedule",
                "string",
                "",
                0,
                doc::<batch::CronJobStatus>("lastScheduleTime"),
            ),
            age_column(),
            containers(),
            images(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<batch::JobSpec>("selector"),
            ),
        ],
        "ReplicationController" => vec![
            name_column(),
            (
                "Desired",
                "integer",
                "",
                0,
                doc::<core::ReplicationControllerSpec>("replicas"),
            ),
            (
                "Current",
                "integer",
                "",
                0,
                doc::<core::ReplicationControllerStatus>("replicas"),
            ),
            (
                "Ready",
                "integer",
                "",
                0,
                doc::<core::ReplicationControllerStatus>("readyReplicas"),
            ),
            age_column(),
            containers(),
            images(),
            (
                "Selector",
                "string",
                "",
                1,
                doc::<core::ReplicationControllerSpec>("selector"),
            ),
        ],
        _ => return None,
    };
    Some(build(specs))
}

/// The cells of one row of `kind`, or `None` when it has no printer here.
pub(super) fn cells(kind: &str, ctx: &Ctx<'_>) -> Option<Vec<Value>> {
    let name = json!(ctx.name());
    let age = json!(ctx.age());
    // Defaulting makes `spec.replicas` 1 when omitted.
    let desired = ctx.int("/spec/replicas", 1);
    let status = |field: &str| ctx.int(&format!("/status/{field}"), 0);
    let (names, images) = container_cells(ctx.array("/spec/template/spec/containers"));
    Some(match kind {
        "Deployment" => {
            // A selector that does not convert prints as <invalid>; a missing one as "".
            let selector = match LabelSelector::from_label_selector(ctx.at("/spec/selector")) {
                Ok(s) => s.to_string(),
                Err(_) => "<invalid>".to_string(),
            };
            vec![
                name,
                json!(format!("{}/{desired}", status("readyReplicas"))),
                json!(status("updatedReplicas")),
                json!(status("availableReplicas")),
                age,
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        "ReplicaSet" => vec![
            name,
            json!(desired),
            json!(status("replicas")),
            json!(status("readyReplicas")),
            age,
            json!(names),
            json!(images),
            json!(format_label_selector(ctx.at("/spec/selector"))),
        ],
        "StatefulSet" => vec![
            name,
            json!(format!("{}/{desired}", status("readyReplicas"))),
            age,
            json!(names),
            json!(images),
        ],
        "DaemonSet" => vec![
            name,
            json!(status("desiredNumberScheduled")),
            json!(status("currentNumberScheduled")),
            json!(status("numberReady")),
            json!(status("updatedNumberScheduled")),
            json!(status("numberAvailable")),
            json!(format_labels(
                ctx.object("/spec/template/spec/nodeSelector")
            )),
            age,
            json!(names),
            json!(images),
            json!(format_label_selector(ctx.at("/spec/selector"))),
        ],
        "Job" => job(ctx, names, images),
        "CronJob" => cron_job(ctx),
        "ReplicationController" => vec![
            name,
            json!(desired),
            json!(status("replicas")),
            json!(status("readyReplicas")),
            age,
            json!(names),
            json!(images),
            json!(format_labels(ctx.object("/spec/selector"))),
        ],
        _ => return None,
    })
}

/// `hasJobCondition`: the first condition of that type decides.
fn job_condition(ctx: &Ctx<'_>, kind: &str) -> bool {
    ctx.array("/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

fn job(ctx: &Ctx<'_>, names: String, images: String) -> Vec<Value> {
    let succeeded = ctx.int("/status/succeeded", 0);
    let completions = match ctx.at("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match ctx.int("/spec/parallelism", 0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = parse_time(ctx.at("/status/startTime"));
    let end = parse_time(ctx.at("/status/completionTime"));
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_seconds(ctx.now.duration_since(s).as_secs()),
        (Some(s), Some(e)) => human_seconds(e.duration_since(s).as_secs()),
    };
    let status = if job_condition(ctx, "Complete") {
        "Complete"
    } else if job_condition(ctx, "Failed") {
        "Failed"
    } else if ctx.deleting() {
        "Terminating"
    } else if job_condition(ctx, "Suspended") {
        "Suspended"
    } else if job_condition(ctx, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    vec![
        json!(ctx.name()),
        json!(status),
        json!(completions),
        json!(duration),
        json!(ctx.age()),
        json!(names),
        json!(images),
        json!(format_label_selector(ctx.at("/spec/selector"))),
    ]
}

fn cron_job(ctx: &Ctx<'_>) -> Vec<Value> {
    let last_schedule = match ctx.at("/status/lastScheduleTime").filter(|v| !v.is_null()) {
        Some(t) => ctx.since(Some(t)),
        None => "<none>".to_string(),
    };
    // printBoolPtr
    let suspend = match ctx.at("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let (names, images) =
        container_cells(ctx.array("/spec/jobTemplate/spec/template/spec/containers"));
    vec![
        json!(ctx.name()),
        json!(ctx.str("/spec/schedule")),
        json!(
            ctx.at("/spec/timeZone")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
        ),
        json!(suspend),
        json!(ctx.array("/status/active").len()),
        json!(last_schedule),
        json!(ctx.age()),
        json!(names),
        json!(images),
        json!(format_label_selector(
            ctx.at("/spec/jobTemplate/spec/selector")
        )),
    ]
}
