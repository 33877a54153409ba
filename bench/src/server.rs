//! The servers under test, each in its own process: the bus and the no-op echo ceiling.
//!
//! Both are this same binary re-executed (`simpul-bench bus` / `simpul-bench echo`), so one
//! build gives all three parts. The bus child runs `bus::server::serve` with `simpul serve`'s
//! defaults, i.e. the same code and limits as the real command. Separate processes keep the
//! load generator's runtime out of the server's, and let us read the server's own RSS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// From spawn to the "listening" line: the socket is open and the store is ready.
    pub startup: Duration,
}

impl Server {
    /// Starts the bus on `registry`, with `certs` (already initialised) and a data dir.
    pub fn bus(
        registry: &Path,
        certs: &Path,
        data: &Path,
        max_body: usize,
        store: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut cmd = Server::bus_command(registry, certs, data)?;
        cmd.arg("--max-body").arg(max_body.to_string());
        if let Some(url) = store {
            cmd.arg("--store").arg(url);
        }
        Server::spawn(cmd)
    }

    /// Starts the bus on PostgreSQL with RabbitMQ as its transport (`amqp`: the broker's URL
    /// with the vhost, and its management API).
    pub fn bus_amqp(
        registry: &Path,
        certs: &Path,
        data: &Path,
        store: &str,
        amqp: (&str, &str),
    ) -> anyhow::Result<Self> {
        let mut cmd = Server::bus_command(registry, certs, data)?;
        cmd.args([
            "--store",
            store,
            "--amqp",
            amqp.0,
            "--amqp-management",
            amqp.1,
        ]);
        Server::spawn(cmd)
    }

    /// `simpul-bench bus` (this binary) on a registry, a PKI and a data dir.
    fn bus_command(registry: &Path, certs: &Path, data: &Path) -> anyhow::Result<Command> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("bus")
            .arg("--registry")
            .arg(registry)
            .arg("--certs")
            .arg(certs)
            .arg("--data")
            .arg(data);
        Ok(cmd)
    }

    /// Starts the echo ceiling with the same server certificate and CA.
    pub fn echo(certs: &Path, instance: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("echo")
            .arg("--certs")
            .arg(certs)
            .arg("--instance")
            .arg(instance);
        Server::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // Blocks until the server says where it listens, or exits (EOF) on a start-up error.
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("simpul listening on https://") {
                        break a.parse::<SocketAddr>()?;
                    }
                }
                _ => {
                    let _ = child.kill();
                    bail!("server exited before listening: {:?}", child.wait());
                }
            }
        };
        let startup = started.elapsed();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server {
            child,
            addr,
            startup,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size and its peak, in MiB, from `/proc/<pid>/status`.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{name} not in /proc status"))?;
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .context("no value")?
                .parse()?;
            Ok(kib / 1024.0)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU time (user + system) the server has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')').context("bad stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
        Ok(ticks / 100.0) // USER_HZ is 100 on Linux
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
