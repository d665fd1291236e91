//! A running `stoa-updater serve` for the e2e suites (serve, mirror,
//! artifacts): started with a site config on a loopback address, its
//! startup line checked, its stderr kept in a log, killed on drop.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::harness;

/// A running `serve`, killed on drop; its stderr goes to `log`.
pub struct Serve {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// On a free loopback port.
    pub fn start(config: &Path, dir: &Path) -> Self {
        Self::start_with(config, dir, None)
    }

    /// With `tls`: `--tls-cert`, `--tls-key` (PEM files).
    pub fn start_with(config: &Path, dir: &Path, tls: Option<(&Path, &Path)>) -> Self {
        Self::start_on(config, dir, tls, harness::free_port())
    }

    pub fn start_on(config: &Path, dir: &Path, tls: Option<(&Path, &Path)>, port: u16) -> Self {
        Self::launch(config, dir, tls, &format!("127.0.0.1:{port}"), false)
    }

    /// On `listen` (`127.0.0.1:<port>`), with `-v`: every request in the log.
    pub fn start_verbose(config: &Path, dir: &Path, listen: &str) -> Self {
        Self::launch(config, dir, None, listen, true)
    }

    fn launch(
        config: &Path,
        dir: &Path,
        tls: Option<(&Path, &Path)>,
        listen: &str,
        verbose: bool,
    ) -> Self {
        let port: u16 = listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("listen is host:port");
        let log = dir.join(format!("serve-{port}.log"));
        let mut cmd = harness::updater();
        cmd.arg("--config").arg(config);
        if verbose {
            cmd.arg("-v");
        }
        cmd.args(["serve", "--json", "--workers", "4", "--listen", listen]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("serve log"))
            .spawn()
            .expect("start stoa-updater serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serve's startup line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "startup line {line:?}: {e}; {}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        assert_eq!(v["serving"]["url"], format!("{scheme}://{listen}"));
        Self { child, port, log }
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
