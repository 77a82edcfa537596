//! The CRD on a real API server (the lane's item 1): it installs with server-
//! side apply, its structural schema and CEL rules are accepted, `kubectl
//! explain` reads well, and bad FeedClusters are turned away at admission
//! with messages a person understands.

use kube::api::{Patch, PatchParams, PostParams};
use operator::crd::FeedCluster;

use crate::harness::{Scenario, kubectl, repo, run};

/// Creates `fc`; the API server's message when it refuses.
async fn refusal(scenario: &Scenario, fc: &FeedCluster) -> Option<String> {
    match scenario
        .api::<FeedCluster>()
        .create(&PostParams::default(), fc)
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            Some(status.message.clone())
        }
        Err(e) => panic!("creating a FeedCluster: {e}"),
    }
}

const EXTERNAL: &str = "  postgres:\n    external: {secretName: postgres}\n  redis:\n    external: {secretName: redis}\n";

#[tokio::test]
async fn the_crd_installs_and_bad_feedclusters_are_refused_with_clear_messages() {
    let Some(scenario) = Scenario::new("t-admission").await else {
        return;
    };
    let admin = scenario.admin().to_owned();

    // Server-side apply of the committed CRD (beside the chart's copy).
    let applied = run(kubectl(&admin)
        .args([
            "apply",
            "--server-side",
            "--field-manager=fanout-test",
            "-f",
        ])
        .arg(repo("crds/feedcluster.yaml")));
    assert!(applied.contains("serverside-applied"), "{applied}");

    let explained = run(kubectl(&admin).args(["explain", "fc.spec.autoscaling"]));
    for words in [
        "How workers are scaled by the Redis Stream backlog",
        "drainSeconds",
        "Drain any backlog within this many seconds",
        "RecommendOnly",
        "scaleToZero",
    ] {
        assert!(explained.contains(words), "`{words}` in:\n{explained}");
    }

    // A valid one is accepted, defaults filled in.
    let valid = scenario.feed_cluster("valid", EXTERNAL);
    assert_eq!(refusal(&scenario, &valid).await, None);
    // Defaulted by the API server from the schema, not by our types.
    let stored = run(kubectl(&admin).args([
        "get",
        "fc",
        "valid",
        "-n",
        &scenario.namespace,
        "-o",
        "jsonpath={.spec.autoscaling.drainSeconds}",
    ]));
    assert_eq!(stored, "30");

    let cases: &[(&str, &str, &str)] = &[
        (
            "min-over-max",
            "  workers: {minReplicas: 5, maxReplicas: 2}\n",
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "both-kinds",
            "  postgres:\n    external: {secretName: postgres}\n    managed: {storage: 1Gi}\n  redis:\n    external: {secretName: redis}\n",
            "set exactly one of external or managed",
        ),
        (
            "bad-storage",
            "  postgres:\n    managed: {storage: 1GB}\n  redis:\n    external: {secretName: redis}\n",
            "storage must be a positive Kubernetes quantity such as 1Gi",
        ),
        (
            "zero-storage",
            "  postgres:\n    external: {secretName: postgres}\n  redis:\n    managed: {storage: \"0\"}\n",
            "storage must be a positive Kubernetes quantity",
        ),
        (
            "9lives",
            EXTERNAL,
            "metadata.name must start with a lowercase letter",
        ),
        (
            "has.dot",
            EXTERNAL,
            "metadata.name must start with a lowercase letter",
        ),
        (
            "a-name-long-enough-to-break-its-children-x",
            EXTERNAL,
            "metadata.name must be at most 40 characters",
        ),
    ];
    for (name, spec, message) in cases {
        let spec = if spec.contains("postgres:") {
            spec.to_string()
        } else {
            format!("{spec}{EXTERNAL}")
        };
        let fc = scenario.feed_cluster(name, &spec);
        let refused = refusal(&scenario, &fc)
            .await
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(refused.contains(message), "{name}: {refused}");
    }

    // A volume's size is fixed once created...
    let managed = scenario.feed_cluster(
        "managed",
        "  postgres:\n    managed: {storage: 1Gi}\n  redis:\n    external: {secretName: redis}\n",
    );
    assert_eq!(refusal(&scenario, &managed).await, None);
    let patch = serde_json::json!({"spec": {"postgres": {"managed": {"storage": "2Gi"}}}});
    let error = scenario
        .api::<FeedCluster>()
        .patch("managed", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("storage cannot change once created"),
        "{error}"
    );
}
