//! The whole story on a real cluster: apply the sample FeedCluster, wait for
//! Ready, use the feed over its REST API, see a deleted child come back,
//! push a backlog and watch the workers scale up and back down, delete the
//! FeedCluster and see nothing left behind.
//!
//! It needs a cluster with the operator installed, so it is ignored by
//! `cargo test`; `e2e/run.sh` (`make e2e`) makes a kind cluster, builds and
//! loads the image, installs the chart, then runs it with `--ignored`.
//!
//! - `FANOUT_E2E_NAMESPACE` (default `default`): where the FeedCluster goes.
//! - `FANOUT_E2E_API` (default `http://localhost:8080`): the API, which
//!   kind-config.yaml maps from the sample's node port.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use operator::crd::FeedCluster;
use reqwest::StatusCode;
use serde_json::{Value, json};

const NAME: &str = "demo";
/// Entries pushed onto a stream to make a backlog: well beyond what one
/// worker drains within the sample's 30 s drain target.
const BACKLOG: usize = 20_000;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Polls `check` every `every` until it returns `Some`, or fails naming
/// `what` after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, every: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    fanout_testkit::eventually_every(limit, every, what, check)
        .await
        .0
}

fn is_ready(fc: &FeedCluster) -> bool {
    fc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

struct Feed {
    http: reqwest::Client,
    base: String,
}

impl Feed {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url).json(&body),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Registers `handle` and returns its id and an access token.
    async fn user(&self, handle: &str) -> (String, String) {
        let credentials = json!({"handle": handle, "password": "correct horse battery"});
        let user = self.call("POST", "/users", None, credentials.clone()).await;
        let tokens = self.call("POST", "/auth/login", None, credentials).await;
        (
            user["id"].as_str().unwrap().to_owned(),
            tokens["access_token"].as_str().unwrap().to_owned(),
        )
    }
}

async fn worker_replicas(deployments: &Api<Deployment>) -> i32 {
    deployments
        .get(&format!("{NAME}-workers"))
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

/// Adds `count` entries to a stream through `redis-cli` in the managed
/// Redis pod (the test has no route to it otherwise), each a like of a post
/// that does not exist: real work for a worker, with no visible effect.
async fn push_backlog(namespace: &str, count: usize) {
    let nil = "00000000-0000-7000-8000-000000000000";
    let event = json!({
        "event_id": nil, "event_type": "post.liked", "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z", "correlation_id": null,
        "actor_id": nil, "payload": {"post_id": nil, "user_id": nil},
    })
    .to_string();
    let namespace = namespace.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("kubectl")
            .args(["exec", "-i", "-n", &namespace])
            .arg(format!("statefulset/{NAME}-redis"))
            .args(["--", "redis-cli"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is needed to reach the managed Redis");
        let mut stdin = child.stdin.take().unwrap();
        let line = format!("XADD {{events}}:post.liked * event '{event}'\n");
        let writer = std::thread::spawn(move || {
            for _ in 0..count {
                stdin.write_all(line.as_bytes()).unwrap();
            }
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        output
    })
    .await
    .unwrap();
    let replies = String::from_utf8_lossy(&output.stdout);
    let added = replies.lines().filter(|l| l.contains('-')).count();
    assert_eq!(
        added,
        count,
        "redis-cli added {added} of {count}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: make e2e"]
async fn a_feedcluster_serves_scales_and_cleans_up() {
    let namespace = env_or("FANOUT_E2E_NAMESPACE", "default");
    let client = Client::try_default()
        .await
        .expect("a kubeconfig for the cluster");
    let clusters: Api<FeedCluster> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);

    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/samples/feedcluster.yaml");
    let fc: FeedCluster =
        serde_saphyr::from_str(&std::fs::read_to_string(sample).unwrap()).unwrap();
    clusters
        .patch(
            NAME,
            &PatchParams::apply("fanout-e2e").force(),
            &Patch::Apply(&fc),
        )
        .await
        .unwrap();
    until(
        "the FeedCluster to be Ready",
        Duration::from_secs(600),
        Duration::from_secs(5),
        || async { clusters.get(NAME).await.ok().filter(is_ready) },
    )
    .await;

    // The feed works, end to end, through the node port.
    let feed = Feed {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        base: env_or("FANOUT_E2E_API", "http://localhost:8080"),
    };
    until(
        "the API to answer /readyz",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            let url = format!("{}/readyz", feed.base);
            let response = feed.http.get(url).send().await.ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await;
    let (alice_id, alice) = feed.user("alice").await;
    let (_, bob) = feed.user("bob").await;
    feed.call(
        "POST",
        &format!("/users/{alice_id}/follow"),
        Some(&bob),
        Value::Null,
    )
    .await;
    let post = feed
        .call(
            "POST",
            "/posts",
            Some(&alice),
            json!({"content": "hello from kind"}),
        )
        .await;
    until(
        "alice's post in bob's feed",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let page = feed.call("GET", "/feed", Some(&bob), Value::Null).await;
            (page["items"][0]["id"] == post["id"]).then_some(())
        },
    )
    .await;

    // A deleted child is put back.
    let api_name = format!("{NAME}-api");
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let before = services.get(&api_name).await.unwrap().uid();
    services
        .delete(&api_name, &DeleteParams::default())
        .await
        .unwrap();
    until(
        "the deleted API Service to be recreated",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || async {
            let now = services.get(&api_name).await.ok()?;
            (now.uid() != before).then_some(())
        },
    )
    .await;

    // A backlog scales the workers up; drained, they come back down.
    push_backlog(&namespace, BACKLOG).await;
    let up = until(
        "the workers to scale up",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async { Some(worker_replicas(&deployments).await).filter(|n| *n > 1) },
    )
    .await;
    let reason = clusters
        .get(NAME)
        .await
        .unwrap()
        .status
        .and_then(|s| s.last_scale)
        .map(|s| s.reason)
        .unwrap_or_default();
    println!("workers scaled up to {up}: {reason}");
    assert!(
        !reason.is_empty(),
        "the scale-up is not explained in status"
    );
    until(
        "the workers to scale back down",
        Duration::from_secs(600),
        Duration::from_secs(5),
        || async { Some(worker_replicas(&deployments).await).filter(|n| *n <= 1) },
    )
    .await;

    // Deleted, it leaves nothing behind (owner references, and the
    // StatefulSets' claims go with them).
    clusters
        .delete(NAME, &DeleteParams::foreground())
        .await
        .unwrap();
    let owned = ListParams::default().labels(&format!("app.kubernetes.io/instance={NAME}"));
    until(
        "everything the FeedCluster owned to be deleted",
        Duration::from_secs(180),
        Duration::from_secs(2),
        || async {
            let ns = namespace.as_str();
            let left = [
                names(Api::<Deployment>::namespaced(client.clone(), ns), &owned).await,
                names(Api::<StatefulSet>::namespaced(client.clone(), ns), &owned).await,
                names(Api::<Service>::namespaced(client.clone(), ns), &owned).await,
                names(Api::<ConfigMap>::namespaced(client.clone(), ns), &owned).await,
                names(Api::<Job>::namespaced(client.clone(), ns), &owned).await,
                names(
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns),
                    &owned,
                )
                .await,
            ]
            .concat();
            if !left.is_empty() {
                println!("still there: {left:?}");
            }
            left.is_empty().then_some(())
        },
    )
    .await;
}

async fn names<K>(api: Api<K>, params: &ListParams) -> Vec<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(params).await.unwrap();
    list.items
        .iter()
        .map(|o| format!("{}/{}", K::kind(&()), o.name_any()))
        .collect()
}
