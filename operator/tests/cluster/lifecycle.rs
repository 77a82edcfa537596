//! 3, 4, 5, 8 and 9: a FeedCluster reconciled to Ready on a real control
//! plane, its children owned, healed and rolled out, its fields owned by
//! the right managers, no churn at rest, and nothing left once deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use operator::crd::FeedCluster;
use serde_json::json;

use crate::harness::{
    Scenario, apply, condition, kubectl, listed, run, until, wait_observed, wait_ready,
};

/// The sample's shape, on the test's external PostgreSQL and Redis.
const SPEC: &str = "  api:
    replicas: 1
  workers:
    minReplicas: 1
    maxReplicas: 5
  autoscaling:
    pollIntervalSeconds: 5
  postgres:
    external: {secretName: postgres}
  redis:
    external: {secretName: redis}
";

const READY_WITHIN: Duration = Duration::from_secs(90);

/// The objects the FeedCluster controls, by kind and name, with their
/// resourceVersions.
async fn children(scenario: &Scenario, fc: &FeedCluster) -> BTreeMap<String, String> {
    let uid = fc.uid();
    listed(scenario, &ListParams::default())
        .await
        .into_iter()
        .filter(|o| o.controller == uid)
        .map(|o| (o.key, o.resource_version))
        .collect()
}

#[tokio::test]
async fn a_feedcluster_becomes_ready_with_owned_children_and_rests_without_churn() {
    let Some(mut scenario) = Scenario::new("t-ready").await else {
        return;
    };
    let operator = scenario.start_operator("operator-a");
    apply(&scenario, &scenario.feed_cluster("demo", SPEC)).await;
    let fc = wait_ready(&scenario, "demo", READY_WITHIN).await;

    // Every child, owned by the FeedCluster.
    let owned = children(&scenario, &fc).await;
    let job = format!(
        "Job/{}",
        operator::resources::Names::of(&fc).migration("fanout:test")
    );
    for expected in [
        "ConfigMap/demo-config",
        "Deployment/demo-api",
        "Deployment/demo-workers",
        "Service/demo-api",
        "Secret/demo-jwt",
        "PodDisruptionBudget/demo-api",
        "PodDisruptionBudget/demo-workers",
        "NetworkPolicy/demo-api",
        "NetworkPolicy/demo-workers",
        job.as_str(),
    ] {
        assert!(owned.contains_key(expected), "{expected} in {owned:#?}");
    }
    // External datastores: none of the managed ones.
    assert!(
        !owned
            .keys()
            .any(|k| k.contains("postgres") || k.contains("redis"))
    );
    let migration = scenario
        .api::<Job>()
        .get(job.trim_start_matches("Job/"))
        .await
        .unwrap();
    assert_eq!(migration.status.unwrap().succeeded, Some(1));

    // `kubectl get fc` prints the columns.
    let table = run(kubectl(scenario.admin()).args(["get", "fc", "-n", &scenario.namespace]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "API", "WORKERS", "BACKLOG", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["demo", "True", "1/1", "1/1"], "{table}");

    // Events were recorded.
    assert!(scenario.has_event("Ready", "demo").await, "a Ready event");

    // At rest: a fresh operator (a full resync of everything) changes no
    // child, and the status it writes changes nothing either.
    let before = children(&scenario, &fc).await;
    let status_before = scenario.api::<FeedCluster>().get("demo").await.unwrap();
    scenario.operator_mut(operator).kill9();
    let again = scenario.start_operator("operator-b");
    let reconciled = scenario.operator(again).settled_reconciles().await;
    assert_eq!(
        children(&scenario, &fc).await,
        before,
        "a resync changed a child"
    );
    let status_after = scenario.api::<FeedCluster>().get("demo").await.unwrap();
    assert_eq!(
        status_after.status.as_ref().map(|s| &s.conditions),
        status_before.status.as_ref().map(|s| &s.conditions),
        "a resync rewrote the conditions"
    );

    // The autoscaler's status writes (a backlog appears and goes) do not set
    // off reconciles: those follow spec changes only.
    let mut redis = scenario.streams().await;
    let _: String = redis::cmd("XADD")
        .arg("{events}:post.liked")
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut redis)
        .await
        .unwrap();
    until("the backlog in status", Duration::from_secs(30), || {
        let api = scenario.api::<FeedCluster>();
        async move {
            let fc = api.get("demo").await.ok()?;
            (fc.status?.backlog? > 0).then_some(())
        }
    })
    .await;
    assert_eq!(
        scenario.operator(again).reconciles().await,
        Some(reconciled),
        "a status write set off a reconcile"
    );

    // What the operator asks of the API server at rest, per minute.
    let window = Duration::from_secs(30);
    let start = scenario.audit().len();
    tokio::time::sleep(window).await;
    let requests = scenario.audit().len() - start;
    let per_minute = requests as f64 * 60.0 / window.as_secs_f64();
    eprintln!(
        "API requests at rest: {per_minute:.0} per minute (one FeedCluster, polled every 5 s)"
    );
    assert!(per_minute < 200.0, "{per_minute} requests a minute at rest");
}

