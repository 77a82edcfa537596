//! Leader election (the lane's item 7), two operator processes on one Lease:
//! only the leader acts; killed with SIGKILL, the other takes over within the
//! lease time; an operator that loses its Lease stops acting and is no longer
//! ready.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::harness::{RELEASE_NAMESPACE, Scenario, apply, until, wait_ready};

const SPEC: &str = "  postgres:
    external: {secretName: postgres}
  redis:
    external: {secretName: redis}
";

/// The operator's Lease duration (15 s), plus the time a standby takes to
/// notice (it checks at most that often) and some slack for a busy machine.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(40);

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get(name).await.ok()?.spec?.holder_identity
}

#[tokio::test]
async fn only_the_leader_acts_and_a_killed_leader_is_replaced() {
    let Some(mut scenario) = Scenario::new("t-leader").await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(scenario.client.clone(), RELEASE_NAMESPACE);
    let lease = format!("fanout-operator-{}", scenario.namespace);
    let a = scenario.start_operator("operator-a");
    let first = until("a leader", Duration::from_secs(60), || async {
        holder(&leases, &lease).await
    })
    .await;
    assert_eq!(first, "operator-a");
    let b = scenario.start_operator("operator-b");
    until(
        "the second operator to stand by",
        Duration::from_secs(60),
        || async {
            let (code, body) = scenario.operator(b).get("/readyz").await?;
            (code == 200 && body.contains("standing by")).then_some(())
        },
    )
    .await;

    apply(&scenario, &scenario.feed_cluster("demo", SPEC)).await;
    wait_ready(&scenario, "demo", Duration::from_secs(90)).await;
    assert!(scenario.operator(a).reconciles().await.unwrap() > 0);
    assert_eq!(
        scenario.operator(b).reconciles().await,
        Some(0),
        "the standby reconciled"
    );

    // SIGKILL: the Lease is not released; it expires.
    let killed = Instant::now();
    scenario.operator_mut(a).kill9();
    until("the standby to take over", TAKEOVER_WITHIN, || async {
        (holder(&leases, &lease).await.as_deref() == Some("operator-b")).then_some(())
    })
    .await;
    eprintln!("takeover after a SIGKILL: {:?}", killed.elapsed());
    until(
        "the new leader to reconcile",
        Duration::from_secs(60),
        || async { scenario.operator(b).reconciles().await.filter(|n| *n > 0) },
    )
    .await;
    let (code, body) = scenario.operator(b).get("/readyz").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "ready: leading"));

    // Someone else takes the Lease (a partition healed the other way): the
    // leader stops acting and exits, to come back as a standby.
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let stolen = json!({"spec": {
        "holderIdentity": "operator-elsewhere",
        "leaseDurationSeconds": 3600,
        "acquireTime": now,
        "renewTime": now,
    }});
    leases
        .patch(&lease, &PatchParams::default(), &Patch::Merge(&stolen))
        .await
        .unwrap();
    let status = until("the deposed leader to exit", TAKEOVER_WITHIN, || {
        let exited = scenario.operator_mut(b).exited();
        async move { exited }
    })
    .await;
    assert!(!status.success(), "exits with an error, so it is restarted");
}
