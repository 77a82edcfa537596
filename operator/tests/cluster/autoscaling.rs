//! Autoscaling (the lane's item 6) on real Redis streams against a real API
//! server: a backlog scales the worker Deployment up through its scale
//! subresource, draining it scales it down, status and Events explain each
//! decision, and RecommendOnly decides without touching the Deployment.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use operator::crd::{FeedCluster, ScaleDecision};
use redis::aio::MultiplexedConnection;
use serde_json::json;

use crate::harness::{Scenario, apply, kubectl, run, until, wait_observed, wait_ready};

pub const SPEC: &str = "  workers:
    minReplicas: 1
    maxReplicas: 5
  autoscaling:
    pollIntervalSeconds: 1
    drainSeconds: 10
    scaleUp: {stabilizationWindowSeconds: 0, maxStep: 4}
    scaleDown: {stabilizationWindowSeconds: 0, maxStep: 4}
  postgres:
    external: {secretName: postgres}
  redis:
    external: {secretName: redis}
";

const STREAM: &str = "{events}:post.liked";
/// Far more than one worker drains within the 10 s target at the assumed
/// 200 events a second: the policy asks for the most workers.
const BACKLOG: usize = 20_000;
const WITHIN: Duration = Duration::from_secs(90);

pub async fn push_backlog(redis: &mut MultiplexedConnection) {
    let mut pipe = redis::pipe();
    for _ in 0..BACKLOG {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("junk")
            .arg("1")
            .ignore();
    }
    let () = pipe.query_async(redis).await.unwrap();
}

/// Reads and acknowledges everything, as workers would.
async fn drain(redis: &mut MultiplexedConnection) {
    loop {
        let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(feed_core::keys::CONSUMER_GROUP)
            .arg("drainer")
            .arg("COUNT")
            .arg(5_000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query_async(redis)
            .await
            .unwrap();
        let ids: Vec<String> = read
            .keys
            .iter()
            .flat_map(|k| k.ids.iter().map(|e| e.id.clone()))
            .collect();
        if ids.is_empty() {
            return;
        }
        let _: i64 = redis::cmd("XACK")
            .arg(STREAM)
            .arg(feed_core::keys::CONSUMER_GROUP)
            .arg(&ids)
            .query_async(redis)
            .await
            .unwrap();
    }
}

pub async fn replicas(scenario: &Scenario) -> i32 {
    scenario
        .api::<Deployment>()
        .get("demo-workers")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        .unwrap_or(1)
}

pub async fn last_scale(scenario: &Scenario) -> Option<ScaleDecision> {
    let fc = scenario.api::<FeedCluster>().get("demo").await.ok()?;
    fc.status?.last_scale
}

/// Waits until the Deployment runs `to` workers and the status records the
/// decision that put them there: the autoscaler scales first and records
/// after, so the two land in separate writes.
pub async fn scaled_to(scenario: &Scenario, to: i32, what: &str) -> ScaleDecision {
    until(what, WITHIN, || async {
        if replicas(scenario).await != to {
            return None;
        }
        last_scale(scenario).await.filter(|d| d.to == to)
    })
    .await
}

#[tokio::test]
async fn a_backlog_scales_workers_up_and_draining_it_scales_them_down() {
    let Some(scenario) = Scenario::with_operator("t-autoscale").await else {
        return;
    };
    let mut redis = scenario.streams().await;
    apply(&scenario, &scenario.feed_cluster("demo", SPEC)).await;
    wait_ready(&scenario, "demo", WITHIN).await;
    assert_eq!(replicas(&scenario).await, 1);

    push_backlog(&mut redis).await;
    let decision = scaled_to(&scenario, 5, "the workers to scale up").await;
    assert_eq!(
        (decision.direction.as_str(), decision.to, decision.applied),
        ("Up", 5, true)
    );
    assert!(!decision.reason.is_empty());
    assert!(scenario.has_event("Scaled", "demo").await);
    // Through the scale subresource, under the autoscaler's own manager.
    let workers = scenario
        .api::<Deployment>()
        .get("demo-workers")
        .await
        .unwrap();
    assert!(
        workers.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some("fanout-autoscaler")
                && m.subresource.as_deref() == Some("scale")
        }),
        "{:?}",
        workers.managed_fields()
    );
    let fc = scenario.api::<FeedCluster>().get("demo").await.unwrap();
    let status = fc.status.unwrap();
    assert!(status.backlog.unwrap() > 0);
    assert!(status.streams.iter().any(|s| s.name == STREAM));

    drain(&mut redis).await;
    let decision = scaled_to(&scenario, 1, "the workers to scale down").await;
    assert_eq!((decision.direction.as_str(), decision.to), ("Down", 1));

    // RecommendOnly: decisions in status and Events, the Deployment as is,
    // even at a count of the user's own (`kubectl scale`), which neither
    // the autoscaler nor the reconciler resets.
    let recommend = json!({"spec": {"autoscaling": {"mode": "RecommendOnly"}}});
    let fc = scenario
        .api::<FeedCluster>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&recommend))
        .await
        .unwrap();
    wait_observed(&scenario, &fc).await;
    run(kubectl(scenario.admin()).args([
        "scale",
        "deployment/demo-workers",
        "--replicas=3",
        "-n",
        &scenario.namespace,
    ]));
    push_backlog(&mut redis).await;
    let decision = until("a recommendation", WITHIN, || async {
        last_scale(&scenario)
            .await
            .filter(|d| d.direction == "Up" && !d.applied)
    })
    .await;
    assert_eq!((decision.from, decision.to), (3, 5));
    assert!(scenario.has_event("Recommended", "demo").await);
    // A few more polls, and a reconcile (the scale changed the Deployment):
    // still the user's count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&scenario).await, 3);
}
