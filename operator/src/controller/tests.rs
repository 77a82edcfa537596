use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::{Expect, IMAGE, OPERATOR_NAMESPACE, Reply, test_context, within_a_second};

const NS: &str = "/api/v1/namespaces/feeds";
const APPS: &str = "/apis/apps/v1/namespaces/feeds";
const POLICY: &str = "/apis/policy/v1/namespaces/feeds";
const NETWORKING: &str = "/apis/networking.k8s.io/v1/namespaces/feeds";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/feeds/events";
const STATUS: &str = "/apis/fanout.dev/v1alpha1/namespaces/feeds/feedclusters/demo/status";

fn job_path(fc: &FeedCluster) -> String {
    format!(
        "/apis/batch/v1/namespaces/feeds/jobs/{}",
        Names::of(fc).migration(IMAGE)
    )
}

/// The NetworkPolicies, applied before any pod they fence in; the managed
/// Redis admits the operator from its own namespace.
fn network_policies() -> Vec<Expect> {
    let mut script: Vec<Expect> = ["demo-api", "demo-workers", "demo-postgres"]
        .into_iter()
        .map(|name| {
            Expect::new(
                Method::PATCH,
                format!("{NETWORKING}/networkpolicies/{name}"),
                Reply::Echo,
            )
        })
        .collect();
    script.push(
        Expect::new(
            Method::PATCH,
            format!("{NETWORKING}/networkpolicies/demo-redis"),
            Reply::Echo,
        )
        .check(|policy| {
            let operator = &policy["spec"]["ingress"][0]["from"][2];
            assert_eq!(
                operator["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                OPERATOR_NAMESPACE
            );
        }),
    );
    script
}

/// Everything up to the migration Job, for a FeedCluster whose generated
/// secrets do (`secrets_exist`) or do not exist yet.
fn datastores_and_config(secrets_exist: bool) -> Vec<Expect> {
    datastores_and_config_with(secrets_exist, network_policies())
}

/// The same, with `policies` for the NetworkPolicy requests.
fn datastores_and_config_with(secrets_exist: bool, mut policies: Vec<Expect>) -> Vec<Expect> {
    let mut script = Vec::new();
    for secret in ["demo-jwt", "demo-postgres"] {
        let path = format!("{NS}/secrets/{secret}");
        if secrets_exist {
            let existing =
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}});
            script.push(Expect::new(Method::GET, path, Reply::Json(existing)));
        } else {
            script.push(Expect::new(Method::GET, path, Reply::NotFound));
            if secret == "demo-postgres" {
                // No data left behind under an older password.
                script.push(Expect::new(
                    Method::GET,
                    format!("{NS}/persistentvolumeclaims/data-demo-postgres-0"),
                    Reply::NotFound,
                ));
            }
            script.push(
                Expect::new(Method::POST, format!("{NS}/secrets"), Reply::Echo).check(
                    move |body| {
                        let data = &body["stringData"];
                        let value = data["jwt-secret"]
                            .as_str()
                            .or(data["password"].as_str())
                            .unwrap();
                        assert!(
                            value.len() >= 32,
                            "a generated secret has at least 128 bits"
                        );
                    },
                ),
            );
        }
        if secret == "demo-jwt" {
            script.append(&mut policies);
        }
        if secret == "demo-postgres" {
            script.push(Expect::new(
                Method::PATCH,
                format!("{NS}/services/demo-postgres"),
                Reply::Echo,
            ));
            script.push(Expect::new(
                Method::PATCH,
                format!("{APPS}/statefulsets/demo-postgres"),
                Reply::Echo,
            ));
        }
    }
    script.push(Expect::new(
        Method::PATCH,
        format!("{NS}/services/demo-redis"),
        Reply::Echo,
    ));
    script.push(Expect::new(
        Method::PATCH,
        format!("{APPS}/statefulsets/demo-redis"),
        Reply::Echo,
    ));
    script.push(Expect::new(
        Method::PATCH,
        format!("{NS}/configmaps/demo-config"),
        Reply::Echo,
    ));
    script
}

fn ready(replicas: i32) -> Reply {
    Reply::EchoWith(Box::new(move |d: &mut Value| {
        d["status"] = json!({"readyReplicas": replicas, "replicas": replicas});
        if d["spec"].get("replicas").is_none() {
            // The API server defaults what the operator leaves out.
            d["spec"]["replicas"] = json!(replicas);
        }
    }))
}

/// The sample, its schema already migrated for the operator's image.
fn already_migrated() -> FeedCluster {
    let mut fc = FeedCluster::test();
    fc.status = Some(crate::crd::FeedClusterStatus {
        migrated_image: Some(IMAGE.into()),
        ..Default::default()
    });
    fc
}

