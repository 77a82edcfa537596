//! An operator under test: a `fanout-operator` process with the chart's
//! ServiceAccount token, watching one test's namespace, its log kept for
//! when the test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fanout_testkit::free_port;
use tokio::time::{Instant, sleep};

use crate::harness::{RELEASE_NAMESPACE, Scenario};

/// A `fanout-operator` process.
pub struct Operator {
    pub identity: String,
    child: Option<Child>,
    log: PathBuf,
    /// Its /healthz, /readyz and /metrics.
    pub http: String,
    _dir: tempfile::TempDir,
}

impl Operator {
    pub fn start(scenario: &Scenario, identity: &str) -> Operator {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log = dir.path().join("operator.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_fanout-operator"))
            .env("KUBECONFIG", &scenario.shared.operator_kubeconfig)
            .env("FANOUT_WATCH_NAMESPACE", &scenario.namespace)
            .env("POD_NAMESPACE", RELEASE_NAMESPACE)
            .env("POD_NAME", identity)
            .env("FANOUT_OPERATOR_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("FANOUT_OPERATOR_IMAGE", "fanout:test")
            .env("FANOUT_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("a log file"))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("the log file"),
            ))
            .spawn()
            .expect("starting fanout-operator");
        Operator {
            identity: identity.to_owned(),
            child: Some(child),
            log,
            http: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// SIGKILL: no goodbye, no Lease released.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Already gone (a deposed leader exits by itself): nothing to signal.
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET path` on its probe port: the status code and body, or `None`
    /// when it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(format!("{}{path}", self.http)).await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Successful reconciles so far (its Prometheus counter).
    pub async fn reconciles(&self) -> Option<u64> {
        let (_, text) = self.get("/metrics").await?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("fanout_operator_reconciles_total{outcome=\"ok\"}"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }
}

impl Operator {
    /// Its reconcile count once it has stopped moving (unchanged for 5 s),
    /// after at least one.
    pub async fn settled_reconciles(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = None;
        loop {
            let now = self.reconciles().await.filter(|n| *n > 0);
            if let Some(n) = now.filter(|_| now == last) {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "operator {} never settled: {}",
                self.identity,
                self.log_tail(30)
            );
            last = now;
            sleep(Duration::from_secs(5)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}
