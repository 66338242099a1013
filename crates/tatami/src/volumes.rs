//! `tatami volumes`: every volume of the Pods on this node, where it lives on the node, how
//! big it is and who mounts it (no other tool shows this; the tutorial's readers want to see
//! where their data is).

use crate::cli::VolumesArgs;
use crate::datadir::DataDir;
use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use node::volumes::VolumeInfo;

/// Prints the table (or JSON) of the running cluster's volumes.
pub fn run(args: VolumesArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data.data_dir.as_deref())?;
    if crate::down::running_pid(&dir.pid_file()).is_none() {
        anyhow::bail!(
            "no cluster is running on {}: start one with `tatami up`",
            dir.0.display()
        );
    }
    let node_name = std::fs::read_to_string(dir.node_name())
        .context("cannot read the node's name")?
        .trim()
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let pods = rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(dir.kubeconfig())
            .context("cannot read the kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .context("cannot configure the API client")?;
        let client = kube::Client::try_from(config).context("cannot make the API client")?;
        let api: Api<Pod> = Api::all(client);
        let params = ListParams::default().fields(&format!("spec.nodeName={node_name}"));
        anyhow::Ok(
            api.list(&params)
                .await
                .context("cannot list the Pods")?
                .items,
        )
    })?;
    let rows: Vec<(String, VolumeInfo)> = pods
        .iter()
        .flat_map(|p| {
            let name = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            node::volumes::describe(&dir.node(), p)
                .into_iter()
                .map(move |v| (name.clone(), v))
        })
        .collect();
    if args.output.as_deref() == Some("json") {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(pod, v)| {
                let mut item = serde_json::to_value(v).unwrap_or_default();
                item["pod"] = serde_json::json!(pod);
                item
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"volumes": items}))?
        );
        return Ok(());
    }
    if let Some(other) = args.output.as_deref().filter(|o| *o != "table") {
        anyhow::bail!("unknown output format {other:?}: use table or json");
    }
    print!("{}", table(&rows));
    Ok(())
}

/// The rows, aligned under kubectl-style headers.
fn table(rows: &[(String, VolumeInfo)]) -> String {
    let mut lines = vec![[
        "POD".to_string(),
        "VOLUME".into(),
        "KIND".into(),
        "MEDIUM".into(),
        "SIZE".into(),
        "NODE PATH".into(),
        "MOUNTS".into(),
    ]];
    for (pod, v) in rows {
        let mounts: Vec<String> = v
            .mounts
            .iter()
            .map(|m| {
                let mut how = if m.read_only { "ro" } else { "rw" }.to_string();
                if let Some(sub) = &m.sub_path {
                    how.push_str(&format!(",subPath={sub}"));
                }
                format!("{}:{}({how})", m.container, m.path)
            })
            .collect();
        lines.push([
            pod.clone(),
            v.volume.clone(),
            v.kind.clone(),
            v.medium.to_string(),
            v.used_bytes.map(human).unwrap_or_else(|| "-".into()),
            v.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into()),
            if mounts.is_empty() {
                "-".into()
            } else {
                mounts.join(" ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 6 {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Bytes as `ls -sh` shows them (`0`, `512`, `4.0K`, `1.5M`).
fn human(bytes: u64) -> String {
    let units = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_ls() {
        assert_eq!(human(0), "0");
        assert_eq!(human(512), "512");
        assert_eq!(human(4096), "4.0K");
        assert_eq!(human(1_572_864), "1.5M");
    }
}
