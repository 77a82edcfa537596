//! The pause switch (issue 16) on a real API server: annotated
//! `fanout.dev/paused: "true"`, a FeedCluster's deleted Service stays
//! deleted and a backlog scales no worker, and its status says it is
//! paused; with the annotation removed, both come back. The operator's
//! metrics are then checked against the chart's dashboards and alerts.

use std::time::Duration;

use fanout_testkit::monitoring;
use k8s_openapi::api::core::v1::Service;
use kube::api::DeleteParams;
use operator::crd::FeedCluster;

use crate::autoscaling::{SPEC, push_backlog, replicas, scaled_to};
use crate::harness::{Scenario, apply, condition, kubectl, run, until, wait_ready};
use crate::process::Operator;

const WITHIN: Duration = Duration::from_secs(90);

/// The sum of the operator's samples of `series` (a metric name with its
/// labels, up to the value), 0 when it has none yet.
async fn metric(operator: &Operator, series: &str) -> f64 {
    let (_, text) = operator.get("/metrics").await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the FeedCluster's `Paused` condition has `status`.
async fn paused_is(scenario: &Scenario, status: &str) -> String {
    until(&format!("Paused={status}"), WITHIN, || async {
        let fc = scenario.api::<FeedCluster>().get("demo").await.ok()?;
        condition(&fc, "Paused")
            .filter(|(s, _)| s == status)
            .map(|(_, reason)| reason)
    })
    .await
}

/// Waits for an Event `reason` about the FeedCluster: it is recorded just
/// after the status it goes with.
async fn event(scenario: &Scenario, reason: &str) {
    until(&format!("a {reason} Event"), WITHIN, || async {
        scenario.has_event(reason, "demo").await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_paused_feedcluster_is_left_alone_until_resumed() {
    let Some(scenario) = Scenario::with_operator("t-pause").await else {
        return;
    };
    let mut redis = scenario.streams().await;
    apply(&scenario, &scenario.feed_cluster("demo", SPEC)).await;
    wait_ready(&scenario, "demo", WITHIN).await;
    assert_eq!(paused_is(&scenario, "False").await, "Reconciling");
    let operator = scenario.operator(0);
    let ns = scenario.namespace.as_str();

    // Paused the way a user would, with kubectl.
    run(kubectl(scenario.admin()).args([
        "annotate",
        "feedcluster/demo",
        "fanout.dev/paused=true",
        "-n",
        ns,
    ]));
    assert_eq!(paused_is(&scenario, "True").await, "Annotated");
    event(&scenario, "Paused").await;
    // `kubectl get fc -o wide` shows it.
    let table = run(kubectl(scenario.admin()).args(["get", "fc", "-o", "wide", "-n", ns]));
    // Columns are aligned; an empty one (BACKLOG) leaves no word behind.
    let mut lines = table.lines();
    let column = lines.next().unwrap().find("PAUSED").expect(&table);
    let cell = lines.next().unwrap().get(column..).unwrap_or_default();
    assert_eq!(cell.split_whitespace().next(), Some("True"), "{table}");

    // A deleted Service: the reconciler is woken by the deletion, and
    // leaves it deleted.
    let held = r#"fanout_operator_reconciles_total{outcome="paused"}"#;
    let before = metric(operator, held).await;
    scenario
        .api::<Service>()
        .delete("demo-api", &DeleteParams::default())
        .await
        .unwrap();
    until("the reconciler to see the deletion", WITHIN, || async {
        (metric(operator, held).await > before).then_some(())
    })
    .await;
    assert!(
        scenario
            .api::<Service>()
            .get_opt("demo-api")
            .await
            .unwrap()
            .is_none(),
        "a paused FeedCluster's deleted Service came back"
    );

    // A backlog the autoscaler would scale to the maximum for: three of its
    // polls go by, each skipped, and the workers stay as they were.
    push_backlog(&mut redis).await;
    let skipped = r#"fanout_autoscaler_paused_polls_total{feedcluster=""#;
    let polls = metric(operator, skipped).await;
    until("three skipped autoscaler polls", WITHIN, || async {
        (metric(operator, skipped).await >= polls + 3.0).then_some(())
    })
    .await;
    assert_eq!(replicas(&scenario).await, 1, "a paused FeedCluster scaled");
    assert!(
        scenario
            .api::<Service>()
            .get_opt("demo-api")
            .await
            .unwrap()
            .is_none()
    );

    // Resumed: the Service is back and the backlog scales the workers.
    run(kubectl(scenario.admin()).args([
        "annotate",
        "feedcluster/demo",
        "fanout.dev/paused-",
        "-n",
        ns,
    ]));
    until("the Service to come back", WITHIN, || async {
        scenario.api::<Service>().get_opt("demo-api").await.ok()?
    })
    .await;
    assert_eq!(paused_is(&scenario, "False").await, "Reconciling");
    event(&scenario, "Resumed").await;
    scaled_to(&scenario, 5, "the workers to scale up once resumed").await;

    // By now this operator has reconciled, paused, skipped polls, read
    // streams and scaled: every operator metric the chart's dashboards and
    // alert rules use must be one it exports (a rename fails here, not in
    // a blank panel).
    let (_, text) = operator.get("/metrics").await.expect("its /metrics");
    let exported = monitoring::exported_metric_names(&text);
    let missing: Vec<String> = monitoring::used_metric_names()
        .into_iter()
        .filter(|name| monitoring::is_operator_metric(name) && !exported.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboards or alerts use {missing:?}, which the operator does not export:\n{text}"
    );
}
