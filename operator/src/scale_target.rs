//! What the autoscaler scales: a worker Deployment on Kubernetes
//! ([`DeploymentScale`]), or `feed-worker` processes on this machine
//! ([`LocalWorkers`], for trying the policy on real workers without a
//! cluster). Both answer the same two questions and take the same order.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::context::AUTOSCALER_FIELD_MANAGER;

/// How many workers are asked for, and how many are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replicas {
    pub desired: u32,
    pub ready: u32,
}

/// Why a target could not be read or scaled.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("starting or stopping a worker: {0}")]
    Process(#[from] std::io::Error),
}

/// A set of workers whose number the autoscaler sets.
pub trait ScaleTarget: Send + Sync {
    /// The workers now; `None` when the target does not exist (yet).
    fn replicas(&self) -> impl Future<Output = Result<Option<Replicas>, ScaleError>> + Send;
    /// Asks for `to` workers.
    fn scale(&self, to: u32) -> impl Future<Output = Result<(), ScaleError>> + Send;
}

/// A worker Deployment, scaled through its `scale` subresource under the
/// autoscaler's own field manager (so the reconciler never resets it).
pub struct DeploymentScale {
    pub api: Api<Deployment>,
    pub name: String,
}

impl ScaleTarget for DeploymentScale {
    async fn replicas(&self) -> Result<Option<Replicas>, ScaleError> {
        let Some(deployment) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        Ok(Some(replicas_of(&deployment)))
    }

    async fn scale(&self, to: u32) -> Result<(), ScaleError> {
        let scale = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "spec": {"replicas": to}
        });
        self.api
            .patch_scale(
                &self.name,
                &PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force(),
                &Patch::Apply(&scale),
            )
            .await?;
        Ok(())
    }
}

/// A Deployment's asked-for and ready replicas.
pub fn replicas_of(deployment: &Deployment) -> Replicas {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0)
        .max(0) as u32;
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        .max(0) as u32;
    Replicas { desired, ready }
}

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
    pub async fn stop_all(&self) -> Result<(), ScaleError> {
        self.scale(0).await
    }
}

async fn stop(mut child: Child) -> Result<(), ScaleError> {
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
    async fn replicas(&self) -> Result<Option<Replicas>, ScaleError> {
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

    async fn scale(&self, to: u32) -> Result<(), ScaleError> {
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