/// The Services and PDBs, applied whatever the migration's state.
fn services_and_budgets() -> Vec<Expect> {
    vec![
        Expect::new(
            Method::PATCH,
            format!("{NS}/services/demo-api"),
            Reply::Echo,
        ),
        Expect::new(
            Method::PATCH,
            format!("{POLICY}/poddisruptionbudgets/demo-api"),
            Reply::Echo,
        ),
        Expect::new(
            Method::PATCH,
            format!("{POLICY}/poddisruptionbudgets/demo-workers"),
            Reply::Echo,
        ),
    ]
}

fn workers_applied(reply: Reply) -> Expect {
    Expect::new(
        Method::PATCH,
        format!("{APPS}/deployments/demo-workers"),
        reply,
    )
    .check(|body| {
        assert!(
            body["spec"].get("replicas").is_none(),
            "the reconciler must not set the autoscaler's replica count: {}",
            body["spec"]
        );
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["image"],
            IMAGE
        );
    })
}

/// Answers a status patch with the whole FeedCluster, as the API server does.
fn status_reply(fc: &FeedCluster) -> Reply {
    let object = serde_json::to_value(fc).unwrap();
    Reply::EchoWith(Box::new(move |patch: &mut Value| {
        let mut full = object;
        full["status"] = patch["status"].take();
        *patch = full;
    }))
}

fn status_check(ready: &'static str, reason: &'static str) -> impl FnOnce(&Value) + Send {
    move |body| {
        let status = &body["status"];
        assert_eq!(status["observedGeneration"], 3);
        let conditions = status["conditions"].as_array().unwrap();
        let ready_condition = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready_condition["status"], ready, "{status}");
        assert_eq!(ready_condition["reason"], reason, "{status}");
        assert!(conditions.iter().any(|c| c["type"] == "Progressing"));
        assert!(conditions.iter().any(|c| c["type"] == "Degraded"));
    }
}

#[tokio::test]
async fn a_new_feedcluster_gets_its_objects_and_waits_for_the_migration() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let mut script = datastores_and_config(false);
    // The Job is created (never re-applied: its template is immutable) and
    // has not finished: neither Deployment is applied on the new image.
    script.push(Expect::new(Method::GET, job_path(&fc), Reply::NotFound));
    script.push(
        Expect::new(
            Method::POST,
            "/apis/batch/v1/namespaces/feeds/jobs",
            Reply::Echo,
        )
        .check(|job| {
            let container = &job["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["command"][1], "--migrate-only");
            assert_eq!(
                container["image"], IMAGE,
                "the operator's own image by default"
            );
        }),
    );
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-api"),
        Reply::NotFound,
    ));
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-workers"),
        Reply::NotFound,
    ));
    script.extend(services_and_budgets());
    script.push(
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            status_check("False", "Migrating")(body);
            assert!(body["status"]["migratedImage"].is_null());
        }),
    );
    let scenario = server.run(script);

    let action = reconcile(Arc::new(fc), ctx.clone()).await.unwrap();
    within_a_second(scenario).await;
    assert_eq!(
        action,
        Action::requeue(PROGRESS_POLL),
        "look again soon while progressing"
    );
}

#[tokio::test]
async fn once_migrated_the_api_rolls_out_and_ready_is_reported_once() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let mut script = datastores_and_config(true);
    let done = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": Names::of(&fc).migration(IMAGE)}, "status": {"succeeded": 1}});
    script.push(Expect::new(Method::GET, job_path(&fc), Reply::Json(done)));
    script.push(
        Expect::new(
            Method::PATCH,
            format!("{APPS}/deployments/demo-api"),
            ready(1),
        )
        .check(|d| {
            assert_eq!(d["spec"]["replicas"], 1);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        }),
    );
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-workers"),
        Reply::NotFound,
    ));
    script.push(workers_applied(ready(2)));
    script.extend(services_and_budgets());
    script.push(
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            status_check("True", "Available")(body);
            assert_eq!(body["status"]["workers"]["summary"], "2/2");
            assert_eq!(body["status"]["api"]["summary"], "1/1");
            assert_eq!(body["status"]["migratedImage"], IMAGE);
        }),
    );
    script.push(
        Expect::new(Method::POST, EVENTS, Reply::Echo)
            .check(|event| assert_eq!(event["reason"], "Ready")),
    );
    let scenario = server.run(script);

    let action = reconcile(Arc::new(fc), ctx).await.unwrap();
    within_a_second(scenario).await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_retried_with_backoff() {
    let (ctx, server) = test_context();
    let mut fc = FeedCluster::test();
    fc.spec.workers.min_replicas = 9;
    fc.spec.workers.max_replicas = 2;
    let script = vec![
        Expect::new(Method::POST, EVENTS, Reply::Echo).check(|e| {
            assert_eq!(e["reason"], "InvalidSpec");
            assert!(e["note"].as_str().unwrap().contains("minReplicas"));
        }),
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            let degraded = body["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Degraded")
                .unwrap()
                .clone();
            assert_eq!(degraded["status"], "True");
        }),
    ];
    let scenario = server.run(script);
    let fc = Arc::new(fc);
    let error = reconcile(fc.clone(), ctx.clone()).await.unwrap_err();
    within_a_second(scenario).await;
    assert!(matches!(error, Error::InvalidSpec(_)));

    // Each consecutive failure waits twice as long, up to the cap.
    let delays: Vec<Action> = (0..8)
        .map(|_| error_policy(fc.clone(), &error, ctx.clone()))
        .collect();
    assert_eq!(delays[0], Action::requeue(BACKOFF_BASE));
    assert_eq!(delays[1], Action::requeue(BACKOFF_BASE * 2));
    assert_eq!(delays[7], Action::requeue(BACKOFF_MAX));
}

