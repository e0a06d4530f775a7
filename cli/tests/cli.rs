//! The `annals` binary run against real stores: a SQLite file in a temporary directory and
//! a PostgreSQL schema (`DATABASE_URL`, or a throwaway server), asserting on what it
//! prints and how it exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use annals::store::{Checkpoint, CheckpointStore, ExpectedVersion};
use annals::subscription::Parked;
use annals::{EventStore, Metadata, NewEvent};
use annals_sqlite::testing::TempDir;
use annals_sqlite::SqliteStore;
use futures::StreamExt;
use serde_json::{json, Value};

fn annals(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals")).arg("--url").arg(url).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("cart.item_added", 1, json!({ "sku": format!("sku-{n}"), "qty": n }))
}

/// A migrated SQLite store with `cart-1` (2 events), `cart-2` (1) and `order-1` (1), and
/// its URL.
async fn sqlite() -> (TempDir, SqliteStore, String) {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.database().display());
    let migrated = annals(&url, &["migrate"]);
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let store = SqliteStore::open(dir.database()).await.unwrap();
    store.append("cart-1", ExpectedVersion::Exact(0), vec![event(1), event(2)]).await.unwrap();
    let correlated = event(3).with_metadata(Metadata::default().with("user", "ann"));
    store.append("cart-2", ExpectedVersion::Exact(0), vec![correlated]).await.unwrap();
    store.append("order-1", ExpectedVersion::Exact(0), vec![event(4)]).await.unwrap();
    (dir, store, url)
}

#[tokio::test]
async fn streams_list_and_show_and_the_feed_read_back_what_was_stored() {
    let (_dir, _store, url) = sqlite().await;
    let listed = stdout(&annals(&url, &["streams", "list"]));
    let ids: Vec<&str> = listed.lines().map(|line| line.split('\t').next().unwrap()).collect();
    assert_eq!(ids, ["cart-1", "cart-2", "order-1"], "{listed}");
    assert!(listed.lines().next().unwrap().contains("\tv2\t"), "{listed}");
    let carts = json_lines(&annals(&url, &["--json", "streams", "list", "--category", "cart"]));
    assert_eq!(carts.iter().map(|s| s["stream_id"].as_str().unwrap()).collect::<Vec<_>>(), ["cart-1", "cart-2"]);

    let shown = json_lines(&annals(&url, &["--json", "stream", "show", "cart-1"]));
    assert_eq!(shown.len(), 2);
    assert_eq!((shown[1]["stream_version"].as_u64(), shown[1]["payload"]["qty"].as_u64()), (Some(2), Some(2)));
    let until_one = json_lines(&annals(&url, &["--json", "stream", "show", "cart-1", "--at", "1"]));
    assert_eq!(until_one.len(), 1);
    let text = stdout(&annals(&url, &["stream", "show", "cart-2"]));
    assert!(text.contains("cart.item_added") && text.contains("\"user\":\"ann\""), "{text}");

    let feed = json_lines(&annals(&url, &["--json", "tail"]));
    let order: Vec<&str> = feed.iter().map(|e| e["stream_id"].as_str().unwrap()).collect();
    assert_eq!(order, ["cart-1", "cart-1", "cart-2", "order-1"], "commit order");
    let after_two = json_lines(&annals(&url, &["--json", "tail", "--after", feed[1]["checkpoint"].as_str().unwrap()]));
    assert_eq!(after_two.len(), 2);
    let limited = json_lines(&annals(&url, &["--json", "tail", "--category", "cart", "--limit", "1"]));
    assert_eq!(limited.len(), 1);
}

#[tokio::test]
async fn consumers_and_their_dead_letters_are_listed_and_skipped() {
    let (_dir, store, url) = sqlite().await;
    let batch = store
        .read_stream("cart-2", annals::VersionRange::ALL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let mut transaction = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut transaction, "cart_views", None, Checkpoint::from_parts(0, 4)).await.unwrap());
    let poison = annals::store::FeedEvent::new(Checkpoint::from_parts(0, 3), batch[0].clone());
    store.park(&mut transaction, "cart_views", &Parked::new(poison, "refused for now", None)).await.unwrap();
    store.commit(transaction).await.unwrap();

    let consumers = stdout(&annals(&url, &["consumers"]));
    assert!(consumers.starts_with("cart_views\t0:4\t0 behind\t"), "{consumers}");
    let parked = json_lines(&annals(&url, &["--json", "dead-letters", "list", "cart_views"]));
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0]["reason"], "refused for now");
    let id = parked[0]["event"]["envelope"]["event_id"].as_str().unwrap().to_owned();
    stdout(&annals(&url, &["dead-letters", "skip", "cart_views", &id]));
    assert!(stdout(&annals(&url, &["dead-letters", "list", "cart_views"])).is_empty());
    let again = annals(&url, &["dead-letters", "skip", "cart_views", &id]);
    assert_eq!(again.status.code(), Some(3), "nothing left to skip");
}

