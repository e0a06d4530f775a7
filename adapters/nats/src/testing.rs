//! A NATS server with JetStream for test suites: `NATS_URL` when it is set, otherwise a
//! throwaway `nats-server -js` on a free loopback port with a temporary store directory,
//! stopped when the returned [`Server`] is dropped. Without either, the harness fails
//! (suites never skip).

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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| HarnessError(format!("no free port: {e}")))?
            .port();
        let dir = std::env::temp_dir().join(format!("annals-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError(format!("no store directory: {e}")))?;
        let binary = ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|candidate| Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()))
            .ok_or_else(|| HarnessError("nats-server is not installed".to_owned()))?;
        let process = spawn(binary, port, &dir)?;
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
        *process = spawn(self.binary, self.port, dir)?;
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

fn spawn(binary: &str, port: u16, dir: &std::path::Path) -> Result<Child, HarnessError> {
    Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| HarnessError(format!("nats-server did not start: {e}")))
}