#[tokio::test]
async fn an_api_failure_is_reported_as_degraded() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    // A long message, as admission errors listing many fields are.
    let message = format!("etcd is unhappy{}", " and says so at length".repeat(100));
    let failure = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "InternalError", "code": 500, "message": message});
    let script = vec![
        Expect::new(
            Method::GET,
            format!("{NS}/secrets/demo-jwt"),
            Reply::Status(500, failure),
        ),
        Expect::new(Method::POST, EVENTS, Reply::Echo).check(|e| {
            assert_eq!(e["reason"], "ReconcileFailed");
            assert_eq!(e["type"], "Warning");
            // What failed and what the API server said, within the 1 kB the
            // API server accepts for a note; no client debug dump.
            let note = e["note"].as_str().unwrap();
            assert!(note.len() <= 1024, "{} bytes", note.len());
            assert!(
                note.starts_with("reading Secret demo-jwt: 500 InternalError: etcd is unhappy"),
                "{note}"
            );
            assert!(!note.contains("Status {"), "{note}");
        }),
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            let conditions = body["status"]["conditions"].as_array().unwrap();
            let degraded = conditions.iter().find(|c| c["type"] == "Degraded").unwrap();
            assert_eq!(degraded["status"], "True");
            assert!(
                degraded["message"]
                    .as_str()
                    .unwrap()
                    .contains("etcd is unhappy")
            );
        }),
    ];
    let scenario = server.run(script);
    let error = reconcile(Arc::new(fc), ctx).await.unwrap_err();
    within_a_second(scenario).await;
    assert!(matches!(error, Error::Object { .. }), "{error:?}");
}

#[tokio::test]
async fn a_deleted_postgres_secret_is_not_regenerated_over_existing_data() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let existing = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-jwt"}});
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-demo-postgres-0"}});
    let mut script = vec![Expect::new(
        Method::GET,
        format!("{NS}/secrets/demo-jwt"),
        Reply::Json(existing),
    )];
    script.extend(network_policies());
    script.push(Expect::new(
        Method::GET,
        format!("{NS}/secrets/demo-postgres"),
        Reply::NotFound,
    ));
    // The data is still there: no new password, and nothing after this.
    script.push(Expect::new(
        Method::GET,
        format!("{NS}/persistentvolumeclaims/data-demo-postgres-0"),
        Reply::Json(claim),
    ));
    script.push(Expect::new(Method::POST, EVENTS, Reply::Echo).check(|e| {
        assert_eq!(e["reason"], "CredentialLost");
        let note = e["note"].as_str().unwrap();
        assert!(note.contains("restore the Secret"), "{note}");
    }));
    script.push(Expect::new(Method::PATCH, STATUS, status_reply(&fc)));
    let scenario = server.run(script);
    let error = reconcile(Arc::new(fc), ctx).await.unwrap_err();
    within_a_second(scenario).await;
    assert!(matches!(error, Error::CredentialLost(_)), "{error:?}");
}

#[tokio::test]
async fn a_migrated_image_is_not_migrated_again_and_a_failed_migration_degrades() {
    let (ctx, server) = test_context();
    let fc = already_migrated();
    let mut script = datastores_and_config(true);
    // No Job requests at all: straight to the Deployments.
    script.push(Expect::new(
        Method::PATCH,
        format!("{APPS}/deployments/demo-api"),
        ready(1),
    ));
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-workers"),
        Reply::NotFound,
    ));
    script.push(workers_applied(ready(1)));
    script.extend(services_and_budgets());
    script.push(
        Expect::new(Method::PATCH, STATUS, status_reply(&fc))
            .check(status_check("True", "Available")),
    );
    script.push(Expect::new(Method::POST, EVENTS, Reply::Echo));
    let scenario = server.run(script);
    reconcile(Arc::new(fc), ctx).await.unwrap();
    within_a_second(scenario).await;

    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let failed = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": Names::of(&fc).migration(IMAGE)},
        "status": {"failed": 11, "conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
    let mut script = datastores_and_config(true);
    script.push(Expect::new(Method::GET, job_path(&fc), Reply::Json(failed)));
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-api"),
        Reply::NotFound,
    ));
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-workers"),
        Reply::NotFound,
    ));
    script.extend(services_and_budgets());
    script.push(
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            let conditions = body["status"]["conditions"].as_array().unwrap();
            let degraded = conditions.iter().find(|c| c["type"] == "Degraded").unwrap();
            assert_eq!(degraded["status"], "True");
            assert_eq!(degraded["reason"], "MigrationFailed");
            assert!(
                degraded["message"]
                    .as_str()
                    .unwrap()
                    .contains("backoff limit")
            );
        }),
    );
    let scenario = server.run(script);
    reconcile(Arc::new(fc), ctx).await.unwrap();
    within_a_second(scenario).await;
}

