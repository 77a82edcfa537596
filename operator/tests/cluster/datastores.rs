//! Managed PostgreSQL and Redis on a real control plane: their volume
//! claims (made by the StatefulSet controller), a lost credential, a switch
//! to external instances, and deletion (garbage collection by the
//! controller-manager) leaving nothing behind.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use operator::crd::FeedCluster;

use crate::harness::{Scenario, apply, condition, listed, until};

const MANAGED: &str = "  postgres:
    managed: {storage: 1Gi}
  redis:
    managed: {storage: 1Gi}
";

const WITHIN: Duration = Duration::from_secs(120);

/// The objects labelled as this FeedCluster's, of every kind it makes
/// (volume claims included).
async fn leftovers(scenario: &Scenario, name: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={name}");
    listed(scenario, &ListParams::default().labels(&selector))
        .await
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn claims(scenario: &Scenario) -> Vec<String> {
    scenario
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|c| c.name_any())
        .collect()
}

async fn wait_for_claims(scenario: &Scenario) {
    until("both volume claims", WITHIN, || async {
        let claims = claims(scenario).await;
        (claims.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_feedcluster_removes_every_child_and_its_volumes() {
    let Some(scenario) = Scenario::with_operator("t-delete").await else {
        return;
    };
    apply(&scenario, &scenario.feed_cluster("demo", MANAGED)).await;
    wait_for_claims(&scenario).await;
    until("the worker Deployment", WITHIN, || async {
        let left = leftovers(&scenario, "demo").await;
        left.contains(&"Deployment/demo-workers".to_owned())
            .then_some(())
    })
    .await;

    scenario
        .api::<FeedCluster>()
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    // The garbage collector deletes the children, the StatefulSets' claims
    // go with them.
    until("nothing left", WITHIN, || async {
        let left = leftovers(&scenario, "demo").await;
        left.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lost_postgres_secret_is_not_regenerated_and_external_replaces_managed() {
    let Some(scenario) = Scenario::with_operator("t-datastores").await else {
        return;
    };
    apply(&scenario, &scenario.feed_cluster("demo", MANAGED)).await;
    wait_for_claims(&scenario).await;
    let secrets = scenario.api::<Secret>();
    let original = secrets.get("demo-postgres").await.unwrap();

    // The Secret goes while its data stays: reported, not regenerated.
    secrets
        .delete("demo-postgres", &DeleteParams::default())
        .await
        .unwrap();
    // The operator does not watch Secrets (the chart grants no list or
    // watch of them); a spec change makes it look now rather than at its
    // next resync.
    let mut changed = scenario.feed_cluster("demo", MANAGED);
    changed.spec.feed.max_length = 900;
    apply(&scenario, &changed).await;
    let fc = until("CredentialLost in status", WITHIN, || async {
        let fc = scenario.api::<FeedCluster>().get("demo").await.ok()?;
        (condition(&fc, "Degraded")? == ("True".into(), "CredentialLost".into())).then_some(fc)
    })
    .await;
    let message = &fc.status.as_ref().unwrap().conditions;
    assert!(
        message
            .iter()
            .any(|c| c.message.contains("data-demo-postgres-0")),
        "{message:?}"
    );
    assert!(secrets.get_opt("demo-postgres").await.unwrap().is_none());
    assert!(scenario.has_event("CredentialLost", "demo").await);

    // Restored from a backup, it is taken up again.
    let mut restored = Secret {
        data: original.data.clone(),
        type_: original.type_.clone(),
        ..Secret::default()
    };
    restored.metadata.name = Some("demo-postgres".into());
    secrets
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    // A spec change makes the operator look again at once.
    let mut external_redis = changed.clone();
    external_redis.spec.redis = serde_saphyr::from_str("external: {secretName: redis}").unwrap();
    apply(&scenario, &external_redis).await;
    until("Degraded to clear", WITHIN, || async {
        let fc = scenario.api::<FeedCluster>().get("demo").await.ok()?;
        (condition(&fc, "Degraded")?.0 == "False").then_some(())
    })
    .await;

    // Redis moved to an external instance: the managed one is gone, volume
    // included; PostgreSQL's stays.
    until("the managed Redis to go", WITHIN, || async {
        let left = leftovers(&scenario, "demo").await;
        let redis: Vec<&String> = left.iter().filter(|o| o.contains("redis")).collect();
        redis.is_empty().then_some(())
    })
    .await;
    assert_eq!(claims(&scenario).await, ["data-demo-postgres-0"]);
    assert_eq!(
        secrets.get("demo-postgres").await.unwrap().data,
        original.data,
        "the password was kept"
    );

    // And PostgreSQL too: its Secret (a password for data now gone) with it.
    let mut external = changed.clone();
    external.spec.redis = external_redis.spec.redis.clone();
    external.spec.postgres = serde_saphyr::from_str("external: {secretName: postgres}").unwrap();
    apply(&scenario, &external).await;
    until("the managed PostgreSQL to go", WITHIN, || async {
        let left = leftovers(&scenario, "demo").await;
        let postgres: Vec<&String> = left.iter().filter(|o| o.contains("postgres")).collect();
        postgres.is_empty().then_some(())
    })
    .await;
    assert!(claims(&scenario).await.is_empty());
}