fn managers_of(deployment: &Deployment, path: &str) -> Vec<String> {
    deployment
        .managed_fields()
        .iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer(path).is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

#[tokio::test]
async fn children_come_back_roll_out_and_keep_their_owners_apart() {
    let Some(scenario) = Scenario::with_operator("t-children").await else {
        return;
    };
    // The autoscaler polls once, then leaves the count to this test.
    let spec = SPEC.replace("pollIntervalSeconds: 5", "pollIntervalSeconds: 3600");
    apply(&scenario, &scenario.feed_cluster("demo", &spec)).await;
    let fc = wait_ready(&scenario, "demo", READY_WITHIN).await;
    let deployments = scenario.api::<Deployment>();

    // 4. Field ownership: the reconciler owns the pod templates, the
    // autoscaler the worker count, nobody else either.
    let workers = deployments.get("demo-workers").await.unwrap();
    assert_eq!(
        managers_of(&workers, "/f:spec/f:template"),
        ["fanout-operator"]
    );
    // (The API server may list its placeholder `before-first-apply` too.)
    let count = managers_of(&workers, "/f:spec/f:replicas");
    assert!(
        count.contains(&"fanout-autoscaler".to_owned())
            && !count.contains(&"fanout-operator".to_owned()),
        "{count:?}"
    );
    let api = deployments.get("demo-api").await.unwrap();
    assert_eq!(managers_of(&api, "/f:spec/f:replicas"), ["fanout-operator"]);

    // A scale decision racing reconciles is never reverted.
    let scale = PatchParams::apply("fanout-autoscaler").force();
    for (round, replicas) in [3, 2, 4].into_iter().enumerate() {
        let decision = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": replicas}});
        deployments
            .patch_scale("demo-workers", &scale, &Patch::Apply(&decision))
            .await
            .unwrap();
        // A spec change makes the reconciler re-apply the Deployment.
        let bump = json!({"spec": {"feed": {"maxLength": 800 + round}}});
        let fc = scenario
            .api::<FeedCluster>()
            .patch("demo", &PatchParams::default(), &Patch::Merge(&bump))
            .await
            .unwrap();
        wait_observed(&scenario, &fc).await;
        let now = deployments.get("demo-workers").await.unwrap();
        assert_eq!(now.spec.unwrap().replicas, Some(replicas), "round {round}");
    }

    // 5. A deleted child comes back.
    scenario
        .api::<Service>()
        .delete("demo-api", &DeleteParams::default())
        .await
        .unwrap();
    until("the API Service to come back", READY_WITHIN, || {
        let services = scenario.api::<Service>();
        async move { services.get_opt("demo-api").await.unwrap().map(|_| ()) }
    })
    .await;

    // A spec change rolls out.
    let bump = json!({"spec": {"api": {"replicas": 2}}});
    scenario
        .api::<FeedCluster>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .unwrap();
    until("two API pods", READY_WITHIN, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("demo-api").await.ok()?;
            (d.status?.ready_replicas == Some(2)).then_some(())
        }
    })
    .await;

    // An image change migrates first: the new Job completes before the API
    // and the workers move to the image.
    let image = "fanout:next";
    let bump = json!({"spec": {"image": image}});
    scenario
        .api::<FeedCluster>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .unwrap();
    let job = operator::resources::Names::of(&fc).migration(image);
    let completed = until("the new image's migration", READY_WITHIN, || {
        let jobs = scenario.api::<Job>();
        let job = job.clone();
        async move { jobs.get_opt(&job).await.unwrap()?.status?.completion_time }
    })
    .await;
    for name in ["demo-api", "demo-workers"] {
        let moved = until("the Deployment on the new image", READY_WITHIN, || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get(name).await.ok()?;
                let pod = d.spec.as_ref()?.template.spec.as_ref()?;
                (pod.containers[0].image.as_deref() == Some(image)).then_some(d)
            }
        })
        .await;
        let applied = moved
            .managed_fields()
            .iter()
            .find(|m| m.manager.as_deref() == Some("fanout-operator"))
            .and_then(|m| m.time.clone())
            .unwrap();
        assert!(
            applied.0 >= completed.0,
            "{name} moved at {:?}, before the migration completed at {:?}",
            applied.0,
            completed.0
        );
    }
    let fc = wait_ready(&scenario, "demo", READY_WITHIN).await;
    assert_eq!(fc.status.unwrap().migrated_image.as_deref(), Some(image));
}

#[tokio::test]
async fn reconcile_failures_are_recorded_as_short_events() {
    let Some(scenario) = Scenario::with_operator("t-failure").await else {
        return;
    };
    // Limits below requests: the API server refuses the workers' objects
    // with a long validation message.
    let spec = format!(
        "{SPEC}  workers:\n    resources:\n      requests: {{cpu: '2', memory: 1Gi}}\n      limits: {{cpu: '1', memory: 512Mi}}\n"
    )
    .replace("  workers:\n    minReplicas: 1\n    maxReplicas: 5\n", "");
    apply(&scenario, &scenario.feed_cluster("demo", &spec)).await;
    let event = until("a ReconcileFailed event", READY_WITHIN, || {
        let events = scenario.api::<Event>();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ReconcileFailed"))
        }
    })
    .await;
    let note = event.note.unwrap();
    assert!(note.len() <= 1024, "{} bytes: {note}", note.len());
    // What failed (the first object on the workers' resources is the
    // migration Job) and the API server's own words.
    assert!(
        note.starts_with("creating Job demo-migrate-") && note.contains(": 422 Invalid: "),
        "{note}"
    );
    assert!(
        note.contains("must be less than or equal to cpu limit"),
        "{note}"
    );
    let fc = scenario.api::<FeedCluster>().get("demo").await.unwrap();
    assert_eq!(
        condition(&fc, "Degraded"),
        Some(("True".into(), "ReconcileFailed".into()))
    );
}
