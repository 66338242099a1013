//! `tatami image`: the node's images, as `docker image` shows them.

use crate::cli::{ImageArgs, ImageCommand, RegistryArgs};
use crate::datadir::DataDir;
use anyhow::Context;
use images::{ImageStore, Progress, ProgressState, RegistryConfig};
use std::io::{IsTerminal, Write};

/// The registry settings of `--registry-mirror HOST=URL` and `--insecure-registry HOST`.
pub fn registry_config(args: &RegistryArgs) -> anyhow::Result<RegistryConfig> {
    let mut mirrors = Vec::new();
    for m in &args.registry_mirror {
        let (host, url) = m
            .split_once('=')
            .with_context(|| format!("--registry-mirror {m:?}: expected HOST=URL"))?;
        mirrors.push((host.to_string(), url.to_string()));
    }
    Ok(RegistryConfig {
        mirrors,
        insecure: args.insecure_registry.clone(),
    })
}

/// Opens the image store of a data dir.
pub fn open_store(dir: &DataDir, registries: &RegistryArgs) -> anyhow::Result<ImageStore> {
    let store = ImageStore::open(&dir.images(), registry_config(registries)?)
        .with_context(|| format!("cannot open the image store in {}", dir.images().display()))?;
    // With a mirror given, pull only from it: the machine may have no other network, and the
    // mirror's answer (e.g. not found) is the one worth showing.
    if !registries.registry_mirror.is_empty() {
        store.set_default_endpoint(false);
    }
    Ok(store)
}

/// Runs one image subcommand.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let dir = DataDir::resolve(args.data.data_dir.as_deref())?;
    dir.create()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = open_store(&dir, &args.registries)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        match args.command {
            ImageCommand::Import { file } => {
                for image in store
                    .import(&file)
                    .await
                    .with_context(|| format!("cannot import {}", file.display()))?
                {
                    println!("imported {} {}", image.tags.join(","), image.id);
                }
            }
            ImageCommand::ImportRootfs { source, name } => {
                let image = store
                    .import_rootfs(&source, &name)
                    .await
                    .with_context(|| format!("cannot import {}", source.display()))?;
                println!("imported {} {}", image.tags.join(","), image.id);
            }
            ImageCommand::Ls => {
                let mut rows = vec![[
                    "IMAGE".to_string(),
                    "TAG".to_string(),
                    "IMAGE ID".to_string(),
                    "SIZE".to_string(),
                ]];
                for image in store.list()? {
                    let short = image
                        .id
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect::<String>();
                    let size = human_size(image.size);
                    if image.tags.is_empty() {
                        rows.push([
                            "<none>".into(),
                            "<none>".into(),
                            short.clone(),
                            size.clone(),
                        ]);
                    }
                    for tag in &image.tags {
                        let (repo, t) = split_tag(tag);
                        rows.push([repo, t, short.clone(), size.clone()]);
                    }
                }
                print_table(&rows);
            }
            ImageCommand::Pull { reference } => {
                let tty = std::io::stderr().is_terminal();
                let show = move |p: Progress| show_progress(&p, tty);
                let image = store.pull_with_progress(&reference, None, &show).await?;
                eprintln!();
                println!(
                    "{} {}",
                    image.tags.first().cloned().unwrap_or(reference),
                    image.id
                );
            }
            ImageCommand::Rm { reference } => {
                store
                    .remove(&reference)
                    .await
                    .with_context(|| format!("cannot remove {reference}"))?;
                println!("Untagged: {reference}");
            }
        }
        Ok(())
    })
}

fn show_progress(p: &Progress, tty: bool) {
    let short: String = p
        .digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect();
    let state = match p.state {
        ProgressState::Exists => "Already exists".to_string(),
        ProgressState::Downloading => format!(
            "Downloading {} / {}",
            human_size(p.done),
            human_size(p.total)
        ),
        ProgressState::Unpacking => "Extracting".to_string(),
        ProgressState::Done => "Pull complete".to_string(),
    };
    let mut err = std::io::stderr();
    if tty {
        let _ = write!(err, "\r\x1b[2K{short}: {state}");
    } else if !matches!(p.state, ProgressState::Downloading) {
        let _ = writeln!(err, "{short}: {state}");
    }
}

fn split_tag(reference: &str) -> (String, String) {
    match reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((repo, tag)) => (repo.to_string(), tag.to_string()),
        None => (reference.to_string(), "<none>".to_string()),
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

fn print_table(rows: &[[String; 4]]) {
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = (0..4)
            .map(|i| format!("{:w$}", r[i], w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}
