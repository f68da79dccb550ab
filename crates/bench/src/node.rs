//! The server under test: the release `latchkey` binary started as an operator would start it,
//! configured through `LATCHKEY_*` variables, on a temporary data dir (SQLite) or a fresh
//! PostgreSQL database. The benchmark reads its memory from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Argon2id parameters the node runs with.
#[derive(Clone, Copy, Debug)]
pub struct Argon2 {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Argon2 {
    /// The server's default (OWASP's minimum): what P1–P4 measure.
    pub const PRODUCTION: Argon2 = Argon2 { memory_kib: 19_456, iterations: 2 };
    /// Cheap hashing for P5's preparation (thousands of sign-ins to open second-factor flows);
    /// P5 measures the code check and its atomic consume, which no password hash is part of.
    pub const CHEAP: Argon2 = Argon2 { memory_kib: 8, iterations: 1 };
}

pub struct Node {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub argon2: Argon2,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts `latchkey serve` and waits for `/readyz`; returns the node and the time from spawn
    /// to the first 200.
    pub async fn start(bin: &Path, data_dir: &Path, database_url: Option<&str>, argon2: Argon2) -> anyhow::Result<(Node, Duration)> {
        Self::start_with(bin, data_dir, database_url, argon2, &[]).await
    }

    /// As [`Node::start`], with more of the server's settings as environment variables.
    pub async fn start_with(bin: &Path, data_dir: &Path, database_url: Option<&str>, argon2: Argon2, env: &[(&str, String)]) -> anyhow::Result<(Node, Duration)> {
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LATCHKEY_DATA_DIR", data_dir)
            .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
            .env("LATCHKEY_ARGON2__MEMORY_KIB", argon2.memory_kib.to_string())
            .env("LATCHKEY_ARGON2__ITERATIONS", argon2.iterations.to_string())
            // Warnings only: the development outbox logs every email at info, which is not part
            // of what is measured.
            .env("LATCHKEY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.env("LATCHKEY_DATABASE_URL", url);
        }
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            database_url: database_url.map(str::to_owned),
            argon2,
        };
        node.wait_ready(started).await?;
        Ok((node, started.elapsed()))
    }

    async fn wait_ready(&self, started: Instant) -> anyhow::Result<()> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("{}/readyz", self.base);
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!("the server at {} was not ready within 30 s", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak since start, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .with_context(|| format!("{name} in /proc/{}/status", self.pid()))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU time the server process has used so far (user + system), in seconds.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        cpu_secs_of(&format!("/proc/{}/stat", self.pid()))
    }

    /// The configuration the node runs with, for the benchmark's own in-process preparation on
    /// the same store (the way the CLI runs beside a server).
    pub fn config(&self) -> latchkey_server::Config {
        let mut config = latchkey_server::Config { data_dir: self.data_dir.clone(), ..Default::default() };
        config.database_url = self.database_url.clone().unwrap_or_default();
        config.database_max_connections = 4;
        config.argon2.memory_kib = self.argon2.memory_kib;
        config.argon2.iterations = self.argon2.iterations;
        config
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The release server binary beside this one; `scripts/bench.sh` builds both.
pub fn release_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("the benchmark's directory")?.join("latchkey");
    if !bin.exists() {
        bail!("{} not found; run the benchmark with `bash scripts/bench.sh`", bin.display());
    }
    Ok(bin)
}

/// User + system CPU seconds of the process whose `/proc/…/stat` is at `path`: fields 14 and 15,
/// counted after the command name's closing parenthesis, in the kernel's 100 ticks a second.
pub fn cpu_secs_of(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).with_context(|| format!("{path} has no command name"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).with_context(|| format!("field {} of {path}", i + 3));
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}
