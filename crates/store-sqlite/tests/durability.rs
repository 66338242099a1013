//! An acknowledged write survives `kill -9`: a child process (this test binary, re-run with an
//! environment variable) creates keys concurrently and prints each acknowledged key; the parent
//! kills it mid-way, reopens the database and checks that every printed key is there.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use store::Datastore;
use store_sqlite::SqliteStore;

const CHILD_ENV: &str = "STORE_SQLITE_DURABILITY_CHILD_DB";
const ACK: &str = "ACK ";

/// In the child: write until killed. A no-op in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = std::sync::Arc::new(SqliteStore::open(std::path::Path::new(&path)).unwrap());
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/durable/{writer}/{i}");
                let rev = store.create(&key, key.as_bytes().to_vec()).await.unwrap();
                // println! takes the stdout lock per line, so lines from tasks never interleave.
                println!("{ACK}{key} {rev}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 2_000 {
        let line = lines.next().expect("the child stopped early").unwrap();
        if let Some(ack) = line.strip_prefix(ACK) {
            acked.push(ack.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Lines already written before the kill were acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(ack) = line.strip_prefix(ACK) {
            acked.push(ack.to_owned());
        }
    }
    child.wait().unwrap();

    let store = SqliteStore::open(&path).unwrap();
    let mut last_acked = 0;
    for ack in &acked {
        let (key, rev) = ack.rsplit_once(' ').unwrap();
        let rev: i64 = rev.parse().unwrap();
        let (_, kv) = store.get(key).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged key {key} lost"));
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision),
            (key.as_bytes(), rev)
        );
        last_acked = last_acked.max(rev);
    }
    let current = store.current_revision().await.unwrap();
    assert!(
        current >= last_acked,
        "revision went back from {last_acked} to {current}"
    );
    let next = store.create("/after-crash", Vec::new()).await.unwrap();
    assert!(next > current);
    eprintln!(
        "{} acknowledged writes survived; revision {current}",
        acked.len()
    );
}
