//! What the autoscaler scales on Kubernetes: a worker Deployment, as a
//! `feed_core::autoscale::step::ScaleTarget` (the trait the autoscale lab's
//! local workers implement too, so both run the same step).

use feed_core::autoscale::step::{Replicas, ScaleTarget};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::context::AUTOSCALER_FIELD_MANAGER;

/// A worker Deployment, scaled through its `scale` subresource under the
/// autoscaler's own field manager (so the reconciler never resets it).
pub struct DeploymentScale {
    pub api: Api<Deployment>,
    pub name: String,
}

impl ScaleTarget for DeploymentScale {
    /// Reading or scaling the Deployment failed.
    type Error = kube::Error;

    async fn replicas(&self) -> Result<Option<Replicas>, kube::Error> {
        let Some(deployment) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        Ok(Some(replicas_of(&deployment)))
    }

    async fn scale(&self, to: u32) -> Result<(), kube::Error> {
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
