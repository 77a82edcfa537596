//! `feed-worker` processes on this machine as a scale target, for trying
//! the autoscaling step on real workers without a cluster (the bench and
//! the real-worker test scale them too).

use std::path::PathBuf;

use fanout_testkit::process::Process;
use feed_core::autoscale::step::{Replicas, ScaleTarget};
use tokio::sync::Mutex;

/// `feed-worker` processes on this machine. Scaling up starts more; scaling
/// down sends the newest SIGTERM, as Kubernetes does, and waits for each to
/// finish its batch and exit (killing it after Kubernetes' default grace
/// period, `fanout_testkit::process::STOP_GRACE`: its unacknowledged
/// entries are then reclaimed by the others).
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
    children: Vec<Process>,
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
        running.children.iter().filter_map(Process::id).collect()
    }

    /// Stops every worker, gracefully.
    pub async fn stop_all(&self) -> std::io::Result<()> {
        self.scale(0).await
    }
}

impl ScaleTarget for LocalWorkers {
    /// Starting or stopping a worker failed.
    type Error = std::io::Error;

    async fn replicas(&self) -> std::io::Result<Option<Replicas>> {
        let mut running = self.running.lock().await;
        let desired = running.children.len() as u32;
        let mut ready = 0;
        for child in &mut running.children {
            if child.is_running()? {
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
            let name = format!("local-{}", running.started);
            let mut child = Process::new(&name, &self.binary)
                .envs(self.env.iter().cloned())
                .envs([
                    ("FANOUT_CONSUMER_NAME", name),
                    ("FANOUT_WORKER_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ]);
            child.start()?;
            running.children.push(child);
        }
        let keep = to.min(running.children.len());
        let mut stopping: Vec<Process> = running.children.drain(keep..).collect();
        // Stopped together, as a ReplicaSet would.
        let results =
            futures_util::future::join_all(stopping.iter_mut().map(Process::terminate)).await;
        results.into_iter().collect()
    }
}