#[tokio::test]
async fn the_worker_count_is_handed_to_the_autoscaler_before_the_apply() {
    let (ctx, server) = test_context();
    let fc = already_migrated();
    let running = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "demo-workers"},
        "spec": {"replicas": 7, "selector": {}, "template": {}}});
    let mut script = datastores_and_config(true);
    script.push(Expect::new(
        Method::PATCH,
        format!("{APPS}/deployments/demo-api"),
        ready(1),
    ));
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-workers"),
        Reply::Json(running),
    ));
    script.push(
        Expect::new(
            Method::PATCH,
            format!("{APPS}/deployments/demo-workers/scale"),
            Reply::Echo,
        )
        .check(|scale| assert_eq!(scale["spec"]["replicas"], 7, "the running count, kept")),
    );
    script.push(workers_applied(ready(7)));
    script.extend(services_and_budgets());
    script.push(
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            assert_eq!(body["status"]["workers"]["summary"], "7/7");
        }),
    );
    script.push(Expect::new(Method::POST, EVENTS, Reply::Echo));
    let scenario = server.run(script);
    reconcile(Arc::new(fc), ctx).await.unwrap();
    within_a_second(scenario).await;
}

#[tokio::test]
async fn switching_network_policies_off_deletes_only_the_ones_it_made() {
    let (ctx, server) = test_context();
    let mut fc = already_migrated();
    fc.spec.network_policies = false;
    let uid = fc.metadata.uid.clone().unwrap();
    let policy = |name: &str, owner_uid: Option<&str>| {
        let owners: Vec<Value> = owner_uid
            .map(|uid| {
                json!({"apiVersion": "fanout.dev/v1alpha1", "kind": "FeedCluster",
                    "name": "demo", "uid": uid, "controller": true})
            })
            .into_iter()
            .collect();
        json!({"metadata": {"name": name, "namespace": "feeds", "uid": format!("uid-{name}"),
            "labels": {"app.kubernetes.io/instance": "demo",
                "app.kubernetes.io/managed-by": "fanout-operator"},
            "ownerReferences": owners},
            "spec": {"podSelector": {}}})
    };
    let listed = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
    "metadata": {}, "items": [
        policy("demo-api", Some(&uid)),
        policy("demo-redis", Some(&uid)),
        // Copied from ours by the user, to replace it: not ours.
        policy("demo-workers-custom", None),
        policy("demo-postgres", Some("another-feedcluster")),
    ]});
    // One list finds them; only those this FeedCluster controls go.
    let mut removal = vec![Expect::new(
        Method::GET,
        format!("{NETWORKING}/networkpolicies"),
        Reply::Json(listed),
    )];
    for (name, reply) in [
        (
            "demo-api",
            Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        ),
        // Already gone: not an error.
        ("demo-redis", Reply::NotFound),
    ] {
        removal.push(
            Expect::new(
                Method::DELETE,
                format!("{NETWORKING}/networkpolicies/{name}"),
                reply,
            )
            .check(move |body| {
                assert_eq!(
                    body["preconditions"]["uid"],
                    format!("uid-{name}"),
                    "only the policy that was listed"
                );
            }),
        );
    }
    // Then the rest as usual, without a single policy applied.
    let mut script = datastores_and_config_with(true, removal);
    script.push(Expect::new(
        Method::PATCH,
        format!("{APPS}/deployments/demo-api"),
        ready(1),
    ));
    script.push(Expect::new(
        Method::GET,
        format!("{APPS}/deployments/demo-workers"),
        Reply::NotFound,
    ));
    script.push(workers_applied(ready(1)));
    script.extend(services_and_budgets());
    script.push(
        Expect::new(Method::PATCH, STATUS, status_reply(&fc))
            .check(status_check("True", "Available")),
    );
    script.push(Expect::new(Method::POST, EVENTS, Reply::Echo));
    let scenario = server.run(script);
    reconcile(Arc::new(fc), ctx).await.unwrap();
    within_a_second(scenario).await;
}
