//! `feed-worker` processes on this machine as a scale target, for trying
//! the autoscaling step on real workers without a cluster (the bench and
//! the real-worker test scale them too).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use feed_core::autoscale::step::{Replicas, ScaleTarget};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long a stopped worker may take to finish its batch before it is
/// killed (its unacknowledged entries are then reclaimed by the others):
/// Kubernetes' default termination grace period.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// `feed-worker` processes on this machine. Scaling up starts more; scaling
/// down sends the newest SIGTERM, as Kubernetes does, and waits for each to
/// finish its batch and exit.
pub struct LocalWorkers {
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// The n-th running worker (from 0) serves its probes and metrics on
    /// this port + n; unset, each gets an ephemeral port.
    probe_port_base: Option<u16>,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    children: Vec<Child>,
    started: u64,
}

impl LocalWorkers {
    /// Workers run `binary` with `env` (database and Redis URLs and the
    /// like); each gets its own consumer name and an ephemeral probe port.
    pub fn new(binary: impl Into<PathBuf>, env: Vec<(String, String)>) -> LocalWorkers {
        LocalWorkers {
            binary: binary.into(),
            env,
            probe_port_base: None,
            running: Mutex::new(Running::default()),
        }
    }

    /// Gives the n-th running worker (from 0) the probe and metrics port
    /// `base + n`, so they can be scraped.
    pub fn with_probe_ports(mut self, base: u16) -> LocalWorkers {
        self.probe_port_base = Some(base);
        self
    }

    /// The probe and metrics addresses of the running workers, when they
    /// have fixed ports.
    pub async fn probe_addrs(&self) -> Vec<String> {
        let running = self.running.lock().await;
        match self.probe_port_base {
            Some(base) => (0..running.children.len())
                .map(|n| format!("127.0.0.1:{}", usize::from(base) + n))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The running workers' process ids.
    pub async fn pids(&self) -> Vec<u32> {
        let running = self.running.lock().await;
        running.children.iter().filter_map(Child::id).collect()
    }

    /// Stops every worker, gracefully.
    pub async fn stop_all(&self) -> std::io::Result<()> {
        self.scale(0).await
    }
}

async fn stop(mut child: Child) -> std::io::Result<()> {
    if let Some(pid) = child.id() {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        child.kill().await?;
    }
    Ok(())
}

impl ScaleTarget for LocalWorkers {
    /// Starting or stopping a worker failed.
    type Error = std::io::Error;

    async fn replicas(&self) -> std::io::Result<Option<Replicas>> {
        let mut running = self.running.lock().await;
        let desired = running.children.len() as u32;
        let mut ready = 0;
        for child in &mut running.children {
            if child.try_wait()?.is_none() {
                ready += 1;
            }
        }
        Ok(Some(Replicas { desired, ready }))
    }

    async fn scale(&self, to: u32) -> std::io::Result<()> {
        let mut running = self.running.lock().await;
        let to = to as usize;
        while running.children.len() < to {
            running.started += 1;
            let port = self
                .probe_port_base
                .map_or(0, |base| usize::from(base) + running.children.len());
            let child = Command::new(&self.binary)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("FANOUT_CONSUMER_NAME", format!("local-{}", running.started))
                .env("FANOUT_WORKER_HTTP_ADDR", format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            running.children.push(child);
        }
        let keep = to.min(running.children.len());
        let stopping: Vec<Child> = running.children.drain(keep..).collect();
        // Stopped together, as a ReplicaSet would.
        let results = futures_util::future::join_all(stopping.into_iter().map(stop)).await;
        results.into_iter().collect()
    }
}
