//! How the reconciler writes a FeedCluster's children: server-side apply
//! for what it owns field by field, create-once for what must never be
//! regenerated or re-applied, and deletion of what the spec no longer asks
//! for (only objects this FeedCluster controls).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use crate::context::{AUTOSCALER_FIELD_MANAGER, Error, RECONCILER_FIELD_MANAGER, key};
use crate::crd::FeedCluster;
use crate::resources::{self, Names};

/// A namespaced object kind the reconciler handles.
pub(crate) trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
{
}

fn failed<K: Child>(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_owned();
    move |source| Error::Object {
        action,
        kind: K::kind(&()).into_owned(),
        name,
        source,
    }
}

/// The object named `name`, if it exists.
async fn read<K: Child>(api: &Api<K>, name: &str) -> Result<Option<K>, Error> {
    api.get_opt(name)
        .await
        .map_err(failed::<K>("reading", name))
}

/// Server-side applies an object with the reconciler's field manager and
/// returns it as the API server now has it.
pub(crate) async fn apply_object<K: Child>(
    client: &Client,
    ns: &str,
    object: K,
) -> Result<K, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply(RECONCILER_FIELD_MANAGER).force();
    let name = object.name_any();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(failed::<K>("applying", &name))
}

/// The object as it exists, created first if it does not: for what must
/// never be regenerated (secrets) or re-applied (Jobs).
pub(crate) async fn get_or_create<K: Child>(api: Api<K>, object: K) -> Result<K, Error> {
    let name = object.name_any();
    if let Some(existing) = read(&api, &name).await? {
        return Ok(existing);
    }
    create(api, object).await
}

/// Creates the object; if it was created concurrently, what won.
async fn create<K: Child>(api: Api<K>, object: K) -> Result<K, Error> {
    let name = object.name_any();
    match api.create(&PostParams::default(), &object).await {
        Ok(created) => Ok(created),
        // Created concurrently: read what won.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.get(&name).await.map_err(failed::<K>("reading", &name))
        }
        Err(e) => Err(failed::<K>("creating", &name)(e)),
    }
}

fn controls(fc: &FeedCluster, object: &impl Resource) -> bool {
    object
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && fc.uid().as_deref() == Some(o.uid.as_str()))
}

/// Deletes `name` if this FeedCluster controls it (never a user's object
/// of the same name), only the object that was read, not one re-created
/// since.
async fn delete_controlled<K: Child>(
    fc: &FeedCluster,
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(), Error> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(object) = read(&api, name).await? else {
        return Ok(());
    };
    if !controls(fc, &object) {
        return Ok(());
    }
    delete_exact(fc, &api, &object).await
}

async fn delete_exact<K: Child>(fc: &FeedCluster, api: &Api<K>, object: &K) -> Result<(), Error> {
    let name = object.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: object.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            info!(feedcluster = %key(fc), kind = %K::kind(&()), %name, "deleted what the spec no longer asks for");
            Ok(())
        }
        // Deleted or replaced meanwhile: nothing of ours left to delete.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(failed::<K>("deleting", &name)(e)),
    }
}

/// Removes what a managed datastore left behind once the spec points
/// elsewhere (`external`): its StatefulSet (whose volume claims go with it,
/// by their retention policy), Service and NetworkPolicy, and for
/// PostgreSQL the generated Secret holding the password of data now gone.
pub(crate) async fn remove_managed_datastore(
    fc: &FeedCluster,
    client: &Client,
    ns: &str,
    name: &str,
    has_secret: bool,
) -> Result<(), Error> {
    delete_controlled::<StatefulSet>(fc, client, ns, name).await?;
    delete_controlled::<Service>(fc, client, ns, name).await?;
    delete_controlled::<NetworkPolicy>(fc, client, ns, name).await?;
    if has_secret {
        delete_controlled::<Secret>(fc, client, ns, name).await?;
    }
    Ok(())
}

/// Deletes the NetworkPolicies this FeedCluster controls, after
/// `networkPolicies` is switched off. One list per reconciliation finds
/// them; a policy of the same name or labels that the FeedCluster does not
/// control (the user's own, written to replace them) is left alone.
pub(crate) async fn remove_network_policies(
    fc: &FeedCluster,
    client: &Client,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let ours = resources::label_selector(&resources::managed(fc));
    let listed = api
        .list(&ListParams::default().labels(&ours))
        .await
        .map_err(failed::<NetworkPolicy>("listing", "(all)"))?;
    for policy in listed.items.iter().filter(|p| controls(fc, *p)) {
        delete_exact(fc, &api, policy).await?;
    }
    Ok(())
}

/// Creates the managed PostgreSQL's Secret with a fresh password, unless its
/// data outlived it: a deleted Secret whose volume claim still holds the
/// database is not regenerated (the data keeps the old password, and a new
/// one would lock the API and workers out). That is reported instead, with
/// what to do.
pub(crate) async fn ensure_postgres_secret(
    fc: &FeedCluster,
    client: &Client,
    ns: &str,
    password: impl FnOnce() -> String,
) -> Result<(), Error> {
    let names = Names::of(fc);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = names.postgres();
    if read(&secrets, &name).await?.is_some() {
        return Ok(());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = names.postgres_volume();
    if read(&claims, &claim).await?.is_some() {
        return Err(Error::CredentialLost(format!(
            "Secret {name} is gone but PersistentVolumeClaim {claim} still holds the database, \
             whose password it had: restore the Secret (keys password and url), or delete the \
             claim to start with an empty database"
        )));
    }
    create(secrets, resources::postgres_secret(fc, &password())).await?;
    Ok(())
}

/// Whether the autoscaler's field manager owns the worker count.
fn autoscaler_owns_replicas(deployment: &Deployment) -> bool {
    deployment
        .managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some(AUTOSCALER_FIELD_MANAGER))
        .filter_map(|m| m.fields_v1.as_ref())
        .any(|f| f.0.pointer("/f:spec/f:replicas").is_some())
}

/// When the reconciler leaves the worker count out of what it applies (the
/// autoscaler is on, in either mode), makes the autoscaler's field manager
/// its owner first, at its current value. Otherwise, after autoscaling is
/// switched on, dropping the reconciler's ownership would drop the field,
/// and Kubernetes would reset it to 1. Done once: while the autoscaler owns
/// the count nothing is written. The handover is conditional on the
/// Deployment's resourceVersion, so a scale decision made since it was read
/// is never reverted; after such a race the autoscaler owns the count.
pub(crate) async fn hand_replicas_to_autoscaler(
    fc: &FeedCluster,
    deployments: &Api<Deployment>,
    names: &Names,
) -> Result<(), Error> {
    if !fc.spec.autoscaling.enabled {
        return Ok(());
    }
    let name = names.workers();
    // A few rounds: each lost race means someone else just wrote it.
    for _ in 0..3 {
        let Some(deployment) = read(deployments, &name).await? else {
            return Ok(());
        };
        if autoscaler_owns_replicas(&deployment) {
            return Ok(());
        }
        let Some(current) = deployment.spec.as_ref().and_then(|s| s.replicas) else {
            return Ok(());
        };
        let scale = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "resourceVersion": deployment.resource_version()},
            "spec": {"replicas": current}
        });
        let params = PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force();
        match deployments
            .patch_scale(&name, &params, &Patch::Apply(&scale))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                return Err(failed::<Deployment>("handing over the replicas of", &name)(
                    e,
                ));
            }
        }
    }
    Ok(())
}
