//! Crash test: writer processes are killed (SIGKILL) in the middle of appending, and the
//! file they leave behind holds whole appends only, a gap-free feed, every acknowledged
//! append, and takes new appends.
//!
//! The test re-executes its own test binary as the writers: with `CHILD` set in its
//! environment, the test function is a writer that appends batches of `BATCH` events
//! from several tasks until it is killed, printing `ack <task> <batch>` after each
//! acknowledged append. Each round starts two writers on one file (so they also contend
//! for the write lock across processes), kills them one after the other at random
//! moments, reopens the file and checks it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::store::{Checkpoint, EventFeed, Filter};
use annals::{EventStore, ExpectedVersion, NewEvent};
use annals_sqlite::testing::TempDir;
use annals_sqlite::SqliteStore;
use futures::TryStreamExt;
use serde_json::json;

/// The environment variable that turns the test into a writer: the database's path.
const CHILD: &str = "ANNALS_SQLITE_CRASH_WRITER";
/// Which writer, in the child's environment.
const WRITER: &str = "ANNALS_SQLITE_CRASH_WRITER_NAME";
/// Events per append.
const BATCH: u64 = 4;
/// Writing tasks per writer process.
const TASKS: u64 = 3;
/// Streams the writers share.
const STREAMS: u64 = 5;
const ROUNDS: u32 = 5;

#[test]
fn killed_writers_leave_whole_appends_and_a_gap_free_feed() {
    if let Ok(path) = std::env::var(CHILD) {
        write_until_killed(Path::new(&path), &std::env::var(WRITER).unwrap());
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new().unwrap();
    let path = dir.database();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async { SqliteStore::open(&path).await.unwrap().close().await });
    let mut rng = fastrand::Rng::new();
    for round in 0..ROUNDS {
        let writers = [format!("r{round}a"), format!("r{round}b")];
        let mut children = Vec::new();
        for name in &writers {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["killed_writers_leave_whole_appends_and_a_gap_free_feed", "--exact", "--nocapture"])
                .args(["--test-threads", "1"])
                .env(CHILD, &path)
                .env(WRITER, name)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let acks = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stdout = child.stdout.take().unwrap();
            let reader = {
                let acks = Arc::clone(&acks);
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        // libtest prints `test <name> ... ` before the test's own first line.
                        if line.ends_with("ready") {
                            let _ = ready_tx.send(());
                        } else if let Some(ack) = line.strip_prefix("ack ") {
                            let (task, batch) = ack.split_once(' ').unwrap();
                            acks.lock().unwrap().push((task.to_owned(), batch.parse().unwrap()));
                        }
                    }
                })
            };
            ready_rx.recv_timeout(Duration::from_secs(10)).expect("the writer did not start");
            children.push((child, reader, acks));
        }
        // Kill each writer at a random moment, the second some time after the first.
        let mut acknowledged = Vec::new();
        for (mut child, reader, acks) in children {
            std::thread::sleep(Duration::from_millis(rng.u64(20..250)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            reader.join().unwrap();
            acknowledged.extend(acks.lock().unwrap().drain(..));
        }
        let (events, appends) = runtime.block_on(check(&path, round, &acknowledged));
        println!(
            "round {round}: 2 writers killed after {} acknowledged appends of {BATCH} events; {appends} stored \
             (committed, not yet acknowledged: {}); {events} events in the file",
            acknowledged.len(),
            appends - acknowledged.len()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30), "the crash test took {:?}", started.elapsed());
}

