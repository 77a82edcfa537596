//! The reconciler's side of the pause switch ([`crate::pause`]): a paused
//! FeedCluster gets its `Paused` condition and an Event once, and then no
//! request at all until it is resumed, whatever happens to its children.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::info;

use super::{condition, is_true};
use crate::context::{Context, Error, key, patch_status, publish};
use crate::crd::FeedCluster;
use crate::pause::{PAUSED_CONDITION, PAUSED_MESSAGE, PAUSED_REASON};

/// Leaves a paused FeedCluster's objects alone. The first time it records
/// `Paused=True` (the other conditions as they were) and an Event; after
/// that it writes nothing. It waits for a change (resuming is one, see
/// [`crate::pause::generation_or_pause`]) instead of a resync.
pub(super) async fn hold(fc: &FeedCluster, ctx: &Context) -> Result<Action, Error> {
    let previous = fc.status.clone().unwrap_or_default();
    if !is_true(&previous, PAUSED_CONDITION) {
        let mut conditions: Vec<Condition> = previous
            .conditions
            .iter()
            .filter(|c| c.type_ != PAUSED_CONDITION)
            .cloned()
            .collect();
        conditions.push(condition(
            &previous,
            PAUSED_CONDITION,
            true,
            PAUSED_REASON,
            PAUSED_MESSAGE,
        ));
        patch_status(ctx, fc, &json!({ "conditions": conditions })).await?;
        publish(ctx, fc, EventType::Normal, "Paused", PAUSED_MESSAGE).await;
        info!(feedcluster = %key(fc), "paused: leaving its objects alone");
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::Method;
    use kube::ResourceExt;
    use serde_json::Value;

    use super::*;
    use crate::controller::reconcile;
    use crate::fixtures::{Expect, Reply, test_context, within_a_second};
    use crate::pause::{ACTIVE_REASON, PAUSED_ANNOTATION};

    const STATUS: &str = "/apis/fanout.dev/v1alpha1/namespaces/feeds/feedclusters/demo/status";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/feeds/events";

    fn paused(already: bool) -> FeedCluster {
        let mut fc = FeedCluster::test();
        fc.annotations_mut()
            .insert(PAUSED_ANNOTATION.into(), "true".into());
        let ready = json!({"type": "Ready", "status": "True", "reason": "Available",
            "message": "API 1/1, workers 1/1", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let pause = json!({"type": "Paused", "status": if already { "True" } else { "False" },
            "reason": if already { PAUSED_REASON } else { ACTIVE_REASON }, "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"});
        fc.status =
            Some(serde_json::from_value(json!({"conditions": [ready, pause]})).expect("a status"));
        fc
    }

    #[tokio::test]
    async fn pausing_records_the_condition_and_an_event_and_touches_no_child() {
        let (ctx, server) = test_context();
        let fc = paused(false);
        let object = serde_json::to_value(&fc).unwrap();
        // Only these two requests: any apply of a child fails the scenario.
        let scenario = server.run(vec![
            Expect::new(Method::PATCH, STATUS, Reply::Json(object)).check(|body| {
                let conditions = body["status"]["conditions"].as_array().unwrap();
                let find = |kind: &str| -> &Value {
                    conditions.iter().find(|c| c["type"] == kind).unwrap()
                };
                assert_eq!(find("Paused")["status"], "True");
                assert_eq!(find("Paused")["reason"], PAUSED_REASON);
                assert!(
                    find("Paused")["message"]
                        .as_str()
                        .unwrap()
                        .contains("fanout.dev/paused")
                );
                // The other conditions stay as they were.
                assert_eq!(find("Ready")["status"], "True");
                assert_eq!(
                    conditions.iter().filter(|c| c["type"] == "Paused").count(),
                    1
                );
            }),
            Expect::new(Method::POST, EVENTS, Reply::Echo)
                .check(|event| assert_eq!(event["reason"], "Paused")),
        ]);
        let action = reconcile(Arc::new(fc), ctx.clone()).await.unwrap();
        within_a_second(scenario).await;
        assert_eq!(action, Action::await_change());
        let text = feed_core::runtime::render_metrics(&ctx.metrics.registry);
        assert!(
            text.contains("fanout_operator_reconciles_total{outcome=\"paused\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_paused_feedcluster_already_reported_gets_no_request_at_all() {
        let (ctx, server) = test_context();
        let scenario = server.run(vec![]);
        let action = reconcile(Arc::new(paused(true)), ctx).await.unwrap();
        within_a_second(scenario).await;
        assert_eq!(action, Action::await_change());
    }
}
