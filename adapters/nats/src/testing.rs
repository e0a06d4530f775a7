//! A NATS server with JetStream for test suites: `NATS_URL` when it is set, otherwise a
//! throwaway `nats-server -js` on a free loopback port with a temporary store directory,
//! stopped when the returned [`Server`] is dropped; or a [`Cluster`] of throwaway servers
//! with routes between them (JetStream replicated over Raft). Without a server binary the
//! harness fails (suites never skip).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why no server could be had.
#[derive(Debug, thiserror::Error)]
#[error(
    "no NATS server for the tests: {0}; set NATS_URL, or install nats-server (Debian: apt-get install nats-server)"
)]
pub struct HarnessError(String);

/// A NATS server for a test: its URL, and the process when the harness started it.
pub struct Server {
    url: String,
    process: Option<Child>,
    dir: Option<PathBuf>,
    /// The binary and port of a throwaway server, to restart it.
    binary: &'static str,
    port: u16,
}

impl Server {
    /// `NATS_URL`, or a throwaway server started for the caller.
    pub async fn start() -> Result<Server, HarnessError> {
        if let Some(url) = std::env::var("NATS_URL").ok().filter(|url| !url.trim().is_empty()) {
            return Ok(Server { url, process: None, dir: None, binary: "", port: 0 });
        }
        Self::throwaway().await
    }

    /// A throwaway server, whatever `NATS_URL` says.
    pub async fn throwaway() -> Result<Server, HarnessError> {
        let port = free_port()?;
        let dir = store_dir(port)?;
        let binary = binary()?;
        let process = spawn(binary, port, &dir, &[])?;
        let server =
            Server { url: format!("nats://127.0.0.1:{port}"), process: Some(process), dir: Some(dir), binary, port };
        server.accepting().await?;
        Ok(server)
    }

    /// Kills a throwaway server (what a crash or an outage does to its clients), keeps it
    /// down for `outage`, and starts it again on the same port and store directory.
    pub async fn restart_after(&mut self, outage: Duration) -> Result<(), HarnessError> {
        let (Some(process), Some(dir)) = (&mut self.process, &self.dir) else {
            return Err(HarnessError("only a throwaway server can be restarted".to_owned()));
        };
        let _ = process.kill();
        let _ = process.wait();
        tokio::time::sleep(outage).await;
        *process = spawn(self.binary, self.port, dir, &[])?;
        self.accepting().await
    }

    async fn accepting(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while async_nats::connect(&self.url).await.is_err() {
            if Instant::now() > deadline {
                return Err(HarnessError(format!("nats-server at {} did not accept connections in 10 s", self.url)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new client connection to it.
    pub async fn connect(&self) -> Result<async_nats::Client, HarnessError> {
        async_nats::connect(&self.url).await.map_err(|e| HarnessError(format!("cannot connect to {}: {e}", self.url)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(process) = &mut self.process {
            let _ = process.kill();
            let _ = process.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A JetStream cluster of throwaway servers on loopback, each with its own store
/// directory and cluster port, routed to all the others. Streams created with
/// `num_replicas: 3` are replicated over Raft: one node can stop without losing a message.
pub struct Cluster {
    nodes: Vec<Server>,
}

impl Cluster {
    /// `size` servers named `node-0`, `node-1`, ..., once JetStream answers on every one.
    pub async fn start(size: usize) -> Result<Cluster, HarnessError> {
        let binary = binary()?;
        // Every port bound at once before any is released, so no two are the same.
        let listeners = (0..2 * size)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HarnessError(format!("no free port: {e}")))?;
        let bound = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.port()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HarnessError(format!("no free port: {e}")))?;
        drop(listeners);
        let ports: Vec<(u16, u16)> = bound.chunks_exact(2).map(|pair| (pair[0], pair[1])).collect();
        let routes: Vec<String> = ports.iter().map(|(_, cluster)| format!("nats://127.0.0.1:{cluster}")).collect();
        let mut nodes = Vec::new();
        for (n, (port, cluster)) in ports.iter().enumerate() {
            let dir = store_dir(*port)?;
            let name = format!("node-{n}");
            let others: Vec<&str> =
                routes.iter().enumerate().filter(|(i, _)| *i != n).map(|(_, r)| r.as_str()).collect();
            let listen = format!("nats://127.0.0.1:{cluster}");
            let routes = others.join(",");
            let args = ["-n", &name, "--cluster_name", "annals", "--cluster", &listen, "--routes", &routes];
            let process = spawn(binary, *port, &dir, &args)?;
            let url = format!("nats://127.0.0.1:{port}");
            nodes.push(Server { url, process: Some(process), dir: Some(dir), binary, port: *port });
        }
        for node in &nodes {
            node.accepting().await?;
        }
        let cluster = Cluster { nodes };
        cluster.jetstream_ready().await?;
        Ok(cluster)
    }

    /// Waits until the cluster can make a stream with three replicas (a JetStream meta
    /// leader is elected and every node takes part).
    async fn jetstream_ready(&self) -> Result<(), HarnessError> {
        let client = self.connect().await?;
        let jetstream = async_nats::jetstream::new(client);
        let probe = async_nats::jetstream::stream::Config {
            name: "ANNALS_HARNESS_READY".to_owned(),
            subjects: vec!["annals-harness-ready".to_owned()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match jetstream.get_or_create_stream(probe.clone()).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(HarnessError(format!("the cluster made no replicated stream in 30 s: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let _ = jetstream.delete_stream("ANNALS_HARNESS_READY").await;
        Ok(())
    }

    /// Every node's URL, comma-separated: what a client connects to.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|node| node.url.as_str()).collect::<Vec<_>>().join(",")
    }

    /// A client that knows every node (and reconnects to another when one stops).
    pub async fn connect(&self) -> Result<async_nats::Client, HarnessError> {
        let urls = self.urls();
        let addresses = self
            .nodes
            .iter()
            .map(|node| node.url.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HarnessError(format!("a node's URL does not parse: {e}")))?;
        async_nats::connect(addresses).await.map_err(|e| HarnessError(format!("cannot connect to {urls}: {e}")))
    }

    /// Kills node `n` (SIGKILL: what a crash does) and keeps it down.
    pub fn kill(&mut self, n: usize) {
        if let Some(process) = self.nodes.get_mut(n).and_then(|node| node.process.as_mut()) {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A port nothing listens on now.
fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| HarnessError(format!("no free port: {e}")))
}

/// A fresh store directory for the server on `port`.
fn store_dir(port: u16) -> Result<PathBuf, HarnessError> {
    let dir = std::env::temp_dir().join(format!("annals-nats-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError(format!("no store directory: {e}")))?;
    Ok(dir)
}

/// The `nats-server` binary, on `PATH` or where Debian installs it.
fn binary() -> Result<&'static str, HarnessError> {
    ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|candidate| Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| HarnessError("nats-server is not installed".to_owned()))
}

fn spawn(binary: &str, port: u16, dir: &std::path::Path, args: &[&str]) -> Result<Child, HarnessError> {
    Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| HarnessError(format!("nats-server did not start: {e}")))
}