/// Reopens the file after the kills and checks everything the writers left.
/// Returns the number of events in the file and of appends of this round stored.
async fn check(path: &Path, round: u32, acknowledged: &[(String, u64)]) -> (usize, usize) {
    let store = SqliteStore::open(path).await.unwrap();
    let integrity: String =
        annals_sqlite::sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
    assert_eq!(integrity, "ok");

    // The feed from the start: every event once, in position order, without gaps.
    let mut feed = Vec::new();
    let mut at = Checkpoint::START;
    loop {
        let batch = store.read_feed(at, &Filter::all(), 1000).await.unwrap();
        if batch.next == at {
            break;
        }
        at = batch.next;
        feed.extend(batch.events.into_iter().map(|e| e.envelope));
    }
    let positions: Vec<u64> = feed.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=feed.len() as u64).collect::<Vec<_>>(), "the feed is not gap-free in position order");
    let ids: HashSet<_> = feed.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), feed.len(), "an event appears twice");

    // Every stream: versions 1..=n, a whole number of appends, and read_stream agrees.
    let mut streams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &feed {
        streams.entry(&e.stream_id).or_default().push(e.stream_version);
    }
    for (stream, versions) in &streams {
        assert_eq!(*versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "versions of `{stream}`");
        assert_eq!(versions.len() as u64 % BATCH, 0, "`{stream}` holds part of an append");
        let read: Vec<_> = store.read_stream(stream, (..).into()).try_collect().await.unwrap();
        assert_eq!(read.len(), versions.len());
    }

    // Every append is whole: its events sit together, at consecutive versions and
    // positions. Each writing task's appends are 0, 1, 2, ... without a hole, and every
    // acknowledged append is stored.
    let mut appends: BTreeMap<(String, u64), Vec<&annals::Envelope>> = BTreeMap::new();
    for e in &feed {
        let task = e.payload["task"].as_str().unwrap().to_owned();
        appends.entry((task, e.payload["batch"].as_u64().unwrap())).or_default().push(e);
    }
    for ((task, batch), events) in &appends {
        assert_eq!(events.len() as u64, BATCH, "append {batch} of `{task}` is not whole");
        assert!(events.windows(2).all(|w| w[1].global_position == w[0].global_position + 1
            && w[1].stream_version == w[0].stream_version + 1
            && w[1].stream_id == w[0].stream_id));
    }
    let mut by_task: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for (task, batch) in appends.keys() {
        by_task.entry(task).or_default().insert(*batch);
    }
    for (task, batches) in &by_task {
        assert_eq!(batches.len() as u64, batches.last().map_or(0, |last| last + 1), "`{task}` has a missing append");
    }
    for (task, batch) in acknowledged {
        assert!(appends.contains_key(&(task.clone(), *batch)), "acknowledged append {batch} of `{task}` is lost");
    }
    let this_round = appends.keys().filter(|(task, _)| task.starts_with(&format!("r{round}"))).count();
    assert!(this_round > 0, "the writers of round {round} stored nothing");

    // The store takes new appends after the crash, to an old stream and to a new one.
    let probe = |stream: &str| {
        let task = format!("probe-{round}-{stream}");
        (0..BATCH).map(|i| NewEvent::new("crash.probe", 1, json!({ "task": task, "batch": 0, "i": i }))).collect()
    };
    let (old, version) = streams.iter().next().map(|(s, v)| (s.to_string(), v.len() as u64)).unwrap();
    store.append(&old, ExpectedVersion::Exact(version), probe(&old)).await.unwrap();
    let new = format!("after-crash-{round}");
    store.append(&new, ExpectedVersion::Exact(0), probe(&new)).await.unwrap();
    store.close().await;
    (feed.len(), this_round)
}

/// The writer: appends batches from `TASKS` tasks until the process is killed (or 20 s
/// pass, should the test that started it be gone).
fn write_until_killed(path: &Path, name: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        println!("ready");
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            let task = format!("{name}-{t}");
            tasks.push(tokio::spawn(async move {
                for batch in 0u64.. {
                    let stream = format!("crash-{}", (batch + t) % STREAMS);
                    let events = (0..BATCH)
                        .map(|i| NewEvent::new("crash.written", 1, json!({ "task": task, "batch": batch, "i": i })))
                        .collect();
                    store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
                    println!("ack {task} {batch}");
                }
            }));
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(tasks)).await;
    });
}
