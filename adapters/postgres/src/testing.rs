//! Test support (feature `testing`): a PostgreSQL server for test suites and benchmarks,
//! and stores in fresh schemas on it.
//!
//! [`database_url`] uses `DATABASE_URL` when it is set. Otherwise it starts a throwaway
//! server from the machine's PostgreSQL binaries (`initdb` and `pg_ctl` on `PATH`, or
//! the newest `/usr/lib/postgresql/*/bin`), once per process: a fresh cluster in a
//! temporary directory, on a free port of 127.0.0.1, with its unix socket in that
//! directory and `fsync=off`. A watchdog process stops the server and deletes the
//! directory as soon as the test process ends, however it ends. When the process runs as
//! root (CI containers), `initdb` and `pg_ctl` run as the `postgres` OS user through
//! `runuser`, as PostgreSQL refuses to run as root.
//!
//! ```no_run
//! # async fn run() -> Result<(), annals_postgres::testing::HarnessError> {
//! // Each test gets its own schema, so tests run in parallel on one server.
//! let store = annals_postgres::testing::fresh_store().await?;
//! # Ok(()) }
//! ```

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals::StoreError;

use crate::{PostgresStore, SchemaName};

/// Prefix of the schemas [`fresh_store`] creates; old ones are dropped on the next run.
const SCHEMA_PREFIX: &str = "annals_test_";

/// Schemas older than this, left by earlier runs on a `DATABASE_URL` server, are dropped.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Why no test database could be provided.
///
/// ```no_run
/// # async fn run() {
/// match annals_postgres::testing::fresh_store().await {
///     Ok(store) => println!("testing in schema {}", store.schema()),
///     Err(error) => eprintln!("no test database: {error}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// No PostgreSQL server could be started.
    #[error(
        "no PostgreSQL for the tests: {0}. Set DATABASE_URL=postgres://user@host:port/db, or install the \
         PostgreSQL server binaries (e.g. `apt-get install -y postgresql`) so a throwaway server can be started"
    )]
    Server(String),
    /// The server did not accept the connection or the migration.
    #[error("the test database at {url} is not usable: {source}")]
    Store {
        /// Where the harness connected, without password.
        url: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
}

/// The URL of the test server: `DATABASE_URL`, or a throwaway server started on first use.
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // A writer of its own on the test server, e.g. with other connection settings.
/// let url = annals_postgres::testing::database_url()?;
/// let options = annals_postgres::PostgresStore::connect_options(&url)?.options([("annals.notify", "off")]);
/// # Ok(()) }
/// ```
pub fn database_url() -> Result<String, HarnessError> {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()) {
        return Ok(url);
    }
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER.get_or_init(|| ThrowawayServer::start().map(|s| s.url)).clone().map_err(HarnessError::Server)
}

/// A migrated store in a new schema `annals_test_<time>_<random>` on the test server, with
/// a pool of its own (pools belong to the tokio runtime that created them).
///
/// ```no_run
/// // The store every case of the conformance suites runs on.
/// annals::conformance_tests!(async {
///     annals_postgres::testing::fresh_store().await.expect("a PostgreSQL store in a fresh schema")
/// });
/// # fn main() {}
/// ```
pub async fn fresh_store() -> Result<PostgresStore, HarnessError> {
    let url = database_url()?;
    let store_error = |source| HarnessError::Store { url: redact(&url), source };
    let store = PostgresStore::connect_with(PostgresStore::pool_options().max_connections(8), &url)
        .await
        .map_err(store_error)?;
    static CLEANED: AtomicBool = AtomicBool::new(false);
    if !CLEANED.swap(true, Ordering::SeqCst) {
        drop_stale_schemas(&store).await.map_err(store_error)?;
    }
    let store = store.with_schema(fresh_schema_name());
    store.migrate().await.map_err(store_error)?;
    Ok(store)
}

/// Writes one event row straight into `store`'s table, as another tool or a hand-written
/// `INSERT` would, without annals' checks: for tests of rows annals did not write.
/// `payload` is JSON text as the `json` column takes it (kept exactly, whitespace and
/// all); the event is `cart.item_added` at schema version 1 with a fresh id.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = annals_postgres::testing::fresh_store().await?;
/// annals_postgres::testing::insert_event_row(&store, "cart-1", 1, r#"{ "sku": "tea" }"#).await?;
/// # Ok(()) }
/// ```
pub async fn insert_event_row(
    store: &PostgresStore,
    stream: &str,
    version: i64,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {}.events (stream_id, stream_version, event_type, event_version, payload, event_id) \
         VALUES ($1, $2, 'cart.item_added', 1, $3::json, gen_random_uuid())",
        store.schema().quoted()
    ))
    .bind(stream)
    .bind(version)
    .bind(payload)
    .execute(store.pool())
    .await
    .map(|_| ())
}

/// A schema name no other test uses: `annals_test_<unix seconds>_<random>`.
///
/// ```
/// let name = annals_postgres::testing::fresh_schema_name();
/// assert!(name.as_str().starts_with("annals_test_"));
/// assert_ne!(name, annals_postgres::testing::fresh_schema_name());
/// ```
pub fn fresh_schema_name() -> SchemaName {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let random = uuid::Uuid::now_v7().simple().to_string();
    let tail = random.get(random.len().saturating_sub(12)..).unwrap_or("0");
    SchemaName::new(format!("{SCHEMA_PREFIX}{secs}_{tail}")).unwrap_or_default()
}