#[tokio::test]
async fn failures_have_their_exit_codes() {
    let (_dir, _store, url) = sqlite().await;
    let missing = annals(&url, &["stream", "show", "cart-404"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cart-404"));
    assert_eq!(annals("mysql://x", &["consumers"]).status.code(), Some(1));
    assert_eq!(annals(&url, &["tail", "--after", "soon"]).status.code(), Some(2));
    assert_eq!(annals(&url, &["no-such-command"]).status.code(), Some(2));
}

/// `tail --follow` prints what was there, then an event appended after it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follow_sees_an_event_appended_after_it_started() {
    let (_dir, store, url) = sqlite().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["--url", &url, "--json", "tail", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    for _ in 0..4 {
        received.recv_timeout(Duration::from_secs(20)).expect("the events stored before it started");
    }
    let late = store.append("cart-9", ExpectedVersion::Exact(0), vec![event(9)]).await.unwrap();
    let line = received.recv_timeout(Duration::from_secs(20)).expect("the event appended after it started");
    let _ = child.kill();
    let _ = child.wait();
    let printed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(printed["event_id"].as_str().unwrap(), late[0].event_id.to_string());
}

/// The same binary on PostgreSQL, in a schema of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_in_a_schema() {
    let store = annals_postgres::testing::fresh_store().await.unwrap();
    let url = annals_postgres::testing::database_url().unwrap();
    let schema = store.schema().as_str().to_owned();
    store.append("cart-1", ExpectedVersion::Exact(0), vec![event(1), event(2)]).await.unwrap();
    let migrated = annals(&url, &["--schema", &schema, "migrate"]);
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let listed = json_lines(&annals(&url, &["--schema", &schema, "--json", "streams", "list"]));
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["stream_id"].as_str(), listed[0]["version"].as_u64()), (Some("cart-1"), Some(2)));
    let feed = json_lines(&annals(&url, &["--schema", &schema, "--json", "tail"]));
    assert_eq!(feed.len(), 2);
    let checkpoint: Checkpoint = feed[1]["checkpoint"].as_str().unwrap().parse().unwrap();
    assert!(checkpoint > Checkpoint::START);
}

#[tokio::test]
async fn events_of_a_correlation_id_a_stream_as_of_a_time_and_a_consumer_reset() {
    let (_dir, store, url) = sqlite().await;
    let request = uuid::Uuid::now_v7();
    let tagged = event(7).with_metadata(Metadata::default().correlation_id(request));
    store.append("cart-1", ExpectedVersion::Exact(2), vec![tagged]).await.unwrap();
    let other = event(8).with_metadata(Metadata::default().correlation_id(request));
    store.append("order-1", ExpectedVersion::Exact(1), vec![other]).await.unwrap();
    let found = json_lines(&annals(&url, &["--json", "events", "--correlation", &request.to_string()]));
    let places: Vec<(&str, u64)> =
        found.iter().map(|e| (e["stream_id"].as_str().unwrap(), e["stream_version"].as_u64().unwrap())).collect();
    assert_eq!(places, [("cart-1", 3), ("order-1", 2)]);
    let unknown = annals(&url, &["events", "--correlation", &uuid::Uuid::now_v7().to_string()]);
    assert_eq!(unknown.status.code(), Some(3));

    // As of the second event's time: the first two events.
    let shown = json_lines(&annals(&url, &["--json", "stream", "show", "cart-1"]));
    let second = shown[1]["recorded_at"].as_str().unwrap().to_owned();
    let as_of = json_lines(&annals(&url, &["--json", "stream", "show", "cart-1", "--as-of", &second]));
    assert_eq!(as_of.len(), 2);

    let mut transaction = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut transaction, "views", None, Checkpoint::from_parts(0, 3)).await.unwrap());
    store.commit(transaction).await.unwrap();
    stdout(&annals(&url, &["consumers", "reset", "views"]));
    assert_eq!(store.load_checkpoint("views").await.unwrap(), None, "it starts again from the first event");
    assert!(stdout(&annals(&url, &["feed", "blockers"])).contains("nothing holds"));
}

/// `feed blockers` names a transaction of the store's database that has written, is still
/// open, and holds the feed back (an event committed after it started), with its pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_blockers_names_an_open_writing_transaction() {
    use annals_postgres::sqlx;
    let store = annals_postgres::testing::fresh_store().await.unwrap();
    let url = annals_postgres::testing::database_url().unwrap();
    let schema = store.schema().as_str().to_owned();
    let mut open = store.pool().begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *open).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *open).await.unwrap();
    store.append("cart-1", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap(); // held back behind it
    let blockers = json_lines(&annals(&url, &["--schema", &schema, "--json", "feed", "blockers"]));
    assert!(blockers.iter().any(|b| b["pid"].as_i64() == Some(i64::from(pid))), "{blockers:?}");
    open.rollback().await.unwrap();
}

