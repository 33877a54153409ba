//! Adapters and simulators as their own `simpul` processes, with the addresses they print.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use super::{Bus, bin};

/// A running `simpul adapter run` or `simpul simulate`, killed when dropped.
pub struct Running {
    child: Child,
    /// What it printed as `<who> on <url>`: `health`, `terminals`, `simulator`, …
    pub addrs: HashMap<String, String>,
    /// Kept open, so that the process never writes into a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Running {
    /// Spawns `cmd` and reads its stdout until it has printed an address for each of `want`.
    pub fn spawn(mut cmd: Command, want: &[&str]) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = HashMap::new();
        while !want.iter().all(|w| addrs.contains_key(*w)) {
            let line = lines
                .next()
                .expect("the process ended before listening")
                .unwrap();
            if let Some((who, url)) = line.split_once(" on ") {
                let url = url.trim_end_matches("/healthz").trim_end_matches('/');
                addrs.insert(who.to_owned(), url.to_owned());
            }
        }
        Running {
            child,
            addrs,
            _stdout: lines,
        }
    }

    /// `agency`'s adapter as `member`, configured in `dir` (state in `dir/<agency>`, so a
    /// second start resumes from the first's outbox) with its `native` section.
    pub fn adapter(
        bus: &Bus,
        dir: &Path,
        agency: &str,
        member: &str,
        native: &str,
        want: &[&str],
    ) -> Running {
        let file = member.replace('/', "_");
        let certs = bus.certs();
        let text = format!(
            "agency = \"{agency}\"\nbus = \"{}\"\nstate_dir = \"{agency}\"\nhealth = \"127.0.0.1:0\"\n\n\
             [certs]\ncert = \"{c}/members/{file}.pem\"\nkey = \"{c}/members/{file}.key\"\nca = \"{c}/ca.pem\"\n\n{native}",
            bus.base,
            c = certs.display(),
        );
        let cfg = dir.join(format!("{agency}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["adapter", "run", agency, "--config"]).arg(&cfg);
        Running::spawn(cmd, want)
    }

    /// `simpul simulate <args…> --listen 127.0.0.1:0`.
    pub fn simulator(args: &[&str]) -> Running {
        let mut cmd = Command::new(bin());
        cmd.arg("simulate")
            .args(args)
            .args(["--listen", "127.0.0.1:0"]);
        Running::spawn(cmd, &["simulator"])
    }

    pub fn addr(&self, who: &str) -> &str {
        &self.addrs[who]
    }

    /// SIGTERM, and its exit once it has finished what it held.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