/// Drops test schemas that earlier runs left behind more than an hour ago.
async fn drop_stale_schemas(store: &PostgresStore) -> Result<(), StoreError> {
    let operation = || "dropping stale test schemas".to_owned();
    let names: Vec<String> = sqlx::query_scalar(crate::sql::SCHEMAS_STARTING_WITH)
        .bind(SCHEMA_PREFIX)
        .fetch_all(store.pool())
        .await
        .map_err(|e| crate::error::store_error(operation(), e))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for name in names {
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        let Some(created) = created else { continue };
        let Ok(schema) = SchemaName::new(name) else { continue };
        if now.saturating_sub(created) > STALE_AFTER.as_secs() {
            sqlx::raw_sql(&crate::sql::drop_schema(&schema))
                .execute(store.pool())
                .await
                .map_err(|e| crate::error::store_error(operation(), e))?;
        }
    }
    Ok(())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

struct ThrowawayServer {
    url: String,
}

impl ThrowawayServer {
    fn start() -> Result<Self, String> {
        let bin = find_binaries()?;
        let as_postgres = running_as_root();
        let base = std::env::temp_dir().join(format!(
            "annals-pg-{}-{}",
            std::process::id(),
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        if as_postgres {
            run(
                Command::new(system_tool("chown")).arg("postgres:postgres").arg(&base),
                "chown the server directory to postgres",
            )?;
        }
        let data = base.join("data");
        // The watchdog first: whatever happens from here on, the directory goes away.
        spawn_watchdog(&bin, &base, &data, as_postgres)?;
        run(
            pg_command(&bin, "initdb", as_postgres).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ]),
            "initdb",
        )?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut settings = format!(
                "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
                base.display()
            );
            // `bin` may be a directory of symlinks (/usr/local/bin): look beside the real binary.
            let real_bin = fs::canonicalize(bin.join("postgres")).ok();
            let lib = real_bin.as_deref().and_then(Path::parent).and_then(Path::parent).map(|d| d.join("lib"));
            if lib.is_some_and(|lib| lib.join("pg_stat_statements.so").exists()) {
                settings.push_str(
                    " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on",
                );
            }
            let started = run(
                pg_command(&bin, "pg_ctl", as_postgres)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(base.join("server.log"))
                    .args(["-w", "-t", "60", "-o", &settings, "start"]),
                "pg_ctl start",
            );
            match started {
                Ok(()) => return Ok(ThrowawayServer { url: format!("postgres://postgres@127.0.0.1:{port}/postgres") }),
                Err(e) => {
                    let log = fs::read_to_string(base.join("server.log")).unwrap_or_default();
                    last_error = format!("{e}; server log:\n{log}");
                }
            }
        }
        Err(last_error)
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_binaries() -> Result<PathBuf, String> {
    let has_all = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_all(dir)) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.split('.').next()?.parse::<u32>().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .filter(|(_, dir)| has_all(dir))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        "found no `initdb`, `pg_ctl` and `postgres` on PATH or under /usr/lib/postgresql/*/bin".to_owned()
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `name` from `PATH`, or from the system directories a minimal `PATH` may lack
/// (`runuser` lives in `/usr/sbin`).
fn system_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `bin/program`, run as the `postgres` OS user when `as_postgres`.
fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let path = bin.join(program);
    if as_postgres {
        let mut command = Command::new(system_tool("runuser"));
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("{what} could not run: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

/// A shell in its own session that waits for this process to end, then stops the server
/// (`pg_ctl stop -m immediate`) and deletes its directory.
fn spawn_watchdog(bin: &Path, base: &Path, data: &Path, as_postgres: bool) -> Result<(), String> {
    let script = r#"
        parent="$1"; pg_ctl="$2"; data="$3"; base="$4"; as_postgres="$5"; runuser="$6"
        while kill -0 "$parent" 2>/dev/null; do sleep 1; done
        if [ -f "$data/postmaster.pid" ]; then
            if [ "$as_postgres" = yes ]; then
                "$runuser" -u postgres -- "$pg_ctl" -D "$data" stop -m immediate
            else
                "$pg_ctl" -D "$data" stop -m immediate
            fi
        fi
        rm -rf "$base"
    "#;
    let setsid = system_tool("setsid");
    let mut command = if setsid.is_absolute() {
        let mut c = Command::new(setsid);
        c.arg("sh");
        c
    } else {
        Command::new("sh")
    };
    command
        .arg("-c")
        .arg(script)
        .arg("annals-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(base)
        .arg(if as_postgres { "yes" } else { "no" })
        .arg(system_tool("runuser"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the server watchdog: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_schema_names_are_valid_and_distinct() {
        let (a, b) = (fresh_schema_name(), fresh_schema_name());
        assert!(a.as_str().starts_with(SCHEMA_PREFIX));
        assert_ne!(a, b);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