/// `consumers` counts the events after each checkpoint and names a blue/green live
/// pointer's generation; `consumers watch` follows a consumer until it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_watch_follows_a_consumer_until_it_has_caught_up() {
    let (_dir, store, url) = sqlite().await;
    let put = |name: &'static str, from: Option<u64>, to: u64| {
        let store = store.clone();
        async move {
            let mut transaction = store.begin().await.unwrap();
            let from = from.map(|minor| Checkpoint::from_parts(0, minor));
            assert!(store.move_checkpoint(&mut transaction, name, from, Checkpoint::from_parts(0, to)).await.unwrap());
            store.commit(transaction).await.unwrap();
        }
    };
    put("views@g2", None, 1).await;
    put("views@live", None, 2).await;
    let listed = stdout(&annals(&url, &["consumers"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("views@g2\t0:1\t3 behind\t"), "{listed}");
    assert!(lines[1].starts_with("views@live\tlive generation 2\t"), "{listed}");
    let json = json_lines(&annals(&url, &["--json", "consumers"]));
    assert_eq!(json[0]["behind"], 3);

    let mut watch = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["--url", &url, "--json", "consumers", "watch", "views@g2", "--interval", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = mpsc::channel();
    let reader = BufReader::new(watch.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines() {
            let _ = lines.send(serde_json::from_str::<Value>(&line.unwrap()).unwrap());
        }
    });
    let next = || seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let first = next();
    assert_eq!((first["behind"].as_u64(), first["done"].as_u64()), (Some(3), Some(0)), "{first}");
    put("views@g2", Some(1), 3).await;
    let mut line = next();
    while line["behind"] == 3 {
        line = next();
    }
    assert_eq!((line["behind"].as_u64(), line["done"].as_u64()), (Some(1), Some(2)), "{line}");
    put("views@g2", Some(3), 4).await;
    while line.get("note").is_none() {
        line = next();
    }
    let note = line["note"].as_str().unwrap();
    assert!(note.contains("caught up at 0:4 (3 events"), "{note}");
    assert!(watch.wait().unwrap().success());
    assert_eq!(annals(&url, &["consumers", "watch", "nobody"]).status.code(), Some(3));
}

/// On PostgreSQL the count follows the feed's order: events after the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_on_postgres_count_the_events_after_their_checkpoint() {
    use annals::store::EventFeed;
    let store = annals_postgres::testing::fresh_store().await.unwrap();
    let url = annals_postgres::testing::database_url().unwrap();
    let schema = store.schema().as_str().to_owned();
    let stored = store.append("cart-1", ExpectedVersion::Exact(0), vec![event(1), event(2)]).await.unwrap();
    store.append("cart-2", ExpectedVersion::Exact(0), vec![event(3)]).await.unwrap();
    let at = store.checkpoint_of(&stored[0]).await.unwrap();
    let mut transaction = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut transaction, "views", None, at).await.unwrap());
    store.commit(transaction).await.unwrap();
    let listed = json_lines(&annals(&url, &["--schema", &schema, "--json", "consumers"]));
    assert_eq!((listed[0]["name"].as_str(), listed[0]["behind"].as_u64()), (Some("views"), Some(2)), "{listed:?}");
}

/// Payload text written by hand (newlines and tabs between tokens, a number beyond `f64`
/// that PostgreSQL's `json` accepts) prints on one line per event, in both outputs; the
/// unreadable one as a JSON string of its text, not a failed command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_one_line_each_whatever_their_stored_text() {
    let store = annals_postgres::testing::fresh_store().await.unwrap();
    let url = annals_postgres::testing::database_url().unwrap();
    let schema = store.schema().as_str().to_owned();
    for (version, payload) in [(1, "{\n\t\"sku\":\t\"tea\",\n\t\"qty\": 2\n}"), (2, r#"{"qty": 1e400}"#)] {
        annals_postgres::testing::insert_event_row(&store, "cart-h", version, payload).await.unwrap();
    }
    let text = stdout(&annals(&url, &["--schema", &schema, "stream", "show", "cart-h"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(r#"{"qty":2,"sku":"tea"}"#), "{text}");
    assert!(lines[1].contains(r#""{\"qty\": 1e400}""#), "{text}");
    let shown = json_lines(&annals(&url, &["--schema", &schema, "--json", "stream", "show", "cart-h"]));
    assert_eq!(shown[0]["payload"], json!({"sku": "tea", "qty": 2}));
    assert_eq!(shown[1]["payload"], json!(r#"{"qty": 1e400}"#));
}
